// neon.cpp - AArch64 NEON kernels with the dot-product extension (SDOT), built with
// -march=armv8.2-a+dotprod and only called when dispatch.cpp has seen ASIMD and ASIMDDP.
//
// F32/F16/BF16 conversions and dots, the dequantizers of the 32-element quants, and their dot
// products as register tiles: a tile of R weight rows x C activation rows unpacks each weight
// block once, multiplies it with C activation blocks by SDOT, and scales the four int32 lanes
// into four float lanes per output. vec_dot is the 1 x 1 tile, so mul_mat's results do not
// depend on whether a row went through gemm or vec_dot.
//
// The activation quantizers (Q8_0, Q8_1) stay the scalar reference functions, which give the
// bytes ggml's x86 build gives; F16/BF16 from_float are vectorized and byte-identical.
#include "kernels/arm/arm.h"

#include "core/fp16.h"
#include "kernels/arm/neon_util.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

namespace slm::kernels::neon {
namespace {

// ---- F32 / F16 / BF16 ------------------------------------------------------------------------

inline float32x4_t load_f16x4(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

inline float32x4_t load_bf16x4(const uint16_t* p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

void f16_to_float(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x + i));
        vst1q_f32(y + i, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(y + i + 4, vcvt_high_f32_f16(h));
    }
    for (; i < n; ++i) y[i] = half(x[i]);
}

void bf16_to_float(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(vx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vld1q_u16(x + i);
        vst1q_f32(y + i, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)));
        vst1q_f32(y + i + 4, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)));
    }
    for (; i < n; ++i) y[i] = fp16::bf16_to_float(x[i]);
}

// As ref::f16_from_float: groups of four are converted as the hardware converts (FCVTN, which
// like F16C keeps a NaN's top payload bits and makes it quiet), the last n % 4 values with
// fp16::float_to_half.
void f16_from_float(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x + i)), vld1q_f32(x + i + 4));
        vst1q_u16(y + i, vreinterpretq_u16_f16(h));
    }
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; ++i) y[i] = fp16::float_to_half(x[i]);
}

// fp16::float_to_bf16 on four lanes: round to nearest even, a NaN made quiet.
inline uint16x4_t bf16x4(float32x4_t v) {
    const uint32x4_t u = vreinterpretq_u32_f32(v);
    const uint32x4_t is_nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffffu)), vdupq_n_u32(0x7f800000u));
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    const uint32x4_t rne = vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7fff), odd)), 16);
    const uint32x4_t quiet = vorrq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(64));
    return vmovn_u32(vbslq_u32(is_nan, quiet, rne));
}

void bf16_from_float(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) vst1q_u16(y + i, vcombine_u16(bf16x4(vld1q_f32(x + i)), bf16x4(vld1q_f32(x + i + 4))));
    for (; i < n; ++i) y[i] = fp16::float_to_bf16(x[i]);
}

inline float sum4(float32x4_t a0, float32x4_t a1, float32x4_t a2, float32x4_t a3) {
    return vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
}

// Four FMA chains over 16 elements at a time, then groups of 4, then a scalar FMA tail.
void vec_dot_f32(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const float*>(vx);
    const auto* y = static_cast<const float*>(vy);
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
        a1 = vfmaq_f32(a1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x + i), vld1q_f32(y + i));
    float sumf = sum4(a0, a1, a2, a3);
    for (; i < n; ++i) sumf = std::fma(x[i], y[i], sumf);
    *s = sumf;
}

// F16 and BF16: the same with widening loads; the tail is summed in double, as the reference.
template <float32x4_t (*Load)(const uint16_t*), float (*Scalar)(uint16_t)>
void vec_dot_half(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const uint16_t*>(vx);
    const auto* y = static_cast<const uint16_t*>(vy);
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, Load(x + i), Load(y + i));
        a1 = vfmaq_f32(a1, Load(x + i + 4), Load(y + i + 4));
        a2 = vfmaq_f32(a2, Load(x + i + 8), Load(y + i + 8));
        a3 = vfmaq_f32(a3, Load(x + i + 12), Load(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, Load(x + i), Load(y + i));
    double sumf = sum4(a0, a1, a2, a3);
    for (; i < n; ++i) sumf += static_cast<double>(Scalar(x[i]) * Scalar(y[i]));
    *s = static_cast<float>(sumf);
}

float bf16_scalar(uint16_t h) { return fp16::bf16_to_float(h); }

// ---- the 32-element quants: block unpacking ------------------------------------------------

// Each describes one weight type for the tile template: its block, the activation block it is
// dotted with, how to unpack a block into 32 int8 (elements 0..15, 16..31), and the tile shape.
// Types with a min (Q4_1, Q5_1) add m_x * s_y per block and use narrower tiles, since the
// scalar min sums take registers too.
struct Q4_0Kind {
    using Block = BlockQ4_0;
    using Act = BlockQ8_0;
    static constexpr bool kMin = false;
    static constexpr int kR = 4, kC = 4;
    static void unpack(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const uint8x16_t q = vld1q_u8(b.qs);
        lo = vsubq_s8(s8(low_nibbles(q)), vdupq_n_s8(8));
        hi = vsubq_s8(s8(high_nibbles(q)), vdupq_n_s8(8));
    }
};

struct Q4_1Kind {
    using Block = BlockQ4_1;
    using Act = BlockQ8_1;
    static constexpr bool kMin = true;
    static constexpr int kR = 4, kC = 2;
    static void unpack(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const uint8x16_t q = vld1q_u8(b.qs);
        lo = s8(low_nibbles(q));
        hi = s8(high_nibbles(q));
    }
};

// Q5_0: nibble | 0xf0 where the 5th bit is clear is the two's complement of nibble - 16, and a
// set 5th bit leaves nibble = q - 16, so OR-ing is the whole subtraction.
struct Q5_0Kind {
    using Block = BlockQ5_0;
    using Act = BlockQ8_0;
    static constexpr bool kMin = false;
    static constexpr int kR = 4, kC = 4;
    static void unpack(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const uint8x16_t q = vld1q_u8(b.qs);
        const uint32_t qh = load_u32(b.qh);
        const uint8x16_t f0 = vdupq_n_u8(0xf0);
        lo = s8(vorrq_u8(low_nibbles(q), vbicq_u8(f0, mask_from_bits16(qh & 0xffff))));
        hi = s8(vorrq_u8(high_nibbles(q), vbicq_u8(f0, mask_from_bits16(qh >> 16))));
    }
};

struct Q5_1Kind {
    using Block = BlockQ5_1;
    using Act = BlockQ8_1;
    static constexpr bool kMin = true;
    static constexpr int kR = 4, kC = 2;
    static void unpack(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const uint8x16_t q = vld1q_u8(b.qs);
        const uint32_t qh = load_u32(b.qh);
        const uint8x16_t b4 = vdupq_n_u8(0x10);
        lo = s8(vorrq_u8(low_nibbles(q), vandq_u8(b4, mask_from_bits16(qh & 0xffff))));
        hi = s8(vorrq_u8(high_nibbles(q), vandq_u8(b4, mask_from_bits16(qh >> 16))));
    }
};

struct Q8_0Kind {
    using Block = BlockQ8_0;
    using Act = BlockQ8_0;
    static constexpr bool kMin = false;
    static constexpr int kR = 4, kC = 4;
    static void unpack(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        lo = vld1q_s8(b.qs);
        hi = vld1q_s8(b.qs + 16);
    }
};

// IQ4_NL: each nibble indexes the 16-entry code book (TBL).
struct IQ4_NLKind {
    using Block = BlockIQ4_NL;
    using Act = BlockQ8_0;
    static constexpr bool kMin = false;
    static constexpr int kR = 4, kC = 4;
    static void unpack(const Block& b, int8x16_t& lo, int8x16_t& hi) {
        const int8x16_t values = vld1q_s8(kIQ4NLValues);
        const uint8x16_t q = vld1q_u8(b.qs);
        lo = vqtbl1q_s8(values, low_nibbles(q));
        hi = vqtbl1q_s8(values, high_nibbles(q));
    }
};

// ---- the 32-element quants: tiles ------------------------------------------------------------

// s[c * ldc + r] = dot(row r of x, row c of y) for r < R, c < C, over nb blocks. Every output is
// computed by the same operations whatever R and C are.
template <class K, int R, int C>
void tile(int64_t nb, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    float32x4_t acc[R][C];
    float macc[R][C];
    for (int r = 0; r < R; ++r) {
        for (int c = 0; c < C; ++c) {
            acc[r][c] = vdupq_n_f32(0.0f);
            macc[r][c] = 0.0f;
        }
    }
    for (int64_t ib = 0; ib < nb; ++ib) {
        int8x16_t lo[R], hi[R];
        float dx[R], mx[R];
        for (int r = 0; r < R; ++r) {
            const auto* b = reinterpret_cast<const typename K::Block*>(x + static_cast<size_t>(r) * bx) + ib;
            K::unpack(*b, lo[r], hi[r]);
            dx[r] = half(b->d);
            if constexpr (K::kMin) mx[r] = half(b->m);
        }
        for (int c = 0; c < C; ++c) {
            const auto* a = reinterpret_cast<const typename K::Act*>(y + static_cast<size_t>(c) * by) + ib;
            const int8x16_t y0 = vld1q_s8(a->qs), y1 = vld1q_s8(a->qs + 16);
            const float dy = half(a->d);
            float sy = 0.0f;
            if constexpr (K::kMin) sy = half(a->s);
            for (int r = 0; r < R; ++r) {
                const int32x4_t p = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo[r], y0), hi[r], y1);
                acc[r][c] = vfmaq_n_f32(acc[r][c], vcvtq_f32_s32(p), dx[r] * dy);
                if constexpr (K::kMin) macc[r][c] = std::fma(mx[r], sy, macc[r][c]);
            }
        }
    }
    for (int c = 0; c < C; ++c) {
        for (int r = 0; r < R; ++r) {
            float v = vaddvq_f32(acc[r][c]);
            if constexpr (K::kMin) v += macc[r][c];
            s[static_cast<size_t>(c) * ldc + r] = v;
        }
    }
}

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t);

template <class K, size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tile_table(std::index_sequence<I...>) {
    return {&tile<K, static_cast<int>(I / K::kC) + 1, static_cast<int>(I % K::kC) + 1>...};
}

template <class K>
void gemm(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
          size_t ldc) {
    static constexpr auto fns = tile_table<K>(std::make_index_sequence<K::kR * K::kC>{});
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    const int64_t nb = n / kQK;
    for (int64_t r0 = 0; r0 < nr; r0 += K::kR) {
        const int64_t rn = std::min<int64_t>(K::kR, nr - r0);
        for (int64_t c0 = 0; c0 < nc; c0 += K::kC) {
            const int64_t cn = std::min<int64_t>(K::kC, nc - c0);
            fns[static_cast<size_t>((rn - 1) * K::kC + (cn - 1))](nb, x + static_cast<size_t>(r0) * bx, bx,
                                                                   y + static_cast<size_t>(c0) * by, by,
                                                                   s + static_cast<size_t>(c0) * ldc + r0, ldc);
        }
    }
}

template <class K>
void vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
    tile<K, 1, 1>(n / kQK, static_cast<const uint8_t*>(vx), 0, static_cast<const uint8_t*>(vy), 0, s, 0);
}

// ---- the 32-element quants: to_float -------------------------------------------------------

// 16 int8 values times d, in element order; q * d is exact in float for |q| <= 128 and an fp16 d,
// so the results equal the reference's bit for bit.
inline void store_scaled(float* y, int8x16_t q, float d) {
    const int16x8_t l = vmovl_s8(vget_low_s8(q)), h = vmovl_high_s8(q);
    vst1q_f32(y + 0, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(l))), d));
    vst1q_f32(y + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(l)), d));
    vst1q_f32(y + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))), d));
    vst1q_f32(y + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(h)), d));
}

// q * d + m, the product rounded before the sum (it is exact anyway, as q has at most 5 bits).
inline void store_scaled_offset(float* y, int8x16_t q, float d, float m) {
    const int16x8_t l = vmovl_s8(vget_low_s8(q)), h = vmovl_high_s8(q);
    const float32x4_t vm = vdupq_n_f32(m);
    const int32x4_t parts[4] = {vmovl_s16(vget_low_s16(l)), vmovl_high_s16(l), vmovl_s16(vget_low_s16(h)),
                                vmovl_high_s16(h)};
    for (int k = 0; k < 4; ++k) vst1q_f32(y + 4 * k, vaddq_f32(vmulq_n_f32(vcvtq_f32_s32(parts[k]), d), vm));
}

template <class K>
void dequantize(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const typename K::Block*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        int8x16_t lo, hi;
        K::unpack(x[i], lo, hi);
        const float d = half(x[i].d);
        if constexpr (K::kMin) {
            const float m = half(x[i].m);
            store_scaled_offset(y, lo, d, m);
            store_scaled_offset(y + 16, hi, d, m);
        } else {
            store_scaled(y, lo, d);
            store_scaled(y + 16, hi, d);
        }
    }
}

void dequantize_row_q8_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half(x[i].d);
        store_scaled(y, vld1q_s8(x[i].qs), d);
        store_scaled(y + 16, vld1q_s8(x[i].qs + 16), d);
    }
}

} // namespace

void fill_traits(TypeTraits* table, int n_table) {
    // from_float of Q8_0 / Q8_1 (activations) is the reference quantizer: same bytes as ggml's
    // x86 build. Q4_0 ... Q5_1 and IQ4_NL convert with quantize_ref, as ggml-cpu does.
    const TypeTraits all[] = {
        {GGMLType::F32, ref::f32_to_float, ref::f32_from_float, vec_dot_f32, GGMLType::F32, ref::f32_from_float, nullptr},
        {GGMLType::F16, f16_to_float, f16_from_float, vec_dot_half<load_f16x4, half>, GGMLType::F16,
         ref::f16_quantize_ref, nullptr},
        {GGMLType::BF16, bf16_to_float, bf16_from_float, vec_dot_half<load_bf16x4, bf16_scalar>, GGMLType::BF16,
         ref::bf16_quantize_ref, nullptr},
        {GGMLType::Q4_0, dequantize<Q4_0Kind>, ref::quantize_row_q4_0_ref, vec_dot<Q4_0Kind>, GGMLType::Q8_0,
         ref::quantize_row_q4_0_ref, gemm<Q4_0Kind>},
        {GGMLType::Q4_1, dequantize<Q4_1Kind>, ref::quantize_row_q4_1_ref, vec_dot<Q4_1Kind>, GGMLType::Q8_1,
         ref::quantize_row_q4_1_ref, gemm<Q4_1Kind>},
        {GGMLType::Q5_0, dequantize<Q5_0Kind>, ref::quantize_row_q5_0_ref, vec_dot<Q5_0Kind>, GGMLType::Q8_0,
         ref::quantize_row_q5_0_ref, gemm<Q5_0Kind>},
        {GGMLType::Q5_1, dequantize<Q5_1Kind>, ref::quantize_row_q5_1_ref, vec_dot<Q5_1Kind>, GGMLType::Q8_1,
         ref::quantize_row_q5_1_ref, gemm<Q5_1Kind>},
        {GGMLType::Q8_0, dequantize<Q8_0Kind>, ref::quantize_row_q8_0, vec_dot<Q8_0Kind>, GGMLType::Q8_0,
         ref::quantize_row_q8_0_ref, gemm<Q8_0Kind>},
        {GGMLType::Q8_1, dequantize_row_q8_1, ref::quantize_row_q8_1, nullptr, GGMLType::Q8_1, ref::quantize_row_q8_1_ref,
         nullptr},
        {GGMLType::IQ4_NL, dequantize<IQ4_NLKind>, ref::quantize_row_iq4_nl_ref, vec_dot<IQ4_NLKind>, GGMLType::Q8_0,
         ref::quantize_row_iq4_nl_ref, gemm<IQ4_NLKind>},
    };
    for (const TypeTraits& t : all) {
        const auto id = static_cast<int>(t.type);
        if (id < n_table) table[id] = t;
    }
    fill_traits_kquants(table, n_table);
}

} // namespace slm::kernels::neon
