// Session: batching, KV cache bookkeeping, threads, errors, and no allocation per decoded token.
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cmath>
#include <new>

// Counts heap allocations so a test can assert that decoding a token allocates nothing.
static std::atomic<long> g_allocs{0};
void* operator new(size_t n) {
    ++g_allocs;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

using namespace slm;

namespace {

std::shared_ptr<const Model> stories() {
    static auto m = Model::load(test::model_path("stories260K/stories260K.gguf"));
    return m;
}

std::vector<int32_t> prompt() { return stories()->vocab().tokenize("Tom had a big red ball. He liked to play.", true, true); }

TEST(Session, ChunkedPromptEqualsOnePass) {
    SessionOptions one, chunked;
    one.kv_type = chunked.kv_type = GGMLType::F32;
    chunked.n_batch = 3;  // forces several forward passes over the prompt
    Session a(stories(), one), b(stories(), chunked);
    auto p = prompt();
    a.eval(p, true);
    b.eval(p, true);
    auto la = a.logits(), lb = b.logits();
    ASSERT_EQ(la.size(), lb.size());
    ASSERT_EQ(la.size(), p.size() * stories()->hparams().n_vocab);
    for (size_t i = 0; i < la.size(); ++i) ASSERT_NEAR(la[i], lb[i], 1e-5f * (1 + std::fabs(la[i]))) << i;
}

TEST(Session, PromptThenDecodeEqualsTeacherForcing) {
    SessionOptions so;
    so.kv_type = GGMLType::F32;
    Session all(stories(), so), step(stories(), so);
    auto p = prompt();
    all.eval(p, true);
    const size_t nv = stories()->hparams().n_vocab;
    std::vector<float> ref(all.logits().begin(), all.logits().end());
    for (size_t i = 0; i < p.size(); ++i) {
        const float* l = step.eval(std::span<const int32_t>(&p[i], 1));
        for (size_t k = 0; k < nv; ++k) ASSERT_NEAR(l[k], ref[i * nv + k], 1e-4f) << "token " << i;
    }
    EXPECT_EQ(step.n_past(), p.size());
}

TEST(Session, ThreadCountDoesNotChangeResults) {
    SessionOptions s1, s2;
    s1.n_threads = 1;
    s2.n_threads = 2;
    Session a(stories(), s1), b(stories(), s2);
    auto p = prompt();
    const float* la = a.eval(p);
    const float* lb = b.eval(p);
    for (size_t k = 0; k < stories()->hparams().n_vocab; ++k) ASSERT_EQ(la[k], lb[k]);
}

TEST(Session, TruncateAndResetReuseTheCache) {
    SessionOptions so;
    so.kv_type = GGMLType::F32;
    Session s(stories(), so);
    auto p = prompt();
    const size_t nv = stories()->hparams().n_vocab;
    const float* l = s.eval(p);
    const std::vector<float> first(l, l + nv);
    // Rewind two tokens and feed them again: the same logits.
    s.truncate(static_cast<uint32_t>(p.size() - 2));
    l = s.eval(std::span<const int32_t>(p.data() + p.size() - 2, 2));
    for (size_t k = 0; k < nv; ++k) ASSERT_NEAR(l[k], first[k], 1e-5f);
    // After a reset the cache is empty and the prompt gives the same logits again.
    s.reset();
    EXPECT_EQ(s.n_past(), 0u);
    l = s.eval(p);
    for (size_t k = 0; k < nv; ++k) ASSERT_NEAR(l[k], first[k], 1e-5f);
}

TEST(Session, Errors) {
    SessionOptions so;
    so.n_ctx = 8;
    Session s(stories(), so);
    std::vector<int32_t> bad{1, 99999};
    EXPECT_THROW(s.eval(bad), Error);
    std::vector<int32_t> neg{-1};
    EXPECT_THROW(s.eval(neg), Error);
    std::vector<int32_t> too_long(9, 1);
    try {
        s.eval(too_long);
        FAIL() << "no error for a context overflow";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("context"), std::string::npos) << e.what();
    }
    EXPECT_THROW(s.eval(std::span<const int32_t>()), Error);
    EXPECT_THROW(s.truncate(3), Error);
    SessionOptions bad_kv;  // a Q4_0 cache needs heads of whole blocks of 32; stories260K's are 8
    bad_kv.kv_type = GGMLType::Q4_0;
    EXPECT_THROW(Session(stories(), bad_kv), Error);
}

TEST(Session, DecodeAllocatesNothing) {
    // The bundled F32 model, and (with ../shared) a quantized one whose matrices the loader
    // repacks where this CPU has kernels for that layout.
    std::vector<std::shared_ptr<const Model>> models = {stories()};
    if (test::shared_available()) models.push_back(Model::load(test::shared_path("reference/archs/llama/llama.q4_0.gguf")));
    // Mixture of experts: routing, expert grouping and the shared expert work in session scratch.
    if (test::shared_available())
        for (const char* f : {"qwen2moe.f32.gguf", "qwen2moe.q4_k.gguf"})
            models.push_back(Model::load(test::shared_path(std::string("reference/archs/qwen2moe/") + f)));
    for (const auto& model : models)
    for (int threads : {1, 2}) {
        SessionOptions so;
        so.n_threads = threads;
        Session s(model, so);
        s.eval(prompt());
        int32_t tok = 300;
        s.eval(std::span<const int32_t>(&tok, 1));  // warm-up: scratch buffers reach their size
        const long before = g_allocs.load();
        for (int i = 0; i < 20; ++i) s.eval(std::span<const int32_t>(&tok, 1));
        EXPECT_EQ(g_allocs.load() - before, 0) << threads << " threads";
    }
}

} // namespace
