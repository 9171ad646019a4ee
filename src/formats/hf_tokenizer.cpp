// formats/hf_tokenizer.cpp - see hf_tokenizer.h.
//
// Reading follows llama.cpp's converter (convert_hf_to_gguf.py get_vocab_base and
// _set_vocab_llama_hf, gguf-py SpecialVocab), with these differences, each for a reason given
// where it is done:
//   - tokenizer.ggml.pre comes from the pre-tokenizer's regexes, not from hashing what HF's
//     tokenizer makes of a test string (we have no HF tokenizer to run);
//   - SentencePiece-as-BPE (byte_fallback) gets scores derived from the merge ranks rather than
//     llama.cpp's constant -1000, so that SPM merging reproduces the BPE merges;
//   - sparse ids without a config.json vocab_size are padded instead of refused.
//
// Writing produces the forms HF itself uses: byte-level BPE with the pre type's Split regexes for
// "gpt2", and for "llama" (SPM) a BPE with byte_fallback whose merges are derived from the scores,
// which is how HF's own converter represents SentencePiece BPE models and tokenizes as
// llama.cpp's SPM merging does. What those standard fields cannot carry (exact SPM scores, token
// types HF has no word for, ids such as UINT32_MAX, an ambiguous pre name) goes in one extra
// object, tokenizer_config.json "slm_gguf", holding only the values that differ from what the
// standard fields give; HF ignores unknown tokenizer_config keys.
#include "formats/hf_tokenizer.h"

#include "formats/json_util.h"
#include "slm/error.h"
#include "slm/limits.h"
#include "tokenizers/pre_tokenizer.h"
#include "tokenizers/unicode.h"
#include "tokenizers/vocab_impl.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

namespace slm::hf {

namespace {

using json = nlohmann::json;
using json_util::JsonFile;

constexpr const char* OP = "hf tokenizer";
constexpr const char* EXT_KEY = "slm_gguf";
constexpr float ADDED_SCORE = -1000.0f;  // llama.cpp's converter's score for added tokens
constexpr float PAD_SCORE = -10000.0f;   // and for the padding of SentencePiece vocabularies
constexpr int64_t MAX_TOKEN_ID = (int64_t(1) << 24) - 1;  // 16.7M: far above any real vocabulary
constexpr int64_t MAX_HOLES = int64_t(1) << 20;           // padding we are willing to allocate
const std::string SPACE_ESCAPE = "\xE2\x96\x81";          // U+2581, SentencePiece's space

int32_t ttype(TokenType t) { return static_cast<int32_t>(t); }

std::string pad_text(int64_t id) { return "[PAD" + std::to_string(id) + "]"; }

bool starts_with(const std::string& s, std::string_view p) { return s.size() >= p.size() && s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, std::string_view p) {
    return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    if (from.empty()) return;
    for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

// does_token_look_special: added tokens llama.cpp makes CONTROL although HF calls them not special.
bool looks_special(const std::string& t) {
    if (t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]") return true;
    if (starts_with(t, "<|") && ends_with(t, "|>")) return true;
    if (starts_with(t, "<\xEF\xBD\x9C") && ends_with(t, "\xEF\xBD\x9C>")) return true;  // <｜ ... ｜>
    return starts_with(t, "<unused") && ends_with(t, ">");
}

// "<0xHH>" exactly, as LlamaHfVocab's byte-token regex.
bool is_byte_token(const std::string& t) {
    if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
    return std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4]));
}

// ---- the special-token kinds -----------------------------------------------------------------

struct SpecialKind {
    const char* name;                          // as in tokenizer_config "<name>_token"
    std::optional<int64_t> VocabData::*field;  // nullptr: read but not kept (cls)
};
// SpecialVocab's default kinds in its order, then the eot/eom it may add.
const SpecialKind SPECIAL_KINDS[] = {
    {"bos", &VocabData::bos}, {"eos", &VocabData::eos}, {"unk", &VocabData::unk}, {"sep", &VocabData::sep},
    {"pad", &VocabData::pad}, {"cls", nullptr},          {"mask", &VocabData::mask}, {"eot", &VocabData::eot},
    {"eom", &VocabData::eom},
};
// Ids only the extension carries.
const SpecialKind EXTRA_KINDS[] = {
    {"fim_pre", &VocabData::fim_pre}, {"fim_suf", &VocabData::fim_suf}, {"fim_mid", &VocabData::fim_mid},
    {"fim_pad", &VocabData::fim_pad}, {"fim_rep", &VocabData::fim_rep}, {"fim_sep", &VocabData::fim_sep},
};

// ---- pre-tokenizer regexes <-> tokenizer.ggml.pre ---------------------------------------------

const std::string CONTRACTIONS_HF = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
const std::string CONTRACTIONS_LLAMA = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const std::string PUNCT_CONTIGUOUS = R"re([\p{P}\$\+<=>\^~\|`]+)re";
const std::string PUNCT_ISOLATED = R"re([\p{P}\$\+<=>\^~\|`])re";

const std::string& re_gpt2() {
    static const std::string re = tok::PreTokenizer::regex_list(tok::PreType::Gpt2).at(0);
    return re;
}

// What an HF pre-tokenizer does, as a list of Isolated split regexes (ByteLevel's own regex
// included as GPT-2's) plus whether bytes are mapped through bytes_to_unicode.
struct PreSpec {
    std::vector<std::string> regexes;
    bool byte_level = false;
    bool metaspace = false;
};

void collect_pre(const JsonFile& f, const json& node, const std::string& field, PreSpec& out, int depth) {
    if (node.is_null()) return;
    if (depth > 8) f.fail(field, "pre-tokenizers nested too deeply");
    if (!node.is_object()) f.fail(field, std::string("expected an object, got ") + json_util::type_name(node));
    const std::string type = json_util::json_string(f, node, field, "type");
    if (type == "Sequence") {
        const json* list = json_util::find(node, "pretokenizers");
        if (!list || !list->is_array()) f.fail(field + ".pretokenizers", "expected an array");
        for (size_t i = 0; i < list->size(); ++i)
            collect_pre(f, (*list)[i], field + ".pretokenizers[" + std::to_string(i) + "]", out, depth + 1);
    } else if (type == "ByteLevel") {
        out.byte_level = true;
        if (json_util::json_opt_bool(f, node, field, "use_regex").value_or(true)) out.regexes.push_back(re_gpt2());
        if (json_util::json_opt_bool(f, node, field, "add_prefix_space").value_or(false))
            f.fail(field + ".add_prefix_space", "true is not supported (llama.cpp adds no prefix space)");
    } else if (type == "Split") {
        const json* pat = json_util::find(node, "pattern");
        if (!pat || !pat->is_object()) f.fail(field + ".pattern", "expected an object {\"Regex\": ...}");
        std::string re;
        if (const json* r = json_util::find(*pat, "Regex")) {
            re = json_util::as_string(f, *r, field + ".pattern.Regex");
        } else if (const json* s = json_util::find(*pat, "String")) {
            // A literal: escape it into a regex.
            for (char c : json_util::as_string(f, *s, field + ".pattern.String")) {
                if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) re += '\\';
                re += c;
            }
        } else {
            f.fail(field + ".pattern", "expected \"Regex\" or \"String\"");
        }
        const std::string behavior = json_util::json_opt_string(f, node, field, "behavior").value_or("Isolated");
        if (behavior != "Isolated")
            f.fail(field + ".behavior", "'" + behavior + "' is not supported (llama.cpp isolates every match)");
        if (json_util::json_opt_bool(f, node, field, "invert").value_or(false))
            f.fail(field + ".invert", "true is not supported");
        out.regexes.push_back(re);
    } else if (type == "Digits") {
        out.regexes.push_back(json_util::json_opt_bool(f, node, field, "individual_digits").value_or(false) ? "\\p{N}"
                                                                                                           : "\\p{N}+");
    } else if (type == "Punctuation") {
        const std::string behavior = json_util::json_opt_string(f, node, field, "behavior").value_or("Isolated");
        if (behavior == "Contiguous") out.regexes.push_back(PUNCT_CONTIGUOUS);
        else if (behavior == "Isolated") out.regexes.push_back(PUNCT_ISOLATED);
        else f.fail(field + ".behavior", "'" + behavior + "' is not supported");
    } else if (type == "Metaspace") {
        out.metaspace = true;
    } else {
        f.fail(field + ".type", "pre-tokenizer '" + type + "' is not supported");
    }
}

// The spellings HF files use where llama.cpp rewrote a regex for its engine: case-insensitive
// contractions spelled out, and cased-letter classes as lookahead forms (gpt-4o, tekken).
std::vector<std::string> llama_spelling(std::vector<std::string> res, bool cased_rewrite) {
    for (std::string& r : res) {
        replace_all(r, CONTRACTIONS_HF, CONTRACTIONS_LLAMA);
        if (cased_rewrite) {
            replace_all(r, R"re([\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}])re", R"re(((?=[\p{L}])([^a-z])))re");
            replace_all(r, R"re([\p{Ll}\p{Lm}\p{Lo}\p{M}])re", R"re(((?=[\p{L}])([^A-Z])))re");
        }
    }
    return res;
}

// Names llama.cpp's converter writes, tried first when several names share one regex list.
const char* const PREFERRED_PRE[] = {"gpt-2", "llama-bpe", "qwen2", "starcoder", "smollm", "deepseek-coder",
                                     "deepseek-llm", "deepseek-v3", "falcon", "dbrx", "gpt-4o", "tekken",
                                     "command-r", "olmo", "mpt", "stablelm2", "refact", "bloom"};

// Real HF spellings llama.cpp reduced (falcon's Digits split adds nothing after GPT-2's regex).
struct PreAlias {
    std::vector<std::string> regexes;
    const char* name;
};

// Whether a pre type maps bytes through bytes_to_unicode (asked of each type once).
bool byte_encodes(tok::PreType type) {
    static const std::map<tok::PreType, bool> table = [] {
        std::map<tok::PreType, bool> m;
        for (const std::string& name : tok::known_pre_names()) {
            const tok::PreType t = tok::pre_config(name)->type;
            if (m.count(t)) continue;
            try {
                m[t] = tok::PreTokenizer(t).byte_encode();
            } catch (const Error&) {
                m[t] = false;
            }
        }
        return m;
    }();
    const auto it = table.find(type);
    return it != table.end() && it->second;
}

std::vector<std::string> ordered_pre_names() {
    std::vector<std::string> names;
    for (const char* n : PREFERRED_PRE) names.emplace_back(n);
    for (const std::string& n : tok::known_pre_names())
        if (std::find(names.begin(), names.end(), n) == names.end() && n != "default") names.push_back(n);
    names.emplace_back("default");
    return names;
}

// The pre names whose regexes equal `spec`'s, best first; ignore_merges / clean_spaces (when
// given) narrow them down, as those are the other things a pre name sets.
std::vector<std::string> match_pre(const PreSpec& spec, std::optional<bool> ignore_merges,
                                   std::optional<bool> clean_spaces) {
    const std::vector<std::string> plain = llama_spelling(spec.regexes, false);
    const std::vector<std::string> cased = llama_spelling(spec.regexes, true);
    std::vector<std::string> found;
    for (const std::string& name : ordered_pre_names()) {
        const auto pc = tok::pre_config(name);
        if (!pc) continue;
        if (!byte_encodes(pc->type)) continue;
        const std::vector<std::string> list = tok::PreTokenizer::regex_list(pc->type);
        if (list == plain || list == cased) found.push_back(name);
    }
    if (found.empty()) {
        const std::vector<PreAlias> aliases = {
            {{PUNCT_CONTIGUOUS, re_gpt2(), "\\p{N}+", "[0-9][0-9][0-9]"}, "falcon"},
        };
        for (const PreAlias& a : aliases)
            if (a.regexes == plain) found.emplace_back(a.name);
    }
    auto narrow = [&](auto pred) {
        std::vector<std::string> keep;
        for (const std::string& n : found)
            if (pred(*tok::pre_config(n))) keep.push_back(n);
        if (!keep.empty()) found.swap(keep);
    };
    if (ignore_merges) narrow([&](const tok::PreConfig& c) { return c.ignore_merges == *ignore_merges; });
    if (clean_spaces) narrow([&](const tok::PreConfig& c) { return c.clean_spaces == *clean_spaces; });
    return found;
}

// The HF pre-tokenizer for a pre name: its regexes as Isolated splits, then ByteLevel (which
// runs GPT-2's regex itself when that is the last one, as GPT-2's own files have it).
json pre_tokenizer_for(const std::string& pre, const std::string& what) {
    const auto pc = tok::pre_config(pre);
    if (!pc) fail("%s: %s: unknown tokenizer.ggml.pre '%s'", OP, what.c_str(), pre.c_str());
    std::vector<std::string> res = tok::PreTokenizer::regex_list(pc->type);
    {
        if (!byte_encodes(pc->type))
            fail("%s: %s: tokenizer.ggml.pre '%s' is not byte-level BPE and has no HF form here", OP, what.c_str(),
                 pre.c_str());
    }
    for (const std::string& r : res)
        if (r == "\\p{Han}+" || r == "\\p{AFMoE_digits}")
            fail("%s: %s: tokenizer.ggml.pre '%s' splits by code, not by a regex HF could run", OP, what.c_str(),
                 pre.c_str());
    const bool gpt2_last = !res.empty() && res.back() == re_gpt2();
    if (gpt2_last) res.pop_back();
    json seq = json::array();
    for (const std::string& r : res)
        seq.push_back({{"type", "Split"}, {"pattern", {{"Regex", r}}}, {"behavior", "Isolated"}, {"invert", false}});
    json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", gpt2_last}};
    if (seq.empty()) return bl;
    seq.push_back(bl);
    return {{"type", "Sequence"}, {"pretokenizers", seq}};
}

// ---- reading ----------------------------------------------------------------------------------

struct AddedToken {
    int64_t id = 0;
    std::string content;
    bool special = false;
};

struct Sources {
    JsonFile tok;                    // tokenizer.json
    std::optional<JsonFile> tcfg;    // tokenizer_config.json
    std::optional<JsonFile> cfg;     // config.json
    std::string chat_template_alt;   // chat_template.jinja / .json, when tokenizer_config has none
};

int64_t token_id(const JsonFile& f, const json& v, const std::string& field) {
    const int64_t id = json_util::as_int(f, v, field);
    if (id < 0 || id > MAX_TOKEN_ID)
        f.fail(field, "token id " + std::to_string(id) + " out of range [0, " + std::to_string(MAX_TOKEN_ID) + "]");
    return id;
}

const std::string& valid_text(const JsonFile& f, const json& v, const std::string& field) {
    const std::string& s = json_util::as_string(f, v, field);
    if (!tok::is_valid_utf8(s)) f.fail(field, "not valid UTF-8");  // nlohmann checks too; be sure
    return s;
}

// tokenizer.json "added_tokens", then tokenizer_config.json "added_tokens_decoder" (which
// transformers merges in), by id.
std::map<int64_t, AddedToken> read_added(const Sources& s) {
    std::map<int64_t, AddedToken> out;
    if (const json* list = json_util::find(s.tok.root, "added_tokens")) {
        if (!list->is_array()) s.tok.fail("added_tokens", "expected an array");
        for (size_t i = 0; i < list->size(); ++i) {
            const std::string field = "added_tokens[" + std::to_string(i) + "]";
            const json& e = (*list)[i];
            if (!e.is_object()) s.tok.fail(field, "expected an object");
            AddedToken a;
            a.id = token_id(s.tok, json_util::find(e, "id") ? e["id"] : json(), field + ".id");
            const json* c = json_util::find(e, "content");
            if (!c) s.tok.fail(field + ".content", "missing");
            a.content = valid_text(s.tok, *c, field + ".content");
            a.special = json_util::json_opt_bool(s.tok, e, field, "special").value_or(false);
            const auto [it, inserted] = out.emplace(a.id, a);
            if (!inserted && it->second.content != a.content)
                s.tok.fail(field + ".id", "duplicate id " + std::to_string(a.id) + " ('" + it->second.content +
                                              "' and '" + a.content + "')");
        }
    }
    if (s.tcfg) {
        if (const json* dec = json_util::find(s.tcfg->root, "added_tokens_decoder")) {
            if (!dec->is_object()) s.tcfg->fail("added_tokens_decoder", "expected an object");
            for (const auto& [key, e] : dec->items()) {
                const std::string field = "added_tokens_decoder." + key;
                int64_t id = -1;
                {
                    char* end = nullptr;
                    errno = 0;
                    const long long v = std::strtoll(key.c_str(), &end, 10);
                    if (key.empty() || *end != '\0' || errno != 0 || v < 0 || v > MAX_TOKEN_ID)
                        s.tcfg->fail(field, "key is not a token id in [0, " + std::to_string(MAX_TOKEN_ID) + "]");
                    id = v;
                }
                if (!e.is_object()) s.tcfg->fail(field, "expected an object");
                AddedToken a;
                a.id = id;
                const json* c = json_util::find(e, "content");
                if (!c) s.tcfg->fail(field + ".content", "missing");
                a.content = valid_text(*s.tcfg, *c, field + ".content");
                a.special = json_util::json_opt_bool(*s.tcfg, e, field, "special").value_or(false);
                out[id] = a;
            }
        }
    }
    return out;
}

// A tokenizer_config "<kind>_token": a string or an AddedToken dict with "content".
std::optional<std::string> special_text(const JsonFile& f, const json& root, const std::string& key) {
    const json* e = json_util::find(root, key);
    if (!e) return std::nullopt;
    if (e->is_string()) return e->get<std::string>();
    if (e->is_object()) {
        const json* c = json_util::find(*e, "content");
        if (c && c->is_string()) return c->get<std::string>();
        return std::nullopt;  // llama.cpp skips such entries
    }
    return std::nullopt;
}

// SpecialVocab: the special ids and add_* flags, from tokenizer.json's post_processor,
// tokenizer_config.json and config.json, in that order of precedence.
void read_special(const Sources& s, const std::map<int64_t, AddedToken>& added, size_t n_tokens, VocabData& d,
                  bool range_check) {
    std::map<std::string, std::string> text;  // kind -> token text
    std::optional<bool> add_bos, add_eos;
    // An empty tokenizer_config.json counts as none, as in llama.cpp ("if not tokenizer_config").
    const bool has_tcfg = s.tcfg.has_value() && !s.tcfg->root.empty();
    if (has_tcfg) {
        for (const SpecialKind& k : SPECIAL_KINDS)
            if (auto t = special_text(*s.tcfg, s.tcfg->root, std::string(k.name) + "_token")) text[k.name] = *t;
        if (!text.count("bos") && text.count("cls")) text["bos"] = text["cls"];
        if (!text.count("eos") && text.count("sep")) text["eos"] = text["sep"];
    }
    std::vector<std::string> kinds = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};

    // The post-processor: which specials HF adds around a sequence.
    if (const json* pp = json_util::find(s.tok.root, "post_processor")) {
        std::vector<const json*> procs;
        if (const json* list = json_util::find(*pp, "processors"); list && list->is_array()) {
            for (const json& p : *list) procs.push_back(&p);
        } else {
            procs.push_back(pp);
        }
        for (const json* p : procs) {
            if (!p->is_object()) continue;
            const json* type = json_util::find(*p, "type");
            if (!type || !type->is_string()) continue;
            if (*type == "RobertaProcessing") {
                add_bos = add_eos = true;
                continue;
            }
            if (*type != "TemplateProcessing") continue;
            const json* single = json_util::find(*p, "single");
            if (!single || !single->is_array() || single->size() < 2) continue;
            auto special_id = [](const json& item) -> std::optional<std::string> {
                if (!item.is_object()) return std::nullopt;
                const json* st = json_util::find(item, "SpecialToken");
                if (!st || !st->is_object()) return std::nullopt;
                const json* id = json_util::find(*st, "id");
                if (!id || !id->is_string() || id->get_ref<const std::string&>().empty()) return std::nullopt;
                return id->get<std::string>();
            };
            if (auto first = special_id(single->front())) {
                if (!has_tcfg) text["bos"] = *first;
                const bool is_bos = (text.count("bos") && *first == text["bos"]) ||
                                    (text.count("cls") && *first == text["cls"]);
                add_bos = is_bos;
            }
            if (auto last = special_id(single->back())) {
                if (!has_tcfg) text["eos"] = *last;
                if (has_tcfg && text.count("eos") && *last != text["eos"]) {
                    // llama.cpp keeps the configured eos as eot (or eom) and takes the template's.
                    if (std::find(kinds.begin(), kinds.end(), "eot") == kinds.end()) {
                        kinds.push_back("eot");
                        text["eot"] = text["eos"];
                    } else if (std::find(kinds.begin(), kinds.end(), "eom") == kinds.end()) {
                        kinds.push_back("eom");
                        text["eom"] = text["eos"];
                    }
                    text["eos"] = *last;
                }
                add_eos = text.count("eos") && *last == text["eos"];
            }
        }
    }

    std::set<std::string> set_kinds;
    auto set_id = [&](const std::string& kind, int64_t id, const JsonFile& f, const std::string& field) {
        if (id < 0) f.fail(field, "negative special token id " + std::to_string(id));
        if (range_check && static_cast<uint64_t>(id) >= n_tokens) return;  // llama.cpp skips it
        if (!set_kinds.insert(kind).second) return;
        for (const SpecialKind& k : SPECIAL_KINDS)
            if (kind == k.name && k.field) d.*(k.field) = id;
    };
    if (has_tcfg) {
        for (const std::string& kind : kinds) {
            if (auto b = json_util::json_opt_bool(*s.tcfg, s.tcfg->root, "", "add_" + kind + "_token")) {
                if (kind == "bos") add_bos = *b;
                if (kind == "eos") add_eos = *b;
            }
            auto t = text.find(kind);
            if (t == text.end()) continue;
            for (const auto& [id, a] : added) {  // the first added token with that text, by id
                if (a.content == t->second) {
                    set_id(kind, id, *s.tcfg, kind + "_token");
                    break;
                }
            }
        }
    }
    if (s.cfg) {
        const json* text_config = json_util::find(s.cfg->root, "text_config");
        for (const std::string& kind : kinds) {
            const std::string key = kind + "_token_id";
            const json* v = json_util::find(s.cfg->root, key);
            std::string field = key;
            if (!v && text_config && text_config->is_object()) {
                v = json_util::find(*text_config, key);
                field = "text_config." + key;
            }
            if (!v || !v->is_number_integer()) continue;  // llama.cpp ignores lists and non-integers
            set_id(kind, json_util::as_int(*s.cfg, *v, field), *s.cfg, field);
        }
    }
    d.add_bos = add_bos;
    d.add_eos = add_eos;
}

// token -> id of a BPE model's "vocab" object, checked.
std::vector<std::pair<std::string, int64_t>> read_bpe_vocab(const JsonFile& f, const json& model) {
    const json* vocab = json_util::find(model, "vocab");
    if (!vocab) f.fail("model.vocab", "missing");
    if (!vocab->is_object()) f.fail("model.vocab", std::string("expected an object, got ") + json_util::type_name(*vocab));
    std::vector<std::pair<std::string, int64_t>> out;
    out.reserve(vocab->size());
    for (const auto& [text, id] : vocab->items()) {
        if (!tok::is_valid_utf8(text)) f.fail("model.vocab", "a token is not valid UTF-8");
        out.emplace_back(text, token_id(f, id, "model.vocab[\"" + text + "\"]"));
    }
    return out;
}

// Merges as "left right" strings; pairs with spaces get U+0120 for them, as llama.cpp does.
std::vector<std::string> read_merges(const JsonFile& f, const json& model) {
    std::vector<std::string> out;
    const json* merges = json_util::find(model, "merges");
    if (!merges) return out;
    if (!merges->is_array()) f.fail("model.merges", "expected an array");
    out.reserve(merges->size());
    for (size_t i = 0; i < merges->size(); ++i) {
        const std::string field = "model.merges[" + std::to_string(i) + "]";
        const json& m = (*merges)[i];
        if (m.is_string()) {
            out.push_back(valid_text(f, m, field));
        } else if (m.is_array() && m.size() == 2) {
            std::string s;
            for (size_t j = 0; j < 2; ++j) {
                std::string part = valid_text(f, m[j], field + "[" + std::to_string(j) + "]");
                replace_all(part, " ", "\xC4\xA0");
                if (j) s += ' ';
                s += part;
            }
            out.push_back(std::move(s));
        } else {
            f.fail(field, "expected \"left right\" or [left, right]");
        }
    }
    return out;
}

// Checks every merge names two tokens whose concatenation is a token (HF refuses the file otherwise).
void check_merges(const JsonFile& f, const std::vector<std::string>& merges,
                  const std::unordered_map<std::string, int64_t>& ids) {
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string& m = merges[i];
        const size_t sp = m.find(' ', 1);
        const std::string field = "model.merges[" + std::to_string(i) + "]";
        if (sp == std::string::npos || sp + 1 >= m.size()) f.fail(field, "'" + m + "' is not two tokens");
        const std::string l = m.substr(0, sp), r = m.substr(sp + 1);
        for (const std::string& part : {l, r, l + r})
            if (!ids.count(part)) f.fail(field, "'" + m + "' names '" + part + "', which is not in model.vocab");
    }
}

// Pads the id -> text table to n, refusing absurd sizes before allocating.
int64_t vocab_size_for(const Sources& s, int64_t max_id, size_t n_entries) {
    int64_t n = max_id + 1;
    if (s.cfg) {
        if (auto vs = json_util::json_opt_int(*s.cfg, s.cfg->root, "", "vocab_size")) {
            if (*vs <= max_id)
                s.cfg->fail("vocab_size", std::to_string(*vs) + " but the tokenizer has token id " + std::to_string(max_id));
            if (*vs > MAX_TOKEN_ID + 1) s.cfg->fail("vocab_size", std::to_string(*vs) + " is too large");
            n = *vs;
        }
    }
    if (n - static_cast<int64_t>(n_entries) > MAX_HOLES)
        s.tok.fail("model.vocab", "ids up to " + std::to_string(n - 1) + " for " + std::to_string(n_entries) +
                                      " tokens: too many holes");
    return n;
}

std::optional<bool> clean_spaces_of(const Sources& s) {
    if (!s.tcfg) return std::nullopt;
    return json_util::json_opt_bool(*s.tcfg, s.tcfg->root, "", "clean_up_tokenization_spaces");
}

void read_gpt2(const Sources& s, const json& model, const std::map<int64_t, AddedToken>& added, VocabData& d,
               const std::optional<std::string>& pre_override) {
    const JsonFile& f = s.tok;
    d.model = "gpt2";
    const auto vocab = read_bpe_vocab(f, model);
    std::unordered_map<std::string, int64_t> ids;
    std::unordered_map<int64_t, std::string> by_id;
    int64_t max_id = -1;
    for (const auto& [text, id] : vocab) {
        if (!by_id.emplace(id, text).second)
            f.fail("model.vocab[\"" + text + "\"]", "duplicate id " + std::to_string(id) + " (also '" + by_id[id] + "')");
        ids.emplace(text, id);
        max_id = std::max(max_id, id);
    }
    d.merges = read_merges(f, model);
    check_merges(f, d.merges, ids);
    for (const auto& [id, a] : added) max_id = std::max(max_id, id);
    if (max_id < 0) f.fail("model.vocab", "empty");
    const int64_t n = vocab_size_for(s, max_id, by_id.size() + added.size());

    std::set<std::string> added_texts;
    for (const auto& [id, a] : added) added_texts.insert(a.content);
    d.tokens.resize(n);
    d.token_types.assign(n, ttype(TokenType::Normal));
    for (int64_t i = 0; i < n; ++i) {
        const auto a = added.find(i);
        const auto v = by_id.find(i);
        if (a == added.end() && v == by_id.end()) {
            d.tokens[i] = pad_text(i);
            d.token_types[i] = ttype(TokenType::Unused);
            continue;
        }
        std::string text = a != added.end() ? a->second.content : v->second;
        if (added_texts.count(text)) {
            const bool special = a != added.end() ? a->second.special : false;
            if (special || looks_special(text)) {
                d.token_types[i] = ttype(TokenType::Control);
            } else {
                replace_all(text, SPACE_ESCAPE, " ");  // llama.cpp pre-normalizes user-defined spaces
                d.token_types[i] = ttype(TokenType::UserDefined);
            }
        }
        d.tokens[i] = std::move(text);
    }

    // tokenizer.ggml.pre from the pre-tokenizer.
    PreSpec spec;
    if (const json* pt = json_util::find(f.root, "pre_tokenizer")) collect_pre(f, *pt, "pre_tokenizer", spec, 0);
    if (pre_override) {
        d.pre = *pre_override;
        return;
    }
    if (!spec.byte_level) f.fail("pre_tokenizer", "a byte-level BPE needs a ByteLevel pre-tokenizer");
    const std::optional<bool> ignore_merges = json_util::json_opt_bool(f, model, "model", "ignore_merges");
    const auto names = match_pre(spec, ignore_merges.value_or(false), clean_spaces_of(s));
    if (names.empty()) {
        std::string list;
        for (const std::string& r : spec.regexes) list += (list.empty() ? "" : ", ") + ("'" + r + "'");
        f.fail("pre_tokenizer", "no llama.cpp pre-tokenizer splits by the regexes [" + list + "]");
    }
    d.pre = names.front();
}

// The SentencePiece forms: BPE with byte_fallback and Unigram, both "llama".
void read_spm(const Sources& s, const json& model, const std::string& type,
              const std::map<int64_t, AddedToken>& added, VocabData& d) {
    const JsonFile& f = s.tok;
    d.model = "llama";
    d.pre = "default";
    std::unordered_map<int64_t, std::string> by_id;
    std::unordered_map<int64_t, float> score_of;
    std::optional<std::string> unk_text;
    int64_t max_id = -1;
    if (type == "Unigram") {
        const json* vocab = json_util::find(model, "vocab");
        if (!vocab) f.fail("model.vocab", "missing");
        if (!vocab->is_array()) f.fail("model.vocab", std::string("expected an array of [piece, score], got ") +
                                                          json_util::type_name(*vocab));
        if (static_cast<int64_t>(vocab->size()) > MAX_TOKEN_ID + 1) f.fail("model.vocab", "too many entries");
        for (size_t i = 0; i < vocab->size(); ++i) {
            const std::string field = "model.vocab[" + std::to_string(i) + "]";
            const json& e = (*vocab)[i];
            if (!e.is_array() || e.size() != 2) f.fail(field, "expected [piece, score]");
            by_id[static_cast<int64_t>(i)] = valid_text(f, e[0], field + "[0]");
            const double sc = json_util::as_number(f, e[1], field + "[1]");
            if (!std::isfinite(sc) || std::fabs(sc) > 3.0e38) f.fail(field + "[1]", "score out of range");
            score_of[static_cast<int64_t>(i)] = static_cast<float>(sc);
            max_id = static_cast<int64_t>(i);
        }
        if (auto unk = json_util::json_opt_int(f, model, "model", "unk_id")) {
            if (*unk < 0 || *unk > max_id) f.fail("model.unk_id", std::to_string(*unk) + " is out of range");
            unk_text = by_id[*unk];
        }
    } else {
        const auto vocab = read_bpe_vocab(f, model);
        std::unordered_map<std::string, int64_t> ids;
        for (const auto& [text, id] : vocab) {
            if (!by_id.emplace(id, text).second)
                f.fail("model.vocab[\"" + text + "\"]", "duplicate id " + std::to_string(id) + " (also '" + by_id[id] + "')");
            ids.emplace(text, id);
            max_id = std::max(max_id, id);
        }
        const std::vector<std::string> merges = read_merges(f, model);
        check_merges(f, merges, ids);
        // Score = minus (1 + the rank of the first merge making the token): SPM then merges in
        // the BPE's order. Tokens no merge makes keep 0.
        for (size_t r = 0; r < merges.size(); ++r) {
            const std::string& m = merges[r];
            const size_t sp = m.find(' ', 1);
            const int64_t id = ids.at(m.substr(0, sp) + m.substr(sp + 1));
            score_of.emplace(id, -static_cast<float>(r + 1));
        }
        if (auto unk = json_util::json_opt_string(f, model, "model", "unk_token")) unk_text = *unk;
    }
    for (const auto& [id, a] : added) max_id = std::max(max_id, id);
    if (max_id < 0) f.fail("model.vocab", "empty");
    const int64_t n = vocab_size_for(s, max_id, by_id.size() + added.size());

    // Tokens tokenizer_config names as special (LlamaHfVocab's all_special_ids).
    std::set<std::string> named;
    if (s.tcfg) {
        for (const SpecialKind& k : SPECIAL_KINDS)
            if (auto t = special_text(*s.tcfg, s.tcfg->root, std::string(k.name) + "_token")) named.insert(*t);
        if (const json* extra = json_util::find(s.tcfg->root, "additional_special_tokens"); extra && extra->is_array())
            for (const json& e : *extra) {
                if (e.is_string()) named.insert(e.get<std::string>());
                else if (e.is_object() && e.contains("content") && e["content"].is_string()) named.insert(e["content"].get<std::string>());
            }
    }

    d.tokens.resize(n);
    d.scores.assign(n, 0.0f);
    d.token_types.assign(n, ttype(TokenType::Normal));
    for (int64_t i = 0; i < n; ++i) {
        const auto a = added.find(i);
        const auto v = by_id.find(i);
        if (a == added.end() && v == by_id.end()) {
            d.tokens[i] = pad_text(i);
            d.scores[i] = PAD_SCORE;
            d.token_types[i] = ttype(TokenType::Unused);
            continue;
        }
        if (a != added.end()) {
            std::string text = a->second.content;
            if (a->second.special || named.count(text) || looks_special(text)) {
                d.token_types[i] = ttype(TokenType::Control);
            } else {
                replace_all(text, SPACE_ESCAPE, " ");
                d.token_types[i] = ttype(TokenType::UserDefined);
            }
            d.tokens[i] = std::move(text);
            d.scores[i] = ADDED_SCORE;
            continue;
        }
        const std::string& text = v->second;
        d.tokens[i] = text;
        if (const auto sc = score_of.find(i); sc != score_of.end()) d.scores[i] = sc->second;
        if (is_byte_token(text)) d.token_types[i] = ttype(TokenType::Byte);
        else if (unk_text && text == *unk_text) d.token_types[i] = ttype(TokenType::Unknown);
        else if (named.count(text)) d.token_types[i] = ttype(TokenType::Control);
    }
}

// tokenizer_config.json "slm_gguf": the values the standard fields cannot carry.
void apply_extension(const JsonFile& f, const json& ext, VocabData& d) {
    const std::string base = EXT_KEY;
    if (!ext.is_object()) f.fail(base, "expected an object");
    if (auto pre = json_util::json_opt_string(f, ext, base, "pre")) d.pre = *pre;
    if (auto n = json_util::json_opt_int(f, ext, base, "n_tokens")) {
        if (*n < static_cast<int64_t>(d.tokens.size()) || *n > MAX_TOKEN_ID + 1 ||
            *n - static_cast<int64_t>(d.tokens.size()) > MAX_HOLES)
            f.fail(base + ".n_tokens", std::to_string(*n) + " is out of range");
        const size_t old = d.tokens.size();
        d.tokens.resize(*n);
        for (size_t i = old; i < d.tokens.size(); ++i) d.tokens[i] = pad_text(static_cast<int64_t>(i));
        if (!d.token_types.empty()) d.token_types.resize(*n, ttype(TokenType::Unused));
        if (!d.scores.empty()) d.scores.resize(*n, PAD_SCORE);
    }
    const size_t n = d.tokens.size();
    auto index = [&](const std::string& key, const std::string& field) -> size_t {
        char* end = nullptr;
        errno = 0;
        const long long v = std::strtoll(key.c_str(), &end, 10);
        if (key.empty() || *end != '\0' || errno != 0 || v < 0 || static_cast<uint64_t>(v) >= n)
            f.fail(field, "key is not a token id below " + std::to_string(n));
        return static_cast<size_t>(v);
    };
    if (const json* t = json_util::find(ext, "tokens")) {
        if (!t->is_object()) f.fail(base + ".tokens", "expected an object");
        for (const auto& [k, v] : t->items()) d.tokens[index(k, base + ".tokens." + k)] = valid_text(f, v, base + ".tokens." + k);
    }
    if (const json* t = json_util::find(ext, "token_types")) {
        if (!t->is_object()) f.fail(base + ".token_types", "expected an object");
        if (d.token_types.empty()) d.token_types.assign(n, ttype(TokenType::Normal));
        for (const auto& [k, v] : t->items()) {
            const int64_t ty = json_util::as_int(f, v, base + ".token_types." + k);
            if (ty < std::numeric_limits<int32_t>::min() || ty > std::numeric_limits<int32_t>::max())
                f.fail(base + ".token_types." + k, "out of range");
            d.token_types[index(k, base + ".token_types." + k)] = static_cast<int32_t>(ty);
        }
    }
    if (const json* sc = json_util::find(ext, "scores")) {
        if (!sc->is_array()) f.fail(base + ".scores", "expected an array");
        if (sc->size() != 0 && sc->size() != n)
            f.fail(base + ".scores", std::to_string(sc->size()) + " entries for " + std::to_string(n) + " tokens");
        d.scores.resize(sc->size());
        for (size_t i = 0; i < sc->size(); ++i) {
            const double v = json_util::as_number(f, (*sc)[i], base + ".scores[" + std::to_string(i) + "]");
            if (std::isfinite(v) && std::fabs(v) > 3.5e38) f.fail(base + ".scores[" + std::to_string(i) + "]", "out of range");
            d.scores[i] = static_cast<float>(v);
        }
    }
    if (const json* ids = json_util::find(ext, "special_ids")) {
        if (!ids->is_object()) f.fail(base + ".special_ids", "expected an object");
        for (const auto& [k, v] : ids->items()) {
            std::optional<int64_t> VocabData::*field = nullptr;
            for (const SpecialKind& sk : SPECIAL_KINDS)
                if (k == sk.name) field = sk.field;
            for (const SpecialKind& sk : EXTRA_KINDS)
                if (k == sk.name) field = sk.field;
            if (!field) f.fail(base + ".special_ids." + k, "unknown special token kind");
            if (v.is_null()) d.*field = std::nullopt;
            else d.*field = json_util::as_int(f, v, base + ".special_ids." + k);
        }
    }
    for (const char* key : {"add_bos", "add_eos", "add_space_prefix"}) {
        const auto it = ext.find(key);
        if (it == ext.end()) continue;
        std::optional<bool> VocabData::*field = key == std::string("add_bos")   ? &VocabData::add_bos
                                                : key == std::string("add_eos") ? &VocabData::add_eos
                                                                                : &VocabData::add_space_prefix;
        if (it->is_null()) d.*field = std::nullopt;
        else if (it->is_boolean()) d.*field = it->get<bool>();
        else f.fail(base + "." + key, "expected a boolean or null");
    }
}

struct ReadOptions {
    std::optional<std::string> pre_override;  // skip the regex matching (the writer's first pass)
    bool use_extension = true;
};

HFTokenizer read_sources_unchecked(const Sources& s, const ReadOptions& opt);

// Every field is type-checked before use; should a nlohmann exception slip through anyway, it
// still leaves as slm::Error naming the file.
HFTokenizer read_sources(const Sources& s, const ReadOptions& opt = {}) {
    try {
        return read_sources_unchecked(s, opt);
    } catch (const json::exception& e) {
        fail("%s: %s: %s", OP, s.tok.path.c_str(), e.what());
    }
}

HFTokenizer read_sources_unchecked(const Sources& s, const ReadOptions& opt) {
    const JsonFile& f = s.tok;
    if (!f.root.is_object()) f.fail("(root)", std::string("expected an object, got ") + json_util::type_name(f.root));
    const json* model = json_util::find(f.root, "model");
    if (!model) f.fail("model", "missing");
    if (!model->is_object()) f.fail("model", std::string("expected an object, got ") + json_util::type_name(*model));
    std::string type;
    if (auto t = json_util::json_opt_string(f, *model, "model", "type")) {
        type = *t;
    } else {
        const json* v = json_util::find(*model, "vocab");
        type = v && v->is_array() ? "Unigram" : json_util::find(*model, "merges") ? "BPE" : "";
        if (type.empty()) f.fail("model.type", "missing, and neither merges nor a [piece, score] vocab say which");
    }

    const std::map<int64_t, AddedToken> added = read_added(s);
    HFTokenizer out;
    VocabData& d = out.vocab;
    d.source = f.path;
    bool spm = false;
    if (type == "BPE") {
        const bool byte_fallback = json_util::json_opt_bool(f, *model, "model", "byte_fallback").value_or(false);
        PreSpec spec;
        if (const json* pt = json_util::find(f.root, "pre_tokenizer")) collect_pre(f, *pt, "pre_tokenizer", spec, 0);
        bool decoder_byte_level = false;
        if (const json* dec = json_util::find(f.root, "decoder"); dec && dec->is_object())
            decoder_byte_level = dec->value("type", "") == "ByteLevel";
        if (byte_fallback || (!spec.byte_level && !decoder_byte_level)) {
            if (!byte_fallback && !spec.metaspace && !json_util::find(f.root, "normalizer"))
                f.fail("model", "a BPE without ByteLevel, byte_fallback or a SentencePiece normalizer is not supported");
            read_spm(s, *model, type, added, d);
            spm = true;
        } else {
            read_gpt2(s, *model, added, d, opt.pre_override);
        }
    } else if (type == "Unigram") {
        read_spm(s, *model, type, added, d);
        spm = true;
    } else {
        f.fail("model.type", "'" + type + "' is not supported (only BPE and Unigram)");
    }
    if (spm && opt.pre_override) d.pre = *opt.pre_override;

    read_special(s, added, d.tokens.size(), d, spm);

    if (s.tcfg) {
        const json* ct = json_util::find(s.tcfg->root, "chat_template");
        if (ct && ct->is_string()) {
            out.chat_template = ct->get<std::string>();
        } else if (ct && ct->is_array()) {
            for (size_t i = 0; i < ct->size(); ++i) {
                const json& e = (*ct)[i];
                if (!e.is_object()) s.tcfg->fail("chat_template[" + std::to_string(i) + "]", "expected {name, template}");
                if (e.value("name", json()) == "default") {
                    out.chat_template = json_util::json_string(*s.tcfg, e, "chat_template[" + std::to_string(i) + "]", "template");
                    break;
                }
            }
        } else if (!ct) {
            out.chat_template = s.chat_template_alt;
        }
        if (opt.use_extension)
            if (const json* ext = json_util::find(s.tcfg->root, EXT_KEY)) apply_extension(*s.tcfg, *ext, d);
    }
    return out;
}

std::optional<std::string> read_optional_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
    const uintmax_t size = std::filesystem::file_size(path, ec);
    if (!ec && size > limits().max_metadata_bytes)
        fail("%s: %s: %ju bytes is more than %s", OP, path.c_str(), size,
             limit_hint("max_metadata_bytes", limits().max_metadata_bytes).c_str());
    std::ifstream in(path, std::ios::binary);
    if (!in) fail("%s: %s: cannot open", OP, path.c_str());
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

} // namespace

HFTokenizer parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               std::string_view config_json, const std::string& name) {
    Sources s{JsonFile::parse(tokenizer_json, name + "/tokenizer.json", OP), {}, {}, {}};
    if (!tokenizer_config_json.empty())
        s.tcfg = JsonFile::parse(tokenizer_config_json, name + "/tokenizer_config.json", OP);
    if (!config_json.empty()) s.cfg = JsonFile::parse(config_json, name + "/config.json", OP);
    if (s.tcfg && !s.tcfg->root.is_object()) s.tcfg->fail("(root)", "expected an object");
    if (s.cfg && !s.cfg->root.is_object()) s.cfg->fail("(root)", "expected an object");
    return read_sources(s);
}

HFTokenizer read_hf_tokenizer(const std::string& dir) {
    Sources s{JsonFile::read(dir + "/tokenizer.json", OP), {}, {}, {}};
    if (auto t = read_optional_file(dir + "/tokenizer_config.json"))
        s.tcfg = JsonFile::parse(*t, dir + "/tokenizer_config.json", OP);
    if (auto t = read_optional_file(dir + "/config.json")) s.cfg = JsonFile::parse(*t, dir + "/config.json", OP);
    if (s.tcfg && !s.tcfg->root.is_object()) s.tcfg->fail("(root)", "expected an object");
    if (s.cfg && !s.cfg->root.is_object()) s.cfg->fail("(root)", "expected an object");
    // Newer transformers keep the chat template beside tokenizer_config.json.
    if (auto t = read_optional_file(dir + "/chat_template.jinja")) {
        s.chat_template_alt = *t;
    } else if (auto j = read_optional_file(dir + "/chat_template.json")) {
        const JsonFile cf = JsonFile::parse(*j, dir + "/chat_template.json", OP);
        if (auto ct = json_util::json_opt_string(cf, cf.root, "", "chat_template")) s.chat_template_alt = *ct;
    }
    return read_sources(s);
}

// ---- writing ----------------------------------------------------------------------------------

namespace {

// The effective id of a special kind (VocabData's value, else the model's default), or -1.
int64_t effective_id(const VocabData& v, const std::optional<int64_t>& id, int64_t def) {
    const int64_t x = id ? *id : def;
    if (x < 0 || static_cast<uint64_t>(x) >= v.tokens.size()) return -1;
    return x;
}

// Merges for a SentencePiece vocabulary, as HF's converter derives them: every split of a token
// into two tokens, best-scoring result first (then by id), so BPE merges as SPM does.
json spm_merges(const VocabData& v, const std::vector<bool>& hole) {
    std::unordered_map<std::string_view, int32_t> ids;
    for (size_t i = 0; i < v.tokens.size(); ++i)
        if (!hole[i]) ids.emplace(v.tokens[i], static_cast<int32_t>(i));
    struct Merge {
        float score;
        int32_t id, l, r;
    };
    std::vector<Merge> merges;
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        if (hole[i]) continue;
        const std::string& t = v.tokens[i];
        const float sc = v.scores.empty() ? 0.0f : v.scores[i];
        for (size_t k = tok::utf8_len(t[0]); k < t.size(); k += tok::utf8_len(t[k])) {
            const auto l = ids.find(std::string_view(t).substr(0, k));
            if (l == ids.end()) continue;
            const auto r = ids.find(std::string_view(t).substr(k));
            if (r == ids.end()) continue;
            merges.push_back({sc, static_cast<int32_t>(i), l->second, r->second});
        }
    }
    std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
        if (a.score != b.score) return a.score > b.score;
        if (a.id != b.id) return a.id < b.id;
        if (a.l != b.l) return a.l < b.l;
        return a.r < b.r;
    });
    json out = json::array();
    for (const Merge& m : merges) out.push_back(json::array({v.tokens[m.l], v.tokens[m.r]}));
    return out;
}

json template_processing(const VocabData& v, int64_t bos, int64_t eos, bool add_bos, bool add_eos) {
    json single = json::array(), pair = json::array(), specials = json::object();
    auto special = [&](int64_t id, int type_id) {
        const std::string& t = v.tokens[id];
        specials[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
        return json{{"SpecialToken", {{"id", t}, {"type_id", type_id}}}};
    };
    auto seq = [](const char* id, int type_id) { return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
    if (add_bos) single.push_back(special(bos, 0));
    single.push_back(seq("A", 0));
    if (add_eos) single.push_back(special(eos, 0));
    if (add_bos) pair.push_back(special(bos, 0));
    pair.push_back(seq("A", 0));
    if (add_eos) pair.push_back(special(eos, 0));
    if (add_bos) pair.push_back(special(bos, 1));
    pair.push_back(seq("B", 1));
    if (add_eos) pair.push_back(special(eos, 1));
    return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

struct Written {
    json tokenizer;
    json config;
};

Written build_standard(const VocabData& v, const std::string& chat_template, const std::string& what) {
    const size_t n = v.tokens.size();
    if (n == 0) fail("%s: %s: the vocabulary is empty", OP, what.c_str());
    if (!v.token_types.empty() && v.token_types.size() != n)
        fail("%s: %s: %zu token types for %zu tokens", OP, what.c_str(), v.token_types.size(), n);
    if (!v.scores.empty() && v.scores.size() != n)
        fail("%s: %s: %zu scores for %zu tokens", OP, what.c_str(), v.scores.size(), n);
    const bool spm = v.model == "llama";
    if (!spm && v.model != "gpt2")
        fail("%s: %s: tokenizer.ggml.model '%s' has no HF form here (only 'llama' and 'gpt2')", OP, what.c_str(),
             v.model.c_str());
    auto type_of = [&](size_t i) { return v.token_types.empty() ? TokenType::Normal : static_cast<TokenType>(v.token_types[i]); };

    std::vector<bool> hole(n, false);
    for (size_t i = 0; i < n; ++i) hole[i] = v.tokens[i] == pad_text(static_cast<int64_t>(i));

    json vocab = json::object();
    json added = json::array();
    for (size_t i = 0; i < n; ++i) {
        if (hole[i]) continue;
        const std::string& t = v.tokens[i];
        if (!tok::is_valid_utf8(t)) fail("%s: %s: token %zu is not valid UTF-8", OP, what.c_str(), i);
        if (vocab.contains(t)) fail("%s: %s: token %zu '%s' is a duplicate", OP, what.c_str(), i, t.c_str());
        vocab[t] = i;
        const TokenType ty = type_of(i);
        if (ty == TokenType::Control || ty == TokenType::UserDefined) {
            added.push_back({{"id", i},
                             {"content", t},
                             {"single_word", false},
                             {"lstrip", false},
                             {"rstrip", false},
                             {"normalized", false},
                             {"special", ty == TokenType::Control}});
        }
    }

    const int64_t bos = effective_id(v, v.bos, spm ? 1 : 11), eos = effective_id(v, v.eos, spm ? 2 : 11);
    const int64_t unk = effective_id(v, v.unk, spm ? 0 : -1);
    std::optional<bool> add_bos = v.add_bos, add_eos = v.add_eos;
    const bool do_bos = add_bos.value_or(spm) && bos >= 0, do_eos = add_eos.value_or(false) && eos >= 0;

    Written w;
    json& tj = w.tokenizer;
    tj["version"] = "1.0";
    tj["truncation"] = nullptr;
    tj["padding"] = nullptr;
    tj["added_tokens"] = added;
    json model;
    if (spm) {
        const bool prefix = v.add_space_prefix.value_or(true);
        json norms = json::array();
        if (prefix) norms.push_back({{"type", "Prepend"}, {"prepend", SPACE_ESCAPE}});
        norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", SPACE_ESCAPE}});
        tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
        tj["pre_tokenizer"] = nullptr;
        json decs = json::array();
        decs.push_back({{"type", "Replace"}, {"pattern", {{"String", SPACE_ESCAPE}}}, {"content", " "}});
        decs.push_back({{"type", "ByteFallback"}});
        decs.push_back({{"type", "Fuse"}});
        if (prefix) decs.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
        tj["post_processor"] = template_processing(v, bos, eos, do_bos, do_eos);
        tj["decoder"] = {{"type", "Sequence"}, {"decoders", decs}};
        model = {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", unk >= 0 && !hole[unk] ? json(v.tokens[unk]) : json(nullptr)},
                 {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr},
                 {"fuse_unk", true},
                 {"byte_fallback", true},
                 {"ignore_merges", false},
                 {"vocab", vocab},
                 {"merges", spm_merges(v, hole)}};
    } else {
        // Merges as [left, right] pairs split where slm splits them, each part a token.
        json merges = json::array();
        for (size_t i = 0; i < v.merges.size(); ++i) {
            const std::string& m = v.merges[i];
            const size_t sp = m.find(' ', 1);
            if (sp == std::string::npos || sp + 1 >= m.size())
                fail("%s: %s: merge %zu '%s' is not two tokens", OP, what.c_str(), i, m.c_str());
            const std::string l = m.substr(0, sp), r = m.substr(sp + 1);
            for (const std::string& part : {l, r, l + r})
                if (!vocab.contains(part))
                    fail("%s: %s: merge %zu '%s' names '%s', which is not a token", OP, what.c_str(), i, m.c_str(),
                         part.c_str());
            merges.push_back(json::array({l, r}));
        }
        const auto pc = tok::pre_config(v.pre);
        tj["normalizer"] = nullptr;
        tj["pre_tokenizer"] = pre_tokenizer_for(v.pre.empty() ? "default" : v.pre, what);
        json bl_post = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
        if (do_bos || do_eos)
            tj["post_processor"] = {{"type", "Sequence"},
                                    {"processors", {bl_post, template_processing(v, bos, eos, do_bos, do_eos)}}};
        else
            tj["post_processor"] = bl_post;
        tj["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
        model = {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", nullptr},
                 {"continuing_subword_prefix", ""},
                 {"end_of_word_suffix", ""},
                 {"fuse_unk", false},
                 {"byte_fallback", false},
                 {"ignore_merges", pc && pc->ignore_merges},
                 {"vocab", vocab},
                 {"merges", merges}};
    }
    tj["model"] = model;

    // tokenizer_config.json
    json& cj = w.config;
    cj["tokenizer_class"] = spm ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast";
    if (add_bos) cj["add_bos_token"] = *add_bos;
    if (add_eos) cj["add_eos_token"] = *add_eos;
    {
        const auto pc = tok::pre_config(v.pre);
        cj["clean_up_tokenization_spaces"] = spm ? false : (pc ? pc->clean_spaces : true);
    }
    // Special tokens by text, where an added token carries that text at that id.
    for (const SpecialKind& k : SPECIAL_KINDS) {
        if (!k.field) continue;
        const std::optional<int64_t>& id = v.*(k.field);
        if (!id || *id < 0 || static_cast<uint64_t>(*id) >= n || hole[*id]) continue;
        const TokenType ty = type_of(*id);
        if (ty != TokenType::Control && ty != TokenType::UserDefined && ty != TokenType::Unknown) continue;
        cj[std::string(k.name) + "_token"] = v.tokens[*id];
    }
    json additional = json::array();
    for (size_t i = 0; i < n; ++i)
        if (!hole[i] && type_of(i) == TokenType::Control) additional.push_back(v.tokens[i]);
    if (spm && !additional.empty()) cj["additional_special_tokens"] = additional;
    json decoder = json::object();
    for (const json& a : added)
        decoder[std::to_string(a["id"].get<int64_t>())] = {{"content", a["content"]},
                                                           {"lstrip", false},
                                                           {"normalized", false},
                                                           {"rstrip", false},
                                                           {"single_word", false},
                                                           {"special", a["special"]}};
    cj["added_tokens_decoder"] = decoder;
    cj["model_max_length"] = 1000000000000000019884624838656.0;  // transformers' "no limit"
    if (!chat_template.empty()) cj["chat_template"] = chat_template;
    return w;
}

// The extension: every field where reading the standard files gives something else.
json build_extension(const VocabData& v, const VocabData& got, const Written& w, const std::string& what) {
    json ext = json::object();
    // pre: kept unless the regex matching finds the same name.
    {
        bool same = false;
        try {
            Sources s{JsonFile::parse(json_util::dump(w.tokenizer, what), what, OP), {}, {}, {}};
            s.tcfg = JsonFile::parse(json_util::dump(w.config, what), what, OP);
            same = read_sources(s, ReadOptions{std::nullopt, false}).vocab.pre == v.pre;
        } catch (const Error&) {
            same = false;
        }
        if (!same) ext["pre"] = v.pre;
    }
    if (got.tokens.size() < v.tokens.size()) ext["n_tokens"] = v.tokens.size();
    if (got.tokens.size() > v.tokens.size())
        fail("%s: %s: internal: %zu tokens read back for %zu", OP, what.c_str(), got.tokens.size(), v.tokens.size());
    json tokens = json::object(), types = json::object();
    for (size_t i = 0; i < v.tokens.size(); ++i) {
        const std::string got_text = i < got.tokens.size() ? got.tokens[i] : pad_text(static_cast<int64_t>(i));
        if (got_text != v.tokens[i]) tokens[std::to_string(i)] = v.tokens[i];
        const int32_t want = v.token_types.empty() ? ttype(TokenType::Normal) : v.token_types[i];
        const int32_t have = i < got.token_types.size() ? got.token_types[i] : ttype(TokenType::Unused);
        if (want != have) types[std::to_string(i)] = want;
    }
    if (!tokens.empty()) ext["tokens"] = tokens;
    if (!types.empty()) ext["token_types"] = types;
    {
        std::vector<float> have = got.scores;
        if (!have.empty()) have.resize(v.tokens.size(), PAD_SCORE);
        bool same = have.size() == v.scores.size();
        for (size_t i = 0; same && i < have.size(); ++i)
            same = std::memcmp(&have[i], &v.scores[i], sizeof(float)) == 0;
        if (!same) {
            json sc = json::array();
            for (float s : v.scores) {
                if (!std::isfinite(s)) fail("%s: %s: a score is not finite (%g)", OP, what.c_str(), s);
                sc.push_back(s);
            }
            ext["scores"] = sc;
        }
    }
    json ids = json::object();
    auto cmp_id = [&](const SpecialKind& k) {
        if (!k.field) return;
        const auto& want = v.*(k.field);
        const auto& have = got.*(k.field);
        if (want != have) ids[k.name] = want ? json(*want) : json(nullptr);
    };
    for (const SpecialKind& k : SPECIAL_KINDS) cmp_id(k);
    for (const SpecialKind& k : EXTRA_KINDS) cmp_id(k);
    if (!ids.empty()) ext["special_ids"] = ids;
    auto cmp_bool = [&](const char* key, const std::optional<bool>& want, const std::optional<bool>& have) {
        if (want != have) ext[key] = want ? json(*want) : json(nullptr);
    };
    cmp_bool("add_bos", v.add_bos, got.add_bos);
    cmp_bool("add_eos", v.add_eos, got.add_eos);
    cmp_bool("add_space_prefix", v.add_space_prefix, got.add_space_prefix);
    return ext;
}

} // namespace

void write_hf_tokenizer(const VocabData& v, const std::string& chat_template, const std::string& dir) {
    const std::string what = dir;
    Written w = build_standard(v, chat_template, what);
    // Read the standard files back (the pre name given, so an unmatched regex does not stop us)
    // and keep in the extension whatever they lose.
    Sources s{JsonFile::parse(json_util::dump(w.tokenizer, what), dir + "/tokenizer.json", OP), {}, {}, {}};
    s.tcfg = JsonFile::parse(json_util::dump(w.config, what), dir + "/tokenizer_config.json", OP);
    const HFTokenizer got = read_sources(s, ReadOptions{v.pre, false});
    const json ext = build_extension(v, got.vocab, w, what);
    if (!ext.empty()) w.config[EXT_KEY] = ext;
    {
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) fail("%s: %s: cannot create the directory: %s", OP, dir.c_str(), ec.message().c_str());
    }
    json_util::write_file_atomic(dir + "/tokenizer.json", json_util::dump(w.tokenizer, dir + "/tokenizer.json"));
    json_util::write_file_atomic(dir + "/tokenizer_config.json",
                                 json_util::dump(w.config, dir + "/tokenizer_config.json"));
}

// ---- GGUF ---------------------------------------------------------------------------------------

namespace {

// A special id as llama.cpp's writer stores it: UINT32.
void set_id(GGUFWriter& w, const char* key, const std::optional<int64_t>& id) {
    if (!id) return;
    if (*id < 0 || *id > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
        fail("gguf vocab: %s = %" PRId64 " does not fit UINT32", key, *id);
    w.set(key, GGUFValue::u32(static_cast<uint32_t>(*id)));
}

} // namespace

void add_vocab_kv(const VocabData& v, const std::string& chat_template, GGUFWriter& w) {
    // Keys in the order llama.cpp's converter writes them: the vocab, then SpecialVocab's merges,
    // ids, add_* flags and chat template.
    w.set("tokenizer.ggml.model", GGUFValue::string(v.model));
    if (!v.pre.empty()) w.set("tokenizer.ggml.pre", GGUFValue::string(v.pre));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(v.tokens));
    if (!v.scores.empty()) w.set("tokenizer.ggml.scores", GGUFValue::f32_array(v.scores));
    if (!v.token_types.empty()) w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(v.token_types));
    if (!v.merges.empty()) w.set("tokenizer.ggml.merges", GGUFValue::str_array(v.merges));
    set_id(w, "tokenizer.ggml.bos_token_id", v.bos);
    set_id(w, "tokenizer.ggml.eos_token_id", v.eos);
    set_id(w, "tokenizer.ggml.unknown_token_id", v.unk);
    set_id(w, "tokenizer.ggml.seperator_token_id", v.sep);
    set_id(w, "tokenizer.ggml.padding_token_id", v.pad);
    set_id(w, "tokenizer.ggml.mask_token_id", v.mask);
    set_id(w, "tokenizer.ggml.eot_token_id", v.eot);
    set_id(w, "tokenizer.ggml.eom_token_id", v.eom);
    set_id(w, "tokenizer.ggml.fim_pre_token_id", v.fim_pre);
    set_id(w, "tokenizer.ggml.fim_suf_token_id", v.fim_suf);
    set_id(w, "tokenizer.ggml.fim_mid_token_id", v.fim_mid);
    set_id(w, "tokenizer.ggml.fim_pad_token_id", v.fim_pad);
    set_id(w, "tokenizer.ggml.fim_rep_token_id", v.fim_rep);
    set_id(w, "tokenizer.ggml.fim_sep_token_id", v.fim_sep);
    if (v.add_bos) w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(*v.add_bos));
    if (v.add_eos) w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(*v.add_eos));
    if (v.add_space_prefix) w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(*v.add_space_prefix));
    if (!chat_template.empty()) w.set("tokenizer.chat_template", GGUFValue::string(chat_template));
}

VocabData vocab_data_from_gguf(const GGUFFile& f) { return tok::read_vocab_data(f); }

std::string chat_template_from_gguf(const GGUFFile& f) { return f.get_str("tokenizer.chat_template", ""); }

} // namespace slm::hf
