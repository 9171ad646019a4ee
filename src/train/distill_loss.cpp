// distill_loss.cpp - token-level distillation losses between a teacher's and a student's
// distributions, with their gradients (see include/slm/distill.h).
//
// Every divergence D(p, q) over categories c (tokens, or the top-k tokens and a rest bucket) is
// differentiated the same way. With q = softmax(z / T) and g_c = dD/dq_c,
//   dD/dz_i = (1 / T) (q_i g_c(i) - q_i sum_c q_c g_c)
// because a category's probability is the sum of its tokens' and dq_j/dz_i = q_j (d_ij - q_i) / T.
// Written with h_c = q_c g_c and the share s_i = q_i / q_c(i) of a token in its category (1 for a
// category of one token), that is (1 / T) (s_i h_c(i) - q_i H), H = sum_c h_c, and h_c stays
// finite when q_c underflows:
//   fkl  h_c = -p_c
//   rkl  h_c = q_c (log q_c - log p_c)                   (the +1 of g_c cancels against H)
//   jsd  h_c = (1 - beta) q_c (log q_c - log m_c)        (g_c = (1 - beta) log(q_c / m_c))
//   tvd  h_c = q_c sign(q_c - p_c) / 2
// Rows are computed in double from log-probabilities, so log p and log q are never log(0).
#include "slm/distill.h"

#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

namespace slm {

Divergence divergence_from_name(const std::string& name) {
    if (name == "fkl" || name == "forward-kl" || name == "kl") return Divergence::ForwardKL;
    if (name == "rkl" || name == "reverse-kl") return Divergence::ReverseKL;
    if (name == "jsd" || name == "gkd") return Divergence::JSD;
    if (name == "tvd") return Divergence::TVD;
    fail("distill: unknown loss '%s' (use fkl, rkl, jsd or tvd)", name.c_str());
}

const char* divergence_name(Divergence d) {
    switch (d) {
    case Divergence::ForwardKL: return "fkl";
    case Divergence::ReverseKL: return "rkl";
    case Divergence::JSD: return "jsd";
    case Divergence::TVD: return "tvd";
    }
    return "?";
}

void DistillLossOptions::validate(uint32_t n_vocab) const {
    if (!(temperature > 0) || !std::isfinite(temperature))
        fail("distill: temperature = %g must be a positive number", double(temperature));
    if (divergence == Divergence::JSD && !(jsd_beta > 0 && jsd_beta < 1))
        fail("distill: jsd beta = %g must be in (0, 1) (beta -> 0 behaves as fkl, -> 1 as rkl: use those losses)",
             double(jsd_beta));
    if (!(ce_weight >= 0 && ce_weight <= 1)) fail("distill: ce-weight = %g must be in [0, 1]", double(ce_weight));
    if (n_vocab > 0 && top_k >= n_vocab)
        fail("distill: top-k = %u must be below the vocabulary size %u (0 = the full distribution)", top_k, n_vocab);
}

namespace {

double log_sum_exp(const double* x, size_t n) {
    double m = -std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < n; ++i) m = std::max(m, x[i]);
    if (!std::isfinite(m)) return m;
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += std::exp(x[i] - m);
    return m + std::log(s);
}

double log_add_exp(double a, double b) {
    const double m = std::max(a, b);
    if (!std::isfinite(m)) return m;
    return m + std::log(std::exp(a - m) + std::exp(b - m));
}

// Divergence term and h_c of one category from log p, log q.
struct Term { double d, h; };
Term category_term(const DistillLossOptions& o, double lp, double lq) {
    const double p = std::exp(lp), q = std::exp(lq);
    switch (o.divergence) {
    case Divergence::ForwardKL: return {p > 0 ? p * (lp - lq) : 0.0, -p};
    case Divergence::ReverseKL: {
        const double t = q > 0 ? q * (lq - lp) : 0.0;
        return {t, t};
    }
    case Divergence::JSD: {
        const double b = o.jsd_beta;
        const double lm = log_add_exp(std::log(b) + lp, std::log1p(-b) + lq);
        const double dq = q > 0 ? q * (lq - lm) : 0.0;
        const double dp = p > 0 ? p * (lp - lm) : 0.0;
        return {b * dp + (1 - b) * dq, (1 - b) * dq};
    }
    case Divergence::TVD: {
        const double s = q > p ? 1.0 : (q < p ? -1.0 : 0.0);
        return {0.5 * std::fabs(p - q), 0.5 * q * s};
    }
    }
    return {0, 0};
}

} // namespace

TeacherDist make_teacher_dist(const float* logits, size_t n_rows, uint32_t n_vocab, const DistillLossOptions& o) {
    o.validate(n_vocab);
    TeacherDist t;
    t.n_rows = n_rows;
    t.n_vocab = n_vocab;
    t.top_k = o.top_k;
    const double inv_t = 1.0 / o.temperature;
    std::vector<double> x(n_vocab);
    std::vector<int32_t> order(n_vocab);
    const uint32_t K = o.top_k;
    t.logp.resize(n_rows * (K ? K + 1 : n_vocab));
    if (K) t.ids.resize(n_rows * K);
    for (size_t r = 0; r < n_rows; ++r) {
        const float* z = logits + r * n_vocab;
        for (uint32_t i = 0; i < n_vocab; ++i) {
            if (!std::isfinite(z[i])) fail("distill: teacher logit %g at row %zu, token %u is not finite", double(z[i]), r, i);
            x[i] = z[i] * inv_t;
        }
        const double lse = log_sum_exp(x.data(), n_vocab);
        if (!K) {
            float* lp = t.logp.data() + r * n_vocab;
            for (uint32_t i = 0; i < n_vocab; ++i) lp[i] = float(x[i] - lse);
            continue;
        }
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t a, int32_t b) {
            return x[a] > x[b] || (x[a] == x[b] && a < b);
        });
        float* lp = t.logp.data() + r * (K + 1);
        int32_t* ids = t.ids.data() + r * K;
        for (uint32_t k = 0; k < K; ++k) {
            ids[k] = order[k];
            lp[k] = float(x[order[k]] - lse);
        }
        // The rest bucket from the other tokens themselves, not 1 - sum(top-k): no cancellation.
        std::vector<double> rest(n_vocab - K);
        for (uint32_t k = K; k < n_vocab; ++k) rest[k - K] = x[order[k]];
        lp[K] = float(log_sum_exp(rest.data(), rest.size()) - lse);
    }
    return t;
}

DistillLossValue distill_loss(const DistillLossOptions& o, const float* student_logits, const TeacherDist& teacher,
                              std::span<const int32_t> labels, std::span<const uint8_t> mask, float grad_scale,
                              float* dlogits) {
    o.validate(teacher.n_vocab);
    const size_t R = teacher.n_rows;
    const uint32_t V = teacher.n_vocab, K = teacher.top_k;
    if (K != o.top_k) fail("distill: the teacher distribution has top-k %u but the loss asks for %u", K, o.top_k);
    if (!labels.empty() && labels.size() != R)
        fail("distill: %zu labels for %zu rows of logits", labels.size(), R);
    if (!mask.empty() && mask.size() != R) fail("distill: mask of %zu rows for %zu rows of logits", mask.size(), R);
    if (labels.empty() && mask.empty()) fail("distill: neither labels nor a mask: no row would count");
    if (teacher.logp.size() != R * (K ? K + 1 : V) || teacher.ids.size() != R * K)
        fail("distill: teacher distribution of %zu log-probabilities does not match %zu rows", teacher.logp.size(), R);

    auto in_mean = [&](size_t r) { return mask.empty() ? labels[r] >= 0 : mask[r] != 0; };
    size_t n_in = 0;
    for (size_t r = 0; r < R; ++r) n_in += in_mean(r) ? 1 : 0;
    DistillLossValue v;
    v.n_rows = n_in;
    std::fill(dlogits, dlogits + R * V, 0.0f);
    if (n_in == 0) return v;

    const double T = o.temperature, inv_t = 1.0 / T, w = o.ce_weight;
    std::vector<double> x(V), lq(V), h(K ? K + 1 : 0), lqc(K ? K + 1 : 0);
    std::vector<int32_t> cat(V, -1);  // top-k: category of each token (K = the rest)
    double sum_loss = 0, sum_d = 0, sum_ce = 0;
    size_t n_ce = 0;
    for (size_t r = 0; r < R; ++r) {
        if (!in_mean(r)) continue;
        const float* z = student_logits + r * V;
        float* dz = dlogits + r * V;
        const int32_t label = labels.empty() ? -1 : labels[r];
        if (label >= 0 && uint32_t(label) >= V) fail("distill: label %d at row %zu is outside the vocabulary [0, %u)", label, r, V);
        const double wd = label >= 0 ? 1 - w : 1.0;  // without a label the divergence takes the whole weight
        for (uint32_t i = 0; i < V; ++i) x[i] = z[i] * inv_t;
        const double lse = log_sum_exp(x.data(), V);
        for (uint32_t i = 0; i < V; ++i) lq[i] = x[i] - lse;

        double D = 0, H = 0;
        const double scale = wd * T * T * inv_t * grad_scale / double(n_in);  // T^2 D, and dq/dz's 1/T
        if (!K) {
            const float* lp = teacher.logp.data() + r * V;
            // Two passes: h_i first, then dz_i = scale (h_i - q_i H).
            std::vector<double>& hv = x;  // x is no longer needed
            for (uint32_t i = 0; i < V; ++i) {
                const Term t = category_term(o, lp[i], lq[i]);
                D += t.d;
                hv[i] = t.h;
                H += t.h;
            }
            for (uint32_t i = 0; i < V; ++i) dz[i] = float(scale * (hv[i] - std::exp(lq[i]) * H));
        } else {
            const float* lp = teacher.logp.data() + r * (K + 1);
            const int32_t* ids = teacher.ids.data() + r * K;
            for (uint32_t k = 0; k < K; ++k) {
                if (ids[k] < 0 || uint32_t(ids[k]) >= V) fail("distill: teacher top-k id %d outside the vocabulary", ids[k]);
                cat[ids[k]] = int32_t(k);
                lqc[k] = lq[ids[k]];
            }
            std::vector<double> rest;
            rest.reserve(V - K);
            for (uint32_t i = 0; i < V; ++i)
                if (cat[i] < 0) rest.push_back(lq[i]);
            lqc[K] = log_sum_exp(rest.data(), rest.size());
            for (uint32_t c = 0; c <= K; ++c) {
                const Term t = category_term(o, lp[c], lqc[c]);
                D += t.d;
                h[c] = t.h;
                H += t.h;
            }
            for (uint32_t i = 0; i < V; ++i) {
                const double s_h = cat[i] >= 0 ? h[cat[i]] : std::exp(lq[i] - lqc[K]) * h[K];
                dz[i] = float(scale * (s_h - std::exp(lq[i]) * H));
            }
            for (uint32_t k = 0; k < K; ++k) cat[ids[k]] = -1;
        }
        sum_d += D;
        double row_loss = wd * T * T * D;
        if (label >= 0 && w > 0) {
            // Hard-label cross-entropy at temperature 1.
            double m = -std::numeric_limits<double>::infinity();
            for (uint32_t i = 0; i < V; ++i) m = std::max(m, double(z[i]));
            double s = 0;
            for (uint32_t i = 0; i < V; ++i) s += std::exp(double(z[i]) - m);
            const double l1 = m + std::log(s);
            const double ce = l1 - z[label];
            const double cs = w * grad_scale / double(n_in);
            for (uint32_t i = 0; i < V; ++i) dz[i] += float(cs * std::exp(double(z[i]) - l1));
            dz[label] -= float(cs);
            row_loss += w * ce;
            sum_ce += ce;
            ++n_ce;
        } else if (label >= 0) {
            double m = -std::numeric_limits<double>::infinity();
            for (uint32_t i = 0; i < V; ++i) m = std::max(m, double(z[i]));
            double s = 0;
            for (uint32_t i = 0; i < V; ++i) s += std::exp(double(z[i]) - m);
            sum_ce += m + std::log(s) - z[label];
            ++n_ce;
        }
        sum_loss += row_loss;
    }
    v.loss = float(sum_loss / double(n_in));
    v.divergence = float(sum_d / double(n_in));
    v.ce = n_ce ? float(sum_ce / double(n_ce)) : 0.0f;
    return v;
}

} // namespace slm
