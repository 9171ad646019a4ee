// avx512_vec.cpp - the attention vector ops (vec.h) with AVX-512 F/BW/VL (+ F16C), built with
// the avx512 flags and only called when dispatch.cpp has seen those features.
//
// F16 values are widened with vcvtph2ps (exact) and narrowed with vcvtps2ph to nearest even,
// sixteen at a time; the last n % 16 use masked loads and stores, so every element goes through
// the same operations as in the scalar reference and gets the same bits.
//
// attn_f16 works in three passes over its rows: the scaled Q.K scores (Q widened once and kept
// in registers for head sizes that are multiples of 64), the online-softmax factors (scalar,
// shared with avx2_vec.cpp), and the V sum with the F16 accumulator held in registers as floats
// that are always exactly F16 values (rounded after every operation, as a store would).
#include "kernels/x86/x86_vec.h"

#include "kernels/vec_f32_attn.h"
#include "kernels/x86/vec_common.h"

#include <immintrin.h>

#include <cmath>

// GCC 12's AVX-512 intrinsics pass a deliberately undefined `__Y = __Y` operand, which its
// -W(maybe-)uninitialized flags once the functions are inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace slm::kernels::avx512 {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT;

inline __m512 load16(const uint16_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
inline void store16(uint16_t* p, __m512 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, kRound)); }
inline __mmask16 tail_mask(int64_t k) { return static_cast<__mmask16>((1u << k) - 1u); }
inline __m512 load16_tail(const uint16_t* p, __mmask16 m) { return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p)); }
inline void store16_tail(uint16_t* p, __mmask16 m, __m512 v) { _mm256_mask_storeu_epi16(p, m, _mm512_cvtps_ph(v, kRound)); }
inline __m512 round16(__m512 v) { return _mm512_cvtph_ps(_mm512_cvtps_ph(v, kRound)); }
inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

// _mm512_reduce_add_ps as GCC expands it (halves added 256, 128, then [0]+[2], [1]+[3], and
// those two), written out because GCC 12's version trips -Wuninitialized.
inline float reduce_add(__m512 v) {
    const __m256 t3 = _mm256_add_ps(_mm512_extractf32x8_ps(v, 1), _mm512_castps512_ps256(v));
    const __m128 t6 = _mm_add_ps(_mm256_extractf128_ps(t3, 1), _mm256_castps256_ps128(t3));
    const __m128 t8 = _mm_add_ps(t6, _mm_shuffle_ps(t6, t6, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(t8) + _mm_cvtss_f32(_mm_movehdup_ps(t8));
}

// ggml's GGML_F32x16_REDUCE of four accumulators.
inline float reduce4(__m512 s0, __m512 s1, __m512 s2, __m512 s3) {
    s0 = _mm512_add_ps(s0, s2);
    s1 = _mm512_add_ps(s1, s3);
    return reduce_add(_mm512_add_ps(s0, s1));
}

// ggml_vec_dot_f16 as ggml's AVX-512 build: four FMA chains of 16 over steps of 64, reduced,
// and the tail summed in double.
inline float dot(int64_t n, const uint16_t* x, const uint16_t* y) {
    const int64_t np = n & ~int64_t{63};
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t i = 0; i < np; i += 64) {
        for (int j = 0; j < 4; ++j) acc[j] = _mm512_fmadd_ps(load16(x + i + 16 * j), load16(y + i + 16 * j), acc[j]);
    }
    double sum = reduce4(acc[0], acc[1], acc[2], acc[3]);
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(h2f(x[i]) * h2f(y[i]));
    return static_cast<float>(sum);
}

void dot_f16(int64_t n, float* s, const uint16_t* x, const uint16_t* y) { *s = dot(n, x, y); }

// Keeps products rounded to float before a sum (no contraction into FMA).
inline __m512 rounded(__m512 v) {
    __asm__("" : "+v"(v));
    return v;
}

constexpr int64_t kStep = 64;  // GGML_F16_STEP of ggml's AVX-512 build

// ggml_vec_mad_f16: FMA over the first n - n % 64 elements, product then sum for the rest.
void mad_f16(int64_t n, uint16_t* y, const uint16_t* x, float v) {
    const __m512 vv = _mm512_set1_ps(v);
    const int64_t np = n - n % kStep;
    int64_t i = 0;
    for (; i < np; i += 16) store16(y + i, _mm512_fmadd_ps(load16(x + i), vv, load16(y + i)));
    for (; i + 16 <= n; i += 16) store16(y + i, _mm512_add_ps(rounded(_mm512_mul_ps(load16(x + i), vv)), load16(y + i)));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        store16_tail(y + i, m, _mm512_add_ps(rounded(_mm512_mul_ps(load16_tail(x + i, m), vv)), load16_tail(y + i, m)));
    }
}

void scale_f16(int64_t n, uint16_t* y, float v) {
    const __m512 vv = _mm512_set1_ps(v);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) store16(y + i, _mm512_mul_ps(load16(y + i), vv));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        store16_tail(y + i, m, _mm512_mul_ps(load16_tail(y + i, m), vv));
    }
}

void cvt_f32_f16(int64_t n, const float* x, uint16_t* y) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) store16(y + i, _mm512_loadu_ps(x + i));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        store16_tail(y + i, m, _mm512_maskz_loadu_ps(m, x + i));
    }
}

void cvt_f16_f32_scale(int64_t n, const uint16_t* x, float* y, float v) {
    const __m512 vv = _mm512_set1_ps(v);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(load16(x + i), vv));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(load16_tail(x + i, m), vv));
    }
}

void mad_f32(int64_t n, float* y, const float* x, float v) {
    const __m512 vv = _mm512_set1_ps(v);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_loadu_ps(x + i), vv, _mm512_loadu_ps(y + i)));
    if (i < n) {
        const __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), vv, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

// Scores of n rows for hd_k == 64 * NS: Q widened once into 4 * NS registers; each row's
// dot in ggml's AVX-512 order (the same operations as dot()).
template <int NS>
void scores_regs(const AttnF16Rows& r, const uint16_t* q, int64_t n, float* s) {
    __m512 qv[4 * NS];
    for (int k = 0; k < 4 * NS; ++k) qv[k] = load16(q + 16 * k);
    for (int64_t j = 0; j < n; ++j) {
        const uint16_t* kr = r.k + static_cast<size_t>(j) * r.k_stride;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int step = 0; step < NS; ++step) {
            for (int c = 0; c < 4; ++c) acc[c] = _mm512_fmadd_ps(load16(kr + 64 * step + 16 * c), qv[4 * step + c], acc[c]);
        }
        s[j] = reduce4(acc[0], acc[1], acc[2], acc[3]) * r.scale;
    }
}

// The V pass with the accumulator in NV registers of sixteen (hd_v == 16 * NV).
template <int NV>
void v_pass_regs(const AttnF16Rows& r, int64_t n, const float* ms, const float* vs, uint16_t* acc16) {
    __m512 acc[NV];
    for (int k = 0; k < NV; ++k) acc[k] = load16(acc16 + 16 * k);
    for (int64_t j = 0; j < n; ++j) {
        if (ms[j] != 1.0f) {  // scaling by 1 leaves every F16 value as it is
            const __m512 m = _mm512_set1_ps(ms[j]);
            for (int k = 0; k < NV; ++k) acc[k] = round16(_mm512_mul_ps(acc[k], m));
        }
        const uint16_t* vr = r.v + static_cast<size_t>(j) * r.v_stride;
        const __m512 w = _mm512_set1_ps(vs[j]);
        for (int k = 0; k < NV; ++k) acc[k] = round16(_mm512_fmadd_ps(load16(vr + 16 * k), w, acc[k]));
    }
    for (int k = 0; k < NV; ++k) store16(acc16 + 16 * k, acc[k]);
}

void attn_f16(const AttnF16Rows& r, const uint16_t* q, int64_t n, AttnF16State& st, float* scratch) {
    float* s = scratch;
    float* ms = scratch + n;
    float* vs = scratch + 2 * n;
    if (r.hd_k == 64) {
        scores_regs<1>(r, q, n, s);
    } else if (r.hd_k == 128) {
        scores_regs<2>(r, q, n, s);
    } else {
        for (int64_t j = 0; j < n; ++j) s[j] = dot(r.hd_k, r.k + static_cast<size_t>(j) * r.k_stride, q) * r.scale;
    }
    x86vec::apply_softcap(s, n, r.softcap);
    x86vec::softmax_weights(s, n, st, ms, vs);
    if (r.hd_v == 64) {
        v_pass_regs<4>(r, n, ms, vs, st.acc);
    } else if (r.hd_v == 128) {
        v_pass_regs<8>(r, n, ms, vs, st.acc);
    } else {
        for (int64_t j = 0; j < n; ++j) {
            if (ms[j] != 1.0f) scale_f16(r.hd_v, st.acc, ms[j]);
            mad_f16(r.hd_v, st.acc, r.v + static_cast<size_t>(j) * r.v_stride, vs[j]);
        }
    }
}

constexpr VecOps kOps = {"avx512", kStep, dot_f16, mad_f16, scale_f16, cvt_f32_f16, cvt_f16_f32_scale, mad_f32, attn_f16,
                       f32attn::dot_ggml, f32attn::dot_sgemm, f32attn::softmax};

} // namespace

const VecOps& vec_ops() { return kOps; }

} // namespace slm::kernels::avx512
