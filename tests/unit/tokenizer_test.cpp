// Tokenizer tests: llama.cpp's vocab test vectors, the stories260K reference prompts, special
// tokens, UTF-8 streaming, invalid input, malformed metadata, and the pre-tokenizer splits against
// a re-statement of llama.cpp's hand-written GPT-2 / Llama 3 splitters.
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/vocab.h"
#include "test_util.h"
#include "tokenizers/pre_tokenizer.h"
#include "tokenizers/unicode.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

using slm::Vocab;
using slm::VocabData;

namespace {

std::string vocab_path(const std::string& name) {
    return slm::test::source_dir() + "/tests/data/vocab/ggml-vocab-" + name + ".gguf";
}

const Vocab& load_vocab(const std::string& name) {
    static std::map<std::string, Vocab> cache;
    auto it = cache.find(name);
    if (it == cache.end()) {
        slm::GGUFFile f = slm::GGUFFile::open(vocab_path(name));
        it = cache.emplace(name, Vocab::from_gguf(f)).first;
    }
    return it->second;
}

const Vocab& stories_vocab() {
    static const Vocab v = Vocab::from_gguf(slm::GGUFFile::open(slm::test::model_path("stories260K/stories260K.gguf")));
    return v;
}

std::string strip(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\n\r\f\v");
    if (b == std::string::npos) return "";
    const size_t e = s.find_last_not_of(" \t\n\r\f\v");
    return s.substr(b, e - b + 1);
}

std::map<std::string, std::vector<int32_t>> read_vectors(const std::string& name) {
    return slm::test::read_vocab_vectors(vocab_path(name));
}

std::string show(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += std::to_string(id) + " ";
    return s;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabVectors, MatchLlamaCpp) {
    const std::string name = GetParam();
    const Vocab& v = load_vocab(name);
    const auto tests = read_vectors(name);
    ASSERT_FALSE(tests.empty());
    size_t n_pass = 0;
    for (const auto& [text, expected] : tests) {
        const std::vector<int32_t> got = v.tokenize(text, /*add_special=*/false, /*parse_special=*/false);
        if (got == expected) {
            ++n_pass;
        } else {
            ADD_FAILURE() << name << ": '" << text << "'\n expected " << show(expected) << "\n got      " << show(got);
        }
    }
    std::printf("[ vectors  ] %s: %zu/%zu pass\n", name.c_str(), n_pass, tests.size());
}

// detokenize(tokenize(x)) == x wherever the vocab cannot change the text: always for these
// vocabs, except that clean_up_tokenization_spaces (gpt-2, starcoder, falcon) rewrites " ," etc.
TEST_P(VocabVectors, RoundTrip) {
    const std::string name = GetParam();
    const Vocab& v = load_vocab(name);
    const bool cleans = name == "gpt-2" || name == "starcoder" || name == "falcon";
    for (const auto& [text, expected] : read_vectors(name)) {
        if (cleans) {
            bool touched = false;
            for (const char* s : {" ?", " !", " .", " ,", " '"}) touched |= text.find(s) != std::string::npos;
            if (touched) continue;
        }
        EXPECT_EQ(v.detokenize(v.tokenize(text, false, false), false, false), text) << name;
        EXPECT_EQ(v.detokenize(expected, false, false), text) << name;
    }
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, VocabVectors,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "deepseek-coder", "falcon", "starcoder"));

TEST(Tokenizer, VectorsFromManyThreads) {
    // test-tokenizer-0 tokenizes from every thread at once; the vocab must be safe to share.
    const Vocab& v = load_vocab("gpt-2");
    const auto tests = read_vectors("gpt-2");
    std::vector<std::thread> threads;
    std::atomic<int> n_bad{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int rep = 0; rep < 3; ++rep)
                for (const auto& [text, expected] : tests)
                    if (v.tokenize(text, false, false) != expected) ++n_bad;
        });
    for (auto& th : threads) th.join();
    EXPECT_EQ(n_bad.load(), 0);
}

// ---- stories260K ------------------------------------------------------------------------------

TEST(Tokenizer, Stories260KOnceUponATime) {
    const Vocab& v = stories_vocab();
    EXPECT_EQ(v.n_tokens(), 512);
    EXPECT_EQ(v.vocab_type(), slm::VocabType::SPM);
    EXPECT_EQ(v.tokenize("Once upon a time", true, false), (std::vector<int32_t>{1, 403, 407, 261, 378}));
    EXPECT_EQ(v.detokenize({403, 407, 261, 378}, false, false), "Once upon a time");
    // llama_detokenize keeps the dummy space when it removes a leading BOS (remove_special).
    EXPECT_EQ(v.detokenize({1, 403, 407, 261, 378}, true, false), " Once upon a time");
    EXPECT_EQ(v.detokenize({1, 403, 407, 261, 378, 2}, false, true), "<s> Once upon a time</s>");
}

TEST(Tokenizer, Stories260KReferencePrompts) {
    const Vocab& v = stories_vocab();
    std::ifstream is(slm::test::source_dir() + "/tests/data/reference/stories260K/stories260K.f32.jsonl");
    ASSERT_TRUE(is.good());
    int n = 0;
    for (std::string line; std::getline(is, line);) {
        if (strip(line).empty()) continue;
        const nlohmann::json j = nlohmann::json::parse(line);
        const std::string prompt = j.at("prompt").get<std::string>();
        const std::vector<int32_t> expected = j.at("tokens").get<std::vector<int32_t>>();
        EXPECT_EQ(v.tokenize(prompt, true, true), expected) << "prompt '" << prompt << "'";
        ++n;
    }
    EXPECT_GE(n, 6);
}

// ---- special tokens ---------------------------------------------------------------------------

TEST(Tokenizer, ParseSpecialControlTokens) {
    const Vocab& v = load_vocab("phi-3");
    const int32_t user = v.text_to_token("<|user|>"), end = v.text_to_token("<|end|>");
    ASSERT_EQ(user, 32010);
    ASSERT_EQ(end, 32007);
    const auto with = v.tokenize("<|user|>\nHi<|end|>", false, true);
    EXPECT_EQ(with.front(), user);
    EXPECT_NE(std::find(with.begin(), with.end(), end), with.end());
    const auto without = v.tokenize("<|user|>\nHi<|end|>", false, false);
    EXPECT_EQ(std::find(without.begin(), without.end(), user), without.end());
    EXPECT_EQ(v.detokenize(without, false, false), "<|user|>\nHi<|end|>");
    EXPECT_TRUE(v.is_control(user));
    EXPECT_TRUE(v.is_eog(end));  // "<|end|>" ends a Phi-3 turn
    EXPECT_TRUE(v.is_eog(v.eos()));
    EXPECT_FALSE(v.is_eog(user));
    EXPECT_FALSE(v.is_eog(-5));
    EXPECT_EQ(v.token_to_piece(user, false), "");
    EXPECT_EQ(v.token_to_piece(user, true), "<|user|>");
    // Phi-3's special tokens swallow the white space after them; the text then gets the dummy space.
    EXPECT_EQ(v.detokenize(with, false, true), "<|user|> Hi<|end|>");
}

TEST(Tokenizer, SpaceAfterSpecialTokenSpm) {
    // llama.cpp puts SentencePiece's dummy space before text that follows a special token, and the
    // Phi-3 vocab (general.name "Phi3") right-strips white space after its special tokens.
    const Vocab& v = load_vocab("phi-3");
    const auto a = v.tokenize("<|user|>Hello", false, true);
    const auto b = v.tokenize("<|user|> Hello", false, true);
    const auto hello = v.tokenize("Hello", false, false);
    ASSERT_EQ(hello.size(), 1u);
    EXPECT_EQ(a, (std::vector<int32_t>{32010, hello[0]}));
    EXPECT_EQ(b, a);
    const Vocab& spm = load_vocab("llama-spm");
    EXPECT_EQ(spm.tokenize("</s>Hello", false, true), (std::vector<int32_t>{2, spm.tokenize("Hello", false, false)[0]}));
}

TEST(Tokenizer, UserDefinedTokensWithoutParseSpecial) {
    // deepseek-coder's added tokens are user-defined: always one token, like Hugging Face does.
    const Vocab& v = load_vocab("deepseek-coder");
    const int32_t user = v.text_to_token("<|User|>");
    ASSERT_EQ(user, 32019);
    EXPECT_TRUE(v.is_user_defined(user));
    EXPECT_FALSE(v.is_control(user));
    const auto ids = v.tokenize("x<|User|>y", false, false);
    EXPECT_EQ(ids, (std::vector<int32_t>{v.text_to_token("x"), user, v.text_to_token("y")}));
    EXPECT_EQ(v.token_to_piece(user, false), "<|User|>");
    // llama.cpp recognises the FIM tokens by their text and makes them control tokens, so
    // without parse_special their text is plain text.
    const int32_t fim = v.text_to_token("<｜fim▁begin｜>");
    EXPECT_TRUE(v.is_control(fim));
    EXPECT_EQ(v.tokenize("<｜fim▁begin｜>", false, true), (std::vector<int32_t>{fim}));
    EXPECT_GT(v.tokenize("<｜fim▁begin｜>", false, false).size(), 1u);
}

TEST(Tokenizer, AddSpecial) {
    const Vocab& spm = load_vocab("llama-spm");
    EXPECT_TRUE(spm.add_bos());
    EXPECT_EQ(spm.tokenize("", true, false), (std::vector<int32_t>{1}));
    EXPECT_TRUE(spm.tokenize("", false, false).empty());
    EXPECT_EQ(spm.tokenize("Hi", true, false)[0], 1);
    const Vocab& gpt2 = load_vocab("gpt-2");
    EXPECT_FALSE(gpt2.add_bos());
    EXPECT_EQ(gpt2.tokenize("Hi", true, false), gpt2.tokenize("Hi", false, false));
    const Vocab& ds = load_vocab("deepseek-coder");  // add_bos_token true in the file
    EXPECT_EQ(ds.tokenize("Hi", true, false)[0], ds.bos());
    EXPECT_EQ(ds.bos(), 32013);
}

TEST(Tokenizer, Attributes) {
    const Vocab& v = load_vocab("llama-spm");
    EXPECT_EQ(v.bos(), 1);
    EXPECT_EQ(v.eos(), 2);
    EXPECT_EQ(v.unk(), 0);
    EXPECT_EQ(v.nl(), 13);  // <0x0A>
    EXPECT_EQ(v.token_text(13), "<0x0A>");
    EXPECT_EQ(v.type(13), slm::TokenType::Byte);
    EXPECT_TRUE(v.is_byte(13));
    EXPECT_EQ(v.token_to_piece(13, false), "\n");
    EXPECT_EQ(v.type(0), slm::TokenType::Unknown);
    EXPECT_EQ(v.token_to_piece(0, false), "");
    EXPECT_EQ(v.token_to_piece(0, true), "<unk>");
    EXPECT_EQ(v.eog_ids(), (std::vector<int32_t>{2}));
    EXPECT_THROW(v.token_text(-1), slm::Error);
    EXPECT_THROW(v.token_to_piece(v.n_tokens(), true), slm::Error);
    EXPECT_THROW(v.score(1 << 30), slm::Error);
    const int32_t hello = v.text_to_token("▁Hello");
    ASSERT_NE(hello, slm::TOKEN_NULL);
    EXPECT_EQ(v.token_to_piece(hello, false), " Hello");
    EXPECT_LT(v.score(hello), 0.0f);

    const Vocab& g = load_vocab("gpt-2");
    EXPECT_EQ(g.vocab_type(), slm::VocabType::BPE);
    EXPECT_EQ(g.token_to_piece(g.text_to_token("Ġworld"), false), " world");
    EXPECT_EQ(g.nl(), g.text_to_token("Ċ"));
    EXPECT_TRUE(g.is_eog(50256));
}

// ---- UTF-8 ------------------------------------------------------------------------------------

TEST(Tokenizer, Utf8StreamAcrossPieces) {
    // An emoji the SPM vocab spells as four byte tokens: only the last piece completes it.
    const Vocab& v = load_vocab("llama-spm");
    const std::string text = "a 🦙 b";
    const auto ids = v.tokenize(text, false, false);
    slm::Utf8Stream s;
    std::string out;
    int n_empty = 0;
    for (int32_t id : ids) {
        const std::string chunk = s.push(v.token_to_piece(id, false));
        n_empty += chunk.empty();
        out += chunk;
    }
    out += s.flush();
    EXPECT_EQ(out, " a 🦙 b");  // the dummy space comes back from the first piece
    EXPECT_GE(n_empty, 3);
}

TEST(Tokenizer, Utf8StreamInvalid) {
    const std::string fffd = "\xEF\xBF\xBD";
    slm::Utf8Stream s;
    EXPECT_EQ(s.push("ab\xE2\x82"), "ab");
    EXPECT_TRUE(s.has_pending());
    EXPECT_EQ(s.push("\xAC!"), "\xE2\x82\xAC!");
    EXPECT_EQ(s.push("\xFF"), fffd);
    EXPECT_EQ(s.push("\xE2\x82x"), fffd + "x");         // truncated sequence, then ASCII
    EXPECT_EQ(s.push("\xC0\xAF"), fffd + fffd);          // overlong: two ill-formed bytes
    EXPECT_EQ(s.push("\xED\xA0\x80"), fffd + fffd + fffd);  // surrogate
    EXPECT_EQ(s.push("\xF0\x9F"), "");
    EXPECT_EQ(s.flush(), fffd);                          // the held-back tail is not dropped
    EXPECT_FALSE(s.has_pending());
    EXPECT_EQ(s.flush(), "");
}

TEST(Tokenizer, InvalidUtf8Input) {
    const std::string bad = "ok \xFF\xFE mid \xC3 \xE2\x82 end \xED\xA0\x80 \xF4\x90\x80\x80 \xF8";
    // SPM: stray bytes fall back to byte tokens, so they come back as they were.
    const Vocab& spm = load_vocab("llama-spm");
    EXPECT_EQ(spm.tokenize("a\xFF", false, false), (std::vector<int32_t>{spm.text_to_token("▁a"), 3 + 0xFF}));
    EXPECT_EQ(spm.detokenize(spm.tokenize("a\xFF", false, false), false, false), "a\xFF");
    EXPECT_FALSE(spm.tokenize(bad, true, true).empty());
    // BPE: like llama.cpp, each invalid byte becomes U+FFFD before the byte-level encoding.
    for (const char* name : {"gpt-2", "deepseek-coder", "falcon", "starcoder", "phi-3"}) {
        const Vocab& v = load_vocab(name);
        for (bool special : {false, true}) {
            const auto t = v.tokenize(bad, true, special);
            EXPECT_FALSE(t.empty()) << name;
            (void)v.detokenize(t, false, special);
        }
    }
    const Vocab& g = load_vocab("gpt-2");
    EXPECT_EQ(g.detokenize(g.tokenize("\xFF", false, false), false, false), "\xEF\xBF\xBD");
}

// ---- malformed metadata -----------------------------------------------------------------------

VocabData tiny_spm() {
    VocabData d;
    d.model = "llama";
    d.tokens = {"<unk>", "<s>", "</s>", "▁a", "a", "b"};
    d.scores = {0, 0, 0, -1, -2, -3};
    d.token_types = {2, 3, 3, 1, 1, 1};
    d.source = "tiny.gguf";
    return d;
}

VocabData tiny_bpe() {
    VocabData d;
    d.model = "gpt2";
    d.pre = "gpt-2";
    d.tokens = {"a", "b", "ab", "Ġ", "Ġab", "<|endoftext|>"};
    d.token_types = {1, 1, 1, 1, 1, 3};
    d.merges = {"a b", "Ġ ab"};
    d.bos = 5;
    d.eos = 5;
    d.source = "tiny-bpe.gguf";
    return d;
}

void expect_error(VocabData d, const std::string& needle) {
    try {
        Vocab v(std::move(d));
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(Tokenizer, PlainDataVocabs) {
    Vocab spm(tiny_spm());
    EXPECT_EQ(spm.tokenize("ab", true, false), (std::vector<int32_t>{1, 3, 5}));
    Vocab bpe(tiny_bpe());
    EXPECT_EQ(bpe.tokenize("ab ab", false, false), (std::vector<int32_t>{2, 4}));
    EXPECT_EQ(bpe.detokenize({2, 4}, false, false), "ab ab");
}

// A byte-level vocab (every byte a token, a few merges) under each pre-tokenizer name llama.cpp
// knows: each loads, and text comes back unchanged.
VocabData byte_level(const std::string& pre) {
    VocabData d;
    d.model = "gpt2";
    d.pre = pre;
    for (int b = 0; b < 256; ++b) d.tokens.push_back(slm::tok::byte_to_utf8(static_cast<uint8_t>(b)));
    for (const char* t : {"Ġt", "he", "Ġthe", "<|endoftext|>"}) d.tokens.push_back(t);
    d.token_types.assign(d.tokens.size(), 1);
    d.token_types.back() = 3;
    d.merges = {"Ġ t", "h e", "Ġt he"};
    d.bos = d.eos = static_cast<int64_t>(d.tokens.size() - 1);
    return d;
}

TEST(Tokenizer, EveryPreTokenizerName) {
    const std::string text = "the Theory of 1234567 things: 我想在apple工作 ~x\n\n\tend";
    int n = 0;
    for (const char* pre :
         {"", "default", "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
          "jina-v5-nano", "minicpm5", "deepseek-llm", "deepseek-coder", "deepseek-v3", "spark2_5", "youtu", "falcon",
          "mpt", "starcoder", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
          "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "exaone4", "jais-2",
          "refact", "command-r", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "qwen35", "stablelm2", "olmo",
          "dbrx", "smaug-bpe", "poro-chat", "viking", "jais", "tekken", "smollm", "codeshell", "bloom",
          "gpt3-finnish", "exaone", "exaone-moe", "chameleon", "minerva-7b", "megrez", "gpt-4o", "llama4", "kanana2",
          "talkie", "granite-embed-multi-97m", "tiny_aya", "cohere2moe", "superbpe", "trillion", "granite-docling",
          "bailingmoe", "bailingmoe2", "llada-moe", "seed-coder", "hunyuan", "hunyuan-dense", "hy_v4", "joyai-llm",
          "kimi-k2", "ufakzeka", "grok-2", "afmoe", "laguna", "minimax-m2", "solar-open", "mellum2", "glm4",
          "chatglm-bpe"}) {
        Vocab v(byte_level(pre));
        const auto ids = v.tokenize(text, false, false);
        EXPECT_EQ(v.detokenize(ids, false, false), text) << "pre '" << pre << "'";
        ++n;
    }
    EXPECT_EQ(n, 87);
    // chatglm has no BOS unless the file names one.
    VocabData d = byte_level("glm4");
    d.bos.reset();
    EXPECT_EQ(Vocab(d).bos(), slm::TOKEN_NULL);
    // Llama 3 adds BOS by default, GPT-2 does not.
    EXPECT_TRUE(Vocab(byte_level("llama3")).add_bos());
    EXPECT_FALSE(Vocab(byte_level("gpt-2")).add_bos());
}

TEST(Tokenizer, Gemma4StyleBpe) {
    // BPE on raw UTF-8 with U+2581 for spaces and <0xHH> byte fallback.
    VocabData d;
    d.model = "gemma4";
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        d.tokens.push_back(buf);
    }
    for (const char* t : {"a", "▁", "▁a", "<bos>", "\n\n"}) d.tokens.push_back(t);
    d.token_types.assign(d.tokens.size(), 1);
    for (int b = 0; b < 256; ++b) d.token_types[b] = 6;
    d.merges = {"▁ a"};
    {
        VocabData no_bos = d;
        try {
            Vocab v(no_bos);
            ADD_FAILURE() << "gemma4 forces add_bos, so a missing BOS must be an error";
        } catch (const slm::Error&) {
        }
    }
    d.bos = 259;
    Vocab v(d);
    const int32_t a = 256, sp_a = 258, nn = 260;
    EXPECT_EQ(v.tokenize("a aé\n\n", true, false), (std::vector<int32_t>{259, a, sp_a, 0xC3, 0xA9, nn}));
    EXPECT_EQ(v.detokenize(v.tokenize("a aé\n\n", false, false), false, false), "a aé\n\n");
}

TEST(Tokenizer, MalformedMetadata) {
    {
        VocabData d = tiny_spm();
        d.scores.pop_back();
        expect_error(d, "tokenizer.ggml.scores has 5 entries");
    }
    {
        VocabData d = tiny_spm();
        d.token_types.push_back(1);
        expect_error(d, "tokenizer.ggml.token_type");
    }
    {
        VocabData d = tiny_spm();
        d.tokens[4] = "▁a";
        expect_error(d, "duplicate token");
    }
    {
        VocabData d = tiny_spm();
        d.bos = 99;
        expect_error(d, "tokenizer.ggml.bos_token_id = 99 is out of range");
    }
    {
        VocabData d = tiny_spm();
        d.eos = std::numeric_limits<uint32_t>::max();  // "none": keeps the default
        EXPECT_EQ(Vocab(d).eos(), 2);
    }
    {
        VocabData d = tiny_spm();
        d.tokens.clear();
        d.scores.clear();
        d.token_types.clear();
        expect_error(d, "tokenizer.ggml.tokens is empty");
    }
    {
        VocabData d = tiny_spm();
        d.model = "no_vocab";
        expect_error(d, "'no_vocab'");
    }
    {
        VocabData d = tiny_spm();
        d.model = "bert";
        expect_error(d, "'bert' is not supported");
    }
    {
        VocabData d = tiny_spm();
        d.model = "sentencepiece-ish";
        expect_error(d, "unknown tokenizer.ggml.model = 'sentencepiece-ish'");
    }
    {
        VocabData d = tiny_spm();
        d.token_types[5] = 6;  // byte token "b"
        expect_error(d, "byte token");
    }
    {
        VocabData d = tiny_bpe();
        d.merges.push_back("abc");
        expect_error(d, "tokenizer.ggml.merges[2] = 'abc'");
    }
    {
        VocabData d = tiny_bpe();
        d.pre = "not-a-pre-tokenizer";
        expect_error(d, "unknown pre-tokenizer tokenizer.ggml.pre = 'not-a-pre-tokenizer'");
    }
    {
        VocabData d = tiny_bpe();
        d.tokens[1] = "\xC3";
        expect_error(d, "tokenizer.ggml.tokens[1] is not valid UTF-8");
    }
    {
        VocabData d = tiny_bpe();
        d.bos.reset();
        d.bos = std::numeric_limits<uint32_t>::max();
        d.add_bos = true;  // the gpt2 default BOS 11 is out of this vocab
        expect_error(d, "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set");
    }
}

TEST(Tokenizer, MalformedGguf) {
    const std::string dir = slm::test::temp_dir();
    auto write = [&](const std::string& name, slm::GGUFWriter& w) {
        const std::string p = dir + "/" + name;
        w.write(p);
        return p;
    };
    {
        slm::GGUFWriter w;
        w.set("general.architecture", slm::GGUFValue::string("llama"));
        const std::string p = write("none.gguf", w);
        try {
            Vocab::from_gguf(slm::GGUFFile::open(p));
            ADD_FAILURE() << "no error";
        } catch (const slm::Error& e) {
            EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("none.gguf"), std::string::npos) << e.what();
        }
    }
    {
        slm::GGUFWriter w;
        w.set("tokenizer.ggml.model", slm::GGUFValue::string("gpt2"));
        w.set("tokenizer.ggml.tokens", slm::GGUFValue::str_array({"a", "b"}));
        const std::string p = write("nomerges.gguf", w);
        EXPECT_THROW(Vocab::from_gguf(slm::GGUFFile::open(p)), slm::Error);
    }
    {
        slm::GGUFWriter w;
        w.set("tokenizer.ggml.model", slm::GGUFValue::string("llama"));
        w.set("tokenizer.ggml.tokens", slm::GGUFValue::str_array({"<unk>", "<s>", "</s>"}));
        w.set("tokenizer.ggml.scores", slm::GGUFValue::string("oops"));
        const std::string p = write("badscores.gguf", w);
        EXPECT_THROW(Vocab::from_gguf(slm::GGUFFile::open(p)), slm::Error);
    }
}

// ---- pre-tokenizers ---------------------------------------------------------------------------

// llama.cpp's hand-written splitters for its GPT-2 and Llama 3 regexes
// (unicode_regex_split_custom_gpt2 / _llama3), restated from their description to check that
// PCRE2 running the regexes gives the same pieces.
std::vector<size_t> reference_split(const std::vector<uint32_t>& cpts, bool llama3) {
    using slm::tok::cpt_flags;
    std::vector<size_t> out;
    const size_t end = cpts.size();
    auto in = [&](size_t p) { return p < end; };
    auto cpt = [&](size_t p) { return in(p) ? cpts[p] : 0xFFFFFFFFu; };
    auto L = [&](size_t p) { return in(p) && cpt_flags(cpts[p]).is_letter(); };
    auto N = [&](size_t p) { return in(p) && cpt_flags(cpts[p]).is_number(); };
    auto W = [&](size_t p) { return in(p) && cpt_flags(cpts[p]).whitespace; };
    auto lower = [](uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; };
    size_t prev = 0;
    auto emit = [&](size_t e) {
        if (e > prev) out.push_back(e - prev);
        prev = e;
    };
    for (size_t pos = 0; pos < end;) {
        const uint32_t c = cpt(pos);
        if (c == '\'' && pos + 1 < end) {
            const uint32_t n1 = llama3 ? lower(cpt(pos + 1)) : cpt(pos + 1);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                emit(pos += 2);
                continue;
            }
            if (pos + 2 < end) {
                const uint32_t n2 = llama3 ? lower(cpt(pos + 2)) : cpt(pos + 2);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    emit(pos += 3);
                    continue;
                }
            }
        }
        if (llama3) {
            if (!(c == '\r' || c == '\n' || N(pos)) && (L(pos) || L(pos + 1))) {
                ++pos;
                while (L(pos)) ++pos;
                emit(pos);
                continue;
            }
            if (N(pos)) {
                size_t g = pos;
                while (N(pos))
                    if (++pos - g >= 3) emit(g = pos);
                emit(pos);
                continue;
            }
        } else {
            const size_t q = c == ' ' ? pos + 1 : pos;
            if (L(q) || N(q)) {
                const bool letters = L(q);
                pos = q;
                while (letters ? L(pos) : N(pos)) ++pos;
                emit(pos);
                continue;
            }
        }
        const size_t q = c == ' ' ? pos + 1 : pos;
        if ((llama3 || in(q)) && !(W(q) || L(q) || N(q))) {
            if (in(q) || llama3) {
                pos = q;
                while (in(pos) && !(W(pos) || L(pos) || N(pos))) ++pos;
                if (llama3)
                    while (cpt(pos) == '\r' || cpt(pos) == '\n') ++pos;
                emit(pos);
                continue;
            }
        }
        size_t n_ws = 0, last_nl = 0;
        while (W(pos + n_ws)) {
            if (cpt(pos + n_ws) == '\r' || cpt(pos + n_ws) == '\n') last_nl = pos + n_ws + 1;
            ++n_ws;
        }
        if (llama3 && last_nl > 0) {
            emit(pos = last_nl);
        } else if (n_ws > 1 && in(pos + n_ws)) {
            emit(pos += n_ws - 1);
        } else if (n_ws > 0) {
            emit(pos += n_ws);
        } else {
            emit(++pos);
        }
    }
    return out;
}

const std::string RE_GPT2 = R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
const std::string RE_LLAMA3 =
    R"re((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

std::string random_text(std::mt19937& rng, size_t n) {
    static const std::vector<std::string> atoms = {
        "a", "Z", "é", "ß", "я", "中", "ق", "1", "٣", "²", "'", "'s", "'S", "'ll", "'LL", "'Re", "'ve", "'d", "'m",
        "'t", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f", "\xC2\xA0", "\xC2\x85", "\xE2\x80\x83", "\xE3\x80\x80",
        "\xE2\x80\xA8", "!", "?", ".", ",", "~", "$", "+", "_", "-", "🦙", "\xCC\x81", "\xE2\x80\x8B", "\x1C", "\x7F",
        "\xFF", "\xC3", "\xED\xA0\x80", "x", "hello", "World", "42", "1234567"};
    std::string s;
    std::uniform_int_distribution<size_t> pick(0, atoms.size() - 1);
    for (size_t i = 0; i < n; ++i) s += atoms[pick(rng)];
    return s;
}

TEST(PreTokenizer, Pcre2MatchesLlamaCustomSplitters) {
    std::mt19937 rng(1234);
    std::vector<std::string> texts = {"", " ", "  ", "   a", "a  ", "\t\tA", "Hello world", " Hello  world ",
                                      "I'll 'LL've 'Re'S", "  \n\n  \n x", "333333333 12", "x\r\n\r\ny", "\xC2\xA0\xC2\xA0x"};
    for (int i = 0; i < 3000; ++i) texts.push_back(random_text(rng, 1 + i % 40));
    for (const std::string& t : texts) {
        const auto cpts = slm::tok::cpts_from_utf8(t);
        EXPECT_EQ(slm::tok::PreTokenizer::split_offsets(RE_GPT2, t), reference_split(cpts, false)) << "gpt2: " << t;
        EXPECT_EQ(slm::tok::PreTokenizer::split_offsets(RE_LLAMA3, t), reference_split(cpts, true)) << "llama3: " << t;
    }
}

// What llama.cpp itself runs for a regex list (unicode_regex_split): std::regex over the
// "collapsed" text (one byte per code point: ASCII kept, white space 0x0B, other code points a
// byte per category) for regexes naming Unicode categories, std::wregex over the code points
// (white space 0x0B) otherwise. Restated here to hold PCRE2 to the engine llama.cpp uses.
template <class CharT>
void stl_iterate(const std::basic_regex<CharT>& e, const CharT* base, const std::vector<size_t>& offsets,
                 std::vector<size_t>& out) {
    size_t start = 0;
    for (size_t len : offsets) {
        std::regex_iterator<const CharT*> it(base + start, base + start + len, e), end;
        int64_t done = 0;
        for (; it != end; ++it) {
            const auto& m = *it;
            if (m.position() > done) out.push_back(m.position() - done);
            out.push_back(m.length());
            done = m.position() + m.length();
        }
        if (done < static_cast<int64_t>(len)) out.push_back(len - done);
        start += len;
    }
}

std::vector<size_t> stl_split(const std::string& text, const std::vector<std::string>& regexes) {
    using slm::tok::CptCategory;
    const auto cpts = slm::tok::cpts_from_utf8(text);
    std::string collapsed(cpts.size(), '\0');
    std::wstring wide(cpts.size(), L'\0');
    for (size_t i = 0; i < cpts.size(); ++i) {
        const auto f = slm::tok::cpt_flags(cpts[i]);
        wide[i] = static_cast<wchar_t>(cpts[i] > 0x7F && f.whitespace ? 0x0B : cpts[i]);
        char c = '\xD0';
        switch (f.category) {
        case CptCategory::Number: c = '\xD1'; break;
        case CptCategory::Letter: c = '\xD2'; break;
        case CptCategory::Punctuation: c = '\xD3'; break;
        case CptCategory::Mark: c = '\xD4'; break;
        case CptCategory::Symbol: c = '\xD5'; break;
        default: break;
        }
        collapsed[i] = cpts[i] < 128 ? static_cast<char>(cpts[i]) : f.whitespace ? '\x0B' : c;
    }
    const std::vector<std::pair<std::string, std::string>> cats = {
        {"\\p{N}", "\xD1" "0-9"}, {"\\p{L}", "\xD2" "A-Za-z"}, {"\\p{Lu}", "\xD2" "A-Za-z"}, {"\\p{Ll}", "\xD2" "A-Za-z"},
        {"\\p{Lt}", "\xD2" "A-Za-z"}, {"\\p{Lm}", "\xD2" "A-Za-z"}, {"\\p{Lo}", "\xD2" "A-Za-z"},
        {"\\p{P}", "\xD3" "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"}, {"\\p{M}", "\xD4"}, {"\\p{S}", "\xD5" "\\$\\+<->^`\\|"}};
    std::vector<size_t> offsets = {cpts.size()};
    for (const std::string& re : regexes) {
        bool uses_cat = false;
        for (const auto& c : cats) uses_cat |= re.find(c.first) != std::string::npos;
        std::vector<size_t> out;
        if (uses_cat) {
            std::string col;
            bool inside = false;
            for (size_t i = 0; i < re.size(); ++i) {
                if (re[i] == '[' && (i == 0 || re[i - 1] != '\\')) inside = true;
                if (inside && re[i] == ']' && re[i - 1] != '\\') inside = false;
                bool replaced = false;
                for (const auto& c : cats) {
                    if (re.compare(i, c.first.size(), c.first) == 0) {
                        col += inside ? c.second : "[" + c.second + "]";
                        i += c.first.size() - 1;
                        replaced = true;
                        break;
                    }
                }
                if (!replaced) col += re[i];
            }
            stl_iterate(std::regex(col, std::regex::optimize | std::regex::nosubs), collapsed.data(), offsets, out);
        } else {
            // PCRE2's \x{...} (used where an editor could normalise the character) back to the character.
            std::wstring w;
            const auto rc = slm::tok::cpts_from_utf8(re);
            for (size_t i = 0; i < rc.size(); ++i) {
                if (rc[i] == '\\' && i + 2 < rc.size() && rc[i + 1] == 'x' && rc[i + 2] == '{') {
                    uint32_t v = 0;
                    size_t j = i + 3;
                    for (; rc[j] != '}'; ++j) v = v * 16 + (rc[j] <= '9' ? rc[j] - '0' : (rc[j] | 32) - 'a' + 10);
                    w += static_cast<wchar_t>(v);
                    i = j;
                } else {
                    w += static_cast<wchar_t>(rc[i]);
                }
            }
            stl_iterate(std::wregex(w, std::regex::optimize | std::regex::nosubs), wide.data(), offsets, out);
        }
        offsets = std::move(out);
    }
    return offsets;
}

TEST(PreTokenizer, Pcre2MatchesStdRegexForEveryType) {
    using slm::tok::PreType;
    std::mt19937 rng(99);
    std::vector<std::string> texts = {"Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
                                      "  \t\n\n ~~x ++y 3.14 1234567 <sentinel:12> IMGIMGABZ ӛ Ӛ ĳ ǅ",
                                      "ℌ Ω K ῼ ΐ ᾼ ι ゟ ㄅ ﹏ 、。，"};
    for (int i = 0; i < 300; ++i) texts.push_back(random_text(rng, 1 + i % 25));
    int n_types = 0;
    for (int t = static_cast<int>(PreType::Default); t <= static_cast<int>(PreType::Whitespace); ++t) {
        const auto regexes = slm::tok::PreTokenizer::regex_list(static_cast<PreType>(t));
        if (regexes[0] == "\\p{Han}+" || regexes[0] == "\\p{AFMoE_digits}") continue;  // code, not regexes
        slm::tok::PreTokenizer p(static_cast<PreType>(t));
        for (const std::string& text : texts) EXPECT_EQ(p.piece_lengths(text), stl_split(text, regexes)) << "type " << t << ": " << text;
        ++n_types;
    }
    EXPECT_GE(n_types, 50);
}

TEST(PreTokenizer, KimiK2AndAfmoeSplitters) {
    using slm::tok::PreTokenizer;
    EXPECT_EQ(PreTokenizer::split_offsets("\\p{Han}+", "中文Hello world's 123456\n\n x"),
              (std::vector<size_t>{2, 5, 8, 1, 3, 3, 2, 2}));
    // The text before a digit run joins the run's first group, as in llama.cpp.
    EXPECT_EQ(PreTokenizer::split_offsets("\\p{AFMoE_digits}", "ab1234 x"), (std::vector<size_t>{3, 3, 2}));
}

TEST(PreTokenizer, RegexQuirksOfLlamaCpp) {
    using slm::tok::PreTokenizer;
    // \s+(?!\S) leaves the last space for the next word; \s+ takes the rest at the end.
    EXPECT_EQ(PreTokenizer::split_offsets(RE_GPT2, "a   b  "), (std::vector<size_t>{1, 2, 2, 2}));
    // Case-insensitive contractions in Llama 3, not in GPT-2.
    EXPECT_EQ(PreTokenizer::split_offsets(RE_LLAMA3, "I'LL"), (std::vector<size_t>{1, 3}));
    EXPECT_EQ(PreTokenizer::split_offsets(RE_GPT2, "I'LL"), (std::vector<size_t>{1, 1, 2}));
    // '~' is no symbol for llama.cpp's collapsed \p{S}, so it can lead a word in DeepSeek-V3's regex.
    EXPECT_EQ(PreTokenizer::split_offsets(R"re([^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+)re", "~ab +cd"),
              (std::vector<size_t>{3, 2, 2}));
    // \p{Lu} means \p{L} for llama.cpp.
    EXPECT_EQ(PreTokenizer::split_offsets(R"re(\p{Lu}+)re", "abC d"), (std::vector<size_t>{3, 1, 1}));
    // An empty match only cuts (SuperBPE's digit grouping).
    EXPECT_EQ(PreTokenizer::split_offsets(R"re((?=(\d{3})+(?!\d)))re", "1234567"), (std::vector<size_t>{1, 0, 3, 0, 3}));
}

TEST(PreTokenizer, EveryTypeCompilesAndKeepsTheText) {
    using slm::tok::PreType;
    const std::string text = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～ \n\n ~x 3.14 IMGIMGABZ <sentinel:1>\t";
    for (int t = static_cast<int>(PreType::Default); t <= static_cast<int>(PreType::Whitespace); ++t) {
        slm::tok::PreTokenizer p(static_cast<PreType>(t));
        std::string joined;
        for (const std::string& w : p.split(text)) {
            if (!p.byte_encode()) {
                joined += w;
                continue;
            }
            for (uint32_t c : slm::tok::cpts_from_utf8(w)) joined += static_cast<char>(slm::tok::cpt_to_byte(c));
        }
        if (static_cast<PreType>(t) == PreType::Whitespace) continue;  // \S+ drops nothing, but llama.cpp's
                                                                      // whitespace session drops spaces
        EXPECT_EQ(joined, text) << "pre-type " << t;
    }
}

TEST(PreTokenizer, ByteToUnicode) {
    EXPECT_EQ(slm::tok::byte_to_utf8(' '), "Ġ");
    EXPECT_EQ(slm::tok::byte_to_utf8('\n'), "Ċ");
    EXPECT_EQ(slm::tok::byte_to_utf8('a'), "a");
    for (int b = 0; b < 256; ++b) {
        const auto cpts = slm::tok::cpts_from_utf8(slm::tok::byte_to_utf8(static_cast<uint8_t>(b)));
        ASSERT_EQ(cpts.size(), 1u);
        EXPECT_EQ(slm::tok::cpt_to_byte(cpts[0]), b);
    }
}

} // namespace
