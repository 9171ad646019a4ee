// awq.h - AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization for LLM
// Compression and Acceleration"): per input channel scales s that protect the weights of the
// channels with large activations, searched on calibration statistics and folded into the
// layer before (norm weights /= s, or a linear's output rows /= s), so that the unquantized
// model computes the same function and only the rounding sees W diag(s).
//
//   compress::ActivationStats stats({.hessian = true});
//   compress::run_calibration(model, calib, stats, 0, nullptr);
//   stats.finish();
//   compress::AwqResult r = compress::awq_search(gguf, stats, [](const std::string&) { return GGMLType::Q4_0; }, {}, &pool);
//   // r.tensors: the new F32 values of every changed tensor; quantize those instead of the file's.
//
// The loss of a candidate s is the output error the quantization leaves, summed over the linears
// that read the input: sum ||(W - Q(W diag s) diag(s)^-1) X^T||^2 = tr(dW H dW^T) with H = X^T X
// from the calibration (closed form, no stored rows). Q is quantize-dequantize to the type the
// tensor will get (type_of(name)) with the type's reference quantizer.
//
// Candidates: for alpha in {0, 1/n, ..., (n-1)/n} both published forms, llm-awq's
// s = x_mean^alpha and AutoAWQ's s = x_mean^alpha / w_mean^(1-alpha), each normalized by
// sqrt(max s * min s); and s = 1. The winner has the least sum over the linears of each one's
// error relative to its own unscaled error (summed raw, attn_q, the widest, decided alone and
// traded k and v errors for its own, which made stories260K worse), so a pair is never made
// worse than unscaled on the calibration data, and each pair gets whichever form suits it.
//
// Pairs per layer of llama-family files (llama, qwen2, qwen3, phi3, gemma, gemma2, gemma3,
// granite, openelm): attn_norm -> {attn_q, attn_k, attn_v | attn_qkv}; attn_v -> attn_output
// when v's output width equals attn_output's input (no GQA sharing; as llm-awq, skipped
// otherwise, and for a fused attn_qkv); ffn_norm -> {ffn_gate, ffn_up} (Phi-3's fused
// ffn_up); ffn_up -> ffn_down (for Phi-3 the up half of the fused ffn_up); and, once per
// model, output_norm -> output.weight (llm-awq keeps the LM head in 16 bits, a GGUF quantizes
// it; not with tied embeddings, since token_embd is also looked up). Other
// architectures, and pairs whose tensors or statistics are missing, are skipped with a log line.
//
// Clipping (AwqParams::clip, llm-awq's auto_clip): after scaling, for every linear except
// attn_q/attn_k (whose errors softmax amplifies differently, as llm-awq), every output row and
// every block of the target type, the weights are clamped to +-r*max|w| with the r in
// {1, 0.975, ..., 0.5} that minimizes the block's output error w_g H_gg w_g^T. Clipping changes
// the function slightly by design; with clip = false the result is exact up to float rounding.
#pragma once

#include "compress/calib.h"
#include "slm/gguf.h"
#include "slm/types.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::compress {

struct AwqParams {
    int n_grid = 20;            // alpha in {0, 1/n, ..., (n-1)/n}
    bool clip = true;           // also search a per-group clipping range (llm-awq auto_clip)
};

struct AwqResult {
    std::map<std::string, std::vector<float>> tensors;  // new F32 values of every changed tensor
    std::vector<std::string> log;                        // "blk.0 attn_in: alpha 0.45, loss 1.2e-3 -> 8.1e-4"
};

// Searches AWQ scales for every (norm or linear -> linears) pair of every layer it knows, on
// the calibration statistics (needs ActivationStats with the Hessian), against quantization to
// the type each weight will get (`type_of(name)`), and returns the scaled weights and folded
// norms. The unquantized model computes the same function (exactly when p.clip is false).
AwqResult awq_search(const GGUFFile& model, const ActivationStats& stats,
                     const std::function<GGMLType(const std::string&)>& type_of, const AwqParams& p,
                     ThreadPool* pool);

// ---- the pieces, for tests and other callers ------------------------------------------------

// One linear reading the pair's input: row-major n_out x n_in, quantized to `type`.
struct AwqLinear {
    std::string name;
    const float* w = nullptr;
    int64_t n_out = 0;
    GGMLType type = GGMLType::Q4_0;
};

struct AwqScales {
    std::vector<float> s;       // n_in scales (all 1 when no candidate beat s = 1)
    double loss_before = 0.0;   // the loss with s = 1, per calibration row
    double loss_after = 0.0;    // with s
    float alpha = 0.0f;         // the winning alpha (meaningless when s = 1)
    bool duo = false;           // true: x_mean^alpha / w_mean^(1-alpha); false: x_mean^alpha
    bool identity = true;       // s = 1 won
};

// The scale search for the linears reading one input with statistics x (x.hessian must be set).
AwqScales awq_search_scales(const std::vector<AwqLinear>& linears, const InputStats& x, const AwqParams& p,
                            ThreadPool* pool);

// The output error sum tr(dW H dW^T) / n_rows of quantizing the linears with scales s
// (nullptr = 1).
double awq_loss(const std::vector<AwqLinear>& linears, const InputStats& x, const float* s, ThreadPool* pool);

// llm-awq's auto_clip on one scaled linear (w, n_out x x.n_in, modified in place). Returns the
// summed block output error before and after, per calibration row.
std::pair<double, double> awq_clip(float* w, int64_t n_out, GGMLType type, const InputStats& x, ThreadPool* pool);

} // namespace slm::compress
