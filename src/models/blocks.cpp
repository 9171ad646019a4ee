#include "models/blocks.h"

#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "kernels/vec.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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
    const kernels::MatMulOut out{w.data, w.type, w.n_out(), y, w.repacked};
    kernels::mul_mat_multi(&out, 1, w.n_in(), x, n_tokens, st.pool.get(), st.mm_scratch);
}

void get_rows(const ModelTensor& emb, const int32_t* tokens, uint32_t n_tokens, float* out) {
    const size_t rs = row_size(emb.type, emb.n_in());
    const auto* base = static_cast<const uint8_t*>(emb.data);
    const kernels::RepackTraits* rp = emb.repacked ? kernels::repack_traits(emb.type) : nullptr;
    if (emb.repacked && rp == nullptr) fail("get_rows: '%s' is repacked but has no kernels here", emb.name.c_str());
    thread_local std::vector<uint8_t> row;  // one row back in the file's layout; grows once
    if (rp != nullptr && row.size() < rs) row.resize(rs);
    for (uint32_t t = 0; t < n_tokens; ++t) {
        const uint8_t* src = base + rs * static_cast<size_t>(tokens[t]);
        if (rp != nullptr) {
            rp->unpack_row(base, rs, tokens[t], emb.n_in(), row.data());
            src = row.data();
        }
        kernels::dequantize_row(src, emb.type, emb.n_in(), out + static_cast<size_t>(t) * emb.n_in());
    }
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
        // Round to nearest even, as kernels::fp32_to_fp16 (vectorized; NaN payloads aside).
        kernels::vec_ops().cvt_f32_f16(n, src, reinterpret_cast<uint16_t*>(dst));
    }
}

void kv_store(SessionState& st, const HParams& hp, uint32_t il, const float* k, const float* v, uint32_t n_tokens) {
    const int64_t nk = hp.n_embd_k_gqa(il), nv = hp.n_embd_v_gqa(il);
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
//
// Fused and tiled: a work item is a block of up to kQueryTile tokens times the query heads of
// one KV head group (or, when there are too few items to keep every thread busy, as in decode,
// a part of the group). It walks the K/V rows in tiles of kKVTile; every query of the item
// takes the tile while it is in L1, so the query heads sharing a KV head (GQA) and neighbouring
// tokens share each loaded K/V row. Each query's online-softmax state (M, S, F16 accumulator)
// lives in per-thread scratch, and VecOps::attn_f16 advances it over the rows of a tile in
// order, with exactly the operations of the one-row-at-a-time loop, so the tiling changes no
// result. No n x n score matrix exists anywhere.
namespace {

constexpr uint32_t kQueryTile = 8;   // tokens per work item (prefill)
constexpr uint32_t kKVTile = 64;     // K/V rows per tile: 8 KiB of K and of V at head size 64
constexpr int64_t kItemsPerThread = 4;

// The first key position a query at `pos` sees: 0, or pos - n_swa + 1 with a sliding window
// (llama.cpp's LLAMA_SWA_TYPE_STANDARD masks keys with pos - j >= n_swa).
uint32_t window_start(uint32_t pos, uint32_t n_swa) { return n_swa > 0 && pos + 1 > n_swa ? pos + 1 - n_swa : 0; }

struct F16Scratch {
    size_t u16_per_thread, f32_per_thread;
};

F16Scratch f16_scratch_size(const HParams& hp) {
    size_t group = 1;  // the largest over the layers
    for (uint32_t il = 0; il < hp.n_layer; ++il)
        if (hp.n_head_kv_arr[il] > 0) group = std::max<size_t>(group, hp.n_head_arr[il] / hp.n_head_kv_arr[il]);
    const size_t max_q = kQueryTile * group;
    return {max_q * (hp.n_embd_head_k + hp.n_embd_head_v), 2 * max_q + 3 * kKVTile};
}

} // namespace

static void attention_f16(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out,
                          uint32_t n_tokens, const AttnParams& p) {
    const kernels::VecOps& ops = kernels::vec_ops();
    const uint32_t n_head = hp.n_head_l(il), n_head_kv = hp.n_head_kv_l(il);
    const uint32_t hd_k = hp.n_embd_head_k, hd_v = hp.n_embd_head_v;
    const uint32_t group = n_head / n_head_kv;
    const size_t nk = hp.n_embd_k_gqa(il), nv = hp.n_embd_v_gqa(il);
    const float scale = p.scale;
    const auto* kc = reinterpret_cast<const uint16_t*>(st.k_cache[il].data());
    const auto* vc = reinterpret_cast<const uint16_t*>(st.v_cache[il].data());
    const size_t q_stride = static_cast<size_t>(n_head) * hd_k;
    const size_t o_stride = static_cast<size_t>(n_head) * hd_v;
    const int n_threads = st.pool ? st.pool->size() : 1;

    // Scratch for every thread, sized once (the first call) for the largest work item.
    const F16Scratch need = f16_scratch_size(hp);
    if (st.attn_u16.size() < need.u16_per_thread * n_threads) st.attn_u16.resize(need.u16_per_thread * n_threads);
    if (st.attn_f32.size() < need.f32_per_thread * n_threads) st.attn_f32.resize(need.f32_per_thread * n_threads);

    // Work items: token blocks x KV heads x head blocks. Heads of a group are split only when
    // there would otherwise be fewer than kItemsPerThread items per thread.
    const uint32_t qt = std::min(kQueryTile, n_tokens);
    const uint32_t n_tb = (n_tokens + qt - 1) / qt;
    const int64_t base = static_cast<int64_t>(n_tb) * n_head_kv;
    const int64_t want = kItemsPerThread * n_threads;
    const uint32_t n_split = static_cast<uint32_t>(std::clamp<int64_t>((want + base - 1) / base, 1, group));
    const uint32_t hb_size = (group + n_split - 1) / n_split;
    const uint32_t n_hb = (group + hb_size - 1) / hb_size;

    const kernels::AttnF16Rows rows0{kc, vc, nk, nv, hd_k, hd_v, scale};
    auto work = [&](int64_t begin, int64_t end, int tid) {
        uint16_t* q16 = st.attn_u16.data() + static_cast<size_t>(tid) * need.u16_per_thread;
        float* f32 = st.attn_f32.data() + static_cast<size_t>(tid) * need.f32_per_thread;
        const size_t max_q = kQueryTile * group;
        uint16_t* acc16 = q16 + max_q * hd_k;
        float* Ms = f32;
        float* Ss = f32 + max_q;
        float* scratch = f32 + 2 * max_q;
        for (int64_t w = begin; w < end; ++w) {
            // Items in decreasing cost: the last token block (the longest causal rows) first.
            const uint32_t tb = n_tb - 1 - static_cast<uint32_t>(w / (int64_t(n_head_kv) * n_hb));
            const uint32_t rem = static_cast<uint32_t>(w % (int64_t(n_head_kv) * n_hb));
            const uint32_t hk = rem / n_hb, hb = rem % n_hb;
            const uint32_t t0 = tb * qt, t1 = std::min(n_tokens, t0 + qt);
            const uint32_t h0 = hk * group + hb * hb_size, h1 = std::min(hk * group + group, h0 + hb_size);
            const uint32_t nh = h1 - h0;
            // Query (t, h) is number (t - t0) * nh + (h - h0) of the item.
            for (uint32_t t = t0; t < t1; ++t) {
                for (uint32_t h = h0; h < h1; ++h) {
                    const size_t i = static_cast<size_t>(t - t0) * nh + (h - h0);
                    // ggml converts Q to the K cache's type before the dot product (vec_dot_type F16).
                    ops.cvt_f32_f16(hd_k, q + t * q_stride + static_cast<size_t>(h) * hd_k, q16 + i * hd_k);
                    std::fill(acc16 + i * hd_v, acc16 + (i + 1) * hd_v, uint16_t(0));
                    Ms[i] = -INFINITY;
                    Ss[i] = 0.0f;
                }
            }
            const uint32_t n_kv_max = st.n_past + t1;  // causal: the item's last token sees this many rows
            // With a sliding window, rows before the first token's window are seen by no query
            // of the item (llama.cpp masks them to -inf, which its kernel skips).
            const uint32_t lo_min = window_start(st.n_past + t0, p.n_swa);
            for (uint32_t j0 = lo_min / kKVTile * kKVTile; j0 < n_kv_max; j0 += kKVTile) {
                for (uint32_t t = t0; t < t1; ++t) {
                    const uint32_t n_kv = st.n_past + t + 1;
                    const uint32_t lo = std::max(j0, window_start(st.n_past + t, p.n_swa));
                    const uint32_t hi = std::min(j0 + kKVTile, n_kv);
                    if (hi <= lo) continue;  // the tile is past this query, or before its window
                    const uint32_t n = hi - lo;
                    kernels::AttnF16Rows rows = rows0;
                    rows.k = kc + static_cast<size_t>(lo) * nk + static_cast<size_t>(hk) * hd_k;
                    rows.v = vc + static_cast<size_t>(lo) * nv + static_cast<size_t>(hk) * hd_v;
                    for (uint32_t h = h0; h < h1; ++h) {
                        const size_t i = static_cast<size_t>(t - t0) * nh + (h - h0);
                        kernels::AttnF16State s{Ms[i], Ss[i], acc16 + i * hd_v};
                        ops.attn_f16(rows, q16 + i * hd_k, n, s, scratch);
                        Ms[i] = s.M;
                        Ss[i] = s.S;
                    }
                }
            }
            for (uint32_t t = t0; t < t1; ++t) {
                for (uint32_t h = h0; h < h1; ++h) {
                    const size_t i = static_cast<size_t>(t - t0) * nh + (h - h0);
                    float* o = out + t * o_stride + static_cast<size_t>(h) * hd_v;
                    ops.cvt_f16_f32_scale(hd_v, acc16 + i * hd_v, o, 1.0f / Ss[i]);
                }
            }
        }
    };
    const int64_t n_work = base * n_hb;
    if (st.pool)
        st.pool->parallel_for(n_work, work);
    else
        work(0, n_work, 0);
}

// Attention over an F32 KV cache as llama.cpp computes it without flash attention: the scores
// of a query over all its rows, ggml_soft_max (maximum subtracted, sum in double), then the
// probabilities times V. One work item per (token, head); the scores row is per thread.
static void attention_f32(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out,
                          uint32_t n_tokens, const AttnParams& p) {
    const kernels::VecOps& ops = kernels::vec_ops();
    const uint32_t n_head = hp.n_head_l(il), hd_k = hp.n_embd_head_k, hd_v = hp.n_embd_head_v;
    const uint32_t group = n_head / hp.n_head_kv_l(il);
    const size_t nk = hp.n_embd_k_gqa(il), nv = hp.n_embd_v_gqa(il);
    const float scale = p.scale;
    const kernels::TypeTraits* kt = kernels::traits(GGMLType::F32);
    const auto* kc = reinterpret_cast<const float*>(st.k_cache[il].data());
    const auto* vc = reinterpret_cast<const float*>(st.v_cache[il].data());
    const size_t q_stride = static_cast<size_t>(n_head) * hd_k;
    const size_t o_stride = static_cast<size_t>(n_head) * hd_v;

    auto work = [&](int64_t begin, int64_t end, int tid) {
        float* sc = st.scores.data() + static_cast<size_t>(tid) * st.n_ctx;
        for (int64_t w = begin; w < end; ++w) {
            const uint32_t t = static_cast<uint32_t>(w / n_head), h = static_cast<uint32_t>(w % n_head);
            const uint32_t hk = h / group;
            const uint32_t n_kv = st.n_past + t + 1;  // causal: this token and everything before
            const uint32_t lo = window_start(st.n_past + t, p.n_swa);
            const float* qh = q + t * q_stride + static_cast<size_t>(h) * hd_k;
            float* o = out + t * o_stride + static_cast<size_t>(h) * hd_v;
            float mx = -INFINITY;
            for (uint32_t j = lo; j < n_kv; ++j) {
                float s;
                kt->vec_dot(hd_k, &s, kc + static_cast<size_t>(j) * nk + static_cast<size_t>(hk) * hd_k, qh);
                sc[j] = s * scale;
                mx = std::max(mx, sc[j]);
            }
            double sum = 0.0;  // ggml_float, as ggml_soft_max
            for (uint32_t j = lo; j < n_kv; ++j) {
                sc[j] = std::exp(sc[j] - mx);
                sum += sc[j];
            }
            const float inv = static_cast<float>(1.0 / sum);
            std::fill(o, o + hd_v, 0.0f);
            for (uint32_t j = lo; j < n_kv; ++j)
                ops.mad_f32(hd_v, o, vc + static_cast<size_t>(j) * nv + static_cast<size_t>(hk) * hd_v, sc[j] * inv);
        }
    };
    const int64_t n_work = static_cast<int64_t>(n_tokens) * n_head;
    if (st.pool)
        st.pool->parallel_for(n_work, work);
    else
        work(0, n_work, 0);
}

void attention(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out, uint32_t n_tokens,
               const AttnParams& p) {
    if (p.softcap != 0.0f) fail("attention: logit soft-capping is not implemented");
    if (st.kv_type == GGMLType::F16)
        attention_f16(st, hp, il, q, out, n_tokens, p);
    else
        attention_f32(st, hp, il, q, out, n_tokens, p);
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

namespace slm::blocks {

void matmul_multi(SessionState& st, std::initializer_list<const ModelTensor*> ws, const float* x,
                  std::initializer_list<float*> ys, uint32_t n_tokens) {
    kernels::MatMulOut outs[8];
    if (ws.size() != ys.size() || ws.size() > 8) fail("matmul_multi: %zu weights for %zu outputs", ws.size(), ys.size());
    int n = 0;
    int64_t n_in = -1;
    auto y = ys.begin();
    for (const ModelTensor* w : ws) {
        if (n_in >= 0 && w->n_in() != n_in)
            fail("matmul_multi: '%s' has rows of %lld, not %lld", w->name.c_str(), static_cast<long long>(w->n_in()),
                 static_cast<long long>(n_in));
        n_in = w->n_in();
        outs[n++] = {w->data, w->type, w->n_out(), *y++, w->repacked};
    }
    kernels::mul_mat_multi(outs, n, n_in, x, n_tokens, st.pool.get(), st.mm_scratch);
}

} // namespace slm::blocks

namespace slm::blocks {

void add_bias(float* y, const float* b, uint32_t n_tokens, int64_t n) {
    for (uint32_t t = 0; t < n_tokens; ++t) {
        float* row = y + static_cast<size_t>(t) * n;
        for (int64_t i = 0; i < n; ++i) row[i] += b[i];
    }
}

} // namespace slm::blocks
