// limits_test.cpp - the user-settable resource limits (slm/limits.h, SECURITY.md): parsing them,
// and each one refusing input past it with an error that names the file, the value and the limit,
// while input within it still loads. The CLI's --limit, SLM_LIMITS and `slm limits` too.
#include "formats/safetensors.h"
#include "slm/chat.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/limits.h"
#include "slm/model.h"
#include "gguf_bytes.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

using slm::GGUFFile;
using slm::GGUFType;

namespace {

using Bytes = test::GGUFBytes;

// Every test starts from the defaults and leaves them in place.
class Limits : public ::testing::Test {
protected:
    void SetUp() override { slm::set_limits(slm::Limits{}); }
    void TearDown() override { slm::set_limits(slm::Limits{}); }
};

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "";
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
    const std::string msg = error_of(f);
    ASSERT_FALSE(msg.empty()) << "no slm::Error (expected one naming " << needles.at(0) << ")";
    for (const std::string& n : needles) EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
}

GGUFFile parse(const std::vector<uint8_t>& bytes, const std::string& name) {
    std::vector<uint8_t> copy(bytes);
    copy.shrink_to_fit();
    return GGUFFile::parse(copy.data(), copy.size(), name);
}

TEST_F(Limits, ParseValuesAndSuffixes) {
    slm::set_limit("max_metadata_bytes", "64M");
    EXPECT_EQ(slm::limits().max_metadata_bytes, 64ull << 20);
    slm::set_limit("max_tensor_bytes", "3GiB");
    EXPECT_EQ(slm::limits().max_tensor_bytes, 3ull << 30);
    slm::set_limit("max_context", " 8192 ");
    EXPECT_EQ(slm::limits().max_context, 8192u);
    slm::set_limits_from_string("max_tensors=12, template_max_depth=7,,", "SLM_LIMITS");
    EXPECT_EQ(slm::limits().max_tensors, 12u);
    EXPECT_EQ(slm::limits().template_max_depth, 7u);

    expect_error([] { slm::set_limit("max_contxt", "1"); }, {"unknown limit 'max_contxt'", "max_context"});
    expect_error([] { slm::set_limit("max_context", "-5"); }, {"max_context", "not a number"});
    expect_error([] { slm::set_limit("max_context", "12x"); }, {"max_context", "not a number"});
    expect_error([] { slm::set_limit("max_context", "0"); }, {"max_context", "out of range"});
    expect_error([] { slm::set_limit("max_context", "1T"); }, {"max_context", "out of range"});
    expect_error([] { slm::set_limit("max_model_bytes", "99999999999999999999"); }, {"too large"});
    expect_error([] { slm::set_limit("max_model_bytes", "20000000T"); }, {"too large"});
    expect_error([] { slm::set_limits_from_string("max_context", "SLM_LIMITS"); }, {"SLM_LIMITS", "NAME=VALUE"});
    expect_error([] { slm::set_limits_from_string("bogus=1", "SLM_LIMITS"); }, {"bogus", "SLM_LIMITS"});
    // A failed set leaves the value alone.
    EXPECT_EQ(slm::limits().max_context, 8192u);

    const auto all = slm::describe_limits();
    ASSERT_GE(all.size(), 10u);
    EXPECT_EQ(all[0].name, "max_context");
    EXPECT_EQ(all[0].default_value, slm::Limits{}.max_context);
}

// A GGUF with one key: an array of `n` U8, or a string of `n` bytes.
std::vector<uint8_t> array_file(uint64_t n) {
    Bytes b;
    b.header(0, 1).key("a", GGUFType::ARRAY).u32(test::id(GGUFType::U8)).u64(n).zeros(n);
    return b.b;
}
std::vector<uint8_t> string_file(uint64_t n) {
    Bytes b;
    b.header(0, 1).kv_str("general.name", std::string(n, 'x'));
    return b.b;
}

TEST_F(Limits, GGUFMetadata) {
    EXPECT_NO_THROW(parse(array_file(5000), "arr.gguf"));
    slm::set_limit("max_array_elements", "4096");
    expect_error([] { parse(array_file(5000), "arr.gguf"); },
                 {"arr.gguf", "'a'", "5000", "max_array_elements = 4096", "--limit max_array_elements="});
    EXPECT_NO_THROW(parse(array_file(4096), "arr.gguf"));

    EXPECT_NO_THROW(parse(string_file(3000), "str.gguf"));
    slm::set_limit("max_metadata_bytes", "2K");
    expect_error([] { parse(string_file(3000), "str.gguf"); }, {"str.gguf", "general.name", "max_metadata_bytes = 2048"});
    EXPECT_NO_THROW(parse(string_file(1500), "str.gguf"));
    // The section as a whole counts, not only each value: two keys of 1200 bytes.
    Bytes two;
    two.header(0, 2).kv_str("k1", std::string(1200, 'a')).kv_str("k2", std::string(1200, 'b'));
    expect_error([&] { parse(two.b, "two.gguf"); }, {"two.gguf", "'k2'", "max_metadata_bytes"});
    // Arrays of strings and raw arrays count too.
    expect_error([] { parse(array_file(4000), "arr.gguf"); }, {"arr.gguf", "max_metadata_bytes"});
}

std::vector<uint8_t> tensors_file(int n, uint64_t elems) {
    Bytes b;
    b.header(n, 0);
    const uint64_t stride = (elems * 4 + 31) / 32 * 32;
    for (int i = 0; i < n; ++i) b.tinfo("t" + std::to_string(i), {elems}, test::id(slm::GGMLType::F32), i * stride);
    b.pad(32).zeros(n * stride);
    return b.b;
}

TEST_F(Limits, GGUFTensors) {
    EXPECT_EQ(parse(tensors_file(3, 64), "t.gguf").tensors().size(), 3u);
    slm::set_limit("max_tensors", "2");
    expect_error([] { parse(tensors_file(3, 64), "t.gguf"); }, {"t.gguf", "tensor count 3", "max_tensors = 2"});
    slm::set_limits(slm::Limits{});
    slm::set_limit("max_tensor_bytes", "255");
    expect_error([] { parse(tensors_file(1, 64), "t.gguf"); }, {"t.gguf", "'t0'", "256 bytes", "max_tensor_bytes = 255"});
    slm::set_limits(slm::Limits{});
    slm::set_limit("max_model_bytes", "600");
    EXPECT_NO_THROW(parse(tensors_file(2, 64), "t.gguf"));
    expect_error([] { parse(tensors_file(3, 64), "t.gguf"); }, {"t.gguf", "'t2'", "768 bytes", "max_model_bytes = 600"});
}

std::vector<uint8_t> safetensors_file(int n) {
    std::string h = "{";
    for (int i = 0; i < n; ++i)
        h += (i ? "," : "") + std::string("\"w") + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[" +
             std::to_string(16 * i) + "," + std::to_string(16 * i + 16) + "]}";
    h += "}";
    Bytes b;
    b.u64(h.size()).raw(h).zeros(16 * n);
    return b.b;
}

void parse_st(const std::vector<uint8_t>& bytes) {
    std::vector<uint8_t> copy(bytes);
    slm::SafetensorsFile::parse(copy.data(), copy.size(), "m.safetensors");
}

TEST_F(Limits, Safetensors) {
    EXPECT_NO_THROW(parse_st(safetensors_file(30)));
    slm::set_limit("max_metadata_bytes", "1K");
    expect_error([] { parse_st(safetensors_file(30)); }, {"m.safetensors", "header length", "max_metadata_bytes = 1024"});
    slm::set_limits(slm::Limits{});
    slm::set_limit("max_tensors", "3");
    expect_error([] { parse_st(safetensors_file(4)); }, {"m.safetensors", "4 tensors", "max_tensors = 3"});
    EXPECT_NO_THROW(parse_st(safetensors_file(3)));
    slm::set_limit("max_tensor_bytes", "15");
    expect_error([] { parse_st(safetensors_file(1)); }, {"m.safetensors", "'w0'", "16 bytes", "max_tensor_bytes = 15"});
    slm::set_limits(slm::Limits{});
    slm::set_limit("max_model_bytes", "40");
    expect_error([] { parse_st(safetensors_file(3)); }, {"m.safetensors", "48 bytes", "max_model_bytes = 40"});
}

TEST_F(Limits, JsonSideFilesOfAModelFolder) {
    const std::string dir = slm::test::temp_dir() + "/hf_big";
    std::filesystem::create_directories(dir);
    std::string big = "{\"pad\":\"" + std::string(4000, 'x') + "\"}";
    slm::test::write_file(dir + "/config.json", std::vector<uint8_t>(big.begin(), big.end()));
    slm::test::write_file(dir + "/tokenizer.json", std::vector<uint8_t>(big.begin(), big.end()));
    slm::test::write_file(dir + "/model.safetensors", safetensors_file(1));
    slm::set_limit("max_metadata_bytes", "2K");
    // Whichever side file is read first is refused before it is parsed.
    expect_error([&] { slm::Model::load(dir); }, {dir, ".json", "max_metadata_bytes = 2048"});
}

TEST_F(Limits, ContextOfASession) {
    auto model = slm::Model::load(slm::test::model_path("stories260K/stories260K.gguf"));
    slm::SessionOptions so;
    so.n_ctx = 256;
    EXPECT_NO_THROW(slm::Session(model, so));
    slm::set_limit("max_context", "128");
    expect_error([&] { slm::Session s(model, so); }, {"context of 256 positions", "max_context = 128"});
    // The default context is the training context (512 here), cut to the limit.
    slm::Session s(model, slm::SessionOptions{});
    EXPECT_EQ(s.n_ctx(), 128u);
}

TEST_F(Limits, ChatTemplateRenderings) {
    const auto t = slm::ChatTemplate::parse(
        "{% for i in range(100) %}{% for m in messages %}{{ m.content }}{% endfor %}{% endfor %}", "loop.jinja");
    const std::string msgs = R"([{"role":"user","content":"0123456789"}])";
    EXPECT_EQ(t.render(msgs, slm::ChatTemplateOptions{}).size(), 1000u);
    slm::set_limit("template_max_output_bytes", "512");
    expect_error([&] { t.render(msgs, slm::ChatTemplateOptions{}); }, {"loop.jinja", "LimitError"});
    slm::set_limits(slm::Limits{});
    slm::set_limit("template_max_iterations", "50");
    expect_error([&] { t.render(msgs, slm::ChatTemplateOptions{}); }, {"loop.jinja", "LimitError"});
    slm::set_limits(slm::Limits{});
    const auto rec = slm::ChatTemplate::parse("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}x{% endmacro %}{{ f(30) }}",
                                              "rec.jinja");
    EXPECT_NO_THROW(rec.render(msgs, slm::ChatTemplateOptions{}));
    slm::set_limit("template_max_depth", "10");
    expect_error([&] { rec.render(msgs, slm::ChatTemplateOptions{}); }, {"rec.jinja", "LimitError"});
}

TEST_F(Limits, CommandLine) {
    using slm::test::run_cli;
    const std::string m = slm::test::model_path("stories260K/stories260K.gguf");
    slm::test::RunResult r = run_cli({"limits"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("max_context"), std::string::npos);
    EXPECT_NE(r.out.find("256M"), std::string::npos) << r.out;  // max_metadata_bytes' default
    r = run_cli({"--limit", "max_metadata_bytes=64M", "limits"});
    EXPECT_NE(r.out.find("64M"), std::string::npos) << r.out;
    // Before or after the command.
    r = run_cli({"run", "-m", m, "-c", "256", "-n", "4", "--limit", "max_context=100"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("max_context = 100"), std::string::npos) << r.err;
    r = run_cli({"--limit", "max_array_elements=100", "info", m});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("stories260K.gguf"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("max_array_elements = 100"), std::string::npos) << r.err;
    r = run_cli({"--limit", "nope=1", "limits"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("unknown limit 'nope'"), std::string::npos) << r.err;

    ::setenv("SLM_LIMITS", "max_tensors=3", 1);
    r = run_cli({"info", m});
    ::unsetenv("SLM_LIMITS");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("max_tensors = 3"), std::string::npos) << r.err;
    ::setenv("SLM_LIMITS", "max_tensors=3", 1);
    r = run_cli({"--limit", "max_tensors=1000", "info", m});  // the flag wins over the environment
    ::unsetenv("SLM_LIMITS");
    EXPECT_EQ(r.exit_code, 0) << r.err;
}

} // namespace
