// speculative_impl.cpp - drafting and the accept/reject decision shared by generate_speculative
// and the serve scheduler (see runtime/speculative_impl.h).
#include "runtime/speculative_impl.h"

#include <algorithm>
#include <cmath>

namespace slm::spec {

namespace {

// Probability of the most likely token under the raw logits (softmax at temperature 1).
float top_prob(const float* logits, int32_t n) {
    const float mx = *std::max_element(logits, logits + n);
    double sum = 0;
    for (int32_t i = 0; i < n; ++i) sum += std::exp(double(logits[i]) - mx);
    return static_cast<float>(1.0 / sum);
}

} // namespace

SamplerParams draft_sampler_params(const SamplerParams& target, const SpeculativeParams& sp) {
    SamplerParams d = target;
    d.repeat_penalty = 1.0f;
    d.freq_penalty = d.presence_penalty = 0.0f;
    d.penalty_last_n = 0;
    d.seed = target.seed ^ 0x9E3779B97F4A7C15ull;
    if (target.temp > 0 && sp.draft_temp >= 0) d.temp = sp.draft_temp;
    return d;
}

std::vector<int32_t> lookup_draft(std::span<const int32_t> hist, const SpeculativeParams& sp, size_t k) {
    std::vector<int32_t> out;
    const size_t h = hist.size();
    for (size_t n = std::min<size_t>(sp.ngram_max, h > 0 ? h - 1 : 0); n >= size_t(sp.ngram_min) && n > 0; --n) {
        const int32_t* suffix = hist.data() + h - n;
        for (size_t j = h - n; j-- > 0;) {
            if (!std::equal(suffix, suffix + n, hist.data() + j)) continue;
            const size_t from = j + n, to = std::min(h, from + k);
            out.assign(hist.begin() + from, hist.begin() + to);
            return out;
        }
    }
    return out;
}

int32_t draft_token(Sampler& dsamp, const float* dl, const SpeculativeParams& sp, std::vector<std::vector<TokenProb>>* q) {
    const int32_t d = dsamp.sample(dl);
    const bool dgreedy = dsamp.params().temp <= 0;
    float sure = 1;
    if (dgreedy && sp.draft_p_min > 0) sure = top_prob(dl, dsamp.n_vocab());
    if (!dgreedy)
        for (const TokenProb& c : dsamp.candidates())
            if (c.id == d) sure = c.p;
    if (sure < sp.draft_p_min) return -1;
    if (q) q->emplace_back(dsamp.candidates().begin(), dsamp.candidates().end());
    return d;
}

Verifier::Verifier(uint64_t seed, int32_t n_vocab) : n_vocab_(n_vocab), rng_(seed + 0x5bd1e995ull), qdense_(n_vocab, 0.0f) {}

Verdict Verifier::verify(Sampler& tsamp, const float* rows, std::span<const int32_t> drafts,
                         std::span<const std::vector<TokenProb>> q) {
    const bool greedy = tsamp.params().temp <= 0;
    Verdict v;
    for (size_t i = 0; i <= drafts.size(); ++i) {
        const float* row = rows + i * size_t(n_vocab_);
        const int32_t t = tsamp.sample(row);
        if (i == drafts.size()) {  // every draft kept: the target's own next token
            v.next = t;
            break;
        }
        const int32_t d = drafts[i];
        bool keep;
        if (greedy) {
            keep = t == d;
            if (!keep) v.next = t;
        } else {
            // p: the target's distribution after its chain; q: the drafter's (lookup: d alone).
            const auto cand = tsamp.candidates();
            float pd = 0;
            for (const TokenProb& c : cand)
                if (c.id == d) pd = c.p;
            if (q.empty()) {
                qdense_[d] = 1;
            } else {
                for (const TokenProb& c : q[i]) qdense_[c.id] = c.p;
            }
            const float qd = qdense_[d];
            keep = qd > 0 && unif_(rng_) * qd < pd;
            if (!keep) {
                // Residual max(0, p - q), renormalised; q outside p's support adds nothing.
                resid_.resize(cand.size());
                double sum = 0;
                for (size_t c = 0; c < cand.size(); ++c) sum += resid_[c] = std::max(0.0f, cand[c].p - qdense_[cand[c].id]);
                if (sum > 0) {
                    double u = unif_(rng_) * sum;
                    v.next = cand.back().id;
                    for (size_t c = 0; c < cand.size(); ++c) {
                        if (resid_[c] <= 0) continue;
                        v.next = cand[c].id;
                        if ((u -= resid_[c]) < 0) break;
                    }
                } else {
                    v.next = t;  // p == q up to rounding: p itself
                }
            }
            if (q.empty()) {
                qdense_[d] = 0;
            } else {
                for (const TokenProb& c : q[i]) qdense_[c.id] = 0;
            }
        }
        if (!keep) break;
        ++v.n_accepted;
        tsamp.accept(d);
    }
    return v;
}

} // namespace slm::spec
