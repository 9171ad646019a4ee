// The Llama architecture file and the model loader: hyper-parameters, RoPE variants, tied
// output, and the errors a bad model file gets.
#include "core/thread_pool.h"
#include "models/blocks.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace slm;

namespace {

std::string stories_path() { return test::model_path("stories260K/stories260K.gguf"); }

// Copies stories260K through a GGUFWriter, letting a test change keys and tensors on the way.
struct Rewrite {
    GGUFFile src = GGUFFile::open(stories_path());
    GGUFWriter w;
    std::vector<std::vector<uint8_t>> keep;
    Rewrite() { w.copy_kv_from(src); }
    void tensors(const std::function<bool(const GGUFTensorInfo&)>& skip = nullptr) {
        for (const auto& t : src.tensors())
            if (!skip || !skip(t)) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    }
    std::string write(const std::string& name) {
        std::string path = test::temp_dir() + "/" + name;
        w.write(path);
        return path;
    }
};

std::vector<float> last_logits(const std::string& path, const std::string& text = "Once upon a time") {
    auto m = Model::load(path);
    SessionOptions so;
    so.kv_type = GGMLType::F32;
    Session s(m, so);
    const float* l = s.eval(m->vocab().tokenize(text, true, true));
    return std::vector<float>(l, l + m->hparams().n_vocab);
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
    return d;
}

std::string expect_load_error(const std::string& path) {
    try {
        Model::load(path);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error loading " << path;
    return "";
}

TEST(LlamaModel, HyperParametersOfStories260K) {
    auto m = Model::load(stories_path());
    const HParams& hp = m->hparams();
    EXPECT_EQ(hp.arch, "llama");
    EXPECT_EQ(hp.n_vocab, 512u);
    EXPECT_EQ(hp.n_embd, 64u);
    EXPECT_EQ(hp.n_layer, 5u);
    EXPECT_EQ(hp.n_head, 8u);
    EXPECT_EQ(hp.n_head_kv, 4u);
    EXPECT_EQ(hp.n_ff, 172u);
    EXPECT_EQ(hp.n_rot, 8u);
    EXPECT_EQ(hp.n_embd_head_k, 8u);
    EXPECT_FLOAT_EQ(hp.rms_eps, 1e-5f);
    EXPECT_FALSE(hp.tied_output);
    EXPECT_EQ(hp.rope_type, RopeType::Norm);
    EXPECT_EQ(m->weight_bytes(), 1171200u);  // every tensor F32: the file less its 14176-byte header
}

// Llama-3 frequency factors of 2 everywhere rotate exactly like linear scaling by 2.
TEST(LlamaModel, RopeFrequencyFactorsAndLinearScaling) {
    const auto base = last_logits(stories_path());

    Rewrite lin;
    lin.w.set("llama.rope.scaling.type", GGUFValue::string("linear"));
    lin.w.set("llama.rope.scaling.factor", GGUFValue::f32(2.0f));
    lin.tensors();
    const auto linear = last_logits(lin.write("linear.gguf"));

    Rewrite ff;
    std::vector<float> twos(4, 2.0f);  // n_rot / 2 pairs
    ff.tensors();
    ff.w.add_tensor("rope_freqs.weight", GGMLType::F32, {4}, twos.data(), twos.size() * 4);
    const std::string ff_path = ff.write("freq_factors.gguf");
    EXPECT_TRUE(Model::load(ff_path)->hparams().has_rope_freqs);
    const auto factors = last_logits(ff_path);

    EXPECT_GT(max_diff(base, linear), 1e-2) << "scaling must change the logits";
    EXPECT_LT(max_diff(linear, factors), 1e-5);

    Rewrite ones;
    std::vector<float> one(4, 1.0f);
    ones.tensors();
    ones.w.add_tensor("rope_freqs.weight", GGMLType::F32, {4}, one.data(), one.size() * 4);
    EXPECT_LT(max_diff(base, last_logits(ones.write("ones.gguf"))), 1e-6);
}

TEST(LlamaModel, TiedOutputUsesTheEmbedding) {
    Rewrite tied;
    tied.tensors([](const GGUFTensorInfo& t) { return t.name == "output.weight"; });
    const std::string path = tied.write("tied.gguf");
    auto m = Model::load(path);
    EXPECT_TRUE(m->hparams().tied_output);
    // stories260K was trained with a shared classifier, so its output.weight is a copy of
    // token_embd: dropping it must give the very same logits through the tied path.
    const auto& f = m->file();
    ASSERT_EQ(0, std::memcmp(GGUFFile::open(stories_path()).tensor("output.weight").data,
                             f.tensor("token_embd.weight").data, f.tensor("token_embd.weight").nbytes));
    EXPECT_EQ(max_diff(last_logits(stories_path()), last_logits(path)), 0.0);
}

TEST(LlamaModel, RopeMatchesTheDefinition) {
    HParams hp;
    hp.n_rot = 8;
    hp.rope_freq_base = 10000;
    for (RopeType type : {RopeType::Norm, RopeType::Neox}) {
        hp.rope_type = type;
        SessionState st;
        st.rope_cache.resize(3 * hp.n_rot);
        blocks::rope_cache(st, hp, 5, 3, nullptr);
        std::vector<float> x(3 * 2 * 8), orig;
        std::mt19937 rng(1);
        std::normal_distribution<float> nd;
        for (float& v : x) v = nd(rng);
        orig = x;
        blocks::rope_apply(st, hp, x.data(), 3, 2, 8, 16);
        for (int t = 0; t < 3; ++t)
            for (int h = 0; h < 2; ++h)
                for (int i = 0; i < 4; ++i) {
                    const double theta = (5 + t) * std::pow(10000.0, -2.0 * i / 8);
                    const int a = type == RopeType::Norm ? 2 * i : i, b = type == RopeType::Norm ? 2 * i + 1 : i + 4;
                    const float* o = orig.data() + t * 16 + h * 8;
                    const float* r = x.data() + t * 16 + h * 8;
                    EXPECT_NEAR(r[a], o[a] * std::cos(theta) - o[b] * std::sin(theta), 1e-4);
                    EXPECT_NEAR(r[b], o[a] * std::sin(theta) + o[b] * std::cos(theta), 1e-4);
                }
    }
}

TEST(LlamaModel, RmsNormMatchesTheDefinition) {
    std::vector<float> x{1, -2, 3, 0.5f, 4, 4, -4, 4}, w{1, 2, 0.5f, 1}, y(8);
    blocks::rms_norm(x.data(), w.data(), y.data(), 2, 4, 1e-5f);
    for (int t = 0; t < 2; ++t) {
        double ss = 0;
        for (int i = 0; i < 4; ++i) ss += x[t * 4 + i] * x[t * 4 + i];
        const double r = 1 / std::sqrt(ss / 4 + 1e-5);
        for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[t * 4 + i], x[t * 4 + i] * r * w[i], 1e-6);
    }
}

TEST(LlamaModel, BadFilesGiveErrorsNamingTheTensorOrKey) {
    {
        Rewrite r;
        r.w.set("general.architecture", GGUFValue::string("wizard"));
        r.tensors();
        std::string msg = expect_load_error(r.write("arch.gguf"));
        EXPECT_NE(msg.find("wizard"), std::string::npos) << msg;
        EXPECT_NE(msg.find("arch.gguf"), std::string::npos) << msg;
    }
    {
        Rewrite r;
        r.tensors([](const GGUFTensorInfo& t) { return t.name == "blk.2.ffn_up.weight"; });
        std::string msg = expect_load_error(r.write("missing.gguf"));
        EXPECT_NE(msg.find("blk.2.ffn_up.weight"), std::string::npos) << msg;
    }
    {
        Rewrite r;  // attn_q written with the shape of attn_k
        for (const auto& t : r.src.tensors()) {
            if (t.name == "blk.0.attn_q.weight") {
                const auto& k = r.src.tensor("blk.0.attn_k.weight");
                r.w.add_tensor(t.name, k.type, k.shape(), k.data, k.nbytes);
            } else {
                r.w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            }
        }
        std::string msg = expect_load_error(r.write("shape.gguf"));
        EXPECT_NE(msg.find("blk.0.attn_q.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("[64, 32]"), std::string::npos) << msg;
    }
    {
        Rewrite r;
        r.w.set("llama.attention.head_count_kv", GGUFValue::u32(3));
        r.tensors();
        std::string msg = expect_load_error(r.write("heads.gguf"));
        EXPECT_NE(msg.find("head_count"), std::string::npos) << msg;
    }
    {
        Rewrite r;
        r.w.set("llama.block_count", GGUFValue::u32(4000000000u));
        r.tensors();
        std::string msg = expect_load_error(r.write("layers.gguf"));
        EXPECT_NE(msg.find("block_count"), std::string::npos) << msg;
    }
    {
        Rewrite r;
        r.w.set("llama.embedding_length", GGUFValue::string("sixty-four"));
        r.tensors();
        std::string msg = expect_load_error(r.write("type.gguf"));
        EXPECT_NE(msg.find("embedding_length"), std::string::npos) << msg;
    }
}

// A file may hold a type slm reads but has no kernels for (IQ2_XXS here): loading refuses it
// with the tensor's name and the type, rather than computing garbage.
TEST(LlamaModel, UnsupportedTensorTypeIsRefusedByName) {
    SLM_REQUIRE_SHARED();
    GGUFFile src = GGUFFile::open(test::shared_path("reference/archs/llama/llama.f32.gguf"));
    GGUFWriter w;
    w.copy_kv_from(src);
    for (const auto& t : src.tensors()) {
        if (t.name == "blk.1.attn_output.weight")  // 256 x 256: whole 256-element IQ2_XXS blocks
            w.add_tensor_copy(t.name, GGMLType::IQ2_XXS, t.shape(), std::vector<uint8_t>(row_size(GGMLType::IQ2_XXS, 256) * 256));
        else
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    }
    const std::string path = test::temp_dir() + "/iq2.gguf";
    w.write(path);
    std::string msg = expect_load_error(path);
    EXPECT_NE(msg.find("IQ2_XXS"), std::string::npos) << msg;
    EXPECT_NE(msg.find("blk.1.attn_output.weight"), std::string::npos) << msg;
}

} // namespace
