// sgemm.cpp - the scalar reference F32 product, the ISA choice and the threaded split.
#include "kernels/sgemm.h"

#include "core/thread_pool.h"
#include "kernels/kernels.h"

#include <algorithm>
#include <cstring>

namespace slm::kernels {

void sgemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
               int64_t ldb, float beta, float* C, int64_t ldc) {
    for (int64_t i = 0; i < M; ++i) {
        float* c = C + i * ldc;
        if (beta == 0.0f)
            std::fill(c, c + N, 0.0f);
        for (int64_t k = 0; k < K; ++k) {
            const float a = ta ? A[k * lda + i] : A[i * lda + k];
            if (!tb) {
                const float* b = B + k * ldb;
                for (int64_t j = 0; j < N; ++j)
                    c[j] += a * b[j];
            } else {
                for (int64_t j = 0; j < N; ++j)
                    c[j] += a * B[j * ldb + k];
            }
        }
    }
}

SgemmFn sgemm_for_isa(const char* isa) {
    if (std::strcmp(isa, "scalar") == 0)
        return sgemm_ref;
    return nullptr;  // SIMD kernels: see the per-ISA files
}

SgemmFn sgemm_kernel() {
    static const SgemmFn fn = [] {
        SgemmFn f = sgemm_for_isa(isa_name());
        return f ? f : sgemm_ref;
    }();
    return fn;
}

void sgemm(ThreadPool* pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    const SgemmFn fn = sgemm_kernel();
    if (M <= 0 || N <= 0)
        return;
    const int n_threads = pool ? pool->size() : 1;
    if (n_threads <= 1 || M * N * K < (1 << 16)) {
        fn(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Split the longer side of C into blocks of 16 rows or 64 columns, so each block reads its
    // slice of one operand once.
    if (M >= N) {
        const int64_t bm = 16, nb = (M + bm - 1) / bm;
        pool->parallel_for(nb, [&](int64_t b0, int64_t b1, int) {
            const int64_t i0 = b0 * bm, i1 = std::min(M, b1 * bm);
            const float* a = ta ? A + i0 : A + i0 * lda;
            fn(ta, tb, i1 - i0, N, K, a, lda, B, ldb, beta, C + i0 * ldc, ldc);
        });
    } else {
        const int64_t bn = 64, nb = (N + bn - 1) / bn;
        pool->parallel_for(nb, [&](int64_t b0, int64_t b1, int) {
            const int64_t j0 = b0 * bn, j1 = std::min(N, b1 * bn);
            const float* b = tb ? B + j0 * ldb : B + j0;
            fn(ta, tb, M, j1 - j0, K, A, lda, b, ldb, beta, C + j0, ldc);
        });
    }
}

} // namespace slm::kernels
