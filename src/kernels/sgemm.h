// sgemm.h - F32 matrix products for training (forward Y = X Wᵀ, backward dX = dY W, dW += dYᵀ X).
//
// Row-major, BLAS-like: C[M x N] = beta C + op(A) op(B), where op(A) is A (M x K, row stride lda)
// or, with ta, Aᵀ for A stored K x M; op(B) is B (K x N) or, with tb, Bᵀ for B stored N x K.
// beta is 0 (C overwritten; its old contents, even NaN, are ignored) or 1 (accumulate).
// Every ISA's kernel sits beside sgemm_ref, which is the portable fallback and the test oracle;
// results agree with it up to the order of float additions.
#pragma once

#include <cstdint>

namespace slm {
class ThreadPool;
}

namespace slm::kernels {

using SgemmFn = void (*)(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                         const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

void sgemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc);

// The kernel of one instruction set ("scalar", "avx2", "avx512", "neon"), or nullptr when this
// build or CPU has none; sgemm_kernel() is the one chosen at start-up (SLM_ISA honoured).
SgemmFn sgemm_for_isa(const char* isa);
SgemmFn sgemm_kernel();

// The product split over a thread pool (nullptr: the calling thread alone) in blocks of C, each
// computed by sgemm_kernel(). Same arguments as SgemmFn.
void sgemm(ThreadPool* pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

} // namespace slm::kernels
