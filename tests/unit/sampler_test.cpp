// Tests of slm::Sampler against hand-computed results of llama.cpp's sampler chain.
#include "slm/sampler.h"

#include "slm/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <set>
#include <string>
#include <vector>

// Counts heap allocations so a test can check that sample() makes none. The replacements are kept
// out of line so that GCC does not see malloc/free meet new/delete at inlined call sites.
static std::atomic<long> g_n_alloc{0};

__attribute__((noinline)) void* operator new(size_t n) {
    g_n_alloc++;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
__attribute__((noinline)) void operator delete(void* p) noexcept { std::free(p); }
__attribute__((noinline)) void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace {

using slm::Sampler;
using slm::SamplerParams;

// Every filter off, temperature 1: the draw sees the (penalised) logits unchanged.
SamplerParams plain_params(uint64_t seed = 1) {
    SamplerParams p;
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

std::vector<float> random_logits(int n, uint32_t seed, float scale = 3.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = nd(rng);
    return v;
}

int32_t argmax(const std::vector<float>& v) {
    return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<double> softmax(const std::vector<float>& logits, double temp = 1.0) {
    double mx = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(logits.size());
    double sum = 0;
    for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp((logits[i] - mx) / temp);
    for (double& x : p) x /= sum;
    return p;
}

std::set<int32_t> candidate_ids(const Sampler& s) {
    std::set<int32_t> ids;
    for (const auto& c : s.candidates()) ids.insert(c.id);
    return ids;
}

// Logits whose softmax is exactly `probs` up to rounding (log of a normalised distribution).
std::vector<float> logits_of(const std::vector<double>& probs) {
    std::vector<float> l;
    for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
    return l;
}

void expect_error_naming(const SamplerParams& p, const std::string& name, int32_t n_vocab = 10) {
    try {
        Sampler s(p, n_vocab);
        ADD_FAILURE() << "no error for " << name;
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
}

TEST(Sampler, GreedyIsArgmax) {
    SamplerParams p;
    p.temp = 0.0f;
    for (uint32_t seed = 0; seed < 50; ++seed) {
        auto logits = random_logits(1000, seed);
        Sampler s(p, 1000);
        EXPECT_EQ(s.sample(logits.data()), argmax(logits));
        ASSERT_EQ(s.candidates().size(), 1u);
        EXPECT_EQ(s.candidates()[0].p, 1.0f);
    }
    p.temp = -1.0f;  // any temp <= 0 is greedy
    auto logits = random_logits(100, 7);
    Sampler s(p, 100);
    EXPECT_EQ(s.sample(logits.data()), argmax(logits));
}

TEST(Sampler, GreedyTieGoesToLowestId) {
    SamplerParams p;
    p.temp = 0.0f;
    std::vector<float> logits = {0.0f, 2.0f, -1.0f, 2.0f, 2.0f};
    Sampler s(p, 5);
    EXPECT_EQ(s.sample(logits.data()), 1);
}

TEST(Sampler, TopKOneIsGreedyAtAnyTemperature) {
    for (float temp : {0.1f, 0.8f, 1.0f, 5.0f, 100.0f}) {
        SamplerParams p;
        p.temp = temp;
        p.top_k = 1;
        for (uint32_t seed = 0; seed < 20; ++seed) {
            p.seed = seed;
            auto logits = random_logits(500, 100 + seed);
            Sampler s(p, 500);
            for (int rep = 0; rep < 5; ++rep) EXPECT_EQ(s.sample(logits.data()), argmax(logits)) << temp;
        }
    }
}

TEST(Sampler, TopKKeepsTheKLargestSorted) {
    SamplerParams p = plain_params();
    p.top_k = 5;
    auto logits = random_logits(300, 3);
    Sampler s(p, 300);
    s.sample(logits.data());
    std::vector<int32_t> order(300);
    for (int32_t i = 0; i < 300; ++i) order[static_cast<size_t>(i)] = i;
    std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    auto c = s.candidates();
    ASSERT_EQ(c.size(), 5u);
    for (size_t i = 0; i < 5; ++i) EXPECT_EQ(c[i].id, order[i]);
}

TEST(Sampler, SameSeedRepeatsDifferentSeedsDiffer) {
    const int n = 64;
    std::vector<float> flat(n, 0.0f);
    auto run = [&](uint64_t seed) {
        Sampler s(plain_params(seed), n);
        std::vector<int32_t> out;
        for (int i = 0; i < 200; ++i) out.push_back(s.sample(flat.data()));
        return out;
    };
    EXPECT_EQ(run(1234), run(1234));
    EXPECT_NE(run(1234), run(1235));
    EXPECT_NE(run(1), run(2));

    // reset() re-seeds: the sequence starts over.
    Sampler s(plain_params(99), n);
    std::vector<int32_t> a, b;
    for (int i = 0; i < 50; ++i) a.push_back(s.sample(flat.data()));
    s.reset();
    for (int i = 0; i < 50; ++i) b.push_back(s.sample(flat.data()));
    EXPECT_EQ(a, b);
}

TEST(Sampler, FlatDistributionReachesEveryToken) {
    const int n = 16;
    std::vector<float> flat(n, 1.5f);
    Sampler s(plain_params(5), n);
    std::set<int32_t> seen;
    for (int i = 0; i < 2000; ++i) seen.insert(s.sample(flat.data()));
    EXPECT_EQ(seen.size(), static_cast<size_t>(n));
}

TEST(Sampler, TopPKeepsShortestPrefixReachingP) {
    // Probabilities by id; sorted: 0.4 (id 3), 0.25 (id 0), 0.15 (id 4), 0.1 (id 1), 0.06 (id 5), 0.04 (id 2).
    const std::vector<double> probs = {0.25, 0.10, 0.04, 0.40, 0.15, 0.06};
    auto logits = logits_of(probs);
    struct Case {
        float top_p;
        std::set<int32_t> kept;
    };
    // Cumulative sums: 0.40, 0.65, 0.80, 0.90, 0.96, 1.00; thresholds kept clear of them.
    for (const Case& c : {Case{0.30f, {3}}, Case{0.50f, {3, 0}}, Case{0.70f, {3, 0, 4}},
                          Case{0.85f, {3, 0, 4, 1}}, Case{0.93f, {3, 0, 4, 1, 5}},
                          Case{0.99f, {3, 0, 4, 1, 5, 2}}, Case{1.0f, {3, 0, 4, 1, 5, 2}}}) {
        SamplerParams p = plain_params();
        p.top_p = c.top_p;
        Sampler s(p, 6);
        int32_t tok = s.sample(logits.data());
        EXPECT_EQ(candidate_ids(s), c.kept) << "top_p " << c.top_p;
        EXPECT_TRUE(c.kept.count(tok));
        // The survivors are renormalised among themselves.
        double sum = 0;
        for (const auto& t : s.candidates()) sum += t.p;
        EXPECT_NEAR(sum, 1.0, 1e-6);
    }
}

TEST(Sampler, MinPKeepsTokensAboveFractionOfMax) {
    // p_max = 0.4; min_p 0.2 keeps p >= 0.08, min_p 0.45 keeps p >= 0.18, min_p 1 keeps only the max.
    const std::vector<double> probs = {0.10, 0.04, 0.40, 0.20, 0.02, 0.24};
    auto logits = logits_of(probs);
    struct Case {
        float min_p;
        std::set<int32_t> kept;
    };
    for (const Case& c : {Case{0.2f, {0, 2, 3, 5}}, Case{0.45f, {2, 3, 5}}, Case{0.7f, {2}}, Case{1.0f, {2}},
                          Case{0.0f, {0, 1, 2, 3, 4, 5}}, Case{0.01f, {0, 1, 2, 3, 4, 5}}}) {
        // Unsorted path (nothing sorted before min-p) and sorted path (top-k of all sorts first).
        for (int32_t top_k : {0, 6}) {
            SamplerParams p = plain_params();
            p.min_p = c.min_p;
            p.top_k = top_k;
            Sampler s(p, 6);
            s.sample(logits.data());
            EXPECT_EQ(candidate_ids(s), c.kept) << "min_p " << c.min_p << " top_k " << top_k;
        }
    }
}

TEST(Sampler, ChainOrderTopKThenTopPThenMinP) {
    // top-k 4 leaves {0.4, 0.25, 0.15, 0.1} (renormalised 0.444, 0.278, 0.167, 0.111); top-p 0.8 over
    // those keeps three (0.444 + 0.278 < 0.8 <= 0.889); min-p 0.5 then drops 0.15 < 0.5 * 0.4.
    const std::vector<double> probs = {0.25, 0.10, 0.04, 0.40, 0.15, 0.06};
    auto logits = logits_of(probs);
    SamplerParams p = plain_params();
    p.top_k = 4;
    p.top_p = 0.8f;
    Sampler s1(p, 6);
    s1.sample(logits.data());
    EXPECT_EQ(candidate_ids(s1), (std::set<int32_t>{3, 0, 4}));
    p.min_p = 0.5f;
    Sampler s2(p, 6);
    s2.sample(logits.data());
    EXPECT_EQ(candidate_ids(s2), (std::set<int32_t>{3, 0}));
}

TEST(Sampler, EmpiricalDistributionMatchesSoftmax) {
    const int n = 10;
    const int n_samples = 20000;
    for (float temp : {1.0f, 2.0f}) {
        auto logits = random_logits(n, 11, 1.0f);
        auto expected = softmax(logits, temp);
        SamplerParams p = plain_params(2024);
        p.temp = temp;
        Sampler s(p, n);
        std::vector<int> hist(n, 0);
        for (int i = 0; i < n_samples; ++i) hist[static_cast<size_t>(s.sample(logits.data()))]++;
        for (int i = 0; i < n; ++i) {
            double f = hist[static_cast<size_t>(i)] / double(n_samples);
            double e = expected[static_cast<size_t>(i)];
            // Binomial standard deviation is at most 0.0036 here; allow about four of them.
            EXPECT_NEAR(f, e, 0.015) << "token " << i << " temp " << temp;
        }
        // The reported probabilities are the softmax of logit / temp.
        for (const auto& c : s.candidates()) EXPECT_NEAR(c.p, expected[static_cast<size_t>(c.id)], 1e-6);
    }
}

TEST(Sampler, PenaltiesFollowLlamaCppFormula) {
    SamplerParams p = plain_params();
    p.repeat_penalty = 1.3f;
    p.freq_penalty = 0.2f;
    p.presence_penalty = 0.5f;
    p.penalty_last_n = 4;
    const std::vector<float> logits = {1.0f, 2.0f, -1.5f, 0.0f, 3.0f, -0.25f, 0.7f, -2.0f};
    Sampler s(p, 8);
    // Window of 4: token 1 falls out; counts are {2: 2, 3: 1, 5: 1}.
    for (int32_t t : {1, 2, 2, 3, 5}) s.accept(t);
    s.sample(logits.data());
    auto c = s.candidates();
    ASSERT_EQ(c.size(), 8u);  // nothing filtered, nothing sorted: id order
    const int counts[8] = {0, 0, 2, 1, 0, 1, 0, 0};
    for (int32_t i = 0; i < 8; ++i) {
        ASSERT_EQ(c[static_cast<size_t>(i)].id, i);
        float want = logits[static_cast<size_t>(i)];
        const int n = counts[i];
        if (n > 0) {
            want = want <= 0.0f ? want * p.repeat_penalty : want / p.repeat_penalty;
            want -= float(n) * p.freq_penalty + float(n > 0) * p.presence_penalty;
        }
        EXPECT_EQ(c[static_cast<size_t>(i)].logit, want) << "token " << i;
    }
    // Explicit values: token 2 (-1.5, twice) -> -1.95 - 0.9; token 3 (0, once) -> 0 - 0.7.
    EXPECT_FLOAT_EQ(c[2].logit, -1.5f * 1.3f - 0.9f);
    EXPECT_FLOAT_EQ(c[3].logit, -0.7f);
    EXPECT_FLOAT_EQ(c[1].logit, 2.0f);
}

TEST(Sampler, PenaltiesMoveTheGreedyChoice) {
    SamplerParams p;
    p.temp = 0.0f;
    p.repeat_penalty = 2.0f;
    const std::vector<float> logits = {1.0f, 3.0f, 2.0f};
    Sampler s(p, 3);
    EXPECT_EQ(s.sample(logits.data()), 1);
    s.accept(1);                             // 3 / 2 = 1.5 < 2
    EXPECT_EQ(s.sample(logits.data()), 2);
    s.reset();
    EXPECT_EQ(s.sample(logits.data()), 1);

    p.penalty_last_n = 0;  // window off: history ignored
    Sampler off(p, 3);
    off.accept(1);
    EXPECT_EQ(off.sample(logits.data()), 1);
}

TEST(Sampler, PenaltyWindowSlides) {
    SamplerParams p;
    p.temp = 0.0f;
    p.presence_penalty = 10.0f;
    p.penalty_last_n = 2;
    const std::vector<float> logits = {5.0f, 4.0f, 3.0f};
    Sampler s(p, 3);
    s.accept(0);
    EXPECT_EQ(s.sample(logits.data()), 1);
    s.accept(1);
    EXPECT_EQ(s.sample(logits.data()), 2);
    s.accept(2);  // 0 leaves the window
    EXPECT_EQ(s.sample(logits.data()), 0);
}

TEST(Sampler, InvalidParamsNameTheParameter) {
    SamplerParams p;
    p.top_p = 0.0f;
    expect_error_naming(p, "top_p");
    p.top_p = 1.5f;
    expect_error_naming(p, "top_p");
    p.top_p = std::nanf("");
    expect_error_naming(p, "top_p");
    p = {};
    p.top_k = -1;
    expect_error_naming(p, "top_k");
    p = {};
    p.min_p = -0.1f;
    expect_error_naming(p, "min_p");
    p.min_p = 1.1f;
    expect_error_naming(p, "min_p");
    p = {};
    p.temp = std::nanf("");
    expect_error_naming(p, "temp");
    p = {};
    p.repeat_penalty = 0.0f;
    expect_error_naming(p, "repeat_penalty");
    p = {};
    p.freq_penalty = INFINITY;
    expect_error_naming(p, "freq_penalty");
    p = {};
    p.presence_penalty = std::nanf("");
    expect_error_naming(p, "presence_penalty");
    p = {};
    p.penalty_last_n = -1;
    expect_error_naming(p, "penalty_last_n");
    expect_error_naming(SamplerParams{}, "n_vocab", 0);

    Sampler s(SamplerParams{}, 10);
    EXPECT_THROW(s.accept(10), slm::Error);
    EXPECT_THROW(s.accept(-1), slm::Error);
    EXPECT_THROW(s.sample(nullptr), slm::Error);
}

TEST(Sampler, DefaultsAreLlamaCpps) {
    SamplerParams p;
    EXPECT_EQ(p.temp, 0.8f);
    EXPECT_EQ(p.top_k, 40);
    EXPECT_EQ(p.top_p, 0.95f);
    EXPECT_EQ(p.min_p, 0.05f);
    EXPECT_EQ(p.repeat_penalty, 1.0f);
    EXPECT_EQ(p.freq_penalty, 0.0f);
    EXPECT_EQ(p.presence_penalty, 0.0f);
    EXPECT_EQ(p.penalty_last_n, 64);
}

TEST(Sampler, SampleDoesNotAllocate) {
    const int n = 32000;
    auto logits = random_logits(n, 5);
    for (float temp : {0.0f, 0.8f}) {
        for (int32_t top_k : {0, 40}) {
            SamplerParams p;
            p.temp = temp;
            p.top_k = top_k;
            p.repeat_penalty = 1.1f;
            p.penalty_last_n = 8;
            const long before_ctor = g_n_alloc.load();
            Sampler s(p, n);
            ASSERT_GT(g_n_alloc.load(), before_ctor);  // the counting hook is live
            for (int32_t t = 0; t < 8; ++t) s.accept(t);  // fills the window
            const long before = g_n_alloc.load();
            for (int i = 0; i < 20; ++i) s.accept(s.sample(logits.data()));
            EXPECT_EQ(g_n_alloc.load() - before, 0) << "temp " << temp << " top_k " << top_k;
        }
    }
}

TEST(Sampler, DefaultChainOnLargeVocab) {
    // The full default chain on a Llama-sized vocabulary: the token is among the top 40.
    const int n = 32000;
    auto logits = random_logits(n, 77);
    std::vector<float> sorted = logits;
    std::nth_element(sorted.begin(), sorted.begin() + 39, sorted.end(), std::greater<float>());
    const float kth = sorted[39];
    Sampler s(SamplerParams{}, n);
    for (int i = 0; i < 100; ++i) {
        int32_t t = s.sample(logits.data());
        EXPECT_GE(logits[static_cast<size_t>(t)], kth);
        s.accept(t);
    }
}

} // namespace
