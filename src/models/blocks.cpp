#include "models/blocks.h"

#include "core/fp16.h"
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
    if (st.observer) {
        MatmulEvent e;
        e.x = x;
        e.n_in = w.n_in();
        e.n_tokens = n_tokens;
        e.n_weights = 1;
        e.names[0] = &w.name;
        e.y[0] = y;
        e.n_out[0] = w.n_out();
        st.observer->on_matmul(e);
    }
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
    rope_cache(st, hp, pos0, n_tokens, freq_factors, RopeFreqs{hp.rope_freq_base, hp.rope_freq_scale, 1.0f});
}

void rope_cache(SessionState& st, const HParams& hp, uint32_t pos0, uint32_t n_tokens, const float* freq_factors,
                const RopeFreqs& rf) {
    const uint32_t n_rot = hp.n_rot;
    const float theta_scale = std::pow(rf.base, -2.0f / static_cast<float>(n_rot));
    for (uint32_t t = 0; t < n_tokens; ++t) {
        float* c = st.rope_cache.data() + static_cast<size_t>(t) * n_rot;
        float theta = static_cast<float>(st.tok_pos ? st.tok_pos[t] : pos0 + t);
        for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
            const float ff = freq_factors ? freq_factors[i0 / 2] : 1.0f;
            // rope_yarn with ext_factor 0: a (linearly scaled) rotation, cos and sin times
            // the attention factor (mscale).
            const float th = rf.scale * (theta / ff);
            c[i0 + 0] = std::cos(th) * rf.attn_factor;
            c[i0 + 1] = std::sin(th) * rf.attn_factor;
            theta *= theta_scale;
        }
    }
}

// ggml's rotate_pairs computes x0 cos - x1 sin and x0 sin + x1 cos; llama.cpp's build (GCC,
// -ffp-contract=fast with FMA) fuses the first product of each into a multiply-add, and so does
// this, explicitly: the logits of models with discrete steps (Gemma's F16 GELU table) show it.
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
                    v[i0] = std::fma(x0, c[i0], -(x1 * c[i0 + 1]));
                    v[i0 + 1] = std::fma(x0, c[i0 + 1], x1 * c[i0]);
                }
            } else {
                const uint32_t half = n_rot / 2;
                for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
                    const uint32_t i = i0 / 2;
                    const float x0 = v[i], x1 = v[i + half];
                    v[i] = std::fma(x0, c[i0], -(x1 * c[i0 + 1]));
                    v[i + half] = std::fma(x0, c[i0 + 1], x1 * c[i0]);
                }
            }
        }
    }
}

static void store_row(GGMLType type, const float* src, uint8_t* dst, int64_t n) {
    if (type == GGMLType::F32) {
        std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    } else if (type == GGMLType::F16) {
        // Round to nearest even, as kernels::fp32_to_fp16 (vectorized; NaN payloads aside).
        kernels::vec_ops().cvt_f32_f16(n, src, reinterpret_cast<uint16_t*>(dst));
    } else {
        // A quantized cache (Q8_0, Q4_0): the type's from_float, as ggml's copy into the cache
        // (blocks of 32 never straddle two heads: Session requires head sizes of whole blocks).
        kernels::traits(type)->from_float(src, dst, n);
    }
}

void kv_store(SessionState& st, const HParams& hp, uint32_t il, const float* k, const float* v, uint32_t n_tokens) {
    const int64_t nk = hp.n_embd_k_gqa(il), nv = hp.n_embd_v_gqa(il);
    const size_t rk = row_size(st.kv_type, nk), rv = row_size(st.kv_type, nv);
    const uint32_t ring = st.kv_ring.empty() ? 0 : st.kv_ring[il];
    for (uint32_t t = 0; t < n_tokens; ++t) {
        const uint32_t row = st.tok_row ? st.tok_row[t] : st.n_past + t;
        const size_t at = st.cache_row(il, row);
        store_row(st.kv_type, k + t * nk, st.k_cache[il].data() + at * rk, nk);
        store_row(st.kv_type, v + t * nv, st.v_cache[il].data() + at * rv, nv);
        // In a ring, position p takes the row of p - ring, which is gone from then on.
        if (ring > 0) {
            const uint32_t seq = row / st.n_ctx, pos = row % st.n_ctx;
            if (pos + 1 > ring) st.swa_lo[seq] = std::max(st.swa_lo[seq], pos + 1 - ring);
        }
    }
}

static void load_row(GGMLType type, const uint8_t* src, float* dst, int64_t n) {
    if (type == GGMLType::F32)
        std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    else
        kernels::traits(type)->to_float(src, dst, n);
}

void kv_shift(SessionState& st, const HParams& hp, const ArchModel& arch, uint32_t base, uint32_t n_past, uint32_t n_keep,
              uint32_t n_discard) {
    if (n_discard == 0) return;
    if (n_keep + n_discard > n_past) fail("kv_shift: keeping %u and discarding %u of %u positions", n_keep, n_discard, n_past);
    const uint32_t n_rot = hp.n_rot;
    const uint32_t seq = base / st.n_ctx;
    // A ring holds the positions from swa_lo on: only those of the moved ones are there to move.
    const uint32_t ring_lo = st.swa_lo.empty() ? 0 : st.swa_lo[seq];
    std::vector<float> row, cs(n_rot);
    std::vector<uint8_t> tmp_k, tmp_v;
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        if (st.k_cache[il].empty()) continue;  // no attention in this layer
        const int64_t nk = hp.n_embd_k_gqa(il), nv = hp.n_embd_v_gqa(il);
        const size_t rk = row_size(st.kv_type, nk), rv = row_size(st.kv_type, nv);
        const uint32_t ring = st.kv_ring.empty() ? 0 : st.kv_ring[il];
        // The rows that move, from logical row base + from + j to base + to + j, j < n_rows.
        const uint32_t from = ring > 0 ? std::max(n_keep + n_discard, ring_lo) : n_keep + n_discard;
        const uint32_t n_rows = n_past > from ? n_past - from : 0;
        const uint32_t to = from - n_discard;
        uint8_t* kc = st.k_cache[il].data();
        uint8_t* vc = st.v_cache[il].data();
        if (ring == 0) {
            std::memmove(kc + (size_t(base) + to) * rk, kc + (size_t(base) + from) * rk, size_t(n_rows) * rk);
            std::memmove(vc + (size_t(base) + to) * rv, vc + (size_t(base) + from) * rv, size_t(n_rows) * rv);
        } else {
            // Within a ring the rows rotate by n_discard: through a copy, as they may overlap.
            tmp_k.resize(size_t(n_rows) * rk);
            tmp_v.resize(size_t(n_rows) * rv);
            for (uint32_t j = 0; j < n_rows; ++j) {
                const size_t at = st.cache_row(il, base + from + j);
                std::memcpy(tmp_k.data() + size_t(j) * rk, kc + at * rk, rk);
                std::memcpy(tmp_v.data() + size_t(j) * rv, vc + at * rv, rv);
            }
            for (uint32_t j = 0; j < n_rows; ++j) {
                const size_t at = st.cache_row(il, base + to + j);
                std::memcpy(kc + at * rk, tmp_k.data() + size_t(j) * rk, rk);
                std::memcpy(vc + at * rv, tmp_v.data() + size_t(j) * rv, rv);
            }
        }
        const ArchModel::LayerRope lr = arch.layer_rope(hp, il, st);
        if (!lr.rotated || n_rows == 0) continue;
        // cos and sin of the rotation by -n_discard positions, pair by pair as rope_cache
        // forms a position's angles (theta advanced by repeated multiplication in float).
        const float theta_scale = std::pow(lr.base, -2.0f / static_cast<float>(n_rot));
        float theta = -static_cast<float>(n_discard);
        for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
            const float ff = lr.freq_factors ? lr.freq_factors[i0 / 2] : 1.0f;
            const float th = lr.scale * (theta / ff);
            cs[i0] = std::cos(th);
            cs[i0 + 1] = std::sin(th);
            theta *= theta_scale;
        }
        row.resize(static_cast<size_t>(nk));
        const uint32_t hd = hp.n_embd_head_k, n_head_kv = static_cast<uint32_t>(nk / hd);
        for (uint32_t j = 0; j < n_rows; ++j) {
            uint8_t* kr = kc + st.cache_row(il, base + to + j) * rk;
            load_row(st.kv_type, kr, row.data(), nk);
            for (uint32_t h = 0; h < n_head_kv; ++h) {
                float* v = row.data() + size_t(h) * hd;
                for (uint32_t i0 = 0; i0 < n_rot; i0 += 2) {
                    // The pair rope_apply rotates: neighbours (Norm) or i and i + n_rot/2 (NeoX).
                    float* a = hp.rope_type == RopeType::Norm ? v + i0 : v + i0 / 2;
                    float* b = hp.rope_type == RopeType::Norm ? v + i0 + 1 : v + i0 / 2 + n_rot / 2;
                    const float x0 = *a, x1 = *b;
                    *a = x0 * cs[i0] - x1 * cs[i0 + 1];
                    *b = x0 * cs[i0 + 1] + x1 * cs[i0];
                }
            }
            store_row(st.kv_type, row.data(), kr, nk);
        }
    }
    // What the rings hold now: the sinks they still had and every moved row; when the sinks were
    // already overwritten, nothing below the moved rows (a window reaching back there sees less
    // than the full cache would: the sinks are gone, as in llama.cpp's sliding-window cache).
    if (!st.swa_lo.empty() && ring_lo > n_keep)
        st.swa_lo[seq] = std::max(n_keep, ring_lo > n_keep + n_discard ? ring_lo - n_discard : n_keep);
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

// Token t's cache row: n_past + t, or its own row in a multi-sequence cache (SessionState::tok_row).
uint32_t tok_row(const SessionState& st, uint32_t t) { return st.tok_row ? st.tok_row[t] : st.n_past + t; }

// The first row of token t's own rows: its window start, or the start of its branch or sequence
// when later (a sequence's rows are its positions shifted, so the window counts the same in rows).
// On a ring layer (SessionState::kv_ring), never below the first position the ring still holds.
uint32_t tok_own(const SessionState& st, uint32_t il, uint32_t t, uint32_t n_swa) {
    const uint32_t row = tok_row(st, t);
    uint32_t w = window_start(row, n_swa);
    if (st.tok_lo) w = std::max(st.tok_lo[t], w);
    if (!st.kv_ring.empty() && st.kv_ring[il] > 0) {
        const uint32_t seq = row / st.n_ctx;
        w = std::max(w, seq * st.n_ctx + st.swa_lo[seq]);
    }
    return w;
}

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
    const uint32_t ring = st.kv_ring.empty() ? 0 : st.kv_ring[il];

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

    // ggml folds the soft-cap's 1/softcap into the scale ("scale /= logit_softcap").
    const float f16_scale = p.softcap != 0.0f ? scale / p.softcap : scale;
    const kernels::AttnF16Rows rows0{kc, vc, nk, nv, hd_k, hd_v, f16_scale, p.softcap};
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
            // The rows any query of the item sees. With a sliding window, rows before the first
            // token's window are seen by no query of the item (llama.cpp masks them to -inf,
            // which its kernel skips). Branches see the shared prefix, then a gap (other
            // branches), then their own rows; sequences of a batch their own rows only.
            uint32_t n_kv_max = 0, lo_min = UINT32_MAX;
            for (uint32_t t = t0; t < t1; ++t) {
                n_kv_max = std::max(n_kv_max, tok_row(st, t) + 1);
                const uint32_t own = tok_own(st, il, t, p.n_swa);
                lo_min = std::min(lo_min, st.tok_pos && std::min(st.branch_prefix, own) > 0 ? 0 : own);
            }
            for (uint32_t j0 = lo_min / kKVTile * kKVTile; j0 < n_kv_max; j0 += kKVTile) {
                for (uint32_t t = t0; t < t1; ++t) {
                    const uint32_t n_kv = tok_row(st, t) + 1;
                    const uint32_t own = tok_own(st, il, t, p.n_swa);
                    const uint32_t n_pre = st.tok_pos ? std::min(st.branch_prefix, own) : 0;
                    // The visible rows of this tile, in increasing order: [j0, prefix) then [own, n_kv).
                    const uint32_t ranges[2][2] = {{j0, std::min(j0 + kKVTile, n_pre)},
                                                   {std::max(j0, own), std::min(j0 + kKVTile, n_kv)}};
                    for (const auto& r : ranges) {
                        const uint32_t lo = r[0], hi = r[1];
                        if (hi <= lo) continue;  // the tile is past this query, or before its window
                        // In a ring the rows [lo, hi) lie in at most two runs (hi - lo <= n_swa <
                        // ring): the one up to the end of the sequence's ring, then from its start.
                        // attn_f16 goes on from where the last call stopped, so the split changes
                        // nothing.
                        const size_t p0 = st.cache_row(il, lo);
                        const uint32_t n = hi - lo;
                        uint32_t n_a = n;
                        size_t p1 = 0;
                        if (ring > 0) {
                            const size_t ring_end = (p0 / ring + 1) * ring;
                            n_a = static_cast<uint32_t>(std::min<size_t>(n, ring_end - p0));
                            p1 = ring_end - ring;
                        }
                        const size_t runs[2][2] = {{p0, n_a}, {p1, n - n_a}};
                        for (const auto& run : runs) {
                            if (run[1] == 0) continue;
                            kernels::AttnF16Rows rows = rows0;
                            rows.k = kc + run[0] * nk + static_cast<size_t>(hk) * hd_k;
                            rows.v = vc + run[0] * nv + static_cast<size_t>(hk) * hd_v;
                            for (uint32_t h = h0; h < h1; ++h) {
                                const size_t i = static_cast<size_t>(t - t0) * nh + (h - h0);
                                kernels::AttnF16State s{Ms[i], Ss[i], acc16 + i * hd_v};
                                ops.attn_f16(rows, q16 + i * hd_k, static_cast<int64_t>(run[1]), s, scratch);
                                Ms[i] = s.M;
                                Ss[i] = s.S;
                            }
                        }
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

// Attention over an F32 KV cache as llama.cpp computes it without flash attention, bit for bit
// with its AVX-512 build (VecOps' F32 attention ops, vec_f32_attn.h): KQ = K . Q (ggml_vec_dot_f32
// for a prompt, whose Q is a non-contiguous view; tinyBLAS for one token), soft-capped if asked
// (scale by 1/softcap, tanhf, scale by softcap), ggml_soft_max_ext (times the KQ scale, the
// maximum subtracted, ggml_v_expf over groups of 16 positions counted from position 0, the
// sum in double), then KQ x V as tinyBLAS sums it over the positions: position j into lane
// j % 16 of an FMA chain, the 16 lanes added in a tree at the end. Masked positions (future,
// outside the window) contribute exact zeros there, so they are skipped. One work item per
// (token, head); the scores, exponentials and 16 lane rows of V sums are per-thread scratch.
namespace {

// The lane tree of _mm512_reduce_add_ps applied to 16 rows of n values: out = rows[0] + ...
// row by row the way reduce16 adds lanes (the rows are destroyed).
void reduce16_rows(float* rows, size_t n, float* out) {
    for (int i = 0; i < 8; ++i) add_inplace(rows + i * n, rows + (i + 8) * n, n);
    for (int i = 0; i < 4; ++i) add_inplace(rows + i * n, rows + (i + 4) * n, n);
    add_inplace(rows, rows + 2 * n, n);
    add_inplace(rows + n, rows + 3 * n, n);
    for (size_t d = 0; d < n; ++d) out[d] = rows[d] + rows[n + d];
}

} // namespace

static void attention_f32(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out,
                          uint32_t n_tokens, const AttnParams& p) {
    const kernels::VecOps& ops = kernels::vec_ops();
    const uint32_t n_head = hp.n_head_l(il), hd_k = hp.n_embd_head_k, hd_v = hp.n_embd_head_v;
    const uint32_t group = n_head / hp.n_head_kv_l(il);
    const size_t nk = hp.n_embd_k_gqa(il), nv = hp.n_embd_v_gqa(il);
    const float scale = p.scale;
    const float softcap = p.softcap, inv_softcap = p.softcap != 0.0f ? 1.0f / p.softcap : 0.0f;
    const auto* kc = reinterpret_cast<const float*>(st.k_cache[il].data());
    const auto* vc = reinterpret_cast<const float*>(st.v_cache[il].data());
    const size_t q_stride = static_cast<size_t>(n_head) * hd_k;
    const size_t o_stride = static_cast<size_t>(n_head) * hd_v;
    // Q is contiguous for llama.cpp's mul_mat (so llamafile's sgemm takes KQ) only with one
    // token or one head; tinyBLAS needs rows of a multiple of 16.
    const bool sgemm_kq = (n_tokens == 1 || n_head == 1) && hd_k % 16 == 0;
    const auto kq_dot = sgemm_kq ? ops.dot_f32_sgemm : ops.dot_f32_ggml;

    // Per thread: scores and exponentials over the context rounded up to 16, 16 rows of hd_v.
    const size_t n_pad = (static_cast<size_t>(std::max(st.n_ctx, st.n_kv_rows)) + 15) / 16 * 16;
    const size_t per_thread = 2 * n_pad + 16 * static_cast<size_t>(hd_v);
    const int n_threads = st.pool ? st.pool->size() : 1;
    if (st.attn_f32.size() < per_thread * n_threads) st.attn_f32.resize(per_thread * n_threads);

    auto work = [&](int64_t begin, int64_t end, int tid) {
        float* sc = st.attn_f32.data() + static_cast<size_t>(tid) * per_thread;
        float* ex = sc + n_pad;
        float* lanes = ex + n_pad;
        for (int64_t w = begin; w < end; ++w) {
            const uint32_t t = static_cast<uint32_t>(w / n_head), h = static_cast<uint32_t>(w % n_head);
            const uint32_t hk = h / group;
            const uint32_t n_kv = tok_row(st, t) + 1;  // causal: this token and everything before
            // Visible: [0, n_pre) and [own, n_kv); n_pre = 0 unless this is a branch (see SessionState).
            const uint32_t own = tok_own(st, il, t, p.n_swa);
            const uint32_t n_pre = st.tok_pos ? std::min(st.branch_prefix, own) : 0;
            const uint32_t lo = n_pre > 0 ? 0 : own;
            const uint32_t c0 = lo / 16 * 16, c1 = (n_kv + 15) / 16 * 16;  // whole groups of 16
            const float* qh = q + t * q_stride + static_cast<size_t>(h) * hd_k;
            float* o = out + t * o_stride + static_cast<size_t>(h) * hd_v;
            float mx = -INFINITY;
            for (uint32_t j = c0; j < lo; ++j) sc[j] = -INFINITY;
            if (n_pre > 0)
                for (uint32_t j = n_pre; j < own; ++j) sc[j] = -INFINITY;  // other branches
            for (uint32_t j = n_kv; j < c1; ++j) sc[j] = -INFINITY;
            auto visible = [&](uint32_t j) { return j < n_pre || j >= own; };
            for (uint32_t j = lo; j < n_kv; ++j) {
                if (!visible(j)) continue;
                float s = kq_dot(hd_k, kc + st.cache_row(il, j) * nk + static_cast<size_t>(hk) * hd_k, qh);
                // llama.cpp's graph soft-caps KQ before ggml_soft_max_ext applies the KQ scale.
                if (softcap != 0.0f) s = std::tanh(s * inv_softcap) * softcap;
                sc[j] = s * scale;
                mx = std::max(mx, sc[j]);
            }
            const double sum = ops.softmax_f32(c1 - c0, ex + c0, sc + c0, mx);
            const float inv = static_cast<float>(1.0 / sum);
            std::fill(lanes, lanes + 16 * static_cast<size_t>(hd_v), 0.0f);
            for (uint32_t j = lo; j < n_kv; ++j)
                if (visible(j))
                    ops.mad_f32(hd_v, lanes + (j % 16) * static_cast<size_t>(hd_v),
                                vc + st.cache_row(il, j) * nv + static_cast<size_t>(hk) * hd_v, ex[j] * inv);
            reduce16_rows(lanes, hd_v, o);
        }
    };
    const int64_t n_work = static_cast<int64_t>(n_tokens) * n_head;
    if (st.pool)
        st.pool->parallel_for(n_work, work);
    else
        work(0, n_work, 0);
}

// Attention over a quantized KV cache (Q8_0, Q4_0) as ggml's CPU flash attention computes it
// for quantized K/V (ggml_compute_forward_flash_attn_ext_f16 with k->type, v->type quantized):
// the query converted to K's vec_dot_type (Q8_0) with that type's from_float, K . Q by K's
// vec_dot, the score scaled (and soft-capped), the online softmax in F32 with the V sum in an
// F32 accumulator: on a new maximum the accumulator is scaled by exp(M_old - M), each V row is
// dequantized (to_float) and added times exp(s - M) with a fused multiply-add; the sum divided
// by S at the end. The cache rows are read as stored: no dequantized copy of the cache exists.
// One work item per (token, head); visible rows as in the other paths.
static void attention_q(SessionState& st, const HParams& hp, uint32_t il, const float* q, float* out,
                        uint32_t n_tokens, const AttnParams& p) {
    const kernels::VecOps& ops = kernels::vec_ops();
    const kernels::TypeTraits* kt = kernels::traits(st.kv_type);
    const kernels::TypeTraits* qt = kt ? kernels::traits(kt->vec_dot_type) : nullptr;
    if (kt == nullptr || qt == nullptr) fail("attention: KV cache type %s has no kernels", type_name(st.kv_type));
    const uint32_t n_head = hp.n_head_l(il), hd_k = hp.n_embd_head_k, hd_v = hp.n_embd_head_v;
    const uint32_t group = n_head / hp.n_head_kv_l(il);
    const size_t rk = row_size(st.kv_type, hp.n_embd_k_gqa(il)), rv = row_size(st.kv_type, hp.n_embd_v_gqa(il));
    const size_t hk_bytes = row_size(st.kv_type, hd_k), hv_bytes = row_size(st.kv_type, hd_v);
    const size_t q8_bytes = row_size(kt->vec_dot_type, hd_k);
    const uint8_t* kc = st.k_cache[il].data();
    const uint8_t* vc = st.v_cache[il].data();
    const size_t q_stride = static_cast<size_t>(n_head) * hd_k;
    const size_t o_stride = static_cast<size_t>(n_head) * hd_v;
    // ggml folds the soft-cap's 1/softcap into the scale ("scale /= logit_softcap").
    const float scale = p.softcap != 0.0f ? p.scale / p.softcap : p.scale;
    // Per thread: the converted query (as floats' worth of bytes), one dequantized V row.
    const size_t per_thread = (q8_bytes + sizeof(float) - 1) / sizeof(float) + hd_v;
    const int n_threads = st.pool ? st.pool->size() : 1;
    if (st.attn_f32.size() < per_thread * n_threads) st.attn_f32.resize(per_thread * n_threads);

    auto work = [&](int64_t begin, int64_t end, int tid) {
        float* v32 = st.attn_f32.data() + static_cast<size_t>(tid) * per_thread;
        auto* q8 = reinterpret_cast<uint8_t*>(v32 + hd_v);
        for (int64_t w = begin; w < end; ++w) {
            const uint32_t t = static_cast<uint32_t>(w / n_head), h = static_cast<uint32_t>(w % n_head);
            const uint32_t hk = h / group;
            const uint32_t n_kv = tok_row(st, t) + 1;
            const uint32_t own = tok_own(st, il, t, p.n_swa);
            const uint32_t n_pre = st.tok_pos ? std::min(st.branch_prefix, own) : 0;
            qt->from_float(q + t * q_stride + static_cast<size_t>(h) * hd_k, q8, hd_k);
            float* o = out + t * o_stride + static_cast<size_t>(h) * hd_v;
            std::fill(o, o + hd_v, 0.0f);
            float M = -INFINITY, S = 0.0f;
            const uint32_t ranges[2][2] = {{0, n_pre}, {own, n_kv}};
            for (const auto& r : ranges) {
                for (uint32_t j = r[0]; j < r[1]; ++j) {
                    float s;
                    const size_t at = st.cache_row(il, j);
                    kt->vec_dot(hd_k, &s, kc + at * rk + hk * hk_bytes, q8);
                    s *= scale;
                    if (p.softcap != 0.0f) s = p.softcap * std::tanh(s);
                    float ms = 1.0f, vs = 1.0f;
                    if (s > M) {
                        const float m_old = M;
                        M = s;
                        ms = std::exp(m_old - M);
                        for (uint32_t d = 0; d < hd_v; ++d) o[d] *= ms;
                    } else {
                        vs = std::exp(s - M);
                    }
                    kt->to_float(vc + at * rv + hk * hv_bytes, v32, hd_v);
                    ops.mad_f32(hd_v, o, v32, vs);
                    S = S * ms + vs;
                }
            }
            const float inv = S > 0.0f ? 1.0f / S : 0.0f;
            for (uint32_t d = 0; d < hd_v; ++d) o[d] *= inv;
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
    if (!(p.softcap >= 0.0f) || std::isinf(p.softcap)) fail("attention: soft-cap %g must be finite and >= 0", p.softcap);
    // A ring holds n_swa + n_batch positions: enough for a window of at most n_swa, not more.
    if (!st.kv_ring.empty() && st.kv_ring[il] > 0 && (p.n_swa == 0 || p.n_swa > hp.n_swa))
        fail("attention: layer %u keeps a sliding-window ring of %u rows but attends with a window of %u (n_swa %u)", il,
             st.kv_ring[il], p.n_swa, hp.n_swa);
    if (st.kv_type == GGMLType::F16)
        attention_f16(st, hp, il, q, out, n_tokens, p);
    else if (st.kv_type == GGMLType::F32)
        attention_f32(st, hp, il, q, out, n_tokens, p);
    else
        attention_q(st, hp, il, q, out, n_tokens, p);
}

uint32_t first_logit_row(SessionState& st, float* x, uint32_t n, size_t E, bool all_logits) {
    if (st.logit_sel == nullptr) return all_logits ? 0 : n - 1;
    const uint32_t k = st.n_logit_sel;
    if (k == 0 || k > n) fail("forward: %u logit rows selected of %u tokens", k, n);
    // Selected row i goes to row n - k + i >= sel[i]; moving the last first never overwrites a
    // row still to be moved (sel[i] < sel[j] <= n - k + j for j > i).
    for (uint32_t i = k; i-- > 0;) {
        const uint32_t src = st.logit_sel[i], dst = n - k + i;
        if (src >= n || (i + 1 < k && src >= st.logit_sel[i + 1])) fail("forward: logit row selection is not increasing below %u", n);
        if (src != dst) std::memmove(x + size_t(dst) * E, x + size_t(src) * E, E * sizeof(float));
    }
    return n - k;
}

void swiglu(float* hb, const float* hb2, size_t n) {
    for (size_t i = 0; i < n; ++i) {
        const float g = hb[i];
        hb[i] = (g / (1.0f + std::exp(-g))) * hb2[i];
    }
}

const uint16_t* gelu_f16_table() {
    static const std::vector<uint16_t> table = [] {
        // ggml_gelu_f32 in float; GCC contracts 1.0f + GELU_COEF_A*x*x into a fused multiply-add
        // in ggml's own build (one table entry, x = -1.999, depends on it).
        constexpr float kCoefA = 0.044715f;
        constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
        std::vector<uint16_t> t(1u << 16);
        for (uint32_t h = 0; h < t.size(); ++h) {
            const float x = fp16::half_to_float(static_cast<uint16_t>(h));
            const float inner = std::fma(kCoefA * x, x, 1.0f);
            t[h] = fp16::float_to_half(0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * inner)));
        }
        return t;
    }();
    return table.data();
}

void geglu(float* hb, const float* hb2, size_t n) {
    const uint16_t* table = gelu_f16_table();
    for (size_t i = 0; i < n; ++i) {
        const float x = hb[i];
        if (x <= -10.0f)
            hb[i] = 0.0f;
        else if (x >= 10.0f)
            hb[i] = x * hb2[i];
        else
            hb[i] = fp16::half_to_float(table[fp16::float_to_half(x)]) * hb2[i];
    }
}

void softcap(float* x, size_t n, float cap) {
    const float inv = 1.0f / cap;
    for (size_t i = 0; i < n; ++i) x[i] = std::tanh(x[i] * inv) * cap;
}

void scale(float* x, size_t n, float s) {
    for (size_t i = 0; i < n; ++i) x[i] *= s;
}

void add_inplace(float* y, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

} // namespace slm::blocks

namespace slm::blocks {

void matmul_multi(SessionState& st, std::initializer_list<const ModelTensor*> ws, const float* x,
                  std::initializer_list<float*> ys, uint32_t n_tokens) {
    kernels::MatMulOut outs[MatmulEvent::kMaxWeights];
    if (ws.size() != ys.size() || ws.size() > MatmulEvent::kMaxWeights) fail("matmul_multi: %zu weights for %zu outputs", ws.size(), ys.size());
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
    if (st.observer) {
        MatmulEvent e;
        e.x = x;
        e.n_in = n_in;
        e.n_tokens = n_tokens;
        e.n_weights = n;
        int i = 0;
        auto yo = ys.begin();
        for (const ModelTensor* w : ws) {
            e.names[i] = &w->name;
            e.y[i] = *yo++;
            e.n_out[i] = w->n_out();
            ++i;
        }
        st.observer->on_matmul(e);
    }
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
