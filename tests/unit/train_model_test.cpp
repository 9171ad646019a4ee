// TrainModel (src/train/model.cpp, lora.cpp, presets.cpp): whole-model gradients against finite
// differences on tiny configurations (GQA/MQA, tied and untied, MobileLLM sharing, OpenELM
// scaling), the forward against slm's inference engine (stories260K loaded, and every variant
// saved and loaded back by slm::Model), GGUF round trips, LoRA (adapter outputs == merged
// weights, adapter file round trip) and the errors for files it cannot train.
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "slm/train.h"
#include "kernels/kernels.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace slm {
namespace {

const std::string kStories = test::model_path("stories260K/stories260K.gguf");

std::vector<int32_t> random_tokens(size_t n, uint32_t n_vocab, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> d(0, int32_t(n_vocab) - 1);
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = d(rng);
    return t;
}

// The small shape every variant starts from: odd sizes, 3 query heads on 1 K/V head.
TrainArch tiny_arch() {
    TrainArch a;
    a.name = "grad-check";
    a.n_vocab = 32;
    a.n_ctx = 16;
    a.n_embd = 24;
    a.n_layer = 2;
    a.n_head = 3;
    a.n_head_kv = 1;
    a.n_ff = 40;
    a.init_std = 0.3f;  // gradients well above the finite differences' rounding
    return a;
}

struct Variant {
    const char* name;
    void (*tweak)(TrainArch&);
};
const Variant kVariants[] = {
    {"mqa-tied", [](TrainArch&) {}},
    {"gqa-untied",
     [](TrainArch& a) {
         a.n_head = 4, a.n_head_kv = 2, a.head_dim = 6, a.tied_embeddings = false;
     }},
    {"mha-share2",
     [](TrainArch& a) {
         a.n_head = 3, a.n_head_kv = 3, a.n_layer = 4, a.layer_share = 2;
     }},
    {"openelm",
     [](TrainArch& a) {
         a.n_layer = 3, a.n_head = 4, a.n_head_kv = 2, a.head_dim = 6, a.n_ff = 0;
         a.elm_alpha_min = 0.25f, a.elm_alpha_max = 1.0f, a.elm_beta_min = 0.5f, a.elm_beta_max = 2.0f;
     }},
};

// d(mean cross-entropy)/dw from forward_backward against central differences of loss(), on a
// spread of elements of every parameter.
void gradient_check(TrainModel& m, int B, int T, uint32_t seed) {
    const uint32_t V = m.arch().n_vocab;
    std::vector<int32_t> tok = random_tokens(size_t(B) * T, V, seed);
    std::vector<int32_t> tgt = random_tokens(size_t(B) * T, V, seed + 1);
    tgt[1] = -1;  // ignored positions
    tgt[size_t(B) * T - 1] = -1;
    m.zero_grad();
    const float l = m.forward_backward(tok, tgt, B, T);
    EXPECT_NEAR(l, m.loss(tok, tgt, B, T), 1e-6);
    double num2 = 0, diff2 = 0;
    for (TrainParam& p : m.params()) {
        if (!p.g) continue;
        const size_t step = std::max<size_t>(1, p.n / 12);
        for (size_t i = (p.n / 7) % step; i < p.n; i += step) {
            const float w0 = p.w[i];
            // central differences at h and h/2, Richardson-extrapolated (the h² error cancels)
            auto central = [&](float h) {
                p.w[i] = w0 + h;
                const double lp = m.loss(tok, tgt, B, T);
                p.w[i] = w0 - h;
                const double lm = m.loss(tok, tgt, B, T);
                p.w[i] = w0;
                return (lp - lm) / (double(w0 + h) - double(w0 - h));
            };
            const float h = 2e-2f * std::max(1.0f, std::fabs(w0));
            const double num = (4 * central(h / 2) - central(h)) / 3;
            const double d = num - p.g[i];
            num2 += num * num;
            diff2 += d * d;
            EXPECT_NEAR(p.g[i], num, 2e-4 + 3e-2 * std::fabs(num)) << p.name << "[" << i << "]";
        }
    }
    EXPECT_LT(std::sqrt(diff2), 1e-2 * std::sqrt(num2));
    EXPECT_GT(num2, 1e-6);  // the check saw real gradients
}

TEST(TrainModel, GradientCheck) {
    for (const Variant& v : kVariants) {
        SCOPED_TRACE(v.name);
        TrainArch a = tiny_arch();
        v.tweak(a);
        TrainModel m(a, 7);
        m.set_threads(2);
        gradient_check(m, 2, 7, 3);
    }
}

// No reduction is split between threads (matrix products split the output, attention its
// heads, norms their rows or columns): one thread and two give the same bits, so a run resumed
// with another thread count continues exactly.
TEST(TrainModel, ThreadCountDoesNotChangeResults) {
    TrainArch a = train_preset("tiny");
    a.n_vocab = 512;
    const std::vector<int32_t> tok = random_tokens(4 * 100, 512, 5), tgt = random_tokens(4 * 100, 512, 6);
    std::vector<std::vector<float>> g[2];
    float l[2];
    for (int k = 0; k < 2; ++k) {
        TrainModel m(a, 1);
        m.set_threads(k + 1);
        l[k] = m.forward_backward(tok, tgt, 4, 100);
        for (const TrainParam& p : m.params()) g[k].emplace_back(p.g, p.g + p.n);
    }
    EXPECT_EQ(l[0], l[1]);
    for (size_t i = 0; i < g[0].size(); ++i) EXPECT_EQ(g[0][i], g[1][i]) << "parameter " << i;
}

TEST(TrainModel, OpenElmShapes) {
    TrainArch a = tiny_arch();
    kVariants[3].tweak(a);
    a.validate();
    // t = 0, 0.5, 1: alpha 0.25, 0.625, 1.0 of 24 / 6 = 4 heads -> 1, 2.5, 4 -> rounded to the
    // nearest multiple of the group of 2: 2 (at least one group), 2 (1.25 groups), 4; FFN 0.5, 1.25, 2 x 24 = 12, 30, 48 -> multiples of 32.
    EXPECT_EQ(a.heads, (std::vector<uint32_t>{2, 2, 4}));
    EXPECT_EQ(a.heads_kv, (std::vector<uint32_t>{1, 1, 2}));
    EXPECT_EQ(a.ffn, (std::vector<uint32_t>{32, 32, 64}));
    TrainModel m(a, 1);
    EXPECT_EQ(m.n_params(), a.n_params());
    EXPECT_EQ(m.find("blk.2.attn_q.weight")->ne, (std::vector<int64_t>{24, 24}));
    EXPECT_EQ(m.find("blk.0.ffn_down.weight")->ne, (std::vector<int64_t>{32, 24}));
}

TEST(TrainModel, InitIsSeededAndScaled) {
    TrainArch a = tiny_arch();
    a.init_std = 0.02f;
    a.n_layer = 8;
    TrainModel m1(a, 5), m2(a, 5), m3(a, 6);
    for (size_t i = 0; i < m1.params().size(); ++i) {
        const TrainParam& p = m1.params()[i];
        ASSERT_EQ(std::vector<float>(p.w, p.w + p.n), std::vector<float>(m2.params()[i].w, m2.params()[i].w + p.n));
        double s2 = 0;
        for (size_t j = 0; j < p.n; ++j) s2 += double(p.w[j]) * p.w[j];
        const double sd = std::sqrt(s2 / double(p.n));
        if (!p.is_matrix()) {
            EXPECT_EQ(sd, 1.0) << p.name;
        } else {
            const bool resid = p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
            EXPECT_NEAR(sd, resid ? 0.02 / 4.0 : 0.02, (resid ? 0.005 : 0.02) * 0.15) << p.name;
        }
    }
    EXPECT_NE(m1.params()[0].w[0], m3.params()[0].w[0]);
}

// Logits of a Session (all rows, F32 cache) over `tok`.
std::vector<float> session_logits(const std::string& path, const std::vector<int32_t>& tok) {
    auto model = Model::load(path);
    SessionOptions so;
    so.kv_type = GGMLType::F32;
    so.n_threads = 2;
    Session s(model, so);
    s.eval(tok, true);
    std::span<const float> l = s.logits();
    return {l.begin(), l.end()};
}

// max |a - b| / max(1, max |b|)
double rel_diff(const float* a, const std::vector<float>& b) {
    double m = 0, d = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        m = std::max(m, double(std::fabs(b[i])));
        d = std::max(d, double(std::fabs(a[i] - b[i])));
    }
    return d / std::max(1.0, m);
}

TEST(TrainModel, Stories260KMatchesSession) {
    std::unique_ptr<TrainModel> m = TrainModel::load(kStories);
    EXPECT_EQ(m->arch().n_vocab, 512u);
    EXPECT_EQ(m->arch().n_layer, 5u);
    EXPECT_EQ(m->arch().n_head_kv, 4u);
    auto model = Model::load(kStories);
    std::vector<int32_t> tok = model->vocab().tokenize("Once upon a time, there was a little girl named Lily. She", true, true);
    const int T = int(tok.size());
    const float* lt = m->forward(tok, 1, T);
    const std::vector<float> ref = session_logits(kStories, tok);
    ASSERT_EQ(ref.size(), size_t(T) * 512);
    // Same formulas, different summation orders: within 1e-4 of the largest logit.
    EXPECT_LT(rel_diff(lt, ref), 1e-4);
    // Two sequences at once: each row as alone.
    std::vector<int32_t> two = tok;
    two.insert(two.end(), tok.begin(), tok.end());
    const float* l2 = m->forward(two, 2, T);
    for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(l2[ref.size() + i], ref[i], 1e-4 * 20);
}

// The training forward against llama.cpp itself: its F32-weights, F32-KV dump of stories260K
// (tests/data/reference, copied from ../shared/reference with provenance), every prompt row within
// 1e-4 of the row's largest |logit|, the bound the inference engine's golden test uses.
TEST(TrainModel, Stories260KMatchesLlamaCppReference) {
    std::unique_ptr<TrainModel> m = TrainModel::load(kStories);
    std::ifstream in(test::source_dir() + "/tests/data/reference/stories260K/stories260K.f32.f32kv.jsonl");
    ASSERT_TRUE(in);
    std::string line;
    int n_lines = 0;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line);
        const auto tok = j["tokens"].get<std::vector<int32_t>>();
        const auto& ref = j["logits"];
        ASSERT_EQ(ref.size(), tok.size());
        const float* lt = m->forward(tok, 1, int(tok.size()));
        for (size_t r = 0; r < tok.size(); ++r) {
            const auto row = ref[r].get<std::vector<float>>();
            ASSERT_EQ(row.size(), 512u);
            double mx = 0, diff = 0;
            for (size_t i = 0; i < row.size(); ++i) {
                mx = std::max(mx, std::fabs(double(row[i])));
                diff = std::max(diff, std::fabs(double(row[i]) - lt[r * 512 + i]));
            }
            EXPECT_LE(diff, 1e-4 * mx) << j["prompt"] << " row " << r;
        }
        ++n_lines;
    }
    EXPECT_GT(n_lines, 0);
}

TEST(TrainModel, SavedVariantsRunInSession) {
    const std::string dir = test::temp_dir();
    for (const Variant& v : kVariants) {
        SCOPED_TRACE(v.name);
        TrainArch a = tiny_arch();
        v.tweak(a);
        a.n_vocab = 0;
        a.tokenizer = kStories;  // 512 tokens
        a.init_std = 0.1f;
        TrainModel m(a, 11);
        EXPECT_EQ(m.arch().n_vocab, 512u);
        const std::string path = dir + "/" + v.name + ".gguf";
        m.save(path);
        const std::vector<int32_t> tok = random_tokens(9, 512, 4);
        const float* lt = m.forward(tok, 1, 9);
        const std::vector<float> ref = session_logits(path, tok);
        EXPECT_LT(rel_diff(lt, ref), 1e-4);
        // The file as slm reads it: per-layer arrays, block_source, tied or not.
        GGUFFile f = GGUFFile::open(path);
        EXPECT_EQ(f.get_str("general.architecture"), "llama");
        EXPECT_EQ(f.has("output.weight") || f.find_tensor("output.weight") != nullptr, !a.tied_embeddings);
        EXPECT_EQ(f.has("llama.block_source"), a.layer_share > 1);
        EXPECT_EQ(f.get_per_layer_u32("llama.attention.head_count", m.arch().n_layer, 0), m.arch().heads);
        EXPECT_EQ(f.get_per_layer_u32("llama.feed_forward_length", m.arch().n_layer, 0), m.arch().ffn);
        EXPECT_EQ(f.get_str("tokenizer.ggml.model"), "llama");
        // load -> identical weights; save again -> the same bytes
        std::unique_ptr<TrainModel> back = TrainModel::load(path);
        ASSERT_EQ(back->params().size(), m.params().size());
        for (size_t i = 0; i < m.params().size(); ++i) {
            const TrainParam& p = m.params()[i];
            const TrainParam* q = back->find(p.name);
            ASSERT_NE(q, nullptr) << p.name;
            ASSERT_EQ(q->ne, p.ne);
            ASSERT_EQ(std::vector<float>(q->w, q->w + q->n), std::vector<float>(p.w, p.w + p.n)) << p.name;
        }
        EXPECT_EQ(back->arch().heads, m.arch().heads);
        EXPECT_EQ(back->arch().layer_share, m.arch().layer_share);
        EXPECT_EQ(back->arch().tied_embeddings, m.arch().tied_embeddings);
        EXPECT_EQ(back->arch().hd(), m.arch().hd());
        const std::string again = dir + "/again.gguf";
        TrainArch named = back->arch();
        back->save(again);
        EXPECT_EQ(test::read_file(again), test::read_file(path));
        // F16: Session logits == TrainModel logits of the F16 file loaded back.
        const std::string f16 = dir + "/" + v.name + ".f16.gguf";
        m.save(f16, GGMLType::F16);
        std::unique_ptr<TrainModel> h = TrainModel::load(f16);
        const float* lh = h->forward(tok, 1, 9);
        std::vector<float> rh = session_logits(f16, tok);
        // slm runs F16 weights against F16-rounded activations (as ggml), the trainer in F32.
        EXPECT_LT(rel_diff(lh, rh), 5e-3);
    }
}

TEST(TrainModel, LoadsQuantizedLlama) {
    SynthConfig c;
    c.name = "q8";
    c.n_vocab = 512;
    c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.n_ff = 96, c.n_ctx_train = 64;
    c.tokenizer = kStories;
    c.type = GGMLType::Q8_0;
    c.pure = true;
    const std::string path = test::temp_dir() + "/q8.gguf";
    synthesize(c, path);
    std::unique_ptr<TrainModel> m = TrainModel::load(path);
    GGUFFile f = GGUFFile::open(path);
    const GGUFTensorInfo& t = f.tensor("blk.1.ffn_down.weight");
    ASSERT_EQ(t.type, GGMLType::Q8_0);
    std::vector<float> want(size_t(t.nelements()));
    kernels::ref_traits(GGMLType::Q8_0)->to_float(t.data, want.data(), t.nelements());
    const TrainParam* p = m->find("blk.1.ffn_down.weight");
    EXPECT_EQ(std::vector<float>(p->w, p->w + p->n), want);
    EXPECT_EQ(m->arch().tied_embeddings, !f.find_tensor("output.weight"));
}

TEST(TrainModel, Lora) {
    TrainArch a = tiny_arch();
    a.n_vocab = 0;
    a.tokenizer = kStories;
    a.n_layer = 4, a.layer_share = 2, a.tied_embeddings = false;
    TrainModel m(a, 3);
    m.set_threads(2);
    const std::vector<int32_t> tok = random_tokens(14, 512, 9);
    const std::vector<float> base(m.forward(tok, 2, 7), m.forward(tok, 2, 7) + 14 * 512);
    LoraOptions o;
    o.rank = 3;
    o.alpha = 6;
    o.targets = {"attn_q", "attn_v", "attn_output", "ffn_down"};
    m.add_lora(o);
    EXPECT_TRUE(m.has_lora());
    // B = 0: the adapters change nothing; the base is frozen.
    const float* l0 = m.forward(tok, 2, 7);
    for (size_t i = 0; i < base.size(); ++i) ASSERT_EQ(l0[i], base[i]);
    size_t n_adapters = 0;
    for (const TrainParam& p : m.params()) {
        const bool ad = p.name.find(".lora_") != std::string::npos;
        EXPECT_EQ(p.trainable, ad) << p.name;
        EXPECT_EQ(p.g != nullptr, ad) << p.name;
        n_adapters += ad;
    }
    EXPECT_EQ(n_adapters, 2u * 4 * 2);  // 2 stored blocks x 4 targets x (A, B)
    const TrainParam* A = m.find("blk.1.attn_v.weight.lora_a");
    ASSERT_NE(A, nullptr);
    EXPECT_EQ(A->ne, (std::vector<int64_t>{24, 3}));
    EXPECT_EQ(m.find("blk.1.attn_v.weight.lora_b")->ne, (std::vector<int64_t>{3, 8}));
    // Perturb B, then adapter outputs == merged weights' outputs.
    std::mt19937 rng(4);
    std::normal_distribution<float> d(0.0f, 0.2f);
    for (TrainParam& p : m.params())
        if (p.name.find(".lora_b") != std::string::npos)
            for (size_t i = 0; i < p.n; ++i) p.w[i] = d(rng);
    // gradients of the adapters (the only trainable parameters) against finite differences
    gradient_check(m, 2, 7, 21);
    const std::vector<float> ad(m.forward(tok, 2, 7), m.forward(tok, 2, 7) + base.size());
    EXPECT_GT(rel_diff(ad.data(), base), 1e-3);  // the adapter does something
    // save_lora -> a fresh copy of the base + load_lora: the same outputs, bit for bit
    const std::string lp = test::temp_dir() + "/adapter.gguf";
    m.save_lora(lp);
    {
        GGUFFile f = GGUFFile::open(lp);
        EXPECT_EQ(f.get_str("general.type"), "adapter");
        EXPECT_EQ(f.get_str("adapter.type"), "lora");
        EXPECT_EQ(f.get_f32("adapter.lora.alpha"), 6.0f);
        EXPECT_EQ(f.tensor("blk.0.ffn_down.weight.lora_b").shape(), (std::vector<int64_t>{3, 24}));
        EXPECT_EQ(f.tensors().size(), n_adapters);
    }
    std::unique_ptr<TrainModel> m2 = m.clone();
    m2->merge_lora();
    EXPECT_FALSE(m2->has_lora());
    EXPECT_EQ(m2->n_params(), TrainModel(a, 3).n_params());
    for (const TrainParam& p : m2->params()) EXPECT_TRUE(p.trainable && p.g) << p.name;
    const float* lm = m2->forward(tok, 2, 7);
    for (size_t i = 0; i < ad.size(); ++i) ASSERT_NEAR(lm[i], ad[i], 1e-4 * (1 + std::fabs(ad[i]))) << i;

    TrainModel fresh(a, 3);
    fresh.load_lora(lp);
    EXPECT_TRUE(fresh.has_lora());
    const float* lf = fresh.forward(tok, 2, 7);
    for (size_t i = 0; i < ad.size(); ++i) ASSERT_EQ(lf[i], ad[i]) << i;
    // save() writes the base only
    const std::string bp = test::temp_dir() + "/base.gguf";
    fresh.save(bp);
    EXPECT_EQ(GGUFFile::open(bp).find_tensor("blk.0.attn_q.weight.lora_a"), nullptr);

    EXPECT_THROW(fresh.add_lora(o), Error);
    LoraOptions bad = o;
    bad.targets = {"attn_qq"};
    TrainModel other(a, 3);
    EXPECT_THROW(other.add_lora(bad), Error);
    // an adapter for another shape
    TrainArch wide = a;
    wide.n_embd = 30;
    TrainModel w(wide, 3);
    try {
        w.load_lora(lp);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(lp), std::string::npos) << e.what();
    }
    EXPECT_FALSE(w.has_lora());
    // not an adapter (a model), and a truncated adapter: errors naming the file, no adapters added
    const auto expect_lora_error = [&](const std::string& path) {
        TrainModel t(a, 3);
        try {
            t.load_lora(path);
            FAIL() << "no error for " << path;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
        }
        EXPECT_FALSE(t.has_lora());
    };
    const std::string model_file = test::temp_dir() + "/not-an-adapter.gguf";
    TrainModel(a, 3).save(model_file);
    expect_lora_error(model_file);
    std::vector<uint8_t> bytes = test::read_file(lp);
    bytes.resize(bytes.size() * 2 / 3);
    const std::string cut = test::temp_dir() + "/cut-adapter.gguf";
    test::write_file(cut, bytes);
    expect_lora_error(cut);
}

void expect_error_naming(const std::string& path, const std::string& what) {
    try {
        TrainModel::load(path);
        FAIL() << "no error for " << path;
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
    }
}

TEST(TrainModel, BadFiles) {
    const std::string dir = test::temp_dir();
    // another architecture
    SynthConfig c = preset_mamba_130m();
    c.n_embd = 32, c.n_layer = 2, c.tokenizer = kStories, c.type = GGMLType::F32;
    const std::string mamba = dir + "/mamba.gguf";
    synthesize(c, mamba);
    expect_error_naming(mamba, "mamba");
    // truncated
    std::vector<uint8_t> bytes = test::read_file(kStories);
    bytes.resize(bytes.size() / 2);
    const std::string cut = dir + "/cut.gguf";
    test::write_file(cut, bytes);
    expect_error_naming(cut, "cut.gguf");
    // a missing tensor, a wrong shape, a llama with a RoPE scaling it cannot train
    GGUFFile f = GGUFFile::open(kStories);
    auto rewrite = [&](const std::string& name, const std::string& drop, const std::string& key, GGUFValue v) {
        GGUFWriter w;
        w.copy_kv_from(f);
        if (!key.empty()) w.set(key, std::move(v));
        for (const GGUFTensorInfo& t : f.tensors())
            if (t.name != drop) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        const std::string p = dir + "/" + name;
        w.write(p);
        return p;
    };
    expect_error_naming(rewrite("noffn.gguf", "blk.2.ffn_up.weight", "", {}), "blk.2.ffn_up.weight");
    expect_error_naming(rewrite("ff.gguf", "", "llama.feed_forward_length", GGUFValue::u32(100)), "blk.0.ffn_gate.weight");
    expect_error_naming(rewrite("yarn.gguf", "", "llama.rope.scaling.type", GGUFValue::string("yarn")), "rope.scaling.type");
    expect_error_naming(rewrite("share.gguf", "", "llama.block_source", GGUFValue::u32_array({0, 1, 0, 1, 0})),
                        "block_source");
    expect_error_naming(dir + "/absent.gguf", "absent.gguf");
}

TEST(TrainModel, BadInputs) {
    TrainModel m(tiny_arch(), 1);
    const std::vector<int32_t> tok = random_tokens(14, 32, 1);
    EXPECT_THROW(m.forward(tok, 2, 8), Error);           // size mismatch
    EXPECT_THROW(m.forward(random_tokens(17, 32, 1), 1, 17), Error);  // T > n_ctx
    std::vector<int32_t> bad = tok;
    bad[3] = 32;
    EXPECT_THROW(m.forward(bad, 2, 7), Error);
    std::vector<int32_t> tgt = tok;
    tgt[2] = -2;
    EXPECT_THROW(m.forward_backward(tok, tgt, 2, 7), Error);
    EXPECT_THROW(m.save(test::temp_dir() + "/x.gguf"), Error);  // no tokenizer
    TrainArch a = tiny_arch();
    a.tokenizer = kStories;  // 512 tokens, n_vocab 32
    EXPECT_THROW(TrainModel(a, 1), Error);
    a = tiny_arch();
    a.n_head_kv = 2;  // does not divide 3
    EXPECT_THROW(TrainModel(a, 1), Error);
    a = tiny_arch();
    a.layer_share = 3;
    EXPECT_THROW(TrainModel(a, 1), Error);
    // all targets ignored: zero loss, no gradient
    m.zero_grad();
    std::vector<int32_t> none(14, -1);
    EXPECT_EQ(m.forward_backward(tok, none, 2, 7), 0.0f);
    for (const TrainParam& p : m.params())
        for (size_t i = 0; i < p.n; ++i) ASSERT_EQ(p.g[i], 0.0f);
}

TEST(TrainModel, Presets) {
    const std::vector<std::string> names = train_preset_names();
    EXPECT_GE(names.size(), 7u);
    uint64_t deep = 0, wide = 0, deep_ls = 0;
    for (const std::string& n : names) {
        SCOPED_TRACE(n);
        TrainArch a = train_preset(n);
        if (a.n_vocab == 0) a.n_vocab = 4096;
        a.validate(n);
        const uint64_t np = a.n_params();
        // embeddings and norms aside: the matrices of the blocks
        const uint64_t emb = uint64_t(a.n_vocab) * a.n_embd * (a.tied_embeddings ? 1 : 2) + a.n_embd +
                             2ull * a.n_embd * a.n_block();
        if (n == "deep-thin-8m") deep = np - emb;
        if (n == "wide-shallow-8m") wide = np - emb;
        if (n == "mobilellm-ls-8m") deep_ls = np - emb;
        if (n.find("8m") != std::string::npos) {
            EXPECT_GT(np - emb, 6000000u);
            EXPECT_LT(np, 10000000u);
        }
        if (n == "gpt2-small") {
            EXPECT_EQ(a.n_embd, 768u);
            EXPECT_EQ(a.n_layer, 12u);
            continue;  // 150M parameters: not allocated here
        }
        if (n == "openelm-8m") {
            EXPECT_LT(a.heads.front(), a.heads.back());
            EXPECT_LT(a.ffn.front(), a.ffn.back());
        }
        TrainModel m(a, 1);
        EXPECT_EQ(m.n_params(), np);
    }
    EXPECT_EQ(deep, wide);  // equal parameter counts in the block matrices
    EXPECT_EQ(deep, deep_ls);
    EXPECT_THROW(train_preset("nope"), Error);
    try {
        train_preset("nope");
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("deep-thin-8m"), std::string::npos);
    }
}

} // namespace
} // namespace slm
