// gguf_test.cpp - GGUF reader and writer: byte-identical round trips of every real file we have,
// every value type through the builder, and one test per way a file can be malformed.
//
// Malformed files are crafted byte by byte with `Raw` (an independent little-endian encoder, so
// the writer is not testing itself) and parsed from an exact-size heap copy, so that under
// -DSLM_SANITIZE=ON any read past the end is caught by AddressSanitizer.
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/types.h"
#include "gguf_bytes.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace fs = std::filesystem;
using slm::GGMLType;
using slm::GGUFFile;
using slm::GGUFTensorInfo;
using slm::GGUFType;
using slm::GGUFValue;
using slm::GGUFWriter;

namespace {

using test::id;
using test::kU64Max;

// ---- raw little-endian encoder for crafted files ----------------------------------------------

using Raw = test::GGUFBytes;

struct TI {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    uint64_t offset;
};

// A file with the given tensor infos (and optional u32 keys), padded to `al`, then `data` zero bytes.
std::vector<uint8_t> tensor_file(const std::vector<TI>& ts, size_t data,
                                 const std::vector<std::pair<std::string, uint32_t>>& kv = {}, size_t al = 32) {
    Raw r;
    r.header(ts.size(), kv.size());
    for (const auto& [k, v] : kv) r.kv_u32(k, v);
    for (const auto& t : ts) r.tinfo(t.name, t.ne, t.type, t.offset);
    r.pad(al).zeros(data);
    return r.b;
}

std::string current_test() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string(info->test_suite_name()) + "." + info->name();
}

// Parses from an exact-size heap copy (ASan sees any over-read). Returns the error message, or
// records a failure and returns "" if no slm::Error was thrown.
std::string parse_error(const std::vector<uint8_t>& bytes, const std::string& name) {
    std::vector<uint8_t> copy(bytes);
    copy.shrink_to_fit();
    try {
        GGUFFile::parse(copy.data(), copy.size(), name);
        ADD_FAILURE() << "parse of " << name << " succeeded, expected an slm::Error";
    } catch (const slm::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected slm::Error, got std::exception: " << e.what();
    }
    return "";
}

void expect_contains(const std::string& msg, const std::string& needle) {
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg << "\nlacks: " << needle;
}

// Expects both GGUFFile::parse (in memory) and GGUFFile::open (a file in temp_dir()) to throw an
// slm::Error whose message names the file and contains every needle.
void expect_bad(const std::vector<uint8_t>& bytes, const std::vector<std::string>& needles) {
    static int counter = 0;
    std::string base = current_test() + "-" + std::to_string(counter++) + ".gguf";
    std::string mem = parse_error(bytes, "mem-" + base);
    expect_contains(mem, "mem-" + base);
    for (const auto& n : needles) expect_contains(mem, n);

    if (bytes.empty()) return;  // an empty file fails in the mapping, tested separately
    std::string path = slm::test::temp_dir() + "/" + base;
    slm::test::write_file(path, bytes);
    try {
        GGUFFile::open(path);
        ADD_FAILURE() << "open(" << path << ") succeeded";
    } catch (const slm::Error& e) {
        std::string msg = e.what();
        expect_contains(msg, path);
        for (const auto& n : needles) expect_contains(msg, n);
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected slm::Error, got std::exception: " << e.what();
    }
    fs::remove(path);
}

#define EXPECT_BAD(bytes, ...)                 \
    do {                                       \
        SCOPED_TRACE("crafted file");          \
        expect_bad((bytes), {__VA_ARGS__});    \
    } while (0)

GGUFFile parse_ok(const std::vector<uint8_t>& bytes) { return GGUFFile::parse(bytes.data(), bytes.size(), "ok.gguf"); }

// ---- comparisons --------------------------------------------------------------------------------

void expect_same_tensors(const GGUFFile& a, const GGUFFile& b) {
    ASSERT_EQ(a.tensors().size(), b.tensors().size());
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const GGUFTensorInfo& x = a.tensors()[i];
        const GGUFTensorInfo& y = b.tensors()[i];
        SCOPED_TRACE(x.name);
        EXPECT_EQ(x.name, y.name);
        EXPECT_EQ(x.type, y.type);
        EXPECT_EQ(x.n_dims, y.n_dims);
        for (int d = 0; d < 4; ++d) EXPECT_EQ(x.ne[d], y.ne[d]);
        EXPECT_EQ(x.offset, y.offset);
        EXPECT_EQ(x.nbytes, y.nbytes);
        if (x.nbytes == y.nbytes && x.nbytes > 0) {
            EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0);
        }
    }
}

GGUFWriter copy_writer(const GGUFFile& f) {
    GGUFWriter w(f.version());
    w.copy_kv_from(f);
    for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    return w;
}

// parse -> writer -> bytes must equal the original; re-parsing the bytes gives the same file.
void expect_round_trip(const std::string& path) {
    SCOPED_TRACE(path);
    std::vector<uint8_t> orig = slm::test::read_file(path);
    GGUFFile f = GGUFFile::open(path);
    EXPECT_EQ(f.file_size(), orig.size());
    std::vector<uint8_t> out = copy_writer(f).to_bytes();
    ASSERT_EQ(out.size(), orig.size());
    if (out != orig) {
        size_t i = 0;
        while (out[i] == orig[i]) ++i;
        FAIL() << "first difference at byte " << i;
    }
    GGUFFile g = GGUFFile::parse(out.data(), out.size(), path + " (rewritten)");
    EXPECT_EQ(g.version(), f.version());
    EXPECT_EQ(g.alignment(), f.alignment());
    EXPECT_EQ(g.data_offset(), f.data_offset());
    EXPECT_TRUE(g.kv() == f.kv());
    expect_same_tensors(f, g);
}

std::vector<std::string> ggufs_under(const std::string& dir) {
    std::vector<std::string> out;
    if (!fs::is_directory(dir)) return out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file() && e.path().extension() == ".gguf") out.push_back(e.path().string());
    std::sort(out.begin(), out.end());
    return out;
}

// A numeric array of any fixed-size element type from raw little-endian bytes.
GGUFValue raw_array(GGUFType et, uint64_t n, std::vector<uint8_t> bytes) {
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = et;
    v.n = n;
    v.raw = std::move(bytes);
    return v;
}

GGUFValue empty_array(GGUFType et) {
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = et;
    return v;
}

} // namespace

// ==== round trips of real files ===================================================================

TEST(GGUFRoundTrip, SharedFiles) {
    SLM_REQUIRE_SHARED();
    std::vector<std::string> files;
    for (const char* d : {"data/vocab", "data/models", "reference/stories260K", "reference/archs"})
        for (auto& f : ggufs_under(slm::test::shared_path(d))) files.push_back(f);
    EXPECT_GE(files.size(), 30u);
    for (const auto& f : files) expect_round_trip(f);
}

TEST(GGUFRoundTrip, RepositoryFiles) {
    std::vector<std::string> files;
    for (const std::string& d : {slm::test::source_dir() + "/tests/data", slm::test::source_dir() + "/models"})
        for (auto& f : ggufs_under(d)) files.push_back(f);
    ASSERT_FALSE(files.empty()) << "no .gguf under tests/data or models";
    for (const auto& f : files) expect_round_trip(f);
}

TEST(GGUFRoundTrip, Stories260KContents) {
    GGUFFile f = GGUFFile::open(slm::test::model_path("stories260K/stories260K.gguf"));
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.get_str("general.architecture"), "llama");
    EXPECT_EQ(f.get_u32("llama.block_count"), 5u);
    EXPECT_EQ(f.get_u32("llama.embedding_length"), 64u);
    EXPECT_EQ(f.get_u32("tokenizer.ggml.seperator_token_id"), 4294967295u);
    EXPECT_FLOAT_EQ(f.get_f32("llama.attention.layer_norm_rms_epsilon"), 9.99999975e-06f);
    EXPECT_EQ(f.get_str_array("tokenizer.ggml.tokens").size(), 512u);
    EXPECT_EQ(f.get_f32_array("tokenizer.ggml.scores").size(), 512u);
    EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type").size(), 512u);
    EXPECT_EQ(f.tensors().size(), 48u);
    const GGUFTensorInfo& t = f.tensor("token_embd.weight");
    EXPECT_EQ(t.type, GGMLType::F32);
    EXPECT_EQ(t.shape_str(), "[64, 512]");
    EXPECT_EQ(t.nbytes, 64u * 512 * 4);
    EXPECT_EQ(t.nrows(), 512);
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_NE(t.data, nullptr);
    EXPECT_EQ(f.find_tensor("nope"), nullptr);
    try {
        f.tensor("nope");
        FAIL();
    } catch (const slm::Error& e) {
        expect_contains(e.what(), "nope");
        expect_contains(e.what(), "stories260K.gguf");
    }
}

TEST(GGUFWrite, WritesWholeFileAndNoTemp) {
    std::string src = slm::test::model_path("stories260K/stories260K.gguf");
    GGUFFile f = GGUFFile::open(src);
    GGUFWriter w = copy_writer(f);
    std::string dir = slm::test::temp_dir() + "/write";
    fs::create_directories(dir);
    std::string out = dir + "/copy.gguf";
    slm::test::write_file(out, {1, 2, 3});  // replaced whole
    w.write(out);
    EXPECT_EQ(slm::test::read_file(out), slm::test::read_file(src));
    EXPECT_FALSE(fs::exists(out + ".tmp"));
    size_t n = 0;
    for (auto& e : fs::directory_iterator(dir)) n += e.is_regular_file();
    EXPECT_EQ(n, 1u);
    GGUFFile g = GGUFFile::open(out);
    EXPECT_TRUE(g.kv() == f.kv());
    expect_same_tensors(f, g);
    fs::remove_all(dir);
}

TEST(GGUFWrite, MissingDirectoryThrowsAndLeavesNothing) {
    GGUFWriter w;
    w.set("general.name", GGUFValue::string("x"));
    std::string dir = slm::test::temp_dir() + "/does/not/exist";
    std::string out = dir + "/out.gguf";
    try {
        w.write(out);
        FAIL() << "write into a missing directory succeeded";
    } catch (const slm::Error& e) {
        expect_contains(e.what(), out);
    }
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".tmp"));
    EXPECT_FALSE(fs::exists(dir));
}

TEST(GGUFWrite, InvalidWriterContentThrowsAndLeavesNothing) {
    GGUFWriter w;
    GGUFValue bad = GGUFValue::u32_array({1, 2, 3});
    bad.n = 4;  // count does not match the contents
    w.set("bad", bad);
    EXPECT_THROW(w.to_bytes(), slm::Error);
    std::string out = slm::test::temp_dir() + "/invalid.gguf";
    EXPECT_THROW(w.write(out), slm::Error);
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".tmp"));
}

// ==== the exact byte layout (independent of the writer) ===========================================

TEST(GGUFLayout, WriterBytesMatchHandEncoding) {
    std::vector<float> data = {1, 2, 3};
    GGUFWriter w;
    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("n", GGUFValue::u32(7));
    w.set("a", GGUFValue::i32_array({-1, 2}));
    w.add_tensor("t", GGMLType::F32, {3}, data.data(), 12);

    Raw r;
    r.header(1, 3)
        .kv_str("general.architecture", "llama")
        .kv_u32("n", 7)
        .key("a", GGUFType::ARRAY).u32(id(GGUFType::I32)).u64(2).u32(0xFFFFFFFFu).u32(2)
        .tinfo("t", {3}, id(GGMLType::F32), 0)
        .pad(32);
    for (float x : data) {
        uint32_t b;
        std::memcpy(&b, &x, 4);
        r.u32(b);
    }
    r.pad(32);  // the last tensor is padded too
    EXPECT_EQ(w.to_bytes(), r.b);

    GGUFFile f = parse_ok(r.b);
    EXPECT_EQ(f.data_offset(), (r.b.size() - 32));
    EXPECT_EQ(f.get_u32("n"), 7u);
    EXPECT_EQ(f.get_i32_array("a"), (std::vector<int32_t>{-1, 2}));
    const float* p = reinterpret_cast<const float*>(f.tensor("t").data);
    EXPECT_EQ(p[2], 3.0f);
}

TEST(GGUFLayout, VocabOnlyFileEndsAfterMetadata) {
    GGUFWriter w;
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array({"<unk>", "<s>", "</s>"}));
    std::vector<uint8_t> b = w.to_bytes();
    Raw r;
    r.header(0, 1).key("tokenizer.ggml.tokens", GGUFType::ARRAY).u32(id(GGUFType::STRING)).u64(3)
        .str("<unk>").str("<s>").str("</s>");
    EXPECT_EQ(b, r.b);
    GGUFFile f = parse_ok(b);
    EXPECT_TRUE(f.tensors().empty());
    EXPECT_EQ(f.get_str_array("tokenizer.ggml.tokens")[1], "<s>");
}

// ==== every value type through the builder =======================================================

namespace {

std::vector<std::pair<std::string, GGUFValue>> all_values() {
    std::vector<std::pair<std::string, GGUFValue>> kv;
    kv.emplace_back("u8", GGUFValue::u8(200));
    kv.emplace_back("i8", GGUFValue::i8(-100));
    kv.emplace_back("u16", GGUFValue::u16(60000));
    kv.emplace_back("i16", GGUFValue::i16(-30000));
    kv.emplace_back("u32", GGUFValue::u32(4000000000u));
    kv.emplace_back("i32", GGUFValue::i32(-2000000000));
    kv.emplace_back("f32", GGUFValue::f32(1.5f));
    kv.emplace_back("bool_t", GGUFValue::boolean(true));
    kv.emplace_back("bool_f", GGUFValue::boolean(false));
    kv.emplace_back("str", GGUFValue::string("h\xc3\xa9llo\n\"world\""));
    kv.emplace_back("str_empty", GGUFValue::string(""));
    kv.emplace_back("u64", GGUFValue::u64(kU64Max));
    kv.emplace_back("i64", GGUFValue::i64(std::numeric_limits<int64_t>::min()));
    kv.emplace_back("f64", GGUFValue::f64(-2.25));
    kv.emplace_back("f32_nan", GGUFValue::f32(std::numeric_limits<float>::quiet_NaN()));
    // arrays of every fixed-size element type
    kv.emplace_back("arr_u8", raw_array(GGUFType::U8, 3, {0, 1, 255}));
    kv.emplace_back("arr_i8", raw_array(GGUFType::I8, 2, {0x80, 0x7F}));
    kv.emplace_back("arr_u16", raw_array(GGUFType::U16, 2, {0xFF, 0xFF, 1, 0}));
    kv.emplace_back("arr_i16", raw_array(GGUFType::I16, 1, {0x00, 0x80}));
    kv.emplace_back("arr_u32", GGUFValue::u32_array({0, 4294967295u}));
    kv.emplace_back("arr_i32", GGUFValue::i32_array({-1, 0, 1}));
    kv.emplace_back("arr_f32", GGUFValue::f32_array({0.5f, -1e30f}));
    kv.emplace_back("arr_bool", raw_array(GGUFType::BOOL, 3, {1, 0, 1}));
    kv.emplace_back("arr_u64", raw_array(GGUFType::U64, 1, std::vector<uint8_t>(8, 0xFF)));
    kv.emplace_back("arr_i64", raw_array(GGUFType::I64, 1, {0, 0, 0, 0, 0, 0, 0, 0x80}));
    kv.emplace_back("arr_f64", raw_array(GGUFType::F64, 1, {0, 0, 0, 0, 0, 0, 0xF0, 0x3F}));  // 1.0
    kv.emplace_back("arr_str", GGUFValue::str_array({"a", "", "<|im_start|>", std::string("\0x", 2)}));
    // empty arrays of every element type, arrays of arrays included
    for (uint32_t t = 0; t <= id(GGUFType::F64); ++t)
        kv.emplace_back("empty_" + std::string(slm::gguf_type_name(static_cast<GGUFType>(t))),
                        empty_array(static_cast<GGUFType>(t)));
    // nested arrays: [[1,2],[],["x","y"]] and [[[3]], [[]]]
    kv.emplace_back("nested2", GGUFValue::array_of_arrays({GGUFValue::u32_array({1, 2}), empty_array(GGUFType::U8),
                                                           GGUFValue::str_array({"x", "y"})}));
    kv.emplace_back("nested3", GGUFValue::array_of_arrays(
                                   {GGUFValue::array_of_arrays({GGUFValue::i32_array({3})}),
                                    GGUFValue::array_of_arrays({empty_array(GGUFType::F32)})}));
    return kv;
}

} // namespace

TEST(GGUFValues, EveryTypeRoundTripsV3AndV2) {
    for (uint32_t version : {3u, 2u}) {
        SCOPED_TRACE(version);
        GGUFWriter w(version);
        auto kv = all_values();
        for (const auto& [k, v] : kv) w.set(k, v);
        std::vector<uint8_t> b = w.to_bytes();
        GGUFFile f = parse_ok(b);
        EXPECT_EQ(f.version(), version);
        ASSERT_EQ(f.kv().size(), kv.size());
        for (size_t i = 0; i < kv.size(); ++i) {
            SCOPED_TRACE(kv[i].first);
            EXPECT_EQ(f.kv()[i].first, kv[i].first);
            EXPECT_TRUE(f.kv()[i].second == kv[i].second) << f.kv()[i].second.to_string();
        }
        // the re-written file is byte-identical
        EXPECT_EQ(copy_writer(f).to_bytes(), b);
    }
}

TEST(GGUFValues, DecodedValues) {
    GGUFWriter w;
    for (const auto& [k, v] : all_values()) w.set(k, v);
    std::vector<uint8_t> b = w.to_bytes();
    GGUFFile f = parse_ok(b);
    EXPECT_EQ(f.get_int("u8", 0), 200);
    EXPECT_EQ(f.get_int("i8", 0), -100);
    EXPECT_EQ(f.get_int("u16", 0), 60000);
    EXPECT_EQ(f.get_int("i16", 0), -30000);
    EXPECT_EQ(f.get_u32("u32"), 4000000000u);
    EXPECT_EQ(f.get_int("i32", 0), -2000000000);
    EXPECT_EQ(f.get_f32("f32"), 1.5f);
    EXPECT_TRUE(f.get_bool("bool_t", false));
    EXPECT_FALSE(f.get_bool("bool_f", true));
    EXPECT_EQ(f.get_str("str"), "h\xc3\xa9llo\n\"world\"");
    EXPECT_EQ(f.get_str("str_empty"), "");
    EXPECT_EQ(f.find("u64")->as_uint("u64"), kU64Max);
    EXPECT_EQ(f.get_int("i64", 0), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(f.find("f64")->as_float("f64"), -2.25);
    EXPECT_TRUE(std::isnan(f.get_f32("f32_nan")));
    EXPECT_EQ(f.get_f32("u8"), 200.0f);  // integers are accepted as floats
    EXPECT_EQ(f.find("arr_i8")->elem_int(0), -128);
    EXPECT_EQ(f.find("arr_i8")->elem_int(1), 127);
    EXPECT_EQ(f.find("arr_u16")->elem_int(0), 65535);
    EXPECT_EQ(f.find("arr_i16")->elem_int(0), -32768);
    EXPECT_EQ(f.find("arr_i64")->elem_int(0), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(f.find("arr_f64")->elem_float(0), 1.0);
    EXPECT_EQ(f.find("arr_f32")->elem_float(1), -1e30f);
    EXPECT_EQ(f.get_str_array("arr_str"), (std::vector<std::string>{"a", "", "<|im_start|>", std::string("\0x", 2)}));
    EXPECT_TRUE(f.get_f32_array("empty_FLOAT32").empty());
    EXPECT_TRUE(f.get_str_array("empty_STRING").empty());
    const GGUFValue* n3 = f.find("nested3");
    ASSERT_NE(n3, nullptr);
    EXPECT_EQ(n3->items.at(0).items.at(0).elem_int(0), 3);
    EXPECT_EQ(n3->items.at(1).items.at(0).n, 0u);
    EXPECT_THROW(f.find("arr_u8")->elem_int(3), slm::Error);
}

TEST(GGUFValues, ToStringNeverThrowsOnValidValues) {
    GGUFWriter w;
    for (const auto& [k, v] : all_values()) w.set(k, v);
    std::vector<uint8_t> b = w.to_bytes();
    GGUFFile f = parse_ok(b);
    for (const auto& [k, v] : f.kv()) {
        SCOPED_TRACE(k);
        EXPECT_NO_THROW(v.to_string());
    }
    EXPECT_EQ(f.find("u64")->to_string(), "18446744073709551615");
    EXPECT_EQ(f.find("i8")->to_string(), "-100");
    EXPECT_EQ(f.find("bool_t")->to_string(), "true");
    expect_contains(f.find("arr_u64")->to_string(), "18446744073709551615");
    expect_contains(f.find("arr_i32")->to_string(), "-1, 0, 1");
    expect_contains(f.find("arr_bool")->to_string(), "true, false, true");
    expect_contains(f.find("nested2")->to_string(), "\"x\"");
}

TEST(GGUFValues, NestingDepthLimitIsTheSameForWriterAndReader) {
    // Find the deepest nesting the writer accepts; the reader must accept it and reject one more.
    GGUFValue v = GGUFValue::u32_array({42});
    int depth = 1;
    std::vector<uint8_t> last_ok;
    for (; depth < 100; ++depth) {
        GGUFWriter w;
        w.set("deep", v);
        try {
            last_ok = w.to_bytes();
        } catch (const slm::Error& e) {
            expect_contains(e.what(), "deep");
            break;
        }
        v = GGUFValue::array_of_arrays({v});
    }
    ASSERT_GT(depth, 2) << "nested arrays must be supported";
    ASSERT_LT(depth, 100);
    GGUFFile f = parse_ok(last_ok);
    const GGUFValue* p = f.find("deep");
    for (int i = 1; i < depth - 1; ++i) p = &p->items.at(0);
    EXPECT_EQ(p->elem_int(0), 42);
}

TEST(GGUFAlignment, CustomAlignments) {
    std::vector<uint8_t> t1(4 * 5), t2(34 * 2), t3(2 * 3);
    for (size_t i = 0; i < t1.size(); ++i) t1[i] = static_cast<uint8_t>(i + 1);
    for (size_t i = 0; i < t2.size(); ++i) t2[i] = static_cast<uint8_t>(3 * i + 7);
    for (size_t i = 0; i < t3.size(); ++i) t3[i] = static_cast<uint8_t>(200 - i);
    for (uint32_t al : {1u, 64u, 4096u, 32u}) {
        SCOPED_TRACE(al);
        GGUFWriter w;
        w.set("general.name", GGUFValue::string("aligned"));
        if (al != 32) w.set("general.alignment", GGUFValue::u32(al));
        EXPECT_EQ(w.alignment(), al);
        w.add_tensor("a", GGMLType::F32, {5}, t1.data(), t1.size());
        w.add_tensor("b", GGMLType::Q8_0, {64}, t2.data(), t2.size());
        w.add_tensor("c", GGMLType::F16, {1, 3}, t3.data(), t3.size());
        std::vector<uint8_t> b = w.to_bytes();
        GGUFFile f = parse_ok(b);
        EXPECT_EQ(f.alignment(), al);
        EXPECT_EQ(f.data_offset() % al, 0u);
        EXPECT_EQ(b.size() % al, 0u);
        ASSERT_EQ(f.tensors().size(), 3u);
        uint64_t expect_off = 0;
        for (const auto& t : f.tensors()) {
            EXPECT_EQ(t.offset, expect_off) << t.name;
            EXPECT_EQ(t.offset % al, 0u);
            expect_off += (t.nbytes + al - 1) / al * al;
        }
        EXPECT_EQ(std::memcmp(f.tensor("a").data, t1.data(), t1.size()), 0);
        EXPECT_EQ(std::memcmp(f.tensor("b").data, t2.data(), t2.size()), 0);
        EXPECT_EQ(std::memcmp(f.tensor("c").data, t3.data(), t3.size()), 0);
        EXPECT_EQ(f.tensor("c").shape(), (std::vector<int64_t>{1, 3}));
        EXPECT_EQ(copy_writer(f).to_bytes(), b);
        // A removed alignment falls back to 32.
        GGUFWriter w2 = copy_writer(f);
        w2.remove("general.alignment");
        EXPECT_EQ(w2.alignment(), 32u);
        EXPECT_EQ(parse_ok(w2.to_bytes()).alignment(), 32u);
    }
}

TEST(GGUFAlignment, TensorOffsetsNeedNotBeSequential) {
    // Non-overlapping aligned tensors in any order, with gaps, are valid (as gguf-py may write).
    std::vector<uint8_t> b = tensor_file({{"hi", {8}, id(GGMLType::F32), 64}, {"lo", {8}, id(GGMLType::F32), 0}}, 96);
    GGUFFile f = parse_ok(b);
    EXPECT_EQ(f.tensor("hi").offset, 64u);
    EXPECT_EQ(f.tensor("hi").data, f.tensor("lo").data + 64);
}

TEST(GGUFAlignment, ZeroSizedTensors) {
    std::vector<uint8_t> b = tensor_file({{"empty", {0, 4}, id(GGMLType::F32), 0}, {"x", {8}, id(GGMLType::F32), 0}}, 32);
    GGUFFile f = parse_ok(b);
    EXPECT_EQ(f.tensor("empty").nbytes, 0u);
    EXPECT_EQ(f.tensor("empty").nelements(), 0);
    EXPECT_EQ(copy_writer(f).to_bytes().size() % 32, 0u);
}

// ==== writer argument checks ======================================================================

TEST(GGUFWriterChecks, RejectsBadTensorsAndAlignment) {
    std::vector<uint8_t> d(1024);
    GGUFWriter w;
    EXPECT_THROW(w.add_tensor("t", GGMLType::F32, {4}, d.data(), 15), slm::Error);           // wrong size
    EXPECT_THROW(w.add_tensor("t", GGMLType::F32, {}, d.data(), 4), slm::Error);             // 0 dims
    EXPECT_THROW(w.add_tensor("t", GGMLType::F32, {1, 1, 1, 1, 1}, d.data(), 4), slm::Error); // 5 dims
    EXPECT_THROW(w.add_tensor("t", GGMLType::F32, {-1}, d.data(), 0), slm::Error);           // negative
    EXPECT_THROW(w.add_tensor("t", GGMLType::Q4_0, {33}, d.data(), 18), slm::Error);         // not a block
    EXPECT_THROW(w.add_tensor("t", static_cast<GGMLType>(4), {4}, d.data(), 4), slm::Error);  // retired id
    w.add_tensor("t", GGMLType::F32, {4}, d.data(), 16);
    EXPECT_THROW(w.add_tensor("t", GGMLType::F32, {4}, d.data(), 16), slm::Error);           // twice
    for (uint32_t al : {0u, 3u, 1u << 31})
        EXPECT_THROW(w.set("general.alignment", GGUFValue::u32(al)), slm::Error) << al;
    EXPECT_THROW(w.set("general.alignment", GGUFValue::string("32")), slm::Error);
    EXPECT_THROW(w.set("general.alignment", GGUFValue::u64(32)), slm::Error);
    EXPECT_EQ(w.alignment(), 32u);
    w.add_tensor_copy("owned", GGMLType::I8, {3}, {9, 8, 7});
    std::vector<uint8_t> b = w.to_bytes();
    GGUFFile f = parse_ok(b);
    EXPECT_EQ(f.tensor("owned").data[2], 7);
}

TEST(GGUFWriterChecks, SetReplacesInPlaceAndRemove) {
    GGUFWriter w;
    w.set("a", GGUFValue::u32(1));
    w.set("b", GGUFValue::u32(2));
    w.set("a", GGUFValue::string("x"));
    ASSERT_EQ(w.kv().size(), 2u);
    EXPECT_EQ(w.kv()[0].first, "a");
    EXPECT_EQ(w.kv()[0].second.str, "x");
    w.remove("a");
    ASSERT_EQ(w.kv().size(), 1u);
    EXPECT_EQ(w.kv()[0].first, "b");
}

// ==== malformed files: header =====================================================================

TEST(GGUFMalformed, EmptyAndTiny) {
    EXPECT_BAD(std::vector<uint8_t>{}, "magic");
    EXPECT_BAD(Raw().raw("GGU").b, "magic");
    EXPECT_BAD(Raw().raw("GGUF").b, "version");
    EXPECT_BAD(Raw().raw("GGUF").u32(3).u32(0).b, "tensor count");
    EXPECT_BAD(Raw().raw("GGUF").u32(3).u64(0).b, "metadata count");
    // an empty file on disk
    std::string path = slm::test::temp_dir() + "/empty.gguf";
    slm::test::write_file(path, {});
    try {
        GGUFFile::open(path);
        FAIL();
    } catch (const slm::Error& e) {
        expect_contains(e.what(), path);
    }
    // a missing file
    try {
        GGUFFile::open(slm::test::temp_dir() + "/missing.gguf");
        FAIL();
    } catch (const slm::Error& e) {
        expect_contains(e.what(), "missing.gguf");
    }
}

TEST(GGUFMalformed, WrongMagic) {
    EXPECT_BAD(Raw().raw("GGUG").u32(3).u64(0).u64(0).b, "magic", "47475547");
    EXPECT_BAD(Raw().raw("FUGG").u32(3).u64(0).u64(0).b, "magic", "46554747");
    EXPECT_BAD(Raw().raw("ggjt").u32(3).u64(0).u64(0).b, "magic");
}

TEST(GGUFMalformed, Versions) {
    EXPECT_NO_THROW(parse_ok(Raw().header(0, 0, 2).b));
    EXPECT_NO_THROW(parse_ok(Raw().header(0, 0, 3).b));
    EXPECT_BAD(Raw().header(0, 0, 1).b, "version 1");
    EXPECT_BAD(Raw().header(0, 0, 4).b, "version 4");
    EXPECT_BAD(Raw().header(0, 0, 0).b, "version 0");
    EXPECT_BAD(Raw().header(0, 0, 0x03000000).b, "0x03000000", "big-endian");
    EXPECT_BAD(Raw().header(0, 0, 0x02000000).b, "0x02000000", "big-endian");
    EXPECT_BAD(Raw().header(0, 0, 0xFFFFFFFFu).b, "4294967295");
}

// A count that the file cannot hold is refused before anything is sized by it: reserving for
// 2^63 entries would throw std::bad_alloc (or be killed), not the slm::Error these expect.
TEST(GGUFMalformed, HugeCountsAreRefusedBeforeAllocating) {
    EXPECT_BAD(Raw().header(0, uint64_t(1) << 63).b, "metadata count", "9223372036854775808");
    EXPECT_BAD(Raw().header(0, uint64_t(1) << 40).b, "metadata count", "1099511627776");
    EXPECT_BAD(Raw().header(0, kU64Max).b, "metadata count", "18446744073709551615");
    EXPECT_BAD(Raw().header(uint64_t(1) << 63, 0).b, "tensor count", "9223372036854775808");
    EXPECT_BAD(Raw().header(uint64_t(1) << 40, 0).b, "tensor count", "1099511627776");
    EXPECT_BAD(Raw().header(kU64Max, 1).kv_u32("a", 1).b, "tensor count", "18446744073709551615");
    // counts that are merely too large for a file that is not empty
    EXPECT_BAD(Raw().header(0, 3).kv_u32("a", 1).kv_u32("b", 2).b, "");
    EXPECT_BAD(Raw().header(2, 0).tinfo("t", {8}, 0, 0).b, "");
}

// ==== malformed files: metadata ===================================================================

TEST(GGUFMalformed, StringLengths) {
    // key name
    EXPECT_BAD(Raw().header(0, 1).u64(1000).raw("abc").zeros(16).b, "name of key #0", "1000");
    EXPECT_BAD(Raw().header(0, 1).u64(kU64Max).raw("abc").zeros(16).b, "name of key #0", "18446744073709551615");
    EXPECT_BAD(Raw().header(0, 2).kv_u32("ok", 1).u64(uint64_t(1) << 63).b, "name of key #1", "9223372036854775808");
    // string value
    EXPECT_BAD(Raw().header(0, 1).key("general.name", GGUFType::STRING).u64(1000).raw("llama").b, "'general.name'",
               "1000");
    EXPECT_BAD(Raw().header(0, 1).key("general.name", GGUFType::STRING).u64(kU64Max).raw("llama").b,
               "'general.name'", "18446744073709551615");
    // exactly to the end is fine, one more is not
    EXPECT_NO_THROW(parse_ok(Raw().header(0, 1).key("k", GGUFType::STRING).u64(5).raw("llama").b));
    EXPECT_BAD(Raw().header(0, 1).key("k", GGUFType::STRING).u64(6).raw("llama").b, "'k'", "6");
    // a string inside an array
    EXPECT_BAD(Raw().header(0, 1).key("toks", GGUFType::ARRAY).u32(id(GGUFType::STRING)).u64(2).str("a")
                   .u64(kU64Max).b,
               "'toks'[1]", "18446744073709551615");
    // tensor name
    EXPECT_BAD(Raw().header(1, 0).u64(kU64Max).zeros(32).b, "name of tensor #0", "18446744073709551615");
}

TEST(GGUFMalformed, TruncatedScalars) {
    for (uint32_t t = 0; t <= id(GGUFType::F64); ++t) {
        GGUFType type = static_cast<GGUFType>(t);
        size_t sz = slm::gguf_scalar_size(type);
        if (sz == 0) continue;
        SCOPED_TRACE(slm::gguf_type_name(type));
        EXPECT_BAD(Raw().header(0, 1).key("val", type).zeros(sz - 1).b, "'val'", std::to_string(sz));
        EXPECT_NO_THROW(parse_ok(Raw().header(0, 1).key("val", type).zeros(sz).b));
    }
    EXPECT_BAD(Raw().header(0, 1).str("val").u16(0).b, "'val' type");
    EXPECT_BAD(Raw().header(0, 1).key("arr", GGUFType::ARRAY).u16(0).b, "'arr' array type");
    EXPECT_BAD(Raw().header(0, 1).key("arr", GGUFType::ARRAY).u32(0).u32(0).b, "'arr' array length");
}

TEST(GGUFMalformed, ArrayCountsPastTheEnd) {
    for (uint32_t t = 0; t <= id(GGUFType::F64); ++t) {
        GGUFType et = static_cast<GGUFType>(t);
        SCOPED_TRACE(slm::gguf_type_name(et));
        auto arr = [&](uint64_t n) { return Raw().header(0, 1).key("arr", GGUFType::ARRAY).u32(t).u64(n); };
        // absurd counts
        for (uint64_t n : {kU64Max, uint64_t(1) << 63, uint64_t(1) << 62, uint64_t(1) << 40})
            EXPECT_BAD(arr(n).zeros(64).b, "'arr'", std::to_string(n));
        // two elements present, three claimed
        Raw r = arr(3);
        size_t es = slm::gguf_scalar_size(et);
        if (es) {
            r.zeros(2 * es);
            EXPECT_BAD(r.b, "'arr'", "array of 3");
        } else if (et == GGUFType::STRING) {
            r.str("abcd").str("efgh");  // 24 bytes: passes the 8-bytes-per-string estimate
            EXPECT_BAD(r.b, "'arr'[2]");
        } else {
            // arrays of arrays: two inner [U8 x 20] (32 bytes each) pass the 12-bytes estimate
            for (int i = 0; i < 2; ++i) r.u32(id(GGUFType::U8)).u64(20).zeros(20);
            EXPECT_BAD(r.b, "'arr'", "array type");
        }
    }
    // inner array of a nested array too long
    EXPECT_BAD(Raw().header(0, 1).key("nest", GGUFType::ARRAY).u32(id(GGUFType::ARRAY)).u64(1)
                   .u32(id(GGUFType::U32)).u64(5).zeros(16).b,
               "'nest'", "array of 5");
    EXPECT_BAD(Raw().header(0, 1).key("nest", GGUFType::ARRAY).u32(id(GGUFType::ARRAY)).u64(1)
                   .u32(id(GGUFType::STRING)).u64(kU64Max).zeros(16).b,
               "'nest'", "18446744073709551615");
}

TEST(GGUFMalformed, UnknownTypes) {
    for (uint32_t t : {13u, 14u, 255u, 0xFFFFFFFFu}) {
        EXPECT_BAD(Raw().header(0, 1).str("weird").u32(t).zeros(16).b, "'weird'", "unknown value type",
                   std::to_string(t));
        EXPECT_BAD(Raw().header(0, 1).key("arr", GGUFType::ARRAY).u32(t).u64(1).zeros(16).b, "'arr'",
                   "unknown array element type", std::to_string(t));
    }
}

TEST(GGUFMalformed, BoolOutOfRange) {
    EXPECT_NO_THROW(parse_ok(Raw().header(0, 1).key("flag", GGUFType::BOOL).u8(1).b));
    EXPECT_BAD(Raw().header(0, 1).key("flag", GGUFType::BOOL).u8(2).b, "'flag'", "BOOL", "2");
    EXPECT_BAD(Raw().header(0, 1).key("flag", GGUFType::BOOL).u8(255).b, "'flag'", "255");
    EXPECT_BAD(Raw().header(0, 1).key("flags", GGUFType::ARRAY).u32(id(GGUFType::BOOL)).u64(3).u8(0).u8(1).u8(2).b,
               "'flags'[2]", "BOOL", "2");
}

TEST(GGUFMalformed, ArraysNested100Deep) {
    Raw r;
    r.header(0, 1).key("deep", GGUFType::ARRAY);
    for (int i = 0; i < 99; ++i) r.u32(id(GGUFType::ARRAY)).u64(1);
    r.u32(id(GGUFType::U8)).u64(1).u8(7);
    EXPECT_BAD(r.b, "'deep'", "nested");
    // and 100000 deep: must not exhaust the stack
    Raw s;
    s.header(0, 1).key("deeper", GGUFType::ARRAY);
    for (int i = 0; i < 100000; ++i) s.u32(id(GGUFType::ARRAY)).u64(1);
    EXPECT_BAD(s.b, "'deeper'", "nested");
}

TEST(GGUFMalformed, DuplicateKeys) {
    EXPECT_BAD(Raw().header(0, 3).kv_u32("a", 1).kv_str("general.name", "x").kv_u32("general.name", 2).b,
               "'general.name'", "twice");
}

TEST(GGUFMalformed, Alignment) {
    auto with_al = [](uint32_t al) {
        return tensor_file({{"t", {8}, id(GGMLType::F32), 0}}, 32, {{"general.alignment", al}});
    };
    EXPECT_EQ(parse_ok(with_al(16)).alignment(), 16u);
    EXPECT_BAD(with_al(0), "'general.alignment'", "0");
    EXPECT_BAD(with_al(3), "'general.alignment'", "3");
    EXPECT_BAD(with_al(48), "'general.alignment'", "48");
    EXPECT_BAD(with_al(1u << 31), "'general.alignment'", "2147483648");
    EXPECT_BAD(Raw().header(0, 1).kv_str("general.alignment", "32").b, "'general.alignment'", "STRING");
    EXPECT_BAD(Raw().header(0, 1).key("general.alignment", GGUFType::U64).u64(32).b, "'general.alignment'",
               "UINT64");
    EXPECT_BAD(Raw().header(0, 1).key("general.alignment", GGUFType::I32).u32(32).b, "'general.alignment'", "INT32");
}

// ==== malformed files: tensor infos and data ======================================================

TEST(GGUFMalformed, ValidTensorFileParses) {
    // the positive control for the crafted tensor files below
    GGUFFile f = parse_ok(tensor_file({{"t", {8}, id(GGMLType::F32), 0}, {"q", {32, 2}, id(GGMLType::Q4_0), 32}}, 96));
    EXPECT_EQ(f.tensor("q").nbytes, 36u);
    EXPECT_EQ(f.data_offset() % 32, 0u);
}

TEST(GGUFMalformed, DuplicateTensorNames) {
    EXPECT_BAD(tensor_file({{"w", {8}, 0, 0}, {"w", {8}, 0, 32}}, 64), "'w'", "twice");
}

TEST(GGUFMalformed, Dimensions) {
    EXPECT_BAD(tensor_file({{"t0", {}, 0, 0}}, 32), "'t0'", "n_dims = 0");
    EXPECT_BAD(tensor_file({{"t5", {1, 1, 1, 1, 1}, 0, 0}}, 32), "'t5'", "n_dims = 5");
    EXPECT_BAD(Raw().header(1, 0).str("tbig").u32(0xFFFFFFFFu).zeros(64).b, "'tbig'", "n_dims = 4294967295");
    EXPECT_BAD(tensor_file({{"neg", {4, uint64_t(-3)}, 0, 0}}, 32), "'neg'", "dimension 1", "-3");
    EXPECT_BAD(tensor_file({{"neg0", {kU64Max}, 0, 0}}, 32), "'neg0'", "-1");
    EXPECT_BAD(tensor_file({{"ovf", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0}}, 32), "'ovf'",
               "1099511627776, 1099511627776");
    EXPECT_BAD(tensor_file({{"ovf4", {1u << 16, 1u << 16, 1u << 16, 1u << 16}, 0, 0}}, 32), "'ovf4'", "65536");
    // zero elements, but nrows() = 2^80: found by fuzz_gguf (UBSan in GGUFTensorInfo::nrows)
    EXPECT_BAD(tensor_file({{"zero_ovf", {0, uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0}}, 32), "'zero_ovf'",
               "overflows");
    EXPECT_BAD(tensor_file({{"zero_ovf2", {uint64_t(1) << 62, 0, 4}, 0, 0}}, 32), "'zero_ovf2'", "overflows");
    EXPECT_NO_THROW(parse_ok(tensor_file({{"zero_ok", {0, uint64_t(1) << 40}, 0, 0}}, 32)));
    // element count fits, byte count does not
    EXPECT_BAD(tensor_file({{"bytes", {uint64_t(1) << 62}, id(GGMLType::F32), 0}}, 32), "'bytes'",
               "4611686018427387904");
    // byte count fits in 64 bits but not in the file
    EXPECT_BAD(tensor_file({{"big", {uint64_t(1) << 40}, id(GGMLType::F32), 0}}, 32), "'big'", "1099511627776");
    // truncated shape
    EXPECT_BAD(Raw().header(1, 0).str("short").u32(4).u64(4).u64(4).u32(0).b, "'short'", "shape");
}

TEST(GGUFMalformed, RowNotAMultipleOfTheBlock) {
    EXPECT_BAD(tensor_file({{"q", {33, 1}, id(GGMLType::Q4_0), 0}}, 64), "'q'", "33", "Q4_0", "32");
    EXPECT_BAD(tensor_file({{"k", {64}, id(GGMLType::Q4_K), 0}}, 160), "'k'", "64", "Q4_K", "256");
}

TEST(GGUFMalformed, UnknownTensorType) {
    for (uint32_t t : {4u, 5u, 31u, 32u, 33u, 36u, 40u, 1000u, 0xFFFFFFFFu})
        EXPECT_BAD(tensor_file({{"w", {8}, t, 0}}, 64), "'w'", "unknown tensor type " + std::to_string(t));
}

TEST(GGUFMalformed, OffsetsAndExtents) {
    EXPECT_BAD(tensor_file({{"w", {8}, 0, 4}}, 64), "'w'", "offset 4", "alignment 32");
    EXPECT_BAD(tensor_file({{"w", {8}, 0, 16}}, 64, {{"general.alignment", 32}}), "'w'", "offset 16");
    EXPECT_BAD(tensor_file({{"w", {8}, 0, 64}}, 32), "'w'", "64");
    EXPECT_BAD(tensor_file({{"w", {16}, 0, 0}}, 32), "'w'", "[0, 64)");
    EXPECT_BAD(tensor_file({{"w", {8}, 0, uint64_t(1) << 63}}, 32), "'w'", "9223372036854775808");
    EXPECT_BAD(tensor_file({{"w", {8}, 0, kU64Max - 31}}, 32, {{"general.alignment", 1}}), "'w'",
               std::to_string(kU64Max - 31));
    // data section that would start past the end of the file
    EXPECT_BAD(Raw().header(1, 0).tinfo("w", {0}, 0, 0).b, "data section");
    // the second of two tensors past the end
    EXPECT_BAD(tensor_file({{"a", {8}, 0, 0}, {"b", {8}, 0, 32}}, 48), "'b'", "[32, 64)");
}

TEST(GGUFMalformed, OverlappingTensors) {
    EXPECT_BAD(tensor_file({{"a", {16}, 0, 0}, {"b", {8}, 0, 32}}, 96), "'a'", "'b'", "overlaps");
    EXPECT_BAD(tensor_file({{"b", {8}, 0, 32}, {"a", {16}, 0, 0}}, 96), "'a'", "'b'", "overlaps");
    EXPECT_BAD(tensor_file({{"x", {8}, 0, 0}, {"y", {8}, 0, 0}}, 32), "'x'", "'y'", "overlaps");
}

namespace {

std::vector<uint8_t> stories_bytes() {
    return slm::test::read_file(slm::test::model_path("stories260K/stories260K.gguf"));
}

void expect_truncation_throws(const std::vector<uint8_t>& full, size_t cut) {
    std::vector<uint8_t> part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    part.shrink_to_fit();
    try {
        GGUFFile::parse(part.data(), part.size(), "cut.gguf");
        ADD_FAILURE() << "cut at " << cut << " parsed";
    } catch (const slm::Error& e) {
        if (std::strstr(e.what(), "cut.gguf") == nullptr) ADD_FAILURE() << "cut at " << cut << ": " << e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "cut at " << cut << ": std::exception " << e.what();
    }
}

} // namespace

TEST(GGUFMalformed, TruncatedAtEveryByteOfTheHeader) {
    std::vector<uint8_t> full = stories_bytes();
    GGUFFile f = GGUFFile::parse(full.data(), full.size(), "full");
    size_t header_end = std::max<size_t>(f.data_offset() + 64, 14 * 1024);
    ASSERT_LT(header_end, full.size());
    for (size_t cut = 0; cut <= header_end; ++cut) {
        expect_truncation_throws(full, cut);
        if (HasFailure()) break;  // one report is enough
    }
}

TEST(GGUFMalformed, TruncatedInsideTheData) {
    std::vector<uint8_t> full = stories_bytes();
    GGUFFile f = GGUFFile::parse(full.data(), full.size(), "full");
    const GGUFTensorInfo& last = *std::max_element(f.tensors().begin(), f.tensors().end(),
                                                   [](const auto& a, const auto& b) { return a.offset < b.offset; });
    for (size_t cut : {f.data_offset() + 1, f.data_offset() + 4096, full.size() / 2, full.size() - 4096,
                       full.size() - 1})
        expect_truncation_throws(full, cut);
    // the error names the last tensor when only its data is cut
    std::vector<uint8_t> part(full.begin(), full.end() - 1);
    std::string msg = parse_error(part, "cut.gguf");
    expect_contains(msg, "'" + last.name + "'");
    expect_contains(msg, "cut.gguf");
}

TEST(GGUFMalformed, EveryHeaderByteFlippedNeverCrashes) {
    // Not every flip is an error (a flipped value byte is still valid), but none may crash.
    std::vector<uint8_t> full = stories_bytes();
    GGUFFile f = GGUFFile::parse(full.data(), full.size(), "full");
    std::vector<uint8_t> head(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(f.data_offset()));
    // each byte of the first and last 2 KB of the header, every 97th byte between
    std::vector<uint8_t>& m = full;
    for (size_t i = 0; i < head.size(); i += (i < 2048 || i > head.size() - 2048) ? 1 : 97) {
        m[i] ^= 0xFF;
        try {
            GGUFFile g = GGUFFile::parse(m.data(), m.size(), "flip.gguf");
            for (const auto& [k, v] : g.kv()) (void)v.to_string();
        } catch (const slm::Error&) {
        }
        m[i] ^= 0xFF;
    }
}

// ==== typed getters ===============================================================================

namespace {

std::vector<uint8_t> getter_file() {
    GGUFWriter w;
    w.set("s", GGUFValue::string("text"));
    w.set("u", GGUFValue::u32(5));
    w.set("neg", GGUFValue::i32(-1));
    w.set("big", GGUFValue::u64(uint64_t(1) << 32));
    w.set("huge", GGUFValue::u64(uint64_t(1) << 63));
    w.set("f", GGUFValue::f32(0.25f));
    w.set("b", GGUFValue::boolean(true));
    w.set("fa", GGUFValue::f32_array({1, 2, 3}));
    w.set("ia", GGUFValue::i32_array({1, 2, 3}));
    w.set("ua", GGUFValue::u32_array({7, 8, 9}));
    w.set("ia_neg", GGUFValue::i32_array({1, -2, 3}));
    w.set("sa", GGUFValue::str_array({"a", "b", "c"}));
    w.set("u64a", raw_array(GGUFType::U64, 3, std::vector<uint8_t>(24, 0xFF)));
    w.set("nested", GGUFValue::array_of_arrays({GGUFValue::u32_array({1}), GGUFValue::u32_array({2}),
                                                GGUFValue::u32_array({3})}));
    return w.to_bytes();
}

template <class F> std::string getter_error(F&& fn) {
    try {
        fn();
        ADD_FAILURE() << "no error";
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "";
}

#define EXPECT_GETTER_ERROR(expr, ...)                                      \
    do {                                                                    \
        SCOPED_TRACE(#expr);                                                \
        std::string msg_ = getter_error([&] { (void)(expr); });             \
        expect_contains(msg_, "getters.gguf");                              \
        for (const std::string& n_ : {__VA_ARGS__}) expect_contains(msg_, n_); \
    } while (0)

} // namespace

TEST(GGUFGetters, ValuesAndDefaults) {
    std::vector<uint8_t> b = getter_file();
    GGUFFile f = GGUFFile::parse(b.data(), b.size(), "getters.gguf");
    EXPECT_EQ(f.get_u32("u"), 5u);
    EXPECT_EQ(f.get_u32("u", 9), 5u);
    EXPECT_EQ(f.get_u32("absent", 9), 9u);
    EXPECT_EQ(f.get_int("neg", 0), -1);
    EXPECT_EQ(f.get_int("absent", -7), -7);
    EXPECT_EQ(f.get_int("big", 0), int64_t(1) << 32);
    EXPECT_EQ(f.get_f32("f"), 0.25f);
    EXPECT_EQ(f.get_f32("absent", 2.5f), 2.5f);
    EXPECT_EQ(f.get_f32("u"), 5.0f);
    EXPECT_TRUE(f.get_bool("b", false));
    EXPECT_TRUE(f.get_bool("absent", true));
    EXPECT_EQ(f.get_str("s"), "text");
    EXPECT_EQ(f.get_str("absent", "dflt"), "dflt");
    EXPECT_EQ(f.get_f32_array("fa"), (std::vector<float>{1, 2, 3}));
    EXPECT_EQ(f.get_i32_array("ia"), (std::vector<int32_t>{1, 2, 3}));
    EXPECT_EQ(f.get_str_array("sa"), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_TRUE(f.has("s"));
    EXPECT_FALSE(f.has("absent"));
}

TEST(GGUFGetters, WrongTypesNameKeyAndTypes) {
    std::vector<uint8_t> b = getter_file();
    GGUFFile f = GGUFFile::parse(b.data(), b.size(), "getters.gguf");
    EXPECT_GETTER_ERROR(f.get_u32("s"), "'s'", "STRING");
    EXPECT_GETTER_ERROR(f.get_u32("s", 1), "'s'", "STRING");
    EXPECT_GETTER_ERROR(f.get_u32("f"), "'f'", "FLOAT32");
    EXPECT_GETTER_ERROR(f.get_u32("b"), "'b'", "BOOL");
    EXPECT_GETTER_ERROR(f.get_u32("fa"), "'fa'", "ARRAY");
    EXPECT_GETTER_ERROR(f.get_u32("neg"), "'neg'", "-1");
    EXPECT_GETTER_ERROR(f.get_u32("big"), "'big'", "4294967296");
    EXPECT_GETTER_ERROR(f.get_u32("absent"), "'absent'", "missing");
    EXPECT_GETTER_ERROR(f.get_int("s", 0), "'s'", "STRING");
    EXPECT_GETTER_ERROR(f.get_int("huge", 0), "'huge'", "9223372036854775808");
    EXPECT_GETTER_ERROR(f.get_f32("s"), "'s'", "STRING");
    EXPECT_GETTER_ERROR(f.get_f32("s", 1.0f), "'s'", "STRING");
    EXPECT_GETTER_ERROR(f.get_f32("b"), "'b'", "BOOL");
    EXPECT_GETTER_ERROR(f.get_f32("absent"), "'absent'", "missing");
    EXPECT_GETTER_ERROR(f.get_bool("u", false), "'u'", "BOOL", "UINT32");
    EXPECT_GETTER_ERROR(f.get_str("u"), "'u'", "STRING", "UINT32");
    EXPECT_GETTER_ERROR(f.get_str("u", "x"), "'u'", "STRING", "UINT32");
    EXPECT_GETTER_ERROR(f.get_str("sa"), "'sa'", "STRING", "ARRAY");
    EXPECT_GETTER_ERROR(f.get_str("absent"), "'absent'", "missing");
    EXPECT_GETTER_ERROR(f.get_str_array("fa"), "'fa'", "ARRAY of STRING", "ARRAY of FLOAT32");
    EXPECT_GETTER_ERROR(f.get_str_array("s"), "'s'", "ARRAY of STRING", "got STRING");
    EXPECT_GETTER_ERROR(f.get_f32_array("ia"), "'ia'", "ARRAY of FLOAT32", "ARRAY of INT32");
    EXPECT_GETTER_ERROR(f.get_f32_array("u"), "'u'", "FLOAT32", "UINT32");
    EXPECT_GETTER_ERROR(f.get_i32_array("ua"), "'ua'", "ARRAY of INT32", "ARRAY of UINT32");
    EXPECT_GETTER_ERROR(f.get_i32_array("sa"), "'sa'", "ARRAY of INT32", "ARRAY of STRING");
    EXPECT_GETTER_ERROR(f.get_i32_array("absent"), "'absent'", "missing");
}

TEST(GGUFGetters, PerLayer) {
    std::vector<uint8_t> b = getter_file();
    GGUFFile f = GGUFFile::parse(b.data(), b.size(), "getters.gguf");
    EXPECT_EQ(f.get_per_layer_u32("u", 4, 0), (std::vector<uint32_t>{5, 5, 5, 5}));
    EXPECT_EQ(f.get_per_layer_u32("absent", 2, 11), (std::vector<uint32_t>{11, 11}));
    EXPECT_EQ(f.get_per_layer_u32("ua", 3, 0), (std::vector<uint32_t>{7, 8, 9}));
    EXPECT_EQ(f.get_per_layer_u32("ia", 3, 0), (std::vector<uint32_t>{1, 2, 3}));
    EXPECT_TRUE(f.get_per_layer_u32("u", 0, 0).empty());
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("ua", 5, 0), "'ua'", "3", "5");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("ua", 2, 0), "'ua'", "3", "2");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("fa", 3, 0), "'fa'", "FLOAT32");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("sa", 3, 0), "'sa'", "STRING");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("nested", 3, 0), "'nested'", "ARRAY");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("ia_neg", 3, 0), "'ia_neg'", "-2");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("u64a", 3, 0), "'u64a'");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("neg", 3, 0), "'neg'", "-1");
    EXPECT_GETTER_ERROR(f.get_per_layer_u32("s", 3, 0), "'s'", "STRING");
}

// ==== the CLI =====================================================================================

TEST(GGUFCli, InfoOnCorruptFileFails) {
    struct stat st;
    if (stat(slm::test::cli_path().c_str(), &st) != 0) GTEST_SKIP() << "no slm binary at " << slm::test::cli_path();
    slm::test::RunResult help = slm::test::run_cli({"info", "--help"});
    if (help.exit_code != 0 || (help.out + help.err).find("info") == std::string::npos)
        GTEST_SKIP() << "`slm info --help` does not work yet";
    std::string path = slm::test::temp_dir() + "/corrupt-for-cli.gguf";
    slm::test::write_file(path, tensor_file({{"w", {8}, 0, 4}}, 64));
    slm::test::RunResult r = slm::test::run_cli({"info", path});
    EXPECT_NE(r.exit_code, 0);
    expect_contains(r.err, path);
    expect_contains(r.err, "'w'");
    std::string missing = slm::test::temp_dir() + "/no-such-file.gguf";
    r = slm::test::run_cli({"info", missing});
    EXPECT_NE(r.exit_code, 0);
    expect_contains(r.err, missing);
}
