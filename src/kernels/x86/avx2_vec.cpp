// avx2_vec.cpp - the attention vector ops (vec.h) with AVX2 + FMA + F16C, built with
// -mavx2 -mfma -mf16c and only called when dispatch.cpp has seen those features.
//
// F16 values are widened with vcvtph2ps (exact) and narrowed with vcvtps2ph to nearest even,
// eight at a time; the last n % 8 go through the scalar F16C conversions with the same
// rounding, so every element gets the reference's bits.
#include "kernels/x86/x86_vec.h"

#include "kernels/vec_f32_attn.h"
#include "kernels/x86/vec_common.h"

#include <immintrin.h>

#include <cmath>

namespace slm::kernels::avx2 {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT;

inline __m256 load8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline void store8(uint16_t* p, __m256 v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, kRound)); }
// Rounds eight floats to F16 and back (the value an F16 store and reload gives).
inline __m256 round8(__m256 v) { return _mm256_cvtph_ps(_mm256_cvtps_ph(v, kRound)); }
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t f2h(float f) { return static_cast<uint16_t>(_cvtss_sh(f, kRound)); }

// ggml's GGML_F32x8_REDUCE of four accumulators, then two horizontal adds.
inline float reduce4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    s0 = _mm256_add_ps(s0, s2);
    s1 = _mm256_add_ps(s1, s3);
    s0 = _mm256_add_ps(s0, s1);
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

// ggml_vec_dot_f16 as ggml's AVX2 build: four FMA chains over steps of 32, reduced, and the
// tail summed in double.
inline float dot(int64_t n, const uint16_t* x, const uint16_t* y) {
    const int64_t np = n & ~int64_t{31};
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < np; i += 32) {
        for (int j = 0; j < 4; ++j) acc[j] = _mm256_fmadd_ps(load8(x + i + 8 * j), load8(y + i + 8 * j), acc[j]);
    }
    double sum = reduce4(acc[0], acc[1], acc[2], acc[3]);
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(h2f(x[i]) * h2f(y[i]));
    return static_cast<float>(sum);
}

void dot_f16(int64_t n, float* s, const uint16_t* x, const uint16_t* y) { *s = dot(n, x, y); }

// Keeps products rounded to float before a sum (no contraction into FMA).
inline __m256 rounded(__m256 v) {
    __asm__("" : "+x"(v));
    return v;
}
inline float rounded(float v) {
    __asm__("" : "+x"(v));
    return v;
}

constexpr int64_t kStep = 32;  // GGML_F16_STEP of ggml's AVX2 build

// ggml_vec_mad_f16: FMA over the first n - n % 32 elements, product then sum for the rest.
void mad_f16(int64_t n, uint16_t* y, const uint16_t* x, float v) {
    const __m256 vv = _mm256_set1_ps(v);
    const int64_t np = n - n % kStep;
    int64_t i = 0;
    for (; i < np; i += 8) store8(y + i, _mm256_fmadd_ps(load8(x + i), vv, load8(y + i)));
    for (; i + 8 <= n; i += 8) store8(y + i, _mm256_add_ps(rounded(_mm256_mul_ps(load8(x + i), vv)), load8(y + i)));
    for (; i < n; ++i) y[i] = f2h(rounded(h2f(x[i]) * v) + h2f(y[i]));
}

void scale_f16(int64_t n, uint16_t* y, float v) {
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) store8(y + i, _mm256_mul_ps(load8(y + i), vv));
    for (; i < n; ++i) y[i] = f2h(h2f(y[i]) * v);
}

void cvt_f32_f16(int64_t n, const float* x, uint16_t* y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) store8(y + i, _mm256_loadu_ps(x + i));
    for (; i < n; ++i) y[i] = f2h(x[i]);
}

void cvt_f16_f32_scale(int64_t n, const uint16_t* x, float* y, float v) {
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(load8(x + i), vv));
    for (; i < n; ++i) y[i] = h2f(x[i]) * v;
}

void mad_f32(int64_t n, float* y, const float* x, float v) {
    const __m256 vv = _mm256_set1_ps(v);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(_mm256_loadu_ps(x + i), vv, _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] = std::fma(x[i], v, y[i]);
}

// The V pass with the accumulator in NV registers of eight (hd_v == 8 * NV).
template <int NV>
void v_pass_regs(const AttnF16Rows& r, int64_t n, const float* ms, const float* vs, uint16_t* acc16) {
    __m256 acc[NV];
    for (int k = 0; k < NV; ++k) acc[k] = load8(acc16 + 8 * k);
    for (int64_t j = 0; j < n; ++j) {
        if (ms[j] != 1.0f) {  // scaling by 1 leaves every F16 value as it is
            const __m256 m = _mm256_set1_ps(ms[j]);
            for (int k = 0; k < NV; ++k) acc[k] = round8(_mm256_mul_ps(acc[k], m));
        }
        const uint16_t* vr = r.v + static_cast<size_t>(j) * r.v_stride;
        const __m256 w = _mm256_set1_ps(vs[j]);
        for (int k = 0; k < NV; ++k) acc[k] = round8(_mm256_fmadd_ps(load8(vr + 8 * k), w, acc[k]));
    }
    for (int k = 0; k < NV; ++k) store8(acc16 + 8 * k, acc[k]);
}

void attn_f16(const AttnF16Rows& r, const uint16_t* q, int64_t n, AttnF16State& st, float* scratch) {
    float* s = scratch;
    float* ms = scratch + n;
    float* vs = scratch + 2 * n;
    for (int64_t j = 0; j < n; ++j) s[j] = dot(r.hd_k, r.k + static_cast<size_t>(j) * r.k_stride, q) * r.scale;
    x86vec::apply_softcap(s, n, r.softcap);
    x86vec::softmax_weights(s, n, st, ms, vs);
    if (r.hd_v == 64) {
        v_pass_regs<8>(r, n, ms, vs, st.acc);
    } else {
        for (int64_t j = 0; j < n; ++j) {
            if (ms[j] != 1.0f) scale_f16(r.hd_v, st.acc, ms[j]);
            mad_f16(r.hd_v, st.acc, r.v + static_cast<size_t>(j) * r.v_stride, vs[j]);
        }
    }
}

constexpr VecOps kOps = {"avx2", kStep, dot_f16, mad_f16, scale_f16, cvt_f32_f16, cvt_f16_f32_scale, mad_f32, attn_f16,
                       f32attn::dot_ggml, f32attn::dot_sgemm, f32attn::softmax};

} // namespace

const VecOps& vec_ops() { return kOps; }

} // namespace slm::kernels::avx2
