// The training operations (src/train/ops.cpp): each forward against a plain double-precision
// formula written here, each backward against central finite differences of its forward, at odd
// sizes (24 features, 7 positions, 3 query heads sharing 1 K/V head, ...). The probe loss is
// L = sum(y * r) for a fixed random r, so dL/dy = r is what the backward receives.
#include "core/thread_pool.h"
#include "train/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

namespace slm {
namespace {

namespace ops = train_ops;
using Vec = std::vector<float>;

Vec randn(size_t n, uint32_t seed, float std = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, std);
    Vec v(n);
    for (float& x : v) x = d(rng);
    return v;
}

double dot(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * double(b[i]);
    return s;
}

// Compares an analytic gradient with central differences of f (which reads x) on every element
// of x (or `max_checks` spread ones). Step h relative to the element's size; float forward
// passes, so the tolerance is a relative norm over the vector plus a loose element bound.
void check_grad(const char* what, Vec& x, const Vec& grad, const std::function<double()>& f, float h = 1e-2f,
                size_t max_checks = 100000) {
    ASSERT_EQ(x.size(), grad.size());
    double num2 = 0, diff2 = 0, worst = 0;
    size_t worst_i = 0;
    const size_t step = std::max<size_t>(1, x.size() / max_checks);
    for (size_t i = 0; i < x.size(); i += step) {
        const float x0 = x[i];
        const float hi = h * std::max(1.0f, std::fabs(x0));
        x[i] = x0 + hi;
        const double fp = f();
        x[i] = x0 - hi;
        const double fm = f();
        x[i] = x0;
        const double num = (fp - fm) / (double(x0 + hi) - double(x0 - hi));
        const double d = num - grad[i];
        num2 += num * num;
        diff2 += d * d;
        const double rel = std::fabs(d) / (1e-3 + std::fabs(num));
        if (rel > worst) worst = rel, worst_i = i;
    }
    EXPECT_LT(std::sqrt(diff2), 2e-3 * std::sqrt(num2) + 1e-6) << what;
    EXPECT_LT(worst, 5e-2) << what << ": element " << worst_i << " analytic " << grad[worst_i];
}

TEST(TrainOps, Embedding) {
    const int64_t V = 11, E = 24, n = 7;
    const std::vector<int32_t> tok = {3, 0, 10, 3, 5, 3, 0};
    Vec w = randn(V * E, 1), r = randn(n * E, 2), y(n * E);
    ops::embedding_forward(tok.data(), n, w.data(), E, y.data(), nullptr);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t c = 0; c < E; ++c) ASSERT_EQ(y[t * E + c], w[tok[t] * E + c]);
    ThreadPool pool(2);
    Vec dw(V * E, 0.5f);  // accumulates onto what is there
    ops::embedding_backward(tok.data(), n, r.data(), E, dw.data(), &pool);
    for (float& g : dw) g -= 0.5f;
    check_grad("embedding dW", w, dw, [&] {
        ops::embedding_forward(tok.data(), n, w.data(), E, y.data(), nullptr);
        return dot(y, r);
    });
}

TEST(TrainOps, RmsNorm) {
    const int64_t rows = 7, E = 24;
    const float eps = 1e-5f;
    Vec x = randn(rows * E, 3), w = randn(E, 4), r = randn(rows * E, 5), y(rows * E), rstd(rows);
    for (float& v : w) v += 1.0f;
    ops::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, E, eps, nullptr);
    for (int64_t i = 0; i < rows; ++i) {
        double ms = 0;
        for (int64_t c = 0; c < E; ++c) ms += double(x[i * E + c]) * x[i * E + c];
        const double s = 1.0 / std::sqrt(ms / E + eps);
        for (int64_t c = 0; c < E; ++c) EXPECT_NEAR(y[i * E + c], x[i * E + c] * s * w[c], 1e-5);
    }
    ThreadPool pool(2);
    Vec dx(rows * E), dw(E, 0.0f);
    ops::rmsnorm_backward(r.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), rows, E, false, &pool);
    auto f = [&] {
        ops::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, E, eps, nullptr);
        return dot(y, r);
    };
    check_grad("rmsnorm dx", x, dx, f);
    check_grad("rmsnorm dw", w, dw, f);
    // accumulate adds to dx
    Vec dx2(rows * E, 1.0f);
    ops::rmsnorm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, E, eps, nullptr);
    ops::rmsnorm_backward(r.data(), x.data(), w.data(), rstd.data(), dx2.data(), nullptr, rows, E, true, &pool);
    for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx2[i], dx[i] + 1.0f, 1e-5);
}

TEST(TrainOps, Matmul) {
    const int64_t rows = 7, n_in = 24, n_out = 13;
    Vec x = randn(rows * n_in, 6), w = randn(n_out * n_in, 7), r = randn(rows * n_out, 8), y(rows * n_out);
    ThreadPool pool(2);
    ops::matmul_forward(x.data(), w.data(), y.data(), rows, n_in, n_out, &pool);
    for (int64_t i = 0; i < rows; ++i)
        for (int64_t o = 0; o < n_out; ++o) {
            double s = 0;
            for (int64_t k = 0; k < n_in; ++k) s += double(x[i * n_in + k]) * w[o * n_in + k];
            EXPECT_NEAR(y[i * n_out + o], s, 1e-4);
        }
    Vec dx(rows * n_in), dw(n_out * n_in, 0.0f);
    ops::matmul_backward(r.data(), x.data(), w.data(), dx.data(), dw.data(), rows, n_in, n_out, false, &pool);
    auto f = [&] {
        ops::matmul_forward(x.data(), w.data(), y.data(), rows, n_in, n_out, nullptr);
        return dot(y, r);
    };
    check_grad("matmul dx", x, dx, f);
    check_grad("matmul dW", w, dw, f);
}

TEST(TrainOps, Rope) {
    const int64_t B = 2, T = 7, H = 3, hd = 8, rows = B * T;
    std::vector<float> table;
    ops::rope_table(table, T, hd, 10000.0f);
    Vec x = randn(rows * H * hd, 9), r = randn(rows * H * hd, 10);
    Vec y = x;
    ops::rope_forward(y.data(), rows, T, H, hd, table.data(), nullptr);
    for (int64_t row = 0; row < rows; ++row)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < hd / 2; ++i) {
                const double th = double(row % T) * std::pow(10000.0, -2.0 * i / hd);
                const size_t o = (row * H + h) * hd + 2 * i;
                EXPECT_NEAR(y[o], x[o] * std::cos(th) - x[o + 1] * std::sin(th), 1e-5);
                EXPECT_NEAR(y[o + 1], x[o] * std::sin(th) + x[o + 1] * std::cos(th), 1e-5);
            }
    Vec dx = r;
    ThreadPool pool(2);
    ops::rope_backward(dx.data(), rows, T, H, hd, table.data(), &pool);
    check_grad("rope dx", x, dx, [&] {
        y = x;
        ops::rope_forward(y.data(), rows, T, H, hd, table.data(), nullptr);
        return dot(y, r);
    });
}

// Plain causal GQA attention in double.
Vec attention_ref(const Vec& q, const Vec& k, const Vec& v, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd) {
    Vec out(B * T * H * hd);
    const int64_t group = H / Hkv;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                std::vector<double> s(t + 1);
                double mx = -1e300;
                for (int64_t j = 0; j <= t; ++j) {
                    double d = 0;
                    for (int64_t c = 0; c < hd; ++c)
                        d += double(q[((b * T + t) * H + h) * hd + c]) * k[((b * T + j) * Hkv + h / group) * hd + c];
                    s[j] = d / std::sqrt(double(hd));
                    mx = std::max(mx, s[j]);
                }
                double sum = 0;
                for (double& e : s) sum += (e = std::exp(e - mx));
                for (int64_t c = 0; c < hd; ++c) {
                    double o = 0;
                    for (int64_t j = 0; j <= t; ++j) o += s[j] / sum * v[((b * T + j) * Hkv + h / group) * hd + c];
                    out[((b * T + t) * H + h) * hd + c] = float(o);
                }
            }
    return out;
}

void attention_case(int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd, size_t max_checks) {
    SCOPED_TRACE("B " + std::to_string(B) + " T " + std::to_string(T) + " H " + std::to_string(H) + " Hkv " +
                 std::to_string(Hkv) + " hd " + std::to_string(hd));
    const int64_t N = B * T;
    Vec q = randn(N * H * hd, 11), k = randn(N * Hkv * hd, 12), v = randn(N * Hkv * hd, 13), r = randn(N * H * hd, 14);
    Vec out(N * H * hd), lse(B * H * T);
    ThreadPool pool(2);
    Vec scratch(2 * ops::attention_scratch_floats(T));
    ops::attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), B, T, H, Hkv, hd, scratch.data(), &pool);
    const Vec ref = attention_ref(q, k, v, B, T, H, Hkv, hd);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], ref[i], 1e-5) << i;
    Vec dq(q.size()), dk(k.size()), dv(v.size());
    ops::attention_backward(r.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq.data(), dk.data(),
                            dv.data(), B, T, H, Hkv, hd, scratch.data(), &pool);
    auto f = [&] {
        ops::attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), B, T, H, Hkv, hd, scratch.data(),
                               nullptr);
        return dot(out, r);
    };
    check_grad("attention dq", q, dq, f, 1e-2f, max_checks);
    check_grad("attention dk", k, dk, f, 1e-2f, max_checks);
    check_grad("attention dv", v, dv, f, 1e-2f, max_checks);
    // The same gradients on one thread, bit for bit (no reduction is split between threads).
    Vec dq1(q.size()), dk1(k.size()), dv1(v.size());
    ops::attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), B, T, H, Hkv, hd, scratch.data(), nullptr);
    ops::attention_backward(r.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), dq1.data(), dk1.data(),
                            dv1.data(), B, T, H, Hkv, hd, scratch.data(), nullptr);
    EXPECT_EQ(dq, dq1);
    EXPECT_EQ(dk, dk1);
    EXPECT_EQ(dv, dv1);
}

TEST(TrainOps, AttentionMQA) { attention_case(2, 7, 3, 1, 8, 100000); }
TEST(TrainOps, AttentionGQA) { attention_case(1, 5, 4, 2, 6, 100000); }
TEST(TrainOps, AttentionMHA) { attention_case(2, 3, 2, 2, 4, 100000); }
// Longer than one block of queries (64): the block boundary and the keys it sees.
TEST(TrainOps, AttentionLong) { attention_case(1, 70, 2, 1, 4, 150); }

TEST(TrainOps, SwiGLU) {
    const int64_t n = 37;
    Vec g = randn(n, 15, 2.0f), u = randn(n, 16), r = randn(n, 17), h(n);
    ops::swiglu_forward(g.data(), u.data(), h.data(), n, nullptr);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(h[i], g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-5);
    Vec dg(n), du(n);
    ThreadPool pool(2);
    ops::swiglu_backward(r.data(), g.data(), u.data(), dg.data(), du.data(), n, &pool);
    auto f = [&] {
        ops::swiglu_forward(g.data(), u.data(), h.data(), n, nullptr);
        return dot(h, r);
    };
    check_grad("swiglu dg", g, dg, f);
    check_grad("swiglu du", u, du, f);
}

TEST(TrainOps, Add) {
    Vec a = randn(29, 18), b = randn(29, 19), y(29);
    ops::add_forward(a.data(), b.data(), y.data(), 29, nullptr);
    for (int i = 0; i < 29; ++i) EXPECT_EQ(y[i], a[i] + b[i]);
    ops::add_inplace(y.data(), a.data(), 29, nullptr);
    for (int i = 0; i < 29; ++i) EXPECT_EQ(y[i], (a[i] + b[i]) + a[i]);
}

TEST(TrainOps, CrossEntropy) {
    const int64_t rows = 7, V = 13;
    Vec logits = randn(rows * V, 20, 3.0f);
    const std::vector<int32_t> target = {4, -1, 0, 12, -1, 7, 7};
    Vec lr(rows);
    ThreadPool pool(2);
    const int64_t n = ops::cross_entropy_forward(logits.data(), target.data(), rows, V, lr.data(), &pool);
    EXPECT_EQ(n, 5);
    for (int64_t i = 0; i < rows; ++i) {
        if (target[i] < 0) {
            EXPECT_EQ(lr[i], 0.0f);
            continue;
        }
        double mx = -1e300, s = 0;
        for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(logits[i * V + j]));
        for (int64_t j = 0; j < V; ++j) s += std::exp(logits[i * V + j] - mx);
        EXPECT_NEAR(lr[i], mx + std::log(s) - logits[i * V + target[i]], 1e-5);
    }
    // mean loss; its gradient in place (dlogits aliasing logits)
    Vec d = logits;
    ops::cross_entropy_backward(d.data(), target.data(), rows, V, 1.0f / float(n), d.data(), &pool);
    for (int64_t j = 0; j < V; ++j) EXPECT_EQ(d[1 * V + j], 0.0f);  // ignored row
    check_grad("cross-entropy dlogits", logits, d, [&] {
        ops::cross_entropy_forward(logits.data(), target.data(), rows, V, lr.data(), nullptr);
        double s = 0;
        for (float x : lr) s += x;
        return s / double(n);
    });
}

} // namespace
} // namespace slm
