// tokenizers/vocab_impl.h - the data behind slm::Vocab, shared by vocab.cpp (loading, special
// tokens, pieces), spm.cpp and bpe.cpp (the two tokenizers).
#pragma once

#include "slm/vocab.h"
#include "tokenizers/pre_tokenizer.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace slm {

namespace tok {

// std::hash<std::string_view> equals std::hash<std::string>, so lookups by view need no copy.
struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct TokenData {
    std::string text;
    float score = 0.0f;
    uint32_t attr = TOKEN_ATTR_NORMAL;
    TokenType type = TokenType::Normal;
};

// The working list of both merge tokenizers (SPM by score, BPE by rank): the pieces of one word
// as a doubly linked list over its bytes.
struct Symbol {
    int prev;
    int next;
    const char* text;
    size_t n;  // 0 once merged into its left neighbour
};

// Pops queued bigrams (best first; each has .left, .right and .size) and merges every one whose
// two symbols are unchanged since it was queued - symbols only grow by absorbing their right
// neighbour, so an unchanged total size means an unchanged pair - then lets try_add(left, right)
// queue the pairs the merged symbol now forms with its neighbours.
template <class Queue, class TryAdd>
void merge_queued(std::vector<Symbol>& symbols, Queue& queue, const TryAdd& try_add) {
    while (!queue.empty()) {
        const auto b = queue.top();
        queue.pop();
        Symbol& l = symbols[b.left];
        Symbol& r = symbols[b.right];
        if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
        l.n += r.n;
        r.n = 0;
        l.next = r.next;
        if (r.next >= 0) symbols[r.next].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }
}

// The tokenizer.ggml.* keys of a GGUF file as Vocab::from_gguf reads them, before validation.
VocabData read_vocab_data(const GGUFFile& f);

} // namespace tok

struct Vocab::Impl {
    std::string source;  // file name for messages
    std::string model, pre;
    VocabType type = VocabType::SPM;
    tok::PreType pre_type = tok::PreType::Default;

    std::vector<tok::TokenData> tokens;
    tok::StringMap token_to_id;  // filled in id order, as llama.cpp does (its iteration order matters)
    tok::StringMap bpe_ranks;    // "left right" -> merge rank (first occurrence wins)
    size_t max_token_len = 0;

    int32_t bos = TOKEN_NULL, eos = TOKEN_NULL, eot = TOKEN_NULL, eom = TOKEN_NULL, unk = TOKEN_NULL;
    int32_t sep = TOKEN_NULL, pad = TOKEN_NULL, mask = TOKEN_NULL, nl = TOKEN_NULL;
    int32_t fim_pre = TOKEN_NULL, fim_suf = TOKEN_NULL, fim_mid = TOKEN_NULL;
    int32_t fim_pad = TOKEN_NULL, fim_rep = TOKEN_NULL, fim_sep = TOKEN_NULL;

    bool add_space_prefix = false;
    bool add_bos = false;
    bool add_eos = false;
    bool add_sep = false;
    bool ignore_merges = false;
    bool clean_spaces = false;
    bool escape_whitespaces = true;

    std::unique_ptr<tok::PreTokenizer> pre_tokenizer;  // BPE only
    std::vector<int32_t> special_tokens;  // control/user-defined/unknown, longest text first (cache_special_tokens)
    std::vector<std::string> pieces;      // token_to_piece(id, special = true)
    std::vector<int32_t> eog;             // ascending

    int32_t find(std::string_view text) const {
        auto it = token_to_id.find(text);
        return it == token_to_id.end() ? TOKEN_NULL : it->second;
    }
    // llama_vocab::byte_to_token for SPM: "<0xHH>", else the byte itself as a token; TOKEN_NULL if neither.
    int32_t spm_byte_token(uint8_t byte) const;

    // The tokenizer sessions: llm_tokenizer_spm_session and llm_tokenizer_bpe_session.
    void tokenize_spm(const std::string& text, std::vector<int32_t>& out) const;
    void tokenize_bpe(const std::string& text, std::vector<int32_t>& out) const;
};

} // namespace slm
