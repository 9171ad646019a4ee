// The mixture-of-experts block (src/models/moe.h): routing against a hand-written reference,
// the whole FFN against a double-precision reference, batched == one token at a time, only the
// chosen experts read, and the errors of bad expert hyper-parameters and tensors.
#include "core/thread_pool.h"
#include "kernels/matmul.h"
#include "models/moe.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

using namespace slm;

namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// A tensor of `type` holding `vals` (F32 values quantized with the reference quantizer), kept
// alive by the Weights that made it.
struct Weights {
    std::vector<std::vector<uint8_t>> bufs;
    ModelTensor make(const std::string& name, GGMLType type, std::vector<int64_t> ne, const std::vector<float>& vals) {
        size_t rows = 1;
        for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
        const size_t rs = row_size(type, ne[0]);
        bufs.emplace_back(rs * rows);
        std::vector<uint8_t>& b = bufs.back();
        for (size_t r = 0; r < rows; ++r) kernels::quantize_row_ref(vals.data() + r * ne[0], type, ne[0], b.data() + r * rs);
        ModelTensor t;
        t.name = name;
        t.data = b.data();
        t.type = type;
        for (size_t i = 0; i < ne.size(); ++i) t.ne[i] = ne[i];
        t.nbytes = b.size();
        return t;
    }
    // The values the kernels see (after quantization).
    static std::vector<float> values(const ModelTensor& t) {
        const int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
        std::vector<float> out(size_t(rows) * t.ne[0]);
        const size_t rs = row_size(t.type, t.ne[0]);
        for (int64_t r = 0; r < rows; ++r)
            kernels::dequantize_row(static_cast<const uint8_t*>(t.data) + r * rs, t.type, t.ne[0], out.data() + r * t.ne[0]);
        return out;
    }
};

struct Shape {
    int64_t E, F, NE, K, FS;  // FS = 0: no shared expert
};

struct Fixture {
    Weights w;
    moe::MoeLayer L;
    moe::MoeParams p;
    Fixture(const Shape& s, GGMLType type, uint32_t seed, bool shexp_gate = true) {
        std::mt19937 rng(seed);
        p.n_expert = uint32_t(s.NE);
        p.n_expert_used = uint32_t(s.K);
        L.gate_inp = w.make("gate_inp", GGMLType::F32, {s.E, s.NE}, randn(s.E * s.NE, rng, 0.5f));
        L.gate_exps = w.make("gate_exps", type, {s.E, s.F, s.NE}, randn(s.E * s.F * s.NE, rng, 0.3f));
        L.up_exps = w.make("up_exps", type, {s.E, s.F, s.NE}, randn(s.E * s.F * s.NE, rng, 0.3f));
        L.down_exps = w.make("down_exps", type, {s.F, s.E, s.NE}, randn(s.E * s.F * s.NE, rng, 0.3f));
        for (int64_t e = 0; e < s.NE; ++e) {
            L.gate_e.push_back(moe::expert_view(L.gate_exps, e));
            L.up_e.push_back(moe::expert_view(L.up_exps, e));
            L.down_e.push_back(moe::expert_view(L.down_exps, e));
        }
        if (s.FS > 0) {
            if (shexp_gate) L.gate_inp_shexp = w.make("gate_inp_shexp", GGMLType::F32, {s.E}, randn(s.E, rng, 0.5f));
            L.gate_shexp = w.make("gate_shexp", type, {s.E, s.FS}, randn(s.E * s.FS, rng, 0.3f));
            L.up_shexp = w.make("up_shexp", type, {s.E, s.FS}, randn(s.E * s.FS, rng, 0.3f));
            L.down_shexp = w.make("down_shexp", type, {s.FS, s.E}, randn(s.E * s.FS, rng, 0.3f));
        }
    }
};

SessionState make_state(uint32_t n_batch, int threads) {
    SessionState st;
    st.n_batch = n_batch;
    st.pool = std::make_unique<ThreadPool>(threads);
    return st;
}

// ---- hand-written references -------------------------------------------------------------

// Probabilities, then the k largest, each time the first (lowest index) of the largest left.
void ref_route(const moe::MoeParams& p, const float* l, std::vector<int>& ids, std::vector<double>& w) {
    const uint32_t NE = p.n_expert, K = p.n_expert_used;
    std::vector<double> pr(NE);
    if (p.gating == moe::Gating::Softmax) {
        double mx = -1e300, sum = 0;
        for (uint32_t i = 0; i < NE; ++i) mx = std::max(mx, double(l[i]));
        for (uint32_t i = 0; i < NE; ++i) sum += pr[i] = std::exp(double(l[i]) - mx);
        for (double& x : pr) x /= sum;
    } else {
        for (uint32_t i = 0; i < NE; ++i) pr[i] = 1.0 / (1.0 + std::exp(-double(l[i])));
    }
    std::vector<bool> used(NE, false);
    ids.clear();
    w.clear();
    for (uint32_t s = 0; s < K; ++s) {
        int best = -1;
        for (uint32_t i = 0; i < NE; ++i)
            if (!used[i] && (best < 0 || pr[i] > pr[best])) best = int(i);
        used[best] = true;
        ids.push_back(best);
        w.push_back(pr[best]);
    }
    if (p.norm_w) {
        double sum = 0;
        for (double x : w) sum += x;
        for (double& x : w) x /= sum;
    }
    if (p.w_scale != 0.0f && p.w_scale != 1.0f)
        for (double& x : w) x *= p.w_scale;
}

std::vector<double> matvec(const std::vector<float>& W, int64_t n_in, int64_t n_out, int64_t offset_rows,
                           const double* x) {
    std::vector<double> y(n_out, 0.0);
    for (int64_t o = 0; o < n_out; ++o)
        for (int64_t i = 0; i < n_in; ++i) y[o] += double(W[(offset_rows + o) * n_in + i]) * x[i];
    return y;
}

std::vector<double> swiglu_ffn(const std::vector<float>& G, const std::vector<float>& U, const std::vector<float>& D,
                               int64_t E, int64_t F, int64_t e, const double* x) {
    std::vector<double> g = matvec(G, E, F, e * F, x), u = matvec(U, E, F, e * F, x);
    for (int64_t i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
    return matvec(D, F, E, e * E, g.data());
}

// The MoE FFN of one token in double precision from the (dequantized) weights.
std::vector<double> ref_ffn(const Fixture& fx, const float* x) {
    const moe::MoeLayer& L = fx.L;
    const int64_t E = L.n_embd(), F = L.n_ff_exp(), NE = fx.p.n_expert;
    std::vector<double> xd(x, x + E);
    const std::vector<float> R = Weights::values(L.gate_inp);
    std::vector<double> ld = matvec(R, E, NE, 0, xd.data());
    std::vector<float> lf(ld.begin(), ld.end());
    std::vector<int> ids;
    std::vector<double> w;
    ref_route(fx.p, lf.data(), ids, w);
    const auto G = Weights::values(L.gate_exps), U = Weights::values(L.up_exps), D = Weights::values(L.down_exps);
    std::vector<double> out(E, 0.0);
    for (size_t s = 0; s < ids.size(); ++s) {
        std::vector<double> y = swiglu_ffn(G, U, D, E, F, ids[s], xd.data());
        for (int64_t i = 0; i < E; ++i) out[i] += w[s] * y[i];
    }
    if (L.has_shexp()) {
        const int64_t FS = L.n_ff_shexp();
        std::vector<double> y = swiglu_ffn(Weights::values(L.gate_shexp), Weights::values(L.up_shexp),
                                           Weights::values(L.down_shexp), E, FS, 0, xd.data());
        double gate = 1.0;
        if (L.gate_inp_shexp.present()) {
            const std::vector<double> v = matvec(Weights::values(L.gate_inp_shexp), E, 1, 0, xd.data());
            gate = 1.0 / (1.0 + std::exp(-v[0]));
        }
        for (int64_t i = 0; i < E; ++i) out[i] += gate * y[i];
    }
    return out;
}

// ---- routing -------------------------------------------------------------------------------

TEST(MoeRoute, MatchesReference) {
    std::mt19937 rng(11);
    struct Case {
        uint32_t NE, K;
        moe::Gating g;
        bool norm;
        float scale;
    };
    for (const Case& c : {Case{4, 2, moe::Gating::Softmax, false, 0}, Case{8, 2, moe::Gating::Softmax, true, 0},
                          Case{16, 2, moe::Gating::Softmax, true, 2.5f}, Case{64, 8, moe::Gating::Softmax, false, 0},
                          Case{60, 4, moe::Gating::Sigmoid, true, 0}, Case{5, 5, moe::Gating::Sigmoid, false, 1.5f},
                          Case{1, 1, moe::Gating::Softmax, false, 0}, Case{3, 1, moe::Gating::Sigmoid, false, 0}}) {
        moe::MoeParams p{c.NE, c.K, c.g, c.norm, c.scale};
        const uint32_t n = 7;
        std::vector<float> logits = randn(size_t(n) * c.NE, rng, 2.0f), probs(logits.size());
        std::vector<int32_t> ids(n * c.K), order(c.NE);
        std::vector<float> w(n * c.K);
        moe::route(p, logits.data(), probs.data(), n, ids.data(), w.data(), order.data());
        for (uint32_t t = 0; t < n; ++t) {
            std::vector<int> rid;
            std::vector<double> rw;
            ref_route(p, logits.data() + t * c.NE, rid, rw);
            double psum = 0;
            for (uint32_t i = 0; i < c.NE; ++i) psum += probs[t * c.NE + i];
            if (c.g == moe::Gating::Softmax) EXPECT_NEAR(psum, 1.0, 1e-5);
            for (uint32_t s = 0; s < c.K; ++s) {
                EXPECT_EQ(ids[t * c.K + s], rid[s]) << c.NE << " experts, token " << t << " slot " << s;
                EXPECT_NEAR(w[t * c.K + s], rw[s], 2e-6 * std::max(1.0, std::fabs(rw[s])));
            }
        }
    }
}

TEST(MoeRoute, TiesTakeTheLowestIndexFirstUpTo16Experts) {
    // ggml's CPU argsort is std::sort with a strict comparison; for at most 16 elements that is an
    // insertion sort, which keeps equal values in index order.
    moe::MoeParams p{8, 3, moe::Gating::Sigmoid, false, 0};
    const float l[8] = {0.5f, 2.0f, 1.0f, 2.0f, 2.0f, -1.0f, 1.0f, 0.0f};
    float probs[8];
    int32_t ids[3], order[8];
    float w[3];
    moe::route(p, l, probs, 1, ids, w, order);
    EXPECT_EQ(ids[0], 1);
    EXPECT_EQ(ids[1], 3);
    EXPECT_EQ(ids[2], 4);
    // All equal: the first k.
    moe::MoeParams p16{16, 4, moe::Gating::Softmax, true, 0};
    std::vector<float> same(16, 0.25f), pr(16);
    int32_t id4[4], ord16[16];
    float w4[4];
    moe::route(p16, same.data(), pr.data(), 1, id4, w4, ord16);
    for (int s = 0; s < 4; ++s) {
        EXPECT_EQ(id4[s], s);
        EXPECT_FLOAT_EQ(w4[s], 0.25f);  // normalised over the four chosen
    }
}

TEST(MoeRoute, TiesWithManyExpertsChooseTheLargestValues) {
    // Past 16 experts std::sort is not stable; whatever order it gives, the chosen values must be
    // the k largest, each expert once, in descending order.
    std::mt19937 rng(3);
    moe::MoeParams p{64, 8, moe::Gating::Sigmoid, false, 0};
    std::uniform_int_distribution<int> level(0, 5);
    for (int rep = 0; rep < 20; ++rep) {
        std::vector<float> l(64), pr(64), w(8);
        for (float& x : l) x = float(level(rng));
        std::vector<int32_t> ids(8), order(64);
        moe::route(p, l.data(), pr.data(), 1, ids.data(), w.data(), order.data());
        std::vector<float> sorted = l;
        std::sort(sorted.begin(), sorted.end(), std::greater<>());
        std::vector<int32_t> uniq = ids;
        std::sort(uniq.begin(), uniq.end());
        EXPECT_EQ(std::unique(uniq.begin(), uniq.end()), uniq.end());
        for (int s = 0; s < 8; ++s) EXPECT_EQ(l[ids[s]], sorted[s]);
    }
}

TEST(MoeRoute, NaNProbabilitiesDoNotBreakTheSort) {
    // A broken model's NaN router logits: no crash, and the finite ones are chosen first.
    moe::MoeParams p{40, 4, moe::Gating::Sigmoid, false, 0};
    std::vector<float> l(40, std::numeric_limits<float>::quiet_NaN()), pr(40), w(4);
    l[7] = 1.0f;
    l[30] = 2.0f;
    l[12] = -3.0f;
    std::vector<int32_t> ids(4), order(40);
    moe::route(p, l.data(), pr.data(), 1, ids.data(), w.data(), order.data());
    EXPECT_EQ(ids[0], 30);
    EXPECT_EQ(ids[1], 7);
    EXPECT_EQ(ids[2], 12);
    EXPECT_GE(ids[3], 0);
    EXPECT_LT(ids[3], 40);
}

// ---- the whole block -----------------------------------------------------------------------

void check_against_reference(const Shape& s, GGMLType type, double tol, bool shexp_gate = true) {
    Fixture fx(s, type, 1234 + uint32_t(s.E), shexp_gate);
    const uint32_t n = 9;
    std::mt19937 rng(77);
    std::vector<float> x = randn(size_t(n) * s.E, rng), out(size_t(n) * s.E);
    SessionState st = make_state(16, 2);
    moe::ffn(st, fx.L, fx.p, x.data(), out.data(), n);
    for (uint32_t t = 0; t < n; ++t) {
        const std::vector<double> ref = ref_ffn(fx, x.data() + t * s.E);
        double mx = 0, err = 0;
        for (int64_t i = 0; i < s.E; ++i) {
            mx = std::max(mx, std::fabs(ref[i]));
            err = std::max(err, std::fabs(ref[i] - out[t * s.E + i]));
        }
        EXPECT_LE(err, tol * std::max(mx, 1.0)) << type_name(type) << " E " << s.E << " token " << t;
    }
}

TEST(MoeFfn, MatchesDoubleReferenceF32) {
    check_against_reference({64, 32, 4, 2, 0}, GGMLType::F32, 1e-5);
    check_against_reference({64, 32, 4, 2, 48}, GGMLType::F32, 1e-5);        // shared expert, gated
    check_against_reference({64, 32, 4, 2, 48}, GGMLType::F32, 1e-5, false); // shared expert, ungated
    check_against_reference({37, 19, 5, 3, 0}, GGMLType::F32, 1e-5);         // odd sizes
    check_against_reference({32, 16, 20, 6, 0}, GGMLType::F32, 1e-5);        // > 16 experts
}

TEST(MoeFfn, MatchesDoubleReferenceQuantized) {
    // Activations are rounded to the weights' vec_dot_type (F16 / Q8_0): errors of ~1e-3 relative.
    check_against_reference({64, 32, 4, 2, 32}, GGMLType::F16, 5e-3);
    check_against_reference({64, 64, 8, 2, 0}, GGMLType::Q8_0, 2e-2);
    check_against_reference({256, 256, 4, 2, 256}, GGMLType::Q4_K, 5e-2);
}

TEST(MoeFfn, BatchedEqualsOneTokenAtATime) {
    for (GGMLType type : {GGMLType::F32, GGMLType::Q8_0, GGMLType::Q4_0}) {
        Fixture fx({64, 64, 6, 2, 64}, type, 5);
        const uint32_t n = 13;
        std::mt19937 rng(8);
        std::vector<float> x = randn(size_t(n) * 64, rng), batched(size_t(n) * 64), single(64);
        SessionState st = make_state(16, 2);
        moe::ffn(st, fx.L, fx.p, x.data(), batched.data(), n);
        for (uint32_t t = 0; t < n; ++t) {
            moe::ffn(st, fx.L, fx.p, x.data() + t * 64, single.data(), 1);
            // F32: bit for bit. Quantized: the multi-row gemm tiles of the kernels may sum the
            // blocks in another order than the one-row dot (a few ulp).
            for (int i = 0; i < 64; ++i) {
                if (type == GGMLType::F32)
                    ASSERT_EQ(single[i], batched[t * 64 + i]) << "token " << t << " i " << i;
                else
                    ASSERT_NEAR(single[i], batched[t * 64 + i], 1e-5f * std::max(1.0f, std::fabs(single[i])))
                        << type_name(type) << " token " << t << " i " << i;
            }
        }
    }
}

TEST(MoeFfn, ReadsOnlyTheChosenExperts) {
    // Poison every expert no token chooses: the output stays finite and unchanged.
    Fixture fx({32, 32, 8, 2, 0}, GGMLType::F32, 21);
    const uint32_t n = 2;
    std::mt19937 rng(4);
    std::vector<float> x = randn(size_t(n) * 32, rng), before(n * 32), after(n * 32);
    SessionState st = make_state(4, 2);
    moe::ffn(st, fx.L, fx.p, x.data(), before.data(), n);
    // Which experts were chosen (the router alone).
    std::vector<float> logits(n * 8), probs(n * 8), w(n * 2);
    kernels::mul_mat(fx.L.gate_inp.data, GGMLType::F32, 32, 8, x.data(), n, logits.data(), nullptr, st.mm_scratch);
    std::vector<int32_t> ids(n * 2), order(8);
    moe::route(fx.p, logits.data(), probs.data(), n, ids.data(), w.data(), order.data());
    int poisoned = 0;
    for (int e = 0; e < 8; ++e) {
        if (std::find(ids.begin(), ids.end(), e) != ids.end()) continue;
        ++poisoned;
        for (const ModelTensor* t : {&fx.L.gate_e[e], &fx.L.up_e[e], &fx.L.down_e[e]}) {
            float* d = const_cast<float*>(t->f32());
            std::fill(d, d + t->ne[0] * t->ne[1], std::numeric_limits<float>::quiet_NaN());
        }
    }
    ASSERT_GE(poisoned, 4);
    moe::ffn(st, fx.L, fx.p, x.data(), after.data(), n);
    for (size_t i = 0; i < after.size(); ++i) {
        ASSERT_TRUE(std::isfinite(after[i]));
        ASSERT_EQ(after[i], before[i]);
    }
}

TEST(MoeFfn, ExpertViewsAreTheSlices) {
    Fixture fx({32, 64, 3, 1, 0}, GGMLType::Q8_0, 2);
    const size_t bytes = row_size(GGMLType::Q8_0, 32) * 64;
    for (int e = 0; e < 3; ++e) {
        const ModelTensor& v = fx.L.up_e[e];
        EXPECT_EQ(v.data, static_cast<const uint8_t*>(fx.L.up_exps.data) + e * bytes);
        EXPECT_EQ(v.ne[0], 32);
        EXPECT_EQ(v.ne[1], 64);
        EXPECT_EQ(v.ne[2], 1);
        EXPECT_EQ(v.nbytes, bytes);
    }
}

// ---- bad inputs ----------------------------------------------------------------------------

struct File {
    GGUFWriter w;
    std::vector<std::vector<float>> keep;
    std::vector<uint8_t> bytes;
    File() {
        w.set("general.architecture", GGUFValue::string("qwen2moe"));
    }
    void tensor(const std::string& name, std::vector<int64_t> ne) {
        size_t n = 1;
        for (int64_t d : ne) n *= size_t(d);
        keep.emplace_back(n, 0.0f);
        w.add_tensor(name, GGMLType::F32, ne, keep.back().data(), n * 4);
    }
    GGUFFile parse() {
        bytes = w.to_bytes();
        return GGUFFile::parse(bytes.data(), bytes.size(), "test.gguf");
    }
};

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error";
    return "";
}

TEST(MoeErrors, ExpertCounts) {
    auto hp_error = [](uint32_t ne, uint32_t used, bool have_count = true) {
        File f;
        if (have_count) f.w.set("qwen2moe.expert_count", GGUFValue::u32(ne));
        f.w.set("qwen2moe.expert_used_count", GGUFValue::u32(used));
        GGUFFile g = f.parse();
        HParams hp;
        hp.arch = "qwen2moe";
        return error_of([&] { moe::read_hparams(g, hp, 16); });
    };
    EXPECT_NE(hp_error(4, 5).find("expert_used_count' = 5 is out of range [1, 4]"), std::string::npos) << hp_error(4, 5);
    EXPECT_NE(hp_error(0, 1).find("expert_count' = 0"), std::string::npos);
    EXPECT_NE(hp_error(4, 0).find("expert_used_count' = 0"), std::string::npos);
    EXPECT_NE(hp_error(4, 2, false).find("qwen2moe.expert_count' not found"), std::string::npos);
    // And a good one.
    File f;
    f.w.set("qwen2moe.expert_count", GGUFValue::u32(60));
    f.w.set("qwen2moe.expert_used_count", GGUFValue::u32(4));
    f.w.set("qwen2moe.expert_shared_feed_forward_length", GGUFValue::u32(5632));
    GGUFFile g = f.parse();
    HParams hp;
    hp.arch = "qwen2moe";
    moe::read_hparams(g, hp, 1408);
    EXPECT_EQ(hp.n_expert, 60u);
    EXPECT_EQ(hp.n_expert_used, 4u);
    EXPECT_EQ(hp.n_ff_exp, 1408u);
    EXPECT_EQ(hp.n_ff_shexp, 5632u);
}

TEST(MoeErrors, RoutingKeys) {
    File f;
    f.w.set("qwen2moe.expert_gating_func", GGUFValue::u32(3));
    GGUFFile g = f.parse();
    HParams hp;
    hp.arch = "qwen2moe";
    EXPECT_NE(error_of([&] { moe::read_params(g, hp, {}); }).find("expert_gating_func' = 3 is not supported"),
              std::string::npos);
    File f2;
    f2.w.set("qwen2moe.expert_gating_func", GGUFValue::u32(2));
    f2.w.set("qwen2moe.expert_weights_norm", GGUFValue::boolean(true));
    f2.w.set("qwen2moe.expert_weights_scale", GGUFValue::f32(2.5f));
    GGUFFile g2 = f2.parse();
    const moe::MoeParams p = moe::read_params(g2, hp, {});
    EXPECT_EQ(p.gating, moe::Gating::Sigmoid);
    EXPECT_TRUE(p.norm_w);
    EXPECT_EQ(p.w_scale, 2.5f);
}

TEST(MoeErrors, ExpertTensorShapes) {
    moe::MoeParams p{4, 2, moe::Gating::Softmax, false, 0};
    auto load = [&](const std::function<void(File&)>& build, int64_t n_ff_shexp = 0) {
        File f;
        build(f);
        GGUFFile g = f.parse();
        return error_of([&] { moe::load_layer(g, "blk.0.", 32, p, 16, n_ff_shexp); });
    };
    auto good = [](File& f, const std::string& skip) {
        if (skip != "inp") f.tensor("blk.0.ffn_gate_inp.weight", {32, 4});
        if (skip != "gate") f.tensor("blk.0.ffn_gate_exps.weight", {32, 16, 4});
        if (skip != "up") f.tensor("blk.0.ffn_up_exps.weight", {32, 16, 4});
        if (skip != "down") f.tensor("blk.0.ffn_down_exps.weight", {16, 32, 4});
    };
    std::string e = load([&](File& f) {
        good(f, "down");
        f.tensor("blk.0.ffn_down_exps.weight", {16, 32, 3});
    });
    EXPECT_NE(e.find("'blk.0.ffn_down_exps.weight' has shape [16, 32, 3], expected [16, 32, 4]"), std::string::npos) << e;
    e = load([&](File& f) {
        good(f, "up");
        f.tensor("blk.0.ffn_up_exps.weight", {32, 17, 4});
    });
    EXPECT_NE(e.find("'blk.0.ffn_up_exps.weight' has shape [32, 17, 4]"), std::string::npos) << e;
    e = load([&](File& f) {
        good(f, "inp");
        f.tensor("blk.0.ffn_gate_inp.weight", {32, 5});
    });
    EXPECT_NE(e.find("'blk.0.ffn_gate_inp.weight' has shape [32, 5]"), std::string::npos) << e;
    e = load([&](File& f) { good(f, "gate"); });
    EXPECT_NE(e.find("'blk.0.ffn_gate_exps.weight' not found"), std::string::npos) << e;
    e = load([&](File& f) { good(f, ""); }, 24);
    EXPECT_NE(e.find("'blk.0.ffn_gate_shexp.weight' not found"), std::string::npos) << e;
    moe::MoeParams bad{4, 5, moe::Gating::Softmax, false, 0};
    File f;
    good(f, "");
    GGUFFile g = f.parse();
    e = error_of([&] { moe::load_layer(g, "blk.0.", 32, bad, 16, 0); });
    EXPECT_NE(e.find("4 experts with 5 used per token"), std::string::npos) << e;
    EXPECT_NO_THROW(moe::load_layer(g, "blk.0.", 32, p, 16, 0));
}

} // namespace
