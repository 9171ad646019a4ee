// tokenizers/spm_train.cpp - SentencePiece-style BPE training, written as tokenizer.ggml.model
// "llama": spaces become U+2581 ("▁") with one before the text (add_space_prefix), characters are
// the base tokens, characters left out spell as <0xHH> byte tokens, and merge k scores -k so the
// runtime's highest-score-first merging replays the merges in order.
//
// The runtime merges over the whole text, with no pre-tokenizer. Training counts pairs within
// words - a word is "▁" and what follows up to the next "▁" or newline, or a run of newlines - so
// every learned token has "▁" only in front and no newline next to another character; no two
// adjacent symbols across a word boundary then ever concatenate into a token, and the runtime
// splits as training did.
#include "tokenizers/train_impl.h"

#include "core/thread_pool.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "tokenizers/unicode.h"

#include <algorithm>
#include <map>

namespace slm::tok {

namespace {

constexpr std::string_view SPACE = "\xE2\x96\x81";  // U+2581
constexpr int32_t UNK = 0, BOS = 1, EOS = 2;
constexpr int32_t N_SPECIAL = 3;
constexpr int32_t BYTE0 = N_SPECIAL;  // <0x00>
// SentencePiece's default character_coverage: the rarest characters are left to byte fallback.
constexpr double CHAR_COVERAGE = 0.9995;

void split_words(std::string_view chunk, bool file_start, const std::function<void(std::string_view)>& emit) {
    std::string s;
    s.reserve(chunk.size() + chunk.size() / 4 + 3);
    if (file_start) s += SPACE;  // the runtime's dummy prefix
    for (char c : chunk) {
        if (c == ' ') s += SPACE;
        else s += c;
    }
    // Words start only where a runtime symbol starts: a stray lead byte swallows what follows it
    // (U+2581 or a newline included), as the runtime's symbol splitter does.
    size_t start = 0;
    bool prev_nl = false;
    for (size_t i = 0; i < s.size();) {
        const bool nl = s[i] == '\n';
        const bool boundary = i > start && (s.compare(i, SPACE.size(), SPACE) == 0 || nl != prev_nl);
        if (boundary) {
            emit(std::string_view(s).substr(start, i - start));
            start = i;
        }
        const size_t n = std::min(utf8_len(s[i]), s.size() - i);
        prev_nl = n == 1 && nl;
        i += n;
    }
    if (start < s.size()) emit(std::string_view(s).substr(start));
}

// The runtime's symbols: one per UTF-8 character, stepping by the lead byte's length (a stray byte
// is a symbol of its own).
template <class F>
void for_each_symbol(std::string_view w, const F& f) {
    for (size_t i = 0; i < w.size();) {
        const size_t n = std::min(utf8_len(w[i]), w.size() - i);
        f(w.substr(i, n));
        i += n;
    }
}

std::string byte_token_text(int b) { return strprintf("<0x%02X>", b); }

} // namespace

TokenizerTrainResult train_spm(const TokenizerTrainOptions& o, const std::vector<TrainText>& texts, ThreadPool& pool,
                               GGUFWriter& w) {
    const int32_t n_fixed = N_SPECIAL + 256;
    if (o.vocab_size <= n_fixed)
        fail("tokenizer train: --vocab-size %d leaves no room for characters after the %d special and byte tokens "
             "of spm",
             o.vocab_size, n_fixed);

    const WordSplitter split = split_words;
    const WordTable table = count_words(texts, split, pool);

    // Character frequencies; the most frequent characters up to the coverage become tokens.
    std::map<std::string, int64_t, std::less<>> char_count;
    int64_t n_chars_total = 0;
    for (size_t i = 0; i < table.words.size(); ++i) {
        for_each_symbol(table.words[i], [&](std::string_view c) {
            if (!is_valid_utf8(c)) return;
            char_count[std::string(c)] += table.freq[i];
            n_chars_total += table.freq[i];
        });
    }
    std::vector<std::pair<std::string, int64_t>> chars(char_count.begin(), char_count.end());
    std::stable_sort(chars.begin(), chars.end(), [](const auto& a, const auto& b) { return a.second > b.second; });

    TrainVocab vocab;
    vocab.add("<unk>", 1);
    vocab.add("<s>", 1);
    vocab.add("</s>", 1);
    for (int b = 0; b < 256; ++b) vocab.add(byte_token_text(b), 1);
    int64_t covered = 0;
    for (const auto& [c, n] : chars) {
        if (vocab.text.size() >= static_cast<size_t>(o.vocab_size)) break;
        if (covered >= static_cast<int64_t>(CHAR_COVERAGE * static_cast<double>(n_chars_total))) break;
        if (vocab.ids.count(c)) continue;
        vocab.add(c, 1);
        covered += n;
    }
    const auto n_char_tokens = static_cast<int32_t>(vocab.text.size()) - n_fixed;

    // Symbols without a token get negative ids, -1 - (index in `unknown`).
    std::vector<std::string> unknown;
    StringMap unknown_ids;
    std::vector<MergeWord> words(table.words.size());
    for (size_t i = 0; i < words.size(); ++i) {
        for_each_symbol(table.words[i], [&](std::string_view c) {
            const int32_t id = [&] {
                if (auto it = vocab.ids.find(c); it != vocab.ids.end()) return it->second;
                auto [it, inserted] = unknown_ids.emplace(std::string(c), static_cast<int32_t>(unknown.size()));
                if (inserted) unknown.emplace_back(c);
                return -1 - it->second;
            }();
            words[i].sym.push_back(id);
        });
        words[i].freq = table.freq[i];
    }

    MergeOptions mo;
    // By text: literal "<s>" or "<0x41>" in a text must stay characters, and the runtime would
    // make "<s>" of the symbols "<" and "s>" (see MergeOptions::by_text).
    mo.by_text = true;
    mo.n_vocab = o.vocab_size;
    mo.min_frequency = std::max<int64_t>(o.min_frequency, 1);
    mo.max_chars = o.max_chars;
    const std::vector<std::pair<int32_t, int32_t>> merges = learn_merges(words, vocab, mo);

    // A word's final tokens: its symbols, those without a token as their bytes.
    auto word_tokens = [&](const MergeWord& mw, const std::function<void(int32_t)>& out) {
        for (int32_t id : mw.sym) {
            if (id >= 0) {
                out(id);
                continue;
            }
            for (char c : unknown[static_cast<size_t>(-1 - id)]) out(BYTE0 + static_cast<unsigned char>(c));
        }
    };

    TokenizerTrainResult r;
    for (const TrainText& t : texts) r.n_bytes += t.text.size();
    r.n_words = table.n_words;
    r.n_unique_words = table.words.size();
    r.n_vocab = static_cast<int32_t>(vocab.text.size());
    r.n_merges = static_cast<int32_t>(merges.size());
    r.n_base = 256 + n_char_tokens;
    for (const MergeWord& mw : words) {
        uint64_t n = 0;
        word_tokens(mw, [&](int32_t) { ++n; });
        r.n_tokens += n * static_cast<uint64_t>(mw.freq);
    }
    if (o.keep_tokens) {
        r.tokens.reserve(r.n_tokens);
        for_each_word(texts, split, table, [&](int32_t id) {
            word_tokens(words[static_cast<size_t>(id)], [&](int32_t t) { r.tokens.push_back(t); });
        });
    }

    const size_t n = vocab.text.size();
    std::vector<float> scores(n, 0.0f);
    std::vector<int32_t> types(n, static_cast<int32_t>(TokenType::Normal));
    types[UNK] = static_cast<int32_t>(TokenType::Unknown);
    types[BOS] = types[EOS] = static_cast<int32_t>(TokenType::Control);
    for (int b = 0; b < 256; ++b) types[static_cast<size_t>(BYTE0 + b)] = static_cast<int32_t>(TokenType::Byte);
    // Merge k scores -k (exact in float below 2^24 merges); characters score below every merge, in
    // frequency order, as SentencePiece lays them out (their scores never decide a merge).
    const size_t first_merge = static_cast<size_t>(n_fixed + n_char_tokens);
    for (size_t i = first_merge; i < n; ++i) scores[i] = -static_cast<float>(i - first_merge);
    for (size_t i = static_cast<size_t>(n_fixed); i < first_merge; ++i)
        scores[i] = -static_cast<float>(merges.size() + (i - static_cast<size_t>(n_fixed)));

    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("general.name", GGUFValue::string(o.name.empty() ? strprintf("slm-spm-%d", r.n_vocab) : o.name));
    w.set("tokenizer.ggml.model", GGUFValue::string("llama"));
    w.set("tokenizer.ggml.pre", GGUFValue::string("default"));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(vocab.text)));
    w.set("tokenizer.ggml.scores", GGUFValue::f32_array(scores));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
    w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(BOS));
    w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(EOS));
    w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(UNK));
    w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(true));
    w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(false));
    w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(true));
    return r;
}

} // namespace slm::tok
