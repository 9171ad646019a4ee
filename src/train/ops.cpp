// ops.cpp - forward and backward of every training operation, side by side (see ops.h).
//
// The forward formulas follow slm's inference blocks (src/models/blocks.cpp), which follow ggml:
// RMSNorm sums squares in double and scales before multiplying by the weight, RoPE's cos/sin come
// from an angle advanced by repeated multiplication, SwiGLU is g / (1 + e^-g) * u. So a trained
// model's logits here and in slm::Session agree to float rounding.
#include "train/ops.h"

#include "core/thread_pool.h"
#include "kernels/sgemm.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

namespace slm::train_ops {

namespace {

// parallel_for that also runs without a pool.
template <class F>
void par(ThreadPool* pool, int64_t n, const F& f) {
    if (n <= 0) return;
    if (pool == nullptr || pool->size() <= 1 || n == 1) {
        f(int64_t(0), n, 0);
        return;
    }
    pool->parallel_for(n, f);
}

// Elementwise loops are split in blocks of this many values (small ones run inline).
constexpr int64_t kElemBlock = 1 << 14;

template <class F>
void par_elems(ThreadPool* pool, int64_t n, const F& f) {
    const int64_t nb = (n + kElemBlock - 1) / kElemBlock;
    par(pool, nb, [&](int64_t b0, int64_t b1, int) { f(b0 * kElemBlock, std::min(n, b1 * kElemBlock)); });
}

// e^x in float, written so that loops over arrays vectorize (libm's expf does not): x = n ln2 + r
// with |r| <= ln2 / 2, e^r from Cephes expf's minimax polynomial (within 1e-7 relative), 2^n
// from the exponent bits. The clamps act on the integer n (float selects keep GCC from
// vectorizing under -ftrapping-math): results below 2^-126 are 0, above 2^128 infinity.
inline float exp_fast(float x) {
    constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
    const float t = x * 1.44269504088896341f + kMagic;
    const float fn = t - kMagic;
    // (unsigned: any t, even a NaN's or a negative's bits, wraps instead of overflowing)
    int32_t n = int32_t(std::bit_cast<uint32_t>(t) - std::bit_cast<uint32_t>(kMagic));
    n = n < -127 ? -127 : n;
    n = n > 128 ? 128 : n;
    const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * std::bit_cast<float>((n + 127) << 23);
}

// GCC/Clang vector extensions (SSE on x86, NEON on Arm): the reductions below in 2 x 4 lanes.
typedef float v4f __attribute__((vector_size(16)));
inline v4f load4(const float* p) {
    v4f v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Sum of n floats in 8 running partial sums (the same order every time).
inline float sum8(const float* x, int64_t n) {
    v4f a = {0, 0, 0, 0}, b = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a += load4(x + i);
        b += load4(x + i + 4);
    }
    a += b;
    float s = (a[0] + a[2]) + (a[1] + a[3]);
    for (; i < n; ++i) s += x[i];
    return s;
}

// Largest of n >= 1 floats (max is exact in any order).
inline float max8(const float* x, int64_t n) {
    v4f a = {x[0], x[0], x[0], x[0]}, b = a;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const v4f u = load4(x + i), w = load4(x + i + 4);
        a = u > a ? u : a;
        b = w > b ? w : b;
    }
    a = b > a ? b : a;
    float m = a[0];
    for (int k = 1; k < 4; ++k) m = a[k] > m ? a[k] : m;
    for (; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

// Column blocks for reductions over rows (norm and embedding weight gradients): each thread owns
// whole columns, so the sum over rows runs in row order whatever the thread count.
constexpr int64_t kColBlock = 32;

} // namespace

// ---- embedding ----------------------------------------------------------------------------------

void embedding_forward(const int32_t* tok, int64_t n, const float* w, int64_t E, float* y, ThreadPool* pool) {
    par(pool, n, [&](int64_t t0, int64_t t1, int) {
        for (int64_t t = t0; t < t1; ++t) std::memcpy(y + t * E, w + int64_t(tok[t]) * E, size_t(E) * sizeof(float));
    });
}

void embedding_backward(const int32_t* tok, int64_t n, const float* dy, int64_t E, float* dw, ThreadPool* pool) {
    const int64_t nb = (E + kColBlock - 1) / kColBlock;
    par(pool, nb, [&](int64_t b0, int64_t b1, int) {
        const int64_t c0 = b0 * kColBlock, c1 = std::min(E, b1 * kColBlock);
        for (int64_t t = 0; t < n; ++t) {
            float* d = dw + int64_t(tok[t]) * E;
            const float* s = dy + t * E;
            for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
        }
    });
}

// ---- RMSNorm ------------------------------------------------------------------------------------

void rmsnorm_forward(const float* x, const float* w, float* y, float* rstd, int64_t rows, int64_t E, float eps,
                     ThreadPool* pool) {
    par(pool, rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* xr = x + r * E;
            float* yr = y + r * E;
            double sum = 0.0;  // as ggml_compute_forward_rms_norm_f32
            for (int64_t i = 0; i < E; ++i) sum += double(xr[i] * xr[i]);
            const float mean = float(sum / double(E));
            const float s = 1.0f / std::sqrt(mean + eps);
            rstd[r] = s;
            for (int64_t i = 0; i < E; ++i) yr[i] = (xr[i] * s) * w[i];
        }
    });
}

// y_i = w_i x_i s, s = (mean(x²) + eps)^-1/2:  dx_i = s (w_i dy_i - x_i s² mean_j(w_j dy_j x_j)).
void rmsnorm_backward(const float* dy, const float* x, const float* w, const float* rstd, float* dx, float* dw,
                      int64_t rows, int64_t E, bool accumulate, ThreadPool* pool) {
    if (dx) {
        par(pool, rows, [&](int64_t r0, int64_t r1, int) {
            for (int64_t r = r0; r < r1; ++r) {
                const float* xr = x + r * E;
                const float* dr = dy + r * E;
                float* o = dx + r * E;
                const float s = rstd[r];
                double dot = 0.0;
                for (int64_t i = 0; i < E; ++i) dot += double(dr[i] * w[i] * xr[i]);
                const float c = float(dot / double(E)) * s * s;
                if (accumulate)
                    for (int64_t i = 0; i < E; ++i) o[i] += s * (w[i] * dr[i] - xr[i] * c);
                else
                    for (int64_t i = 0; i < E; ++i) o[i] = s * (w[i] * dr[i] - xr[i] * c);
            }
        });
    }
    if (dw) {
        const int64_t nb = (E + kColBlock - 1) / kColBlock;
        par(pool, nb, [&](int64_t b0, int64_t b1, int) {
            const int64_t c0 = b0 * kColBlock, c1 = std::min(E, b1 * kColBlock);
            float acc[kColBlock * 64];  // up to 64 column blocks per chunk handled in pieces
            for (int64_t cs = c0; cs < c1; cs += kColBlock * 64) {
                const int64_t ce = std::min(c1, cs + kColBlock * 64);
                std::fill(acc, acc + (ce - cs), 0.0f);
                for (int64_t r = 0; r < rows; ++r) {
                    const float* xr = x + r * E;
                    const float* dr = dy + r * E;
                    const float s = rstd[r];
                    for (int64_t c = cs; c < ce; ++c) acc[c - cs] += dr[c] * (xr[c] * s);
                }
                for (int64_t c = cs; c < ce; ++c) dw[c] += acc[c - cs];
            }
        });
    }
}

// ---- linear -------------------------------------------------------------------------------------

void matmul_forward(const float* x, const float* w, float* y, int64_t rows, int64_t n_in, int64_t n_out,
                    ThreadPool* pool, bool accumulate) {
    kernels::sgemm(pool, false, true, rows, n_out, n_in, x, n_in, w, n_in, accumulate ? 1.0f : 0.0f, y, n_out);
}

void matmul_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t rows,
                     int64_t n_in, int64_t n_out, bool accumulate, ThreadPool* pool) {
    if (dx) kernels::sgemm(pool, false, false, rows, n_in, n_out, dy, n_out, w, n_in, accumulate ? 1.0f : 0.0f, dx, n_in);
    if (dw) kernels::sgemm(pool, true, false, n_out, n_in, rows, dy, n_out, x, n_in, 1.0f, dw, n_in);
}

// ---- RoPE ---------------------------------------------------------------------------------------

void rope_table(std::vector<float>& table, int64_t T, int64_t hd, float freq_base) {
    const int64_t half = hd / 2;
    table.assign(size_t(T * half * 2), 0.0f);
    const float theta_scale = std::pow(freq_base, -2.0f / float(hd));
    for (int64_t p = 0; p < T; ++p) {
        float theta = float(p);
        float* c = table.data() + p * half * 2;
        for (int64_t i = 0; i < half; ++i) {
            c[2 * i] = std::cos(theta);
            c[2 * i + 1] = std::sin(theta);
            theta *= theta_scale;
        }
    }
}

void rope_forward(float* x, int64_t rows, int64_t T, int64_t n_heads, int64_t hd, const float* table,
                  ThreadPool* pool) {
    const int64_t half = hd / 2;
    par(pool, rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* c = table + (r % T) * half * 2;
            for (int64_t h = 0; h < n_heads; ++h) {
                float* v = x + (r * n_heads + h) * hd;
                for (int64_t i = 0; i < half; ++i) {
                    const float x0 = v[2 * i], x1 = v[2 * i + 1], co = c[2 * i], si = c[2 * i + 1];
                    v[2 * i] = std::fma(x0, co, -(x1 * si));  // as slm's rope_apply (ggml with FMA)
                    v[2 * i + 1] = std::fma(x0, si, x1 * co);
                }
            }
        }
    });
}

void rope_backward(float* dx, int64_t rows, int64_t T, int64_t n_heads, int64_t hd, const float* table,
                   ThreadPool* pool) {
    const int64_t half = hd / 2;
    par(pool, rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* c = table + (r % T) * half * 2;
            for (int64_t h = 0; h < n_heads; ++h) {
                float* v = dx + (r * n_heads + h) * hd;
                for (int64_t i = 0; i < half; ++i) {
                    const float d0 = v[2 * i], d1 = v[2 * i + 1], co = c[2 * i], si = c[2 * i + 1];
                    v[2 * i] = d0 * co + d1 * si;
                    v[2 * i + 1] = d1 * co - d0 * si;
                }
            }
        }
    });
}

// ---- attention ----------------------------------------------------------------------------------
//
// One work item is a (sequence, head) pair in the forward and a (sequence, K/V head) pair in the
// backward (the query heads of a group add into the same dK/dV rows). Queries go in blocks of
// kQBlock rows; a block's scores against the keys it can see (0 .. its last row) are one sgemm.

namespace {
constexpr int64_t kQBlock = 64;
}

int64_t attention_scratch_floats(int64_t T) { return 2 * std::min(T, kQBlock) * T; }

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B,
                       int64_t T, int64_t H, int64_t Hkv, int64_t hd, float* scratch, ThreadPool* pool) {
    const int64_t group = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const float scale = 1.0f / std::sqrt(float(hd));
    const int64_t per_thread = attention_scratch_floats(T);
    par(pool, B * H, [&](int64_t w0, int64_t w1, int tid) {
        float* S = scratch + tid * per_thread;
        for (int64_t w = w0; w < w1; ++w) {
            const int64_t b = w / H, h = w % H, g = h / group;
            const float* Q = q + b * T * ldq + h * hd;
            const float* K = k + b * T * ldk + g * hd;
            const float* V = v + b * T * ldk + g * hd;
            float* O = out + b * T * ldq + h * hd;
            float* L = lse + (b * H + h) * T;
            for (int64_t r0 = 0; r0 < T; r0 += kQBlock) {
                const int64_t r1 = std::min(T, r0 + kQBlock), nr = r1 - r0, nk = r1;
                kernels::sgemm(nullptr, false, true, nr, nk, hd, Q + r0 * ldq, ldq, K, ldk, 0.0f, S, nk);
                for (int64_t i = 0; i < nr; ++i) {
                    float* s = S + i * nk;
                    const int64_t t = r0 + i;
                    const float mx = max8(s, t + 1) * scale;
                    for (int64_t j = 0; j <= t; ++j) s[j] = exp_fast(s[j] * scale - mx);
                    const float sum = sum8(s, t + 1);
                    const float inv = 1.0f / sum;
                    for (int64_t j = 0; j <= t; ++j) s[j] *= inv;
                    for (int64_t j = t + 1; j < nk; ++j) s[j] = 0.0f;
                    L[t] = mx + std::log(sum);
                }
                kernels::sgemm(nullptr, false, false, nr, hd, nk, S, nk, V, ldk, 0.0f, O + r0 * ldq, ldq);
            }
        }
    });
}

// With P = softmax(S), S = scale Q Kᵀ (causal), O = P V:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - rowsum(dO ∘ O)),  dQ = scale dS K,  dK = scale dSᵀ Q.
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* out,
                        const float* lse, float* dq, float* dk, float* dv, int64_t B, int64_t T, int64_t H,
                        int64_t Hkv, int64_t hd, float* scratch, ThreadPool* pool) {
    const int64_t group = H / Hkv, ldq = H * hd, ldk = Hkv * hd;
    const float scale = 1.0f / std::sqrt(float(hd));
    const int64_t per_thread = attention_scratch_floats(T);
    const int64_t blk = std::min(T, kQBlock);
    par(pool, B * Hkv, [&](int64_t w0, int64_t w1, int tid) {
        float* P = scratch + tid * per_thread;
        float* dP = P + blk * T;
        for (int64_t w = w0; w < w1; ++w) {
            const int64_t b = w / Hkv, g = w % Hkv;
            const float* K = k + b * T * ldk + g * hd;
            const float* V = v + b * T * ldk + g * hd;
            float* dK = dk + b * T * ldk + g * hd;
            float* dV = dv + b * T * ldk + g * hd;
            for (int64_t t = 0; t < T; ++t) {
                std::fill(dK + t * ldk, dK + t * ldk + hd, 0.0f);
                std::fill(dV + t * ldk, dV + t * ldk + hd, 0.0f);
            }
            for (int64_t h = g * group; h < (g + 1) * group; ++h) {
                const float* Q = q + b * T * ldq + h * hd;
                const float* O = out + b * T * ldq + h * hd;
                const float* dO = dout + b * T * ldq + h * hd;
                float* dQ = dq + b * T * ldq + h * hd;
                const float* L = lse + (b * H + h) * T;
                for (int64_t r0 = 0; r0 < T; r0 += kQBlock) {
                    const int64_t r1 = std::min(T, r0 + kQBlock), nr = r1 - r0, nk = r1;
                    kernels::sgemm(nullptr, false, true, nr, nk, hd, Q + r0 * ldq, ldq, K, ldk, 0.0f, P, nk);
                    kernels::sgemm(nullptr, false, true, nr, nk, hd, dO + r0 * ldq, ldq, V, ldk, 0.0f, dP, nk);
                    for (int64_t i = 0; i < nr; ++i) {
                        const int64_t t = r0 + i;
                        float* p = P + i * nk;
                        float* dp = dP + i * nk;
                        const float* o = O + t * ldq;
                        const float* d = dO + t * ldq;
                        float D = 0.0f;
                        for (int64_t c = 0; c < hd; ++c) D += o[c] * d[c];
                        const float lt = L[t];
                        for (int64_t j = 0; j <= t; ++j) p[j] = exp_fast(p[j] * scale - lt);
                        for (int64_t j = 0; j <= t; ++j) dp[j] = p[j] * (dp[j] - D) * scale;
                        for (int64_t j = t + 1; j < nk; ++j) p[j] = dp[j] = 0.0f;
                    }
                    kernels::sgemm(nullptr, false, false, nr, hd, nk, dP, nk, K, ldk, 0.0f, dQ + r0 * ldq, ldq);
                    kernels::sgemm(nullptr, true, false, nk, hd, nr, dP, nk, Q + r0 * ldq, ldq, 1.0f, dK, ldk);
                    kernels::sgemm(nullptr, true, false, nk, hd, nr, P, nk, dO + r0 * ldq, ldq, 1.0f, dV, ldk);
                }
            }
        }
    });
}

// ---- SwiGLU -------------------------------------------------------------------------------------

void swiglu_forward(const float* g, const float* u, float* h, int64_t n, ThreadPool* pool) {
    par_elems(pool, n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) h[i] = (g[i] / (1.0f + exp_fast(-g[i]))) * u[i];
    });
}

// silu(g) = g s, s = 1 / (1 + e^-g);  silu'(g) = s (1 + g (1 - s)).
void swiglu_backward(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n,
                     ThreadPool* pool) {
    par_elems(pool, n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
            const float x = g[i], s = 1.0f / (1.0f + exp_fast(-x)), d = dh[i];
            const float uu = u[i];
            dg[i] = d * uu * s * (1.0f + x * (1.0f - s));
            du[i] = d * x * s;
        }
    });
}

// ---- residual -----------------------------------------------------------------------------------

void add_forward(const float* a, const float* b, float* y, int64_t n, ThreadPool* pool) {
    par_elems(pool, n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
    });
}

void add_inplace(float* y, const float* x, int64_t n, ThreadPool* pool) {
    par_elems(pool, n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) y[i] += x[i];
    });
}

// ---- softmax cross-entropy ----------------------------------------------------------------------

namespace {
// max and sum of exp(l - max) of one row; tmp holds the V exponentials. The sum runs in blocks
// of 1024 added in double (vocabularies of 50k terms).
void row_softmax_stats(const float* l, int64_t V, float& mx, double& sum, float* tmp) {
    mx = max8(l, V);
    for (int64_t j = 0; j < V; ++j) tmp[j] = exp_fast(l[j] - mx);
    sum = 0.0;
    for (int64_t j = 0; j < V; j += 1024) sum += sum8(tmp + j, std::min<int64_t>(1024, V - j));
}
} // namespace

int64_t cross_entropy_forward(const float* logits, const int32_t* target, int64_t rows, int64_t V,
                              float* loss_rows, ThreadPool* pool) {
    par(pool, rows, [&](int64_t r0, int64_t r1, int) {
        thread_local std::vector<float> tmp;  // grows once to the vocabulary size
        if (tmp.size() < size_t(V)) tmp.resize(size_t(V));
        for (int64_t r = r0; r < r1; ++r) {
            if (target[r] < 0) {
                loss_rows[r] = 0.0f;
                continue;
            }
            const float* l = logits + r * V;
            float mx;
            double sum;
            row_softmax_stats(l, V, mx, sum, tmp.data());
            loss_rows[r] = float(double(mx) + std::log(sum) - double(l[target[r]]));
        }
    });
    int64_t n = 0;
    for (int64_t r = 0; r < rows; ++r) n += target[r] >= 0;
    return n;
}

void cross_entropy_backward(const float* logits, const int32_t* target, int64_t rows, int64_t V, float scale,
                            float* dlogits, ThreadPool* pool) {
    par(pool, rows, [&](int64_t r0, int64_t r1, int) {
        for (int64_t r = r0; r < r1; ++r) {
            const float* l = logits + r * V;
            float* d = dlogits + r * V;
            if (target[r] < 0) {
                std::fill(d, d + V, 0.0f);
                continue;
            }
            float mx;
            double sum;
            row_softmax_stats(l, V, mx, sum, d);  // d may be l: the exponentials replace the logits
            const float c = float(double(scale) / sum);
            for (int64_t j = 0; j < V; ++j) d[j] *= c;
            d[target[r]] -= scale;
        }
    });
}

} // namespace slm::train_ops
