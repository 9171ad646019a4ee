// avx512.cpp - AVX-512 (F/BW/VL/DQ + VNNI) kernels for F32/F16/BF16 and the legacy quants,
// built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni (+ AVX2/FMA/F16C) and only
// called when dispatch.cpp has seen those features at run time.
//
// Only vec_dot and the gemm tiles are replaced; to_float, from_float and vec_dot_type stay the
// AVX2 table's, so activations quantize to exactly the bytes ggml's x86 build produces.
//
// Quantized dots (weights x Q8_0 / Q8_1 activations) use VNNI's vpdpbusd, unsigned bytes times
// signed bytes summed in groups of four into int32 lanes, over two 32-element blocks per 512-bit
// register:
//   * Q4_0 / Q5_0 / Q8_0 weights are made unsigned (q4, q5 as stored; q8 XOR 0x80 = q8 + 128),
//     and the offset (8, 16 or 128 times the sum of each four activations) is computed once per
//     activation block with one vpdpbusd and used, negated, as the starting value of every
//     row's vpdpbusd. The per-block integer sums are exact.
//   * Q4_1 / Q5_1 are unsigned already; their m * s term is one extra FMA with vectors holding
//     m (and s) in one lane per block and zeros elsewhere.
//   * Each block's int32 lanes are converted to float and multiplied by d_w * d_a (exact: the
//     product of two fp16 values fits a float's significand), accumulating with FMA.
// The gemm tiles unpack each weight block once per tile of columns and each activation block
// once per tile of rows; results equal the scalar reference up to the order of float additions.
#include "kernels/x86/x86.h"
#include "kernels/repack.h"

#include "kernels/ref/blocks.h"

#include <immintrin.h>
#include <cpuid.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

// GCC 12's AVX-512 intrinsics pass a deliberately undefined `__Y = __Y` operand, which its
// -W(maybe-)uninitialized flags once the functions are inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace slm::kernels::avx512 {
namespace {

using TileFn = void (*)(int64_t n, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc);

inline short h16(uint16_t h) { return static_cast<short>(h); }

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Sum of 16 floats (_mm512_reduce_add_ps trips GCC 12's -Wuninitialized).
inline float hsum16(__m512 v) {
    const __m256 h = _mm512_castps512_ps256(_mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2))));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Activation quants of one or two Q8 blocks (stride `bs` bytes apart), natural layout.
template <bool Two>
inline __m512i act_natural(const int8_t* q0, const int8_t* q1) {
    const __m256i a0 = load256(q0);
    if constexpr (Two) return _mm512_inserti64x4(_mm512_castsi256_si512(a0), load256(q1), 1);
    return _mm512_zextsi256_si512(a0);
}

// ... and interleaved: [a0 0..15 | a1 0..15 | a0 16..31 | a1 16..31].
template <bool Two>
inline __m512i act_interleaved(const int8_t* q0, const int8_t* q1) {
    const __m512i z = act_natural<Two>(q0, q1);
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
}

// 16 nibble bytes of one or two blocks -> [lo0 | lo1 | hi0 | hi1] (interleaved layout), or
// with Natural [lo0 | hi0 | lo1 | hi1], as bytes 0..15.
template <bool Two, bool Natural>
inline __m512i nibbles(const uint8_t* q0, const uint8_t* q1) {
    __m256i q;
    if constexpr (Two) {
        q = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(q0)), load128(q1), 1);
    } else {
        q = _mm256_zextsi128_si256(load128(q0));
    }
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    if constexpr (Natural) z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

// -(c * sum of each four activation bytes): the starting value that removes a weight offset c.
inline __m512i neg_offset(__m512i a, char c) {
    const __m512i zero = _mm512_setzero_si512();
    return _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(c), a));
}

// ---- quantized kernel policies --------------------------------------------------------------
// Each gives the weight block type WB and activation block type AB, the byte layout of its
// registers (natural or interleaved), the weight offset its unsigned quants carry (removed via
// the activations' neg_offset), whether it has a minimum (m * s term), the unsigned weight
// bytes and signed activation bytes of one or two blocks, and `block`, which adds one block's
// float terms to a running sum in exactly the order of the scalar reference (ref.cpp).

// Float operations that GCC must not contract into FMAs (plain _mm512_mul_ps/_add_ps may be),
// so that the reference's separately rounded products are reproduced.
inline __m512 mul_rn(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline __m512 add_rn(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }

// Q5 quants, unsigned 0..31: nibbles plus 16 where the qh bit is set (natural layout).
template <bool Two>
inline __m512i q5_bytes(const uint8_t* qs0, const uint8_t* qh0, const uint8_t* qs1, const uint8_t* qh1) {
    const __m512i lo = nibbles<Two, true>(qs0, qs1);
    uint64_t bits = load_u32(qh0);
    if constexpr (Two) bits |= static_cast<uint64_t>(load_u32(qh1)) << 32;
    return _mm512_mask_add_epi8(lo, _cvtu64_mask64(bits), lo, _mm512_set1_epi8(0x10));
}

// v[j] lane r = dword j of the 16 bytes at p + r*bx, for rows r < nr (zero above): a 16 x 4
// dword transpose. z[g] holds rows g, g+4, g+8, g+12 in its 128-bit lanes, which the
// unpacks turn into rows in lane order.
inline void transpose16(const uint8_t* p, size_t bx, int nr, __m512i* v) {
    auto row = [&](int r) { return r < nr ? load128(p + r * bx) : _mm_setzero_si128(); };
    __m512i z[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
        z[g] = _mm512_inserti32x4(_mm512_castsi128_si512(row(g)), row(g + 4), 1);
        z[g] = _mm512_inserti32x4(z[g], row(g + 8), 2);
        z[g] = _mm512_inserti32x4(z[g], row(g + 12), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

struct KQ4_0 {
    using WB = BlockQ4_0;
    using AB = BlockQ8_0;
    static constexpr bool kNatural = false, kMin = false;
    static constexpr char kOffset = 8;
    template <bool Two> static __m512i wq(const WB* b) { return nibbles<Two, false>(b[0].qs, Two ? b[1].qs : nullptr); }
    template <bool Two> static __m512i aq(const AB* b) { return act_interleaved<Two>(b[0].qs, Two ? b[1].qs : nullptr); }
    static constexpr bool kWide = true;
    // Weight dwords k = 0..7 (elements 4k..4k+3) of 16 rows' blocks, lane r = row r.
    static void wide_w(const uint8_t* b, size_t bx, int nr, __m512i* w) {
        __m512i v[4];
        transpose16(b + offsetof(BlockQ4_0, qs), bx, nr, v);
        const __m512i low = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            w[j] = _mm512_and_si512(v[j], low);
            w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v[j], 4), low);
        }
    }
    // sumf += sumi * d_x * d_y
    static __m512 block(__m512 acc, __m512 sumi, __m512 dx, __m512 dy, __m512, __m512) {
        return add_rn(acc, mul_rn(mul_rn(sumi, dx), dy));
    }
};

struct KQ8_0 {
    using WB = BlockQ8_0;
    using AB = BlockQ8_0;
    static constexpr bool kNatural = true, kMin = false;
    static constexpr char kOffset = static_cast<char>(0x80);
    // q XOR 0x80 = q + 128; the lanes of a missing second block stay 0x80, against zero activations.
    template <bool Two> static __m512i wq(const WB* b) {
        return _mm512_xor_si512(act_natural<Two>(b[0].qs, Two ? b[1].qs : nullptr), _mm512_set1_epi8(static_cast<char>(0x80)));
    }
    template <bool Two> static __m512i aq(const AB* b) { return act_natural<Two>(b[0].qs, Two ? b[1].qs : nullptr); }
    static constexpr bool kWide = true;
    static void wide_w(const uint8_t* b, size_t bx, int nr, __m512i* w) {
        transpose16(b + offsetof(BlockQ8_0, qs), bx, nr, w);
        transpose16(b + offsetof(BlockQ8_0, qs) + 16, bx, nr, w + 4);
        const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) w[k] = _mm512_xor_si512(w[k], bias);
    }
    // sumf += sumi * (d_x * d_y)
    static __m512 block(__m512 acc, __m512 sumi, __m512 dx, __m512 dy, __m512, __m512) {
        return add_rn(acc, mul_rn(sumi, mul_rn(dx, dy)));
    }
};

struct KQ5_0 {
    using WB = BlockQ5_0;
    using AB = BlockQ8_0;
    static constexpr bool kNatural = true, kMin = false;
    static constexpr char kOffset = 16;
    template <bool Two> static __m512i wq(const WB* b) {
        return q5_bytes<Two>(b[0].qs, b[0].qh, Two ? b[1].qs : nullptr, Two ? b[1].qh : nullptr);
    }
    template <bool Two> static __m512i aq(const AB* b) { return act_natural<Two>(b[0].qs, Two ? b[1].qs : nullptr); }
    // sumf += (d_x * d_y) * sumi
    static __m512 block(__m512 acc, __m512 sumi, __m512 dx, __m512 dy, __m512, __m512) {
        return add_rn(acc, mul_rn(mul_rn(dx, dy), sumi));
    }
};

// The types with a minimum, w = d*q + m: sumf += (d_x * d_y) * sumi + m * s. Their m * s term
// (s = d_a * sum of the activation block, rounded to fp16 on its own) can dwarf the block's
// dot product and cancel against it, so only the reference's exact order is safe.
struct KQ4_1 {
    using WB = BlockQ4_1;
    using AB = BlockQ8_1;
    static constexpr bool kNatural = false, kMin = true;
    static constexpr char kOffset = 0;
    template <bool Two> static __m512i wq(const WB* b) { return nibbles<Two, false>(b[0].qs, Two ? b[1].qs : nullptr); }
    template <bool Two> static __m512i aq(const AB* b) { return act_interleaved<Two>(b[0].qs, Two ? b[1].qs : nullptr); }
    static __m512 block(__m512 acc, __m512 sumi, __m512 dx, __m512 dy, __m512 m, __m512 s) {
        return add_rn(acc, add_rn(mul_rn(mul_rn(dx, dy), sumi), mul_rn(m, s)));
    }
};

struct KQ5_1 {
    using WB = BlockQ5_1;
    using AB = BlockQ8_1;
    static constexpr bool kNatural = true, kMin = true;
    static constexpr char kOffset = 0;
    template <bool Two> static __m512i wq(const WB* b) {
        return q5_bytes<Two>(b[0].qs, b[0].qh, Two ? b[1].qs : nullptr, Two ? b[1].qh : nullptr);
    }
    template <bool Two> static __m512i aq(const AB* b) { return act_natural<Two>(b[0].qs, Two ? b[1].qs : nullptr); }
    static __m512 block(__m512 acc, __m512 sumi, __m512 dx, __m512 dy, __m512 m, __m512 s) {
        return add_rn(acc, add_rn(mul_rn(mul_rn(dx, dy), sumi), mul_rn(m, s)));
    }
};

// ---- the quantized tile ------------------------------------------------------------------------
// Outputs are numbered p = r*C + c (R*C <= 16). Per two blocks: one vpdpbusd per output gives
// 16 int32 lanes (8 per block); reduce_blocks transposes and adds them into one vector per block
// whose lane p is output p's exact integer block sum; then the float terms are applied with
// output p in lane p, block after block, exactly as the reference does. So every tile shape,
// vec_dot (the 1 x 1 tile) and the scalar reference give the same bits.

// Lanes p of 16-bit index vectors: row r = p / C (word 2r: d, word 2r+1: the second fp16
// field) and column c = p % C, for _mm512_permutexvar_epi16 over the words of words<>().
template <int R, int C>
struct PairIndex {
    static constexpr std::array<uint16_t, 32> make(bool rows) {
        std::array<uint16_t, 32> a{};
        for (int p = 0; p < 16; ++p) {
            const int k = p < R * C ? (rows ? p / C : p % C) : 0;
            a[p] = static_cast<uint16_t>(2 * k);
            a[p + 16] = static_cast<uint16_t>(2 * k + 1);
        }
        return a;
    }
    alignas(64) static constexpr std::array<uint16_t, 32> rows = make(true);
    alignas(64) static constexpr std::array<uint16_t, 32> cols = make(false);
};

// The first 32 bits of N blocks (d and the next field) as dwords 0..N-1.
template <int N, class B>
inline __m256i head_words(const B* const* b, int64_t ib) {
    auto w = [&](int k) { return static_cast<int>(load_u32(reinterpret_cast<const uint8_t*>(&b[k][ib]))); };
    __m128i lo = _mm_cvtsi32_si128(w(0));
    if constexpr (N > 1) lo = _mm_insert_epi32(lo, w(1), 1);
    if constexpr (N > 2) lo = _mm_insert_epi32(lo, w(2), 2);
    if constexpr (N > 3) lo = _mm_insert_epi32(lo, w(3), 3);
    if constexpr (N <= 4) {
        return _mm256_zextsi128_si256(lo);
    } else {
        __m128i hi = _mm_cvtsi32_si128(w(4));
        if constexpr (N > 5) hi = _mm_insert_epi32(hi, w(5), 1);
        if constexpr (N > 6) hi = _mm_insert_epi32(hi, w(6), 2);
        if constexpr (N > 7) hi = _mm_insert_epi32(hi, w(7), 3);
        return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    }
}

// Per-output scale vectors of one block: lane p gets the first (d) and, with Second, the
// second fp16 field of row p / C's (or column p % C's) block.
template <int N, bool Second, class B>
inline void pair_fields(const B* const* b, int64_t ib, const uint16_t* index, __m512& first, __m512& second) {
    const __m512i h = _mm512_permutexvar_epi16(_mm512_load_si512(index), _mm512_castsi256_si512(head_words<N>(b, ib)));
    first = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    if constexpr (Second) second = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}

// v[p]: 16 int32 lanes of output p (for p >= P: zero). out0 / out1 lane p: the sum of output
// p's lanes of block 0 / 1 (natural layout: 128-bit lanes 0,1 / 2,3; interleaved: 0,2 / 1,3).
template <bool Natural, int P>
inline void reduce_blocks(const __m512i* v, __m512i& out0, __m512i& out1) {
    const __m512i zero = _mm512_setzero_si512();
    __m512i u[8], w[4];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
        if (2 * k >= P) {
            u[k] = zero;
            continue;
        }
        const __m512i a = v[2 * k], b = 2 * k + 1 < P ? v[2 * k + 1] : zero;
        u[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
    }
    // w[j], 128-bit lane L: the sums over lane L of outputs 4j .. 4j+3.
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
        if (4 * j >= P) {
            w[j] = zero;
            continue;
        }
        w[j] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * j], u[2 * j + 1]), _mm512_unpackhi_epi64(u[2 * j], u[2 * j + 1]));
    }
    // Two blocks of two outputs-quads each: [w_a block 0, w_a block 1, w_b block 0, w_b block 1].
    auto pair = [](__m512i a, __m512i b) {
        if constexpr (Natural) {
            return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)),
                                    _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        } else {
            return _mm512_add_epi32(_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
        }
    };
    const __m512i s01 = pair(w[0], w[1]);
    const __m512i s23 = P > 8 ? pair(w[2], w[3]) : zero;
    out0 = _mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0));
    out1 = _mm512_shuffle_i32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1));
}

template <class K, int R, int C>
void tile_q(int64_t n, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    static_assert(R * C <= 16, "one lane per output");
    using WB = typename K::WB;
    using AB = typename K::AB;
    using Idx = PairIndex<R, C>;
    constexpr int P = R * C;
    const int64_t nb = n / kQK;
    const WB* xr[R];
    const AB* yc[C];
    for (int r = 0; r < R; ++r) xr[r] = reinterpret_cast<const WB*>(x + r * bx);
    for (int c = 0; c < C; ++c) yc[c] = reinterpret_cast<const AB*>(y + c * by);
    __m512 acc = _mm512_setzero_ps();

    // The float terms of block ib + b, from its integer sums.
    auto apply = [&](__m512i sums, int64_t ib) {
        __m512 dx, m, dy, sa;
        pair_fields<R, K::kMin>(xr, ib, Idx::rows.data(), dx, m);
        pair_fields<C, K::kMin>(yc, ib, Idx::cols.data(), dy, sa);
        acc = K::block(acc, _mm512_cvtepi32_ps(sums), dx, dy, m, sa);
    };
    auto step = [&](int64_t ib, auto two) {
        constexpr bool Two = decltype(two)::value;
        __m512i wq[R], sums[P];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) wq[r] = K::template wq<Two>(xr[r] + ib);
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) {
            const __m512i aq = K::template aq<Two>(yc[c] + ib);
            const __m512i start = K::kOffset != 0 ? neg_offset(aq, K::kOffset) : _mm512_setzero_si512();
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) sums[r * C + c] = _mm512_dpbusd_epi32(start, wq[r], aq);
        }
        __m512i s0, s1;
        reduce_blocks<K::kNatural, P>(sums, s0, s1);
        apply(s0, ib);
        if constexpr (Two) apply(s1, ib + 1);
    };
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) step(ib, std::true_type{});
    if (ib < nb) step(ib, std::false_type{});

    alignas(64) float out[16];
    _mm512_store_ps(out, acc);
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) s[c * ldc + r] = out[r * C + c];
    }
}

// ---- float kernel policies ------------------------------------------------------------------
// 32 elements per step as two float vectors per operand (for BF16 the even and the odd
// elements, which pair up the same way in x and y), and a masked step for the last 1..31.

inline __mmask16 mask16(int k) { return k >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << k) - 1); }

struct KF32 {
    using T = float;
    static void load(const T* p, __m512& lo, __m512& hi) {
        lo = _mm512_loadu_ps(p);
        hi = _mm512_loadu_ps(p + 16);
    }
    static void load_tail(const T* p, int rem, __m512& lo, __m512& hi) {
        lo = _mm512_maskz_loadu_ps(mask16(rem), p);
        hi = _mm512_maskz_loadu_ps(mask16(std::max(0, rem - 16)), p + 16);
    }
};

struct KF16 {
    using T = uint16_t;
    static void load(const T* p, __m512& lo, __m512& hi) {
        lo = _mm512_cvtph_ps(load256(p));
        hi = _mm512_cvtph_ps(load256(p + 16));
    }
    static void load_tail(const T* p, int rem, __m512& lo, __m512& hi) {
        lo = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(rem), p));
        hi = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(std::max(0, rem - 16)), p + 16));
    }
};

struct KBF16 {
    using T = uint16_t;
    static void split(__m512i v, __m512& lo, __m512& hi) {
        lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        hi = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
    }
    static void load(const T* p, __m512& lo, __m512& hi) { split(_mm512_loadu_si512(p), lo, hi); }
    static void load_tail(const T* p, int rem, __m512& lo, __m512& hi) {
        split(_mm512_maskz_loadu_epi16(static_cast<__mmask32>((1ull << rem) - 1), p), lo, hi);
    }
};

// An R x C tile of float dots. Every tile shape (and vec_dot, the 1 x 1 tile) does the same
// operations in the same order for each output, so gemm and vec_dot agree bit for bit.
template <class K, int R, int C>
void tile_f(int64_t n, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    using T = typename K::T;
    const T* xr[R];
    const T* yc[C];
    for (int r = 0; r < R; ++r) xr[r] = reinterpret_cast<const T*>(x + r * bx);
    for (int c = 0; c < C; ++c) yc[c] = reinterpret_cast<const T*>(y + c * by);
    __m512 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
    }
    auto step = [&](auto load_fn) {
        __m512 wlo[R], whi[R];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) load_fn(xr[r], wlo[r], whi[r]);
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) {
            __m512 alo, ahi;
            load_fn(yc[c], alo, ahi);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                acc[r][c] = _mm512_fmadd_ps(wlo[r], alo, acc[r][c]);
                acc[r][c] = _mm512_fmadd_ps(whi[r], ahi, acc[r][c]);
            }
        }
    };
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        step([i](const T* p, __m512& lo, __m512& hi) { K::load(p + i, lo, hi); });
    }
    if (i < n) {
        const int rem = static_cast<int>(n - i);
        step([i, rem](const T* p, __m512& lo, __m512& hi) { K::load_tail(p + i, rem, lo, hi); });
    }
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) s[c * ldc + r] = hsum16(acc[r][c]);
    }
}

// ---- BF16 with vdpbf16ps (AVX512_BF16), chosen at run time -----------------------------------

bool cpu_has_avx512bf16() {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
    return eax & (1u << 5);
}

// vdpbf16ps adds x[2i]*y[2i] + x[2i+1]*y[2i+1] to lane i (the products are exact in float; it
// flushes subnormal inputs and outputs to zero, which matters only below 1e-38).
template <int R, int C>
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))
void tile_bf16_dp(int64_t n, const uint8_t* x, size_t bx, const uint8_t* y, size_t by, float* s, size_t ldc) {
    const uint16_t* xr[R];
    const uint16_t* yc[C];
    for (int r = 0; r < R; ++r) xr[r] = reinterpret_cast<const uint16_t*>(x + r * bx);
    for (int c = 0; c < C; ++c) yc[c] = reinterpret_cast<const uint16_t*>(y + c * by);
    __m512 acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < n; i += 32) {
        // The last step loads only the remaining elements (the rest read as zero).
        const __mmask32 m =
            n - i >= 32 ? static_cast<__mmask32>(0xffffffffu) : static_cast<__mmask32>((1ull << (n - i)) - 1);
        __m512bh w[R];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) w[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, xr[r] + i);
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) {
            const __m512bh a = (__m512bh)_mm512_maskz_loadu_epi16(m, yc[c] + i);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], w[r], a);
        }
    }
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) s[c * ldc + r] = hsum16(acc[r][c]);
    }
}

// ---- tile dispatch ----------------------------------------------------------------------------

// Tiles of every shape up to RMAX x CMAX, and column tiles of up to kDecodeRows rows for a
// single column (decode), where the activation block is reused by more rows instead.
constexpr int kDecodeRows = 8;
// Columns from which the quantized gemm uses wide_q.
constexpr int64_t kWideMinCols = 2;

template <int RMAX, int CMAX>
struct TileTable {
    TileFn tiles[RMAX][CMAX];
    TileFn decode[kDecodeRows];
};

template <template <int, int> class Make, int R, int... Cs>
constexpr void fill_row(TileFn* row, std::integer_sequence<int, Cs...>) {
    ((row[Cs] = Make<R, Cs + 1>::fn), ...);
}

template <template <int, int> class Make, int CMAX, int... Rs>
constexpr void fill_rows(TileFn (*tiles)[CMAX], std::integer_sequence<int, Rs...>) {
    (fill_row<Make, Rs + 1>(tiles[Rs], std::make_integer_sequence<int, CMAX>()), ...);
}

template <template <int, int> class Make, int... Rs>
constexpr void fill_decode(TileFn* decode, std::integer_sequence<int, Rs...>) {
    ((decode[Rs] = Make<Rs + 1, 1>::fn), ...);
}

template <template <int, int> class Make, int RMAX, int CMAX>
constexpr TileTable<RMAX, CMAX> make_table() {
    TileTable<RMAX, CMAX> t{};
    fill_rows<Make, CMAX>(t.tiles, std::make_integer_sequence<int, RMAX>());
    fill_decode<Make>(t.decode, std::make_integer_sequence<int, kDecodeRows>());
    return t;
}

template <class TT>
void run_tiles(const TT& t, int rmax, int cmax, int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy,
               size_t by, int64_t nc, float* s, size_t ldc) {
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    if (nc == 1) {
        for (int64_t r0 = 0; r0 < nr; r0 += kDecodeRows) {
            const int rr = static_cast<int>(std::min<int64_t>(kDecodeRows, nr - r0));
            t.decode[rr - 1](n, x + r0 * bx, bx, y, by, s + r0, ldc);
        }
        return;
    }
    for (int64_t r0 = 0; r0 < nr; r0 += rmax) {
        const int rr = static_cast<int>(std::min<int64_t>(rmax, nr - r0));
        for (int64_t c0 = 0; c0 < nc; c0 += cmax) {
            const int cc = static_cast<int>(std::min<int64_t>(cmax, nc - c0));
            t.tiles[rr - 1][cc - 1](n, x + r0 * bx, bx, y + c0 * by, by, s + c0 * ldc + r0, ldc);
        }
    }
}

// ---- the wide quantized kernel (several columns) ---------------------------------------------
// Up to 16 rows in the 16 lanes of a register: each weight block is transposed once into eight
// registers (dword k of every row), and for each column one vpdpbusd per dword, with that
// activation dword broadcast, sums the whole block in every row's lane; no horizontal sums are
// left. The offset of the unsigned weights (kOffset * the sum of the activation block) is the
// start value. The float terms follow the reference order per block, with row r in lane r, so
// the results equal vec_dot's (and the reference's) bit for bit. Running sums of up to 32
// columns live in a small buffer.

template <class K, class = void>
struct HasWide { static constexpr bool value = false; };
template <class K>
struct HasWide<K, std::void_t<decltype(K::kWide)>> { static constexpr bool value = K::kWide; };

// -kOffset * (sum of the 32 activation bytes), in every lane.
template <int Shift>
inline __m512i neg_sum_shifted(const int8_t* q) {
    const __m256i a = _mm256_xor_si256(load256(q), _mm256_set1_epi8(static_cast<char>(0x80)));
    const __m256i sad = _mm256_sad_epu8(a, _mm256_setzero_si256());  // 4 x sum(a + 128) of 8 bytes
    __m128i t = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
    t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));  // sum(a) + 4096
    const __m512i v = _mm512_broadcastd_epi32(t);
    return _mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(32 * 128), v), Shift);
}

template <int C>
constexpr int log2_of() {
    int s = 0;
    while ((1 << s) < C) ++s;
    return s;
}

template <class K>
void wide_q(int64_t n, const uint8_t* x, size_t bx, int nr, const uint8_t* y, size_t by, int64_t nc, float* s,
            size_t ldc) {
    using WB = typename K::WB;
    using AB = typename K::AB;
    constexpr int kCols = 32;
    constexpr int kShift = log2_of<static_cast<unsigned char>(K::kOffset)>();
    static_assert(K::kOffset == 0 || (1 << kShift) == static_cast<unsigned char>(K::kOffset), "offset is a power of two");
    const int64_t nb = n / kQK;
    const __mmask16 rows = static_cast<__mmask16>((1u << nr) - 1);
    __m512i vindex = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                        _mm512_set1_epi32(static_cast<int>(bx)));
    alignas(64) float acc[kCols][16];
    for (int64_t c0 = 0; c0 < nc; c0 += kCols) {
        const int cn = static_cast<int>(std::min<int64_t>(kCols, nc - c0));
        for (int c = 0; c < cn; ++c) _mm512_store_ps(acc[c], _mm512_setzero_ps());
        for (int64_t ib = 0; ib < nb; ++ib) {
            const uint8_t* xb = x + ib * sizeof(WB);
            __m512i w[8];
            K::wide_w(xb, bx, nr, w);
            // Each row's first 32 bits: d and (for Q4_1 / Q5_1) m.
            const __m512i head = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, vindex, xb, 1);
            const __m512 dx = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
            __m512 mx = _mm512_setzero_ps();
            if constexpr (K::kMin) mx = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head, 16)));
            // One column: two chains of four vpdpbusd (the latency of one chain of eight would
            // bound the loop), then the block's float terms.
            auto column = [&](int c) {
                const AB& a = reinterpret_cast<const AB*>(y + (c0 + c) * by)[ib];
                const auto* q = reinterpret_cast<const uint8_t*>(a.qs);
                __m512i s0 = K::kOffset != 0 ? neg_sum_shifted<kShift>(a.qs) : _mm512_setzero_si512();
                __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int k = 0; k < 8; k += 2) {
                    s0 = _mm512_dpbusd_epi32(s0, w[k], _mm512_set1_epi32(static_cast<int>(load_u32(q + 4 * k))));
                    s1 = _mm512_dpbusd_epi32(s1, w[k + 1], _mm512_set1_epi32(static_cast<int>(load_u32(q + 4 * k + 4))));
                }
                const __m512 dy = _mm512_cvtph_ps(_mm256_set1_epi16(h16(a.d)));
                __m512 sy = _mm512_setzero_ps();
                if constexpr (K::kMin) sy = _mm512_cvtph_ps(_mm256_set1_epi16(h16(a.s)));
                const __m512 sumi = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                _mm512_store_ps(acc[c], K::block(_mm512_load_ps(acc[c]), sumi, dx, dy, mx, sy));
            };
            int c = 0;
            for (; c + 2 <= cn; c += 2) {
                column(c);
                column(c + 1);
            }
            if (c < cn) column(c);
        }
        for (int c = 0; c < cn; ++c) _mm512_mask_storeu_ps(s + (c0 + c) * ldc, rows, _mm512_load_ps(acc[c]));
    }
}

// ---- decode (one activation row, many weight rows) for Q4_0 and Q8_0 -----------------------
// Decode reads every weight once per token, so it must keep up with memory: per two blocks of
// a row, one unpack, one vpdpbusd (started from minus the offset times the activation sums,
// shared by all rows) and one FMA into that row's own accumulator, whose 16 lanes are summed
// once at the end. Every row is computed the same way whatever R is, so vec_dot (R = 1) and the
// decode tiles give the same bits; the order of float additions differs from the reference's.

// Two blocks' weight bytes as unsigned values, natural layout: [block 0 | block 1].
struct DecQ4_0 {
    using WB = BlockQ4_0;
    static constexpr int kOffsetShift = 3;  // 8
    static constexpr bool kInterleaved = true;
    // [lo nibbles b0 | lo b1 | hi b0 | hi b1]: elements [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31],
    // the order the activations are put in (act_interleaved).
    static __m512i two(const WB* b) {
        const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(load128(b[0].qs)), load128(b[1].qs), 1);
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
        return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
    }
    static __m512i one(const WB* b) {
        const __m128i q = load128(b[0].qs);
        const __m256i z = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
        return _mm512_zextsi256_si512(_mm256_and_si256(z, _mm256_set1_epi8(0x0f)));
    }
};

struct DecQ8_0 {
    using WB = BlockQ8_0;
    static constexpr int kOffsetShift = 7;  // 128
    static constexpr bool kInterleaved = false;
    static __m512i two(const WB* b) {
        const __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(load256(b[0].qs)), load256(b[1].qs), 1);
        return _mm512_xor_si512(z, _mm512_set1_epi8(static_cast<char>(0x80)));
    }
    static __m512i one(const WB* b) {
        return _mm512_zextsi256_si512(_mm256_xor_si256(load256(b[0].qs), _mm256_set1_epi8(static_cast<char>(0x80))));
    }
};

// Per-lane scales of two blocks from their first fp16 (two broadcast loads): natural layout
// [d0 x 8 | d1 x 8]; interleaved (128-bit lanes b0, b1, b0, b1) [d0 x 4 | d1 x 4] twice.
template <bool Interleaved, class B>
inline __m512 two_scales(const B* b0, const B* b1) {
    const __m128i h0 = _mm_set1_epi16(h16(b0->d)), h1 = _mm_set1_epi16(h16(b1->d));
    if constexpr (Interleaved) return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_unpacklo_epi64(h0, h1)));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(h0), h1, 1));
}

constexpr int kPfTiles = 2;  // how many tiles ahead dec_q prefetches

template <class D, int R>
void dec_q(int64_t n, const uint8_t* x, size_t bx, const uint8_t* y, float* s) {
    using WB = typename D::WB;
    const int64_t nb = n / kQK;
    const auto* a = reinterpret_cast<const BlockQ8_0*>(y);
    const WB* xr[R];
    for (int r = 0; r < R; ++r) xr[r] = reinterpret_cast<const WB*>(x + r * bx);
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    const __m512i off = _mm512_set1_epi8(static_cast<char>(1 << D::kOffsetShift));
    // The next R rows (contiguous after these in a weight matrix) are prefetched while these are
    // summed: a row of a small model is only a few cache lines long, too short a stream for the
    // hardware prefetchers to ramp up on. Spread evenly over this tile's iterations.
    const char* pf = reinterpret_cast<const char*>(x + kPfTiles * R * bx);
    const int64_t pf_lines = static_cast<int64_t>((R * bx + 63) / 64);
    const int64_t iters = std::max<int64_t>(1, nb / 2);
    const int64_t pf_per_iter = (pf_lines + iters - 1) / iters;
    int64_t pf_next = 0;
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        if (R > 1) {
            for (int64_t k = 0; k < pf_per_iter && pf_next < pf_lines; ++k, ++pf_next) _mm_prefetch(pf + 64 * pf_next, _MM_HINT_T0);
        }
        const __m512i aq = D::kInterleaved ? act_interleaved<true>(a[ib].qs, a[ib + 1].qs)
                                           : act_natural<true>(a[ib].qs, a[ib + 1].qs);
        // -(offset * sum of each four activations): offset (8 or 128) as the unsigned operand.
        const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, aq));
        const __m512 da = two_scales<D::kInterleaved>(&a[ib], &a[ib + 1]);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const __m512i sum = _mm512_dpbusd_epi32(start, D::two(xr[r] + ib), aq);
            const __m512 d = _mm512_mul_ps(two_scales<D::kInterleaved>(&xr[r][ib], &xr[r][ib + 1]), da);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc[r]);
        }
    }
    if (ib < nb) {
        const __m512i aq = _mm512_zextsi256_si512(load256(a[ib].qs));
        const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, aq));
        const __m512 da = _mm512_cvtph_ps(_mm256_set1_epi16(h16(a[ib].d)));
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const __m512i sum = _mm512_dpbusd_epi32(start, D::one(xr[r] + ib), aq);
            const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_set1_epi16(h16(xr[r][ib].d))), da);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) s[r] = hsum16(acc[r]);
}

template <class D>
struct DecodeOps {
    static constexpr int kRows = 8;
    template <int... Rs>
    static constexpr std::array<void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, float*), sizeof...(Rs)>
    make(std::integer_sequence<int, Rs...>) {
        return {&dec_q<D, Rs + 1>...};
    }
    static constexpr auto table = make(std::make_integer_sequence<int, kRows>());
    // Rows r0.. of one activation row: 8 at a time, then one call for the rest.
    static void rows(int64_t n, const uint8_t* x, size_t bx, int64_t nr, const uint8_t* y, float* s) {
        for (int64_t r0 = 0; r0 < nr; r0 += kRows) {
            const int rr = static_cast<int>(std::min<int64_t>(kRows, nr - r0));
            table[rr - 1](n, x + r0 * bx, bx, y, s + r0);
        }
    }
    static void vec_dot(int64_t n, float* s, const void* x, const void* y) {
        dec_q<D, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), s);
    }
};

// ---- Q4_0 / Q8_0 in the 16-row group layout of repack.h -------------------------------------
// The layout is what wide_q's transpose produces, stored: per block, the 16 rows' scales and
// registers whose lane r is dword j of row r's quants. So the same sums as wide_q (and the
// reference, bit for bit), without the transpose, and each group is one sequential stream.
// Q4_0: four registers of nibbles per block give eight of unsigned values 0..15 (offset 8);
// Q8_0: eight registers of signed bytes, made unsigned by XOR 0x80 (offset 128).
struct R16Q4_0 {
    using WB = BlockQ4_0;
    using K = KQ4_0;
    static constexpr int kShift = 3;
    static void weights(const uint8_t* b, __m512i* w) {
        const __m512i low = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
            const __m512i p = _mm512_loadu_si512(b + 64 * j);
            w[j] = _mm512_and_si512(p, low);
            w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(p, 4), low);
        }
    }
};
struct R16Q8_0 {
    using WB = BlockQ8_0;
    using K = KQ8_0;
    static constexpr int kShift = 7;
    static void weights(const uint8_t* b, __m512i* w) {
        const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j) w[j] = _mm512_xor_si512(_mm512_loadu_si512(b + 64 * j), bias);
    }
};

template <class T>
void gemm_r16(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
              size_t ldc) {
    constexpr int kRows = 16, kCols = 32;
    constexpr size_t kGroupBlock = kRows * sizeof(typename T::WB);  // 288 (Q4_0) or 544 (Q8_0) bytes
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    alignas(64) float acc[kCols][16];
    for (int64_t g = 0; g < nr / kRows; ++g) {
        const uint8_t* xg = x + static_cast<size_t>(g) * kRows * bx;
        for (int64_t c0 = 0; c0 < nc; c0 += kCols) {
            const int cn = static_cast<int>(std::min<int64_t>(kCols, nc - c0));
            for (int c = 0; c < cn; ++c) _mm512_store_ps(acc[c], _mm512_setzero_ps());
            for (int64_t ib = 0; ib < nb; ++ib) {
                const uint8_t* b = xg + static_cast<size_t>(ib) * kGroupBlock;
                const __m512 dx = _mm512_cvtph_ps(load256(b));
                __m512i w[8];
                T::weights(b + 32, w);
                auto column = [&](int c) {
                    const BlockQ8_0& a = reinterpret_cast<const BlockQ8_0*>(y + (c0 + c) * by)[ib];
                    const auto* q = reinterpret_cast<const uint8_t*>(a.qs);
                    __m512i s0 = neg_sum_shifted<T::kShift>(a.qs);
                    __m512i s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
                    for (int k = 0; k < 8; k += 2) {
                        s0 = _mm512_dpbusd_epi32(s0, w[k], _mm512_set1_epi32(static_cast<int>(load_u32(q + 4 * k))));
                        s1 = _mm512_dpbusd_epi32(s1, w[k + 1], _mm512_set1_epi32(static_cast<int>(load_u32(q + 4 * k + 4))));
                    }
                    const __m512 dy = _mm512_cvtph_ps(_mm256_set1_epi16(h16(a.d)));
                    const __m512 sumi = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
                    _mm512_store_ps(acc[c], T::K::block(_mm512_load_ps(acc[c]), sumi, dx, dy, dx, dy));
                };
                int c = 0;
                for (; c + 2 <= cn; c += 2) {
                    column(c);
                    column(c + 1);
                }
                if (c < cn) column(c);
            }
            for (int c = 0; c < cn; ++c) _mm512_storeu_ps(s + (c0 + c) * ldc + g * kRows, _mm512_load_ps(acc[c]));
        }
    }
}

template <class K, class Dec = void>
struct QuantOps {
    template <int Rr, int Cc>
    struct Make {
        static constexpr TileFn fn = &tile_q<K, Rr, Cc>;
    };
    static constexpr int R = 4, C = 4;
    static constexpr TileTable<R, C> table = make_table<Make, R, C>();
    static void gemm(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                     size_t ldc) {
        if constexpr (!std::is_void_v<Dec>) {
            if (nc == 1) {
                DecodeOps<Dec>::rows(n, static_cast<const uint8_t*>(x), bx, nr, static_cast<const uint8_t*>(y), s);
                return;
            }
        }
        if constexpr (HasWide<K>::value) {
            if (nc >= kWideMinCols) {
                for (int64_t r0 = 0; r0 < nr; r0 += 16) {
                    wide_q<K>(n, static_cast<const uint8_t*>(x) + r0 * bx, bx, static_cast<int>(std::min<int64_t>(16, nr - r0)),
                              static_cast<const uint8_t*>(y), by, nc, s + r0, ldc);
                }
                return;
            }
        }
        run_tiles(table, R, C, n, x, bx, nr, y, by, nc, s, ldc);
    }
    static void vec_dot(int64_t n, float* s, const void* x, const void* y) {
        if constexpr (!std::is_void_v<Dec>) {
            DecodeOps<Dec>::vec_dot(n, s, x, y);
        } else {
            tile_q<K, 1, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), 0, s, 0);
        }
    }
};

template <class K>
struct FloatOps {
    static constexpr int R = 4, C = 4;
    template <int Rr, int Cc>
    struct Make {
        static constexpr TileFn fn = &tile_f<K, Rr, Cc>;
    };
    static constexpr TileTable<R, C> table = make_table<Make, R, C>();
    static void gemm(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                     size_t ldc) {
        run_tiles(table, R, C, n, x, bx, nr, y, by, nc, s, ldc);
    }
    static void vec_dot(int64_t n, float* s, const void* x, const void* y) {
        tile_f<K, 1, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), 0, s, 0);
    }
};

struct Bf16DpOps {
    static constexpr int R = 4, C = 4;
    template <int Rr, int Cc>
    struct Make {
        static constexpr TileFn fn = &tile_bf16_dp<Rr, Cc>;
    };
    static constexpr TileTable<R, C> table = make_table<Make, R, C>();
    static void gemm(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                     size_t ldc) {
        run_tiles(table, R, C, n, x, bx, nr, y, by, nc, s, ldc);
    }
    static void vec_dot(int64_t n, float* s, const void* x, const void* y) {
        tile_bf16_dp<1, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), 0, s, 0);
    }
};

// F16 decoding: one row at a time with the AVX2 table's dot (a single sequential stream per row
// beats several rows at once here: the F16 weights are 4x the bytes of Q4_0 per element, and the
// loads, not the arithmetic, set the pace); tiles of several tokens use the AVX-512 kernel.
decltype(TypeTraits::vec_dot) g_f16_row_dot = nullptr;

void gemm_f16(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
              size_t ldc) {
    if (nc == 1 && g_f16_row_dot != nullptr) {
        for (int64_t r = 0; r < nr; ++r) g_f16_row_dot(n, s + r, static_cast<const uint8_t*>(x) + r * bx, y);
        return;
    }
    FloatOps<KF16>::gemm(n, x, bx, nr, y, by, nc, s, ldc);
}

void set(TypeTraits* table, int n_table, GGMLType type, decltype(TypeTraits::vec_dot) vec_dot,
         decltype(TypeTraits::gemm) gemm) {
    const auto id = static_cast<int>(type);
    if (id >= n_table) return;
    table[id].vec_dot = vec_dot;
    table[id].gemm = gemm;
}

} // namespace

void fill_traits(TypeTraits* table, int n_table) {
    // type, to_float, from_float, vec_dot_type and quantize_ref stay the AVX2 table's.
    set(table, n_table, GGMLType::Q4_0, QuantOps<KQ4_0, DecQ4_0>::vec_dot, QuantOps<KQ4_0, DecQ4_0>::gemm);
    set(table, n_table, GGMLType::Q8_0, QuantOps<KQ8_0, DecQ8_0>::vec_dot, QuantOps<KQ8_0, DecQ8_0>::gemm);
    set(table, n_table, GGMLType::Q4_1, QuantOps<KQ4_1>::vec_dot, QuantOps<KQ4_1>::gemm);
    set(table, n_table, GGMLType::Q5_0, QuantOps<KQ5_0>::vec_dot, QuantOps<KQ5_0>::gemm);
    set(table, n_table, GGMLType::Q5_1, QuantOps<KQ5_1>::vec_dot, QuantOps<KQ5_1>::gemm);
    if (static_cast<int>(GGMLType::F16) < n_table) g_f16_row_dot = table[static_cast<int>(GGMLType::F16)].vec_dot;
    set(table, n_table, GGMLType::F16, g_f16_row_dot ? g_f16_row_dot : FloatOps<KF16>::vec_dot, gemm_f16);
    set(table, n_table, GGMLType::F32, FloatOps<KF32>::vec_dot, FloatOps<KF32>::gemm);
    if (cpu_has_avx512bf16()) {
        set(table, n_table, GGMLType::BF16, Bf16DpOps::vec_dot, Bf16DpOps::gemm);
    } else {
        set(table, n_table, GGMLType::BF16, FloatOps<KBF16>::vec_dot, FloatOps<KBF16>::gemm);
    }
}

} // namespace slm::kernels::avx512

namespace slm::kernels::avx512::testing {
// The BF16 kernels a CPU without AVX512_BF16 gets (fill_traits picks vdpbf16ps where it can),
// so that tests can run them on any AVX-512 machine.
void bf16_fallback_kernels(decltype(TypeTraits::vec_dot)* vec_dot, decltype(TypeTraits::gemm)* gemm) {
    *vec_dot = FloatOps<KBF16>::vec_dot;
    *gemm = FloatOps<KBF16>::gemm;
}
} // namespace slm::kernels::avx512::testing

namespace slm::kernels::avx512 {
const RepackTraits* repack_traits(GGMLType t) {
    static const RepackTraits q4_0 = {ref::repack_q4_0_r16, gemm_r16<R16Q4_0>, ref::unpack_row_q4_0_r16};
    static const RepackTraits q8_0 = {ref::repack_q8_0_r16, gemm_r16<R16Q8_0>, ref::unpack_row_q8_0_r16};
    return t == GGMLType::Q4_0 ? &q4_0 : t == GGMLType::Q8_0 ? &q8_0 : nullptr;
}
} // namespace slm::kernels::avx512
