// Golden test: the Phi-3 forward pass (fused attn_qkv and gate/up, NEOX RoPE, Q scaled after
// RoPE, tied output) against llama.cpp (build d32676d) dumps; how cases run: golden.h.
//
// Tolerances (relative to max|logit| of the row), measured on AVX-512 / AVX2 / scalar kernels:
//  * F32 weights, F32 KV cache (*.f32kv.jsonl): 1e-4, the bound; measured 1.4e-6 /
//    2.3e-6 / 2.1e-6 (the dumps print 6 significant digits), every row within 1e-4.
//  * F16 KV cache (llama.cpp's flash attention): 2e-3; measured 4.1e-5 / 4.5e-4 / 3.8e-4, with
//    100% / 44% / 57% of rows within 1e-4 (the F16 V sums follow each ISA's ggml order; the
//    reference is AVX-512's): at least 20% required.
//  * Q4_K weights (activations quantized to Q8_K, see llama_golden_test.cpp): 5e-2; measured
//    2.3e-2 / 2.1e-2 / 3.2e-2, 63% / 65% / 28% of rows within 1e-4: at least 20%.
#include "golden.h"

#include <gtest/gtest.h>

using namespace slm;
using slm::test::arch_ref;
using slm::test::GoldenCase;

namespace {

std::vector<GoldenCase> cases() {
    return {
        {"phi3_f32_f32kv", arch_ref("phi3", "phi3.f32.gguf"), arch_ref("phi3", "phi3.f32.f32kv.jsonl"), GGMLType::F32, 1e-4, true, 1},
        {"phi3_f32", arch_ref("phi3", "phi3.f32.gguf"), arch_ref("phi3", "phi3.f32.jsonl"), GGMLType::F16, 2e-3, true, 0.2},
        {"phi3_q4_k", arch_ref("phi3", "phi3.q4_k.gguf"), arch_ref("phi3", "phi3.q4_k.jsonl"), GGMLType::F16, 5e-2, true, 0.2},
    };
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesLlamaCpp) { slm::test::run_golden(GetParam()); }

INSTANTIATE_TEST_SUITE_P(LlamaCpp, Golden, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

} // namespace
