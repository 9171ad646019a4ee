// weight_stream.cpp - layer-by-layer weight streaming (SessionOptions::low_memory) and
// Model::lock_weights (--mlock).
#include "runtime/weight_stream.h"

#include "slm/error.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

namespace slm {

namespace {

using Span = std::pair<uintptr_t, uintptr_t>;  // [begin, end) bytes

// Layer index of a tensor named "blk.<il>.<...>", or -1.
long layer_of(const std::string& name) {
    if (name.compare(0, 4, "blk.") != 0) return -1;
    size_t i = 4;
    long il = 0;
    if (i >= name.size() || name[i] < '0' || name[i] > '9') return -1;
    while (i < name.size() && name[i] >= '0' && name[i] <= '9' && il < (1L << 24)) il = il * 10 + (name[i++] - '0');
    return i < name.size() && name[i] == '.' ? il : -1;
}

class WeightStreamer final : public LayerHook {
public:
    explicit WeightStreamer(const Model& model) : page_(static_cast<uintptr_t>(sysconf(_SC_PAGESIZE))) {
        const uint32_t n_layer = model.hparams().n_layer;
        layers_.resize(n_layer);
        for (const ModelTensor* t : model.arch().tensors()) {
            if (!t->present() || t->repacked || t->nbytes == 0) continue;
            const long il = layer_of(t->name);
            if (il < 0 || il >= long(n_layer)) continue;
            const auto b = reinterpret_cast<uintptr_t>(t->data);
            layers_[il].emplace_back(b, b + t->nbytes);
        }
        for (auto& spans : layers_) {  // merged, so each layer is a few madvise calls
            std::sort(spans.begin(), spans.end());
            std::vector<Span> merged;
            for (const Span& s : spans) {
                if (!merged.empty() && s.first <= merged.back().second + page_)
                    merged.back().second = std::max(merged.back().second, s.second);
                else
                    merged.push_back(s);
            }
            spans = std::move(merged);
        }
    }

    void on_layer(uint32_t il) override {
        const uint32_t n = static_cast<uint32_t>(layers_.size());
        if (n < 2 || il >= n) return;
        // The layer before is done (the previous pass's last one when il is 0); the next is
        // read while this one computes.
        advise(layers_[(il + n - 1) % n], MADV_DONTNEED, false);
        advise(layers_[(il + 1) % n], MADV_WILLNEED, true);
    }

private:
    uintptr_t page_;
    std::vector<std::vector<Span>> layers_;

    // Advice is best effort: a failure costs memory or speed, never results. Releasing keeps to
    // the pages wholly inside the span (a boundary page may hold the neighbour's weights);
    // reading ahead covers every page touched.
    void advise(const std::vector<Span>& spans, int advice, bool outward) const {
        for (const Span& s : spans) {
            const uintptr_t lo = outward ? s.first / page_ * page_ : (s.first + page_ - 1) / page_ * page_;
            const uintptr_t hi = outward ? (s.second + page_ - 1) / page_ * page_ : s.second / page_ * page_;
            if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, advice);
        }
    }
};

} // namespace

std::unique_ptr<LayerHook> make_weight_streamer(const Model& model) { return std::make_unique<WeightStreamer>(model); }

void Model::lock_weights() const {
    size_t locked = 0;
    for (const ModelTensor* t : arch_->tensors()) {
        if (!t->present() || t->nbytes == 0) continue;
        if (mlock(t->data, t->nbytes) != 0) {
            const int err = errno;
            struct rlimit rl {};
            getrlimit(RLIMIT_MEMLOCK, &rl);
            const std::string limit = rl.rlim_cur == RLIM_INFINITY ? std::string("unlimited")
                                                                    : strprintf("%llu KiB", static_cast<unsigned long long>(rl.rlim_cur / 1024));
            fail("model: %s: cannot lock %zu bytes of weights in RAM at tensor '%s' (%s; %zu bytes locked so far, "
                 "RLIMIT_MEMLOCK %s: raise it with ulimit -l)",
                 file_.path().c_str(), weight_bytes(), t->name.c_str(), std::strerror(err), locked, limit.c_str());
        }
        locked += t->nbytes;
    }
}

} // namespace slm
