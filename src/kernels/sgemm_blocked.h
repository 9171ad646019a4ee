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
// final store knows how many rows and columns of C are real. With a single row block, each B
// sliver is packed just before its tiles instead (see gemm); over a thread pool, the threads
// share each packed panel (see gemm_threaded).
//
// This header is included by each ISA's translation unit, which is compiled with that ISA's
// flags: everything in it has internal linkage, so no function built for one ISA can be picked
// by the linker for another.
#pragma once

#include "core/thread_pool.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace slm::kernels {

// The ISA kernels: sgemm_blocked has SgemmFn's arguments (sgemm.h); sgemm_threaded computes the
// same product with the pool's threads sharing each packed panel of B. sgemm.cpp only uses them
// when the build has them and the CPU runs them.
#define SLM_SGEMM_ENTRY_POINTS                                                                                  \
    void sgemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,            \
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc);                           \
    void sgemm_threaded(ThreadPool& pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A,      \
                        int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
namespace avx2 {
SLM_SGEMM_ENTRY_POINTS
}
namespace avx512 {
SLM_SGEMM_ENTRY_POINTS
}
namespace neon {
SLM_SGEMM_ENTRY_POINTS
}
#undef SLM_SGEMM_ENTRY_POINTS

// The calling thread's scratch buffer `slot` (0: its packed A block; 1: the packed B panel of a
// product it runs, which in gemm_threaded the pool's threads read too), at least n floats,
// 64-byte aligned, reused across calls and grown only when a call needs more. Defined in
// sgemm.cpp, which is compiled for the baseline ISA: no std::vector code is instantiated here,
// where the linker could pick an AVX-512 copy of it for code running on any CPU.
float* sgemm_scratch(int slot, int64_t n);

#if defined(SLM_SGEMM_BLOCKED_IMPL)
namespace sgemm_blocked_impl {
namespace {

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// d[k*W + r] = src[r*ld + k] for r < w <= W, k < kc, and 0 for w <= r < W: w rows, each
// contiguous along k, turned k-major. Groups of four rows go through Kern::transpose4 (4 rows x
// Kern::KB values of k per call, in registers); the rows and k past the last group one by one.
// (Packing is bound by reading the source, not by these instructions.)
template <class Kern, int64_t W>
void pack_transposed(const float* src, int64_t ld, int64_t w, int64_t kc, float* d) {
    constexpr int64_t KB = Kern::KB, kSpan = 64;  // a span: four source lines of each row
    const int64_t w4 = w & ~int64_t{3}, k_end = kc / KB * KB;
    // Span by span, a group of four rows at a time, so each source row is read a whole cache
    // line after another (four streams at once, which the prefetchers follow) while the
    // destination span (W x 64 floats) stays in L1.
    for (int64_t k0 = 0; k0 < k_end; k0 += kSpan) {
        const int64_t k1 = std::min(k_end, k0 + kSpan);
        for (int64_t r = 0; r < w4; r += 4)
            for (int64_t k = k0; k < k1; k += KB)
                Kern::transpose4(src + r * ld + k, ld, d + k * W + r, W);
    }
    for (int64_t k = 0; k < k_end; ++k) {
        float* dk = d + k * W;
        for (int64_t r = w4; r < w; ++r)
            dk[r] = src[r * ld + k];
        for (int64_t r = w; r < W; ++r)
            dk[r] = 0.0f;
    }
    for (int64_t k = k_end; k < kc; ++k) {
        float* dk = d + k * W;
        for (int64_t r = 0; r < w; ++r)
            dk[r] = src[r * ld + k];
        for (int64_t r = w; r < W; ++r)
            dk[r] = 0.0f;
    }
}

// d[k*W + j] = src[k*ld + j] for j < w <= W, k < kc, and 0 for w <= j < W: rows already k-major.
template <int64_t W>
void pack_direct(const float* src, int64_t ld, int64_t w, int64_t kc, float* d) {
    for (int64_t k = 0; k < kc; ++k, src += ld, d += W) {
        if (w == W) {
            std::memcpy(d, src, sizeof(float) * W);
        } else {
            std::memcpy(d, src, sizeof(float) * static_cast<size_t>(w));
            for (int64_t j = w; j < W; ++j)
                d[j] = 0.0f;
        }
    }
}

// Packs rows [i0, i0 + mc) x k [p0, p0 + kc) of op(A) into slivers of MR rows: sliver s holds
// op(A)(i0 + s*MR + r, p0 + k) at [s*MR*kc + k*MR + r]; rows past mc are zero.
template <class Kern>
void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
    constexpr int64_t MR = Kern::MR;
    for (int64_t s = 0; s < mc; s += MR) {
        const int64_t mr = std::min(MR, mc - s);
        if (ta)  // op(A)(i, k) = A[k*lda + i]
            pack_direct<MR>(A + p0 * lda + i0 + s, lda, mr, kc, dst + s * kc);
        else     // op(A)(i, k) = A[i*lda + k]
            pack_transposed<Kern, MR>(A + (i0 + s) * lda + p0, lda, mr, kc, dst + s * kc);
    }
}

// Packs k [p0, p0 + kc) x columns [j0, j0 + nc) of op(B) into slivers of NR columns: sliver t
// holds op(B)(p0 + k, j0 + t*NR + j) at [t*NR*kc + k*NR + j]; columns past nc are zero.
template <class Kern>
void pack_b(bool tb, const float* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
    constexpr int64_t NR = Kern::NR;
    for (int64_t t = 0; t < nc; t += NR) {
        const int64_t nr = std::min(NR, nc - t);
        if (tb)  // op(B)(k, j) = B[j*ldb + k], the forward product's weight rows
            pack_transposed<Kern, NR>(B + (j0 + t) * ldb + p0, ldb, nr, kc, dst + t * kc);
        else     // op(B)(k, j) = B[k*ldb + j]
            pack_direct<NR>(B + p0 * ldb + j0 + t, ldb, nr, kc, dst + t * kc);
    }
}

// The whole product with micro-kernel policy Kern:
//   Kern::MR, NR        the register tile;
//   Kern::KC, MC, NC    the cache blocks (MC a multiple of MR, NC of NR);
//   Kern::KB, transpose4(src, ld, d, W)
//                       d[k*W + r] = src[r*ld + k] for r < 4, k < KB (see pack_transposed);
//   Kern::tile(mr, nr, kc, a, b, c, ldc, acc)
//                       c[r*ldc + j] = (acc ? c[r*ldc + j] : 0) + sum_k a[k*MR + r] * b[k*NR + j]
//                       for r < mr <= MR, j < nr <= NR, touching nothing else of C.
// Rows [i0, i1) of C for one packed panel of B (kc x nc at column jc): row blocks of MC packed
// into the calling thread's A buffer, then every (B sliver, A sliver) tile.
template <class Kern>
void rows_on_panel(bool ta, const float* A, int64_t lda, int64_t i0, int64_t i1, int64_t pc, int64_t kc,
                   const float* bp, int64_t jc, int64_t nc, float* C, int64_t ldc, bool acc) {
    constexpr int64_t MR = Kern::MR, NR = Kern::NR, MC = Kern::MC;
    float* ap = sgemm_scratch(0, kc * round_up(std::min(i1 - i0, MC), MR));
    for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t mc = std::min(MC, i1 - ic);
        pack_a<Kern>(ta, A, lda, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR) {
            const int64_t nr = std::min(NR, nc - jr);
            const float* bs = bp + jr * kc;
            float* cj = C + ic * ldc + jc + jr;
            for (int64_t ir = 0; ir < mc; ir += MR)
                Kern::tile(std::min(MR, mc - ir), nr, kc, ap + ir * kc, bs, cj + ir * ldc, ldc, acc);
        }
    }
}

// What both drivers do before blocking: empty products, K = 0, and a beta other than 0 or 1
// (not used by slm, but cheap to honour: scale once, then accumulate). False when C is done.
inline bool prologue(int64_t M, int64_t N, int64_t K, float& beta, float* C, int64_t ldc) {
    if (M <= 0 || N <= 0)
        return false;
    if (beta != 0.0f && beta != 1.0f) {
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
                C[i * ldc + j] *= beta;
        beta = 1.0f;
    }
    if (K <= 0) {
        if (beta == 0.0f)
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < N; ++j)
                    C[i * ldc + j] = 0.0f;
        return false;
    }
    return true;
}

// The whole product on the calling thread, with micro-kernel policy Kern:
//   Kern::MR, NR        the register tile;
//   Kern::KC, MC, NC    the cache blocks (MC a multiple of MR, NC of NR);
//   Kern::KB, transpose4(src, ld, d, W)
//                       d[k*W + r] = src[r*ld + k] for r < 4, k < KB (see pack_transposed);
//   Kern::tile(mr, nr, kc, a, b, c, ldc, acc)
//                       c[r*ldc + j] = (acc ? c[r*ldc + j] : 0) + sum_k a[k*MR + r] * b[k*NR + j]
//                       for r < mr <= MR, j < nr <= NR, touching nothing else of C.
template <class Kern>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B, int64_t ldb,
          float beta, float* C, int64_t ldc) {
    constexpr int64_t NR = Kern::NR, KC = Kern::KC, MC = Kern::MC, NC = Kern::NC;
    static_assert(MC % Kern::MR == 0 && NC % NR == 0);
    if (!prologue(M, N, K, beta, C, ldc))
        return;
    if (M <= MC) {
        // One row block: each sliver of B is used by this block alone, so it is packed just
        // before its tiles into a buffer that stays in L1, instead of a whole panel being
        // written out and read back (what bounds few-row products such as decode-like ones).
        float* ap = sgemm_scratch(0, std::min(K, KC) * round_up(M, Kern::MR));
        float* bs = sgemm_scratch(1, std::min(K, KC) * NR);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            // The first K block overwrites C when beta is 0 (old values, NaN included, unread).
            const bool acc = pc > 0 || beta != 0.0f;
            pack_a<Kern>(ta, A, lda, 0, M, pc, kc, ap);
            for (int64_t jr = 0; jr < N; jr += NR) {
                const int64_t nr = std::min(NR, N - jr);
                pack_b<Kern>(tb, B, ldb, pc, kc, jr, nr, bs);
                for (int64_t ir = 0; ir < M; ir += Kern::MR)
                    Kern::tile(std::min(Kern::MR, M - ir), nr, kc, ap + ir * kc, bs, C + ir * ldc + jr, ldc, acc);
            }
        }
        return;
    }
    float* bp = sgemm_scratch(1, std::min(K, KC) * round_up(std::min(N, NC), NR));
    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = std::min(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            const bool acc = pc > 0 || beta != 0.0f;
            pack_b<Kern>(tb, B, ldb, pc, kc, jc, nc, bp);
            rows_on_panel<Kern>(ta, A, lda, 0, M, pc, kc, bp, jc, nc, C, ldc, acc);
        }
    }
}

// The same product over a thread pool, splitting the rows of C: each panel of B is packed once,
// by all threads together, into the calling thread's buffer, which every thread then reads for
// its row blocks (a 1-D split into independent products would pack all of B once per block).
// Row blocks are whole tiles, about four per thread, so a thread slowed by another process
// leaves its share to the others. sgemm.cpp calls it when there are two tiles of rows per thread.
template <class Kern>
void gemm_threaded(ThreadPool& pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                   const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    constexpr int64_t MR = Kern::MR, NR = Kern::NR, KC = Kern::KC, MC = Kern::MC, NC = Kern::NC;
    if (!prologue(M, N, K, beta, C, ldc))
        return;
    float* bp = sgemm_scratch(1, std::min(K, KC) * round_up(std::min(N, NC), NR));
    const int64_t n_blocks = 4 * int64_t{pool.size()};
    const int64_t bm = std::min(MC, round_up((M + n_blocks - 1) / n_blocks, MR));
    const int64_t n_row_blocks = (M + bm - 1) / bm;
    for (int64_t jc = 0; jc < N; jc += NC) {
        const int64_t nc = std::min(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            const int64_t kc = std::min(KC, K - pc);
            const bool acc = pc > 0 || beta != 0.0f;
            pool.parallel_for((nc + NR - 1) / NR, [&](int64_t t0, int64_t t1, int) {
                pack_b<Kern>(tb, B, ldb, pc, kc, jc + t0 * NR, std::min(nc, t1 * NR) - t0 * NR, bp + t0 * NR * kc);
            });
            pool.parallel_for(n_row_blocks, [&](int64_t b0, int64_t b1, int) {
                rows_on_panel<Kern>(ta, A, lda, b0 * bm, std::min(M, b1 * bm), pc, kc, bp, jc, nc, C, ldc, acc);
            });
        }
    }
}

} // namespace
} // namespace sgemm_blocked_impl
#endif  // SLM_SGEMM_BLOCKED_IMPL

} // namespace slm::kernels
