// Session::eval_branches: several continuations of one cached prefix in one pass must give the
// logits each gets when evaluated alone after the prefix (a fresh session per branch).
#include "slm/error.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <string>
#include <vector>

using namespace slm;

namespace {

struct Case {
    std::string path;
    GGMLType kv;
    uint32_t n_batch;
};

// Largest |a - b| over max |b|, over all rows.
double rel_diff(std::span<const float> a, std::span<const float> b) {
    double d = 0, m = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
        m = std::max(m, std::fabs(double(b[i])));
    }
    return d / std::max(m, 1e-30);
}

std::vector<std::vector<int32_t>> make_branches(const Vocab& v) {
    std::vector<std::vector<int32_t>> br;
    for (const char* s : {" there was a little girl named Lily who loved to play outside",
                          " a dog", " the sun", " in a big forest lived a happy bear. One day he found a shiny red ball"})
        br.push_back(v.tokenize(s, false, false));
    br.push_back({v.tokenize(" cat", false, false).front()});  // a one-token branch
    return br;
}

void check_model(const std::string& path, GGMLType kv, uint32_t n_batch, double tol) {
    SCOPED_TRACE(path + (kv == GGMLType::F16 ? " f16 kv" : " f32 kv") + " n_batch " + std::to_string(n_batch));
    auto model = Model::load(path);
    SessionOptions o;
    o.n_ctx = 256;
    o.n_batch = n_batch;
    o.kv_type = kv;
    o.n_threads = 2;
    const std::vector<int32_t> prefix = model->vocab().tokenize("Once upon a time,", true, false);
    const auto branches = make_branches(model->vocab());

    Session s(model, o);
    ASSERT_TRUE(s.supports_branches());
    s.eval(prefix);
    s.eval_branches(static_cast<uint32_t>(prefix.size()), branches);
    EXPECT_EQ(s.n_past(), prefix.size());
    const std::vector<float> batched(s.logits().begin(), s.logits().end());
    const size_t nv = model->hparams().n_vocab;

    Session alone(model, o);
    size_t row = 0;
    for (size_t b = 0; b < branches.size(); ++b) {
        SCOPED_TRACE("branch " + std::to_string(b));
        alone.reset();
        alone.eval(prefix);
        alone.eval(branches[b], true);
        const auto want = alone.logits();
        ASSERT_EQ(want.size(), branches[b].size() * nv);
        const double d = rel_diff(std::span<const float>(batched).subspan(row * nv, want.size()), want);
        EXPECT_LE(d, tol);
        if (b == 3) std::printf("branch 3: max |diff| / max |logit| = %.3g\n", d);
        row += branches[b].size();
    }
    EXPECT_EQ(row * nv, batched.size());

    // The cache holds the prefix only: going on from it is going on from a fresh prefix.
    const std::vector<int32_t> more = model->vocab().tokenize(" the end", false, false);
    s.eval(more, true);
    const std::vector<float> cont(s.logits().begin(), s.logits().end());
    alone.reset();
    alone.eval(prefix);
    alone.eval(more, true);
    EXPECT_LE(rel_diff(cont, alone.logits()), tol);
}

} // namespace

TEST(Branches, MatchEachBranchAloneStories260K) {
    const std::string m = test::model_path("stories260K/stories260K.gguf");
    for (GGMLType kv : {GGMLType::F16, GGMLType::F32})
        for (uint32_t nb : {512u, 5u})  // 5: branches split across forward calls
            check_model(m, kv, nb, 2e-6);
}

TEST(Branches, MatchEachBranchAloneQuantized) {
    // Q4_0 matrices are repacked on AVX-512 machines: the batched matmul path with other row counts.
    check_model(test::source_dir() + "/tests/data/reference/stories260K/stories260K.q4_0.gguf", GGMLType::F16, 512, 2e-6);
    check_model(test::source_dir() + "/tests/data/reference/stories260K/stories260K.q4_k.gguf", GGMLType::F32, 7, 2e-6);
}

TEST(Branches, MatchEachBranchAloneOtherArchitectures) {
    if (!test::shared_available()) GTEST_SKIP() << "no ../shared";
    for (const char* a : {"llama", "qwen2", "qwen3", "phi3", "qwen2moe"}) {
        const std::string p = test::shared_path(std::string("reference/archs/") + a + "/" + a + ".f32.gguf");
        check_model(p, GGMLType::F16, 512, 2e-6);
        check_model(p, GGMLType::F32, 6, 2e-6);
    }
}

TEST(Branches, NoPrefixAndErrors) {
    auto model = Model::load(test::model_path("stories260K/stories260K.gguf"));
    SessionOptions o;
    o.n_ctx = 64;
    o.n_threads = 1;
    Session s(model, o);
    const auto branches = make_branches(model->vocab());
    // Without a prefix each branch starts at position 0, as a fresh sequence.
    std::vector<std::vector<int32_t>> two = {{1, 400, 401}, {1, 300}};
    s.eval_branches(0, two);
    EXPECT_EQ(s.n_past(), 0u);
    const std::vector<float> got(s.logits().begin(), s.logits().end());
    Session alone(model, o);
    alone.eval(two[1], true);
    const size_t nv = model->hparams().n_vocab;
    EXPECT_LE(rel_diff(std::span<const float>(got).subspan(3 * nv), alone.logits()), 2e-6);

    EXPECT_THROW(s.eval_branches(5, two), Error);  // prefix longer than the cache
    std::vector<std::vector<int32_t>> empty_branch = {{1}, {}};
    EXPECT_THROW(s.eval_branches(0, empty_branch), Error);
    std::vector<std::vector<int32_t>> bad_id = {{1, 512}};
    EXPECT_THROW(s.eval_branches(0, bad_id), Error);
    std::vector<std::vector<int32_t>> too_long(3, std::vector<int32_t>(30, 5));
    EXPECT_THROW(s.eval_branches(0, too_long), Error);  // 90 > 64
    EXPECT_EQ(s.n_past(), 0u);
}

TEST(Branches, RefusedWhereTheyCannotWork) {
    if (!test::shared_available()) GTEST_SKIP() << "no ../shared";
    for (const char* a : {"mamba", "jamba", "gemma2", "gemma3"}) {
        SCOPED_TRACE(a);
        auto model = Model::load(test::shared_path(std::string("reference/archs/") + a + "/" + a + ".f32.gguf"));
        SessionOptions o;
        o.n_ctx = 64;
        o.n_threads = 1;
        Session s(model, o);
        EXPECT_FALSE(s.supports_branches());
        s.eval(std::vector<int32_t>{1, 2, 3});
        std::vector<std::vector<int32_t>> two = {{4}, {5}};
        try {
            s.eval_branches(3, two);
            ADD_FAILURE() << "no error";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("one after the other"), std::string::npos) << e.what();
        }
    }
}
