// avx2_sgemm.cpp - the F32 product (sgemm.h) with AVX2 + FMA, built with the avx2 flags and only
// returned by sgemm_for_isa when dispatch.cpp has seen AVX2/FMA on this CPU.
//
// Micro-kernel: a 6 x 16 tile of C in 12 ymm accumulators (16 registers: 12 + two B vectors +
// one broadcast of A); per k, two loads of the packed B sliver and six broadcasts of the packed A
// sliver for 12 FMAs. Tiles with fewer rows use the same code with fewer accumulators, tiles of
// at most 8 real columns one vector per row; ragged columns use vmaskmov loads and stores of C.
// Blocking: see sgemm_blocked.h.
#define SLM_SGEMM_BLOCKED_IMPL
#include "kernels/sgemm_blocked.h"

#include <immintrin.h>

#include <array>
#include <utility>

namespace slm::kernels::avx2 {
namespace {

struct Kern {
    static constexpr int64_t MR = 6, NR = 16;
    // A 16 x 256 sliver of B is 16 KB, half of a 32 KB L1d.
    static constexpr int64_t KC = 256, MC = 192, NC = 3072;

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

    // Lanes j with j0 + j < nr on, as vmaskmovps wants them (sign bit set).
    static __m256i lanes(int64_t nr, int j0) {
        return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(nr) - j0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }

    // An R x 8*NV tile (NV = 1 when at most 8 columns are real: half the FMAs).
    template <int R, int NV>
    static void rows(int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
        __m256 cv[R][NV];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v)
                cv[r][v] = _mm256_setzero_ps();
        for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
            __m256 bv[NV];
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v)
                bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
                const __m256 ar = _mm256_broadcast_ss(a + r);
#pragma GCC unroll 2
                for (int v = 0; v < NV; ++v)
                    cv[r][v] = _mm256_fmadd_ps(ar, bv[v], cv[r][v]);
            }
        }
        if (nr == 8 * NV) {
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
                for (int v = 0; v < NV; ++v) {
                    float* cr = c + r * ldc + 8 * v;
                    _mm256_storeu_ps(cr, acc ? _mm256_add_ps(cv[r][v], _mm256_loadu_ps(cr)) : cv[r][v]);
                }
        } else {
            __m256i m[NV];
#pragma GCC unroll 2
            for (int v = 0; v < NV; ++v)
                m[v] = lanes(nr, 8 * v);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
                for (int v = 0; v < NV; ++v) {
                    float* cr = c + r * ldc + 8 * v;
                    const __m256 x = acc ? _mm256_add_ps(cv[r][v], _mm256_maskload_ps(cr, m[v])) : cv[r][v];
                    _mm256_maskstore_ps(cr, m[v], x);
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
        (nr <= 8 ? narrow : wide)[mr - 1](nr, kc, a, b, c, ldc, acc);
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

} // namespace slm::kernels::avx2
