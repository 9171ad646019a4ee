// KL divergence against a base log-probability file: the file's round trip and its validation
// (truncated, corrupt, hostile counts), a model against itself, the Q8_0 / Q4_0 models against
// F32, and the CLI.
#include "formats/logits_file.h"
#include "slm/error.h"
#include "slm/model.h"
#include "slm/perplexity.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using namespace slm;
using namespace slm::test;

namespace {

std::string stories() { return model_path("stories260K/stories260K.gguf"); }
std::string ref_model(const char* q) { return source_dir() + "/tests/data/reference/stories260K/stories260K." + q + ".gguf"; }
std::string tinystories() { return source_dir() + "/data/eval/tinystories_val.txt"; }

std::string tiny_text() {
    std::string t = read_text(tinystories());
    if (!t.empty() && t.back() == '\n') t.pop_back();
    return t;
}

template <class F>
void expect_error(F&& f, const std::vector<std::string>& needles) {
    try {
        f();
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        for (const std::string& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
}

// ---- the base file ----

struct Synthetic {
    uint32_t n_ctx = 10;
    int32_t n_vocab = 7, n_chunk = 3;
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;  // one per stored row
    std::vector<int32_t> targets;
};

Synthetic make_synthetic(int32_t n_vocab) {
    Synthetic s;
    s.n_vocab = n_vocab;
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> tok(0, n_vocab - 1);
    std::normal_distribution<float> nd(0, 4);
    for (uint32_t i = 0; i < s.n_ctx * s.n_chunk; ++i) s.tokens.push_back(tok(rng));
    for (int32_t c = 0; c < s.n_chunk; ++c)
        for (uint32_t r = 0; r < logits_rows_per_chunk(s.n_ctx); ++r) {
            std::vector<float> l(n_vocab);
            for (float& x : l) x = nd(rng);
            s.targets.push_back(tok(rng));
            if (r == 1) l[s.targets.back()] = -60;  // far below the floor: must still read back exactly
            if (r == 2) std::fill(l.begin(), l.end(), 1.5f);  // flat: scale 0
            s.logits.push_back(l);
        }
    return s;
}

std::string write_synthetic(const Synthetic& s, const std::string& path) {
    LogitsFileWriter w(path, s.n_ctx, s.n_vocab, s.n_chunk, s.tokens);
    std::vector<uint16_t> row(logits_row_u16(s.n_vocab));
    for (size_t i = 0; i < s.logits.size(); ++i) {
        quantize_log_probs(s.logits[i].data(), s.n_vocab, row.data(), s.targets[i]);
        w.write_rows(row.data(), 1);
    }
    w.finish();
    return path;
}

double log_softmax(const std::vector<float>& l, int i) {
    double mx = l[0];
    for (float x : l) mx = std::max<double>(mx, x);
    double z = 0;
    for (float x : l) z += std::exp(x - mx);
    return l[i] - mx - std::log(z);
}

TEST(LogitsFile, RoundTrip) {
    for (int32_t n_vocab : {7, 8, 1}) {
        const Synthetic s = make_synthetic(n_vocab);
        const std::string path = write_synthetic(s, temp_dir() + "/rt.bin");
        const std::vector<uint8_t> bytes = read_file(path);
        const uint32_t rows = logits_rows_per_chunk(s.n_ctx);  // 10 - 1 - 5 = 4
        EXPECT_EQ(rows, 4u);
        EXPECT_EQ(bytes.size(), 20 + s.tokens.size() * 4 + s.n_chunk * rows * logits_row_u16(n_vocab) * 2);
        EXPECT_EQ(std::memcmp(bytes.data(), "_logits_", 8), 0);

        const LogitsFileReader f(path);
        EXPECT_EQ(f.n_ctx(), s.n_ctx);
        EXPECT_EQ(f.n_vocab(), n_vocab);
        EXPECT_EQ(f.n_chunk(), s.n_chunk);
        EXPECT_EQ(f.tokens(), s.tokens);
        for (int32_t c = 0; c < s.n_chunk; ++c)
            for (uint32_t r = 0; r < rows; ++r) {
                const auto& l = s.logits[c * rows + r];
                const LogitsFileReader::Row row = f.row(c, r);
                float mx = l[0];
                for (float x : l) mx = std::max(mx, x);
                const int32_t tgt = s.targets[c * rows + r];
                // Every log-probability above the floor is within half a step (plus float rounding).
                for (int32_t i = 0; i < n_vocab; ++i) {
                    if (l[i] < mx - 16 && i != tgt) continue;
                    EXPECT_NEAR(row.log_prob(i), log_softmax(l, i), row.scale * 0.5 + 2e-5)
                        << "n_vocab " << n_vocab << " chunk " << c << " row " << r << " entry " << i;
                }
            }
        // A flat row has scale 0 and reads back as log(1/n_vocab).
        const LogitsFileReader::Row flat = f.row(0, 2);
        EXPECT_EQ(flat.scale, 0.0f);
        EXPECT_NEAR(flat.log_prob(0), -std::log(static_cast<double>(n_vocab)), 1e-6);
        EXPECT_THROW(f.row(s.n_chunk, 0), Error);
        EXPECT_THROW(f.row(0, rows), Error);
    }
}

TEST(LogitsFile, BadFilesAreClearErrors) {
    const Synthetic s = make_synthetic(7);
    const std::vector<uint8_t> good = read_file(write_synthetic(s, temp_dir() + "/good.bin"));
    auto parse = [](std::vector<uint8_t> b) { LogitsFileReader r(b.data(), b.size(), "bad.bin"); };

    expect_error([&] { LogitsFileReader r(temp_dir() + "/no-such.bin"); }, {"no-such.bin"});
    expect_error([&] { parse({}); }, {"bad.bin", "header"});
    std::vector<uint8_t> b = good;
    b[0] = 'X';
    expect_error([&] { parse(b); }, {"bad.bin", "magic"});
    b = good;
    b.pop_back();
    expect_error([&] { parse(b); }, {"bad.bin", "truncated"});
    b = good;
    b.push_back(0);
    expect_error([&] { parse(b); }, {"bad.bin", "trailing"});
    auto set_i32 = [](std::vector<uint8_t>& v, size_t off, int32_t x) { std::memcpy(v.data() + off, &x, 4); };
    b = good;
    set_i32(b, 12, 0);
    expect_error([&] { parse(b); }, {"bad.bin", "n_vocab"});
    b = good;
    set_i32(b, 16, -1);
    expect_error([&] { parse(b); }, {"bad.bin", "n_chunk"});
    b = good;
    set_i32(b, 8, 2);
    expect_error([&] { parse(b); }, {"bad.bin", "n_ctx"});
    // Hostile counts: the size check refuses them before anything is allocated.
    b = good;
    set_i32(b, 16, 0x7fffffff);
    expect_error([&] { parse(b); }, {"bad.bin", "truncated"});
    b = good;
    set_i32(b, 12, 0x7fffffff);
    expect_error([&] { parse(b); }, {"bad.bin", "n_vocab"});
    b = good;
    set_i32(b, 20 + 4 * 5, 7);  // tokens[5] = n_vocab
    expect_error([&] { parse(b); }, {"bad.bin", "tokens[5]"});
    // A row whose header is not a number is found when the row is read.
    b = good;
    const size_t row0 = 20 + s.tokens.size() * 4;
    const float nan = std::nanf("");
    std::memcpy(b.data() + row0, &nan, 4);
    LogitsFileReader r(b.data(), b.size(), "bad.bin");
    expect_error([&] { r.row(0, 0); }, {"bad.bin", "chunk 0 row 0"});
}

TEST(LogitsFile, WriterChecksRowCountAndLeavesNoFileUnfinished) {
    const Synthetic s = make_synthetic(7);
    const std::string path = temp_dir() + "/unfinished.bin";
    {
        LogitsFileWriter w(path, s.n_ctx, s.n_vocab, s.n_chunk, s.tokens);
        std::vector<uint16_t> row(logits_row_u16(s.n_vocab));
        quantize_log_probs(s.logits[0].data(), s.n_vocab, row.data());
        w.write_rows(row.data(), 1);
        EXPECT_THROW(w.finish(), Error);  // rows missing
    }
    EXPECT_THROW(read_file(path), std::exception);
    EXPECT_THROW(read_file(path + ".tmp"), std::exception);
    EXPECT_THROW(LogitsFileWriter(path, 10, 7, 3, std::vector<int32_t>(29)), Error);
}

// ---- KL divergence ----

constexpr int kChunks = 30;  // 3810 scored tokens of tinystories_val at -c 256: a few seconds

std::string base_file() {
    static const std::string path = [] {
        PerplexityParams p;
        p.n_ctx = 256;
        p.n_chunks = kChunks;
        p.save_logits = temp_dir() + "/base.bin";
        perplexity(Model::load(stories()), tiny_text(), p);
        return p.save_logits;
    }();
    return path;
}

KLDivergenceResult kld_of(const std::string& model) {
    KLDivergenceParams k;
    k.base_path = base_file();
    return kl_divergence(Model::load(model), k);
}

TEST(KLDivergence, ModelAgainstItselfIsZero) {
    PerplexityParams p;
    p.n_ctx = 256;
    p.n_chunks = kChunks;
    const PerplexityResult ppl = perplexity(Model::load(stories()), tiny_text(), p);
    std::vector<int> seen;
    KLDivergenceParams k;
    k.base_path = base_file();
    const KLDivergenceResult r =
        kl_divergence(Model::load(stories()), k, [&](const KLDivergenceChunk& c, int n) {
            seen.push_back(c.index);
            EXPECT_EQ(n, kChunks);
        });
    EXPECT_EQ(seen.size(), static_cast<size_t>(kChunks));
    EXPECT_EQ(r.n_scored, ppl.n_scored);
    EXPECT_NEAR(r.ppl.value, ppl.ppl, 1e-5 * ppl.ppl);
    // The base file keeps log-probabilities to 16 bits (a step of at most 16/65535 nats), so a model
    // against itself is zero to that precision, not to the last bit.
    EXPECT_LT(std::fabs(r.kld.value), 1e-6);
    EXPECT_LT(r.kld_at(1.0), 2e-4);
    EXPECT_GT(r.kld_at(0.0), -2e-4);
    EXPECT_NEAR(r.ratio.value, 1.0, 1e-5);
    EXPECT_NEAR(r.ln_ratio.value, 0.0, 1e-5);
    EXPECT_NEAR(r.ppl_diff.value, 0.0, 1e-4);
    EXPECT_NEAR(r.ppl_base.value, ppl.ppl, 1e-4 * ppl.ppl);
    EXPECT_GT(r.cor, 0.9999);
    EXPECT_LT(std::fabs(r.dp.value), 1e-6);
    EXPECT_LT(r.rms_dp.value, 1e-4);
    EXPECT_GT(r.same_top.value, 0.999);
}

TEST(KLDivergence, QuantizedModelsAreCloseAndOrdered) {
    const KLDivergenceResult q8 = kld_of(ref_model("q8_0"));
    const KLDivergenceResult q4 = kld_of(ref_model("q4_0"));
    EXPECT_GT(q8.kld.value, 0);
    EXPECT_LT(q8.kld.value, 0.01);
    EXPECT_LT(q4.kld.value, 0.5);
    EXPECT_LT(q8.kld.value, q4.kld.value);
    EXPECT_GT(q8.kld.se, 0);
    EXPECT_LT(q8.kld.value + 5 * q8.kld.se, q4.kld.value - 5 * q4.kld.se);  // well separated
    EXPECT_LT(q8.kld_at(0.5), q4.kld_at(0.5));
    EXPECT_LT(q8.kld_at(0.99), q4.kld_at(0.99));
    EXPECT_GT(q8.same_top.value, q4.same_top.value);
    EXPECT_LT(q8.rms_dp.value, q4.rms_dp.value);
    EXPECT_GT(q4.ratio.value, 1.0);
    EXPECT_NEAR(q4.ppl_diff.value, q4.ppl.value - q4.ppl_base.value, 1e-9);
    EXPECT_NEAR(q4.ratio.value, q4.ppl.value / q4.ppl_base.value, 1e-6);
    // Percentiles are ordered.
    for (const KLDivergenceResult* r : {&q8, &q4}) {
        for (size_t i = 1; i < r->kld_percentiles.size(); ++i)
            EXPECT_LE(r->kld_percentiles[i - 1].second, r->kld_percentiles[i].second);
        for (size_t i = 1; i < r->dp_percentiles.size(); ++i)
            EXPECT_LE(r->dp_percentiles[i - 1].second, r->dp_percentiles[i].second);
    }
}

TEST(KLDivergence, ChunksLimit) {
    KLDivergenceParams k;
    k.base_path = base_file();
    k.n_chunks = 3;
    const KLDivergenceResult r = kl_divergence(Model::load(ref_model("q8_0")), k);
    EXPECT_EQ(r.n_chunk, 3);
    EXPECT_EQ(r.n_scored, 3u * 127);
    EXPECT_EQ(r.chunks.size(), 3u);
}

TEST(KLDivergence, VocabMismatchAndMissingFile) {
    const Synthetic s = make_synthetic(7);  // a 7-token vocabulary: not stories260K's 512
    const std::string path = write_synthetic(s, temp_dir() + "/v7.bin");
    KLDivergenceParams k;
    k.base_path = path;
    expect_error([&] { kl_divergence(Model::load(stories()), k); }, {"v7.bin", "n_vocab", "7", "512"});
    k.base_path = temp_dir() + "/none.bin";
    expect_error([&] { kl_divergence(Model::load(stories()), k); }, {"none.bin"});
    k.base_path.clear();
    expect_error([&] { kl_divergence(Model::load(stories()), k); }, {"base_path"});
}

TEST(KLDivergenceCli, SaveThenCompare) {
    const std::string base = temp_dir() + "/cli_base.bin", json = temp_dir() + "/kld.json";
    RunResult r = run_cli({"eval", "perplexity", "-m", stories(), "-f", tinystories(), "-c", "256", "--chunks", "8",
                           "--save-logits", base});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_cli({"eval", "perplexity", "-m", ref_model("q4_0"), "--kl-divergence", base, "--json", json});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* s : {"Mean PPL(Q)/PPL(base)", "Mean PPL(Q)-PPL(base)", "Mean    KLD:", "Median  KLD:",
                          "99.9%   KLD:", "Mean    Δp:", "RMS Δp", "Same top p:"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
    const nlohmann::json j = nlohmann::json::parse(read_text(json));
    EXPECT_EQ(j["n_chunk"].get<int>(), 8);
    EXPECT_EQ(j["chunks"].size(), 8u);
    EXPECT_GT(j["kld"]["value"].get<double>(), 0);
    EXPECT_TRUE(j["kld_percentiles"].contains("50"));
    EXPECT_TRUE(j["kld_percentiles"].contains("99.9"));

    // A truncated base file: exit code 1 and the file named.
    std::vector<uint8_t> b = read_file(base);
    b.resize(b.size() - 3);
    write_file(base, b);
    r = run_cli({"eval", "perplexity", "-m", stories(), "--kl-divergence", base});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("cli_base.bin"), std::string::npos) << r.err;
    r = run_cli({"eval", "perplexity", "-m", stories(), "-f", tinystories(), "--save-logits", base,
                 "--kl-divergence", base});
    EXPECT_NE(r.exit_code, 0);
}

} // namespace
