// ops.h - the operations of the Llama-family forward pass and their backward passes, for training.
//
// Every tensor is row-major [row][feature] F32. A backward takes the upstream gradient dy and
// what its forward saved, and either writes its input gradient (dx) or adds to it, as said per op;
// parameter gradients (dw) are always added to (accumulation over shared layers and micro-batches)
// and are skipped when null (frozen parameters). Work is split over a ThreadPool (nullptr: the
// calling thread alone) so that every result is independent of the thread count: no reduction is
// ever split between threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::train_ops {

// ---- embedding: y[t] = W[tok[t]] -------------------------------------------------------------
void embedding_forward(const int32_t* tok, int64_t n, const float* w, int64_t E, float* y, ThreadPool* pool);
// dw[tok[t]] += dy[t]
void embedding_backward(const int32_t* tok, int64_t n, const float* dy, int64_t E, float* dw, ThreadPool* pool);

// ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w, rstd[r] = 1 / sqrt(mean + eps) saved ---------
void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t E, float eps,
                     ThreadPool* pool);
// dx = (or +=, with accumulate) the input gradient; dw += sum over rows of dy * x * rstd.
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                      int64_t rows, int64_t E, bool accumulate, ThreadPool* pool);

// ---- linear: y = x Wᵀ (x: rows x n_in, W: n_out x n_in, y: rows x n_out) ------------------------
void matmul_forward(const float* x, const float* w, float* y, int64_t rows, int64_t n_in, int64_t n_out,
                    ThreadPool* pool, bool accumulate = false);
// dx = (or +=) dy W; dw += dyᵀ x (skipped when dw is null; dx skipped when null).
void matmul_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t rows,
                     int64_t n_in, int64_t n_out, bool accumulate, ThreadPool* pool);

// ---- RoPE on adjacent pairs (llama's "NORM" layout) ------------------------------------------
// cos/sin for positions 0..T-1: table[(p * hd/2 + i) * 2 + {0,1}], theta_i(p) = p base^(-2i/hd),
// formed as ggml's rope cache does (the angle advanced by repeated multiplication in float).
void rope_table(std::vector<float>& table, int64_t T, int64_t hd, float freq_base);
// In place on rows x (n_heads * hd) values, row r at position r % T.
void rope_forward(float* x, int64_t rows, int64_t T, int64_t n_heads, int64_t hd, const float* table,
                  ThreadPool* pool);
// The transpose (rotation by -theta), in place on the gradient.
void rope_backward(float* dx, int64_t rows, int64_t T, int64_t n_heads, int64_t hd, const float* table,
                   ThreadPool* pool);

// ---- causal self-attention with grouped K/V heads ----------------------------------------------
// q: (B T) x (H hd), k, v: (B T) x (Hkv hd), out: (B T) x (H hd); query head h reads K/V head
// h / (H / Hkv); scores scaled by 1/sqrt(hd). lse (B H T) keeps each softmax row's log-sum-exp so
// the backward recomputes the probabilities instead of storing B H T² of them.
// scratch: per thread at least attention_scratch_floats(T) floats (thread_id indexes it).
int64_t attention_scratch_floats(int64_t T);
void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B,
                       int64_t T, int64_t H, int64_t Hkv, int64_t hd, float* scratch, ThreadPool* pool);
// dq, dk, dv are written (not accumulated).
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, float* dq, float* dk, float* dv, int64_t B, int64_t T, int64_t H,
                        int64_t Hkv, int64_t hd, float* scratch, ThreadPool* pool);

// ---- SwiGLU: h = silu(g) * u -------------------------------------------------------------------
void swiglu_forward(const float* g, const float* u, float* h, int64_t n, ThreadPool* pool);
// dg, du written.
void swiglu_backward(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n,
                     ThreadPool* pool);

// ---- residual: y = a + b (backward: both inputs receive dy unchanged) ----------------------------
void add_forward(const float* a, const float* b, float* y, int64_t n, ThreadPool* pool);
void add_inplace(float* y, const float* x, int64_t n, ThreadPool* pool);  // y += x

// ---- softmax cross-entropy ---------------------------------------------------------------------
// loss_rows[r] = -log softmax(logits[r])[target[r]] (0 where target < 0, the ignore index).
// Returns the number of counted rows. Targets outside [0, V) must be checked by the caller.
int64_t cross_entropy_forward(const float* logits, const int32_t* target, int64_t rows, int64_t V,
                              float* loss_rows, ThreadPool* pool);
// Fused with the softmax: dlogits[r] = scale (softmax(logits[r]) - onehot(target[r])), zero rows
// where target < 0. dlogits may alias logits (computed in place).
void cross_entropy_backward(const float* logits, const int32_t* target, int64_t rows, int64_t V, float scale,
                            float* dlogits, ThreadPool* pool);

} // namespace slm::train_ops
