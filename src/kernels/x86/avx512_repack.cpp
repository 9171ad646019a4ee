// avx512_repack.cpp - AVX-512 VNNI gemm over Q4_0 matrices in the 8-row group layout of
// kernels/repack.h. Built with the AVX-512 flags; used only when dispatch.cpp picked avx512.
//
// Per group (8 rows) and block: two 64-byte loads and four masks/shifts give the 8 rows' nibbles
// as four registers, whose 32-bit lane L = r + 8h holds four elements of row r; the activation
// block is prepared once per call as four registers holding, in lanes 0..7 / 8..15, the matching
// four activations (h = 0 / 1), plus the -8 offset as a starting value (-8 times the sum of those
// activations, lane by lane). Four vpdpbusd give each lane's exact integer sum; the two halves
// of the register add up to the 8 rows' block sums; one conversion and one FMA with the 8 row
// scales times the activation scale accumulate them. Each output's float operations are the same
// whatever the tile, so results do not depend on how rows are split between threads.
#include "kernels/repack.h"
#include "kernels/x86/x86.h"

#include "kernels/ref/blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace slm::kernels::avx512 {
namespace {

constexpr int kGroup = 8;
constexpr size_t kGroupBlock = kGroup * sizeof(BlockQ4_0);  // 144 bytes
constexpr int kCols = 4;                                    // columns per register tile

// One activation block, arranged: a[k] lanes 0..7 = dword 2k of qs, lanes 8..15 = dword 2k+1
// (so a[k] meets the weights' nibble register k), start = -8 * lane sums, d = the block scale.
struct alignas(64) ArrBlock {
    __m512i a[4];
    __m512i start;
};

void arrange(const BlockQ8_0* y, int64_t nb, ArrBlock* out, float* d) {
    const __m512i eight = _mm512_set1_epi8(8);
    for (int64_t ib = 0; ib < nb; ++ib) {
        const __m512i q = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs)));
        __m512i start = _mm512_setzero_si512();
        for (int k = 0; k < 4; ++k) {
            const __m512i idx = _mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
                                                 2 * k + 1, 2 * k + 1, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k, 2 * k);
            out[ib].a[k] = _mm512_permutexvar_epi32(idx, q);
            start = _mm512_dpbusd_epi32(start, eight, out[ib].a[k]);
        }
        out[ib].start = _mm512_sub_epi32(_mm512_setzero_si512(), start);
        d[ib] = _cvtsh_ss(y[ib].d);
    }
}

// C columns (<= kCols) of one group: s[c * ldc + r] for r < 8.
template <int C>
void group_cols(int64_t nb, const uint8_t* g, const ArrBlock* const* arr, const float* const* da, float* s, size_t ldc) {
    __m256 acc[C];
    for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
    const __m512i low = _mm512_set1_epi8(0x0f);
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* b = g + ib * kGroupBlock;
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
        const __m512i p0 = _mm512_loadu_si512(b + 16), p1 = _mm512_loadu_si512(b + 80);
        const __m512i w0 = _mm512_and_si512(p0, low), w1 = _mm512_and_si512(_mm512_srli_epi16(p0, 4), low);
        const __m512i w2 = _mm512_and_si512(p1, low), w3 = _mm512_and_si512(_mm512_srli_epi16(p1, 4), low);
#pragma GCC unroll 4
        for (int c = 0; c < C; ++c) {
            const ArrBlock& a = arr[c][ib];
            __m512i sum = _mm512_dpbusd_epi32(a.start, w0, a.a[0]);
            sum = _mm512_dpbusd_epi32(sum, w1, a.a[1]);
            sum = _mm512_dpbusd_epi32(sum, w2, a.a[2]);
            sum = _mm512_dpbusd_epi32(sum, w3, a.a[3]);
            const __m256i rows = _mm256_add_epi32(_mm512_castsi512_si256(sum), _mm512_extracti64x4_epi64(sum, 1));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rows), _mm256_mul_ps(dw, _mm256_set1_ps(da[c][ib])), acc[c]);
        }
    }
    for (int c = 0; c < C; ++c) _mm256_storeu_ps(s + c * ldc, acc[c]);
}

using GroupFn = void (*)(int64_t, const uint8_t*, const ArrBlock* const*, const float* const*, float*, size_t);
constexpr GroupFn kGroupFns[kCols] = {group_cols<1>, group_cols<2>, group_cols<3>, group_cols<4>};

void gemm_q4_0_r8(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
                  size_t ldc) {
    const int64_t nb = n / kQK;
    // Arranged activations of this call's columns: 320 bytes per block and column, in a
    // per-thread buffer that only grows (no allocation once warm).
    thread_local std::vector<ArrBlock> arr;
    thread_local std::vector<float> da;
    const size_t need = static_cast<size_t>(nb * nc);
    if (arr.size() < need) arr.resize(need);
    if (da.size() < need) da.resize(need);
    const auto* y = static_cast<const uint8_t*>(vy);
    for (int64_t c = 0; c < nc; ++c)
        arrange(reinterpret_cast<const BlockQ8_0*>(y + c * by), nb, arr.data() + c * nb, da.data() + c * nb);

    const auto* x = static_cast<const uint8_t*>(vx);
    const size_t group_bytes = kGroup * bx;
    for (int64_t g = 0; g < nr / kGroup; ++g) {
        const uint8_t* gp = x + static_cast<size_t>(g) * group_bytes;
        // The next group's blocks, while this one is summed (a group is ~9 KB for 2048-wide rows).
        for (size_t off = 0; off < group_bytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(gp + group_bytes + off), _MM_HINT_T0);
        for (int64_t c0 = 0; c0 < nc; c0 += kCols) {
            const int cn = static_cast<int>(std::min<int64_t>(kCols, nc - c0));
            const ArrBlock* ap[kCols];
            const float* dp[kCols];
            for (int c = 0; c < cn; ++c) {
                ap[c] = arr.data() + (c0 + c) * nb;
                dp[c] = da.data() + (c0 + c) * nb;
            }
            kGroupFns[cn - 1](nb, gp, ap, dp, s + c0 * ldc + g * kGroup, ldc);
        }
    }
}

} // namespace

const RepackTraits* repack_traits(GGMLType t) {
    static const RepackTraits q4_0 = {ref::repack_q4_0_r8, gemm_q4_0_r8};
    return t == GGMLType::Q4_0 ? &q4_0 : nullptr;
}

} // namespace slm::kernels::avx512
