// sgemm.cpp - the scalar reference F32 product, the ISA choice and the threaded split.
#include "kernels/sgemm.h"

#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/sgemm_blocked.h"

#include <algorithm>
#include <cstring>
#include <vector>

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

float* sgemm_scratch(int slot, int64_t n) {
    thread_local std::vector<float> buffers[2];
    std::vector<float>& v = buffers[slot];
    if (v.size() < static_cast<size_t>(n) + 16)
        v.resize(static_cast<size_t>(n) + 16);
    const auto addr = reinterpret_cast<uintptr_t>(v.data());
    return v.data() + ((64 - (addr & 63)) & 63) / sizeof(float);
}

// An ISA's kernel exists when the build compiled it and dispatch.cpp found the CPU able to run
// that ISA (traits_for_isa answers both: it has a table for it, F32 included).
SgemmFn sgemm_for_isa(const char* isa) {
    if (std::strcmp(isa, "scalar") == 0)
        return sgemm_ref;
    const bool runs = traits_for_isa(isa, GGMLType::F32) != nullptr;
#if defined(SLM_HAVE_X86_KERNELS)
    if (std::strcmp(isa, "avx2") == 0)
        return runs ? avx2::sgemm_blocked : nullptr;
    if (std::strcmp(isa, "avx512") == 0)
        return runs ? avx512::sgemm_blocked : nullptr;
#endif
#if defined(SLM_HAVE_ARM_KERNELS)
    if (std::strcmp(isa, "neon") == 0)
        return runs ? neon::sgemm_blocked : nullptr;
#endif
    (void)runs;
    return nullptr;
}

namespace {

using SgemmThreadedFn = void (*)(ThreadPool& pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A,
                                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The kernel chosen at start-up and, for the blocked SIMD kernels, their pool-sharing driver.
struct Chosen {
    SgemmFn fn = sgemm_ref;
    SgemmThreadedFn threaded = nullptr;
    int64_t mr = 1;  // the kernel's tile height
};

const Chosen& chosen() {
    static const Chosen c = [] {
        Chosen r;
        if (SgemmFn f = sgemm_for_isa(isa_name()))
            r.fn = f;
#if defined(SLM_HAVE_X86_KERNELS)
        if (r.fn == avx2::sgemm_blocked)
            r.threaded = avx2::sgemm_threaded, r.mr = 6;
        if (r.fn == avx512::sgemm_blocked)
            r.threaded = avx512::sgemm_threaded, r.mr = 12;
#endif
#if defined(SLM_HAVE_ARM_KERNELS)
        if (r.fn == neon::sgemm_blocked)
            r.threaded = neon::sgemm_threaded, r.mr = 8;
#endif
        return r;
    }();
    return c;
}

} // namespace

SgemmFn sgemm_kernel() { return chosen().fn; }

void sgemm(ThreadPool* pool, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    const Chosen& k = chosen();
    if (M <= 0 || N <= 0)
        return;
    const int n_threads = pool ? pool->size() : 1;
    // Below a million multiply-adds (~10-20 us on one core), waking the workers and waiting for
    // the last of them costs about what it saves.
    if (n_threads <= 1 || M * N * K < (int64_t{1} << 20)) {
        k.fn(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Enough rows for two tiles per thread: split the rows, the threads sharing each packed
    // panel of B (nothing is packed twice).
    if (k.threaded && M >= 2 * k.mr * n_threads) {
        k.threaded(*pool, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    // Otherwise (few rows, as in decode-like shapes, or the scalar reference) independent
    // products on blocks of C, each packing the whole of the other operand: split the longer
    // side into about two blocks per thread (so a thread slowed by another process leaves its
    // second block to the others), each a multiple of every kernel's tile (rows: 6 AVX2, 12
    // AVX-512, 8 NEON; columns: 16, 32, 12) so only the last block has a ragged edge.
    constexpr int64_t kRowQuantum = 24, kColQuantum = 96;
    const int64_t n_blocks = 2 * int64_t{n_threads};
    auto block_size = [&](int64_t n, int64_t quantum) { return ((n + n_blocks - 1) / n_blocks + quantum - 1) / quantum * quantum; };
    if (M >= N) {
        const int64_t bm = block_size(M, kRowQuantum);
        const int64_t nb = (M + bm - 1) / bm;
        pool->parallel_for(nb, [&](int64_t b0, int64_t b1, int) {
            const int64_t i0 = b0 * bm, i1 = std::min(M, b1 * bm);
            const float* a = ta ? A + i0 : A + i0 * lda;
            k.fn(ta, tb, i1 - i0, N, K, a, lda, B, ldb, beta, C + i0 * ldc, ldc);
        });
    } else {
        const int64_t bn = block_size(N, kColQuantum);
        const int64_t nb = (N + bn - 1) / bn;
        pool->parallel_for(nb, [&](int64_t b0, int64_t b1, int) {
            const int64_t j0 = b0 * bn, j1 = std::min(N, b1 * bn);
            const float* b = tb ? B + j0 * ldb : B + j0;
            k.fn(ta, tb, M, j1 - j0, K, A, lda, b, ldb, beta, C + j0, ldc);
        });
    }
}

} // namespace slm::kernels
