// avx512_kquants.cpp - AVX-512 (F/BW/VL/DQ + VNNI) kernels for the K-quants, IQ4 and TQ types.
//
// Built with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni (+ AVX2/FMA/F16C) and only
// called when dispatch.cpp has seen those features at run time. Only vec_dot and the gemm tiles
// are replaced; to_float, from_float, vec_dot_type and quantize_ref stay the AVX2 table's, so
// activations quantize to the same bytes.
//
// The scheme, per 256-element super-block of one weight row and one activation row:
//   * The weight quants are unpacked to unsigned bytes (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63,
//     Q3_K q + 4 in 0..7, Q2_K 0..3, TQ2_0 t + 1 in 0..2, IQ4_XS / IQ4_NL code-book value + 128)
//     in four 512-bit registers, in a transposed order where every 32-bit lane holds quants of
//     a single 16-element sub-block (see "layouts" below). Four vpdpbusd (unsigned weights x
//     signed activations) then accumulate exact per-sub-block integer sums in one register.
//   * The activation quants are rearranged the same way once per gemm call (prepare), together
//     with what the dot needs per block: d, d * bsums for the types with mins, and the lane
//     sums times the quant offset (-32 * sum for Q6_K, ...) as the vpdpbusd starting value, so
//     the offsets cost nothing per row.
//   * The lane sums are converted to float once per super-block and scaled per lane by
//     d_w * sc (exact in float, precomputed per row) times d_a, with one FMA; the mins of
//     Q2_K / Q4_K / Q5_K are one more FMA of d_a * bsums with -dmin * m. Types with 32-element
//     sub-blocks first add the register's two halves and do the float work on 256 bits.
//   * Each output's 8 or 16 float lanes are summed in a fixed order at the end.
// gemm tiles are 2 rows x 8 columns (the prepared activations as memory operands, the weights
// unpacked once per tile), over chunks of 4 super-blocks so that a column tile's activations
// stay in L1; for one or two columns (decode) 2 rows x 1-2 columns with software prefetch of
// the following rows (Q6_K: row by row, which the hardware prefetchers follow best). Every
// output goes through the same sequence of float operations whatever the tile shape, so gemm
// equals vec_dot (itself a 1 x 1 gemm) bit for bit, and both equal the scalar reference up to
// the order of float additions.
// GCC 12 reports the deliberately undefined pass-through operand of unmasked AVX-512
// intrinsics (_mm512_undefined_epi32 in avx512fintrin.h) as uninitialized once these kernels
// are inlined into the tiles; a false positive, silenced for this file only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/x86/x86.h"

#include "kernels/ref/blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace slm::kernels::avx512 {
namespace {

inline float half(uint16_t h) { return _cvtsh_ss(h); }

inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }

// 16 float lanes summed in a fixed order (the same for every tile shape).
inline float hsum16(__m512 v) {
    const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

// The 6-bit scales and mins of a Q4_K/Q5_K block (what ref::get_scale_min_k4 reads): scales
// 0..7 as the bytes of *sc, mins 0..7 as those of *mn.
inline void unpack_k4_scales(const uint8_t* packed, uint64_t* sc, uint64_t* mn) {
    constexpr uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    uint32_t w[3];
    std::memcpy(w, packed, 12);
    const uint32_t s0 = w[0] & low6;
    const uint32_t s1 = (w[2] & low4) | (((w[0] >> 6) & low2) << 4);
    const uint32_t m0 = w[1] & low6;
    const uint32_t m1 = ((w[2] >> 4) & low4) | (((w[1] >> 6) & low2) << 4);
    *sc = s0 | static_cast<uint64_t>(s1) << 32;
    *mn = m0 | static_cast<uint64_t>(m1) << 32;
}

// ---- the transposed layouts ---------------------------------------------------------------------
// A super-block's 256 quants live in four 512-bit registers T0..T3. In layout A, dword lane
// l = 4L + m (L = 128-bit lane, m = position in it) of register Tk holds elements 16s + 4k ..
// 16s + 4k + 3 of the 16-element sub-block s = 4m + L, so each lane sees one sub-block in all
// four registers. From the natural order (register m = elements 64m .. 64m + 63) this is a 4x4
// transpose of dwords inside each 128-bit lane. Layout B (32-element sub-blocks) also swaps
// 128-bit lanes 1 and 2, so lane l holds sub-block 4m + {0, 2, 1, 3}[L]: both halves of the
// 32-element sub-block 2m + L' are in lanes 4L' + m and 4L' + m + 8, and adding the register's
// two 256-bit halves leaves that sub-block's sum in lane 4L' + m of a 256-bit register.
inline void transpose4x4(__m512i v[4]) {
    const __m512i t0 = _mm512_unpacklo_epi32(v[0], v[1]);
    const __m512i t1 = _mm512_unpackhi_epi32(v[0], v[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(v[2], v[3]);
    const __m512i t3 = _mm512_unpackhi_epi32(v[2], v[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

template <bool B>
inline void to_layout(__m512i v[4]) {
    transpose4x4(v);
    if constexpr (B) {
        for (int k = 0; k < 4; ++k) v[k] = _mm512_shuffle_i64x2(v[k], v[k], _MM_SHUFFLE(3, 1, 2, 0));
    }
}

// The 16-element sub-block of lane l in layout A, and the 32-element sub-block of lane l of
// the folded 256-bit register in layout B.
constexpr int sub16_a(int l) { return 4 * (l % 4) + l / 4; }
constexpr int sub32_b(int l) { return 2 * (l % 4) + l / 4; }

// One Q8_K activation block prepared once per gemm call for every weight row:
//   q:    the quants in the type's layout;
//   off:  -c * (sum of the 16 activations of each lane), the starting value of the lane sums
//         for a type whose unsigned quants are the real ones plus c (0 if none);
//   dsum: d * (sum of the activations of each sub-block that has a min): bsums[j] in natural
//         order for the 16-element types, pairs added in folded layout-B order for the others
//         (IQ4_NL: the scale of each 32-element Q8_0 block, in folded layout-B order);
//   d:    the block's scale.
struct alignas(64) YT {
    int8_t q[4][64];
    int32_t off[16];
    float dsum[16];
    float d;
};

// Per weight row and super-block, next to the unpacked quants: float vectors the dot reads
// (16 lanes in layout A, the first 8 in folded layout B).
//   aux[0]: lane l's scale d * sc (exact in float: fp16 times a small integer);
//   aux[1]: the min coefficient of dsum's lane l, -dmin * m (types with mins only).
using Aux = float[2][16];

struct alignas(64) PrepTables {
    int32_t pair_perm[8];  // vpermd: folded layout-B lane <- natural 32-element sub-block
    constexpr PrepTables() : pair_perm{} {
        for (int l = 0; l < 8; ++l) pair_perm[l] = sub32_b(l);
    }
};
constexpr PrepTables kPrep{};

// K::kLayoutB, K::kTranspose (false: natural order, for a type with one scale per super-block),
// K::kOffset (c above) and K::kMins (0, or 16 / 8 for mins per 16 / 32 elements) choose what is
// prepared.
template <class K>
inline void prepare(const BlockQ8_K& b, YT& out) {
    __m512i v[4];
    for (int k = 0; k < 4; ++k) v[k] = load512(b.qs + 64 * k);
    if constexpr (K::kTranspose) to_layout<K::kLayoutB>(v);
    for (int k = 0; k < 4; ++k) _mm512_store_si512(out.q[k], v[k]);
    __m512i off = _mm512_setzero_si512();
    if constexpr (K::kOffset != 0) {
        const __m512i c = _mm512_set1_epi8(static_cast<char>(K::kOffset));
        for (int k = 0; k < 4; ++k) off = _mm512_dpbusd_epi32(off, c, v[k]);
        off = _mm512_sub_epi32(_mm512_setzero_si512(), off);
    }
    _mm512_store_si512(out.off, off);
    const __m256i bs = load256(b.bsums);
    if constexpr (K::kMins == 16) {
        _mm512_store_ps(out.dsum, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(bs)), _mm512_set1_ps(b.d)));
    } else if constexpr (K::kMins == 8) {
        const __m256i pairs = _mm256_madd_epi16(bs, _mm256_set1_epi16(1));
        const __m256i perm = _mm256_permutevar8x32_epi32(pairs, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPrep.pair_perm)));
        _mm256_store_ps(out.dsum, _mm256_mul_ps(_mm256_cvtepi32_ps(perm), _mm256_set1_ps(b.d)));
    }
    out.d = b.d;
}

// The four lane sums of one row and one column, starting from the column's offset; two chains
// of two vpdpbusd, for latency.
inline __m512i dot4(const __m512i w[4], const YT& y) {
    const __m512i a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_load_si512(y.off), w[0], _mm512_load_si512(y.q[0])),
                                          w[1], _mm512_load_si512(y.q[1]));
    const __m512i b = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), w[2], _mm512_load_si512(y.q[2])),
                                          w[3], _mm512_load_si512(y.q[3]));
    return _mm512_add_epi32(a, b);
}

// Adds sum over lanes of P * aux0 * d_a (+ dsum * aux1) to acc, in the order every tile uses.
template <class K>
inline __m512 finish16(__m512i p, const Aux& aux, const YT& y, __m512 acc) {
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(_mm512_load_ps(aux[0]), _mm512_set1_ps(y.d)), acc);
    if constexpr (K::kMins != 0) acc = _mm512_fmadd_ps(_mm512_load_ps(y.dsum), _mm512_load_ps(aux[1]), acc);
    return acc;
}

template <class K>
inline __m256 finish8(__m512i p, const Aux& aux, const YT& y, __m256 acc) {
    const __m256i p8 = _mm256_add_epi32(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64(p, 1));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p8), _mm256_mul_ps(_mm256_load_ps(aux[0]), _mm256_set1_ps(y.d)), acc);
    if constexpr (K::kMins != 0) acc = _mm256_fmadd_ps(_mm256_load_ps(y.dsum), _mm256_load_ps(aux[1]), acc);
    return acc;
}

inline float hsum(__m512 v) { return hsum16(v); }
inline float hsum(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
template <class A> inline A zero_acc();
template <> inline __m512 zero_acc<__m512>() { return _mm512_setzero_ps(); }
template <> inline __m256 zero_acc<__m256>() { return _mm256_setzero_ps(); }

// ---- the per-type kernels ----------------------------------------------------------------------
// Each policy K: Acc (__m256 for layout B, __m512 for layout A), the constants prepare() reads,
// unpack_row (super-block i of a weight row: unsigned quants in the layout, and Aux),
// prepare_row (the same super-block of an activation row) and dot; optionally kDecodeRows.

// Super-block i of a row of n elements, for the types whose super-blocks are whole blocks and
// whose activations are Q8_K: K::Block and K::unpack (one block).
template <class K>
struct SuperBlocks {
    static inline void unpack_row(const uint8_t* row, int64_t i, int64_t, __m512i w[4], Aux& aux) {
        K::unpack(reinterpret_cast<const typename K::Block*>(row)[i], w, aux);
    }
    static inline void prepare_row(const uint8_t* row, int64_t i, int64_t, YT& out) {
        prepare<K>(reinterpret_cast<const BlockQ8_K*>(row)[i], out);
    }
};

// Scale vectors of layout B (folded lane l <- 32-element sub-block sub32_b(l)) from eight bytes.
struct alignas(64) BTables {
    int8_t sc_idx[32];  // vpshufb on a broadcast qword: dword lane l <- byte sub32_b(l)
    constexpr BTables() : sc_idx{} {
        for (int i = 0; i < 32; ++i) sc_idx[i] = i % 4 == 0 ? static_cast<int8_t>(sub32_b(i / 4)) : static_cast<int8_t>(-128);
    }
};
constexpr BTables kB{};

inline __m256 bytes8_to_layout_b(uint64_t bytes) {
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi64x(static_cast<long long>(bytes)),
                                          _mm256_load_si256(reinterpret_cast<const __m256i*>(kB.sc_idx)));
    return _mm256_cvtepi32_ps(v);
}

struct alignas(64) Q4KTables {
    int32_t gather[4][16];  // vpermt2d: qs dword of lane l of register k (layout B)
    int32_t shift[16];      // and the nibble: 0 or 4
    constexpr Q4KTables() : gather{}, shift{} {
        constexpr int tau[4] = {0, 2, 1, 3};
        for (int k = 0; k < 4; ++k) {
            for (int l = 0; l < 16; ++l) {
                const int L = l / 4, m = l % 4, t = tau[L];
                // Element 64m + 16t + 4k: chunk m, byte 32m + 16(t % 2) + 4k, high nibble for t >= 2.
                gather[k][l] = 8 * m + 4 * (t % 2) + k;
                shift[l] = t >= 2 ? 4 : 0;
            }
        }
    }
};
constexpr Q4KTables kQ4K{};

// Q4_K: nibbles gathered straight into layout B; scales and mins per 32 elements.
struct KQ4_K : SuperBlocks<KQ4_K> {
    using Block = BlockQ4_K;
    using Acc = __m256;
    static constexpr bool kLayoutB = true, kTranspose = true;
    static constexpr int kOffset = 0, kMins = 8;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        const __m512i lo = load512(b.qs), hi = load512(b.qs + 64);
        const __m512i shift = _mm512_load_si512(kQ4K.shift);
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        for (int k = 0; k < 4; ++k) {
            const __m512i g = _mm512_permutex2var_epi32(lo, _mm512_load_si512(kQ4K.gather[k]), hi);
            w[k] = _mm512_and_si512(_mm512_srlv_epi32(g, shift), m4);
        }
        uint64_t sc, mn;
        unpack_k4_scales(b.scales, &sc, &mn);
        _mm256_store_ps(aux[0], _mm256_mul_ps(bytes8_to_layout_b(sc), _mm256_set1_ps(half(b.d))));
        _mm256_store_ps(aux[1], _mm256_mul_ps(bytes8_to_layout_b(mn), _mm256_set1_ps(-half(b.dmin))));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish8<KQ4_K>(dot4(w, y), aux, y, acc);
    }
};

struct alignas(64) ATables {
    int32_t perm16[16];  // vpermd: lane l <- element sub16_a(l)
    constexpr ATables() : perm16{} {
        for (int l = 0; l < 16; ++l) perm16[l] = sub16_a(l);
    }
};
constexpr ATables kA{};

// Q6_K: the stored 6-bit quants (value + 32, offset 32) in natural order, then transposed to
// layout A; signed 8-bit scales per 16 elements. Decode goes row by row (see decode_rows).
struct KQ6_K : SuperBlocks<KQ6_K> {
    using Block = BlockQ6_K;
    using Acc = __m512;
    static constexpr bool kLayoutB = false, kTranspose = true;
    static constexpr int kOffset = 32, kMins = 0;
    static constexpr int kDecodeRows = 1;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i m2 = _mm512_set1_epi8(0x30);
        // Shifts that move the qh bit pairs of each 32-element quarter to bits 4..5.
        const __m512i sh_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
        const __m512i sh_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
        for (int h = 0; h < 2; ++h) {
            // Elements 128h + [0, 64): low nibbles of ql[64h..64h+64) with qh bits 0..1 / 2..3;
            // 128h + [64, 128): the high nibbles with qh bits 4..5 / 6..7.
            const __m512i l = load512(b.ql + 64 * h);
            const __m512i qh = _mm512_broadcast_i64x4(load256(b.qh + 32 * h));
            const __m512i h0 = _mm512_and_si512(_mm512_sllv_epi16(qh, sh_lo), m2);
            const __m512i h1 = _mm512_and_si512(_mm512_srlv_epi16(qh, sh_hi), m2);
            // (a & m4) | b
            w[2 * h] = _mm512_ternarylogic_epi32(l, h0, m4, 0xEC);
            w[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), h1, m4, 0xEC);
        }
        to_layout<false>(w);
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load128(b.scales)));
        _mm512_store_ps(aux[0], _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_load_si512(kA.perm16), sc), _mm512_set1_ps(half(b.d))));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish16<KQ6_K>(dot4(w, y), aux, y, acc);
    }
};

// Q4_K plus a fifth bit: qh byte l bit 2i (2i + 1) belongs to element l of chunk i's low (high)
// 32. In layout B, lane (4L + m) of register k reads qh dword 4 (t % 2) + k, bit 2m + t / 2
// (t = {0, 2, 1, 3}[L]), which a rotate by (4 - bit) mod 32 moves to bit 4 of every byte.
struct alignas(64) Q5KTables {
    int32_t gather[4][16];
    int32_t rot[16];
    constexpr Q5KTables() : gather{}, rot{} {
        constexpr int tau[4] = {0, 2, 1, 3};
        for (int k = 0; k < 4; ++k) {
            for (int l = 0; l < 16; ++l) {
                const int L = l / 4, m = l % 4, t = tau[L];
                gather[k][l] = 4 * (t % 2) + k;
                rot[l] = (4 - (2 * m + t / 2) + 32) % 32;
            }
        }
    }
};
constexpr Q5KTables kQ5K{};

struct KQ5_K : SuperBlocks<KQ5_K> {
    using Block = BlockQ5_K;
    using Acc = __m256;
    static constexpr bool kLayoutB = true, kTranspose = true;
    static constexpr int kOffset = 0, kMins = 8;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        const __m512i lo = load512(b.qs), hi = load512(b.qs + 64);
        const __m512i qh = _mm512_castsi256_si512(load256(b.qh));
        const __m512i shift = _mm512_load_si512(kQ4K.shift);
        const __m512i rot = _mm512_load_si512(kQ5K.rot);
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        const __m512i b4 = _mm512_set1_epi8(0x10);
        for (int k = 0; k < 4; ++k) {
            const __m512i g = _mm512_permutex2var_epi32(lo, _mm512_load_si512(kQ4K.gather[k]), hi);
            const __m512i q4 = _mm512_and_si512(_mm512_srlv_epi32(g, shift), m4);
            const __m512i h = _mm512_rolv_epi32(_mm512_permutexvar_epi32(_mm512_load_si512(kQ5K.gather[k]), qh), rot);
            w[k] = _mm512_ternarylogic_epi32(q4, h, b4, 0xF8);  // a | (b & c)
        }
        uint64_t sc, mn;
        unpack_k4_scales(b.scales, &sc, &mn);
        _mm256_store_ps(aux[0], _mm256_mul_ps(bytes8_to_layout_b(sc), _mm256_set1_ps(half(b.d))));
        _mm256_store_ps(aux[1], _mm256_mul_ps(bytes8_to_layout_b(mn), _mm256_set1_ps(-half(b.dmin))));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish8<KQ5_K>(dot4(w, y), aux, y, acc);
    }
};

// The 2-bit fields of the Q2_K / Q3_K / TQ2_0 layout, natural order: register m holds elements
// 64m .. 64m + 63 = bits 2k0 and 2k0 + 2 (k0 = 2 (m % 2)) of qs[32 (m / 2) .. + 32).
inline void unpack_2bit_natural(const uint8_t* qs, __m512i w[4]) {
    const __m512i m3 = _mm512_set1_epi8(3);
    for (int m = 0; m < 4; ++m) {
        const __m512i q = _mm512_broadcast_i64x4(load256(qs + 32 * (m / 2)));
        const int k0 = 2 * (m % 2);
        const __m512i sh = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(2 * k0)), _mm256_set1_epi16(static_cast<short>(2 * k0 + 2)), 1);
        w[m] = _mm512_and_si512(_mm512_srlv_epi16(q, sh), m3);
    }
}

// The same fields gathered straight into layout A: lane (4L + m) of register k holds elements
// 64m + 16L + 4k .., i.e. qs dword 8 (m / 2) + 4 (L % 2) + k shifted right by 4 (m % 2) + 2 (L / 2),
// and (Q3_K) hmask dword 4 (L % 2) + k, bit 4 (m / 2) + 2 (m % 2) + L / 2.
struct alignas(64) TwoBitTables {
    int32_t gather[4][16];
    int32_t shift[16];
    int32_t hgather[4][16];
    int32_t hrot[16];  // rotate that bit to bit 2
    constexpr TwoBitTables() : gather{}, shift{}, hgather{}, hrot{} {
        for (int k = 0; k < 4; ++k) {
            for (int l = 0; l < 16; ++l) {
                const int L = l / 4, m = l % 4;
                gather[k][l] = 8 * (m / 2) + 4 * (L % 2) + k;
                shift[l] = 4 * (m % 2) + 2 * (L / 2);
                hgather[k][l] = 4 * (L % 2) + k;
                hrot[l] = (2 - (4 * (m / 2) + 2 * (m % 2) + L / 2) + 32) % 32;
            }
        }
    }
};
constexpr TwoBitTables k2Bit{};

inline void unpack_2bit_a(const uint8_t* qs, __m512i w[4]) {
    const __m512i q = load512(qs);
    const __m512i shift = _mm512_load_si512(k2Bit.shift);
    const __m512i m3 = _mm512_set1_epi8(3);
    for (int k = 0; k < 4; ++k) {
        w[k] = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(_mm512_load_si512(k2Bit.gather[k]), q), shift), m3);
    }
}

struct KQ2_K : SuperBlocks<KQ2_K> {
    using Block = BlockQ2_K;
    using Acc = __m512;
    static constexpr bool kLayoutB = false, kTranspose = true;
    static constexpr int kOffset = 0, kMins = 16;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        unpack_2bit_a(b.qs, w);
        const __m512i sm = _mm512_cvtepu8_epi32(load128(b.scales));
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_and_si512(sm, _mm512_set1_epi32(0xf)));
        const __m512 mn = _mm512_cvtepi32_ps(_mm512_srli_epi32(sm, 4));
        _mm512_store_ps(aux[0], _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_load_si512(kA.perm16), sc), _mm512_set1_ps(half(b.d))));
        _mm512_store_ps(aux[1], _mm512_mul_ps(mn, _mm512_set1_ps(-half(b.dmin))));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish16<KQ2_K>(dot4(w, y), aux, y, acc);
    }
};

// Q3_K: the 2-bit field plus 4 where the hmask bit is set (q + 4 in 0..7, offset 4). hmask[l]
// bit 4j + k belongs to element 128j + 32k + l.
struct KQ3_K : SuperBlocks<KQ3_K> {
    using Block = BlockQ3_K;
    using Acc = __m512;
    static constexpr bool kLayoutB = false, kTranspose = true;
    static constexpr int kOffset = 4, kMins = 0;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        unpack_2bit_a(b.qs, w);
        const __m512i hm = _mm512_castsi256_si512(load256(b.hmask));
        const __m512i rot = _mm512_load_si512(k2Bit.hrot);
        const __m512i b2 = _mm512_set1_epi8(4);
        for (int k = 0; k < 4; ++k) {
            const __m512i h = _mm512_rolv_epi32(_mm512_permutexvar_epi32(_mm512_load_si512(k2Bit.hgather[k]), hm), rot);
            w[k] = _mm512_ternarylogic_epi32(w[k], h, b2, 0xF8);  // a | (b & c)
        }
        // Sixteen 6-bit scales: low nibbles from bytes 0..7 (low then high halves), high 2 bits
        // from bytes 8..11.
        uint32_t v[3];
        std::memcpy(v, b.scales, 12);
        constexpr uint32_t low4 = 0x0f0f0f0f, low2 = 0x03030303;
        const __m128i sc8 = _mm_setr_epi32(static_cast<int>((v[0] & low4) | ((v[2] & low2) << 4)),
                                           static_cast<int>((v[1] & low4) | (((v[2] >> 2) & low2) << 4)),
                                           static_cast<int>(((v[0] >> 4) & low4) | (((v[2] >> 4) & low2) << 4)),
                                           static_cast<int>(((v[1] >> 4) & low4) | (((v[2] >> 6) & low2) << 4)));
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(sc8), _mm512_set1_epi32(32)));
        _mm512_store_ps(aux[0], _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_load_si512(kA.perm16), sc), _mm512_set1_ps(half(b.d))));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish16<KQ3_K>(dot4(w, y), aux, y, acc);
    }
};

// IQ4_XS: code-book values plus 128 (offset 128), in layout B gathered straight from qs: lane
// (4L + m) of register k reads qs dword 8m + 4 (t / 2) + k, nibble t % 2.
struct alignas(64) IQ4XSTables {
    int32_t gather[4][16];
    int32_t shift[16];
    uint8_t values[64];  // kIQ4NLValues + 128 in every 128-bit lane
    constexpr IQ4XSTables() : gather{}, shift{}, values{} {
        constexpr int tau[4] = {0, 2, 1, 3};
        for (int k = 0; k < 4; ++k) {
            for (int l = 0; l < 16; ++l) {
                const int L = l / 4, m = l % 4, t = tau[L];
                gather[k][l] = 8 * m + 4 * (t / 2) + k;
                shift[l] = 4 * (t % 2);
            }
        }
        for (int i = 0; i < 64; ++i) values[i] = static_cast<uint8_t>(kIQ4NLValues[i % 16] + 128);
    }
};
constexpr IQ4XSTables kIQ4XS{};

struct KIQ4_XS : SuperBlocks<KIQ4_XS> {
    using Block = BlockIQ4_XS;
    using Acc = __m256;
    static constexpr bool kLayoutB = true, kTranspose = true;
    static constexpr int kOffset = 128, kMins = 0;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        const __m512i lo = load512(b.qs), hi = load512(b.qs + 64);
        const __m512i shift = _mm512_load_si512(kIQ4XS.shift);
        const __m512i values = _mm512_load_si512(kIQ4XS.values);
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        for (int k = 0; k < 4; ++k) {
            const __m512i g = _mm512_permutex2var_epi32(lo, _mm512_load_si512(kIQ4XS.gather[k]), hi);
            w[k] = _mm512_shuffle_epi8(values, _mm512_and_si512(_mm512_srlv_epi32(g, shift), m4));
        }
        uint64_t ls = 0;
        for (int ib = 0; ib < 8; ++ib) {
            const unsigned v = ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b.scales_h >> 2 * ib) & 3) << 4);
            ls |= static_cast<uint64_t>(v) << (8 * ib);
        }
        const __m256 sc = _mm256_sub_ps(bytes8_to_layout_b(ls), _mm256_set1_ps(32.0f));
        _mm256_store_ps(aux[0], _mm256_mul_ps(sc, _mm256_set1_ps(half(b.d))));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish8<KIQ4_XS>(dot4(w, y), aux, y, acc);
    }
};

// TQ2_0: trits 0..2 for -1..1 (offset 1), one scale for all lanes, so the natural order serves
// (activations are prepared without the transpose).
struct KTQ2_0 : SuperBlocks<KTQ2_0> {
    using Block = BlockTQ2_0;
    using Acc = __m256;
    static constexpr bool kLayoutB = false, kTranspose = false;
    static constexpr int kOffset = 1, kMins = 0;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        unpack_2bit_natural(b.qs, w);
        _mm256_store_ps(aux[0], _mm256_set1_ps(half(b.d)));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish8<KTQ2_0>(dot4(w, y), aux, y, acc);
    }
};

// TQ1_0: five trits per qs byte and four per qh byte, trit k of a byte b being the top trit of
// b * 3^k (mod 256), i.e. (b * 3^k mod 256) * 3 >> 8; as TQ2_0, 0..2 for -1..1 in natural order.
// Byte p of the multiplied copies t[k] is, for p < 32, element p + 32k; for p < 48, element
// 160 + (p - 32) + 16k; for p < 52 (qh), element 240 + (p - 48) + 4k.
inline __m512i times3(__m512i b) { return _mm512_add_epi8(b, _mm512_add_epi8(b, b)); }

// (b * 3) >> 8 for every byte, with byte averages: for b' = max(b - 1, 0),
// (b' + ((b' + 1) >> 1) + 1) >> 1 >> 6 gives the same digit for all 256 values.
inline __m512i top_trit(__m512i b) {
    b = _mm512_subs_epu8(b, _mm512_set1_epi8(1));
    b = _mm512_avg_epu8(b, _mm512_avg_epu8(b, _mm512_setzero_si512()));
    return _mm512_and_si512(_mm512_srli_epi16(b, 6), _mm512_set1_epi8(3));
}

struct KTQ1_0 : SuperBlocks<KTQ1_0> {
    using Block = BlockTQ1_0;
    using Acc = __m256;
    static constexpr bool kLayoutB = false, kTranspose = false;
    static constexpr int kOffset = 1, kMins = 0;
    static inline void unpack(const Block& b, __m512i w[4], Aux& aux) {
        // qs and qh are the block's first 52 bytes.
        __m512i v = _mm512_maskz_loadu_epi8(0x000fffffffffffffULL, b.qs);
        // The bytes times 3^k, rearranged into element order first: the top trit of the 256
        // useful bytes then takes four registers' work instead of five.
        __m512i t[5];
        for (int k = 0; k < 5; ++k) {
            t[k] = v;
            v = times3(v);
        }
        // Elements 0..127: trits 0..3 of qs[0..32).
        w[0] = _mm512_inserti64x4(t[0], _mm512_castsi512_si256(t[1]), 1);
        w[1] = _mm512_inserti64x4(t[2], _mm512_castsi512_si256(t[3]), 1);
        // 128..191: trit 4 of qs[0..32), then trits 0 and 1 of qs[32..48).
        const __m512i u01 = _mm512_shuffle_i64x2(t[0], t[1], _MM_SHUFFLE(2, 2, 2, 2));
        w[2] = _mm512_shuffle_i64x2(t[4], u01, _MM_SHUFFLE(2, 0, 1, 0));
        // 192..255: trits 2, 3, 4 of qs[32..48), then the qh trits (dword 12 of t0..t3).
        const __m512i q01 = _mm512_unpacklo_epi32(t[0], t[1]);
        const __m512i q23 = _mm512_unpacklo_epi32(t[2], t[3]);
        const __m512i qh = _mm512_unpacklo_epi64(q01, q23);
        const __m512i u23 = _mm512_shuffle_i64x2(t[2], t[3], _MM_SHUFFLE(2, 2, 2, 2));
        const __m512i u4h = _mm512_shuffle_i64x2(t[4], qh, _MM_SHUFFLE(3, 3, 2, 2));
        w[3] = _mm512_shuffle_i64x2(u23, u4h, _MM_SHUFFLE(2, 0, 2, 0));
        for (int k = 0; k < 4; ++k) w[k] = top_trit(w[k]);
        _mm256_store_ps(aux[0], _mm256_set1_ps(half(b.d)));
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        return finish8<KTQ1_0>(dot4(w, y), aux, y, acc);
    }
};

// IQ4_NL: blocks of 32 with their own fp16 scale and Q8_0 activations (also one scale per 32).
// Eight blocks make a super-block: their quants are gathered as IQ4_XS's (the same nibble order
// per 32) and the folded layout-B lane of block b is scaled by d_w(b) * d_a(b); the last
// super-block of a row may hold fewer blocks, the missing ones reading as zero with zero scales.
struct KIQ4_NL {
    using Acc = __m256;
    static constexpr bool kLayoutB = true, kTranspose = true;
    static constexpr int kOffset = 128, kMins = 0;
    static inline void unpack_row(const uint8_t* row, int64_t i, int64_t n, __m512i w[4], Aux& aux) {
        const auto* blk = reinterpret_cast<const BlockIQ4_NL*>(row) + 8 * i;
        const int cnt = static_cast<int>(std::min<int64_t>(8, n / kQK - 8 * i));
        __m512i lo, hi;
        __m128i d;
        if (cnt == 8) {
            const auto lane = [&](int j) { return load128(blk[j].qs); };
            lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lane(1), lane(0))), _mm256_set_m128i(lane(3), lane(2)), 1);
            hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lane(5), lane(4))), _mm256_set_m128i(lane(7), lane(6)), 1);
            d = _mm_setr_epi16(static_cast<short>(blk[0].d), static_cast<short>(blk[1].d), static_cast<short>(blk[2].d),
                               static_cast<short>(blk[3].d), static_cast<short>(blk[4].d), static_cast<short>(blk[5].d),
                               static_cast<short>(blk[6].d), static_cast<short>(blk[7].d));
        } else {
            alignas(64) uint8_t q[128] = {};
            alignas(16) uint16_t dd[8] = {};
            for (int j = 0; j < cnt; ++j) {
                std::memcpy(q + 16 * j, blk[j].qs, 16);
                dd[j] = blk[j].d;
            }
            lo = _mm512_load_si512(q);
            hi = _mm512_load_si512(q + 64);
            d = _mm_load_si128(reinterpret_cast<const __m128i*>(dd));
        }
        const __m512i shift = _mm512_load_si512(kIQ4XS.shift);
        const __m512i values = _mm512_load_si512(kIQ4XS.values);
        const __m512i m4 = _mm512_set1_epi8(0x0f);
        for (int k = 0; k < 4; ++k) {
            const __m512i g = _mm512_permutex2var_epi32(lo, _mm512_load_si512(kIQ4XS.gather[k]), hi);
            w[k] = _mm512_shuffle_epi8(values, _mm512_and_si512(_mm512_srlv_epi32(g, shift), m4));
        }
        const __m256 dw = _mm256_cvtph_ps(d);
        _mm256_store_ps(aux[0], _mm256_permutevar8x32_ps(dw, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPrep.pair_perm))));
    }
    static inline void prepare_row(const uint8_t* row, int64_t i, int64_t n, YT& out) {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(row) + 8 * i;
        const int cnt = static_cast<int>(std::min<int64_t>(8, n / kQK - 8 * i));
        __m256i q[8];
        alignas(16) uint16_t d[8] = {};
        for (int j = 0; j < 8; ++j) {
            q[j] = j < cnt ? load256(blk[j].qs) : _mm256_setzero_si256();
            if (j < cnt) d[j] = blk[j].d;
        }
        __m512i v[4];
        for (int k = 0; k < 4; ++k) v[k] = _mm512_inserti64x4(_mm512_castsi256_si512(q[2 * k]), q[2 * k + 1], 1);
        to_layout<true>(v);
        __m512i off = _mm512_setzero_si512();
        const __m512i c = _mm512_set1_epi8(static_cast<char>(kOffset));
        for (int k = 0; k < 4; ++k) {
            _mm512_store_si512(out.q[k], v[k]);
            off = _mm512_dpbusd_epi32(off, c, v[k]);
        }
        _mm512_store_si512(out.off, _mm512_sub_epi32(_mm512_setzero_si512(), off));
        const __m256 da = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(d)));
        _mm256_store_ps(out.dsum, _mm256_permutevar8x32_ps(da, _mm256_load_si256(reinterpret_cast<const __m256i*>(kPrep.pair_perm))));
        out.d = 1.0f;
    }
    static inline Acc dot(const __m512i w[4], const Aux& aux, const YT& y, Acc acc) {
        const __m512i p = dot4(w, y);
        const __m256i p8 = _mm256_add_epi32(_mm512_castsi512_si256(p), _mm512_extracti64x4_epi64(p, 1));
        return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p8), _mm256_mul_ps(_mm256_load_ps(aux[0]), _mm256_load_ps(y.dsum)), acc);
    }
};

// ---- tiles ---------------------------------------------------------------------------------------

// Rows per tile for one or two columns (decode): 2 by default, with the prefetch in tile();
// a type whose kernel keeps up with memory row by row sets kDecodeRows = 1 and leaves the
// sequential stream to the hardware prefetchers, which do better on it.
template <class K>
constexpr int decode_rows() {
    if constexpr (requires { K::kDecodeRows; }) {
        return K::kDecodeRows;
    } else {
        return 2;
    }
}

// Accumulators kept between chunks of super-blocks: the one of (row r, column c) of the call in
// the 16 floats at a + 16 * (c * lda + r).
struct AccBuf {
    float* a;
    size_t lda;
    float* at(int64_t r, int64_t c) const { return a + 16 * (static_cast<size_t>(c) * lda + static_cast<size_t>(r)); }
};
inline void save(float* p, __m512 v) { _mm512_store_ps(p, v); }
inline void save(float* p, __m256 v) { _mm256_store_ps(p, v); }
inline void restore(const float* p, __m512& v) { v = _mm512_load_ps(p); }
inline void restore(const float* p, __m256& v) { v = _mm256_load_ps(p); }

// An R x C tile over super-blocks [i0, i1): starts from zero (first chunk) or the saved
// accumulators, and ends with s[c * ldc + r] = dot(row r, column c) (last chunk) or saves them.
// Column c's prepared blocks are y[c * ys + i].
template <class K, int R, int C>
void tile(int64_t n, int64_t i0, int64_t i1, const uint8_t* x, size_t bx, const YT* y, size_t ys, AccBuf ab,
          bool first, bool last, float* s, size_t ldc) {
    using Acc = typename K::Acc;
    Acc acc[R][C];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) {
            if (first) {
                acc[r][c] = zero_acc<Acc>();
            } else {
                restore(ab.at(r, c), acc[r][c]);
            }
        }
    }
    alignas(64) Aux aux[R];
    // Thin tiles (decode) read their rows once, interleaved, which the hardware prefetchers do
    // not follow well: fetch the next tile's rows (the rows after these) during this one.
    const uint8_t* pf = x + R * bx;
    const size_t pf_step = (C <= 2 && R > 1) ? R * bx / static_cast<size_t>(i1 - i0) : 0;
    for (int64_t i = i0; i < i1; ++i) {
        for (size_t o = 0; o < pf_step; o += 64) _mm_prefetch(reinterpret_cast<const char*>(pf + o), _MM_HINT_T0);
        pf += pf_step;
        __m512i w[R][4];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) K::unpack_row(x + r * bx, i, n, w[r], aux[r]);
#pragma GCC unroll 16
        for (int c = 0; c < C; ++c) {
            const YT& yb = y[c * ys + i];
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) acc[r][c] = K::dot(w[r], aux[r], yb, acc[r][c]);
        }
    }
#pragma GCC unroll 16
    for (int c = 0; c < C; ++c) {
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            if (last) {
                s[c * ldc + r] = hsum(acc[r][c]);
            } else {
                save(ab.at(r, c), acc[r][c]);
            }
        }
    }
}

// Row tiles of R (the remainder one row at a time) for C columns.
template <class K, int R, int C>
void tile_rows(int64_t n, int64_t i0, int64_t i1, const uint8_t* x, size_t bx, int64_t nr, const YT* y, size_t ys,
               AccBuf ab, bool first, bool last, float* s, size_t ldc) {
    int64_t r = 0;
    for (; r + R <= nr; r += R) tile<K, R, C>(n, i0, i1, x + r * bx, bx, y, ys, {ab.at(r, 0), ab.lda}, first, last, s + r, ldc);
    for (; r < nr; ++r) tile<K, 1, C>(n, i0, i1, x + r * bx, bx, y, ys, {ab.at(r, 0), ab.lda}, first, last, s + r, ldc);
}

// Column tiles of C, the last 1 .. C - 1 columns as a narrower tile.
template <class K, int R, int C>
void tile_all(int64_t n, int64_t i0, int64_t i1, const uint8_t* x, size_t bx, int64_t nr, const YT* y, size_t ys, int64_t nc,
              AccBuf ab, bool first, bool last, float* s, size_t ldc) {
    int64_t c = 0;
    for (; c + C <= nc; c += C) {
        tile_rows<K, R, C>(n, i0, i1, x, bx, nr, y + c * ys, ys, {ab.at(0, c), ab.lda}, first, last, s + c * ldc, ldc);
    }
    if constexpr (C > 1) {
        if (c < nc) tile_all<K, R, C - 1>(n, i0, i1, x, bx, nr, y + c * ys, ys, nc - c, {ab.at(0, c), ab.lda}, first, last, s + c * ldc, ldc);
    }
}

// Per-thread scratch (gemm runs on pool threads): the prepared activations and accumulators.
template <class T>
T* scratch(size_t count) {
    struct Buffer {
        T* p = nullptr;
        size_t n = 0;
        ~Buffer() { ::operator delete[](p, std::align_val_t(64)); }
    };
    thread_local Buffer buf;
    if (buf.n < count) {
        ::operator delete[](buf.p, std::align_val_t(64));
        buf.n = std::max(count, 2 * buf.n);
        buf.p = static_cast<T*>(::operator new[](buf.n * sizeof(T), std::align_val_t(64)));
    }
    return buf.p;
}

constexpr int kTileRows = 2;   // prefill tiles: 2 rows x 8 columns
constexpr int kTileCols = 8;
constexpr int64_t kChunk = 4;  // super-blocks per chunk: 8 columns' prepared blocks = 14 KB

// Prepares the activations, then runs the tiles: 2 rows x 8 columns over chunks of kChunk
// super-blocks (so that a column tile's prepared activations stay in L1 while every row tile
// uses them), or, for one or two columns, decode_rows<K>() rows over the whole row.
template <class K>
void gemm(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
          size_t ldc) {
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    const int64_t nb = (n + kQK_K - 1) / kQK_K;
    if (nb == 0) {
        for (int64_t c = 0; c < nc; ++c) {
            for (int64_t r = 0; r < nr; ++r) s[c * ldc + r] = 0.0f;
        }
        return;
    }
    YT* yt = scratch<YT>(static_cast<size_t>(nc * nb));
    for (int64_t c = 0; c < nc; ++c) {
        for (int64_t i = 0; i < nb; ++i) K::prepare_row(y + c * by, i, n, yt[c * nb + i]);
    }
    const auto ys = static_cast<size_t>(nb);
    const int64_t kb = nc <= 2 ? nb : kChunk;
    const AccBuf ab{scratch<float>(static_cast<size_t>(16 * nr * nc)), static_cast<size_t>(nr)};
    for (int64_t i0 = 0; i0 < nb; i0 += kb) {
        const int64_t i1 = std::min(nb, i0 + kb);
        if (nc <= 2) {
            tile_all<K, decode_rows<K>(), 2>(n, i0, i1, x, bx, nr, yt, ys, nc, ab, i0 == 0, i1 == nb, s, ldc);
        } else {
            tile_all<K, kTileRows, kTileCols>(n, i0, i1, x, bx, nr, yt, ys, nc, ab, i0 == 0, i1 == nb, s, ldc);
        }
    }
}

template <class K>
void vec_dot(int64_t n, float* s, const void* x, const void* y) {
    gemm<K>(n, x, 0, 1, y, 0, 1, s, 1);
}

void set(TypeTraits* table, int n_table, GGMLType type, decltype(TypeTraits::vec_dot) vd,
         decltype(TypeTraits::gemm) gm) {
    const auto id = static_cast<int>(type);
    if (id >= n_table) return;
    table[id].vec_dot = vd;
    table[id].gemm = gm;
}

} // namespace

void fill_traits_kquants(TypeTraits* table, int n_table) {
    // type, to_float, from_float, vec_dot_type and quantize_ref stay the AVX2 table's.
    set(table, n_table, GGMLType::Q4_K, vec_dot<KQ4_K>, gemm<KQ4_K>);
    set(table, n_table, GGMLType::Q6_K, vec_dot<KQ6_K>, gemm<KQ6_K>);
    set(table, n_table, GGMLType::Q5_K, vec_dot<KQ5_K>, gemm<KQ5_K>);
    set(table, n_table, GGMLType::Q3_K, vec_dot<KQ3_K>, gemm<KQ3_K>);
    set(table, n_table, GGMLType::Q2_K, vec_dot<KQ2_K>, gemm<KQ2_K>);
    set(table, n_table, GGMLType::IQ4_XS, vec_dot<KIQ4_XS>, gemm<KIQ4_XS>);
    set(table, n_table, GGMLType::TQ2_0, vec_dot<KTQ2_0>, gemm<KTQ2_0>);
    set(table, n_table, GGMLType::IQ4_NL, vec_dot<KIQ4_NL>, gemm<KIQ4_NL>);
    set(table, n_table, GGMLType::TQ1_0, vec_dot<KTQ1_0>, gemm<KTQ1_0>);
}

} // namespace slm::kernels::avx512
