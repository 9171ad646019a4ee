// slm synth: random-weight models of real shapes. A small shape in every writable type loads,
// reads back its hyper-parameters, has the tensors llama.cpp expects and sane logits; the bytes
// depend only on the config and the seed; presets have the real models' parameter counts; bad
// configs and flags give errors naming the flag.
#include "kernels/kernels.h"
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>

using namespace slm;

namespace {

std::string vocab(const std::string& name) { return test::source_dir() + "/tests/data/vocab/" + name; }

// 2 layers of 256, 4 query / 2 KV heads, the 32000-token Llama 2 vocabulary.
SynthConfig small(GGMLType type) {
    SynthConfig c;
    c.name = "test-small";
    c.n_ctx_train = 512;
    c.n_embd = 256;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 512;
    c.tokenizer = vocab("ggml-vocab-llama-spm.gguf");
    c.type = type;
    c.seed = 7;
    return c;
}

std::string out_path(const std::string& name) { return test::temp_dir() + "/" + name + ".gguf"; }

// Types this build can both write and run.
std::vector<GGMLType> runnable_types() {
    std::vector<GGMLType> out;
    for (GGMLType t : synth_writable_types())
        if (kernels::traits(t)) out.push_back(t);
    return out;
}

bool writable(GGMLType t) {
    for (GGMLType w : runnable_types())
        if (w == t) return true;
    return false;
}

// Logits of every prompt position are finite with a row std in [0.5, 20], and 16 greedy tokens
// are not one token repeated.
void expect_sane_outputs(const std::string& path) {
    auto model = Model::load(path);
    SessionOptions so;
    so.n_ctx = 128;
    so.n_threads = 2;
    Session s(model, so);
    const std::vector<int32_t> ids = model->vocab().tokenize("Once upon a time, there was a little dog named Max.", true, true);
    s.eval(ids, true);
    const std::span<const float> logits = s.logits();
    const size_t V = model->hparams().n_vocab;
    ASSERT_EQ(logits.size(), ids.size() * V);
    for (size_t r = 0; r < ids.size(); ++r) {
        double sum = 0, sq = 0;
        for (size_t i = 0; i < V; ++i) {
            const double v = logits[r * V + i];
            ASSERT_TRUE(std::isfinite(v)) << "row " << r << " logit " << i;
            sum += v;
            sq += v * v;
        }
        const double mean = sum / V, sd = std::sqrt(std::max(0.0, sq / V - mean * mean));
        EXPECT_GE(sd, 0.5) << "row " << r;
        EXPECT_LE(sd, 20.0) << "row " << r;
    }
    s.reset();
    GenerateParams gp;
    gp.n_predict = 16;
    gp.sampling.temp = 0;
    gp.ignore_eos = true;
    GenerateResult g = generate(s, ids, gp);
    ASSERT_EQ(g.tokens.size(), 16u);
    const std::set<int32_t> distinct(g.tokens.begin(), g.tokens.end());
    EXPECT_GE(distinct.size(), 4u) << "greedy decoding collapsed";
}

} // namespace

TEST(Synth, SmallModelInEveryWritableType) {
    const GGUFFile tok = GGUFFile::open(vocab("ggml-vocab-llama-spm.gguf"));
    const std::vector<GGMLType> types = runnable_types();
    ASSERT_GE(types.size(), 5u);  // F32, F16, Q8_0, Q4_0, ... at least
    std::string tested;
    for (GGMLType type : types) tested += std::string(type_name(type)) + " ";
    std::printf("types: %s\n", tested.c_str());
    for (GGMLType type : types) {
        SCOPED_TRACE(type_name(type));
        const SynthConfig c = small(type);
        const std::string path = out_path(std::string("small.") + type_name(type));
        const SynthResult r = synthesize(c, path);
        EXPECT_EQ(r.n_vocab, 32000u);
        EXPECT_TRUE(r.fallbacks.empty());

        // hyper-parameters read back
        auto model = Model::load(path);
        const HParams& hp = model->hparams();
        EXPECT_EQ(hp.arch, "llama");
        EXPECT_EQ(hp.name, "slm-synth test-small");
        EXPECT_EQ(hp.n_vocab, 32000u);
        EXPECT_EQ(hp.n_ctx_train, c.n_ctx_train);
        EXPECT_EQ(hp.n_embd, c.n_embd);
        EXPECT_EQ(hp.n_layer, c.n_layer);
        EXPECT_EQ(hp.n_head, c.n_head);
        EXPECT_EQ(hp.n_head_kv, c.n_head_kv);
        EXPECT_EQ(hp.n_ff, c.n_ff);
        EXPECT_EQ(hp.n_embd_head_k, 64u);
        EXPECT_EQ(hp.n_rot, 64u);
        EXPECT_EQ(hp.rms_eps, c.rms_eps);
        EXPECT_EQ(hp.rope_freq_base, c.rope_freq_base);
        EXPECT_FALSE(hp.tied_output);
        EXPECT_FALSE(hp.has_rope_freqs);

        // metadata: types as gguf-py writes them, tokenizer keys verbatim
        const GGUFFile& f = model->file();
        for (const char* k : {"llama.block_count", "llama.context_length", "llama.embedding_length",
                              "llama.feed_forward_length", "llama.attention.head_count",
                              "llama.attention.head_count_kv", "llama.rope.dimension_count", "llama.vocab_size",
                              "general.file_type"})
            EXPECT_EQ(f.find(k)->type, GGUFType::U32) << k;
        for (const char* k : {"llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"})
            EXPECT_EQ(f.find(k)->type, GGUFType::F32) << k;
        EXPECT_FALSE(f.has("llama.attention.key_length"));  // head_dim not given
        EXPECT_EQ(f.get_u32("general.file_type"), llama_file_type(type));
        EXPECT_EQ(f.has("general.quantization_version"), type != GGMLType::F32);
        size_t n_tok_keys = 0;
        for (const auto& [k, v] : tok.kv()) {
            if (k.rfind("tokenizer.", 0) != 0) continue;
            ++n_tok_keys;
            ASSERT_NE(f.find(k), nullptr) << k;
            EXPECT_TRUE(*f.find(k) == v) << k;
        }
        EXPECT_GE(n_tok_keys, 8u);
        EXPECT_EQ(f.get_u32("llama.attention.head_count"), 4u);  // not the vocab file's 32

        // tensors: names, order, shapes and types as synth_tensors() lists them, as llama.cpp names them
        const std::vector<SynthTensor> want = synth_tensors([&] {
            SynthConfig cc = c;
            cc.n_vocab = 32000;
            return cc;
        }());
        ASSERT_EQ(f.tensors().size(), want.size());
        ASSERT_EQ(want.size(), 2u + 9u * 2u + 1u);
        for (size_t i = 0; i < want.size(); ++i) {
            const GGUFTensorInfo& t = f.tensors()[i];
            EXPECT_EQ(t.name, want[i].name);
            EXPECT_EQ(t.shape(), want[i].ne) << t.name;
            EXPECT_EQ(t.type, want[i].type) << t.name;
            EXPECT_EQ(t.nbytes, want[i].nbytes) << t.name;
            const std::string kind = t.name.rfind("blk.", 0) == 0 ? t.name.substr(t.name.find('.', 4) + 1) : t.name;
            const uint32_t il = t.name.rfind("blk.", 0) == 0 ? static_cast<uint32_t>(std::stoul(t.name.substr(4))) : 0;
            EXPECT_EQ(t.type, t.n_dims == 1 ? GGMLType::F32 : quant_fallback_type(synth_tensor_type(c, kind, il), t.ne[0]))
                << t.name;
        }
        EXPECT_EQ(f.tensors().front().name, "token_embd.weight");
        EXPECT_EQ(f.tensors()[1].name, "blk.0.attn_norm.weight");
        EXPECT_EQ(f.tensors()[9].name, "blk.0.ffn_down.weight");
        EXPECT_EQ(f.tensor("blk.0.attn_k.weight").shape(), (std::vector<int64_t>{256, 128}));
        EXPECT_EQ(f.tensor("blk.1.attn_output.weight").shape(), (std::vector<int64_t>{256, 256}));
        EXPECT_EQ(f.tensor("blk.1.ffn_down.weight").shape(), (std::vector<int64_t>{512, 256}));
        EXPECT_EQ(f.tensor("output.weight").shape(), (std::vector<int64_t>{256, 32000}));
        EXPECT_EQ(f.tensors().back().name, "output.weight");
        EXPECT_EQ(r.file_bytes, f.file_size());

        expect_sane_outputs(path);
        model.reset();
        std::remove(path.c_str());  // 17 files of up to 70 MB: keep the disk footprint of the test small
    }
}

TEST(Synth, TiedEmbeddingsAndHeadDim) {
    SynthConfig c = small(GGMLType::Q8_0);
    c.tied_embeddings = true;
    c.head_dim = 32;  // 4 heads of 32 != 256 / 4: key_length/value_length are written
    const std::string path = out_path("tied");
    synthesize(c, path);
    auto model = Model::load(path);
    EXPECT_TRUE(model->hparams().tied_output);
    EXPECT_EQ(model->hparams().n_embd_head_k, 32u);
    EXPECT_EQ(model->file().get_u32("llama.attention.key_length"), 32u);
    EXPECT_EQ(model->file().get_u32("llama.attention.value_length"), 32u);
    EXPECT_EQ(model->file().find_tensor("output.weight"), nullptr);
    EXPECT_EQ(model->file().tensor("blk.0.attn_q.weight").shape(), (std::vector<int64_t>{256, 128}));
    EXPECT_EQ(model->file().tensor("blk.0.attn_output.weight").shape(), (std::vector<int64_t>{128, 256}));
    EXPECT_EQ(model->file().tensors().back().name, "output_norm.weight");
    expect_sane_outputs(path);
}

TEST(Synth, Llama3RopeFreqs) {
    SynthConfig c = small(GGMLType::F16);
    c.rope_freq_base = 500000;
    c.rope_llama3_factor = 32;
    c.n_ctx_train = 131072;
    const std::string path = out_path("rope-freqs");
    synthesize(c, path);
    auto model = Model::load(path);
    EXPECT_TRUE(model->hparams().has_rope_freqs);
    const GGUFTensorInfo& t = model->file().tensor("rope_freqs.weight");
    EXPECT_EQ(model->file().tensors().front().name, "rope_freqs.weight");  // generated first, as the converter does
    ASSERT_EQ(t.shape(), (std::vector<int64_t>{32}));
    const float* x = reinterpret_cast<const float*>(t.data);
    EXPECT_EQ(x[0], 1.0f);   // high frequencies unscaled
    EXPECT_EQ(x[31], 32.0f); // low frequencies scaled by the factor
    for (int i = 1; i < 32; ++i) EXPECT_GE(x[i], x[i - 1]);
    expect_sane_outputs(path);
}

TEST(Synth, FallbackTypes) {
    // llama.cpp's llama_tensor_get_type fallbacks, then F16
    EXPECT_EQ(quant_fallback_type(GGMLType::Q4_K, 256), GGMLType::Q4_K);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q4_K, 288), GGMLType::Q5_0);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q4_K, 272), GGMLType::F16);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q5_K, 288), GGMLType::Q5_1);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q6_K, 288), GGMLType::Q8_0);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q6_K, 172), GGMLType::F16);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q3_K, 288), GGMLType::IQ4_NL);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q2_K, 272), GGMLType::F16);
    EXPECT_EQ(quant_fallback_type(GGMLType::IQ4_XS, 288), GGMLType::IQ4_NL);
    EXPECT_EQ(quant_fallback_type(GGMLType::TQ2_0, 288), GGMLType::Q4_0);
    // where llama-quantize aborts, the end of its fallback chain
    EXPECT_EQ(quant_fallback_type(GGMLType::Q4_0, 172), GGMLType::F16);
    EXPECT_EQ(quant_fallback_type(GGMLType::Q8_0, 64), GGMLType::Q8_0);
    EXPECT_EQ(quant_fallback_type(GGMLType::F16, 17), GGMLType::F16);
    EXPECT_EQ(quant_fallback_type(GGMLType::F32, 17), GGMLType::F32);
    EXPECT_EQ(llama_file_type(GGMLType::Q4_K), 15u);
    ASSERT_NE(synth_file_type("q4_k_m"), nullptr);
    EXPECT_EQ(synth_file_type("Q4_K_M")->ftype, 15u);
    EXPECT_EQ(synth_file_type("Q4_K")->ftype, 15u);
    EXPECT_EQ(synth_file_type("Q4_K_S")->type, GGMLType::Q4_K);
    EXPECT_EQ(synth_file_type("Q4_K_X"), nullptr);
    EXPECT_EQ(llama_file_type(GGMLType::Q6_K), 18u);
    EXPECT_EQ(llama_file_type(GGMLType::Q8_0), 7u);
    EXPECT_EQ(llama_file_type(GGMLType::BF16), 32u);
    EXPECT_EQ(llama_file_type(GGMLType::TQ2_0), 37u);
    EXPECT_THROW(llama_file_type(GGMLType::Q8_K), Error);
}

TEST(Synth, FallbackForRowsThatAreNotABlockMultiple) {
    // n_ff 272: ffn_down rows of 272 elements are not a multiple of 32 -> F16; gate/up rows of
    // 256 stay Q4_0.
    SynthConfig c = small(GGMLType::Q4_0);
    c.n_ff = 272;
    const std::string path = out_path("fallback-q4_0");
    const SynthResult r = synthesize(c, path);
    ASSERT_EQ(r.fallbacks.size(), 2u);
    EXPECT_EQ(r.fallbacks[0], "blk.0.ffn_down.weight: Q4_0 -> F16 (row 272)");
    auto model = Model::load(path);
    EXPECT_EQ(model->file().tensor("blk.1.ffn_down.weight").type, GGMLType::F16);
    EXPECT_EQ(model->file().tensor("blk.1.ffn_up.weight").type, GGMLType::Q4_0);
    EXPECT_EQ(model->file().get_u32("general.file_type"), 2u);  // still "mostly Q4_0"
    expect_sane_outputs(path);

    if (writable(GGMLType::Q4_K) && writable(GGMLType::Q5_0)) {
        // n_ff 288 = 9 x 32: ffn_down Q4_K -> Q5_0, the rest Q4_K
        SynthConfig k = small(GGMLType::Q4_K);
        k.n_ff = 288;
        const std::string kp = out_path("fallback-q4_k");
        synthesize(k, kp);
        auto mk = Model::load(kp);
        EXPECT_EQ(mk->file().tensor("blk.0.ffn_down.weight").type, GGMLType::Q5_0);
        EXPECT_EQ(mk->file().tensor("blk.0.ffn_gate.weight").type, GGMLType::Q4_K);
        expect_sane_outputs(kp);
    }
}

// llama-quantize's mixtures on TinyLlama's shape (22 layers, n_gqa 8): use_more_bits picks layers
// 0, 1 (first eighth), 4, 7, 10, 13, 16 (every third after it) and 19, 20, 21 (last eighth).
TEST(Synth, LlamaQuantizeMixtures) {
    auto types_of = [](SynthConfig c) {
        std::map<std::string, GGMLType> m;
        for (const SynthTensor& t : synth_tensors(c)) m[t.name] = t.type;
        return m;
    };
    SynthConfig c = preset_tinyllama_1b();
    c.type = GGMLType::Q4_K;
    c.ftype = 15;  // Q4_K_M
    auto m = types_of(c);
    EXPECT_EQ(m["output.weight"], GGMLType::Q6_K);
    EXPECT_EQ(m["token_embd.weight"], GGMLType::Q4_K);
    const std::set<int> more = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    for (int il = 0; il < 22; ++il) {
        const std::string p = "blk." + std::to_string(il) + ".";
        const GGMLType hi = more.count(il) ? GGMLType::Q6_K : GGMLType::Q4_K;
        EXPECT_EQ(m[p + "attn_v.weight"], hi) << il;
        EXPECT_EQ(m[p + "ffn_down.weight"], hi) << il;
        EXPECT_EQ(m[p + "attn_q.weight"], GGMLType::Q4_K) << il;
        EXPECT_EQ(m[p + "ffn_up.weight"], GGMLType::Q4_K) << il;
    }
    c.ftype = 14;  // Q4_K_S: attn_v Q5_K on the first 4 layers, ffn_down on the first 22/8 = 2
    m = types_of(c);
    EXPECT_EQ(m["blk.3.attn_v.weight"], GGMLType::Q5_K);
    EXPECT_EQ(m["blk.4.attn_v.weight"], GGMLType::Q4_K);
    EXPECT_EQ(m["blk.1.ffn_down.weight"], GGMLType::Q5_K);
    EXPECT_EQ(m["blk.2.ffn_down.weight"], GGMLType::Q4_K);
    // Q4_0 (as llama-quantize without --pure): only output.weight changes, to Q6_K.
    c.type = GGMLType::Q4_0;
    c.ftype.reset();
    m = types_of(c);
    EXPECT_EQ(m["output.weight"], GGMLType::Q6_K);
    EXPECT_EQ(m["token_embd.weight"], GGMLType::Q4_0);
    EXPECT_EQ(m["blk.0.ffn_down.weight"], GGMLType::Q4_0);
    c.pure = true;
    EXPECT_EQ(types_of(c)["output.weight"], GGMLType::Q4_0);
    // Q8_0 keeps Q8_0; tied models give token_embd the output's type; a width that is not a
    // multiple of 256 gives Q8_0 (MobileLLM's 576).
    c.pure = false;
    c.type = GGMLType::Q8_0;
    EXPECT_EQ(types_of(c)["output.weight"], GGMLType::Q8_0);
    SynthConfig t = preset_mobilellm_125m();
    t.type = GGMLType::Q4_0;
    EXPECT_EQ(types_of(t)["token_embd.weight"], GGMLType::Q8_0);
    t = preset_llama32_1b();
    t.type = GGMLType::Q4_0;
    EXPECT_EQ(types_of(t)["token_embd.weight"], GGMLType::Q6_K);
    // An explicit type wins; a file type that does not fit the tensor type is refused.
    t.embd_type = GGMLType::Q8_0;
    EXPECT_EQ(types_of(t)["token_embd.weight"], GGMLType::Q8_0);
    t.ftype = 15;
    EXPECT_THROW(synth_tensors(t), slm::Error);
}

TEST(Synth, EmbeddingAndOutputTypes) {
    SynthConfig c = small(GGMLType::Q4_0);
    c.embd_type = GGMLType::Q8_0;
    c.output_type = GGMLType::F16;
    const std::string path = out_path("types");
    synthesize(c, path);
    auto model = Model::load(path);
    EXPECT_EQ(model->file().tensor("token_embd.weight").type, GGMLType::Q8_0);
    EXPECT_EQ(model->file().tensor("output.weight").type, GGMLType::F16);
    EXPECT_EQ(model->file().tensor("blk.0.attn_q.weight").type, GGMLType::Q4_0);
}

TEST(Synth, Deterministic) {
    SynthConfig c = small(GGMLType::Q4_0);
    synthesize(c, out_path("det-a"));
    c.n_threads = 1;  // thread count does not change the bytes
    synthesize(c, out_path("det-b"));
    c.seed = 8;
    synthesize(c, out_path("det-c"));
    const auto a = test::read_file(out_path("det-a")), b = test::read_file(out_path("det-b")),
               d = test::read_file(out_path("det-c"));
    EXPECT_TRUE(a == b);
    ASSERT_EQ(a.size(), d.size());
    EXPECT_FALSE(a == d);
    // Values are as specified: embeddings ~ N(0, 0.02), q ~ N(0, 2.5 / sqrt(256)).
    SynthConfig f = small(GGMLType::F32);
    synthesize(f, out_path("det-f32"));
    const GGUFFile g = GGUFFile::open(out_path("det-f32"));
    for (const auto& [name, want_std] : std::map<std::string, double>{{"token_embd.weight", 0.02},
                                                                      {"blk.0.attn_q.weight", 2.5 / 16},
                                                                      {"blk.0.ffn_up.weight", 1.0 / 16}}) {
        const GGUFTensorInfo& t = g.tensor(name);
        const float* x = reinterpret_cast<const float*>(t.data);
        double s = 0, sq = 0;
        for (int64_t i = 0; i < t.nelements(); ++i) {
            s += x[i];
            sq += double(x[i]) * x[i];
        }
        const double mean = s / t.nelements(), sd = std::sqrt(sq / t.nelements() - mean * mean);
        EXPECT_NEAR(mean, 0.0, 0.02 * want_std) << name;
        EXPECT_NEAR(sd, want_std, 0.01 * want_std) << name;
    }
}

TEST(Synth, PresetsHaveTheRealParameterCounts) {
    // Counts of the real models: TinyLlama and SmolLM2 from their config.json, the others from
    // their model cards (Llama 3.2 1B: 1.24B with its 128256-token vocabulary).
    const std::map<std::string, double> real = {
        {"tinyllama-1.1b", 1.100e9}, {"llama3.2-1b", 1.236e9},    {"smollm2-135m", 1.35e8},
        {"smollm2-360m", 3.62e8},    {"mobilellm-125m", 1.246e8}, {"mobilellm-350m", 3.453e8},
        {"mamba-130m", 1.291e8},
        // mixture of experts (model cards): Qwen1.5-MoE-A2.7B 14.3B, OLMoE-1B-7B 6.92B, Phi-3.5-MoE 41.9B
        {"qwen1.5-moe-a2.7b", 1.43e10}, {"olmoe-1b-7b", 6.92e9}, {"phi3.5-moe", 4.19e10},
        {"gemma-2b", 2.506e9},       {"granite3.1-2b", 2.534e9},  // config.json: 2,506,172,416 / 2,533,531,648
    };
    size_t n_llama = 0;
    for (const SynthPreset& p : synth_presets()) {
        const SynthConfig c = p.make();
        EXPECT_EQ(c.name, p.name);
        if (!synth_arch_supported(c.arch)) continue;
        ++n_llama;
        ASSERT_TRUE(real.count(p.name)) << p.name;
        const double n = static_cast<double>(synth_param_count(c));
        EXPECT_NEAR(n / real.at(p.name), 1.0, 0.02) << p.name << ": " << n;
        EXPECT_NEAR(n / p.real_params, 1.0, 0.02) << p.name;
        EXPECT_EQ(synth_preset(p.name).n_layer, c.n_layer);
    }
    EXPECT_EQ(n_llama, real.size());
    // A few shapes exactly
    const std::vector<SynthTensor> t = synth_tensors(preset_tinyllama_1b());
    EXPECT_EQ(t.size(), 1u + 22u * 9u + 2u);
    size_t bytes = 0;
    for (const SynthTensor& x : t) bytes += x.nbytes;
    EXPECT_EQ(bytes, 2u * 1100048384u + 2u * 92160u);  // F16, but the 92,160 norm weights F32
    EXPECT_EQ(synth_param_count(preset_tinyllama_1b()), 1100048384u);
    EXPECT_EQ(synth_param_count(preset_smollm2_135m()), 134515008u);
    EXPECT_EQ(synth_param_count(preset_smollm2_360m()), 361821120u);
    SynthConfig q = preset_smollm2_135m();
    q.type = GGMLType::Q4_K;  // rows of 576 are not a multiple of 256: everything but ffn_down -> Q5_0
    q.pure = true;
    for (const SynthTensor& x : synth_tensors(q))
        if (x.ne.size() == 2) EXPECT_EQ(x.type, x.ne[0] == 1536 ? GGMLType::Q4_K : GGMLType::Q5_0) << x.name;
}

// Gemma (always tied, GeGLU) and Granite (multiplier keys): a small shape loads in slm with the
// architecture's hyper-parameters and gives sane outputs.
TEST(Synth, GemmaAndGranite) {
    for (const char* arch : {"gemma", "granite"}) {
        SCOPED_TRACE(arch);
        SynthConfig c = small(GGMLType::Q8_0);
        c.arch = arch;
        c.head_dim = 64;
        if (c.arch == "granite") {
            c.tied_embeddings = true;
            c.embedding_scale = 12.0f;
            c.residual_scale = 0.22f;
            c.attention_scale = 0.015625f;
            c.logit_scale = 8.0f;
        }
        const std::string path = out_path(std::string("synth-") + arch);
        const SynthResult r = synthesize(c, path);
        bool has_output = false;
        for (const SynthTensor& t : r.tensors) has_output |= t.name == "output.weight";
        EXPECT_FALSE(has_output) << "tied";
        GGUFFile f = GGUFFile::open(path);
        EXPECT_EQ(f.get_str("general.architecture"), arch);
        if (c.arch == "granite") {
            EXPECT_EQ(f.get_f32("granite.embedding_scale"), 12.0f);
            EXPECT_EQ(f.get_f32("granite.residual_scale"), 0.22f);
            EXPECT_EQ(f.get_f32("granite.attention.scale"), 0.015625f);
            EXPECT_EQ(f.get_f32("granite.logit_scale"), 8.0f);
        }
        auto m = Model::load(path);
        EXPECT_EQ(m->hparams().arch, arch);
        EXPECT_TRUE(m->hparams().tied_output);
        expect_sane_outputs(path);
    }
    SynthConfig bad = small(GGMLType::F16);
    bad.logit_scale = 8.0f;  // a Granite key on a llama
    EXPECT_THROW(synth_tensors(bad), Error);
}

TEST(Synth, NonLlamaPresetsAreRejectedClearly) {
    for (const char* name : {"qwen2.5-0.5b", "qwen2.5-1.5b", "gemma2-2b", "phi3-mini"}) {
        const SynthConfig c = synth_preset(name);
        try {
            synthesize(c, out_path(name));
            ADD_FAILURE() << name << " was written";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("architecture " + c.arch + " is not supported yet"), std::string::npos)
                << e.what();
        }
        EXPECT_THROW(synth_tensors(c), Error);
    }
    EXPECT_EQ(preset_qwen25_05b().arch, "qwen2");
    EXPECT_EQ(preset_gemma2_2b().head_dim, 256u);
}

TEST(Synth, BadConfigsNameTheField) {
    auto message = [](const SynthConfig& c) -> std::string {
        try {
            synth_tensors(c);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    };
    SynthConfig c = small(GGMLType::F16);
    c.n_head = 7;
    EXPECT_NE(message(c).find("--n-head"), std::string::npos) << message(c);
    c = small(GGMLType::F16);
    c.n_head_kv = 3;
    EXPECT_NE(message(c).find("--n-head-kv"), std::string::npos) << message(c);
    c = small(GGMLType::F16);
    c.n_layer = 0;
    EXPECT_NE(message(c).find("--n-layer"), std::string::npos) << message(c);
    c = small(GGMLType::F16);
    c.type = GGMLType::Q8_K;
    EXPECT_NE(message(c).find("--type"), std::string::npos) << message(c);
    c = small(GGMLType::F16);
    c.arch = "nonesuch";
    EXPECT_NE(message(c).find("--arch"), std::string::npos) << message(c);
    EXPECT_THROW(synth_preset("nonesuch"), Error);
    c = small(GGMLType::F16);
    c.tokenizer = test::temp_dir() + "/missing.gguf";
    EXPECT_THROW(synthesize(c, out_path("never")), Error);
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");  // has a vocabulary: fine
    EXPECT_NO_THROW(synthesize(c, out_path("stories-vocab")));
}

// The layout of llama.cpp's own files: the reference tiny-random llama (made by gguf-py and
// llama-quantize --pure) has the same keys with the same GGUF types, and the same tensors with
// the same shapes and types, in every type both can make.
TEST(Synth, MatchesLlamaCppReferenceLayout) {
    SLM_REQUIRE_SHARED();
    const std::string dir = test::shared_path("reference/archs/llama/");
    const std::pair<const char*, GGMLType> files[] = {{"llama.f32.gguf", GGMLType::F32}, {"llama.f16.gguf", GGMLType::F16},
                                                       {"llama.q8_0.gguf", GGMLType::Q8_0}, {"llama.q4_0.gguf", GGMLType::Q4_0},
                                                       {"llama.q4_k.gguf", GGMLType::Q4_K}, {"llama.q6_k.gguf", GGMLType::Q6_K}};
    for (const auto& [file, type] : files) {
        if (!writable(type)) continue;
        SCOPED_TRACE(file);
        const GGUFFile ref = GGUFFile::open(dir + file);
        SynthConfig c;
        c.name = "ref";
        c.n_ctx_train = 512;
        c.n_embd = 256;
        c.n_layer = 2;
        c.n_head = 4;
        c.n_head_kv = 2;
        c.n_ff = 256;
        c.tokenizer = dir + "llama.f32.gguf";
        c.type = type;
        c.pure = true;  // the references were made with llama-quantize --pure
        const std::string path = out_path(std::string("ref.") + file);
        synthesize(c, path);
        const GGUFFile ours = GGUFFile::open(path);
        for (const auto& [k, v] : ref.kv()) {
            if (k == "general.name") continue;
            const GGUFValue* o = ours.find(k);
            ASSERT_NE(o, nullptr) << k;
            EXPECT_EQ(o->type, v.type) << k;
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

// ---- the CLI ---------------------------------------------------------------------------------

TEST(SynthCli, ListPresets) {
    const test::RunResult r = test::run_cli({"synth", "--list-presets"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const SynthPreset& p : synth_presets()) EXPECT_NE(r.out.find(p.name), std::string::npos) << p.name;
    EXPECT_NE(r.out.find("not yet: qwen2"), std::string::npos);
}

TEST(SynthCli, WritesWhatTheLibraryWrites) {
    const std::string path = out_path("cli-small");
    const test::RunResult r =
        test::run_cli({"synth", "--n-embd", "256", "--n-layer", "2", "--n-head", "4", "--n-head-kv", "2", "--n-ff", "512",
                       "--n-ctx", "512", "--type", "q8_0", "--seed", "7", "-o", path});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("wrote"), std::string::npos) << r.err;
    SynthConfig c = small(GGMLType::Q8_0);
    c.name = "custom";
    synthesize(c, out_path("lib-small"));
    EXPECT_TRUE(test::read_file(path) == test::read_file(out_path("lib-small")));
    expect_sane_outputs(path);
}

TEST(SynthCli, PresetWithOverridesAndDefaultTokenizer) {
    // mobilellm-125m's tokenizer (tests/data/vocab, found from the binary), two layers only
    const std::string path = out_path("cli-mobilellm");
    const test::RunResult r =
        test::run_cli({"synth", "--preset", "mobilellm-125m", "--n-layer", "2", "--type", "q4_0", "-o", path});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto model = Model::load(path);
    EXPECT_EQ(model->hparams().n_layer, 2u);
    EXPECT_EQ(model->hparams().n_embd, 576u);
    EXPECT_EQ(model->hparams().n_head, 9u);
    EXPECT_TRUE(model->hparams().tied_output);
    EXPECT_EQ(model->hparams().name, "slm-synth mobilellm-125m");
    const test::RunResult u = test::run_cli(
        {"synth", "--preset", "mobilellm-125m", "--n-layer", "1", "--untied", "--type", "f16", "-o", out_path("cli-untied")});
    ASSERT_EQ(u.exit_code, 0) << u.err;
    EXPECT_NE(GGUFFile::open(out_path("cli-untied")).find_tensor("output.weight"), nullptr);
}

TEST(SynthCli, BadFlagsNameTheFlag) {
    const std::string o = out_path("cli-bad");
    const std::vector<std::string> shape = {"synth", "--n-embd", "256", "--n-layer", "2", "--n-ff", "512", "-o", o};
    auto run = [&](std::vector<std::string> extra) {
        std::vector<std::string> args = shape;
        args.insert(args.end(), extra.begin(), extra.end());
        return test::run_cli(args);
    };
    struct Case {
        std::vector<std::string> args;
        std::string flag;
    };
    const Case cases[] = {
        {{"--n-head", "7", "--n-head-kv", "7"}, "--n-head"},
        {{"--n-head", "4", "--n-head-kv", "3"}, "--n-head-kv"},
        {{"--n-head", "4", "--n-head-kv", "2", "--type", "q9_9"}, "--type"},
        {{"--n-head", "4", "--n-head-kv", "2", "--type", "q8_k"}, "--type"},
        {{"--preset", "nonesuch"}, "--preset"},
        {{"--n-head", "4", "--n-head-kv", "2", "--arch", "rwkv6"}, "--arch"},
        {{"--n-head", "4", "--n-head-kv", "2", "--tokenizer", "/nonexistent/vocab.gguf"}, "vocab.gguf"},
    };
    for (const Case& c : cases) {
        const test::RunResult r = run(c.args);
        EXPECT_NE(r.exit_code, 0) << c.flag;
        EXPECT_NE(r.err.find(c.flag), std::string::npos) << c.flag << ": " << r.err;
    }
    const test::RunResult q = test::run_cli({"synth", "--preset", "qwen2.5-0.5b", "-o", o});
    EXPECT_NE(q.exit_code, 0);
    EXPECT_NE(q.err.find("architecture qwen2 is not supported yet"), std::string::npos) << q.err;
    const test::RunResult n = test::run_cli({"synth", "--preset", "smollm2-135m"});
    EXPECT_NE(n.exit_code, 0);
    EXPECT_NE(n.err.find("-o"), std::string::npos) << n.err;
}
