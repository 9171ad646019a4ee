// formats/hf_tokenizer.h - Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json)
// <-> slm's VocabData, mapped as llama.cpp's converter (convert_hf_to_gguf.py, gguf-py vocab.py)
// maps them, and VocabData <-> the GGUF tokenizer.* keys.
//
//   slm::hf::HFTokenizer t = slm::hf::read_hf_tokenizer("models/SmolLM-135M");
//   slm::Vocab vocab(t.vocab);                                  // tokenizes as llama.cpp would
//   slm::GGUFWriter w;
//   slm::hf::add_vocab_kv(t.vocab, t.chat_template, w);         // tokenizer.ggml.* keys
//   slm::hf::write_hf_tokenizer(t.vocab, t.chat_template, "out_dir");  // and back
//
// Forms: byte-level BPE (model.type "BPE" + ByteLevel pre-tokenizer -> tokenizer.ggml.model
// "gpt2", tokenizer.ggml.pre from the Split regexes), SentencePiece-as-BPE (BPE + byte_fallback ->
// "llama") and Unigram (SentencePiece scores -> "llama").
#pragma once

#include "slm/gguf.h"
#include "slm/vocab.h"

#include <string>
#include <string_view>

namespace slm::hf {

struct HFTokenizer {
    VocabData vocab;            // exactly the tokenizer.ggml.* values llama.cpp's converter would write
    std::string chat_template;  // tokenizer_config.json "chat_template" ("" if none); a list of named
                                // templates gives the one named "default"
};

// Reads DIR/tokenizer.json, DIR/tokenizer_config.json (optional) and DIR/config.json (optional,
// only for bos/eos fallbacks). Throws slm::Error naming the file and the JSON field.
HFTokenizer read_hf_tokenizer(const std::string& dir);

// The same from file contents in memory (for fuzzing and tests). `config_json` and
// `tokenizer_config_json` may be empty (= absent). `name` prefixes the file names in messages.
HFTokenizer parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               std::string_view config_json, const std::string& name = "<memory>");

// Writes DIR/tokenizer.json and DIR/tokenizer_config.json (each to a temp file, then renamed) so
// that read_hf_tokenizer gives back the same VocabData and HF `tokenizers` tokenizes like slm.
// DIR is created if missing. What the standard HF fields cannot carry (exact SentencePiece scores,
// token types HF has no word for, ids like UINT32_MAX, an ambiguous pre name) is kept in
// tokenizer_config.json "slm_gguf", which holds only values the standard fields would not give.
void write_hf_tokenizer(const VocabData& v, const std::string& chat_template, const std::string& dir);

// VocabData <-> GGUF tokenizer.* keys, with the GGUF types llama.cpp's writer uses (tokens STRING
// array, scores F32 array, token_type I32 array, merges STRING array, ids UINT32, flags BOOL,
// tokenizer.chat_template STRING when non-empty).
void add_vocab_kv(const VocabData& v, const std::string& chat_template, GGUFWriter& w);
// What Vocab::from_gguf reads (including the deprecated FIM key names).
VocabData vocab_data_from_gguf(const GGUFFile& f);
// tokenizer.chat_template, or "" if absent.
std::string chat_template_from_gguf(const GGUFFile& f);

} // namespace slm::hf
