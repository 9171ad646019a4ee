// slm/tokenizer_train.h - learn a tokenizer from plain text and write it as a vocab-only GGUF that
// slm::Vocab and llama.cpp load like any other (tokenizer.ggml.* keys, no tensors).
//
//   slm::TokenizerTrainOptions o;
//   o.files = {"corpus.txt"};
//   o.vocab_size = 4096;                      // specials + 256 bytes + merges
//   slm::TokenizerTrainResult r = slm::train_tokenizer(o, "tok.gguf");
//   // r.n_vocab tokens, r.n_tokens tokens for r.n_bytes bytes of corpus
//
// Two kinds:
//  - Bpe: byte-level BPE as GPT-2 (tokenizer.ggml.model "gpt2"): the text is cut into words by the
//    pre-tokenizer tokenizer.ggml.pre names (the runtime's own splitter, so words are the same at
//    training and at use), every byte is a base token, and merges are learned by pair frequency.
//    Tokens: 0 "<s>" (BOS), 1 "</s>" (EOS), 2..257 the bytes 0..255, then one per merge.
//  - Spm: SentencePiece-style BPE (tokenizer.ggml.model "llama"): spaces become U+2581 with a
//    leading one, characters are base tokens (those covering 99.95% of the text), other
//    characters fall back to <0xHH> byte tokens, and each merge's token scores below the earlier
//    ones, so the score-ordered SPM tokenizer replays the merges. Tokens: 0 "<unk>", 1 "<s>",
//    2 "</s>", 3..258 "<0x00>".."<0xFF>", the characters, then one per merge. Tokens never span a
//    space boundary ("▁" only in front) or join a newline to another character. As with any
//    SentencePiece vocab, a literal "▁" in the text comes back as a space.
// Merges: the most frequent adjacent pair first; ties go to the pair with the smaller (left, right)
// token ids, so the output depends only on the input (not on the thread count). A pair whose
// concatenation is already a token is never merged (each token text has one merge), which keeps the
// runtime's lowest-rank-first (or highest-score-first) order equal to the training order: the
// runtime tokenizes the training text into exactly the tokens training ended with. (Spm also
// follows the runtime's merging by text: see MergeOptions::by_text in src/tokenizers.)
//
// Invalid UTF-8 is an error by default, because the runtime does not keep it: the byte-level BPE
// pre-tokenizer (as llama.cpp's) turns each invalid byte into U+FFFD before tokenizing. With
// replace_invalid_utf8 the BPE trainer sees the U+FFFD the runtime will see; the SPM tokenizer keeps
// invalid bytes as <0xHH> tokens, so for Spm the option trains on the bytes as they are.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slm {

enum class TokenizerKind { Bpe, Spm };

struct TokenizerTrainOptions {
    std::vector<std::string> files;  // training text; each file is one document (tokenized on its own)
    TokenizerKind kind = TokenizerKind::Bpe;
    int32_t vocab_size = 4096;       // total tokens wanted, specials and base tokens included
    int64_t min_frequency = 2;       // a pair seen fewer times is not merged (training stops early)
    int32_t max_chars = 16;          // longest token in characters (bytes for Bpe); 0 = no limit
    std::string pre = "qwen2";       // Bpe: tokenizer.ggml.pre; "gpt-2", "qwen2" or "smollm"
    bool replace_invalid_utf8 = false;  // see above; false: invalid UTF-8 is an error
    int n_threads = 1;               // pre-tokenization threads (the result does not depend on it)
    std::string name;                // general.name; "" = "slm-bpe-<V>" / "slm-spm-<V>"
    bool keep_tokens = false;        // fill TokenizerTrainResult::tokens
};

struct TokenizerTrainResult {
    uint64_t n_bytes = 0;            // corpus bytes (all files)
    uint64_t n_words = 0;            // pre-tokenized words (Spm: whitespace-delimited pieces)
    uint64_t n_unique_words = 0;
    int32_t n_vocab = 0;             // tokens written (< vocab_size if min_frequency stopped it)
    int32_t n_merges = 0;
    int32_t n_base = 0;              // base tokens: bytes (Bpe) or bytes + characters (Spm)
    uint64_t n_tokens = 0;           // the corpus in the trained tokens (no BOS/EOS)
    double seconds = 0.0;            // wall time of the whole training, file writing included
    double bytes_per_token() const { return n_tokens ? double(n_bytes) / double(n_tokens) : 0.0; }
    // With keep_tokens: the files' tokens, file after file, as training segmented them
    // (Vocab::tokenize(file text, add_special = false, parse_special = false) gives the same).
    std::vector<int32_t> tokens;
};

// Learns the tokenizer and writes it to `out_path` (temp file + rename). Throws slm::Error naming
// the file or option at fault: a missing, unreadable or empty file, invalid UTF-8 (unless
// replace_invalid_utf8), a vocab_size below the special and base tokens, an unknown or unsuitable
// pre-tokenizer, an unwritable output.
TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& options, const std::string& out_path);

// The pre-tokenizer names train_tokenizer accepts for Bpe.
std::vector<std::string> tokenizer_train_pre_names();

} // namespace slm
