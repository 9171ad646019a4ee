// Golden test: Qwen2-MoE (qwen2 attention, 4 routed experts top-2 with a softmax router and no
// weight normalisation, sigmoid-gated shared expert, untied output) against llama.cpp (build
// d32676d) dumps in ../shared/reference/archs/qwen2moe.
//
// Tolerances (relative to max|logit| of the row), as for the dense models in
// llama_golden_test.cpp (which explains each), measured on AVX-512 / AVX2 / scalar kernels:
//  * F32 weights, F32 KV cache: 1e-4, the bound (measured 1.7e-6 / 1.9e-6 / 1.8e-6).
//    The routing is the same as llama.cpp's on every row, or a wrong expert would cost ~1e-1.
//  * F16 KV cache (flash-attention numerics): 2e-3 (measured 1.0e-4 / 4.3e-4 / 4.2e-4), at least
//    25% of rows within 1e-4 (98% / 37% / 52%).
//  * Q4_K (ffn_down_exps falls back to Q5_0: its rows are 128 wide): activations are Q8_K / Q8_0,
//    and one activation rounded to the other side of a quantization boundary moves a logit by a
//    quantization step. Bound 5e-2 (measured 2.3e-2 / 2.3e-2 / 1.9e-2), at least 40% of rows
//    within 1e-4 (83% / 65% / 56%).
#include "golden.h"

#include <gtest/gtest.h>

using namespace slm;
using slm::test::arch_ref;
using slm::test::GoldenCase;

namespace {

std::string ref(const std::string& f) { return arch_ref("qwen2moe", f); }

std::vector<GoldenCase> cases() {
    return {
        {"qwen2moe_f32_f32kv", ref("qwen2moe.f32.gguf"), ref("qwen2moe.f32.f32kv.jsonl"), GGMLType::F32, 0.0001, true, 1},
        {"qwen2moe_f32", ref("qwen2moe.f32.gguf"), ref("qwen2moe.f32.jsonl"), GGMLType::F16, 0.002, true, 0.25},
        {"qwen2moe_q4_k", ref("qwen2moe.q4_k.gguf"), ref("qwen2moe.q4_k.jsonl"), GGMLType::F16, 0.05, true, 0.4},
    };
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesLlamaCpp) { slm::test::run_golden(GetParam()); }

INSTANTIATE_TEST_SUITE_P(LlamaCpp, Golden, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

} // namespace
