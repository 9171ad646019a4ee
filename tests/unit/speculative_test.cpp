// Speculative decoding: greedy output is token for token plain decoding's (draft model and
// prompt lookup), sampling draws from the target's own distribution (checked against the exact
// joint distribution of two tokens), the stop rules behave as slm::generate's, and a draft of
// another vocabulary is refused naming both files.
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/model.h"
#include "slm/quantize.h"
#include "slm/speculative.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>

using namespace slm;

namespace {

std::shared_ptr<const Model> stories() {
    static auto m = Model::load(test::model_path("stories260K/stories260K.gguf"));
    return m;
}

// A Q4_0 copy of stories260K: the same vocabulary, slightly different predictions.
std::shared_ptr<const Model> stories_q4() {
    static auto m = [] {
        const std::string path = test::temp_dir() + "/stories-q4_0.gguf";
        QuantizeParams qp;
        qp.type = "Q4_0";
        quantize_model(test::model_path("stories260K/stories260K.gguf"), path, qp);
        return Model::load(path);
    }();
    return m;
}

std::vector<int32_t> tok(const char* s) { return stories()->vocab().tokenize(s, true, true); }

SessionOptions opts(uint32_t n_ctx = 512) {
    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_threads = 1;
    return so;
}

GenerateParams greedy(int n) {
    GenerateParams gp;
    gp.n_predict = n;
    gp.sampling.temp = 0;
    return gp;
}

const char* kPrompts[] = {"Once upon a time", "Tom had a big red ball. He liked to play with the ball. One day, Tom",
                          "The cat"};

// Draft model (a quantized copy, drafting 1, 4 and 16 tokens), greedy: the same tokens, text,
// stop reason and final cache length as plain decoding, and the drafts were mostly accepted.
TEST(Speculative, GreedyDraftModelEqualsPlain) {
    for (const char* p : kPrompts)
        for (int k : {1, 4, 16, -16}) {  // -16: adaptive length up to 16
            SCOPED_TRACE(std::string(p) + " k=" + std::to_string(k));
            const std::vector<int32_t> prompt = tok(p);
            Session plain(stories(), opts());
            const GenerateResult a = generate(plain, prompt, greedy(120));
            Session ts(stories(), opts()), ds(stories_q4(), opts());
            SpeculativeParams sp;
            sp.draft_max = std::abs(k);
            sp.adaptive = k < 0;
            const SpeculativeResult b = generate_speculative(ts, &ds, prompt, greedy(120), sp);
            EXPECT_EQ(b.gen.tokens, a.tokens);
            EXPECT_EQ(b.gen.text, a.text);
            EXPECT_EQ(b.gen.stop_reason, a.stop_reason);
            EXPECT_EQ(ts.n_past(), plain.n_past());
            EXPECT_GT(b.spec.n_drafted, 0u);
            EXPECT_GT(b.spec.acceptance(), 0.25);  // long drafts run past the first disagreement
            EXPECT_GT(b.tokens_per_pass(), 1.5);
            EXPECT_LE(b.spec.n_accepted, b.spec.n_drafted);
        }
}

// The target drafting for itself: every draft is its own argmax, so (up to batched-vs-single
// rounding at near ties) all are accepted and each pass yields k + 1 tokens.
TEST(Speculative, SelfDraftAcceptsAll) {
    const std::vector<int32_t> prompt = tok(kPrompts[0]);
    Session ts(stories(), opts()), ds(stories(), opts());
    SpeculativeParams sp;
    sp.draft_max = 5;
    const SpeculativeResult r = generate_speculative(ts, &ds, prompt, greedy(61), sp);
    EXPECT_EQ(r.gen.tokens.size(), 61u);
    EXPECT_GE(r.spec.acceptance(), 0.95);
    EXPECT_LE(r.spec.n_target_passes, 12u);  // 60 tokens after the first, 6 per pass
}

TEST(Speculative, GreedyLookupEqualsPlain) {
    uint64_t accepted = 0;
    for (const char* p : kPrompts)
        for (int k : {2, 8, -8}) {  // -8: adaptive length up to 8
            SCOPED_TRACE(std::string(p) + " k=" + std::to_string(k));
            const std::vector<int32_t> prompt = tok(p);
            Session plain(stories(), opts());
            const GenerateResult a = generate(plain, prompt, greedy(200));
            Session ts(stories(), opts());
            SpeculativeParams sp;
            sp.lookup = true;
            sp.draft_max = std::abs(k);
            sp.adaptive = k < 0;
            const SpeculativeResult b = generate_speculative(ts, nullptr, prompt, greedy(200), sp);
            EXPECT_EQ(b.gen.tokens, a.tokens);
            EXPECT_EQ(b.gen.text, a.text);
            EXPECT_EQ(ts.n_past(), plain.n_past());
            EXPECT_EQ(b.spec.n_draft_passes, 0u);
            accepted += b.spec.n_accepted;
        }
    EXPECT_GT(accepted, 0u);  // stories repeat themselves: lookup finds something
}

// Stop strings, end of context, penalties and a callback that stops: as slm::generate.
TEST(Speculative, StopRulesAsPlain) {
    const std::vector<int32_t> prompt = tok(kPrompts[1]);
    struct Case {
        GenerateParams gp;
        uint32_t n_ctx;
        int stop_after;  // callback returns false after this many calls (0: never)
    };
    std::vector<Case> cases;
    {
        Case c{greedy(200), 512, 0};
        c.gp.stop = {"ball", "xyz"};
        cases.push_back(c);
    }
    cases.push_back({greedy(-1), 64, 0});   // runs into the context
    cases.push_back({greedy(-1), 512, 0});  // until end of text
    {
        Case c{greedy(150), 512, 0};
        c.gp.sampling.repeat_penalty = 1.3f;
        c.gp.sampling.freq_penalty = 0.2f;
        cases.push_back(c);
    }
    cases.push_back({greedy(200), 512, 7});
    for (size_t i = 0; i < cases.size(); ++i) {
        SCOPED_TRACE("case " + std::to_string(i));
        const Case& c = cases[i];
        auto cb = [&](int* calls) {
            return [calls, &c](std::string_view) { return c.stop_after == 0 || ++*calls < c.stop_after; };
        };
        int calls_a = 0, calls_b = 0;
        Session plain(stories(), opts(c.n_ctx));
        const GenerateResult a = generate(plain, prompt, c.gp, cb(&calls_a));
        for (bool lookup : {false, true}) {
            Session ts(stories(), opts(c.n_ctx)), ds(stories_q4(), opts(c.n_ctx));
            SpeculativeParams sp;
            sp.lookup = lookup;
            sp.draft_max = 6;
            calls_b = 0;
            const SpeculativeResult b = generate_speculative(ts, lookup ? nullptr : &ds, prompt, c.gp, sp, cb(&calls_b));
            EXPECT_EQ(b.gen.tokens, a.tokens);
            EXPECT_EQ(b.gen.text, a.text);
            EXPECT_EQ(b.gen.stop_reason, a.stop_reason);
            EXPECT_EQ(ts.n_past(), plain.n_past());
        }
    }
}

// Sampling: the first two tokens' joint distribution under speculative decoding is the target's,
// p(t1) p(t2 | t1) computed exactly from its sampler chain, whatever the drafter proposes: a
// flatter or greedy draft model, or prompt lookup. The drafter differs from the target enough to
// be rejected often, so the residual draw matters. The total variation distance must stay within
// twice what sampling noise gives for 3000 draws (about 0.016; seen: 0.5 to 1.6 times that over
// several seed sets and 16000 draws); always keeping the draft, or drawing the replacement from p
// instead of max(0, p - q), moves it by 0.1 or more.
TEST(Speculative, SamplingKeepsTargetDistribution) {
    const auto m = stories();
    const int32_t nv = static_cast<int32_t>(m->hparams().n_vocab);
    const std::vector<int32_t> prompt = tok("Once upon a time, there was a little girl named Lily. Once upon a time");
    GenerateParams gp;
    gp.n_predict = 3;  // one token drafted after the first (a pass yields at most drafts + 1)
    gp.sampling.temp = 1.0f;
    gp.sampling.top_k = 12;
    gp.sampling.top_p = 1.0f;
    gp.sampling.min_p = 0.0f;

    // Exact joint distribution.
    std::map<std::pair<int32_t, int32_t>, double> exact;
    {
        Session s(m, opts());
        Sampler sm(gp.sampling, nv);
        const float* l = s.eval(prompt);
        sm.sample(l);
        const std::vector<TokenProb> p1(sm.candidates().begin(), sm.candidates().end());
        for (const TokenProb& a : p1) {
            s.truncate(static_cast<uint32_t>(prompt.size()));
            sm.sample(s.eval(std::span<const int32_t>(&a.id, 1)));
            for (const TokenProb& b : sm.candidates()) exact[{a.id, b.id}] += double(a.p) * b.p;
        }
    }

    struct Drafter {
        bool lookup;
        float temp;
    };
    const int N = 3000;
    for (const Drafter d : {Drafter{false, 3.0f}, Drafter{false, 0.0f}, Drafter{true, -1}}) {
        SCOPED_TRACE(std::string(d.lookup ? "lookup" : "draft model") + " temp " + std::to_string(d.temp));
        SpeculativeParams sp;
        sp.lookup = d.lookup;
        sp.draft_temp = d.temp;
        // The prompt but its last token stays cached; each run continues from there (penalties
        // are off, so the sampler does not need to have seen it). Lookup searches only the
        // tokens it is given, so it gets the whole prompt each time.
        const uint32_t n_head = d.lookup ? 0 : static_cast<uint32_t>(prompt.size() - 1);
        Session ts(m, opts(64)), ds(stories_q4(), opts(64));
        if (n_head > 0) {
            ts.eval(std::span<const int32_t>(prompt.data(), n_head));
            ds.eval(std::span<const int32_t>(prompt.data(), n_head));
        }
        std::map<std::pair<int32_t, int32_t>, double> seen;
        uint64_t drafted = 0, accepted = 0;
        for (int i = 0; i < N; ++i) {
            ts.truncate(n_head);
            ds.truncate(n_head);
            gp.sampling.seed = 1000 + i;
            const SpeculativeResult r =
                generate_speculative(ts, d.lookup ? nullptr : &ds, std::span<const int32_t>(prompt).subspan(n_head), gp, sp);
            ASSERT_EQ(r.gen.tokens.size(), 3u);
            seen[{r.gen.tokens[0], r.gen.tokens[1]}] += 1.0 / N;
            drafted += r.spec.n_drafted;
            accepted += r.spec.n_accepted;
        }
        double tv = 0;
        for (const auto& [k, p] : exact) tv += std::fabs(p - (seen.count(k) ? seen[k] : 0.0));
        for (const auto& [k, p] : seen)
            if (!exact.count(k)) tv += p;  // a pair the target can never produce
        tv /= 2;
        // What sampling noise alone gives: E|p^ - p| ~ sqrt(2 p (1 - p) / (pi N)) per pair.
        double noise = 0;
        for (const auto& [k, p] : exact) noise += std::sqrt(2 * p * (1 - p) / (M_PI * N));
        noise /= 2;
        EXPECT_LT(tv, 2 * noise) << "noise level " << noise;
        EXPECT_LE(drafted, uint64_t(N));  // one draft per run at most (lookup may find none)
        EXPECT_GT(drafted, uint64_t(N / 2));
        EXPECT_GT(accepted, uint64_t(N / 10));
        EXPECT_LT(accepted, uint64_t(N) * 95 / 100);  // rejections happened: the residual was drawn
    }
}

TEST(Speculative, RefusesOtherVocabulary) {
    SynthConfig c;
    c.name = "tiny";
    c.n_vocab = 32000;
    c.n_ctx_train = 64;
    c.n_embd = 32;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_head_kv = 1;
    c.n_ff = 64;
    c.tokenizer = test::source_dir() + "/tests/data/vocab/ggml-vocab-llama-spm.gguf";
    const std::string path = test::temp_dir() + "/other-vocab.gguf";
    synthesize(c, path);
    const auto other = Model::load(path);
    try {
        check_draft_vocab(*stories(), *other);
        FAIL() << "no error";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("stories260K.gguf"), std::string::npos) << msg;
        EXPECT_NE(msg.find("other-vocab.gguf"), std::string::npos) << msg;
    }
    Session ts(stories(), opts()), ds(other, opts());
    SpeculativeParams sp;
    EXPECT_THROW(generate_speculative(ts, &ds, tok("The cat"), greedy(4), sp), Error);
    EXPECT_NO_THROW(check_draft_vocab(*stories(), *stories_q4()));
    // The CLI says the same.
    const auto r = test::run_cli({"run", "-m", test::model_path("stories260K/stories260K.gguf"), "--draft", path, "-n", "4"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("other-vocab.gguf"), std::string::npos) << r.err;
}

// slm run --draft / --lookup print what plain slm run prints (greedy) and the acceptance figures.
TEST(Speculative, CliRunMatchesPlain) {
    const std::string model = test::model_path("stories260K/stories260K.gguf");
    const std::string draft = test::temp_dir() + "/cli-draft-q4_0.gguf";
    QuantizeParams qp;
    qp.type = "Q4_0";
    quantize_model(model, draft, qp);
    const std::vector<std::string> base = {"run", "-m", model, "-p", "Once upon a time", "-n", "80", "--temp", "0", "-t", "1"};
    const auto plain = test::run_cli(base);
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    for (std::vector<std::string> extra : {std::vector<std::string>{"--draft", draft, "--draft-max", "5"},
                                           std::vector<std::string>{"--lookup"}}) {
        std::vector<std::string> args = base;
        args.insert(args.end(), extra.begin(), extra.end());
        const auto r = test::run_cli(args);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_EQ(r.out, plain.out);
        EXPECT_NE(r.err.find("tokens per target pass"), std::string::npos) << r.err;
    }
}

// slm bench --draft / --lookup: one JSON row per K, greedy output checked equal to plain decoding.
TEST(Speculative, CliBench) {
    const std::string model = test::model_path("stories260K/stories260K.gguf");
    const std::string draft = test::temp_dir() + "/bench-draft-q4_0.gguf";
    QuantizeParams qp;
    qp.type = "Q4_0";
    quantize_model(model, draft, qp);
    for (std::vector<std::string> extra : {std::vector<std::string>{"--draft", draft}, std::vector<std::string>{"--lookup"}}) {
        std::vector<std::string> args = {"bench", "-m", model, "-n", "24", "-r", "1", "-t", "1", "--draft-max", "2,5", "--json"};
        args.insert(args.end(), extra.begin(), extra.end());
        const auto r = test::run_cli(args);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const nlohmann::json j = nlohmann::json::parse(r.out);
        ASSERT_EQ(j.size(), 2u);
        EXPECT_EQ(j[0]["draft_max"], 2);
        EXPECT_EQ(j[1]["draft_max"], 5);
        for (const auto& row : j) {
            EXPECT_TRUE(row["same_output"].get<bool>());
            EXPECT_GT(row["plain_tps"].get<double>(), 0);
            EXPECT_GT(row["spec_tps"].get<double>(), 0);
            EXPECT_GE(row["tokens_per_pass"].get<double>(), 1.0);
        }
    }
}

TEST(Speculative, RejectsBadParams) {
    Session ts(stories(), opts());
    SpeculativeParams sp;
    EXPECT_THROW(generate_speculative(ts, nullptr, tok("a"), greedy(4), sp), Error);  // no drafter
    sp.lookup = true;
    sp.draft_max = 0;
    EXPECT_THROW(generate_speculative(ts, nullptr, tok("a"), greedy(4), sp), Error);
    sp.draft_max = 4;
    sp.ngram_min = 3;
    sp.ngram_max = 2;
    EXPECT_THROW(generate_speculative(ts, nullptr, tok("a"), greedy(4), sp), Error);
}

} // namespace
