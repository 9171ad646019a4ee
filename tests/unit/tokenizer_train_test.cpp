// Tokenizer training tests: the trained GGUF loads in slm::Vocab, which tokenizes the training
// text into exactly the trainer's final segmentation and decodes it back byte for byte; the BPE
// merges equal those of a naive re-statement of the algorithm (all pair counts recomputed at every
// step); output bytes do not depend on runs or threads; bad input fails with errors naming the
// file or option.
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/tokenizer_train.h"
#include "slm/vocab.h"
#include "test_util.h"
#include "tokenizers/pre_tokenizer.h"
#include "tokenizers/unicode.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

using slm::TokenizerKind;
using slm::TokenizerTrainOptions;
using slm::TokenizerTrainResult;
using slm::Vocab;

namespace {

// Deterministic pseudo-English with multi-byte characters, digits, punctuation, tabs, runs of
// spaces and blank lines: enough repetition for merges, enough variety for the splitters.
std::string make_text(size_t n_bytes, uint32_t seed) {
    static const char* const words[] = {
        "the", "cat", "sat", "on", "mat", "once", "upon", "a", "time", "lily", "tom", "was", "happy", "dog",
        "ran", "to", "park", "and", "she", "said", "café", "naïve", "日本", "語", "Ωmega", "straße", "über",
        "123", "4567", "it's", "we're", "they'll", "😀", "(yes)", "\"hi\"", "-", "—", "big", "little", "friend",
        "The", "Once", "LILY", "Tom's", "3.14", "x=y+1", "a,b", "end.", "why?", "wow!",
    };
    std::mt19937 rng(seed);
    std::string s;
    while (s.size() < n_bytes) {
        const uint32_t r = rng();
        s += words[r % (sizeof words / sizeof words[0])];
        switch ((r >> 16) % 23) {
        case 0: s += ".\n"; break;
        case 1: s += ".\n\n"; break;
        case 2: s += ", "; break;
        case 3: s += "  "; break;
        case 4: s += "\t"; break;
        case 5: s += " .\n"; break;
        default: s += ' ';
        }
    }
    return s;
}

std::string write_temp(const std::string& name, const std::string& text) {
    const std::string path = slm::test::temp_dir() + "/" + name;
    slm::test::write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
    return path;
}

Vocab load(const std::string& path) {
    slm::GGUFFile f = slm::GGUFFile::open(path);
    return Vocab::from_gguf(f);
}

TokenizerTrainOptions options(std::vector<std::string> files, int32_t vocab_size,
                              TokenizerKind kind = TokenizerKind::Bpe) {
    TokenizerTrainOptions o;
    o.files = std::move(files);
    o.vocab_size = vocab_size;
    o.kind = kind;
    o.keep_tokens = true;
    return o;
}

// Training's segmentation == the runtime's tokenization, and decoding gives the text back.
void expect_runtime_agrees(const Vocab& v, const std::vector<std::string>& texts, const TokenizerTrainResult& r,
                           bool round_trip = true) {
    std::vector<int32_t> all;
    for (const std::string& t : texts) {
        const std::vector<int32_t> ids = v.tokenize(t, false, false);
        if (round_trip) EXPECT_EQ(v.detokenize(ids, false, false), t);
        all.insert(all.end(), ids.begin(), ids.end());
    }
    ASSERT_EQ(all.size(), r.tokens.size());
    EXPECT_EQ(all, r.tokens);
    EXPECT_EQ(r.n_tokens, r.tokens.size());
}

// Byte-level BPE training restated naively: every step recounts every pair of every word.
std::vector<std::string> naive_bpe_merges(const std::string& text, const std::string& pre, int32_t vocab_size,
                                          int64_t min_frequency, int32_t max_chars) {
    const slm::tok::PreTokenizer pt(slm::tok::pre_config(pre)->type);
    std::map<std::string, int64_t> word_freq;
    for (const std::string& w : pt.split(text))
        if (!w.empty()) ++word_freq[w];
    std::vector<std::string> tokens = {"<s>", "</s>"};
    std::map<std::string, int> id;
    id["<s>"] = 0;
    id["</s>"] = 1;
    for (int b = 0; b < 256; ++b) {
        id[slm::tok::byte_to_utf8(static_cast<uint8_t>(b))] = static_cast<int>(tokens.size());
        tokens.push_back(slm::tok::byte_to_utf8(static_cast<uint8_t>(b)));
    }
    std::vector<std::pair<std::vector<int>, int64_t>> words;
    for (const auto& [w, n] : word_freq) {
        std::vector<int> sym;
        for (uint32_t cpt : slm::tok::cpts_from_utf8(w)) sym.push_back(2 + slm::tok::cpt_to_byte(cpt));
        words.emplace_back(sym, n);
    }
    auto n_bytes = [&](int t) { return t < 2 ? 1 : static_cast<int>(slm::tok::cpts_from_utf8(tokens[t]).size()); };
    std::vector<std::string> merges;
    while (static_cast<int32_t>(tokens.size()) < vocab_size) {
        std::map<std::pair<int, int>, int64_t> counts;
        for (const auto& [sym, n] : words)
            for (size_t i = 0; i + 1 < sym.size(); ++i) counts[{sym[i], sym[i + 1]}] += n;
        std::pair<int, int> best{-1, -1};
        int64_t best_n = 0;
        for (const auto& [p, n] : counts) {  // ascending (left, right): the first maximum wins ties
            if (id.count(tokens[p.first] + tokens[p.second])) continue;
            if (max_chars > 0 && n_bytes(p.first) + n_bytes(p.second) > max_chars) continue;
            if (n > best_n) best = p, best_n = n;
        }
        if (best_n < min_frequency || best.first < 0) break;
        const int x = static_cast<int>(tokens.size());
        tokens.push_back(tokens[best.first] + tokens[best.second]);
        id[tokens.back()] = x;
        merges.push_back(tokens[best.first] + " " + tokens[best.second]);
        for (auto& [sym, n] : words) {
            std::vector<int> out;
            for (size_t i = 0; i < sym.size();) {
                if (i + 1 < sym.size() && sym[i] == best.first && sym[i + 1] == best.second) {
                    out.push_back(x);
                    i += 2;
                } else {
                    out.push_back(sym[i++]);
                }
            }
            sym = out;
        }
    }
    return merges;
}

std::string error_of(const TokenizerTrainOptions& o, const std::string& out) {
    try {
        slm::train_tokenizer(o, out);
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "(no error)";
}

} // namespace

TEST(TokenizerTrain, BpeRoundTripAndSegmentation) {
    const std::string a = make_text(6000, 1) + " <s> </s> literal specials\n";
    const std::string b = make_text(3000, 2);
    const std::string out = slm::test::temp_dir() + "/bpe.gguf";
    const TokenizerTrainResult r =
        slm::train_tokenizer(options({write_temp("a.txt", a), write_temp("b.txt", b)}, 400), out);
    const Vocab v = load(out);
    EXPECT_EQ(v.model(), "gpt2");
    EXPECT_EQ(v.pre(), "qwen2");
    EXPECT_EQ(v.n_tokens(), 400);
    EXPECT_EQ(r.n_vocab, 400);
    EXPECT_EQ(r.n_merges, 400 - 258);
    EXPECT_EQ(r.n_bytes, a.size() + b.size());
    EXPECT_EQ(v.token_text(v.bos()), "<s>");
    EXPECT_EQ(v.token_text(v.eos()), "</s>");
    EXPECT_TRUE(v.is_control(v.bos()));
    EXPECT_TRUE(v.is_eog(v.eos()));
    EXPECT_TRUE(v.add_bos());
    expect_runtime_agrees(v, {a, b}, r);
    // Merges made the text shorter than its bytes.
    EXPECT_LT(r.n_tokens, r.n_bytes / 2);

    // Text never seen: other scripts, control bytes, a character outside the BMP.
    for (const std::string t : {"Ж\x01\x7f 🎉\tzebra \xF0\x9F\xA6\x8A!", "  leading and trailing  ", "\n", "ü"}) {
        const std::vector<int32_t> ids = v.tokenize(t, false, false);
        EXPECT_EQ(v.detokenize(ids, false, false), t);
    }
    // BOS as the vocab asks for it.
    EXPECT_EQ(v.tokenize("the cat", true, false).front(), v.bos());
}

TEST(TokenizerTrain, BpeMergesEqualNaiveTraining) {
    const std::string text = make_text(4000, 3);
    const std::string path = write_temp("naive.txt", text);
    for (const std::string pre : {"qwen2", "gpt-2", "smollm"}) {
        for (int32_t max_chars : {0, 4}) {
            TokenizerTrainOptions o = options({path}, 330);
            o.pre = pre;
            o.max_chars = max_chars;
            o.min_frequency = 3;
            const std::string out = slm::test::temp_dir() + "/naive_" + pre + ".gguf";
            const TokenizerTrainResult r = slm::train_tokenizer(o, out);
            slm::GGUFFile f = slm::GGUFFile::open(out);
            const std::vector<std::string> merges = f.get_str_array("tokenizer.ggml.merges");
            EXPECT_EQ(merges, naive_bpe_merges(text, pre, 330, 3, max_chars)) << pre << " max_chars " << max_chars;
            const std::vector<std::string> tokens = f.get_str_array("tokenizer.ggml.tokens");
            ASSERT_EQ(tokens.size(), 258 + merges.size());
            // Every merge's parts come before it, and its token is the next id.
            std::map<std::string, size_t> id;
            for (size_t i = 0; i < tokens.size(); ++i) id[tokens[i]] = i;
            for (size_t i = 0; i < merges.size(); ++i) {
                const size_t sp = merges[i].find(' ');
                const std::string l = merges[i].substr(0, sp), rr = merges[i].substr(sp + 1);
                ASSERT_TRUE(id.count(l) && id.count(rr)) << merges[i];
                EXPECT_LT(id[l], 258 + i);
                EXPECT_LT(id[rr], 258 + i);
                EXPECT_EQ(tokens[258 + i], l + rr);
                if (max_chars > 0) EXPECT_LE(slm::tok::cpts_from_utf8(tokens[258 + i]).size(), 4u);
            }
            // Segmentation agrees even where detokenize cleans spaces (gpt-2: " ." loses its space).
            expect_runtime_agrees(load(out), {text}, r, pre != "gpt-2");
        }
    }
}

TEST(TokenizerTrain, OutputIndependentOfRunsAndThreads) {
    // Several 256 KiB chunks, so the parallel word count and the chunk cuts are exercised.
    const std::string text = make_text(700 * 1024, 4);
    const std::string path = write_temp("big.txt", text);
    for (TokenizerKind kind : {TokenizerKind::Bpe, TokenizerKind::Spm}) {
        std::vector<std::vector<uint8_t>> outs;
        for (int threads : {1, 3, 1}) {
            TokenizerTrainOptions o = options({path}, 600, kind);
            o.n_threads = threads;
            const std::string out = slm::test::temp_dir() + "/det.gguf";
            const TokenizerTrainResult r = slm::train_tokenizer(o, out);
            outs.push_back(slm::test::read_file(out));
            if (threads == 3) expect_runtime_agrees(load(out), {text}, r);
        }
        EXPECT_EQ(outs[0], outs[1]);
        EXPECT_EQ(outs[0], outs[2]);
    }
}

TEST(TokenizerTrain, SpmRoundTripAndSegmentation) {
    const std::string a = make_text(8000, 5);
    const std::string b = " starts with a space\n\nand  has\ttabs ß";
    const std::string out = slm::test::temp_dir() + "/spm.gguf";
    TokenizerTrainOptions o = options({write_temp("a.txt", a), write_temp("b.txt", b)}, 420, TokenizerKind::Spm);
    o.min_frequency = 1;
    const TokenizerTrainResult r = slm::train_tokenizer(o, out);
    const Vocab v = load(out);
    EXPECT_EQ(v.model(), "llama");
    EXPECT_EQ(v.n_tokens(), 420);
    EXPECT_EQ(v.token_text(v.unk()), "<unk>");
    EXPECT_EQ(v.token_text(v.bos()), "<s>");
    EXPECT_EQ(v.token_text(v.eos()), "</s>");
    EXPECT_TRUE(v.add_space_prefix());
    expect_runtime_agrees(v, {a, b}, r);
    // Every merged token has U+2581 only in front and newlines only among newlines.
    for (int32_t id = 3 + 256; id < v.n_tokens(); ++id) {
        const std::string& t = v.token_text(id);
        EXPECT_EQ(t.find("\xE2\x96\x81", 1), std::string::npos) << t;
        if (t.find('\n') != std::string::npos) EXPECT_EQ(t.find_first_not_of('\n'), std::string::npos) << t;
    }
    // Literal texts of the special and byte tokens stay plain characters (the runtime would merge
    // two symbols spelling one of them into that token).
    std::string lit;
    for (int i = 0; i < 60; ++i) lit += "a <s> b </s> c <unk> <0x41> <0x0A>x bs> bs> q<s>k 41> z<0x41>y ";
    const TokenizerTrainResult rl = slm::train_tokenizer(o = options({write_temp("lit.txt", lit)}, 300,
                                                                     TokenizerKind::Spm), out);
    const Vocab vl = load(out);
    expect_runtime_agrees(vl, {lit}, rl);
    for (int32_t id : vl.tokenize(lit, false, false)) EXPECT_FALSE(vl.is_control(id) || vl.is_byte(id)) << id;

    // Unseen characters fall back to bytes and come back.
    for (const std::string t : {"Ж\x01 🎉 zebra", "日本語 \xF0\x9F\xA6\x8A"}) {
        const std::vector<int32_t> ids = v.tokenize(t, false, false);
        EXPECT_EQ(v.detokenize(ids, false, false), t);
    }
}

// Text over a three-letter alphabet: tokens overlap in every way (the same text reachable from
// several pairs, tokens completing other tokens), which is where the runtime's merge order could
// part from training's.
TEST(TokenizerTrain, SmallAlphabetAgreesWithRuntime) {
    for (uint32_t seed = 1; seed <= 6; ++seed) {
        std::mt19937 rng(seed);
        std::string text;
        for (int i = 0; i < 6000; ++i) {
            const uint32_t r = rng() % 16;
            text += r < 7 ? 'a' : r < 12 ? 'b' : r < 14 ? 'c' : r < 15 ? ' ' : '\n';
        }
        const std::string path = write_temp("abc.txt", text);
        for (TokenizerKind kind : {TokenizerKind::Bpe, TokenizerKind::Spm}) {
            TokenizerTrainOptions o = options({path}, 700, kind);
            o.max_chars = 0;
            const std::string out = slm::test::temp_dir() + "/abc.gguf";
            const TokenizerTrainResult r = slm::train_tokenizer(o, out);
            EXPECT_GT(r.n_merges, 100);
            SCOPED_TRACE(seed);
            expect_runtime_agrees(load(out), {text}, r);
        }
    }
}

TEST(TokenizerTrain, VocabSizeAndMinFrequency) {
    const std::string path = write_temp("small.txt", make_text(3000, 6));
    for (TokenizerKind kind : {TokenizerKind::Bpe, TokenizerKind::Spm}) {
        // A vocab the corpus cannot fill at a high minimum frequency stops early, and says so.
        TokenizerTrainOptions o = options({path}, 5000, kind);
        o.min_frequency = 40;
        const std::string out = slm::test::temp_dir() + "/minfreq.gguf";
        const TokenizerTrainResult r = slm::train_tokenizer(o, out);
        const Vocab v = load(out);
        EXPECT_LT(r.n_vocab, 5000);
        EXPECT_GT(r.n_merges, 0);
        EXPECT_EQ(v.n_tokens(), r.n_vocab);
        expect_runtime_agrees(v, {make_text(3000, 6)}, r);
        // The smallest vocabulary: no merges at all.
        TokenizerTrainOptions m = options({path}, kind == TokenizerKind::Bpe ? 258 : 260, kind);
        const TokenizerTrainResult rm = slm::train_tokenizer(m, out);
        EXPECT_EQ(load(out).n_tokens(), m.vocab_size);
        EXPECT_EQ(rm.n_merges, 0);
    }
}

TEST(TokenizerTrain, InvalidUtf8) {
    const std::string text = make_text(2000, 7) + " bad \xff\xfe bytes \xC3 end";
    const std::string path = write_temp("bad.txt", text);
    const std::string out = slm::test::temp_dir() + "/bad.gguf";
    const std::string err = error_of(options({path}, 300), out);
    EXPECT_NE(err.find(path), std::string::npos) << err;
    EXPECT_NE(err.find("invalid UTF-8"), std::string::npos) << err;

    // BPE trains on what the runtime sees (U+FFFD per bad byte); SPM keeps the bytes.
    TokenizerTrainOptions o = options({path}, 300);
    o.replace_invalid_utf8 = true;
    const TokenizerTrainResult r = slm::train_tokenizer(o, out);
    const Vocab v = load(out);
    expect_runtime_agrees(v, {text}, r, false);
    EXPECT_NE(v.detokenize(r.tokens, false, false).find("bad \xEF\xBF\xBD\xEF\xBF\xBD bytes"), std::string::npos);

    // SPM: a stray lead byte takes the next bytes with it (U+2581 included) as the runtime's
    // symbol splitter does, so only stray continuation bytes come back unchanged.
    o.kind = TokenizerKind::Spm;
    const TokenizerTrainResult rs = slm::train_tokenizer(o, out);
    expect_runtime_agrees(load(out), {text}, rs, false);
    const std::string cont = make_text(2000, 7) + " stray \x80\xBF continuation\n\x80";
    o.files = {write_temp("cont.txt", cont)};
    const TokenizerTrainResult rc = slm::train_tokenizer(o, out);
    expect_runtime_agrees(load(out), {cont}, rc, true);
}

TEST(TokenizerTrain, BadInputNamesFileOrOption) {
    const std::string good = write_temp("good.txt", make_text(1000, 8));
    const std::string out = slm::test::temp_dir() + "/x.gguf";

    const std::string empty = write_temp("empty.txt", "");
    std::string e = error_of(options({good, empty}, 300), out);
    EXPECT_NE(e.find(empty), std::string::npos) << e;
    EXPECT_NE(e.find("empty"), std::string::npos) << e;

    const std::string missing = slm::test::temp_dir() + "/no_such_file.txt";
    e = error_of(options({missing}, 300), out);
    EXPECT_NE(e.find(missing), std::string::npos) << e;

    e = error_of(options({good}, 257), out);
    EXPECT_NE(e.find("--vocab-size 257"), std::string::npos) << e;
    e = error_of(options({good}, 259, TokenizerKind::Spm), out);
    EXPECT_NE(e.find("--vocab-size 259"), std::string::npos) << e;

    TokenizerTrainOptions o = options({good}, 300);
    o.pre = "llama-bpe";
    e = error_of(o, out);
    EXPECT_NE(e.find("llama-bpe"), std::string::npos) << e;
    o.pre = "qwen2";
    o.min_frequency = 0;
    e = error_of(o, out);
    EXPECT_NE(e.find("--min-frequency"), std::string::npos) << e;

    const std::string unwritable = slm::test::temp_dir() + "/no_such_dir/tok.gguf";
    e = error_of(options({good}, 300), unwritable);
    EXPECT_NE(e.find(unwritable), std::string::npos) << e;

    e = error_of(options({}, 300), out);
    EXPECT_NE(e.find("no training text"), std::string::npos) << e;
}

TEST(TokenizerTrain, Cli) {
    const std::string path = write_temp("cli.txt", make_text(3000, 9));
    const std::string out = slm::test::temp_dir() + "/cli.gguf";
    slm::test::RunResult r =
        slm::test::run_cli({"tokenizer", "train", "--vocab-size", "300", path, "-o", out, "--type", "spm"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("bytes/token"), std::string::npos) << r.out;
    EXPECT_EQ(load(out).n_tokens(), 300);
    r = slm::test::run_cli({"tokenize", "-m", out, "-p", "the cat sat", "--no-bos"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = slm::test::run_cli({"tokenizer", "train", "--vocab-size", "100", path, "-o", out});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--vocab-size 100"), std::string::npos) << r.err;
}

// A real corpus: TinyStories text, several chunks, both kinds.
TEST(TokenizerTrain, TinyStoriesAgreesWithRuntime) {
    SLM_REQUIRE_SHARED();
    std::string text = slm::test::read_text(slm::test::shared_path("data/corpora/tinystories_train_1k.txt"));
    text.resize(600 * 1024);
    while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80) text.pop_back();
    if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0) text.pop_back();
    const std::string path = write_temp("ts.txt", text);
    for (TokenizerKind kind : {TokenizerKind::Bpe, TokenizerKind::Spm}) {
        TokenizerTrainOptions o = options({path}, 2048, kind);
        o.n_threads = 2;
        const std::string out = slm::test::temp_dir() + "/ts.gguf";
        const TokenizerTrainResult r = slm::train_tokenizer(o, out);
        EXPECT_EQ(r.n_vocab, 2048);
        expect_runtime_agrees(load(out), {text}, r);
    }
}
