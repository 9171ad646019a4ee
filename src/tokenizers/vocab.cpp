// tokenizers/vocab.cpp - slm::Vocab: loading and validating the vocabulary (llama_vocab::impl::load),
// special-token partitioning (tokenizer_st_partition), tokenize, token_to_piece and detokenize.
#include "slm/vocab.h"

#include "slm/error.h"
#include "slm/gguf.h"
#include "tokenizers/unicode.h"
#include "tokenizers/vocab_impl.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <limits>
#include <set>

namespace slm {

using tok::TokenData;

namespace {

constexpr uint32_t ATTR_SPECIAL = TOKEN_ATTR_UNKNOWN | TOKEN_ATTR_CONTROL;

const char* const KEY_MODEL = "tokenizer.ggml.model";
const char* const KEY_PRE = "tokenizer.ggml.pre";
const char* const KEY_TOKENS = "tokenizer.ggml.tokens";
const char* const KEY_SCORES = "tokenizer.ggml.scores";
const char* const KEY_TOKEN_TYPE = "tokenizer.ggml.token_type";
const char* const KEY_MERGES = "tokenizer.ggml.merges";
const char* const KEY_ADD_BOS = "tokenizer.ggml.add_bos_token";
const char* const KEY_ADD_EOS = "tokenizer.ggml.add_eos_token";
const char* const KEY_ADD_PREFIX = "tokenizer.ggml.add_space_prefix";
const char* const KEY_BOS = "tokenizer.ggml.bos_token_id";
const char* const KEY_EOS = "tokenizer.ggml.eos_token_id";

uint32_t attr_of_type(TokenType t) {
    switch (t) {
    case TokenType::Unknown: return TOKEN_ATTR_UNKNOWN;
    case TokenType::Unused: return TOKEN_ATTR_UNUSED;
    case TokenType::Normal: return TOKEN_ATTR_NORMAL;
    case TokenType::Control: return TOKEN_ATTR_CONTROL;
    case TokenType::UserDefined: return TOKEN_ATTR_USER_DEFINED;
    case TokenType::Byte: return TOKEN_ATTR_BYTE;
    case TokenType::Undefined: break;
    }
    return TOKEN_ATTR_UNDEFINED;
}

bool is_ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    if (s.find(from) == std::string::npos) return;
    std::string out;
    out.reserve(s.size() + s.size() / 2);
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
        out.append(s, pos, hit - pos);
        out += to;
    }
    out.append(s, pos, std::string::npos);
    s.swap(out);
}

constexpr std::string_view SPACE_ESCAPE = "\xE2\x96\x81";  // U+2581, SentencePiece's space

bool is_hex_digit(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// "<0xHH>" (or "<0xH>", which byte_token_value reads as llama.cpp does): the spellings whose value
// is the hex digits. Anything else typed as a byte token (<0x-1>, <0x100>, <0xZZ>) is refused
// rather than given a made-up byte (cf. llama.cpp #25969).
bool is_byte_token_text(const std::string& text) {
    const size_t n = text.size();
    if ((n != 5 && n != 6) || text.compare(0, 3, "<0x") != 0 || text[n - 1] != '>') return false;
    for (size_t i = 3; i + 1 < n; ++i)
        if (!is_hex_digit(text[i])) return false;
    return true;
}

// token_to_byte: strtol over the two characters after "<0x" (so "<0x4>" reads as 4).
uint8_t byte_token_value(const std::string& text) {
    int v = 0;
    for (size_t i = 3; i < std::min<size_t>(text.size(), 5); ++i) {
        const char c = text[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else break;
        v = v * 16 + d;
    }
    return static_cast<uint8_t>(v);
}

// llama_decode_text: byte-level BPE text back to bytes.
std::string decode_byte_level(const std::string& text) {
    std::string out;
    for (uint32_t cpt : tok::cpts_from_utf8(text)) {
        const int b = tok::cpt_to_byte(cpt);
        if (b >= 0) {
            out += static_cast<char>(b);
            continue;
        }
        out += "[UNK_BYTE_0x";
        for (unsigned char c : tok::cpt_to_utf8(cpt)) out += strprintf("%02x", c);
        out += text + "]";
    }
    return out;
}

bool contains_any(const std::string& s, std::initializer_list<const char*> subs) {
    for (const char* sub : subs)
        if (s.find(sub) != std::string::npos) return true;
    return false;
}

struct Fragment {
    int32_t token;  // TOKEN_NULL for raw text
    size_t offset;
    size_t length;
};

// tokenizer_st_partition: for each special token, longest first, cut every raw fragment at each
// of its occurrences; lstrip/rstrip tokens also swallow the ASCII white space beside them.
// Control and unknown tokens take part only with parse_special.
void partition_special(const Vocab::Impl& v, std::string_view text, std::vector<Fragment>& frags,
                       bool parse_special) {
    // Fragments are substrings of `text`, so a token whose first two bytes never occur next to
    // each other in `text` cannot match: one pass over the text rules out most special tokens.
    std::vector<uint64_t> pairs(65536 / 64, 0);
    std::array<uint64_t, 4> singles{};
    const auto* p = reinterpret_cast<const uint8_t*>(text.data());
    for (size_t i = 0; i < text.size(); ++i) {
        singles[p[i] >> 6] |= uint64_t(1) << (p[i] & 63);
        if (i + 1 < text.size()) {
            const unsigned pair = (unsigned(p[i]) << 8) | p[i + 1];
            pairs[pair >> 6] |= uint64_t(1) << (pair & 63);
        }
    }
    auto may_occur = [&](const std::string& s) {
        const auto* q = reinterpret_cast<const uint8_t*>(s.data());
        if (s.size() > text.size()) return false;
        if (s.size() == 1) return ((singles[q[0] >> 6] >> (q[0] & 63)) & 1) != 0;
        const unsigned pair = (unsigned(q[0]) << 8) | q[1];
        return ((pairs[pair >> 6] >> (pair & 63)) & 1) != 0;
    };

    std::vector<Fragment> next;
    for (int32_t id : v.special_tokens) {
        const TokenData& t = v.tokens[id];
        if (!parse_special && (t.attr & ATTR_SPECIAL)) continue;
        const std::string& s = t.text;
        if (!may_occur(s)) continue;
        next.clear();
        for (const Fragment& f : frags) {
            if (f.token != TOKEN_NULL) {
                next.push_back(f);
                continue;
            }
            size_t off = f.offset, len = f.length;
            while (true) {
                const size_t m = text.substr(0, off + len).find(s, off);
                if (m == std::string_view::npos) {
                    next.push_back({TOKEN_NULL, off, len});
                    break;
                }
                if (m > off) {
                    size_t left = m - off;
                    if (t.attr & TOKEN_ATTR_LSTRIP)
                        while (left > 0 && is_ascii_space(text[off + left - 1])) --left;
                    if (left > 0) next.push_back({TOKEN_NULL, off, left});
                }
                next.push_back({id, 0, 0});
                const size_t end = m + s.size();
                if (end >= off + len) break;
                size_t r_off = end, r_len = off + len - end;
                if (t.attr & TOKEN_ATTR_RSTRIP)
                    while (r_len > 0 && is_ascii_space(text[r_off])) ++r_off, --r_len;
                if (r_len == 0) break;
                off = r_off;
                len = r_len;
            }
        }
        frags.swap(next);
    }
}

} // namespace

// ---- loading --------------------------------------------------------------------------------

namespace {

[[noreturn]] void vocab_fail(const std::string& source, const std::string& what) {
    throw Error("vocab: " + source + ": " + what);
}

// The token-to-piece rule of llama_vocab::impl::token_to_piece with special = true.
std::string compute_piece(const Vocab::Impl& v, int32_t id) {
    const TokenData& t = v.tokens[id];
    if (t.attr & (ATTR_SPECIAL | TOKEN_ATTR_USER_DEFINED)) return t.text;
    if (t.attr & TOKEN_ATTR_NORMAL) {
        if (v.type == VocabType::SPM || v.escape_whitespaces) {
            std::string s = t.text;
            replace_all(s, SPACE_ESCAPE, " ");
            return s;
        }
        return decode_byte_level(t.text);
    }
    if (t.attr & TOKEN_ATTR_BYTE) return std::string(1, static_cast<char>(byte_token_value(t.text)));
    return {};
}

std::shared_ptr<const Vocab::Impl> build(VocabData d) {
    auto v = std::make_shared<Vocab::Impl>();
    const std::string& src = d.source;
    v->source = d.source;
    v->model = d.model;
    v->pre = d.pre;
    std::string pre = d.pre;

    // The model type and its default special tokens.
    if (d.model == "llama") {
        v->type = VocabType::SPM;
        v->bos = 1;
        v->eos = 2;
        v->unk = 0;
    } else if (d.model == "gpt2" || d.model == "gemma4") {
        v->type = VocabType::BPE;
        if (d.model == "gpt2") {
            v->bos = 11;
            v->eos = 11;
        } else {
            pre = "gemma4";
        }
        for (size_t i = 0; i < d.merges.size(); ++i) {
            const std::string& m = d.merges[i];
            const size_t sp = m.find(' ', 1);
            if (sp == std::string::npos || sp + 1 >= m.size())
                vocab_fail(src, strprintf("%s[%zu] = '%s' is not two tokens separated by a space", KEY_MERGES, i,
                                          m.c_str()));
            if (!tok::is_valid_utf8(m))
                vocab_fail(src, strprintf("%s[%zu] is not valid UTF-8", KEY_MERGES, i));
            if (d.merges.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
                vocab_fail(src, strprintf("%s has too many entries (%zu)", KEY_MERGES, d.merges.size()));
            v->bpe_ranks.emplace(m, static_cast<int32_t>(i));
        }
    } else if (d.model == "no_vocab" || d.model == "none") {
        vocab_fail(src, strprintf("%s = '%s': the file has no vocabulary", KEY_MODEL, d.model.c_str()));
    } else if (d.model == "bert" || d.model == "t5" || d.model == "rwkv" || d.model == "plamo2" ||
               d.model == "hybriddna" || d.model == "whitespace") {
        vocab_fail(src, strprintf("%s = '%s' is not supported (only 'llama', 'gpt2' and 'gemma4')", KEY_MODEL,
                                  d.model.c_str()));
    } else {
        vocab_fail(src, strprintf("unknown %s = '%s'", KEY_MODEL, d.model.c_str()));
    }

    // Tokenizer flags: the model type's defaults, then what tokenizer.ggml.pre implies.
    if (v->type == VocabType::BPE) {
        v->add_space_prefix = false;
        v->escape_whitespaces = false;
        v->clean_spaces = true;
        const std::optional<tok::PreConfig> pc = tok::pre_config(pre);
        if (!pc) vocab_fail(src, strprintf("unknown pre-tokenizer %s = '%s'", KEY_PRE, pre.c_str()));
        v->pre_type = pc->type;
        v->ignore_merges = pc->ignore_merges;
        v->clean_spaces = pc->clean_spaces;
        if (pc->add_bos) v->add_bos = true;
        if (pc->escape_whitespaces) v->escape_whitespaces = true;
        if (pc->no_bos_token) v->bos = TOKEN_NULL;
    } else {
        v->add_space_prefix = true;
        v->clean_spaces = false;
        v->add_bos = true;
        v->add_eos = false;
    }
    if (d.add_space_prefix) v->add_space_prefix = *d.add_space_prefix;

    // Tokens.
    const size_t n = d.tokens.size();
    if (n == 0) vocab_fail(src, strprintf("%s is empty", KEY_TOKENS));
    if (n > static_cast<size_t>(std::numeric_limits<int32_t>::max()))
        vocab_fail(src, strprintf("%s has too many entries (%zu)", KEY_TOKENS, n));
    if (!d.scores.empty() && d.scores.size() != n)
        vocab_fail(src, strprintf("%s has %zu entries but %s has %zu", KEY_SCORES, d.scores.size(), KEY_TOKENS, n));
    if (!d.token_types.empty() && d.token_types.size() != n)
        vocab_fail(src, strprintf("%s has %zu entries but %s has %zu", KEY_TOKEN_TYPE, d.token_types.size(),
                                  KEY_TOKENS, n));
    v->tokens.resize(n);
    for (size_t i = 0; i < n; ++i) {
        TokenData& t = v->tokens[i];
        t.text = std::move(d.tokens[i]);
        if (t.text.empty()) t.text = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp renames them
        // Byte-level BPE tokens are printable code points by construction; anything else is damage.
        if (v->type == VocabType::BPE && !tok::is_valid_utf8(t.text))
            vocab_fail(src, strprintf("%s[%zu] is not valid UTF-8", KEY_TOKENS, i));
        const auto [it, inserted] = v->token_to_id.emplace(t.text, static_cast<int32_t>(i));
        if (!inserted)
            vocab_fail(src, strprintf("%s: duplicate token '%s' at ids %d and %zu", KEY_TOKENS, t.text.c_str(),
                                      it->second, i));
        t.score = d.scores.empty() ? 0.0f : d.scores[i];
        t.type = TokenType::Normal;
        if (!d.token_types.empty()) {
            const int32_t ty = d.token_types[i];
            t.type = ty >= 0 && ty <= 6 ? static_cast<TokenType>(ty) : TokenType::Undefined;
        }
        t.attr = attr_of_type(t.type);
        if ((t.attr & TOKEN_ATTR_BYTE) && !is_byte_token_text(t.text))
            vocab_fail(src, strprintf("%s[%zu] = '%s' is a byte token but not of the form <0xHH>", KEY_TOKENS, i,
                                      t.text.c_str()));
        v->max_token_len = std::max(v->max_token_len, t.text.size());
    }

    if (v->type == VocabType::BPE) {
        try {
            v->pre_tokenizer = std::make_unique<tok::PreTokenizer>(v->pre_type);
        } catch (const Error& e) {
            vocab_fail(src, e.what());
        }
    }

    // The newline token, found before the special ids are read (so the fallback is the default pad).
    if (v->type == VocabType::SPM) {
        v->nl = v->spm_byte_token('\n');
        if (v->nl == TOKEN_NULL) v->nl = v->pad;
    } else {
        std::vector<int32_t> ids;
        v->tokenize_bpe("\n", ids);
        v->nl = ids.empty() ? v->pad : ids[0];
    }

    // Special ids from the metadata. An id past the vocab is an error for the tokens tokenization
    // and generation rely on; for the others llama.cpp keeps the default, and so do we.
    struct SpecialKey {
        const char* key;
        const std::optional<int64_t>& value;
        int32_t& id;
        bool strict;
    };
    const SpecialKey keys[] = {
        {KEY_BOS, d.bos, v->bos, true},
        {KEY_EOS, d.eos, v->eos, true},
        {"tokenizer.ggml.eot_token_id", d.eot, v->eot, true},
        {"tokenizer.ggml.eom_token_id", d.eom, v->eom, true},
        {"tokenizer.ggml.unknown_token_id", d.unk, v->unk, true},
        {"tokenizer.ggml.seperator_token_id", d.sep, v->sep, false},
        {"tokenizer.ggml.padding_token_id", d.pad, v->pad, false},
        {"tokenizer.ggml.mask_token_id", d.mask, v->mask, false},
        {"tokenizer.ggml.fim_pre_token_id", d.fim_pre, v->fim_pre, false},
        {"tokenizer.ggml.fim_suf_token_id", d.fim_suf, v->fim_suf, false},
        {"tokenizer.ggml.fim_mid_token_id", d.fim_mid, v->fim_mid, false},
        {"tokenizer.ggml.fim_pad_token_id", d.fim_pad, v->fim_pad, false},
        {"tokenizer.ggml.fim_rep_token_id", d.fim_rep, v->fim_rep, false},
        {"tokenizer.ggml.fim_sep_token_id", d.fim_sep, v->fim_sep, false},
    };
    for (const SpecialKey& k : keys) {
        if (k.id >= 0 && static_cast<size_t>(k.id) >= n) k.id = TOKEN_NULL;
        if (!k.value) continue;
        const int64_t x = *k.value;
        if (x < 0 || x == std::numeric_limits<uint32_t>::max()) continue;  // "none"
        if (static_cast<uint64_t>(x) >= n) {
            if (k.strict)
                vocab_fail(src, strprintf("%s = %" PRId64 " is out of range (%zu tokens)", k.key, x, n));
            continue;
        }
        k.id = static_cast<int32_t>(x);
    }

    if (d.add_bos) v->add_bos = *d.add_bos;
    if (d.add_eos) v->add_eos = *d.add_eos;
    if (v->pre_type == tok::PreType::Gemma4) v->add_bos = true;  // llama.cpp overrides it for Gemma 4
    if (v->add_bos && v->bos == TOKEN_NULL)
        vocab_fail(src, strprintf("%s is true, but %s is not set", KEY_ADD_BOS, KEY_BOS));
    if (v->add_eos && v->eos == TOKEN_NULL)
        vocab_fail(src, strprintf("%s is true, but %s is not set", KEY_ADD_EOS, KEY_EOS));

    // Special tokens recognised by their text, in token_to_id's iteration order as llama.cpp does
    // (it decides which of several candidates becomes eot); each is made a control token.
    auto mark_control = [&](int32_t id) { v->tokens[id].attr |= TOKEN_ATTR_CONTROL; };
    struct TextRule {
        int32_t& id;
        std::vector<std::string_view> texts;
    };
    const TextRule rules[] = {
        {v->eot, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
                  "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}},
        {v->eom, {"<|eom_id|>"}},
        {v->fim_pre, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                      "<|code_prefix|>", "<|prefix|>"}},
        {v->fim_suf, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                      "<|code_suffix|>", "<|suffix|>"}},
        {v->fim_mid, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                      "<|code_middle|>", "<|middle|>"}},
        {v->fim_pad, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"}},
        {v->fim_rep, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"}},
        {v->fim_sep, {"<|file_sep|>"}},
    };
    auto one_of = [](const std::string& s, const std::vector<std::string_view>& texts) {
        return std::find(texts.begin(), texts.end(), s) != texts.end();
    };
    for (const auto& [text, id] : v->token_to_id) {
        for (const TextRule& r : rules) {
            if (r.id == TOKEN_NULL && one_of(text, r.texts)) {
                r.id = id;
                mark_control(id);
            }
        }
    }

    // Control tokens named "unused" are unused.
    for (const auto& [text, id] : v->token_to_id) {
        uint32_t& attr = v->tokens[id].attr;
        if ((attr & TOKEN_ATTR_CONTROL) && !(attr & TOKEN_ATTR_UNUSED) && text.find("unused") != std::string::npos)
            attr |= TOKEN_ATTR_UNUSED;
    }

    // The end-of-generation set.
    std::set<int32_t> eog;
    for (int32_t id : {v->fim_pad, v->fim_rep, v->fim_sep})
        if (id != TOKEN_NULL) eog.insert(id);
    for (const auto& [text, id] : v->token_to_id) {
        if (one_of(text, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
                          "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
                          "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
                          "<｜end▁of▁sentence｜>", "[e~["})) {
            eog.insert(id);
            mark_control(id);
        }
    }
    // gpt-oss: these always print.
    for (const auto& [text, id] : v->token_to_id)
        if (one_of(text, {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}))
            v->tokens[id].attr = TOKEN_ATTR_USER_DEFINED;
    for (int32_t id : {v->eos, v->eot, v->eom})
        if (id != TOKEN_NULL) eog.insert(id);
    {
        // o200k_harmony and solar-open: "<|end|>" ends a message, not the generation.
        bool has_return = false, has_call = false, has_flush = false;
        int32_t end_id = TOKEN_NULL;
        for (int32_t id : eog) {
            const std::string& t = v->tokens[id].text;
            if (t == "<|return|>") has_return = true;
            else if (t == "<|call|>" || t == "<|calls|>") has_call = true;
            else if (t == "<|flush|>") has_flush = true;
            else if (t == "<|end|>") end_id = id;
        }
        if (end_id != TOKEN_NULL && ((has_return && has_call) || (has_call && has_flush))) {
            eog.erase(end_id);
            v->tokens[end_id].attr = TOKEN_ATTR_USER_DEFINED;
        }
    }
    {
        // Gemma 4 and PaddleOCR: "</s>" is not an end of generation there.
        bool has_tool_response = false;
        int32_t s_id = TOKEN_NULL;
        for (int32_t id : eog) {
            const std::string& t = v->tokens[id].text;
            if (t == "<|tool_response>") has_tool_response = true;
            else if (t == "</s>") s_id = id;
        }
        if (has_tool_response && s_id != TOKEN_NULL) {
            eog.erase(s_id);
            v->tokens[s_id].attr = TOKEN_ATTR_NORMAL;
        }
    }
    v->eog.assign(eog.begin(), eog.end());

    // Special tokens for partitioning, longest first. std::sort with llama.cpp's comparator on the
    // same input order keeps its (unspecified) order among tokens of equal length.
    for (size_t id = 0; id < n; ++id)
        if (v->tokens[id].attr & (TOKEN_ATTR_CONTROL | TOKEN_ATTR_USER_DEFINED | TOKEN_ATTR_UNKNOWN))
            v->special_tokens.push_back(static_cast<int32_t>(id));
    std::sort(v->special_tokens.begin(), v->special_tokens.end(), [&](int32_t a, int32_t b) {
        return v->tokens[a].text.size() > v->tokens[b].text.size();
    });

    v->pieces.resize(n);
    for (size_t id = 0; id < n; ++id) v->pieces[id] = compute_piece(*v, static_cast<int32_t>(id));

    // Strip flags llama.cpp sets by model name (after the piece cache, as there).
    std::string name = d.name;
    for (char& c : name)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    auto set_attr = [&](const char* text, uint32_t attr, bool on) {
        const int32_t id = v->find(text);
        if (id == TOKEN_NULL) return;
        if (on) v->tokens[id].attr |= attr;
        else v->tokens[id].attr &= ~attr;
    };
    if (contains_any(d.pre, {"jina-v2-de", "jina-v2-es", "jina-v2-code"}) ||
        contains_any(d.arch, {"nomic-bert-moe", "jina-bert-v3"})) {
        set_attr("<mask>", TOKEN_ATTR_LSTRIP, true);
    } else if (contains_any(name, {"phi-3", "phi3"})) {
        for (int32_t id : v->special_tokens) v->tokens[id].attr |= TOKEN_ATTR_RSTRIP;
        set_attr("</s>", TOKEN_ATTR_RSTRIP, true);
        for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) set_attr(t, TOKEN_ATTR_RSTRIP, false);
    } else if (contains_any(name, {"modern-bert"})) {
        set_attr("[MASK]", TOKEN_ATTR_LSTRIP, true);
    }
    return v;
}

std::optional<int64_t> opt_int(const GGUFFile& f, const std::string& key) {
    const GGUFValue* val = f.find(key);
    if (!val) return std::nullopt;
    return val->as_int("vocab: " + f.path() + ": " + key);
}

std::optional<bool> opt_bool(const GGUFFile& f, const std::string& key) {
    if (!f.has(key)) return std::nullopt;
    return f.get_bool(key, false);
}

} // namespace

VocabData tok::read_vocab_data(const GGUFFile& f) {
    VocabData d;
    d.source = f.path();
    if (!f.has(KEY_MODEL)) vocab_fail(d.source, strprintf("no %s: the file has no tokenizer", KEY_MODEL));
    d.model = f.get_str(KEY_MODEL);
    d.pre = f.get_str(KEY_PRE, "");
    if (!f.has(KEY_TOKENS)) vocab_fail(d.source, strprintf("no %s: the file has no vocabulary", KEY_TOKENS));
    d.tokens = f.get_str_array(KEY_TOKENS);
    if (const GGUFValue* s = f.find(KEY_SCORES)) {
        if (s->type != GGUFType::ARRAY || (s->elem_type != GGUFType::F32 && s->elem_type != GGUFType::I32))
            vocab_fail(d.source, strprintf("%s must be an array of FLOAT32 or INT32", KEY_SCORES));
        d.scores.resize(s->n);
        for (uint64_t i = 0; i < s->n; ++i) d.scores[i] = static_cast<float>(s->elem_float(i));
    }
    if (f.has(KEY_TOKEN_TYPE)) d.token_types = f.get_i32_array(KEY_TOKEN_TYPE);
    if (d.model == "gpt2" || d.model == "gemma4") {
        if (f.has(KEY_MERGES)) {
            d.merges = f.get_str_array(KEY_MERGES);
        } else if (!(d.model == "gpt2" && d.pre == "kimi-k2")) {  // Kimi-K2 splits without merges
            vocab_fail(d.source, strprintf("no %s in a BPE vocabulary", KEY_MERGES));
        }
    }
    d.bos = opt_int(f, KEY_BOS);
    d.eos = opt_int(f, KEY_EOS);
    d.eot = opt_int(f, "tokenizer.ggml.eot_token_id");
    d.eom = opt_int(f, "tokenizer.ggml.eom_token_id");
    d.unk = opt_int(f, "tokenizer.ggml.unknown_token_id");
    d.sep = opt_int(f, "tokenizer.ggml.seperator_token_id");
    d.pad = opt_int(f, "tokenizer.ggml.padding_token_id");
    d.mask = opt_int(f, "tokenizer.ggml.mask_token_id");
    d.fim_pre = opt_int(f, "tokenizer.ggml.fim_pre_token_id");
    d.fim_suf = opt_int(f, "tokenizer.ggml.fim_suf_token_id");
    d.fim_mid = opt_int(f, "tokenizer.ggml.fim_mid_token_id");
    d.fim_pad = opt_int(f, "tokenizer.ggml.fim_pad_token_id");
    d.fim_rep = opt_int(f, "tokenizer.ggml.fim_rep_token_id");
    d.fim_sep = opt_int(f, "tokenizer.ggml.fim_sep_token_id");
    // The deprecated names, read after the new ones as llama.cpp does.
    if (auto x = opt_int(f, "tokenizer.ggml.prefix_token_id")) d.fim_pre = x;
    if (auto x = opt_int(f, "tokenizer.ggml.suffix_token_id")) d.fim_suf = x;
    if (auto x = opt_int(f, "tokenizer.ggml.middle_token_id")) d.fim_mid = x;
    d.add_bos = opt_bool(f, KEY_ADD_BOS);
    d.add_eos = opt_bool(f, KEY_ADD_EOS);
    d.add_space_prefix = opt_bool(f, KEY_ADD_PREFIX);
    d.name = f.get_str("general.name", "");
    d.arch = f.get_str("general.architecture", "");
    return d;
}

Vocab Vocab::from_gguf(const GGUFFile& f) { return Vocab(tok::read_vocab_data(f)); }

Vocab::Vocab(VocabData data) : impl_(build(std::move(data))) {}
Vocab::Vocab(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
Vocab::~Vocab() = default;
Vocab::Vocab(const Vocab&) = default;
Vocab& Vocab::operator=(const Vocab&) = default;
Vocab::Vocab(Vocab&&) noexcept = default;
Vocab& Vocab::operator=(Vocab&&) noexcept = default;

// ---- tokenize / detokenize ------------------------------------------------------------------

std::vector<int32_t> Vocab::tokenize(std::string_view text, bool add_special, bool parse_special) const {
    const Impl& v = *impl_;
    std::vector<Fragment> frags;
    if (!text.empty()) {
        frags.push_back({TOKEN_NULL, 0, text.size()});
        partition_special(v, text, frags, parse_special);
    }

    std::vector<int32_t> out;
    std::string buf;
    if (add_special && v.add_bos) out.push_back(v.bos);
    if (v.type == VocabType::SPM) {
        // SentencePiece's dummy prefix: a space before the text and before text that follows a
        // special token.
        bool prev_special = true;
        for (const Fragment& f : frags) {
            if (f.token != TOKEN_NULL) {
                out.push_back(f.token);
                prev_special = true;
                continue;
            }
            buf.clear();
            if (v.add_space_prefix && prev_special) buf = ' ';
            buf.append(text.substr(f.offset, f.length));
            replace_all(buf, " ", SPACE_ESCAPE);
            v.tokenize_spm(buf, out);
            prev_special = false;
        }
    } else {
        for (const Fragment& f : frags) {
            if (f.token != TOKEN_NULL) {
                out.push_back(f.token);
                continue;
            }
            buf.assign(text.substr(f.offset, f.length));
            if (v.escape_whitespaces) replace_all(buf, " ", SPACE_ESCAPE);
            v.tokenize_bpe(buf, out);
        }
    }
    if (add_special && v.add_eos) out.push_back(v.eos);
    return out;
}

std::string Vocab::token_to_piece(int32_t id, bool special) const {
    const uint32_t a = attr(id);
    if (!special && (a & ATTR_SPECIAL)) return {};
    return impl_->pieces[id];
}

std::string Vocab::detokenize(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const {
    const Impl& v = *impl_;
    size_t begin = 0, end = ids.size();
    bool remove_space = v.add_space_prefix;  // the dummy prefix of the first piece
    if (remove_special && v.add_bos && end > 0 && ids[0] == v.bos) {
        remove_space = false;
        begin = 1;
    }
    if (remove_special && v.add_eos && end > begin && ids[end - 1] == v.eos) --end;

    std::string text;
    for (size_t i = begin; i < end; ++i) {
        const std::string piece = token_to_piece(ids[i], unparse_special);
        const size_t skip = remove_space && !piece.empty() && piece[0] == ' ' ? 1 : 0;
        text.append(piece, skip, std::string::npos);
        remove_space = false;
    }
    if (!v.clean_spaces) return text;

    // clean_up_tokenization_spaces, pass for pass as llama.cpp's detokenize (in place, reading
    // characters it may already have rewritten).
    size_t total = text.size();
    {  // " ?", " !", " .", " ," lose the space
        const size_t n1 = total;
        total = n1 ? 1 : 0;
        for (size_t i = 1; i < n1; ++i) {
            const char x = text[i];
            if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
                --total;
            text[total++] = x;
        }
    }
    {  // " ' " becomes "'"
        const size_t n2 = total;
        total = n2 ? 1 : 0;
        for (size_t i = 1; i < n2; ++i) {
            const char x = text[i];
            if (x == '\'' && i + 1 < n2 && text[i - 1] == ' ' && text[i + 1] == ' ') {
                --total;
                text[++i] = '\0';
            }
            text[total++] = x;
        }
    }
    {  // " 's", " 'm", " 're", " 've" lose the space
        const size_t n3 = total;
        total = n3 ? 1 : 0;
        for (size_t i = 1; i < n3; ++i) {
            const char x = text[i];
            if (text[i - 1] == ' ' && x == '\'' && i + 1 < n3) {
                const char x1 = text[i + 1];
                if (x1 == 's' || x1 == 'm') {
                    --total;
                } else if (x1 != 't' && x1 != 'd' && i + 2 < n3) {
                    const char x2 = text[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
                }
            }
            text[total++] = x;
        }
    }
    text.resize(total);
    return text;
}

// ---- queries --------------------------------------------------------------------------------

namespace {

const TokenData& token_at(const Vocab::Impl& v, int32_t id) {
    if (id < 0 || static_cast<size_t>(id) >= v.tokens.size())
        throw Error(strprintf("vocab: %s: token id %d out of range (%zu tokens)", v.source.c_str(), id,
                              v.tokens.size()));
    return v.tokens[id];
}

} // namespace

int32_t Vocab::n_tokens() const { return static_cast<int32_t>(impl_->tokens.size()); }
VocabType Vocab::vocab_type() const { return impl_->type; }
const std::string& Vocab::model() const { return impl_->model; }
const std::string& Vocab::pre() const { return impl_->pre; }
int32_t Vocab::bos() const { return impl_->bos; }
int32_t Vocab::eos() const { return impl_->eos; }
int32_t Vocab::eot() const { return impl_->eot; }
int32_t Vocab::eom() const { return impl_->eom; }
int32_t Vocab::unk() const { return impl_->unk; }
int32_t Vocab::sep() const { return impl_->sep; }
int32_t Vocab::pad() const { return impl_->pad; }
int32_t Vocab::nl() const { return impl_->nl; }
bool Vocab::add_bos() const { return impl_->add_bos; }
bool Vocab::add_eos() const { return impl_->add_eos; }
bool Vocab::add_space_prefix() const { return impl_->add_space_prefix; }

const std::string& Vocab::token_text(int32_t id) const { return token_at(*impl_, id).text; }
float Vocab::score(int32_t id) const { return token_at(*impl_, id).score; }
TokenType Vocab::type(int32_t id) const { return token_at(*impl_, id).type; }
uint32_t Vocab::attr(int32_t id) const { return token_at(*impl_, id).attr; }
bool Vocab::is_normal(int32_t id) const { return attr(id) & TOKEN_ATTR_NORMAL; }
bool Vocab::is_control(int32_t id) const { return attr(id) & TOKEN_ATTR_CONTROL; }
bool Vocab::is_byte(int32_t id) const { return attr(id) & TOKEN_ATTR_BYTE; }
bool Vocab::is_user_defined(int32_t id) const { return attr(id) & TOKEN_ATTR_USER_DEFINED; }
bool Vocab::is_unused(int32_t id) const { return attr(id) & TOKEN_ATTR_UNUSED; }

bool Vocab::is_eog(int32_t id) const {
    return id != TOKEN_NULL && std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}

const std::vector<int32_t>& Vocab::eog_ids() const { return impl_->eog; }

int32_t Vocab::text_to_token(std::string_view text) const { return impl_->find(text); }

} // namespace slm
