// The Phi-3 architecture file beyond its golden test (tests/golden/phi3_golden_test.cpp): the
// golden model rewritten to exercise what it lacks -
//  * LongRoPE: rope_factors_short for a context up to rope.scaling.original_context_length,
//    rope_factors_long beyond it (long factors of 2 are linear scaling by 2, bit for bit);
//  * rope.scaling.attn_factor: cos and sin times it, i.e. Q and K times it (2: the Q and K rows of
//    attn_qkv doubled, bit for bit);
//  * partial rotary (Phi-4-mini: 96 of 128 dims): only the first n_rot dims of a head rotate;
//  * bad files: fused matrices of the wrong height, half a LongRoPE pair.
#include "core/thread_pool.h"
#include "models/blocks.h"
#include "slm/error.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

using namespace slm;

namespace {

std::string golden() { return test::shared_path("reference/archs/phi3/phi3.f32.gguf"); }

// Copies the golden phi3 model, letting a test change keys and tensors on the way.
struct Rewrite {
    GGUFFile src = GGUFFile::open(golden());
    GGUFWriter w;
    Rewrite() { w.copy_kv_from(src); }
    void tensors(const std::function<bool(const GGUFTensorInfo&)>& skip = nullptr) {
        for (const auto& t : src.tensors())
            if (!skip || !skip(t)) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    }
    void f32_tensor(const std::string& name, std::vector<float> v) {
        std::vector<uint8_t> bytes(v.size() * 4);
        std::memcpy(bytes.data(), v.data(), bytes.size());
        w.add_tensor_copy(name, GGMLType::F32, {int64_t(v.size())}, std::move(bytes));
    }
    std::string write(const std::string& name) {
        const std::string path = test::temp_dir() + "/" + name;
        w.write(path);
        return path;
    }
};

std::vector<float> logits(const std::string& path, uint32_t n_ctx) {
    auto m = Model::load(path);
    SessionOptions so;
    so.n_ctx = n_ctx;
    so.kv_type = GGMLType::F32;
    so.n_threads = 2;
    Session s(m, so);
    s.eval(m->vocab().tokenize("Once upon a time, there was a little dog named Max.", true, true), true);
    return std::vector<float>(s.logits().begin(), s.logits().end());
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

TEST(Phi3Model, LongRopeFactorsChosenByContextLength) {
    SLM_REQUIRE_SHARED();
    const auto base = logits(golden(), 64);

    Rewrite r;  // short factors 1 (no change), long factors 2; original context 128
    r.tensors();
    r.f32_tensor("rope_factors_short.weight", std::vector<float>(32, 1.0f));
    r.f32_tensor("rope_factors_long.weight", std::vector<float>(32, 2.0f));
    r.w.set("phi3.rope.scaling.original_context_length", GGUFValue::u32(128));
    const std::string lr = r.write("longrope.gguf");

    Rewrite lin;  // linear scaling by 2, as the long factors are
    lin.tensors();
    lin.w.set("phi3.rope.scaling.type", GGUFValue::string("linear"));
    lin.w.set("phi3.rope.scaling.factor", GGUFValue::f32(2.0f));
    const std::string linear = lin.write("linear2.gguf");

    EXPECT_EQ(max_diff(logits(lr, 64), base), 0.0) << "n_ctx 64 <= 128: the short factors";
    EXPECT_EQ(max_diff(logits(lr, 128), base), 0.0) << "n_ctx 128 <= 128: the short factors";
    const auto long_ctx = logits(lr, 256);
    EXPECT_GT(max_diff(long_ctx, base), 1e-2) << "n_ctx 256 > 128: the long factors";
    EXPECT_EQ(max_diff(long_ctx, logits(linear, 256)), 0.0);

    auto m = Model::load(lr);
    bool found = false;
    for (const auto& [k, v] : m->arch_info()) found |= k == "LongRoPE" && v.find("> 128") != std::string::npos;
    EXPECT_TRUE(found);
}

TEST(Phi3Model, RopeAttnFactorScalesQandK) {
    SLM_REQUIRE_SHARED();
    Rewrite af;
    af.tensors();
    af.w.set("phi3.rope.scaling.attn_factor", GGUFValue::f32(2.0f));
    const auto with_factor = logits(af.write("attn-factor.gguf"), 64);

    // The same model with the Q and K rows of every attn_qkv doubled (256 + 128 of 512 rows).
    Rewrite dbl;
    std::vector<std::vector<float>> keep;
    dbl.tensors([&](const GGUFTensorInfo& t) {
        if (t.name.find("attn_qkv") == std::string::npos) return false;
        std::vector<float> v(reinterpret_cast<const float*>(t.data), reinterpret_cast<const float*>(t.data) + t.nelements());
        for (size_t i = 0; i < size_t(256 + 128) * 256; ++i) v[i] *= 2.0f;
        std::vector<uint8_t> bytes(v.size() * 4);
        std::memcpy(bytes.data(), v.data(), bytes.size());
        dbl.w.add_tensor_copy(t.name, t.type, t.shape(), std::move(bytes));
        return true;
    });
    const auto doubled = logits(dbl.write("qk-doubled.gguf"), 64);
    EXPECT_EQ(max_diff(with_factor, doubled), 0.0);
    EXPECT_GT(max_diff(with_factor, logits(golden(), 64)), 1e-2);
}

TEST(Phi3Model, PartialRotaryRotatesTheFirstDimsOnly) {
    HParams hp;
    hp.n_rot = 32;
    hp.rope_type = RopeType::Neox;
    hp.rope_freq_base = 10000.0f;
    SessionState st;
    st.rope_cache.resize(3 * 32);
    const uint32_t hd = 64, n_head = 2;
    blocks::rope_cache(st, hp, 5, 3, nullptr, {10000.0f, 1.0f, 1.0f});
    std::vector<float> x(3 * n_head * hd), y;
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * double(i)) + 0.1f;
    y = x;
    blocks::rope_apply(st, hp, y.data(), 3, n_head, hd, n_head * hd);
    for (uint32_t t = 0; t < 3; ++t) {
        for (uint32_t h = 0; h < n_head; ++h) {
            const float* a = x.data() + (t * n_head + h) * hd;
            const float* b = y.data() + (t * n_head + h) * hd;
            for (uint32_t i = 0; i < 16; ++i) {  // pairs (i, i + 16) at frequency 10000^(-2i/32)
                const double th = double(5 + t) * std::pow(10000.0, -2.0 * i / 32.0);
                EXPECT_NEAR(b[i], a[i] * std::cos(th) - a[i + 16] * std::sin(th), 2e-5);
                EXPECT_NEAR(b[i + 16], a[i] * std::sin(th) + a[i + 16] * std::cos(th), 2e-5);
            }
            for (uint32_t i = 32; i < hd; ++i) EXPECT_EQ(b[i], a[i]) << "dim " << i << " must not rotate";
        }
    }
    // The attention factor multiplies cos and sin.
    std::vector<float> c1(st.rope_cache);
    blocks::rope_cache(st, hp, 5, 3, nullptr, {10000.0f, 1.0f, 1.25f});
    for (size_t i = 0; i < c1.size(); ++i) EXPECT_EQ(st.rope_cache[i], c1[i] * 1.25f);
}

TEST(Phi3Model, BadFusedShapesAndHalfALongRopePair) {
    SLM_REQUIRE_SHARED();
    {
        Rewrite r;  // attn_qkv without the V rows
        r.tensors([&](const GGUFTensorInfo& t) {
            if (t.name != "blk.1.attn_qkv.weight") return false;
            r.w.add_tensor(t.name, t.type, {256, 384}, t.data, row_size(t.type, 256) * 384);
            return true;
        });
        const std::string msg = expect_load_error(r.write("qkv.gguf"));
        EXPECT_NE(msg.find("blk.1.attn_qkv.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("[256, 384]"), std::string::npos) << msg;
        EXPECT_NE(msg.find("[256, 512]"), std::string::npos) << msg;
    }
    {
        Rewrite r;  // ffn_up of n_ff rows: no gate half
        r.tensors([&](const GGUFTensorInfo& t) {
            if (t.name != "blk.0.ffn_up.weight") return false;
            r.w.add_tensor(t.name, t.type, {256, 256}, t.data, row_size(t.type, 256) * 256);
            return true;
        });
        const std::string msg = expect_load_error(r.write("up.gguf"));
        EXPECT_NE(msg.find("blk.0.ffn_up.weight"), std::string::npos) << msg;
    }
    {
        Rewrite r;  // neither attn_qkv nor attn_q: the error names the fused tensor
        r.tensors([](const GGUFTensorInfo& t) { return t.name == "blk.0.attn_qkv.weight"; });
        const std::string msg = expect_load_error(r.write("noqkv.gguf"));
        EXPECT_NE(msg.find("blk.0.attn_qkv.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
    }
    {
        Rewrite r;
        r.tensors();
        r.f32_tensor("rope_factors_long.weight", std::vector<float>(32, 2.0f));
        const std::string msg = expect_load_error(r.write("half-longrope.gguf"));
        EXPECT_NE(msg.find("rope_factors_short.weight"), std::string::npos) << msg;
    }
    {
        Rewrite r;
        r.tensors();
        r.f32_tensor("rope_factors_long.weight", std::vector<float>(16, 2.0f));  // n_rot / 2 = 32
        r.f32_tensor("rope_factors_short.weight", std::vector<float>(32, 1.0f));
        const std::string msg = expect_load_error(r.write("short-longrope.gguf"));
        EXPECT_NE(msg.find("rope_factors_long.weight"), std::string::npos) << msg;
    }
}

} // namespace
