// Golden test: the gemma3 forward pass against llama.cpp (build d32676d) dumps; see golden.h.
// Tolerances: see the comment of each case.
#include "golden.h"

#include <gtest/gtest.h>

using namespace slm;
using slm::test::arch_ref;
using slm::test::GoldenCase;

namespace {

std::vector<GoldenCase> cases() {
    return {
        {"gemma3_f32_f32kv", arch_ref("gemma3", "gemma3.f32.gguf"), arch_ref("gemma3", "gemma3.f32.f32kv.jsonl"), GGMLType::F32, 0.0001, true, 1},
        {"gemma3_f32", arch_ref("gemma3", "gemma3.f32.gguf"), arch_ref("gemma3", "gemma3.f32.jsonl"), GGMLType::F16, 0.002, true, 0.0},
        {"gemma3_q4_k", arch_ref("gemma3", "gemma3.q4_k.gguf"), arch_ref("gemma3", "gemma3.q4_k.jsonl"), GGMLType::F16, 0.05, true, 0.0},
    };
}

class Golden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(Golden, MatchesLlamaCpp) { slm::test::run_golden(GetParam()); }

INSTANTIATE_TEST_SUITE_P(LlamaCpp, Golden, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

} // namespace
