// slm/speculative.h - speculative decoding: a cheap drafter proposes up to K tokens, the target
// model checks them all in one batched pass and keeps the longest acceptable prefix plus one
// token of its own, so each pass of the (expensive) target yields one to K + 1 tokens.
//
//   auto target = slm::Model::load("big.gguf"), draft = slm::Model::load("small.gguf");
//   slm::check_draft_vocab(*target, *draft);
//   slm::Session ts(target, so), ds(draft, so);
//   slm::SpeculativeParams sp;                 // sp.draft_max = 8
//   slm::SpeculativeResult r = slm::generate_speculative(ts, &ds, prompt, gp, sp, on_text);
//   // or without a second model: sp.lookup = true, draft session nullptr (prompt lookup)
//
// Greedy (temp <= 0): a drafted token is kept when it is the target's argmax, so the output is
// token for token what slm::generate gives. Sampling: the drafted token d, drawn from the
// drafter's distribution q (its sampler chain, without penalties), is kept with probability
// min(1, p(d) / q(d)), p being the target's distribution after its whole chain; on rejection the
// replacement is drawn from max(0, p - q) renormalised (Leviathan et al. 2023, Chen et al. 2023),
// so every token is distributed exactly as the target alone would draw it. Prompt lookup proposes
// deterministically (q is one token with probability 1).
#pragma once

#include "slm/generate.h"
#include "slm/model.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace slm {

struct SpeculativeParams {
    int32_t draft_max = 16;      // most tokens drafted per target pass (K)
    float draft_p_min = 0.0f;    // stop drafting once the drafter's top token has probability < this
    float draft_temp = -1.0f;    // sampling: the drafter's temperature (< 0: the target's; 0: greedy
                                 // drafts); a greedy target always drafts greedily
    bool adaptive = false;       // draft length follows acceptance: kept + 1 after a rejection,
                                 // doubled (up to draft_max) after a full accept
    bool lookup = false;         // draft by prompt lookup instead of a draft model
    int32_t ngram_max = 3;       // lookup: longest suffix n-gram searched for in the history
    int32_t ngram_min = 1;       // lookup: shortest
};

// Throws slm::Error naming the first invalid parameter.
void validate_speculative_params(const SpeculativeParams& p);

struct SpeculativeStats {
    uint64_t n_drafted = 0;        // tokens proposed to the target
    uint64_t n_accepted = 0;       // of those, kept
    uint64_t n_target_passes = 0;  // target forward passes after the prompt (verification passes)
    uint64_t n_draft_passes = 0;   // draft-model forward passes (0 for lookup)
    double acceptance() const { return n_drafted ? double(n_accepted) / double(n_drafted) : 0; }
};

struct SpeculativeResult {
    GenerateResult gen;            // tokens, text, stop reason, timings (as slm::generate's)
    SpeculativeStats spec;
    // Generated tokens per target pass, counting the first token (from the prompt's pass).
    double tokens_per_pass() const {
        return spec.n_target_passes ? double(gen.stats.n_gen) / double(spec.n_target_passes + 1) : 0;
    }
};

// Throws slm::Error naming both files unless the draft's vocabulary is the target's (same
// number of tokens and the same text for every token).
void check_draft_vocab(const Model& target, const Model& draft);

// As slm::generate (same parameters, callback, stop strings and stop reasons) with speculative
// decoding. `draft` is the draft model's session (nullptr with params.lookup); both sessions are
// appended to from their current n_past, which must be equal; the draft's context must be at
// least the target's. Throws slm::Error for recurrent targets (they cannot take back rejected
// tokens) and on a vocabulary mismatch.
SpeculativeResult generate_speculative(Session& target, Session* draft, std::span<const int32_t> prompt,
                                       const GenerateParams& params, const SpeculativeParams& spec,
                                       const std::function<bool(std::string_view)>& on_text = nullptr);

// Speed of speculative against plain decoding in one run: the same prompt generated `reps` times
// (after one warm-up each) with slm::generate and with generate_speculative, fresh sessions each
// time; ignore_eos keeps every run at n_gen tokens.
struct SpeculativeBenchResult {
    double plain_tps = 0, plain_tps_sd = 0;   // decode tokens/s without a drafter
    double spec_tps = 0, spec_tps_sd = 0;     // with
    double acceptance = 0;                    // accepted / drafted, over all measured runs
    double tokens_per_pass = 0;               // generated tokens per target pass
    bool same_output = false;                 // greedy: every speculative run produced the plain tokens
    double speedup() const { return plain_tps > 0 ? spec_tps / plain_tps : 0; }
};
SpeculativeBenchResult bench_speculative(const std::shared_ptr<const Model>& target,
                                         const std::shared_ptr<const Model>& draft, std::span<const int32_t> prompt,
                                         const GenerateParams& params, const SpeculativeParams& spec,
                                         const SessionOptions& so, int reps);

} // namespace slm
