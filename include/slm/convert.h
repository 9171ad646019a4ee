// slm/convert.h - import checkpoints from other formats into GGUF.
//
//   slm::convert_llama2c("stories260K.bin", "tok512.bin", "stories260K.gguf");
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

} // namespace slm

namespace slm {

// Writes a copy of a GGUF whose `<arch>.block_source` key shares stored blocks between layers
// (MobileLLM block-wise sharing, written by `slm synth --layer-share`) in the plain form
// llama.cpp loads: every layer's blk.<il>.* tensors written out (a shared block's bytes once per
// layer that uses it) and the key dropped. Other files are refused (nothing to do).
void convert_unshare(const std::string& in_gguf, const std::string& out_gguf);

} // namespace slm
