// formats/hf_config.h - Hugging Face config.json <-> GGUF `<arch>.*` keys, and HF tensor names <->
// GGUF tensor names, one table entry per architecture (as llama.cpp's convert_hf_to_gguf.py maps
// them: the same keys, GGUF types and order, the same tensor names).
//
//   const slm::hf::ArchSpec* a = slm::hf::arch_by_hf("LlamaForCausalLM");
//   a->to_gguf(cfg, w);                       // llama.block_count, llama.context_length, ...
//   nlohmann::json c = a->to_config(gguf);    // and back
#pragma once

#include "formats/json_util.h"
#include "slm/gguf.h"

#include <cstdint>
#include <string>
#include <vector>

namespace slm::hf {

using json_util::json;
using json_util::JsonFile;

// How a tensor's values change between the HF and the GGUF layout.
enum class Xform {
    None,
    PermuteQ,    // Llama: HF rotate-half rows -> GGUF adjacent pairs (n_head groups)
    PermuteK,    // the same with n_head_kv groups
    NormPlusOne, // Gemma: GGUF holds 1 + w
    NegExp,      // Mamba: GGUF ssm_a = -exp(A_log)
    Conv1d,      // Mamba: HF [d_inner, 1, d_conv] <-> GGUF [d_conv, d_inner]
};

// One tensor name rule: "{bid}" is the layer, "{xid}" the expert (stacked into one 3-D GGUF
// tensor along the slowest dimension, as llama.cpp's converters stack them).
struct TensorRule {
    const char* hf;
    const char* gguf;
    Xform xform = Xform::None;
};

// One HF tensor stored as two GGUF tensors: the first half of its rows, then the second half
// (OpenELM's proj_1 = [gate; up]).
struct SplitRule {
    const char* hf;
    const char* gguf_first;
    const char* gguf_second;
};

struct ArchSpec {
    const char* hf_arch;     // config.json "architectures"[0]: "LlamaForCausalLM"
    const char* model_type;  // config.json "model_type": "llama"
    const char* gguf_arch;   // general.architecture: "llama"
    // config.json -> `<arch>.*` keys (and general.file_type where the converter puts it).
    void (*to_gguf)(const JsonFile& cfg, uint32_t file_type, GGUFWriter& w);
    // GGUF keys (and tensors, for what only they tell) -> config.json.
    json (*to_config)(const GGUFFile& f);
    std::vector<TensorRule> rules;
    // Expert tensors are emitted stacked in this order once all of a layer's have been seen.
    std::vector<std::string> expert_order;  // e.g. {"down", "gate", "up"} as GGUF ffn_*_exps
    bool drop_lm_head = false;              // Gemma: lm_head.weight is ignored (always tied)
    bool drop_tied_output = false;          // Mamba: output.weight omitted when equal to token_embd
    std::vector<SplitRule> splits = {};
};

const ArchSpec* arch_by_hf(const std::string& hf_arch);
const ArchSpec* arch_by_gguf(const std::string& gguf_arch);
std::string supported_hf_archs();    // "LlamaForCausalLM, Qwen2ForCausalLM, ..."
std::string supported_gguf_archs();  // "llama, qwen2, ..."

// Number of attention heads / KV heads from config.json, for the Q/K permutation.
int64_t config_n_head(const JsonFile& cfg);
int64_t config_n_head_kv(const JsonFile& cfg);
int64_t config_n_experts(const JsonFile& cfg);  // 0 when the model has none

// A float32 as the shortest decimal that reads back as the same float32 (1e-05, not
// 9.99999975e-06), as a JSON number: what a config.json author wrote.
json f32_json(float v);

} // namespace slm::hf
