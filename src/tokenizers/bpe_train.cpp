// tokenizers/bpe_train.cpp - byte-level BPE training (GPT-2 style): words from the runtime's own
// pre-tokenizer, the 256 bytes as base tokens (through GPT-2's bytes_to_unicode, as the runtime
// spells them), merges by pair frequency, written as tokenizer.ggml.model "gpt2".
#include "tokenizers/train_impl.h"

#include "core/thread_pool.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "tokenizers/pre_tokenizer.h"
#include "tokenizers/unicode.h"

#include <algorithm>

namespace slm::tok {

namespace {

constexpr const char* SPECIALS[] = {"<s>", "</s>"};
constexpr int32_t N_SPECIAL = 2;
constexpr int32_t BOS = 0, EOS = 1;

} // namespace

TokenizerTrainResult train_bpe(const TokenizerTrainOptions& o, const std::vector<TrainText>& texts, ThreadPool& pool,
                               GGUFWriter& w) {
    const std::vector<std::string> pre_names = tokenizer_train_pre_names();
    if (std::find(pre_names.begin(), pre_names.end(), o.pre) == pre_names.end()) {
        std::string names;
        for (const std::string& n : pre_names) names += (names.empty() ? "" : ", ") + n;
        fail("tokenizer train: --pre '%s' is not supported for bpe (one of: %s)", o.pre.c_str(), names.c_str());
    }
    const int32_t n_base = N_SPECIAL + 256;
    if (o.vocab_size < n_base)
        fail("tokenizer train: --vocab-size %d is below the %d special and byte tokens of bpe", o.vocab_size, n_base);

    const PreTokenizer pre(pre_config(o.pre)->type);
    const WordSplitter split = [&](std::string_view chunk, bool, const std::function<void(std::string_view)>& emit) {
        for (const std::string& word : pre.split(chunk)) emit(word);
    };
    const WordTable table = count_words(texts, split, pool);

    TrainVocab vocab;
    for (const char* s : SPECIALS) vocab.add(s, 1);
    for (int b = 0; b < 256; ++b) vocab.add(byte_to_utf8(static_cast<uint8_t>(b)), 1);

    // The words are byte-encoded: one code point per byte.
    std::vector<MergeWord> words(table.words.size());
    for (size_t i = 0; i < words.size(); ++i) {
        for (uint32_t cpt : cpts_from_utf8(table.words[i])) {
            const int byte = cpt_to_byte(cpt);
            if (byte < 0) fail("tokenizer train: pre-tokenizer gave a word that is not byte-encoded (internal error)");
            words[i].sym.push_back(N_SPECIAL + byte);
        }
        words[i].freq = table.freq[i];
    }

    MergeOptions mo;
    mo.n_vocab = o.vocab_size;
    mo.min_frequency = std::max<int64_t>(o.min_frequency, 1);
    mo.max_chars = o.max_chars;
    const std::vector<std::pair<int32_t, int32_t>> merges = learn_merges(words, vocab, mo);

    TokenizerTrainResult r;
    for (const TrainText& t : texts) r.n_bytes += t.text.size();
    r.n_words = table.n_words;
    r.n_unique_words = table.words.size();
    r.n_vocab = static_cast<int32_t>(vocab.text.size());
    r.n_merges = static_cast<int32_t>(merges.size());
    r.n_base = 256;
    for (const MergeWord& mw : words) r.n_tokens += static_cast<uint64_t>(mw.freq) * mw.sym.size();
    if (o.keep_tokens) {
        r.tokens.reserve(r.n_tokens);
        for_each_word(texts, split, table, [&](int32_t id) {
            const std::vector<int32_t>& s = words[static_cast<size_t>(id)].sym;
            r.tokens.insert(r.tokens.end(), s.begin(), s.end());
        });
    }

    std::vector<int32_t> types(vocab.text.size(), static_cast<int32_t>(TokenType::Normal));
    for (int32_t i = 0; i < N_SPECIAL; ++i) types[static_cast<size_t>(i)] = static_cast<int32_t>(TokenType::Control);
    std::vector<std::string> merge_texts;
    merge_texts.reserve(merges.size());
    for (const auto& [a, b] : merges) merge_texts.push_back(vocab.text[a] + " " + vocab.text[b]);

    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("general.name", GGUFValue::string(o.name.empty() ? strprintf("slm-bpe-%d", r.n_vocab) : o.name));
    w.set("tokenizer.ggml.model", GGUFValue::string("gpt2"));
    w.set("tokenizer.ggml.pre", GGUFValue::string(o.pre));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(vocab.text)));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
    w.set("tokenizer.ggml.merges", GGUFValue::str_array(std::move(merge_texts)));
    w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(BOS));
    w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(EOS));
    // A BOS before each prompt, as the documents a model is trained on start after a separator.
    w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(true));
    w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(false));
    return r;
}

} // namespace slm::tok
