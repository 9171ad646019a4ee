// HF tokenizer files <-> VocabData: round trips of llama.cpp's vocab files through
// tokenizer.json / tokenizer_config.json (then tokenizing llama.cpp's test vectors with the result),
// hand-written tokenizer.json files in each supported form checked against ids derived by hand,
// and malformed inputs.
#include "formats/hf_tokenizer.h"

#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/vocab.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

using slm::Vocab;
using slm::VocabData;
using json = nlohmann::json;
namespace hf = slm::hf;

namespace {

std::string vocab_path(const std::string& name) {
    if (name == "stories260K") return slm::test::model_path("stories260K/stories260K.gguf");
    return slm::test::source_dir() + "/tests/data/vocab/ggml-vocab-" + name + ".gguf";
}

// A fresh directory under the per-process temp dir.
std::string fresh_dir(const std::string& name) {
    static int counter = 0;
    const std::string d = slm::test::temp_dir() + "/hf_tok_" + name + "_" + std::to_string(counter++);
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

std::map<std::string, std::vector<int32_t>> read_vectors(const std::string& name) {
    return slm::test::read_vocab_vectors(vocab_path(name));
}

// Every tokenizer field of VocabData (not name/arch/source, which are the model's).
void expect_same_vocab(const VocabData& a, const VocabData& b, const std::string& what) {
    EXPECT_EQ(a.model, b.model) << what;
    EXPECT_EQ(a.pre, b.pre) << what;
    ASSERT_EQ(a.tokens.size(), b.tokens.size()) << what;
    size_t n_text = 0, n_type = 0, n_score = 0;
    for (size_t i = 0; i < a.tokens.size(); ++i) {
        if (a.tokens[i] != b.tokens[i] && n_text++ < 5)
            ADD_FAILURE() << what << ": token " << i << " '" << a.tokens[i] << "' vs '" << b.tokens[i] << "'";
    }
    ASSERT_EQ(a.token_types.size(), b.token_types.size()) << what;
    for (size_t i = 0; i < a.token_types.size(); ++i)
        if (a.token_types[i] != b.token_types[i] && n_type++ < 5)
            ADD_FAILURE() << what << ": type of " << i << " '" << a.tokens[i] << "' " << a.token_types[i] << " vs "
                          << b.token_types[i];
    ASSERT_EQ(a.scores.size(), b.scores.size()) << what;
    for (size_t i = 0; i < a.scores.size(); ++i)
        if (std::memcmp(&a.scores[i], &b.scores[i], sizeof(float)) != 0 && n_score++ < 5)
            ADD_FAILURE() << what << ": score of " << i << " " << a.scores[i] << " vs " << b.scores[i];
    EXPECT_EQ(n_text + n_type + n_score, 0u) << what;
    EXPECT_TRUE(a.merges == b.merges) << what << ": merges differ (" << a.merges.size() << " vs " << b.merges.size() << ")";
    EXPECT_EQ(a.bos, b.bos) << what;
    EXPECT_EQ(a.eos, b.eos) << what;
    EXPECT_EQ(a.eot, b.eot) << what;
    EXPECT_EQ(a.eom, b.eom) << what;
    EXPECT_EQ(a.unk, b.unk) << what;
    EXPECT_EQ(a.sep, b.sep) << what;
    EXPECT_EQ(a.pad, b.pad) << what;
    EXPECT_EQ(a.mask, b.mask) << what;
    EXPECT_EQ(a.fim_pre, b.fim_pre) << what;
    EXPECT_EQ(a.fim_suf, b.fim_suf) << what;
    EXPECT_EQ(a.fim_mid, b.fim_mid) << what;
    EXPECT_EQ(a.fim_pad, b.fim_pad) << what;
    EXPECT_EQ(a.fim_rep, b.fim_rep) << what;
    EXPECT_EQ(a.fim_sep, b.fim_sep) << what;
    EXPECT_EQ(a.add_bos, b.add_bos) << what;
    EXPECT_EQ(a.add_eos, b.add_eos) << what;
    EXPECT_EQ(a.add_space_prefix, b.add_space_prefix) << what;
}

json read_json(const std::string& path) { return json::parse(slm::test::read_text(path)); }

// ---- round trips of llama.cpp's vocab files --------------------------------------------------

class HFRoundTrip : public ::testing::TestWithParam<std::string> {};

TEST_P(HFRoundTrip, GgufToHfToGguf) {
    const std::string name = GetParam();
    const slm::GGUFFile f = slm::GGUFFile::open(vocab_path(name));
    const VocabData v = hf::vocab_data_from_gguf(f);
    const std::string chat_template = hf::chat_template_from_gguf(f);
    const std::string dir = fresh_dir(name);
    hf::write_hf_tokenizer(v, chat_template, dir);
    EXPECT_FALSE(std::filesystem::exists(dir + "/tokenizer.json.tmp"));
    EXPECT_FALSE(std::filesystem::exists(dir + "/tokenizer_config.json.tmp"));

    hf::HFTokenizer got = hf::read_hf_tokenizer(dir);
    expect_same_vocab(v, got.vocab, name + " via HF files");
    EXPECT_EQ(got.chat_template, chat_template) << name;

    // And on into GGUF keys: the same keys and values as the original file.
    slm::GGUFWriter w;
    hf::add_vocab_kv(got.vocab, got.chat_template, w);
    const std::vector<uint8_t> bytes = w.to_bytes();
    const slm::GGUFFile g = slm::GGUFFile::parse(bytes.data(), bytes.size(), name + " (rewritten)");
    expect_same_vocab(v, hf::vocab_data_from_gguf(g), name + " via GGUF keys");
    EXPECT_EQ(hf::chat_template_from_gguf(g), chat_template);
    for (const auto& [key, val] : f.kv()) {
        if (key.rfind("tokenizer.", 0) != 0) continue;
        const slm::GGUFValue* mine = g.find(key);
        ASSERT_NE(mine, nullptr) << name << ": " << key << " lost";
        EXPECT_TRUE(*mine == val) << name << ": " << key << " = " << mine->to_string() << " vs " << val.to_string();
    }

    // The vocabulary read back tokenizes llama.cpp's test vectors as llama.cpp does.
    if (name == "stories260K") return;
    got.vocab.name = v.name;  // the model's name, which llama.cpp consults for Phi-3's strip flags
    got.vocab.arch = v.arch;
    const Vocab vocab(got.vocab);
    size_t n_pass = 0;
    const auto tests = read_vectors(name);
    for (const auto& [text, expected] : tests) {
        if (vocab.tokenize(text, false, false) == expected) ++n_pass;
        else ADD_FAILURE() << name << ": '" << text << "' tokenizes differently";
    }
    EXPECT_EQ(n_pass, tests.size());
}

INSTANTIATE_TEST_SUITE_P(HFTokenizer, HFRoundTrip,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-coder", "falcon", "starcoder",
                                           "stories260K"));

// ---- hand-written files in each form -----------------------------------------------------------

std::string write_dir(const std::string& name, const json& tokenizer, const json& config = nullptr,
                      const json& model_config = nullptr) {
    const std::string dir = fresh_dir(name);
    write_text(dir + "/tokenizer.json", tokenizer.dump());
    if (!config.is_null()) write_text(dir + "/tokenizer_config.json", config.dump());
    if (!model_config.is_null()) write_text(dir + "/config.json", model_config.dump());
    return dir;
}

json split(const std::string& re) {
    return {{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}};
}
json byte_level(bool use_regex) {
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}
json added(int id, const std::string& content, bool special) {
    return {{"id", id}, {"content", content}, {"special", special}, {"normalized", false},
            {"lstrip", false}, {"rstrip", false}, {"single_word", false}};
}

const std::string LLAMA3_REGEX =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

// Byte-level BPE as Llama 3 ships it: one Split with the case-insensitive contractions, then
// ByteLevel without its own regex; ignore_merges; merges as pairs.
json llama3_style_tokenizer() {
    return {{"version", "1.0"},
            {"added_tokens", {added(6, "<|end|>", true)}},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", {split(LLAMA3_REGEX), byte_level(false)}}}},
            {"decoder", byte_level(true)},
            {"model",
             {{"type", "BPE"},
              {"ignore_merges", true},
              {"vocab", {{"h", 0}, {"i", 1}, {"\u0120", 2}, {"hi", 3}, {"\u0120h", 4}, {"\u0120hi", 5}, {"\u010a", 7}}},
              {"merges", json::array({json::array({"h", "i"}), json::array({"\u0120", "h"}), json::array({"\u0120h", "i"})})}}}};
}

TEST(HFTokenizer, ByteLevelBpeWithSplitRegex) {
    const std::string dir =
        write_dir("bpe", llama3_style_tokenizer(), {{"eos_token", "<|end|>"}, {"add_bos_token", false}});
    const hf::HFTokenizer t = hf::read_hf_tokenizer(dir);
    const VocabData& d = t.vocab;
    EXPECT_EQ(d.model, "gpt2");
    EXPECT_EQ(d.pre, "llama-bpe");  // Llama 3's regex with ignore_merges
    ASSERT_EQ(d.tokens.size(), 8u);
    EXPECT_EQ(d.tokens[5], "\u0120hi");
    EXPECT_EQ(d.tokens[6], "<|end|>");
    EXPECT_EQ(d.tokens[7], "\u010a");
    EXPECT_EQ(d.token_types, (std::vector<int32_t>{1, 1, 1, 1, 1, 1, 3, 1}));
    EXPECT_TRUE(d.scores.empty());
    EXPECT_EQ(d.merges, (std::vector<std::string>{"h i", "\u0120 h", "\u0120h i"}));
    EXPECT_EQ(d.eos, 6);
    EXPECT_FALSE(d.bos.has_value());
    EXPECT_EQ(d.add_bos, false);
    EXPECT_FALSE(d.add_eos.has_value());
    EXPECT_EQ(t.chat_template, "");

    const Vocab v(d);
    // "hi hi" splits into "hi" and " hi"; both are whole tokens.
    EXPECT_EQ(v.tokenize("hi hi", true, false), (std::vector<int32_t>{3, 5}));
    // "hih": h i h -> merge "h i" -> hi h.
    EXPECT_EQ(v.tokenize("hih", false, false), (std::vector<int32_t>{3, 0}));
    EXPECT_EQ(v.tokenize("ih", false, false), (std::vector<int32_t>{1, 0}));
    // The control token only with parse_special.
    EXPECT_EQ(v.tokenize("hi<|end|>", false, true), (std::vector<int32_t>{3, 6}));
}

TEST(HFTokenizer, PreNameFromRegexes) {
    auto pre_of = [](const json& pre_tokenizer, bool ignore_merges, const json& config) {
        json t = llama3_style_tokenizer();
        t["pre_tokenizer"] = pre_tokenizer;
        t["model"]["ignore_merges"] = ignore_merges;
        return hf::read_hf_tokenizer(write_dir("pre", t, config)).vocab.pre;
    };
    // GPT-2's own file: ByteLevel running its built-in regex.
    EXPECT_EQ(pre_of(byte_level(true), false, nullptr), "gpt-2");
    // StarCoder / SmolLM: single digits, then GPT-2; they differ in clean_up_tokenization_spaces.
    const json digits_gpt2 = {{"type", "Sequence"},
                              {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
    EXPECT_EQ(pre_of(digits_gpt2, false, {{"clean_up_tokenization_spaces", true}}), "starcoder");
    EXPECT_EQ(pre_of(digits_gpt2, false, {{"clean_up_tokenization_spaces", false}}), "smollm");
    // Llama 3's regex without ignore_merges: DBRX / cl100k.
    const json llama3 = {{"type", "Sequence"}, {"pretokenizers", {split(LLAMA3_REGEX), byte_level(false)}}};
    EXPECT_EQ(pre_of(llama3, false, nullptr), "dbrx");
    // Qwen2: single digits inside the one regex.
    std::string qwen = LLAMA3_REGEX;
    qwen.replace(qwen.find("\\p{N}{1,3}"), 10, "\\p{N}");
    EXPECT_EQ(pre_of({{"type", "Sequence"}, {"pretokenizers", {split(qwen), byte_level(false)}}}, false,
                     {{"clean_up_tokenization_spaces", false}}),
              "qwen2");
    // GPT-4o (o200k) as HF spells it, with cased-letter classes.
    const std::string o200k =
        R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
    EXPECT_EQ(pre_of({{"type", "Sequence"}, {"pretokenizers", {split(o200k), byte_level(false)}}}, false, nullptr),
              "gpt-4o");
    // An unknown regex is an error naming it.
    try {
        pre_of({{"type", "Sequence"}, {"pretokenizers", {split("[a-z]+"), byte_level(false)}}}, false, nullptr);
        FAIL() << "expected an error";
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("[a-z]+"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("pre_tokenizer"), std::string::npos) << e.what();
    }
}

// SentencePiece as BPE (Llama 2 / TinyLlama form): byte_fallback, Prepend + Replace normalizer.
json spm_bpe_tokenizer() {
    const std::string sp = "\u2581";
    json norm = {{"type", "Sequence"},
                 {"normalizers",
                  {{{"type", "Prepend"}, {"prepend", sp}},
                   {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}}}};
    json post = {{"type", "TemplateProcessing"},
                 {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                 {"pair", json::array()},
                 {"special_tokens", json::object()}};
    return {{"version", "1.0"},
            {"added_tokens", {added(0, "<unk>", true), added(1, "<s>", true), added(2, "</s>", true)}},
            {"normalizer", norm},
            {"pre_tokenizer", nullptr},
            {"post_processor", post},
            {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "ByteFallback"}}, {{"type", "Fuse"}}}}}},
            {"model",
             {{"type", "BPE"},
              {"byte_fallback", true},
              {"fuse_unk", true},
              {"unk_token", "<unk>"},
              {"vocab",
               {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"<0x0A>", 3}, {"<0x21>", 4}, {sp, 5}, {"a", 6}, {"b", 7},
                {sp + "a", 8}, {"ab", 9}, {sp + "ab", 10}, {sp + "b", 11}}},
              {"merges", {sp + " a", "a b", sp + "a b", sp + " b"}}}}};
}

TEST(HFTokenizer, SentencePieceBpeWithByteFallback) {
    const std::string dir = write_dir("spm_bpe", spm_bpe_tokenizer(),
                                      {{"bos_token", "<s>"},
                                       {"eos_token", {{"content", "</s>"}, {"special", true}}},
                                       {"unk_token", "<unk>"},
                                       {"add_bos_token", true},
                                       {"add_eos_token", false},
                                       {"chat_template", json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                                      {{"name", "default"}, {"template", "D"}}})}});
    const hf::HFTokenizer t = hf::read_hf_tokenizer(dir);
    const VocabData& d = t.vocab;
    EXPECT_EQ(d.model, "llama");
    EXPECT_EQ(d.pre, "default");
    ASSERT_EQ(d.tokens.size(), 12u);
    // Added tokens are control (-1000, as llama.cpp scores them); <0xHH> are bytes.
    EXPECT_EQ(d.token_types, (std::vector<int32_t>{3, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1}));
    // Merge-made tokens score minus (1 + the rank of their first merge); the rest 0.
    EXPECT_EQ(d.scores, (std::vector<float>{-1000, -1000, -1000, 0, 0, 0, 0, 0, -1, -2, -3, -4}));
    EXPECT_TRUE(d.merges.empty());
    EXPECT_EQ(d.bos, 1);
    EXPECT_EQ(d.eos, 2);
    EXPECT_EQ(d.unk, 0);
    EXPECT_EQ(d.add_bos, true);
    EXPECT_EQ(d.add_eos, false);
    EXPECT_EQ(t.chat_template, "D");

    const Vocab v(d);
    // "ab ab!" -> "▁ab▁ab!": "▁ a" (rank 0) twice, then "▁a b" (rank 2); "!" falls back to <0x21>.
    EXPECT_EQ(v.tokenize("ab ab!", true, false), (std::vector<int32_t>{1, 10, 10, 4}));
    // "▁aab": "▁ a" before "a b" -> ▁a ab.
    EXPECT_EQ(v.tokenize("aab", false, false), (std::vector<int32_t>{8, 9}));
    EXPECT_EQ(v.tokenize("ba", false, false), (std::vector<int32_t>{11, 6}));
    EXPECT_EQ(v.tokenize("a\n", false, false), (std::vector<int32_t>{8, 3}));
}

TEST(HFTokenizer, Unigram) {
    const std::string sp = "\u2581";
    json tok = {{"version", "1.0"},
                {"added_tokens", {added(1, "<s>", true), added(2, "</s>", true)}},
                {"normalizer", nullptr},
                {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", sp}, {"prepend_scheme", "always"}}},
                {"decoder", {{"type", "Metaspace"}, {"replacement", sp}, {"prepend_scheme", "always"}}},
                {"model",
                 {{"type", "Unigram"},
                  {"unk_id", 0},
                  {"byte_fallback", true},
                  {"vocab",
                   json::array({json::array({"<unk>", 0.0}), json::array({"<s>", 0.0}), json::array({"</s>", 0.0}),
                                json::array({"<0x0A>", 0.0}), json::array({sp, -2.0}), json::array({"a", -3.0}),
                                json::array({"b", -3.0}), json::array({sp + "a", -1.5}), json::array({"ab", -1.0}),
                                json::array({sp + "ab", -4.0}), json::array({"<0x62>", 0.0})})}}}};
    const hf::HFTokenizer t =
        hf::read_hf_tokenizer(write_dir("unigram", tok, {{"bos_token", "<s>"}, {"eos_token", "</s>"}}));
    const VocabData& d = t.vocab;
    EXPECT_EQ(d.model, "llama");
    EXPECT_EQ(d.token_types, (std::vector<int32_t>{2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 6}));
    EXPECT_EQ(d.scores, (std::vector<float>{0, -1000, -1000, 0, -2, -3, -3, -1.5, -1, -4, 0}));
    EXPECT_EQ(d.bos, 1);
    EXPECT_EQ(d.eos, 2);
    EXPECT_FALSE(d.unk.has_value());  // llama.cpp finds ids among added tokens only; the default 0 holds
    const Vocab v(d);
    // SPM merging by score: "▁ab": "ab" (-1) before "▁a" (-1.5), then "▁ab" (-4).
    EXPECT_EQ(v.tokenize("ab", false, false), (std::vector<int32_t>{9}));
    EXPECT_EQ(v.tokenize("a", false, false), (std::vector<int32_t>{7}));
    EXPECT_EQ(v.tokenize("b", true, false), (std::vector<int32_t>{1, 4, 6}));
}

// ---- malformed input ---------------------------------------------------------------------------

// Parses in memory and expects slm::Error whose message names the file and contains `field`.
void expect_error(const std::string& tokenizer, const std::string& config, const std::string& file,
                  const std::string& field, const std::string& model_config = "") {
    try {
        hf::parse_hf_tokenizer(tokenizer, config, model_config, "dir");
        ADD_FAILURE() << "no error for field " << field;
    } catch (const slm::Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("dir/" + file), std::string::npos) << msg;
        EXPECT_NE(msg.find(field), std::string::npos) << msg;
    }
}

TEST(HFTokenizer, MalformedInput) {
    const json good = llama3_style_tokenizer();
    ASSERT_NO_THROW(hf::parse_hf_tokenizer(good.dump(), "", "", "dir"));
    auto with = [&](const std::function<void(json&)>& edit) {
        json t = good;
        edit(t);
        return t.dump();
    };
    expect_error("{\"model\": ", "", "tokenizer.json", "invalid JSON");
    expect_error("[1, 2]", "", "tokenizer.json", "(root)");
    expect_error(with([](json& t) { t.erase("model"); }), "", "tokenizer.json", "'model'");
    expect_error(with([](json& t) { t["model"] = "BPE"; }), "", "tokenizer.json", "'model'");
    expect_error(with([](json& t) { t["model"]["type"] = "WordPiece"; }), "", "tokenizer.json", "model.type");
    expect_error(with([](json& t) { t["model"]["type"] = 7; }), "", "tokenizer.json", "model.type");
    expect_error(with([](json& t) { t["model"]["vocab"] = "abc"; }), "", "tokenizer.json", "model.vocab");
    expect_error(with([](json& t) { t["model"]["vocab"]["x"] = "1"; }), "", "tokenizer.json", "model.vocab[\"x\"]");
    expect_error(with([](json& t) { t["model"]["vocab"]["x"] = -1; }), "", "tokenizer.json", "model.vocab[\"x\"]");
    expect_error(with([](json& t) { t["model"]["vocab"]["x"] = int64_t(1) << 40; }), "", "tokenizer.json",
                 "model.vocab[\"x\"]");
    expect_error(with([](json& t) { t["model"]["vocab"]["x"] = 1.5; }), "", "tokenizer.json", "model.vocab[\"x\"]");
    expect_error(with([](json& t) { t["model"]["vocab"]["x"] = 3; }), "", "tokenizer.json", "duplicate id 3");
    // Ids far apart: the holes are refused before anything is allocated for them.
    expect_error(with([](json& t) { t["model"]["vocab"]["x"] = 10000000; }), "", "tokenizer.json", "too many holes");
    expect_error(with([](json& t) { t["model"]["merges"].push_back(json::array({"h", "q"})); }), "",
                 "tokenizer.json", "model.merges[3]");
    expect_error(with([](json& t) { t["model"]["merges"].push_back("hq"); }), "", "tokenizer.json",
                 "model.merges[3]");
    expect_error(with([](json& t) { t["model"]["merges"].push_back(5); }), "", "tokenizer.json", "model.merges[3]");
    expect_error(with([](json& t) { t["model"]["merges"] = json::object(); }), "", "tokenizer.json", "model.merges");
    expect_error(with([](json& t) { t["added_tokens"][0].erase("content"); }), "", "tokenizer.json",
                 "added_tokens[0].content");
    expect_error(with([](json& t) { t["added_tokens"][0]["id"] = "6"; }), "", "tokenizer.json", "added_tokens[0].id");
    expect_error(with([](json& t) { t["added_tokens"].push_back(added(6, "<|other|>", true)); }), "",
                 "tokenizer.json", "duplicate id 6");
    expect_error(with([](json& t) { t["added_tokens"] = 1; }), "", "tokenizer.json", "added_tokens");
    expect_error(with([](json& t) { t["pre_tokenizer"] = {{"type", "Whitespace"}}; }), "", "tokenizer.json",
                 "pre_tokenizer.type");
    expect_error(with([](json& t) { t["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; }), "",
                 "tokenizer.json", "pre_tokenizer.pretokenizers[0].behavior");
    expect_error(with([](json& t) { t["pre_tokenizer"]["pretokenizers"] = 3; }), "", "tokenizer.json",
                 "pre_tokenizer.pretokenizers");
    expect_error(with([](json& t) { t["model"]["ignore_merges"] = "yes"; }), "", "tokenizer.json",
                 "model.ignore_merges");
    // Invalid UTF-8 inside a JSON string.
    {
        std::string bad = good.dump();
        const size_t at = bad.find("<|end|>");
        ASSERT_NE(at, std::string::npos);
        bad[at + 2] = '\xff';
        expect_error(bad, "", "tokenizer.json", "invalid JSON");
    }
    // tokenizer_config.json and config.json.
    expect_error(good.dump(), "[]", "tokenizer_config.json", "(root)");
    expect_error(good.dump(), "{\"bos_token\": ", "tokenizer_config.json", "invalid JSON");
    expect_error(good.dump(), R"({"add_bos_token": "yes"})", "tokenizer_config.json", "add_bos_token");
    expect_error(good.dump(), R"({"added_tokens_decoder": {"x": {"content": "a"}}})", "tokenizer_config.json",
                 "added_tokens_decoder.x");
    expect_error(good.dump(), R"({"added_tokens_decoder": {"9": {"content": 5}}})", "tokenizer_config.json",
                 "added_tokens_decoder.9.content");
    expect_error(good.dump(), R"({"slm_gguf": {"token_types": {"99": 1}}})", "tokenizer_config.json",
                 "slm_gguf.token_types.99");
    expect_error(good.dump(), R"({"slm_gguf": {"scores": [1, 2]}})", "tokenizer_config.json", "slm_gguf.scores");
    expect_error(good.dump(), R"({"slm_gguf": {"n_tokens": 1099511627776}})", "tokenizer_config.json",
                 "slm_gguf.n_tokens");
    expect_error(good.dump(), "{}", "config.json", "vocab_size", R"({"vocab_size": 4})");
    expect_error(good.dump(), "{}", "config.json", "bos_token_id", R"({"bos_token_id": -3})");
    // Deep nesting is refused, not recursed into.
    expect_error(std::string(100000, '[') + std::string(100000, ']'), "", "tokenizer.json", "nested");
    // Unigram: pieces must be [text, score].
    {
        json t = good;
        t["model"] = {{"type", "Unigram"}, {"vocab", json::array({json::array({"a", "x"})})}};
        expect_error(t.dump(), "", "tokenizer.json", "model.vocab[0][1]");
        t["model"]["vocab"] = json::array({json::array({"a", -1.0})});
        t["model"]["unk_id"] = 4;
        expect_error(t.dump(), "", "tokenizer.json", "model.unk_id");
    }
}

TEST(HFTokenizer, ConfigVocabSizePadsAndSpecialIdsFallBack) {
    // config.json: vocab_size pads with [PAD{id}] (UNUSED) and bos/eos ids fill in what
    // tokenizer_config does not name, as llama.cpp's converter does.
    const hf::HFTokenizer t = hf::parse_hf_tokenizer(llama3_style_tokenizer().dump(), R"({"eos_token": "<|end|>"})",
                                                     R"({"vocab_size": 10, "bos_token_id": 3, "eos_token_id": 5})");
    ASSERT_EQ(t.vocab.tokens.size(), 10u);
    EXPECT_EQ(t.vocab.tokens[8], "[PAD8]");
    EXPECT_EQ(t.vocab.token_types[9], 5);
    EXPECT_EQ(t.vocab.bos, 3);
    EXPECT_EQ(t.vocab.eos, 6);  // tokenizer_config wins
}

TEST(HFTokenizer, WriteRefusesWhatHfCannotHold) {
    const std::string dir = fresh_dir("refuse");
    VocabData v;
    v.model = "gpt2";
    v.pre = "gpt-2";
    v.tokens = {"a", "b"};
    v.merges = {"a c"};
    EXPECT_THROW(hf::write_hf_tokenizer(v, "", dir), slm::Error);  // merge names a missing token
    v.merges = {};
    v.pre = "kimi-k2";  // splits by code, no regex for HF to run
    EXPECT_THROW(hf::write_hf_tokenizer(v, "", dir), slm::Error);
    v.model = "t5";
    EXPECT_THROW(hf::write_hf_tokenizer(v, "", dir), slm::Error);
    EXPECT_FALSE(std::filesystem::exists(dir + "/tokenizer.json"));
}

} // namespace
