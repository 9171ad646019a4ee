// Golden test: the Llama forward pass against llama.cpp (build d32676d) dumps.
//
// For every dump line: the same prompt tokens; teacher-forced logits for every prompt position
// within a tolerance relative to the row's largest |logit|; and the greedy continuation equal to
// llama.cpp's up to the first step whose top-1/top-2 gap is below the logit tolerance (past such
// a near-tie either choice is right and the sequences may then legitimately part).
//
// Tolerances (relative to max|logit| of the row):
//  * F32 weights, F32 KV cache, no flash attention (*.f32kv.jsonl): 1e-4, the bound.
//    Only summation order differs from llama.cpp here.
//  * F16 KV cache (llama.cpp's default dumps): slm reproduces llama.cpp's CPU flash-attention
//    numerics (Q rounded to F16, online softmax, V summed in an F16 buffer), so most rows agree to
//    1e-6; the rest differ because llama.cpp's matmuls sum in another order (AVX-512 vec_dot and
//    llamafile sgemm for the prompt) and an F16 rounding of K, V or the V sum then lands on the
//    other side. Bound 2e-3 (worst measured on AVX-512: 2.1e-4 stories, 1.2e-4 llama; F16 weights 2.2e-4).
//  * quantized weights: activations are quantized to Q8_0 exactly as llama.cpp's x86 build does
//    (same scale, round-half-even), so rows match to 1e-6 until one activation lands within float
//    rounding of a Q8_0 rounding boundary and is rounded the other way. That moves the value by a
//    whole quantization step (up to max|x|/127 of its block), which on these 64- and 256-wide
//    models moves logits by up to ~2% of max|logit| (worst measured: 1.0e-2 stories Q8_0, 1.4e-2
//    Q5_0, 1.6e-2 llama Q4_0), and stays in the KV cache for later rows. Bound 3e-2, and at least
//    60% of rows must agree to 1e-4 (measured 76-100%), which a wrong kernel could not do.
//  * K-quants: activations are Q8_K, 256 values per scale, so one flip moves more, and many
//    activations of this random model sit within 4e-6 of a Q8_K rounding boundary; llama.cpp also
//    ran Q4_K through its repacked matrix kernels (another summation order). Q4_K: bound 5e-2,
//    30% of rows exact (measured 1.9e-2 and 59% on AVX-512). Q6_K:
//    bound 3e-2, 60% exact (measured 1.7e-3 and 98%).
//  With the scalar kernels (SLM_ISA=scalar), whose sums are ggml's scalar ones, more rows agree.
#include "slm/generate.h"
#include "slm/model.h"
#include "test_util.h"

#include "golden.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

using namespace slm;
using slm::test::GoldenCase;

namespace {

std::string data(const std::string& rel) { return test::source_dir() + "/tests/data/reference/" + rel; }
std::string stories() { return test::model_path("stories260K/stories260K.gguf"); }
std::string arch(const std::string& rel) { return test::shared_path("reference/archs/llama/" + rel); }
std::string qwen2(const std::string& rel) { return test::shared_path("reference/archs/qwen2/" + rel); }
std::string qwen3(const std::string& rel) { return test::shared_path("reference/archs/qwen3/" + rel); }

std::vector<GoldenCase> cases() {
    return {
        {"stories_f32_f32kv", stories(), data("stories260K/stories260K.f32.f32kv.jsonl"), GGMLType::F32, 0.0001, false, 1},
        {"stories_f32", stories(), data("stories260K/stories260K.f32.jsonl"), GGMLType::F16, 0.002, false, 0.4},
        {"stories_q8_0", data("stories260K/stories260K.q8_0.gguf"), data("stories260K/stories260K.q8_0.jsonl"), GGMLType::F16, 0.03, false, 0.6},
        {"stories_q4_0", data("stories260K/stories260K.q4_0.gguf"), data("stories260K/stories260K.q4_0.jsonl"), GGMLType::F16, 0.03, false, 0.6},
        {"stories_q4_k_fallback_q5_0", data("stories260K/stories260K.q4_k.gguf"), data("stories260K/stories260K.q4_k.jsonl"), GGMLType::F16, 0.03, false, 0.6},
        {"stories_q6_k_fallback_q8_0", data("stories260K/stories260K.q6_k.gguf"), data("stories260K/stories260K.q6_k.jsonl"), GGMLType::F16, 0.03, false, 0.6},
        {"llama_f32_f32kv", arch("llama.f32.gguf"), arch("llama.f32.f32kv.jsonl"), GGMLType::F32, 0.0001, true, 1},
        {"llama_f32", arch("llama.f32.gguf"), arch("llama.f32.jsonl"), GGMLType::F16, 0.002, true, 0.4},
        {"llama_f16", arch("llama.f16.gguf"), arch("llama.f16.jsonl"), GGMLType::F16, 0.003, true, 0.05},
        {"llama_q8_0", arch("llama.q8_0.gguf"), arch("llama.q8_0.jsonl"), GGMLType::F16, 0.03, true, 0.6},
        {"llama_q4_0", arch("llama.q4_0.gguf"), arch("llama.q4_0.jsonl"), GGMLType::F16, 0.03, true, 0.6},
        {"llama_q4_k", arch("llama.q4_k.gguf"), arch("llama.q4_k.jsonl"), GGMLType::F16, 0.05, true, 0.3},
        {"llama_q6_k", arch("llama.q6_k.gguf"), arch("llama.q6_k.jsonl"), GGMLType::F16, 0.03, true, 0.6},
        // Qwen2: Q/K/V biases, NEOX RoPE, tied output. Qwen3: per-head Q/K RMSNorm, head size 128
        // != n_embd / n_head, NEOX RoPE, tied output.
        {"qwen2_f32_f32kv", qwen2("qwen2.f32.gguf"), qwen2("qwen2.f32.f32kv.jsonl"), GGMLType::F32, 0.0001, true, 1},
        {"qwen2_f32", qwen2("qwen2.f32.gguf"), qwen2("qwen2.f32.jsonl"), GGMLType::F16, 0.002, true, 0.4},
        {"qwen2_q4_k", qwen2("qwen2.q4_k.gguf"), qwen2("qwen2.q4_k.jsonl"), GGMLType::F16, 0.05, true, 0.3},
        {"qwen3_f32_f32kv", qwen3("qwen3.f32.gguf"), qwen3("qwen3.f32.f32kv.jsonl"), GGMLType::F32, 0.0001, true, 1},
        // Heads of 128 over an F16 KV cache: how many rows land within 1e-4 depends on whether the
        // F16 accumulation order emulated is ggml's AVX-512 one (96 %) or AVX2/scalar (17 %).
        {"qwen3_f32", qwen3("qwen3.f32.gguf"), qwen3("qwen3.f32.jsonl"), GGMLType::F16, 0.002, true, 0.1},
        {"qwen3_q4_k", qwen3("qwen3.q4_k.gguf"), qwen3("qwen3.q4_k.jsonl"), GGMLType::F16, 0.05, true, 0.3},
    };
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesLlamaCpp) { slm::test::run_golden(GetParam()); }

INSTANTIATE_TEST_SUITE_P(LlamaCpp, Golden, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// llama2.c's own expected output: greedy from BOS alone, 200 steps, with the bundled model.
TEST(Stories260K, Greedy200MatchesLlama2c) {
    auto model = Model::load(stories());
    const std::string expected = test::read_text(test::model_path("stories260K/expected_greedy_200.txt"));
    SessionOptions so;
    so.n_ctx = 512;
    so.kv_type = GGMLType::F32;
    Session s(model, so);
    GenerateParams gp;
    gp.n_predict = 200;
    gp.sampling.temp = 0;
    std::vector<int32_t> bos{model->vocab().bos()};
    GenerateResult r = generate(s, bos, gp);
    EXPECT_EQ(r.text, expected);
}

} // namespace
