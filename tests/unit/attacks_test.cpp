// attacks_test.cpp - one regression test per published attack on model-file parsers (issue 9):
// llama.cpp's GGUF size overflows, lying tokenizer arrays, `<0x-1>` byte tokens, vocabulary
// loading overflows, unbounded strings, absurd alignments, and Ollama's "Bleeding Llama" (a tensor
// shape that lies about the data), plus the variants that apply to safetensors and llama2.c files.
//
// Every file is crafted byte by byte (little-endian, independently of slm's writers, except where
// a valid file is patched) and parsed from an exact-size heap copy or from a file in temp_dir(), so
// that under -DSLM_SANITIZE=ON any read past the end is an AddressSanitizer report. Each attack must
// end in slm::Error naming the file and the field, or, where the input is legal but odd, load
// without touching anything outside the file.
#include "formats/hf_config.h"
#include "formats/json_util.h"
#include "formats/safetensors.h"
#include "slm/convert.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/tasks.h"
#include "slm/vocab.h"
#include "gguf_bytes.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <climits>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using slm::GGMLType;
using slm::GGUFFile;
using slm::GGUFType;
using slm::GGUFValue;
using slm::GGUFWriter;

namespace {

using test::id;
using test::kU64Max;

// ---- a little-endian byte builder --------------------------------------------------------------

using Bytes = test::GGUFBytes;

// Runs f, which must throw slm::Error whose message holds every needle; returns the message.
std::string expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
    try {
        f();
        ADD_FAILURE() << "no slm::Error thrown (expected one naming " << (needles.empty() ? "" : needles[0]) << ")";
    } catch (const slm::Error& e) {
        const std::string msg = e.what();
        for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
        return msg;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected slm::Error, got std::exception: " << e.what();
    }
    return "";
}

// Parses bytes from an exact-size heap copy (any over-read is an ASan report).
GGUFFile parse_copy(const std::vector<uint8_t>& bytes, const std::string& name) {
    std::vector<uint8_t> copy(bytes);
    copy.shrink_to_fit();
    return GGUFFile::parse(copy.data(), copy.size(), name);
}

void expect_gguf_error(const std::vector<uint8_t>& bytes, const std::string& name, std::vector<std::string> needles) {
    needles.insert(needles.begin(), name);
    expect_error([&] { parse_copy(bytes, name); }, needles);
}

// A single-tensor file: header, optional u32 key, one tensor info, padding to 32, `data` zero bytes.
std::vector<uint8_t> one_tensor(const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset, size_t data,
                                const std::string& name = "w") {
    return Bytes().header(1, 0).tinfo(name, ne, type, offset).pad(32).zeros(data).b;
}

std::string write_temp(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = slm::test::temp_dir() + "/" + name;
    slm::test::write_file(path, bytes);
    return path;
}

// ---- GGUF vocabularies --------------------------------------------------------------------------

// A small SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, a few pieces. Keys are set
// through GGUFWriter, then the caller replaces what the attack lies about.
GGUFWriter spm_vocab_writer() {
    std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
    std::vector<int32_t> types = {2, 3, 3};
    for (int b = 0; b < 256; ++b) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "<0x%02X>", b);
        tokens.push_back(buf);
        types.push_back(6);
    }
    for (const char* t : {"\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "a", "ab"}) {
        tokens.push_back(t);
        types.push_back(1);
    }
    std::vector<float> scores(tokens.size());
    for (size_t i = 0; i < scores.size(); ++i) scores[i] = -static_cast<float>(i);
    GGUFWriter w;
    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("tokenizer.ggml.model", GGUFValue::string("llama"));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(tokens));
    w.set("tokenizer.ggml.scores", GGUFValue::f32_array(scores));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
    return w;
}

slm::Vocab vocab_of(const GGUFWriter& w, const std::string& name) {
    std::vector<uint8_t> bytes = w.to_bytes();
    return slm::Vocab::from_gguf(parse_copy(bytes, name));
}

void expect_vocab_error(const GGUFWriter& w, const std::string& name, std::vector<std::string> needles) {
    needles.insert(needles.begin(), name);
    expect_error([&] { vocab_of(w, name); }, needles);
}

// Tokenizes and detokenizes some text: every id in range, every piece of a byte token one byte.
void expect_tokenizes_in_range(const slm::Vocab& v) {
    const std::vector<int32_t> ids = v.tokenize("ab a\n\xff\x01 zz", true, true);
    ASSERT_FALSE(ids.empty());
    for (int32_t t : ids) ASSERT_TRUE(t >= 0 && t < v.n_tokens()) << t;
    (void)v.detokenize(ids, true, true);
}

// Byte offset of ne[dim] in the tensor info of `name` (0 if not found): the info is the name
// (u64 length + bytes), u32 n_dims, then the u64 dimensions.
size_t ne_offset(const std::vector<uint8_t>& b, const GGUFFile& f, const std::string& name, int dim) {
    for (size_t i = 0; i + 8 + name.size() < f.data_offset(); ++i) {
        uint64_t len;
        std::memcpy(&len, b.data() + i, 8);
        if (len == name.size() && std::memcmp(b.data() + i + 8, name.data(), name.size()) == 0)
            return i + 8 + name.size() + 4 + 8 * static_cast<size_t>(dim);
    }
    return 0;
}

} // namespace

// ==== GGUF =======================================================================================

// llama.cpp #19856: ne[0] * ... * type size wrapping to a small number passed the size check.
TEST(GGUFAttack, TensorSizeOverflow) {
    // element count overflows 64 bits
    expect_gguf_error(one_tensor({uint64_t(1) << 32, uint64_t(1) << 32, 2}, id(GGMLType::F32), 0, 32), "ovf.gguf",
                      {"'w'", "overflows"});
    // elements fit, bytes (x 4 for F32) do not: 2^62 * 4 = 2^64 wraps to 0
    expect_gguf_error(one_tensor({uint64_t(1) << 62}, id(GGMLType::F32), 0, 32), "bytes.gguf",
                      {"'w'", "4611686018427387904"});
    // a block type: 2^63 elements / 32 per block * 34 bytes per Q8_0 block wraps
    expect_gguf_error(one_tensor({uint64_t(1) << 37, uint64_t(1) << 26}, id(GGMLType::Q8_0), 0, 64), "q8.gguf",
                      {"'w'"});
    // offset + size wrapping past 2^64 to land inside the file
    expect_gguf_error(one_tensor({8}, id(GGMLType::F32), kU64Max - 31, 64), "wrap.gguf", {"'w'", "extends past"});
    expect_gguf_error(one_tensor({16}, id(GGMLType::F32), uint64_t(0) - 32, 64), "wrap2.gguf",
                      {"'w'", std::to_string(uint64_t(0) - 32)});
}

// llama.cpp #26690: tokenizer arrays whose element type is not what the loader assumes.
TEST(GGUFAttack, TokenizerArrayElementTypeLies) {
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.tokens", GGUFValue::i32_array(std::vector<int32_t>(264, 7)));
        expect_vocab_error(w, "tokens_int.gguf", {"tokenizer.ggml.tokens"});
    }
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.scores", GGUFValue::str_array(std::vector<std::string>(264, "0.5")));
        expect_vocab_error(w, "scores_str.gguf", {"tokenizer.ggml.scores"});
    }
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.scores", GGUFValue::f32_array({1.0f, 2.0f}));  // shorter than tokens
        expect_vocab_error(w, "scores_short.gguf", {"tokenizer.ggml.scores", "2 entries"});
    }
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.token_type", GGUFValue::i32_array({2, 3, 3}));  // shorter
        expect_vocab_error(w, "types_short.gguf", {"tokenizer.ggml.token_type", "3 entries"});
    }
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(std::vector<int32_t>(1000, 1)));  // longer
        expect_vocab_error(w, "types_long.gguf", {"tokenizer.ggml.token_type", "1000 entries"});
    }
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.token_type", GGUFValue::str_array(std::vector<std::string>(264, "1")));
        expect_vocab_error(w, "types_str.gguf", {"tokenizer.ggml.token_type"});
    }
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.model", GGUFValue::string("gpt2"));
        w.set("tokenizer.ggml.merges", GGUFValue::i32_array({1, 2, 3}));
        expect_vocab_error(w, "merges_int.gguf", {"tokenizer.ggml.merges"});
    }
    // the positive control: the unmodified vocabulary loads
    EXPECT_NO_THROW(vocab_of(spm_vocab_writer(), "ok.gguf"));
}

// llama.cpp #25969: a byte token spelled <0x-1> was turned into an index -1 and written through.
// slm's Vocab only accepts byte tokens (type 6) of the exact form <0xHH>; anything else is refused.
TEST(GGUFAttack, MalformedByteTokens) {
    for (const std::string bad : {"<0x-1>", "<0x100>", "<0xZZ>", "<0x0A", "<0x>", "<0x0A>x", "<0x 1>", "<0x+1>"}) {
        SCOPED_TRACE(bad);
        GGUFWriter w = spm_vocab_writer();
        std::vector<std::string> tokens = parse_copy(w.to_bytes(), "x").get_str_array("tokenizer.ggml.tokens");
        tokens.push_back(bad);
        std::vector<int32_t> types(tokens.size(), 1);
        types[0] = 2;
        types[1] = types[2] = 3;
        for (int b = 0; b < 256; ++b) types[3 + b] = 6;
        types.back() = 6;
        w.set("tokenizer.ggml.tokens", GGUFValue::str_array(tokens));
        w.set("tokenizer.ggml.scores", GGUFValue::f32_array(std::vector<float>(tokens.size(), 0.0f)));
        w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
        expect_vocab_error(w, "byte.gguf", {"tokenizer.ggml.tokens[" + std::to_string(tokens.size() - 1) + "]", bad});
    }
    // The same text as a normal token is just a piece: it loads and round-trips as text.
    GGUFWriter w = spm_vocab_writer();
    std::vector<uint8_t> base = w.to_bytes();
    std::vector<std::string> tokens = parse_copy(base, "x").get_str_array("tokenizer.ggml.tokens");
    std::vector<int32_t> types = parse_copy(base, "x").get_i32_array("tokenizer.ggml.token_type");
    tokens.push_back("<0x-1>");
    types.push_back(1);
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(tokens));
    w.set("tokenizer.ggml.scores", GGUFValue::f32_array(std::vector<float>(tokens.size(), 0.0f)));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(types));
    const slm::Vocab v = vocab_of(w, "normal.gguf");
    const int32_t last = v.n_tokens() - 1;
    EXPECT_EQ(v.token_to_piece(last, true), "<0x-1>");
    expect_tokenizes_in_range(v);
}

// CVE-2025-49847 and relatives: counts and ids that do not agree with the arrays.
TEST(GGUFAttack, VocabularyLoadingOverflow) {
    // a tokens array claiming 2^62 strings is refused by the reader before anything is allocated
    expect_gguf_error(Bytes().header(0, 2).key("tokenizer.ggml.model", GGUFType::STRING).str("llama")
                          .key("tokenizer.ggml.tokens", GGUFType::ARRAY).u32(id(GGUFType::STRING))
                          .u64(uint64_t(1) << 62).str("a").str("b").b,
                      "n_vocab.gguf", {"'tokenizer.ggml.tokens'", "4611686018427387904"});
    // special ids past the vocabulary
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                            "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.eot_token_id"}) {
        SCOPED_TRACE(key);
        GGUFWriter w = spm_vocab_writer();
        w.set(key, GGUFValue::u32(264));
        expect_vocab_error(w, "ids.gguf", {key, "264", "out of range"});
        GGUFWriter w2 = spm_vocab_writer();
        w2.set(key, GGUFValue::u64((uint64_t(1) << 32) + 1));  // would truncate to id 1 as uint32
        expect_vocab_error(w2, "ids64.gguf", {key, "4294967297"});
        GGUFWriter w3 = spm_vocab_writer();
        w3.set(key, GGUFValue::u64(kU64Max));
        expect_vocab_error(w3, "ids_max.gguf", {key});
    }
    // A negative id means "none" (llama.cpp's LLAMA_TOKEN_NULL): the model type's default stays,
    // so nothing ever indexes with it.
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.bos_token_id", GGUFValue::i32(-5));
        w.set("tokenizer.ggml.padding_token_id", GGUFValue::i32(INT32_MIN));
        const slm::Vocab v = vocab_of(w, "neg.gguf");
        EXPECT_EQ(v.bos(), 1);
        expect_tokenizes_in_range(v);
    }
    // ... and where the default does not exist, a BOS the vocabulary needs is an error, not an index
    {
        GGUFWriter w;
        w.set("tokenizer.ggml.model", GGUFValue::string("llama"));
        w.set("tokenizer.ggml.tokens", GGUFValue::str_array({"<unk>"}));
        w.set("tokenizer.ggml.bos_token_id", GGUFValue::i32(-1));
        expect_vocab_error(w, "tiny.gguf", {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id"});
    }
    // merges naming tokens that do not exist: legal (llama.cpp loads them); a merge whose result is
    // not a token is never applied, so tokenization stays in range.
    {
        GGUFWriter w;
        std::vector<std::string> tokens;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            if (printable && b < 0x80) tokens.push_back(std::string(1, static_cast<char>(b)));
        }
        tokens.push_back("ab");
        w.set("tokenizer.ggml.model", GGUFValue::string("gpt2"));
        w.set("tokenizer.ggml.pre", GGUFValue::string("gpt-2"));
        w.set("tokenizer.ggml.tokens", GGUFValue::str_array(tokens));
        w.set("tokenizer.ggml.merges", GGUFValue::str_array({"zz qq", "a b", "ab nothere", "\xc4\xa0 zz"}));
        w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(0));
        w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(0));
        const slm::Vocab v = vocab_of(w, "merges.gguf");
        const std::vector<int32_t> ids = v.tokenize("abnothere zzqq ab", false, false);
        ASSERT_FALSE(ids.empty());
        for (int32_t t : ids) EXPECT_TRUE(t >= 0 && t < v.n_tokens()) << t;
        EXPECT_EQ(v.tokenize("ab", false, false), (std::vector<int32_t>{static_cast<int32_t>(tokens.size() - 1)}));
    }
    // a merge that is not two tokens is refused
    {
        GGUFWriter w = spm_vocab_writer();
        w.set("tokenizer.ggml.model", GGUFValue::string("gpt2"));
        w.set("tokenizer.ggml.pre", GGUFValue::string("gpt-2"));
        w.set("tokenizer.ggml.merges", GGUFValue::str_array({"a b", "nospace"}));
        expect_vocab_error(w, "merge1.gguf", {"tokenizer.ggml.merges[1]", "nospace"});
    }
}

// llama.cpp #19003: a string length read from the file sized an allocation.
TEST(GGUFAttack, UnboundedStringLengths) {
    for (uint64_t n : {uint64_t(1) << 63, (uint64_t(1) << 32) + 3, kU64Max}) {
        SCOPED_TRACE(n);
        const std::string ns = std::to_string(n);
        expect_gguf_error(Bytes().header(0, 1).u64(n).raw("abc").zeros(16).b, "keyname.gguf", {"key #0", ns});
        expect_gguf_error(Bytes().header(0, 1).key("general.name", GGUFType::STRING).u64(n).raw("x").b, "value.gguf",
                          {"'general.name'", ns});
        expect_gguf_error(Bytes().header(0, 1).key("tokenizer.ggml.tokens", GGUFType::ARRAY)
                              .u32(id(GGUFType::STRING)).u64(2).str("a").u64(n).raw("b").b,
                          "elem.gguf", {"'tokenizer.ggml.tokens'[1]", ns});
        expect_gguf_error(Bytes().header(1, 0).u64(n).raw("t").zeros(40).b, "tname.gguf", {"tensor #0", ns});
    }
}

// Alignments of 2^30 (padding computed from it), 0 (division by zero) and non-powers of two.
TEST(GGUFAttack, Alignment) {
    auto with_al = [](uint32_t al) {
        return Bytes().header(1, 1).key("general.alignment", GGUFType::U32).u32(al).tinfo("w", {8}, 0, 0).pad(32)
            .zeros(32).b;
    };
    // 2^30 is a power of two, but the data section it implies lies past the end of this file
    expect_gguf_error(with_al(1u << 30), "al30.gguf", {"1073741824"});
    expect_gguf_error(with_al(1u << 31), "al31.gguf", {"'general.alignment'", "2147483648"});
    expect_gguf_error(with_al(0), "al0.gguf", {"'general.alignment'", "0"});
    for (uint32_t al : {3u, 24u, 1000u, 0xFFFFFFFFu})
        expect_gguf_error(with_al(al), "alnp2.gguf", {"'general.alignment'", std::to_string(al)});
    EXPECT_NO_THROW(parse_copy(with_al(32), "al32.gguf"));  // the positive control
}

// Ollama CVE-2026-7482 "Bleeding Llama": a tensor whose shape claims more data than the file holds
// made the loader read (and serve back) memory past the tensor. Model::load must refuse the file
// before reading any tensor.
TEST(GGUFAttack, BleedingLlamaShapeLiesAboutTheData) {
    std::vector<uint8_t> good = slm::test::read_file(slm::test::model_path("stories260K/stories260K.gguf"));
    const GGUFFile f = GGUFFile::parse(good.data(), good.size(), "good");
    // The tensor info of 'output_norm.weight' (a 1-D F32 [64]): its ne[0] follows the name and n_dims.
    const std::string name = "output_norm.weight";
    const slm::GGUFTensorInfo* t = f.find_tensor(name);
    ASSERT_NE(t, nullptr);
    ASSERT_EQ(t->n_dims, 1u);
    const size_t ne0_at = ne_offset(good, f, name, 0);
    ASSERT_NE(ne0_at, 0u);
    uint64_t ne0;
    std::memcpy(&ne0, good.data() + ne0_at, 8);
    ASSERT_EQ(static_cast<int64_t>(ne0), t->ne[0]);

    auto with_ne0 = [&](uint64_t v) {
        std::vector<uint8_t> b = good;
        std::memcpy(b.data() + ne0_at, &v, 8);
        return b;
    };
    // a shape needing more bytes than the whole file
    const uint64_t huge = good.size();
    std::string path = write_temp("bleed_file.gguf", with_ne0(huge));
    expect_error([&] { slm::Model::load(path); }, {path, "'output_norm.weight'"});
    // a shape that stays inside the file but reaches into the next tensor / past the data section
    path = write_temp("bleed_extent.gguf", with_ne0(ne0 * 64));
    expect_error([&] { slm::Model::load(path); }, {path, "'output_norm.weight'"});
    // a shape smaller than the model needs: refused by the model's shape check, not read past
    path = write_temp("bleed_small.gguf", with_ne0(ne0 / 2));
    expect_error([&] { slm::Model::load(path); }, {path, "'output_norm.weight'", "shape"});
    // the data section cut short: the last tensor's extent runs past the end
    std::vector<uint8_t> cut(good.begin(), good.end() - 4);
    path = write_temp("bleed_cut.gguf", cut);
    expect_error([&] { slm::Model::load(path); }, {path, "past"});

    // and through the CLI: a clean error and a non-zero exit, no output from the tensor
    slm::test::RunResult r = slm::test::run_cli({"info", write_temp("bleed_cli.gguf", with_ne0(huge))});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("bleed_cli.gguf"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("'output_norm.weight'"), std::string::npos) << r.err;
}

// The vocabulary-size variant: token_embd.weight with fewer rows than the tokenizer has tokens would
// let a valid token id index past the embedding. Model::load compares the two.
TEST(GGUFAttack, EmbeddingRowsDisagreeWithTheVocabulary) {
    std::vector<uint8_t> b = slm::test::read_file(slm::test::model_path("stories260K/stories260K.gguf"));
    const GGUFFile f = GGUFFile::parse(b.data(), b.size(), "good");
    const slm::GGUFTensorInfo& emb = f.tensor("token_embd.weight");
    ASSERT_EQ(emb.n_dims, 2u);
    const size_t at = ne_offset(b, f, "token_embd.weight", 1);
    ASSERT_NE(at, 0u);
    const uint64_t half = static_cast<uint64_t>(emb.ne[1] / 2);
    std::memcpy(b.data() + at, &half, 8);
    const std::string path = write_temp("rows.gguf", b);
    expect_error([&] { slm::Model::load(path); },
                 {path, "token_embd.weight", std::to_string(half) + " rows", std::to_string(emb.ne[1]) + " tokens"});
}

// ==== safetensors ================================================================================

namespace {

std::vector<uint8_t> safetensors_file(const std::string& header, size_t data, uint64_t len_override = 0) {
    Bytes b;
    b.u64(len_override ? len_override : header.size()).raw(header).zeros(data);
    return b.b;
}

void expect_st_error(const std::vector<uint8_t>& bytes, const std::string& name, std::vector<std::string> needles) {
    needles.insert(needles.begin(), name);
    expect_error(
        [&] {
            std::vector<uint8_t> copy(bytes);
            copy.shrink_to_fit();
            slm::SafetensorsFile::parse(copy.data(), copy.size(), name);
        },
        needles);
}

} // namespace

TEST(SafetensorsAttack, HeaderLength) {
    const std::string h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    expect_st_error(safetensors_file(h, 8, uint64_t(1) << 63), "hlen.safetensors", {"header length", "9223372036854775808"});
    expect_st_error(safetensors_file(h, 8, kU64Max), "hmax.safetensors", {"header length", "18446744073709551615"});
    // within the limit, but past the end of the file
    expect_st_error(safetensors_file(h, 8, h.size() + 9), "hpast.safetensors",
                    {"header length", std::to_string(h.size() + 9), "past the end"});
    EXPECT_NO_THROW({
        std::vector<uint8_t> ok = safetensors_file(h, 8);
        slm::SafetensorsFile::parse(ok.data(), ok.size(), "ok");
    });
}

TEST(SafetensorsAttack, DataOffsets) {
    auto one = [](const std::string& shape, const std::string& offs, const char* dtype = "F32") {
        return std::string(R"({"w":{"dtype":")") + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offs + "}}";
    };
    // past the end of the data
    expect_st_error(safetensors_file(one("[4]", "[0,16]"), 8), "past.safetensors", {"'w'", "data_offsets"});
    expect_st_error(safetensors_file(one("[2]", "[18446744073709551608,0]"), 8), "wrap.safetensors",
                    {"'w'", "data_offsets"});
    // reversed
    expect_st_error(safetensors_file(one("[2]", "[8,0]"), 8), "rev.safetensors", {"'w'", "end before begin"});
    // shape x dtype size differs from the offsets' range
    expect_st_error(safetensors_file(one("[3]", "[0,8]"), 16), "size.safetensors", {"'w'", "[3]", "bytes"});
    expect_st_error(safetensors_file(one("[2]", "[0,8]", "F16"), 8), "size16.safetensors", {"'w'", "F16"});
    // shape product overflow, and an element count whose byte size overflows
    expect_st_error(safetensors_file(one("[4294967296,4294967296,2]", "[0,8]"), 8), "ovf.safetensors",
                    {"'w'", "64 bits"});
    expect_st_error(safetensors_file(one("[4611686018427387904]", "[0,0]"), 8), "ovfb.safetensors",
                    {"'w'", "64 bits"});
    expect_st_error(safetensors_file(one("[-1]", "[0,4]"), 8), "neg.safetensors", {"w.shape[0]"});
    // overlapping tensors
    const std::string two = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
    expect_st_error(safetensors_file(two, 12), "overlap.safetensors", {"'a'", "'b'", "overlap"});
}

// ==== llama2.c checkpoints and tokenizer.bin =====================================================

namespace {

struct L2Config {
    int32_t dim = 2, hidden_dim = 2, n_layers = 1, n_heads = 1, n_kv_heads = 1, vocab_size = 3, seq_len = 1;
};

// Number of floats run.c reads for this header (the shared/separate classifier included).
int64_t l2_floats(const L2Config& c) {
    const int64_t d = c.dim, ff = c.hidden_dim, L = c.n_layers, v = c.vocab_size < 0 ? -int64_t(c.vocab_size) : c.vocab_size;
    const int64_t hs = d / c.n_heads, kv = hs * c.n_kv_heads;
    int64_t n = v * d + L * d + L * d * d + 2 * L * d * kv + L * d * d + L * d + 3 * L * ff * d + d + c.seq_len * hs;
    if (c.vocab_size < 0) n += v * d;
    return n;
}

std::vector<uint8_t> l2_checkpoint(const L2Config& c, int64_t n_floats) {
    Bytes b;
    b.i32(c.dim).i32(c.hidden_dim).i32(c.n_layers).i32(c.n_heads).i32(c.n_kv_heads).i32(c.vocab_size).i32(c.seq_len);
    for (int64_t i = 0; i < n_floats; ++i) b.f32(0.01f * static_cast<float>(i % 7));
    return b.b;
}

std::vector<uint8_t> l2_tokenizer(int32_t max_len, const std::vector<std::string>& pieces) {
    Bytes b;
    b.i32(max_len);
    for (const std::string& p : pieces) b.f32(0.0f).i32(static_cast<int32_t>(p.size())).raw(p);
    return b.b;
}

const std::vector<std::string> kPieces = {"<unk>", "\n<s>\n", "\n</s>\n"};

void expect_l2_error(const std::vector<uint8_t>& model, const std::vector<uint8_t>& tok, const std::string& tag,
                     std::vector<std::string> needles, bool name_model = true) {
    const std::string mp = write_temp(tag + ".bin", model);
    const std::string tp = write_temp(tag + "_tok.bin", tok);
    needles.insert(needles.begin(), name_model ? mp : tp);
    expect_error([&] { slm::convert_llama2c(mp, tp, slm::test::temp_dir() + "/" + tag + ".gguf"); }, needles);
}

} // namespace

TEST(Llama2cAttack, ValidTinyCheckpointConverts) {
    // the positive control for the crafted files below
    const L2Config c;
    const std::string mp = write_temp("ok.bin", l2_checkpoint(c, l2_floats(c)));
    const std::string tp = write_temp("ok_tok.bin", l2_tokenizer(8, kPieces));
    const std::string out = slm::test::temp_dir() + "/ok.gguf";
    slm::convert_llama2c(mp, tp, out);
    const GGUFFile f = GGUFFile::open(out);
    EXPECT_EQ(f.tensor("token_embd.weight").shape(), (std::vector<int64_t>{2, 3}));
}

TEST(Llama2cAttack, NegativeAndHugeDimensions) {
    const std::vector<std::pair<int32_t L2Config::*, const char*>> fields = {
        {&L2Config::dim, "dim"},           {&L2Config::hidden_dim, "hidden_dim"}, {&L2Config::n_layers, "n_layers"},
        {&L2Config::n_heads, "n_heads"},   {&L2Config::n_kv_heads, "n_kv_heads"}, {&L2Config::seq_len, "seq_len"}};
    for (const auto& [field, fname] : fields) {
        for (int32_t bad : {-1, 0, INT32_MIN, INT32_MAX}) {
            SCOPED_TRACE(std::string(fname) + " = " + std::to_string(bad));
            L2Config c;
            c.*field = bad;
            expect_l2_error(l2_checkpoint(c, 64), l2_tokenizer(8, kPieces), "dims", {"'" + std::string(fname) + "'"});
        }
    }
    for (int32_t bad : {0, 2, INT32_MIN, INT32_MAX, -2}) {
        SCOPED_TRACE(bad);
        L2Config c;
        c.vocab_size = bad;
        expect_l2_error(l2_checkpoint(c, 64), l2_tokenizer(8, kPieces), "vocab", {"'vocab_size'", std::to_string(bad)});
    }
}

TEST(Llama2cAttack, FileShorterThanTheHeaderImplies) {
    const L2Config c;
    const int64_t n = l2_floats(c);
    expect_l2_error(l2_checkpoint(c, n - 1), l2_tokenizer(8, kPieces), "short", {"truncated", "needs"});
    expect_l2_error(std::vector<uint8_t>(27, 1), l2_tokenizer(8, kPieces), "tiny", {"too short"});
    // a negative vocab_size means a separate classifier follows: the same file is now too short
    L2Config sep = c;
    sep.vocab_size = -3;
    expect_l2_error(l2_checkpoint(sep, n), l2_tokenizer(8, kPieces), "wcls", {"truncated", "vocab_size -3"});
    // ... and with the classifier present it converts
    const std::string mp = write_temp("wcls_ok.bin", l2_checkpoint(sep, l2_floats(sep)));
    const std::string tp = write_temp("wcls_ok_tok.bin", l2_tokenizer(8, kPieces));
    EXPECT_NO_THROW(slm::convert_llama2c(mp, tp, slm::test::temp_dir() + "/wcls_ok.gguf"));
    // largest dims the bounds allow: the size computed from them must not overflow, only mismatch
    L2Config big;
    big.dim = 1 << 16;
    big.hidden_dim = 1 << 18;
    big.n_layers = 1 << 12;
    big.n_heads = 2;
    big.n_kv_heads = 2;
    big.vocab_size = -(1 << 22);
    big.seq_len = 1 << 24;
    expect_l2_error(l2_checkpoint(big, 16), l2_tokenizer(8, kPieces), "big", {"truncated"});
}

TEST(Llama2cAttack, TokenizerLengths) {
    const L2Config c;
    const std::vector<uint8_t> model = l2_checkpoint(c, l2_floats(c));
    // max_token_length only sizes run.c's buffer: slm never allocates from it, so huge or negative
    // values convert
    for (int32_t max_len : {INT32_MAX, -1, 0}) {
        const std::string mp = write_temp("maxlen.bin", model);
        const std::string tp = write_temp("maxlen_tok.bin", l2_tokenizer(max_len, kPieces));
        EXPECT_NO_THROW(slm::convert_llama2c(mp, tp, slm::test::temp_dir() + "/maxlen.gguf")) << max_len;
    }
    // a token length that is negative, or runs past the end
    Bytes neg;
    neg.i32(8).f32(0).i32(5).raw("<unk>").f32(0).i32(-1).raw("abc");
    expect_l2_error(model, neg.b, "negtok", {"token 1", "length 4294967295"}, false);
    Bytes past;
    past.i32(8).f32(0).i32(5).raw("<unk>").f32(0).i32(1000).raw("abc");
    expect_l2_error(model, past.b, "pasttok", {"token 1", "length 1000", "past the end"}, false);
    // fewer tokens than vocab_size
    expect_l2_error(model, l2_tokenizer(8, {"<unk>", "a"}), "fewtok", {"token 2", "past the end"}, false);
    expect_l2_error(model, {1, 2}, "tok2bytes", {"max_token_length"}, false);
}

// ==== what the fuzzers found (SECURITY.md) =======================================================
// Numbers from untrusted text converted to integers without a range check: undefined behaviour
// (UBSan's float-cast-overflow, which g++'s -fsanitize=undefined leaves out, so tested directly).

namespace {

void expect_config_error(const std::string& file, const std::vector<std::string>& needles) {
    const std::string path = slm::test::source_dir() + "/tests/fuzz/regressions/hf_config/" + file;
    const auto cfg = slm::json_util::JsonFile::read(path, "hf");
    const std::string arch = cfg.root["architectures"][0].get<std::string>();
    const slm::hf::ArchSpec* spec = slm::hf::arch_by_hf(arch);
    ASSERT_NE(spec, nullptr) << arch;
    GGUFWriter w;
    std::vector<std::string> all = needles;
    all.insert(all.begin(), file);
    expect_error([&] { spec->to_gguf(cfg, 1, w); }, all);
}

} // namespace

TEST(FuzzFindings, TaskFileVersionOutOfRange) {
    const std::string text = slm::test::read_text(slm::test::source_dir() +
                                                  "/tests/fuzz/regressions/task_file/version_1e99.yaml");
    expect_error([&] { slm::parse_task_file(text, "v.yaml", "/tmp"); }, {"v.yaml", "metadata.version", "1e99"});
    for (const char* v : {"-1", "nan", "inf", "x"})
        expect_error([&] { slm::parse_task_file("task: t\nmetadata:\n  version: " + std::string(v) + "\n", "v.yaml"); },
                     {"v.yaml", "metadata.version"});
    EXPECT_EQ(slm::parse_task_file("task: t\ndataset_path: d.jsonl\noutput_type: multiple_choice\n"
                                   "doc_to_text: q\ndoc_to_target: 0\ndoc_to_choice: '{{[\"a\"]}}'\nmetadata:\n  version: 2.5\n",
                                   "v.yaml", "/tmp")
                  .version,
              2);
}

TEST(FuzzFindings, HfConfigNumbersBoundedBeforeConversion) {
    expect_config_error("phi3_partial_rotary_1e300.json", {"partial_rotary_factor", "(0, 1]"});
    expect_config_error("phi3_hidden_size_int64_max.json", {"hidden_size"});
    expect_config_error("openelm_ffn_multiplier_1e300.json", {"ffn_multipliers[1]"});
    // Found by CI's smoke run: 2 x hidden_size overflowed 64 bits in the Mamba reader. Every config
    // integer is now at most 2^40 in magnitude.
    expect_config_error("mamba_hidden_size_int64_max.json", {"hidden_size", "2^40"});
}

// fuzz_gguf found kernels reading an F16 tensor at an odd address: general.alignment may be 1, 2 or
// 4 (llama.cpp's reader accepts any power of two), which puts tensors where typed loads are
// misaligned (undefined behaviour, flagged by -fsanitize=alignment in make test-sanitize).
// Model::load now copies such tensors to aligned memory: the model must run exactly as the
// original.
TEST(FuzzFindings, ModelWithAlignment1RunsLikeTheOriginal) {
    for (const char* rel : {"stories260K/stories260K.gguf", "stories5m/stories5m.q8_0.gguf"}) {
        SCOPED_TRACE(rel);
        const std::string src = slm::test::model_path(rel);
        const GGUFFile f = GGUFFile::open(src);
        const std::string out = slm::test::temp_dir() + "/align1.gguf";
        bool misaligned = false;
        for (size_t pad = 0; pad < 8 && !misaligned; ++pad) {  // metadata of a length that shifts the data
            GGUFWriter w;
            w.copy_kv_from(f);
            w.set("general.alignment", GGUFValue::u32(1));
            w.set("slm.test.pad", GGUFValue::string(std::string(pad, 'x')));
            for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            w.write(out);
            const GGUFFile g = GGUFFile::open(out);
            for (const auto& t : g.tensors()) misaligned |= reinterpret_cast<uintptr_t>(t.data) % 4 != 0;
        }
        ASSERT_TRUE(misaligned);
        const auto a = slm::Model::load(src), b = slm::Model::load(out);
        slm::SessionOptions so;
        so.n_ctx = 64;
        slm::Session sa(a, so), sb(b, so);
        const std::vector<int32_t> ids = a->vocab().tokenize("Once upon a time", true, false);
        const size_t n = a->hparams().n_vocab;
        const float* la = sa.eval(ids);
        const std::vector<float> va(la, la + n);
        const float* lb = sb.eval(ids);
        EXPECT_EQ(std::memcmp(va.data(), lb, n * sizeof(float)), 0);
    }
}
