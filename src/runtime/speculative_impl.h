// runtime/speculative_impl.h - the parts of speculative decoding that slm::generate_speculative
// (one sequence on Sessions) and the serve scheduler (slots of a BatchSession) share: the
// drafter's sampler, one drafted token, prompt lookup, and the accept/reject decision of a pass.
#pragma once

#include "slm/sampler.h"
#include "slm/speculative.h"

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace slm::spec {

// The drafter's sampling: the target's without penalties, so its distribution does not depend on
// a history it would have to take back on rejection (q is exactly what it drew from); its own
// seed; draft_temp when the target samples.
SamplerParams draft_sampler_params(const SamplerParams& target, const SpeculativeParams& sp);

// Prompt lookup: the most recent earlier occurrence of the history's last n tokens (longest n
// first) and what followed it, up to k tokens (none when nothing matches).
std::vector<int32_t> lookup_draft(std::span<const int32_t> hist, const SpeculativeParams& sp, size_t k);

// One drafted token from the draft model's logits `dl`, or -1 when the drafter is less sure than
// sp.draft_p_min (its raw top probability when it drafts greedily, else q(d)). With `q`, the
// drafter's distribution is appended to it (the target's acceptance test needs it when sampling).
int32_t draft_token(Sampler& dsamp, const float* dl, const SpeculativeParams& sp, std::vector<std::vector<TokenProb>>* q);

// The verdict of one target pass over [last token, d1..dk].
struct Verdict {
    size_t n_accepted = 0;  // d1..d_n_accepted are kept
    int32_t next = -1;      // the target's own token after them (replacement or bonus)
};

// Accept/reject of one pass, as the target alone would choose: `rows` holds drafts.size() + 1 rows
// of n_vocab logits (after the last token, then after each draft). Greedy (target temp <= 0): a
// draft is kept when it is the target's choice. Sampling: kept with probability min(1, p/q), p the
// target's distribution after its whole chain, q the drafter's (`q`, one entry per draft; empty
// for lookup: the draft alone with probability 1); on rejection `next` is drawn from
// max(0, p - q) renormalised. Every kept token is accept()ed into `tsamp` before the next row is
// sampled (penalties see it); `next` is not. One Verifier per sequence (its generator).
class Verifier {
public:
    Verifier(uint64_t seed, int32_t n_vocab);
    Verdict verify(Sampler& tsamp, const float* rows, std::span<const int32_t> drafts,
                   std::span<const std::vector<TokenProb>> q);

private:
    int32_t n_vocab_;
    std::mt19937_64 rng_;
    std::uniform_real_distribution<double> unif_{0.0, 1.0};
    std::vector<float> qdense_, resid_;
};

} // namespace slm::spec
