// avx2.cpp - AVX2 + FMA + F16C kernels, built with -mavx2 -mfma -mf16c and only called when
// dispatch.cpp has seen those features at run time.
//
// Each kernel follows the AVX2 branch of its ggml-cpu counterpart (arch/x86/quants.c, vec.cpp,
// ggml-cpu.c) operation for operation, so that activations quantize to the same bytes and dot
// products sum in the same order as the llama.cpp builds our golden files come from.
#include "kernels/x86/x86.h"

#include "core/fp16.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include "kernels/x86/avx2_util.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slm::kernels::avx2 {
namespace {

inline int32_t hsum_i32_8(__m256i a) {
    const __m128i sum128 = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    const __m128i hi64 = _mm_unpackhi_epi64(sum128, sum128);
    const __m128i sum64 = _mm_add_epi32(hi64, sum128);
    const __m128i hi32 = _mm_shuffle_epi32(sum64, _MM_SHUFFLE(2, 3, 0, 1));
    return _mm_cvtsi128_si32(_mm_add_epi32(sum64, hi32));
}

// 16 bytes of nibbles -> 32 bytes in [0, 15]: low nibbles (elements 0..15) in the low lane,
// high nibbles (elements 16..31) in the high lane, matching the block layout.
inline __m256i bytes_from_nibbles_32(const uint8_t* p) {
    const __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    return _mm256_and_si256(_mm256_set1_epi8(0x0f), bytes);
}

// 32 bits -> 32 bytes, 0xff where the bit is set (element j <- bit j of the little-endian word).
inline __m256i bytes_from_bits_32(const uint8_t* p) {
    uint32_t x32;
    std::memcpy(&x32, p, sizeof x32);
    const __m256i shuf_mask = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                                0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf_mask);
    const __m256i bit_mask = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    bytes = _mm256_or_si256(bytes, bit_mask);
    return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// Unsigned x signed bytes, summed in pairs to int16 and then in pairs again to int32: exact
// (|pair| <= 2*128*127 fits int16), giving 8 partial sums of 4 products each.
inline __m256 mul_sum_us8_pairs_float(__m256i ax, __m256i sy) {
    const __m256i dot = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot));
}

// Signed x signed: move x's sign onto y so maddubs (unsigned x signed) can be used.
inline __m256 mul_sum_i8_pairs_float(__m256i x, __m256i y) {
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return mul_sum_us8_pairs_float(ax, sy);
}

// Writes 32 int8 values times d as floats, in element order.
inline void store_scaled(float* y, __m256i q, __m256 d) {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
}

// The same for unsigned quants with an offset, q*d + m. GCC may fuse the two into an FMA
// under -mfma; that cannot change the result, because q*d (a 5-bit integer times an fp16
// significand) is exact in float, so ggml's separate multiply and add also round only once.
inline void store_scaled_offset(float* y, __m256i q, __m256 d, __m256 m) {
    const __m128i lo = _mm256_castsi256_si128(q);
    const __m128i hi = _mm256_extracti128_si256(q, 1);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
        _mm256_storeu_ps(y + 8 * k, _mm256_add_ps(_mm256_mul_ps(v, d), m));
    }
}

// ---- to_float ------------------------------------------------------------------------------

void f16_to_float(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
    }
    for (; i < n; ++i) y[i] = half(x[i]);
}

void bf16_to_float(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
        _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
    }
    for (; i < n; ++i) y[i] = fp16::bf16_to_float(x[i]);
}

void dequantize_row_q4_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ4_0*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const __m256i q = _mm256_sub_epi8(bytes_from_nibbles_32(x[i].qs), _mm256_set1_epi8(8));
        store_scaled(y, q, _mm256_set1_ps(half(x[i].d)));
    }
}

void dequantize_row_q4_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ4_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        store_scaled_offset(y, bytes_from_nibbles_32(x[i].qs), _mm256_set1_ps(half(x[i].d)),
                            _mm256_set1_ps(half(x[i].m)));
    }
}

// Q5_0 quants minus 16 as int8 in one step: OR-ing 0xf0 into a nibble whose 5th bit is clear
// gives nibble - 16 in two's complement; a set 5th bit leaves the nibble, which is q - 16.
inline __m256i q5_0_signed(const BlockQ5_0& b) {
    const __m256i hi = _mm256_andnot_si256(bytes_from_bits_32(b.qh), _mm256_set1_epi8(static_cast<char>(0xf0)));
    return _mm256_or_si256(bytes_from_nibbles_32(b.qs), hi);
}

inline __m256i q5_1_unsigned(const BlockQ5_1& b) {
    const __m256i hi = _mm256_and_si256(bytes_from_bits_32(b.qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(bytes_from_nibbles_32(b.qs), hi);
}

void dequantize_row_q5_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ5_0*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) store_scaled(y, q5_0_signed(x[i]), _mm256_set1_ps(half(x[i].d)));
}

void dequantize_row_q5_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ5_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        store_scaled_offset(y, q5_1_unsigned(x[i]), _mm256_set1_ps(half(x[i].d)), _mm256_set1_ps(half(x[i].m)));
    }
}

void dequantize_row_q8_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        store_scaled(y, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)), _mm256_set1_ps(half(x[i].d)));
    }
}

void dequantize_row_q8_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        store_scaled(y, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[i].qs)), _mm256_set1_ps(half(x[i].d)));
    }
}

// ---- from_float ----------------------------------------------------------------------------

// ggml_cpu_fp32_to_fp16: F16C for groups of 8 and 4, GGML_FP32_TO_FP16 for the rest.
void f16_from_float(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i + 4 <= n; i += 4) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), _mm_cvtps_ph(_mm_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; ++i) y[i] = fp16::float_to_half(x[i]);
}

// ggml_compute_fp32_to_bf16, eight at a time.
void bf16_from_float(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    const __m256i inf = _mm256_set1_epi32(0x7f800000);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i bias = _mm256_set1_epi32(0x7fff);
    const __m256i quiet = _mm256_set1_epi32(64);
    for (; i + 8 <= n; i += 8) {
        const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
        const __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
        const __m256i top = _mm256_srli_epi32(u, 16);
        const __m256i rne = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(top, one))), 16);
        const __m256i r = _mm256_blendv_epi8(rne, _mm256_or_si256(top, quiet), is_nan);
        // Values are <= 0xffff, so the unsigned-saturating pack is exact; it packs per 128-bit
        // lane, and the permute brings the two lanes' halves together.
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_castsi256_si128(packed));
    }
    for (; i < n; ++i) y[i] = fp16::float_to_bf16(x[i]);
}

// The body of ggml's AVX2 quantize_row_q8_0 / q8_1 for one block: returns d before fp16
// rounding and, via *qsum, the int32 sum of the quants (hsum_i32_8 before packing).
inline float quantize_block_q8(const float* x, int8_t* qs, int32_t* qsum) {
    __m256 v0 = _mm256_loadu_ps(x);
    __m256 v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16);
    __m256 v3 = _mm256_loadu_ps(x + 24);

    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 max_abs = _mm256_andnot_ps(sign_bit, v0);
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v1));
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v2));
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v3));
    __m128 max4 = _mm_max_ps(_mm256_extractf128_ps(max_abs, 1), _mm256_castps256_ps128(max_abs));
    max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
    max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
    const float amax = _mm_cvtss_f32(max4);

    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    const __m256 mul = _mm256_set1_ps(id);
    v0 = _mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_ROUND_NEAREST);
    v1 = _mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_ROUND_NEAREST);
    v2 = _mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_ROUND_NEAREST);
    v3 = _mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_ROUND_NEAREST);
    __m256i i0 = _mm256_cvtps_epi32(v0);
    __m256i i1 = _mm256_cvtps_epi32(v1);
    __m256i i2 = _mm256_cvtps_epi32(v2);
    __m256i i3 = _mm256_cvtps_epi32(v3);
    if (qsum) *qsum = hsum_i32_8(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));

    // The packs work per 128-bit lane, leaving the dwords in order 0,4,1,5,2,6,3,7.
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), i0);
    return d;
}

void quantize_row_q8_0(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_0*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        y[i].d = fp16::float_to_half(quantize_block_q8(x, y[i].qs, nullptr));
    }
}

void quantize_row_q8_1(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_1*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        int32_t sum;
        const float d = quantize_block_q8(x, y[i].qs, &sum);
        y[i].d = fp16::float_to_half(d);
        y[i].s = fp16::float_to_half(d * static_cast<float>(sum));
    }
}

// ---- vec_dot -------------------------------------------------------------------------------

// GGML_F32x8_REDUCE over the four accumulators of ggml_vec_dot_f32/f16 (GGML_F32_ARR = 4).
inline float reduce4(__m256 s0, __m256 s1, __m256 s2, __m256 s3) {
    s0 = _mm256_add_ps(s0, s2);
    s1 = _mm256_add_ps(s1, s3);
    s0 = _mm256_add_ps(s0, s1);
    const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    const __m128 t1 = _mm_hadd_ps(t0, t0);
    return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

// ggml_vec_dot_f32 with GGML_F32_STEP 32: four FMA chains, reduced, then a scalar tail (which
// GCC contracts to FMA in ggml's own build).
void vec_dot_f32(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const float*>(vx);
    const auto* y = static_cast<const float*>(vy);
    const int64_t np = n & ~int64_t{31};
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < np; i += 32) {
        for (int j = 0; j < 4; ++j) {
            acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * j), _mm256_loadu_ps(y + i + 8 * j), acc[j]);
        }
    }
    float sumf = reduce4(acc[0], acc[1], acc[2], acc[3]);
    for (int64_t i = np; i < n; ++i) sumf = std::fma(x[i], y[i], sumf);
    *s = sumf;
}

// ggml_vec_dot_f16: as f32 with F16C loads; the reduced sum and the tail are in double.
void vec_dot_f16(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const uint16_t*>(vx);
    const auto* y = static_cast<const uint16_t*>(vy);
    const int64_t np = n & ~int64_t{31};
    auto load = [](const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); };
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < np; i += 32) {
        for (int j = 0; j < 4; ++j) acc[j] = _mm256_fmadd_ps(load(x + i + 8 * j), load(y + i + 8 * j), acc[j]);
    }
    double sumf = reduce4(acc[0], acc[1], acc[2], acc[3]);
    for (int64_t i = np; i < n; ++i) sumf += static_cast<double>(half(x[i]) * half(y[i]));
    *s = static_cast<float>(sumf);
}

// ggml_vec_dot_bf16 (AVX2 branch): four chains over 32 elements, whose mul+add GCC fuses.
void vec_dot_bf16(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const uint16_t*>(vx);
    const auto* y = static_cast<const uint16_t*>(vy);
    auto load = [](const uint16_t* p) {
        const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
    };
    __m256 c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps(), c3 = _mm256_setzero_ps(), c4 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        c1 = _mm256_fmadd_ps(load(x + i), load(y + i), c1);
        c2 = _mm256_fmadd_ps(load(x + i + 8), load(y + i + 8), c2);
        c3 = _mm256_fmadd_ps(load(x + i + 16), load(y + i + 16), c3);
        c4 = _mm256_fmadd_ps(load(x + i + 24), load(y + i + 24), c4);
    }
    c1 = _mm256_add_ps(_mm256_add_ps(c1, c3), _mm256_add_ps(c2, c4));
    double sumf = hsum_float_8(c1);
    for (; i < n; ++i) sumf += static_cast<double>(fp16::bf16_to_float(x[i]) * fp16::bf16_to_float(y[i]));
    *s = static_cast<float>(sumf);
}

void vec_dot_q4_0_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ4_0*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const __m256 d = _mm256_set1_ps(half(x[ib].d) * half(y[ib].d));
        const __m256i qx = _mm256_sub_epi8(bytes_from_nibbles_32(x[ib].qs), _mm256_set1_epi8(8));
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(qx, qy), acc);
    }
    *s = hsum_float_8(acc);
}

void vec_dot_q4_1_q8_1(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ4_1*>(vx);
    const auto* y = static_cast<const BlockQ8_1*>(vy);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        summs = std::fma(half(x[ib].m), half(y[ib].s), summs);
        const __m256 d0d1 = _mm256_mul_ps(_mm256_set1_ps(half(x[ib].d)), _mm256_set1_ps(half(y[ib].d)));
        const __m256i qx = bytes_from_nibbles_32(x[ib].qs);
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
        acc = _mm256_fmadd_ps(d0d1, mul_sum_us8_pairs_float(qx, qy), acc);
    }
    *s = hsum_float_8(acc) + summs;
}

void vec_dot_q5_0_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ5_0*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const __m256 d = _mm256_set1_ps(half(x[ib].d) * half(y[ib].d));
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(q5_0_signed(x[ib]), qy), acc);
    }
    *s = hsum_float_8(acc);
}

void vec_dot_q5_1_q8_1(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ5_1*>(vx);
    const auto* y = static_cast<const BlockQ8_1*>(vy);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const __m256 dx = _mm256_set1_ps(half(x[ib].d));
        summs = std::fma(half(x[ib].m), half(y[ib].s), summs);
        const __m256 dy = _mm256_set1_ps(half(y[ib].d));
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
        const __m256 q = mul_sum_us8_pairs_float(q5_1_unsigned(x[ib]), qy);
        acc = _mm256_fmadd_ps(q, _mm256_mul_ps(dx, dy), acc);
    }
    *s = hsum_float_8(acc) + summs;
}

void vec_dot_q8_0_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const __m256 d = _mm256_set1_ps(half(x[ib].d) * half(y[ib].d));
        const __m256i qx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[ib].qs));
        const __m256i qy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
        acc = _mm256_fmadd_ps(d, mul_sum_i8_pairs_float(qx, qy), acc);
    }
    *s = hsum_float_8(acc);
}

// ---- tiles (TypeTraits::gemm) ---------------------------------------------------------------
//
// R weight rows x C activation rows per tile: each weight block is unpacked once for C tokens
// and each activation block loaded once for R rows; R*C accumulators of 8 floats stay in
// registers (R*C <= 12 of the 16 ymm). Q4_0's nibbles go into maddubs unsigned, as they are
// (0..15), and the -8 offset comes off per block as 8 * sum(a), computed once per activation
// block; Q8_0 moves the weight's sign onto the activation, as vec_dot does.

template <int R, int C>
void tile_q4_0(int64_t nb, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    __m256 acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1), eights = _mm256_set1_epi8(8);
    for (int64_t ib = 0; ib < nb; ++ib) {
        __m256i a[C], bias[C];
        float da[C];
        for (int c = 0; c < C; ++c) {
            const auto* yb = reinterpret_cast<const BlockQ8_0*>(y + c * by) + ib;
            a[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb->qs));
            bias[c] = _mm256_madd_epi16(ones, _mm256_maddubs_epi16(eights, a[c]));  // 8 * sum(a) per 4 bytes
            da[c] = half(yb->d);
        }
        for (int r = 0; r < R; ++r) {
            const auto* xb = reinterpret_cast<const BlockQ4_0*>(x + r * bx) + ib;
            const __m256i q = bytes_from_nibbles_32(xb->qs);
            const float dw = half(xb->d);
            for (int c = 0; c < C; ++c) {
                const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(ones, _mm256_maddubs_epi16(q, a[c])), bias[c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da[c]), _mm256_cvtepi32_ps(dot), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) s[c * ldc + r] = hsum_float_8(acc[r][c]);
}

template <int R, int C>
void tile_q8_0(int64_t nb, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    __m256 acc[R][C];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < nb; ++ib) {
        __m256i a[C];
        float da[C];
        for (int c = 0; c < C; ++c) {
            const auto* yb = reinterpret_cast<const BlockQ8_0*>(y + c * by) + ib;
            a[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(yb->qs));
            da[c] = half(yb->d);
        }
        for (int r = 0; r < R; ++r) {
            const auto* xb = reinterpret_cast<const BlockQ8_0*>(x + r * bx) + ib;
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs));
            const __m256i aw = _mm256_sign_epi8(w, w);
            const float dw = half(xb->d);
            for (int c = 0; c < C; ++c) {
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da[c]),
                                            mul_sum_us8_pairs_float(aw, _mm256_sign_epi8(a[c], w)), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < C; ++c) s[c * ldc + r] = hsum_float_8(acc[r][c]);
}

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t);

// Covers nr x nc with 4x3 tiles and the smaller tiles the edges need.
template <template <int, int> class K>
void gemm_tiles(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
                size_t ldc) {
    static constexpr TileFn kTiles[4][3] = {
        {K<1, 1>::run, K<1, 2>::run, K<1, 3>::run},
        {K<2, 1>::run, K<2, 2>::run, K<2, 3>::run},
        {K<3, 1>::run, K<3, 2>::run, K<3, 3>::run},
        {K<4, 1>::run, K<4, 2>::run, K<4, 3>::run},
    };
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    const int64_t nb = n / kQK;
    for (int64_t c0 = 0; c0 < nc; c0 += 3) {
        const int cn = static_cast<int>(std::min<int64_t>(3, nc - c0));
        for (int64_t r0 = 0; r0 < nr; r0 += 4) {
            const int rn = static_cast<int>(std::min<int64_t>(4, nr - r0));
            kTiles[rn - 1][cn - 1](nb, x + r0 * bx, bx, y + c0 * by, by, s + c0 * ldc + r0, ldc);
        }
    }
}

template <int R, int C>
struct Q4_0Tile {
    static void run(int64_t nb, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
        tile_q4_0<R, C>(nb, x, bx, y, by, s, ldc);
    }
};
template <int R, int C>
struct Q8_0Tile {
    static void run(int64_t nb, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
        tile_q8_0<R, C>(nb, x, bx, y, by, s, ldc);
    }
};

void gemm_q4_0_q8_0(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                    size_t ldc) {
    gemm_tiles<Q4_0Tile>(n, x, bx, nr, y, by, nc, s, ldc);
}

void gemm_q8_0_q8_0(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                    size_t ldc) {
    gemm_tiles<Q8_0Tile>(n, x, bx, nr, y, by, nc, s, ldc);
}

} // namespace

void fill_traits(TypeTraits* table, int n_table) {
    // from_float for Q4_0..Q5_1 stays the scalar quantize_ref: ggml-cpu has no SIMD version.
    const TypeTraits all[] = {
        {GGMLType::F32, ref::f32_to_float, ref::f32_from_float, vec_dot_f32, GGMLType::F32, ref::f32_from_float, nullptr},
        {GGMLType::F16, f16_to_float, f16_from_float, vec_dot_f16, GGMLType::F16, ref::f16_quantize_ref, nullptr},
        {GGMLType::BF16, bf16_to_float, bf16_from_float, vec_dot_bf16, GGMLType::BF16, ref::bf16_quantize_ref, nullptr},
        {GGMLType::Q4_0, dequantize_row_q4_0, ref::quantize_row_q4_0_ref, vec_dot_q4_0_q8_0, GGMLType::Q8_0,
         ref::quantize_row_q4_0_ref, gemm_q4_0_q8_0},
        {GGMLType::Q4_1, dequantize_row_q4_1, ref::quantize_row_q4_1_ref, vec_dot_q4_1_q8_1, GGMLType::Q8_1,
         ref::quantize_row_q4_1_ref, nullptr},
        {GGMLType::Q5_0, dequantize_row_q5_0, ref::quantize_row_q5_0_ref, vec_dot_q5_0_q8_0, GGMLType::Q8_0,
         ref::quantize_row_q5_0_ref, nullptr},
        {GGMLType::Q5_1, dequantize_row_q5_1, ref::quantize_row_q5_1_ref, vec_dot_q5_1_q8_1, GGMLType::Q8_1,
         ref::quantize_row_q5_1_ref, nullptr},
        {GGMLType::Q8_0, dequantize_row_q8_0, quantize_row_q8_0, vec_dot_q8_0_q8_0, GGMLType::Q8_0,
         ref::quantize_row_q8_0_ref, gemm_q8_0_q8_0},
        {GGMLType::Q8_1, dequantize_row_q8_1, quantize_row_q8_1, nullptr, GGMLType::Q8_1, ref::quantize_row_q8_1_ref, nullptr},
    };
    for (const TypeTraits& t : all) {
        const auto id = static_cast<int>(t.type);
        if (id < n_table) table[id] = t;
    }
}

} // namespace slm::kernels::avx2
