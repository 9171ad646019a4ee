// The attention vector ops (kernels/vec.h) of every ISA this CPU runs against the scalar
// reference: bit for bit where the rounding is defined per element (F16 mad/scale, conversions,
// F32 mad), within float rounding for dot products (each ISA sums in its own ggml order), and
// attn_f16 bit for bit against the reference's sequence of operations with the ISA's own dot
// (with and without Gemma 2's soft-cap). The F32 attention ops (llama.cpp's AVX-512 order on
// every ISA) bit for bit across ISAs, against the same operations written with AVX-512
// intrinsics as ggml writes them (when the CPU has AVX-512), and close to double precision.
#include "core/fp16.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <gtest/gtest.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace slm;
using namespace slm::kernels;

namespace {

const int64_t kSizes[] = {1, 7, 31, 64, 65, 127, 128, 129, 257};

std::vector<const VecOps*> all_isas() {
    std::vector<const VecOps*> out;
    for (const char* isa : {"scalar", "avx2", "avx512"})
        if (const VecOps* v = vec_ops_for_isa(isa)) out.push_back(v);
    return out;
}

std::vector<uint16_t> rand_f16(std::mt19937& rng, int64_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<uint16_t> v(n);
    for (auto& h : v) h = fp16::float_to_half(d(rng));
    return v;
}

std::vector<float> rand_f32(std::mt19937& rng, int64_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (auto& f : v) f = d(rng);
    return v;
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

TEST(VecOps, DispatchFollowsIsaName) {
    EXPECT_STREQ(vec_ops().isa, std::string(isa_name()) == "neon" ? "scalar" : isa_name());
    ASSERT_NE(vec_ops_for_isa("scalar"), nullptr);
    EXPECT_EQ(vec_ops_for_isa("scalar"), &ref::vec_ops());
    EXPECT_EQ(vec_ops_for_isa("nonsense"), nullptr);
}

TEST(VecOps, MadScaleF16BitExact) {
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(1);
    EXPECT_EQ(r.f16_step, 32);
    for (const VecOps* o : all_isas()) {
        for (int64_t n : kSizes) {
            SCOPED_TRACE(std::string(o->isa) + " n=" + std::to_string(n));
            const auto x = rand_f16(rng, n);
            const auto y0 = rand_f16(rng, n, 4.0f);
            for (float v : {0.0f, 1.0f, 0.37f, -1.7f, 1e-3f, 3e4f}) {
                auto ya = y0, yb = y0;
                o->mad_f16(n, ya.data(), x.data(), v);
                ref::mad_f16_step(n, yb.data(), x.data(), v, o->f16_step);
                EXPECT_EQ(ya, yb) << "mad v=" << v;
                ya = y0, yb = y0;
                o->scale_f16(n, ya.data(), v);
                r.scale_f16(n, yb.data(), v);
                EXPECT_EQ(ya, yb) << "scale v=" << v;
            }
        }
    }
}

TEST(VecOps, MadIsFusedAndRoundsToNearestEven) {
    // 1 + 2^-11 is halfway between the F16 values 1 and 1 + 2^-10: ties go to even (1), and
    // anything above the tie goes up.
    const uint16_t one = fp16::float_to_half(1.0f);
    // y = -x with x = 1 + 2^-10 and v slightly above 1: the result is x * (v - 1) plus the
    // part of x * v that a float product would round away, which only a fused multiply-add keeps.
    const uint16_t x1 = fp16::float_to_half(1.0f + 0x1p-10f), y1 = fp16::float_to_half(-(1.0f + 0x1p-10f));
    float v_fused = 0;
    uint16_t want_fused = 0, want_unfused = 0;
    for (float v = 1.0f + 0x1p-14f; v < 1.0f + 0x1p-13f; v = std::nextafter(v, 2.0f)) {
        const float xf = fp16_to_fp32(x1), yf = fp16_to_fp32(y1);
        volatile float prod = xf * v;  // rounded to float, not fused
        const uint16_t fused = fp32_to_fp16(std::fma(xf, v, yf)), unfused = fp32_to_fp16(prod + yf);
        if (fused != unfused) {
            v_fused = v;
            want_fused = fused;
            want_unfused = unfused;
            break;
        }
    }
    ASSERT_NE(v_fused, 0.0f) << "no value found where fusing changes the F16 result";
    for (const VecOps* o : all_isas()) {
        SCOPED_TRACE(o->isa);
        std::vector<uint16_t> y(19, one), x(19, one);
        o->mad_f16(19, y.data(), x.data(), 0x1p-11f);  // 1 + 2^-11 exactly: a tie, stays at 1
        for (uint16_t h : y) EXPECT_EQ(h, 0x3c00);
        o->mad_f16(19, y.data(), x.data(), 0x1p-11f + 0x1p-22f);  // just above the tie
        for (uint16_t h : y) EXPECT_EQ(h, 0x3c01);
        // ggml_vec_mad_f16: the SIMD loop's elements fused, the leftover ones not.
        const int64_t n = 2 * o->f16_step + 5;
        std::vector<uint16_t> yy(n, y1), xx(n, x1);
        o->mad_f16(n, yy.data(), xx.data(), v_fused);
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(yy[i], i < 2 * o->f16_step ? want_fused : want_unfused) << i;
    }
}

TEST(VecOps, ConversionsBitExact) {
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(2);
    for (const VecOps* o : all_isas()) {
        for (int64_t n : kSizes) {
            SCOPED_TRACE(std::string(o->isa) + " n=" + std::to_string(n));
            auto x = rand_f32(rng, n, 10.0f);
            // Exact ties between two F16 values, subnormals, overflow.
            if (n > 4) {
                x[0] = 1.0f + 0x1p-11f;
                x[1] = 1.0f + 3 * 0x1p-11f;
                x[2] = 3e-7f;
                x[3] = 70000.0f;
                x[4] = -0.0f;
            }
            std::vector<uint16_t> a(n), b(n);
            o->cvt_f32_f16(n, x.data(), a.data());
            r.cvt_f32_f16(n, x.data(), b.data());
            EXPECT_EQ(a, b);
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(b[i], fp32_to_fp16(x[i]));
            std::vector<float> fa(n), fb(n);
            o->cvt_f16_f32_scale(n, a.data(), fa.data(), 0.013f);
            r.cvt_f16_f32_scale(n, a.data(), fb.data(), 0.013f);
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(fa[i]), bits(fb[i])) << i;
        }
    }
}

TEST(VecOps, MadF32BitExact) {
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(3);
    for (const VecOps* o : all_isas()) {
        for (int64_t n : kSizes) {
            SCOPED_TRACE(std::string(o->isa) + " n=" + std::to_string(n));
            const auto x = rand_f32(rng, n);
            auto ya = rand_f32(rng, n), yb = ya;
            o->mad_f32(n, ya.data(), x.data(), 0.731f);
            r.mad_f32(n, yb.data(), x.data(), 0.731f);
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(ya[i]), bits(yb[i])) << i;
        }
    }
}

TEST(VecOps, DotF16WithinRounding) {
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(4);
    for (const VecOps* o : all_isas()) {
        for (int64_t n : kSizes) {
            SCOPED_TRACE(std::string(o->isa) + " n=" + std::to_string(n));
            const auto x = rand_f16(rng, n), y = rand_f16(rng, n);
            float a, b;
            o->dot_f16(n, &a, x.data(), y.data());
            r.dot_f16(n, &b, x.data(), y.data());
            double mag = 0;
            for (int64_t i = 0; i < n; ++i) mag += std::fabs(double(fp16_to_fp32(x[i])) * fp16_to_fp32(y[i]));
            EXPECT_NEAR(a, b, 4e-7 * mag + 1e-30);
        }
    }
    // AVX2 sums in the order of the AVX2 F16 vec_dot of the traits table, bit for bit.
    if (const VecOps* o = vec_ops_for_isa("avx2")) {
        const TypeTraits* t = traits_for_isa("avx2", GGMLType::F16);
        for (int64_t n : kSizes) {
            const auto x = rand_f16(rng, n), y = rand_f16(rng, n);
            float a, b;
            o->dot_f16(n, &a, x.data(), y.data());
            t->vec_dot(n, &b, x.data(), y.data());
            EXPECT_EQ(bits(a), bits(b)) << n;
        }
    }
}

// attn_f16 against the reference's sequence of operations (ref attn_f16) with the dot products
// and mad step of the ISA under test, so everything but the summation order of dot is checked bit for bit;
// and calling it on a split range of rows must give the same bits as one call.
void attn_oracle(const VecOps& o, const AttnF16Rows& r, const uint16_t* q, int64_t n, AttnF16State& st) {
    const VecOps& ref = ref::vec_ops();
    for (int64_t j = 0; j < n; ++j) {
        float s;
        o.dot_f16(r.hd_k, &s, r.k + j * r.k_stride, q);
        s *= r.scale;
        if (r.softcap != 0.0f) s = r.softcap * std::tanh(s);  // ggml: logit_softcap*tanhf(s)
        float ms = 1.0f, vs = 1.0f;
        if (s > st.M) {
            const float m_old = st.M;
            st.M = s;
            ms = std::exp(m_old - st.M);
            ref.scale_f16(r.hd_v, st.acc, ms);
        } else {
            vs = std::exp(s - st.M);
        }
        ref::mad_f16_step(r.hd_v, st.acc, r.v + j * r.v_stride, vs, o.f16_step);
        volatile float p = st.S * ms;  // product, then sum
        st.S = p + vs;
    }
}

TEST(VecOps, AttnF16BitExactWithOwnDot) {
    std::mt19937 rng(5);
    for (const VecOps* o : all_isas()) {
      for (float softcap : {0.0f, 5.0f}) {
        for (int64_t hd : {int64_t(64), int64_t(128), int64_t(40), int64_t(80), int64_t(7)}) {
            for (int64_t n : kSizes) {
                SCOPED_TRACE(std::string(o->isa) + " hd=" + std::to_string(hd) + " n=" + std::to_string(n) +
                             " softcap=" + std::to_string(softcap));
                const size_t stride = hd * 2 + 3;  // rows of a wider cache (two heads and a bit)
                const auto k = rand_f16(rng, n * stride, 1.0f), v = rand_f16(rng, n * stride, 1.0f);
                const auto q = rand_f16(rng, hd, 2.0f);
                // With a soft-cap the caller folds 1/softcap into the scale, as ggml does.
                const float scale = 1.0f / std::sqrt(float(hd)) / (softcap != 0.0f ? softcap : 1.0f);
                const AttnF16Rows rows{k.data() + hd, v.data() + hd, stride, stride, hd, hd, scale, softcap};
                std::vector<float> scratch(3 * n);

                std::vector<uint16_t> acc_a(hd, 0), acc_b(hd, 0), acc_c(hd, 0);
                AttnF16State a{-INFINITY, 0.0f, acc_a.data()}, b{-INFINITY, 0.0f, acc_b.data()},
                    c{-INFINITY, 0.0f, acc_c.data()};
                o->attn_f16(rows, q.data(), n, a, scratch.data());
                attn_oracle(*o, rows, q.data(), n, b);
                EXPECT_EQ(bits(a.M), bits(b.M));
                EXPECT_EQ(bits(a.S), bits(b.S));
                EXPECT_EQ(acc_a, acc_b);

                // The same rows in pieces of 1, 7 and the rest.
                int64_t j = 0;
                for (int64_t piece : {int64_t(1), int64_t(7), n}) {
                    const int64_t m = std::min(piece, n - j);
                    if (m <= 0) break;
                    AttnF16Rows part = rows;
                    part.k += j * stride;
                    part.v += j * stride;
                    o->attn_f16(part, q.data(), m, c, scratch.data());
                    j += m;
                }
                EXPECT_EQ(bits(c.M), bits(a.M));
                EXPECT_EQ(bits(c.S), bits(a.S));
                EXPECT_EQ(acc_c, acc_a);
                // Capped scores never exceed the cap, so M cannot either.
                if (softcap != 0.0f) EXPECT_LE(a.M, softcap);
            }
        }
      }
    }
}

TEST(VecOps, AttnF16SoftcapChangesScoresAsTanh) {
    // One row: M is the capped score itself, softcap * tanh(q.k * scale / softcap).
    const int64_t hd = 16;
    std::vector<uint16_t> k(hd), v(hd, fp16::float_to_half(1.0f)), q(hd);
    for (int64_t i = 0; i < hd; ++i) {
        k[i] = fp16::float_to_half(1.0f);
        q[i] = fp16::float_to_half(2.0f);  // q.k = 32
    }
    std::vector<float> scratch(3);
    for (const VecOps* o : all_isas()) {
        std::vector<uint16_t> acc(hd, 0);
        AttnF16State st{-INFINITY, 0.0f, acc.data()};
        const AttnF16Rows rows{k.data(), v.data(), size_t(hd), size_t(hd), hd, hd, 0.5f / 5.0f, 5.0f};
        o->attn_f16(rows, q.data(), 1, st, scratch.data());
        EXPECT_FLOAT_EQ(st.M, 5.0f * std::tanh(32.0f * 0.5f / 5.0f)) << o->isa;
        EXPECT_EQ(st.S, 1.0f) << o->isa;
    }
}

// ---- F32 attention ops (llama.cpp's AVX-512 order) -------------------------------------------

TEST(VecOps, F32AttnOpsBitIdenticalOnEveryIsa) {
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(7);
    for (const VecOps* o : all_isas()) {
        for (int64_t n : {int64_t(16), int64_t(64), int64_t(80), int64_t(128), int64_t(96), int64_t(7), int64_t(200)}) {
            SCOPED_TRACE(std::string(o->isa) + " n=" + std::to_string(n));
            const auto x = rand_f32(rng, n), y = rand_f32(rng, n);
            EXPECT_EQ(bits(o->dot_f32_ggml(n, x.data(), y.data())), bits(r.dot_f32_ggml(n, x.data(), y.data())));
            if (n % 16 == 0)
                EXPECT_EQ(bits(o->dot_f32_sgemm(n, x.data(), y.data())), bits(r.dot_f32_sgemm(n, x.data(), y.data())));
            auto s = rand_f32(rng, n, 8.0f);
            s[0] = -INFINITY;  // masked positions
            if (n > 3) s[3] = -200.0f;  // exp underflows to zero
            float mx = -INFINITY;
            for (float v : s) mx = std::max(mx, v);
            std::vector<float> ya(n), yb(n);
            const double sa = o->softmax_f32(n, ya.data(), s.data(), mx), sb = r.softmax_f32(n, yb.data(), s.data(), mx);
            EXPECT_EQ(sa, sb);
            for (int64_t i = 0; i < n; ++i) ASSERT_EQ(bits(ya[i]), bits(yb[i])) << i;
        }
    }
}

TEST(VecOps, F32AttnOpsCloseToDoublePrecision) {
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(8);
    for (int64_t n : {int64_t(64), int64_t(100), int64_t(256)}) {
        const auto x = rand_f32(rng, n), y = rand_f32(rng, n);
        double exact = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
            exact += double(x[i]) * y[i];
            mag += std::fabs(double(x[i]) * y[i]);
        }
        EXPECT_NEAR(r.dot_f32_ggml(n, x.data(), y.data()), exact, 2e-7 * mag);
        if (n % 16 == 0) EXPECT_NEAR(r.dot_f32_sgemm(n, x.data(), y.data()), exact, 2e-7 * mag);
    }
    // ggml_v_expf: 1.45 + 0.5 ulp by its comment (measured: up to 2.06 ulp of exp's binade); 0
    // below about -104.
    std::vector<float> xs;
    for (float v = -103.0f; v <= 0.0f; v += 0.0137f) xs.push_back(v);
    xs.resize(xs.size() / 16 * 16);
    std::vector<float> ys(xs.size());
    r.softmax_f32(int64_t(xs.size()), ys.data(), xs.data(), 0.0f);
    for (size_t i = 0; i < xs.size(); ++i) {
        const double e = std::exp(double(xs[i]));
        if (e < 0x1p-126) continue;  // subnormal results: absolute error only
        EXPECT_LE(std::fabs(ys[i] - e), 2.5 * std::ldexp(1.0, std::ilogb(e) - 23)) << xs[i];
    }
    float big[16], out[16];
    for (float& b : big) b = -150.0f;
    EXPECT_EQ(r.softmax_f32(16, out, big, 0.0f), 0.0);
    for (float v : out) EXPECT_EQ(v, 0.0f);
}

#if defined(__x86_64__)
// The ggml operations with the AVX-512 intrinsics themselves, as ggml-cpu's vec.h / vec.cpp and
// llamafile's sgemm.cpp use them: the lane emulation of every ISA must give these bits.
__attribute__((target("avx512f,avx512dq,fma"))) float hw_dot_ggml(int64_t n, const float* x, const float* y) {
    __m512 sum[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    const int64_t np = n & ~int64_t{63};
    for (int64_t i = 0; i < np; i += 64)
        for (int j = 0; j < 4; ++j)
            sum[j] = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16 * j), _mm512_loadu_ps(y + i + 16 * j), sum[j]);
    sum[0] = _mm512_add_ps(sum[0], sum[2]);
    sum[1] = _mm512_add_ps(sum[1], sum[3]);
    sum[0] = _mm512_add_ps(sum[0], sum[1]);
    float s = _mm512_reduce_add_ps(sum[0]);
    for (int64_t i = np; i < n; ++i) s = std::fma(x[i], y[i], s);
    return s;
}

__attribute__((target("avx512f,avx512dq,fma"))) float hw_dot_sgemm(int64_t n, const float* x, const float* y) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc);
    return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f,avx512dq,fma"))) __m512 hw_v_expf(__m512 x) {
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f)));
    const __m512 res = _mm512_scalef_ps(j, n);
    const __m512 zero = _mm512_setzero_ps();
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, zero, _CMP_LE_OQ), _mm512_set1_ps(INFINITY), zero);
    return _mm512_mask_blend_ps(d, res, alt);
}

__attribute__((target("avx512f,avx512dq,fma"))) double hw_softmax(int64_t n, float* y, const float* x, float max) {
    double sum = 0;
    for (int64_t i = 0; i + 15 < n; i += 16) {
        const __m512 v = hw_v_expf(_mm512_sub_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(max)));
        _mm512_storeu_ps(y + i, v);
        sum += double(_mm512_reduce_add_ps(v));
    }
    return sum;
}

TEST(VecOps, F32AttnOpsAreTheAvx512Intrinsics) {
    if (vec_ops_for_isa("avx512") == nullptr) GTEST_SKIP() << "no AVX-512 on this CPU";
    const VecOps& r = ref::vec_ops();
    std::mt19937 rng(9);
    for (int rep = 0; rep < 50; ++rep) {
        for (int64_t n : {int64_t(64), int64_t(128), int64_t(96), int64_t(256)}) {
            const auto x = rand_f32(rng, n, 3.0f), y = rand_f32(rng, n);
            ASSERT_EQ(bits(r.dot_f32_ggml(n, x.data(), y.data())), bits(hw_dot_ggml(n, x.data(), y.data())));
            ASSERT_EQ(bits(r.dot_f32_sgemm(n, x.data(), y.data())), bits(hw_dot_sgemm(n, x.data(), y.data())));
        }
    }
    // exp over the whole range a softmax sees (x - max <= 0), the underflow edge and beyond.
    std::vector<float> xs;
    for (float v = -140.0f; v <= 0.0f; v += 0.00731f) xs.push_back(v);
    for (float v : {-INFINITY, -1e30f, -103.97f, -87.3f, -0.0f, 0.0f, -1e-30f}) xs.push_back(v);
    xs.resize(xs.size() / 16 * 16);
    std::vector<float> ya(xs.size()), yb(xs.size());
    const double sa = r.softmax_f32(int64_t(xs.size()), ya.data(), xs.data(), 0.0f);
    const double sb = hw_softmax(int64_t(xs.size()), yb.data(), xs.data(), 0.0f);
    size_t n_diff = 0;
    for (size_t i = 0; i < xs.size(); ++i) n_diff += bits(ya[i]) != bits(yb[i]);
    EXPECT_EQ(n_diff, 0u) << "of " << xs.size();
    EXPECT_EQ(sa, sb);
}
#endif

TEST(VecOps, AttnF16CloseToReference) {
    // Across ISAs only the dot products' summation order differs.
    std::mt19937 rng(6);
    const VecOps& r = ref::vec_ops();
    const int64_t hd = 64, n = 200;
    const auto k = rand_f16(rng, n * hd), v = rand_f16(rng, n * hd), q = rand_f16(rng, hd, 2.0f);
    const AttnF16Rows rows{k.data(), v.data(), size_t(hd), size_t(hd), hd, hd, 0.125f};
    std::vector<float> scratch(3 * n);
    std::vector<uint16_t> acc_ref(hd, 0);
    AttnF16State sr{-INFINITY, 0.0f, acc_ref.data()};
    r.attn_f16(rows, q.data(), n, sr, scratch.data());
    for (const VecOps* o : all_isas()) {
        std::vector<uint16_t> acc(hd, 0);
        AttnF16State s{-INFINITY, 0.0f, acc.data()};
        o->attn_f16(rows, q.data(), n, s, scratch.data());
        EXPECT_NEAR(s.M, sr.M, 1e-5) << o->isa;
        EXPECT_NEAR(s.S, sr.S, 1e-4 * sr.S) << o->isa;
        for (int64_t i = 0; i < hd; ++i)
            EXPECT_NEAR(fp16_to_fp32(acc[i]) / s.S, fp16_to_fp32(acc_ref[i]) / sr.S, 2e-3) << o->isa << " " << i;
    }
}

} // namespace
