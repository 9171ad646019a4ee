// sampler.cpp - llama.cpp's sampler chain (src/llama-sampling.cpp) over a preallocated buffer.
//
// Each step keeps llama.cpp's arithmetic (float softmax, the same cut-off comparisons) so that a
// candidate set after any step is the one llama.cpp would keep. Two deliberate differences:
// equal logits are ordered by id (llama.cpp leaves their order to std::partial_sort), and a NaN
// logit is read as -inf so that sorting stays well defined.
#include "slm/sampler.h"

#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace slm {

namespace {

// The longest penalty window accepted; llama.cpp's -1 ("the whole context") is the caller's to
// translate into a count.
constexpr int32_t kMaxPenaltyLastN = 1 << 24;

bool by_logit_desc(const TokenProb& a, const TokenProb& b) {
    if (a.logit != b.logit) return a.logit > b.logit;
    return a.id < b.id;
}

// llama.cpp's get_rng_seed feeds a 32-bit seed to std::mt19937; a seed that fits stays as is.
uint32_t fold_seed(uint64_t seed) { return static_cast<uint32_t>(seed ^ (seed >> 32)); }

} // namespace

void validate_sampler_params(const SamplerParams& p) {
    if (!std::isfinite(p.temp)) fail("sampler: temp = %g must be finite", p.temp);
    if (p.top_k < 0) fail("sampler: top_k = %d must be >= 0 (0 keeps every token)", p.top_k);
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) fail("sampler: top_p = %g must be in (0, 1]", p.top_p);
    if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("sampler: min_p = %g must be in [0, 1]", p.min_p);
    if (!(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0.0f))
        fail("sampler: repeat_penalty = %g must be finite and > 0 (1 is off)", p.repeat_penalty);
    if (!std::isfinite(p.freq_penalty)) fail("sampler: freq_penalty = %g must be finite", p.freq_penalty);
    if (!std::isfinite(p.presence_penalty))
        fail("sampler: presence_penalty = %g must be finite", p.presence_penalty);
    if (p.penalty_last_n < 0 || p.penalty_last_n > kMaxPenaltyLastN)
        fail("sampler: penalty_last_n = %d must be in [0, %d]", p.penalty_last_n, kMaxPenaltyLastN);
}

Sampler::Sampler(const SamplerParams& params, int32_t n_vocab)
    : params_(params), n_vocab_(n_vocab), rng_(fold_seed(params.seed)) {
    validate_sampler_params(params);
    if (n_vocab <= 0) fail("sampler: n_vocab = %d must be > 0", n_vocab);
    cur_.resize(static_cast<size_t>(n_vocab));
    counts_.assign(static_cast<size_t>(n_vocab), 0);
    // The window grows in accept() up to penalty_last_n, so a long window costs nothing until used.
    ring_.reserve(static_cast<size_t>(std::min(params.penalty_last_n, 4096)));
}

void Sampler::reset() {
    std::fill(counts_.begin(), counts_.end(), 0);
    ring_.clear();
    ring_pos_ = 0;
    n_cur_ = 0;
    rng_.seed(fold_seed(params_.seed));
}

void Sampler::accept(int32_t token) {
    if (token < 0 || token >= n_vocab_) fail("sampler: accept: token %d outside [0, %d)", token, n_vocab_);
    const size_t cap = static_cast<size_t>(params_.penalty_last_n);
    if (cap == 0) return;
    counts_[static_cast<size_t>(token)]++;
    if (ring_.size() < cap) {
        ring_.push_back(token);
        return;
    }
    // Full: the oldest entry sits at ring_pos_ and leaves the window.
    counts_[static_cast<size_t>(ring_[ring_pos_])]--;
    ring_[ring_pos_] = token;
    ring_pos_ = (ring_pos_ + 1) % cap;
}

// llama.cpp's penalties sampler: for each token seen c > 0 times in the window, a positive logit is
// divided by repeat_penalty and a non-positive one multiplied (so the penalty always lowers it),
// then c * freq_penalty + presence_penalty is subtracted.
void Sampler::apply_penalties() {
    const SamplerParams& p = params_;
    if (p.penalty_last_n == 0 ||
        (p.repeat_penalty == 1.0f && p.freq_penalty == 0.0f && p.presence_penalty == 0.0f))
        return;
    // Called on the freshly filled buffer, where cur_[i].id == i.
    for (size_t i = 0; i < n_cur_; ++i) {
        const int32_t count = counts_[i];
        if (count == 0) continue;
        float& logit = cur_[i].logit;
        if (logit <= 0.0f)
            logit *= p.repeat_penalty;
        else
            logit /= p.repeat_penalty;
        logit -= float(count) * p.freq_penalty + float(count > 0) * p.presence_penalty;
    }
    sorted_ = false;
}

void Sampler::sort_all() {
    std::sort(cur_.begin(), cur_.begin() + static_cast<ptrdiff_t>(n_cur_), by_logit_desc);
    sorted_ = true;
}

// Keeps the k highest logits, sorted (nth_element then a sort of k, instead of sorting n_vocab).
void Sampler::apply_top_k() {
    if (params_.top_k <= 0) return;
    const size_t k = std::min(static_cast<size_t>(params_.top_k), n_cur_);
    if (!sorted_) {
        auto first = cur_.begin();
        auto kth = first + static_cast<ptrdiff_t>(k);
        if (k < n_cur_) std::nth_element(first, kth, first + static_cast<ptrdiff_t>(n_cur_), by_logit_desc);
        std::sort(first, kth, by_logit_desc);
        sorted_ = true;
    }
    n_cur_ = k;
}

// llama_sampler_softmax_impl: float exponentials relative to the max, float sum.
void Sampler::softmax() {
    float max_l = cur_[0].logit;
    if (!sorted_)
        for (size_t i = 1; i < n_cur_; ++i) max_l = std::max(max_l, cur_[i].logit);
    float sum = 0.0f;
    for (size_t i = 0; i < n_cur_; ++i) {
        const float e = std::exp(cur_[i].logit - max_l);
        cur_[i].p = e;
        sum += e;
    }
    for (size_t i = 0; i < n_cur_; ++i) cur_[i].p /= sum;
}

// Nucleus sampling (Holtzman et al. 2019) as llama.cpp cuts it: the shortest most-likely-first
// prefix whose float running sum reaches top_p.
void Sampler::apply_top_p() {
    if (params_.top_p >= 1.0f) return;
    if (!sorted_) sort_all();
    softmax();
    float cum = 0.0f;
    size_t last = n_cur_;
    for (size_t i = 0; i < n_cur_; ++i) {
        cum += cur_[i].p;
        if (cum >= params_.top_p) {
            last = i + 1;
            break;
        }
    }
    n_cur_ = last;
}

// Min-p: p_i >= min_p * p_max, tested in logit space as llama.cpp does:
// logit_i >= logit_max + log(min_p). The max itself always survives.
void Sampler::apply_min_p() {
    if (params_.min_p <= 0.0f) return;
    if (sorted_) {
        const float min_logit = cur_[0].logit + std::log(params_.min_p);
        size_t i = 1;
        while (i < n_cur_ && cur_[i].logit >= min_logit) ++i;
        n_cur_ = i;
        return;
    }
    float max_l = cur_[0].logit;
    for (size_t i = 1; i < n_cur_; ++i) max_l = std::max(max_l, cur_[i].logit);
    const float min_logit = max_l + std::log(params_.min_p);
    size_t n = 0;
    for (size_t i = 0; i < n_cur_; ++i)
        if (cur_[i].logit >= min_logit) cur_[n++] = cur_[i];
    n_cur_ = n;
}

// Inverse CDF over unnormalised weights exp(logit - max), summed in double, against one uniform
// draw in [0, 1): the first candidate whose running sum reaches u * total. This is the walk
// llama.cpp's dist sampler makes; the weights are normalised afterwards for candidates().
int32_t Sampler::draw() {
    float max_l = cur_[0].logit;
    if (!sorted_)
        for (size_t i = 1; i < n_cur_; ++i) max_l = std::max(max_l, cur_[i].logit);
    double total = 0.0;
    for (size_t i = 0; i < n_cur_; ++i) {
        cur_[i].p = std::exp(cur_[i].logit - max_l);
        total += cur_[i].p;
    }
    std::uniform_real_distribution<double> uniform(0.0, 1.0);
    const double target = total * uniform(rng_);
    // Rounding can leave the running sum a hair short of the target: fall back to the last one.
    size_t chosen = n_cur_ - 1;
    double run = 0.0;
    for (size_t i = 0; i < n_cur_; ++i) {
        run += cur_[i].p;
        if (run >= target) {
            chosen = i;
            break;
        }
    }
    if (!(total > 0.0) || !std::isfinite(total)) chosen = 0;  // all -inf: nothing better than the first
    for (size_t i = 0; i < n_cur_; ++i) cur_[i].p = static_cast<float>(cur_[i].p / total);
    return cur_[chosen].id;
}

int32_t Sampler::sample(const float* logits) {
    if (!logits) fail("sampler: sample: logits is null");
    n_cur_ = static_cast<size_t>(n_vocab_);
    for (size_t i = 0; i < n_cur_; ++i) {
        const float l = logits[i];
        cur_[i] = {static_cast<int32_t>(i), std::isnan(l) ? -std::numeric_limits<float>::infinity() : l, 0.0f};
    }
    sorted_ = false;
    apply_penalties();

    if (params_.temp <= 0.0f) {
        // Strict > keeps the lowest id among equal maxima.
        size_t best = 0;
        for (size_t i = 1; i < n_cur_; ++i)
            if (cur_[i].logit > cur_[best].logit) best = i;
        cur_[0] = {cur_[best].id, cur_[best].logit, 1.0f};
        n_cur_ = 1;
        sorted_ = true;
        return cur_[0].id;
    }

    apply_top_k();
    apply_top_p();
    apply_min_p();
    for (size_t i = 0; i < n_cur_; ++i) cur_[i].logit /= params_.temp;
    return draw();
}

} // namespace slm
