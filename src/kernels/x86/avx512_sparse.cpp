// avx512_sparse.cpp - AVX-512 kernels of the 2:4 sparse type Q8_0_S24 (kernels/sparse.h), built
// with the avx512 flags plus -mavx512vbmi2 and only used when dispatch.cpp has seen VBMI2.
//
// Decode: the 16 kept bytes of a block are spread back to their 32 places with vpexpandb under
// the block's 32-bit mask (two blocks per 512-bit register), after which the block is a dense
// Q8_0 block and the dot product is the dense decode kernel's (avx512.cpp dec_q): the weights made
// unsigned by XOR 0x80 (the expansion fills the dropped places with 0x80, i.e. 0), vpdpbusd
// started from minus 128 times each four activations' sum, one FMA per two blocks with the
// product of the scales. Only 22 of Q8_0's 34 bytes per block are read from memory, which is
// what decode is bound by.
//
// Prefill: each tile of rows is expanded once into dense Q8_0 rows, laid out in the 16-row
// groups of repack.h when there are 16 rows, and handed to the dense Q8_0 gemm of this table,
// so a block is expanded once per tile of up to 32 tokens.
#include "kernels/sparse.h"

#include "kernels/ref/blocks.h"
#include "kernels/repack.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>
#include <vector>

// GCC 12's AVX-512 intrinsics trip its -W(maybe-)uninitialized once inlined (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace slm::kernels::avx512 {
namespace {

using Block = BlockQ8_0S24;

inline short h16(uint16_t h) { return static_cast<short>(h); }

inline uint32_t load_u32(const void* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline __m128i load128(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }


inline __m256i one_unsigned(const Block* b) {
    const __m256i v = _mm256_zextsi128_si256(_mm_xor_si128(load128(b[0].qs), _mm_set1_epi8(static_cast<char>(0x80))));
    return _mm256_mask_expand_epi8(_mm256_set1_epi8(static_cast<char>(0x80)), _cvtu32_mask32(load_u32(b[0].mask)), v);
}

// The signed dense bytes of one block (dropped places 0), for the prefill expansion.
inline __m256i one_signed(const Block* b) {
    return _mm256_maskz_expand_epi8(_cvtu32_mask32(load_u32(b[0].mask)), _mm256_zextsi128_si256(load128(b[0].qs)));
}

constexpr int kPfTiles = 2;  // how many tiles of rows ahead dec prefetches

// R rows against one activation row (decode), one block per 256-bit register (on Zen 4 a
// 512-bit operation costs two 256-bit ones, and one block needs no mask merging). As avx512.cpp's
// dec_q, every row is computed the same way whatever R is, so vec_dot and the tiles agree.
template <int R>
void dec1(int64_t n, const uint8_t* x, size_t bx, const uint8_t* y, float* s) {
    const int64_t nb = n / kQK;
    const auto* a = reinterpret_cast<const BlockQ8_0*>(y);
    const Block* xr[R];
    for (int r = 0; r < R; ++r) xr[r] = reinterpret_cast<const Block*>(x + r * bx);
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    const __m256i off = _mm256_set1_epi8(static_cast<char>(0x80));
    const char* pf = reinterpret_cast<const char*>(x + kPfTiles * R * bx);
    const int64_t pf_lines = static_cast<int64_t>((R * bx + 63) / 64);
    const int64_t pf_per_iter = (pf_lines + nb - 1) / std::max<int64_t>(1, nb);
    int64_t pf_next = 0;
    for (int64_t ib = 0; ib < nb; ++ib) {
        if (R > 1) {
            for (int64_t k = 0; k < pf_per_iter && pf_next < pf_lines; ++k, ++pf_next)
                _mm_prefetch(pf + 64 * pf_next, _MM_HINT_T0);
        }
        const __m256i aq = load256(a[ib].qs);
        const __m256i start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, aq));
        const __m256 da = _mm256_cvtph_ps(_mm_set1_epi16(h16(a[ib].d)));
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const __m256i sum = _mm256_dpbusd_epi32(start, one_unsigned(xr[r] + ib), aq);
            const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_set1_epi16(h16(xr[r][ib].d))), da);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), d, acc[r]);
        }
    }
    for (int r = 0; r < R; ++r) {
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        s[r] = _mm_cvtss_f32(q);
    }
}

constexpr int kDecRows = 8;

template <int... Rs>
constexpr std::array<void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, float*), sizeof...(Rs)>
make_dec(std::integer_sequence<int, Rs...>) {
    return {&dec1<Rs + 1>...};
}
constexpr auto kDec = make_dec(std::make_integer_sequence<int, kDecRows>());

void vec_dot(int64_t n, float* s, const void* x, const void* y) {
    dec1<1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), s);
}

// nr rows of Q8_0_S24 -> dense Q8_0 rows (row-major, dense_bx bytes apart).
void expand_rows(int64_t n, const uint8_t* x, size_t bx, int64_t nr, uint8_t* out, size_t dense_bx) {
    const int64_t nb = n / kQK;
    for (int64_t r = 0; r < nr; ++r) {
        const auto* src = reinterpret_cast<const Block*>(x + r * bx);
        auto* dst = reinterpret_cast<BlockQ8_0*>(out + r * dense_bx);
        for (int64_t ib = 0; ib < nb; ++ib) {
            dst[ib].d = src[ib].d;
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[ib].qs), one_signed(src + ib));
        }
    }
}

// Columns below this go through the decode kernel (each weight block unpacked per column);
// from here on the rows are expanded once and the dense gemm reuses them across columns.
constexpr int64_t kExpandCols = 4;

void gemm(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
          size_t ldc) {
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    if (nc < kExpandCols) {
        for (int64_t c = 0; c < nc; ++c) {
            for (int64_t r0 = 0; r0 < nr; r0 += kDecRows) {
                const int rr = static_cast<int>(std::min<int64_t>(kDecRows, nr - r0));
                kDec[rr - 1](n, x + r0 * bx, bx, y + c * by, s + c * ldc + r0);
            }
        }
        return;
    }
    // Dense kernels of this table, looked up on first use (the tables are built by then).
    static const TypeTraits* const dense = traits_for_isa("avx512", GGMLType::Q8_0);
    static const RepackTraits* const r16 = repack_traits_for_isa("avx512", GGMLType::Q8_0);
    const size_t dense_bx = row_size(GGMLType::Q8_0, n);
    thread_local std::vector<uint8_t> buf;
    constexpr int64_t kTile = kRepackRows;
    for (int64_t r0 = 0; r0 < nr; r0 += kTile) {
        const int64_t rr = std::min(kTile, nr - r0);
        const size_t bytes = static_cast<size_t>(rr) * dense_bx;
        if (buf.size() < 2 * bytes) buf.resize(2 * bytes);
        expand_rows(n, x + r0 * bx, bx, rr, buf.data(), dense_bx);
        if (rr == kRepackRows && r16 != nullptr) {
            r16->repack(buf.data(), buf.data() + bytes, n, rr, dense_bx);
            r16->gemm(n, buf.data() + bytes, dense_bx, rr, y, by, nc, s + r0, ldc);
        } else {
            dense->gemm(n, buf.data(), dense_bx, rr, y, by, nc, s + r0, ldc);
        }
    }
}

// ---- 16-row groups (the repacked layout, kernels/sparse.h) ---------------------------------
// Block ib of a group (352 bytes): the 16 rows' scales, their masks, then their kept values made
// unsigned (q ^ 0x80), row by row. Decoding a group reads one sequential stream, as the dense
// row groups do; one conversion serves 16 scales, and two rows share each 512-bit operation
// (their masks are one 64-bit load, their values one 256-bit load).

constexpr int64_t kGroupRows = kRepackRows;
constexpr size_t kGroupBlock = kGroupRows * sizeof(Block);  // 352
constexpr size_t kMasks = 32, kValues = 96;                 // offsets in a group block
constexpr int kPfAhead = 6;  // group blocks prefetched ahead of the one being summed

void dec_group(int64_t n, const uint8_t* g, const uint8_t* y, float* s) {
    const int64_t nb = n / kQK;
    const auto* a = reinterpret_cast<const BlockQ8_0*>(y);
    constexpr int kPairs = kGroupRows / 2;
    __m512 acc[kPairs];
    for (auto& v : acc) v = _mm512_setzero_ps();
    const __m512i off = _mm512_set1_epi8(static_cast<char>(0x80));
    // Lane i of pair p takes the scale of row 2p + (i >= 8).
    __m512i pick[kPairs];
    for (int p = 0; p < kPairs; ++p)
        pick[p] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * p)), _mm256_set1_epi32(2 * p + 1), 1);
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* b = g + ib * kGroupBlock;
        const char* pf = reinterpret_cast<const char*>(b + kPfAhead * kGroupBlock);
        for (size_t k = 0; k < kGroupBlock; k += 64) _mm_prefetch(pf + k, _MM_HINT_T0);
        const __m256i a256 = load256(a[ib].qs);
        const __m512i aq = _mm512_inserti64x4(_mm512_castsi256_si512(a256), a256, 1);
        const __m512i start =
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, aq));
        const __m512 d = _mm512_mul_ps(_mm512_cvtph_ps(load256(b)), _mm512_set1_ps(_cvtsh_ss(a[ib].d)));
#pragma GCC unroll 8
        for (int p = 0; p < kPairs; ++p) {
            uint64_t m;
            std::memcpy(&m, b + kMasks + 8 * p, 8);
            const __m512i v = _mm512_zextsi256_si512(load256(b + kValues + 32 * p));
            const __m512i w = _mm512_mask_expand_epi8(off, _cvtu64_mask64(m), v);
            const __m512i sum = _mm512_dpbusd_epi32(start, w, aq);
            acc[p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_permutexvar_ps(pick[p], d), acc[p]);
        }
    }
    for (int p = 0; p < kPairs; ++p) {
        const __m256 lo = _mm512_castps512_ps256(acc[p]), hi = _mm512_extractf32x8_ps(acc[p], 1);
        for (int h = 0; h < 2; ++h) {
            const __m256 v = h ? hi : lo;
            __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            q = _mm_add_ss(q, _mm_movehdup_ps(q));
            s[2 * p + h] = _mm_cvtss_f32(q);
        }
    }
}

// v[j] lane r = dword j of the 16 bytes at p + r*stride, rows 0..15: a 16 x 4 dword transpose.
// z[g] holds rows g, g+4, g+8, g+12 in its 128-bit lanes, which the unpacks put in row order.
inline void transpose16(const uint8_t* p, size_t stride, __m512i* v) {
    __m512i z[4];
    for (int g = 0; g < 4; ++g) {
        z[g] = _mm512_inserti32x4(_mm512_castsi128_si512(load128(p + g * stride)), load128(p + (g + 4) * stride), 1);
        z[g] = _mm512_inserti32x4(z[g], load128(p + (g + 8) * stride), 2);
        z[g] = _mm512_inserti32x4(z[g], load128(p + (g + 12) * stride), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    v[0] = _mm512_unpacklo_epi64(t0, t2);
    v[1] = _mm512_unpackhi_epi64(t0, t2);
    v[2] = _mm512_unpacklo_epi64(t1, t3);
    v[3] = _mm512_unpackhi_epi64(t1, t3);
}

// gemm over groups (x at a group, nr a multiple of 16, groups 16 * bx apart).
void gemm_groups(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
                 size_t ldc) {
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    const size_t group_bytes = kGroupRows * bx;
    if (nc < kExpandCols) {
        for (int64_t c = 0; c < nc; ++c)
            for (int64_t r0 = 0; r0 < nr; r0 += kGroupRows)
                dec_group(n, x + (r0 / kGroupRows) * group_bytes, y + c * by, s + c * ldc + r0);
        return;
    }
    // Each group expanded once, straight into the dense Q8_0 16-row layout (repack.h: per block
    // the 16 scales, then register j lane r = bytes 4j..4j+3 of row r), for the dense gemm.
    static const RepackTraits* const r16 = repack_traits_for_isa("avx512", GGMLType::Q8_0);
    const int64_t nb = n / kQK;
    const size_t dense_bx = row_size(GGMLType::Q8_0, n);
    constexpr size_t kDenseGroupBlock = kGroupRows * sizeof(BlockQ8_0);  // 544
    thread_local std::vector<uint8_t> buf;
    if (buf.size() < kGroupRows * dense_bx) buf.resize(kGroupRows * dense_bx);
    const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
    alignas(64) uint8_t rows[kGroupRows][kQK];
    for (int64_t r0 = 0; r0 < nr; r0 += kGroupRows) {
        const uint8_t* g = x + (r0 / kGroupRows) * group_bytes;
        for (int64_t ib = 0; ib < nb; ++ib) {
            const uint8_t* b = g + ib * kGroupBlock;
            uint8_t* dst = buf.data() + ib * kDenseGroupBlock;
            std::memcpy(dst, b, 32);  // the scales, same place
            for (int r = 0; r < kGroupRows; ++r) {
                const __m128i q = _mm_xor_si128(load128(b + kValues + 16 * r), flip);
                const __m256i w =
                    _mm256_maskz_expand_epi8(_cvtu32_mask32(load_u32(b + kMasks + 4 * r)), _mm256_zextsi128_si256(q));
                _mm256_store_si256(reinterpret_cast<__m256i*>(rows[r]), w);
            }
            __m512i v[8];
            transpose16(rows[0], kQK, v);
            transpose16(rows[0] + 16, kQK, v + 4);
            for (int j = 0; j < 8; ++j) _mm512_storeu_si512(dst + 32 + 64 * j, v[j]);
        }
        r16->gemm(n, buf.data(), dense_bx, kGroupRows, y, by, nc, s + r0, ldc);
    }
}

} // namespace

const RepackTraits* repack_traits_q8_0_s24() {
    static const RepackTraits t = {ref::repack_q8_0_s24_r16, gemm_groups, ref::unpack_row_q8_0_s24_r16};
    return &t;
}

TypeTraits traits_q8_0_s24() {
    return {GGMLType::Q8_0_S24, ref::dequantize_row_q8_0_s24, ref::quantize_row_q8_0_s24_ref, vec_dot,
            GGMLType::Q8_0, ref::quantize_row_q8_0_s24_ref, gemm};
}

} // namespace slm::kernels::avx512
