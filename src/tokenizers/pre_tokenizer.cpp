// tokenizers/pre_tokenizer.cpp - see pre_tokenizer.h.
//
// llama.cpp runs each regex with std::regex over a "collapsed" copy of the text when the regex
// names a Unicode category: one byte per code point, ASCII kept, every other code point replaced
// by a byte standing for its category (or 0x0B for white space), and each \p{..} rewritten into a
// class of that byte plus the category's ASCII members. Regexes without categories run on the
// code points themselves, with non-ASCII white space turned into 0x0B. We do the same and hand
// the result to PCRE2, so quirks of that scheme carry over exactly: \p{Lu}, \p{Ll}, ... all mean
// \p{L}; '~' is not in \p{S}; \s, \d, \w and \b are ASCII-only on the rewritten text.
// The hand-written splitters llama.cpp uses for the GPT-2 and Llama 3 regexes agree with those
// regexes on every input, so PCRE2 runs the regexes; Kimi-K2's and AFMoE's splitters differ
// from any regex and are reproduced as code.
#include "tokenizers/pre_tokenizer.h"

#include "slm/error.h"
#include "tokenizers/unicode.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace slm::tok {

namespace {

// ---- the regex lists of llm_tokenizer_bpe ---------------------------------------------------

// Markers for the two splitters that are code rather than a regex.
constexpr const char* KIMI_K2_SPLITTER = "\\p{Han}+";
constexpr const char* AFMOE_DIGITS_SPLITTER = "\\p{AFMoE_digits}";

#define SLM_CONTRACTIONS R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))re"

const std::string RE_GPT2 = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
const std::string RE_LLAMA3 =
    SLM_CONTRACTIONS R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const std::string RE_QWEN2 =
    SLM_CONTRACTIONS R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const std::string RE_DEEPSEEK3_MAIN =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
const std::string RE_O200K_LETTERS =  // GPT-4o's upper/lower-case letter runs, spelled for llama.cpp's \p{L}
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+)re" SLM_CONTRACTIONS
    R"re(?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*)re" SLM_CONTRACTIONS "?";
const std::string RE_O200K_LETTERS_MARKS =
    R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+)re" SLM_CONTRACTIONS
    R"re(?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*)re" SLM_CONTRACTIONS "?";
const std::string RE_CASED_LETTERS =  // \p{Lu} etc. as llama.cpp reads them (all \p{L})
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)re" SLM_CONTRACTIONS
    R"re(?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)re" SLM_CONTRACTIONS "?";
const std::string RE_BLOOM = R"re( ?[^(\s|.,!?…。，、।۔،)]+)re";
const std::string RE_SPLIT_LINES = R"re([^\n]+|[\n]+)re";
const std::string RE_TINY_AYA_DIGITS = R"re(\d{1,3}(?=(?:\d{3})*\b))re";
// The same regex as libstdc++'s std::regex evaluates it for a match starting at the very start of
// a segment (its regex_search sets match_prev_avail only from the second position on): the
// lookahead runs as a sub-match that then cannot see the character before it, so a \b at the
// lookahead's start is a boundary exactly when a word character follows.
const std::string RE_TINY_AYA_DIGITS_FIRST = R"re(\d{1,3}(?=(?:\d{3})+\b|\w))re";

std::vector<std::string> regexes_for(PreType t, bool& byte_encode) {
    byte_encode = true;
    switch (t) {
    case PreType::Llama3:
    case PreType::Dbrx:
    case PreType::Smaug:
    case PreType::Chatglm4:
        return {RE_LLAMA3};
    case PreType::Jais2:
        return {SLM_CONTRACTIONS
                R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})re"};
    case PreType::DeepseekLlm:
        return {
            "[\r\n]",
            R"re(\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\x{1F7D}ᾀ-ᾴᾶ-ᾼ\x{1FBE}ῂ-ῄῆ-ῌῐ-\x{1FD3}ῖ-\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\x{2126}ℨ\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+)re",
            R"re(\s?[!-/:-~！-／：-～‘-‟　-。]+)re",
            R"re(\s+$)re",
            R"re([一-龥ࠀ-一가-퟿]+)re",
            R"re(\p{N}+)re",
        };
    case PreType::Deepseek3Llm:
    case PreType::HunyuanDense:
    case PreType::JoyaiLlm:
    case PreType::HyV4:
        return {R"re(\p{N}{1,3})re", R"re([一-龥぀-ゟ゠-ヿ]+)re", RE_DEEPSEEK3_MAIN};
    case PreType::Spark25:
        return {
            R"re(\p{N}{1,3})re",
            R"re([一-龥぀-ゟ゠-ヿ]+)re",
            R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+)re",
            R"re(\p{N})re",
        };
    case PreType::Youtu:
        return {
            R"re([가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+)re",
            R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)re" SLM_CONTRACTIONS
            R"re(?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)re" SLM_CONTRACTIONS
            R"re(?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re",
        };
    case PreType::DeepseekCoder:
        return {"[\r\n]", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", R"re([一-龥ࠀ-一가-퟿]+)re", R"re(\p{N})re"};
    case PreType::Falcon:
        return {R"re([\p{P}\$\+<=>\^~\|`]+)re", RE_GPT2, R"re([0-9][0-9][0-9])re"};
    case PreType::Starcoder:
    case PreType::Refact:
    case PreType::CommandR:
    case PreType::Smollm:
    case PreType::Codeshell:
    case PreType::Exaone:
    case PreType::Minerva:
    case PreType::Mellum2:
        return {R"re(\p{N})re", RE_GPT2};
    case PreType::Gpt2:
    case PreType::Mpt:
    case PreType::Olmo:
    case PreType::Jais:
    case PreType::Trillion:
    case PreType::GraniteDocling:
        return {RE_GPT2};
    case PreType::Stablelm2:
    case PreType::Qwen2:
    case PreType::Hunyuan:
    case PreType::SolarOpen:
        return {RE_QWEN2};
    case PreType::Qwen35:
        return {SLM_CONTRACTIONS
                R"re(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::Poro:
    case PreType::Bloom:
    case PreType::Gpt3Finnish:
        return {RE_BLOOM};
    case PreType::Viking:
        return {RE_BLOOM, R"re(\p{N})re"};
    case PreType::Tekken:
        return {R"re([^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::Chameleon:
        return {
            R"re(<sentinel:[0-9]+>)re",
            R"re((IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z)re",
            R"re(([\t\n]|    |  ))re",
            R"re(\p{N})re",
            R"re([\p{P}!-/:-@\[-`{-~])re",
            RE_GPT2,
        };
    case PreType::Gpt4o:
    case PreType::MinimaxM2:
        return {RE_O200K_LETTERS + R"re(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::GraniteEmbMulti:
        return {RE_O200K_LETTERS_MARKS + R"re(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::TinyAya:
        return {RE_TINY_AYA_DIGITS,
                RE_CASED_LETTERS + R"re(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::KimiK2:
        return {KIMI_K2_SPLITTER};
    case PreType::Superbpe:
        return {R"re(\p{N}+)re", R"re((?=(\d{3})+(?!\d)))re"};
    case PreType::Bailingmoe:
        return {R"re('(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)re"};
    case PreType::SeedCoder:
        return {SLM_CONTRACTIONS
                R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::Ufakzeka:
        return {R"re([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::Grok2:
        return {RE_QWEN2};
    case PreType::Afmoe:
        return {
            AFMOE_DIGITS_SPLITTER,
            R"re([一-鿿㐀-䶿\x{F900}-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+)re",
            RE_DEEPSEEK3_MAIN,
        };
    case PreType::Laguna:
        return {RE_SPLIT_LINES, RE_QWEN2};
    case PreType::ExaoneMoe:
        return {SLM_CONTRACTIONS
                R"re(|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)re"};
    case PreType::Gemma4:
    case PreType::SarvamMoe:
        byte_encode = false;  // SPM-style BPE on raw UTF-8 with U+2581 for spaces
        return {RE_SPLIT_LINES};
    case PreType::Minicpm5:
        return {R"re(\p{N}{1,3})re",
                SLM_CONTRACTIONS
                R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re"};
    case PreType::Whitespace:
        byte_encode = false;
        return {R"re(\S+)re"};
    case PreType::Default:
        break;
    }
    return {R"re([\p{P}\$\+<=>\^~\|]+)re", RE_GPT2, R"re(\p{N}+)re", R"re([0-9][0-9][0-9])re"};
}

#undef SLM_CONTRACTIONS

// ---- the name table of llama_vocab::impl::load ----------------------------------------------

struct PreName {
    const char* name;
    PreConfig config;
};

PreConfig cfg(PreType t) { return PreConfig{t}; }
PreConfig keep_spaces(PreType t) {
    PreConfig c{t};
    c.clean_spaces = false;
    return c;
}

const std::vector<PreName>& pre_names() {
    static const std::vector<PreName> names = [] {
        std::vector<PreName> v;
        auto add = [&](std::initializer_list<const char*> ns, PreConfig c) {
            for (const char* n : ns) v.push_back({n, c});
        };
        add({"default"}, cfg(PreType::Default));
        {
            PreConfig c = cfg(PreType::Minicpm5);
            c.ignore_merges = true;
            add({"minicpm5"}, c);
        }
        {
            PreConfig c = cfg(PreType::Llama3);
            c.ignore_merges = true;
            c.add_bos = true;
            add({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                 "jina-v5-nano"},
                c);
        }
        add({"deepseek-llm"}, keep_spaces(PreType::DeepseekLlm));
        add({"deepseek-coder"}, keep_spaces(PreType::DeepseekCoder));
        add({"deepseek-v3"}, keep_spaces(PreType::Deepseek3Llm));
        add({"spark2_5"}, keep_spaces(PreType::Spark25));
        {
            PreConfig c = keep_spaces(PreType::Youtu);
            c.ignore_merges = true;
            add({"youtu"}, c);
        }
        add({"falcon"}, cfg(PreType::Falcon));
        add({"mpt"}, cfg(PreType::Mpt));
        add({"starcoder"}, cfg(PreType::Starcoder));
        add({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0", "mellum",
             "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "exaone4"},
            cfg(PreType::Gpt2));
        add({"jais-2"}, cfg(PreType::Jais2));
        {
            PreConfig c = cfg(PreType::Gemma4);
            c.escape_whitespaces = true;
            add({"gemma4", "granite-embed-multi-311m"}, c);
        }
        {
            PreConfig c = keep_spaces(PreType::SarvamMoe);
            c.escape_whitespaces = true;
            add({"sarvam-moe"}, c);
        }
        add({"whitespace"}, cfg(PreType::Whitespace));
        add({"refact"}, cfg(PreType::Refact));
        add({"command-r"}, keep_spaces(PreType::CommandR));
        add({"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2"}, keep_spaces(PreType::Qwen2));
        add({"qwen35"}, keep_spaces(PreType::Qwen35));
        add({"stablelm2"}, cfg(PreType::Stablelm2));
        add({"olmo"}, cfg(PreType::Olmo));
        add({"dbrx"}, cfg(PreType::Dbrx));
        add({"smaug-bpe"}, cfg(PreType::Smaug));
        add({"poro-chat"}, keep_spaces(PreType::Poro));
        {
            PreConfig c = cfg(PreType::Chatglm4);
            c.no_bos_token = true;
            add({"glm4", "chatglm-bpe"}, c);
        }
        add({"viking"}, keep_spaces(PreType::Viking));
        add({"jais"}, cfg(PreType::Jais));
        {
            PreConfig c = keep_spaces(PreType::Tekken);
            c.ignore_merges = true;
            c.add_bos = true;
            add({"tekken"}, c);
        }
        add({"smollm"}, keep_spaces(PreType::Smollm));
        add({"codeshell"}, cfg(PreType::Codeshell));
        add({"bloom"}, cfg(PreType::Bloom));
        add({"gpt3-finnish"}, cfg(PreType::Gpt3Finnish));
        add({"exaone"}, cfg(PreType::Exaone));
        add({"exaone-moe"}, cfg(PreType::ExaoneMoe));
        {
            PreConfig c = keep_spaces(PreType::Chameleon);
            c.add_bos = true;
            add({"chameleon"}, c);
        }
        add({"minerva-7b"}, cfg(PreType::Minerva));
        add({"megrez"}, cfg(PreType::Qwen2));
        add({"gpt-4o", "llama4", "kanana2", "talkie"}, keep_spaces(PreType::Gpt4o));
        {
            PreConfig c = keep_spaces(PreType::GraniteEmbMulti);
            c.ignore_merges = true;
            add({"granite-embed-multi-97m"}, c);
        }
        add({"tiny_aya", "cohere2moe"}, keep_spaces(PreType::TinyAya));
        add({"superbpe"}, keep_spaces(PreType::Superbpe));
        add({"trillion"}, keep_spaces(PreType::Trillion));
        add({"granite-docling"}, keep_spaces(PreType::GraniteDocling));
        add({"bailingmoe", "bailingmoe2", "llada-moe"}, keep_spaces(PreType::Bailingmoe));
        add({"seed-coder"}, keep_spaces(PreType::SeedCoder));
        add({"hunyuan"}, keep_spaces(PreType::Hunyuan));
        add({"hunyuan-dense"}, keep_spaces(PreType::HunyuanDense));
        add({"hy_v4"}, keep_spaces(PreType::HyV4));
        add({"joyai-llm"}, keep_spaces(PreType::JoyaiLlm));
        add({"kimi-k2"}, keep_spaces(PreType::KimiK2));
        add({"ufakzeka"}, keep_spaces(PreType::Ufakzeka));
        add({"grok-2"}, keep_spaces(PreType::Grok2));
        add({"afmoe"}, keep_spaces(PreType::Afmoe));
        add({"laguna"}, keep_spaces(PreType::Laguna));
        add({"minimax-m2"}, keep_spaces(PreType::MinimaxM2));
        add({"solar-open"}, keep_spaces(PreType::SolarOpen));
        add({"mellum2"}, cfg(PreType::Mellum2));
        return v;
    }();
    return names;
}

// ---- PCRE2 --------------------------------------------------------------------------------

struct CodeDeleter {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct MatchContextDeleter {
    void operator()(pcre2_match_context* m) const { pcre2_match_context_free(m); }
};
struct JitStackDeleter {
    void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};

// Per-thread match state. The JIT stack may grow to 8 MB for lookahead-per-letter patterns
// (GPT-4o's) over long words; past that a match falls back to the interpreter.
struct ThreadMatchState {
    std::unique_ptr<pcre2_match_data, MatchDataDeleter> md{pcre2_match_data_create(32, nullptr)};
    std::unique_ptr<pcre2_jit_stack, JitStackDeleter> jit_stack{pcre2_jit_stack_create(32 * 1024, 8 << 20, nullptr)};
    std::unique_ptr<pcre2_match_context, MatchContextDeleter> mctx{pcre2_match_context_create(nullptr)};
    ThreadMatchState() {
        if (mctx && jit_stack) pcre2_jit_stack_assign(mctx.get(), nullptr, jit_stack.get());
    }
};

ThreadMatchState& thread_match_state() {
    thread_local ThreadMatchState st;
    return st;
}

// Code-point categories as llama.cpp's collapse names them.
enum class Collapse : uint8_t { None, Number, Letter, Punctuation, Mark, Symbol };

Collapse collapse_of_property(std::string_view p) {
    if (p == "\\p{N}") return Collapse::Number;
    if (p == "\\p{L}" || p == "\\p{Lu}" || p == "\\p{Ll}" || p == "\\p{Lt}" || p == "\\p{Lm}" || p == "\\p{Lo}")
        return Collapse::Letter;
    if (p == "\\p{P}") return Collapse::Punctuation;
    if (p == "\\p{M}") return Collapse::Mark;
    if (p == "\\p{S}") return Collapse::Symbol;
    return Collapse::None;
}

constexpr char COLLAPSED_OTHER = '\xD0';
constexpr char COLLAPSED_WHITESPACE = '\x0B';

char collapsed_byte(Collapse c) {
    switch (c) {
    case Collapse::Number: return '\xD1';
    case Collapse::Letter: return '\xD2';
    case Collapse::Punctuation: return '\xD3';
    case Collapse::Mark: return '\xD4';
    case Collapse::Symbol: return '\xD5';
    case Collapse::None: break;
    }
    return COLLAPSED_OTHER;
}

// The ASCII members of each category as llama.cpp lists them (its \p{S} leaves out '~').
const char* collapsed_ascii(Collapse c) {
    switch (c) {
    case Collapse::Number: return "0-9";
    case Collapse::Letter: return "A-Za-z";
    case Collapse::Punctuation: return "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}";
    case Collapse::Mark: return "";
    case Collapse::Symbol: return "\\$\\+<->^`\\|";
    case Collapse::None: break;
    }
    return "";
}

bool uses_categories(const std::string& re) {
    for (const char* p : {"\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}", "\\p{Lu}", "\\p{Ll}", "\\p{Lt}", "\\p{Lm}",
                          "\\p{Lo}"})
        if (re.find(p) != std::string::npos) return true;
    return false;
}

// The rewrite of unicode_regex_split: \p{..} -> [<byte><ascii>] (or its contents inside []).
// Its bracket tracking is deliberately as simple as llama.cpp's.
std::string collapse_regex(const std::string& re) {
    std::string out;
    bool inside = false;
    for (size_t i = 0; i < re.size(); ++i) {
        const char c = re[i];
        if (c == '[' && (i == 0 || re[i - 1] != '\\')) {
            out += '[';
            inside = true;
            continue;
        }
        if (inside && c == ']' && re[i - 1] != '\\') {
            out += ']';
            inside = false;
            continue;
        }
        if (c == '\\' && i + 3 < re.size() && re[i + 1] == 'p' && re[i + 2] == '{') {
            const size_t close = re.find('}', i + 3);
            if (close != std::string::npos && close <= i + 10) {
                const Collapse cat = collapse_of_property(std::string_view(re).substr(i, close - i + 1));
                if (cat != Collapse::None) {
                    if (!inside) out += '[';
                    out += collapsed_byte(cat);
                    out += collapsed_ascii(cat);
                    if (!inside) out += ']';
                    i = close;
                    continue;
                }
            }
        }
        out += c;
    }
    return out;
}

Collapse collapse_of_flags(CptFlags f) {
    switch (f.category) {
    case CptCategory::Number: return Collapse::Number;
    case CptCategory::Letter: return Collapse::Letter;
    case CptCategory::Punctuation: return Collapse::Punctuation;
    case CptCategory::Mark: return Collapse::Mark;
    case CptCategory::Symbol: return Collapse::Symbol;
    default: return Collapse::None;
    }
}

} // namespace

// ---- one compiled regex ---------------------------------------------------------------------

struct PreTokenizer::Regex {
    enum class Kind { Collapsed, Wide, KimiK2, AfmoeDigits } kind = Kind::Wide;
    std::string source;
    std::unique_ptr<pcre2_code, CodeDeleter> code;
    std::unique_ptr<pcre2_code, CodeDeleter> first_code;  // at a segment's start, before any match

    explicit Regex(const std::string& re) : source(re) {
        if (re == KIMI_K2_SPLITTER) {
            kind = Kind::KimiK2;
            return;
        }
        if (re == AFMOE_DIGITS_SPLITTER) {
            kind = Kind::AfmoeDigits;
            return;
        }
        code = compile(re);
        if (re == RE_TINY_AYA_DIGITS) first_code = compile(RE_TINY_AYA_DIGITS_FIRST);
    }

    std::unique_ptr<pcre2_code, CodeDeleter> compile(const std::string& re) {
        std::string pattern = re;
        uint32_t options = PCRE2_DOLLAR_ENDONLY;
        if (uses_categories(re)) {
            for (uint32_t cpt : cpts_from_utf8(re))
                if (cpt >= 128)
                    fail("tokenizer: regex '%s' mixes Unicode categories and non-ASCII characters, which llama.cpp "
                         "rejects",
                         re.c_str());
            kind = Kind::Collapsed;
            pattern = collapse_regex(re);
        } else {
            kind = Kind::Wide;
            options |= PCRE2_UTF;
        }
        std::unique_ptr<pcre2_compile_context, void (*)(pcre2_compile_context*)> cctx(
            pcre2_compile_context_create(nullptr), pcre2_compile_context_free);
        // ECMAScript's '.' stops at \r as well as \n.
        pcre2_set_newline(cctx.get(), PCRE2_NEWLINE_ANYCRLF);
        int err = 0;
        PCRE2_SIZE err_off = 0;
        pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err,
                                      &err_off, cctx.get());
        if (!c) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            fail("tokenizer: regex '%s' does not compile at offset %zu: %s", re.c_str(), static_cast<size_t>(err_off),
                 reinterpret_cast<const char*>(msg));
        }
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // optional: the interpreter runs if JIT is unavailable
        return std::unique_ptr<pcre2_code, CodeDeleter>(c);
    }

    // One match of the subject [0, n) at or after `start`; false when there is none (or PCRE2
    // gives up, which then ends the splitting of this segment like a missing match would).
    bool match(const pcre2_code* re, const char* s, size_t n, size_t start, uint32_t opts, size_t& mb,
               size_t& me) const {
        ThreadMatchState& st = thread_match_state();
        int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(s), n, start, opts | PCRE2_NO_UTF_CHECK, st.md.get(),
                             st.mctx.get());
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(s), n, start,
                             opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, st.md.get(), st.mctx.get());
        if (rc < 0) return false;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.md.get());
        mb = ov[0];
        me = ov[1];
        return true;
    }

    // std::regex_iterator over one segment: pieces between matches become pieces of their own,
    // an empty match only marks a boundary (and is kept as an empty piece, as llama.cpp does).
    // `utf8` says whether positions must advance by whole UTF-8 characters.
    void split_segment(const char* s, size_t n, bool utf8, std::vector<size_t>& out_bytes) const {
        size_t start = 0, last_end = 0;
        bool prev_empty = false, any = false;
        while (true) {
            size_t mb = 0, me = 0;
            bool found = false;
            if (first_code && !any) {
                // libstdc++ tries the segment's first position without match_prev_avail, then the
                // rest with it.
                found = match(first_code.get(), s, n, 0, PCRE2_ANCHORED, mb, me);
                if (!found && n > 0) found = match(code.get(), s, n, utf8 ? std::min(utf8_len(s[0]), n) : 1, 0, mb, me);
            } else if (prev_empty) {
                if (start >= n) break;
                found = match(code.get(), s, n, start, PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED, mb, me);
                if (!found) {
                    start += utf8 ? std::min(utf8_len(s[start]), n - start) : 1;
                    found = match(code.get(), s, n, start, 0, mb, me);
                }
            } else {
                found = match(code.get(), s, n, start, 0, mb, me);
            }
            if (!found) break;
            any = true;
            if (mb > last_end) out_bytes.push_back(mb - last_end);
            out_bytes.push_back(me - mb);
            last_end = me;
            start = me;
            prev_empty = me == mb;
        }
        if (last_end < n) out_bytes.push_back(n - last_end);
    }
};

namespace {

// The text in the three forms the regexes need, built on demand.
struct SplitText {
    std::vector<uint32_t> cpts;
    std::vector<CptFlags> flags;   // for the code splitters and the collapse
    std::string collapsed;         // one byte per code point
    std::string wide;              // UTF-8 of the code points, white space -> 0x0B
    std::vector<size_t> wide_off;  // byte offset of each code point in `wide`, plus the end

    void need_flags() {
        if (!flags.empty() || cpts.empty()) return;
        flags.resize(cpts.size());
        for (size_t i = 0; i < cpts.size(); ++i) flags[i] = cpt_flags(cpts[i]);
    }
    void need_collapsed() {
        if (!collapsed.empty() || cpts.empty()) return;
        need_flags();
        collapsed.resize(cpts.size());
        for (size_t i = 0; i < cpts.size(); ++i) {
            if (cpts[i] < 128) {
                collapsed[i] = static_cast<char>(cpts[i]);
            } else if (flags[i].whitespace) {
                collapsed[i] = COLLAPSED_WHITESPACE;
            } else {
                collapsed[i] = collapsed_byte(collapse_of_flags(flags[i]));
            }
        }
    }
    void need_wide() {
        if (!wide_off.empty()) return;
        wide.reserve(cpts.size() + cpts.size() / 2);
        wide_off.resize(cpts.size() + 1);
        for (size_t i = 0; i < cpts.size(); ++i) {
            wide_off[i] = wide.size();
            uint32_t c = cpts[i];
            if (c >= 0x80 && cpt_flags(c).whitespace) {
                c = 0x0B;
            } else if (c > CPT_MAX || (c >= 0xD800 && c <= 0xDFFF)) {
                // Not encodable for PCRE2; no regex of the tables treats these apart from U+FFFD.
                c = CPT_REPLACEMENT;
            }
            append_utf8(wide, c);
        }
        wide_off[cpts.size()] = wide.size();
    }
};

// Kimi-K2's hand-written splitter (unicode_regex_split_custom_kimi_k2): Han runs, then words of
// non-Han letters with an optional leading non-letter and trailing contraction, then the
// Llama 3 rules for numbers, punctuation and white space.
std::vector<size_t> split_kimi_k2(const SplitText& t, const std::vector<size_t>& offsets) {
    std::vector<size_t> out;
    out.reserve(offsets.size());
    size_t seg_start = 0;
    for (size_t seg_len : offsets) {
        const size_t ini = seg_start, end = seg_start + seg_len;
        seg_start = end;
        constexpr uint32_t OUT = 0xFFFFFFFF;
        auto cpt = [&](size_t p) { return p >= ini && p < end ? t.cpts[p] : OUT; };
        auto in = [&](size_t p) { return p >= ini && p < end; };
        auto letter = [&](size_t p) { return in(p) && t.flags[p].is_letter(); };
        auto number = [&](size_t p) { return in(p) && t.flags[p].is_number(); };
        auto space = [&](size_t p) { return in(p) && t.flags[p].whitespace; };
        auto han = [&](size_t p) { return in(p) && cpt_is_han(t.cpts[p]); };
        auto lower = [](uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
        size_t prev = ini;
        auto emit = [&](size_t e) {
            if (e > prev) out.push_back(e - prev);
            prev = e;
        };
        for (size_t pos = ini; pos < end;) {
            const uint32_t c = cpt(pos);
            if (han(pos)) {
                while (han(pos)) ++pos;
                emit(pos);
                continue;
            }
            const bool lead_ok = !(c == '\r' || c == '\n' || letter(pos) || number(pos));
            if ((letter(pos) && !han(pos)) || (lead_ok && letter(pos + 1) && !han(pos + 1))) {
                const size_t word_start = pos;
                if (lead_ok) ++pos;
                bool any = false;
                while (letter(pos) && !han(pos)) {
                    any = true;
                    ++pos;
                }
                if (any) {
                    if (cpt(pos) == '\'' && pos + 1 < end) {
                        const uint32_t n1 = lower(cpt(pos + 1));
                        if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                            pos += 2;
                        } else if (pos + 2 < end) {
                            const uint32_t n2 = lower(cpt(pos + 2));
                            if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l'))
                                pos += 3;
                        }
                    }
                    emit(pos);
                    continue;
                }
                pos = word_start;
            }
            if (number(pos)) {
                size_t group = pos;
                while (number(pos)) {
                    if (++pos - group >= 3) {
                        emit(pos);
                        group = pos;
                    }
                }
                emit(pos);
                continue;
            }
            const size_t q = c == ' ' ? pos + 1 : pos;
            if (in(q) && !(space(q) || letter(q) || number(q))) {
                pos = q;
                while (in(pos) && !(space(pos) || letter(pos) || number(pos))) ++pos;
                while (cpt(pos) == '\r' || cpt(pos) == '\n') ++pos;
                emit(pos);
                continue;
            }
            size_t n_space = 0, last_newline_end = 0;
            while (space(pos + n_space)) {
                const uint32_t c2 = cpt(pos + n_space);
                if (c2 == '\r' || c2 == '\n') last_newline_end = pos + n_space + 1;
                ++n_space;
            }
            if (last_newline_end > 0) {
                pos = last_newline_end;
            } else if (n_space > 1 && in(pos + n_space)) {
                pos += n_space - 1;
            } else if (n_space > 0) {
                pos += n_space;
            } else {
                ++pos;
            }
            emit(pos);
        }
    }
    return out;
}

// AFMoE's digit splitter (unicode_regex_split_custom_afmoe): a digit run is cut so the groups of
// three align to its end. Like llama.cpp, text before a run is not cut off: it joins the run's
// first group, and whatever follows the last run is one piece.
std::vector<size_t> split_afmoe_digits(const SplitText& t, const std::vector<size_t>& offsets) {
    std::vector<size_t> out;
    out.reserve(offsets.size());
    size_t seg_start = 0;
    for (size_t seg_len : offsets) {
        const size_t ini = seg_start, end = seg_start + seg_len;
        seg_start = end;
        size_t prev = ini;
        auto emit = [&](size_t e) {
            if (e > prev) out.push_back(e - prev);
            prev = e;
        };
        for (size_t pos = ini; pos < end;) {
            if (!t.flags[pos].is_number()) {
                ++pos;
                continue;
            }
            const size_t run_start = pos;
            while (pos < end && t.flags[pos].is_number()) ++pos;
            const size_t n_digits = pos - run_start;
            size_t cur = run_start;
            if (n_digits % 3) {
                cur += n_digits % 3;
                emit(cur);
            }
            while (cur < run_start + n_digits) {
                cur += 3;
                emit(cur);
            }
        }
        if (prev < end) emit(end);
    }
    return out;
}

} // namespace

// ---- PreTokenizer ---------------------------------------------------------------------------

std::optional<PreConfig> pre_config(std::string_view name) {
    if (name.empty()) return cfg(PreType::Default);
    for (const PreName& p : pre_names())
        if (name == p.name) return p.config;
    return std::nullopt;
}

std::vector<std::string> known_pre_names() {
    std::vector<std::string> out;
    for (const PreName& p : pre_names()) out.emplace_back(p.name);
    return out;
}

PreTokenizer::PreTokenizer(PreType type) {
    for (const std::string& re : regexes_for(type, byte_encode_)) regexes_.push_back(std::make_unique<Regex>(re));
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

namespace {

std::vector<size_t> apply_regex(const PreTokenizer::Regex& re, SplitText& t, const std::vector<size_t>& offsets) {
    using Kind = PreTokenizer::Regex::Kind;
    switch (re.kind) {
    case Kind::KimiK2:
        t.need_flags();
        return split_kimi_k2(t, offsets);
    case Kind::AfmoeDigits:
        t.need_flags();
        return split_afmoe_digits(t, offsets);
    case Kind::Collapsed: {
        t.need_collapsed();
        std::vector<size_t> out;
        out.reserve(offsets.size());
        size_t start = 0;
        for (size_t len : offsets) {
            re.split_segment(t.collapsed.data() + start, len, false, out);
            start += len;
        }
        return out;
    }
    case Kind::Wide: {
        t.need_wide();
        std::vector<size_t> out, bytes;
        out.reserve(offsets.size());
        size_t start = 0;
        for (size_t len : offsets) {
            const size_t b0 = t.wide_off[start], b1 = t.wide_off[start + len];
            bytes.clear();
            re.split_segment(t.wide.data() + b0, b1 - b0, true, bytes);
            // Byte lengths back to code-point counts: pieces always end on character boundaries.
            size_t cpt = start, byte = b0;
            for (size_t nb : bytes) {
                const size_t piece_start = cpt;
                byte += nb;
                while (t.wide_off[cpt] < byte) ++cpt;
                out.push_back(cpt - piece_start);
            }
            start += len;
        }
        return out;
    }
    }
    return offsets;
}

} // namespace

std::vector<size_t> PreTokenizer::piece_lengths(std::string_view text) const {
    SplitText t;
    t.cpts = cpts_from_utf8(text);
    std::vector<size_t> offsets = {t.cpts.size()};
    for (const auto& re : regexes_) offsets = apply_regex(*re, t, offsets);
    return offsets;
}

std::vector<std::string> PreTokenizer::regex_list(PreType type) {
    bool byte_encode = true;
    return regexes_for(type, byte_encode);
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
    SplitText t;
    t.cpts = cpts_from_utf8(text);
    std::vector<size_t> offsets = {t.cpts.size()};
    for (const auto& re : regexes_) offsets = apply_regex(*re, t, offsets);

    std::vector<std::string> words;
    words.reserve(offsets.size());
    std::string utf8;
    size_t start = 0;
    for (size_t len : offsets) {
        utf8.clear();
        for (size_t i = start; i < start + len; ++i) append_utf8(utf8, t.cpts[i]);
        start += len;
        if (!byte_encode_) {
            words.push_back(utf8);
            continue;
        }
        std::string& w = words.emplace_back();
        w.reserve(utf8.size() * 2);
        for (char c : utf8) w += byte_to_utf8(static_cast<uint8_t>(c));
    }
    return words;
}

std::vector<size_t> PreTokenizer::split_offsets(const std::string& regex, std::string_view text) {
    Regex re(regex);
    SplitText t;
    t.cpts = cpts_from_utf8(text);
    return apply_regex(re, t, {t.cpts.size()});
}

} // namespace slm::tok
