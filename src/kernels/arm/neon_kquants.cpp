// neon_kquants.cpp - NEON + SDOT dot products of the super-block types (Q2_K ... Q6_K, IQ4_XS,
// TQ1_0, TQ2_0) with Q8_K activations. Built with -march=armv8.2-a+dotprod.
//
// Each kernel unpacks a 256-element super-block to int8 sixteen lanes at a time, multiplies
// with the activations by SDOT, applies the integer sub-block scales in int32 (exact: the
// largest block sum, Q6_K's 256 * 32 * 127 * 127, is far below 2^31), and scales the block's
// integer sum once in float. The results equal the reference's up to the order of the float
// additions. to_float, from_float (quantize_row_q8_K_ref for Q8_K) and quantize_ref are the
// scalar reference functions.
#include "kernels/arm/arm.h"

#include "kernels/arm/neon_util.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

namespace slm::kernels::neon {
namespace {

// Scale and min of sub-block j of a Q4_K / Q5_K super-block (the 12-byte packing of ggml's
// get_scale_min_k4), all eight at once.
inline void unpack_k4_scales(const uint8_t* q, uint8_t sc[8], uint8_t mn[8]) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = static_cast<uint8_t>((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
        mn[j + 4] = static_cast<uint8_t>((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
    }
}

// sum_j bsums[j] * mins[j / 2] over the 16 activation sums of 16 (Q4_K / Q5_K: a min per 32).
inline int32_t mins_dot_pairs(const int16_t* bsums, const uint8_t mins[8]) {
    const int16x8_t b = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8));  // sums of 32
    const int16x8_t m = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mins)));
    return vaddvq_s32(vmlal_high_s16(vmull_s16(vget_low_s16(b), vget_low_s16(m)), b, m));
}

// ---- Q2_K ... Q6_K: register tiles --------------------------------------------------------------

// Each kind describes one K-quant for the tile template: its sixteen integer scales (one per 16
// elements), the 64 elements of chunk j (0..3) as four int8x16, and how a super-block's integer
// sum becomes a float term (with the min term from the activations' bsums where there is one).

// Q2_K: per 128 elements, byte l of the 32 holds elements l, l+32, l+64, l+96 in bit pairs 0..3;
// scales[] has the scale of each 16 in its low nibble and the min in the high one.
struct Q2_KKind {
    using Block = BlockQ2_K;
    static void scales(const Block& b, int32_t sc[16]) {
        for (int j = 0; j < 16; ++j) sc[j] = b.scales[j] & 0xF;
    }
    static void unpack64(const Block& b, int j, int8x16_t a[4]) {
        const uint8x16_t q0 = vld1q_u8(b.qs + 32 * (j / 2)), q1 = vld1q_u8(b.qs + 32 * (j / 2) + 16);
        for (int t = 0; t < 2; ++t) {
            const int8x16_t shr = vdupq_n_s8(static_cast<int8_t>(-2 * (2 * (j % 2) + t)));
            a[2 * t] = s8(vandq_u8(vshlq_u8(q0, shr), vdupq_n_u8(3)));
            a[2 * t + 1] = s8(vandq_u8(vshlq_u8(q1, shr), vdupq_n_u8(3)));
        }
    }
    static void add(float& sumf, const Block& b, const BlockQ8_K& y, int32_t isum) {
        const uint8x16_t mins = vshrq_n_u8(vld1q_u8(b.scales), 4);
        const int16x8_t m0 = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
        const int16x8_t m1 = vreinterpretq_s16_u16(vmovl_high_u8(mins));
        const int16x8_t b0 = vld1q_s16(y.bsums), b1 = vld1q_s16(y.bsums + 8);
        int32x4_t pm = vmull_s16(vget_low_s16(b0), vget_low_s16(m0));
        pm = vmlal_high_s16(pm, b0, m0);
        pm = vmlal_s16(pm, vget_low_s16(b1), vget_low_s16(m1));
        pm = vmlal_high_s16(pm, b1, m1);
        const float dall = y.d * half(b.d);
        const float dmin = y.d * half(b.dmin);
        sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(vaddvq_s32(pm));
    }
};

// Q3_K: the low two bits laid out as Q2_K's; bit b of hmask[l] is the high bit of element
// 32*b + l, and a clear high bit means q - 4. Sixteen signed 6-bit scales.
struct Q3_KKind {
    using Block = BlockQ3_K;
    static void scales(const Block& b, int32_t sc[16]) {
        int8_t s[16];
        ref::unpack_q3_K_scales(b.scales, s);
        for (int j = 0; j < 16; ++j) sc[j] = s[j];
    }
    static void unpack64(const Block& b, int j, int8x16_t a[4]) {
        const uint8x16_t q0 = vld1q_u8(b.qs + 32 * (j / 2)), q1 = vld1q_u8(b.qs + 32 * (j / 2) + 16);
        const uint8x16_t hm0 = vld1q_u8(b.hmask), hm1 = vld1q_u8(b.hmask + 16);
        const uint8x16_t four = vdupq_n_u8(4);
        for (int t = 0; t < 2; ++t) {
            const int shift = 2 * (2 * (j % 2) + t);
            const int8x16_t shr = vdupq_n_s8(static_cast<int8_t>(-shift));
            const uint8x16_t bit = vdupq_n_u8(static_cast<uint8_t>(1u << (4 * (j / 2) + shift / 2)));
            a[2 * t] = vsubq_s8(s8(vandq_u8(vshlq_u8(q0, shr), vdupq_n_u8(3))), s8(vbicq_u8(four, vtstq_u8(hm0, bit))));
            a[2 * t + 1] =
                vsubq_s8(s8(vandq_u8(vshlq_u8(q1, shr), vdupq_n_u8(3))), s8(vbicq_u8(four, vtstq_u8(hm1, bit))));
        }
    }
    static void add(float& sumf, const Block& b, const BlockQ8_K& y, int32_t isum) {
        const float d = half(b.d) * y.d;
        sumf += d * static_cast<float>(isum);
    }
};

// Q4_K / Q5_K: per 64 elements, 32 bytes whose low nibbles are elements 0..31 (scale 2j) and
// high nibbles 32..63 (scale 2j+1); 6-bit scales and mins per 32. Q5_K's fifth bits: bits 2j
// and 2j+1 of qh[l] for element l of either half.
template <class B, bool kFive>
struct K4Kind {
    using Block = B;
    static void scales(const Block& b, int32_t sc[16]) {
        uint8_t s[8], m[8];
        unpack_k4_scales(b.scales, s, m);
        for (int j = 0; j < 16; ++j) sc[j] = s[j / 2];
    }
    static void unpack64(const Block& b, int j, int8x16_t a[4]) {
        const uint8x16_t q0 = vld1q_u8(b.qs + 32 * j), q1 = vld1q_u8(b.qs + 32 * j + 16);
        uint8x16_t l0 = low_nibbles(q0), l1 = low_nibbles(q1), h0 = high_nibbles(q0), h1 = high_nibbles(q1);
        if constexpr (kFive) {
            const int8x16_t shr = vdupq_n_s8(static_cast<int8_t>(-2 * j));
            const uint8x16_t qh0 = vshlq_u8(vld1q_u8(b.qh), shr), qh1 = vshlq_u8(vld1q_u8(b.qh + 16), shr);
            const uint8x16_t b4 = vdupq_n_u8(0x10);
            l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(qh0, 4), b4));
            l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(qh1, 4), b4));
            h0 = vorrq_u8(h0, vandq_u8(vshlq_n_u8(qh0, 3), b4));
            h1 = vorrq_u8(h1, vandq_u8(vshlq_n_u8(qh1, 3), b4));
        }
        a[0] = s8(l0);
        a[1] = s8(l1);
        a[2] = s8(h0);
        a[3] = s8(h1);
    }
    static void add(float& sumf, const Block& b, const BlockQ8_K& y, int32_t isum) {
        uint8_t s[8], m[8];
        unpack_k4_scales(b.scales, s, m);
        const int32_t summ = mins_dot_pairs(y.bsums, m);
        const float d = half(b.d) * y.d;
        const float dmin = half(b.dmin) * y.d;
        sumf += d * static_cast<float>(isum);
        sumf -= dmin * static_cast<float>(summ);
    }
};

using Q4_KKind = K4Kind<BlockQ4_K, false>;
using Q5_KKind = K4Kind<BlockQ5_K, true>;

// Q6_K: per 128 elements, 64 bytes of low nibbles and 32 of high bit pairs. Element l + 32k
// (l < 32, k < 4) takes nibble (k & 1 ? ql[l + 32] : ql[l]) >> 4 * (k / 2) and bits 2k, 2k+1 of
// qh[l]; q - 32 fits int8. Sixteen int8 scales.
struct Q6_KKind {
    using Block = BlockQ6_K;
    static void scales(const Block& b, int32_t sc[16]) {
        for (int j = 0; j < 16; ++j) sc[j] = b.scales[j];
    }
    static void unpack64(const Block& b, int j, int8x16_t a[4]) {
        const uint8_t* ql = b.ql + 64 * (j / 2);
        const uint8x16_t h0 = vld1q_u8(b.qh + 32 * (j / 2)), h1 = vld1q_u8(b.qh + 32 * (j / 2) + 16);
        const uint8x16_t m30 = vdupq_n_u8(0x30);
        uint8x16_t u[4];
        if (j % 2 == 0) {  // elements 0..63 of the 128: low nibbles, bit pairs 0 and 1
            u[0] = vorrq_u8(low_nibbles(vld1q_u8(ql)), vandq_u8(vshlq_n_u8(h0, 4), m30));
            u[1] = vorrq_u8(low_nibbles(vld1q_u8(ql + 16)), vandq_u8(vshlq_n_u8(h1, 4), m30));
            u[2] = vorrq_u8(low_nibbles(vld1q_u8(ql + 32)), vandq_u8(vshlq_n_u8(h0, 2), m30));
            u[3] = vorrq_u8(low_nibbles(vld1q_u8(ql + 48)), vandq_u8(vshlq_n_u8(h1, 2), m30));
        } else {  // elements 64..127: high nibbles, bit pairs 2 and 3
            u[0] = vorrq_u8(high_nibbles(vld1q_u8(ql)), vandq_u8(h0, m30));
            u[1] = vorrq_u8(high_nibbles(vld1q_u8(ql + 16)), vandq_u8(h1, m30));
            u[2] = vorrq_u8(high_nibbles(vld1q_u8(ql + 32)), vandq_u8(vshrq_n_u8(h0, 2), m30));
            u[3] = vorrq_u8(high_nibbles(vld1q_u8(ql + 48)), vandq_u8(vshrq_n_u8(h1, 2), m30));
        }
        for (int k = 0; k < 4; ++k) a[k] = vsubq_s8(s8(u[k]), vdupq_n_s8(32));
    }
    static void add(float& sumf, const Block& b, const BlockQ8_K& y, int32_t isum) {
        const float d = half(b.d) * y.d;
        sumf += d * static_cast<float>(isum);
    }
};

// s[c * ldc + r] = dot(row r of x, row c of y) for r < R, c < C, over nb super-blocks. Each
// chunk of 64 weights is unpacked once per tile and used for C activation rows; the sixteen
// sub-block scales are applied in int32 and each super-block's sum is scaled once in float.
// Every output goes through the same operations whatever R and C are.
template <class K, int R, int C>
void ktile(int64_t nb, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    float sumf[R][C] = {};
    for (int64_t ib = 0; ib < nb; ++ib) {
        const typename K::Block* xb[R];
        const BlockQ8_K* yb[C];
        int32_t sc[R][16];
        for (int r = 0; r < R; ++r) {
            xb[r] = reinterpret_cast<const typename K::Block*>(x + static_cast<size_t>(r) * bx) + ib;
            K::scales(*xb[r], sc[r]);
        }
        for (int c = 0; c < C; ++c) yb[c] = reinterpret_cast<const BlockQ8_K*>(y + static_cast<size_t>(c) * by) + ib;
        int32x4_t acc[R][C];
        for (int r = 0; r < R; ++r) {
            for (int c = 0; c < C; ++c) acc[r][c] = vdupq_n_s32(0);
        }
        for (int j = 0; j < 4; ++j) {
            int8x16_t a[R][4];
            for (int r = 0; r < R; ++r) K::unpack64(*xb[r], j, a[r]);
            for (int c = 0; c < C; ++c) {
                const int8_t* q8 = yb[c]->qs + 64 * j;
                const int8x16_t y0 = vld1q_s8(q8), y1 = vld1q_s8(q8 + 16), y2 = vld1q_s8(q8 + 32), y3 = vld1q_s8(q8 + 48);
                for (int r = 0; r < R; ++r) {
                    const int32_t* g = sc[r] + 4 * j;
                    int32x4_t v = acc[r][c];
                    v = vmlaq_n_s32(v, vdotq_s32(vdupq_n_s32(0), a[r][0], y0), g[0]);
                    v = vmlaq_n_s32(v, vdotq_s32(vdupq_n_s32(0), a[r][1], y1), g[1]);
                    v = vmlaq_n_s32(v, vdotq_s32(vdupq_n_s32(0), a[r][2], y2), g[2]);
                    acc[r][c] = vmlaq_n_s32(v, vdotq_s32(vdupq_n_s32(0), a[r][3], y3), g[3]);
                }
            }
        }
        for (int r = 0; r < R; ++r) {
            for (int c = 0; c < C; ++c) K::add(sumf[r][c], *xb[r], *yb[c], vaddvq_s32(acc[r][c]));
        }
    }
    for (int c = 0; c < C; ++c) {
        for (int r = 0; r < R; ++r) s[static_cast<size_t>(c) * ldc + r] = sumf[r][c];
    }
}

constexpr int kTileR = 2, kTileC = 4;

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t);

template <class K, size_t... I>
constexpr std::array<TileFn, sizeof...(I)> ktile_table(std::index_sequence<I...>) {
    return {&ktile<K, static_cast<int>(I / kTileC) + 1, static_cast<int>(I % kTileC) + 1>...};
}

template <class K>
void kgemm(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
           size_t ldc) {
    static constexpr auto fns = ktile_table<K>(std::make_index_sequence<kTileR * kTileC>{});
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    const int64_t nb = n / kQK_K;
    for (int64_t r0 = 0; r0 < nr; r0 += kTileR) {
        const int64_t rn = std::min<int64_t>(kTileR, nr - r0);
        for (int64_t c0 = 0; c0 < nc; c0 += kTileC) {
            const int64_t cn = std::min<int64_t>(kTileC, nc - c0);
            fns[static_cast<size_t>((rn - 1) * kTileC + (cn - 1))](nb, x + static_cast<size_t>(r0) * bx, bx,
                                                                  y + static_cast<size_t>(c0) * by, by,
                                                                  s + static_cast<size_t>(c0) * ldc + r0, ldc);
        }
    }
}

// vec_dot is the 1 x 1 tile, so mul_mat gives the same bits through gemm or vec_dot.
template <class K>
void kvec_dot(int64_t n, float* s, const void* vx, const void* vy) {
    ktile<K, 1, 1>(n / kQK_K, static_cast<const uint8_t*>(vx), 0, static_cast<const uint8_t*>(vy), 0, s, 0);
}

// ---- IQ4_XS -----------------------------------------------------------------------------------

// Eight sub-blocks of 32 with 6-bit scales ls - 32; each sub-block's sum is scaled and added
// in float as the reference does, so single results often agree to the bit.
void vec_dot_iq4_xs_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockIQ4_XS*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const int8x16_t values = vld1q_s8(kIQ4NLValues);
    float sumf = 0;
    for (int64_t ibl = 0; ibl < n / kQK_K; ++ibl) {
        const float d4d8 = half(x[ibl].d) * y[ibl].d;
        const uint8_t* qs = x[ibl].qs;
        const int8_t* q8 = y[ibl].qs;
        for (int ib = 0; ib < kQK_K / 32; ++ib, qs += 16, q8 += 32) {
            const int ls = ((x[ibl].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[ibl].scales_h >> 2 * ib) & 3) << 4);
            const uint8x16_t q = vld1q_u8(qs);
            const int32_t sumi = vaddvq_s32(dot32(vqtbl1q_s8(values, low_nibbles(q)), vqtbl1q_s8(values, high_nibbles(q)), q8));
            const float dl = d4d8 * static_cast<float>(ls - 32);
            sumf += dl * static_cast<float>(sumi);
        }
    }
    *s = sumf;
}

// ---- TQ1_0 / TQ2_0 ----------------------------------------------------------------------------

// Trit k of TQ1_0 bytes: (uint8)(byte * 3^k) * 3 >> 8, computed as ((q + (q >> 1)) >> 1) >> 6
// to stay in bytes (floor((q + floor(q/2)) / 128) = floor(3q / 256)); returned minus 1.
inline int8x16_t tq1_trits(uint8x16_t bytes, uint8x16_t pow3) {
    const uint8x16_t q = vmulq_u8(bytes, pow3);
    return vsubq_s8(s8(vshrq_n_u8(vhaddq_u8(q, vshrq_n_u8(q, 1)), 6)), vdupq_n_s8(1));
}

// qs[0..31]: element 32k + m is trit k of qs[m]; qs[32..47]: element 160 + 16k + m is trit k of
// qs[32 + m]; qh[0..3]: element 240 + 4k + j is trit k of qh[j].
void vec_dot_tq1_0_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockTQ1_0*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    static const uint8_t kPow3[5] = {1, 3, 9, 27, 81};
    static const uint8_t kPow3Tail[16] = {1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27};
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const uint8x16_t a0 = vld1q_u8(x[i].qs), a1 = vld1q_u8(x[i].qs + 16), b = vld1q_u8(x[i].qs + 32);
        const int8_t* q8 = y[i].qs;
        int32x4_t acc = vdupq_n_s32(0);
        for (int k = 0; k < 5; ++k, q8 += 32) {
            const uint8x16_t p = vdupq_n_u8(kPow3[k]);
            acc = vdotq_s32(acc, tq1_trits(a0, p), vld1q_s8(q8));
            acc = vdotq_s32(acc, tq1_trits(a1, p), vld1q_s8(q8 + 16));
        }
        for (int k = 0; k < 5; ++k, q8 += 16) acc = vdotq_s32(acc, tq1_trits(b, vdupq_n_u8(kPow3[k])), vld1q_s8(q8));
        const uint8x16_t h = vreinterpretq_u8_u32(vdupq_n_u32(load_u32(x[i].qh)));  // qh[0..3] four times
        acc = vdotq_s32(acc, tq1_trits(h, vld1q_u8(kPow3Tail)), vld1q_s8(q8));
        sumf += static_cast<float>(vaddvq_s32(acc)) * (half(x[i].d) * y[i].d);
    }
    *s = sumf;
}

// Per 32 bytes, bit pair l of byte k is element 32l + k (q - 1 in {-1, 0, 1, 2}).
void vec_dot_tq2_0_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockTQ2_0*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    const uint8x16_t m3 = vdupq_n_u8(3);
    const int8x16_t one = vdupq_n_s8(1);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const int8_t* q8 = y[i].qs;
        int32x4_t acc = vdupq_n_s32(0);
        for (int j = 0; j < 64; j += 32) {
            const uint8x16_t q0 = vld1q_u8(x[i].qs + j), q1 = vld1q_u8(x[i].qs + j + 16);
            for (int l = 0; l < 4; ++l, q8 += 32) {
                const int8x16_t shr = vdupq_n_s8(static_cast<int8_t>(-2 * l));
                const int8x16_t t0 = vsubq_s8(s8(vandq_u8(vshlq_u8(q0, shr), m3)), one);
                const int8x16_t t1 = vsubq_s8(s8(vandq_u8(vshlq_u8(q1, shr), m3)), one);
                acc = vdotq_s32(vdotq_s32(acc, t0, vld1q_s8(q8)), t1, vld1q_s8(q8 + 16));
            }
        }
        const float d = y[i].d * half(x[i].d);
        sumf += static_cast<float>(vaddvq_s32(acc)) * d;
    }
    *s = sumf;
}

} // namespace

void fill_traits_kquants(TypeTraits* table, int n_table) {
    // to_float and quantize_ref stay scalar; from_float is quantize_ref for the weight types and
    // quantize_row_q8_K_ref for the activations, as in ggml-cpu.
    const TypeTraits all[] = {
        {GGMLType::Q2_K, ref::dequantize_row_q2_K, ref::quantize_row_q2_K_ref, kvec_dot<Q2_KKind>, GGMLType::Q8_K,
         ref::quantize_row_q2_K_ref, kgemm<Q2_KKind>},
        {GGMLType::Q3_K, ref::dequantize_row_q3_K, ref::quantize_row_q3_K_ref, kvec_dot<Q3_KKind>, GGMLType::Q8_K,
         ref::quantize_row_q3_K_ref, kgemm<Q3_KKind>},
        {GGMLType::Q4_K, ref::dequantize_row_q4_K, ref::quantize_row_q4_K_ref, kvec_dot<Q4_KKind>, GGMLType::Q8_K,
         ref::quantize_row_q4_K_ref, kgemm<Q4_KKind>},
        {GGMLType::Q5_K, ref::dequantize_row_q5_K, ref::quantize_row_q5_K_ref, kvec_dot<Q5_KKind>, GGMLType::Q8_K,
         ref::quantize_row_q5_K_ref, kgemm<Q5_KKind>},
        {GGMLType::Q6_K, ref::dequantize_row_q6_K, ref::quantize_row_q6_K_ref, kvec_dot<Q6_KKind>, GGMLType::Q8_K,
         ref::quantize_row_q6_K_ref, kgemm<Q6_KKind>},
        {GGMLType::Q8_K, ref::dequantize_row_q8_K, ref::quantize_row_q8_K_ref, nullptr, GGMLType::Q8_K,
         ref::quantize_row_q8_K_ref, nullptr},
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

} // namespace slm::kernels::neon
