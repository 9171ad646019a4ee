#include "compress/linalg.h"

#include "core/thread_pool.h"

#include <cmath>

namespace slm::compress {

namespace {

// Runs fn(i) for i in [0, n), over the pool when the work is worth it.
template <class F>
void for_each_row(int64_t n, int64_t cost_per_row, ThreadPool* pool, const F& fn) {
    if (pool && pool->size() > 1 && n * cost_per_row > (1 << 16)) {
        pool->parallel_for(n, [&](int64_t b, int64_t e, int) {
            for (int64_t i = b; i < e; ++i) fn(i);
        });
    } else {
        for (int64_t i = 0; i < n; ++i) fn(i);
    }
}

// Four running sums: without -ffast-math a single one is a serial chain the compiler may not
// vectorize, and these dots are all of GPTQ's O(n^3) work.
double dot(const double* a, const double* b, int64_t n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; ++k) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

} // namespace

bool cholesky_lower(double* a, int64_t n, ThreadPool* pool) {
    // Row-oriented (Cholesky-Crout): L[i][j] needs rows i and j up to column j, contiguous.
    for (int64_t j = 0; j < n; ++j) {
        double* rj = a + j * n;
        const double d = rj[j] - dot(rj, rj, j);
        if (!(d > 0.0) || !std::isfinite(d)) return false;
        const double ljj = std::sqrt(d);
        rj[j] = ljj;
        for (int64_t k = j + 1; k < n; ++k) rj[k] = 0.0;
        for_each_row(n - j - 1, j + 1, pool, [&](int64_t t) {
            double* ri = a + (j + 1 + t) * n;
            ri[j] = (ri[j] - dot(ri, rj, j)) / ljj;
        });
    }
    return true;
}

std::vector<double> inverse_upper_cholesky(std::vector<double> h, int64_t n, ThreadPool* pool) {
    if (!cholesky_lower(h.data(), n, pool)) return {};
    const double* L = h.data();
    // M = (L^-1)^T, upper: column c of L^-1 by forward substitution is row c of M.
    std::vector<double> m(static_cast<size_t>(n * n), 0.0);
    for_each_row(n, n * n / 2 + 1, pool, [&](int64_t c) {
        double* x = m.data() + c * n;  // x[i] = (L^-1)[i][c], zero for i < c
        x[c] = 1.0 / L[c * n + c];
        for (int64_t i = c + 1; i < n; ++i) {
            const double* li = L + i * n;
            x[i] = -dot(li + c, x + c, i - c) / li[i];
        }
    });
    // H^-1 = L^-T L^-1 = M M^T: (i, j) is the dot of rows i and j of M over k >= max(i, j).
    std::vector<double>& hinv = h;  // reuse L's storage
    for_each_row(n, n * n / 2 + 1, pool, [&](int64_t i) {
        const double* mi = m.data() + i * n;
        for (int64_t j = i; j < n; ++j) {
            const double* mj = m.data() + j * n;
            hinv[i * n + j] = dot(mi + j, mj + j, n - j);
        }
    });
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) hinv[i * n + j] = hinv[j * n + i];
    if (!cholesky_lower(hinv.data(), n, pool)) return {};
    // U = L2^T.
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < i; ++j) {
            hinv[j * n + i] = hinv[i * n + j];
            hinv[i * n + j] = 0.0;
        }
    return std::move(hinv);
}

} // namespace slm::compress
