// Golden test: the Gemma 2 forward pass (embeddings x 16, GeGLU with ggml's F16 GELU table, post-attention
// and post-FFN norms, attention soft-cap 5 and final soft-cap 4, sliding window 8 on layer 0,
// tied output) against llama.cpp (build d32676d) dumps; how cases run: golden.h.
//
// Tolerances (relative to max|logit| of the row), measured on AVX-512 / AVX2 / scalar kernels:
//  * F32 weights, F32 KV cache (*.f32kv.jsonl): 1e-4, the bound, every row. Gemma's F16
//    GELU table turns a one-ulp difference in an FFN input into a step of 2^-11 in its output
//    (about 1e-4 in the logits), so this holds only where the float sums are llama.cpp's own:
//    with the AVX-512 kernels (the reference's build: tinyBLAS matmul order, and the F32
//    attention and FMA-contracted RoPE slm emulates on every ISA); measured 1.9e-6 on AVX-512; 1.4e-4 (94% of rows) on AVX2.
//    Elsewhere the bound is 5e-4 with 90% of rows within 1e-4.
//  * F16 KV cache (llama.cpp's flash attention): 2e-3; measured 2.1e-4 / 5.9e-4 / 5.7e-4, with 98% / 28% / 33% of rows within 1e-4 (the
//    F16 V sums follow each ISA's ggml order): at least 20% required.
//  * Q4_K weights (activations quantized to Q8_K, see llama_golden_test.cpp): 5e-2; measured
//    3.1e-2 / 2.0e-6 / 3.4e-2, 72% / 100% / 72% of rows within 1e-4: at least 20%.
#include "golden.h"
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <cstring>

using namespace slm;
using slm::test::arch_ref;
using slm::test::GoldenCase;

namespace {

std::vector<GoldenCase> cases() {
    const bool avx512 = std::strcmp(kernels::isa_name(), "avx512") == 0;
    return {
        {"gemma2_f32_f32kv", arch_ref("gemma2", "gemma2.f32.gguf"), arch_ref("gemma2", "gemma2.f32.f32kv.jsonl"), GGMLType::F32,
         avx512 ? 1e-4 : 5e-4, true, avx512 ? 1.0 : 0.9},
        {"gemma2_f32", arch_ref("gemma2", "gemma2.f32.gguf"), arch_ref("gemma2", "gemma2.f32.jsonl"), GGMLType::F16, 2e-3, true, 0.2},
        {"gemma2_q4_k", arch_ref("gemma2", "gemma2.q4_k.gguf"), arch_ref("gemma2", "gemma2.q4_k.jsonl"), GGMLType::F16, 5e-2, true, 0.2},
    };
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesLlamaCpp) { slm::test::run_golden(GetParam()); }

// The same with the local layers' caches as rings of 8 + 4 rows (prompts in chunks of 4): the
// 15-19 token prompts and 16 greedy steps wrap them several times.
TEST_P(Golden, MatchesLlamaCppWithSlidingWindowRing) { slm::test::run_golden(GetParam(), 4); }

INSTANTIATE_TEST_SUITE_P(LlamaCpp, Golden, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

} // namespace
