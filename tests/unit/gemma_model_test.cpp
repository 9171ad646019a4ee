// The Gemma family (gemma, gemma2, gemma3 architecture files):
//  * Gemma (v1) has no llama.cpp golden: a tiny random model built here (MQA, head size 32 over a
//    width of 64, so Q is wider than the embedding) against a double-precision forward pass
//    written out below from the definition: embeddings x sqrt(n_embd), RMSNorm weights as
//    stored, NEOX RoPE, Q / sqrt(head size), GeGLU whose GELU argument and value are F16 (ggml's
//    table), tied output;
//  * ggml's F16 GELU table itself, and GeGLU's edges;
//  * Gemma 2 / 3 hyper-parameters of the golden models and llama.cpp's 27B attention-scale rule;
//  * bad files: sliding-window pattern 0, no window, a malformed pattern array, a missing norm.
#include "core/fp16.h"
#include "models/blocks.h"
#include "slm/error.h"
#include "slm/model.h"
#include "test_util.h"
#include "tiny_model.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace slm;
using test::TinyGGUF;
using test::Vec;

namespace {

// tanh-GELU in double.
double gelu(double x) { return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * x * (1.0 + 0.044715 * x * x))); }

// ggml's GELU with GGML_GELU_FP16: 0 for x <= -10, x for x >= 10, else the argument rounded to
// F16 and the value rounded to F16.
double gelu_f16(double x) {
    if (x <= -10.0) return 0.0;
    if (x >= 10.0) return x;
    const double xh = fp16::half_to_float(fp16::float_to_half(static_cast<float>(x)));
    return fp16::half_to_float(fp16::float_to_half(static_cast<float>(gelu(xh))));
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

// A tiny Gemma-family model: E 64, 4 query heads / 1 KV head of 32, FFN 128.
struct TinyGemma {
    static constexpr int64_t E = 64, H = 4, HKV = 1, HD = 32, F = 128, V = 512;
    uint32_t n_layer;
    TinyGGUF g;
    TinyGemma(const std::string& arch, uint32_t n_layer_, uint32_t seed, bool post_norms, bool qk_norms)
        : n_layer(n_layer_), g(arch, seed) {
        g.u32("context_length", 256);
        g.u32("embedding_length", E);
        g.u32("block_count", n_layer);
        g.u32("feed_forward_length", F);
        g.u32("attention.head_count", H);
        g.u32("attention.head_count_kv", HKV);
        g.u32("attention.key_length", HD);
        g.u32("attention.value_length", HD);
        g.f32("attention.layer_norm_rms_epsilon", 1e-6f);
        g.f32("rope.freq_base", 10000.0f);
        g.tensor("token_embd.weight", {E, V}, 0.1f);
        for (uint32_t il = 0; il < n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            g.tensor(p + "attn_norm.weight", {E}, 0.1f, 1.0f);
            g.tensor(p + "attn_q.weight", {E, H * HD}, 0.3f);
            g.tensor(p + "attn_k.weight", {E, HKV * HD}, 0.3f);
            g.tensor(p + "attn_v.weight", {E, HKV * HD}, 0.2f);
            if (qk_norms) {
                g.tensor(p + "attn_q_norm.weight", {HD}, 0.1f, 1.0f);
                g.tensor(p + "attn_k_norm.weight", {HD}, 0.1f, 1.0f);
            }
            g.tensor(p + "attn_output.weight", {H * HD, E}, 0.1f);
            if (post_norms) g.tensor(p + "post_attention_norm.weight", {E}, 0.1f, 1.0f);
            g.tensor(p + "ffn_norm.weight", {E}, 0.1f, 1.0f);
            g.tensor(p + "ffn_gate.weight", {E, F}, 0.3f);
            g.tensor(p + "ffn_up.weight", {E, F}, 0.15f);
            g.tensor(p + "ffn_down.weight", {F, E}, 0.1f);
            if (post_norms) g.tensor(p + "post_ffw_norm.weight", {E}, 0.1f, 1.0f);
        }
        g.tensor("output_norm.weight", {E}, 0.1f, 1.0f);
    }

    // Gemma v1's forward pass, in double: logits for every token.
    std::vector<Vec> reference(const std::vector<int32_t>& toks, bool table_gelu = true) const {
        const double eps = 1e-6, base = 10000.0;
        const auto& emb = g.get("token_embd.weight");
        std::vector<Vec> xs;
        for (int32_t t : toks) {
            Vec x(E);
            for (int64_t i = 0; i < E; ++i) x[i] = emb[size_t(t) * E + i] * std::sqrt(double(E));
            xs.push_back(x);
        }
        for (uint32_t il = 0; il < n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            std::vector<Vec> qs, ks, vs;
            for (size_t t = 0; t < xs.size(); ++t) {
                const Vec h = test::rms_norm(xs[t], g.get(p + "attn_norm.weight"), eps, E);
                Vec q = test::matvec(g.get(p + "attn_q.weight"), h, H * HD);
                Vec k = test::matvec(g.get(p + "attn_k.weight"), h, HKV * HD);
                for (int64_t hh = 0; hh < H; ++hh) test::rope(q.data() + hh * HD, HD, double(t), base, true);
                for (int64_t hh = 0; hh < HKV; ++hh) test::rope(k.data() + hh * HD, HD, double(t), base, true);
                qs.push_back(q);
                ks.push_back(k);
                vs.push_back(test::matvec(g.get(p + "attn_v.weight"), h, HKV * HD));
            }
            for (size_t t = 0; t < xs.size(); ++t) {
                const Vec att = test::attend(qs[t], ks, vs, t, H, HKV, HD, 1.0 / std::sqrt(double(HD)));
                const Vec o = test::matvec(g.get(p + "attn_output.weight"), att, E);
                for (int64_t i = 0; i < E; ++i) xs[t][i] += o[i];
            }
            for (auto& x : xs) {
                const Vec h = test::rms_norm(x, g.get(p + "ffn_norm.weight"), eps, E);
                const Vec gate = test::matvec(g.get(p + "ffn_gate.weight"), h, F);
                const Vec up = test::matvec(g.get(p + "ffn_up.weight"), h, F);
                Vec a(F);
                for (int64_t i = 0; i < F; ++i) a[i] = (table_gelu ? gelu_f16(gate[i]) : gelu(gate[i])) * up[i];
                const Vec d = test::matvec(g.get(p + "ffn_down.weight"), a, E);
                for (int64_t i = 0; i < E; ++i) x[i] += d[i];
            }
        }
        std::vector<Vec> logits;
        for (auto& x : xs) logits.push_back(test::matvec(emb, test::rms_norm(x, g.get("output_norm.weight"), eps, E), V));
        return logits;
    }
};

TEST(GemmaModel, TinyGemmaMatchesTheDoubleReference) {
    TinyGemma m("gemma", 2, 11, false, false);
    const std::string path = m.g.write("tiny-gemma.gguf");
    auto model = Model::load(path);
    const HParams& hp = model->hparams();
    EXPECT_TRUE(hp.tied_output);
    EXPECT_EQ(hp.rope_type, RopeType::Neox);
    EXPECT_EQ(hp.n_head_kv, 1u);
    EXPECT_EQ(hp.n_embd_head_k, 32u);
    const std::vector<int32_t> toks = model->vocab().tokenize("Once upon a time, there was a dog.", true, true);
    ASSERT_GE(toks.size(), 8u);
    const auto ref = m.reference(toks);
    for (GGMLType kv : {GGMLType::F32, GGMLType::F16}) {
        SessionOptions so;
        so.n_ctx = 64;
        so.kv_type = kv;
        so.n_threads = 2;
        Session s(model, so);
        s.eval(toks, true);
        const auto logits = s.logits();
        double worst = 0;
        for (size_t t = 0; t < toks.size(); ++t) {
            double mx = 0, d = 0;
            for (int64_t i = 0; i < TinyGemma::V; ++i) {
                mx = std::max(mx, std::fabs(ref[t][i]));
                d = std::max(d, std::fabs(ref[t][i] - logits[t * TinyGemma::V + i]));
            }
            worst = std::max(worst, d / mx);
        }
        // F32 cache: float against double is ~2e-7 per row, until a GELU argument computed in
        // float lands on the other side of an F16 rounding boundary than the double one (one FFN
        // value moves by an F16 step, 2^-11 relative, and the change stays in the KV cache):
        // measured 5.3e-5 from row 2 on. The same reference with exact GELU instead of ggml's
        // table is 2e-4 to 5e-4 away, so the bound of 1.5e-4 also tells the table is used.
        // F16 cache: K, V and Q rounded to F16 as well (2^-11 relative each): measured 1.9e-3.
        EXPECT_LT(worst, kv == GGMLType::F32 ? 1.5e-4 : 5e-3) << (kv == GGMLType::F32 ? "f32 cache" : "f16 cache");
        std::printf("[ tiny gemma, %s cache ] worst row |diff| / max|logit| = %.3g\n", kv == GGMLType::F32 ? "F32" : "F16",
                    worst);
    }
    const auto info = model->arch_info();
    bool has_scale = false;
    for (const auto& [k, v] : info) has_scale |= k == "embedding scale" && v.find("8.0") != std::string::npos;
    EXPECT_TRUE(has_scale);
}

TEST(GemmaModel, GeluTableIsGgmlsF16Table) {
    // Every F16 argument: the table holds the F16 of tanh-GELU. ggml computes it in float, where
    // 1 + tanh(...) cancels for x below about -2, so there the table differs from the F16 of the
    // double formula by a few F16 steps of a tiny value (at most 1.6e-5 absolute); above -2 it
    // is the F16 of the double formula but for a few values rounded the other way.
    const uint16_t* t = blocks::gelu_f16_table();
    int n_diff_above = 0;
    double worst = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
        const float x = fp16::half_to_float(static_cast<uint16_t>(h));
        if (std::isnan(x) || std::isinf(x)) continue;
        const uint16_t want = fp16::float_to_half(static_cast<float>(gelu(x)));
        worst = std::max(worst, std::fabs(fp16::half_to_float(t[h]) - gelu(x)) /
                                    std::max(1.0, std::fabs(gelu(x))));  // relative above 1
        if (x >= -2.0f && t[h] != want) {
            ++n_diff_above;
            EXPECT_LE(std::abs(int(t[h]) - int(want)), 1) << "x = " << x;
        }
    }
    EXPECT_LE(n_diff_above, 4);
    EXPECT_LT(worst, 2e-5 + 1e-3);  // an F16 rounding (2^-11 relative) on large values
    // ggml's table entry for x = -1.999 (0xbfff) depends on the fused x^2 term: 0xa9d3 with it.
    EXPECT_EQ(t[0xbfff], 0xa9d3);

    // GeGLU: 0 at and below -10, x * up at and above 10 (no F16 rounding there), table between.
    float hb[6] = {-10.0f, -10.5f, 10.0f, 12.3456789f, 1.0001f, -0.3f};
    const float up[6] = {2.0f, 2.0f, 0.5f, 3.0f, 1.0f, -2.0f};
    blocks::geglu(hb, up, 6);
    EXPECT_EQ(hb[0], 0.0f);
    EXPECT_EQ(hb[1], 0.0f);
    EXPECT_EQ(hb[2], 5.0f);
    EXPECT_EQ(hb[3], 12.3456789f * 3.0f);
    EXPECT_EQ(hb[4], fp16::half_to_float(t[fp16::float_to_half(1.0001f)]));
    EXPECT_EQ(hb[5], fp16::half_to_float(t[fp16::float_to_half(-0.3f)]) * -2.0f);
}

TEST(GemmaModel, SoftcapIsTanhAsLlamaCppsGraph) {
    float x[4] = {0.0f, 3.0f, -40.0f, 1e6f};
    blocks::softcap(x, 4, 30.0f);
    EXPECT_EQ(x[0], 0.0f);
    EXPECT_EQ(x[1], std::tanh(3.0f * (1.0f / 30.0f)) * 30.0f);
    EXPECT_NEAR(x[2], 30.0 * std::tanh(-40.0 / 30.0), 1e-5);
    EXPECT_EQ(x[3], 30.0f);
}

TEST(GemmaModel, Gemma2And3HyperParametersOfTheGoldenModels) {
    SLM_REQUIRE_SHARED();
    {
        auto m = Model::load(test::shared_path("reference/archs/gemma2/gemma2.f32.gguf"));
        const HParams& hp = m->hparams();
        EXPECT_EQ(hp.n_swa, 8u);
        EXPECT_EQ(hp.swa_layers, (std::vector<uint8_t>{1, 0}));  // pattern 2: local, global
        EXPECT_EQ(hp.attn_softcap, 5.0f);
        EXPECT_EQ(hp.final_softcap, 4.0f);
        EXPECT_TRUE(hp.tied_output);
        bool found = false;
        for (const auto& [k, v] : m->arch_info()) found |= k == "local / global layers" && v == "1 / 1";
        EXPECT_TRUE(found);
    }
    {
        auto m = Model::load(test::shared_path("reference/archs/gemma3/gemma3.f32.gguf"));
        const HParams& hp = m->hparams();
        EXPECT_EQ(hp.n_swa, 8u);
        EXPECT_EQ(hp.swa_layers, (std::vector<uint8_t>{1, 0}));
        EXPECT_EQ(hp.rope_freq_base_swa, 10000.0f);
        EXPECT_EQ(hp.rope_freq_base, 1000000.0f);
        EXPECT_EQ(hp.attn_softcap, 0.0f);
        EXPECT_EQ(hp.final_softcap, 0.0f);
    }
}

TEST(GemmaModel, SlidingWindowPatternRule) {
    // llama.cpp's set_swa_pattern: period 6 over 13 layers is LLLLLG LLLLLG L; with no key,
    // Gemma 3 takes 6 and Gemma 2 takes 2.
    TinyGemma m("gemma3", 13, 3, true, true);
    m.g.u32("attention.sliding_window", 512);
    auto model = Model::load(m.g.write("pattern6.gguf"));
    std::string layers;
    for (uint32_t il = 0; il < 13; ++il) layers += model->hparams().is_swa(il) ? 'L' : 'G';
    EXPECT_EQ(layers, "LLLLLGLLLLLGL");

    TinyGemma m2("gemma2", 3, 3, true, false);
    auto model2 = Model::load(m2.g.write("gemma2-defaults.gguf"));
    EXPECT_EQ(model2->hparams().n_swa, 4096u);  // llama.cpp's defaults for Gemma 2
    EXPECT_EQ(model2->hparams().swa_layers, (std::vector<uint8_t>{1, 0, 1}));
    EXPECT_EQ(model2->hparams().attn_softcap, 50.0f);
    EXPECT_EQ(model2->hparams().final_softcap, 30.0f);

    // Gemma 3 without a window: every layer global.
    TinyGemma m3("gemma3", 2, 3, true, true);
    auto model3 = Model::load(m3.g.write("gemma3-nowindow.gguf"));
    EXPECT_FALSE(model3->hparams().is_swa(0));
    EXPECT_FALSE(model3->hparams().is_swa(1));
}

TEST(GemmaModel, Gemma2AttentionScaleOf27B) {
    // llama.cpp reads no query_pre_attn_scalar: a 46-layer Gemma 2 is the 27B and uses
    // 1/sqrt(n_embd / n_head) (here 1/sqrt(16)), any other 1/sqrt(head size) (1/sqrt(32)).
    auto scale_of = [](uint32_t n_layer) {
        TinyGemma m("gemma2", n_layer, 5, true, false);
        auto model = Model::load(m.g.write("gemma2-" + std::to_string(n_layer) + ".gguf"));
        for (const auto& [k, v] : model->arch_info())
            if (k == "attention scale") return v;
        return std::string();
    };
    const std::string s46 = scale_of(46), s2 = scale_of(2);
    EXPECT_EQ(s46.rfind("0.250000", 0), 0u) << s46;
    EXPECT_NE(s46.find("27B"), std::string::npos) << s46;
    EXPECT_EQ(s2.rfind("0.176777", 0), 0u) << s2;
}

TEST(GemmaModel, BadFilesGiveClearErrors) {
    {
        TinyGemma m("gemma2", 2, 1, true, false);
        m.g.u32("attention.sliding_window_pattern", 0);
        const std::string msg = expect_load_error(m.g.write("pattern0.gguf"));
        EXPECT_NE(msg.find("sliding_window_pattern"), std::string::npos) << msg;
        EXPECT_NE(msg.find("= 0"), std::string::npos) << msg;
    }
    {
        TinyGemma m("gemma2", 2, 1, true, false);
        m.g.u32("attention.sliding_window", 0);
        const std::string msg = expect_load_error(m.g.write("window0.gguf"));
        EXPECT_NE(msg.find("sliding_window"), std::string::npos) << msg;
    }
    {
        TinyGemma m("gemma3", 2, 1, true, true);
        m.g.u32("attention.sliding_window", 16);
        m.g.w.set("gemma3.attention.sliding_window_pattern", GGUFValue::i32_array({1, 0, 1}));
        const std::string msg = expect_load_error(m.g.write("pattern-array.gguf"));
        EXPECT_NE(msg.find("sliding_window_pattern"), std::string::npos) << msg;
        EXPECT_NE(msg.find("one per layer"), std::string::npos) << msg;
    }
    {
        TinyGemma m("gemma3", 2, 1, true, false);  // no attn_q_norm / attn_k_norm
        const std::string msg = expect_load_error(m.g.write("no-qnorm.gguf"));
        EXPECT_NE(msg.find("blk.0.attn_q_norm.weight"), std::string::npos) << msg;
    }
    {
        TinyGemma m("gemma2", 2, 1, false, false);  // no post norms
        const std::string msg = expect_load_error(m.g.write("no-postnorm.gguf"));
        EXPECT_NE(msg.find("post_attention_norm"), std::string::npos) << msg;
    }
    {
        TinyGemma m("gemma2", 2, 1, true, false);
        m.g.f32("attn_logit_softcapping", -5.0f);
        const std::string msg = expect_load_error(m.g.write("softcap.gguf"));
        EXPECT_NE(msg.find("attn_logit_softcapping"), std::string::npos) << msg;
    }
}

TEST(GemmaModel, PerLayerPatternArray) {
    // A flag per layer (as Gemma 3n / 4 write it) is taken as it is.
    TinyGemma m("gemma3", 3, 2, true, true);
    m.g.u32("attention.sliding_window", 16);
    GGUFValue flags;
    flags.type = GGUFType::ARRAY;
    flags.elem_type = GGUFType::BOOL;
    flags.n = 3;
    flags.raw = {0, 1, 1};
    m.g.w.set("gemma3.attention.sliding_window_pattern", flags);
    auto model = Model::load(m.g.write("flags.gguf"));
    EXPECT_EQ(model->hparams().swa_layers, (std::vector<uint8_t>{0, 1, 1}));
}

} // namespace
