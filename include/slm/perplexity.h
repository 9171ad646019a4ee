// slm/perplexity.h - perplexity, bits per byte and KL divergence of a model on a text, computed as
// llama.cpp's llama-perplexity computes them, so figures compare one to one.
//
//   auto model = slm::Model::load("models/stories260K/stories260K.gguf");
//   slm::PerplexityParams p;
//   p.n_ctx = 256;                                    // -c
//   slm::PerplexityResult r = slm::perplexity(model, text, p);
//   std::printf("PPL = %.4f +/- %.5f, %.4f bits/byte\n", r.ppl, r.ppl_se, r.bpb);
//
//   p.save_logits = "base.bin";                       // keep the reference distribution...
//   slm::perplexity(model, text, p);
//   slm::KLDivergenceParams k;
//   k.base_path = "base.bin";                         // ...and compare another model with it
//   slm::KLDivergenceResult d = slm::kl_divergence(slm::Model::load("q4_0.gguf"), k);
//
// Chunked perplexity (llama-perplexity's default): the text is tokenized once (with BOS), cut into
// chunks of n_ctx tokens; each chunk is evaluated alone with its first token replaced by BOS, and
// only the tokens of its second half are scored, so every scored token has at least n_ctx/2
// tokens of context. PPL = exp(mean NLL); its error is PPL * sd(NLL) / sqrt(n - 1).
//
// Strided perplexity (stride > 0): Hugging Face's "Perplexity of fixed-length models" loop, for
// comparing with Python: windows of n_ctx tokens start every `stride` tokens, each evaluated from
// scratch without an inserted BOS, and each window scores only the tokens the previous one did not
// reach, so every token but the first is scored exactly once (with stride == n_ctx the windows do
// not overlap and, as in that loop, each window's first token is not scored).
//
// The base file (save_logits) has llama-perplexity's --kl-divergence-base layout, so either program
// reads the other's: "_logits_", n_ctx, n_vocab, n_chunk, the chunks' tokens, then per scored token
// two floats (scale, min_log_prob) and n_vocab uint16 quantized log-probabilities (2 bytes per
// vocabulary entry per token; layout in src/formats/logits_file.h). The only difference: when the
// scored token's logit is more than 16 below the top one, slm widens that row's range to keep it,
// where llama.cpp stores it as the floor (which makes PPL(base) low on text the model finds odd).
//
// Bits per byte (as lm-evaluation-harness reports it) = sum NLL / (ln 2 * bytes of the scored
// tokens' text); it does not depend on the tokenizer, so models with different vocabularies compare.
#pragma once

#include "slm/model.h"
#include "slm/types.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slm {

struct PerplexityParams {
    uint32_t n_ctx = 512;              // -c: tokens per chunk (window length in strided mode)
    int n_chunks = -1;                 // --chunks: most chunks (windows) scored; -1 = all
    uint32_t stride = 0;               // --stride: 0 = llama.cpp chunks; 256 = HF sliding window
    uint32_t n_batch = 2048;           // -b: most tokens per forward pass
    int n_threads = 0;                 // -t: 0 = one per physical core
    GGMLType kv_type = GGMLType::F16;  // KV cache type: F16 as llama.cpp, or F32
    std::string save_logits;           // --save-logits: write the base file for kl_divergence ("" = no)
};

// One chunk (or window) as it is finished. Running figures cover every chunk so far.
struct PerplexityChunk {
    int index = 0;          // 0-based
    size_t n_scored = 0;    // tokens scored in this chunk: n_ctx - 1 - n_ctx/2 for chunks
    double nll_sum = 0;     // of this chunk's scored tokens, nats
    size_t n_bytes = 0;     // bytes of this chunk's scored tokens
    double ppl = 0;         // exp(nll_sum / n_scored): this chunk alone
    double ppl_running = 0; // running estimate over chunks 0..index (what llama-perplexity prints)
};

struct PerplexityResult {
    size_t n_text_tokens = 0;  // tokens in the whole text (with BOS)
    uint32_t n_ctx = 0;
    uint32_t stride = 0;
    int n_chunk = 0;           // chunks (windows) evaluated
    size_t n_scored = 0;       // tokens scored
    size_t n_bytes = 0;        // bytes of the scored tokens' text
    double nll = 0, nll_se = 0;  // mean negative log-likelihood per token (nats) and its standard error
    double ppl = 0, ppl_se = 0;  // exp(nll), and ppl * nll_se
    double bpb = 0, bpb_se = 0;  // bits per byte, and its error (byte count taken as exact)
    double seconds = 0;
    std::vector<PerplexityChunk> chunks;
};

// Called after each chunk with the chunk and the number of chunks in all.
using PerplexityProgress = std::function<void(const PerplexityChunk& chunk, int n_chunk)>;

// Throws slm::Error if the text is too short (chunked: fewer than 2 * n_ctx tokens, as
// llama-perplexity; strided: fewer than 2 tokens), n_ctx < 3 or beyond what a session can hold,
// stride > n_ctx, or the base file cannot be written.
PerplexityResult perplexity(std::shared_ptr<const Model> model, std::string_view text, const PerplexityParams& params,
                            const PerplexityProgress& progress = {});

struct KLDivergenceParams {
    std::string base_path;             // --kl-divergence: base file written with save_logits
    int n_chunks = -1;                 // --chunks: most chunks of the base file used; -1 = all
    uint32_t n_batch = 2048;           // -b
    int n_threads = 0;                 // -t
    GGMLType kv_type = GGMLType::F16;  // KV cache type
};

// A mean with its standard error.
struct Estimate {
    double value = 0;
    double se = 0;
};

// Running figures after each chunk (llama-perplexity's per-chunk KLD table).
struct KLDivergenceChunk {
    int index = 0;
    Estimate ppl;        // PPL(Q) so far
    Estimate ln_ratio;   // ln(PPL(Q)/PPL(base)) so far
    Estimate kld;        // mean KLD so far
    Estimate rms_dp;     // RMS of p(Q) - p(base) of the right token, as a fraction
    Estimate same_top;   // fraction of tokens whose most likely token is the same
};

struct KLDivergenceResult {
    uint32_t n_ctx = 0;
    int n_chunk = 0;
    size_t n_scored = 0;
    Estimate ppl, ppl_base;   // PPL(Q), PPL(base)
    double cor = 0;           // correlation of ln PPL(Q) and ln PPL(base)
    Estimate ln_ratio;        // mean ln(PPL(Q)/PPL(base)), error with the covariance
    Estimate ratio;           // PPL(Q)/PPL(base)
    Estimate ppl_diff;        // PPL(Q) - PPL(base) (ΔPPL)
    Estimate kld;             // mean KL(base || Q) per token, nats
    Estimate dp;              // mean Δp = p_Q(token) - p_base(token), as a fraction
    Estimate rms_dp;          // RMS Δp
    Estimate same_top;        // fraction with the same argmax
    // (fraction, value) pairs: 0 = minimum, 0.5 = median, 1 = maximum. KLD at 0, .001, .01, .05, .1,
    // .5, .9, .95, .99, .999, 1; Δp at 0, .001, .01, .05, .1, .25, .5, .75, .9, .95, .99, .999, 1.
    std::vector<std::pair<double, double>> kld_percentiles, dp_percentiles;
    double seconds = 0;
    std::vector<KLDivergenceChunk> chunks;

    double kld_at(double fraction) const;  // from kld_percentiles; throws if that fraction is not there
    double dp_at(double fraction) const;
};

using KLDivergenceProgress = std::function<void(const KLDivergenceChunk& chunk, int n_chunk)>;

// Evaluates `model` on the tokens stored in the base file and compares its distribution with the
// stored one, token by token. Throws slm::Error naming the file and field for a missing, truncated
// or corrupt base file, or a model whose vocabulary size differs from the file's.
KLDivergenceResult kl_divergence(std::shared_ptr<const Model> model, const KLDivergenceParams& params,
                                 const KLDivergenceProgress& progress = {});

} // namespace slm
