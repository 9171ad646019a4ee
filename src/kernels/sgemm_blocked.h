// sgemm_blocked.h - the cache-blocked F32 product the SIMD sgemm kernels share (x86/avx2_sgemm.cpp,
// x86/avx512_sgemm.cpp, arm/neon_sgemm.cpp), and their entry points for sgemm.cpp.
//
// The classic layered scheme: C is cut into column panels of NC, K into blocks of KC and rows
// into blocks of MC. For each (column panel, K block) the KC x NC slice of op(B) is packed once
// into slivers NR columns wide (k-major: the NR values of one k are adjacent), and for each row
// block the MC x KC slice of op(A) into slivers MR rows tall (the MR values of one k adjacent).
// Packing absorbs the transposes, so the register-blocked micro-kernel sees one layout whatever
// ta and tb are, and its loads are all unit-stride. A sliver of B (KC x NR) is reused across every
// A sliver of the row block, so it stays in L1; the A block stays in L2. Slivers are zero-padded
// to full MR / NR, so the micro-kernel always runs its whole tile over the K block and only its
// final store knows how many rows and columns of C are real.
//
// This header is included by each ISA's translation unit, which is compiled with that ISA's
// flags: everything in it has internal linkage, so no function built for one ISA can be picked
// by the linker for another.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace slm::kernels {

// The ISA kernels (same arguments as SgemmFn in sgemm.h); sgemm.cpp only returns one when the
// build has it and the CPU runs it.
namespace avx2 {
void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc);
}
namespace avx512 {
void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc);
}
namespace neon {
void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                   int64_t ldb, float beta, float* C, int64_t ldc);
}

#if defined(SLM_SGEMM_BLOCKED_IMPL)
namespace sgemm_blocked_impl {
namespace {

// A float buffer reused across calls (one per thread and ISA), grown only when a call needs more,
// and handed out 64-byte aligned.
struct Scratch {
    std::vector<float> a, b;
};

inline float* aligned(std::vector<float>& v, size_t n) {
    if (v.size() < n + 16)
        v.resize(n + 16);
    const auto addr = reinterpret_cast<uintptr_t>(v.data());
    return v.data() + ((64 - (addr & 63)) & 63) / sizeof(float);
}

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Packs rows [i0, i0 + mc) x k [p0, p0 + kc) of op(A) into slivers of MR rows: sliver s holds
// op(A)(i0 + s*MR + r, p0 + k) at [s*MR*kc + k*MR + r]; rows past mc are zero.
template <int64_t MR>
void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
    for (int64_t s = 0; s < mc; s += MR) {
        const int64_t mr = std::min(MR, mc - s);
        float* d = dst + s * kc;
        if (ta) {
            // op(A)(i, k) = A[k*lda + i]: the MR values of one k are adjacent in A already.
            const float* src = A + p0 * lda + i0 + s;
            for (int64_t k = 0; k < kc; ++k, src += lda, d += MR) {
                if (mr == MR) {
                    std::memcpy(d, src, sizeof(float) * MR);
                } else {
                    std::memcpy(d, src, sizeof(float) * static_cast<size_t>(mr));
                    std::fill(d + mr, d + MR, 0.0f);
                }
            }
        } else {
            // op(A)(i, k) = A[i*lda + k]: a transpose, done in runs of 8 k so that each of the
            // MR source rows is read a cache line at a time.
            const float* src = A + (i0 + s) * lda + p0;
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8) {
                float* dk = d + k * MR;
                for (int64_t r = 0; r < mr; ++r) {
                    const float* sr = src + r * lda + k;
                    for (int64_t u = 0; u < 8; ++u)
                        dk[u * MR + r] = sr[u];
                }
                for (int64_t r = mr; r < MR; ++r)
                    for (int64_t u = 0; u < 8; ++u)
                        dk[u * MR + r] = 0.0f;
            }
            for (; k < kc; ++k) {
                float* dk = d + k * MR;
                for (int64_t r = 0; r < mr; ++r)
                    dk[r] = src[r * lda + k];
                for (int64_t r = mr; r < MR; ++r)
                    dk[r] = 0.0f;
            }
        }
    }
}

// Packs k [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into slivers of NR columns: sliver t
// holds op(B)(p0 + k, j0 + t*NR + j) at [t*NR*kc + k*NR + j]; columns past nc are zero.
template <int64_t NR>
void pack_b(bool tb, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
    for (int64_t t = 0; t < nc; t += NR) {
        const int64_t nr = std::min(NR, nc - t);
        float* d = dst + t * kc;
        if (!tb) {
            // op(B)(k, j) = B[k*ldb + j]: rows of NR adjacent values.
            const float* src = B + p0 * ldb + j0 + t;
            for (int64_t k = 0; k < kc; ++k, src += ldb, d += NR) {
                if (nr == NR) {
                    std::memcpy(d, src, sizeof(float) * NR);
                } else {
                    std::memcpy(d, src, sizeof(float) * static_cast<size_t>(nr));
                    std::fill(d + nr, d + NR, 0.0f);
                }
            }
        } else {
            // op(B)(k, j) = B[j*ldb + k] (the forward product's weight rows): a transpose in
            // runs of 8 k, as in pack_a.
            const float* src = B + (j0 + t) * ldb + p0;
            int64_t k = 0;
            for (; k + 8 <= kc; k += 8) {
                float* dk = d + k * NR;
                for (int64_t j = 0; j < nr; ++j) {
                    const float* sj = src + j * ldb + k;
                    for (int64_t u = 0; u < 8; ++u)
                        dk[u * NR + j] = sj[u];
                }
                for (int64_t j = nr; j < NR; ++j)
                    for (int64_t u = 0; u < 8; ++u)
                        dk[u * NR + j] = 0.0f;
            }
            for (; k < kc; ++k) {
                float* dk = d + k * NR;
                for (int64_t j = 0; j < nr; ++j)
                    dk[j] = src[j * ldb + k];
                for (int64_t j = nr; j < NR; ++j)
                    dk[j] = 0.0f;
            }
        }
    }
}

// The whole product with micro-kernel policy Kern:
//   Kern::MR, NR        the register tile;
//   Kern::KC, MC, NC    the cache blocks (MC a multiple of MR, NC of NR);
//   Kern::tile(mr, nr, kc, a, b, c, ldc, acc)
//                       c[r*ldc + j] = (acc ? c[r*ldc + j] : 0) + sum_k a[k*MR + r] * b[k*NR + j]
//                       for r < mr <= MR, j < nr <= NR, touching nothing else of C.
template <class Kern>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float beta, float* C, int64_t ldc) {
    constexpr int64_t MR = Kern::MR, NR = Kern::NR, KC = Kern::KC, MC = Kern::MC, NC = Kern::NC;
    static_assert(MC % MR == 0 && NC % NR == 0);
    if (M <= 0 || N <= 0)
        return;
    if (beta != 0.0f && beta != 1.0f) {
        // Not used by slm, but cheap to honour: scale once, then accumulate.
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
                C[i * ldc + j] *= beta;
        beta = 1.0f;
    }
    if (K <= 0) {
        if (beta == 0.0f)
            for (int64_t i = 0; i < M; ++i)
                std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
        return;
    }
    thread_local Scratch scratch;
    const int64_t kc_max = std::min(K, KC);
    float* bp = aligned(scratch.b, static_cast<size_t>(kc_max * round_up(std::min(N, NC), NR)));
    float* ap = aligned(scratch.a, static_cast<size_t>(kc_max * round_up(std::min(M, MC), MR)));

    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = std::min(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            // The first K block overwrites C when beta is 0 (old values, NaN included, unread).
            const bool acc = pc > 0 || beta != 0.0f;
            pack_b<NR>(tb, B, ldb, pc, kc, jc, nc, bp);
            for (int64_t ic = 0; ic < M; ic += MC) {
                const int64_t mc = std::min(MC, M - ic);
                pack_a<MR>(ta, A, lda, ic, mc, pc, kc, ap);
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = std::min(NR, nc - jr);
                    const float* bs = bp + jr * kc;
                    float* cj = C + ic * ldc + jc + jr;
                    for (int64_t ir = 0; ir < mc; ir += MR)
                        Kern::tile(std::min(MR, mc - ir), nr, kc, ap + ir * kc, bs, cj + ir * ldc, ldc, acc);
                }
            }
        }
    }
}

} // namespace
} // namespace sgemm_blocked_impl
#endif  // SLM_SGEMM_BLOCKED_IMPL

} // namespace slm::kernels
