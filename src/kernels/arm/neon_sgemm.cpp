// neon_sgemm.cpp - the F32 product (sgemm.h) with AArch64 NEON, built with the arm flags and only
// returned by sgemm_for_isa when dispatch.cpp has chosen to run NEON kernels on this CPU.
//
// Micro-kernel: an 8 x 12 tile of C in 24 q-register accumulators (plus three B vectors and two
// A vectors: 29 of the 32); per k, three loads of the packed B sliver, two of the packed A
// sliver, and 24 FMAs by lane (fmla v.4s, v.4s, v.s[l]). Tiles with fewer rows use the same code
// with fewer accumulators; fewer columns go through a local tile. Blocking: see sgemm_blocked.h.
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
    template <size_t I>
    static inline void row(float32x4_t (&c)[3], float32x4_t b0, float32x4_t b1, float32x4_t b2, float32x4_t a0,
                           float32x4_t a1) {
        const float32x4_t a = I < 4 ? a0 : a1;
        c[0] = vfmaq_laneq_f32(c[0], b0, a, I % 4);
        c[1] = vfmaq_laneq_f32(c[1], b1, a, I % 4);
        c[2] = vfmaq_laneq_f32(c[2], b2, a, I % 4);
    }

    template <size_t... I>
    static void full(std::index_sequence<I...>, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     int64_t nr, bool acc) {
        constexpr size_t R = sizeof...(I);
        float32x4_t cc[R][3];
        for (size_t r = 0; r < R; ++r)
            cc[r][0] = cc[r][1] = cc[r][2] = vdupq_n_f32(0.0f);
        for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
            const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
            const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
            (row<I>(cc[I], b0, b1, b2, a0, a1), ...);
        }
        if (nr == NR) {
            for (size_t r = 0; r < R; ++r) {
                float* cr = c + static_cast<int64_t>(r) * ldc;
                for (int v = 0; v < 3; ++v) {
                    float32x4_t x = cc[r][v];
                    if (acc)
                        x = vaddq_f32(x, vld1q_f32(cr + 4 * v));
                    vst1q_f32(cr + 4 * v, x);
                }
            }
        } else {
            float t[NR];
            for (size_t r = 0; r < R; ++r) {
                float* cr = c + static_cast<int64_t>(r) * ldc;
                for (int v = 0; v < 3; ++v)
                    vst1q_f32(t + 4 * v, cc[r][v]);
                for (int64_t j = 0; j < nr; ++j)
                    cr[j] = acc ? cr[j] + t[j] : t[j];
            }
        }
    }

    static void tile(int64_t mr, int64_t nr, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                     bool acc) {
        switch (mr) {
        case 8: full(std::make_index_sequence<8>{}, kc, a, b, c, ldc, nr, acc); break;
        case 7: full(std::make_index_sequence<7>{}, kc, a, b, c, ldc, nr, acc); break;
        case 6: full(std::make_index_sequence<6>{}, kc, a, b, c, ldc, nr, acc); break;
        case 5: full(std::make_index_sequence<5>{}, kc, a, b, c, ldc, nr, acc); break;
        case 4: full(std::make_index_sequence<4>{}, kc, a, b, c, ldc, nr, acc); break;
        case 3: full(std::make_index_sequence<3>{}, kc, a, b, c, ldc, nr, acc); break;
        case 2: full(std::make_index_sequence<2>{}, kc, a, b, c, ldc, nr, acc); break;
        default: full(std::make_index_sequence<1>{}, kc, a, b, c, ldc, nr, acc); break;
        }
    }
};

} // namespace

void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc) {
    sgemm_blocked_impl::gemm<Kern>(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

} // namespace slm::kernels::neon
