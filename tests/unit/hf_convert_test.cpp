// hf_convert_test.cpp - Hugging Face folders <-> GGUF.
//
// * GGUF -> HF -> GGUF keeps every tensor bit for bit and every key, for stories260K and each
//   reference architecture (llama.cpp-written files), except a listed set of keys the converter
//   writes or omits by rule; a second trip is byte-identical.
// * Running a folder gives the same logits as running the GGUF it came from, and as running the
//   GGUF converted from it, for small HF folders the tests write (random weights, fixed seeds).
// * Llama's Q/K permutation is checked against RoPE itself: rotate-half RoPE on the HF weights and
//   adjacent-pair RoPE on the GGUF weights give the same attention scores (and the unpermuted
//   weights do not).
// * --type q8_0 reproduces llama-quantize's Q8_0 blocks of the reference files byte for byte.
// * OLMoE and PhiMoE (no reference files) from `slm synth` models: the same round trip, keys in
//   the converter's order, experts named and stacked as it does them.
// * A folder that fails to load is named in the error. (Running every reference architecture
//   from a folder: hf_run_test.cpp.)
#include "formats/hf_tokenizer.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "slm/convert.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using json = nlohmann::json;
using slm::GGMLType;
using slm::GGUFFile;
using slm::GGUFTensorInfo;
using slm::SafetensorsWriter;
using slm::STDtype;

namespace {

std::string stories() { return slm::test::model_path("stories260K/stories260K.gguf"); }

std::string fresh_dir(const std::string& name) {
    static int n = 0;
    const std::string d = slm::test::temp_dir() + "/hf" + std::to_string(n++) + "/" + name;
    fs::create_directories(d);
    return d;
}

std::vector<float> logits_of(const std::string& model_path, const std::vector<int32_t>& tokens) {
    auto m = slm::Model::load(model_path);
    slm::SessionOptions so;
    so.n_ctx = 64;
    so.n_threads = 1;
    slm::Session s(m, so);
    s.eval(tokens, true);
    return std::vector<float>(s.logits().begin(), s.logits().end());
}

const std::vector<int32_t> kPrompt = {1, 403, 407, 261, 378, 13, 300, 42};

std::vector<int64_t> trimmed(const GGUFTensorInfo& t) {
    std::vector<int64_t> ne = t.shape();
    while (ne.size() > 1 && ne.back() == 1) ne.pop_back();
    return ne;
}

int64_t ulps(float a, float b) {
    int32_t x, y;
    std::memcpy(&x, &a, 4);
    std::memcpy(&y, &b, 4);
    return std::abs(static_cast<int64_t>(x) - y);
}

struct Diff {
    std::set<std::string> only_a, only_b, changed;
};

Diff key_diff(const GGUFFile& a, const GGUFFile& b) {
    Diff d;
    for (const auto& [k, v] : a.kv()) {
        const slm::GGUFValue* o = b.find(k);
        if (!o) d.only_a.insert(k);
        else if (!(*o == v)) d.changed.insert(k);
    }
    for (const auto& [k, v] : b.kv())
        if (!a.find(k)) d.only_b.insert(k);
    return d;
}

// Every tensor of `a` is in `b` with the same name, type, shape (trailing 1s aside) and bytes;
// `max_ulps` allows that many ulps in the named F32 tensors.
void expect_same_tensors(const GGUFFile& a, const GGUFFile& b, const std::set<std::string>& ulp_ok = {}) {
    EXPECT_EQ(a.tensors().size(), b.tensors().size());
    for (const GGUFTensorInfo& t : a.tensors()) {
        const GGUFTensorInfo* u = b.find_tensor(t.name);
        ASSERT_NE(u, nullptr) << t.name;
        EXPECT_EQ(u->type, t.type) << t.name;
        EXPECT_EQ(trimmed(*u), trimmed(t)) << t.name;
        ASSERT_EQ(u->nbytes, t.nbytes) << t.name;
        const std::string suffix = t.name.substr(t.name.rfind('.') + 1);
        if (ulp_ok.count(suffix) && t.type == GGMLType::F32) {
            int64_t worst = 0;
            for (int64_t i = 0; i < t.nelements(); ++i) {
                float x, y;
                std::memcpy(&x, t.data + 4 * i, 4);
                std::memcpy(&y, u->data + 4 * i, 4);
                worst = std::max(worst, ulps(x, y));
            }
            EXPECT_LE(worst, 2) << t.name;
        } else {
            EXPECT_EQ(std::memcmp(u->data, t.data, t.nbytes), 0) << t.name;
        }
    }
}

struct RefCase {
    std::string file;   // under shared/reference or the repo
    std::string name;   // general.name, which becomes the folder name
    std::set<std::string> only_ref, only_ours;   // keys that differ by the converter's rules
    std::set<std::string> ulp_ok;                // tensors whose inverse has no exact float form
    std::set<std::string> changed = {};          // keys whose type differs by the converter's rules
};

std::vector<RefCase> ref_cases() {
    const std::set<std::string> ours = {"general.type", "general.quantization_version"};
    auto plus = [&](std::set<std::string> s) {
        s.insert(ours.begin(), ours.end());
        return s;
    };
    return {
        // stories260K came from llama.cpp's llama2.c converter, which writes no file_type or freq_base.
        {"", "llama", {}, plus({"llama.vocab_size", "llama.rope.freq_base", "general.file_type"}), {}},
        {"archs/llama/llama.f32.gguf", "tiny-random", {}, plus({"llama.vocab_size"}), {}},
        // convert_hf_to_gguf.py writes rope.dimension_count for Llama-family classes only.
        {"archs/qwen2/qwen2.f32.gguf", "tiny-random", {"qwen2.rope.dimension_count"}, plus({}), {}},
        {"archs/qwen3/qwen3.f32.gguf", "tiny-random", {"qwen3.rope.dimension_count"}, plus({}), {}},
        {"archs/phi3/phi3.f32.gguf", "tiny-random", {},
         plus({"phi3.rope.scaling.original_context_length", "phi3.attention.sliding_window"}), {}},
        // Gemma2Model writes neither rope key (llama.cpp's defaults apply) and always the head size;
        // the pattern 2 is llama.cpp's default for gemma2.
        {"archs/gemma2/gemma2.f32.gguf", "tiny-random",
         {"gemma2.rope.freq_base", "gemma2.rope.dimension_count", "gemma2.attention.sliding_window_pattern"},
         plus({"gemma2.attention.key_length", "gemma2.attention.value_length"}), {}},
        {"archs/gemma3/gemma3.f32.gguf", "tiny-random", {"gemma3.rope.dimension_count"},
         plus({"gemma3.attention.key_length", "gemma3.attention.value_length"}), {}},
        {"archs/qwen2moe/qwen2moe.f32.gguf", "tiny-random", {"qwen2moe.rope.dimension_count"}, plus({}), {}},
        {"archs/mamba/mamba.f32.gguf", "tiny-random", {}, plus({"mamba.ssm.dt_b_c_rms"}), {"ssm_a"}},
        // gguf-py writes a list of Python ints as an INT32 array; the reference file has UINT32.
        {"archs/jamba/jamba.f32.gguf", "tiny-random", {}, plus({}), {"ssm_a"}, {"jamba.attention.head_count_kv"}},
    };
}

std::string ref_path(const RefCase& c) { return c.file.empty() ? stories() : slm::test::shared_path("reference/" + c.file); }

} // namespace

TEST(HFConvert, GgufToHfToGgufKeepsEveryTensorAndKey) {
    SLM_REQUIRE_SHARED();
    for (const RefCase& c : ref_cases()) {
        SCOPED_TRACE(ref_path(c));
        const std::string dir = fresh_dir(c.name);
        slm::convert_gguf_to_hf(ref_path(c), dir);
        for (const char* f : {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                              "tokenizer_config.json"})
            EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
        const std::string back = fs::path(dir).parent_path().string() + "/back.gguf";
        slm::convert_hf_to_gguf(dir, back, "auto");
        const GGUFFile a = GGUFFile::open(ref_path(c)), b = GGUFFile::open(back);
        const Diff d = key_diff(a, b);
        EXPECT_EQ(d.changed, c.changed);
        for (const std::string& k : c.changed) {  // same numbers, other integer type
            const slm::GGUFValue &x = *a.find(k), &y = *b.find(k);
            ASSERT_EQ(x.n, y.n) << k;
            for (uint64_t i = 0; i < x.n; ++i) EXPECT_EQ(x.elem_int(i), y.elem_int(i)) << k;
        }
        EXPECT_EQ(d.only_a, c.only_ref);
        EXPECT_EQ(d.only_b, c.only_ours);
        expect_same_tensors(a, b, c.ulp_ok);

        // Once through, the trip is exact: the same bytes again.
        const std::string dir2 = fresh_dir(c.name);
        slm::convert_gguf_to_hf(back, dir2);
        const std::string back2 = fs::path(dir2).parent_path().string() + "/back.gguf";
        slm::convert_hf_to_gguf(dir2, back2, "auto");
        EXPECT_EQ(slm::test::read_file(back), slm::test::read_file(back2));
        EXPECT_EQ(slm::test::read_file(dir + "/model.safetensors"), slm::test::read_file(dir2 + "/model.safetensors"))
            << "second export differs";
    }
}

TEST(HFConvert, KeysInTheConvertersOrderAndTypes) {
    SLM_REQUIRE_SHARED();
    const std::string dir = fresh_dir("tiny-random");
    slm::convert_gguf_to_hf(slm::test::shared_path("reference/archs/qwen3/qwen3.f32.gguf"), dir);
    const std::string out = fs::path(dir).parent_path().string() + "/q.gguf";
    slm::convert_hf_to_gguf(dir, out, "f16");
    const GGUFFile f = GGUFFile::open(out);
    std::vector<std::string> keys;
    for (const auto& [k, v] : f.kv())
        if (k.rfind("tokenizer.", 0) != 0) keys.push_back(k + ":" + slm::gguf_type_name(v.type));
    // TextModel.set_gguf_parameters, framed by what ModelBase writes before and after it.
    const std::vector<std::string> want = {
        "general.architecture:STRING", "general.type:STRING", "general.name:STRING", "qwen3.block_count:UINT32",
        "qwen3.context_length:UINT32", "qwen3.embedding_length:UINT32", "qwen3.feed_forward_length:UINT32",
        "qwen3.attention.head_count:UINT32", "qwen3.attention.head_count_kv:UINT32", "qwen3.rope.freq_base:FLOAT32",
        "qwen3.attention.layer_norm_rms_epsilon:FLOAT32", "qwen3.attention.key_length:UINT32",
        "qwen3.attention.value_length:UINT32", "general.file_type:UINT32", "general.quantization_version:UINT32"};
    EXPECT_EQ(keys, want);
    EXPECT_EQ(f.get_u32("general.file_type"), 1u);  // MOSTLY_F16
    EXPECT_EQ(f.kv().back().first.rfind("tokenizer.", 0), 0u);  // the tokenizer comes last
    // Tensors in the converter's order: by HF name, so lm_head/embed first and layer 0's
    // input_layernorm before its mlp and self_attn tensors.
    std::vector<std::string> names;
    for (const auto& t : f.tensors()) names.push_back(t.name);
    ASSERT_GE(names.size(), 4u);
    EXPECT_EQ(names[0], "token_embd.weight");
    EXPECT_EQ(names[1], "blk.0.attn_norm.weight");
    EXPECT_EQ(names[2], "blk.0.ffn_down.weight");
    EXPECT_EQ(names.back(), "output_norm.weight");
    // 2-D tensors F16, 1-D and norms F32.
    for (const auto& t : f.tensors()) EXPECT_EQ(t.type, t.n_dims >= 2 ? GGMLType::F16 : GGMLType::F32) << t.name;
}

TEST(HFConvert, RunningAFolderEqualsRunningItsGguf) {
    SLM_REQUIRE_SHARED();
    for (const char* rel : {"", "archs/llama/llama.f32.gguf", "archs/qwen2/qwen2.f32.gguf", "archs/qwen3/qwen3.f32.gguf"}) {
        const std::string src = *rel ? slm::test::shared_path(std::string("reference/") + rel) : stories();
        SCOPED_TRACE(src);
        const std::string dir = fresh_dir("m");
        slm::convert_gguf_to_hf(src, dir);
        EXPECT_EQ(logits_of(dir, kPrompt), logits_of(src, kPrompt));
    }
}

// ---- folders written by the test ----------------------------------------------------------------

namespace {

struct Synth {
    std::string arch = "LlamaForCausalLM";
    int n_embd = 64, n_head = 4, n_head_kv = 2, n_ff = 96, n_layer = 2, head_dim = 0;
    bool tied = false, qkv_bias = false, qk_norm = false;
    STDtype dtype = STDtype::F32;
    int shards = 1;
    uint32_t seed = 1;
    json extra = json::object();  // merged into config.json
};

// A Hugging Face folder as transformers' save_pretrained lays it out, with random weights.
void write_synth(const std::string& dir, const Synth& s) {
    const GGUFFile voc = GGUFFile::open(stories());
    const slm::VocabData vd = slm::hf::vocab_data_from_gguf(voc);
    const int64_t n_vocab = static_cast<int64_t>(vd.tokens.size());
    const int hd = s.head_dim ? s.head_dim : s.n_embd / s.n_head;
    std::mt19937 rng(s.seed);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<uint8_t>>> tensors;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        std::vector<uint8_t> b(static_cast<size_t>(n) * slm::st_dtype_size(s.dtype));
        for (int64_t i = 0; i < n; ++i) {
            const float v = mean + nd(rng);
            if (s.dtype == STDtype::F32) std::memcpy(b.data() + 4 * i, &v, 4);
            else {
                const uint16_t h = s.dtype == STDtype::F16 ? slm::kernels::fp32_to_fp16(v) : slm::kernels::fp32_to_bf16(v);
                std::memcpy(b.data() + 2 * i, &h, 2);
            }
        }
        tensors[name] = {shape, std::move(b)};
    };
    add("model.embed_tokens.weight", {n_vocab, s.n_embd}, 0);
    const float norm_mean = s.arch == "GemmaForCausalLM" ? 0.0f : 1.0f;  // Gemma scales by 1 + w
    add("model.norm.weight", {s.n_embd}, norm_mean);
    if (!s.tied) add("lm_head.weight", {n_vocab, s.n_embd}, 0);
    for (int il = 0; il < s.n_layer; ++il) {
        const std::string p = "model.layers." + std::to_string(il) + ".";
        add(p + "input_layernorm.weight", {s.n_embd}, norm_mean);
        add(p + "post_attention_layernorm.weight", {s.n_embd}, norm_mean);
        add(p + "self_attn.q_proj.weight", {s.n_head * hd, s.n_embd}, 0);
        add(p + "self_attn.k_proj.weight", {s.n_head_kv * hd, s.n_embd}, 0);
        add(p + "self_attn.v_proj.weight", {s.n_head_kv * hd, s.n_embd}, 0);
        add(p + "self_attn.o_proj.weight", {s.n_embd, s.n_head * hd}, 0);
        if (s.qkv_bias) {
            add(p + "self_attn.q_proj.bias", {s.n_head * hd}, 0);
            add(p + "self_attn.k_proj.bias", {s.n_head_kv * hd}, 0);
            add(p + "self_attn.v_proj.bias", {s.n_head_kv * hd}, 0);
        }
        if (s.qk_norm) {
            add(p + "self_attn.q_norm.weight", {hd}, 1);
            add(p + "self_attn.k_norm.weight", {hd}, 1);
        }
        add(p + "mlp.gate_proj.weight", {s.n_ff, s.n_embd}, 0);
        add(p + "mlp.up_proj.weight", {s.n_ff, s.n_embd}, 0);
        add(p + "mlp.down_proj.weight", {s.n_embd, s.n_ff}, 0);
    }
    // Split the sorted names into `shards` consecutive runs.
    std::vector<SafetensorsWriter> w(static_cast<size_t>(s.shards));
    json weight_map = json::object();
    size_t i = 0;
    for (auto& [name, t] : tensors) {
        const size_t k = i++ * static_cast<size_t>(s.shards) / tensors.size();
        w[k].add(name, s.dtype, t.first, t.second.data(), t.second.size());
        weight_map[name] = "model-0000" + std::to_string(k + 1) + "-of-0000" + std::to_string(s.shards) + ".safetensors";
    }
    for (auto& x : w) x.set_metadata("format", "pt");
    if (s.shards == 1) {
        w[0].write(dir + "/model.safetensors");
    } else {
        for (int k = 0; k < s.shards; ++k)
            w[k].write(dir + "/model-0000" + std::to_string(k + 1) + "-of-0000" + std::to_string(s.shards) + ".safetensors");
        std::ofstream(dir + "/model.safetensors.index.json") << json{{"metadata", json::object()}, {"weight_map", weight_map}}.dump(2);
    }
    const std::map<std::string, std::string> types = {{"LlamaForCausalLM", "llama"},   {"Qwen2ForCausalLM", "qwen2"},
                                                      {"Qwen3ForCausalLM", "qwen3"},   {"GraniteForCausalLM", "granite"},
                                                      {"GemmaForCausalLM", "gemma"}};
    const std::string mt = types.at(s.arch);
    json c = {{"architectures", {s.arch}},  {"model_type", mt},          {"hidden_size", s.n_embd},
              {"intermediate_size", s.n_ff}, {"num_attention_heads", s.n_head}, {"num_key_value_heads", s.n_head_kv},
              {"num_hidden_layers", s.n_layer}, {"max_position_embeddings", 128}, {"rms_norm_eps", 1e-6},
              {"rope_theta", 10000.0},       {"vocab_size", n_vocab},     {"tie_word_embeddings", s.tied},
              {"hidden_act", "silu"},        {"bos_token_id", 1},         {"eos_token_id", 2}};
    if (s.head_dim) c["head_dim"] = s.head_dim;
    if (mt == "granite") {
        c["attention_multiplier"] = 0.015625;
        c["embedding_multiplier"] = 12.0;
        c["residual_multiplier"] = 0.22;
        c["logits_scaling"] = 8.0;
    }
    if (mt == "gemma") c["head_dim"] = hd;
    for (auto it = s.extra.begin(); it != s.extra.end(); ++it) c[it.key()] = it.value();
    std::ofstream(dir + "/config.json") << c.dump(2);
    slm::hf::write_hf_tokenizer(vd, "", dir);
}

} // namespace

TEST(HFConvert, WrittenFoldersRunLikeTheirGguf) {
    std::vector<Synth> cases(6);
    cases[1].tied = true;
    cases[1].seed = 2;
    cases[2].arch = "Qwen2ForCausalLM";
    cases[2].tied = true;
    cases[2].qkv_bias = true;
    cases[2].seed = 3;
    cases[3].arch = "Qwen3ForCausalLM";
    cases[3].head_dim = 32;  // != n_embd / n_head
    cases[3].qk_norm = true;
    cases[3].tied = true;
    cases[3].seed = 4;
    cases[4].dtype = STDtype::F16;
    cases[4].seed = 5;
    cases[5].dtype = STDtype::BF16;
    cases[5].seed = 6;
    for (const Synth& s : cases) {
        SCOPED_TRACE(s.arch + " seed " + std::to_string(s.seed));
        const std::string dir = fresh_dir("synth");
        write_synth(dir, s);
        const std::string out = fs::path(dir).parent_path().string() + "/out.gguf";
        slm::convert_hf_to_gguf(dir, out, "auto");
        const GGUFFile f = GGUFFile::open(out);
        EXPECT_EQ(f.find_tensor("output.weight") == nullptr, s.tied);
        const GGMLType want = s.dtype == STDtype::F16 ? GGMLType::F16 : s.dtype == STDtype::BF16 ? GGMLType::BF16 : GGMLType::F32;
        EXPECT_EQ(f.tensor("blk.0.attn_q.weight").type, want);
        EXPECT_EQ(f.tensor("blk.0.attn_norm.weight").type, GGMLType::F32);
        const std::vector<float> a = logits_of(dir, kPrompt), b = logits_of(out, kPrompt);
        EXPECT_EQ(a, b);
        float spread = 0;
        for (size_t i = 1; i < 512; ++i) spread = std::max(spread, std::fabs(a[i] - a[0]));
        EXPECT_GT(spread, 0.01f) << "flat logits: the test would not see a wrong weight";
    }
}

TEST(HFConvert, ShardedFolderConvertsLikeOneFile) {
    Synth s;
    s.seed = 7;
    const std::string one = fresh_dir("m"), three = fresh_dir("m");
    write_synth(one, s);
    s.shards = 3;
    write_synth(three, s);
    const std::string a = fs::path(one).parent_path().string() + "/a.gguf", b = fs::path(three).parent_path().string() + "/b.gguf";
    slm::convert_hf_to_gguf(one, a, "auto");
    slm::convert_hf_to_gguf(three, b, "auto");
    EXPECT_TRUE(fs::exists(three + "/model-00003-of-00003.safetensors"));
    EXPECT_EQ(slm::test::read_file(a), slm::test::read_file(b));
}

// Llama's Q/K rows: HF applies RoPE by rotating halves (rotate_half), llama.cpp's NORM RoPE
// rotates adjacent pairs. Attention scores q.k per head must agree between the HF weights with
// the HF rule and the converted GGUF weights with the GGUF rule.
TEST(HFConvert, QKPermutationMatchesRope) {
    SLM_REQUIRE_SHARED();
    const std::string src = slm::test::shared_path("reference/archs/llama/llama.f32.gguf");
    const std::string dir = fresh_dir("tiny-random");
    slm::convert_gguf_to_hf(src, dir);
    const GGUFFile g = GGUFFile::open(src);
    const slm::SafetensorsCheckpoint ck = slm::SafetensorsCheckpoint::open_dir(dir);
    const int n_embd = 256, n_head = 4, n_kv = 2, hd = 64;
    auto mat = [](const uint8_t* p, int rows, int cols) {
        std::vector<float> m(static_cast<size_t>(rows) * cols);
        std::memcpy(m.data(), p, m.size() * 4);
        return m;
    };
    auto matvec = [&](const std::vector<float>& m, const std::vector<float>& x, int rows) {
        std::vector<double> y(rows, 0.0);
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < n_embd; ++c) y[r] += static_cast<double>(m[static_cast<size_t>(r) * n_embd + c]) * x[c];
        return y;
    };
    auto rope_half = [&](std::vector<double> v, int pos) {  // HF: pairs (i, i + hd/2)
        for (size_t h = 0; h < v.size() / hd; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double th = pos * std::pow(10000.0, -2.0 * i / hd);
                double& a = v[h * hd + i];
                double& b = v[h * hd + i + hd / 2];
                const double x = a, y = b;
                a = x * std::cos(th) - y * std::sin(th);
                b = y * std::cos(th) + x * std::sin(th);
            }
        return v;
    };
    auto rope_pairs = [&](std::vector<double> v, int pos) {  // GGUF NORM: pairs (2i, 2i + 1)
        for (size_t h = 0; h < v.size() / hd; ++h)
            for (int i = 0; i < hd / 2; ++i) {
                const double th = pos * std::pow(10000.0, -2.0 * i / hd);
                double& a = v[h * hd + 2 * i];
                double& b = v[h * hd + 2 * i + 1];
                const double x = a, y = b;
                a = x * std::cos(th) - y * std::sin(th);
                b = y * std::cos(th) + x * std::sin(th);
            }
        return v;
    };
    auto scores = [&](const std::vector<double>& q, const std::vector<double>& k) {
        std::vector<double> s;
        for (int h = 0; h < n_head; ++h) {
            const int kh = h / (n_head / n_kv);
            double d = 0;
            for (int i = 0; i < hd; ++i) d += q[h * hd + i] * k[kh * hd + i];
            s.push_back(d);
        }
        return s;
    };
    const auto qh = mat(ck.find("model.layers.1.self_attn.q_proj.weight")->data, n_head * hd, n_embd);
    const auto kh = mat(ck.find("model.layers.1.self_attn.k_proj.weight")->data, n_kv * hd, n_embd);
    const auto qg = mat(g.tensor("blk.1.attn_q.weight").data, n_head * hd, n_embd);
    const auto kg = mat(g.tensor("blk.1.attn_k.weight").data, n_kv * hd, n_embd);
    std::mt19937 rng(11);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x1(n_embd), x2(n_embd);
    for (auto& v : x1) v = nd(rng);
    for (auto& v : x2) v = nd(rng);
    const int p1 = 5, p2 = 2;
    const auto s_hf = scores(rope_half(matvec(qh, x1, n_head * hd), p1), rope_half(matvec(kh, x2, n_kv * hd), p2));
    const auto s_gg = scores(rope_pairs(matvec(qg, x1, n_head * hd), p1), rope_pairs(matvec(kg, x2, n_kv * hd), p2));
    const auto s_wrong = scores(rope_half(matvec(qg, x1, n_head * hd), p1), rope_half(matvec(kg, x2, n_kv * hd), p2));
    double worst = 0, wrong = 0;
    for (int h = 0; h < n_head; ++h) {
        worst = std::max(worst, std::fabs(s_hf[h] - s_gg[h]));
        wrong = std::max(wrong, std::fabs(s_wrong[h] - s_gg[h]));
    }
    EXPECT_LT(worst, 1e-9);
    EXPECT_GT(wrong, 1e-3);  // the layouts really differ: a missing permutation would be caught
}

TEST(HFConvert, OutputTypesAsTheConverterWritesThem) {
    SLM_REQUIRE_SHARED();
    // q8_0: the blocks equal llama-quantize's (its Q8_0 and gguf-py's are the same reference
    // quantizer), and stories260K's 172-column ffn_down falls back to F16 as the converter does.
    for (const auto& [src, q8] : {std::pair<std::string, std::string>{slm::test::shared_path("reference/archs/llama/llama.f32.gguf"),
                                                                       slm::test::shared_path("reference/archs/llama/llama.q8_0.gguf")},
                                  {stories(), slm::test::source_dir() + "/tests/data/reference/stories260K/stories260K.q8_0.gguf"}}) {
        SCOPED_TRACE(src);
        const std::string dir = fresh_dir("m");
        slm::convert_gguf_to_hf(src, dir);
        const std::string out = fs::path(dir).parent_path().string() + "/q8.gguf";
        slm::convert_hf_to_gguf(dir, out, "q8_0");
        const GGUFFile a = GGUFFile::open(out), ref = GGUFFile::open(q8);
        EXPECT_EQ(a.get_u32("general.file_type"), 7u);
        expect_same_tensors(ref, a);
    }
    // f16 and bf16: 2-D tensors rounded to nearest even, the rest F32.
    const std::string src = slm::test::shared_path("reference/archs/qwen2/qwen2.f32.gguf");
    const std::string dir = fresh_dir("m");
    slm::convert_gguf_to_hf(src, dir);
    const GGUFFile f32 = GGUFFile::open(src);
    for (const auto& [name, t16] : {std::pair<std::string, GGMLType>{"f16", GGMLType::F16}, {"bf16", GGMLType::BF16}}) {
        const std::string out = fs::path(dir).parent_path().string() + "/" + name + ".gguf";
        slm::convert_hf_to_gguf(dir, out, name);
        const GGUFFile g = GGUFFile::open(out);
        EXPECT_EQ(g.get_u32("general.file_type"), t16 == GGMLType::F16 ? 1u : 32u);
        for (const GGUFTensorInfo& t : g.tensors()) {
            const GGUFTensorInfo& s = f32.tensor(t.name);
            ASSERT_EQ(t.type, s.n_dims >= 2 ? t16 : GGMLType::F32) << t.name;
            if (t.type == GGMLType::F32) continue;
            for (int64_t i = 0; i < t.nelements(); i += 97) {
                float v;
                uint16_t h;
                std::memcpy(&v, s.data + 4 * i, 4);
                std::memcpy(&h, t.data + 2 * i, 2);
                EXPECT_EQ(h, t16 == GGMLType::F16 ? slm::kernels::fp32_to_fp16(v) : slm::kernels::fp32_to_bf16(v)) << t.name;
            }
        }
    }
}

// Gemma stores 1 + w in GGUF. w = g - 1 is exact for g >= 0.5; below, the nearest w is written.
TEST(HFConvert, GemmaNormShiftRoundTrips) {
    SLM_REQUIRE_SHARED();
    const std::string src = slm::test::shared_path("reference/archs/gemma2/gemma2.f32.gguf");
    const GGUFFile f = GGUFFile::open(src);
    slm::GGUFWriter w;
    w.copy_kv_from(f);
    const std::vector<float> vals = {0.5f, 0.75f, 1.0f, 1.0000001f, 3.9999998f, 1e6f, 0.1f, -2.3f, 1e-8f, 0.4999999f};
    for (const GGUFTensorInfo& t : f.tensors()) {
        if (t.name != "blk.0.attn_norm.weight") {
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            continue;
        }
        std::vector<float> v(static_cast<size_t>(t.nelements()));
        std::memcpy(v.data(), t.data, v.size() * 4);
        std::copy(vals.begin(), vals.end(), v.begin());
        std::vector<uint8_t> b(v.size() * 4);
        std::memcpy(b.data(), v.data(), b.size());
        w.add_tensor_copy(t.name, t.type, t.shape(), b);
    }
    const std::string dir = fresh_dir("tiny-random");
    const std::string edited = fs::path(dir).parent_path().string() + "/edited.gguf";
    w.write(edited);
    slm::convert_gguf_to_hf(edited, dir);
    const slm::SafetensorsCheckpoint ck = slm::SafetensorsCheckpoint::open_dir(dir);
    const slm::SafetensorsTensor* hn = ck.find("model.layers.0.input_layernorm.weight");
    ASSERT_NE(hn, nullptr);
    float h0;
    std::memcpy(&h0, hn->data + 4 * 2, 4);
    EXPECT_EQ(h0, 0.0f);  // 1.0 in GGUF is a zero weight in HF
    const std::string back = fs::path(dir).parent_path().string() + "/back.gguf";
    slm::convert_hf_to_gguf(dir, back, "auto");
    const GGUFFile bf = GGUFFile::open(back);
    const GGUFTensorInfo& t = bf.tensor("blk.0.attn_norm.weight");
    for (size_t i = 0; i < vals.size(); ++i) {
        float g;
        std::memcpy(&g, t.data + 4 * i, 4);
        if (vals[i] >= 0.5f) EXPECT_EQ(g, vals[i]) << i;
        else EXPECT_LE(std::fabs(g - vals[i]), 1.2e-7f) << i;  // half an ulp of the [0.5, 1) w's
    }
}

namespace {

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST(HFConvert, ClearErrors) {
    Synth s;
    const std::string dir = fresh_dir("m");
    write_synth(dir, s);
    const std::string out = fs::path(dir).parent_path().string() + "/x.gguf";
    auto patch = [&](const std::function<void(json&)>& f) {
        json c = json::parse(slm::test::read_text(dir + "/config.json"));
        f(c);
        std::ofstream(dir + "/config.json") << c.dump();
    };
    const std::string good = slm::test::read_text(dir + "/config.json");
    patch([](json& c) { c["architectures"] = {"BertModel"}; });
    std::string e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "auto"); });
    EXPECT_NE(e.find("'BertModel' is not supported"), std::string::npos) << e;
    EXPECT_NE(e.find("LlamaForCausalLM"), std::string::npos) << e;
    patch([](json& c) { c.erase("architectures"); });
    e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "auto"); });
    EXPECT_NE(e.find("config.json: field 'architectures'"), std::string::npos) << e;
    patch([](json& c) { c = {{"architectures", {"LlamaForCausalLM"}}, {"num_attention_heads", "four"}}; });
    e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "auto"); });
    EXPECT_NE(e.find("num_attention_heads"), std::string::npos) << e;
    std::ofstream(dir + "/config.json") << "{not json";
    e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "auto"); });
    EXPECT_NE(e.find("config.json: invalid JSON"), std::string::npos) << e;
    std::ofstream(dir + "/config.json") << good;
    e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "q4_0"); });
    EXPECT_NE(e.find("Q4_0 is not one the converter writes"), std::string::npos) << e;
    e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "int7"); });
    EXPECT_NE(e.find("unknown output type 'int7'"), std::string::npos) << e;

    // A tensor the architecture does not have.
    {
        SafetensorsWriter w;
        const std::vector<uint8_t> b(16);
        w.add("model.layers.0.mystery.weight", STDtype::F32, {2, 2}, b.data(), b.size());
        w.write(dir + "/model.safetensors");
        e = error_of([&] { slm::convert_hf_to_gguf(dir, out, "auto"); });
        EXPECT_NE(e.find("'model.layers.0.mystery.weight' has no GGUF name for LlamaForCausalLM"), std::string::npos) << e;
    }
    EXPECT_FALSE(fs::exists(out));  // nothing half-written

    // GGUF -> HF of an architecture with no HF form here.
    slm::GGUFWriter w;
    w.set("general.architecture", slm::GGUFValue::string("gpt2"));
    const std::string g = fs::path(dir).parent_path().string() + "/gpt2.gguf";
    w.write(g);
    e = error_of([&] { slm::convert_gguf_to_hf(g, fresh_dir("x")); });
    EXPECT_NE(e.find("architecture 'gpt2' cannot be written"), std::string::npos) << e;
}

TEST(HFConvert, Cli) {
    Synth s;
    s.seed = 9;
    const std::string dir = fresh_dir("cli-model");
    write_synth(dir, s);
    const std::string base = fs::path(dir).parent_path().string();
    auto r = slm::test::run_cli({"convert", "--from", "hf", dir, "-o", base + "/c.gguf", "--type", "f16"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(GGUFFile::open(base + "/c.gguf").get_u32("general.file_type"), 1u);
    EXPECT_EQ(GGUFFile::open(base + "/c.gguf").get_str("general.name"), "cli-model");
    r = slm::test::run_cli({"convert", "--to", "hf", base + "/c.gguf", "-o", base + "/again"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(fs::exists(base + "/again/model.safetensors"));
    r = slm::test::run_cli({"run", "-m", dir, "-p", "Once upon a time", "-n", "4", "--temp", "0", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = json::parse(r.out);
    EXPECT_EQ(j["tokens"].size(), 4u);
    r = slm::test::run_cli({"info", "-m", dir});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Hugging Face folder"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("llama.rope.dimension_count"), std::string::npos) << r.out;
    r = slm::test::run_cli({"convert", "--from", "hf", "--to", "hf", dir, "-o", base + "/z"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("exactly one of"), std::string::npos) << r.err;
}

// Architectures with no reference GGUF: written as HF folders, converted, checked key by key, and
// taken back and forth until the bytes repeat.
TEST(HFConvert, GraniteAndGemmaFromWrittenFolders) {
    Synth g;
    g.arch = "GraniteForCausalLM";
    g.seed = 21;
    g.head_dim = 0;
    Synth m;
    m.arch = "GemmaForCausalLM";
    m.tied = true;
    m.seed = 22;
    for (const Synth& s : {g, m}) {
        SCOPED_TRACE(s.arch);
        const std::string dir = fresh_dir("synth");
        write_synth(dir, s);
        const std::string base = fs::path(dir).parent_path().string();
        slm::convert_hf_to_gguf(dir, base + "/a.gguf", "auto");
        const GGUFFile a = GGUFFile::open(base + "/a.gguf");
        const slm::SafetensorsCheckpoint ck = slm::SafetensorsCheckpoint::open_dir(dir);
        if (s.arch == "GraniteForCausalLM") {
            EXPECT_EQ(a.get_str("general.architecture"), "granite");
            EXPECT_EQ(a.get_f32("granite.attention.scale"), 0.015625f);
            EXPECT_EQ(a.get_f32("granite.embedding_scale"), 12.0f);
            EXPECT_EQ(a.get_f32("granite.residual_scale"), 0.22f);
            EXPECT_EQ(a.get_f32("granite.logit_scale"), 8.0f);
            EXPECT_EQ(a.get_u32("granite.rope.dimension_count"), 16u);
        } else {
            EXPECT_EQ(a.get_str("general.architecture"), "gemma");
            EXPECT_EQ(a.get_u32("gemma.attention.key_length"), 16u);
            // GGUF norms are 1 + w, computed in F32.
            const slm::SafetensorsTensor* w = ck.find("model.layers.1.input_layernorm.weight");
            const GGUFTensorInfo& t = a.tensor("blk.1.attn_norm.weight");
            for (int i = 0; i < s.n_embd; ++i) {
                float x, y;
                std::memcpy(&x, w->data + 4 * i, 4);
                std::memcpy(&y, t.data + 4 * i, 4);
                EXPECT_EQ(y, x + 1.0f) << i;
            }
            EXPECT_EQ(a.find_tensor("output.weight"), nullptr);
        }
        slm::convert_gguf_to_hf(base + "/a.gguf", base + "/again/synth");
        slm::convert_hf_to_gguf(base + "/again/synth", base + "/b.gguf", "auto");
        EXPECT_EQ(slm::test::read_file(base + "/a.gguf"), slm::test::read_file(base + "/b.gguf"));
        // slm runs both: the folder gives the GGUF's logits.
        EXPECT_EQ(logits_of(dir, kPrompt), logits_of(base + "/a.gguf", kPrompt));
    }
}

// OpenELM: per-layer head counts and FFN widths (INT32 arrays, as gguf-py writes Python lists),
// and proj_1 = [gate; up] split into two GGUF tensors.
TEST(HFConvert, OpenElmFromAWrittenFolder) {
    const std::string dir = fresh_dir("openelm-tiny");
    const GGUFFile voc = GGUFFile::open(stories());
    const slm::VocabData vd = slm::hf::vocab_data_from_gguf(voc);
    const int E = 64, hd = 16;
    const std::vector<int> nq = {2, 4}, nkv = {1, 2}, ff = {48, 128};  // make_divisible(0.73 * 64, 16), (1.9 * 64, 16)
    std::mt19937 rng(31);
    std::normal_distribution<float> nd(0.0f, 0.1f);
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<uint8_t>>> ts;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, float mean) {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        std::vector<float> v(static_cast<size_t>(n));
        for (float& x : v) x = mean + nd(rng);
        std::vector<uint8_t> b(v.size() * 4);
        std::memcpy(b.data(), v.data(), b.size());
        ts[name] = {shape, b};
    };
    add("transformer.token_embeddings.weight", {512, E}, 0);
    add("transformer.norm.weight", {E}, 1);
    for (int il = 0; il < 2; ++il) {
        const std::string p = "transformer.layers." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", {E}, 1);
        add(p + "attn.qkv_proj.weight", {(nq[il] + 2 * nkv[il]) * hd, E}, 0);
        add(p + "attn.q_norm.weight", {hd}, 1);
        add(p + "attn.k_norm.weight", {hd}, 1);
        add(p + "attn.out_proj.weight", {E, nq[il] * hd}, 0);
        add(p + "ffn_norm.weight", {E}, 1);
        add(p + "ffn.proj_1.weight", {2 * ff[il], E}, 0);
        add(p + "ffn.proj_2.weight", {E, ff[il]}, 0);
    }
    SafetensorsWriter w;
    for (auto& [n, t] : ts) w.add(n, STDtype::F32, t.first, t.second.data(), t.second.size());
    w.set_metadata("format", "pt");
    w.write(dir + "/model.safetensors");
    const json c = {{"architectures", {"OpenELMForCausalLM"}}, {"model_type", "openelm"}, {"num_transformer_layers", 2},
                    {"model_dim", E}, {"head_dim", hd}, {"num_query_heads", nq}, {"num_kv_heads", nkv},
                    {"ffn_multipliers", {0.73, 1.9}}, {"ffn_dim_divisor", 16}, {"max_context_length", 256},
                    {"rope_freq_constant", 10000}, {"vocab_size", 512}, {"share_input_output_layers", true}};
    std::ofstream(dir + "/config.json") << c.dump(2);
    slm::hf::write_hf_tokenizer(vd, "", dir);

    const std::string base = fs::path(dir).parent_path().string();
    slm::convert_hf_to_gguf(dir, base + "/a.gguf", "auto");
    const GGUFFile a = GGUFFile::open(base + "/a.gguf");
    EXPECT_EQ(a.get_str("general.architecture"), "openelm");
    const slm::GGUFValue* v = a.find("openelm.feed_forward_length");
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->elem_type, slm::GGUFType::I32);
    EXPECT_EQ(v->elem_int(0), 48);
    EXPECT_EQ(v->elem_int(1), 128);
    EXPECT_EQ(a.find("openelm.attention.head_count")->elem_int(1), 4);
    EXPECT_EQ(a.find("openelm.attention.head_count_kv")->elem_int(0), 1);
    EXPECT_EQ(a.get_f32("openelm.attention.layer_norm_rms_epsilon"), 1e-6f);
    // gate = the first ff rows of proj_1, up = the rest.
    const auto& p1 = ts["transformer.layers.1.ffn.proj_1.weight"].second;
    const GGUFTensorInfo& gate = a.tensor("blk.1.ffn_gate.weight");
    const GGUFTensorInfo& up = a.tensor("blk.1.ffn_up.weight");
    EXPECT_EQ(gate.shape(), (std::vector<int64_t>{E, 128}));
    EXPECT_EQ(std::memcmp(gate.data, p1.data(), gate.nbytes), 0);
    EXPECT_EQ(std::memcmp(up.data, p1.data() + gate.nbytes, up.nbytes), 0);

    // slm runs OpenELM: the folder gives the GGUF's logits.
    EXPECT_EQ(logits_of(dir, kPrompt), logits_of(base + "/a.gguf", kPrompt));

    slm::convert_gguf_to_hf(base + "/a.gguf", base + "/again/openelm-tiny");
    slm::convert_hf_to_gguf(base + "/again/openelm-tiny", base + "/b.gguf", "auto");
    EXPECT_EQ(slm::test::read_file(base + "/a.gguf"), slm::test::read_file(base + "/b.gguf"));
    EXPECT_EQ(slm::test::read_file(dir + "/model.safetensors"), slm::test::read_file(base + "/again/openelm-tiny/model.safetensors"));
}

// Llama 3 RoPE scaling: config.json's rope_scaling becomes rope_freqs.weight (the first tensor,
// as the converter generates it), and comes back from it.
TEST(HFConvert, Llama3RopeFrequencies) {
    Synth s;
    s.seed = 41;
    s.n_embd = 128;
    s.n_head = 2;
    s.n_head_kv = 1;  // head size 64: 32 frequencies, some in each band at base 500000
    s.extra = {{"rope_theta", 500000.0},
               {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 32.0}, {"low_freq_factor", 1.0},
                                 {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}};
    const std::string dir = fresh_dir("llama3");
    write_synth(dir, s);
    const std::string base = fs::path(dir).parent_path().string();
    slm::convert_hf_to_gguf(dir, base + "/a.gguf", "auto");
    const GGUFFile a = GGUFFile::open(base + "/a.gguf");
    ASSERT_FALSE(a.tensors().empty());
    const GGUFTensorInfo& rf = a.tensors()[0];
    EXPECT_EQ(rf.name, "rope_freqs.weight");
    ASSERT_EQ(rf.nelements(), 32);
    int ones = 0, full = 0, between = 0;
    for (int i = 0; i < 32; ++i) {
        float got;
        std::memcpy(&got, rf.data + 4 * i, 4);
        // Llama 3.1's scaling, in double: wavelength against 8192/4 and 8192/1.
        const double freq = 1.0 / std::pow(500000.0, 2.0 * i / 64), wl = 2 * M_PI / freq;
        double want;
        if (wl < 8192.0 / 4) want = 1, ++ones;
        else if (wl > 8192.0) want = 32, ++full;
        else {
            const double sm = (8192.0 / wl - 1.0) / (4.0 - 1.0);
            want = 1.0 / ((1 - sm) / 32 + sm);
            ++between;
        }
        EXPECT_NEAR(got, want, 1e-4 * want) << i;
    }
    EXPECT_GT(ones, 0);
    EXPECT_GT(full, 0);
    EXPECT_GT(between, 0);
    slm::convert_gguf_to_hf(base + "/a.gguf", base + "/again/llama3");
    const json c = json::parse(slm::test::read_text(base + "/again/llama3/config.json"));
    EXPECT_EQ(c["rope_scaling"]["rope_type"], "llama3");
    EXPECT_EQ(c["rope_scaling"]["factor"], 32.0);
    slm::convert_hf_to_gguf(base + "/again/llama3", base + "/b.gguf", "auto");
    EXPECT_EQ(slm::test::read_file(base + "/a.gguf"), slm::test::read_file(base + "/b.gguf"));
}

// Phi-3 LongRoPE: the factor lists become rope_factors_long/short tensors (generated first) and
// rope.scaling.attn_factor, which the converter adds before any other key but the architecture.
TEST(HFConvert, Phi3LongRope) {
    SLM_REQUIRE_SHARED();
    const std::string dir = fresh_dir("phi3-long");
    slm::convert_gguf_to_hf(slm::test::shared_path("reference/archs/phi3/phi3.f32.gguf"), dir);
    json c = json::parse(slm::test::read_text(dir + "/config.json"));
    json lf = json::array(), sf = json::array();
    for (int i = 0; i < 32; ++i) {
        lf.push_back(1.0 + 0.25 * i);
        sf.push_back(1.0 + 0.01 * i);
    }
    c["rope_scaling"] = {{"type", "longrope"}, {"long_factor", lf}, {"short_factor", sf}};
    c["max_position_embeddings"] = 131072;
    c["original_max_position_embeddings"] = 4096;
    std::ofstream(dir + "/config.json") << c.dump(2);
    const std::string base = fs::path(dir).parent_path().string();
    slm::convert_hf_to_gguf(dir, base + "/a.gguf", "auto");
    const GGUFFile a = GGUFFile::open(base + "/a.gguf");
    EXPECT_EQ(a.kv()[0].first, "general.architecture");
    EXPECT_EQ(a.kv()[1].first, "phi3.rope.scaling.attn_factor");
    EXPECT_FLOAT_EQ(a.get_f32("phi3.rope.scaling.attn_factor"), static_cast<float>(std::sqrt(1 + std::log(32.0) / std::log(4096.0))));
    EXPECT_EQ(a.get_u32("phi3.rope.scaling.original_context_length"), 4096u);
    EXPECT_EQ(a.get_str("phi3.rope.scaling.type", ""), "");  // Phi3MiniModel writes no scaling type
    EXPECT_EQ(a.tensors()[0].name, "rope_factors_long.weight");
    EXPECT_EQ(a.tensors()[1].name, "rope_factors_short.weight");
    float x;
    std::memcpy(&x, a.tensors()[0].data + 4 * 3, 4);
    EXPECT_EQ(x, 1.75f);
    slm::convert_gguf_to_hf(base + "/a.gguf", base + "/again/phi3-long");
    slm::convert_hf_to_gguf(base + "/again/phi3-long", base + "/b.gguf", "auto");
    EXPECT_EQ(slm::test::read_file(base + "/a.gguf"), slm::test::read_file(base + "/b.gguf"));
}

// OLMoE and PhiMoE have no reference files: tiny models from `slm synth` (the tensors and keys
// llama.cpp loads) go GGUF -> HF -> GGUF with every tensor bit for bit, the keys as the
// converter writes them, the HF names transformers uses, and the folder runs as the GGUF.
TEST(HFConvert, OlmoeAndPhimoeFromSynth) {
    for (const std::string arch : {"olmoe", "phimoe"}) {
        SCOPED_TRACE(arch);
        const bool phi = arch == "phimoe";
        slm::SynthConfig c;
        c.arch = arch;
        c.name = "tiny";
        c.n_embd = 64;
        c.n_layer = 2;
        c.n_head = 4;
        c.n_head_kv = phi ? 2 : 4;
        c.n_ff = 32;
        c.n_expert = 4;
        c.n_expert_used = 2;
        c.n_ctx_train = 128;
        c.type = GGMLType::F32;
        c.tokenizer = stories();
        c.seed = phi ? 52 : 51;
        const std::string dir = fresh_dir("tiny-" + arch), base = fs::path(dir).parent_path().string();
        const std::string src = base + "/synth.gguf";
        slm::synthesize(c, src);
        slm::convert_gguf_to_hf(src, dir);

        const json cfg = json::parse(slm::test::read_text(dir + "/config.json"));
        EXPECT_EQ(cfg["architectures"][0], phi ? "PhiMoEForCausalLM" : "OlmoeForCausalLM");
        EXPECT_EQ(cfg[phi ? "num_local_experts" : "num_experts"], 4);
        EXPECT_EQ(cfg["num_experts_per_tok"], 2);
        EXPECT_EQ(cfg["intermediate_size"], 32);  // the expert width
        // One HF tensor per expert: expert 3 of the down projection is the GGUF's 4th slice.
        const GGUFFile a = GGUFFile::open(src);
        const slm::SafetensorsCheckpoint ck = slm::SafetensorsCheckpoint::open_dir(dir);
        const std::string down = phi ? "model.layers.1.block_sparse_moe.experts.3.w2.weight"
                                     : "model.layers.1.mlp.experts.3.down_proj.weight";
        const slm::SafetensorsTensor* d = ck.find(down);
        ASSERT_NE(d, nullptr) << down;
        EXPECT_EQ(d->shape, (std::vector<int64_t>{64, 32}));
        const GGUFTensorInfo& dx = a.tensor("blk.1.ffn_down_exps.weight");
        EXPECT_EQ(std::memcmp(d->data, dx.data + 3 * d->nbytes, d->nbytes), 0);
        if (phi) {
            EXPECT_NE(ck.find("lm_head.bias"), nullptr);
            EXPECT_NE(ck.find("model.layers.0.input_layernorm.bias"), nullptr);
            EXPECT_NE(ck.find("model.layers.0.block_sparse_moe.gate.weight"), nullptr);
        } else {
            const slm::SafetensorsTensor* qn = ck.find("model.layers.0.self_attn.q_norm.weight");
            ASSERT_NE(qn, nullptr);
            EXPECT_EQ(qn->shape, (std::vector<int64_t>{64}));  // over the whole projection
            EXPECT_NE(ck.find("model.layers.0.mlp.gate.weight"), nullptr);
        }

        const std::string back = base + "/back.gguf";
        slm::convert_hf_to_gguf(dir, back, "auto");
        const GGUFFile b = GGUFFile::open(back);
        expect_same_tensors(a, b);
        const Diff df = key_diff(a, b);
        EXPECT_EQ(df.changed, (std::set<std::string>{"general.name"}));  // the folder's name
        // llama.cpp's converter writes neither vocab_size nor (but for Phi) rope.dimension_count;
        // Phi3MiniModel always writes the original context and the sliding window (0 = none).
        if (phi) {
            EXPECT_EQ(df.only_a, (std::set<std::string>{"phimoe.vocab_size"}));
            EXPECT_EQ(df.only_b, (std::set<std::string>{"general.type", "general.quantization_version",
                                                       "phimoe.rope.scaling.original_context_length",
                                                       "phimoe.attention.sliding_window"}));
        } else {
            EXPECT_EQ(df.only_a, (std::set<std::string>{"olmoe.vocab_size", "olmoe.rope.dimension_count"}));
            EXPECT_EQ(df.only_b, (std::set<std::string>{"general.type", "general.quantization_version"}));
        }
        // Keys in the order and types of OlmoeModel / PhiMoeModel.set_gguf_parameters.
        std::vector<std::string> keys;
        for (const auto& [k, v] : b.kv())
            if (k.rfind("tokenizer.", 0) != 0) keys.push_back(k + ":" + slm::gguf_type_name(v.type));
        const std::string p = arch + ".";
        const std::vector<std::string> want =
            phi ? std::vector<std::string>{"general.architecture:STRING", "general.type:STRING", "general.name:STRING",
                                           p + "context_length:UINT32", p + "rope.scaling.original_context_length:UINT32",
                                           p + "embedding_length:UINT32", p + "feed_forward_length:UINT32",
                                           p + "block_count:UINT32", p + "attention.head_count:UINT32",
                                           p + "attention.head_count_kv:UINT32",
                                           p + "attention.layer_norm_rms_epsilon:FLOAT32",
                                           p + "rope.dimension_count:UINT32", p + "rope.freq_base:FLOAT32",
                                           "general.file_type:UINT32", p + "attention.sliding_window:UINT32",
                                           p + "expert_used_count:UINT32", p + "expert_count:UINT32",
                                           "general.quantization_version:UINT32"}
                : std::vector<std::string>{"general.architecture:STRING", "general.type:STRING", "general.name:STRING",
                                           p + "block_count:UINT32", p + "context_length:UINT32",
                                           p + "embedding_length:UINT32", p + "feed_forward_length:UINT32",
                                           p + "attention.head_count:UINT32", p + "attention.head_count_kv:UINT32",
                                           p + "rope.freq_base:FLOAT32", p + "attention.layer_norm_rms_epsilon:FLOAT32",
                                           p + "expert_count:UINT32", p + "expert_used_count:UINT32",
                                           "general.file_type:UINT32", "general.quantization_version:UINT32"};
        EXPECT_EQ(keys, want);
        // Stacked experts where a layer's last expert arrives, in the converter's order:
        // OLMoE down, gate, up; PhiMoE w1 (gate), w2 (down), w3 (up).
        std::vector<std::string> exps;
        for (const GGUFTensorInfo& t : b.tensors())
            if (t.name.rfind("blk.0.", 0) == 0 && t.name.find("_exps") != std::string::npos) exps.push_back(t.name);
        const std::vector<std::string> want_exps =
            phi ? std::vector<std::string>{"blk.0.ffn_gate_exps.weight", "blk.0.ffn_down_exps.weight",
                                           "blk.0.ffn_up_exps.weight"}
                : std::vector<std::string>{"blk.0.ffn_down_exps.weight", "blk.0.ffn_gate_exps.weight",
                                           "blk.0.ffn_up_exps.weight"};
        EXPECT_EQ(exps, want_exps);

        // A second trip repeats the bytes; the folder runs as the GGUF it came from.
        const std::string dir2 = fresh_dir("tiny-" + arch);
        slm::convert_gguf_to_hf(back, dir2);
        const std::string back2 = fs::path(dir2).parent_path().string() + "/back.gguf";
        slm::convert_hf_to_gguf(dir2, back2, "auto");
        EXPECT_EQ(slm::test::read_file(back), slm::test::read_file(back2));
        const std::vector<float> l = logits_of(dir, kPrompt);
        EXPECT_EQ(l, logits_of(src, kPrompt));
        float spread = 0;
        for (size_t i = 1; i < 512; ++i) spread = std::max(spread, std::fabs(l[i] - l[0]));
        EXPECT_GT(spread, 0.01f) << "flat logits: the test would not see a wrong weight";
    }
}

// A folder that converts but does not load: the message names the folder, not the temporary
// GGUF it was converted to (which is gone by then).
TEST(HFConvert, FolderLoadErrorsNameTheFolder) {
    Synth s;
    s.seed = 61;
    const std::string dir = fresh_dir("broken-model");
    s.extra = {{"intermediate_size", 100}};  // the tensors are 96 wide
    write_synth(dir, s);
    const std::string e = error_of([&] { slm::Model::load(dir); });
    EXPECT_NE(e.find(dir + ": tensor 'blk.0.ffn_gate.weight' has shape [64, 96], expected [64, 100]"), std::string::npos) << e;
    EXPECT_EQ(e.find("slm-hf-"), std::string::npos) << e;
    // The CLI says the same.
    const auto r = slm::test::run_cli({"run", "-m", dir, "-p", "x", "-n", "1"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(dir), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("slm-hf-"), std::string::npos) << r.err;
}
