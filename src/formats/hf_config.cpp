// formats/hf_config.cpp - see hf_config.h. Each architecture's to_gguf follows the
// set_gguf_parameters of its class in llama.cpp's convert_hf_to_gguf.py (keys, GGUF types, order);
// to_config writes the config.json fields transformers' <Arch>Config reads for the same model.
#include "formats/hf_config.h"

#include "slm/error.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>

namespace slm::hf {

namespace {

// ---- reading config.json ----------------------------------------------------------------------

// The first of `keys` present (and not null) in the config, as convert_hf_to_gguf's find_hparam.
const json* hp(const JsonFile& c, std::initializer_list<const char*> keys, const char** found = nullptr) {
    for (const char* k : keys)
        if (const json* v = json_util::find(c.root, k)) {
            if (found) *found = k;
            return v;
        }
    return nullptr;
}

// Far above any real config's integers (vocabularies of 2^18, contexts of 2^24), and low enough
// that the sums and small multiples the readers compute from them cannot overflow 64 bits.
constexpr int64_t kMaxConfigInt = int64_t(1) << 40;

std::optional<int64_t> opt_int(const JsonFile& c, std::initializer_list<const char*> keys) {
    const char* k = nullptr;
    const json* v = hp(c, keys, &k);
    if (!v) return std::nullopt;
    const int64_t x = json_util::as_int(c, *v, k);
    if (x > kMaxConfigInt || x < -kMaxConfigInt)
        c.fail(k, std::to_string(x) + " is out of range (at most 2^40 in magnitude)");
    return x;
}

int64_t req_int(const JsonFile& c, std::initializer_list<const char*> keys) {
    if (auto v = opt_int(c, keys)) return *v;
    c.fail(*keys.begin(), "missing");
}

std::optional<double> opt_num(const JsonFile& c, std::initializer_list<const char*> keys) {
    const char* k = nullptr;
    const json* v = hp(c, keys, &k);
    if (!v) return std::nullopt;
    return json_util::as_number(c, *v, k);
}

double req_num(const JsonFile& c, std::initializer_list<const char*> keys) {
    if (auto v = opt_num(c, keys)) return *v;
    c.fail(*keys.begin(), "missing");
}

// rope_parameters (transformers 5) or rope_scaling (4.x); {} when absent.
json rope_params(const JsonFile& c) {
    const json* r = hp(c, {"rope_parameters", "rope_scaling"});
    if (!r) return json::object();
    if (!r->is_object()) c.fail("rope_scaling", std::string("expected an object, got ") + json_util::type_name(*r));
    json out = *r;
    if (out.contains("full_attention") && out["full_attention"].is_object()) out = out["full_attention"];
    if (!out.contains("rope_type") && out.contains("type")) out["rope_type"] = out["type"];
    return out;
}

std::string rope_type(const JsonFile& c) {
    const json r = rope_params(c);
    auto it = r.find("rope_type");
    if (it == r.end() || it->is_null()) return "";
    if (!it->is_string()) c.fail("rope_scaling.rope_type", "expected a string");
    return it->get<std::string>();
}

// ---- writing GGUF keys with the converter's types ---------------------------------------------

struct Keys {
    GGUFWriter& w;
    std::string a;  // "llama."
    const JsonFile* c = nullptr;

    void u32(const std::string& k, int64_t v) {
        if (v < 0 || v > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
            fail("hf: %s: value %lld for GGUF key '%s%s' does not fit UINT32", c ? c->path.c_str() : "?",
                 static_cast<long long>(v), a.c_str(), k.c_str());
        w.set(a + k, GGUFValue::u32(static_cast<uint32_t>(v)));
    }
    void f32(const std::string& k, double v) { w.set(a + k, GGUFValue::f32(static_cast<float>(v))); }
    void str(const std::string& k, const std::string& v) { w.set(a + k, GGUFValue::string(v)); }
    void boolean(const std::string& k, bool v) { w.set(a + k, GGUFValue::boolean(v)); }
    // Per-layer integer arrays: gguf-py types a list of Python ints as INT32 (GGUFValueType.get_type).
    void i32s(const std::string& k, const std::vector<int64_t>& v) {
        std::vector<int32_t> u;
        for (int64_t x : v) {
            if (x < 0 || x > static_cast<int64_t>(std::numeric_limits<int32_t>::max()))
                fail("hf: %s: value %lld for GGUF key '%s%s' does not fit INT32", c ? c->path.c_str() : "?",
                     static_cast<long long>(x), a.c_str(), k.c_str());
            u.push_back(static_cast<int32_t>(x));
        }
        w.set(a + k, GGUFValue::i32_array(u));
    }
    void file_type(uint32_t ft) { w.set("general.file_type", GGUFValue::u32(ft)); }
};

Keys keys(GGUFWriter& w, const JsonFile& c, const char* arch) { return Keys{w, std::string(arch) + ".", &c}; }

// TextModel.set_gguf_parameters: the keys every plain transformer gets.
void base_params(const JsonFile& c, uint32_t ft, Keys& k) {
    k.u32("block_count", req_int(c, {"n_layers", "num_hidden_layers", "n_layer", "num_layers"}));
    if (auto v = opt_int(c, {"max_position_embeddings", "n_ctx", "n_positions", "max_length", "max_sequence_length",
                             "model_max_length"}))
        k.u32("context_length", *v);
    if (auto v = opt_int(c, {"hidden_size", "n_embd", "dim"})) k.u32("embedding_length", *v);
    if (auto v = opt_int(c, {"intermediate_size", "n_inner", "hidden_dim"})) k.u32("feed_forward_length", *v);
    if (auto v = opt_int(c, {"num_attention_heads", "n_head", "n_heads"})) k.u32("attention.head_count", *v);
    if (auto v = opt_int(c, {"num_key_value_heads", "n_kv_heads"})) k.u32("attention.head_count_kv", *v);

    const json rp = rope_params(c);
    const std::string rt = rope_type(c);
    auto rp_num = [&](const char* key) -> std::optional<double> {
        auto it = rp.find(key);
        if (it == rp.end() || it->is_null()) return std::nullopt;
        if (!it->is_number()) c.fail(std::string("rope_scaling.") + key, "expected a number");
        return it->get<double>();
    };
    const auto factor = rp_num("factor");
    if (rt == "linear" && factor) {
        k.str("rope.scaling.type", "linear");
        k.f32("rope.scaling.factor", *factor);
    } else if (rt == "yarn" && factor) {
        k.str("rope.scaling.type", "yarn");
        k.f32("rope.scaling.factor", *factor);
        const auto orig = rp_num("original_max_position_embeddings");
        if (!orig) c.fail("rope_scaling.original_max_position_embeddings", "missing (needed for yarn)");
        k.u32("rope.scaling.original_context_length", static_cast<int64_t>(*orig));
        if (auto v = rp_num("extrapolation_factor")) k.f32("rope.scaling.yarn_ext_factor", *v);
        if (auto v = rp_num("attention_factor")) k.f32("rope.scaling.yarn_attn_factor", *v);
        else if (auto v2 = rp_num("attn_factor")) k.f32("rope.scaling.yarn_attn_factor", *v2);
        if (auto v = rp_num("beta_fast")) k.f32("rope.scaling.yarn_beta_fast", *v);
        if (auto v = rp_num("beta_slow")) k.f32("rope.scaling.yarn_beta_slow", *v);
    } else if (rt == "su" || rt == "longrope") {
        k.str("rope.scaling.type", "longrope");
    }
    std::optional<double> theta = rp_num("rope_theta");
    if (!theta) theta = opt_num(c, {"global_rope_theta", "rope_global_theta", "rope_theta_global", "rope_theta",
                                    "rotary_emb_base"});
    if (theta) k.f32("rope.freq_base", *theta);
    if (auto v = opt_num(c, {"local_rope_theta", "rope_local_theta", "rope_theta_local", "swa_rope_theta",
                             "rope_local_base_freq"}))
        k.f32("rope.freq_base_swa", *v);
    if (auto v = opt_num(c, {"rms_norm_eps", "norm_eps"})) k.f32("attention.layer_norm_rms_epsilon", *v);
    if (auto v = opt_num(c, {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"}))
        k.f32("attention.layer_norm_epsilon", *v);
    if (auto v = opt_int(c, {"num_local_experts", "num_experts"})) k.u32("expert_count", *v);
    if (auto v = opt_int(c, {"num_experts_per_tok", "num_experts_per_token", "top_k_experts"}))
        k.u32("expert_used_count", *v);
    if (auto v = opt_int(c, {"head_dim"})) {
        k.u32("attention.key_length", *v);
        k.u32("attention.value_length", *v);
    }
    k.file_type(ft);
}

// ---- writing config.json ------------------------------------------------------------------------

uint32_t u32_key(const GGUFFile& f, const std::string& key) { return f.get_u32(key); }

std::vector<int64_t> shape_of(const GGUFFile& f, const std::string& name) {
    const GGUFTensorInfo& t = f.tensor(name);
    return t.shape();
}

// The fields every decoder config shares, from the keys every GGUF of these architectures has.
json base_config(const GGUFFile& f, const ArchSpec& s) {
    const std::string a = std::string(s.gguf_arch) + ".";
    json c = json::object();
    c["architectures"] = json::array({s.hf_arch});
    c["model_type"] = s.model_type;
    c["hidden_size"] = u32_key(f, a + "embedding_length");
    c["num_hidden_layers"] = u32_key(f, a + "block_count");
    if (f.has(a + "context_length")) c["max_position_embeddings"] = u32_key(f, a + "context_length");
    c["vocab_size"] = shape_of(f, "token_embd.weight").back();
    c["tie_word_embeddings"] = f.find_tensor("output.weight") == nullptr;
    return c;
}

void attention_config(const GGUFFile& f, const ArchSpec& s, json& c) {
    const std::string a = std::string(s.gguf_arch) + ".";
    const uint32_t n_head = u32_key(f, a + "attention.head_count");
    c["num_attention_heads"] = n_head;
    c["num_key_value_heads"] = f.get_u32(a + "attention.head_count_kv", n_head);
    c["intermediate_size"] = u32_key(f, a + "feed_forward_length");
    if (f.has(a + "attention.layer_norm_rms_epsilon"))
        c["rms_norm_eps"] = f32_json(f.get_f32(a + "attention.layer_norm_rms_epsilon"));
    if (f.has(a + "rope.freq_base")) c["rope_theta"] = f32_json(f.get_f32(a + "rope.freq_base"));
    if (f.has(a + "attention.key_length")) c["head_dim"] = u32_key(f, a + "attention.key_length");
    const std::string st = f.get_str(a + "rope.scaling.type", "");
    if (st == "linear") {
        c["rope_scaling"] = {{"rope_type", "linear"}, {"factor", f32_json(f.get_f32(a + "rope.scaling.factor"))}};
    } else if (st == "yarn") {
        json r = {{"rope_type", "yarn"},
                  {"factor", f32_json(f.get_f32(a + "rope.scaling.factor"))},
                  {"original_max_position_embeddings", u32_key(f, a + "rope.scaling.original_context_length")}};
        if (f.has(a + "rope.scaling.yarn_ext_factor"))
            r["extrapolation_factor"] = f32_json(f.get_f32(a + "rope.scaling.yarn_ext_factor"));
        if (f.has(a + "rope.scaling.yarn_attn_factor"))
            r["attention_factor"] = f32_json(f.get_f32(a + "rope.scaling.yarn_attn_factor"));
        if (f.has(a + "rope.scaling.yarn_beta_fast"))
            r["beta_fast"] = f32_json(f.get_f32(a + "rope.scaling.yarn_beta_fast"));
        if (f.has(a + "rope.scaling.yarn_beta_slow"))
            r["beta_slow"] = f32_json(f.get_f32(a + "rope.scaling.yarn_beta_slow"));
        c["rope_scaling"] = r;
    } else if (!st.empty() && st != "none" && st != "longrope") {
        fail("hf: %s: rope.scaling.type '%s' has no config.json form here (linear, yarn)", f.path().c_str(), st.c_str());
    }
}

// rope.dimension_count must be the whole head: these HF configs have no partial rotary.
void require_full_rope(const GGUFFile& f, const ArchSpec& s) {
    const std::string a = std::string(s.gguf_arch) + ".";
    const uint32_t n_embd = u32_key(f, a + "embedding_length"), n_head = u32_key(f, a + "attention.head_count");
    const uint32_t hd = f.get_u32(a + "attention.key_length", n_head ? n_embd / n_head : 0);
    if (f.has(a + "rope.dimension_count") && u32_key(f, a + "rope.dimension_count") != hd)
        fail("hf: %s: rope.dimension_count %u != head size %u: %s has no partial rotary embedding", f.path().c_str(),
             u32_key(f, a + "rope.dimension_count"), hd, s.hf_arch);
}

// ---- Llama ---------------------------------------------------------------------------------

// LlamaModel.set_gguf_parameters (Llama and its subclasses: Granite).
void llama_family_params(const JsonFile& c, uint32_t ft, Keys& k) {
    base_params(c, ft, k);
    k.u32("vocab_size", req_int(c, {"vocab_size"}));
    int64_t rope_dim = 0;
    if (auto hd = opt_int(c, {"head_dim"})) rope_dim = *hd;
    else {
        const int64_t n_head = req_int(c, {"num_attention_heads"});
        if (n_head <= 0) c.fail("num_attention_heads", "must be positive");
        rope_dim = req_int(c, {"hidden_size"}) / n_head;
    }
    k.u32("rope.dimension_count", rope_dim);
}

void llama_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "llama");
    llama_family_params(c, ft, k);
}

// Granite: Llama without head_dim (the converter drops it), plus four multipliers, each written
// only when set and non-zero.
void granite_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "granite");
    JsonFile g = c;
    if (g.root.is_object()) g.root.erase("head_dim");
    llama_family_params(g, ft, k);
    const std::pair<const char*, const char*> mult[] = {{"attention_multiplier", "attention.scale"},
                                                        {"embedding_multiplier", "embedding_scale"},
                                                        {"residual_multiplier", "residual_scale"},
                                                        {"logits_scaling", "logit_scale"}};
    for (const auto& [hf_key, gguf_key] : mult)
        if (auto v = opt_num(c, {hf_key}); v && *v != 0.0) k.f32(gguf_key, *v);
}

json llama_to_config(const GGUFFile& f);
json granite_to_config(const GGUFFile& f);

// ---- Qwen2 / Qwen3 -------------------------------------------------------------------------

void qwen2_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "qwen2");
    base_params(c, ft, k);
}
void qwen3_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "qwen3");
    base_params(c, ft, k);
}

json qwen2_to_config(const GGUFFile& f);
json qwen3_to_config(const GGUFFile& f);

void qwen2moe_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "qwen2moe");
    base_params(c, ft, k);
    if (auto v = opt_int(c, {"moe_intermediate_size"})) k.u32("expert_feed_forward_length", *v);
    if (auto v = opt_int(c, {"shared_expert_intermediate_size"})) k.u32("expert_shared_feed_forward_length", *v);
}
json qwen2moe_to_config(const GGUFFile& f);

// OlmoeModel: the plain transformer keys, then a fixed rms epsilon of 1e-5 (it overwrites the
// config's value in place, so the key keeps its position when the config has one).
void olmoe_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "olmoe");
    base_params(c, ft, k);
    k.f32("attention.layer_norm_rms_epsilon", 1e-5);
}
json olmoe_to_config(const GGUFFile& f);

// ---- Phi-3 ---------------------------------------------------------------------------------

void phi3_like_params(const JsonFile& c, uint32_t ft, Keys& k) {
    const int64_t n_embd = req_int(c, {"hidden_size", "n_embd"});
    const int64_t n_head = req_int(c, {"num_attention_heads", "n_head"});
    if (n_head <= 0) c.fail("num_attention_heads", "must be positive");
    if (n_embd <= 0 || n_embd > (int64_t{1} << 31)) c.fail("hidden_size", "must be from 1 to 2^31");
    const json rp = rope_params(c);
    double rot_pct = 1.0;
    if (rp.contains("partial_rotary_factor") && rp["partial_rotary_factor"].is_number())
        rot_pct = rp["partial_rotary_factor"].get<double>();
    else if (auto v = opt_num(c, {"partial_rotary_factor"}))
        rot_pct = *v;
    if (!(rot_pct > 0.0 && rot_pct <= 1.0)) c.fail("partial_rotary_factor", "must be in (0, 1]");
    k.u32("context_length", req_int(c, {"n_positions", "max_position_embeddings"}));
    std::optional<int64_t> orig;
    if (rp.contains("original_max_position_embeddings") && rp["original_max_position_embeddings"].is_number_integer())
        orig = rp["original_max_position_embeddings"].get<int64_t>();
    else
        orig = opt_int(c, {"original_max_position_embeddings"});
    if (orig) k.u32("rope.scaling.original_context_length", *orig);
    k.u32("embedding_length", n_embd);
    k.u32("feed_forward_length", req_int(c, {"intermediate_size"}));
    k.u32("block_count", req_int(c, {"num_hidden_layers", "n_layer"}));
    k.u32("attention.head_count", n_head);
    k.u32("attention.head_count_kv", req_int(c, {"num_key_value_heads", "n_head_kv"}));
    k.f32("attention.layer_norm_rms_epsilon", req_num(c, {"rms_norm_eps"}));
    k.u32("rope.dimension_count", static_cast<int64_t>(rot_pct * static_cast<double>(n_embd)) / n_head);
    std::optional<double> theta;
    if (rp.contains("rope_theta") && rp["rope_theta"].is_number()) theta = rp["rope_theta"].get<double>();
    else theta = opt_num(c, {"rope_theta"});
    k.f32("rope.freq_base", theta.value_or(10000.0));
    k.file_type(ft);
    // 0 marks "no sliding window" (the converter's way of telling Phi-4 from Phi-3).
    k.u32("attention.sliding_window", opt_int(c, {"sliding_window"}).value_or(0));
}

void phi3_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "phi3");
    phi3_like_params(c, ft, k);
}
json phi3_to_config(const GGUFFile& f);

// PhiMoeModel: Phi3MiniModel's keys, then the expert counts (used first, as it writes them).
void phimoe_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "phimoe");
    phi3_like_params(c, ft, k);
    k.u32("expert_used_count", req_int(c, {"num_experts_per_tok", "num_experts_per_token"}));
    k.u32("expert_count", req_int(c, {"num_local_experts", "num_experts"}));
}
json phimoe_to_config(const GGUFFile& f);

// ---- Gemma ---------------------------------------------------------------------------------

void gemma_common(const JsonFile& c, uint32_t ft, Keys& k) {
    k.u32("context_length", req_int(c, {"max_position_embeddings"}));
    k.u32("embedding_length", req_int(c, {"hidden_size"}));
    k.u32("block_count", req_int(c, {"num_hidden_layers"}));
    k.u32("feed_forward_length", req_int(c, {"intermediate_size"}));
    const int64_t n_head = req_int(c, {"num_attention_heads"});
    k.u32("attention.head_count", n_head);
    k.u32("attention.head_count_kv", opt_int(c, {"num_key_value_heads"}).value_or(n_head));
    k.f32("attention.layer_norm_rms_epsilon", req_num(c, {"rms_norm_eps"}));
    const int64_t hd = req_int(c, {"head_dim"});
    k.u32("attention.key_length", hd);
    k.u32("attention.value_length", hd);
    k.file_type(ft);
}

void gemma_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "gemma");
    gemma_common(c, ft, k);
}

// llama.cpp's defaults for the local/global layer pattern when the GGUF has no key: every 2nd
// layer global for Gemma 2, every 6th for Gemma 3. Only a config that differs needs the key.
constexpr int64_t kGemma2Pattern = 2, kGemma3Pattern = 6;

std::optional<int64_t> swa_pattern(const JsonFile& c) {
    if (auto v = opt_int(c, {"sliding_window_pattern"})) return v;
    const json* lt = json_util::find(c.root, "layer_types");
    if (!lt || !lt->is_array() || lt->empty()) return std::nullopt;
    // layer_types ["sliding_attention", ..., "full_attention"]: the pattern is the first full layer + 1,
    // if the list repeats it.
    int64_t p = 0;
    for (size_t i = 0; i < lt->size(); ++i)
        if ((*lt)[i] == "full_attention") {
            p = static_cast<int64_t>(i) + 1;
            break;
        }
    if (p == 0) return std::nullopt;
    for (size_t i = 0; i < lt->size(); ++i) {
        const bool full = static_cast<int64_t>(i % p) == p - 1;
        if ((*lt)[i] != (full ? "full_attention" : "sliding_attention"))
            c.fail("layer_types", "is not a repeating pattern of sliding layers then one full layer");
    }
    return p;
}

void gemma2_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "gemma2");
    gemma_common(c, ft, k);
    k.f32("attn_logit_softcapping", req_num(c, {"attn_logit_softcapping"}));
    k.f32("final_logit_softcapping", req_num(c, {"final_logit_softcapping"}));
    k.u32("attention.sliding_window", req_int(c, {"sliding_window"}));
    if (auto p = swa_pattern(c); p && *p != kGemma2Pattern) k.u32("attention.sliding_window_pattern", *p);
}

void gemma3_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "gemma3");
    base_params(c, ft, k);
    k.u32("context_length", opt_int(c, {"max_position_embeddings"}).value_or(131072));
    k.u32("attention.head_count", opt_int(c, {"num_attention_heads"}).value_or(8));
    k.f32("attention.layer_norm_rms_epsilon", opt_num(c, {"rms_norm_eps"}).value_or(1e-6));
    k.u32("attention.key_length", opt_int(c, {"head_dim"}).value_or(256));
    k.u32("attention.value_length", opt_int(c, {"head_dim"}).value_or(256));
    const json rp = rope_params(c);
    if (rp.contains("rope_theta") && rp["rope_theta"].is_number()) k.f32("rope.freq_base", rp["rope_theta"].get<double>());
    else k.f32("rope.freq_base", opt_num(c, {"rope_theta"}).value_or(1000000.0));
    if (opt_num(c, {"attn_logit_softcapping"})) c.fail("attn_logit_softcapping", "Gemma 3 has no attention soft-capping");
    if (auto v = opt_num(c, {"final_logit_softcapping"}); v && *v != 0.0) k.f32("final_logit_softcapping", *v);
    const auto pattern = swa_pattern(c);
    if (pattern.value_or(0) != 1) k.u32("attention.sliding_window", req_int(c, {"sliding_window"}));
    k.u32("attention.head_count_kv", opt_int(c, {"num_key_value_heads"}).value_or(4));
    if (pattern && *pattern != kGemma3Pattern && *pattern != 1) k.u32("attention.sliding_window_pattern", *pattern);
}

json gemma_to_config(const GGUFFile& f);
json gemma2_to_config(const GGUFFile& f);
json gemma3_to_config(const GGUFFile& f);

// ---- Mamba / Jamba ----------------------------------------------------------------------------

void mamba_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "mamba");
    const int64_t d_model = req_int(c, {"hidden_size", "d_model"});
    const int64_t d_conv = opt_int(c, {"conv_kernel", "d_conv"}).value_or(4);
    const int64_t d_inner = opt_int(c, {"intermediate_size", "d_inner"}).value_or(2 * d_model);
    const int64_t d_state = opt_int(c, {"state_size", "d_state"}).value_or(16);
    const int64_t dt_rank = opt_int(c, {"time_step_rank", "dt_rank"}).value_or((d_model + 15) / 16);
    const double eps = opt_num(c, {"layer_norm_epsilon", "rms_norm_eps"}).value_or(1e-5);
    if (d_inner != 2 * d_model) c.fail("intermediate_size", "must be 2 x hidden_size for Mamba");
    // The converter writes 2^20 ("for those who use the default"): Mamba configs have no context
    // length. One that does (as slm's own GGUF -> HF export writes) keeps it.
    k.u32("context_length", opt_int(c, {"max_position_embeddings"}).value_or(1 << 20));
    k.u32("embedding_length", d_model);
    k.u32("feed_forward_length", 0);
    k.u32("attention.head_count", 0);
    k.u32("block_count", req_int(c, {"n_layers", "num_hidden_layers", "n_layer", "num_layers"}));
    k.u32("ssm.conv_kernel", d_conv);
    k.u32("ssm.inner_size", d_inner);
    k.u32("ssm.state_size", d_state);
    k.u32("ssm.time_step_rank", dt_rank);
    k.f32("attention.layer_norm_rms_epsilon", eps);
    const json* mt = json_util::find(c.root, "model_type");
    k.boolean("ssm.dt_b_c_rms", mt && *mt == "falcon_mamba");
    k.file_type(ft);
}
json mamba_to_config(const GGUFFile& f);

void jamba_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "jamba");
    const int64_t d_model = req_int(c, {"hidden_size", "mamba_d_model"});
    const int64_t n_layer = req_int(c, {"num_hidden_layers"});
    const int64_t n_kv = req_int(c, {"num_key_value_heads"});
    const int64_t off = req_int(c, {"attn_layer_offset"}), period = req_int(c, {"attn_layer_period"});
    if (period <= 0) c.fail("attn_layer_period", "must be positive");
    std::vector<int64_t> kv(static_cast<size_t>(std::max<int64_t>(n_layer, 0)), 0);
    for (int64_t i = off; i < n_layer; ++i)
        if (i >= 0 && (i - off) % period == 0) kv[static_cast<size_t>(i)] = n_kv;
    k.u32("block_count", n_layer);
    k.u32("context_length", req_int(c, {"max_position_embeddings", "n_ctx"}));
    k.u32("embedding_length", d_model);
    k.u32("feed_forward_length", req_int(c, {"intermediate_size"}));
    k.u32("attention.head_count", req_int(c, {"num_attention_heads"}));
    k.i32s("attention.head_count_kv", kv);
    k.u32("ssm.conv_kernel", opt_int(c, {"mamba_d_conv"}).value_or(4));
    k.u32("ssm.inner_size", req_int(c, {"mamba_expand"}) * d_model);
    k.u32("ssm.state_size", opt_int(c, {"mamba_d_state"}).value_or(16));
    k.u32("ssm.time_step_rank", opt_int(c, {"mamba_dt_rank"}).value_or((d_model + 15) / 16));
    k.f32("attention.layer_norm_rms_epsilon", opt_num(c, {"layer_norm_epsilon", "rms_norm_eps"}).value_or(1e-6));
    k.u32("expert_count", req_int(c, {"num_experts"}));
    k.u32("expert_used_count", req_int(c, {"num_experts_per_tok"}));
    k.file_type(ft);
}
json jamba_to_config(const GGUFFile& f);

// ---- OpenELM -----------------------------------------------------------------------------------

// OpenELM's make_divisible (configuration_openelm.py): round to a multiple of the divisor, but
// never more than 10% down.
int64_t make_divisible(double v, int64_t divisor) {
    int64_t n = std::max(divisor, static_cast<int64_t>(v + static_cast<double>(divisor) / 2) / divisor * divisor);
    if (static_cast<double>(n) < 0.9 * v) n += divisor;
    return n;
}

std::vector<int64_t> int_list(const JsonFile& c, const char* key) {
    const json* v = json_util::find(c.root, key);
    if (!v) c.fail(key, "missing");
    if (!v->is_array() || v->empty()) c.fail(key, "expected a non-empty list of integers");
    std::vector<int64_t> out;
    for (size_t i = 0; i < v->size(); ++i) out.push_back(json_util::as_int(c, (*v)[i], std::string(key) + "[" + std::to_string(i) + "]"));
    return out;
}

std::vector<int64_t> openelm_ffn_dims(const JsonFile& c) {
    const int64_t n_embd = req_int(c, {"model_dim"});
    const int64_t divisor = req_int(c, {"ffn_dim_divisor"});
    if (divisor <= 0) c.fail("ffn_dim_divisor", "must be positive");
    const json* m = json_util::find(c.root, "ffn_multipliers");
    if (!m || !m->is_array() || m->empty()) c.fail("ffn_multipliers", "expected a non-empty list of numbers");
    std::vector<int64_t> dims;
    for (size_t i = 0; i < m->size(); ++i) {
        const std::string key = "ffn_multipliers[" + std::to_string(i) + "]";
        const double width = json_util::as_number(c, (*m)[i], key) * static_cast<double>(n_embd);
        // Bounded before the conversion to an integer: a huge or NaN width is undefined behaviour.
        if (!(width >= 0.0 && width <= 1e12)) c.fail(key.c_str(), "times model_dim must be a width from 0 to 1e12");
        dims.push_back(make_divisible(width, divisor));
    }
    return dims;
}

void openelm_to_gguf(const JsonFile& c, uint32_t ft, GGUFWriter& w) {
    Keys k = keys(w, c, "openelm");
    const int64_t n_layer = req_int(c, {"num_transformer_layers"});
    const std::vector<int64_t> ff = openelm_ffn_dims(c), nq = int_list(c, "num_query_heads"), nkv = int_list(c, "num_kv_heads");
    if (static_cast<int64_t>(ff.size()) != n_layer || static_cast<int64_t>(nq.size()) != n_layer ||
        static_cast<int64_t>(nkv.size()) != n_layer)
        c.fail("num_transformer_layers", "ffn_multipliers, num_query_heads and num_kv_heads need one entry per layer");
    const int64_t hd = req_int(c, {"head_dim"});
    k.u32("block_count", n_layer);
    k.u32("context_length", req_int(c, {"max_context_length"}));
    k.u32("embedding_length", req_int(c, {"model_dim"}));
    k.i32s("feed_forward_length", ff);
    k.i32s("attention.head_count", nq);
    k.i32s("attention.head_count_kv", nkv);
    k.f32("rope.freq_base", req_num(c, {"rope_freq_constant"}));
    k.f32("attention.layer_norm_rms_epsilon", 1e-6);  // fixed in modeling_openelm.py
    k.u32("rope.dimension_count", hd);
    k.u32("attention.key_length", hd);
    k.u32("attention.value_length", hd);
    k.file_type(ft);
}
json openelm_to_config(const GGUFFile& f);

// ---- the table --------------------------------------------------------------------------------

std::vector<TensorRule> llama_like_rules(bool permute) {
    return {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.{bid}.input_layernorm.weight", "blk.{bid}.attn_norm.weight"},
        {"model.layers.{bid}.self_attn.q_proj.weight", "blk.{bid}.attn_q.weight", permute ? Xform::PermuteQ : Xform::None},
        {"model.layers.{bid}.self_attn.k_proj.weight", "blk.{bid}.attn_k.weight", permute ? Xform::PermuteK : Xform::None},
        {"model.layers.{bid}.self_attn.v_proj.weight", "blk.{bid}.attn_v.weight"},
        {"model.layers.{bid}.self_attn.q_proj.bias", "blk.{bid}.attn_q.bias", permute ? Xform::PermuteQ : Xform::None},
        {"model.layers.{bid}.self_attn.k_proj.bias", "blk.{bid}.attn_k.bias", permute ? Xform::PermuteK : Xform::None},
        {"model.layers.{bid}.self_attn.v_proj.bias", "blk.{bid}.attn_v.bias"},
        {"model.layers.{bid}.self_attn.o_proj.weight", "blk.{bid}.attn_output.weight"},
        {"model.layers.{bid}.self_attn.o_proj.bias", "blk.{bid}.attn_output.bias"},
        {"model.layers.{bid}.self_attn.q_norm.weight", "blk.{bid}.attn_q_norm.weight"},
        {"model.layers.{bid}.self_attn.k_norm.weight", "blk.{bid}.attn_k_norm.weight"},
        {"model.layers.{bid}.post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight"},
        {"model.layers.{bid}.mlp.gate_proj.weight", "blk.{bid}.ffn_gate.weight"},
        {"model.layers.{bid}.mlp.up_proj.weight", "blk.{bid}.ffn_up.weight"},
        {"model.layers.{bid}.mlp.down_proj.weight", "blk.{bid}.ffn_down.weight"},
    };
}

std::vector<TensorRule> qwen2moe_rules() {
    std::vector<TensorRule> r = llama_like_rules(false);
    r.erase(r.end() - 3, r.end());  // no dense FFN
    const std::vector<TensorRule> moe = {
        {"model.layers.{bid}.mlp.gate.weight", "blk.{bid}.ffn_gate_inp.weight"},
        {"model.layers.{bid}.mlp.experts.{xid}.gate_proj.weight", "blk.{bid}.ffn_gate_exps.weight"},
        {"model.layers.{bid}.mlp.experts.{xid}.up_proj.weight", "blk.{bid}.ffn_up_exps.weight"},
        {"model.layers.{bid}.mlp.experts.{xid}.down_proj.weight", "blk.{bid}.ffn_down_exps.weight"},
        {"model.layers.{bid}.mlp.shared_expert_gate.weight", "blk.{bid}.ffn_gate_inp_shexp.weight"},
        {"model.layers.{bid}.mlp.shared_expert.gate_proj.weight", "blk.{bid}.ffn_gate_shexp.weight"},
        {"model.layers.{bid}.mlp.shared_expert.up_proj.weight", "blk.{bid}.ffn_up_shexp.weight"},
        {"model.layers.{bid}.mlp.shared_expert.down_proj.weight", "blk.{bid}.ffn_down_shexp.weight"},
    };
    r.insert(r.end(), moe.begin(), moe.end());
    return r;
}

// OLMoE: Llama names without a dense FFN, Q/K norms over the whole projection, experts under
// mlp.experts (no permutation: llama.cpp runs it with NEOX RoPE, as HF's rotate-half).
std::vector<TensorRule> olmoe_rules() {
    std::vector<TensorRule> r = llama_like_rules(false);
    r.erase(r.end() - 3, r.end());
    const std::vector<TensorRule> moe = {
        {"model.layers.{bid}.mlp.gate.weight", "blk.{bid}.ffn_gate_inp.weight"},
        {"model.layers.{bid}.mlp.experts.{xid}.gate_proj.weight", "blk.{bid}.ffn_gate_exps.weight"},
        {"model.layers.{bid}.mlp.experts.{xid}.up_proj.weight", "blk.{bid}.ffn_up_exps.weight"},
        {"model.layers.{bid}.mlp.experts.{xid}.down_proj.weight", "blk.{bid}.ffn_down_exps.weight"},
    };
    r.insert(r.end(), moe.begin(), moe.end());
    return r;
}

// PhiMoE: separate Q/K/V with biases, LayerNorm weights and biases, an output bias, and Mixtral's
// block_sparse_moe experts w1 (gate), w2 (down), w3 (up).
std::vector<TensorRule> phimoe_rules() {
    return {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"model.norm.bias", "output_norm.bias"},
        {"lm_head.weight", "output.weight"},
        {"lm_head.bias", "output.bias"},
        {"model.layers.{bid}.input_layernorm.weight", "blk.{bid}.attn_norm.weight"},
        {"model.layers.{bid}.input_layernorm.bias", "blk.{bid}.attn_norm.bias"},
        {"model.layers.{bid}.self_attn.q_proj.weight", "blk.{bid}.attn_q.weight"},
        {"model.layers.{bid}.self_attn.k_proj.weight", "blk.{bid}.attn_k.weight"},
        {"model.layers.{bid}.self_attn.v_proj.weight", "blk.{bid}.attn_v.weight"},
        {"model.layers.{bid}.self_attn.q_proj.bias", "blk.{bid}.attn_q.bias"},
        {"model.layers.{bid}.self_attn.k_proj.bias", "blk.{bid}.attn_k.bias"},
        {"model.layers.{bid}.self_attn.v_proj.bias", "blk.{bid}.attn_v.bias"},
        {"model.layers.{bid}.self_attn.o_proj.weight", "blk.{bid}.attn_output.weight"},
        {"model.layers.{bid}.self_attn.o_proj.bias", "blk.{bid}.attn_output.bias"},
        {"model.layers.{bid}.post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight"},
        {"model.layers.{bid}.post_attention_layernorm.bias", "blk.{bid}.ffn_norm.bias"},
        {"model.layers.{bid}.block_sparse_moe.gate.weight", "blk.{bid}.ffn_gate_inp.weight"},
        {"model.layers.{bid}.block_sparse_moe.experts.{xid}.w1.weight", "blk.{bid}.ffn_gate_exps.weight"},
        {"model.layers.{bid}.block_sparse_moe.experts.{xid}.w2.weight", "blk.{bid}.ffn_down_exps.weight"},
        {"model.layers.{bid}.block_sparse_moe.experts.{xid}.w3.weight", "blk.{bid}.ffn_up_exps.weight"},
    };
}

std::vector<TensorRule> phi3_rules() {
    return {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.{bid}.input_layernorm.weight", "blk.{bid}.attn_norm.weight"},
        {"model.layers.{bid}.self_attn.qkv_proj.weight", "blk.{bid}.attn_qkv.weight"},
        {"model.layers.{bid}.self_attn.o_proj.weight", "blk.{bid}.attn_output.weight"},
        {"model.layers.{bid}.post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight"},
        {"model.layers.{bid}.mlp.gate_up_proj.weight", "blk.{bid}.ffn_up.weight"},
        {"model.layers.{bid}.mlp.down_proj.weight", "blk.{bid}.ffn_down.weight"},
    };
}

std::vector<TensorRule> gemma_rules(int version) {
    const Xform n = Xform::NormPlusOne;
    std::vector<TensorRule> r = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight", n},
        {"model.layers.{bid}.input_layernorm.weight", "blk.{bid}.attn_norm.weight", n},
        {"model.layers.{bid}.self_attn.q_proj.weight", "blk.{bid}.attn_q.weight"},
        {"model.layers.{bid}.self_attn.k_proj.weight", "blk.{bid}.attn_k.weight"},
        {"model.layers.{bid}.self_attn.v_proj.weight", "blk.{bid}.attn_v.weight"},
        {"model.layers.{bid}.self_attn.o_proj.weight", "blk.{bid}.attn_output.weight"},
        {"model.layers.{bid}.mlp.gate_proj.weight", "blk.{bid}.ffn_gate.weight"},
        {"model.layers.{bid}.mlp.up_proj.weight", "blk.{bid}.ffn_up.weight"},
        {"model.layers.{bid}.mlp.down_proj.weight", "blk.{bid}.ffn_down.weight"},
    };
    if (version == 1) {
        r.push_back({"model.layers.{bid}.post_attention_layernorm.weight", "blk.{bid}.ffn_norm.weight", n});
    } else {
        // Gemma 2/3 norm around both sub-blocks: post_attention_layernorm is the attention's
        // output norm, pre_feedforward_layernorm the FFN's input norm.
        r.push_back({"model.layers.{bid}.post_attention_layernorm.weight", "blk.{bid}.post_attention_norm.weight", n});
        r.push_back({"model.layers.{bid}.pre_feedforward_layernorm.weight", "blk.{bid}.ffn_norm.weight", n});
        r.push_back({"model.layers.{bid}.post_feedforward_layernorm.weight", "blk.{bid}.post_ffw_norm.weight", n});
    }
    if (version == 3) {
        r.push_back({"model.layers.{bid}.self_attn.q_norm.weight", "blk.{bid}.attn_q_norm.weight", n});
        r.push_back({"model.layers.{bid}.self_attn.k_norm.weight", "blk.{bid}.attn_k_norm.weight", n});
    }
    return r;
}

// TensorRule holds const char*; names built at run time are kept alive here for the program's life.
const char* intern(const std::string& s) {
    static std::vector<std::unique_ptr<std::string>> pool;
    for (const auto& p : pool)
        if (*p == s) return p->c_str();
    pool.push_back(std::make_unique<std::string>(s));
    return pool.back()->c_str();
}

std::vector<TensorRule> interned(std::vector<std::pair<std::string, TensorRule>> v) {
    std::vector<TensorRule> out;
    for (auto& [hf, r] : v) {
        r.hf = intern(hf);
        out.push_back(r);
    }
    return out;
}

std::vector<TensorRule> mamba_rules() {
    std::vector<std::pair<std::string, TensorRule>> v = {
        {"backbone.embeddings.weight", {nullptr, "token_embd.weight"}},
        {"backbone.norm_f.weight", {nullptr, "output_norm.weight"}},
        {"lm_head.weight", {nullptr, "output.weight"}},
        {"backbone.layers.{bid}.norm.weight", {nullptr, "blk.{bid}.attn_norm.weight"}},
    };
    const std::string p = "backbone.layers.{bid}.mixer";
    const char* suffix[] = {".in_proj.weight", ".conv1d.weight", ".conv1d.bias", ".x_proj.weight", ".dt_proj.weight",
                            ".dt_proj.bias",   ".A_log",         ".D",           ".out_proj.weight"};
    const char* gg[] = {"blk.{bid}.ssm_in.weight", "blk.{bid}.ssm_conv1d.weight", "blk.{bid}.ssm_conv1d.bias",
                        "blk.{bid}.ssm_x.weight",  "blk.{bid}.ssm_dt.weight",     "blk.{bid}.ssm_dt.bias",
                        "blk.{bid}.ssm_a",         "blk.{bid}.ssm_d",             "blk.{bid}.ssm_out.weight"};
    const Xform xf[] = {Xform::None, Xform::Conv1d, Xform::None, Xform::None, Xform::None,
                        Xform::None, Xform::NegExp, Xform::None, Xform::None};
    for (int i = 0; i < 9; ++i) v.push_back({p + suffix[i], {nullptr, gg[i], xf[i]}});
    return interned(std::move(v));
}

std::vector<TensorRule> jamba_rules() {
    std::vector<std::pair<std::string, TensorRule>> v = {
        {"model.embed_tokens.weight", {nullptr, "token_embd.weight"}},
        {"model.final_layernorm.weight", {nullptr, "output_norm.weight"}},
        {"lm_head.weight", {nullptr, "output.weight"}},
        {"model.layers.{bid}.input_layernorm.weight", {nullptr, "blk.{bid}.attn_norm.weight"}},
        {"model.layers.{bid}.pre_ff_layernorm.weight", {nullptr, "blk.{bid}.ffn_norm.weight"}},
        {"model.layers.{bid}.self_attn.q_proj.weight", {nullptr, "blk.{bid}.attn_q.weight"}},
        {"model.layers.{bid}.self_attn.k_proj.weight", {nullptr, "blk.{bid}.attn_k.weight"}},
        {"model.layers.{bid}.self_attn.v_proj.weight", {nullptr, "blk.{bid}.attn_v.weight"}},
        {"model.layers.{bid}.self_attn.o_proj.weight", {nullptr, "blk.{bid}.attn_output.weight"}},
        {"model.layers.{bid}.feed_forward.gate_proj.weight", {nullptr, "blk.{bid}.ffn_gate.weight"}},
        {"model.layers.{bid}.feed_forward.up_proj.weight", {nullptr, "blk.{bid}.ffn_up.weight"}},
        {"model.layers.{bid}.feed_forward.down_proj.weight", {nullptr, "blk.{bid}.ffn_down.weight"}},
        {"model.layers.{bid}.feed_forward.router.weight", {nullptr, "blk.{bid}.ffn_gate_inp.weight"}},
        {"model.layers.{bid}.feed_forward.experts.{xid}.gate_proj.weight", {nullptr, "blk.{bid}.ffn_gate_exps.weight"}},
        {"model.layers.{bid}.feed_forward.experts.{xid}.up_proj.weight", {nullptr, "blk.{bid}.ffn_up_exps.weight"}},
        {"model.layers.{bid}.feed_forward.experts.{xid}.down_proj.weight", {nullptr, "blk.{bid}.ffn_down_exps.weight"}},
        {"model.layers.{bid}.mamba.dt_layernorm.weight", {nullptr, "blk.{bid}.ssm_dt_norm.weight"}},
        {"model.layers.{bid}.mamba.b_layernorm.weight", {nullptr, "blk.{bid}.ssm_b_norm.weight"}},
        {"model.layers.{bid}.mamba.c_layernorm.weight", {nullptr, "blk.{bid}.ssm_c_norm.weight"}},
    };
    const std::string p = "model.layers.{bid}.mamba";
    const char* suffix[] = {".in_proj.weight", ".conv1d.weight", ".conv1d.bias", ".x_proj.weight", ".dt_proj.weight",
                            ".dt_proj.bias",   ".A_log",         ".D",           ".out_proj.weight"};
    const char* gg[] = {"blk.{bid}.ssm_in.weight", "blk.{bid}.ssm_conv1d.weight", "blk.{bid}.ssm_conv1d.bias",
                        "blk.{bid}.ssm_x.weight",  "blk.{bid}.ssm_dt.weight",     "blk.{bid}.ssm_dt.bias",
                        "blk.{bid}.ssm_a",         "blk.{bid}.ssm_d",             "blk.{bid}.ssm_out.weight"};
    const Xform xf[] = {Xform::None, Xform::Conv1d, Xform::None, Xform::None, Xform::None,
                        Xform::None, Xform::NegExp, Xform::None, Xform::None};
    for (int i = 0; i < 9; ++i) v.push_back({p + suffix[i], {nullptr, gg[i], xf[i]}});
    return interned(std::move(v));
}

std::vector<TensorRule> openelm_rules() {
    return {
        {"transformer.token_embeddings.weight", "token_embd.weight"},
        {"transformer.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"transformer.layers.{bid}.attn_norm.weight", "blk.{bid}.attn_norm.weight"},
        {"transformer.layers.{bid}.attn.qkv_proj.weight", "blk.{bid}.attn_qkv.weight"},
        {"transformer.layers.{bid}.attn.q_norm.weight", "blk.{bid}.attn_q_norm.weight"},
        {"transformer.layers.{bid}.attn.k_norm.weight", "blk.{bid}.attn_k_norm.weight"},
        {"transformer.layers.{bid}.attn.out_proj.weight", "blk.{bid}.attn_output.weight"},
        {"transformer.layers.{bid}.ffn_norm.weight", "blk.{bid}.ffn_norm.weight"},
        {"transformer.layers.{bid}.ffn.proj_2.weight", "blk.{bid}.ffn_down.weight"},
    };
}

const std::vector<ArchSpec>& table() {
    static const std::vector<ArchSpec> t = {
        {"LlamaForCausalLM", "llama", "llama", llama_to_gguf, llama_to_config, llama_like_rules(true), {}, false, false},
        {"GraniteForCausalLM", "granite", "granite", granite_to_gguf, granite_to_config, llama_like_rules(true), {},
         false, false},
        {"Qwen2ForCausalLM", "qwen2", "qwen2", qwen2_to_gguf, qwen2_to_config, llama_like_rules(false), {}, false, false},
        {"Qwen3ForCausalLM", "qwen3", "qwen3", qwen3_to_gguf, qwen3_to_config, llama_like_rules(false), {}, false, false},
        {"Qwen2MoeForCausalLM", "qwen2_moe", "qwen2moe", qwen2moe_to_gguf, qwen2moe_to_config, qwen2moe_rules(),
         {"down", "gate", "up"}, false, false},
        {"OlmoeForCausalLM", "olmoe", "olmoe", olmoe_to_gguf, olmoe_to_config, olmoe_rules(), {"down", "gate", "up"},
         false, false},
        {"Phi3ForCausalLM", "phi3", "phi3", phi3_to_gguf, phi3_to_config, phi3_rules(), {}, false, false},
        {"PhiMoEForCausalLM", "phimoe", "phimoe", phimoe_to_gguf, phimoe_to_config, phimoe_rules(), {"gate", "down", "up"},
         false, false},
        {"GemmaForCausalLM", "gemma", "gemma", gemma_to_gguf, gemma_to_config, gemma_rules(1), {}, true, false},
        {"Gemma2ForCausalLM", "gemma2", "gemma2", gemma2_to_gguf, gemma2_to_config, gemma_rules(2), {}, true, false},
        {"Gemma3ForCausalLM", "gemma3_text", "gemma3", gemma3_to_gguf, gemma3_to_config, gemma_rules(3), {}, false, false},
        {"MambaForCausalLM", "mamba", "mamba", mamba_to_gguf, mamba_to_config, mamba_rules(), {}, false, true},
        {"JambaForCausalLM", "jamba", "jamba", jamba_to_gguf, jamba_to_config, jamba_rules(), {"down", "gate", "up"},
         false, false},
        {"OpenELMForCausalLM", "openelm", "openelm", openelm_to_gguf, openelm_to_config, openelm_rules(), {}, false,
         false, {{"transformer.layers.{bid}.ffn.proj_1.weight", "blk.{bid}.ffn_gate.weight", "blk.{bid}.ffn_up.weight"}}},
    };
    return t;
}

const ArchSpec& spec(const char* gguf_arch) { return *arch_by_gguf(gguf_arch); }

// ---- to_config, per architecture ----------------------------------------------------------------

json llama_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("llama");
    require_full_rope(f, s);
    json c = base_config(f, s);
    attention_config(f, s, c);
    if (!c.contains("rope_theta")) c["rope_theta"] = 10000.0;
    c["hidden_act"] = "silu";
    c["attention_bias"] = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c["mlp_bias"] = false;
    return c;
}

json granite_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("granite");
    require_full_rope(f, s);
    json c = base_config(f, s);
    attention_config(f, s, c);
    if (c.contains("head_dim")) fail("hf: %s: Granite has no head_dim (attention.key_length)", f.path().c_str());
    if (!c.contains("rope_theta")) c["rope_theta"] = 10000.0;
    c["hidden_act"] = "silu";
    c["attention_bias"] = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c["mlp_bias"] = false;
    // A key llama.cpp does not find means: no embedding/residual/logit scaling (1.0, GraniteConfig's
    // default too) and the usual 1/sqrt(head size) attention scale (GraniteConfig's default 1.0
    // would not be that, so it is written out).
    const std::pair<const char*, const char*> mult[] = {{"embedding_multiplier", "granite.embedding_scale"},
                                                        {"residual_multiplier", "granite.residual_scale"},
                                                        {"logits_scaling", "granite.logit_scale"}};
    for (const auto& [hf_key, gguf_key] : mult)
        if (f.has(gguf_key)) c[hf_key] = f32_json(f.get_f32(gguf_key));
    const int64_t hd = c["hidden_size"].get<int64_t>() / c["num_attention_heads"].get<int64_t>();
    c["attention_multiplier"] = f.has("granite.attention.scale")
                                    ? f32_json(f.get_f32("granite.attention.scale"))
                                    : f32_json(static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd))));
    return c;
}

json qwen2_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("qwen2");
    require_full_rope(f, s);
    json c = base_config(f, s);
    attention_config(f, s, c);
    c["hidden_act"] = "silu";
    c["use_sliding_window"] = false;
    return c;
}

json qwen3_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("qwen3");
    require_full_rope(f, s);
    json c = base_config(f, s);
    attention_config(f, s, c);
    if (!c.contains("head_dim")) c["head_dim"] = c["hidden_size"].get<int64_t>() / c["num_attention_heads"].get<int64_t>();
    c["hidden_act"] = "silu";
    c["attention_bias"] = false;
    c["use_sliding_window"] = false;
    return c;
}

json qwen2moe_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("qwen2moe");
    require_full_rope(f, s);
    json c = base_config(f, s);
    attention_config(f, s, c);
    c["hidden_act"] = "silu";
    c["num_experts"] = u32_key(f, "qwen2moe.expert_count");
    c["num_experts_per_tok"] = u32_key(f, "qwen2moe.expert_used_count");
    c["moe_intermediate_size"] = u32_key(f, "qwen2moe.expert_feed_forward_length");
    c["shared_expert_intermediate_size"] = u32_key(f, "qwen2moe.expert_shared_feed_forward_length");
    c["decoder_sparse_step"] = 1;
    c["mlp_only_layers"] = json::array();
    c["norm_topk_prob"] = false;
    c["use_sliding_window"] = false;
    return c;
}

json olmoe_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("olmoe");
    require_full_rope(f, s);
    json c = base_config(f, s);
    attention_config(f, s, c);  // rms_norm_eps as the file has it; converting back writes 1e-5, as llama.cpp's converter
    c["hidden_act"] = "silu";
    c["num_experts"] = u32_key(f, "olmoe.expert_count");
    c["num_experts_per_tok"] = u32_key(f, "olmoe.expert_used_count");
    c["norm_topk_prob"] = false;
    c["attention_bias"] = false;
    c["clip_qkv"] = nullptr;
    if (f.find_tensor("blk.0.attn_q.bias")) fail("hf: %s: OLMoE has no attention biases; this file has attn_q.bias", f.path().c_str());
    return c;
}

// Phi-3 and PhiMoE: partial rotary factor, the original context, the sliding window, LongRoPE.
json phi3_like_config(const GGUFFile& f, const ArchSpec& s) {
    const std::string a = std::string(s.gguf_arch) + ".";
    json c = base_config(f, s);
    attention_config(f, s, c);
    const uint32_t n_embd = u32_key(f, a + "embedding_length"), n_head = u32_key(f, a + "attention.head_count");
    const uint32_t n_rot = f.get_u32(a + "rope.dimension_count", n_embd / n_head);
    if (n_rot * n_head != n_embd) {
        c["partial_rotary_factor"] = static_cast<double>(n_rot) * n_head / n_embd;
        if (static_cast<uint32_t>(c["partial_rotary_factor"].get<double>() * n_embd) / n_head != n_rot)
            fail("hf: %s: rope.dimension_count %u has no exact partial_rotary_factor", f.path().c_str(), n_rot);
    }
    c["original_max_position_embeddings"] =
        f.get_u32(a + "rope.scaling.original_context_length", f.get_u32(a + "context_length", 4096));
    const uint32_t swa = f.get_u32(a + "attention.sliding_window", 0);
    c["sliding_window"] = swa ? json(swa) : json(nullptr);
    c["hidden_act"] = "silu";
    const GGUFTensorInfo* lf = f.find_tensor("rope_factors_long.weight");
    const GGUFTensorInfo* sf = f.find_tensor("rope_factors_short.weight");
    if (lf || sf) {
        if (!lf || !sf || lf->type != GGMLType::F32 || sf->type != GGMLType::F32 || lf->nelements() != sf->nelements())
            fail("hf: %s: rope_factors_long/short must both be F32 of the same length", f.path().c_str());
        json rl = json::array(), rs = json::array();
        for (int64_t i = 0; i < lf->nelements(); ++i) {
            float a, b;
            std::memcpy(&a, lf->data + 4 * i, 4);
            std::memcpy(&b, sf->data + 4 * i, 4);
            rl.push_back(f32_json(a));
            rs.push_back(f32_json(b));
        }
        c["rope_scaling"] = {{"type", "longrope"}, {"long_factor", rl}, {"short_factor", rs}};
    }
    return c;
}

json phi3_to_config(const GGUFFile& f) { return phi3_like_config(f, spec("phi3")); }

json phimoe_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("phimoe");
    json c = phi3_like_config(f, s);
    c["num_local_experts"] = u32_key(f, "phimoe.expert_count");
    c["num_experts_per_tok"] = u32_key(f, "phimoe.expert_used_count");
    c["attention_bias"] = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c["lm_head_bias"] = f.find_tensor("output.bias") != nullptr;
    c["router_jitter_noise"] = 0.0;
    c["input_jitter_noise"] = 0.0;
    return c;
}

json gemma_like_config(const GGUFFile& f, const ArchSpec& s) {
    json c = base_config(f, s);
    attention_config(f, s, c);
    const std::string a = std::string(s.gguf_arch) + ".";
    if (!c.contains("head_dim")) c["head_dim"] = c["hidden_size"].get<int64_t>() / c["num_attention_heads"].get<int64_t>();
    c["hidden_activation"] = "gelu_pytorch_tanh";
    c["tie_word_embeddings"] = true;
    if (f.find_tensor("output.weight"))
        fail("hf: %s: %s always ties its output to token_embd; this file has output.weight", f.path().c_str(), s.hf_arch);
    return c;
}

json gemma_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("gemma");
    require_full_rope(f, s);
    json c = gemma_like_config(f, s);
    c["hidden_act"] = "gelu_pytorch_tanh";
    return c;
}

json gemma2_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("gemma2");
    require_full_rope(f, s);
    json c = gemma_like_config(f, s);
    c["attn_logit_softcapping"] = f32_json(f.get_f32("gemma2.attn_logit_softcapping"));
    c["final_logit_softcapping"] = f32_json(f.get_f32("gemma2.final_logit_softcapping"));
    c["sliding_window"] = u32_key(f, "gemma2.attention.sliding_window");
    c["query_pre_attn_scalar"] = c["head_dim"];
    const uint32_t pattern = f.get_u32("gemma2.attention.sliding_window_pattern", kGemma2Pattern);
    if (pattern != kGemma2Pattern) c["sliding_window_pattern"] = pattern;
    return c;
}

json gemma3_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("gemma3");
    require_full_rope(f, s);
    json c = gemma_like_config(f, s);
    c["query_pre_attn_scalar"] = c["head_dim"];
    if (f.has("gemma3.final_logit_softcapping"))
        c["final_logit_softcapping"] = f32_json(f.get_f32("gemma3.final_logit_softcapping"));
    else
        c["final_logit_softcapping"] = nullptr;
    c["attn_logit_softcapping"] = nullptr;
    if (f.has("gemma3.rope.freq_base_swa")) c["rope_local_base_freq"] = f32_json(f.get_f32("gemma3.rope.freq_base_swa"));
    if (f.has("gemma3.attention.sliding_window")) c["sliding_window"] = u32_key(f, "gemma3.attention.sliding_window");
    const uint32_t pattern = f.get_u32("gemma3.attention.sliding_window_pattern",
                                       f.has("gemma3.attention.sliding_window") ? kGemma3Pattern : 1);
    c["sliding_window_pattern"] = pattern;
    json lt = json::array();
    for (uint32_t i = 0; i < c["num_hidden_layers"].get<uint32_t>(); ++i)
        lt.push_back(pattern > 1 && i % pattern != pattern - 1 ? "sliding_attention" : "full_attention");
    c["layer_types"] = lt;
    return c;
}

json mamba_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("mamba");
    json c = base_config(f, s);
    c["intermediate_size"] = u32_key(f, "mamba.ssm.inner_size");
    c["state_size"] = u32_key(f, "mamba.ssm.state_size");
    c["conv_kernel"] = u32_key(f, "mamba.ssm.conv_kernel");
    c["time_step_rank"] = u32_key(f, "mamba.ssm.time_step_rank");
    c["layer_norm_epsilon"] = f32_json(f.get_f32("mamba.attention.layer_norm_rms_epsilon", 1e-5f));
    c["use_conv_bias"] = f.find_tensor("blk.0.ssm_conv1d.bias") != nullptr;
    c["use_bias"] = f.find_tensor("blk.0.ssm_in.bias") != nullptr;
    c["hidden_act"] = "silu";
    c["residual_in_fp32"] = true;
    if (f.get_bool("mamba.ssm.dt_b_c_rms", false))
        fail("hf: %s: ssm.dt_b_c_rms (Falcon-Mamba) is not supported", f.path().c_str());
    return c;
}

// Offset and period of the layers for which `is` holds, as Jamba's config describes them; fails
// when the layers do not form such a pattern.
std::pair<int64_t, int64_t> layer_pattern(const GGUFFile& f, const std::vector<bool>& is, const char* what) {
    std::vector<int64_t> idx;
    for (size_t i = 0; i < is.size(); ++i)
        if (is[i]) idx.push_back(static_cast<int64_t>(i));
    const int64_t n = static_cast<int64_t>(is.size());
    if (idx.empty()) return {n, 1};
    const int64_t off = idx[0], period = idx.size() > 1 ? idx[1] - idx[0] : n;
    for (int64_t i = 0; i < n; ++i)
        if (is[static_cast<size_t>(i)] != (i >= off && (i - off) % period == 0))
            fail("hf: %s: the %s layers do not follow an offset + period pattern Jamba's config can express",
                 f.path().c_str(), what);
    return {off, period};
}

json jamba_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("jamba");
    json c = base_config(f, s);
    const uint32_t n_layer = u32_key(f, "jamba.block_count");
    c["num_attention_heads"] = u32_key(f, "jamba.attention.head_count");
    c["intermediate_size"] = u32_key(f, "jamba.feed_forward_length");
    c["rms_norm_eps"] = f32_json(f.get_f32("jamba.attention.layer_norm_rms_epsilon"));
    const std::vector<uint32_t> kv = f.get_per_layer_u32("jamba.attention.head_count_kv", n_layer, 0);
    std::vector<bool> attn(n_layer), moe(n_layer);
    uint32_t n_kv = 0;
    for (uint32_t i = 0; i < n_layer; ++i) {
        attn[i] = kv[i] != 0;
        if (attn[i]) {
            if (n_kv && kv[i] != n_kv) fail("hf: %s: attention layers have different KV head counts", f.path().c_str());
            n_kv = kv[i];
        }
        moe[i] = f.find_tensor("blk." + std::to_string(i) + ".ffn_gate_exps.weight") != nullptr;
    }
    const auto [ao, ap] = layer_pattern(f, attn, "attention");
    const auto [eo, ep] = layer_pattern(f, moe, "MoE");
    c["num_key_value_heads"] = n_kv;
    c["attn_layer_offset"] = ao;
    c["attn_layer_period"] = ap;
    c["expert_layer_offset"] = eo;
    c["expert_layer_period"] = ep;
    c["num_experts"] = u32_key(f, "jamba.expert_count");
    c["num_experts_per_tok"] = u32_key(f, "jamba.expert_used_count");
    const uint32_t n_embd = u32_key(f, "jamba.embedding_length"), d_inner = u32_key(f, "jamba.ssm.inner_size");
    if (d_inner % n_embd != 0) fail("hf: %s: ssm.inner_size %u is not a multiple of %u", f.path().c_str(), d_inner, n_embd);
    c["mamba_expand"] = d_inner / n_embd;
    c["mamba_d_state"] = u32_key(f, "jamba.ssm.state_size");
    c["mamba_d_conv"] = u32_key(f, "jamba.ssm.conv_kernel");
    c["mamba_dt_rank"] = u32_key(f, "jamba.ssm.time_step_rank");
    c["mamba_conv_bias"] = true;
    c["mamba_proj_bias"] = false;
    c["hidden_act"] = "silu";
    c["use_mamba_kernels"] = false;
    return c;
}

json openelm_to_config(const GGUFFile& f) {
    const ArchSpec& s = spec("openelm");
    json c = json::object();
    c["architectures"] = json::array({s.hf_arch});
    c["model_type"] = s.model_type;
    const uint32_t n_layer = u32_key(f, "openelm.block_count"), n_embd = u32_key(f, "openelm.embedding_length");
    c["num_transformer_layers"] = n_layer;
    c["model_dim"] = n_embd;
    c["max_context_length"] = u32_key(f, "openelm.context_length");
    c["vocab_size"] = shape_of(f, "token_embd.weight").back();
    const uint32_t hd = u32_key(f, "openelm.attention.key_length");
    if (f.get_u32("openelm.attention.value_length", hd) != hd || f.get_u32("openelm.rope.dimension_count", hd) != hd)
        fail("hf: %s: OpenELM needs key_length = value_length = rope.dimension_count", f.path().c_str());
    c["head_dim"] = hd;
    c["rope_freq_constant"] = f32_json(f.get_f32("openelm.rope.freq_base"));
    const std::vector<uint32_t> ff = f.get_per_layer_u32("openelm.feed_forward_length", n_layer, 0);
    const std::vector<uint32_t> nq = f.get_per_layer_u32("openelm.attention.head_count", n_layer, 0);
    const std::vector<uint32_t> nkv = f.get_per_layer_u32("openelm.attention.head_count_kv", n_layer, 0);
    // Divisor 1 makes make_divisible(m * model_dim) give back each width exactly.
    json mult = json::array();
    for (uint32_t i = 0; i < n_layer; ++i) {
        const double m = static_cast<double>(ff[i]) / n_embd;
        if (make_divisible(m * n_embd, 1) != ff[i])
            fail("hf: %s: feed_forward_length[%u] = %u has no exact ffn_multiplier", f.path().c_str(), i, ff[i]);
        mult.push_back(m);
    }
    c["ffn_multipliers"] = mult;
    c["ffn_dim_divisor"] = 1;
    c["num_query_heads"] = nq;
    c["num_kv_heads"] = nkv;
    c["ffn_with_glu"] = true;
    c["normalize_qk_projections"] = true;
    c["share_input_output_layers"] = f.find_tensor("output.weight") == nullptr;
    c["rope_max_length"] = 4096;
    c["activation_fn_name"] = "swish";
    c["normalization_layer_name"] = "rms_norm";
    return c;
}

} // namespace

const ArchSpec* arch_by_hf(const std::string& hf_arch) {
    for (const ArchSpec& s : table())
        if (hf_arch == s.hf_arch) return &s;
    return nullptr;
}

const ArchSpec* arch_by_gguf(const std::string& gguf_arch) {
    for (const ArchSpec& s : table())
        if (gguf_arch == s.gguf_arch) return &s;
    return nullptr;
}

std::string supported_hf_archs() {
    std::string s;
    for (const ArchSpec& a : table()) s += (s.empty() ? "" : ", ") + std::string(a.hf_arch);
    return s;
}

std::string supported_gguf_archs() {
    std::string s;
    for (const ArchSpec& a : table()) s += (s.empty() ? "" : ", ") + std::string(a.gguf_arch);
    return s;
}

int64_t config_n_head(const JsonFile& c) { return req_int(c, {"n_heads", "num_attention_heads"}); }
int64_t config_n_head_kv(const JsonFile& c) {
    return opt_int(c, {"n_kv_heads", "num_key_value_heads"}).value_or(config_n_head(c));
}
int64_t config_n_experts(const JsonFile& c) { return opt_int(c, {"num_local_experts", "num_experts"}).value_or(0); }

json f32_json(float v) {
    if (!std::isfinite(v)) fail("hf: cannot write %g to config.json", v);
    char buf[64];
    for (int prec = 1; prec <= 9; ++prec) {
        std::snprintf(buf, sizeof buf, "%.*g", prec, static_cast<double>(v));
        if (std::strtof(buf, nullptr) == v) break;
    }
    const double d = std::strtod(buf, nullptr);
    // Whole numbers stay floats (10000.0), as Python writes them.
    return json(d);
}

} // namespace slm::hf
