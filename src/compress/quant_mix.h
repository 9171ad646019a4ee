// quant_mix.h - which type llama-quantize gives each tensor (llama.cpp's llama_tensor_get_type).
//
//   compress::QuantMixer mix(model_info, options, names);   // names: every tensor of the file
//   compress::QuantChoice c = mix.choose(name, n_dims, ne); // call in llama-quantize's order
//
// One place for the rules, used by `slm quantize` (src/compress/quantize.cpp) and by `slm synth`
// (synth_tensor_type): which tensors are quantized at all, the file type's mixture (attn_v,
// ffn_down, attn_output, attn_qkv, output / tied token_embd, MoE and use_more_bits rules), the
// --pure / --tensor-type / --output-tensor-type / --token-embedding-type overrides and the shape
// fallbacks, as src/llama-quant.cpp states them for the types slm writes.
#pragma once

#include "slm/types.h"

#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace slm::compress {

// llama.cpp's broad tensor categories (tensor_get_category): matched by name substrings.
enum class TensorCategory { TokenEmbd, AttnQ, AttnK, AttnV, AttnQKV, AttnKVB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };
TensorCategory tensor_category(const std::string& name);

// Whether llama-quantize touches a tensor at all (tensor_allows_quantization): 2-D or more,
// name ending in "weight", not a norm, router (ffn_gate_inp), position / token-type embedding,
// ssm_conv1d, RWKV's small time_mix weights, T5's relative bias...; output.weight only when
// quantize_output (not --leave-output-tensor).
bool tensor_allows_quantization(const std::string& name, uint32_t n_dims, bool quantize_output);

// What the rules read of the model (its hyper-parameters).
struct MixModel {
    std::string arch = "llama";   // general.architecture ("falcon" has rules of its own)
    uint32_t n_layer = 0;         // block_count
    uint32_t n_head = 0;          // attention.head_count (first layer's)
    uint32_t n_head_kv = 0;       // attention.head_count_kv; n_gqa = n_head / n_head_kv
    uint32_t n_expert = 0;        // expert_count
    bool is_70b = false;          // llama with 80 layers and GQA: llama.cpp's LLM_TYPE_70B rule
    uint32_t n_gqa() const { return n_head && n_head_kv ? n_head / n_head_kv : 1; }
};

struct MixOptions {
    uint32_t ftype = 7;            // enum llama_ftype (7 = Q8_0, 15 = Q4_K_M ...)
    GGMLType type = GGMLType::Q8_0;// its default tensor type
    bool pure = false;             // --pure: no mixture, every quantized tensor `type`
    bool quantize_output = true;   // false = --leave-output-tensor
    bool has_imatrix = false;      // some rules differ with an importance matrix
    std::optional<GGMLType> output_type;  // --output-tensor-type
    std::optional<GGMLType> embd_type;    // --token-embedding-type
    // --tensor-type PATTERN=TYPE, in order; the first pattern found (regex search) in a name wins.
    std::vector<std::pair<std::string, GGMLType>> tensor_types;
};

// The layer-position counters of llama_tensor_get_type_impl.
struct MixCounters {
    int n_attention_wv = 0, i_attention_wv = 0;
    int n_layer = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
};

// llama_tensor_get_type_impl: the mixture's type for one quantizable tensor, before the shape
// fallback, given the default `type`. `tied` = the file has no output.weight. Advances the
// counters as llama.cpp does. Throws slm::Error for an MoE tensor without a readable layer.
GGMLType mix_rule_type(const MixModel& m, uint32_t ftype, bool has_imatrix, bool tied, GGMLType type,
                       const std::string& name, int64_t ne0, TensorCategory cat, MixCounters& c);

// tensor_type_fallback: a type whose block divides the row (K-quants -> 32-element types ->
// F16). Sets *fell_back when it changed the type.
GGMLType shape_fallback_type(GGMLType want, int64_t n_per_row, bool* fell_back = nullptr);

struct QuantChoice {
    GGMLType type = GGMLType::F32;  // what the tensor is written as
    GGMLType wanted = GGMLType::F32;// before the shape fallback
    bool allowed = false;           // tensor_allows_quantization
    bool fallback = false;          // the shape forced another type
    bool manual = false;            // a --tensor-type pattern matched
};

class QuantMixer {
public:
    // `names`: every tensor of the file (for the attn_v count and whether output.weight exists).
    // Throws slm::Error for a --tensor-type pattern that is not a valid regular expression.
    QuantMixer(MixModel m, MixOptions o, const std::vector<std::string>& names);
    // The type of the next tensor; call once per tensor in llama-quantize's order
    // (quant_tensor_order), since layer counters advance as in llama.cpp.
    QuantChoice choose(const std::string& name, uint32_t n_dims, const int64_t* ne, GGMLType cur);
    bool tied() const { return tied_; }

private:
    MixModel m_;
    MixOptions o_;
    std::vector<std::pair<std::regex, GGMLType>> patterns_;
    MixCounters c_;
    bool tied_ = true;
};

// llama-quantize's tensor order (llama_model_loader's weights_map): tensors outside blocks
// first, then by block number, each group by name. Returns indices into `names`.
std::vector<size_t> quant_tensor_order(const std::vector<std::string>& names);

} // namespace slm::compress
