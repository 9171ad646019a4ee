#include "compress/calib.h"

#include "core/thread_pool.h"
#include "formats/token_file.h"
#include "slm/error.h"
#include "tokenizers/unicode.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace slm::compress {

CalibSet load_calibration(const Model& model, const CalibOptions& o) {
    if (o.text_file.empty() == o.token_file.empty())
        fail("calibrate: give exactly one calibration source: a text file (-f) or a token file (--calib-tokens)");
    if (o.n_samples == 0) fail("calibrate: field 'n_samples' (--calib-samples) is 0");
    const uint32_t n_ctx_train = model.hparams().n_ctx_train;
    uint32_t n_ctx = o.n_ctx != 0 ? o.n_ctx : std::min<uint32_t>(512, n_ctx_train ? n_ctx_train : 512);
    if (n_ctx < 2 || n_ctx > 1u << 20) fail("calibrate: field 'n_ctx' (--calib-ctx) is %u, not in [2, 2^20]", n_ctx);
    const Vocab& vocab = model.vocab();
    CalibSet set;
    std::vector<int32_t> ids;
    if (!o.text_file.empty()) {
        set.source = o.text_file;
        const std::string text = formats::read_whole_file(o.text_file, "calibrate", "text");
        const size_t bad = tok::utf8_invalid_at(text);
        if (bad != std::string::npos)
            fail("calibrate: %s: invalid UTF-8 at byte %zu", o.text_file.c_str(), bad);
        ids = vocab.tokenize(text, false, false);
    } else {
        set.source = o.token_file;
        ids = formats::read_token_file(o.token_file, model.hparams().n_vocab, "calibrate");
    }
    const bool bos = vocab.add_bos() && vocab.bos() != TOKEN_NULL;
    const size_t per = n_ctx - (bos ? 1 : 0);  // text tokens per sample
    set.n_available = ids.size() / per;
    if (set.n_available == 0)
        fail("calibrate: %s: %zu tokens, fewer than one sample of --calib-ctx %u", set.source.c_str(), ids.size(),
             n_ctx);
    const size_t n = std::min<size_t>(o.n_samples, set.n_available);
    for (size_t i = 0; i < n; ++i) {
        // Evenly spaced windows: the whole file is represented, not just its beginning.
        const size_t w = n == 1 ? 0 : i * (set.n_available - 1) / (n - 1);
        std::vector<int32_t> s;
        s.reserve(n_ctx);
        if (bos) s.push_back(vocab.bos());
        s.insert(s.end(), ids.begin() + static_cast<ptrdiff_t>(w * per), ids.begin() + static_cast<ptrdiff_t>((w + 1) * per));
        set.n_tokens += s.size();
        set.samples.push_back(std::move(s));
    }
    return set;
}

void run_calibration(const std::shared_ptr<const Model>& model, const CalibSet& set, MatmulObserver& observer,
                     int n_threads, const std::function<void(size_t, size_t)>& progress) {
    uint32_t n_ctx = 0;
    for (const auto& s : set.samples) n_ctx = std::max<uint32_t>(n_ctx, static_cast<uint32_t>(s.size()));
    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_batch = std::min<uint32_t>(n_ctx, 512);
    so.n_threads = n_threads;
    Session session(model, so);
    session.set_matmul_observer(&observer);
    for (size_t i = 0; i < set.samples.size(); ++i) {
        session.reset();
        session.eval(set.samples[i], true);
        if (progress) progress(i + 1, set.samples.size());
    }
    session.set_matmul_observer(nullptr);
}

void ActivationStats::on_matmul(const MatmulEvent& e) {
    auto it = by_weight_.find(*e.names[0]);
    InputStats* s = nullptr;
    if (it != by_weight_.end()) {
        s = it->second;
    } else {
        bool any = !opt_.want;
        for (int i = 0; i < e.n_weights && !any; ++i) any = opt_.want(*e.names[i]);
        if (!any) return;
        auto owned = std::make_unique<InputStats>();
        s = owned.get();
        s->n_in = e.n_in;
        s->sum_x2.assign(static_cast<size_t>(e.n_in), 0.0);
        s->sum_abs.assign(static_cast<size_t>(e.n_in), 0.0);
        if (opt_.hessian) {
            if (e.n_in > opt_.max_hessian_n_in)
                fail("calibrate: '%s' has rows of %lld; its X^T X would exceed the %lld limit", e.names[0]->c_str(),
                     static_cast<long long>(e.n_in), static_cast<long long>(opt_.max_hessian_n_in));
            s->hessian.assign(static_cast<size_t>(e.n_in * e.n_in), 0.0f);
        }
        for (int i = 0; i < e.n_weights; ++i) {
            s->weights.push_back(*e.names[i]);
            by_weight_[*e.names[i]] = s;
        }
        inputs_.push_back(std::move(owned));
    }
    if (s->n_in != e.n_in)
        fail("calibrate: '%s' read rows of %lld, then of %lld", e.names[0]->c_str(), static_cast<long long>(s->n_in),
             static_cast<long long>(e.n_in));
    for (uint32_t t = 0; t < e.n_tokens; ++t) {
        const float* row = e.x + static_cast<size_t>(t) * e.n_in;
        for (int64_t j = 0; j < e.n_in; ++j) {
            s->sum_x2[j] += static_cast<double>(row[j]) * row[j];
            s->sum_abs[j] += std::fabs(static_cast<double>(row[j]));
        }
    }
    s->n_rows += e.n_tokens;
    if (!s->hessian.empty()) add_hessian(*s, e.x, e.n_tokens);
}

void ActivationStats::add_hessian(InputStats& s, const float* x, uint32_t n_tokens) {
    constexpr uint32_t W = 64;  // rows per window: a transposed window keeps each column contiguous
    const int64_t n = s.n_in;
    xt_.resize(static_cast<size_t>(n) * W);
    for (uint32_t t0 = 0; t0 < n_tokens; t0 += W) {
        const uint32_t nt = std::min(W, n_tokens - t0);
        std::fill(xt_.begin(), xt_.end(), 0.0f);
        for (uint32_t t = 0; t < nt; ++t) {
            const float* row = x + static_cast<size_t>(t0 + t) * n;
            for (int64_t j = 0; j < n; ++j) xt_[static_cast<size_t>(j) * W + t] = row[j];
        }
        // Upper half, rows i and n-1-i together so every work item costs the same.
        const float* xt = xt_.data();
        float* h = s.hessian.data();
        auto one_row = [&](int64_t i) {
            const float* xi = xt + static_cast<size_t>(i) * W;
            float* hi = h + static_cast<size_t>(i) * n;
            for (int64_t j = i; j < n; ++j) {
                const float* xj = xt + static_cast<size_t>(j) * W;
                float acc = 0.0f;
                for (uint32_t t = 0; t < W; ++t) acc += xi[t] * xj[t];
                hi[j] += acc;
            }
        };
        auto rows = [&](int64_t b, int64_t e, int) {
            for (int64_t k = b; k < e; ++k) {
                one_row(k);
                if (n - 1 - k != k) one_row(n - 1 - k);
            }
        };
        const int64_t n_pairs = (n + 1) / 2;
        if (opt_.pool)
            opt_.pool->parallel_for(n_pairs, rows);
        else
            rows(0, n_pairs, 0);
    }
}

void ActivationStats::finish() {
    for (auto& s : inputs_) {
        if (s->hessian.empty()) continue;
        const int64_t n = s->n_in;
        for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < i; ++j) s->hessian[i * n + j] = s->hessian[j * n + i];
    }
}

const InputStats* ActivationStats::find(const std::string& weight) const {
    auto it = by_weight_.find(weight);
    return it == by_weight_.end() ? nullptr : it->second;
}

} // namespace slm::compress
