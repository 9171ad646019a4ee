// neon_sgemm.cpp - the F32 product (sgemm.h) with AArch64 NEON, built with the arm flags and only
// returned by sgemm_for_isa when dispatch.cpp has chosen to run NEON kernels on this CPU.
//
// Micro-kernel: an 8 x 12 tile of C in 24 q-register accumulators (plus three B vectors and two
// A vectors: 29 of the 32); per k, three loads of the packed B sliver, two of the packed A
// sliver, and 24 FMAs by lane (fmla v.4s, v.4s, v.s[l]). Tiles with fewer rows use the same code
// with fewer accumulators, tiles of at most 4 or 8 real columns one or two vectors per row; ragged
// columns go through a local tile. Blocking: see sgemm_blocked.h.
#define SLM_SGEMM_BLOCKED_IMPL
#include "kernels/sgemm_blocked.h"

#include <arm_neon.h>

#include <utility>

namespace slm::kernels::neon {
namespace {

struct Kern {
    static constexpr int64_t MR = 8, NR = 12;
    // A 12 x 256 sliver of B is 12 KB: well inside the 32-64 KB L1d of current cores.
    static constexpr int64_t KC = 256, MC = 192, NC = 3072;

    // transpose4 for pack_transposed: four rows of four k -> four k of four rows.
    static constexpr int64_t KB = 4;
    static void transpose4(const float* src, int64_t ld, float* d, int64_t W) {
        const float32x4_t r0 = vld1q_f32(src), r1 = vld1q_f32(src + ld);
        const float32x4_t r2 = vld1q_f32(src + 2 * ld), r3 = vld1q_f32(src + 3 * ld);
        // (r0k0 r1k0 r0k2 r1k2), (r0k1 r1k1 r0k3 r1k3), and the same for rows 2, 3
        const float32x4_t t0 = vtrn1q_f32(r0, r1), t1 = vtrn2q_f32(r0, r1);
        const float32x4_t t2 = vtrn1q_f32(r2, r3), t3 = vtrn2q_f32(r2, r3);
        const auto lo = [](float32x4_t a, float32x4_t b) {
            return vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)));
        };
        const auto hi = [](float32x4_t a, float32x4_t b) {
            return vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(b)));
        };
        vst1q_f32(d, lo(t0, t2));
        vst1q_f32(d + W, lo(t1, t3));
        vst1q_f32(d + 2 * W, hi(t0, t2));
        vst1q_f32(d + 3 * W, hi(t1, t3));
    }

    // Row I of the tile: c[I] += b * a_lane, the lane picked at compile time as fmla needs.
    template <size_t I, int NV>
    static inline void row(float32x4_t (&c)[NV], const float32x4_t (&b)[NV], float32x4_t a0, float32x4_t a1) {
        const float32x4_t a = I < 4 ? a0 : a1;
        for (int v = 0; v < NV; ++v)
            c[v] = vfmaq_laneq_f32(c[v], b[v], a, I % 4);
    }

    // A sizeof...(I) x 4*NV tile (NV < 3 when at most 4 or 8 columns are real).
    template <int NV, size_t... I>
    static void rows(std::index_sequence<I...>, int64_t nr, int64_t kc, const float* a, const float* b, float* c,
                     int64_t ldc, bool acc) {
        constexpr size_t R = sizeof...(I);
        float32x4_t cc[R][NV];
        for (size_t r = 0; r < R; ++r)
            for (int v = 0; v < NV; ++v)
                cc[r][v] = vdupq_n_f32(0.0f);
        for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
            float32x4_t bv[NV];
            for (int v = 0; v < NV; ++v)
                bv[v] = vld1q_f32(b + 4 * v);
            const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
            (row<I, NV>(cc[I], bv, a0, a1), ...);
        }
        if (nr == 4 * NV) {
            for (size_t r = 0; r < R; ++r) {
                float* cr = c + static_cast<int64_t>(r) * ldc;
                for (int v = 0; v < NV; ++v)
                    vst1q_f32(cr + 4 * v, acc ? vaddq_f32(cc[r][v], vld1q_f32(cr + 4 * v)) : cc[r][v]);
            }
        } else {
            float t[4 * NV];
            for (size_t r = 0; r < R; ++r) {
                float* cr = c + static_cast<int64_t>(r) * ldc;
                for (int v = 0; v < NV; ++v)
                    vst1q_f32(t + 4 * v, cc[r][v]);
                for (int64_t j = 0; j < nr; ++j)
                    cr[j] = acc ? cr[j] + t[j] : t[j];
            }
        }
    }

    template <int NV>
    static void tile_nv(int64_t mr, int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                        bool acc) {
        switch (mr) {
        case 8: rows<NV>(std::make_index_sequence<8>{}, nr, kc, a, b, c, ldc, acc); break;
        case 7: rows<NV>(std::make_index_sequence<7>{}, nr, kc, a, b, c, ldc, acc); break;
        case 6: rows<NV>(std::make_index_sequence<6>{}, nr, kc, a, b, c, ldc, acc); break;
        case 5: rows<NV>(std::make_index_sequence<5>{}, nr, kc, a, b, c, ldc, acc); break;
        case 4: rows<NV>(std::make_index_sequence<4>{}, nr, kc, a, b, c, ldc, acc); break;
        case 3: rows<NV>(std::make_index_sequence<3>{}, nr, kc, a, b, c, ldc, acc); break;
        case 2: rows<NV>(std::make_index_sequence<2>{}, nr, kc, a, b, c, ldc, acc); break;
        default: rows<NV>(std::make_index_sequence<1>{}, nr, kc, a, b, c, ldc, acc); break;
        }
    }

    static void tile(int64_t mr, int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     bool acc) {
        if (nr > 8)
            tile_nv<3>(mr, nr, kc, a, b, c, ldc, acc);
        else if (nr > 4)
            tile_nv<2>(mr, nr, kc, a, b, c, ldc, acc);
        else
            tile_nv<1>(mr, nr, kc, a, b, c, ldc, acc);
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

} // namespace slm::kernels::neon
