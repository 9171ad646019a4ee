// slm quantize / slm calibrate: byte-identity with llama-quantize's goldens, the per-tensor
// mixture rules, imatrix files, the importance-weighted quantizers and the CLI's errors.
#include "compress/imatrix.h"
#include "compress/quant_mix.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/quantize.h"
#include "calib_text.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <cstring>
#include <random>
#include <set>

using namespace slm;
using namespace slm::test;
namespace cq = slm::compress;

namespace {

// ---- byte identity with llama-quantize --------------------------------------------------------

// Compares two GGUF files tensor by tensor (names in order, types, shapes, bytes), then whole.
void expect_same_gguf(const std::string& ours, const std::string& golden) {
    const GGUFFile a = GGUFFile::open(ours), b = GGUFFile::open(golden);
    ASSERT_EQ(a.tensors().size(), b.tensors().size()) << golden;
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const GGUFTensorInfo &x = a.tensors()[i], &y = b.tensors()[i];
        ASSERT_EQ(x.name, y.name) << golden << " tensor " << i;
        EXPECT_EQ(x.type, y.type) << golden << " " << x.name;
        EXPECT_EQ(x.shape(), y.shape()) << golden << " " << x.name;
        ASSERT_EQ(x.nbytes, y.nbytes) << golden << " " << x.name;
        EXPECT_EQ(std::memcmp(x.data, y.data, x.nbytes), 0) << golden << " " << x.name << " (" << type_name(x.type) << ")";
    }
    ASSERT_EQ(a.kv().size(), b.kv().size()) << golden;
    for (size_t i = 0; i < a.kv().size(); ++i) {
        EXPECT_EQ(a.kv()[i].first, b.kv()[i].first) << golden;
        EXPECT_TRUE(a.kv()[i].second == b.kv()[i].second) << golden << " " << a.kv()[i].first;
    }
    EXPECT_EQ(read_file(ours), read_file(golden)) << "whole file differs: " << golden;
}

TEST(Quantize, Stories260KGoldensAreByteIdentical) {
    SLM_REQUIRE_SHARED();
    const std::string in = shared_path("reference/stories260K/stories260K.f32.gguf");
    struct Case {
        const char* golden;
        const char* type;
        bool ffn_down_f16;  // the golden's --tensor-type ffn_down=f16
    };
    for (const Case& c : {Case{"q8_0", "Q8_0", true}, Case{"q4_0", "Q4_0", true}, Case{"q4_k", "Q4_K", false},
                          Case{"q6_k", "Q6_K", false}}) {
        QuantizeParams p;
        p.type = c.type;
        p.pure = true;
        if (c.ffn_down_f16) p.tensor_types = {{"ffn_down", GGMLType::F16}};
        const std::string out = temp_dir() + "/s." + c.golden + ".gguf";
        const QuantizeResult r = quantize_model(in, out, p);
        EXPECT_EQ(r.tensors.size(), 48u);
        expect_same_gguf(out, shared_path(std::string("reference/stories260K/stories260K.") + c.golden + ".gguf"));
        std::remove(out.c_str());
    }
}

TEST(Quantize, ArchGoldensAreByteIdentical) {
    SLM_REQUIRE_SHARED();
    int n_checked = 0;
    for (const char* arch : {"llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "qwen2moe", "mamba", "jamba"}) {
        const std::string dir = shared_path(std::string("reference/archs/") + arch + "/") + arch;
        for (const char* t : {"f16", "q8_0", "q4_0", "q4_k", "q6_k"}) {
            const std::string golden = dir + "." + t + ".gguf";
            if (!std::ifstream(golden).good()) continue;
            QuantizeParams p;
            p.type = t;
            p.pure = true;
            p.n_threads = n_checked % 2 ? 1 : 3;  // the bytes do not depend on the thread count
            const std::string out = temp_dir() + "/a.gguf";
            quantize_model(dir + ".f32.gguf", out, p);
            expect_same_gguf(out, golden);
            std::remove(out.c_str());
            ++n_checked;
        }
    }
    EXPECT_GE(n_checked, 13);  // llama's 5 + the 8 other architectures' q4_k
}

// ---- the mixture rules --------------------------------------------------------------------------

struct Named {
    std::string name;
    std::vector<int64_t> ne;
};

// The tensors of a TinyLlama-1.1B-shaped file (22 layers, n_embd 2048, 32/4 heads, ffn 5632).
std::vector<Named> tinyllama(bool tied = false) {
    std::vector<Named> t = {{"token_embd.weight", {2048, 32000}}, {"output_norm.weight", {2048}}};
    if (!tied) t.push_back({"output.weight", {2048, 32000}});
    for (int il = 0; il < 22; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        t.push_back({p + "attn_norm.weight", {2048}});
        t.push_back({p + "attn_q.weight", {2048, 2048}});
        t.push_back({p + "attn_k.weight", {2048, 256}});
        t.push_back({p + "attn_v.weight", {2048, 256}});
        t.push_back({p + "attn_output.weight", {2048, 2048}});
        t.push_back({p + "ffn_norm.weight", {2048}});
        t.push_back({p + "ffn_gate.weight", {2048, 5632}});
        t.push_back({p + "ffn_up.weight", {2048, 5632}});
        t.push_back({p + "ffn_down.weight", {5632, 2048}});
    }
    return t;
}

// name -> type, choosing in llama-quantize's order as the pipeline does.
std::map<std::string, GGMLType> choose(const std::vector<Named>& ts, const cq::MixModel& m, cq::MixOptions o) {
    std::vector<std::string> names;
    for (const Named& t : ts) names.push_back(t.name);
    cq::QuantMixer mix(m, o, names);
    std::map<std::string, GGMLType> out;
    for (size_t i : cq::quant_tensor_order(names)) {
        const Named& t = ts[i];
        int64_t ne[4] = {1, 1, 1, 1};
        for (size_t d = 0; d < t.ne.size(); ++d) ne[d] = t.ne[d];
        out[t.name] = mix.choose(t.name, static_cast<uint32_t>(t.ne.size()), ne, GGMLType::F32).type;
    }
    return out;
}

cq::MixOptions ftype(const char* name) {
    const QuantFileType* f = quant_file_type(name);
    cq::MixOptions o;
    o.ftype = f->ftype;
    o.type = f->type;
    return o;
}

cq::MixModel tinyllama_model() {
    cq::MixModel m;
    m.arch = "llama";
    m.n_layer = 22;
    m.n_head = 32;
    m.n_head_kv = 4;
    return m;
}

std::string blk(int il, const char* kind) { return "blk." + std::to_string(il) + "." + kind; }

TEST(QuantMix, TinyLlamaQ4KM) {
    const auto t = choose(tinyllama(), tinyllama_model(), ftype("Q4_K_M"));
    // use_more_bits for 22 layers: i < 22/8 = 2, i >= 7*22/8 = 19, or (i - 2) % 3 == 2
    const std::set<int> more = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    for (int il = 0; il < 22; ++il) {
        const GGMLType want = more.count(il) ? GGMLType::Q6_K : GGMLType::Q4_K;
        EXPECT_EQ(t.at(blk(il, "attn_v.weight")), want) << il;
        EXPECT_EQ(t.at(blk(il, "ffn_down.weight")), want) << il;
        EXPECT_EQ(t.at(blk(il, "attn_q.weight")), GGMLType::Q4_K);
        EXPECT_EQ(t.at(blk(il, "attn_output.weight")), GGMLType::Q4_K);
        EXPECT_EQ(t.at(blk(il, "ffn_up.weight")), GGMLType::Q4_K);
        EXPECT_EQ(t.at(blk(il, "attn_norm.weight")), GGMLType::F32);
    }
    EXPECT_EQ(t.at("output.weight"), GGMLType::Q6_K);
    EXPECT_EQ(t.at("token_embd.weight"), GGMLType::Q4_K);
    EXPECT_EQ(t.at("output_norm.weight"), GGMLType::F32);
}

TEST(QuantMix, TinyLlamaOtherMixes) {
    const cq::MixModel m = tinyllama_model();
    // Q3_K_M: attn_v Q5_K on the first 2, else Q4_K; ffn_down Q5_K below 22/16 = 1, else Q4_K;
    // attn_output Q4_K.
    auto t = choose(tinyllama(), m, ftype("Q3_K_M"));
    for (int il = 0; il < 22; ++il) {
        EXPECT_EQ(t.at(blk(il, "attn_v.weight")), il < 2 ? GGMLType::Q5_K : GGMLType::Q4_K) << il;
        EXPECT_EQ(t.at(blk(il, "ffn_down.weight")), il < 1 ? GGMLType::Q5_K : GGMLType::Q4_K) << il;
        EXPECT_EQ(t.at(blk(il, "attn_output.weight")), GGMLType::Q4_K);
        EXPECT_EQ(t.at(blk(il, "attn_q.weight")), GGMLType::Q3_K);
    }
    EXPECT_EQ(t.at("output.weight"), GGMLType::Q6_K);
    // Q3_K_L: attn_v, ffn_down, attn_output Q5_K.
    t = choose(tinyllama(), m, ftype("Q3_K_L"));
    EXPECT_EQ(t.at(blk(9, "attn_v.weight")), GGMLType::Q5_K);
    EXPECT_EQ(t.at(blk(9, "ffn_down.weight")), GGMLType::Q5_K);
    EXPECT_EQ(t.at(blk(9, "attn_output.weight")), GGMLType::Q5_K);
    // Q3_K_S: plain Q3_K but output
    t = choose(tinyllama(), m, ftype("Q3_K_S"));
    EXPECT_EQ(t.at(blk(0, "attn_v.weight")), GGMLType::Q3_K);
    // Q2_K with n_gqa 8 >= 4: attn_v Q4_K, ffn_down and attn_output Q3_K.
    t = choose(tinyllama(), m, ftype("Q2_K"));
    EXPECT_EQ(t.at(blk(5, "attn_v.weight")), GGMLType::Q4_K);
    EXPECT_EQ(t.at(blk(5, "ffn_down.weight")), GGMLType::Q3_K);
    EXPECT_EQ(t.at(blk(5, "attn_output.weight")), GGMLType::Q3_K);
    EXPECT_EQ(t.at(blk(5, "ffn_gate.weight")), GGMLType::Q2_K);
    // Q4_K_S: attn_v Q5_K on the first 4; ffn_down Q5_K below 22/8 = 2.
    t = choose(tinyllama(), m, ftype("Q4_K_S"));
    for (int il = 0; il < 22; ++il) {
        EXPECT_EQ(t.at(blk(il, "attn_v.weight")), il < 4 ? GGMLType::Q5_K : GGMLType::Q4_K) << il;
        EXPECT_EQ(t.at(blk(il, "ffn_down.weight")), il < 2 ? GGMLType::Q5_K : GGMLType::Q4_K) << il;
    }
    // Q5_K_M: Q6_K on the use_more_bits layers.
    t = choose(tinyllama(), m, ftype("Q5_K_M"));
    EXPECT_EQ(t.at(blk(4, "attn_v.weight")), GGMLType::Q6_K);
    EXPECT_EQ(t.at(blk(5, "attn_v.weight")), GGMLType::Q5_K);
    EXPECT_EQ(t.at(blk(21, "ffn_down.weight")), GGMLType::Q6_K);
    // Q8_0 keeps output Q8_0; Q6_K all Q6_K.
    t = choose(tinyllama(), m, ftype("Q8_0"));
    EXPECT_EQ(t.at("output.weight"), GGMLType::Q8_0);
    EXPECT_EQ(t.at(blk(0, "attn_v.weight")), GGMLType::Q8_0);
    // IQ4_XS with n_gqa >= 4: attn_v Q5_K; ffn_down Q5_K below 22/8 unless an imatrix is given.
    t = choose(tinyllama(), m, ftype("IQ4_XS"));
    EXPECT_EQ(t.at(blk(3, "attn_v.weight")), GGMLType::Q5_K);
    EXPECT_EQ(t.at(blk(1, "ffn_down.weight")), GGMLType::Q5_K);
    EXPECT_EQ(t.at(blk(2, "ffn_down.weight")), GGMLType::IQ4_XS);
    cq::MixOptions o = ftype("IQ4_XS");
    o.has_imatrix = true;
    t = choose(tinyllama(), m, o);
    EXPECT_EQ(t.at(blk(1, "ffn_down.weight")), GGMLType::IQ4_XS);
    // Q4_0 with an imatrix guards the first eighth of ffn_down with Q4_1; without, plain Q4_0.
    t = choose(tinyllama(), m, ftype("Q4_0"));
    EXPECT_EQ(t.at(blk(0, "ffn_down.weight")), GGMLType::Q4_0);
    EXPECT_EQ(t.at("output.weight"), GGMLType::Q6_K);
    o = ftype("Q4_0");
    o.has_imatrix = true;
    t = choose(tinyllama(), m, o);
    EXPECT_EQ(t.at(blk(1, "ffn_down.weight")), GGMLType::Q4_1);
    EXPECT_EQ(t.at(blk(2, "ffn_down.weight")), GGMLType::Q4_0);
    // TQ2_0: token_embd Q4_K.
    t = choose(tinyllama(), m, ftype("TQ2_0"));
    EXPECT_EQ(t.at("token_embd.weight"), GGMLType::Q4_K);
    // F16: every quantizable tensor F16, norms F32, no mixture.
    t = choose(tinyllama(), m, ftype("F16"));
    EXPECT_EQ(t.at("output.weight"), GGMLType::F16);
    EXPECT_EQ(t.at(blk(0, "attn_v.weight")), GGMLType::F16);
    EXPECT_EQ(t.at(blk(0, "ffn_norm.weight")), GGMLType::F32);
}

TEST(QuantMix, TiedEmbeddingsFollowTheOutputRule) {
    const auto t = choose(tinyllama(true), tinyllama_model(), ftype("Q4_K_M"));
    EXPECT_EQ(t.at("token_embd.weight"), GGMLType::Q6_K);
    // a row that is not a multiple of the type's block: Q8_0
    std::vector<Named> odd = {{"token_embd.weight", {576, 100}}, {"blk.0.attn_v.weight", {576, 192}}};
    cq::MixModel m = tinyllama_model();
    m.n_layer = 1;
    const auto u = choose(odd, m, ftype("Q4_K_M"));
    EXPECT_EQ(u.at("token_embd.weight"), GGMLType::Q8_0);
    // the only layer is a use_more_bits one (0 >= 7 * 1 / 8): Q6_K, whose 256-block does not
    // divide 576, so the fallback's Q8_0
    EXPECT_EQ(u.at("blk.0.attn_v.weight"), GGMLType::Q8_0);
}

TEST(QuantMix, Qwen2MoeExpertsByLayerName) {
    // Qwen1.5-MoE-A2.7B's shapes: 24 layers, 60 experts of 1408, shared expert 5632, 16 heads.
    std::vector<Named> ts = {{"token_embd.weight", {2048, 151936}}, {"output.weight", {2048, 151936}}};
    for (int il = 0; il < 24; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        for (const char* k : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight"})
            ts.push_back({p + k, {2048, 2048}});
        ts.push_back({p + "attn_q.bias", {2048}});
        ts.push_back({p + "ffn_gate_inp.weight", {2048, 60}});
        ts.push_back({p + "ffn_gate_exps.weight", {2048, 1408, 60}});
        ts.push_back({p + "ffn_up_exps.weight", {2048, 1408, 60}});
        ts.push_back({p + "ffn_down_exps.weight", {1408, 2048, 60}});
        ts.push_back({p + "ffn_gate_inp_shexp.weight", {2048}});
        ts.push_back({p + "ffn_gate_shexp.weight", {2048, 5632}});
        ts.push_back({p + "ffn_up_shexp.weight", {2048, 5632}});
        ts.push_back({p + "ffn_down_shexp.weight", {5632, 2048}});
    }
    cq::MixModel m;
    m.arch = "qwen2moe";
    m.n_layer = 24;
    m.n_head = 16;
    m.n_head_kv = 16;
    m.n_expert = 60;
    const auto t = choose(ts, m, ftype("Q4_K_M"));
    // use_more_bits for 24: i < 3, i >= 21, or (i - 3) % 3 == 2
    const std::set<int> more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23};
    for (int il = 0; il < 24; ++il) {
        // ffn_down_exps rows are 1408 = 5.5 * 256: the K-quant falls back (Q6_K -> Q8_0, Q4_K -> Q5_0)
        EXPECT_EQ(t.at(blk(il, "ffn_down_exps.weight")), more.count(il) ? GGMLType::Q8_0 : GGMLType::Q5_0) << il;
        EXPECT_EQ(t.at(blk(il, "ffn_down_shexp.weight")), more.count(il) ? GGMLType::Q6_K : GGMLType::Q4_K) << il;
        EXPECT_EQ(t.at(blk(il, "attn_v.weight")), more.count(il) ? GGMLType::Q6_K : GGMLType::Q4_K) << il;
        EXPECT_EQ(t.at(blk(il, "ffn_gate_inp.weight")), GGMLType::F32);  // the router stays
        EXPECT_EQ(t.at(blk(il, "ffn_gate_exps.weight")), GGMLType::Q4_K);
    }
}

TEST(QuantMix, EightExpertsBumpAttention) {
    // Mixtral-8x7B: attn_v and attn_k Q8_0, attn_output Q5_K under Q4_K_M.
    std::vector<Named> ts;
    for (int il = 0; il < 32; ++il)
        for (const char* k : {"attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_q.weight"})
            ts.push_back({blk(il, k), {4096, 1024}});
    cq::MixModel m;
    m.n_layer = 32;
    m.n_head = 32;
    m.n_head_kv = 8;
    m.n_expert = 8;
    const auto t = choose(ts, m, ftype("Q4_K_M"));
    EXPECT_EQ(t.at(blk(3, "attn_v.weight")), GGMLType::Q8_0);
    EXPECT_EQ(t.at(blk(3, "attn_k.weight")), GGMLType::Q8_0);
    EXPECT_EQ(t.at(blk(3, "attn_output.weight")), GGMLType::Q5_K);
    EXPECT_EQ(t.at(blk(3, "attn_q.weight")), GGMLType::Q4_K);
}

TEST(QuantMix, WhatIsQuantizedAtAll) {
    EXPECT_TRUE(cq::tensor_allows_quantization("blk.0.attn_q.weight", 2, true));
    EXPECT_TRUE(cq::tensor_allows_quantization("blk.0.ffn_down_exps.weight", 3, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("blk.0.attn_q.bias", 1, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("blk.0.attn_q.bias", 2, true));  // not a weight
    EXPECT_FALSE(cq::tensor_allows_quantization("blk.0.attn_norm.weight", 2, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("blk.0.ffn_gate_inp.weight", 2, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("blk.0.ssm_conv1d.weight", 2, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("position_embd.weight", 2, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("blk.0.time_mix_w1.weight", 2, true));
    EXPECT_TRUE(cq::tensor_allows_quantization("output.weight", 2, true));
    EXPECT_FALSE(cq::tensor_allows_quantization("output.weight", 2, false));  // --leave-output-tensor
    EXPECT_TRUE(cq::tensor_allows_quantization("blk.0.ssm_in.weight", 2, true));
}

TEST(QuantMix, OverridesPureAndFallbacks) {
    const cq::MixModel m = tinyllama_model();
    cq::MixOptions o = ftype("Q4_K_M");
    o.pure = true;
    auto t = choose(tinyllama(), m, o);
    EXPECT_EQ(t.at(blk(0, "attn_v.weight")), GGMLType::Q4_K);
    EXPECT_EQ(t.at("output.weight"), GGMLType::Q4_K);
    o = ftype("Q4_K_M");
    o.tensor_types = {{"attn_(q|k)", GGMLType::Q8_0}, {"attn_q", GGMLType::F16}, {"FFN_UP", GGMLType::Q5_0}};
    o.output_type = GGMLType::F16;
    o.embd_type = GGMLType::Q8_0;
    t = choose(tinyllama(), m, o);
    EXPECT_EQ(t.at(blk(3, "attn_q.weight")), GGMLType::Q8_0);  // the first match wins
    EXPECT_EQ(t.at(blk(3, "attn_k.weight")), GGMLType::Q8_0);
    EXPECT_EQ(t.at(blk(3, "ffn_up.weight")), GGMLType::Q5_0);  // patterns are lowercased, as llama-quantize
    EXPECT_EQ(t.at(blk(4, "attn_v.weight")), GGMLType::Q6_K);  // the mixture still counts attn_v
    EXPECT_EQ(t.at("output.weight"), GGMLType::F16);
    EXPECT_EQ(t.at("token_embd.weight"), GGMLType::Q8_0);
    o.tensor_types = {{"attn_(", GGMLType::Q8_0}};
    EXPECT_THROW(choose(tinyllama(), m, o), Error);

    bool fb = false;
    EXPECT_EQ(cq::shape_fallback_type(GGMLType::Q4_K, 64, &fb), GGMLType::Q5_0);
    EXPECT_TRUE(fb);
    EXPECT_EQ(cq::shape_fallback_type(GGMLType::Q6_K, 172), GGMLType::F16);
    EXPECT_EQ(cq::shape_fallback_type(GGMLType::Q3_K, 288), GGMLType::IQ4_NL);
    EXPECT_EQ(cq::shape_fallback_type(GGMLType::TQ1_0, 96), GGMLType::Q4_0);
    EXPECT_EQ(cq::shape_fallback_type(GGMLType::Q4_K, 512, &fb), GGMLType::Q4_K);
    EXPECT_FALSE(fb);
}

TEST(QuantMix, LlamaQuantizeOrder) {
    const std::vector<std::string> names = {"token_embd.weight", "blk.10.attn_q.weight", "blk.2.ffn_up.weight",
                                            "output.weight", "blk.2.attn_k.weight", "output_norm.weight"};
    std::vector<std::string> got;
    for (size_t i : cq::quant_tensor_order(names)) got.push_back(names[i]);
    EXPECT_EQ(got, (std::vector<std::string>{"output.weight", "output_norm.weight", "token_embd.weight",
                                             "blk.2.attn_k.weight", "blk.2.ffn_up.weight", "blk.10.attn_q.weight"}));
}

// ---- imatrix files ------------------------------------------------------------------------------

cq::Imatrix sample_imatrix() {
    cq::Imatrix m;
    m.datasets = {"calib.txt"};
    m.chunk_count = 3;
    m.chunk_size = 128;
    m.has_metadata = true;
    m.entries["blk.0.attn_q.weight"] = {{1, 2, 3, 4}, {2}};
    m.entries["blk.0.ffn_down_exps.weight"] = {{1, 1, 2, 2, 9, 9}, {1, 0, 3}};  // 3 experts, the 2nd unused
    return m;
}

TEST(Imatrix, GgufRoundTripAndValues) {
    const cq::Imatrix m = sample_imatrix();
    const std::string path = temp_dir() + "/im.gguf";
    cq::write_imatrix(m, path);
    const GGUFFile f = GGUFFile::open(path);
    EXPECT_EQ(f.get_str("general.type"), "imatrix");
    EXPECT_EQ(f.get_u32("imatrix.chunk_count"), 3u);
    EXPECT_EQ(f.get_u32("imatrix.chunk_size"), 128u);
    EXPECT_EQ(f.tensor("blk.0.ffn_down_exps.weight.in_sum2").shape(), (std::vector<int64_t>{2, 3}));
    EXPECT_EQ(f.tensor("blk.0.ffn_down_exps.weight.counts").shape(), (std::vector<int64_t>{1, 3}));
    const cq::Imatrix r = cq::read_imatrix(path);
    EXPECT_FALSE(r.legacy);
    EXPECT_TRUE(r.has_metadata);
    EXPECT_EQ(r.datasets, m.datasets);
    ASSERT_EQ(r.entries.size(), 2u);
    EXPECT_EQ(r.entries.at("blk.0.attn_q.weight").sums, m.entries.at("blk.0.attn_q.weight").sums);
    EXPECT_EQ(r.entries.at("blk.0.ffn_down_exps.weight").counts, m.entries.at("blk.0.ffn_down_exps.weight").counts);
    EXPECT_EQ(cq::imatrix_gguf_bytes(r), read_file(path));
    // llama-quantize's values: in_sum2 / count; a matrix that saw nothing gets 1
    const auto v = cq::imatrix_values(r);
    EXPECT_EQ(v.at("blk.0.attn_q.weight"), (std::vector<float>{0.5f, 1, 1.5f, 2}));
    EXPECT_EQ(v.at("blk.0.ffn_down_exps.weight"), (std::vector<float>{1, 1, 1, 1, 3, 3}));
}

void put_i32(std::vector<uint8_t>& b, int32_t v) {
    uint8_t x[4];
    std::memcpy(x, &v, 4);
    b.insert(b.end(), x, x + 4);
}

TEST(Imatrix, LegacyDatFormat) {
    std::vector<uint8_t> b;
    put_i32(b, 1);
    const std::string name = "blk.0.attn_k.weight";
    put_i32(b, static_cast<int32_t>(name.size()));
    b.insert(b.end(), name.begin(), name.end());
    put_i32(b, 4);  // ncall
    put_i32(b, 2);  // nval
    for (float f : {8.0f, 2.0f}) {
        uint8_t x[4];
        std::memcpy(x, &f, 4);
        b.insert(b.end(), x, x + 4);
    }
    put_i32(b, 10);  // chunks
    put_i32(b, 5);
    for (char c : std::string("a.txt")) b.push_back(static_cast<uint8_t>(c));
    const cq::Imatrix m = cq::parse_imatrix(b.data(), b.size(), "legacy");
    EXPECT_TRUE(m.legacy);
    EXPECT_EQ(m.chunk_count, 10u);
    EXPECT_EQ(m.datasets, std::vector<std::string>{"a.txt"});
    EXPECT_EQ(cq::imatrix_values(m).at(name), (std::vector<float>{2.0f, 0.5f}));
    // the trailer is optional
    const cq::Imatrix m2 = cq::parse_imatrix(b.data(), b.size() - 13, "legacy");
    EXPECT_EQ(m2.chunk_count, 0u);
    // every truncation either parses or throws slm::Error
    for (size_t n = 0; n + 13 < b.size(); ++n) EXPECT_THROW(cq::parse_imatrix(b.data(), n, "cut"), Error) << n;
}

TEST(Imatrix, MalformedGgufIsAClearError) {
    auto bytes_of = [](const cq::Imatrix& m) { return cq::imatrix_gguf_bytes(m); };
    cq::Imatrix m = sample_imatrix();
    m.entries["blk.1.attn_q.weight"] = {{1, 2, 3}, {1, 1}};  // 3 sums for 2 matrices
    EXPECT_THROW(bytes_of(m), Error);
    // counts missing
    GGUFWriter w;
    w.set("imatrix.datasets", GGUFValue::str_array({"x"}));
    const std::vector<float> s = {1, 2};
    w.add_tensor("blk.0.attn_q.weight.in_sum2", GGMLType::F32, {2, 1}, s.data(), 8);
    std::vector<uint8_t> b = w.to_bytes();
    try {
        cq::parse_imatrix(b.data(), b.size(), "nocounts.gguf");
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.attn_q.weight"), std::string::npos) << e.what();
    }
    // non-finite sums
    m = sample_imatrix();
    m.entries["blk.0.attn_q.weight"].sums[1] = NAN;
    b = bytes_of(m);
    EXPECT_THROW(cq::parse_imatrix(b.data(), b.size(), "nan.gguf"), Error);
    // a file of no known format
    const std::vector<uint8_t> junk = {0, 0, 0, 0, 1, 2};
    EXPECT_THROW(cq::parse_imatrix(junk.data(), junk.size(), "junk"), Error);
}

// ---- importance-weighted quantizers -------------------------------------------------------------

const GGMLType kWeighted[] = {GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_0, GGMLType::Q5_1, GGMLType::Q2_K,
                              GGMLType::Q3_K, GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K, GGMLType::IQ4_NL,
                              GGMLType::IQ4_XS};

// sum over rows and columns of imp_j (w - q)^2, and the plain squared error
std::pair<double, double> errors(GGMLType t, const std::vector<float>& w, int64_t n_rows, int64_t n,
                                 const std::vector<float>& imp, const float* qw) {
    const kernels::TypeTraits* tt = kernels::ref_traits(t);
    std::vector<uint8_t> q(row_size(t, n));
    std::vector<float> back(static_cast<size_t>(n));
    double e_imp = 0, e = 0;
    for (int64_t r = 0; r < n_rows; ++r) {
        const float* x = w.data() + r * n;
        if (!kernels::ref::quantize_row_imatrix(t, x, q.data(), n, qw)) tt->quantize_ref(x, q.data(), n);
        tt->to_float(q.data(), back.data(), n);
        for (int64_t j = 0; j < n; ++j) {
            const double d = static_cast<double>(x[j]) - back[static_cast<size_t>(j)];
            EXPECT_TRUE(std::isfinite(back[static_cast<size_t>(j)]));
            e_imp += imp[static_cast<size_t>(j)] * d * d;
            e += d * d;
        }
    }
    return {e_imp, e};
}

TEST(ImatrixQuant, WeightedErrorBelowRtnForEveryType) {
    const int64_t n = 512, n_rows = 16;
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(n * n_rows));
    for (float& v : w) v = nd(rng);
    // importances spanning four orders of magnitude, as activations' mean squares do
    std::vector<float> imp(static_cast<size_t>(n));
    std::uniform_real_distribution<float> ud(-2.0f, 2.0f);
    for (float& v : imp) v = std::pow(10.0f, ud(rng));
    for (GGMLType t : kWeighted) {
        ASSERT_TRUE(kernels::ref::has_imatrix_quantizer(t)) << type_name(t);
        const auto rtn = errors(t, w, n_rows, n, imp, nullptr);
        const auto wtd = errors(t, w, n_rows, n, imp, imp.data());
        EXPECT_LT(wtd.first, rtn.first) << type_name(t) << ": weighted " << wtd.first << " vs RTN " << rtn.first;
        // uniform importance: as good as RTN within a few percent (the searches differ)
        const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
        const auto uni = errors(t, w, n_rows, n, ones, ones.data());
        EXPECT_LT(uni.second, 1.1 * rtn.second) << type_name(t);
        EXPECT_GT(uni.second, 0.0) << type_name(t);
    }
    EXPECT_FALSE(kernels::ref::has_imatrix_quantizer(GGMLType::Q8_0));
    std::vector<uint8_t> q(row_size(GGMLType::Q8_0, n));
    EXPECT_FALSE(kernels::ref::quantize_row_imatrix(GGMLType::Q8_0, w.data(), q.data(), n, imp.data()));
}

TEST(ImatrixQuant, WithoutImportancesTheReferenceQuantizers) {
    // ggml's quantize_<type>(..., NULL) is quantize_row_<type>_ref except IQ4_NL, whose search
    // of 15 scales finds a fit at least as good as the reference's.
    const int64_t n = 256;
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(n));
    for (float& v : w) v = nd(rng);
    for (GGMLType t : kWeighted) {
        std::vector<uint8_t> q(row_size(t, n));
        const bool own = kernels::ref::quantize_row_imatrix(t, w.data(), q.data(), n, nullptr);
        EXPECT_EQ(own, t == GGMLType::IQ4_NL) << type_name(t);
    }
    const std::vector<float> ones(static_cast<size_t>(n), 1.0f);
    std::vector<uint8_t> a(row_size(GGMLType::IQ4_NL, n)), b(a.size());
    kernels::ref_traits(GGMLType::IQ4_NL)->quantize_ref(w.data(), a.data(), n);
    kernels::ref::quantize_row_imatrix(GGMLType::IQ4_NL, w.data(), b.data(), n, nullptr);
    std::vector<float> fa(static_cast<size_t>(n)), fb(fa.size());
    kernels::ref_traits(GGMLType::IQ4_NL)->to_float(a.data(), fa.data(), n);
    kernels::ref_traits(GGMLType::IQ4_NL)->to_float(b.data(), fb.data(), n);
    double ea = 0, eb = 0;
    for (int64_t j = 0; j < n; ++j) {
        ea += w[static_cast<size_t>(j)] * w[static_cast<size_t>(j)] * std::pow(w[static_cast<size_t>(j)] - fa[static_cast<size_t>(j)], 2);
        eb += w[static_cast<size_t>(j)] * w[static_cast<size_t>(j)] * std::pow(w[static_cast<size_t>(j)] - fb[static_cast<size_t>(j)], 2);
    }
    EXPECT_LE(eb, ea * 1.0001);
}

// ---- the pipeline with an imatrix, and its errors -----------------------------------------------

TEST(Quantize, CalibrateThenQuantizeWithImatrix) {
    const std::string model = model_path("stories260K/stories260K.gguf");
    const std::string im = temp_dir() + "/stories.imatrix.gguf";
    CalibrateParams c;
    c.model = model;
    c.text_file = calib_text();
    c.n_samples = 4;
    c.n_ctx = 64;
    c.output = im;
    const CalibrateResult cr = calibrate_imatrix(c);
    EXPECT_EQ(cr.n_entries, 35u);  // 5 layers x (q, k, v, o, gate, up, down)
    EXPECT_EQ(cr.n_chunks, 4u);
    const cq::Imatrix m = cq::read_imatrix(im);
    EXPECT_EQ(m.chunk_size, 64u);
    const auto& q = m.entries.at("blk.0.attn_q.weight");
    EXPECT_EQ(q.counts, std::vector<float>{256});  // tokens
    EXPECT_EQ(q.sums.size(), 64u);
    EXPECT_EQ(q.sums, m.entries.at("blk.0.attn_v.weight").sums);  // one input, shared
    EXPECT_EQ(m.entries.at("blk.0.ffn_down.weight").sums.size(), 172u);

    QuantizeParams p;
    p.type = "Q4_0";
    p.imatrix_file = im;
    const std::string out = temp_dir() + "/s.im.gguf";
    const QuantizeResult r = quantize_model(model, out, p);
    const GGUFFile f = GGUFFile::open(out);
    EXPECT_EQ(f.get_str("quantize.imatrix.file"), im.substr(0, 127));
    EXPECT_EQ(f.get_u32("quantize.imatrix.entries_count"), 35u);
    EXPECT_EQ(f.get_u32("quantize.imatrix.chunks_count"), 4u);
    int n_imatrix = 0;
    for (const QuantizedTensor& t : r.tensors) n_imatrix += t.imatrix;
    EXPECT_EQ(n_imatrix, 30);  // every block matrix but ffn_down (F16: 172 is no multiple of 32)
    // the imatrix changes the bytes of the weighted tensors only
    QuantizeParams plain = p;
    plain.imatrix_file.clear();
    const std::string out2 = temp_dir() + "/s.rtn.gguf";
    quantize_model(model, out2, plain);
    const GGUFFile g = GGUFFile::open(out2);
    EXPECT_NE(std::memcmp(f.tensor("blk.0.attn_q.weight").data, g.tensor("blk.0.attn_q.weight").data,
                          g.tensor("blk.0.attn_q.weight").nbytes), 0);
    EXPECT_EQ(std::memcmp(f.tensor("output.weight").data, g.tensor("output.weight").data, g.tensor("output.weight").nbytes), 0);
    // --exclude-weights attn drops those entries
    QuantizeParams ex = p;
    ex.exclude_weights = {"attn"};
    const QuantizeResult rx = quantize_model(model, temp_dir() + "/s.ex.gguf", ex);
    n_imatrix = 0;
    for (const QuantizedTensor& t : rx.tensors) n_imatrix += t.imatrix;
    EXPECT_EQ(n_imatrix, 10);  // gate and up
}

TEST(Quantize, CalibrateMoeHasRowsPerExpert) {
    SLM_REQUIRE_SHARED();
    // the random qwen2moe of ../shared: 4 experts of width 128, 2 used per token, 2 layers
    const std::string model = shared_path("reference/archs/qwen2moe/qwen2moe.f32.gguf");
    const std::string im = temp_dir() + "/moe.imatrix.gguf";
    CalibrateParams c;
    c.model = model;
    c.text_file = calib_text();
    c.n_samples = 3;
    c.n_ctx = 32;
    c.output = im;
    calibrate_imatrix(c);
    const GGUFFile f = GGUFFile::open(im);
    EXPECT_EQ(f.tensor("blk.1.ffn_down_exps.weight.in_sum2").shape(), (std::vector<int64_t>{128, 4}));
    EXPECT_EQ(f.tensor("blk.1.ffn_gate_exps.weight.in_sum2").shape(), (std::vector<int64_t>{256, 4}));
    const cq::Imatrix m = cq::read_imatrix(im);
    for (const char* w : {"blk.0.ffn_gate_exps.weight", "blk.1.ffn_down_exps.weight"}) {
        float routed = 0;
        for (float n : m.entries.at(w).counts) routed += n;
        EXPECT_EQ(routed, 3 * 32 * 2) << w;  // every token goes to 2 experts
    }
    EXPECT_EQ(m.entries.at("blk.0.attn_q.weight").counts, std::vector<float>{96});
    // and quantizing with it uses each expert's own row (imatrix size n_in * n_expert)
    QuantizeParams p;
    p.type = "Q4_0";
    p.imatrix_file = im;
    const QuantizeResult r = quantize_model(model, temp_dir() + "/moe.q4_0.gguf", p);
    bool exps = false;
    for (const QuantizedTensor& t : r.tensors) exps |= t.name == "blk.0.ffn_up_exps.weight" && t.imatrix;
    EXPECT_TRUE(exps);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Quantize, BadInputsAreClearErrors) {
    const std::string model = model_path("stories260K/stories260K.gguf");
    const std::string out = temp_dir() + "/bad.gguf";
    QuantizeParams p;
    p.type = "Q4_X";
    EXPECT_NE(error_of([&] { quantize_model(model, out, p); }).find("Q4_X"), std::string::npos);
    p.type = "Q8_0";
    EXPECT_NE(error_of([&] { quantize_model(temp_dir() + "/missing.gguf", out, p); }).find("missing.gguf"),
              std::string::npos);
    // a quantized input needs --allow-requantize
    const std::string q8 = temp_dir() + "/s.q8.gguf";
    quantize_model(model, q8, p);
    p.type = "Q4_K_M";
    const std::string e = error_of([&] { quantize_model(q8, out, p); });
    EXPECT_NE(e.find("allow-requantize"), std::string::npos) << e;
    p.allow_requantize = true;
    const QuantizeResult r = quantize_model(q8, out, p);
    bool warned = false;
    for (const std::string& w : r.warnings) warned |= w.find("requantizing") != std::string::npos;
    EXPECT_TRUE(warned);
    // an imatrix whose entry does not fit the tensor
    cq::Imatrix m = sample_imatrix();
    m.entries["blk.0.attn_q.weight"] = {{1, 2, 3}, {1}};
    const std::string im = temp_dir() + "/wrong.imatrix";
    cq::write_imatrix(m, im);
    p = QuantizeParams{};
    p.type = "Q4_0";
    p.imatrix_file = im;
    EXPECT_NE(error_of([&] { quantize_model(model, out, p); }).find("blk.0.attn_q.weight"), std::string::npos);
    EXPECT_FALSE(std::ifstream(out + ".tmp").good());
    // calibrated methods need calibration data; unknown methods are refused
    p = QuantizeParams{};
    p.type = "Q4_0";
    p.method = "gptq";
    EXPECT_NE(error_of([&] { quantize_model(model, out, p); }).find("-f TEXT"), std::string::npos);
    p.method = "magic";
    EXPECT_NE(error_of([&] { quantize_model(model, out, p); }).find("magic"), std::string::npos);
}

TEST(QuantizeCli, QuantizesAndReportsErrors) {
    const std::string model = model_path("stories260K/stories260K.gguf");
    const std::string out = temp_dir() + "/cli.gguf";
    RunResult r = run_cli({"quantize", "--pure", "--tensor-type", "ffn_down=f16", model, out, "Q4_0", "2"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("converting to Q4_0"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("quant size"), std::string::npos);
    if (shared_available()) EXPECT_EQ(read_file(out), read_file(shared_path("reference/stories260K/stories260K.q4_0.gguf")));
    r = run_cli({"quantize", model, out, "Q9_9"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("unknown type 'Q9_9'"), std::string::npos) << r.err;
    r = run_cli({"quantize", temp_dir() + "/nope.gguf", out, "Q8_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("nope.gguf"), std::string::npos) << r.err;
    const std::string corrupt = temp_dir() + "/corrupt.gguf";
    std::vector<uint8_t> bytes = read_file(model);
    bytes.resize(bytes.size() / 2);
    write_file(corrupt, bytes);
    r = run_cli({"quantize", corrupt, out, "Q8_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("corrupt.gguf"), std::string::npos) << r.err;
    r = run_cli({"quantize", "--tensor-type", "ffn_down", model, out, "Q8_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("PATTERN=TYPE"), std::string::npos) << r.err;
    r = run_cli({"quantize", "--tensor-type", "ffn_(=q8_0", model, out, "Q8_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("regular expression"), std::string::npos) << r.err;
    r = run_cli({"quantize", "--tensor-type", "ffn_down=q9", model, out, "Q8_0"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("q9"), std::string::npos) << r.err;
    const std::string q8 = temp_dir() + "/cli.q8.gguf";
    ASSERT_EQ(run_cli({"quantize", model, q8, "Q8_0"}).exit_code, 0);
    r = run_cli({"quantize", q8, out, "Q4_K_M"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--allow-requantize"), std::string::npos) << r.err;
    // calibrate writes an imatrix quantize accepts
    const std::string im = temp_dir() + "/cli.imatrix.gguf";
    r = run_cli({"calibrate", "-m", model, "-f", calib_text(), "-o", im,
                 "--calib-samples", "2", "--calib-ctx", "32"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    r = run_cli({"quantize", "--imatrix", im, model, out, "Q4_K_M"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("(imatrix)"), std::string::npos) << r.err;
}

} // namespace
