// slm/passkey.h - long-context retrieval ("needle in a haystack"): a five-digit pass key is
// stated once somewhere in a long run of filler text, and the model is asked for it at the end.
//
//   auto model = slm::Model::load("model.gguf");
//   slm::Session s(model, {});
//   slm::PasskeyParams p;
//   p.lengths = {1024, 4096};  p.depths = {0, 0.5, 1};  p.n_trials = 5;
//   slm::PasskeyResult r = slm::run_passkey(s, p);
//   std::fputs(slm::passkey_table(r).c_str(), stdout);        // accuracy per length x depth
//
// Each trial's prompt is an instruction, filler sentences (a short cycle, one per line) with the
// key line between two of them, and a question, sized to the target length in tokens of the model's
// own tokenizer. The answer is generated greedily (a few tokens, up to a newline) and counts as
// retrieved when the key appears in it as a whole number.
#pragma once

#include "slm/model.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

struct PasskeyParams {
    // Context used by a trial, in tokens: its prompt (up to length - n_predict tokens) and answer.
    std::vector<uint32_t> lengths = {128, 256, 512};
    std::vector<double> depths = {0, 0.25, 0.5, 0.75, 1};  // where the key goes: 0 = start, 1 = end of the filler
    int n_trials = 5;          // keys per (length, depth) cell
    uint64_t seed = 1234;      // keys are a function of (seed, length, depth, trial)
    int n_predict = 8;         // most tokens generated per answer
    size_t limit = 0;          // run at most this many trials in all (cells in order); 0 = all
};

// One trial's prompt.
struct PasskeyPrompt {
    std::string text;              // the whole prompt
    std::vector<int32_t> tokens;   // its tokens, with BOS if the vocab adds one
    std::string key;               // the five digits
    uint32_t n_filler = 0;         // filler sentences in the prompt
    uint32_t n_filler_before = 0;  // of those, before the key line: round(depth * n_filler)
    size_t key_offset = 0;         // byte offset of the key line in text
};

// The prompt for `key` at relative `depth` with as many filler sentences as fit in
// `target_tokens` tokens: its length is at most target_tokens and more than target_tokens minus
// one filler sentence's tokens (minus a token or two where the tokenizer merges across the
// joins). Throws slm::Error if the instruction, key line and question alone exceed the target,
// or if depth is outside [0, 1] or the key is not five digits.
PasskeyPrompt build_passkey_prompt(const Vocab& vocab, uint32_t target_tokens, double depth, const std::string& key);

// The key of one trial: five digits (10000-99999), a fixed function of its arguments.
std::string passkey_key(uint64_t seed, uint32_t length, double depth, int trial);

// True when `key` appears in `answer` as a whole number: a run of digits equal to it, not part of
// a longer run ("48213" is found in "is 48213.", not in "148213").
bool passkey_found(std::string_view answer, std::string_view key);

struct PasskeyTrial {
    uint32_t length = 0;       // its cell's length (the prompt is at most length - n_predict tokens)
    double depth = 0;
    int trial = 0;             // 0-based within its cell
    std::string key;
    uint32_t n_prompt = 0;     // prompt tokens
    uint32_t n_reused = 0;     // of those, taken from the KV cache of the previous trial
    std::string answer;        // generated text
    bool found = false;
};

struct PasskeyCell {
    uint32_t length = 0;
    double depth = 0;
    int n = 0;                 // trials run
    int n_found = 0;
    double accuracy() const { return n > 0 ? double(n_found) / n : 0; }
    // Binomial standard error of the accuracy: sqrt(p (1 - p) / n).
    double stderr_acc() const;
};

struct PasskeyResult {
    std::vector<PasskeyTrial> trials;
    std::vector<PasskeyCell> cells;  // lengths x depths in order; cells past --limit have n = 0
    PasskeyCell overall;             // every trial (length and depth 0)
    uint32_t n_ctx = 0;              // the session's context
    uint64_t n_prompt_tokens = 0;    // prompt tokens of all trials
    uint64_t n_eval_tokens = 0;      // of those, evaluated (the rest came from the KV cache)
    double seconds = 0;
};

// Runs every (length, depth, trial) on `session`, which is reset first (its n_ctx bounds the
// lengths: a longer one is refused before anything runs); a trial's prompt is built for length - n_predict tokens. Trials run in order, each reusing the KV
// cache for the tokens its prompt shares with the previous one (a recurrent model, which cannot
// forget part of its state, re-evaluates from the start). `on_trial` is called after each trial
// with the trials done and the total.
PasskeyResult run_passkey(Session& session, const PasskeyParams& params,
                          const std::function<void(size_t done, size_t total)>& on_trial = nullptr);

// The result as a text table: one row per length, one column per depth, each cell
// "accuracy ± standard error" over its trials, then the overall accuracy.
std::string passkey_table(const PasskeyResult& result);

} // namespace slm
