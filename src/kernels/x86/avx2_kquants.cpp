// avx2_kquants.cpp - AVX2 + FMA + F16C kernels of the super-block types and IQ4_NL, built with
// -mavx2 -mfma -mf16c (see the root CMakeLists.txt) and only called when dispatch.cpp has seen
// those features at run time.
//
// Each dot product follows the AVX2 branch of ggml_vec_dot_*_q8_K / iq4_nl_q8_0 in ggml-cpu's
// arch/x86/quants.c: the same integer partial sums in the same 32-bit lanes, converted to float
// and scaled in the same order, so results match ggml's AVX2 build bit for bit (kquants_test
// holds results recorded from one). ggml's AVX-512 VNNI build computes the same lane sums with
// vpdpbusd. Where ggml writes a separate multiply and add, its GCC build with -mfma fuses them,
// so we use FMA there as well.
#include "kernels/x86/x86.h"

#include "core/fp16.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include "kernels/x86/avx2_util.h"

#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace slm::kernels::avx2 {
namespace {

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// A pshufb index that broadcasts int16 element `lo` over the low 128-bit lane and `hi` over
// the high one (each lane indexes its own 16 bytes).
inline __m256i spread_i16(int lo, int hi) {
    const auto pair = [](int e) { return static_cast<short>(((2 * e + 1) << 8) | (2 * e)); };
    return _mm256_set_m128i(_mm_set1_epi16(pair(hi)), _mm_set1_epi16(pair(lo)));
}

// Signed x signed bytes summed in pairs to int16: x's sign moved onto y for maddubs.
inline __m256i mul_add_epi8(__m256i x, __m256i y) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// The 6-bit scales and mins of a Q4_K/Q5_K block as bytes 0..7 and 8..15 of out (what
// ref::get_scale_min_k4 reads one at a time). Scales 0..3 and mins 0..3 are the low 6 bits of
// bytes 0..3 and 4..7; scales/mins 4..7 take their low 4 bits from the nibbles of bytes 8..11
// and their high 2 bits from the top bits of bytes 0..3 / 4..7.
inline void unpack_k4_scales(const uint8_t* packed, uint32_t out[4]) {
    constexpr uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    uint32_t w[3];
    std::memcpy(w, packed, 12);
    out[0] = w[0] & low6;
    out[1] = (w[2] & low4) | (((w[0] >> 6) & low2) << 4);
    out[2] = w[1] & low6;
    out[3] = ((w[2] >> 4) & low4) | (((w[1] >> 6) & low2) << 4);
}

// ---- from_float: Q8_K --------------------------------------------------------------------------

// quantize_row_q8_K_ref vectorized, byte for byte (ggml's x86 build runs the reference itself):
// the element of largest magnitude is found as the first one equal to the NaN-ignoring maximum,
// nearest_int is the same float addition, and int8 stores truncate as C's conversions do.
void quantize_row_q8_K(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_K*>(vy);
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        __m256 vmax = _mm256_setzero_ps();
        // maxps returns its second operand when the first is NaN, which skips NaNs as the
        // reference's `ax > amax` does.
        for (int k = 0; k < kQK_K; k += 8) vmax = _mm256_max_ps(_mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + k)), vmax);
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(vmax, 1), _mm256_castps256_ps128(vmax));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            y[i].d = 0;
            std::memset(y[i].qs, 0, sizeof y[i].qs);
            std::memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        float max = 0;
        const __m256 vamax = _mm256_set1_ps(amax);
        for (int k = 0; k < kQK_K; k += 8) {
            const __m256 ax = _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + k));
            const int mask = _mm256_movemask_ps(_mm256_cmp_ps(ax, vamax, _CMP_EQ_OQ));
            if (mask != 0) {
                max = x[k + __builtin_ctz(static_cast<unsigned>(mask))];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        const __m256 magic = _mm256_set1_ps(12582912.f);
        const __m256i mant = _mm256_set1_epi32(0x007fffff), bias = _mm256_set1_epi32(0x00400000);
        const __m256i v127 = _mm256_set1_epi32(127), low_byte = _mm256_set1_epi32(0xff);
        const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (int k = 0; k < kQK_K; k += 32) {
            __m256i q[4];
            for (int r = 0; r < 4; ++r) {
                __m256 prod = _mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * r), mul);
                // The reference rounds the product before adding; keep GCC from fusing the two.
                __asm__("" : "+x"(prod));
                const __m256 v = _mm256_add_ps(prod, magic);
                __m256i iv = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), bias);
                iv = _mm256_min_epi32(iv, v127);
                q[r] = _mm256_and_si256(iv, low_byte);  // the int8 store keeps the low byte
            }
            // Values are 0..255 now, so the saturating packs are exact; they work per 128-bit
            // lane, and the permute restores element order.
            const __m256i w = _mm256_packus_epi16(_mm256_packus_epi32(q[0], q[1]), _mm256_packus_epi32(q[2], q[3]));
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs + k), _mm256_permutevar8x32_epi32(w, perm));
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            // 16 signed bytes summed exactly: maddubs with ones gives pairs, madd quads.
            const __m128i b = load128(y[i].qs + 16 * j);
            const __m128i pairs = _mm_maddubs_epi16(_mm_set1_epi8(1), b);
            __m128i quads = _mm_madd_epi16(pairs, _mm_set1_epi16(1));
            quads = _mm_add_epi32(quads, _mm_unpackhi_epi64(quads, quads));
            quads = _mm_add_epi32(quads, _mm_shuffle_epi32(quads, 1));
            y[i].bsums[j] = static_cast<int16_t>(_mm_cvtsi128_si32(quads));
        }
        y[i].d = 1 / iscale;
    }
}

// ---- vec_dot --------------------------------------------------------------------------------------

void vec_dot_q2_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ2_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = y[i].d * half(x[i].d);
        const float dmin = -y[i].d * half(x[i].dmin);
        const uint8_t* q2 = x[i].qs;
        const int8_t* q8 = y[i].qs;

        // The min term: 16 mins times the 16 activation sums, in 8 lanes of two.
        const __m128i mins_and_scales = load128(x[i].scales);
        const __m128i scales8 = _mm_and_si128(mins_and_scales, m4);
        const __m128i mins8 = _mm_and_si128(_mm_srli_epi16(mins_and_scales, 4), m4);
        const __m256i prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mins8), load256(y[i].bsums));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);

        // Scales 0..7 (first 128 elements) and 8..15 as int16, the same in both lanes.
        const __m256i all_scales = _mm256_cvtepi8_epi16(scales8);
        const __m128i l_scales = _mm256_extracti128_si256(all_scales, 0);
        const __m128i h_scales = _mm256_extracti128_si256(all_scales, 1);
        const __m256i scales[2] = {_mm256_set_m128i(l_scales, l_scales), _mm256_set_m128i(h_scales, h_scales)};

        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < kQK_K / 128; ++j, q2 += 32) {
            const __m256i q2bits = load256(q2);
            __m256i p[4];
            for (int k = 0; k < 4; ++k, q8 += 32) {
                const __m256i q2k = _mm256_and_si256(_mm256_srli_epi16(q2bits, 2 * k), m3);
                p[k] = _mm256_maddubs_epi16(q2k, load256(q8));
                // 32 elements = sub-blocks 2k (low lane) and 2k+1 (high lane) of this half.
                p[k] = _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], spread_i16(2 * k, 2 * k + 1)), p[k]);
            }
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_float_8(acc);
}

void vec_dot_q3_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ3_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m256i mone = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = y[i].d * half(x[i].d);
        const uint8_t* q3 = x[i].qs;
        const int8_t* q8 = y[i].qs;

        // The 16 scales minus 32 (what ref::unpack_q3_K_scales gives), four bytes at a time:
        // low nibbles of words 0..1 then their high nibbles, each with 2 bits from word 2.
        constexpr uint32_t low4 = 0x0f0f0f0f, low2 = 0x03030303;
        uint32_t w[3];
        std::memcpy(w, x[i].scales, 12);
        const __m128i sc128 = _mm_sub_epi8(
            _mm_set_epi32(static_cast<int>(((w[1] >> 4) & low4) | (((w[2] >> 6) & low2) << 4)),
                          static_cast<int>(((w[0] >> 4) & low4) | (((w[2] >> 4) & low2) << 4)),
                          static_cast<int>((w[1] & low4) | (((w[2] >> 2) & low2) << 4)),
                          static_cast<int>((w[0] & low4) | ((w[2] & low2) << 4))),
            _mm_set1_epi8(32));
        const __m256i all_scales = _mm256_cvtepi8_epi16(sc128);
        const __m128i l_scales = _mm256_extracti128_si256(all_scales, 0);
        const __m128i h_scales = _mm256_extracti128_si256(all_scales, 1);
        const __m256i scales[2] = {_mm256_set_m128i(l_scales, l_scales), _mm256_set_m128i(h_scales, h_scales)};

        const __m256i hbits = load256(x[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
        int bit = 0;
        for (int j = 0; j < kQK_K / 128; ++j, q3 += 32) {
            const __m256i q3bits = load256(q3);
            __m256i p[4];
            for (int k = 0; k < 4; ++k, ++bit, q8 += 32) {
                const __m256i q3l = _mm256_and_si256(_mm256_srli_epi16(q3bits, 2 * k), m3);
                // 4 where the high bit is clear (the -4 of the quant), else 0.
                const __m256i q3h = _mm256_slli_epi16(
                    _mm256_srli_epi16(_mm256_andnot_si256(hbits, _mm256_slli_epi16(mone, bit)), bit), 2);
                const __m256i q8k = load256(q8);
                // Low bits and high-bit correction multiplied separately, for maddubs' unsigned x.
                p[k] = _mm256_sub_epi16(_mm256_maddubs_epi16(q3l, q8k), _mm256_maddubs_epi16(q3h, q8k));
                p[k] = _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], spread_i16(2 * k, 2 * k + 1)), p[k]);
            }
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]), _mm256_add_epi32(p[2], p[3])));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_float_8(acc);
}

void vec_dot_q4_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ4_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    __m128 acc_m = _mm_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = y[i].d * half(x[i].d);
        const float dmin = -y[i].d * half(x[i].dmin);
        uint32_t utmp[4];
        unpack_k4_scales(x[i].scales, utmp);
        const uint8_t* q4 = x[i].qs;
        const int8_t* q8 = y[i].qs;

        // [scale 0..7, min 0..7] as int16.
        const __m256i mins_and_scales = _mm256_cvtepu8_epi16(
            _mm_set_epi32(static_cast<int>(utmp[3]), static_cast<int>(utmp[2]), static_cast<int>(utmp[1]),
                          static_cast<int>(utmp[0])));
        // The min term: activation sums per 32 (adjacent 16-sums added) times the mins.
        const __m256i q8sums = load256(y[i].bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
        const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);

        const __m128i sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);

        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < kQK_K / 64; ++j, q4 += 32) {
            const __m256i scale_l = _mm256_shuffle_epi8(scales, spread_i16(2 * j, 2 * j));
            const __m256i scale_h = _mm256_shuffle_epi8(scales, spread_i16(2 * j + 1, 2 * j + 1));
            const __m256i q4bits = load256(q4);
            const __m256i q4l = _mm256_and_si256(q4bits, m4);
            const __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
            const __m256i p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, load256(q8)));
            q8 += 32;
            const __m256i p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, load256(q8)));
            q8 += 32;
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16l, p16h));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
    *s = hsum_float_8(acc) + _mm_cvtss_f32(acc_m);
}

void vec_dot_q5_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ5_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m128i mzero = _mm_setzero_si128();
    const __m256i mone = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const uint8_t* q5 = x[i].qs;
        const int8_t* q8 = y[i].qs;
        const float d = y[i].d * half(x[i].d);
        const float dmin = -y[i].d * half(x[i].dmin);
        uint32_t utmp[4];
        unpack_k4_scales(x[i].scales, utmp);
        const __m256i mins_and_scales = _mm256_cvtepu8_epi16(
            _mm_set_epi32(static_cast<int>(utmp[3]), static_cast<int>(utmp[2]), static_cast<int>(utmp[1]),
                          static_cast<int>(utmp[0])));

        // Here the min term is reduced to one integer per block and added in scalar float.
        const __m256i q8sums = load256(y[i].bsums);
        const __m128i q8s = _mm_hadd_epi16(_mm256_extracti128_si256(q8sums, 0), _mm256_extracti128_si256(q8sums, 1));
        const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(mins_and_scales, 1), q8s);
        const __m128i hsum = _mm_hadd_epi32(_mm_hadd_epi32(prod, mzero), mzero);
        summs = std::fma(dmin, static_cast<float>(_mm_extract_epi32(hsum, 0)), summs);

        const __m128i sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);
        const __m256i hbits = load256(x[i].qh);
        __m256i hmask = mone;
        __m256i sumi = _mm256_setzero_si256();
        int bit = 0;
        for (int j = 0; j < kQK_K / 64; ++j, q5 += 32) {
            const __m256i scale_0 = _mm256_shuffle_epi8(scales, spread_i16(2 * j, 2 * j));
            const __m256i scale_1 = _mm256_shuffle_epi8(scales, spread_i16(2 * j + 1, 2 * j + 1));
            const __m256i q5bits = load256(q5);

            const __m256i q5l_0 = _mm256_and_si256(q5bits, m4);
            const __m256i q5h_0 = _mm256_slli_epi16(_mm256_srli_epi16(_mm256_and_si256(hbits, hmask), bit++), 4);
            const __m256i q5_0 = _mm256_add_epi8(q5l_0, q5h_0);
            hmask = _mm256_slli_epi16(hmask, 1);

            const __m256i q5l_1 = _mm256_and_si256(_mm256_srli_epi16(q5bits, 4), m4);
            const __m256i q5h_1 = _mm256_slli_epi16(_mm256_srli_epi16(_mm256_and_si256(hbits, hmask), bit++), 4);
            const __m256i q5_1 = _mm256_add_epi8(q5l_1, q5h_1);
            hmask = _mm256_slli_epi16(hmask, 1);

            const __m256i p16_0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, load256(q8)));
            q8 += 32;
            const __m256i p16_1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, load256(q8)));
            q8 += 32;
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_float_8(acc) + summs;
}

void vec_dot_q6_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ6_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = y[i].d * half(x[i].d);
        const uint8_t* q4 = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* q8 = y[i].qs;
        const __m128i scales = load128(x[i].scales);
        // The -32 of the quants: 32 * sum(scale_j * bsum_j), in 8 lanes of two sub-blocks,
        // subtracted from the lane sums of the unsigned quants at the end (as current ggml
        // does; older versions subtracted maddubs(32, y) per product, same total, other lanes).
        const __m256i q8sclsub = _mm256_slli_epi32(_mm256_madd_epi16(load256(y[i].bsums), _mm256_cvtepi8_epi16(scales)), 5);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < kQK_K / 128; ++j, q4 += 64, qh += 32) {
            const __m256i q4bits1 = load256(q4);
            const __m256i q4bits2 = load256(q4 + 32);
            const __m256i q4bitsH = load256(qh);
            const __m256i q4h[4] = {
                _mm256_slli_epi16(_mm256_and_si256(q4bitsH, m2), 4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bitsH, 2), m2), 4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bitsH, 4), m2), 4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bitsH, 6), m2), 4),
            };
            const __m256i q6[4] = {
                _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h[0]),
                _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h[1]),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h[2]),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h[3]),
            };
            __m256i p[4];
            for (int k = 0; k < 4; ++k, q8 += 32) {
                // Sub-blocks 8j + 2k and 8j + 2k + 1: their scale bytes spread over 8 int16 each.
                const int is = 4 * j + k;
                const __m128i sc = _mm_shuffle_epi8(scales, _mm_set_epi64x(0x0101010101010101LL * (2 * is + 1),
                                                                           0x0101010101010101LL * (2 * is)));
                p[k] = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc), _mm256_maddubs_epi16(q6[k], load256(q8)));
            }
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[0], p[1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p[2], p[3]));
        }
        sumi = _mm256_sub_epi32(sumi, q8sclsub);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_float_8(acc);
}

// The 32 code-book values of an IQ4 row of 16 bytes: low nibbles (elements 0..15) in the low
// lane, high nibbles (16..31) in the high lane.
inline __m256i iq4_values(const uint8_t* qs, __m128i values128, __m128i m4b) {
    const __m128i bits = load128(qs);
    return _mm256_set_m128i(_mm_shuffle_epi8(values128, _mm_and_si128(_mm_srli_epi16(bits, 4), m4b)),
                            _mm_shuffle_epi8(values128, _mm_and_si128(bits, m4b)));
}

void vec_dot_iq4_nl_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockIQ4_NL*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    const int64_t nb = n / kQK;
    const __m128i values128 = load128(kIQ4NLValues);
    const __m128i m4b = _mm_set1_epi8(0x0f);
    const __m256i mone = _mm256_set1_epi16(1);
    // Even and odd blocks in two accumulators, then a scalar tail for an odd count.
    __m256 accum1 = _mm256_setzero_ps(), accum2 = _mm256_setzero_ps();
    int64_t ib = 0;
    for (; ib + 1 < nb; ib += 2) {
        const __m256i p_1 = _mm256_madd_epi16(mul_add_epi8(iq4_values(x[ib].qs, values128, m4b), load256(y[ib].qs)), mone);
        const __m256i p_2 =
            _mm256_madd_epi16(mul_add_epi8(iq4_values(x[ib + 1].qs, values128, m4b), load256(y[ib + 1].qs)), mone);
        accum1 = _mm256_fmadd_ps(_mm256_set1_ps(half(y[ib].d) * half(x[ib].d)), _mm256_cvtepi32_ps(p_1), accum1);
        accum2 = _mm256_fmadd_ps(_mm256_set1_ps(half(y[ib + 1].d) * half(x[ib + 1].d)), _mm256_cvtepi32_ps(p_2), accum2);
    }
    float sumf = hsum_float_8(_mm256_add_ps(accum1, accum2));
    for (; ib < nb; ++ib) {
        const float d = half(y[ib].d) * half(x[ib].d);
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi1 += y[ib].qs[j] * kIQ4NLValues[x[ib].qs[j] & 0xf];
            sumi2 += y[ib].qs[j + kQK / 2] * kIQ4NLValues[x[ib].qs[j] >> 4];
        }
        sumf = std::fma(d, static_cast<float>(sumi1 + sumi2), sumf);
    }
    *s = sumf;
}

void vec_dot_iq4_xs_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockIQ4_XS*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m128i values128 = load128(kIQ4NLValues);
    const __m128i m4b = _mm_set1_epi8(0x0f);
    __m256 accum = _mm256_setzero_ps();
    for (int64_t ibl = 0; ibl < n / kQK_K; ++ibl) {
        const uint8_t* qs = x[ibl].qs;
        const int8_t* q8 = y[ibl].qs;
        uint16_t sh = x[ibl].scales_h;
        __m256i sumi1 = _mm256_setzero_si256(), sumi2 = _mm256_setzero_si256();
        for (int ib = 0; ib < kQK_K / 32; ib += 2, qs += 32, q8 += 64) {
            const __m256i p16_1 = mul_add_epi8(iq4_values(qs, values128, m4b), load256(q8));
            const __m256i p16_2 = mul_add_epi8(iq4_values(qs + 16, values128, m4b), load256(q8 + 32));
            const auto ls1 = static_cast<int16_t>(((x[ibl].scales_l[ib / 2] & 0xf) | ((sh << 4) & 0x30)) - 32);
            const auto ls2 = static_cast<int16_t>(((x[ibl].scales_l[ib / 2] >> 4) | ((sh << 2) & 0x30)) - 32);
            sh = static_cast<uint16_t>(sh >> 4);
            sumi1 = _mm256_add_epi32(_mm256_madd_epi16(p16_1, _mm256_set1_epi16(ls1)), sumi1);
            sumi2 = _mm256_add_epi32(_mm256_madd_epi16(p16_2, _mm256_set1_epi16(ls2)), sumi2);
        }
        accum = _mm256_fmadd_ps(_mm256_set1_ps(half(x[ibl].d) * y[ibl].d),
                                _mm256_cvtepi32_ps(_mm256_add_epi32(sumi1, sumi2)), accum);
    }
    *s = hsum_float_8(accum);
}

// The top trit of bytes b (b = a TQ1_0 byte times 3^k, mod 256): (b * 3) >> 8 computed with
// byte averages, (b' + ((b' + 1) >> 1) + 1) >> 1 >> 6 for b' = b - 1 saturated at 0, which is
// the same digit for all 256 byte values.
inline __m256i tq1_top_trit(__m256i b) {
    const __m256i zero = _mm256_setzero_si256();
    b = _mm256_subs_epu8(b, _mm256_set1_epi8(1));
    b = _mm256_avg_epu8(b, _mm256_avg_epu8(b, zero));
    return _mm256_and_si256(_mm256_srli_epi16(b, 6), _mm256_set1_epi8(3));
}

// Bytes times 3 and times 9 modulo 256, with 8-bit adds (9x = 8x + x, 8x masked per byte).
inline __m256i times3(__m256i b) { return _mm256_add_epi8(b, _mm256_add_epi8(b, b)); }
inline __m256i times9(__m256i b) {
    return _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16(b, 3), _mm256_set1_epi8(-8)), b);
}
inline __m128i times3(__m128i b) { return _mm_add_epi8(b, _mm_add_epi8(b, b)); }
inline __m128i times9(__m128i b) { return _mm_add_epi8(_mm_and_si128(_mm_slli_epi16(b, 3), _mm_set1_epi8(-8)), b); }

// Trits are 0, 1, 2 for -1, 0, 1: the dot is sum(t * y) - sum(y), the last from bsums. The sums
// stay in 16-bit lanes (at most 3 * 2 * 2 * 128 per lane), as in ggml.
void vec_dot_tq1_0_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockTQ1_0*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    __m256 sumf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        __m256i sumi0, sumi1, sumi2;
        {
            // qs[0..32): trit k of every byte pairs with y.qs[32k .. 32k+32).
            __m256i qx[5];
            qx[0] = load256(x[i].qs);
            qx[1] = times3(qx[0]);
            qx[2] = times9(qx[0]);
            qx[3] = times9(qx[1]);
            qx[4] = times9(qx[2]);
            for (int k = 0; k < 5; ++k) qx[k] = _mm256_maddubs_epi16(tq1_top_trit(qx[k]), load256(y[i].qs + 32 * k));
            sumi0 = _mm256_add_epi16(qx[0], qx[1]);
            sumi1 = _mm256_add_epi16(qx[2], qx[3]);
            sumi2 = qx[4];
        }
        {
            // qs[32..48) (5 trits) and qh (4 trits, each repeated for the 4 multipliers):
            // elements 160..256 as [x1 | x3], [x9 | x27], [x81 | qh * 3^k].
            const __m128i qx0 = load128(x[i].qs + 32);
            uint32_t qh;
            std::memcpy(&qh, x[i].qh, sizeof qh);
            __m256i qx5_l = _mm256_cvtepu8_epi16(_mm_set1_epi32(static_cast<int>(qh)));
            const __m128i qx1 = times3(qx0);
            const __m128i qx2 = times9(qx0);
            const __m128i qx3 = times9(qx1);
            const __m128i qx4 = times9(qx2);
            qx5_l = _mm256_mullo_epi16(qx5_l, _mm256_set_epi16(27, 27, 27, 27, 9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1));
            qx5_l = _mm256_and_si256(qx5_l, _mm256_set1_epi16(0xFF));
            const __m128i qx5 = _mm_packus_epi16(_mm256_castsi256_si128(qx5_l), _mm256_extracti128_si256(qx5_l, 1));
            const __m256i qx01 = tq1_top_trit(_mm256_set_m128i(qx1, qx0));
            const __m256i qx23 = tq1_top_trit(_mm256_set_m128i(qx3, qx2));
            const __m256i qx45 = tq1_top_trit(_mm256_set_m128i(qx5, qx4));
            sumi0 = _mm256_add_epi16(sumi0, _mm256_maddubs_epi16(qx01, load256(y[i].qs + 160)));
            sumi1 = _mm256_add_epi16(sumi1, _mm256_maddubs_epi16(qx23, load256(y[i].qs + 192)));
            sumi2 = _mm256_add_epi16(sumi2, _mm256_maddubs_epi16(qx45, load256(y[i].qs + 224)));
        }
        const __m256i ysum = load256(y[i].bsums);
        const __m256 d = _mm256_set1_ps(y[i].d * half(x[i].d));
        sumi0 = _mm256_sub_epi16(sumi0, ysum);
        sumi0 = _mm256_add_epi16(sumi0, _mm256_add_epi16(sumi1, sumi2));
        sumi0 = _mm256_madd_epi16(sumi0, _mm256_set1_epi16(1));
        sumf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi0), d, sumf);
    }
    *s = hsum_float_8(sumf);
}

void vec_dot_tq2_0_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockTQ2_0*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 sumf = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        __m256i sumi0 = _mm256_setzero_si256(), sumi1 = _mm256_setzero_si256();
        for (int j = 0; j < 64; j += 32) {
            const __m256i bits = load256(x[i].qs + j);
            __m256i p[4];
            for (int l = 0; l < 4; ++l) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * l), m3);  // 0, 1, 2
                p[l] = _mm256_maddubs_epi16(q, load256(y[i].qs + j * 4 + 32 * l));
            }
            sumi0 = _mm256_add_epi16(sumi0, _mm256_add_epi16(p[0], p[1]));
            sumi1 = _mm256_add_epi16(sumi1, _mm256_add_epi16(p[2], p[3]));
        }
        const __m256i ysum = load256(y[i].bsums);
        const __m256 d = _mm256_set1_ps(y[i].d * half(x[i].d));
        sumi0 = _mm256_add_epi16(sumi0, sumi1);
        sumi0 = _mm256_sub_epi16(sumi0, ysum);
        sumi0 = _mm256_madd_epi16(sumi0, _mm256_set1_epi16(1));
        sumf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi0), d, sumf);
    }
    *s = hsum_float_8(sumf);
}

} // namespace

void fill_traits_kquants(TypeTraits* table, int n_table) {
    // to_float and quantize_ref stay scalar; from_float is quantize_ref for the weight types,
    // as in ggml-cpu.
    const TypeTraits all[] = {
        {GGMLType::Q2_K, ref::dequantize_row_q2_K, ref::quantize_row_q2_K_ref, vec_dot_q2_K_q8_K, GGMLType::Q8_K,
         ref::quantize_row_q2_K_ref, nullptr},
        {GGMLType::Q3_K, ref::dequantize_row_q3_K, ref::quantize_row_q3_K_ref, vec_dot_q3_K_q8_K, GGMLType::Q8_K,
         ref::quantize_row_q3_K_ref, nullptr},
        {GGMLType::Q4_K, ref::dequantize_row_q4_K, ref::quantize_row_q4_K_ref, vec_dot_q4_K_q8_K, GGMLType::Q8_K,
         ref::quantize_row_q4_K_ref, nullptr},
        {GGMLType::Q5_K, ref::dequantize_row_q5_K, ref::quantize_row_q5_K_ref, vec_dot_q5_K_q8_K, GGMLType::Q8_K,
         ref::quantize_row_q5_K_ref, nullptr},
        {GGMLType::Q6_K, ref::dequantize_row_q6_K, ref::quantize_row_q6_K_ref, vec_dot_q6_K_q8_K, GGMLType::Q8_K,
         ref::quantize_row_q6_K_ref, nullptr},
        {GGMLType::Q8_K, ref::dequantize_row_q8_K, quantize_row_q8_K, nullptr, GGMLType::Q8_K,
         ref::quantize_row_q8_K_ref, nullptr},
        {GGMLType::IQ4_NL, ref::dequantize_row_iq4_nl, ref::quantize_row_iq4_nl_ref, vec_dot_iq4_nl_q8_0,
         GGMLType::Q8_0, ref::quantize_row_iq4_nl_ref, nullptr},
        {GGMLType::IQ4_XS, ref::dequantize_row_iq4_xs, ref::quantize_row_iq4_xs_ref, vec_dot_iq4_xs_q8_K,
         GGMLType::Q8_K, ref::quantize_row_iq4_xs_ref, nullptr},
        {GGMLType::TQ1_0, ref::dequantize_row_tq1_0, ref::quantize_row_tq1_0_ref, vec_dot_tq1_0_q8_K, GGMLType::Q8_K,
         ref::quantize_row_tq1_0_ref, nullptr},
        {GGMLType::TQ2_0, ref::dequantize_row_tq2_0, ref::quantize_row_tq2_0_ref, vec_dot_tq2_0_q8_K, GGMLType::Q8_K,
         ref::quantize_row_tq2_0_ref, nullptr},
    };
    for (const TypeTraits& t : all) {
        const auto id = static_cast<int>(t.type);
        if (id < n_table) table[id] = t;
    }
}

} // namespace slm::kernels::avx2
