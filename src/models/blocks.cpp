#include "models/blocks.h"

#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slm::blocks {

void rms_norm(const float* x, const float* w, float* y, uint32_t n_tokens, int64_t n, float eps) {
    for (uint32_t t = 0; t < n_tokens; ++t) {
        const float* xr = x + static_cast<size_t>(t) * n;
        float* yr = y + static_cast<size_t>(t) * n;
        double sum = 0.0;  // ggml_float accumulation, as ggml_compute_forward_rms_norm_f32
        for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i] * xr[i]);
        const float mean = static_cast<float>(sum / static_cast<double>(n));
        const float scale = 1.0f / std::sqrt(mean + eps);
        // ggml scales first (ggml_vec_scale_f32), then the graph multiplies by the weight.
        if (w)
            for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * w[i];
        else
            for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale;
    }
}

void matmul(SessionState& st, const ModelTensor& w, const float* x, float* y, uint32_t n_tokens) {
    kernels::mul_mat(w.data, w.type, w.n_in(), w.n_out(), x, n_tokens, y, st.pool.get(), st.mm_scratch);
}

void get_rows(const ModelTensor& emb, const int32_t* tokens, uint32_t n_tokens, float* out) {
    const size_t rs = row_size(emb.type, emb.n_in());
    const auto* base = static_cast<const uint8_t*>(emb.data);
    for (uint32_t t = 0; t < n_tokens; ++t)
        kernels::dequantize_row(base + rs * static_cast<size_t>(tokens[t]), emb.type, emb.n_in(),
                                out + static_cast<size_t>(t) * emb.n_in());
}

void rope_cache(SessionState& st, const HParams& hp, uint32_t pos0, uint32_t n_tokens, const float* freq_factors) {
    const uint32_t n_rot = hp.n_rot;
    const float theta_scale = std::pow(hp.rope_freq_base, -2.0f / static_cast<float>(n_rot));
    for (uint32_t t = 0; t < n_tokens; ++t) {
        float* c = st.rope_cache.data() + static_cast<size_t>(t) * n_rot;
        float theta = static_cast<float>(pos0 + t);
        for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
            const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
            // rope_yarn with ext_factor 0 and attn_factor 1: plain (linearly scaled) rotation.
            const float th = hp.rope_freq_scale * (theta / ff);
            c[i0 + 0] = std::cos(th);
            c[i0 + 1] = std::sin(th);
            theta *= theta_scale;
        }
    }
}

void rope_apply(const SessionState& st, const HParams& hp, float* x, uint32_t n_tokens, uint32_t n_heads,
                uint32_t head_dim, size_t stride) {
    const uint32_t n_rot = hp.n_rot;
    for (uint32_t t = 0; t < n_tokens; ++t) {
        const float* c = st.rope_cache.data() + static_cast<size_t>(t) * n_rot;
        for (uint32_t h = 0; h < n_heads; ++h) {
            float* v = x + t * stride + static_cast<size_t>(h) * head_dim;
            if (hp.rope_type == RopeType::Norm) {
                for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
                    const float x0 = v[i0], x1 = v[i0 + 1];
                    v[i0] = x0 * c[i0] - x1 * c[i0 + 1];
                    v[i0 + 1] = x0 * c[i0 + 1] + x1 * c[i0];
                }
            } else {
                const uint32_t half = n_rot / 2;
                for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
                    const uint32_t i = i0 / 2;
                    const float x0 = v[i], x1 = v[i + half];
                    v[i] = x0 * c[i0] - x1 * c[i0 + 1];
                    v[i + half] = x0 * c[i0 + 1] + x1 * c[i0];
                }
            }
        }
    }
}

static void store_row(GGMLType type, const float* src, uint8_t* dst, int64_t n) {
    if (type == GGMLType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    } else {
        auto* d = reinterpret_cast<uint16_t*>(dst);
        for (int64_t i = 0; i < n; ++i) d[i] = kernels::fp32_to_fp16(src[i]);
    }
}

void kv_store(SessionState& st, const HParams& hp, uint32_t il, const float* k, const float* v, uint32_t n_tokens) {
    const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
    const size_t es = st.kv_type == GGMLType::F32 ? 4 : 2;
    for (uint32_t t = 0; t < n_tokens; ++t) {
        const size_t pos = st.n_past + t;
        store_row(st.kv_type, k + t * nk, st.k_cache[il].data() + pos * nk * es, nk);
        store_row(st.kv_type, v + t * nv, st.v_cache[il].data() + pos * nv * es, nv);
    }
}

// Attention over an F16 KV cache as llama.cpp computes it by default (flash attention on the CPU,
// ggml_compute_forward_flash_attn_ext_f16): Q rounded to F16 for the Q.K dot products, online
// softmax in F32, and the V sum kept in an F16 buffer (VKQ16) that is rescaled whenever the
// running maximum grows, then divided by the softmax sum at the end. Reproducing the F16
// accumulator matters: it is what makes llama.cpp's quantized-model logits what they are.
static void flash_f16(const void* q16, const uint8_t* kc, const uint8_t* vc, uint32_t n_kv, int64_t nk, int64_t nv,
                      uint32_t hk, uint32_t hd_k, uint32_t hd_v, float scale, const kernels::TypeTraits* kt,
                      uint16_t* acc, float* out) {
    float M = -INFINITY, S = 0.0f;
    std::fill(acc, acc + hd_v, uint16_t(0));
    for (uint32_t j = 0; j < n_kv; ++j) {
        float s;
        kt->vec_dot(hd_k, &s, kc + (static_cast<size_t>(j) * nk + static_cast<size_t>(hk) * hd_k) * 2, q16);
        s *= scale;
        const float m_old = M;
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            M = s;
            ms = std::exp(m_old - M);
            for (uint32_t i = 0; i < hd_v; ++i) acc[i] = kernels::fp32_to_fp16(kernels::fp16_to_fp32(acc[i]) * ms);
        } else {
            vs = std::exp(s - M);
        }
        const auto* v16 = reinterpret_cast<const uint16_t*>(vc + (static_cast<size_t>(j) * nv + static_cast<size_t>(hk) * hd_v) * 2);
        for (uint32_t i = 0; i < hd_v; ++i)
            acc[i] = kernels::fp32_to_fp16(kernels::fp16_to_fp32(acc[i]) + kernels::fp16_to_fp32(v16[i]) * vs);
        S = S * ms + vs;
    }
    const float inv = 1.0f / S;
    for (uint32_t i = 0; i < hd_v; ++i) out[i] = kernels::fp16_to_fp32(acc[i]) * inv;
}

void attention(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out, uint32_t n_tokens,
               float scale) {
    const uint32_t n_head = hp.n_head, hd_k = hp.n_embd_head_k, hd_v = hp.n_embd_head_v;
    const uint32_t group = hp.n_head / hp.n_head_kv;
    const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
    const bool f16 = st.kv_type == GGMLType::F16;
    const size_t es = f16 ? 2 : 4;
    const kernels::TypeTraits* kt = kernels::traits(st.kv_type);
    const uint8_t* kc = st.k_cache[il].data();
    const uint8_t* vc = st.v_cache[il].data();
    const size_t q_stride = static_cast<size_t>(n_head) * hd_k;
    const size_t o_stride = static_cast<size_t>(n_head) * hd_v;

    auto work = [&](int64_t begin, int64_t end, int tid) {
        float* sc = st.scores.data() + static_cast<size_t>(tid) * st.n_ctx;
        uint16_t* q16 = st.q16.data() + static_cast<size_t>(tid) * (hd_k + hd_v);
        uint16_t* acc16 = q16 + hd_k;
        for (int64_t w = begin; w < end; ++w) {
            const uint32_t t = static_cast<uint32_t>(w / n_head), h = static_cast<uint32_t>(w % n_head);
            const uint32_t hk = h / group;
            const uint32_t n_kv = st.n_past + t + 1;  // causal: this token and everything before
            const float* qh = q + t * q_stride + static_cast<size_t>(h) * hd_k;
            float* o = out + t * o_stride + static_cast<size_t>(h) * hd_v;
            if (f16) {
                // ggml converts Q to the K cache's type before the dot product (vec_dot_type F16).
                for (uint32_t i = 0; i < hd_k; ++i) q16[i] = kernels::fp32_to_fp16(qh[i]);
                flash_f16(q16, kc, vc, n_kv, nk, nv, hk, hd_k, hd_v, scale, kt, acc16, o);
                continue;
            }
            const float* qv = qh;
            float mx = -INFINITY;
            for (uint32_t j = 0; j < n_kv; ++j) {
                float s;
                kt->vec_dot(hd_k, &s, kc + (static_cast<size_t>(j) * nk + static_cast<size_t>(hk) * hd_k) * es, qv);
                sc[j] = s * scale;
                mx = std::max(mx, sc[j]);
            }
            double sum = 0.0;  // ggml_float, as ggml_soft_max
            for (uint32_t j = 0; j < n_kv; ++j) {
                sc[j] = std::exp(sc[j] - mx);
                sum += sc[j];
            }
            const float inv = static_cast<float>(1.0 / sum);
            std::fill(o, o + hd_v, 0.0f);
            for (uint32_t j = 0; j < n_kv; ++j) {
                const float p = sc[j] * inv;
                const auto* v32 =
                    reinterpret_cast<const float*>(vc + (static_cast<size_t>(j) * nv + static_cast<size_t>(hk) * hd_v) * es);
                for (uint32_t i = 0; i < hd_v; ++i) o[i] += p * v32[i];
            }
        }
    };
    const int64_t n_work = static_cast<int64_t>(n_tokens) * n_head;
    if (st.pool)
        st.pool->parallel_for(n_work, work);
    else
        work(0, n_work, 0);
}

void swiglu(float* hb, const float* hb2, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const float g = hb[i];
        hb[i] = (g / (1.0f + std::exp(-g))) * hb2[i];
    }
}

void add_inplace(float* y, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

} // namespace slm::blocks
