// tokenizers/spm.cpp - SentencePiece-style BPE over token scores, as llama.cpp's
// llm_tokenizer_spm_session: start from single UTF-8 characters, repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring token (ties: the leftmost pair), and spell
// what never became a token as <0xHH> byte tokens.
#include "tokenizers/unicode.h"
#include "tokenizers/vocab_impl.h"

#include <queue>

namespace slm {

namespace {

using tok::Symbol;

struct Bigram {
    int left;
    int right;
    float score;
    size_t size;
};

// Max-heap order of llm_bigram_spm::comparator: higher score first, then the smaller left index.
struct BigramOrder {
    bool operator()(const Bigram& l, const Bigram& r) const {
        return l.score < r.score || (l.score == r.score && l.left > r.left);
    }
};

} // namespace

int32_t Vocab::Impl::spm_byte_token(uint8_t byte) const {
    static constexpr char hex[] = "0123456789ABCDEF";
    const char buf[6] = {'<', '0', 'x', hex[byte >> 4], hex[byte & 15], '>'};
    int32_t id = find(std::string_view(buf, 6));
    if (id == TOKEN_NULL) id = find(std::string_view(reinterpret_cast<const char*>(&byte), 1));
    return id;
}

void Vocab::Impl::tokenize_spm(const std::string& text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::vector<Symbol> symbols;
    symbols.reserve(text.size());
    for (size_t offs = 0; offs < text.size();) {
        const size_t n = std::min(tok::utf8_len(text[offs]), text.size() - offs);
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({index - 1, offs + n == text.size() ? -1 : index + 1, text.data() + offs, n});
        offs += n;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue;
    auto try_add = [&](int left, int right) {
        if (left == -1 || right == -1) return;
        const std::string_view s(symbols[left].text, symbols[left].n + symbols[right].n);
        const int32_t id = find(s);
        if (id == TOKEN_NULL) return;
        queue.push({left, right, tokens[id].score, s.size()});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

    tok::merge_queued(symbols, queue, try_add);

    // Every merged symbol is a token (a pair is only queued when it is one), so llama.cpp's
    // rev_merge re-segmentation never applies: a symbol is either a token or one character,
    // and a character that is no token is spelled in byte tokens.
    for (int i = 0; i != -1; i = symbols[i].next) {
        const Symbol& s = symbols[i];
        const int32_t id = find(std::string_view(s.text, s.n));
        if (id != TOKEN_NULL) {
            out.push_back(id);
            continue;
        }
        for (size_t j = 0; j < s.n; ++j) {
            // llama.cpp throws when a byte has no token; the unknown token (if any) stands in.
            const int32_t b = spm_byte_token(static_cast<uint8_t>(s.text[j]));
            if (b != TOKEN_NULL) {
                out.push_back(b);
            } else if (unk != TOKEN_NULL) {
                out.push_back(unk);
            }
        }
    }
}

} // namespace slm
