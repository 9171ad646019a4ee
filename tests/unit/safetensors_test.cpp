// safetensors_test.cpp - the safetensors writer against the byte vectors of the safetensors
// library's own tests, read/write round trips, sharded folders, and one test per way a header can
// lie. Crafted files are parsed from an exact-size heap copy so ASan catches any read past the end.
#include "formats/safetensors.h"
#include "slm/error.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using slm::SafetensorsCheckpoint;
using slm::SafetensorsFile;
using slm::SafetensorsWriter;
using slm::STDtype;

namespace {

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

// A file from a header string and a data section, the length prefix computed here.
std::vector<uint8_t> file(const std::string& header, size_t data_bytes) {
    std::vector<uint8_t> b(8);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
    b.insert(b.end(), header.begin(), header.end());
    b.insert(b.end(), data_bytes, 0x3c);
    return b;
}

// Parses an exact-size heap copy and returns the error message ("" if it parsed).
std::string parse_error(const std::vector<uint8_t>& bytes) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size() ? bytes.size() : 1]);
    if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
    try {
        SafetensorsFile::parse(copy.get(), bytes.size(), "bad.safetensors");
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "";
}

void expect_error(const std::vector<uint8_t>& bytes, std::initializer_list<const char*> parts) {
    const std::string msg = parse_error(bytes);
    ASSERT_FALSE(msg.empty()) << "parsed without error";
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
    for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

} // namespace

// The expected bytes are those of test_serialization / test_serialization_forced_alignement /
// test_empty in huggingface/safetensors' safetensors/src/tensor.rs.
TEST(Safetensors, WriterMatchesTheLibraryByteForByte) {
    const std::vector<uint8_t> data = f32_bytes({0, 1, 2, 3, 4, 5});
    {
        SafetensorsWriter w;
        w.add("attn.0", STDtype::F32, {1, 2, 3}, data.data(), data.size());
        const std::vector<uint8_t> want = {
            64,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 46,  48,  34,  58,  123, 34,
            100, 116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,
            58,  91,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115, 101,
            116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125, 0,   0,   0,   0,   0,   0,   128, 63,
            0,   0,   0,   64,  0,   0,   64,  64,  0,   0,   128, 64,  0,   0,   160, 64};
        EXPECT_EQ(w.to_bytes(), want);
    }
    {
        SafetensorsWriter w;
        w.add("attn0", STDtype::F32, {1, 1, 2, 3}, data.data(), data.size());
        const std::vector<uint8_t> want = {
            72,  0,   0,   0,   0,   0,   0,   0,   123, 34,  97,  116, 116, 110, 48,  34,  58,  123, 34,  100,
            116, 121, 112, 101, 34,  58,  34,  70,  51,  50,  34,  44,  34,  115, 104, 97,  112, 101, 34,  58,
            91,  49,  44,  49,  44,  50,  44,  51,  93,  44,  34,  100, 97,  116, 97,  95,  111, 102, 102, 115,
            101, 116, 115, 34,  58,  91,  48,  44,  50,  52,  93,  125, 125, 32,  32,  32,  32,  32,  32,  32,
            0,   0,   0,   0,   0,   0,   128, 63,  0,   0,   0,   64,  0,   0,   64,  64,  0,   0,   128, 64,
            0,   0,   160, 64};
        EXPECT_EQ(w.to_bytes(), want);
    }
    {
        SafetensorsWriter w;
        EXPECT_EQ(w.to_bytes(), (std::vector<uint8_t>{8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32}));
        w.set_metadata("framework", "pt");
        const std::vector<uint8_t> want = {40,  0,   0,   0,   0,   0,   0,   0,   123, 34,  95,  95,
                                           109, 101, 116, 97,  100, 97,  116, 97,  95,  95,  34,  58,
                                           123, 34,  102, 114, 97,  109, 101, 119, 111, 114, 107, 34,
                                           58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};
        EXPECT_EQ(w.to_bytes(), want);
    }
}

TEST(Safetensors, WriterSortsByDtypeThenNameAndRoundTrips) {
    SafetensorsWriter w;
    const std::vector<uint8_t> h2(2 * 3, 0x11), h4(4 * 2, 0x22), b2(2 * 4, 0x33), f2(2, 0x44);
    w.add("z.f16", STDtype::F16, {3}, h2.data(), h2.size());
    w.add("b.f32", STDtype::F32, {2}, h4.data(), h4.size());
    w.add("a.bf16", STDtype::BF16, {2, 2}, b2.data(), b2.size());
    w.add("a.f16", STDtype::F16, {1}, f2.data(), f2.size());
    w.set_metadata("format", "pt");
    const std::string h = w.header();
    EXPECT_EQ(h.size() % 8, 0u);
    // F32 first, then BF16, then F16 (the library's descending dtype order), names ascending.
    const size_t pf32 = h.find("\"b.f32\""), pbf = h.find("\"a.bf16\""), pa16 = h.find("\"a.f16\""), pz16 = h.find("\"z.f16\"");
    EXPECT_LT(h.find("__metadata__"), pf32);
    EXPECT_LT(pf32, pbf);
    EXPECT_LT(pbf, pa16);
    EXPECT_LT(pa16, pz16);
    EXPECT_NE(h.find("\"b.f32\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"), std::string::npos) << h;

    const std::vector<uint8_t> bytes = w.to_bytes();
    const SafetensorsFile f = SafetensorsFile::parse(bytes.data(), bytes.size());
    ASSERT_EQ(f.tensors().size(), 4u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    const slm::SafetensorsTensor* t = f.find("a.bf16");
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, STDtype::BF16);
    EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(std::vector<uint8_t>(t->data, t->data + t->nbytes), b2);
    EXPECT_EQ(f.find("z.f16")->nbytes, 6u);
    EXPECT_EQ(f.find("nope"), nullptr);

    // Written through a temp file: same bytes on disk, no .tmp left behind.
    const std::string dir = slm::test::temp_dir();
    w.write(dir + "/m.safetensors");
    EXPECT_EQ(slm::test::read_file(dir + "/m.safetensors"), bytes);
    EXPECT_FALSE(fs::exists(dir + "/m.safetensors.tmp"));
}

TEST(Safetensors, ScalarsEmptyTensorsAndGapsAreAccepted) {
    // A 0-d tensor has one element; a tensor with a 0 dimension has none and may sit anywhere.
    const std::string h = R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                          R"("e":{"dtype":"F16","shape":[0,7],"data_offsets":[2,2]},)"
                          R"("g":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}})";
    const std::vector<uint8_t> b = file(h, 12);
    EXPECT_EQ(parse_error(b), "");
    const SafetensorsFile f = SafetensorsFile::parse(b.data(), b.size());
    EXPECT_EQ(f.find("s")->numel(), 1);
    EXPECT_EQ(f.find("e")->nbytes, 0u);
    EXPECT_EQ(f.find("g")->data, b.data() + 8 + h.size() + 8);
}

TEST(Safetensors, MalformedHeadersAreClearErrors) {
    const std::string ok_t = R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
    // Header length and framing.
    expect_error({1, 2, 3}, {"shorter than the 8-byte header length"});
    expect_error({0xff, 0, 0, 0, 0, 0, 0, 0, '{', '}'}, {"header length 255 runs past the end"});
    {
        std::vector<uint8_t> b = {0, 0, 0, 0, 0, 0, 0, 0x80};  // 2^63
        expect_error(b, {"larger than the limit"});
        b = {0x01, 0xe1, 0xf5, 0x05, 0, 0, 0, 0};  // 100,000,001
        expect_error(b, {"larger than the limit"});
    }
    // Bad JSON, and JSON of the wrong shape.
    expect_error(file("{\"a\": {", 0), {"invalid JSON"});
    expect_error(file("{\"a\":1}\xff", 0), {"invalid JSON"});
    expect_error(file("[1, 2]", 0), {"not an object"});
    expect_error(file(std::string(600, '[') + std::string(600, ']'), 0), {"nested"});
    expect_error(file(R"({"t": 5})", 16), {"field 't'", "expected an object"});
    expect_error(file(R"({"t":{"shape":[4],"data_offsets":[0,16]}})", 16), {"t.dtype", "missing"});
    expect_error(file(R"({"t":{"dtype":7,"shape":[4],"data_offsets":[0,16]}})", 16), {"t.dtype", "expected a string"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":"4","data_offsets":[0,16]}})", 16), {"t.shape", "expected an array"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16,32]}})", 16), {"t.data_offsets"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":"0,16"}})", 16), {"t.data_offsets"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[4]}})", 16), {"t.data_offsets", "missing"});
    expect_error(file(R"({"__metadata__":{"format":1},"t":)" + ok_t + "}", 16), {"__metadata__.format", "expected a string"});
    expect_error(file(R"({"__metadata__":[1]})", 0), {"__metadata__", "expected an object"});
    // Dtypes other than F32/F16/BF16 are named.
    expect_error(file(R"({"t":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16), {"tensor 't'", "dtype 'I64'"});
    expect_error(file(R"({"t":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 16), {"dtype 'F8_E4M3'"});
    // Shapes: negative, fractional, absurd, overflowing.
    expect_error(file(R"({"t":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", 16), {"t.shape[0]", "non-negative integer"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[4.5],"data_offsets":[0,16]}})", 16), {"t.shape[0]"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 16), {"t.shape", "9 dimensions"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,16]}})", 16),
                 {"tensor 't'", "64 bits"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", 16),
                 {"tensor 't'", "64 bits"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}})", 16),
                 {"tensor 't'", "64 bits"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,16]}})", 16), {"t.shape[0]"});
    // Offsets: past the end, reversed, 2^63, lying about the size.
    expect_error(file(R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[0,20]}})", 16), {"tensor 't'", "past the end of the data section"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[9,8]}})", 16), {"tensor 't'", "end before begin"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[2,2],"data_offsets":[9223372036854775808,9223372036854775824]}})", 16),
                 {"tensor 't'", "past the end"});
    expect_error(file(R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", 32), {"tensor 't'", "[2, 3]", "24 bytes", "hold 16"});
    expect_error(file(R"({"t":{"dtype":"F16","shape":[2,2],"data_offsets":[0,16]}})", 16), {"tensor 't'", "8 bytes"});
    // Overlaps.
    expect_error(file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16),
                 {"'a'", "'b'", "overlap"});
    expect_error(file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16),
                 {"overlap"});
}

TEST(Safetensors, OpenNamesTheFile) {
    const std::string dir = slm::test::temp_dir();
    slm::test::write_file(dir + "/x.safetensors", file(R"({"t":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", 1));
    try {
        SafetensorsFile::open(dir + "/x.safetensors");
        FAIL() << "no error";
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find(dir + "/x.safetensors"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("'BOOL'"), std::string::npos) << e.what();
    }
    EXPECT_THROW(SafetensorsFile::open(dir + "/missing.safetensors"), slm::Error);
}

namespace {

void write_shard(const std::string& path, const std::vector<std::string>& names) {
    SafetensorsWriter w;
    for (const std::string& n : names) w.add_copy(n, STDtype::F32, {2}, f32_bytes({1.0f, static_cast<float>(n.size())}));
    w.write(path);
}

void write_index(const std::string& dir, const std::string& weight_map) {
    std::ofstream(dir + "/model.safetensors.index.json") << R"({"metadata":{"total_size":32},"weight_map":)" << weight_map << "}";
}

std::string open_error(const std::string& dir) {
    try {
        SafetensorsCheckpoint::open_dir(dir);
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST(Safetensors, ShardedCheckpoints) {
    const std::string dir = slm::test::temp_dir() + "/sharded";
    fs::create_directories(dir);
    write_shard(dir + "/model-00002-of-00002.safetensors", {"b", "a.z"});
    write_shard(dir + "/model-00001-of-00002.safetensors", {"z", "c"});
    write_index(dir, R"({"a.z":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors",)"
                     R"("c":"model-00001-of-00002.safetensors","z":"model-00001-of-00002.safetensors"})");
    const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_dir(dir);
    // Shards in file-name order, tensors by name within each: convert_hf_to_gguf.py's order.
    std::vector<std::string> names;
    for (const auto* t : ck.tensors()) names.push_back(t->name);
    EXPECT_EQ(names, (std::vector<std::string>{"c", "z", "a.z", "b"}));
    ASSERT_NE(ck.find("b"), nullptr);
    EXPECT_EQ(ck.find("b")->file, dir + "/model-00002-of-00002.safetensors");

    // A listed tensor missing from its shard.
    write_index(dir, R"({"a.z":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors",)"
                     R"("c":"model-00001-of-00002.safetensors","z":"model-00001-of-00002.safetensors","q":"model-00001-of-00002.safetensors"})");
    EXPECT_NE(open_error(dir).find("'q' is listed in the weight_map but missing"), std::string::npos) << open_error(dir);
    // A shard's tensor the map does not list.
    write_index(dir, R"({"a.z":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors","c":"model-00001-of-00002.safetensors"})");
    EXPECT_NE(open_error(dir).find("'z' is in shard model-00001-of-00002.safetensors but not in the weight_map"), std::string::npos)
        << open_error(dir);
    // The map puts a tensor in the wrong shard.
    write_index(dir, R"({"a.z":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors",)"
                     R"("c":"model-00001-of-00002.safetensors","z":"model-00001-of-00002.safetensors"})");
    EXPECT_NE(open_error(dir).find("the weight_map puts it in"), std::string::npos) << open_error(dir);
    // Paths outside the folder, bad types, a missing shard file.
    write_index(dir, R"({"a":"../model.safetensors"})");
    EXPECT_NE(open_error(dir).find("not a file name in the model folder"), std::string::npos) << open_error(dir);
    write_index(dir, R"({"a":3})");
    EXPECT_NE(open_error(dir).find("weight_map.a"), std::string::npos) << open_error(dir);
    write_index(dir, R"([1])");
    EXPECT_NE(open_error(dir).find("weight_map"), std::string::npos) << open_error(dir);
    write_index(dir, R"({"a":"model-00003-of-00002.safetensors"})");
    EXPECT_NE(open_error(dir).find("model-00003-of-00002.safetensors"), std::string::npos) << open_error(dir);
    // The same tensor in two shards (both listed to the file that has it is impossible, so the map
    // names one and the other shard still holds it).
    write_shard(dir + "/model-00001-of-00002.safetensors", {"z", "c", "b"});
    write_index(dir, R"({"a.z":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors",)"
                     R"("c":"model-00001-of-00002.safetensors","z":"model-00001-of-00002.safetensors"})");
    EXPECT_NE(open_error(dir).find("'b'"), std::string::npos) << open_error(dir);

    const std::string empty = slm::test::temp_dir() + "/empty";
    fs::create_directories(empty);
    EXPECT_NE(open_error(empty).find("no model.safetensors or model.safetensors.index.json"), std::string::npos);
}
