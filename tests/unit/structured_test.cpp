// Structured pruning (slm/prune.h, src/compress/structured.cpp): fewer KV groups, FFN channels or
// layers, written with the smaller real shapes and the keys llama.cpp's loader reads.
#include "compress/calib.h"
#include "slm/convert.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/prune.h"
#include "slm/synth.h"
#include "calib_text.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace slm {
namespace {

std::string stories() { return test::model_path("stories260K/stories260K.gguf"); }
using test::calib_text;
using test::small_calib;

PruneParams params(const std::string& mode, float ratio) {
    PruneParams p;
    p.structured = mode;
    p.ratio = ratio;
    p.calib_text = small_calib();
    p.calib_samples = 8;
    p.calib_ctx = 64;
    p.n_threads = 1;  // spinning workers on a loaded 2-core machine only slow it down
    return p;
}

std::vector<float> logits_of(const std::string& path, bool all = true) {
    auto model = Model::load(path);
    SessionOptions so;
    so.kv_type = GGMLType::F32;
    so.n_threads = 1;
    Session s(model, so);
    const std::vector<int32_t> ids = model->vocab().tokenize("Once upon a time, there was a little dog", true, false);
    s.eval(ids, all);
    const auto l = s.logits();
    return {l.begin(), l.end()};
}

// What llama.cpp's loader (llama_model_loader + llm_load_hparams + the llama tensor list)
// needs from a llama GGUF: the hyper-parameter keys with consistent values, every block's
// tensors for i < block_count and no others, and each tensor's shape from those values (the
// head size from key_length / value_length, else n_embd / n_head).
void expect_llama_cpp_consistent(const std::string& path, uint32_t n_layer, uint32_t n_head, uint32_t n_head_kv,
                                 uint32_t n_ff) {
    const GGUFFile f = GGUFFile::open(path);
    ASSERT_EQ(f.get_str("general.architecture"), "llama");
    EXPECT_EQ(f.get_u32("llama.block_count"), n_layer);
    EXPECT_EQ(f.get_u32("llama.attention.head_count"), n_head);  // plain numbers (uniform per layer)
    EXPECT_EQ(f.get_u32("llama.attention.head_count_kv"), n_head_kv);
    EXPECT_EQ(f.get_u32("llama.feed_forward_length"), n_ff);
    const uint32_t E = f.get_u32("llama.embedding_length");
    const uint32_t hk = f.get_u32("llama.attention.key_length", E / n_head);
    const uint32_t hv = f.get_u32("llama.attention.value_length", E / n_head);
    EXPECT_EQ(hk, 8u);  // stories260K's head size survives any head count
    EXPECT_EQ(hv, 8u);
    EXPECT_EQ(f.get_u32("llama.rope.dimension_count", hk), 8u);
    EXPECT_EQ(n_head % n_head_kv, 0u);
    const uint32_t V = f.get_str_array("tokenizer.ggml.tokens").size();
    std::map<std::string, std::vector<int64_t>> want = {
        {"token_embd.weight", {E, V}}, {"output_norm.weight", {E}}, {"output.weight", {E, V}}};
    for (uint32_t i = 0; i < n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        want[p + "attn_norm.weight"] = {E};
        want[p + "attn_q.weight"] = {E, int64_t(n_head) * hk};
        want[p + "attn_k.weight"] = {E, int64_t(n_head_kv) * hk};
        want[p + "attn_v.weight"] = {E, int64_t(n_head_kv) * hv};
        want[p + "attn_output.weight"] = {int64_t(n_head) * hv, E};
        want[p + "ffn_norm.weight"] = {E};
        want[p + "ffn_gate.weight"] = {E, n_ff};
        want[p + "ffn_up.weight"] = {E, n_ff};
        want[p + "ffn_down.weight"] = {n_ff, E};
    }
    EXPECT_EQ(f.tensors().size(), want.size());
    for (const GGUFTensorInfo& t : f.tensors()) {
        auto it = want.find(t.name);
        ASSERT_NE(it, want.end()) << "unexpected tensor " << t.name;
        EXPECT_EQ(t.shape(), it->second) << t.name;
    }
}

TEST(Structured, HeadsGiveSmallerShapesThatRun) {
    const std::string out = test::temp_dir() + "/heads.gguf";
    const PruneResult r = prune_model(stories(), out, params("heads", 0.5f));
    EXPECT_EQ(r.n_layer, 5u);
    EXPECT_EQ(r.n_head, std::vector<uint32_t>(5, 4));
    EXPECT_EQ(r.n_head_kv, std::vector<uint32_t>(5, 2));
    EXPECT_LT(r.bytes_out, r.bytes_in);
    expect_llama_cpp_consistent(out, 5, 4, 2, 172);
    auto model = Model::load(out);
    EXPECT_EQ(model->hparams().n_head, 4u);
    EXPECT_EQ(model->hparams().n_head_kv, 2u);
    EXPECT_EQ(model->hparams().n_embd_head_k, 8u);
    const std::vector<float> l = logits_of(out);
    for (float v : l) ASSERT_TRUE(std::isfinite(v));
    const GGUFFile f = GGUFFile::open(out);
    EXPECT_EQ(f.get_str("slm.prune.structured"), "heads");
    EXPECT_FLOAT_EQ(f.get_f32("slm.prune.ratio"), 0.5f);
}

TEST(Structured, KeptHeadsAreTheHighestScoringGroupsAndUnchanged) {
    // The written rows are exactly the kept groups' rows of the original, in order.
    const std::string out = test::temp_dir() + "/heads25.gguf";
    const PruneResult r = prune_model(stories(), out, params("heads", 0.25f));
    ASSERT_EQ(r.scores.size(), 5u * 4);
    const GGUFFile in = GGUFFile::open(stories()), f = GGUFFile::open(out);
    for (int l = 0; l < 5; ++l) {
        // The dropped group is the lowest-scoring one.
        int lowest = 0;
        for (int g = 1; g < 4; ++g)
            if (r.scores[l * 4 + g] < r.scores[l * 4 + lowest]) lowest = g;
        std::vector<int> kept;
        for (int g = 0; g < 4; ++g)
            if (g != lowest) kept.push_back(g);
        const std::string p = "blk." + std::to_string(l) + ".";
        const auto& k0 = in.tensor(p + "attn_k.weight");
        const auto& k1 = f.tensor(p + "attn_k.weight");
        const auto& q0 = in.tensor(p + "attn_q.weight");
        const auto& q1 = f.tensor(p + "attn_q.weight");
        const auto& o0 = in.tensor(p + "attn_output.weight");
        const auto& o1 = f.tensor(p + "attn_output.weight");
        const size_t row = 64 * 4, head = 8 * row;  // F32 rows of 64, 8 rows per head
        for (size_t i = 0; i < kept.size(); ++i) {
            EXPECT_EQ(std::memcmp(k1.data + i * head, k0.data + kept[i] * head, head), 0) << p << i;
            // Query heads 2g, 2g+1 belong to KV group g.
            EXPECT_EQ(std::memcmp(q1.data + 2 * i * head, q0.data + 2 * kept[i] * head, 2 * head), 0) << p << i;
            // attn_output: columns 16g..16g+15 of each of the 64 rows.
            for (int rr = 0; rr < 64; ++rr)
                EXPECT_EQ(std::memcmp(o1.data + rr * 48 * 4 + i * 16 * 4, o0.data + rr * 64 * 4 + kept[i] * 16 * 4, 64), 0);
        }
    }
}

TEST(Structured, FfnAndLayers) {
    const std::string dir = test::temp_dir();
    PruneResult r = prune_model(stories(), dir + "/ffn.gguf", params("ffn", 0.25f));
    EXPECT_EQ(r.n_ff, std::vector<uint32_t>(5, 129));  // 172 - round(43)
    expect_llama_cpp_consistent(dir + "/ffn.gguf", 5, 8, 4, 129);
    EXPECT_EQ(Model::load(dir + "/ffn.gguf")->hparams().n_ff, 129u);
    for (float v : logits_of(dir + "/ffn.gguf")) ASSERT_TRUE(std::isfinite(v));

    r = prune_model(stories(), dir + "/layers.gguf", params("layers", 0.4f));
    EXPECT_EQ(r.n_layer, 3u);
    ASSERT_EQ(r.scores.size(), 5u);
    expect_llama_cpp_consistent(dir + "/layers.gguf", 3, 8, 4, 172);
    const GGUFFile in = GGUFFile::open(stories()), f = GGUFFile::open(dir + "/layers.gguf");
    const GGUFValue* removed = f.find("slm.prune.removed");
    ASSERT_NE(removed, nullptr);
    ASSERT_EQ(removed->n, 2u);
    // The removed layers have the lowest block influence; the kept ones are renumbered in order
    // with their weights unchanged.
    std::vector<int> kept;
    for (int l = 0; l < 5; ++l)
        if (l != removed->elem_int(0) && l != removed->elem_int(1)) kept.push_back(l);
    for (int l = 0; l < 5; ++l)
        if (std::find(kept.begin(), kept.end(), l) == kept.end())
            for (int k : kept) EXPECT_LE(r.scores[l], r.scores[k]);
    for (size_t i = 0; i < kept.size(); ++i) {
        const auto& a = in.tensor("blk." + std::to_string(kept[i]) + ".ffn_down.weight");
        const auto& b = f.tensor("blk." + std::to_string(i) + ".ffn_down.weight");
        EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0);
    }
    EXPECT_EQ(Model::load(dir + "/layers.gguf")->hparams().n_layer, 3u);
    for (float v : logits_of(dir + "/layers.gguf")) ASSERT_TRUE(std::isfinite(v));
}

// Rebuilds the residual stream from the products' outputs: h_0 = the token's embedding row,
// h_{l+1} = h_l + attn_output_l(...) + ffn_down_l(...), for every calibration token.
struct ResidualRecorder : MatmulObserver {
    std::vector<float> attn_out[5], ffn_out[5];  // per layer, this sample's rows
    void on_matmul(const MatmulEvent& e) override {
        for (int l = 0; l < 5; ++l) {
            const std::string p = "blk." + std::to_string(l) + ".";
            if (*e.names[0] == p + "attn_output.weight") attn_out[l].assign(e.y[0], e.y[0] + e.n_tokens * e.n_out[0]);
            if (*e.names[0] == p + "ffn_down.weight") ffn_out[l].assign(e.y[0], e.y[0] + e.n_tokens * e.n_out[0]);
        }
    }
};

TEST(Structured, BlockInfluenceMatchesTheResidualStream) {
    const PruneParams p = params("layers", 0.0f);
    const PruneResult r = prune_model(stories(), test::temp_dir() + "/l0.gguf", p);
    ASSERT_EQ(r.scores.size(), 5u);
    auto model = Model::load(stories());
    const compress::CalibSet set = compress::load_calibration(*model, {.text_file = p.calib_text,
                                                                      .n_samples = p.calib_samples,
                                                                      .n_ctx = p.calib_ctx});
    const GGUFTensorInfo& emb = model->file().tensor("token_embd.weight");
    ASSERT_EQ(emb.type, GGMLType::F32);
    const float* e = reinterpret_cast<const float*>(emb.data);
    std::vector<double> sum(5, 0.0);
    size_t n = 0;
    for (const auto& sample : set.samples) {
        ResidualRecorder rec;
        compress::CalibSet one;
        one.samples = {sample};
        compress::run_calibration(model, one, rec, 1, nullptr);
        for (size_t t = 0; t < sample.size(); ++t, ++n) {
            std::vector<double> h(e + sample[t] * 64, e + sample[t] * 64 + 64);
            for (int l = 0; l < 5; ++l) {
                std::vector<double> h2 = h;
                for (int j = 0; j < 64; ++j) h2[j] += rec.attn_out[l][t * 64 + j] + rec.ffn_out[l][t * 64 + j];
                double ab = 0, aa = 0, bb = 0;
                for (int j = 0; j < 64; ++j) ab += h[j] * h2[j], aa += h[j] * h[j], bb += h2[j] * h2[j];
                sum[l] += 1.0 - ab / std::sqrt(aa * bb);
                h = h2;
            }
        }
    }
    for (int l = 0; l < 5; ++l) EXPECT_NEAR(r.scores[l], sum[l] / n, 1e-4) << "layer " << l;
}

TEST(Structured, RatioZeroIsTheIdentity) {
    const std::vector<float> base = logits_of(stories());
    for (const char* mode : {"heads", "ffn", "layers"}) {
        const std::string out = test::temp_dir() + "/id_" + mode + ".gguf";
        const PruneResult r = prune_model(stories(), out, params(mode, 0.0f));
        EXPECT_EQ(r.bytes_out, r.bytes_in) << mode;
        EXPECT_EQ(logits_of(out), base) << mode;
    }
}

TEST(Structured, ExportsToHuggingFaceAndRunsTheSame) {
    const std::string dir = test::temp_dir();
    prune_model(stories(), dir + "/h.gguf", params("heads", 0.5f));
    prune_model(dir + "/h.gguf", dir + "/hf.gguf", params("ffn", 0.5f));
    convert_gguf_to_hf(dir + "/hf.gguf", dir + "/hf");
    std::ifstream cf(dir + "/hf/config.json");
    ASSERT_TRUE(cf.good());
    const nlohmann::json c = nlohmann::json::parse(cf);
    EXPECT_EQ(c["num_attention_heads"].get<int>(), 4);
    EXPECT_EQ(c["num_key_value_heads"].get<int>(), 2);
    EXPECT_EQ(c["intermediate_size"].get<int>(), 86);
    EXPECT_EQ(c["head_dim"].get<int>(), 8);  // not hidden_size / heads = 16
    // Loading the exported folder gives the same function.
    const std::vector<float> a = logits_of(dir + "/hf.gguf"), b = logits_of(dir + "/hf");
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f) << i;
}

TEST(Structured, GemmaF16WithTiedOutput) {
    // Another layout: Gemma (GeGLU, tied output read through token_embd, head size 16 != n_embd /
    // n_head), F16 weights, a different tokenizer.
    const std::string dir = test::temp_dir();
    SynthConfig c;
    c.arch = "gemma";
    c.n_embd = 64;
    c.n_layer = 3;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.head_dim = 16;
    c.n_ff = 128;
    c.n_ctx_train = 256;
    c.tied_embeddings = true;
    c.type = GGMLType::F16;
    c.tokenizer = test::source_dir() + "/tests/data/vocab/ggml-vocab-llama-spm.gguf";
    const std::string in = dir + "/gemma.gguf";
    synthesize(c, in);
    PruneParams p = params("heads", 0.5f);
    p.calib_samples = 4;
    const PruneResult h = prune_model(in, dir + "/h.gguf", p);
    EXPECT_EQ(h.n_head, std::vector<uint32_t>(3, 2));
    EXPECT_EQ(h.n_head_kv, std::vector<uint32_t>(3, 1));
    auto m = Model::load(dir + "/h.gguf");
    EXPECT_EQ(m->hparams().n_head, 2u);
    EXPECT_EQ(m->hparams().n_embd_head_k, 16u);
    EXPECT_EQ(m->file().tensor("blk.0.attn_q.weight").type, GGMLType::F16);
    for (float v : logits_of(dir + "/h.gguf")) ASSERT_TRUE(std::isfinite(v));
    p.structured = "ffn";
    p.ratio = 0.5f;
    EXPECT_EQ(prune_model(in, dir + "/f.gguf", p).n_ff, std::vector<uint32_t>(3, 64));  // 64: a multiple of 32
    for (float v : logits_of(dir + "/f.gguf")) ASSERT_TRUE(std::isfinite(v));
    p.structured = "layers";
    p.ratio = 0.34f;
    EXPECT_EQ(prune_model(in, dir + "/l.gguf", p).n_layer, 2u);
    for (float v : logits_of(dir + "/l.gguf")) ASSERT_TRUE(std::isfinite(v));
    p.structured = "heads";
    p.ratio = 0.0f;
    prune_model(in, dir + "/id.gguf", p);
    EXPECT_EQ(logits_of(dir + "/id.gguf"), logits_of(in));
    // Unstructured 2:4 keeps F16.
    PruneParams u;
    u.method = "wanda";
    u.pattern = "2:4";
    u.calib_text = p.calib_text;
    u.calib_samples = 4;
    u.calib_ctx = 64;
    u.n_threads = 1;
    prune_model(in, dir + "/u.gguf", u);
    const GGUFFile f = GGUFFile::open(dir + "/u.gguf");
    const GGUFTensorInfo& t = f.tensor("blk.1.ffn_down.weight");
    ASSERT_EQ(t.type, GGMLType::F16);
    const uint16_t* v = reinterpret_cast<const uint16_t*>(t.data);
    for (int64_t g = 0; g < t.nelements(); g += 4) {
        int nz = 0;
        for (int i = 0; i < 4; ++i) nz += (v[g + i] & 0x7fff) != 0;
        ASSERT_EQ(nz, 2) << g;
    }
}

TEST(Structured, BadInputsAreClearErrors) {
    const std::string dir = test::temp_dir();
    auto expect_error = [&](const std::string& in, PruneParams p, const std::string& needle) {
        try {
            prune_model(in, dir + "/bad.gguf", p);
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    expect_error(stories(), params("heads", 1.0f), "'ratio'");
    expect_error(stories(), params("ffn", -0.5f), "'ratio'");
    expect_error(stories(), params("experts", 0.5f), "'structured'");
    // Architectures without this layout are refused by name.
    const GGUFFile in = GGUFFile::open(stories());
    for (const char* arch : {"mamba", "phi3"}) {
        GGUFWriter w;
        w.copy_kv_from(in);
        w.set("general.architecture", GGUFValue::string(arch));
        for (const GGUFTensorInfo& t : in.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        const std::string path = dir + "/" + arch + ".gguf";
        w.write(path);
        expect_error(path, params("heads", 0.5f), arch);
    }
    EXPECT_FALSE(std::filesystem::exists(dir + "/bad.gguf"));
}

} // namespace
} // namespace slm
