// OpenELM (layer-wise scaling) against a reference forward pass written here in double precision
// from the architecture's definition (Mehta et al. 2024; Apple's modeling_openelm.py as
// llama.cpp's converter maps it): there is no llama.cpp golden dump for this architecture.
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace slm;

namespace {

// A tiny OpenELM: 3 layers whose head counts and FFN widths grow with depth.
struct Tiny {
    uint32_t n_embd = 64, hd = 16, n_vocab = 512;
    std::vector<uint32_t> n_head{2, 3, 4}, n_head_kv{1, 1, 2}, n_ff{48, 96, 128};
    float eps = 1e-6f, base = 10000.0f;
    std::map<std::string, std::vector<float>> w;  // name -> F32 data
    std::map<std::string, std::vector<int64_t>> shape;

    void add(std::string name, std::vector<int64_t> ne, std::mt19937& rng, float mean, float std) {
        int64_t n = 1;
        for (int64_t d : ne) n *= d;
        std::normal_distribution<float> nd(mean, std);
        std::vector<float> v(n);
        for (float& x : v) x = nd(rng);
        w[name] = std::move(v);
        shape[name] = std::move(ne);
    }

    std::string write(const std::string& path, const GGUFValue* head_count_override = nullptr) {
        std::mt19937 rng(11);
        const int64_t E = n_embd, H = hd;
        add("token_embd.weight", {E, n_vocab}, rng, 0, 0.5f);
        for (uint32_t il = 0; il < n_head.size(); ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            add(p + "attn_norm.weight", {E}, rng, 1, 0.1f);
            add(p + "attn_qkv.weight", {E, (n_head[il] + 2 * n_head_kv[il]) * H}, rng, 0, 0.15f);
            add(p + "attn_q_norm.weight", {H}, rng, 1, 0.1f);
            add(p + "attn_k_norm.weight", {H}, rng, 1, 0.1f);
            add(p + "attn_output.weight", {n_head[il] * H, E}, rng, 0, 0.1f);
            add(p + "ffn_norm.weight", {E}, rng, 1, 0.1f);
            add(p + "ffn_gate.weight", {E, n_ff[il]}, rng, 0, 0.15f);
            add(p + "ffn_up.weight", {E, n_ff[il]}, rng, 0, 0.15f);
            add(p + "ffn_down.weight", {n_ff[il], E}, rng, 0, 0.1f);
        }
        add("output_norm.weight", {E}, rng, 1, 0.1f);

        GGUFFile tok = GGUFFile::open(test::model_path("stories260K/stories260K.gguf"));
        GGUFWriter g;
        g.set("general.architecture", GGUFValue::string("openelm"));
        g.set("general.name", GGUFValue::string("tiny-openelm"));
        g.set("openelm.block_count", GGUFValue::u32(uint32_t(n_head.size())));
        g.set("openelm.context_length", GGUFValue::u32(128));
        g.set("openelm.embedding_length", GGUFValue::u32(n_embd));
        auto i32s = [](const std::vector<uint32_t>& v) { return GGUFValue::i32_array(std::vector<int32_t>(v.begin(), v.end())); };
        g.set("openelm.feed_forward_length", i32s(n_ff));
        g.set("openelm.attention.head_count", head_count_override ? *head_count_override : i32s(n_head));
        g.set("openelm.attention.head_count_kv", i32s(n_head_kv));
        g.set("openelm.rope.freq_base", GGUFValue::f32(base));
        g.set("openelm.attention.layer_norm_rms_epsilon", GGUFValue::f32(eps));
        g.set("openelm.rope.dimension_count", GGUFValue::u32(hd));
        g.set("openelm.attention.key_length", GGUFValue::u32(hd));
        g.set("openelm.attention.value_length", GGUFValue::u32(hd));
        for (const auto& [k, v] : tok.kv())
            if (k.rfind("tokenizer.", 0) == 0) g.set(k, v);
        for (const auto& [name, data] : w) {
            std::vector<uint8_t> bytes(data.size() * 4);
            std::memcpy(bytes.data(), data.data(), bytes.size());
            g.add_tensor_copy(name, GGMLType::F32, shape[name], std::move(bytes));
        }
        g.write(path);
        return path;
    }

    // y = W x for W stored [n_in, n_out] (ggml order: row r of W is W[r * n_in ...]).
    std::vector<double> mv(const std::string& name, const std::vector<double>& x) const {
        const auto& W = w.at(name);
        const int64_t n_in = shape.at(name)[0], n_out = shape.at(name)[1];
        std::vector<double> y(n_out, 0.0);
        for (int64_t r = 0; r < n_out; ++r)
            for (int64_t i = 0; i < n_in; ++i) y[r] += double(W[r * n_in + i]) * x[i];
        return y;
    }
    void rms(std::vector<double>& x, size_t off, size_t n, const std::string& wn) const {
        double ss = 0;
        for (size_t i = 0; i < n; ++i) ss += x[off + i] * x[off + i];
        const double s = 1.0 / std::sqrt(ss / n + eps);
        for (size_t i = 0; i < n; ++i) x[off + i] = x[off + i] * s * w.at(wn)[i];
    }
    void rope(std::vector<double>& x, size_t off, int pos) const {  // NEOX: halves
        const size_t half = hd / 2;
        for (size_t i = 0; i < half; ++i) {
            const double th = pos * std::pow(double(base), -2.0 * i / hd);
            const double a = x[off + i], b = x[off + i + half];
            x[off + i] = a * std::cos(th) - b * std::sin(th);
            x[off + i + half] = a * std::sin(th) + b * std::cos(th);
        }
    }

    // Logits for every position of `toks`.
    std::vector<std::vector<double>> forward(const std::vector<int32_t>& toks) const {
        const size_t E = n_embd, T = toks.size();
        std::vector<std::vector<double>> x(T, std::vector<double>(E));
        for (size_t t = 0; t < T; ++t)
            for (size_t i = 0; i < E; ++i) x[t][i] = w.at("token_embd.weight")[toks[t] * E + i];
        for (uint32_t il = 0; il < n_head.size(); ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            const size_t nh = n_head[il], nkv = n_head_kv[il];
            std::vector<std::vector<double>> q(T), k(T), v(T);
            for (size_t t = 0; t < T; ++t) {
                std::vector<double> h = x[t];
                rms(h, 0, E, p + "attn_norm.weight");
                const auto qkv = mv(p + "attn_qkv.weight", h);
                q[t].assign(qkv.begin(), qkv.begin() + nh * hd);
                k[t].assign(qkv.begin() + nh * hd, qkv.begin() + (nh + nkv) * hd);
                v[t].assign(qkv.begin() + (nh + nkv) * hd, qkv.end());
                for (size_t h2 = 0; h2 < nh; ++h2) rms(q[t], h2 * hd, hd, p + "attn_q_norm.weight"), rope(q[t], h2 * hd, int(t));
                for (size_t h2 = 0; h2 < nkv; ++h2) rms(k[t], h2 * hd, hd, p + "attn_k_norm.weight"), rope(k[t], h2 * hd, int(t));
            }
            for (size_t t = 0; t < T; ++t) {
                std::vector<double> att(nh * hd, 0.0);
                for (size_t h = 0; h < nh; ++h) {
                    const size_t hk = h / (nh / nkv);
                    std::vector<double> s(t + 1);
                    double mx = -1e300;
                    for (size_t j = 0; j <= t; ++j) {
                        double d = 0;
                        for (size_t i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][hk * hd + i];
                        s[j] = d / std::sqrt(double(hd));
                        mx = std::max(mx, s[j]);
                    }
                    double sum = 0;
                    for (double& e : s) sum += (e = std::exp(e - mx));
                    for (size_t j = 0; j <= t; ++j)
                        for (size_t i = 0; i < hd; ++i) att[h * hd + i] += s[j] / sum * v[j][hk * hd + i];
                }
                const auto o = mv(p + "attn_output.weight", att);
                for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
                std::vector<double> h = x[t];
                rms(h, 0, E, p + "ffn_norm.weight");
                auto g = mv(p + "ffn_gate.weight", h);
                const auto u = mv(p + "ffn_up.weight", h);
                for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
                const auto d = mv(p + "ffn_down.weight", g);
                for (size_t i = 0; i < E; ++i) x[t][i] += d[i];
            }
        }
        std::vector<std::vector<double>> logits(T);
        for (size_t t = 0; t < T; ++t) {
            rms(x[t], 0, E, "output_norm.weight");
            logits[t] = mv("token_embd.weight", x[t]);  // tied
        }
        return logits;
    }
};

TEST(OpenELM, MatchesTheReferenceForward) {
    Tiny m;
    const std::string path = m.write(test::temp_dir() + "/openelm.gguf");
    auto model = Model::load(path);
    EXPECT_EQ(model->hparams().n_head, 4u);
    EXPECT_EQ(model->hparams().n_ff, 128u);
    EXPECT_EQ(model->hparams().n_head_arr, (std::vector<uint32_t>{2, 3, 4}));
    const std::vector<int32_t> toks{1, 403, 407, 261, 378, 300, 12, 99, 4, 250, 17};
    const auto ref = m.forward(toks);
    for (GGMLType kv : {GGMLType::F32, GGMLType::F16}) {
        for (uint32_t n_batch : {64u, 3u}) {
            SCOPED_TRACE(std::string(type_name(kv)) + " n_batch " + std::to_string(n_batch));
            SessionOptions so;
            so.n_ctx = 64;
            so.n_batch = n_batch;
            so.kv_type = kv;
            so.n_threads = 2;
            Session s(model, so);
            s.eval(toks, true);
            const auto l = s.logits();
            const size_t nv = m.n_vocab;
            for (size_t t = 0; t < toks.size(); ++t) {
                double mx = 0, d = 0;
                for (size_t i = 0; i < nv; ++i) {
                    mx = std::max(mx, std::fabs(ref[t][i]));
                    d = std::max(d, std::fabs(ref[t][i] - l[t * nv + i]));
                }
                // F32 cache: float vs double only. F16 cache: K/V rounded to F16 (2^-11 relative).
                EXPECT_LE(d, (kv == GGMLType::F32 ? 1e-4 : 5e-3) * mx) << "position " << t;
            }
        }
    }
    // slm info shows the per-layer counts.
    const auto info = model->arch_info();
    bool seen = false;
    for (const auto& [k, v] : info) seen |= k == "n_head per layer" && v == "[2, 3, 4]";
    EXPECT_TRUE(seen);
}

TEST(OpenELM, BadPerLayerCountsAreClearErrors) {
    const std::string dir = test::temp_dir();
    struct Bad {
        GGUFValue v;
        const char* what;
    };
    const std::vector<Bad> bad = {
        {GGUFValue::i32_array({2, 3}), "expected 3 integers"},             // wrong length
        {GGUFValue::i32_array({2, 3, -4}), "out of range"},                // negative
        {GGUFValue::i32_array({2, 3, 5}), "not a multiple of head_count_kv"},  // 5 % 2
        {GGUFValue::i32_array({0, 3, 4}), "not a multiple"},               // 0 heads with KV heads
        {GGUFValue::str_array({"2", "3", "4"}), "expected 3 integers"},    // not integers
    };
    for (const Bad& b : bad) {
        Tiny m;
        const std::string path = m.write(dir + "/bad.gguf", &b.v);
        try {
            Model::load(path);
            ADD_FAILURE() << "loaded head_count " << b.v.to_string();
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(b.what), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("head_count"), std::string::npos) << e.what();
        }
    }
}

} // namespace
