// config.cpp - training configs as JSON: a preset, TrainArch overrides, TrainOptions overrides.
// Every field is listed once below (arch_fields, option_fields) and serves parsing, the
// unknown-key check and writing a config back (checkpoints store the config they ran with).
#include "slm/train.h"

#include "formats/token_file.h"
#include "slm/error.h"

#include <nlohmann/json.hpp>

#include <climits>
#include <cmath>
#include <filesystem>
#include <functional>

namespace slm {

namespace {

using json = nlohmann::json;

struct Field {
    const char* name;
    std::function<void(const json&, const std::string& where)> set;  // where: "FILE: key 'train.lr'"
    std::function<json()> get;
};

[[noreturn]] void bad(const std::string& where, const char* want, const json& v) {
    fail("%s: expected %s, got %s", where.c_str(), want, v.dump().substr(0, 80).c_str());
}

template <class T> Field int_field(const char* name, T& x) {
    return {name,
            [&x](const json& v, const std::string& where) {
                if (!v.is_number_integer()) bad(where, "an integer", v);
                if (v.is_number_unsigned()) {
                    const uint64_t u = v.get<uint64_t>();
                    if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) bad(where, "a smaller integer", v);
                    x = static_cast<T>(u);
                } else {
                    const int64_t i = v.get<int64_t>();
                    if (i < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                        (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())))
                        bad(where, std::is_signed_v<T> ? "an integer in range" : "a non-negative integer", v);
                    x = static_cast<T>(i);
                }
            },
            [&x]() { return json(x); }};
}

Field float_field(const char* name, float& x) {
    return {name,
            [&x](const json& v, const std::string& where) {
                if (!v.is_number()) bad(where, "a number", v);
                const double d = v.get<double>();
                if (!std::isfinite(d)) bad(where, "a finite number", v);
                x = static_cast<float>(d);
            },
            [&x]() { return json(x); }};
}

Field bool_field(const char* name, bool& x) {
    return {name,
            [&x](const json& v, const std::string& where) {
                if (!v.is_boolean()) bad(where, "true or false", v);
                x = v.get<bool>();
            },
            [&x]() { return json(x); }};
}

// `base`: the config's folder; a relative path that exists there is taken from there.
Field path_field(const char* name, std::string& x, const std::string* base) {
    return {name,
            [&x, base](const json& v, const std::string& where) {
                if (!v.is_string()) bad(where, "a string", v);
                x = v.get<std::string>();
                if (base && !base->empty() && !x.empty() && std::filesystem::path(x).is_relative()) {
                    std::error_code ec;
                    const auto p = std::filesystem::path(*base) / x;
                    if (std::filesystem::exists(p, ec)) x = p.string();
                }
            },
            [&x]() { return json(x); }};
}

Field string_field(const char* name, std::string& x) { return path_field(name, x, nullptr); }

GGMLType parse_type(const json& v, const std::string& where) {
    if (!v.is_string()) bad(where, "a type name (\"F32\", \"Q4_0\", ...)", v);
    GGMLType t;
    if (!type_from_name(v.get<std::string>(), &t)) fail("%s: unknown type '%s'", where.c_str(), v.get<std::string>().c_str());
    return t;
}

std::vector<Field> arch_fields(TrainArch& a, const std::string* base) {
    return {
        string_field("name", a.name),
        int_field("n_vocab", a.n_vocab),
        int_field("n_ctx", a.n_ctx),
        int_field("n_embd", a.n_embd),
        int_field("n_layer", a.n_layer),
        int_field("n_head", a.n_head),
        int_field("n_head_kv", a.n_head_kv),
        int_field("head_dim", a.head_dim),
        int_field("n_ff", a.n_ff),
        int_field("layer_share", a.layer_share),
        float_field("elm_alpha_min", a.elm_alpha_min),
        float_field("elm_alpha_max", a.elm_alpha_max),
        float_field("elm_beta_min", a.elm_beta_min),
        float_field("elm_beta_max", a.elm_beta_max),
        bool_field("tied_embeddings", a.tied_embeddings),
        float_field("rope_freq_base", a.rope_freq_base),
        float_field("rms_eps", a.rms_eps),
        float_field("init_std", a.init_std),
        path_field("tokenizer", a.tokenizer, base),
    };
}

std::vector<Field> option_fields(TrainOptions& o, const std::string* base) {
    return {
        path_field("data", o.data, base),
        string_field("out", o.out),
        string_field("checkpoint_dir", o.checkpoint_dir),
        int_field("steps", o.steps),
        int_field("batch", o.batch),
        int_field("seq_len", o.seq_len),
        int_field("grad_accum", o.grad_accum),
        float_field("lr", o.lr),
        float_field("lr_min_ratio", o.lr_min_ratio),
        int_field("warmup", o.warmup),
        float_field("beta1", o.beta1),
        float_field("beta2", o.beta2),
        float_field("eps", o.eps),
        float_field("weight_decay", o.weight_decay),
        float_field("grad_clip", o.grad_clip),
        float_field("val_fraction", o.val_fraction),
        int_field("val_every", o.val_every),
        int_field("val_batches", o.val_batches),
        int_field("ckpt_every", o.ckpt_every),
        int_field("seed", o.seed),
        int_field("n_threads", o.n_threads),
        bool_field("resume", o.resume),
        {"out_type", [&o](const json& v, const std::string& where) { o.out_type = parse_type(v, where); },
         [&o]() { return json(type_name(o.out_type)); }},
        {"qat_type",
         [&o](const json& v, const std::string& where) {
             if (v.is_null()) o.qat_type.reset();
             else o.qat_type = parse_type(v, where);
         },
         [&o]() { return o.qat_type ? json(type_name(*o.qat_type)) : json(nullptr); }},
        bool_field("qat_distill", o.qat_distill),
        string_field("doc_split", o.doc_split),
        path_field("tokenizer", o.tokenizer, base),
        int_field("log_every", o.log_every),
    };
}

void apply(std::vector<Field> fields, const json& obj, const std::string& where, const char* section) {
    if (!obj.is_object()) fail("%s: key '%s' must be an object, got %s", where.c_str(), section, obj.dump().substr(0, 80).c_str());
    for (const auto& [key, value] : obj.items()) {
        const Field* f = nullptr;
        for (const Field& c : fields)
            if (key == c.name) f = &c;
        if (!f) {
            std::string known;
            for (const Field& c : fields) known += std::string(known.empty() ? "" : ", ") + c.name;
            fail("%s: unknown key '%s.%s' (known: %s)", where.c_str(), section, key.c_str(), known.c_str());
        }
        f->set(value, strprintf("%s: key '%s.%s'", where.c_str(), section, key.c_str()));
    }
}

TrainConfig parse(const std::string& text, const std::string& where, const std::string& base) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers too large
        fail("train config: %s: not valid JSON: %s", where.c_str(), e.what());
    }
    const std::string w = "train config: " + where;
    if (!j.is_object()) fail("%s: the top level must be an object with keys preset, arch, train", w.c_str());
    TrainConfig c;
    for (const auto& [key, value] : j.items())
        if (key != "preset" && key != "arch" && key != "train")
            fail("%s: unknown key '%s' (known: preset, arch, train)", w.c_str(), key.c_str());
    if (j.contains("preset")) {
        if (!j["preset"].is_string()) bad(w + ": key 'preset'", "a preset name", j["preset"]);
        c.preset = j["preset"].get<std::string>();
        try {
            c.arch = train_preset(c.preset);
        } catch (const Error& e) {
            fail("%s: key 'preset': %s", w.c_str(), e.what());
        }
    }
    if (j.contains("arch")) apply(arch_fields(c.arch, &base), j["arch"], w, "arch");
    if (j.contains("train")) apply(option_fields(c.options, &base), j["train"], w, "train");
    return c;
}

} // namespace

TrainConfig parse_train_config(const std::string& json_text, const std::string& where) {
    return parse(json_text, where, "");
}

TrainConfig load_train_config(const std::string& path) {
    const std::string text = formats::read_whole_file(path, "train config", "config");
    return parse(text, path, std::filesystem::path(path).parent_path().string());
}

std::string train_config_json(const TrainArch& arch, const TrainOptions& o) {
    TrainArch a = arch;
    TrainOptions t = o;
    json j;
    json ja = json::object(), jt = json::object();
    for (const Field& f : arch_fields(a, nullptr)) ja[f.name] = f.get();
    for (const Field& f : option_fields(t, nullptr)) jt[f.name] = f.get();
    j["arch"] = ja;
    j["train"] = jt;
    return j.dump(1);
}

std::vector<std::string> train_config_changes(const std::string& before_json, const std::string& after_json) {
    std::vector<std::string> out;
    json a, b;
    try {
        a = json::parse(before_json);
        b = json::parse(after_json);
    } catch (const json::exception&) {
        return out;
    }
    const json ta = a.contains("train") ? a["train"] : json::object(), tb = b.contains("train") ? b["train"] : json::object();
    if (!ta.is_object() || !tb.is_object()) return out;
    for (const auto& [key, value] : tb.items())
        if (!ta.contains(key) || ta[key] != value) out.push_back(key);
    return out;
}

} // namespace slm
