// synth.cpp - random-weight models of real shapes (slm/synth.h).
//
// Three parts: presets (real shapes, each number's source cited), the tensor list (names,
// shapes, types and init, once, serving both synth_tensors() and synthesize()), and the writer
// (row-by-row generation straight into the final type, in parallel, deterministic).
#include "slm/synth.h"

#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <strings.h>
#include <sys/stat.h>
#include <thread>

namespace slm {

// ---- presets ------------------------------------------------------------------------------
//
// Shapes are those of each model's Hugging Face config.json, as convert_hf_to_gguf.py reads it
// (hidden_size -> n_embd, intermediate_size -> n_ff, num_key_value_heads -> n_head_kv,
// max_position_embeddings -> n_ctx_train, rope_theta, rms_norm_eps, tie_word_embeddings).
// Tokenizers come from tests/data/vocab (llama.cpp's ggml-vocab-*.gguf test vocabularies); where
// the real one is not bundled, the file named is the closest stand-in and n_vocab keeps the real
// size so that the parameter count is the real model's.

SynthConfig preset_tinyllama_1b() {
    // TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json: 22 layers, hidden 2048, 32 heads, 4 KV
    // heads, intermediate 5632, vocab 32000 (Llama 2 SentencePiece), 2048 positions, rope_theta
    // 10000, rms_norm_eps 1e-5, untied. 1,100,048,384 parameters.
    SynthConfig c;
    c.name = "tinyllama-1.1b";
    c.n_vocab = 32000;
    c.n_ctx_train = 2048;
    c.n_embd = 2048;
    c.n_layer = 22;
    c.n_head = 32;
    c.n_head_kv = 4;
    c.n_ff = 5632;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = false;
    c.tokenizer = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    return c;
}

SynthConfig preset_llama32_1b() {
    // meta-llama/Llama-3.2-1B config.json: 16 layers, hidden 2048, 32 heads, 8 KV heads,
    // head_dim 64, intermediate 8192, 131072 positions, rope_theta 500000, rope_scaling llama3
    // (factor 32, low 1, high 4, original 8192), rms_norm_eps 1e-5, tied; 1.24e9 parameters.
    // Its vocabulary is 128256 BPE tokens (tiktoken-based), which is not bundled: the largest BPE
    // vocabulary in tests/data/vocab, Falcon's 65024 tokens, stands in, so a synthesized file has
    // 65024 embedding rows (1.10e9 parameters); n_vocab stays 128256 for synth_tensors().
    SynthConfig c;
    c.name = "llama3.2-1b";
    c.n_vocab = 128256;
    c.n_ctx_train = 131072;
    c.n_embd = 2048;
    c.n_layer = 16;
    c.n_head = 32;
    c.n_head_kv = 8;
    c.head_dim = 64;
    c.n_ff = 8192;
    c.rope_freq_base = 500000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = true;
    c.rope_llama3_factor = 32;
    c.rope_llama3_low_freq = 1;
    c.rope_llama3_high_freq = 4;
    c.rope_llama3_orig_ctx = 8192;
    c.tokenizer = "tests/data/vocab/ggml-vocab-falcon.gguf";
    return c;
}

SynthConfig preset_smollm2_135m() {
    // HuggingFaceTB/SmolLM2-135M config.json: 30 layers, hidden 576, 9 heads, 3 KV heads,
    // head_dim 64, intermediate 1536, vocab 49152, 8192 positions, rope_theta 100000,
    // rms_norm_eps 1e-5, tied; 134,515,008 parameters. Its own 49152-token BPE vocabulary is not
    // bundled; StarCoder's, of the same size (49152), stands in.
    SynthConfig c;
    c.name = "smollm2-135m";
    c.n_vocab = 49152;
    c.n_ctx_train = 8192;
    c.n_embd = 576;
    c.n_layer = 30;
    c.n_head = 9;
    c.n_head_kv = 3;
    c.head_dim = 64;
    c.n_ff = 1536;
    c.rope_freq_base = 100000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = true;
    c.tokenizer = "tests/data/vocab/ggml-vocab-starcoder.gguf";
    return c;
}

SynthConfig preset_smollm2_360m() {
    // HuggingFaceTB/SmolLM2-360M config.json: 32 layers, hidden 960, 15 heads, 5 KV heads,
    // head_dim 64, intermediate 2560, vocab 49152, 8192 positions, rope_theta 100000,
    // rms_norm_eps 1e-5, tied; 361,821,120 parameters. StarCoder's 49152 tokens stand in.
    SynthConfig c = preset_smollm2_135m();
    c.name = "smollm2-360m";
    c.n_embd = 960;
    c.n_layer = 32;
    c.n_head = 15;
    c.n_head_kv = 5;
    c.n_ff = 2560;
    return c;
}

SynthConfig preset_mobilellm_125m() {
    // facebook/MobileLLM-125M model card: 30 layers, 9 heads, 3 KV heads, dimension 576, 124.6M
    // parameters, shared embeddings, 2k context; config.json: intermediate 1536, vocab 32000 (the
    // Llama 2 tokenizer), rope_theta 10000, rms_norm_eps 1e-5.
    SynthConfig c;
    c.name = "mobilellm-125m";
    c.n_vocab = 32000;
    c.n_ctx_train = 2048;
    c.n_embd = 576;
    c.n_layer = 30;
    c.n_head = 9;
    c.n_head_kv = 3;
    c.n_ff = 1536;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = true;
    c.tokenizer = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    return c;
}

SynthConfig preset_mobilellm_350m() {
    // facebook/MobileLLM-350M model card: 32 layers, 15 heads, 5 KV heads, dimension 960, 345.3M
    // parameters; config.json: intermediate 2560, vocab 32000, tied.
    SynthConfig c = preset_mobilellm_125m();
    c.name = "mobilellm-350m";
    c.n_embd = 960;
    c.n_layer = 32;
    c.n_head = 15;
    c.n_head_kv = 5;
    c.n_ff = 2560;
    return c;
}

SynthConfig preset_qwen25_05b() {
    // Qwen/Qwen2.5-0.5B config.json: 24 layers, hidden 896, 14 heads, 2 KV heads, intermediate
    // 4864, vocab 151936, 32768 positions, rope_theta 1e6, rms_norm_eps 1e-6, tied, q/k/v biases;
    // 0.49e9 parameters. Its tokenizer is not bundled.
    SynthConfig c;
    c.name = "qwen2.5-0.5b";
    c.arch = "qwen2";
    c.n_vocab = 151936;
    c.n_ctx_train = 32768;
    c.n_embd = 896;
    c.n_layer = 24;
    c.n_head = 14;
    c.n_head_kv = 2;
    c.n_ff = 4864;
    c.rope_freq_base = 1000000;
    c.rms_eps = 1e-6f;
    c.tied_embeddings = true;
    c.tokenizer = "";
    return c;
}

SynthConfig preset_qwen25_15b() {
    // Qwen/Qwen2.5-1.5B config.json: 28 layers, hidden 1536, 12 heads, 2 KV heads, intermediate
    // 8960, vocab 151936, 131072 positions, rope_theta 1e6, rms_norm_eps 1e-6, tied; 1.54e9.
    SynthConfig c = preset_qwen25_05b();
    c.name = "qwen2.5-1.5b";
    c.n_ctx_train = 131072;
    c.n_embd = 1536;
    c.n_layer = 28;
    c.n_head = 12;
    c.n_head_kv = 2;
    c.n_ff = 8960;
    return c;
}

SynthConfig preset_gemma2_2b() {
    // google/gemma-2-2b config.json: 26 layers, hidden 2304, 8 heads, 4 KV heads, head_dim 256,
    // intermediate 9216, vocab 256000, 8192 positions, rope_theta 10000, rms_norm_eps 1e-6, tied;
    // 2.61e9 parameters. Its tokenizer is not bundled.
    SynthConfig c;
    c.name = "gemma2-2b";
    c.arch = "gemma2";
    c.n_vocab = 256000;
    c.n_ctx_train = 8192;
    c.n_embd = 2304;
    c.n_layer = 26;
    c.n_head = 8;
    c.n_head_kv = 4;
    c.head_dim = 256;
    c.n_ff = 9216;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-6f;
    c.tied_embeddings = true;
    c.tokenizer = "";
    return c;
}

SynthConfig preset_phi3_mini() {
    // microsoft/Phi-3-mini-4k-instruct config.json: 32 layers, hidden 3072, 32 heads (MHA),
    // intermediate 8192, vocab 32064, 4096 positions, rope_theta 10000, rms_norm_eps 1e-5,
    // untied; 3.82e9 parameters. Its tokenizer is bundled (ggml-vocab-phi-3.gguf, 32064 tokens).
    SynthConfig c;
    c.name = "phi3-mini";
    c.arch = "phi3";
    c.n_vocab = 32064;
    c.n_ctx_train = 4096;
    c.n_embd = 3072;
    c.n_layer = 32;
    c.n_head = 32;
    c.n_head_kv = 32;
    c.n_ff = 8192;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = false;
    c.tokenizer = "tests/data/vocab/ggml-vocab-phi-3.gguf";
    return c;
}

SynthConfig preset_qwen15_moe() {
    // Qwen/Qwen1.5-MoE-A2.7B config.json: 24 layers, hidden 2048, 16 heads (MHA), intermediate
    // 5632, 60 experts (num_experts_per_tok 4) of moe_intermediate_size 1408, a shared expert of
    // 5632, vocab 151936, 8192 positions, rope_theta 1e6, rms_norm_eps 1e-6, untied, q/k/v biases;
    // 14.3e9 parameters. Its tokenizer (Qwen's BPE) is not bundled: GPT-2's stands in.
    SynthConfig c;
    c.name = "qwen1.5-moe-a2.7b";
    c.arch = "qwen2moe";
    c.n_vocab = 151936;
    c.n_ctx_train = 8192;
    c.n_embd = 2048;
    c.n_layer = 24;
    c.n_head = 16;
    c.n_head_kv = 16;
    c.n_ff = 5632;
    c.n_expert = 60;
    c.n_expert_used = 4;
    c.n_ff_exp = 1408;
    c.n_ff_shexp = 5632;
    c.rope_freq_base = 1000000;
    c.rms_eps = 1e-6f;
    c.tied_embeddings = false;
    c.tokenizer = "tests/data/vocab/ggml-vocab-gpt-2.gguf";
    return c;
}

SynthConfig preset_olmoe_1b_7b() {
    // allenai/OLMoE-1B-7B-0924 config.json: 16 layers, hidden 2048, 16 heads (MHA), 64 experts
    // (num_experts_per_tok 8) of intermediate_size 1024, vocab 50304, 4096 positions, rope_theta
    // 10000, rms_norm_eps 1e-5, untied, Q/K norms; 6.92e9 parameters. Its GPT-NeoX-style BPE
    // tokenizer is not bundled: GPT-2's stands in.
    SynthConfig c;
    c.name = "olmoe-1b-7b";
    c.arch = "olmoe";
    c.n_vocab = 50304;
    c.n_ctx_train = 4096;
    c.n_embd = 2048;
    c.n_layer = 16;
    c.n_head = 16;
    c.n_head_kv = 16;
    c.n_ff = 1024;
    c.n_expert = 64;
    c.n_expert_used = 8;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = false;
    c.tokenizer = "tests/data/vocab/ggml-vocab-gpt-2.gguf";
    return c;
}

SynthConfig preset_phi35_moe() {
    // microsoft/Phi-3.5-MoE-instruct config.json: 32 layers, hidden 4096, 32 heads, 8 KV heads,
    // 16 experts (num_experts_per_tok 2) of intermediate_size 6400, vocab 32064, 131072 positions,
    // rope_theta 10000, rms_norm_eps 1e-5, untied, biases everywhere; 41.9e9 parameters. Its
    // tokenizer is Phi-3's (bundled). The LongRoPE factors of the real model are not written.
    SynthConfig c;
    c.name = "phi3.5-moe";
    c.arch = "phimoe";
    c.n_vocab = 32064;
    c.n_ctx_train = 131072;
    c.n_embd = 4096;
    c.n_layer = 32;
    c.n_head = 32;
    c.n_head_kv = 8;
    c.n_ff = 6400;
    c.n_expert = 16;
    c.n_expert_used = 2;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = false;
    c.tokenizer = "tests/data/vocab/ggml-vocab-phi-3.gguf";
    return c;
}

SynthConfig preset_mamba_130m() {
    // state-spaces/mamba-130m-hf config.json: 24 layers, hidden 768, state_size 16,
    // conv_kernel 4, expand 2 (intermediate 1536), time_step_rank 48, vocab 50280,
    // layer_norm_epsilon 1e-5, tied; 129,135,360 parameters. Its GPT-NeoX tokenizer is not
    // bundled: GPT-2's 50257-token BPE vocabulary, which NeoX's extends, stands in.
    SynthConfig c;
    c.name = "mamba-130m";
    c.arch = "mamba";
    c.n_vocab = 50280;
    c.n_ctx_train = 1u << 20;  // convert_hf_to_gguf.py writes 2^20 for Mamba: no trained length
    c.n_embd = 768;
    c.n_layer = 24;
    c.n_head = c.n_head_kv = c.n_ff = 0;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = true;
    c.ssm_d_inner = 1536;
    c.ssm_d_state = 16;
    c.ssm_d_conv = 4;
    c.ssm_dt_rank = 48;
    c.tokenizer = "tests/data/vocab/ggml-vocab-gpt-2.gguf";
    return c;
}

SynthConfig preset_gemma_2b() {
    // google/gemma-2b config.json: 18 layers, hidden 2048, 8 heads, 1 KV head, head_dim 256,
    // intermediate 16384, vocab 256000, 8192 positions, rope_theta 10000, rms_norm_eps 1e-6,
    // tied (Gemma always ties); 2.51e9 parameters. Its 256000-token SentencePiece vocabulary is
    // not bundled: Llama 2's (32000) stands in.
    SynthConfig c;
    c.name = "gemma-2b";
    c.arch = "gemma";
    c.n_vocab = 256000;
    c.n_ctx_train = 8192;
    c.n_embd = 2048;
    c.n_layer = 18;
    c.n_head = 8;
    c.n_head_kv = 1;
    c.head_dim = 256;
    c.n_ff = 16384;
    c.rope_freq_base = 10000;
    c.rms_eps = 1e-6f;
    c.tied_embeddings = true;
    c.tokenizer = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    return c;
}

SynthConfig preset_granite31_2b() {
    // ibm-granite/granite-3.1-2b-base config.json: 40 layers, hidden 2048, 32 heads, 8 KV heads,
    // intermediate 8192, vocab 49155, 131072 positions, rope_theta 5e6, rms_norm_eps 1e-5, tied,
    // embedding_multiplier 12, residual_multiplier 0.22, attention_multiplier 0.015625,
    // logits_scaling 8; 2.53e9 parameters. StarCoder's 49152-token vocabulary stands in.
    SynthConfig c;
    c.name = "granite3.1-2b";
    c.arch = "granite";
    c.n_vocab = 49155;
    c.n_ctx_train = 131072;
    c.n_embd = 2048;
    c.n_layer = 40;
    c.n_head = 32;
    c.n_head_kv = 8;
    c.n_ff = 8192;
    c.rope_freq_base = 5000000;
    c.rms_eps = 1e-5f;
    c.tied_embeddings = true;
    c.embedding_scale = 12.0f;
    c.residual_scale = 0.22f;
    c.attention_scale = 0.015625f;
    c.logit_scale = 8.0f;
    c.tokenizer = "tests/data/vocab/ggml-vocab-starcoder.gguf";
    return c;
}

const std::vector<SynthPreset>& synth_presets() {
    // real_params: the model cards' counts (SmolLM2 and TinyLlama computed from config.json).
    static const std::vector<SynthPreset> presets = {
        {"tinyllama-1.1b", preset_tinyllama_1b, 1.100e9},
        {"llama3.2-1b", preset_llama32_1b, 1.236e9},
        {"smollm2-135m", preset_smollm2_135m, 1.345e8},
        {"smollm2-360m", preset_smollm2_360m, 3.618e8},
        {"mobilellm-125m", preset_mobilellm_125m, 1.246e8},
        {"mobilellm-350m", preset_mobilellm_350m, 3.453e8},
        {"qwen2.5-0.5b", preset_qwen25_05b, 4.94e8},
        {"qwen2.5-1.5b", preset_qwen25_15b, 1.54e9},
        {"gemma2-2b", preset_gemma2_2b, 2.61e9},
        {"phi3-mini", preset_phi3_mini, 3.82e9},
        {"qwen1.5-moe-a2.7b", preset_qwen15_moe, 1.43e10},
        {"olmoe-1b-7b", preset_olmoe_1b_7b, 6.92e9},
        {"phi3.5-moe", preset_phi35_moe, 4.19e10},
        {"mamba-130m", preset_mamba_130m, 1.291e8},
        {"gemma-2b", preset_gemma_2b, 2.51e9},
        {"granite3.1-2b", preset_granite31_2b, 2.53e9},
    };
    return presets;
}

SynthConfig synth_preset(const std::string& name) {
    std::string names;
    for (const SynthPreset& p : synth_presets()) {
        if (name == p.name) return p.make();
        names += (names.empty() ? "" : ", ") + std::string(p.name);
    }
    fail("synth: unknown preset '%s' (--preset); presets: %s", name.c_str(), names.c_str());
}

namespace {
// The mixture-of-experts architectures synth writes (moe_tensors / moe_keys below).
bool is_moe_arch(const std::string& arch) { return arch == "qwen2moe" || arch == "olmoe" || arch == "phimoe"; }
} // namespace

// Gemma and Granite have Llama's tensors: gemma ties its output always (llama.cpp ignores an
// output.weight) and computes GeGLU with them, granite adds its multipliers as keys.
bool synth_arch_supported(const std::string& arch) {
    return arch == "llama" || arch == "gemma" || arch == "granite" || is_moe_arch(arch) || arch == "mamba";
}

// ---- types ----------------------------------------------------------------------------------

namespace {

struct FileType {
    GGMLType type;
    uint32_t ftype;
};
// enum llama_ftype (llama.h); K-quants as llama-quantize's aliases "Q4_K" -> Q4_K_M etc.
constexpr FileType kFileTypes[] = {
    {GGMLType::F32, 0},    {GGMLType::F16, 1},    {GGMLType::Q4_0, 2},   {GGMLType::Q4_1, 3},
    {GGMLType::Q8_0, 7},   {GGMLType::Q5_0, 8},   {GGMLType::Q5_1, 9},   {GGMLType::Q2_K, 10},
    {GGMLType::Q3_K, 12},  {GGMLType::Q4_K, 15},  {GGMLType::Q5_K, 17},  {GGMLType::Q6_K, 18},
    {GGMLType::IQ4_NL, 25}, {GGMLType::IQ4_XS, 30}, {GGMLType::BF16, 32},  {GGMLType::TQ1_0, 36},
    {GGMLType::TQ2_0, 37},
    // slm's 2:4 sparse Q8_0, with a private file type id as private as its tensor type id
    // (docs/sparse-format.md).
    {GGMLType::Q8_0_S24, 1024},
};

// The types llama_tensor_get_type has a fallback for (256-element super-blocks).
bool has_fallback(GGMLType t) {
    return t == GGMLType::Q2_K || t == GGMLType::Q3_K || t == GGMLType::Q4_K || t == GGMLType::Q5_K ||
           t == GGMLType::Q6_K || t == GGMLType::IQ4_XS || t == GGMLType::TQ1_0 || t == GGMLType::TQ2_0;
}

} // namespace

uint32_t llama_file_type(GGMLType t) {
    for (const FileType& f : kFileTypes)
        if (f.type == t) return f.ftype;
    fail("synth: type %s (--type) is not a model weight type llama.cpp writes", type_name(t));
}

GGMLType quant_fallback_type(GGMLType want, int64_t n_per_row) {
    const int64_t blk = type_info(want).blck_size;
    if (blk <= 1 || n_per_row % blk == 0) return want;
    GGMLType t = GGMLType::F16;
    if (has_fallback(want)) {
        switch (want) {
        case GGMLType::TQ1_0:
        case GGMLType::TQ2_0: t = GGMLType::Q4_0; break;
        case GGMLType::Q4_K: t = GGMLType::Q5_0; break;
        case GGMLType::Q5_K: t = GGMLType::Q5_1; break;
        case GGMLType::Q6_K: t = GGMLType::Q8_0; break;
        default: t = GGMLType::IQ4_NL; break;  // Q2_K, Q3_K, IQ4_XS
        }
        if (n_per_row % type_info(t).blck_size != 0) t = GGMLType::F16;
    }
    return t;
}

const std::vector<SynthFileType>& synth_file_types() {
    static const std::vector<SynthFileType> all = {
        {"F32", 0, GGMLType::F32},       {"F16", 1, GGMLType::F16},       {"BF16", 32, GGMLType::BF16},
        {"Q4_0", 2, GGMLType::Q4_0},     {"Q4_1", 3, GGMLType::Q4_1},     {"Q5_0", 8, GGMLType::Q5_0},
        {"Q5_1", 9, GGMLType::Q5_1},     {"Q8_0", 7, GGMLType::Q8_0},     {"Q2_K", 10, GGMLType::Q2_K},
        {"Q3_K_S", 11, GGMLType::Q3_K},  {"Q3_K_M", 12, GGMLType::Q3_K},  {"Q3_K_L", 13, GGMLType::Q3_K},
        {"Q3_K", 12, GGMLType::Q3_K},    {"Q4_K_S", 14, GGMLType::Q4_K},  {"Q4_K_M", 15, GGMLType::Q4_K},
        {"Q4_K", 15, GGMLType::Q4_K},    {"Q5_K_S", 16, GGMLType::Q5_K},  {"Q5_K_M", 17, GGMLType::Q5_K},
        {"Q5_K", 17, GGMLType::Q5_K},    {"Q6_K", 18, GGMLType::Q6_K},    {"IQ4_NL", 25, GGMLType::IQ4_NL},
        {"IQ4_XS", 30, GGMLType::IQ4_XS}, {"TQ1_0", 36, GGMLType::TQ1_0}, {"TQ2_0", 37, GGMLType::TQ2_0},
        {"Q8_0_S24", 1024, GGMLType::Q8_0_S24},
    };
    return all;
}

const SynthFileType* synth_file_type(const std::string& name) {
    for (const SynthFileType& f : synth_file_types())
        if (strcasecmp(f.name, name.c_str()) == 0) return &f;
    return nullptr;
}

namespace {
// Whether the file has no output.weight: Gemma always ties.
bool synth_tied(const SynthConfig& c) { return c.tied_embeddings || c.arch == "gemma"; }
} // namespace

GGMLType synth_tensor_type(const SynthConfig& c, const std::string& kind, uint32_t il) {
    const bool is_output = kind == "output.weight";
    const bool is_embd = kind == "token_embd.weight";
    if (is_embd && c.embd_type) return *c.embd_type;
    if (is_output && c.output_type) return *c.output_type;
    const GGMLType t = c.type;
    const bool quantized = type_info(t).blck_size > 1;
    if (c.pure || !quantized) return t;
    // A 2:4 sparse model keeps the token embeddings and the output matrix dense, as `slm prune`
    // skips them by default: the sparse type is for the layers' linear weights.
    if (t == GGMLType::Q8_0_S24) return is_output || is_embd ? GGMLType::Q8_0 : t;
    enum : uint32_t { Q2_K = 10, Q3_K_M = 12, Q3_K_L = 13, Q4_K_S = 14, Q4_K_M = 15, Q5_K_M = 17,
                      IQ4_NL = 25, IQ4_XS = 30, TQ1_0 = 36, TQ2_0 = 37 };
    const uint32_t ft = c.ftype.value_or(llama_file_type(t));
    const uint32_t n = c.n_layer;
    const bool more_bits = il < n / 8 || il >= 7 * n / 8 || (static_cast<int64_t>(il) - n / 8) % 3 == 2;
    const uint32_t n_gqa = c.n_head_kv ? c.n_head / c.n_head_kv : 1;
    if (is_output || (is_embd && synth_tied(c))) {
        if (c.n_embd % 256 != 0) return GGMLType::Q8_0;
        return t == GGMLType::Q8_0 ? t : GGMLType::Q6_K;
    }
    if (is_embd) return ft == TQ1_0 || ft == TQ2_0 ? GGMLType::Q4_K : t;
    if (kind == "attn_v.weight") {
        if (ft == Q2_K) return n_gqa >= 4 ? GGMLType::Q4_K : GGMLType::Q3_K;
        if (ft == Q3_K_M) return il < 2 ? GGMLType::Q5_K : GGMLType::Q4_K;
        if (ft == Q3_K_L) return GGMLType::Q5_K;
        if ((ft == IQ4_NL || ft == IQ4_XS) && n_gqa >= 4) return GGMLType::Q5_K;
        if ((ft == Q4_K_M || ft == Q5_K_M) && more_bits) return GGMLType::Q6_K;
        if (ft == Q4_K_S && il < 4) return GGMLType::Q5_K;
        return t;
    }
    if (kind == "ffn_down.weight") {
        if (ft == Q2_K) return GGMLType::Q3_K;
        if (ft == Q3_K_M) return il < n / 16 ? GGMLType::Q5_K : GGMLType::Q4_K;
        if (ft == Q3_K_L) return GGMLType::Q5_K;
        if (ft == Q4_K_M) return more_bits ? GGMLType::Q6_K : t;
        if (il < n / 8 && (ft == IQ4_NL || ft == IQ4_XS)) return GGMLType::Q5_K;
        if (ft == Q5_K_M && more_bits) return GGMLType::Q6_K;
        if (ft == Q4_K_S && il < n / 8) return GGMLType::Q5_K;
        return t;
    }
    if (kind == "attn_output.weight") {
        if (ft == Q2_K) return GGMLType::Q3_K;
        if (ft == Q3_K_M) return GGMLType::Q4_K;
        if (ft == Q3_K_L) return GGMLType::Q5_K;
    }
    return t;
}

std::vector<GGMLType> synth_writable_types() {
    std::vector<GGMLType> out;
    for (const FileType& f : kFileTypes) {
        const kernels::TypeTraits* tt = kernels::ref_traits(f.type);
        if (tt && tt->quantize_ref) out.push_back(f.type);
    }
    return out;
}

// ---- the tensor list ----------------------------------------------------------------------

int64_t SynthTensor::nelements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
}

namespace {

// Init constants; see SynthTensor in slm/synth.h for the reasoning.
constexpr float kEmbdStd = 0.02f;   // Llama's initializer_range
constexpr float kNormStd = 0.1f;    // norm weights 1 + N(0, 0.1), as the reference random models
constexpr float kLogitStd = 3.0f;   // target spread of a logits row
// q and k 2.5x wider than 1/sqrt(fan_in): attention scores of std ~6 instead of ~1. With std-1
// scores every head spreads over the whole context, each position sees the same average, and
// greedy decoding repeats one token for dozens of steps; trained models attend sharply too.
constexpr float kQKScale = 2.5f;

void check_range(uint32_t v, uint32_t lo, uint32_t hi, const char* field, const char* flag) {
    if (v < lo || v > hi) fail("synth: %s (%s) = %u is out of range [%u, %u]", field, flag, v, lo, hi);
}

// Mamba's mixer sizes with their defaults resolved (SynthConfig::ssm_*).
uint32_t mamba_d_inner(const SynthConfig& c) { return c.ssm_d_inner ? c.ssm_d_inner : 2 * c.n_embd; }
uint32_t mamba_dt_rank(const SynthConfig& c) { return c.ssm_dt_rank ? c.ssm_dt_rank : (c.n_embd + 15) / 16; }

void validate_mamba(const SynthConfig& c) {
    // The loader's bounds (models/ssm.cpp).
    check_range(mamba_d_inner(c), 1, 1u << 20, "ssm_d_inner", "--d-inner");
    check_range(c.ssm_d_state, 1, 1024, "ssm_d_state", "--d-state");
    check_range(c.ssm_d_conv, 1, 64, "ssm_d_conv", "--d-conv");
    check_range(mamba_dt_rank(c), 1, 1u << 16, "ssm_dt_rank", "--dt-rank");
}

void validate(const SynthConfig& c) {
    if (!synth_arch_supported(c.arch)) {
        if (c.arch == "qwen2" || c.arch == "gemma2" || c.arch == "phi3" || c.arch == "qwen3" || c.arch == "gemma3")
            fail("synth: architecture %s is not supported yet (supported: llama, gemma, granite, qwen2moe, olmoe, "
                 "phimoe, mamba)", c.arch.c_str());
        fail("synth: unknown architecture '%s' (--arch); supported: llama, gemma, granite, qwen2moe, olmoe, phimoe, "
             "mamba", c.arch.c_str());
    }
    // Bounds as the model loader's (registry.cpp), so whatever is written can be loaded.
    check_range(c.n_vocab, 1, 1u << 22, "n_vocab", "--tokenizer");
    check_range(c.n_ctx_train, 1, 1u << 24, "n_ctx_train", "--n-ctx");
    check_range(c.n_embd, 1, 1u << 16, "n_embd", "--n-embd");
    check_range(c.n_layer, 1, 4096, "n_layer", "--n-layer");
    if (c.arch == "mamba") {
        validate_mamba(c);
    } else {
        check_range(c.n_head, 1, 4096, "n_head", "--n-head");
        check_range(c.n_head_kv, 1, 4096, "n_head_kv", "--n-head-kv");
        check_range(c.n_ff, 1, 1u << 20, "n_ff", "--n-ff");
        check_range(c.layer_share, 1, c.n_layer, "layer_share", "--layer-share");
        if (c.layer_share > 1 && c.arch != "llama")
            fail("synth: layer sharing (--layer-share) is read by the llama architecture only, not %s", c.arch.c_str());
        if (c.n_layer % c.layer_share != 0)
            fail("synth: layer_share (--layer-share) = %u does not divide n_layer (--n-layer) = %u", c.layer_share,
                 c.n_layer);
        if (c.head_dim == 0 && c.n_embd % c.n_head != 0)
            fail("synth: n_head (--n-head) = %u does not divide n_embd (--n-embd) = %u", c.n_head, c.n_embd);
        if (c.n_head % c.n_head_kv != 0)
            fail("synth: n_head_kv (--n-head-kv) = %u does not divide n_head (--n-head) = %u", c.n_head_kv, c.n_head);
        const uint32_t hd = c.head_dim ? c.head_dim : c.n_embd / c.n_head;
        check_range(hd, 2, 4096, "head_dim", "--head-dim");
        if (hd % 2 != 0) fail("synth: head_dim (--head-dim) = %u is odd; RoPE rotates pairs", hd);
        if (!(c.rope_freq_base > 1.0f)) fail("synth: rope_freq_base (--rope-base) = %g must be > 1", c.rope_freq_base);
    }
    if (!(c.rms_eps > 0.0f && c.rms_eps < 1.0f)) fail("synth: rms_eps (--rms-eps) = %g is out of range (0, 1)", c.rms_eps);
    if (c.rope_llama3_factor < 0.0f || (c.rope_llama3_factor > 0 && !(c.rope_llama3_high_freq > c.rope_llama3_low_freq)))
        fail("synth: llama3 rope scaling needs factor >= 0 and high_freq > low_freq");
    llama_file_type(c.type);
    if (c.ftype) {
        bool ok = false;
        for (const SynthFileType& f : synth_file_types()) ok |= f.ftype == *c.ftype && f.type == c.type;
        if (!ok) fail("synth: file type %u is not a llama.cpp file type of mostly %s", *c.ftype, type_name(c.type));
    }
    for (float m : {c.embedding_scale, c.residual_scale, c.attention_scale, c.logit_scale})
        if (!(m >= 0.0f && m <= 1e6f)) fail("synth: Granite multiplier %g is out of range [0, 1e6]", m);
    if (c.arch != "granite" && (c.embedding_scale || c.residual_scale || c.attention_scale || c.logit_scale))
        fail("synth: embedding/residual/attention/logit scales are Granite's; --arch is %s", c.arch.c_str());
    if (c.arch == "gemma" && c.rope_llama3_factor > 0) fail("synth: gemma has no llama3 rope scaling");
    if (c.embd_type) llama_file_type(*c.embd_type);
    if (c.output_type) llama_file_type(*c.output_type);
    if (is_moe_arch(c.arch)) {
        // As the loader's bounds (models/moe.cpp).
        check_range(c.n_expert, 1, 4096, "n_expert", "--n-expert");
        check_range(c.n_expert_used, 1, c.n_expert, "n_expert_used", "--n-expert-used");
        if (c.tied_embeddings) fail("synth: %s has an untied output matrix (--untied)", c.arch.c_str());
        if (c.rope_llama3_factor > 0) fail("synth: llama3 rope scaling is for arch llama only");
    }
}

// Tensors of a mixture-of-experts model (qwen2moe, olmoe, phimoe), in forward-pass order, with
// the names and shapes llama.cpp loads; values drawn as the llama ones (SynthTensor). The router
// (ffn_gate_inp) stays F32 as llama-quantize leaves it; the 3-D expert tensors get the type of
// their 2-D counterparts (the rules of ffn_down for ffn_down_exps / _shexp).
std::vector<SynthTensor> moe_tensors(const SynthConfig& c) {
    const int64_t E = c.n_embd, V = c.n_vocab, NE = c.n_expert;
    const int64_t hd = c.head_dim ? c.head_dim : c.n_embd / c.n_head;
    const int64_t nq = hd * c.n_head, nkv = hd * c.n_head_kv;
    const bool qwen = c.arch == "qwen2moe", olmoe = c.arch == "olmoe", phi = c.arch == "phimoe";
    const int64_t F = qwen ? (c.n_ff_exp ? c.n_ff_exp : c.n_ff / c.n_expert_used) : c.n_ff;
    const int64_t FS = qwen ? (c.n_ff_shexp ? c.n_ff_shexp : c.n_ff) : 0;
    const float resid_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(c.n_layer));
    constexpr float kBiasStd = 0.02f;
    std::vector<SynthTensor> out;
    auto add = [&](std::string name, GGMLType want, std::vector<int64_t> ne, float mean, float std) {
        SynthTensor t;
        t.name = std::move(name);
        t.wanted = ne.size() == 1 ? GGMLType::F32 : want;
        t.type = quant_fallback_type(t.wanted, ne[0]);
        t.ne = std::move(ne);
        t.nbytes = row_size(t.type, t.ne[0]) * static_cast<size_t>(t.nelements() / t.ne[0]);
        t.mean = mean;
        t.std = std;
        out.push_back(std::move(t));
    };
    for (const int64_t d : {F, FS})
        if (d > (1 << 20)) fail("synth: expert width %lld (--n-ff-exp / --n-ff-shexp) is out of range", (long long)d);
    add("token_embd.weight", synth_tensor_type(c, "token_embd.weight", 0), {E, V}, 0.0f, kEmbdStd);
    for (uint32_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        auto matrix = [&](const std::string& kind, const std::string& rule, std::vector<int64_t> ne, float scale) {
            add(p + kind, synth_tensor_type(c, rule, il), ne, 0.0f, scale / std::sqrt(static_cast<float>(ne[0])));
        };
        add(p + "attn_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        if (phi) add(p + "attn_norm.bias", GGMLType::F32, {E}, 0.0f, kBiasStd);
        matrix("attn_q.weight", "attn_q.weight", {E, nq}, kQKScale);
        if (!olmoe) add(p + "attn_q.bias", GGMLType::F32, {nq}, 0.0f, kBiasStd);
        matrix("attn_k.weight", "attn_k.weight", {E, nkv}, kQKScale);
        if (!olmoe) add(p + "attn_k.bias", GGMLType::F32, {nkv}, 0.0f, kBiasStd);
        matrix("attn_v.weight", "attn_v.weight", {E, nkv}, 1.0f);
        if (!olmoe) add(p + "attn_v.bias", GGMLType::F32, {nkv}, 0.0f, kBiasStd);
        if (olmoe) {
            add(p + "attn_q_norm.weight", GGMLType::F32, {nq}, 1.0f, kNormStd);
            add(p + "attn_k_norm.weight", GGMLType::F32, {nkv}, 1.0f, kNormStd);
        }
        matrix("attn_output.weight", "attn_output.weight", {nq, E}, resid_scale);
        if (phi) add(p + "attn_output.bias", GGMLType::F32, {E}, 0.0f, kBiasStd);
        add(p + "ffn_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        if (phi) add(p + "ffn_norm.bias", GGMLType::F32, {E}, 0.0f, kBiasStd);
        add(p + "ffn_gate_inp.weight", GGMLType::F32, {E, NE}, 0.0f, 1.0f / std::sqrt(static_cast<float>(E)));
        matrix("ffn_gate_exps.weight", "ffn_gate.weight", {E, F, NE}, 1.0f);
        matrix("ffn_up_exps.weight", "ffn_up.weight", {E, F, NE}, 1.0f);
        matrix("ffn_down_exps.weight", "ffn_down.weight", {F, E, NE}, resid_scale);
        if (FS > 0) {
            add(p + "ffn_gate_inp_shexp.weight", GGMLType::F32, {E}, 0.0f, 1.0f / std::sqrt(static_cast<float>(E)));
            matrix("ffn_gate_shexp.weight", "ffn_gate.weight", {E, FS}, 1.0f);
            matrix("ffn_up_shexp.weight", "ffn_up.weight", {E, FS}, 1.0f);
            matrix("ffn_down_shexp.weight", "ffn_down.weight", {FS, E}, resid_scale);
        }
    }
    add("output_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
    if (phi) add("output_norm.bias", GGMLType::F32, {E}, 0.0f, kBiasStd);
    add("output.weight", synth_tensor_type(c, "output.weight", 0), {E, V}, 0.0f,
        kLogitStd / std::sqrt(static_cast<float>(E)));
    if (phi) add("output.bias", GGMLType::F32, {V}, 0.0f, kBiasStd);
    return out;
}

// The `<arch>.expert_*` keys convert_hf_to_gguf.py writes for a mixture-of-experts model.
void moe_keys(const SynthConfig& c, GGUFWriter& w) {
    const std::string a = c.arch + ".";
    w.set(a + "expert_count", GGUFValue::u32(c.n_expert));
    w.set(a + "expert_used_count", GGUFValue::u32(c.n_expert_used));
    if (c.arch == "qwen2moe") {
        w.set(a + "expert_feed_forward_length", GGUFValue::u32(c.n_ff_exp ? c.n_ff_exp : c.n_ff / c.n_expert_used));
        w.set(a + "expert_shared_feed_forward_length", GGUFValue::u32(c.n_ff_shexp ? c.n_ff_shexp : c.n_ff));
    }
}

// Mamba's tensors, in forward-pass order per block. Init as Mamba's own (Gu & Dao's
// reference code, mamba_simple.py): embeddings N(0, 0.02); in_proj and x_proj 1/sqrt(fan_in);
// dt_proj N(0, 1/dt_rank) (its "random" init has std dt_rank^-0.5); out_proj rescaled by
// 1/sqrt(n_layer) as its rescale_prenorm_residual does; D = 1; conv taps 1/sqrt(d_conv).
// ssm_a (A = -exp(A_log) = -(1, 2, ..., d_state) in every channel, the S4D-real init) and
// ssm_dt.bias (softplus^-1 of dt log-uniform in [1e-3, 1e-1]) are not normal draws: their
// values come from mamba_special_values() (mean and std 0 here).
std::vector<SynthTensor> mamba_tensors(const SynthConfig& c) {
    const int64_t E = c.n_embd, V = c.n_vocab, Di = mamba_d_inner(c), S = c.ssm_d_state, K = c.ssm_d_conv;
    const int64_t R = mamba_dt_rank(c);
    const float resid_scale = 1.0f / std::sqrt(static_cast<float>(c.n_layer));
    std::vector<SynthTensor> out;
    auto add = [&](std::string name, GGMLType want, std::vector<int64_t> ne, float mean, float std) {
        SynthTensor t;
        t.name = std::move(name);
        t.wanted = ne.size() == 1 ? GGMLType::F32 : want;
        t.type = quant_fallback_type(t.wanted, ne[0]);
        t.ne = std::move(ne);
        t.nbytes = row_size(t.type, t.ne[0]) * static_cast<size_t>(t.nelements() / t.ne[0]);
        t.mean = mean;
        t.std = std;
        out.push_back(std::move(t));
    };
    auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
    add("token_embd.weight", synth_tensor_type(c, "token_embd.weight", 0), {E, V}, 0.0f, kEmbdStd);
    for (uint32_t il = 0; il < c.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        auto matrix = [&](const std::string& kind, int64_t n_in, int64_t n_out, float std) {
            add(p + kind, synth_tensor_type(c, kind, il), {n_in, n_out}, 0.0f, std);
        };
        add(p + "attn_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        matrix("ssm_in.weight", E, 2 * Di, inv_sqrt(E));
        // llama-quantize leaves the conv taps and A (no ".weight" suffix) in F32.
        add(p + "ssm_conv1d.weight", GGMLType::F32, {K, Di}, 0.0f, inv_sqrt(K));
        add(p + "ssm_conv1d.bias", GGMLType::F32, {Di}, 0.0f, kNormStd);
        matrix("ssm_x.weight", Di, R + 2 * S, inv_sqrt(Di));
        matrix("ssm_dt.weight", R, Di, inv_sqrt(R));
        add(p + "ssm_dt.bias", GGMLType::F32, {Di}, 0.0f, 0.0f);
        add(p + "ssm_a", GGMLType::F32, {S, Di}, 0.0f, 0.0f);
        add(p + "ssm_d", GGMLType::F32, {Di}, 1.0f, 0.0f);
        matrix("ssm_out.weight", Di, E, inv_sqrt(Di) * resid_scale);
    }
    if (c.tied_embeddings) {
        const float centre = kLogitStd / (kEmbdStd * std::sqrt(static_cast<float>(E)));
        add("output_norm.weight", GGMLType::F32, {E}, centre, centre * kNormStd);
    } else {
        add("output_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        add("output.weight", synth_tensor_type(c, "output.weight", 0), {E, V}, 0.0f, kLogitStd * inv_sqrt(E));
    }
    return out;
}

} // namespace

std::vector<SynthTensor> synth_tensors(const SynthConfig& c) {
    validate(c);
    if (is_moe_arch(c.arch)) return moe_tensors(c);
    if (c.arch == "mamba") return mamba_tensors(c);
    const int64_t E = c.n_embd, V = c.n_vocab, F = c.n_ff;
    const int64_t hd = c.head_dim ? c.head_dim : c.n_embd / c.n_head;
    const int64_t nq = hd * c.n_head, nkv = hd * c.n_head_kv;
    const float resid_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(c.n_layer));
    // Granite's attention.scale replaces 1/sqrt(hd): Q and K wider by the square root of the
    // ratio keep the scores' spread; its logit_scale divides the logits: the output is wider
    // by it.
    // The embedding multiplier (Gemma: sqrt(n_embd), Granite: embedding_scale) and Granite's
    // residual_scale are divided out of the embedding and the branch outputs, so the stream is
    // what it is for Llama (otherwise the scaled embedding drowns the branches and a tied model
    // predicts its input token).
    float qk_scale = kQKScale, logit_mul = 1.0f, embd_std = kEmbdStd, branch_scale = resid_scale;
    if (c.arch == "gemma") embd_std /= std::sqrt(static_cast<float>(E));
    if (c.arch == "granite") {
        if (c.attention_scale > 0)
            qk_scale *= std::sqrt(1.0f / std::sqrt(static_cast<float>(hd)) / c.attention_scale);
        if (c.logit_scale > 0) logit_mul = c.logit_scale;
        if (c.embedding_scale > 0) embd_std /= c.embedding_scale;
        if (c.residual_scale > 0) branch_scale /= c.residual_scale;
    }

    std::vector<SynthTensor> out;
    auto add = [&](std::string name, GGMLType want, std::vector<int64_t> ne, float mean, float std) {
        SynthTensor t;
        t.name = std::move(name);
        t.wanted = ne.size() == 1 ? GGMLType::F32 : want;  // 1-D: F32, as llama-quantize
        t.type = quant_fallback_type(t.wanted, ne[0]);
        t.ne = std::move(ne);
        t.nbytes = row_size(t.type, t.ne[0]) * static_cast<size_t>(t.nelements() / t.ne[0]);
        t.mean = mean;
        t.std = std;
        out.push_back(std::move(t));
    };
    uint32_t il = 0;
    auto matrix = [&](const std::string& kind, int64_t n_in, int64_t n_out, float scale) {
        add("blk." + std::to_string(il) + "." + kind, synth_tensor_type(c, kind, il), {n_in, n_out}, 0.0f,
            scale / std::sqrt(static_cast<float>(n_in)));
    };

    // Order: generated rope_freqs first (convert_hf_to_gguf.py yields its generated tensors before
    // the checkpoint's), then the embedding, the blocks in numeric order with each block's tensors
    // in the order the forward pass uses them, the final norm and the output matrix. (The
    // converter itself follows the checkpoint's key order; loaders look tensors up by name.)
    if (c.rope_llama3_factor > 0) add("rope_freqs.weight", GGMLType::F32, {hd / 2}, 0, 0);
    add("token_embd.weight", synth_tensor_type(c, "token_embd.weight", 0), {E, V}, 0.0f, embd_std);
    for (il = 0; il < c.n_layer / c.layer_share; ++il) {  // the stored blocks
        const std::string p = "blk." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        matrix("attn_q.weight", E, nq, qk_scale);
        matrix("attn_k.weight", E, nkv, qk_scale);
        matrix("attn_v.weight", E, nkv, 1.0f);
        matrix("attn_output.weight", nq, E, branch_scale);
        add(p + "ffn_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        matrix("ffn_gate.weight", E, F, 1.0f);
        matrix("ffn_up.weight", E, F, 1.0f);
        matrix("ffn_down.weight", F, E, branch_scale);
    }
    if (synth_tied(c)) {
        // logits = token_embd . h: with rows of std 0.02, h needs norm weights of ~centre for a
        // logit spread of kLogitStd (large final-norm weights are what trained tied models have).
        const float centre = logit_mul * kLogitStd / (embd_std * std::sqrt(static_cast<float>(E)));
        add("output_norm.weight", GGMLType::F32, {E}, centre, centre * kNormStd);
    } else {
        add("output_norm.weight", GGMLType::F32, {E}, 1.0f, kNormStd);
        add("output.weight", synth_tensor_type(c, "output.weight", 0), {E, V}, 0.0f,
            logit_mul * kLogitStd / std::sqrt(static_cast<float>(E)));
    }
    return out;
}

uint64_t synth_param_count(const SynthConfig& cfg) {
    uint64_t n = 0;
    for (const SynthTensor& t : synth_tensors(cfg)) n += static_cast<uint64_t>(t.nelements());
    return n;
}

// ---- generation -----------------------------------------------------------------------------

namespace {

// SplitMix64's finalizer (Steele et al., "Fast splittable pseudorandom number generators"):
// a stateless mix, so each row gets its own stream whatever thread generates it.
uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
    return h;
}

// xoshiro256+ (Blackman & Vigna): fast, and its high bits, the only ones used, are fine for floats.
struct Xoshiro256p {
    uint64_t s[4];
    explicit Xoshiro256p(uint64_t seed) {
        for (uint64_t& x : s) x = seed = mix64(seed);
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        const uint64_t r = s[0] + s[3];
        const uint64_t t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
    }
};

// ln(x) for x in (0, 1]: exponent plus log(m) = 2 atanh((m-1)/(m+1)) for m in [sqrt(1/2), sqrt(2)),
// abs error < 1e-6. Written without branches or libm so the Box-Muller loop vectorizes and gives
// the same bits on every platform (libm's logf/sincosf differ between versions).
inline float log_unit(float x) {
    const uint32_t b = std::bit_cast<uint32_t>(x);
    int32_t e = static_cast<int32_t>(b >> 23) - 127;
    float m = std::bit_cast<float>((b & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
    const int32_t big = m > 1.41421356f;
    m *= 1.0f - 0.5f * static_cast<float>(big);
    e += big;
    const float f = m - 1.0f, s = f / (2.0f + f), z = s * s;
    const float p = 2.0f * s * (1.0f + z * (1.0f / 3 + z * (1.0f / 5 + z * (1.0f / 7 + z * (1.0f / 9)))));
    return p + static_cast<float>(e) * 0.693147180559945f;
}

// Box-Muller over p pairs, one 64-bit draw each (24 bits per uniform: |z| <= 5.8):
// z[j] = r cos(2 pi u2), z[p + j] = r sin(2 pi u2), r = sqrt(-2 ln u1). The angle is reduced to
// a quadrant k and |t| <= pi/4 (Taylor to t^9, error < 1e-8); sqrt is a Newton-refined
// reciprocal square root. Branch-free, so GCC vectorizes it.
void box_muller(const uint64_t* bits, float* z, int64_t p) {
    constexpr float k2m24 = 1.0f / 16777216.0f;
    for (int64_t j = 0; j < p; ++j) {
        const uint64_t v = bits[j];
        const float u1 = static_cast<float>(static_cast<int32_t>(v >> 40) + 1) * k2m24;  // (0, 1]
        const int32_t q = static_cast<int32_t>((v >> 16) & 0xFFFFFFu);                 // u2 = q / 2^24
        const int32_t k = (q + 0x200000) >> 22;                                         // round(4 u2)
        const float t = 6.28318530717958647692f * static_cast<float>(q - (k << 22)) * k2m24;
        const float t2 = t * t;
        const float sn = t * (1.0f + t2 * (-1.0f / 6 + t2 * (1.0f / 120 + t2 * (-1.0f / 5040 + t2 * (1.0f / 362880)))));
        const float cs = 1.0f + t2 * (-0.5f + t2 * (1.0f / 24 + t2 * (-1.0f / 720 + t2 * (1.0f / 40320))));
        // rotate by k quarter turns: odd k swaps cos/sin (one negated), k & 2 negates both
        const float odd = static_cast<float>(k & 1), sg = 1.0f - static_cast<float>(k & 2);
        const float c = sg * (cs - odd * (cs + sn)), s = sg * (sn + odd * (cs - sn));
        const float w = -2.0f * log_unit(u1) + 1e-30f;  // > 0, so the rsqrt below is finite
        float y = std::bit_cast<float>(0x5f3759dfu - (std::bit_cast<uint32_t>(w) >> 1));
        y = y * (1.5f - 0.5f * w * y * y);
        y = y * (1.5f - 0.5f * w * y * y);
        y = y * (1.5f - 0.5f * w * y * y);
        const float r = w * y;
        z[j] = r * c;
        z[p + j] = r * s;
    }
}

struct RowScratch {
    std::vector<uint64_t> bits;
    std::vector<float> z;
};

// n values mean + std * N(0, 1).
void fill_normal(Xoshiro256p& g, float* x, int64_t n, float mean, float std, RowScratch& s) {
    const int64_t p = (n + 1) / 2;
    s.bits.resize(static_cast<size_t>(p));
    s.z.resize(static_cast<size_t>(2 * p));
    for (int64_t j = 0; j < p; ++j) s.bits[j] = g.next();
    box_muller(s.bits.data(), s.z.data(), p);
    for (int64_t i = 0; i < n; ++i) x[i] = mean + std * s.z[i];
}

// convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors for rope_type "llama3", in float32
// as its torch code computes the frequencies.
std::vector<float> llama3_rope_factors(const SynthConfig& c, int64_t hd) {
    const float pi = 3.14159265358979323846f;
    const float factor = c.rope_llama3_factor;
    const float low_wavelen = static_cast<float>(c.rope_llama3_orig_ctx) / c.rope_llama3_low_freq;
    const float high_wavelen = static_cast<float>(c.rope_llama3_orig_ctx) / c.rope_llama3_high_freq;
    std::vector<float> out;
    for (int64_t i = 0; i < hd; i += 2) {
        const float freq = 1.0f / std::pow(c.rope_freq_base, static_cast<float>(i) / static_cast<float>(hd));
        const float wavelen = 2.0f * pi / freq;
        if (wavelen < high_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            out.push_back(factor);
        } else {
            const float smooth = (static_cast<float>(c.rope_llama3_orig_ctx) / wavelen - c.rope_llama3_low_freq) /
                                 (c.rope_llama3_high_freq - c.rope_llama3_low_freq);
            out.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
        }
    }
    return out;
}

// The bytes of one tensor in its final type, generated row by row in parallel.
std::vector<uint8_t> generate_tensor(const SynthTensor& t, uint64_t seed, ThreadPool& pool) {
    std::vector<uint8_t> out(t.nbytes);
    const kernels::TypeTraits* tt = kernels::ref_traits(t.type);
    const int64_t n0 = t.ne[0], rows = t.nelements() / n0;
    const size_t rs = row_size(t.type, n0);
    const uint64_t tseed = mix64(seed ^ fnv1a(t.name));  // by name: independent of the tensor order
    pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
        std::vector<float> row(static_cast<size_t>(n0));
        RowScratch scratch;
        for (int64_t r = begin; r < end; ++r) {
            Xoshiro256p g(tseed ^ mix64(static_cast<uint64_t>(r)));
            fill_normal(g, row.data(), n0, t.mean, t.std, scratch);
            tt->quantize_ref(row.data(), out.data() + static_cast<size_t>(r) * rs, n0);
        }
    });
    return out;
}

// The values of Mamba's tensors that are not normal draws (see mamba_tensors), or empty.
std::vector<uint8_t> mamba_special_values(const SynthTensor& t, uint64_t seed) {
    const size_t dot = t.name.find('.', 4);  // after "blk.N"
    const std::string kind = dot == std::string::npos ? "" : t.name.substr(dot + 1);
    std::vector<float> v;
    if (kind == "ssm_a") {
        const int64_t S = t.ne[0];
        v.resize(static_cast<size_t>(t.nelements()));
        for (size_t i = 0; i < v.size(); ++i) v[i] = -static_cast<float>(i % S + 1);
    } else if (kind == "ssm_dt.bias") {
        // dt = exp(U(ln 1e-3, ln 1e-1)), floored at 1e-4, stored as softplus^-1(dt) =
        // dt + ln(1 - e^-dt), so that softplus(bias) starts at dt (mamba_simple.py's dt init).
        const uint64_t tseed = mix64(seed ^ fnv1a(t.name));
        v.resize(static_cast<size_t>(t.ne[0]));
        for (size_t i = 0; i < v.size(); ++i) {
            const double u = (static_cast<double>(mix64(tseed ^ mix64(i)) >> 40) + 0.5) / 16777216.0;
            const double dt = std::max(1e-4, std::exp(std::log(1e-3) + u * (std::log(1e-1) - std::log(1e-3))));
            v[i] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
        }
    } else {
        return {};
    }
    std::vector<uint8_t> bytes(v.size() * sizeof(float));
    std::memcpy(bytes.data(), v.data(), bytes.size());
    return bytes;
}

// Mamba's `mamba.*` keys, as convert_hf_to_gguf.py's MambaModel writes them (it has no attention
// and no FFN: head_count and feed_forward_length 0; context_length 2^20, "no trained length").
void write_mamba_keys(GGUFWriter& w, const SynthConfig& c) {
    const std::string a = c.arch + ".";
    w.set(a + "context_length", GGUFValue::u32(c.n_ctx_train));
    w.set(a + "embedding_length", GGUFValue::u32(c.n_embd));
    w.set(a + "feed_forward_length", GGUFValue::u32(0));
    w.set(a + "attention.head_count", GGUFValue::u32(0));
    w.set(a + "block_count", GGUFValue::u32(c.n_layer));
    w.set(a + "ssm.conv_kernel", GGUFValue::u32(c.ssm_d_conv));
    w.set(a + "ssm.inner_size", GGUFValue::u32(mamba_d_inner(c)));
    w.set(a + "ssm.state_size", GGUFValue::u32(c.ssm_d_state));
    w.set(a + "ssm.time_step_rank", GGUFValue::u32(mamba_dt_rank(c)));
    w.set(a + "attention.layer_norm_rms_epsilon", GGUFValue::f32(c.rms_eps));
    w.set("general.file_type", GGUFValue::u32(c.ftype.value_or(llama_file_type(c.type))));
}

} // namespace

SynthResult synthesize(const SynthConfig& cfg_in, const std::string& out_path) {
    if (!synth_arch_supported(cfg_in.arch)) validate(cfg_in);  // the architecture's own message
    if (cfg_in.tokenizer.empty()) fail("synth: no tokenizer given (--tokenizer VOCAB.gguf)");
    GGUFFile tok = GGUFFile::open(cfg_in.tokenizer);
    const GGUFValue* tokens = tok.find("tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUFType::ARRAY || tokens->elem_type != GGUFType::STRING)
        fail("synth: %s: no tokenizer.ggml.tokens string array; --tokenizer must name a GGUF with a vocabulary",
             cfg_in.tokenizer.c_str());

    SynthConfig cfg = cfg_in;
    cfg.n_vocab = static_cast<uint32_t>(std::min<uint64_t>(tokens->n, UINT32_MAX));
    SynthResult res;
    res.n_vocab = cfg.n_vocab;
    res.tensors = synth_tensors(cfg);
    for (const SynthTensor& t : res.tensors) {
        const kernels::TypeTraits* tt = kernels::ref_traits(t.type);
        if (!tt || !tt->quantize_ref)
            fail("synth: tensor '%s' needs type %s, which slm cannot quantize to yet", t.name.c_str(), type_name(t.type));
        const GGMLType want = t.wanted;
        if (t.type != want)
            res.fallbacks.push_back(strprintf("%s: %s -> %s (row %lld)", t.name.c_str(), type_name(want),
                                              type_name(t.type), static_cast<long long>(t.ne[0])));
    }

    const std::string a = cfg.arch + ".";
    const int64_t hd = cfg.head_dim ? cfg.head_dim : cfg.n_head ? cfg.n_embd / cfg.n_head : 0;
    GGUFWriter w;
    // Keys in convert_hf_to_gguf.py's order and with gguf-py's types: counts UINT32, floats FLOAT32.
    w.set("general.architecture", GGUFValue::string(cfg.arch));
    w.set("general.name", GGUFValue::string("slm-synth " + cfg.name));
    if (cfg.arch == "mamba") {
        write_mamba_keys(w, cfg);
    } else {
        w.set(a + "block_count", GGUFValue::u32(cfg.n_layer));
        w.set(a + "context_length", GGUFValue::u32(cfg.n_ctx_train));
        w.set(a + "embedding_length", GGUFValue::u32(cfg.n_embd));
        w.set(a + "feed_forward_length", GGUFValue::u32(cfg.n_ff));
        w.set(a + "attention.head_count", GGUFValue::u32(cfg.n_head));
        w.set(a + "attention.head_count_kv", GGUFValue::u32(cfg.n_head_kv));
        w.set(a + "rope.freq_base", GGUFValue::f32(cfg.rope_freq_base));
        w.set(a + "attention.layer_norm_rms_epsilon", GGUFValue::f32(cfg.rms_eps));
        if (cfg.head_dim) {
            w.set(a + "attention.key_length", GGUFValue::u32(cfg.head_dim));
            w.set(a + "attention.value_length", GGUFValue::u32(cfg.head_dim));
        }
        w.set("general.file_type", GGUFValue::u32(cfg.ftype.value_or(llama_file_type(cfg.type))));
        w.set(a + "vocab_size", GGUFValue::u32(cfg.n_vocab));
        w.set(a + "rope.dimension_count", GGUFValue::u32(static_cast<uint32_t>(hd)));
        if (cfg.layer_share > 1) {
            std::vector<uint32_t> src(cfg.n_layer);
            for (uint32_t il = 0; il < cfg.n_layer; ++il) src[il] = il / cfg.layer_share;
            w.set(a + "block_source", GGUFValue::u32_array(src));
        }
        if (is_moe_arch(cfg.arch)) moe_keys(cfg, w);
        if (cfg.arch == "granite") {
            // convert_hf_to_gguf.py's GraniteModel: the multipliers that config.json has.
            if (cfg.attention_scale > 0) w.set(a + "attention.scale", GGUFValue::f32(cfg.attention_scale));
            if (cfg.embedding_scale > 0) w.set(a + "embedding_scale", GGUFValue::f32(cfg.embedding_scale));
            if (cfg.residual_scale > 0) w.set(a + "residual_scale", GGUFValue::f32(cfg.residual_scale));
            w.set(a + "logit_scale", GGUFValue::f32(cfg.logit_scale > 0 ? cfg.logit_scale : 1.0f));
        }
    }
    for (const auto& [k, v] : tok.kv())
        if (k.rfind("tokenizer.", 0) == 0) w.set(k, v);
    // llama-quantize writes GGML_QNT_VERSION into every file it makes, F16 included; an all-F32
    // file (a converter's output) goes without, as the reference files of llama.cpp show.
    bool all_f32 = true;
    for (const SynthTensor& t : res.tensors) all_f32 &= t.type == GGMLType::F32;
    if (!all_f32) w.set("general.quantization_version", GGUFValue::u32(2));

    int n_threads = cfg.n_threads > 0 ? cfg.n_threads : static_cast<int>(std::thread::hardware_concurrency());
    ThreadPool pool(std::max(1, n_threads));
    for (const SynthTensor& t : res.tensors) {
        std::vector<uint8_t> bytes;
        if (t.name == "rope_freqs.weight") {
            const std::vector<float> f = llama3_rope_factors(cfg, hd);
            bytes.resize(f.size() * sizeof(float));
            std::memcpy(bytes.data(), f.data(), bytes.size());
        } else if (cfg.arch == "mamba") {
            bytes = mamba_special_values(t, cfg.seed);  // A and the dt bias are set, not drawn
            if (bytes.empty()) bytes = generate_tensor(t, cfg.seed, pool);
        } else {
            bytes = generate_tensor(t, cfg.seed, pool);
        }
        w.add_tensor_copy(t.name, t.type, t.ne, std::move(bytes));
        res.n_params += static_cast<uint64_t>(t.nelements());
    }
    w.write(out_path);

    struct stat st;
    if (::stat(out_path.c_str(), &st) == 0) res.file_bytes = static_cast<uint64_t>(st.st_size);
    return res;
}

} // namespace slm
