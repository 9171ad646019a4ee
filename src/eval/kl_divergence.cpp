// kl_divergence.cpp - compares a model's next-token distributions with a base model's, stored by
// perplexity(save_logits), with the statistics llama-perplexity --kl-divergence prints: PPL of both
// and their ratio and difference (errors through the covariance of the two NLLs), mean KL(base || Q)
// and its percentiles, Δp of the right token and how often the most likely token agrees.
#include "slm/perplexity.h"

#include "core/thread_pool.h"
#include "formats/logits_file.h"
#include "slm/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace slm {

namespace {

// One scored token. Float where llama-perplexity keeps float, so sums agree with its figures.
struct TokenStats {
    float nll = 0, nll_base = 0;  // -log p_Q(token), -log p_base(token)
    double kld = 0;               // sum_i p_base(i) (log p_base(i) - log p_Q(i))
    float p_diff = 0;             // p_Q(token) - p_base(token)
    bool same_top = false;
};

TokenStats compare(const float* logits, int32_t n_vocab, const LogitsFileReader::Row& base, int32_t tok) {
    float max_logit = logits[0];
    int32_t imax = 0;
    for (int32_t i = 1; i < n_vocab; ++i)
        if (logits[i] > max_logit) max_logit = logits[i], imax = i;
    double sum_exp = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
    const float log_z = max_logit + static_cast<float>(std::log(sum_exp));  // log p_Q(i) = logits[i] - log_z

    TokenStats s;
    s.nll = log_z - logits[tok];
    s.nll_base = -base.log_prob(tok);
    int32_t imax_base = 0;
    float lp_base_max = base.log_prob(0);
    for (int32_t i = 0; i < n_vocab; ++i) {
        const float lp_base = base.log_prob(i);
        if (lp_base > lp_base_max) lp_base_max = lp_base, imax_base = i;
        // Entries the base file clamped to its floor (e^-16 and below) add nothing measurable.
        if (lp_base > -16.f) s.kld += std::exp(lp_base) * (lp_base - logits[i] + log_z);
    }
    s.same_top = imax == imax_base;
    s.p_diff = std::exp(-s.nll) - std::exp(-s.nll_base);
    return s;
}

struct Sums {
    double nll = 0, nll2 = 0, nll_base = 0, nll_base2 = 0, nll_nll_base = 0;
    double kld = 0, kld2 = 0, p_diff = 0, p_diff2 = 0, p_diff4 = 0;
    size_t same_top = 0, count = 0;
};

// Mean and standard error from a sum and a sum of squares (none below 11 samples, as llama.cpp).
Estimate mean_se(double sum, double sum2, size_t n) {
    if (n < 1) return {};
    const double m = sum / n;
    const double var = sum2 / n - m * m;
    return {m, var > 0 && n > 10 ? std::sqrt(var / (n - 1)) : 0.0};
}

// Covariance of the two means (cov(a, b) / (n - 1)).
double cov_of_means(double sa, double sb, double sab, size_t n) {
    if (n < 10) return 0;
    return (sab / n - (sa / n) * (sb / n)) / (n - 1);
}

// Linear interpolation between the two nearest ranks of sorted values, as llama-perplexity.
float percentile(const std::vector<float>& v, float fraction) {
    if (fraction <= 0) return v.front();
    if (fraction >= 1) return v.back();
    float p = fraction * (v.size() - 1);
    const size_t ip = static_cast<size_t>(p);
    p -= ip;
    return (1 - p) * v[ip] + p * v[std::min(ip + 1, v.size() - 1)];
}

float median(const std::vector<float>& v) {
    const size_t n = v.size();
    return n % 2 == 0 ? 0.5f * (v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

std::vector<std::pair<double, double>> percentiles(const std::vector<float>& sorted, std::initializer_list<float> fr) {
    std::vector<std::pair<double, double>> out;
    for (float f : fr) out.emplace_back(f, f == 0.5f ? median(sorted) : percentile(sorted, f));
    return out;
}

double lookup(const std::vector<std::pair<double, double>>& v, double fraction, const char* what) {
    for (const auto& [f, x] : v)
        if (std::fabs(f - fraction) < 1e-6) return x;
    fail("kl divergence: no %s percentile at %g", what, fraction);
}

} // namespace

double KLDivergenceResult::kld_at(double fraction) const { return lookup(kld_percentiles, fraction, "KLD"); }
double KLDivergenceResult::dp_at(double fraction) const { return lookup(dp_percentiles, fraction, "delta-p"); }

KLDivergenceResult kl_divergence(std::shared_ptr<const Model> model, const KLDivergenceParams& params,
                                 const KLDivergenceProgress& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    if (params.base_path.empty()) fail("kl divergence: no base file given (field 'base_path', --kl-divergence)");
    if (params.n_chunks == 0 || params.n_chunks < -1)
        fail("kl divergence: field 'n_chunks' (--chunks) is %d: give -1 (all) or more than 0", params.n_chunks);
    if (params.n_batch < 1) fail("kl divergence: field 'n_batch' (-b) is 0");
    const LogitsFileReader base(params.base_path);
    const int32_t n_vocab = static_cast<int32_t>(model->hparams().n_vocab);
    if (base.n_vocab() != n_vocab)
        fail("kl divergence: %s: field 'n_vocab' is %d but the model has %d tokens: the base file was written "
             "with a model of another tokenizer", base.source().c_str(), base.n_vocab(), n_vocab);
    const uint32_t n_ctx = base.n_ctx();
    const int n_chunk = params.n_chunks > 0 ? std::min(params.n_chunks, base.n_chunk()) : base.n_chunk();
    const uint32_t n_rows = base.rows_per_chunk(), first = n_ctx / 2;

    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_batch = std::min(params.n_batch, n_ctx);
    so.kv_type = params.kv_type;
    so.n_threads = params.n_threads;
    Session session(model, so);
    ThreadPool pool(session.n_threads());
    const Vocab& vocab = model->vocab();

    KLDivergenceResult res;
    res.n_ctx = n_ctx;
    res.n_chunk = n_chunk;
    Sums s;
    std::vector<float> kld_values, p_diff_values;
    kld_values.reserve(static_cast<size_t>(n_chunk) * n_rows);
    p_diff_values.reserve(static_cast<size_t>(n_chunk) * n_rows);
    std::vector<TokenStats> ts(n_rows);
    std::vector<int32_t> input;
    const std::vector<int32_t>& tokens = base.tokens();
    for (int c = 0; c < n_chunk; ++c) {
        const size_t start = static_cast<size_t>(c) * n_ctx;
        input.assign(tokens.begin() + start, tokens.begin() + start + n_ctx);
        if (vocab.add_bos() && vocab.bos() != TOKEN_NULL) input[0] = vocab.bos();  // as when the base was written
        session.reset();
        session.eval(input, true);
        const float* logits = session.logits().data();
        // Read every row header first: a corrupt row throws here, not inside a worker.
        std::vector<LogitsFileReader::Row> rows(n_rows);
        for (uint32_t r = 0; r < n_rows; ++r) rows[r] = base.row(c, r);
        pool.parallel_for(n_rows, [&](int64_t b, int64_t e, int) {
            for (int64_t r = b; r < e; ++r) {
                const size_t j = first + static_cast<size_t>(r);
                ts[r] = compare(logits + j * static_cast<size_t>(n_vocab), n_vocab, rows[r], tokens[start + j + 1]);
            }
        });
        for (const TokenStats& t : ts) {
            s.nll += t.nll;
            s.nll2 += t.nll * t.nll;
            s.nll_base += t.nll_base;
            s.nll_base2 += t.nll_base * t.nll_base;
            s.nll_nll_base += t.nll * t.nll_base;
            s.kld += t.kld;
            s.kld2 += t.kld * t.kld;
            s.p_diff += t.p_diff;
            const double d2 = t.p_diff * t.p_diff;  // float product, as llama-perplexity
            s.p_diff2 += d2;
            s.p_diff4 += d2 * d2;
            s.same_top += t.same_top;
            ++s.count;
            kld_values.push_back(static_cast<float>(t.kld));
            p_diff_values.push_back(t.p_diff);
        }

        KLDivergenceChunk ch;
        ch.index = c;
        const Estimate lp = mean_se(s.nll, s.nll2, s.count), lpb = mean_se(s.nll_base, s.nll_base2, s.count);
        const double cov = cov_of_means(s.nll, s.nll_base, s.nll_nll_base, s.count);
        ch.ppl = {std::exp(lp.value), std::exp(lp.value) * lp.se};
        ch.ln_ratio = {lp.value - lpb.value, std::sqrt(std::max(0.0, lp.se * lp.se + lpb.se * lpb.se - 2 * cov))};
        ch.kld = mean_se(s.kld, s.kld2, s.count);
        const Estimate mse = mean_se(s.p_diff2, s.p_diff4, s.count);
        ch.rms_dp = {std::sqrt(mse.value), mse.value > 0 ? 0.5 / std::sqrt(mse.value) * mse.se : 0};
        const double top = static_cast<double>(s.same_top) / s.count;
        ch.same_top = {top, s.count > 1 ? std::sqrt(top * (1 - top) / (s.count - 1)) : 0};
        res.chunks.push_back(ch);
        if (progress) progress(ch, n_chunk);
    }

    const KLDivergenceChunk& last = res.chunks.back();
    res.n_scored = s.count;
    res.ppl = last.ppl;
    const Estimate lpb = mean_se(s.nll_base, s.nll_base2, s.count), lp = mean_se(s.nll, s.nll2, s.count);
    res.ppl_base = {std::exp(lpb.value), std::exp(lpb.value) * lpb.se};
    const double cov = cov_of_means(s.nll, s.nll_base, s.nll_nll_base, s.count);
    res.cor = lp.se > 0 && lpb.se > 0 ? cov / (lp.se * lpb.se) : 0;
    res.ln_ratio = last.ln_ratio;
    res.ratio = {std::exp(res.ln_ratio.value), std::exp(res.ln_ratio.value) * res.ln_ratio.se};
    // Δ of two correlated figures: var(a - b) = var a + var b - 2 cov(a, b), cov through exp's derivative.
    const double ppl_cov = res.ppl.value * res.ppl_base.value * cov;
    res.ppl_diff = {res.ppl.value - res.ppl_base.value,
                    std::sqrt(std::max(0.0, res.ppl.se * res.ppl.se + res.ppl_base.se * res.ppl_base.se - 2 * ppl_cov))};
    res.kld = last.kld;
    res.dp = mean_se(s.p_diff, s.p_diff2, s.count);
    res.rms_dp = last.rms_dp;
    res.same_top = last.same_top;
    std::sort(kld_values.begin(), kld_values.end());
    std::sort(p_diff_values.begin(), p_diff_values.end());
    res.kld_percentiles =
        percentiles(kld_values, {0.f, 0.001f, 0.01f, 0.05f, 0.1f, 0.5f, 0.9f, 0.95f, 0.99f, 0.999f, 1.f});
    res.dp_percentiles = percentiles(
        p_diff_values, {0.f, 0.001f, 0.01f, 0.05f, 0.1f, 0.25f, 0.5f, 0.75f, 0.9f, 0.95f, 0.99f, 0.999f, 1.f});
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
}

} // namespace slm
