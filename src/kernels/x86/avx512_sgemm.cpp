// avx512_sgemm.cpp - the F32 product (sgemm.h) with AVX-512F, built with the avx512 flags and only
// returned by sgemm_for_isa when dispatch.cpp has seen AVX-512 on this CPU.
//
// Micro-kernel: a 12 x 32 tile of C in 24 zmm accumulators; per k, two zmm loads of the packed
// B sliver and twelve broadcasts of the packed A sliver, i.e. 24 FMAs for 14 loads. Tiles with
// fewer rows use the same code with fewer accumulators, tiles of at most 16 real columns one
// vector per row; ragged columns use masked loads and stores of C. Blocking: sgemm_blocked.h.
#define SLM_SGEMM_BLOCKED_IMPL
#include "kernels/sgemm_blocked.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

// GCC 12's AVX-512 intrinsics pass a deliberately undefined `__Y = __Y` operand, which its
// -W(maybe-)uninitialized flags once the functions are inlined (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace slm::kernels::avx512 {
namespace {

struct Kern {
    static constexpr int64_t MR = 12, NR = 32;
    // A 32 x 128 sliver of B is 16 KB: half of Zen 4's (and most cores') 32 KB L1d.
    static constexpr int64_t KC = 256, MC = 384, NC = 3072;

    // transpose4 for pack_transposed: four rows of eight k -> eight k of four rows.
    static constexpr int64_t KB = 8;
    static void transpose4(const float* src, int64_t ld, float* d, int64_t W) {
        const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld);
        const __m256 r2 = _mm256_loadu_ps(src + 2 * ld), r3 = _mm256_loadu_ps(src + 3 * ld);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 k04 = _mm256_shuffle_ps(t0, t2, 0x44), k15 = _mm256_shuffle_ps(t0, t2, 0xee);
        const __m256 k26 = _mm256_shuffle_ps(t1, t3, 0x44), k37 = _mm256_shuffle_ps(t1, t3, 0xee);
        _mm_storeu_ps(d, _mm256_castps256_ps128(k04));
        _mm_storeu_ps(d + W, _mm256_castps256_ps128(k15));
        _mm_storeu_ps(d + 2 * W, _mm256_castps256_ps128(k26));
        _mm_storeu_ps(d + 3 * W, _mm256_castps256_ps128(k37));
        _mm_storeu_ps(d + 4 * W, _mm256_extractf128_ps(k04, 1));
        _mm_storeu_ps(d + 5 * W, _mm256_extractf128_ps(k15, 1));
        _mm_storeu_ps(d + 6 * W, _mm256_extractf128_ps(k26, 1));
        _mm_storeu_ps(d + 7 * W, _mm256_extractf128_ps(k37, 1));
    }

    // An R x 16*NV tile (NV = 1 when at most 16 columns are real, e.g. LoRA's rank-8 products:
    // half the FMAs of a full-width tile).
    template <int R, int NV>
    static void rows(int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
        __m512 cv[R][NV];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v)
                cv[r][v] = _mm512_setzero_ps();
        for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
            __m512 bv[NV];
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v)
                bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                const __m512 ar = _mm512_set1_ps(a[r]);
#pragma GCC unroll 2
                for (int v = 0; v < NV; ++v)
                    cv[r][v] = _mm512_fmadd_ps(ar, bv[v], cv[r][v]);
            }
        }
        if (nr == 16 * NV) {
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
                for (int v = 0; v < NV; ++v) {
                    float* cr = c + r * ldc + 16 * v;
                    _mm512_storeu_ps(cr, acc ? _mm512_add_ps(cv[r][v], _mm512_loadu_ps(cr)) : cv[r][v]);
                }
        } else {
            __mmask16 m[NV];
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v) {
                const int64_t n = std::clamp<int64_t>(nr - 16 * v, 0, 16);
                m[v] = static_cast<__mmask16>((1u << n) - 1u);
            }
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
                for (int v = 0; v < NV; ++v) {
                    float* cr = c + r * ldc + 16 * v;
                    const __m512 x = acc ? _mm512_add_ps(cv[r][v], _mm512_maskz_loadu_ps(m[v], cr)) : cv[r][v];
                    _mm512_mask_storeu_ps(cr, m[v], x);
                }
        }
    }

    // rows<1, NV> ... rows<MR, NV>, indexed by the tile's row count.
    template <int NV, size_t... R>
    static constexpr auto rows_table(std::index_sequence<R...>) {
        return std::array{&rows<static_cast<int>(R) + 1, NV>...};
    }

    static void tile(int64_t mr, int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     bool acc) {
        static constexpr auto narrow = rows_table<1>(std::make_index_sequence<MR>{});
        static constexpr auto wide = rows_table<2>(std::make_index_sequence<MR>{});
        (nr <= 16 ? narrow : wide)[mr - 1](nr, kc, a, b, c, ldc, acc);
    }
};

} // namespace

void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc) {
    sgemm_blocked_impl::gemm<Kern>(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void sgemm_threaded(ThreadPool& pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                    const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    sgemm_blocked_impl::gemm_threaded<Kern>(pool, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

} // namespace slm::kernels::avx512
