// prune_kernels.cpp - the per-matrix pruning algorithms of slm/prune.h: magnitude, Wanda and
// SparseGPT, unstructured or N:M.
#include "slm/prune.h"

#include "core/thread_pool.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>
#include <vector>

namespace slm {

std::string SparsityPattern::str() const {
    if (!nm()) return "unstructured";
    return std::to_string(n) + ":" + std::to_string(m);
}

SparsityPattern parse_sparsity_pattern(const std::string& s) {
    if (s.empty() || s == "unstructured") return {};
    const size_t colon = s.find(':');
    auto number = [&](const std::string& t) -> long {
        char* end = nullptr;
        const long v = std::strtol(t.c_str(), &end, 10);
        if (t.empty() || end == t.c_str() || *end != '\0') return -1;
        return v;
    };
    if (colon == std::string::npos)
        fail("prune: field 'pattern' is '%s'; expected unstructured or N:M (N kept of every M, e.g. 2:4)", s.c_str());
    const long n = number(s.substr(0, colon)), m = number(s.substr(colon + 1));
    if (n <= 0 || m <= 0 || n >= m || m > 256)
        fail("prune: field 'pattern' is '%s'; N:M needs 0 < N < M <= 256 (N kept of every M, e.g. 2:4)", s.c_str());
    return {static_cast<int>(n), static_cast<int>(m)};
}

namespace prune {

namespace {

int64_t prune_count(int64_t n, double sparsity) {
    return std::min<int64_t>(n, static_cast<int64_t>(std::floor(static_cast<double>(n) * sparsity + 1e-6)));
}

void check_args(const char* what, int64_t n_out, int64_t n_in, float sparsity, SparsityPattern p) {
    if (n_out <= 0 || n_in <= 0) fail("prune %s: bad shape %lld x %lld", what, (long long)n_out, (long long)n_in);
    if (!(sparsity >= 0.0f && sparsity < 1.0f)) fail("prune %s: field 'sparsity' is %g, not in [0, 1)", what, sparsity);
    if (p.nm() && n_in % p.m != 0)
        fail("prune %s: field 'pattern' %s: the row length %lld is not a multiple of M = %d", what, p.str().c_str(),
             (long long)n_in, p.m);
}

// Zeroes the k entries of w[idx] with the lowest score (ties: lower index first, so results
// do not depend on the sort's internals).
void zero_lowest(float* w, const float* score, std::vector<int64_t>& idx, int64_t k) {
    if (k <= 0) return;
    auto less = [&](int64_t a, int64_t b) { return score[a] < score[b] || (score[a] == score[b] && a < b); };
    if (k < static_cast<int64_t>(idx.size())) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), less);
    for (int64_t i = 0; i < k; ++i) w[idx[i]] = 0.0f;
}

// N:M on one row given a score per weight: keeps the n best of each group of m.
void nm_row(float* w, const float* score, int64_t n_in, SparsityPattern p) {
    std::vector<int64_t> idx(p.m);
    for (int64_t g = 0; g < n_in; g += p.m) {
        std::iota(idx.begin(), idx.end(), g);
        zero_lowest(w, score, idx, p.m - p.n);
    }
}

} // namespace

void magnitude(float* w, int64_t n_out, int64_t n_in, float sparsity, SparsityPattern p) {
    check_args("magnitude", n_out, n_in, sparsity, p);
    const int64_t n = n_out * n_in;
    std::vector<float> score(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) score[i] = std::fabs(w[i]);
    if (p.nm()) {
        for (int64_t r = 0; r < n_out; ++r) nm_row(w + r * n_in, score.data() + r * n_in, n_in, p);
        return;
    }
    std::vector<int64_t> idx(static_cast<size_t>(n));
    std::iota(idx.begin(), idx.end(), 0);
    zero_lowest(w, score.data(), idx, prune_count(n, sparsity));
}

void wanda(float* w, int64_t n_out, int64_t n_in, const double* sum_x2, float sparsity, SparsityPattern p) {
    check_args("wanda", n_out, n_in, sparsity, p);
    std::vector<float> norm(static_cast<size_t>(n_in));
    for (int64_t j = 0; j < n_in; ++j) norm[j] = static_cast<float>(std::sqrt(std::max(0.0, sum_x2[j])));
    std::vector<float> score(static_cast<size_t>(n_in));
    std::vector<int64_t> idx(static_cast<size_t>(n_in));
    const int64_t k = prune_count(n_in, sparsity);
    for (int64_t r = 0; r < n_out; ++r) {
        float* row = w + r * n_in;
        for (int64_t j = 0; j < n_in; ++j) score[j] = std::fabs(row[j]) * norm[j];
        if (p.nm()) {
            nm_row(row, score.data(), n_in, p);
        } else {
            std::iota(idx.begin(), idx.end(), 0);
            zero_lowest(row, score.data(), idx, k);
        }
    }
}

namespace {

// In-place lower Cholesky of a symmetric positive definite n x n matrix (row-major, lower
// half used). Returns false if a pivot is not positive.
bool cholesky_lower(std::vector<double>& a, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
        if (!(d > 0.0)) return false;
        d = std::sqrt(d);
        a[j * n + j] = d;
        for (int64_t i = j + 1; i < n; ++i) {
            double s = a[i * n + j];
            for (int64_t k = 0; k < j; ++k) s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / d;
        }
        for (int64_t k = j + 1; k < n; ++k) a[j * n + k] = 0.0;
    }
    return true;
}

// The upper Cholesky factor U of H^-1 (H^-1 = U^T U), as SparseGPT/GPTQ use: row j of U holds
// the OBS update direction of column j over the columns after it, U_jj^2 = [H_{j:,j:}^-1]^-1...
// Computed as: H = L L^T; H^-1 = L^-T L^-1; then the upper factor of that.
std::vector<double> inverse_upper_factor(std::vector<double> h, int64_t n, const char* what) {
    if (!cholesky_lower(h, n)) fail("prune sparsegpt: %s: the damped Hessian is not positive definite", what);
    // Inverse of L (lower triangular), in place into li.
    std::vector<double> li(static_cast<size_t>(n * n), 0.0);
    for (int64_t j = 0; j < n; ++j) {
        li[j * n + j] = 1.0 / h[j * n + j];
        for (int64_t i = j + 1; i < n; ++i) {
            double s = 0.0;
            for (int64_t k = j; k < i; ++k) s += h[i * n + k] * li[k * n + j];
            li[i * n + j] = -s / h[i * n + i];
        }
    }
    // H^-1 = L^-T L^-1: (i, j) = sum_k li[k][i] li[k][j], k >= max(i, j).
    std::vector<double> inv(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j <= i; ++j) {
            double s = 0.0;
            for (int64_t k = i; k < n; ++k) s += li[k * n + i] * li[k * n + j];
            inv[i * n + j] = inv[j * n + i] = s;
        }
    // Upper factor U with H^-1 = U^T U: the lower Cholesky factor of the matrix with reversed
    // order, equivalently computed directly: U = chol(inv) upper, i.e. inv = U^T U.
    std::vector<double> u(static_cast<size_t>(n * n), 0.0);
    for (int64_t i = 0; i < n; ++i) {
        double d = inv[i * n + i];
        for (int64_t k = 0; k < i; ++k) d -= u[k * n + i] * u[k * n + i];
        if (!(d > 0.0)) fail("prune sparsegpt: %s: H^-1 is not positive definite (raise --damp)", what);
        d = std::sqrt(d);
        u[i * n + i] = d;
        for (int64_t j = i + 1; j < n; ++j) {
            double s = inv[i * n + j];
            for (int64_t k = 0; k < i; ++k) s -= u[k * n + i] * u[k * n + j];
            u[i * n + j] = s / d;
        }
    }
    return u;
}

} // namespace

void sparsegpt(float* w, int64_t n_out, int64_t n_in, const float* hessian, float sparsity, SparsityPattern p,
               const SparseGptParams& sp, ThreadPool* pool) {
    check_args("sparsegpt", n_out, n_in, sparsity, p);
    if (sp.block <= 0) fail("prune sparsegpt: field 'block' is %d, not positive", sp.block);
    if (!(sp.damp > 0.0f)) fail("prune sparsegpt: field 'damp' is %g, not positive", sp.damp);
    const int64_t n = n_in;
    std::vector<double> h(static_cast<size_t>(n * n));
    for (int64_t i = 0; i < n * n; ++i) h[i] = hessian[i];
    // Columns no calibration token ever reached carry no information: zero them (as the
    // reference does) and make H invertible there.
    std::vector<bool> dead(static_cast<size_t>(n), false);
    double mean_diag = 0.0;
    for (int64_t j = 0; j < n; ++j) {
        if (h[j * n + j] == 0.0) {
            dead[j] = true;
            h[j * n + j] = 1.0;
        }
        mean_diag += h[j * n + j];
    }
    mean_diag /= static_cast<double>(n);
    for (int64_t j = 0; j < n; ++j) h[j * n + j] += sp.damp * mean_diag;
    for (int64_t r = 0; r < n_out; ++r)
        for (int64_t j = 0; j < n; ++j)
            if (dead[j]) w[r * n + j] = 0.0f;
    const std::vector<double> u = inverse_upper_factor(std::move(h), n, "matrix");

    // Work in double: the OBS updates accumulate over thousands of columns.
    std::vector<double> wd(static_cast<size_t>(n_out * n));
    for (int64_t i = 0; i < n_out * n; ++i) wd[i] = w[i];
    std::vector<uint8_t> mask(static_cast<size_t>(n_out * n), 0);  // 1 = pruned
    // N:M groups never straddle a block: the block is a multiple of M.
    const int64_t bs = p.nm() ? (sp.block + p.m - 1) / p.m * p.m : sp.block;
    std::vector<float> score;
    std::vector<int64_t> idx;
    for (int64_t i1 = 0; i1 < n; i1 += bs) {
        const int64_t i2 = std::min(n, i1 + bs), cnt = i2 - i1;
        if (!p.nm()) {
            // Adaptive mask of this block over all rows: lowest w^2 / U_jj^2.
            score.resize(static_cast<size_t>(n_out * cnt));
            for (int64_t r = 0; r < n_out; ++r)
                for (int64_t j = 0; j < cnt; ++j) {
                    const double d = u[(i1 + j) * n + i1 + j], v = wd[r * n + i1 + j];
                    score[r * cnt + j] = static_cast<float>(v * v / (d * d));
                }
            idx.resize(score.size());
            std::iota(idx.begin(), idx.end(), 0);
            std::vector<float> ones(score.size(), 1.0f);
            zero_lowest(ones.data(), score.data(), idx, prune_count(static_cast<int64_t>(score.size()), sparsity));
            for (int64_t r = 0; r < n_out; ++r)
                for (int64_t j = 0; j < cnt; ++j) mask[r * n + i1 + j] = ones[r * cnt + j] == 0.0f;
        }
        // Rows are independent from here: OBS within the block, then the lazy update of the
        // columns after it.
        auto rows = [&](int64_t r0, int64_t r1, int) {
            std::vector<double> err(static_cast<size_t>(cnt));
            std::vector<float> sc(static_cast<size_t>(std::max(1, p.m))), one(sc.size());
            std::vector<int64_t> ix(sc.size());
            for (int64_t r = r0; r < r1; ++r) {
                double* wr = wd.data() + r * n;
                uint8_t* mr = mask.data() + r * n;
                for (int64_t j = i1; j < i2; ++j) {
                    if (p.nm() && (j - i1) % p.m == 0) {
                        // N:M: choose this group's mask now, on the updated weights.
                        const int64_t g = p.m;
                        for (int64_t t = 0; t < g; ++t) {
                            const double d = u[(j + t) * n + j + t];
                            sc[t] = static_cast<float>(wr[j + t] * wr[j + t] / (d * d));
                            one[t] = 1.0f;
                        }
                        std::iota(ix.begin(), ix.begin() + g, 0);
                        std::vector<int64_t> sub(ix.begin(), ix.begin() + g);
                        zero_lowest(one.data(), sc.data(), sub, p.m - p.n);
                        for (int64_t t = 0; t < g; ++t) mr[j + t] = one[t] == 0.0f;
                    }
                    const double d = u[j * n + j];
                    const double q = mr[j] ? 0.0 : wr[j];
                    const double e = (wr[j] - q) / d;
                    wr[j] = q;
                    err[j - i1] = e;
                    if (e != 0.0)
                        for (int64_t k = j + 1; k < i2; ++k) wr[k] -= e * u[j * n + k];
                }
                for (int64_t j = i1; j < i2; ++j) {
                    const double e = err[j - i1];
                    if (e == 0.0) continue;
                    const double* uj = u.data() + j * n;
                    for (int64_t k = i2; k < n; ++k) wr[k] -= e * uj[k];
                }
            }
        };
        if (pool) pool->parallel_for(n_out, rows);
        else rows(0, n_out, 0);
    }
    for (int64_t i = 0; i < n_out * n; ++i) w[i] = mask[i] ? 0.0f : static_cast<float>(wd[i]);
}

std::vector<double> owl_sparsities(const std::vector<double>& d, double target, double lambda) {
    std::vector<double> s(d.size(), target);
    if (d.empty()) return s;
    const auto [lo, hi] = std::minmax_element(d.begin(), d.end());
    if (*hi - *lo <= 0.0) return s;
    std::vector<double> scaled(d.size());
    double mean = 0.0;
    for (size_t i = 0; i < d.size(); ++i) {
        scaled[i] = (d[i] - *lo) / (*hi - *lo) * lambda * 2.0;
        mean += scaled[i];
    }
    mean /= static_cast<double>(d.size());
    // More outliers -> keep more weights (lower sparsity).
    for (size_t i = 0; i < d.size(); ++i) s[i] = std::clamp(target - (scaled[i] - mean), 0.0, 0.99);
    return s;
}

} // namespace prune
} // namespace slm
