// The F32 products of kernels/sgemm.h: every ISA's kernel this build and CPU have (and the scalar
// reference itself) against the product computed in double, within the worst-case bound of float
// summation (so any summation order passes and any wrong or missing term fails), and against
// sgemm_ref; for all four transpose cases, beta 0 and 1, sizes that hit every edge of the
// register tiles and of the cache blocks, row strides larger than the rows, NaN in C with beta 0
// (must be ignored), and C's padding between N and ldc (must not be touched). Then the threaded
// sgemm() over a ThreadPool, splitting rows and splitting columns.
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/sgemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace slm;
using namespace slm::kernels;

namespace {

struct Isa {
    const char* name;
    SgemmFn fn;
};

std::vector<Isa> all_isas() {
    std::vector<Isa> out;
    for (const char* isa : {"scalar", "avx2", "avx512", "neon"})
        if (SgemmFn fn = sgemm_for_isa(isa))
            out.push_back({isa, fn});
    return out;
}

constexpr float kSentinel = 12345.0f;

struct Case {
    bool ta, tb;
    int64_t M, N, K;
    int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // row stride = row length + pad
    float beta = 0.0f;
    bool nan_c = false;  // beta 0: C starts as NaN
};

std::string describe(const Case& c) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "ta=%d tb=%d M=%lld N=%lld K=%lld pads=%lld,%lld,%lld beta=%g nan=%d", c.ta, c.tb,
                  static_cast<long long>(c.M), static_cast<long long>(c.N), static_cast<long long>(c.K),
                  static_cast<long long>(c.pad_a), static_cast<long long>(c.pad_b), static_cast<long long>(c.pad_c),
                  c.beta, c.nan_c);
    return buf;
}

// Operands laid out as the case says, the C that goes in, and the exact product in double with
// the bound on the float error: every float summation order of beta*C + sum_k a*b is within
// gamma_(K+1) * (|beta*C| + sum_k |a*b|) of it (gamma_n ~ n * 2^-24).
struct Problem {
    Case c;
    int64_t lda, ldb, ldc;
    std::vector<float> A, B, C0;
    std::vector<double> exact, bound;

    Problem(const Case& cs, std::mt19937& rng) : c(cs) {
        const int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
        const int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
        lda = a_cols + c.pad_a;
        ldb = b_cols + c.pad_b;
        ldc = c.N + c.pad_c;
        std::normal_distribution<float> d(0.0f, 1.0f);
        // Padding of A and B holds huge values: a kernel that reads past a row shows it at once.
        A.assign(static_cast<size_t>(std::max<int64_t>(a_rows * lda, 1)), 1e30f);
        B.assign(static_cast<size_t>(std::max<int64_t>(b_rows * ldb, 1)), 1e30f);
        for (int64_t r = 0; r < a_rows; ++r)
            for (int64_t k = 0; k < a_cols; ++k)
                A[r * lda + k] = d(rng);
        for (int64_t r = 0; r < b_rows; ++r)
            for (int64_t k = 0; k < b_cols; ++k)
                B[r * ldb + k] = d(rng);
        C0.assign(static_cast<size_t>(c.M * ldc), kSentinel);
        for (int64_t i = 0; i < c.M; ++i)
            for (int64_t j = 0; j < c.N; ++j)
                C0[i * ldc + j] = c.nan_c ? std::numeric_limits<float>::quiet_NaN() : d(rng);
        exact.assign(static_cast<size_t>(c.M * c.N), 0.0);
        bound.assign(static_cast<size_t>(c.M * c.N), 0.0);
        const double gamma = static_cast<double>(c.K + 2) * std::ldexp(1.0, -24) * 1.01;
        for (int64_t i = 0; i < c.M; ++i)
            for (int64_t j = 0; j < c.N; ++j) {
                double s = 0.0, abs_s = 0.0;
                if (c.beta != 0.0f) {
                    s = static_cast<double>(c.beta) * C0[i * ldc + j];
                    abs_s = std::fabs(s);
                }
                for (int64_t k = 0; k < c.K; ++k) {
                    const double p = static_cast<double>(a(i, k)) * b(k, j);
                    s += p;
                    abs_s += std::fabs(p);
                }
                exact[i * c.N + j] = s;
                bound[i * c.N + j] = gamma * abs_s + 1e-30;
            }
    }
    float a(int64_t i, int64_t k) const { return c.ta ? A[k * lda + i] : A[i * lda + k]; }
    float b(int64_t k, int64_t j) const { return c.tb ? B[j * ldb + k] : B[k * ldb + j]; }

    std::vector<float> run(SgemmFn fn) const {
        std::vector<float> C = C0;
        fn(c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
        return C;
    }
    std::vector<float> run_threaded(ThreadPool* pool) const {
        std::vector<float> C = C0;
        sgemm(pool, c.ta, c.tb, c.M, c.N, c.K, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
        return C;
    }

    // Every element within the bound of the exact value (twice the bound of sgemm_ref's result),
    // and C's padding untouched. Stops at the first failure, which says where.
    ::testing::AssertionResult check(const std::vector<float>& got, const std::vector<float>* ref) const {
        for (int64_t i = 0; i < c.M; ++i) {
            for (int64_t j = 0; j < c.N; ++j) {
                const float g = got[i * ldc + j];
                const double e = exact[i * c.N + j], tol = bound[i * c.N + j];
                if (!(std::fabs(g - e) <= tol))
                    return ::testing::AssertionFailure() << "C[" << i << "][" << j << "] = " << g << ", exact " << e
                                                         << ", tolerance " << tol;
                if (ref && !(std::fabs(g - (*ref)[i * ldc + j]) <= 2 * tol))
                    return ::testing::AssertionFailure() << "C[" << i << "][" << j << "] = " << g << ", sgemm_ref "
                                                         << (*ref)[i * ldc + j];
            }
            for (int64_t j = c.N; j < ldc; ++j)
                if (std::memcmp(&got[i * ldc + j], &kSentinel, sizeof(float)) != 0)
                    return ::testing::AssertionFailure() << "padding C[" << i << "][" << j << "] written: " << got[i * ldc + j];
        }
        return ::testing::AssertionSuccess();
    }
};

void check_all_isas(const Case& cs, std::mt19937& rng) {
    const Problem p(cs, rng);
    const std::vector<float> ref = p.run(sgemm_ref);
    ASSERT_TRUE(p.check(ref, nullptr)) << "sgemm_ref: " << describe(cs);
    for (const Isa& isa : all_isas())
        if (isa.fn != sgemm_ref)  // "scalar" is the reference itself
            ASSERT_TRUE(p.check(p.run(isa.fn), &ref)) << isa.name << ": " << describe(cs);
}

} // namespace

TEST(Sgemm, ChosenIsaHasAKernel) {
    // The ISA the traits tables run has its sgemm (scalar, avx2 and avx512 on x86, neon on arm):
    // a SIMD kernel missing from sgemm_for_isa would silently fall back to the reference.
    EXPECT_NE(sgemm_for_isa(isa_name()), nullptr) << isa_name();
    EXPECT_EQ(sgemm_for_isa("scalar"), &sgemm_ref);
    EXPECT_EQ(sgemm_for_isa("sse9"), nullptr);
    for (const Isa& isa : all_isas())
        std::printf("sgemm kernel: %s\n", isa.name);
}

// Small sizes across every remainder of the tiles (MR up to 12, NR up to 32), with and without
// padded strides, both betas, NaN in C for beta 0.
TEST(Sgemm, SmallSizesAllTransposes) {
    std::mt19937 rng(1);
    const int64_t mn[] = {1, 2, 5, 8, 13, 16, 31, 33, 70};
    const int64_t ks[] = {1, 3, 17, 64, 70};
    int n = 0;
    for (int t = 0; t < 4; ++t)
        for (int64_t M : mn)
            for (int64_t N : mn)
                for (int64_t K : ks) {
                    Case c{(t & 1) != 0, (t & 2) != 0, M, N, K};
                    ++n;
                    c.beta = n % 2 ? 1.0f : 0.0f;
                    c.nan_c = c.beta == 0.0f && n % 4 == 0;
                    if (n % 3 == 0)
                        c.pad_a = 3, c.pad_b = 5, c.pad_c = 2;
                    check_all_isas(c, rng);
                    if (HasFatalFailure())
                        return;
                }
}

// Every M and N from 1 to 70 (K varying with them): every row and column count of a last tile.
TEST(Sgemm, EverySizeTo70) {
    std::mt19937 rng(2);
    for (int64_t s = 1; s <= 70; ++s)
        for (int t = 0; t < 4; ++t) {
            Case c{(t & 1) != 0, (t & 2) != 0, s, (s * 37) % 70 + 1, (s * 13) % 70 + 1};
            c.beta = (s + t) % 2 ? 1.0f : 0.0f;
            c.nan_c = c.beta == 0.0f;
            c.pad_a = s % 3, c.pad_b = s % 5, c.pad_c = s % 2;
            check_all_isas(c, rng);
            if (HasFatalFailure())
                return;
            std::swap(c.M, c.N);
            check_all_isas(c, rng);
            if (HasFatalFailure())
                return;
        }
}

// Sizes past the cache blocks: K over several K blocks (the first overwrites C when beta is 0,
// the others accumulate), M over several row blocks, N over several column panels; and K = 1,
// N = 1, M = 1 (vector products).
TEST(Sgemm, BiggerSizesAllTransposes) {
    std::mt19937 rng(3);
    struct Size {
        int64_t M, N, K;
    };
    const Size sizes[] = {{257, 129, 300}, {400, 40, 20}, {5, 3100, 3}, {130, 70, 600}, {1, 300, 257},
                          {300, 1, 257},   {200, 190, 1}, {1, 1, 1000}};
    for (const Size& s : sizes)
        for (int t = 0; t < 4; ++t)
            for (float beta : {0.0f, 1.0f}) {
                Case c{(t & 1) != 0, (t & 2) != 0, s.M, s.N, s.K};
                c.beta = beta;
                c.nan_c = beta == 0.0f;
                c.pad_a = 1, c.pad_b = 4, c.pad_c = 3;
                check_all_isas(c, rng);
                if (HasFatalFailure())
                    return;
            }
}

// K = 0: C = beta C (zeros for beta 0, even over NaN; unchanged for beta 1).
TEST(Sgemm, EmptyK) {
    for (const Isa& isa : all_isas())
        for (float beta : {0.0f, 1.0f}) {
            std::vector<float> C(12, std::numeric_limits<float>::quiet_NaN());
            if (beta == 1.0f)
                for (size_t i = 0; i < C.size(); ++i)
                    C[i] = static_cast<float>(i);
            const float dummy = 0.0f;
            isa.fn(false, true, 3, 4, 0, &dummy, 1, &dummy, 1, beta, C.data(), 4);
            for (size_t i = 0; i < C.size(); ++i)
                EXPECT_EQ(C[i], beta == 0.0f ? 0.0f : static_cast<float>(i)) << isa.name << " beta " << beta;
        }
}

// The threaded product against the exact one, for every transpose case and both betas: the
// SIMD kernels' shared-panel driver when there are rows enough, else sgemm_kernel() on blocks of
// rows or of columns; nullptr and a 1-thread pool run inline.
TEST(Sgemm, ThreadedMatchesReference) {
    std::mt19937 rng(4);
    ThreadPool pool3(3), pool1(1);
    struct Size {
        int64_t M, N, K;
    };
    // Rows enough to share B's packed panels between threads (several K blocks, several column
    // panels, a ragged last row block), and too few rows (the split into independent products,
    // of columns or of rows). Each is above sgemm()'s threshold for threading (2^20 products).
    const Size sizes[] = {{301, 96, 64}, {150, 40, 700}, {97, 3170, 5}, {200, 203, 50},
                          {7, 700, 300},  {64, 64, 300}};
    for (const Size& s : sizes)
        for (int t = 0; t < 4; ++t)
            for (float beta : {0.0f, 1.0f}) {
                Case c{(t & 1) != 0, (t & 2) != 0, s.M, s.N, s.K};
                c.beta = beta;
                c.nan_c = beta == 0.0f;
                c.pad_c = 5;
                const Problem p(c, rng);
                const std::vector<float> ref = p.run(sgemm_ref);
                ASSERT_TRUE(p.check(p.run_threaded(&pool3), &ref)) << "3 threads: " << describe(c);
                ASSERT_TRUE(p.check(p.run_threaded(&pool1), &ref)) << "1 thread: " << describe(c);
                ASSERT_TRUE(p.check(p.run_threaded(nullptr), &ref)) << "no pool: " << describe(c);
            }
}
