// tokenizers/bpe.cpp - byte-level BPE over merge ranks, as llama.cpp's llm_tokenizer_bpe_session:
// the pre-tokenizer cuts the text into words, each word starts as single UTF-8 characters (of
// the byte-encoded text), and the adjacent pair with the lowest merge rank is merged (ties: the
// leftmost) until no pair has a rank.
#include "tokenizers/unicode.h"
#include "tokenizers/vocab_impl.h"

#include <queue>

namespace slm {

namespace {

using tok::Symbol;

struct Bigram {
    int left;
    int right;
    int32_t rank;
    size_t size;
};

// Min-heap order of llm_bigram_bpe::comparator: lower rank first, then the smaller left index.
struct BigramOrder {
    bool operator()(const Bigram& l, const Bigram& r) const {
        return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
    }
};

} // namespace

void Vocab::Impl::tokenize_bpe(const std::string& text, std::vector<int32_t>& out) const {
    const std::vector<std::string> words = pre_tokenizer->split(text);
    const bool byte_encode = pre_tokenizer->byte_encode();

    std::vector<Symbol> symbols;
    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    std::string key;

    auto try_add = [&](int left, int right) {
        if (left == -1 || right == -1) return;
        key.assign(symbols[left].text, symbols[left].n);
        key += ' ';
        key.append(symbols[right].text, symbols[right].n);
        auto it = bpe_ranks.find(std::string_view(key));
        if (it == bpe_ranks.end()) return;
        queue.push({left, right, it->second, symbols[left].n + symbols[right].n});
    };

    for (const std::string& word : words) {
        symbols.clear();
        queue = {};
        size_t offset = 0;
        if (ignore_merges && find(word) != TOKEN_NULL) {
            symbols.push_back({-1, -1, word.data(), word.size()});
            offset = word.size();
        } else if (pre_type == tok::PreType::Gemma4 && word.find_first_not_of('\n') == std::string::npos) {
            // Gemma 4 has tokens for runs of newlines that no merge produces.
            if (find(word) != TOKEN_NULL) {
                symbols.push_back({-1, -1, word.data(), word.size()});
                offset = word.size();
            }
        }
        while (offset < word.size()) {
            const size_t n = std::min(word.size() - offset, tok::utf8_len(word[offset]));
            const int index = static_cast<int>(symbols.size());
            symbols.push_back({index - 1, offset + n == word.size() ? -1 : index + 1, word.data() + offset, n});
            offset += n;
        }
        for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

        tok::merge_queued(symbols, queue, try_add);

        for (const Symbol& s : symbols) {
            if (s.n == 0) continue;
            const int32_t id = find(std::string_view(s.text, s.n));
            if (id != TOKEN_NULL) {
                out.push_back(id);
                continue;
            }
            // A symbol without a token: one token per byte where the vocab has one (the byte
            // itself when byte-encoded, <0xHH> otherwise); llama.cpp drops the others.
            for (size_t j = 0; j < s.n; ++j) {
                const uint8_t byte = static_cast<uint8_t>(s.text[j]);
                int32_t bid;
                if (byte_encode) {
                    bid = find(std::string_view(s.text + j, 1));
                } else {
                    static constexpr char hex[] = "0123456789ABCDEF";
                    const char buf[6] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>'};
                    bid = find(std::string_view(buf, 6));
                }
                if (bid != TOKEN_NULL) out.push_back(bid);
            }
        }
    }
}

} // namespace slm
