// slm/synth.h - random-weight models of real shapes, loadable by slm and by llama.cpp.
//
//   slm::SynthConfig c = slm::synth_preset("tinyllama-1.1b");     // or slm::preset_tinyllama_1b()
//   c.type = slm::GGMLType::Q4_0;
//   c.tokenizer = "tests/data/vocab/ggml-vocab-llama-spm.gguf";   // tokenizer.* keys copied verbatim
//   slm::SynthResult r = slm::synthesize(c, "/tmp/tinyllama.q4_0.gguf");
//
//   for (const slm::SynthTensor& t : slm::synth_tensors(c))          // shapes without writing
//       printf("%s %s %zu\n", t.name.c_str(), slm::type_name(t.type), t.nbytes);
//
// The file is laid out as llama.cpp's convert_hf_to_gguf.py (then llama-quantize --pure) would
// write the real model: the same `<arch>.*` keys with the same GGUF types, the same tensor names
// and shapes (in forward-pass order), `general.file_type` as llama.cpp's LLAMA_FTYPE, and
// general.quantization_version 2 unless all tensors are F32. Only the numbers are random,
// drawn so that a forward pass stays numerically sane over 20-30 layers (see SynthTensor).
// The same config and seed give identical bytes, whatever the thread count.
#pragma once

#include "slm/quantize.h"
#include "slm/types.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace slm {

// One model to synthesize. Defaults are TinyLlama-1.1B's shape (preset_tinyllama_1b()).
struct SynthConfig {
    std::string name = "custom";   // "tinyllama-1.1b": written as general.name "slm-synth <name>"
    std::string arch = "llama";    // general.architecture: llama, gemma, granite, qwen2moe, olmoe, phimoe, mamba
    // Rows of token_embd (and output). The presets give the real model's value, so that
    // synth_tensors() counts the real parameters; synthesize() always takes the tokenizer's
    // token count instead (a model needs one row per token), see SynthResult::n_vocab.
    uint32_t n_vocab = 32000;
    uint32_t n_ctx_train = 2048;   // context_length: 2048
    uint32_t n_embd = 2048;        // embedding_length: 2048
    uint32_t n_layer = 22;         // block_count: 22
    uint32_t n_head = 32;          // attention.head_count: 32
    uint32_t n_head_kv = 4;        // attention.head_count_kv: 4 (GQA); must divide n_head
    uint32_t n_ff = 5632;          // feed_forward_length: 5632
    // MobileLLM's immediate block-wise weight sharing: each stored block is computed by this many
    // consecutive layers (n_layer counts layers, so n_layer / layer_share blocks are written and
    // llama.block_source maps layers to them). 1 = no sharing; MobileLLM-LS uses 2.
    uint32_t layer_share = 1;
    // Per-head size: 64. 0 = n_embd / n_head. When set, attention.key_length and value_length
    // are written, as convert_hf_to_gguf.py does when config.json has "head_dim".
    uint32_t head_dim = 0;
    float rope_freq_base = 10000;  // rope.freq_base: 10000 (Llama 2), 500000 (Llama 3)
    float rms_eps = 1e-5f;         // attention.layer_norm_rms_epsilon: 1e-5
    bool tied_embeddings = false;  // true: no output.weight, logits use token_embd (SmolLM2, Llama 3.2)
    // Llama 3 RoPE frequency scaling ("rope_type": "llama3" in config.json): when factor > 0 a
    // rope_freqs.weight tensor (head_dim / 2 F32 factors) is written as the converter computes it.
    float rope_llama3_factor = 0;         // 32 for Llama 3.2; 0 = none
    float rope_llama3_low_freq = 1;       // low_freq_factor: 1
    float rope_llama3_high_freq = 4;      // high_freq_factor: 4
    uint32_t rope_llama3_orig_ctx = 8192; // original_max_position_embeddings: 8192
    // Mamba (arch "mamba"): the mixer's sizes. Its file has no attention and no FFN
    // (attention.head_count 0, feed_forward_length 0): n_head, n_head_kv, n_ff, head_dim and
    // the rope fields are not used. Typical values are mamba-130m's.
    uint32_t ssm_d_inner = 0;      // ssm.inner_size: 1536; 0 = 2 n_embd (Mamba's expand 2)
    uint32_t ssm_d_state = 16;     // ssm.state_size: 16
    uint32_t ssm_d_conv = 4;       // ssm.conv_kernel: 4
    uint32_t ssm_dt_rank = 0;      // ssm.time_step_rank: 48; 0 = ceil(n_embd / 16) (Mamba's "auto")
    // Mixture of experts (arch qwen2moe, olmoe, phimoe; ignored for llama): expert_count,
    // expert_used_count, and for qwen2moe expert_feed_forward_length (0 = n_ff / n_expert_used,
    // llama.cpp's default) and the shared expert's expert_shared_feed_forward_length (0 = n_ff).
    // olmoe and phimoe experts are n_ff wide.
    uint32_t n_expert = 0;         // 60 (Qwen1.5-MoE-A2.7B)
    uint32_t n_expert_used = 0;    // 4
    uint32_t n_ff_exp = 0;         // 1408
    uint32_t n_ff_shexp = 0;       // 5632
    // A GGUF whose tokenizer.* keys are copied verbatim (e.g. a llama.cpp ggml-vocab-*.gguf).
    // Relative paths are opened as given; the CLI also looks for them in the slm source tree.
    std::string tokenizer = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    GGMLType type = GGMLType::F16;         // the 2-D weights: F16, Q8_0, Q4_0, ... (norms stay F32)
    // llama.cpp's file type (enum llama_ftype): with a quantized `type`, the per-tensor mixture
    // llama-quantize applies for it (synth_tensor_type): e.g. 15 = Q4_K_M keeps Q4_K but gives
    // output.weight and half the attn_v / ffn_down matrices Q6_K; 2 = Q4_0 gives output.weight
    // Q6_K. Unset = llama_file_type(type) (Q4_K -> Q4_K_M, as llama-quantize's alias).
    std::optional<uint32_t> ftype;
    bool pure = false;                     // every 2-D weight of `type` (llama-quantize --pure)
    std::optional<GGMLType> embd_type;     // token_embd.weight; unset = the mixture's choice
    std::optional<GGMLType> output_type;   // output.weight; unset = the mixture's choice
    // Granite's multipliers (granite.* keys, arch "granite" only; 0 = not written, except
    // logit_scale, which llama.cpp requires: 1 then). Granite-3.x-2B: 12, 0.22, 0.015625, 8.
    float embedding_scale = 0;   // embedding_scale: token embeddings times it
    float residual_scale = 0;    // residual_scale: each residual branch times it
    float attention_scale = 0;   // attention.scale: the KQ scale instead of 1/sqrt(head_dim)
    float logit_scale = 0;       // logit_scale: logits divided by it
    uint64_t seed = 42;                    // same config + seed -> identical file bytes
    int n_threads = 0;                     // generation threads, 0 = all cores; bytes do not depend on it
};

// Named presets: real shapes, sources cited in src/models/synth.cpp.
SynthConfig preset_tinyllama_1b();    // llama, 22 x 2048, 32/4 heads, ffn 5632, vocab 32000, untied
SynthConfig preset_llama32_1b();      // llama, 16 x 2048, 32/8 heads, ffn 8192, tied, llama3 rope
SynthConfig preset_smollm2_135m();    // llama, 30 x 576, 9/3 heads, ffn 1536, vocab 49152, tied
SynthConfig preset_smollm2_360m();    // llama, 32 x 960, 15/5 heads, ffn 2560, vocab 49152, tied
SynthConfig preset_mobilellm_125m();  // llama, 30 x 576, 9/3 heads, ffn 1536, vocab 32000, tied
SynthConfig preset_mobilellm_350m();  // llama, 32 x 960, 15/5 heads, ffn 2560, vocab 32000, tied
SynthConfig preset_qwen25_05b();      // qwen2 (not writable yet)
SynthConfig preset_qwen25_15b();      // qwen2 (not writable yet)
SynthConfig preset_gemma2_2b();       // gemma2 (not writable yet)
SynthConfig preset_phi3_mini();       // phi3 (not writable yet)
SynthConfig preset_mamba_130m();      // mamba, 24 x 768, d_inner 1536, d_state 16, vocab 50280, tied
SynthConfig preset_qwen15_moe();      // qwen2moe, 24 x 2048, 16 heads, 60 experts (4 used) of 1408, shared 5632
SynthConfig preset_olmoe_1b_7b();     // olmoe, 16 x 2048, 16 heads, 64 experts (8 used) of 1024
SynthConfig preset_phi35_moe();       // phimoe, 32 x 4096, 32/8 heads, 16 experts (2 used) of 6400
SynthConfig preset_gemma_2b();        // gemma, 18 x 2048, 8/1 heads of 256, ffn 16384, vocab 256000, tied
SynthConfig preset_granite31_2b();    // granite, 40 x 2048, 32/8 heads, ffn 8192, vocab 49155, tied, multipliers

struct SynthPreset {
    const char* name;        // "tinyllama-1.1b"
    SynthConfig (*make)();   // preset_tinyllama_1b
    double real_params;      // parameter count of the real model (its model card): 1.1e9
};
// Every preset, in a stable order.
const std::vector<SynthPreset>& synth_presets();
// The preset called `name`; throws slm::Error listing the names if there is none.
SynthConfig synth_preset(const std::string& name);
// True if synthesize() can write cfg.arch now.
bool synth_arch_supported(const std::string& arch);

// One tensor of the file, and how its values are drawn.
struct SynthTensor {
    std::string name;          // "blk.0.attn_q.weight"
    GGMLType type;             // after the fallback rule (quant_fallback_type)
    GGMLType wanted;           // before it: the mixture's choice (synth_tensor_type)
    std::vector<int64_t> ne;   // ggml order: ne[0] is the row length
    size_t nbytes;             // bytes in the file (without alignment padding)
    // Values ~ mean + std * N(0, 1). Matrices reading the residual stream (v, gate, up) use std
    // 1/sqrt(fan_in), q and k 2.5/sqrt(fan_in) (attention scores of std ~6: sharp, as trained
    // models attend; with std ~1 every head averages the whole context and greedy decoding
    // repeats one token); those writing it (attn_output, ffn_down) are further scaled by
    // 1/sqrt(2 n_layer) (GPT-2's residual scaling), so the stream's size stays ~1 over any
    // depth; embeddings std 0.02 (initializer_range of Llama's config.json; divided by the
    // multiplier Gemma (sqrt(n_embd)) or Granite (embedding_scale) applies, and Granite's
    // branch outputs by its residual_scale, so the stream is Llama's); norm weights
    // 1 + N(0, 0.1); logits of std ~3 from an untied output of std 3/sqrt(n_embd), or, tied,
    // from an output_norm centred at 3 / (0.02 sqrt(n_embd)).
    float mean;
    float std;
    int64_t nelements() const;
};

// The tensors synthesize() would write for cfg, in file order. Validates cfg first: throws
// slm::Error naming the field and its CLI flag (`n_head (--n-head) = 7 does not divide ...`),
// and "architecture qwen2 is not supported yet" for architectures not writable yet.
std::vector<SynthTensor> synth_tensors(const SynthConfig& cfg);
uint64_t synth_param_count(const SynthConfig& cfg);  // sum of nelements over synth_tensors

// quant_fallback_type and llama_file_type: see slm/quantize.h (shared with `slm quantize`).

// The llama.cpp file types synth can write, by llama-quantize's names: "Q4_K_M" -> 15 with
// default tensor type Q4_K. Aliases as llama-quantize: "Q4_K" is Q4_K_M, "Q3_K" Q3_K_M,
// "Q5_K" Q5_K_M; plain tensor types (F16, Q8_0, ...) are their own file type.
using SynthFileType = QuantFileType;
const std::vector<SynthFileType>& synth_file_types();
// The entry for a name (case-insensitive), or nullptr.
const SynthFileType* synth_file_type(const std::string& name);

// The type llama-quantize's mixture rule (llama_tensor_get_type) picks for a 2-D weight before
// the shape fallback: `kind` is the tensor name without "blk.N." ("attn_v.weight",
// "token_embd.weight", ...), `il` its layer. Rules for a dense model: output.weight (and, when
// tied, token_embd.weight) Q6_K unless Q8_0 or its row is not a multiple of 256 (then Q8_0);
// attn_v: Q4_K_M/Q5_K_M Q6_K on use_more_bits layers (the first and last eighth and every
// third between), Q4_K_S Q5_K on the first 4, Q3_K_M Q5_K on the first 2 else Q4_K, Q3_K_L
// Q5_K, Q2_K Q4_K (n_gqa >= 4) or Q3_K, IQ4_NL/IQ4_XS Q5_K with n_gqa >= 4; ffn_down: Q4_K_M /
// Q5_K_M Q6_K on use_more_bits layers, Q4_K_S and IQ4_NL/IQ4_XS Q5_K on the first eighth,
// Q3_K_M Q5_K on the first sixteenth else Q4_K, Q3_K_L Q5_K, Q2_K Q3_K; attn_output: Q2_K Q3_K,
// Q3_K_M Q4_K, Q3_K_L Q5_K; token_embd of TQ1_0/TQ2_0 Q4_K. Unquantized file types and `pure`
// give cfg.type everywhere; embd_type / output_type override.
GGMLType synth_tensor_type(const SynthConfig& cfg, const std::string& kind, uint32_t il);

// Types synthesize() can write in this build: those with a reference quantizer.
std::vector<GGMLType> synth_writable_types();

struct SynthResult {
    uint32_t n_vocab = 0;             // token_embd rows: the tokenizer's token count
    uint64_t n_params = 0;            // elements over all tensors
    uint64_t file_bytes = 0;          // size of the written file
    std::vector<SynthTensor> tensors; // what was written
    std::vector<std::string> fallbacks;  // "blk.0.ffn_down.weight: Q4_K -> Q5_0 (row 1536)"
};

// Writes the model to out_path (a temporary file, then renamed: out_path is whole or untouched).
// Peak memory is about the output's size: each tensor is generated row by row straight into its
// final type. Throws slm::Error for a bad config, an unreadable tokenizer or a type that cannot
// be written (naming the type and the tensor).
SynthResult synthesize(const SynthConfig& cfg, const std::string& out_path);

} // namespace slm
