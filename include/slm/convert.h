// slm/convert.h - import checkpoints from other formats into GGUF, and export GGUF to Hugging Face.
//
//   slm::convert_llama2c("stories260K.bin", "tok512.bin", "stories260K.gguf");
//   slm::convert_hf_to_gguf("SmolLM2-135M", "smollm2.gguf", "f16");   // a Hugging Face folder
//   slm::convert_gguf_to_hf("smollm2.gguf", "SmolLM2-135M-again");    // and back
//
// Inputs are validated in full before anything is allocated from them; a bad input throws
// slm::Error naming the file, the field and the value. The output is written to a temporary file
// and renamed, so it is either complete or untouched.
#pragma once

#include <string>

namespace slm {

// Converts a llama2.c legacy checkpoint (karpathy/llama2.c run.c: a 7 x int32 header, then F32
// weights) and its tokenizer.bin into a GGUF laid out as llama.cpp's
// llama-convert-llama2c-to-ggml writes it: the same keys in the same order with the same types,
// the same tensor names, shapes and order, all weights F32, output.weight a copy of token_embd when
// the checkpoint shares its classifier. Two values follow that converter rather than the checkpoint:
// llama.context_length is 128 (the converter's n_ctx default; the checkpoint's seq_len is not
// recorded) and token types are derived from the pieces as it derives them. One is deliberately
// different: llama.rope.dimension_count is the head size, where the converter caps it at 64
// (identical for every head size <= 64, i.e. all of Karpathy's released llama2.c models).
void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin, const std::string& out_gguf);

// Converts a Hugging Face model folder (config.json, model.safetensors or sharded
// model.safetensors.index.json, tokenizer.json, tokenizer_config.json) into the GGUF that
// llama.cpp's convert_hf_to_gguf.py writes: the same keys with the same types and order, tensor
// names, Q/K row permutation (Llama), norm shift (Gemma), A = -exp(A_log) (Mamba), stacked
// experts and per-tensor types. Architectures: LlamaForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, Qwen2MoeForCausalLM, Phi3ForCausalLM, GemmaForCausalLM, Gemma2ForCausalLM,
// Gemma3ForCausalLM, GraniteForCausalLM, MambaForCausalLM, JambaForCausalLM, OpenELMForCausalLM.
// `type`: "f32", "f16", "bf16" or "q8_0" (the converter's --outtype values), or "auto": the
// checkpoint's own float type (F32 stays F32, where the converter's default would write F16).
// Deliberate differences: general.name is the folder's name (the converter also derives
// basename/size_label/finetune from it and the model card; slm does not), and a Mamba config with
// max_position_embeddings keeps it as context_length (the converter always writes 2^20); a
// Gemma 2/3 config whose local/global layer pattern differs from llama.cpp's default (2 / 6)
// gets attention.sliding_window_pattern.
void convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_gguf, const std::string& type = "auto");

// Writes a GGUF of a supported architecture as a Hugging Face folder: model.safetensors (each
// tensor in its GGUF float type; quantized tensors dequantized to F32, with a note on stderr),
// config.json, generation_config.json, tokenizer.json and tokenizer_config.json. Converting the
// folder back with convert_hf_to_gguf gives the same tensors, bit for bit, except two inverses
// with no exact float form: Gemma norm weights below 0.5 (w = g - 1 cannot always be stored so
// that w + 1 == g; they come back within half an ulp of g - 1) and Mamba's A (A_log = log(-A)
// above e^2 does not always exp back to A; within 2 ulps). A second round trip is byte-identical.
// The folder is created if needed; files are written to temporary names and renamed.
void convert_gguf_to_hf(const std::string& gguf, const std::string& out_dir);

} // namespace slm

namespace slm {

// Writes a copy of a GGUF whose `<arch>.block_source` key shares stored blocks between layers
// (MobileLLM block-wise sharing, written by `slm synth --layer-share`) in the plain form
// llama.cpp loads: every layer's blk.<il>.* tensors written out (a shared block's bytes once per
// layer that uses it) and the key dropped. Other files are refused (nothing to do).
void convert_unshare(const std::string& in_gguf, const std::string& out_gguf);

} // namespace slm
