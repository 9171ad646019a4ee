// blocks::attention, the fused tiled causal attention over the KV cache:
//  * F32 cache: against a naive softmax attention computed in double;
//  * F16 cache: bit for bit against the one-row-at-a-time emulation of llama.cpp's CPU flash
//    attention (Q rounded to F16, online softmax, F16 V accumulator with fused multiply-adds),
//    and close to the double-precision softmax of the F16 values;
//  * prefill (70 queries over 200 cached positions) and decode, GQA with 4 query heads per KV
//    head, any number of threads giving the same bits;
//  * Gemma 2's soft-cap on both paths, each with llama.cpp's placement of the scale (F16: cap
//    the scaled score; F32: cap KQ, then scale).
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "models/arch.h"
#include "models/blocks.h"
#include "slm/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace slm;

namespace {

struct AttnCase {
    HParams hp;
    SessionState st;
    std::vector<float> q;  // n_tokens x n_head x hd_k
    uint32_t n_tokens = 0;
    uint32_t n_swa = 0;    // sliding window (0 = none)
    float softcap = 0.0f;  // attention soft-cap (0 = none)
    float scale_mul = 1.0f;  // the scale is scale_mul / sqrt(hd)

    // n_past cached positions plus n_tokens new ones (stored through kv_store), random values.
    AttnCase(GGMLType kv, uint32_t n_past, uint32_t n_tokens_, int threads, uint32_t hd = 64, uint32_t n_head = 8,
          uint32_t n_head_kv = 2, uint32_t seed = 7) {
        hp.n_head = n_head;
        hp.n_head_kv = n_head_kv;
        hp.n_embd_head_k = hp.n_embd_head_v = hd;
        hp.n_embd = n_head * hd;
        hp.n_layer = 1;
        hp.n_head_arr = {n_head};
        hp.n_head_kv_arr = {n_head_kv};
        hp.n_ff_arr = {0};
        n_tokens = n_tokens_;
        st.n_ctx = 256;
        st.kv_type = kv;
        st.pool = std::make_unique<ThreadPool>(threads);
        st.k_cache.assign(1, std::vector<uint8_t>(size_t(st.n_ctx) * row_size(kv, hp.n_embd_k_gqa())));
        st.v_cache.assign(1, std::vector<uint8_t>(size_t(st.n_ctx) * row_size(kv, hp.n_embd_v_gqa())));
        st.scores.resize(size_t(threads) * st.n_ctx);
        std::mt19937 rng(seed);
        std::normal_distribution<float> d(0.0f, 1.0f);
        const uint32_t n_all = n_past + n_tokens;
        std::vector<float> k(size_t(n_all) * hp.n_embd_k_gqa()), v(size_t(n_all) * hp.n_embd_v_gqa());
        for (auto& x : k) x = d(rng);
        for (auto& x : v) x = d(rng);
        st.n_past = 0;
        blocks::kv_store(st, hp, 0, k.data(), v.data(), n_all);
        st.n_past = n_past;
        q.resize(size_t(n_tokens) * n_head * hd);
        for (auto& x : q) x = 2.5f * d(rng);  // scores of std ~2.5: peaked but not one-hot
    }

    float scale() const { return scale_mul / std::sqrt(float(hp.n_embd_head_k)); }
    // A score q.k (in double) as the path under test forms it from the raw dot product.
    double form_score(double qk) const {
        if (softcap == 0.0f) return qk * scale();
        if (st.kv_type != GGMLType::F32) return softcap * std::tanh(qk * scale() / softcap);  // flash paths
        return scale() * (softcap * std::tanh(qk / softcap));
    }
    // The first key a query at pos sees: keys with pos - j >= n_swa are masked.
    uint32_t first_key(uint32_t pos) const {
        uint32_t lo = 0;
        while (n_swa > 0 && pos - lo >= n_swa) ++lo;
        return lo;
    }

    std::vector<float> run() {
        std::vector<float> out(size_t(n_tokens) * hp.n_head * hp.n_embd_head_v);
        blocks::attention(st, hp, 0, q.data(), out.data(), n_tokens, {.scale = scale(), .softcap = softcap, .n_swa = n_swa});
        return out;
    }

    mutable std::vector<float> deq_k, deq_v;  // a quantized cache, dequantized
    float kv_at(const std::vector<std::vector<uint8_t>>& cache, size_t row, size_t i, size_t width) const {
        if (st.kv_type == GGMLType::F32) return reinterpret_cast<const float*>(cache[0].data())[row * width + i];
        if (st.kv_type != GGMLType::F16) {  // quantized: the reference dequantization, once
            std::vector<float>& d = &cache == &st.k_cache ? deq_k : deq_v;
            if (d.empty()) {
                d.resize(size_t(st.n_ctx) * width);
                for (size_t r = 0; r < st.n_ctx; ++r)
                    kernels::ref_traits(st.kv_type)->to_float(cache[0].data() + r * row_size(st.kv_type, width),
                                                              d.data() + r * width, width);
            }
            return d[row * width + i];
        }
        return kernels::fp16_to_fp32(reinterpret_cast<const uint16_t*>(cache[0].data())[row * width + i]);
    }

    // softmax(q . K * scale) . V in double over the cached values (Q rounded to F16 when the
    // cache is F16, through Q8_0 when it is quantized, as the kernel does).
    std::vector<double> naive() const {
        const uint32_t H = hp.n_head, G = hp.n_head / hp.n_head_kv, hd = hp.n_embd_head_k;
        const size_t nk = hp.n_embd_k_gqa();
        std::vector<double> out(size_t(n_tokens) * H * hd);
        for (uint32_t t = 0; t < n_tokens; ++t) {
            const uint32_t n_kv = st.n_past + t + 1;
            const uint32_t lo = first_key(st.n_past + t);
            for (uint32_t h = 0; h < H; ++h) {
                const uint32_t hk = h / G;
                std::vector<double> s(n_kv, -INFINITY);
                double mx = -INFINITY;
                const std::vector<float> q8 = st.kv_type == GGMLType::Q8_0 || st.kv_type == GGMLType::Q4_0
                                                  ? q8_rounded(t, h) : std::vector<float>();
                for (uint32_t j = lo; j < n_kv; ++j) {
                    double acc = 0;
                    for (uint32_t i = 0; i < hd; ++i) {
                        float qi = q[(size_t(t) * H + h) * hd + i];
                        if (st.kv_type == GGMLType::F16) qi = kernels::fp16_to_fp32(kernels::fp32_to_fp16(qi));
                        if (!q8.empty()) qi = q8[i];
                        acc += double(qi) * kv_at(st.k_cache, j, size_t(hk) * hd + i, nk);
                    }
                    s[j] = form_score(acc);
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (auto& x : s) sum += (x = std::exp(x - mx));
                for (uint32_t i = 0; i < hd; ++i) {
                    double o = 0;
                    for (uint32_t j = 0; j < n_kv; ++j) o += s[j] * kv_at(st.v_cache, j, size_t(hk) * hd + i, nk);
                    out[(size_t(t) * H + h) * hd + i] = o / sum;
                }
            }
        }
        return out;
    }

    // The query of (t, h) through the reference Q8_0 quantization of its head and back.
    std::vector<float> q8_rounded(uint32_t t, uint32_t h) const {
        const uint32_t hd = hp.n_embd_head_k;
        const float* qh = q.data() + (size_t(t) * hp.n_head + h) * hd;
        std::vector<uint8_t> blk(row_size(GGMLType::Q8_0, hd));
        std::vector<float> back(hd);
        kernels::ref_traits(GGMLType::Q8_0)->from_float(qh, blk.data(), hd);
        kernels::ref_traits(GGMLType::Q8_0)->to_float(blk.data(), back.data(), hd);
        return back;
    }

    // The F16 flash-attention emulation one row at a time, per element (what blocks.cpp did
    // before the fused kernel), with the dot products and mad step of `dot_ops`.
    std::vector<float> flash_emulation(const kernels::VecOps& dot_ops) const {
        using fp16::float_to_half;
        using fp16::half_to_float;
        const uint32_t H = hp.n_head, G = hp.n_head / hp.n_head_kv, hd = hp.n_embd_head_k;
        const size_t nk = hp.n_embd_k_gqa();
        const auto* kc = reinterpret_cast<const uint16_t*>(st.k_cache[0].data());
        const auto* vc = reinterpret_cast<const uint16_t*>(st.v_cache[0].data());
        std::vector<float> out(size_t(n_tokens) * H * hd);
        std::vector<uint16_t> q16(hd), acc(hd);
        for (uint32_t t = 0; t < n_tokens; ++t) {
            const uint32_t n_kv = st.n_past + t + 1;
            for (uint32_t h = 0; h < H; ++h) {
                const uint32_t hk = h / G;
                for (uint32_t i = 0; i < hd; ++i) q16[i] = float_to_half(q[(size_t(t) * H + h) * hd + i]);
                std::fill(acc.begin(), acc.end(), uint16_t(0));
                float M = -INFINITY, S = 0.0f;
                for (uint32_t j = first_key(st.n_past + t); j < n_kv; ++j) {
                    float s;
                    dot_ops.dot_f16(hd, &s, kc + j * nk + size_t(hk) * hd, q16.data());
                    if (softcap != 0.0f) {
                        s *= scale() / softcap;  // ggml: scale /= logit_softcap, then the tanh
                        s = softcap * std::tanh(s);
                    } else {
                        s *= scale();
                    }
                    float ms = 1.0f, vs = 1.0f;
                    if (s > M) {
                        const float m_old = M;
                        M = s;
                        ms = std::exp(m_old - M);
                        for (auto& a : acc) a = float_to_half(half_to_float(a) * ms);
                    } else {
                        vs = std::exp(s - M);
                    }
                    const uint16_t* vr = vc + j * nk + size_t(hk) * hd;
                    kernels::ref::mad_f16_step(hd, acc.data(), vr, vs, dot_ops.f16_step);
                    volatile float p = S * ms;  // product, then sum
                    S = p + vs;
                }
                for (uint32_t i = 0; i < hd; ++i) out[(size_t(t) * H + h) * hd + i] = half_to_float(acc[i]) * (1.0f / S);
            }
        }
        return out;
    }
};

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
}

struct Shape {
    const char* name;
    uint32_t n_past, n_tokens;
};
const Shape kShapes[] = {{"prefill_70_over_200", 130, 70}, {"prefill_from_empty", 0, 37}, {"decode_at_200", 199, 1},
                         {"decode_at_0", 0, 1}};

TEST(Attention, F32CacheMatchesNaiveSoftmax) {
    for (const Shape& sh : kShapes) {
        for (int threads : {1, 2, 3}) {
            SCOPED_TRACE(std::string(sh.name) + " threads=" + std::to_string(threads));
            AttnCase s(GGMLType::F32, sh.n_past, sh.n_tokens, threads);
            const auto out = s.run();
            EXPECT_LT(max_abs_diff(out, s.naive()), 2e-5);
        }
    }
}

TEST(Attention, F16CacheIsTheFlashEmulationBitForBit) {
    for (const Shape& sh : kShapes) {
        std::vector<float> first;
        for (int threads : {1, 2, 3}) {
            SCOPED_TRACE(std::string(sh.name) + " threads=" + std::to_string(threads));
            AttnCase s(GGMLType::F16, sh.n_past, sh.n_tokens, threads);
            const auto out = s.run();
            const auto emu = s.flash_emulation(kernels::vec_ops());
            ASSERT_EQ(out.size(), emu.size());
            size_t n_diff = 0;
            for (size_t i = 0; i < out.size(); ++i) n_diff += std::memcmp(&out[i], &emu[i], 4) != 0;
            EXPECT_EQ(n_diff, 0u) << "of " << out.size();
            // Against the double-precision softmax: the F16 roundings of the V sum (up to 2^-11 of the
            // running sum at each of up to 200 rows) on outputs of size ~1.
            EXPECT_LT(max_abs_diff(out, s.naive()), 2e-2);
            // With the reference's dot order: only dot rounding differs.
            const auto emu_ref = s.flash_emulation(kernels::ref::vec_ops());
            double d = 0;
            for (size_t i = 0; i < out.size(); ++i) d = std::max(d, double(std::fabs(out[i] - emu_ref[i])));
            EXPECT_LT(d, 5e-3);
            if (first.empty())
                first = out;
            else
                EXPECT_EQ(0, std::memcmp(first.data(), out.data(), out.size() * 4)) << "differs between thread counts";
        }
    }
}

TEST(Attention, SlidingWindow) {
    // Windows shorter than, equal to and longer than a KV tile, crossing tile boundaries; a
    // window covering everything must equal no window.
    for (uint32_t n_swa : {1u, 8u, 63u, 64u, 100u, 1000u}) {
        for (const Shape& sh : kShapes) {
            for (GGMLType kv : {GGMLType::F16, GGMLType::F32}) {
                SCOPED_TRACE(std::string(sh.name) + " n_swa=" + std::to_string(n_swa) +
                             (kv == GGMLType::F16 ? " f16" : " f32"));
                AttnCase s(kv, sh.n_past, sh.n_tokens, 2);
                s.n_swa = n_swa;
                const auto out = s.run();
                EXPECT_LT(max_abs_diff(out, s.naive()), kv == GGMLType::F16 ? 2e-2 : 2e-5);
                if (kv == GGMLType::F16) {
                    const auto emu = s.flash_emulation(kernels::vec_ops());
                    EXPECT_EQ(0, std::memcmp(emu.data(), out.data(), out.size() * 4));
                }
                if (n_swa >= sh.n_past + sh.n_tokens) {
                    s.n_swa = 0;
                    EXPECT_EQ(0, std::memcmp(s.run().data(), out.data(), out.size() * 4));
                }
            }
        }
    }
}

TEST(Attention, OtherHeadShapes) {
    // Head sizes without a register path (48, 80) and 128, MHA and MQA.
    struct HS {
        uint32_t hd, n_head, n_head_kv;
    };
    for (HS hs : {HS{48, 4, 4}, HS{80, 6, 1}, HS{128, 4, 2}}) {
        for (GGMLType kv : {GGMLType::F16, GGMLType::F32}) {
            SCOPED_TRACE("hd=" + std::to_string(hs.hd) + " heads " + std::to_string(hs.n_head) + "/" +
                         std::to_string(hs.n_head_kv) + (kv == GGMLType::F16 ? " f16" : " f32"));
            AttnCase s(kv, 90, 19, 2, hs.hd, hs.n_head, hs.n_head_kv);
            const auto out = s.run();
            EXPECT_LT(max_abs_diff(out, s.naive()), kv == GGMLType::F16 ? 2e-2 : 2e-5);
            if (kv == GGMLType::F16) {
                const auto emu = s.flash_emulation(kernels::vec_ops());
                EXPECT_EQ(0, std::memcmp(emu.data(), out.data(), out.size() * 4));
            }
        }
    }
}

TEST(Attention, SoftcapOnBothPaths) {
    // Scores of std ~2.5 * 8 * scale_mul: with scale_mul 4 many are beyond the cap of 5, so the
    // cap changes the result; scale != 1 separates the two placements of the scale.
    for (GGMLType kv : {GGMLType::F16, GGMLType::F32}) {
        for (const Shape& sh : kShapes) {
            for (uint32_t n_swa : {0u, 8u}) {
                SCOPED_TRACE(std::string(sh.name) + (kv == GGMLType::F16 ? " f16" : " f32") + " n_swa=" +
                             std::to_string(n_swa));
                AttnCase s(kv, sh.n_past, sh.n_tokens, 2);
                s.softcap = 5.0f;
                s.scale_mul = 4.0f;
                s.n_swa = n_swa;
                const auto out = s.run();
                EXPECT_LT(max_abs_diff(out, s.naive()), kv == GGMLType::F16 ? 2e-2 : 2e-5);
                if (kv == GGMLType::F16) {
                    const auto emu = s.flash_emulation(kernels::vec_ops());
                    EXPECT_EQ(0, std::memcmp(emu.data(), out.data(), out.size() * 4));
                }
                // Without the cap the result is another one (the cap matters for these scores),
                // unless every query sees a single key.
                s.softcap = 0.0f;
                const auto uncapped = s.run();
                double d = 0;
                for (size_t i = 0; i < out.size(); ++i) d = std::max(d, double(std::fabs(out[i] - uncapped[i])));
                if (sh.n_past + sh.n_tokens > 1) EXPECT_GT(d, 1e-2);
            }
        }
    }
}

TEST(Attention, F32PathIsTheSameForAnyThreadCount) {
    for (const Shape& sh : kShapes) {
        std::vector<float> first;
        for (int threads : {1, 3}) {
            AttnCase s(GGMLType::F32, sh.n_past, sh.n_tokens, threads);
            const auto out = s.run();
            if (first.empty())
                first = out;
            else
                EXPECT_EQ(0, std::memcmp(first.data(), out.data(), out.size() * 4)) << sh.name;
        }
    }
}

TEST(Attention, BadSoftcapIsRefused) {
    AttnCase s(GGMLType::F32, 0, 1, 1);
    s.softcap = -1.0f;
    EXPECT_THROW(s.run(), Error);
}

// Quantized caches (Q8_0, Q4_0): the rows as stored, read directly by K's vec_dot against the
// query in Q8_0 and V dequantized into an F32 sum, against the double-precision softmax of the
// same quantized values (and the Q8_0-rounded query); sliding window and soft-cap included.
// Also bounded against the attention of the unquantized values: what the quantization costs.
TEST(Attention, QuantizedCacheMatchesNaiveSoftmax) {
    for (GGMLType kv : {GGMLType::Q8_0, GGMLType::Q4_0}) {
        for (const Shape& sh : kShapes) {
            for (int threads : {1, 2}) {
                SCOPED_TRACE(std::string(type_name(kv)) + " " + sh.name + " threads=" + std::to_string(threads));
                AttnCase s(kv, sh.n_past, sh.n_tokens, threads);
                EXPECT_LT(max_abs_diff(s.run(), s.naive()), 1e-4);
                s.n_swa = 50;
                s.softcap = 3.0f;
                EXPECT_LT(max_abs_diff(s.run(), s.naive()), 1e-4);
                // The same case with an F32 cache: the quantization error stays small.
                AttnCase f(GGMLType::F32, sh.n_past, sh.n_tokens, threads);
                const auto exact = f.naive();
                EXPECT_LT(max_abs_diff(AttnCase(kv, sh.n_past, sh.n_tokens, threads).run(), exact),
                          kv == GGMLType::Q8_0 ? 0.15 : 1.5);
            }
        }
    }
}

} // namespace
