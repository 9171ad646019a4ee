// The Granite architecture file (no llama.cpp golden): a tiny random Granite built here against a
// double-precision forward pass written out from the definition - Llama (RMSNorm, RoPE on
// adjacent pairs, SwiGLU, GQA, tied output) with llama.cpp's four multipliers: embeddings times
// embedding_scale, each residual branch times residual_scale, attention scores times
// attention.scale (instead of 1/sqrt(head size)), logits divided by logit_scale. Also RoPE off
// (rope.scaling.finetuned = false), the multipliers in `slm info`, and bad files.
#include "slm/error.h"
#include "slm/model.h"
#include "test_util.h"
#include "tiny_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <span>

using namespace slm;
using test::TinyGGUF;
using test::Vec;

namespace {

constexpr int64_t E = 64, H = 4, HKV = 2, HD = 16, F = 96, V = 512;
constexpr uint32_t kLayers = 2;
constexpr float kEmbScale = 12.0f, kResScale = 0.22f, kAttnScale = 0.2f, kLogitScale = 8.0f;

struct TinyGranite {
    TinyGGUF g;
    bool rope = true;
    explicit TinyGranite(uint32_t seed, bool with_rope = true) : g("granite", seed), rope(with_rope) {
        g.u32("context_length", 256);
        g.u32("embedding_length", E);
        g.u32("block_count", kLayers);
        g.u32("feed_forward_length", F);
        g.u32("attention.head_count", H);
        g.u32("attention.head_count_kv", HKV);
        g.f32("attention.layer_norm_rms_epsilon", 1e-5f);
        g.f32("rope.freq_base", 10000.0f);
        g.f32("embedding_scale", kEmbScale);
        g.f32("residual_scale", kResScale);
        g.f32("attention.scale", kAttnScale);
        g.f32("logit_scale", kLogitScale);
        if (!with_rope) g.w.set("granite.rope.scaling.finetuned", GGUFValue::boolean(false));
        g.tensor("token_embd.weight", {E, V}, 0.02f);
        for (uint32_t il = 0; il < kLayers; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            g.tensor(p + "attn_norm.weight", {E}, 0.1f, 1.0f);
            g.tensor(p + "attn_q.weight", {E, H * HD}, 0.3f);
            g.tensor(p + "attn_k.weight", {E, HKV * HD}, 0.3f);
            g.tensor(p + "attn_v.weight", {E, HKV * HD}, 0.2f);
            g.tensor(p + "attn_output.weight", {H * HD, E}, 0.2f);
            g.tensor(p + "ffn_norm.weight", {E}, 0.1f, 1.0f);
            g.tensor(p + "ffn_gate.weight", {E, F}, 0.2f);
            g.tensor(p + "ffn_up.weight", {E, F}, 0.2f);
            g.tensor(p + "ffn_down.weight", {F, E}, 0.2f);
        }
        g.tensor("output_norm.weight", {E}, 0.1f, 1.0f);
    }

    std::vector<Vec> reference(const std::vector<int32_t>& toks) const {
        const double eps = 1e-5;
        const auto& emb = g.get("token_embd.weight");
        std::vector<Vec> xs;
        for (int32_t t : toks) {
            Vec x(E);
            for (int64_t i = 0; i < E; ++i) x[i] = double(emb[size_t(t) * E + i]) * kEmbScale;
            xs.push_back(x);
        }
        for (uint32_t il = 0; il < kLayers; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            std::vector<Vec> qs, ks, vs;
            for (size_t t = 0; t < xs.size(); ++t) {
                const Vec h = test::rms_norm(xs[t], g.get(p + "attn_norm.weight"), eps, E);
                Vec q = test::matvec(g.get(p + "attn_q.weight"), h, H * HD);
                Vec k = test::matvec(g.get(p + "attn_k.weight"), h, HKV * HD);
                if (rope) {
                    for (int64_t hh = 0; hh < H; ++hh) test::rope(q.data() + hh * HD, HD, double(t), 10000.0, false);
                    for (int64_t hh = 0; hh < HKV; ++hh) test::rope(k.data() + hh * HD, HD, double(t), 10000.0, false);
                }
                qs.push_back(q);
                ks.push_back(k);
                vs.push_back(test::matvec(g.get(p + "attn_v.weight"), h, HKV * HD));
            }
            for (size_t t = 0; t < xs.size(); ++t) {
                const Vec att = test::attend(qs[t], ks, vs, t, H, HKV, HD, kAttnScale);
                const Vec o = test::matvec(g.get(p + "attn_output.weight"), att, E);
                for (int64_t i = 0; i < E; ++i) xs[t][i] += kResScale * o[i];
            }
            for (auto& x : xs) {
                const Vec h = test::rms_norm(x, g.get(p + "ffn_norm.weight"), eps, E);
                const Vec gate = test::matvec(g.get(p + "ffn_gate.weight"), h, F);
                const Vec up = test::matvec(g.get(p + "ffn_up.weight"), h, F);
                Vec a(F);
                for (int64_t i = 0; i < F; ++i) a[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
                const Vec d = test::matvec(g.get(p + "ffn_down.weight"), a, E);
                for (int64_t i = 0; i < E; ++i) x[i] += kResScale * d[i];
            }
        }
        std::vector<Vec> logits;
        for (auto& x : xs) {
            Vec l = test::matvec(emb, test::rms_norm(x, g.get("output_norm.weight"), eps, E), V);
            for (double& v : l) v /= kLogitScale;
            logits.push_back(l);
        }
        return logits;
    }
};

double worst_rel(const std::vector<Vec>& ref, std::span<const float> logits) {
    double worst = 0;
    for (size_t t = 0; t < ref.size(); ++t) {
        double mx = 0, d = 0;
        for (int64_t i = 0; i < V; ++i) {
            mx = std::max(mx, std::fabs(ref[t][i]));
            d = std::max(d, std::fabs(ref[t][i] - logits[t * V + i]));
        }
        worst = std::max(worst, d / mx);
    }
    return worst;
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

TEST(GraniteModel, TinyGraniteMatchesTheDoubleReference) {
    for (bool with_rope : {true, false}) {
        SCOPED_TRACE(with_rope ? "rope" : "no rope");
        TinyGranite m(21, with_rope);
        auto model = Model::load(m.g.write(with_rope ? "granite.gguf" : "granite-norope.gguf"));
        EXPECT_TRUE(model->hparams().tied_output);
        EXPECT_EQ(model->hparams().rope_type, RopeType::Norm);
        const std::vector<int32_t> toks = model->vocab().tokenize("Tom had a big red ball. He liked it.", true, true);
        ASSERT_GE(toks.size(), 8u);
        const auto ref = m.reference(toks);
        for (GGMLType kv : {GGMLType::F32, GGMLType::F16}) {
            SessionOptions so;
            so.n_ctx = 64;
            so.kv_type = kv;
            so.n_threads = 2;
            Session s(model, so);
            s.eval(toks, true);
            const double w = worst_rel(ref, s.logits());
            std::printf("[ tiny granite, %s, %s cache ] worst row |diff| / max|logit| = %.3g\n", with_rope ? "rope" : "no rope",
                        kv == GGMLType::F32 ? "F32" : "F16", w);
            // Float against double: 1.3e-6 measured with an F32 cache. An F16 cache rounds K,
            // V and Q to 11 bits (2^-11 relative each, on scores of ~0.2 x 16 dims): 2.8e-3
            // measured.
            EXPECT_LT(w, kv == GGMLType::F32 ? 1e-5 : 6e-3);
        }
        // The same prompt one token at a time (decode steps) gives the same last row.
        SessionOptions so;
        so.n_ctx = 64;
        so.kv_type = GGMLType::F32;
        Session s(model, so);
        const float* last = nullptr;
        for (int32_t t : toks) last = s.eval(std::span<const int32_t>(&t, 1));
        double mx = 0, d = 0;
        for (int64_t i = 0; i < V; ++i) {
            mx = std::max(mx, std::fabs(ref.back()[i]));
            d = std::max(d, std::fabs(ref.back()[i] - last[i]));
        }
        EXPECT_LT(d / mx, 1e-5);
    }
}

TEST(GraniteModel, InfoShowsTheMultipliers) {
    TinyGranite m(22);
    auto model = Model::load(m.g.write("granite-info.gguf"));
    std::map<std::string, std::string> info;
    for (const auto& [k, v] : model->arch_info()) info[k] = v;
    EXPECT_EQ(info["embedding_scale"], "12.000000");
    EXPECT_EQ(info["residual_scale"], "0.220000");
    EXPECT_EQ(info["attention.scale"], "0.200000");
    EXPECT_EQ(info["logit_scale"].rfind("8.000000", 0), 0u) << info["logit_scale"];
}

TEST(GraniteModel, BadFilesGiveClearErrors) {
    {
        TinyGranite m(23);
        m.g.w.remove("granite.logit_scale");
        const std::string msg = expect_load_error(m.g.write("no-logit-scale.gguf"));
        EXPECT_NE(msg.find("granite.logit_scale"), std::string::npos) << msg;
    }
    {
        TinyGranite m(23);
        m.g.f32("residual_scale", -1.0f);
        const std::string msg = expect_load_error(m.g.write("neg-residual.gguf"));
        EXPECT_NE(msg.find("residual_scale"), std::string::npos) << msg;
    }
    {
        TinyGranite m(23);
        m.g.u32("expert_count", 8);
        const std::string msg = expect_load_error(m.g.write("moe.gguf"));
        EXPECT_NE(msg.find("expert_count"), std::string::npos) << msg;
    }
}

} // namespace
