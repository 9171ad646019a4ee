// slm eval perplexity: the llama.cpp goldens, the chunked and strided modes checked against an
// independent per-token computation written here, bits per byte, bad input, and the CLI.
#include "slm/error.h"
#include "slm/model.h"
#include "slm/perplexity.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace slm;
using namespace slm::test;

namespace {

std::string stories() { return model_path("stories260K/stories260K.gguf"); }
std::string tinystories() { return source_dir() + "/data/eval/tinystories_val.txt"; }
std::string wikitext() { return source_dir() + "/data/eval/wikitext/wikitext2.test.tokens.txt"; }

// The text as llama.cpp's -f reads it: one trailing newline dropped.
std::string read_as_llama(const std::string& path) {
    std::string t = read_text(path);
    if (!t.empty() && t.back() == '\n') t.pop_back();
    return t;
}

std::shared_ptr<const Model> model() {
    static std::shared_ptr<const Model> m = Model::load(stories());
    return m;
}

// log p(tok | row) in long double, written independently of src/eval.
double ref_nll(const float* row, int n_vocab, int tok) {
    long double mx = row[0];
    for (int i = 1; i < n_vocab; ++i) mx = std::max<long double>(mx, row[i]);
    long double z = 0;
    for (int i = 0; i < n_vocab; ++i) z += std::exp(static_cast<long double>(row[i]) - mx);
    return static_cast<double>(mx + std::log(z) - row[tok]);
}

// Chunked mode against a per-chunk computation here: BOS over each chunk's first token, the second
// half scored, PPL error = PPL * sd / sqrt(n - 1).
TEST(Perplexity, ChunkedMatchesIndependentComputation) {
    const std::string text = read_as_llama(tinystories()).substr(0, 6000);
    const uint32_t c = 64;
    PerplexityParams p;
    p.n_ctx = c;
    p.n_chunks = 5;
    std::vector<std::pair<int, double>> seen;
    const PerplexityResult r = perplexity(model(), text, p, [&](const PerplexityChunk& ch, int n) {
        seen.emplace_back(ch.index, ch.ppl_running);
        EXPECT_EQ(n, 5);
    });
    ASSERT_EQ(seen.size(), 5u);

    const Vocab& v = model()->vocab();
    const std::vector<int32_t> toks = v.tokenize(text, true, false);
    SessionOptions so;
    so.n_ctx = c;
    Session s(model(), so);
    const int nv = static_cast<int>(model()->hparams().n_vocab);
    double sum = 0, sum2 = 0;
    size_t n = 0, bytes = 0;
    for (int k = 0; k < 5; ++k) {
        std::vector<int32_t> in(toks.begin() + k * c, toks.begin() + (k + 1) * c);
        in[0] = v.bos();
        s.reset();
        s.eval(in, true);
        for (uint32_t j = c / 2; j + 1 < c; ++j) {
            const double x = ref_nll(s.logits().data() + size_t(j) * nv, nv, toks[k * c + j + 1]);
            sum += x, sum2 += x * x, ++n;
            bytes += v.token_to_piece(toks[k * c + j + 1], false).size();
        }
        EXPECT_EQ(seen[k].first, k);
        EXPECT_NEAR(seen[k].second, std::exp(sum / n), 1e-5 * std::exp(sum / n)) << "chunk " << k;
    }
    const double mean = sum / n, sd = std::sqrt((sum2 / n - mean * mean) / (n - 1));
    EXPECT_EQ(r.n_scored, n);
    EXPECT_EQ(r.n_bytes, bytes);
    EXPECT_NEAR(r.ppl, std::exp(mean), 1e-5 * std::exp(mean));
    EXPECT_NEAR(r.ppl_se, std::exp(mean) * sd, 1e-4 * std::exp(mean) * sd);
    EXPECT_NEAR(r.bpb, sum / (std::log(2.0) * bytes), 1e-6);
    EXPECT_GT(r.bpb_se, 0);
}

// Strided mode against a computation that evaluates, for every token, exactly the context the
// Hugging Face loop gives it: the window that first reaches the token (windows start every
// `stride` tokens, n_ctx long), from the window's start up to the token.
void check_strided(uint32_t window, uint32_t stride, size_t n_chars) {
    const std::string text = read_as_llama(tinystories()).substr(0, n_chars);
    PerplexityParams p;
    p.n_ctx = window;
    p.stride = stride;
    const PerplexityResult r = perplexity(model(), text, p);

    const std::vector<int32_t> toks = model()->vocab().tokenize(text, true, false);
    const size_t N = toks.size();
    SessionOptions so;
    so.n_ctx = window;
    Session s(model(), so);
    const int nv = static_cast<int>(model()->hparams().n_vocab);
    double sum = 0;
    size_t n = 0, n_windows = 0;
    for (size_t t = 1; t < N; ++t) {
        // Window k = [k*stride, k*stride + window) ends at min(., N); the token's window is the first
        // whose end passes t; windows after the one that reaches N do not exist.
        size_t k = 0;
        while (std::min(k * stride + window, N) <= t) ++k;
        const size_t b = k * stride;
        if (b >= t) continue;  // the token opens its window: no context in it, not scored
        const std::vector<int32_t> ctx(toks.begin() + b, toks.begin() + t);
        s.reset();
        const float* logits = s.eval(ctx);
        sum += ref_nll(logits, nv, toks[t]);
        ++n;
        n_windows = std::max(n_windows, k + 1);
    }
    EXPECT_EQ(r.n_scored, n) << "window " << window << " stride " << stride;
    EXPECT_EQ(static_cast<size_t>(r.n_chunk), n_windows);
    EXPECT_NEAR(r.nll, sum / n, 2e-5) << "window " << window << " stride " << stride;
}

TEST(Perplexity, StridedMatchesPerTokenWindows) { check_strided(48, 16, 900); }

TEST(Perplexity, StrideEqualToWindowScoresAllButWindowStarts) {
    check_strided(40, 40, 900);
    // Non-overlapping windows: every token but each window's first.
    const std::string text = read_as_llama(tinystories()).substr(0, 900);
    const size_t N = model()->vocab().tokenize(text, true, false).size();
    PerplexityParams p;
    p.n_ctx = 40;
    p.stride = 40;
    const PerplexityResult r = perplexity(model(), text, p);
    const size_t n_windows = (N + 39) / 40;
    EXPECT_EQ(r.n_scored, N - n_windows);
}

TEST(Perplexity, StridedEveryTokenScoredOnce) {
    const std::string text = read_as_llama(tinystories()).substr(0, 3000);
    const size_t N = model()->vocab().tokenize(text, true, false).size();
    PerplexityParams p;
    p.n_ctx = 64;
    p.stride = 32;
    const PerplexityResult r = perplexity(model(), text, p);
    EXPECT_EQ(r.n_scored, N - 1);
    size_t sum = 0;
    for (const PerplexityChunk& c : r.chunks) sum += c.n_scored;
    EXPECT_EQ(sum, N - 1);
    EXPECT_EQ(r.chunks.front().n_scored, 63u);  // the first window scores all but its BOS
}

TEST(Perplexity, ChunksLimitAndThreadsGiveSameFigures) {
    const std::string text = read_as_llama(tinystories()).substr(0, 8000);
    PerplexityParams p;
    p.n_ctx = 128;
    p.n_chunks = 3;
    p.n_threads = 1;
    const PerplexityResult a = perplexity(model(), text, p);
    p.n_threads = 2;
    p.n_batch = 32;  // several passes per chunk
    const PerplexityResult b = perplexity(model(), text, p);
    EXPECT_EQ(a.n_chunk, 3);
    EXPECT_EQ(a.n_scored, b.n_scored);
    EXPECT_NEAR(a.ppl, b.ppl, 1e-4 * a.ppl);
}

TEST(PerplexityErrors, BadInputIsAClearError) {
    auto expect_error = [](const PerplexityParams& p, const std::string& text, const std::string& needle) {
        try {
            perplexity(model(), text, p);
            ADD_FAILURE() << "no error, expected one mentioning " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    const std::string text = read_as_llama(tinystories()).substr(0, 2000);
    PerplexityParams p;
    p.n_ctx = 512;  // the text has ~500 tokens: fewer than 2 * c
    expect_error(p, text, "2 x c");
    p.n_ctx = 2;
    expect_error(p, text, "n_ctx");
    p.n_ctx = 0;
    expect_error(p, text, "n_ctx");
    p.n_ctx = 1u << 30;
    expect_error(p, text, "n_ctx");
    p.n_ctx = 64;
    p.stride = 65;
    expect_error(p, text, "stride");
    p.stride = 32;
    p.save_logits = temp_dir() + "/x.bin";
    expect_error(p, text, "--save-logits");
    p.save_logits.clear();
    p.n_chunks = 0;
    expect_error(p, text, "n_chunks");
    p.n_chunks = -1;
    p.stride = 0;
    expect_error(p, "", "tokens");
    p.stride = 8;
    expect_error(p, "", "tokens");  // BOS only: nothing to score
}

// ---- the CLI ----

TEST(PerplexityCli, GoldenAndJson) {
    const std::string json = temp_dir() + "/ppl.json";
    RunResult r = run_cli({"eval", "perplexity", "-m", stories(), "-f", wikitext(), "-c", "256", "--chunks", "40",
                           "--json", json});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("[1]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("[40]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("Final estimate: PPL = 219.58"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("bits per byte"), std::string::npos) << r.out;
    const nlohmann::json j = nlohmann::json::parse(read_text(json));
    EXPECT_NEAR(j["ppl"]["value"].get<double>(), 219.584, 0.05);
    EXPECT_EQ(j["chunks"].size(), 40u);
    EXPECT_EQ(j["n_chunk"].get<int>(), 40);
    EXPECT_GT(j["bits_per_byte"]["value"].get<double>(), 0);
    EXPECT_GT(j["bits_per_byte"]["se"].get<double>(), 0);

    // --limit is --chunks by another name.
    r = run_cli({"eval", "perplexity", "-m", stories(), "-f", wikitext(), "-c", "256", "--limit", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("[2]"), std::string::npos);
    EXPECT_EQ(r.out.find("[3]"), std::string::npos);
}

TEST(PerplexityCli, ErrorsExitNonZero) {
    const std::string short_text = temp_dir() + "/short.txt";
    write_file(short_text, std::vector<uint8_t>{'O', 'n', 'c', 'e', ' ', 'u', 'p', 'o', 'n'});
    RunResult r = run_cli({"eval", "perplexity", "-m", stories(), "-f", short_text, "-c", "256"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("tokens"), std::string::npos) << r.err;
    r = run_cli({"eval", "perplexity", "-m", stories(), "-f", temp_dir() + "/missing.txt"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("missing.txt"), std::string::npos) << r.err;
    r = run_cli({"eval", "perplexity", "-m", stories()});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("-f"), std::string::npos) << r.err;
    r = run_cli({"eval", "perplexity", "-m", stories(), "-f", wikitext(), "-c", "1"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("n_ctx"), std::string::npos) << r.err;
    r = run_cli({"eval", "perplexity", "-m", stories(), "-f", wikitext(), "--chunks", "2", "--limit", "3"});
    EXPECT_NE(r.exit_code, 0);
}

} // namespace
