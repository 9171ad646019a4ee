// avx512_sgemm.cpp - the F32 product (sgemm.h) with AVX-512F, built with the avx512 flags and only
// returned by sgemm_for_isa when dispatch.cpp has seen AVX-512 on this CPU.
//
// Micro-kernel: a 12 x 32 tile of C in 24 zmm accumulators; per k, two zmm loads of the packed
// B sliver and twelve broadcasts of the packed A sliver (folded into the FMAs as {1to16} memory
// operands), i.e. 24 FMAs for 14 loads. Tiles with fewer rows use the same code with fewer
// accumulators; fewer columns use masked loads and stores of C. Blocking: see sgemm_blocked.h.
#define SLM_SGEMM_BLOCKED_IMPL
#include "kernels/sgemm_blocked.h"

#include <immintrin.h>

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

    template <int R>
    static void rows(int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool acc) {
        __m512 c0[R], c1[R];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
            c0[r] = c1[r] = _mm512_setzero_ps();
        for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
            const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                const __m512 ar = _mm512_set1_ps(a[r]);
                c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
            }
        }
        if (nr == NR) {
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                float* cr = c + r * ldc;
                if (acc) {
                    c0[r] = _mm512_add_ps(c0[r], _mm512_loadu_ps(cr));
                    c1[r] = _mm512_add_ps(c1[r], _mm512_loadu_ps(cr + 16));
                }
                _mm512_storeu_ps(cr, c0[r]);
                _mm512_storeu_ps(cr + 16, c1[r]);
            }
        } else {
            const __mmask16 m0 = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1u);
            const __mmask16 m1 = nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1u);
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r) {
                float* cr = c + r * ldc;
                if (acc) {
                    c0[r] = _mm512_add_ps(c0[r], _mm512_maskz_loadu_ps(m0, cr));
                    c1[r] = _mm512_add_ps(c1[r], _mm512_maskz_loadu_ps(m1, cr + 16));
                }
                _mm512_mask_storeu_ps(cr, m0, c0[r]);
                _mm512_mask_storeu_ps(cr + 16, m1, c1[r]);
            }
        }
    }

    // rows<1> ... rows<MR>, indexed by the tile's row count.
    template <size_t... R>
    static constexpr auto rows_table(std::index_sequence<R...>) {
        return std::array{&rows<static_cast<int>(R) + 1>...};
    }

    static void tile(int64_t mr, int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     bool acc) {
        static constexpr auto table = rows_table(std::make_index_sequence<MR>{});
        table[mr - 1](nr, kc, a, b, c, ldc, acc);
    }
};

} // namespace

void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc) {
    sgemm_blocked_impl::gemm<Kern>(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

} // namespace slm::kernels::avx512
