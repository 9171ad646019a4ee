// Tests of slm::convert_llama2c against the GGUF llama.cpp's llama-convert-llama2c-to-ggml made from
// the same stories260K checkpoint (models/stories260K/PROVENANCE.md), and against malformed inputs.
#include "slm/convert.h"

#include "slm/error.h"
#include "slm/gguf.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

using slm::test::model_path;
using slm::test::read_file;
using slm::test::temp_dir;
using slm::test::write_file;

const std::string kBin = "stories260K/stories260K.bin";
const std::string kTok = "stories260K/tok512.bin";
const std::string kRef = "stories260K/stories260K.gguf";

bool exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
}

// Runs the converter and returns the error message ("" if it succeeded).
std::string convert_error(const std::string& bin, const std::string& tok, const std::string& out) {
    try {
        slm::convert_llama2c(bin, tok, out);
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "";
}

void put_i32(std::vector<uint8_t>& b, size_t off, int32_t v) { std::memcpy(b.data() + off, &v, 4); }

template <class T> void append(std::vector<uint8_t>& b, T v) {
    const size_t at = b.size();
    b.resize(at + sizeof v);
    std::memcpy(b.data() + at, &v, sizeof v);
}
void append_i32(std::vector<uint8_t>& b, int32_t v) { append(b, v); }
void append_f32(std::vector<uint8_t>& b, float v) { append(b, v); }

// tokenizer.bin bytes for the given pieces; score of piece i is -i.
std::vector<uint8_t> make_tokenizer(const std::vector<std::string>& pieces) {
    std::vector<uint8_t> b;
    append_i32(b, 8);
    for (size_t i = 0; i < pieces.size(); ++i) {
        append_f32(b, -float(i));
        append_i32(b, static_cast<int32_t>(pieces[i].size()));
        b.insert(b.end(), pieces[i].begin(), pieces[i].end());
    }
    return b;
}

// The header fields, in file order.
struct Header {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Number of floats after the header for `h` (freq_cis included, wcls when vocab_size < 0).
size_t n_floats(const Header& h) {
    const size_t d = h.dim, ff = h.hidden_dim, L = h.n_layers, v = std::abs(h.vocab_size);
    const size_t kv = d * h.n_kv_heads / h.n_heads;
    size_t n = v * d + L * d + L * d * d + 2 * L * d * kv + L * d * d + L * d + 3 * L * ff * d + d;
    n += h.seq_len * (d / h.n_heads);
    if (h.vocab_size < 0) n += v * d;
    return n;
}

// A checkpoint whose k-th weight float is k, so every tensor's source offset can be checked.
std::vector<uint8_t> make_checkpoint(const Header& h) {
    std::vector<uint8_t> b;
    for (int32_t v : {h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len})
        append_i32(b, v);
    const size_t n = n_floats(h);
    for (size_t k = 0; k < n; ++k) append_f32(b, float(k));
    return b;
}

TEST(Llama2c, Stories260KMatchesLlamaCppConverter) {
    const std::string out = temp_dir() + "/stories260K.converted.gguf";
    slm::convert_llama2c(model_path(kBin), model_path(kTok), out);
    ASSERT_FALSE(exists(out + ".tmp"));

    slm::GGUFFile got = slm::GGUFFile::open(out);
    slm::GGUFFile ref = slm::GGUFFile::open(model_path(kRef));
    EXPECT_EQ(got.version(), ref.version());
    EXPECT_EQ(got.alignment(), ref.alignment());

    ASSERT_EQ(got.kv().size(), ref.kv().size());
    for (size_t i = 0; i < ref.kv().size(); ++i) {
        const auto& [rk, rv] = ref.kv()[i];
        const auto& [gk, gv] = got.kv()[i];
        EXPECT_EQ(gk, rk) << "key " << i;
        EXPECT_EQ(gv.type, rv.type) << rk;
        EXPECT_TRUE(gv == rv) << rk << ": got " << gv.to_string() << ", llama.cpp " << rv.to_string();
    }

    ASSERT_EQ(got.tensors().size(), ref.tensors().size());
    for (size_t i = 0; i < ref.tensors().size(); ++i) {
        const auto& r = ref.tensors()[i];
        const auto& g = got.tensors()[i];
        EXPECT_EQ(g.name, r.name) << "tensor " << i;
        EXPECT_EQ(g.type, r.type) << r.name;
        EXPECT_EQ(g.shape(), r.shape()) << r.name << ": " << g.shape_str() << " vs " << r.shape_str();
        EXPECT_EQ(g.offset, r.offset) << r.name;
        ASSERT_EQ(g.nbytes, r.nbytes) << r.name;
        EXPECT_EQ(std::memcmp(g.data, r.data, r.nbytes), 0) << r.name;
    }

    // The shared classifier is written out as a copy of the embedding, as the converter does.
    const auto& emb = got.tensor("token_embd.weight");
    const auto& cls = got.tensor("output.weight");
    ASSERT_EQ(emb.nbytes, cls.nbytes);
    EXPECT_EQ(std::memcmp(emb.data, cls.data, emb.nbytes), 0);

    // With keys, tensors and data all equal, the files are equal byte for byte.
    EXPECT_TRUE(read_file(out) == read_file(model_path(kRef)));
}

TEST(Llama2c, Stories260KRoundTripsThroughWriter) {
    const std::string out = temp_dir() + "/stories260K.roundtrip.gguf";
    slm::convert_llama2c(model_path(kBin), model_path(kTok), out);
    slm::GGUFFile f = slm::GGUFFile::open(out);
    slm::GGUFWriter w;
    w.copy_kv_from(f);
    for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    EXPECT_TRUE(w.to_bytes() == read_file(out));

    const std::string again = temp_dir() + "/stories260K.roundtrip2.gguf";
    w.write(again);
    EXPECT_TRUE(read_file(again) == read_file(out));
}

TEST(Llama2c, SeparateClassifierTokensAndTensorOffsets) {
    const Header h = {8, 12, 2, 2, 1, -7, 4};  // vocab_size < 0: wcls follows the weights
    const std::string dir = temp_dir();
    write_file(dir + "/tiny.bin", make_checkpoint(h));
    write_file(dir + "/tiny_tok.bin",
               make_tokenizer({"<unk>", "\n<s>\n", "\n</s>\n", "<0x41>", " a b", "", "hello"}));
    slm::convert_llama2c(dir + "/tiny.bin", dir + "/tiny_tok.bin", dir + "/tiny.gguf");
    slm::GGUFFile f = slm::GGUFFile::open(dir + "/tiny.gguf");

    EXPECT_EQ(f.get_str_array("tokenizer.ggml.tokens"),
              (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x41>", "\xe2\x96\x81" "a" "\xe2\x96\x81" "b", "",
                                        "hello"}));
    EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type"), (std::vector<int32_t>{2, 3, 3, 6, 1, 3, 1}));
    EXPECT_EQ(f.get_f32_array("tokenizer.ggml.scores"), (std::vector<float>{0, -1, -2, -3, -4, -5, -6}));
    EXPECT_EQ(f.get_u32("llama.embedding_length"), 8u);
    EXPECT_EQ(f.get_u32("llama.feed_forward_length"), 12u);
    EXPECT_EQ(f.get_u32("llama.block_count"), 2u);
    EXPECT_EQ(f.get_u32("llama.attention.head_count"), 2u);
    EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), 1u);
    EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), 4u);
    EXPECT_EQ(f.get_u32("llama.context_length"), 128u);  // the converter's default, not seq_len

    // First float of each tensor = its element offset in the checkpoint (run.c order).
    const int64_t d = 8, ff = 12, L = 2, v = 7, kv = 4;
    int64_t at = 0;
    auto next = [&](int64_t n) { int64_t s = at; at += n; return s; };
    const int64_t tok = next(v * d), att = next(L * d), wq = next(L * d * d), wk = next(L * d * kv),
                  wv = next(L * d * kv), wo = next(L * d * d), ffn = next(L * d), w1 = next(L * ff * d),
                  w2 = next(L * d * ff), w3 = next(L * ff * d), fin = next(d);
    next(4 * (d / 2));  // freq_cis
    const int64_t cls = next(v * d);
    auto first = [&](const std::string& name) {
        float x;
        std::memcpy(&x, f.tensor(name).data, 4);
        return static_cast<int64_t>(x);
    };
    EXPECT_EQ(first("token_embd.weight"), tok);
    EXPECT_EQ(first("output_norm.weight"), fin);
    EXPECT_EQ(first("output.weight"), cls);
    for (int64_t il = 0; il < L; ++il) {
        const std::string b = "blk." + std::to_string(il) + ".";
        EXPECT_EQ(first(b + "attn_q.weight"), wq + il * d * d);
        EXPECT_EQ(first(b + "attn_k.weight"), wk + il * d * kv);
        EXPECT_EQ(first(b + "attn_v.weight"), wv + il * d * kv);
        EXPECT_EQ(first(b + "attn_output.weight"), wo + il * d * d);
        EXPECT_EQ(first(b + "attn_norm.weight"), att + il * d);
        EXPECT_EQ(first(b + "ffn_gate.weight"), w1 + il * ff * d);
        EXPECT_EQ(first(b + "ffn_down.weight"), w2 + il * d * ff);
        EXPECT_EQ(first(b + "ffn_up.weight"), w3 + il * ff * d);
        EXPECT_EQ(first(b + "ffn_norm.weight"), ffn + il * d);
    }
    EXPECT_EQ(f.tensor("blk.1.attn_k.weight").shape(), (std::vector<int64_t>{8, 4}));
    EXPECT_EQ(f.tensor("blk.1.ffn_down.weight").shape(), (std::vector<int64_t>{12, 8}));
    EXPECT_EQ(f.tensor("output.weight").shape(), (std::vector<int64_t>{8, 7}));
}

// The one deliberate difference from llama.cpp's converter: it writes rope.dimension_count as
// min(64, head_size), which for a head larger than 64 would rotate only part of each head, while
// llama2.c rotates all of it. We write the head size. No released llama2.c model has a head above
// 64 (stories260K 8, stories15M 48, stories42M and 110M 64), so their files are unaffected.
TEST(Llama2c, RopeDimensionIsTheWholeHead) {
    const Header h = {256, 4, 1, 2, 2, 3, 2};  // head size 128
    const std::string dir = temp_dir();
    write_file(dir + "/wide.bin", make_checkpoint(h));
    write_file(dir + "/wide_tok.bin", make_tokenizer({"<unk>", "<s>", "</s>"}));
    slm::convert_llama2c(dir + "/wide.bin", dir + "/wide_tok.bin", dir + "/wide.gguf");
    slm::GGUFFile f = slm::GGUFFile::open(dir + "/wide.gguf");
    EXPECT_EQ(f.get_u32("llama.rope.dimension_count"), 128u);  // llama.cpp's converter: 64
}

TEST(Llama2c, TruncatedCheckpointIsRefused) {
    const auto bin = read_file(model_path(kBin));
    const std::string dir = temp_dir();
    for (size_t cut : {size_t(0), size_t(3), size_t(27), size_t(28), size_t(1000), bin.size() / 2, bin.size() - 4,
                       bin.size() - 1}) {
        const std::string path = dir + "/cut_" + std::to_string(cut) + ".bin";
        write_file(path, std::vector<uint8_t>(bin.begin(), bin.begin() + static_cast<ptrdiff_t>(cut)));
        const std::string out = dir + "/cut_" + std::to_string(cut) + ".gguf";
        const std::string err = convert_error(path, model_path(kTok), out);
        EXPECT_NE(err.find(path), std::string::npos) << "cut " << cut << ": " << err;
        EXPECT_FALSE(exists(out));
    }
    // Leftover bytes are refused as llama.cpp's converter refuses them.
    auto longer = bin;
    longer.push_back(0);
    write_file(dir + "/long.bin", longer);
    const std::string err = convert_error(dir + "/long.bin", model_path(kTok), dir + "/long.gguf");
    EXPECT_NE(err.find(dir + "/long.bin"), std::string::npos) << err;
}

TEST(Llama2c, BadHeaderNamesFileFieldAndValue) {
    const auto bin = read_file(model_path(kBin));
    const std::string dir = temp_dir();
    struct Case {
        size_t field;  // index of the int32 in the header
        int32_t value;
        std::string want;  // substring of the message besides the file name
    };
    const Case cases[] = {
        {0, 1 << 30, "'dim' = 1073741824"},
        {0, -64, "'dim' = -64"},
        {0, 0, "'dim' = 0"},
        {0, 60, "'dim' = 60"},           // not a multiple of n_heads = 8
        {0, 0x616b3432, "ak42"},          // a versioned export's magic
        {1, -1, "'hidden_dim' = -1"},
        {2, 1 << 20, "'n_layers' = 1048576"},
        {3, 0, "'n_heads' = 0"},
        {3, 16, "accounts for"},          // valid, but then wk and wv are half as large: bytes left over
        {4, 3, "'n_heads' = 8"},          // 8 is not a multiple of 3
        {4, 16, "'n_kv_heads' = 16"},     // more kv heads than heads
        {5, INT32_MIN, "'vocab_size' = -2147483648"},
        {5, 1 << 30, "'vocab_size' = 1073741824"},
        {5, 1000, "truncated"},           // sane, but the file is too short for it
        {6, -512, "'seq_len' = -512"},
    };
    for (const Case& c : cases) {
        auto b = bin;
        put_i32(b, c.field * 4, c.value);
        const std::string path = dir + "/hdr_" + std::to_string(c.field) + "_" + std::to_string(c.value) + ".bin";
        write_file(path, b);
        const std::string err = convert_error(path, model_path(kTok), dir + "/hdr.gguf");
        EXPECT_NE(err.find(path), std::string::npos) << err;
        EXPECT_NE(err.find(c.want), std::string::npos) << err;
    }
    // An odd head size (dim 64, 64 heads, head size 1) cannot be rotated in pairs.
    auto b = bin;
    put_i32(b, 12, 64);
    put_i32(b, 16, 64);
    write_file(dir + "/odd_head.bin", b);
    const std::string err = convert_error(dir + "/odd_head.bin", model_path(kTok), dir + "/odd.gguf");
    EXPECT_NE(err.find("head size"), std::string::npos) << err;
    EXPECT_FALSE(exists(dir + "/hdr.gguf"));
}

TEST(Llama2c, BadTokenizerIsRefused) {
    const auto tok = read_file(model_path(kTok));
    const std::string dir = temp_dir();
    auto expect_refused = [&](const std::vector<uint8_t>& bytes, const std::string& name, const std::string& want) {
        const std::string path = dir + "/" + name;
        write_file(path, bytes);
        const std::string out = dir + "/" + name + ".gguf";
        const std::string err = convert_error(model_path(kBin), path, out);
        EXPECT_NE(err.find(path), std::string::npos) << name << ": " << err;
        EXPECT_NE(err.find(want), std::string::npos) << name << ": " << err;
        EXPECT_FALSE(exists(out));
    };
    // First token (offset 4): score at 4, length at 8.
    auto b = tok;
    put_i32(b, 8, 100000);
    expect_refused(b, "len_huge.bin", "length 100000");
    b = tok;
    put_i32(b, 8, -1);
    expect_refused(b, "len_neg.bin", "length 4294967295");
    // The last token's length one byte too long.
    b = tok;
    {
        size_t off = 4, last = 0;
        for (int i = 0; i < 512; ++i) {
            int32_t len;
            std::memcpy(&len, b.data() + off + 4, 4);
            last = off;
            off += 8 + static_cast<size_t>(len);
        }
        ASSERT_EQ(off, b.size());
        int32_t len;
        std::memcpy(&len, b.data() + last + 4, 4);
        put_i32(b, last + 4, len + 1);
        expect_refused(b, "len_last.bin", "token 511");
    }
    // Fewer tokens than the model's 512.
    expect_refused(std::vector<uint8_t>(tok.begin(), tok.begin() + 100), "short.bin", "runs past the end");
    expect_refused(std::vector<uint8_t>(tok.begin(), tok.begin() + 2), "tiny.bin", "max_token_length");
}

TEST(Llama2c, MissingInputNamesTheFile) {
    const std::string dir = temp_dir();
    std::string err = convert_error(dir + "/does-not-exist.bin", model_path(kTok), dir + "/x.gguf");
    EXPECT_NE(err.find("does-not-exist.bin"), std::string::npos) << err;
    err = convert_error(model_path(kBin), dir + "/no-tok.bin", dir + "/x.gguf");
    EXPECT_NE(err.find("no-tok.bin"), std::string::npos) << err;
}

} // namespace
