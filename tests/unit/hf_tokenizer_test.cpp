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

std::string strip(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\n\r\f\v");
    if (b == std::string::npos) return "";
    const size_t e = s.find_last_not_of(" \t\n\r\f\v");
    return s.substr(b, e - b + 1);
}

// test-tokenizer-0.cpp's format, as tests/unit/tokenizer_test.cpp reads it.
std::map<std::string, std::vector<int32_t>> read_vectors(const std::string& name) {
    const std::string inp = slm::test::read_text(vocab_path(name) + ".inp");
    std::vector<std::string> outs;
    {
        std::istringstream is(slm::test::read_text(vocab_path(name) + ".out"));
        for (std::string line; std::getline(is, line);) outs.push_back(line);
    }
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> ins;
    for (size_t pos = 0; pos < inp.size();) {
        const size_t next = inp.find(sep, pos);
        if (next == std::string::npos) {
            ins.push_back(inp.substr(pos));
            break;
        }
        ins.push_back(inp.substr(pos, next - pos));
        pos = next + sep.size();
    }
    EXPECT_EQ(ins.size(), outs.size()) << name;
    std::map<std::string, std::vector<int32_t>> tests;
    for (size_t i = 0; i < std::min(ins.size(), outs.size()); ++i) {
        std::vector<int32_t> ids;
        std::istringstream is(strip(outs[i]));
        for (int32_t id; is >> id;) ids.push_back(id);
        tests[ins[i]] = ids;
    }
    return tests;
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

} // namespace
