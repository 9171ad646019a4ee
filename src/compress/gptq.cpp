#include "compress/gptq.h"

#include "compress/grid.h"
#include "compress/linalg.h"
#include "core/thread_pool.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace slm::compress {

namespace {

constexpr int64_t kRowsPerChunk = 16;  // rows updated together: each U block is read once per chunk

bool all_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (!std::isfinite(x[i])) return false;
    return true;
}

} // namespace

std::vector<uint8_t> gptq_quantize(const std::string& name, const float* w, int64_t n_out, int64_t n_in,
                                   const float* hessian, uint64_t n_rows, GGMLType type, const float* imatrix,
                                   const GptqParams& p, ThreadPool* pool) {
    return gptq_quantize(name, w, n_out, n_in, hessian, n_rows, type, imatrix, p, pool, nullptr);
}

std::vector<uint8_t> gptq_quantize(const std::string& name, const float* w, int64_t n_out, int64_t n_in,
                                   const float* hessian, uint64_t n_rows, GGMLType type, const float* imatrix,
                                   const GptqParams& p, ThreadPool* pool, std::vector<float>* values) {
    const std::string who = "gptq: " + name;
    const GridType& g = grid_type(type, who.c_str());
    if (n_out <= 0 || n_in <= 0 || n_in > (1 << 20) || n_out > (int64_t{1} << 30))
        fail("gptq: %s: bad shape %lld x %lld", name.c_str(), static_cast<long long>(n_out),
             static_cast<long long>(n_in));
    if (n_in % g.block != 0)
        fail("gptq: %s: rows of %lld are not a whole number of %s blocks of %d", name.c_str(),
             static_cast<long long>(n_in), type_name(type), g.block);
    if (!w || !hessian) fail("gptq: %s: no weights or no Hessian given", name.c_str());
    if (n_rows == 0) fail("gptq: %s: the Hessian was summed over 0 calibration rows", name.c_str());
    if (!(p.damp >= 0.0f) || !std::isfinite(p.damp)) fail("gptq: %s: field 'damp' is %g, not >= 0", name.c_str(), p.damp);
    if (p.block <= 0) fail("gptq: %s: field 'block' is %d, not > 0", name.c_str(), p.block);
    const auto n = n_in;
    const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
    if (!all_finite(hessian, nn)) fail("gptq: %s: the Hessian (X^T X) has a NaN or Inf", name.c_str());
    if (!all_finite(w, static_cast<size_t>(n_out) * static_cast<size_t>(n)))
        fail("gptq: %s: the weights have a NaN or Inf", name.c_str());
    if (imatrix) {
        for (int64_t i = 0; i < n; ++i)
            if (!std::isfinite(imatrix[i]) || imatrix[i] < 0.0f)
                fail("gptq: %s: imatrix entry %lld is %g, not a finite non-negative value", name.c_str(),
                     static_cast<long long>(i), imatrix[i]);
    }

    // H / n_rows in double (the scale cancels out of GPTQ's updates; it only keeps numbers tame).
    std::vector<double> h(nn);
    const double inv_rows = 1.0 / static_cast<double>(n_rows);
    for (size_t i = 0; i < nn; ++i) h[i] = hessian[i] * inv_rows;
    std::vector<char> dead(static_cast<size_t>(n), 0);
    std::vector<float> importance(static_cast<size_t>(n));
    double mean_diag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        double& d = h[static_cast<size_t>(i * n + i)];
        if (d < 0.0) fail("gptq: %s: Hessian diagonal %lld is %g < 0", name.c_str(), static_cast<long long>(i), d);
        importance[i] = imatrix ? imatrix[i] : static_cast<float>(d);
        if (d == 0.0) {
            dead[i] = 1;
            d = 1.0;
        }
        mean_diag += d;
    }
    mean_diag /= static_cast<double>(n);
    const double lambda = p.damp * mean_diag;
    for (int64_t i = 0; i < n; ++i) h[static_cast<size_t>(i * n + i)] += lambda;

    // Processing order: act-order takes the columns with the largest diag(H) first.
    std::vector<int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    if (p.act_order)
        std::stable_sort(perm.begin(), perm.end(),
                         [&](int64_t a, int64_t b) { return h[a * n + a] > h[b * n + b]; });
    std::vector<double> hp(nn);
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) hp[i * n + j] = h[perm[i] * n + perm[j]];
    h.clear();
    h.shrink_to_fit();
    const std::vector<double> U = inverse_upper_cholesky(std::move(hp), n, pool);
    if (U.empty())
        fail("gptq: %s: the damped Hessian is not positive definite (damp %g); raise the damping", name.c_str(),
             p.damp);

    // Lazy-update block: without act-order, whole groups, so a group is fully updated when its
    // grid is chosen at its first column.
    const int64_t G = g.block;
    const int64_t B = p.act_order ? p.block : std::max<int64_t>(G, (p.block + G - 1) / G * G);
    const size_t rs = row_size(type, n);
    std::vector<uint8_t> out(static_cast<size_t>(n_out) * rs);
    if (values) values->assign(static_cast<size_t>(n_out) * static_cast<size_t>(n), 0.0f);

    const int64_t n_chunks = (n_out + kRowsPerChunk - 1) / kRowsPerChunk;
    auto run_chunk = [&](int64_t chunk) {
        const int64_t r0 = chunk * kRowsPerChunk;
        const int64_t R = std::min(kRowsPerChunk, n_out - r0);
        std::vector<double> W(static_cast<size_t>(R * n));      // permuted column order
        std::vector<ElemGrid> eg(static_cast<size_t>(R * n));   // original column order
        std::vector<double> err(static_cast<size_t>(R * B));
        std::vector<float> tmp(static_cast<size_t>(G));
        for (int64_t r = 0; r < R; ++r)
            for (int64_t i = 0; i < n; ++i)
                W[r * n + i] = dead[perm[i]] ? 0.0 : w[(r0 + r) * n + perm[i]];
        auto choose = [&](int64_t r, int64_t o, const float* x) {  // grid of the group at column o
            uint8_t* blk = out.data() + (r0 + r) * rs + (o / G) * g.block_bytes;
            grid_choose(g, x, importance.data() + o, blk);
            grid_decode(g, blk, eg.data() + r * n + o);
        };
        if (p.act_order) {
            // Static grids from the original weights (dead columns zeroed).
            for (int64_t r = 0; r < R; ++r)
                for (int64_t o = 0; o < n; o += G) {
                    for (int64_t t = 0; t < G; ++t) tmp[t] = dead[o + t] ? 0.0f : w[(r0 + r) * n + o + t];
                    choose(r, o, tmp.data());
                }
        }
        for (int64_t i1 = 0; i1 < n; i1 += B) {
            const int64_t i2 = std::min(n, i1 + B);
            for (int64_t i = i1; i < i2; ++i) {
                const int64_t o = perm[i];
                const double* Ui = U.data() + i * n;
                for (int64_t r = 0; r < R; ++r) {
                    double* Wr = W.data() + r * n;
                    if (!p.act_order && o % G == 0) {
                        for (int64_t t = 0; t < G; ++t) tmp[t] = static_cast<float>(Wr[o + t]);
                        choose(r, o, tmp.data());
                    }
                    float v;
                    const int code = grid_snap(g, eg[r * n + o], static_cast<float>(Wr[i]), &v);
                    grid_set_code(g, out.data() + (r0 + r) * rs + (o / G) * g.block_bytes, static_cast<int>(o % G), code);
                    if (values) (*values)[(r0 + r) * n + o] = v;
                    const double e = (Wr[i] - v) / Ui[i];
                    for (int64_t k = i + 1; k < i2; ++k) Wr[k] -= e * Ui[k];
                    err[r * B + (i - i1)] = e;
                }
            }
            // The lazy update of the columns after the block: W[:, i2:] -= Err1 U[i1:i2, i2:].
            for (int64_t r = 0; r < R; ++r) {
                double* Wr = W.data() + r * n;
                for (int64_t i = i1; i < i2; ++i) {
                    const double e = err[r * B + (i - i1)];
                    const double* Ui = U.data() + i * n;
                    for (int64_t k = i2; k < n; ++k) Wr[k] -= e * Ui[k];
                }
            }
        }
    };
    if (pool && pool->size() > 1 && n_chunks > 1) {
        pool->parallel_for(n_chunks, [&](int64_t b, int64_t e, int) {
            for (int64_t c = b; c < e; ++c) run_chunk(c);
        });
    } else {
        for (int64_t c = 0; c < n_chunks; ++c) run_chunk(c);
    }
    return out;
}

} // namespace slm::compress
