// blocks.h - the pieces transformer forward passes share: norms, RoPE, attention, FFN.
// Each follows the ggml op llama.cpp's graph uses, with the same float/double choices.
#pragma once

#include "models/arch.h"

#include <initializer_list>

namespace slm::blocks {

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w  for n_tokens rows of n (sum of squares in double,
// as ggml_rms_norm). w may be null (no scale).
void rms_norm(const float* x, const float* w, float* y, uint32_t n_tokens, int64_t n, float eps);

// y = W x for every token: Y (n_tokens x n_out) = X (n_tokens x n_in) @ W^T.
void matmul(SessionState& st, const ModelTensor& w, const float* x, float* y, uint32_t n_tokens);

// Several matmuls of the same input at once (Q/K/V, FFN gate/up): ys[i] = x @ ws[i]^T, with
// one conversion of x per activation type and one thread-pool pass for all of them.
void matmul_multi(SessionState& st, std::initializer_list<const ModelTensor*> ws, const float* x,
                  std::initializer_list<float*> ys, uint32_t n_tokens);

// Token embedding lookup: rows of token_embd (any supported type) as F32.
void get_rows(const ModelTensor& emb, const int32_t* tokens, uint32_t n_tokens, float* out);

// Fills st.rope_cache for positions pos0..pos0+n_tokens-1 exactly as ggml_rope_cache_init
// (theta advanced by repeated multiplication in float; optional per-pair frequency factors).
void rope_cache(SessionState& st, const HParams& hp, uint32_t pos0, uint32_t n_tokens, const float* freq_factors);

// The frequencies of one rope_cache: base and linear scale (Gemma 3's local layers have their
// own), and the attention factor ggml's rope multiplies cos and sin by (llama.cpp's
// yarn_attn_factor times rope.scaling.attn_factor: LongRoPE's sqrt(1 + ln s / ln n_ctx_orig)).
struct RopeFreqs {
    float base = 10000.0f;   // rope.freq_base
    float scale = 1.0f;      // 1 / linear scaling factor
    float attn_factor = 1.0f;
};
// rope_cache with explicit frequencies instead of hp.rope_freq_base / hp.rope_freq_scale.
void rope_cache(SessionState& st, const HParams& hp, uint32_t pos0, uint32_t n_tokens, const float* freq_factors,
                const RopeFreqs& rf);

// Rotates n_heads heads of head_dim in each token row of x (row stride `stride` floats).
void rope_apply(const SessionState& st, const HParams& hp, float* x, uint32_t n_tokens, uint32_t n_heads,
                uint32_t head_dim, size_t stride);

// Stores the K/V rows (hp.n_embd_k_gqa(il) / n_embd_v_gqa(il) floats each) of n_tokens tokens at
// rows st.n_past.. of layer il's cache (rows st.tok_row[t] when set).
void kv_store(SessionState& st, const HParams& hp, uint32_t il, const float* k, const float* v, uint32_t n_tokens);

// The context shift (StreamingLLM-style eviction) of one sequence whose rows are
// [base, base + n_past): forgets rows [n_keep, n_keep + n_discard) of every attention layer, moves
// the later rows down by n_discard and re-rotates their keys by -n_discard positions (RoPE with
// the layer's frequencies, ArchModel::layer_rope; a quantized or F16 row is dequantized, rotated
// and stored again). The moved keys then carry the positions of their new rows.
void kv_shift(SessionState& st, const HParams& hp, const ArchModel& arch, uint32_t base, uint32_t n_past, uint32_t n_keep,
              uint32_t n_discard);

// How a layer's attention scores are formed.
struct AttnParams {
    float scale = 1.0f;    // multiplies q . k (1/sqrt(head size) for most models)
    // Gemma 2: s -> softcap * tanh(s / softcap); 0 = off. Where the scale goes follows
    // llama.cpp: the F16-cache (flash) path caps the scaled score, softcap * tanh(q.k * scale /
    // softcap); the F32-cache path caps q.k and scales afterwards, scale * softcap * tanh(q.k /
    // softcap) (its graph soft-caps KQ before ggml_soft_max_ext). Gemma 2 pre-scales Q, scale 1.
    float softcap = 0.0f;
    uint32_t n_swa = 0;    // sliding window: a query at p sees keys p - n_swa < j <= p; 0 = all
};

// Causal attention of n_tokens queries (positions st.n_past..) over the cache of layer il:
// out[t][h] = softmax(q[t][h] . K[lo..pos] * scale) . V, with grouped KV heads (the layer's own
// head counts, hp.n_head_l(il) / hp.n_head_kv_l(il)); lo = 0, or pos - n_swa + 1 with a window.
void attention(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out, uint32_t n_tokens,
               const AttnParams& p);

// The first of the token rows of x (n rows of E) whose logits the forward pass computes: rows
// first..n-1. 0 with all_logits, else n - 1; with st.logit_sel, the selected rows are first moved
// (in order) to the end of x, so that first = n - n_logit_sel.
uint32_t first_logit_row(SessionState& st, float* x, uint32_t n, size_t E, bool all_logits);

// hb = silu(hb) * hb2, elementwise over n values (SwiGLU).
void swiglu(float* hb, const float* hb2, size_t n);

// hb = gelu(hb) * hb2 over n values (GeGLU, Gemma), as ggml_vec_geglu_f32 with GGML_GELU_FP16:
// tanh-GELU looked up in ggml's F16 table (argument rounded to F16, the value an F16), except
// 0 for x <= -10 and x itself for x >= 10.
void geglu(float* hb, const float* hb2, size_t n);
// The table: gelu_f16_table()[h] = f16(0.5 x (1 + tanhf(sqrt(2/pi) x (1 + 0.044715 x^2)))) for
// x = f32(h), in float as ggml_gelu_f32 (the x^2 term fused, as GCC contracts it).
const uint16_t* gelu_f16_table();

// x -> cap * tanh(x / cap) over n values (Gemma 2's final logit soft-cap), as llama.cpp's graph:
// ggml_scale by 1/cap (a float reciprocal), ggml_tanh, ggml_scale by cap.
void softcap(float* x, size_t n, float cap);

// x *= s over n values (ggml_scale).
void scale(float* x, size_t n, float s);

// y[t] += b for every token row t of n values (a linear layer's bias).
void add_bias(float* y, const float* b, uint32_t n_tokens, int64_t n);

// y += x over n values.
void add_inplace(float* y, const float* x, size_t n);

} // namespace slm::blocks
