// slm/generate.h - the generation loop: prompt in one pass, then sample token by token.
//
//   slm::GenerateParams gp;
//   gp.n_predict = 200;
//   gp.sampling.temp = 0;                                     // greedy
//   slm::GenerateResult r = slm::generate(session, prompt_ids, gp,
//       [](std::string_view text) { fwrite(text.data(), 1, text.size(), stdout); return true; });
//
// Text reaches the callback as whole UTF-8 characters (a character split across tokens is held
// back until complete), and never includes a stop string or anything after it.
#pragma once

#include "slm/model.h"
#include "slm/sampler.h"

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

struct GenerateParams {
    int32_t n_predict = 256;          // most tokens to generate; < 0 = until end of generation or context
    SamplerParams sampling;           // temp <= 0 is greedy
    std::vector<std::string> stop;    // stop strings: generation ends where one appears in the text
    bool ignore_eos = false;          // keep going past end-of-generation tokens
    // When the context is full: stop ("context"), or, with context_shift, forget half of the
    // positions after the first n_keep (attention sinks) and go on (Session::context_shift), so
    // generation runs at constant memory for as long as n_predict says.
    bool context_shift = false;
    uint32_t n_keep = 4;
};

struct GenerateStats {
    uint32_t n_prompt = 0;            // prompt tokens evaluated
    double prompt_ms = 0;             // prompt evaluation (one batched pass)
    double ttft_ms = 0;               // start to first generated token sampled
    uint32_t n_gen = 0;               // tokens generated
    double gen_ms = 0;                // from first generated token to the last
    uint32_t n_shifts = 0;            // context shifts (GenerateParams::context_shift)
    double prompt_tps() const { return prompt_ms > 0 ? n_prompt * 1000.0 / prompt_ms : 0; }
    // Decode speed: tokens after the first, over the time they took (the first is the prompt's).
    double gen_tps() const { return gen_ms > 0 && n_gen > 1 ? (n_gen - 1) * 1000.0 / gen_ms : 0; }
};

struct GenerateResult {
    std::vector<int32_t> tokens;      // generated ids (including a final end-of-generation token)
    std::string text;                 // generated text, cut at a stop string
    std::string stop_reason;          // "eog", "stop", "length" or "context"
    GenerateStats stats;
};

// Evaluates `prompt` (appended to what the session holds) and generates. The callback receives
// text as it becomes final; returning false stops generation ("stop" reason "callback").
GenerateResult generate(Session& session, std::span<const int32_t> prompt, const GenerateParams& params,
                        const std::function<bool(std::string_view)>& on_text = nullptr);

// Peak resident set size of this process in bytes (getrusage).
size_t peak_rss_bytes();

} // namespace slm
