// State-space models (Mamba, Jamba): the recurrent state carried across forward calls, the
// session rules it brings (reset, no partial truncation, no allocation per decoded token), a
// tiny Mamba checked against a straightforward double-precision forward pass written here,
// and the errors bad SSM hyper-parameters get.
#include "core/fp16.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <new>
#include <random>

// Counts heap allocations so a test can assert that decoding a token allocates nothing.
static std::atomic<long> g_allocs{0};
void* operator new(size_t n) {
    ++g_allocs;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

using namespace slm;

namespace {

// ---- a tiny random Mamba, written here --------------------------------------------------------

struct TinyMamba {
    uint32_t n_embd = 8, n_layer = 2, d_inner = 16, d_state = 4, d_conv = 3, dt_rank = 2;
    float eps = 1e-5f;
    bool bcdt_rms = false;  // Falcon-Mamba's mamba.ssm.dt_b_c_rms
    uint32_t n_vocab = 0;
    // Tensors by name: ggml order shape and values (element (i0, i1) at i1 * ne[0] + i0).
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> t;

    explicit TinyMamba(uint32_t seed = 7) {
        GGUFFile tok = GGUFFile::open(test::model_path("stories260K/stories260K.gguf"));
        n_vocab = static_cast<uint32_t>(tok.find("tokenizer.ggml.tokens")->n);
        std::mt19937 rng(seed);
        auto normal = [&](std::vector<int64_t> ne, float mean, float std) {
            std::normal_distribution<float> d(mean, std);
            size_t n = 1;
            for (int64_t x : ne) n *= static_cast<size_t>(x);
            std::vector<float> v(n);
            for (float& x : v) x = d(rng);
            return std::make_pair(ne, v);
        };
        const int64_t E = n_embd, Di = d_inner, S = d_state, R = dt_rank, K = d_conv;
        t["token_embd.weight"] = normal({E, n_vocab}, 0, 0.5f);
        t["output_norm.weight"] = normal({E}, 1, 0.1f);
        for (uint32_t il = 0; il < n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            t[p + "attn_norm.weight"] = normal({E}, 1, 0.1f);
            t[p + "ssm_in.weight"] = normal({E, 2 * Di}, 0, 0.4f);
            t[p + "ssm_conv1d.weight"] = normal({K, Di}, 0, 0.5f);
            t[p + "ssm_conv1d.bias"] = normal({Di}, 0, 0.1f);
            t[p + "ssm_x.weight"] = normal({Di, R + 2 * S}, 0, 0.4f);
            t[p + "ssm_dt.weight"] = normal({R, Di}, 0, 0.5f);
            t[p + "ssm_dt.bias"] = normal({Di}, -1, 0.5f);
            auto a = normal({S, Di}, 0, 0.1f);  // A = -(s + 1) exp(N(0, 0.1)), as the README's models
            for (int64_t c = 0; c < Di; ++c)
                for (int64_t s = 0; s < S; ++s) a.second[c * S + s] = -float(s + 1) * std::exp(a.second[c * S + s]);
            t[p + "ssm_a"] = a;
            t[p + "ssm_d"] = normal({Di}, 1, 0.1f);
            t[p + "ssm_out.weight"] = normal({Di, E}, 0, 0.4f);
        }
    }

    // Writes the model; `edit` may change keys or tensors on the way (tests of bad files).
    // Tensors named in `f16` are stored as F16 instead of F32.
    std::string write(const std::string& name, const std::function<void(GGUFWriter&)>& edit = nullptr,
                      const std::vector<std::string>& f16 = {}) const {
        GGUFFile tok = GGUFFile::open(test::model_path("stories260K/stories260K.gguf"));
        GGUFWriter w;
        w.set("general.architecture", GGUFValue::string("mamba"));
        w.set("general.name", GGUFValue::string("tiny"));
        w.set("mamba.context_length", GGUFValue::u32(64));
        w.set("mamba.embedding_length", GGUFValue::u32(n_embd));
        w.set("mamba.block_count", GGUFValue::u32(n_layer));
        w.set("mamba.feed_forward_length", GGUFValue::u32(0));
        w.set("mamba.attention.head_count", GGUFValue::u32(0));
        w.set("mamba.attention.layer_norm_rms_epsilon", GGUFValue::f32(eps));
        w.set("mamba.ssm.conv_kernel", GGUFValue::u32(d_conv));
        w.set("mamba.ssm.inner_size", GGUFValue::u32(d_inner));
        w.set("mamba.ssm.state_size", GGUFValue::u32(d_state));
        w.set("mamba.ssm.time_step_rank", GGUFValue::u32(dt_rank));
        if (bcdt_rms) w.set("mamba.ssm.dt_b_c_rms", GGUFValue::boolean(true));
        for (const auto& [k, v] : tok.kv())
            if (k.rfind("tokenizer.", 0) == 0) w.set(k, v);
        for (const auto& [n, sv] : t) {
            if (std::find(f16.begin(), f16.end(), n) != f16.end()) {
                std::vector<uint8_t> bytes(sv.second.size() * 2);
                for (size_t i = 0; i < sv.second.size(); ++i) {
                    const uint16_t h = fp16::float_to_half(sv.second[i]);
                    std::memcpy(bytes.data() + 2 * i, &h, 2);
                }
                w.add_tensor_copy(n, GGMLType::F16, sv.first, std::move(bytes));
                continue;
            }
            std::vector<uint8_t> bytes(sv.second.size() * sizeof(float));
            std::memcpy(bytes.data(), sv.second.data(), bytes.size());
            w.add_tensor_copy(n, GGMLType::F32, sv.first, std::move(bytes));
        }
        if (edit) edit(w);
        const std::string path = test::temp_dir() + "/" + name;
        w.write(path);
        return path;
    }

    const std::vector<float>& v(const std::string& name) const { return t.at(name).second; }

    // The model's logits for every position, computed as the Mamba paper writes it (Alg. 2),
    // in double, one token at a time.
    std::vector<double> reference(const std::vector<int32_t>& toks) const {
        const size_t E = n_embd, Di = d_inner, S = d_state, R = dt_rank, K = d_conv;
        auto rmsnorm = [&](const std::vector<double>& x, const float* w) {
            double ss = 0;
            for (double a : x) ss += a * a;
            const double r = 1.0 / std::sqrt(ss / double(x.size()) + eps);
            std::vector<double> y(x.size());
            for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * w[i];
            return y;
        };
        auto mat = [](const std::vector<float>& W, const std::vector<double>& x, size_t n_out) {
            std::vector<double> y(n_out, 0.0);
            for (size_t o = 0; o < n_out; ++o)
                for (size_t i = 0; i < x.size(); ++i) y[o] += double(W[o * x.size() + i]) * x[i];
            return y;
        };
        auto silu = [](double x) { return x / (1.0 + std::exp(-x)); };
        // per layer: the previous K - 1 inputs of each channel (oldest first) and the scan states
        std::vector<std::vector<double>> conv(n_layer, std::vector<double>((K - 1) * Di, 0.0));
        std::vector<std::vector<double>> h(n_layer, std::vector<double>(S * Di, 0.0));
        std::vector<double> out;
        const auto& emb = v("token_embd.weight");
        for (int32_t tok : toks) {
            std::vector<double> e(emb.begin() + tok * E, emb.begin() + (tok + 1) * E);
            for (uint32_t il = 0; il < n_layer; ++il) {
                const std::string p = "blk." + std::to_string(il) + ".";
                const auto u = rmsnorm(e, v(p + "attn_norm.weight").data());
                const auto xz = mat(v(p + "ssm_in.weight"), u, 2 * Di);
                std::vector<double> xc(Di);
                for (size_t c = 0; c < Di; ++c) {
                    double acc = v(p + "ssm_conv1d.bias")[c];
                    for (size_t k = 0; k < K; ++k) {
                        const double in = k + 1 < K ? conv[il][c * (K - 1) + k] : xz[c];
                        acc += in * v(p + "ssm_conv1d.weight")[c * K + k];
                    }
                    for (size_t k = 0; k + 1 < K; ++k)  // slide the window by one input
                        conv[il][c * (K - 1) + k] = k + 2 < K ? conv[il][c * (K - 1) + k + 1] : xz[c];
                    xc[c] = silu(acc);
                }
                auto xdb = mat(v(p + "ssm_x.weight"), xc, R + 2 * S);
                if (bcdt_rms) {  // unweighted RMSNorm of dt_in, B and C, each on its own
                    const std::vector<float> ones(std::max(R, S), 1.0f);
                    for (auto [b, len] : {std::pair{size_t(0), R}, {R, S}, {R + S, S}}) {
                        const auto nb = rmsnorm(std::vector<double>(xdb.begin() + b, xdb.begin() + b + len), ones.data());
                        std::copy(nb.begin(), nb.end(), xdb.begin() + b);
                    }
                }
                const std::vector<double> dt_in(xdb.begin(), xdb.begin() + R);
                auto dt = mat(v(p + "ssm_dt.weight"), dt_in, Di);
                std::vector<double> y(Di);
                for (size_t c = 0; c < Di; ++c) {
                    const double d = std::log1p(std::exp(dt[c] + v(p + "ssm_dt.bias")[c]));
                    double acc = 0;
                    for (size_t s = 0; s < S; ++s) {
                        double& hs = h[il][c * S + s];
                        hs = hs * std::exp(d * v(p + "ssm_a")[c * S + s]) + d * xdb[R + s] * xc[c];
                        acc += hs * xdb[R + S + s];
                    }
                    y[c] = (acc + v(p + "ssm_d")[c] * xc[c]) * silu(xz[Di + c]);
                }
                const auto o = mat(v(p + "ssm_out.weight"), y, E);
                for (size_t i = 0; i < E; ++i) e[i] += o[i];
            }
            const auto f = rmsnorm(e, v("output_norm.weight").data());
            const auto logits = mat(emb, f, n_vocab);  // tied output
            out.insert(out.end(), logits.begin(), logits.end());
        }
        return out;
    }
};

std::vector<int32_t> some_tokens(uint32_t n_vocab, size_t n) {
    std::vector<int32_t> t{1};
    for (size_t i = 1; i < n; ++i) t.push_back(static_cast<int32_t>((i * 131 + 7) % n_vocab));
    return t;
}

std::string load_error(const std::string& path) {
    try {
        Model::load(path);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error loading " << path;
    return "";
}

void expect_matches_reference(const TinyMamba& tm, const std::string& file) {
    auto m = Model::load(tm.write(file));
    EXPECT_EQ(m->hparams().ssm_d_conv, 3u);
    EXPECT_EQ(m->hparams().ssm_dt_rank, 2u);
    EXPECT_TRUE(m->hparams().tied_output);
    const auto toks = some_tokens(tm.n_vocab, 13);
    SessionOptions so;
    so.n_ctx = 64;
    Session s(m, so);
    EXPECT_TRUE(s.recurrent());
    s.eval(toks, true);
    const auto got = s.logits();
    const auto ref = tm.reference(toks);
    ASSERT_EQ(got.size(), ref.size());
    const size_t nv = tm.n_vocab;
    for (size_t r = 0; r < toks.size(); ++r) {
        double mx = 0, diff = 0;
        for (size_t i = 0; i < nv; ++i) {
            mx = std::max(mx, std::fabs(ref[r * nv + i]));
            diff = std::max(diff, std::fabs(ref[r * nv + i] - got[r * nv + i]));
        }
        EXPECT_LE(diff, 1e-5 * mx) << "row " << r;
        EXPECT_GT(mx, 0.5) << "row " << r;  // logits that are not all ~0
    }
}

TEST(Mamba, TinyModelMatchesDoublePrecisionReference) { expect_matches_reference(TinyMamba(), "tiny_mamba.gguf"); }

// Falcon-Mamba: the same architecture with unweighted RMSNorms of dt, B and C; without them
// the logits differ (the flag is not ignored).
TEST(Mamba, DtBCNormOfFalconMamba) {
    TinyMamba tm;
    tm.bcdt_rms = true;
    expect_matches_reference(tm, "tiny_falcon_mamba.gguf");
    auto a = Model::load(tm.write("tiny_falcon_mamba2.gguf"));
    auto b = Model::load(TinyMamba().write("tiny_mamba2.gguf"));
    Session sa(a, {.n_ctx = 16}), sb(b, {.n_ctx = 16});
    const auto toks = some_tokens(tm.n_vocab, 5);
    const float* la = sa.eval(toks);
    const float* lb = sb.eval(toks);
    double d = 0;
    for (uint32_t i = 0; i < tm.n_vocab; ++i) d = std::max(d, std::fabs(double(la[i]) - lb[i]));
    EXPECT_GT(d, 0.1);
    std::string all;
    for (const auto& [k, v] : a->arch_info()) all += k + ": " + v + "\n";
    EXPECT_NE(all.find("dt_b_c_rms"), std::string::npos) << all;
}

// Each part of the state matters: a model whose conv window or scan state were dropped between
// calls would still pass the one-pass comparison above; these compare across calls.
void expect_state_carried(const std::shared_ptr<const Model>& m, const std::vector<int32_t>& toks) {
    const size_t nv = m->hparams().n_vocab;
    SessionOptions so;
    so.n_ctx = 64;
    so.kv_type = GGMLType::F32;
    Session one(m, so);
    one.eval(toks, true);
    const std::vector<float> ref(one.logits().begin(), one.logits().end());
    auto close = [&](const float* a, const float* b, size_t n, const char* what, size_t at) {
        for (size_t i = 0; i < n; ++i)
            ASSERT_NEAR(a[i], b[i], 1e-5f * (1 + std::fabs(b[i]))) << what << ", token " << at << ", logit " << i;
    };

    Session step(m, so);  // token by token
    for (size_t i = 0; i < toks.size(); ++i) {
        const float* l = step.eval(std::span<const int32_t>(&toks[i], 1));
        close(l, ref.data() + i * nv, nv, "token by token", i);
    }

    SessionOptions chunked = so;
    chunked.n_batch = 3;  // the session splits the prompt into forward passes of 3
    Session ch(m, chunked);
    ch.eval(toks, true);
    close(ch.logits().data(), ref.data(), toks.size() * nv, "chunks of 3", 0);

    // Uneven calls: 2, then 5, then the rest.
    Session mixed(m, so);
    mixed.eval(std::span<const int32_t>(toks.data(), 2));
    mixed.eval(std::span<const int32_t>(toks.data() + 2, 5));
    const float* l = mixed.eval(std::span<const int32_t>(toks.data() + 7, toks.size() - 7));
    close(l, ref.data() + (toks.size() - 1) * nv, nv, "2 + 5 + rest", toks.size() - 1);

    // reset() forgets everything: the same input gives exactly the same logits again.
    const std::vector<float> first(l, l + nv);
    mixed.reset();
    EXPECT_EQ(mixed.n_past(), 0u);
    mixed.eval(std::span<const int32_t>(toks.data(), 2));
    mixed.eval(std::span<const int32_t>(toks.data() + 2, 5));
    l = mixed.eval(std::span<const int32_t>(toks.data() + 7, toks.size() - 7));
    for (size_t i = 0; i < nv; ++i) ASSERT_EQ(l[i], first[i]) << i;

    // A recurrent state cannot give back positions: partial truncation throws, naming why;
    // truncating to the current length or to 0 (a reset) is allowed.
    EXPECT_TRUE(mixed.recurrent());
    try {
        mixed.truncate(3);
        ADD_FAILURE() << "partial truncation of a recurrent state did not throw";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("recurrent"), std::string::npos) << e.what();
    }
    EXPECT_EQ(mixed.n_past(), toks.size());
    mixed.truncate(static_cast<uint32_t>(toks.size()));
    mixed.truncate(0);
    EXPECT_EQ(mixed.n_past(), 0u);
    l = mixed.eval(toks);
    close(l, ref.data() + (toks.size() - 1) * nv, nv, "after truncate(0)", toks.size() - 1);
}

void expect_decode_allocates_nothing(const std::shared_ptr<const Model>& m, const std::vector<int32_t>& toks) {
    for (int threads : {1, 2}) {
        SessionOptions so;
        so.n_ctx = 64;
        so.n_threads = threads;
        Session s(m, so);
        s.eval(toks);
        int32_t tok = 300;
        s.eval(std::span<const int32_t>(&tok, 1));  // warm-up: scratch buffers reach their size
        const long before = g_allocs.load();
        for (int i = 0; i < 20; ++i) s.eval(std::span<const int32_t>(&tok, 1));
        EXPECT_EQ(g_allocs.load() - before, 0) << threads << " threads";
    }
}

TEST(Mamba, StateIsCarriedAcrossCalls) {
    TinyMamba tm;
    auto m = Model::load(tm.write("tiny_mamba_state.gguf"));
    expect_state_carried(m, some_tokens(tm.n_vocab, 17));
}

TEST(Mamba, DecodeAllocatesNothing) {
    TinyMamba tm;
    auto m = Model::load(tm.write("tiny_mamba_alloc.gguf"));
    expect_decode_allocates_nothing(m, some_tokens(tm.n_vocab, 9));
}

TEST(Mamba, ReferenceModelStateIsCarriedAcrossCalls) {
    SLM_REQUIRE_SHARED();
    auto m = Model::load(test::shared_path("reference/archs/mamba/mamba.f32.gguf"));
    expect_state_carried(m, m->vocab().tokenize("Once upon a time, there was a little dog named Max.", true, true));
}

TEST(Mamba, InfoShowsTheStateSizes) {
    TinyMamba tm;
    auto m = Model::load(tm.write("tiny_mamba_info.gguf"));
    std::string all;
    for (const auto& [k, v] : m->arch_info()) all += k + ": " + v + "\n";
    EXPECT_NE(all.find("d_inner 16, d_state 4, d_conv 3, dt_rank 2"), std::string::npos) << all;
    EXPECT_NE(all.find("recurrent state"), std::string::npos) << all;
}

TEST(Mamba, BadHyperParametersAreRefused) {
    TinyMamba tm;
    struct Case {
        const char* what;
        std::function<void(GGUFWriter&)> edit;
        std::vector<std::string> expect;  // substrings of the message
    };
    const std::vector<Case> cases = {
        {"conv kernel 0", [](GGUFWriter& w) { w.set("mamba.ssm.conv_kernel", GGUFValue::u32(0)); },
         {"mamba.ssm.conv_kernel", "= 0", "out of range"}},
        {"conv kernel huge", [](GGUFWriter& w) { w.set("mamba.ssm.conv_kernel", GGUFValue::u32(1u << 30)); },
         {"mamba.ssm.conv_kernel", "1073741824", "out of range"}},
        {"dt_rank 0", [](GGUFWriter& w) { w.set("mamba.ssm.time_step_rank", GGUFValue::u32(0)); },
         {"mamba.ssm.time_step_rank", "= 0"}},
        {"state size missing", [](GGUFWriter& w) { w.remove("mamba.ssm.state_size"); },
         {"mamba.ssm.state_size", "not found"}},
        {"inner size not the tensors'", [](GGUFWriter& w) { w.set("mamba.ssm.inner_size", GGUFValue::u32(24)); },
         {"blk.0.ssm_in.weight", "[8, 32]", "[8, 48]"}},
        {"conv kernel not the tensors'", [](GGUFWriter& w) { w.set("mamba.ssm.conv_kernel", GGUFValue::u32(4)); },
         {"blk.0.ssm_conv1d.weight", "[3, 16]"}},
        {"inner size a string", [](GGUFWriter& w) { w.set("mamba.ssm.inner_size", GGUFValue::string("16")); },
         {"mamba.ssm.inner_size"}},
    };
    int i = 0;
    for (const Case& c : cases) {
        const std::string msg = load_error(tm.write("bad_" + std::to_string(i++) + ".gguf", c.edit));
        for (const std::string& s : c.expect) EXPECT_NE(msg.find(s), std::string::npos) << c.what << ": " << msg;
        EXPECT_NE(msg.find("bad_"), std::string::npos) << c.what << " (the file is named): " << msg;
    }
}

TEST(Mamba, ScanInputsMustBeF32) {
    // ssm_a, ssm_d and the conv taps are read as floats by the conv and the scan; another type
    // is an error naming the tensor and its type, not garbage.
    TinyMamba tm;
    for (const char* name : {"blk.1.ssm_a", "blk.0.ssm_conv1d.weight", "blk.0.ssm_d"}) {
        const std::string msg = load_error(tm.write("bad_type.gguf", nullptr, {name}));
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
        EXPECT_NE(msg.find("F16"), std::string::npos) << msg;
    }
    // The matrices may be F16 (or quantized): matmul reads them.
    auto m = Model::load(tm.write("f16_matrices.gguf", nullptr, {"blk.0.ssm_in.weight", "blk.1.ssm_dt.weight"}));
    Session s(m, {.n_ctx = 16});
    EXPECT_NO_THROW(s.eval(some_tokens(tm.n_vocab, 4)));
}


// ---- Jamba (the reference model of ../shared: layer 0 Mamba + MoE, layer 1 attention + dense) ----

std::string jamba_path(const char* f = "jamba.f32.gguf") { return test::shared_path(std::string("reference/archs/jamba/") + f); }

TEST(Jamba, StateIsCarriedAcrossCalls) {
    SLM_REQUIRE_SHARED();
    auto m = Model::load(jamba_path());
    expect_state_carried(m, m->vocab().tokenize("Once upon a time, there was a little dog named Max.", true, true));
}

TEST(Jamba, DecodeAllocatesNothing) {
    SLM_REQUIRE_SHARED();
    for (const char* f : {"jamba.f32.gguf", "jamba.q4_k.gguf"}) {
        SCOPED_TRACE(f);
        auto m = Model::load(jamba_path(f));
        expect_decode_allocates_nothing(m, m->vocab().tokenize("Hi there", true, true));
    }
}

TEST(Jamba, InfoShowsLayerKindsAndExperts) {
    SLM_REQUIRE_SHARED();
    auto m = Model::load(jamba_path());
    EXPECT_EQ(m->hparams().n_expert, 4u);
    EXPECT_EQ(m->hparams().n_expert_used, 2u);
    EXPECT_EQ(m->hparams().n_ff_exp, 128u);
    std::map<std::string, std::string> info;
    for (const auto& [k, v] : m->arch_info()) info[k] = v;
    EXPECT_EQ(info["layer mixers"].substr(0, 3), "MA ") << info["layer mixers"];
    EXPECT_EQ(info["layer FFNs"].substr(0, 3), "ED ") << info["layer FFNs"];
    EXPECT_EQ(info["n_head_kv per layer"], "[0, 2]");
    EXPECT_NE(info["ssm"].find("d_inner 512, d_state 16, d_conv 4, dt_rank 32"), std::string::npos) << info["ssm"];
    EXPECT_NE(info["experts"].find("4, 2 used per token, width 128"), std::string::npos) << info["experts"];
    EXPECT_NE(info["expert gating"].find("softmax, top-2 of 4"), std::string::npos) << info["expert gating"];
}

// Copies a GGUF, dropping one tensor or changing keys on the way.
std::string rewrite(const std::string& src_path, const std::string& name, const std::string& drop,
                    const std::function<void(GGUFWriter&)>& edit = nullptr) {
    GGUFFile src = GGUFFile::open(src_path);
    GGUFWriter w;
    w.copy_kv_from(src);
    if (edit) edit(w);
    for (const auto& t : src.tensors())
        if (t.name != drop) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    const std::string path = test::temp_dir() + "/" + name;
    w.write(path);
    return path;
}

TEST(Jamba, BadFilesAreRefused) {
    SLM_REQUIRE_SHARED();
    // Jamba's Mamba layers need the dt, B and C norms.
    std::string msg = load_error(rewrite(jamba_path(), "jamba_no_bnorm.gguf", "blk.0.ssm_b_norm.weight"));
    EXPECT_NE(msg.find("blk.0.ssm_b_norm.weight"), std::string::npos) << msg;
    // An attention layer (head_count_kv 2) without its K matrix.
    msg = load_error(rewrite(jamba_path(), "jamba_no_k.gguf", "blk.1.attn_k.weight"));
    EXPECT_NE(msg.find("blk.1.attn_k.weight"), std::string::npos) << msg;
    // Layer 1 turned into a Mamba layer: its mixer tensors are not there.
    msg = load_error(rewrite(jamba_path(), "jamba_kinds.gguf", "", [](GGUFWriter& w) {
        w.set("jamba.attention.head_count_kv", GGUFValue::u32_array({0, 0}));
    }));
    EXPECT_NE(msg.find("blk.1.ssm_in.weight"), std::string::npos) << msg;
    // MoE layers need the expert counts.
    msg = load_error(rewrite(jamba_path(), "jamba_no_experts.gguf", "", [](GGUFWriter& w) { w.remove("jamba.expert_count"); }));
    EXPECT_NE(msg.find("expert_count"), std::string::npos) << msg;
    // dt_rank 0.
    msg = load_error(rewrite(jamba_path(), "jamba_dt0.gguf", "", [](GGUFWriter& w) {
        w.set("jamba.ssm.time_step_rank", GGUFValue::u32(0));
    }));
    EXPECT_NE(msg.find("jamba.ssm.time_step_rank"), std::string::npos) << msg;
}

// A layer without KV heads is a hybrid model's non-attention layer; an architecture whose
// layers all attend refuses it instead of dividing by zero in attention.
TEST(Registry, ZeroKvHeadsAreRefusedWhereEveryLayerAttends) {
    const std::string msg = load_error(rewrite(test::model_path("stories260K/stories260K.gguf"), "llama_kv0.gguf", "",
                                               [](GGUFWriter& w) {
                                                   w.set("llama.attention.head_count_kv", GGUFValue::u32(0));
                                               }));
    EXPECT_NE(msg.find("0 KV heads"), std::string::npos) << msg;
}

// ---- slm synth for Mamba ---------------------------------------------------------------------

SynthConfig tiny_synth_mamba() {
    SynthConfig c;
    c.name = "tiny-mamba";
    c.arch = "mamba";
    c.n_embd = 64;
    c.n_layer = 3;
    c.n_head = c.n_head_kv = c.n_ff = 0;
    c.tied_embeddings = true;
    c.type = GGMLType::Q8_0;
    c.pure = true;
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");
    c.n_threads = 2;
    return c;
}

TEST(SynthMamba, PresetHasTheRealShape) {
    const SynthConfig c = synth_preset("mamba-130m");
    EXPECT_EQ(c.arch, "mamba");
    EXPECT_TRUE(synth_arch_supported("mamba"));
    // state-spaces/mamba-130m-hf: 24 x (norm, in_proj, conv w/b, x_proj, dt_proj w/b, A, D,
    // out_proj) + embedding + final norm = 129,135,360 parameters.
    EXPECT_EQ(synth_param_count(c), 129135360u);
    const auto t = synth_tensors(c);
    EXPECT_EQ(t.size(), 1u + 24u * 10u + 1u);
    for (const SynthTensor& x : t) {
        if (x.name == "blk.0.ssm_x.weight") EXPECT_EQ(x.ne, (std::vector<int64_t>{1536, 48 + 2 * 16}));
        if (x.name == "blk.0.ssm_dt.weight") EXPECT_EQ(x.ne, (std::vector<int64_t>{48, 1536}));
        if (x.name == "blk.0.ssm_in.weight") EXPECT_EQ(x.ne, (std::vector<int64_t>{768, 3072}));
    }
}

TEST(SynthMamba, WritesALoadableModelWithMambasInit) {
    const SynthConfig c = tiny_synth_mamba();
    const std::string path = test::temp_dir() + "/synth_mamba.gguf";
    const SynthResult r = synthesize(c, path);
    EXPECT_EQ(r.n_vocab, 512u);
    auto m = Model::load(path);
    const HParams& hp = m->hparams();
    EXPECT_EQ(hp.arch, "mamba");
    EXPECT_EQ(hp.ssm_d_inner, 128u);  // 2 n_embd
    EXPECT_EQ(hp.ssm_dt_rank, 4u);    // ceil(64 / 16)
    EXPECT_EQ(hp.ssm_d_state, 16u);
    EXPECT_EQ(hp.ssm_d_conv, 4u);
    EXPECT_TRUE(hp.tied_output);

    const GGUFFile& f = m->file();
    // llama-quantize keeps the conv taps and A in F32; rows of 4 (ssm_dt) cannot be Q8_0: F16.
    EXPECT_EQ(f.tensor("blk.0.ssm_conv1d.weight").type, GGMLType::F32);
    EXPECT_EQ(f.tensor("blk.0.ssm_a").type, GGMLType::F32);
    EXPECT_EQ(f.tensor("blk.0.ssm_in.weight").type, GGMLType::Q8_0);
    EXPECT_EQ(f.tensor("blk.0.ssm_dt.weight").type, GGMLType::F16);
    EXPECT_EQ(f.get_u32("mamba.attention.head_count"), 0u);
    EXPECT_EQ(f.get_u32("mamba.ssm.inner_size"), 128u);
    // A = -(1..d_state) in every channel; softplus(dt bias) log-uniform in [1e-3, 1e-1]; D = 1.
    const auto* a = reinterpret_cast<const float*>(f.tensor("blk.1.ssm_a").data);
    for (int ch : {0, 77, 127})
        for (int s = 0; s < 16; ++s) ASSERT_EQ(a[ch * 16 + s], -float(s + 1));
    const auto* b = reinterpret_cast<const float*>(f.tensor("blk.2.ssm_dt.bias").data);
    double lo = 1, hi = 0;
    for (int ch = 0; ch < 128; ++ch) {
        const double dt = std::log1p(std::exp(double(b[ch])));
        lo = std::min(lo, dt);
        hi = std::max(hi, dt);
    }
    EXPECT_GE(lo, 0.99e-3);
    EXPECT_LE(hi, 1.01e-1);
    EXPECT_GT(hi / lo, 20.0);  // spread over the range, not one value
    const auto* d = reinterpret_cast<const float*>(f.tensor("blk.0.ssm_d").data);
    EXPECT_EQ(d[5], 1.0f);

    // It runs, with logits of a trained model's spread (std ~3 by the output norm's design),
    // and carries its state as the reference model does.
    Session s(m, {.n_ctx = 64});
    const auto toks = some_tokens(512, 12);
    const float* l = s.eval(toks);
    double sum = 0, sq = 0;
    for (int i = 0; i < 512; ++i) {
        ASSERT_TRUE(std::isfinite(l[i]));
        sum += l[i];
        sq += double(l[i]) * l[i];
    }
    const double sd = std::sqrt(sq / 512 - (sum / 512) * (sum / 512));
    EXPECT_GT(sd, 1.0);
    EXPECT_LT(sd, 10.0);
    expect_state_carried(m, toks);
}

TEST(SynthMamba, SameSeedSameBytesAndBadSizesRefused) {
    SynthConfig c = tiny_synth_mamba();
    const std::string a = test::temp_dir() + "/sm_a.gguf", b = test::temp_dir() + "/sm_b.gguf";
    synthesize(c, a);
    c.n_threads = 1;
    synthesize(c, b);
    EXPECT_EQ(test::read_file(a), test::read_file(b));
    c.seed = 43;
    synthesize(c, b);
    EXPECT_NE(test::read_file(a), test::read_file(b));

    auto message = [](const SynthConfig& x) {
        try {
            synth_tensors(x);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    SynthConfig bad = tiny_synth_mamba();
    bad.ssm_d_conv = 0;
    EXPECT_NE(message(bad).find("--d-conv"), std::string::npos) << message(bad);
    bad = tiny_synth_mamba();
    bad.ssm_d_conv = 1000;
    EXPECT_NE(message(bad).find("--d-conv"), std::string::npos) << message(bad);
    bad = tiny_synth_mamba();
    bad.ssm_d_state = 5000;
    EXPECT_NE(message(bad).find("--d-state"), std::string::npos) << message(bad);
}

TEST(SynthMamba, Cli) {
    const std::string out = test::temp_dir() + "/cli_mamba.gguf";
    const std::string tok = test::model_path("stories260K/stories260K.gguf");
    test::RunResult r = test::run_cli({"synth", "--arch", "mamba", "--n-embd", "32", "--n-layer", "2", "--d-state", "8",
                                       "--dt-rank", "3", "--type", "f32", "--tokenizer", tok, "-o", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto m = Model::load(out);
    EXPECT_EQ(m->hparams().ssm_d_state, 8u);
    EXPECT_EQ(m->hparams().ssm_dt_rank, 3u);
    r = test::run_cli({"info", out});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("d_inner 64, d_state 8, d_conv 4, dt_rank 3"), std::string::npos) << r.out;
    r = test::run_cli({"synth", "--arch", "mamba", "--n-embd", "32", "--n-layer", "2", "--d-conv", "0", "--tokenizer",
                       tok, "-o", out});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--d-conv"), std::string::npos) << r.err;
}

} // namespace
