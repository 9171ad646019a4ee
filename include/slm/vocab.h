// slm/vocab.h - tokenizers built from GGUF metadata, giving the same tokens as llama.cpp's
// llama_tokenize / llama_token_to_piece / llama_detokenize.
//
//   slm::GGUFFile f = slm::GGUFFile::open("model.gguf");
//   slm::Vocab vocab = slm::Vocab::from_gguf(f);
//   std::vector<int32_t> ids = vocab.tokenize("Once upon a time", /*add_special=*/true,
//                                             /*parse_special=*/false);   // [1, 403, 407, 261, 378]
//   std::string text = vocab.detokenize(ids, /*remove_special=*/true, /*unparse_special=*/false);
//
//   slm::Utf8Stream out;                 // streaming: only whole UTF-8 characters come out
//   for (int32_t id : ids) std::cout << out.push(vocab.token_to_piece(id, false));
//   std::cout << out.flush();
//
// tokenizer.ggml.model "llama" is SentencePiece-style BPE over scores (SPM), "gpt2" byte-level BPE
// over merge ranks with the pre-tokenizer named by tokenizer.ggml.pre, "gemma4" BPE on raw UTF-8.
// A Vocab is immutable after construction; every const method may be called from many threads.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

class GGUFFile;

constexpr int32_t TOKEN_NULL = -1;  // "no such token" (LLAMA_TOKEN_NULL)

enum class VocabType { SPM, BPE };

// tokenizer.ggml.token_type values (llama_token_type).
enum class TokenType : int32_t { Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// Token attribute bits (llama_token_attr).
enum TokenAttr : uint32_t {
    TOKEN_ATTR_UNDEFINED = 0,
    TOKEN_ATTR_UNKNOWN = 1u << 0,
    TOKEN_ATTR_UNUSED = 1u << 1,
    TOKEN_ATTR_NORMAL = 1u << 2,
    TOKEN_ATTR_CONTROL = 1u << 3,
    TOKEN_ATTR_USER_DEFINED = 1u << 4,
    TOKEN_ATTR_BYTE = 1u << 5,
    TOKEN_ATTR_NORMALIZED = 1u << 6,
    TOKEN_ATTR_LSTRIP = 1u << 7,
    TOKEN_ATTR_RSTRIP = 1u << 8,
    TOKEN_ATTR_SINGLE_WORD = 1u << 9,
};

// A vocabulary as plain data: what from_gguf reads, for tests and converters. Unset optionals
// take llama.cpp's defaults for the model type.
struct VocabData {
    std::string model = "llama";        // tokenizer.ggml.model: "llama", "gpt2" or "gemma4"
    std::string pre;                    // tokenizer.ggml.pre; "" = "default"
    std::vector<std::string> tokens;    // tokenizer.ggml.tokens
    std::vector<float> scores;          // tokenizer.ggml.scores; empty = all 0
    std::vector<int32_t> token_types;   // tokenizer.ggml.token_type; empty = all Normal
    std::vector<std::string> merges;    // tokenizer.ggml.merges, "left right", BPE only
    // Special token ids, as stored (UINT32_MAX, written by some converters for "none", keeps the default).
    std::optional<int64_t> bos, eos, eot, eom, unk, sep, pad, mask;
    std::optional<int64_t> fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;
    std::optional<bool> add_bos, add_eos, add_space_prefix;
    std::string name;                   // general.name: llama.cpp sets strip flags for a few models by it
    std::string arch;                   // general.architecture
    std::string source = "<vocab data>";  // file name used in error messages
};

class Vocab {
public:
    // Reads tokenizer.ggml.* (and general.name/architecture); throws slm::Error naming the file,
    // the key and the value for an unsupported model or malformed metadata.
    static Vocab from_gguf(const GGUFFile& f);
    explicit Vocab(VocabData data);  // same validation as from_gguf
    ~Vocab();
    Vocab(const Vocab&);
    Vocab& operator=(const Vocab&);
    Vocab(Vocab&&) noexcept;
    Vocab& operator=(Vocab&&) noexcept;

    // llama_tokenize: add_special adds BOS/EOS as the vocab asks; parse_special turns the text of
    // control tokens into those tokens (user-defined tokens always are). Never throws on any input.
    std::vector<int32_t> tokenize(std::string_view text, bool add_special, bool parse_special) const;
    // llama_token_to_piece (lstrip 0): the bytes of one token, possibly an incomplete UTF-8
    // sequence; control and unknown tokens give "" unless `special`. Throws on an id out of range.
    std::string token_to_piece(int32_t id, bool special) const;
    // llama_detokenize, including the leading-space removal and clean_up_tokenization_spaces.
    std::string detokenize(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const;

    int32_t n_tokens() const;
    VocabType vocab_type() const;
    const std::string& model() const;  // tokenizer.ggml.model
    const std::string& pre() const;    // tokenizer.ggml.pre as given

    // Special tokens; TOKEN_NULL when the vocab has none.
    int32_t bos() const;
    int32_t eos() const;
    int32_t eot() const;
    int32_t eom() const;
    int32_t unk() const;
    int32_t sep() const;
    int32_t pad() const;
    int32_t nl() const;  // the newline token
    bool add_bos() const;
    bool add_eos() const;
    bool add_space_prefix() const;

    // Per-token queries; each throws slm::Error for an id outside [0, n_tokens()).
    const std::string& token_text(int32_t id) const;
    float score(int32_t id) const;
    TokenType type(int32_t id) const;
    uint32_t attr(int32_t id) const;  // TokenAttr bits
    bool is_normal(int32_t id) const;
    bool is_control(int32_t id) const;
    bool is_byte(int32_t id) const;
    bool is_user_defined(int32_t id) const;
    bool is_unused(int32_t id) const;
    // End of generation: eos, eot, eom and the end-of-turn tokens llama.cpp recognises by text.
    // False (not a throw) for any id outside the vocab.
    bool is_eog(int32_t id) const;
    const std::vector<int32_t>& eog_ids() const;  // ascending

    // The id of a token's exact text, or TOKEN_NULL.
    int32_t text_to_token(std::string_view text) const;

    struct Impl;

private:
    explicit Vocab(std::shared_ptr<const Impl> impl);
    std::shared_ptr<const Impl> impl_;
};

// Reassembles UTF-8 text from token pieces that may split characters: push() returns only whole
// characters, holding back an incomplete tail; flush() ends the stream. Malformed bytes come out
// as U+FFFD (one per maximal ill-formed subsequence, as the WHATWG decoder does), never dropped.
class Utf8Stream {
public:
    std::string push(std::string_view bytes);
    std::string flush();
    bool has_pending() const { return !pending_.empty(); }

private:
    std::string pending_;  // the start of an incomplete but so far valid sequence
};

} // namespace slm
