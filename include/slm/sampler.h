// slm/sampler.h - pick the next token from a row of logits, as llama.cpp's default sampler chain does.
//
//   slm::SamplerParams sp;                      // llama.cpp's defaults: temp 0.8, top-k 40, ...
//   sp.seed = 1234;
//   slm::Sampler sampler(sp, n_vocab);
//   for (int32_t t : prompt) sampler.accept(t);  // the prompt counts for the repetition penalties
//   int32_t next = sampler.sample(logits);      // logits: n_vocab floats
//   sampler.accept(next);
//
// The chain is llama.cpp's (common/sampling.cpp, src/llama-sampling.cpp) restricted to the
// samplers named here, in its order: penalties -> top-k -> top-p -> min-p -> temperature -> draw.
// temp <= 0 is greedy: the argmax of the penalised logits, ties going to the lowest id.
//
// The draw is an inverse-CDF walk over the surviving candidates (most likely first) with one
// std::uniform_real_distribution<double> value from a std::mt19937 seeded with `seed`. The same
// seed and the same logits give the same tokens on every run; the seed is for repeatability only,
// and a given seed is not promised to pick the same tokens as llama.cpp does with that seed.
//
// After construction nothing is allocated: sample() works in buffers sized for n_vocab.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace slm {

// Defaults are llama.cpp's common_params_sampling.
struct SamplerParams {
    float temp = 0.8f;              // logits are divided by temp; <= 0 means greedy
    int32_t top_k = 40;             // keep the k most likely; 0 = keep all
    float top_p = 0.95f;            // keep the smallest prefix with probability mass >= top_p; 1 = off
    float min_p = 0.05f;            // keep tokens with p >= min_p * p_max; 0 = off
    float repeat_penalty = 1.0f;    // divides positive / multiplies negative logits of seen tokens; 1 = off
    float freq_penalty = 0.0f;      // subtracted once per occurrence in the window; 0 = off
    float presence_penalty = 0.0f;  // subtracted once if the token occurs in the window; 0 = off
    int32_t penalty_last_n = 64;    // the penalty window: this many last accepted tokens; 0 = off
    uint64_t seed = 42;             // fixed by default so runs repeat; llama.cpp's default is random
};

// Throws slm::Error naming the first invalid parameter (e.g. "sampler: top_p = 1.5 must be in (0, 1]").
void validate_sampler_params(const SamplerParams& p);

// One candidate token as the chain leaves it: its logit after penalties and temperature, and its
// probability among the survivors.
struct TokenProb {
    int32_t id;
    float logit;
    float p;
};

class Sampler {
public:
    // Validates `params` (see validate_sampler_params) and n_vocab > 0.
    Sampler(const SamplerParams& params, int32_t n_vocab);

    // Runs the chain on n_vocab logits (not modified) and returns the chosen token id.
    // Does not record the token: call accept() with whatever token is finally used.
    int32_t sample(const float* logits);

    // Adds a token to the penalty history (prompt tokens and generated tokens alike).
    // Throws slm::Error if token is outside [0, n_vocab).
    void accept(int32_t token);

    // Forgets the history and re-seeds the generator, as llama.cpp's sampler reset does.
    void reset();

    // The candidates that survived the last sample(), in the order the draw walked them (most
    // likely first once any filter sorted them, otherwise id order), p summing to 1.
    // Greedy leaves the single chosen token with p = 1.
    std::span<const TokenProb> candidates() const { return {cur_.data(), n_cur_}; }

    const SamplerParams& params() const { return params_; }
    int32_t n_vocab() const { return n_vocab_; }

private:
    SamplerParams params_;
    int32_t n_vocab_;
    std::mt19937 rng_;
    std::vector<TokenProb> cur_;    // n_vocab entries; the first n_cur_ are live
    size_t n_cur_ = 0;
    bool sorted_ = false;           // cur_[0, n_cur_) is in descending logit order
    std::vector<int32_t> counts_;   // occurrences of each id in the penalty window
    std::vector<int32_t> ring_;     // the window, penalty_last_n entries, oldest at ring_pos_
    size_t n_ring_ = 0;
    size_t ring_pos_ = 0;

    void apply_penalties();
    void apply_top_k();
    void apply_top_p();
    void apply_min_p();
    void sort_all();
    void softmax();
    int32_t draw();
};

} // namespace slm
