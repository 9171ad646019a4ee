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

// Rotates n_heads heads of head_dim in each token row of x (row stride `stride` floats).
void rope_apply(const SessionState& st, const HParams& hp, float* x, uint32_t n_tokens, uint32_t n_heads,
                uint32_t head_dim, size_t stride);

// Stores the K/V rows (hp.n_embd_k_gqa(il) / n_embd_v_gqa(il) floats each) of n_tokens tokens at
// positions st.n_past.. of layer il's cache.
void kv_store(SessionState& st, const HParams& hp, uint32_t il, const float* k, const float* v, uint32_t n_tokens);

// How a layer's attention scores are formed.
struct AttnParams {
    float scale = 1.0f;    // multiplies q . k (1/sqrt(head size) for most models)
    float softcap = 0.0f;  // Gemma 2: s -> softcap * tanh(s / softcap) after scaling; 0 = off
    uint32_t n_swa = 0;    // sliding window: a query at p sees keys p - n_swa < j <= p; 0 = all
};

// Causal attention of n_tokens queries (positions st.n_past..) over the cache of layer il:
// out[t][h] = softmax(q[t][h] . K[lo..pos] * scale) . V, with grouped KV heads (the layer's own
// head counts, hp.n_head_l(il) / hp.n_head_kv_l(il)); lo = 0, or pos - n_swa + 1 with a window.
void attention(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out, uint32_t n_tokens,
               const AttnParams& p);

// hb = silu(hb) * hb2, elementwise over n values (SwiGLU).
void swiglu(float* hb, const float* hb2, size_t n);

// y[t] += b for every token row t of n values (a linear layer's bias).
void add_bias(float* y, const float* b, uint32_t n_tokens, int64_t n);

// y += x over n values.
void add_inplace(float* y, const float* x, size_t n);

} // namespace slm::blocks
