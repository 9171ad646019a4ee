// The mixture-of-experts architectures (qwen2moe, olmoe, phimoe) on tiny random models built here
// with GGUFWriter (fixed seeds), against a straightforward double-precision forward pass written
// below from the architectures' definitions (llama.cpp's graphs): the "hand-computed case" for
// the architectures without a llama.cpp golden dump (olmoe, phimoe; qwen2moe has one too, see
// tests/golden/qwen2moe_golden_test.cpp). Plus: one token at a time == the whole prompt, quantized
// (repacked) experts, `slm info` lines, and the errors of bad expert keys and tensors.
#include "models/moe.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "kernels/matmul.h"
#include "kernels/repack.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdlib>
#include <random>

using namespace slm;

namespace {

// ---- a tiny model ----------------------------------------------------------------------------

struct Spec {
    std::string arch;
    uint32_t E = 64, n_layer = 2, n_head = 4, n_head_kv = 2, n_ff = 48;
    uint32_t NE = 4, K = 2, n_ff_exp = 32, n_ff_shexp = 0;  // olmoe/phimoe: experts n_ff wide
    float eps = 1e-5f, rope_base = 10000.0f;
    GGMLType expert_type = GGMLType::F32;  // quantized: the reference uses the dequantized values
    uint32_t seed = 1;
};

struct Tiny {
    Spec s;
    std::string path;
    std::map<std::string, std::vector<float>> w;  // every tensor's values, as the model sees them
    uint32_t n_vocab = 0;

    const std::vector<float>& operator[](const std::string& n) const {
        auto it = w.find(n);
        if (it == w.end()) throw std::runtime_error("no tensor " + n);
        return it->second;
    }
    bool has(const std::string& n) const { return w.count(n) != 0; }
};

// Writes the model; every value is drawn from N(mean, std) with a fixed seed.
Tiny build(const Spec& s, const std::string& file, const std::function<void(GGUFWriter&)>& edit = nullptr,
           const std::function<bool(const std::string&)>& skip = nullptr) {
    Tiny m;
    m.s = s;
    const GGUFFile tok = GGUFFile::open(test::model_path("stories260K/stories260K.gguf"));
    m.n_vocab = static_cast<uint32_t>(tok.find("tokenizer.ggml.tokens")->n);
    GGUFWriter w;
    const std::string a = s.arch + ".";
    w.set("general.architecture", GGUFValue::string(s.arch));
    w.set("general.name", GGUFValue::string("tiny-moe"));
    w.set(a + "context_length", GGUFValue::u32(256));
    w.set(a + "embedding_length", GGUFValue::u32(s.E));
    w.set(a + "block_count", GGUFValue::u32(s.n_layer));
    w.set(a + "feed_forward_length", GGUFValue::u32(s.n_ff));
    w.set(a + "attention.head_count", GGUFValue::u32(s.n_head));
    w.set(a + "attention.head_count_kv", GGUFValue::u32(s.n_head_kv));
    w.set(a + "attention.layer_norm_rms_epsilon", GGUFValue::f32(s.eps));
    w.set(a + "rope.freq_base", GGUFValue::f32(s.rope_base));
    w.set(a + "expert_count", GGUFValue::u32(s.NE));
    w.set(a + "expert_used_count", GGUFValue::u32(s.K));
    if (s.arch == "qwen2moe") {
        w.set(a + "expert_feed_forward_length", GGUFValue::u32(s.n_ff_exp));
        w.set(a + "expert_shared_feed_forward_length", GGUFValue::u32(s.n_ff_shexp));
    }
    for (const auto& [k, v] : tok.kv())
        if (k.rfind("tokenizer.", 0) == 0) w.set(k, v);
    if (edit) edit(w);

    std::mt19937 rng(s.seed);
    const int64_t E = s.E, V = m.n_vocab, hd = s.E / s.n_head;
    const int64_t nq = hd * s.n_head, nk = hd * s.n_head_kv;
    const int64_t F = s.arch == "qwen2moe" ? s.n_ff_exp : s.n_ff, NE = s.NE;
    auto add = [&](const std::string& name, std::vector<int64_t> ne, float mean, float std, GGMLType type = GGMLType::F32) {
        if (skip && skip(name)) return;
        size_t n = 1;
        for (int64_t d : ne) n *= size_t(d);
        std::normal_distribution<float> d(mean, std);
        std::vector<float> v(n);
        for (float& x : v) x = d(rng);
        std::vector<uint8_t> bytes(row_size(type, ne[0]) * (n / ne[0]));
        const size_t rs = row_size(type, ne[0]);
        for (size_t r = 0; r < n / ne[0]; ++r) {
            kernels::quantize_row_ref(v.data() + r * ne[0], type, ne[0], bytes.data() + r * rs);
            kernels::dequantize_row(bytes.data() + r * rs, type, ne[0], v.data() + r * ne[0]);
        }
        w.add_tensor_copy(name, type, ne, std::move(bytes));
        m.w[name] = std::move(v);
    };
    const bool phi = s.arch == "phimoe";
    add("token_embd.weight", {E, V}, 0.0f, 0.5f);
    for (uint32_t il = 0; il < s.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        add(p + "attn_norm.weight", {E}, 1.0f, 0.1f);
        if (phi) add(p + "attn_norm.bias", {E}, 0.0f, 0.1f);
        add(p + "attn_q.weight", {E, nq}, 0.0f, 2.0f / std::sqrt(float(E)));
        add(p + "attn_k.weight", {E, nk}, 0.0f, 2.0f / std::sqrt(float(E)));
        add(p + "attn_v.weight", {E, nk}, 0.0f, 1.0f / std::sqrt(float(E)));
        if (s.arch != "olmoe") {
            add(p + "attn_q.bias", {nq}, 0.0f, 0.1f);
            add(p + "attn_k.bias", {nk}, 0.0f, 0.1f);
            add(p + "attn_v.bias", {nk}, 0.0f, 0.1f);
        } else {
            add(p + "attn_q_norm.weight", {nq}, 1.0f, 0.1f);
            add(p + "attn_k_norm.weight", {nk}, 1.0f, 0.1f);
        }
        add(p + "attn_output.weight", {nq, E}, 0.0f, 0.5f / std::sqrt(float(nq)));
        if (phi) add(p + "attn_output.bias", {E}, 0.0f, 0.1f);
        add(p + "ffn_norm.weight", {E}, 1.0f, 0.1f);
        if (phi) add(p + "ffn_norm.bias", {E}, 0.0f, 0.1f);
        add(p + "ffn_gate_inp.weight", {E, NE}, 0.0f, 1.0f / std::sqrt(float(E)));
        add(p + "ffn_gate_exps.weight", {E, F, NE}, 0.0f, 1.0f / std::sqrt(float(E)), s.expert_type);
        add(p + "ffn_up_exps.weight", {E, F, NE}, 0.0f, 1.0f / std::sqrt(float(E)), s.expert_type);
        add(p + "ffn_down_exps.weight", {F, E, NE}, 0.0f, 0.5f / std::sqrt(float(F)), s.expert_type);
        if (s.n_ff_shexp > 0) {
            const int64_t FS = s.n_ff_shexp;
            add(p + "ffn_gate_inp_shexp.weight", {E}, 0.0f, 1.0f / std::sqrt(float(E)));
            add(p + "ffn_gate_shexp.weight", {E, FS}, 0.0f, 1.0f / std::sqrt(float(E)));
            add(p + "ffn_up_shexp.weight", {E, FS}, 0.0f, 1.0f / std::sqrt(float(E)));
            add(p + "ffn_down_shexp.weight", {FS, E}, 0.0f, 0.5f / std::sqrt(float(FS)));
        }
    }
    add("output_norm.weight", {E}, 1.0f, 0.1f);
    if (phi) add("output_norm.bias", {E}, 0.0f, 0.1f);
    add("output.weight", {E, V}, 0.0f, 3.0f / std::sqrt(float(E)));
    if (phi) add("output.bias", {V}, 0.0f, 0.5f);
    m.path = test::temp_dir() + "/" + file;
    w.write(m.path);
    return m;
}

// ---- the reference forward pass, in double ---------------------------------------------------

using Vec = std::vector<double>;

Vec matvec(const std::vector<float>& W, size_t n_in, size_t n_out, size_t row0, const Vec& x) {
    Vec y(n_out, 0.0);
    for (size_t o = 0; o < n_out; ++o)
        for (size_t i = 0; i < n_in; ++i) y[o] += double(W[(row0 + o) * n_in + i]) * x[i];
    return y;
}

Vec rms(const Vec& x, const std::vector<float>& w, const std::vector<float>* b, double eps) {
    double ss = 0;
    for (double v : x) ss += v * v;
    const double s = 1.0 / std::sqrt(ss / double(x.size()) + eps);
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i] + (b ? (*b)[i] : 0.0);
    return y;
}

void add_to(Vec& y, const std::vector<float>& b) {
    for (size_t i = 0; i < y.size(); ++i) y[i] += b[i];
}

Vec swiglu_expert(const Tiny& m, const std::string& g, const std::string& u, const std::string& d, size_t E, size_t F,
                  size_t e, const Vec& x) {
    Vec gv = matvec(m[g], E, F, e * F, x), uv = matvec(m[u], E, F, e * F, x);
    for (size_t i = 0; i < F; ++i) gv[i] = gv[i] / (1.0 + std::exp(-gv[i])) * uv[i];
    return matvec(m[d], F, E, e * E, gv);
}

struct RefResult {
    std::vector<Vec> logits;   // per token
    double min_route_gap = 1e9;  // smallest gap between the k-th and (k+1)-th probability
};

RefResult reference(const Tiny& m, const std::vector<int32_t>& toks) {
    const Spec& s = m.s;
    const size_t E = s.E, T = toks.size(), hd = s.E / s.n_head, V = m.n_vocab;
    const size_t nq = hd * s.n_head, nk = hd * s.n_head_kv, group = s.n_head / s.n_head_kv;
    const size_t F = s.arch == "qwen2moe" ? s.n_ff_exp : s.n_ff;
    const bool phi = s.arch == "phimoe", olmoe = s.arch == "olmoe";
    RefResult res;
    std::vector<Vec> x(T);
    for (size_t t = 0; t < T; ++t) x[t] = Vec(m["token_embd.weight"].begin() + toks[t] * E,
                                              m["token_embd.weight"].begin() + (toks[t] + 1) * E);
    auto bias = [&](const std::string& n) { return m.has(n) ? &m[n] : nullptr; };
    for (uint32_t il = 0; il < s.n_layer; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        std::vector<Vec> q(T), k(T), v(T);
        for (size_t t = 0; t < T; ++t) {
            const Vec h = rms(x[t], m[p + "attn_norm.weight"], bias(p + "attn_norm.bias"), s.eps);
            q[t] = matvec(m[p + "attn_q.weight"], E, nq, 0, h);
            k[t] = matvec(m[p + "attn_k.weight"], E, nk, 0, h);
            v[t] = matvec(m[p + "attn_v.weight"], E, nk, 0, h);
            if (m.has(p + "attn_q.bias")) {
                add_to(q[t], m[p + "attn_q.bias"]);
                add_to(k[t], m[p + "attn_k.bias"]);
                add_to(v[t], m[p + "attn_v.bias"]);
            }
            if (olmoe) {
                q[t] = rms(q[t], m[p + "attn_q_norm.weight"], nullptr, s.eps);
                k[t] = rms(k[t], m[p + "attn_k_norm.weight"], nullptr, s.eps);
            }
            // NEOX RoPE: (x_i, x_{i + hd/2}) rotated by pos * base^(-2i/hd).
            for (Vec* r : {&q[t], &k[t]}) {
                for (size_t h0 = 0; h0 < r->size(); h0 += hd) {
                    for (size_t i = 0; i < hd / 2; ++i) {
                        const double th = double(t) * std::pow(double(s.rope_base), -2.0 * double(i) / double(hd));
                        const double a = (*r)[h0 + i], b = (*r)[h0 + i + hd / 2];
                        (*r)[h0 + i] = a * std::cos(th) - b * std::sin(th);
                        (*r)[h0 + i + hd / 2] = a * std::sin(th) + b * std::cos(th);
                    }
                }
            }
        }
        const double scale = 1.0 / std::sqrt(double(hd));
        for (size_t t = 0; t < T; ++t) {
            Vec att(nq, 0.0);
            for (size_t h = 0; h < s.n_head; ++h) {
                const size_t hk = h / group;
                Vec sc(t + 1);
                double mx = -1e300, sum = 0;
                for (size_t j = 0; j <= t; ++j) {
                    double d = 0;
                    for (size_t i = 0; i < hd; ++i) d += q[t][h * hd + i] * k[j][hk * hd + i];
                    sc[j] = d * scale;
                    mx = std::max(mx, sc[j]);
                }
                for (size_t j = 0; j <= t; ++j) sum += sc[j] = std::exp(sc[j] - mx);
                for (size_t j = 0; j <= t; ++j)
                    for (size_t i = 0; i < hd; ++i) att[h * hd + i] += sc[j] / sum * v[j][hk * hd + i];
            }
            Vec o = matvec(m[p + "attn_output.weight"], nq, E, 0, att);
            if (m.has(p + "attn_output.bias")) add_to(o, m[p + "attn_output.bias"]);
            for (size_t i = 0; i < E; ++i) x[t][i] += o[i];
        }
        for (size_t t = 0; t < T; ++t) {
            const Vec h = rms(x[t], m[p + "ffn_norm.weight"], bias(p + "ffn_norm.bias"), s.eps);
            // Router: softmax, the k largest, weights renormalised for phimoe only.
            const Vec l = matvec(m[p + "ffn_gate_inp.weight"], E, s.NE, 0, h);
            const double mx = *std::max_element(l.begin(), l.end());
            Vec pr(s.NE);
            double sum = 0;
            for (size_t e = 0; e < s.NE; ++e) sum += pr[e] = std::exp(l[e] - mx);
            for (double& x : pr) x /= sum;
            std::vector<size_t> idx(s.NE);
            for (size_t e = 0; e < s.NE; ++e) idx[e] = e;
            std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return pr[a] > pr[b]; });
            if (s.K < s.NE) res.min_route_gap = std::min(res.min_route_gap, pr[idx[s.K - 1]] - pr[idx[s.K]]);
            double wsum = 0;
            for (size_t j = 0; j < s.K; ++j) wsum += pr[idx[j]];
            Vec y(E, 0.0);
            for (size_t j = 0; j < s.K; ++j) {
                const double wj = phi ? pr[idx[j]] / wsum : pr[idx[j]];
                const Vec ye = swiglu_expert(m, p + "ffn_gate_exps.weight", p + "ffn_up_exps.weight",
                                             p + "ffn_down_exps.weight", E, F, idx[j], h);
                for (size_t i = 0; i < E; ++i) y[i] += wj * ye[i];
            }
            if (s.n_ff_shexp > 0) {
                const Vec ys = swiglu_expert(m, p + "ffn_gate_shexp.weight", p + "ffn_up_shexp.weight",
                                             p + "ffn_down_shexp.weight", E, s.n_ff_shexp, 0, h);
                const double g = matvec(m[p + "ffn_gate_inp_shexp.weight"], E, 1, 0, h)[0];
                for (size_t i = 0; i < E; ++i) y[i] += ys[i] / (1.0 + std::exp(-g));
            }
            for (size_t i = 0; i < E; ++i) x[t][i] += y[i];
        }
    }
    for (size_t t = 0; t < T; ++t) {
        const Vec h = rms(x[t], m["output_norm.weight"], bias("output_norm.bias"), s.eps);
        Vec l = matvec(m["output.weight"], E, V, 0, h);
        if (m.has("output.bias")) add_to(l, m["output.bias"]);
        res.logits.push_back(std::move(l));
    }
    return res;
}

std::vector<int32_t> prompt() { return {1, 403, 407, 261, 378, 429, 300, 267, 5, 100, 299, 300}; }

// slm's logits for every prompt position.
std::vector<float> run(const std::string& path, GGMLType kv, bool one_by_one = false) {
    auto model = Model::load(path);
    SessionOptions so;
    so.n_ctx = 64;
    so.kv_type = kv;
    so.n_threads = 2;
    Session s(model, so);
    const auto p = prompt();
    if (!one_by_one) {
        s.eval(p, true);
        return {s.logits().begin(), s.logits().end()};
    }
    std::vector<float> out;
    for (int32_t t : p) {
        const float* l = s.eval(std::span<const int32_t>(&t, 1));
        out.insert(out.end(), l, l + model->hparams().n_vocab);
    }
    return out;
}

// Largest |ours - ref| / max|ref| over the rows.
double worst_rel(const std::vector<float>& ours, const std::vector<Vec>& ref) {
    double worst = 0;
    const size_t V = ref[0].size();
    for (size_t t = 0; t < ref.size(); ++t) {
        double mx = 0, d = 0;
        for (size_t i = 0; i < V; ++i) {
            mx = std::max(mx, std::fabs(ref[t][i]));
            d = std::max(d, std::fabs(ref[t][i] - ours[t * V + i]));
        }
        worst = std::max(worst, d / mx);
    }
    return worst;
}

Spec qwen2moe_spec() {
    Spec s;
    s.arch = "qwen2moe";
    s.NE = 4;
    s.K = 2;
    s.n_ff_exp = 32;
    s.n_ff_shexp = 48;
    s.rope_base = 1e6f;
    s.eps = 1e-6f;
    return s;
}
Spec olmoe_spec() {
    Spec s;
    s.arch = "olmoe";
    s.n_head_kv = 4;  // OLMoE has no GQA (llama.cpp's attn_k_norm is n_embd wide)
    s.NE = 8;
    s.K = 3;          // more than two chosen: the order of the sum matters
    s.n_ff = 32;
    return s;
}
Spec phimoe_spec() {
    Spec s;
    s.arch = "phimoe";
    s.NE = 6;
    s.K = 2;
    s.n_ff = 32;
    return s;
}

void PrintTo(const Spec& s, std::ostream* os) { *os << s.arch; }

class MoeArch : public ::testing::TestWithParam<Spec> {};

TEST_P(MoeArch, MatchesDoubleReference) {
    const Spec s = GetParam();
    const Tiny m = build(s, s.arch + ".gguf");
    const RefResult ref = reference(m, prompt());
    // With a k-th / (k+1)-th probability gap this wide, float rounding cannot change the choice,
    // so the comparison below tests the arithmetic, not luck.
    ASSERT_GT(ref.min_route_gap, 1e-4) << "seed gives a near-tie in the routing; pick another";
    // F32 KV cache: float vs double, summation order only.
    const double f32 = worst_rel(run(m.path, GGMLType::F32), ref.logits);
    EXPECT_LT(f32, 1e-5) << s.arch;  // measured 2e-7 .. 9e-7
    // Decoding one token at a time: the same numbers.
    EXPECT_LT(worst_rel(run(m.path, GGMLType::F32, true), ref.logits), 1e-5) << s.arch;
    // F16 KV cache: K and V rounded to F16 (~5e-4 relative each; measured 5e-4 .. 1.9e-3).
    const double f16 = worst_rel(run(m.path, GGMLType::F16), ref.logits);
    EXPECT_LT(f16, 5e-3) << s.arch;
    std::printf("[ %s ] worst |diff|/max|logit| vs double: F32 KV %.2e, F16 KV %.2e, routing gap %.2e\n",
                s.arch.c_str(), f32, f16, ref.min_route_gap);
}

TEST_P(MoeArch, QuantizedExpertsMatchReferenceOnTheirValues) {
    // Q4_0 and Q8_0 experts (repacked at load on CPUs with that kernel): the reference uses the
    // dequantized weights; the remaining error is the Q8_0 rounding of the activations.
    for (GGMLType t : {GGMLType::Q8_0, GGMLType::Q4_0}) {
        Spec s = GetParam();
        s.expert_type = t;
        // The first seed whose routing has no near-tie that the Q8_0 rounding of activations
        // (~1e-2 relative) could flip: deterministic, and the comparison then tests arithmetic.
        Tiny m;
        RefResult ref;
        for (s.seed = 3; s.seed < 40; ++s.seed) {
            m = build(s, s.arch + "_" + type_name(t) + ".gguf");
            ref = reference(m, prompt());
            if (ref.min_route_gap > 2e-3) break;
        }
        ASSERT_GT(ref.min_route_gap, 2e-3);
        const std::vector<float> batched = run(m.path, GGMLType::F32), single = run(m.path, GGMLType::F32, true);
        EXPECT_LT(worst_rel(batched, ref.logits), 2e-2) << s.arch << " " << type_name(t);
        EXPECT_LT(worst_rel(single, ref.logits), 2e-2) << s.arch << " " << type_name(t);
        for (size_t i = 0; i < batched.size(); ++i)
            ASSERT_NEAR(batched[i], single[i], 1e-4 * (1 + std::fabs(single[i]))) << s.arch << " " << i;
        // Where this CPU has a row-group kernel for the type, the experts were repacked at load
        // (each expert's slice on its own) and the numbers above came from those kernels.
        if (kernels::repack_traits(t) != nullptr && std::getenv("SLM_REPACK") == nullptr)
            EXPECT_GT(Model::load(m.path)->repacked_bytes(), 0u) << type_name(t);
    }
}

TEST_P(MoeArch, InfoShowsExpertsAndGating) {
    const Spec s = GetParam();
    const Tiny m = build(s, s.arch + "_info.gguf");
    auto model = Model::load(m.path);
    std::map<std::string, std::string> info;
    for (auto& [k, v] : model->arch_info()) info[k] = v;
    const std::string want_experts = std::to_string(s.NE) + ", " + std::to_string(s.K) + " used per token, width " +
                                     std::to_string(s.arch == "qwen2moe" ? s.n_ff_exp : s.n_ff);
    EXPECT_EQ(info["experts"].rfind(want_experts, 0), 0u) << info["experts"];
    const std::string gating = "softmax, top-" + std::to_string(s.K) + " of " + std::to_string(s.NE) +
                               (s.arch == "phimoe" ? ", weights normalised to sum 1" : ", weights not normalised");
    EXPECT_EQ(info["expert gating"], gating);
    if (s.arch == "qwen2moe") EXPECT_NE(info["experts"].find("shared expert width 48"), std::string::npos);
    // The CLI shows them.
    const auto r = test::run_cli({"info", m.path});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(gating), std::string::npos) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Tiny, MoeArch, ::testing::Values(qwen2moe_spec(), olmoe_spec(), phimoe_spec()),
                         [](const auto& info) { return info.param.arch; });

TEST(MoeArchKeys, WeightNormAndGatingKeysOverrideTheDefaults) {
    // olmoe with expert_weights_norm = true: its weights renormalised (a changed forward pass).
    Spec s = olmoe_spec();
    const Tiny plain = build(s, "olmoe_plain.gguf");
    const Tiny normed = build(s, "olmoe_norm.gguf", [](GGUFWriter& w) {
        w.set("olmoe.expert_weights_norm", GGUFValue::boolean(true));
    });
    auto model = Model::load(normed.path);
    bool found = false;
    for (auto& [k, v] : model->arch_info()) found |= k == "expert gating" && v.find("normalised to sum 1") != std::string::npos;
    EXPECT_TRUE(found);
    const auto a = run(plain.path, GGMLType::F32), b = run(normed.path, GGMLType::F32);
    double d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, double(std::fabs(a[i] - b[i])));
    EXPECT_GT(d, 1e-2);
}

// ---- slm synth -------------------------------------------------------------------------------

SynthConfig small_synth(const std::string& arch, GGMLType type) {
    SynthConfig c;
    c.name = "small-" + arch;
    c.arch = arch;
    c.n_ctx_train = 256;
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = arch == "olmoe" ? 4 : 2;
    c.n_ff = 64;
    c.n_expert = 8;
    c.n_expert_used = arch == "olmoe" ? 3 : 2;
    c.n_ff_exp = arch == "qwen2moe" ? 32 : 0;
    c.n_ff_shexp = arch == "qwen2moe" ? 96 : 0;
    c.type = type;
    c.pure = true;
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");
    c.n_threads = 2;
    return c;
}

TEST(MoeSynth, SmallModelsLoadAndRun) {
    for (const char* arch : {"qwen2moe", "olmoe", "phimoe"}) {
        for (GGMLType type : {GGMLType::F32, GGMLType::Q8_0, GGMLType::Q4_0}) {
            SCOPED_TRACE(std::string(arch) + " " + type_name(type));
            const SynthConfig c = small_synth(arch, type);
            const std::string path = test::temp_dir() + "/synth_" + arch + "_" + type_name(type) + ".gguf";
            const SynthResult r = synthesize(c, path);
            auto model = Model::load(path);
            EXPECT_EQ(model->hparams().arch, arch);
            EXPECT_EQ(model->hparams().n_expert, 8u);
            EXPECT_EQ(model->hparams().n_expert_used, c.n_expert_used);
            EXPECT_EQ(model->hparams().n_ff_exp, arch == std::string("qwen2moe") ? 32u : 64u);
            EXPECT_EQ(model->hparams().n_ff_shexp, arch == std::string("qwen2moe") ? 96u : 0u);
            for (const SynthTensor& t : r.tensors)
                if (t.name.find("ffn_gate_inp") != std::string::npos) EXPECT_EQ(t.type, GGMLType::F32) << t.name;
            SessionOptions so;
            so.n_ctx = 64;
            so.n_threads = 2;
            Session s(model, so);
            s.eval(prompt(), true);
            const auto l = s.logits();
            float lo = l[0], hi = l[0];
            for (float v : l) {
                ASSERT_TRUE(std::isfinite(v));
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
            EXPECT_GT(hi - lo, 1.0f);  // a real spread of logits, not a degenerate model
        }
    }
}

TEST(MoeSynth, PresetsAndBadConfigs) {
    for (const char* name : {"qwen1.5-moe-a2.7b", "olmoe-1b-7b", "phi3.5-moe"}) {
        const SynthConfig c = synth_preset(name);
        EXPECT_TRUE(synth_arch_supported(c.arch)) << name;
        EXPECT_NO_THROW(synth_tensors(c)) << name;
    }
    auto message = [](const SynthConfig& c) -> std::string {
        try {
            synth_tensors(c);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    SynthConfig c = small_synth("olmoe", GGMLType::F32);
    c.n_expert_used = 9;
    EXPECT_NE(message(c).find("n_expert_used (--n-expert-used) = 9 is out of range [1, 8]"), std::string::npos) << message(c);
    c = small_synth("phimoe", GGMLType::F32);
    c.n_expert = 0;
    EXPECT_NE(message(c).find("n_expert (--n-expert) = 0"), std::string::npos) << message(c);
    c = small_synth("qwen2moe", GGMLType::F32);
    c.tied_embeddings = true;
    EXPECT_NE(message(c).find("untied"), std::string::npos) << message(c);
}

// The layout of llama.cpp's own tiny qwen2moe (../shared/reference/archs/qwen2moe): the same keys
// with the same types and values, the same tensors with the same shapes and types.
TEST(MoeSynth, MatchesLlamaCppReferenceLayout) {
    SLM_REQUIRE_SHARED();
    for (const auto& [file, type] : {std::pair{"qwen2moe.f32.gguf", GGMLType::F32}, std::pair{"qwen2moe.q4_k.gguf", GGMLType::Q4_K}}) {
        SCOPED_TRACE(file);
        const std::string ref_path = test::shared_path(std::string("reference/archs/qwen2moe/") + file);
        const GGUFFile ref = GGUFFile::open(ref_path);
        SynthConfig c;
        c.name = "ref";
        c.arch = "qwen2moe";
        c.n_ctx_train = 512;
        c.n_embd = 256;
        c.n_layer = 2;
        c.n_head = 4;
        c.n_head_kv = 2;
        c.n_ff = 256;
        c.n_expert = 4;
        c.n_expert_used = 2;
        c.n_ff_exp = 128;
        c.n_ff_shexp = 256;
        c.rope_freq_base = 1e6f;
        c.rms_eps = 1e-6f;
        c.tokenizer = ref_path;
        c.type = type;
        c.pure = true;
        c.n_threads = 2;
        const std::string path = test::temp_dir() + "/ref_" + file;
        synthesize(c, path);
        const GGUFFile ours = GGUFFile::open(path);
        for (const auto& [k, v] : ref.kv()) {
            if (k == "general.name") continue;
            const GGUFValue* o = ours.find(k);
            ASSERT_NE(o, nullptr) << k;
            EXPECT_TRUE(*o == v) << k << ": " << o->to_string() << " vs " << v.to_string();
        }
        std::map<std::string, std::pair<std::vector<int64_t>, GGMLType>> want;
        for (const auto& t : ref.tensors()) want[t.name] = {t.shape(), t.type};
        ASSERT_EQ(ours.tensors().size(), want.size());
        for (const auto& t : ours.tensors()) {
            ASSERT_TRUE(want.count(t.name)) << t.name;
            EXPECT_EQ(t.shape(), want[t.name].first) << t.name;
            EXPECT_EQ(t.type, want[t.name].second) << t.name;
        }
    }
}

TEST(MoeSynth, Cli) {
    const std::string path = test::temp_dir() + "/cli_olmoe.gguf";
    const auto r = test::run_cli({"synth", "--arch", "olmoe", "--n-embd", "64", "--n-layer", "1", "--n-head", "4",
                                  "--n-head-kv", "4", "--n-ff", "32", "--n-expert", "6", "--n-expert-used", "2",
                                  "--type", "f32", "--tokenizer", test::model_path("stories260K/stories260K.gguf"),
                                  "-o", path});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto model = Model::load(path);
    EXPECT_EQ(model->hparams().n_expert, 6u);
    EXPECT_EQ(model->hparams().n_expert_used, 2u);
    const auto bad = test::run_cli({"synth", "--arch", "olmoe", "--n-expert", "2", "--n-expert-used", "3", "-o",
                                    test::temp_dir() + "/never.gguf"});
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("--n-expert-used"), std::string::npos) << bad.err;
}

// ---- bad files -------------------------------------------------------------------------------

std::string load_error(const std::string& path) {
    try {
        Model::load(path);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error loading " << path;
    return "";
}

TEST(MoeArchErrors, BadExpertCountsAndShapes) {
    for (const Spec& base : {qwen2moe_spec(), olmoe_spec(), phimoe_spec()}) {
        const std::string a = base.arch;
        // expert_used_count > expert_count
        Spec s = base;
        std::string e = load_error(build(s, a + "_k.gguf", [&](GGUFWriter& w) {
            w.set(a + ".expert_used_count", GGUFValue::u32(s.NE + 1));
        }).path);
        EXPECT_NE(e.find(a + ".expert_used_count' = " + std::to_string(s.NE + 1) + " is out of range [1, " +
                         std::to_string(s.NE) + "]"), std::string::npos) << e;
        // zero experts
        e = load_error(build(s, a + "_0.gguf", [&](GGUFWriter& w) { w.set(a + ".expert_count", GGUFValue::u32(0)); }).path);
        EXPECT_NE(e.find(a + ".expert_count' = 0 is out of range"), std::string::npos) << e;
        // no expert count at all
        e = load_error(build(s, a + "_none.gguf", [&](GGUFWriter& w) { w.remove(a + ".expert_count"); }).path);
        EXPECT_NE(e.find(a + ".expert_count' not found"), std::string::npos) << e;
        // an expert tensor of the wrong shape: the file says 1 more expert than its tensors hold
        e = load_error(build(s, a + "_shape.gguf", [&](GGUFWriter& w) {
            w.set(a + ".expert_count", GGUFValue::u32(s.NE - 1));
        }).path);
        EXPECT_NE(e.find("tensor 'blk.0.ffn_gate_inp.weight' has shape [64, " + std::to_string(s.NE) + "], expected [64, " +
                         std::to_string(s.NE - 1) + "]"), std::string::npos) << e;
        // a missing expert tensor
        e = load_error(build(s, a + "_missing.gguf", nullptr, [](const std::string& n) {
            return n == "blk.1.ffn_down_exps.weight";
        }).path);
        EXPECT_NE(e.find("tensor 'blk.1.ffn_down_exps.weight' not found"), std::string::npos) << e;
    }
    // qwen2moe: experts narrower than the key says
    Spec s = qwen2moe_spec();
    std::string e = load_error(build(s, "q_width.gguf", [](GGUFWriter& w) {
        w.set("qwen2moe.expert_feed_forward_length", GGUFValue::u32(40));
    }).path);
    EXPECT_NE(e.find("'blk.0.ffn_gate_exps.weight' has shape [64, 32, 4], expected [64, 40, 4]"), std::string::npos) << e;
    // phimoe: LongRoPE factors are refused by name
    s = phimoe_spec();
    e = load_error(build(s, "p_rope.gguf", [](GGUFWriter& w) {
        static std::vector<float> f(8, 1.0f);
        w.add_tensor("rope_factors_long.weight", GGMLType::F32, {8}, f.data(), f.size() * 4);
    }).path);
    EXPECT_NE(e.find("rope_factors_long/short.weight) are not supported"), std::string::npos) << e;
}

} // namespace
