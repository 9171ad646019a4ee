// formats/hf_convert.cpp - Hugging Face folder (config.json, safetensors, tokenizer.json) <-> GGUF.
//
// HF -> GGUF follows llama.cpp's convert_hf_to_gguf.py: keys in its order (general.architecture,
// general.type, general.name, the architecture's set_gguf_parameters, general.quantization_version,
// then the tokenizer), tensors in its order (generated tensors first, then each shard's tensors by
// name, stacked experts where a layer's last expert arrives), its names, its Q/K row permutation
// for Llama's RoPE, Gemma's 1 + w norms, Mamba's A = -exp(A_log), and its type rules (1-D tensors,
// norms, routers and SSM convolutions stay F32; Q8_0 falls back to F16 for rows not a multiple of
// 32). GGUF -> HF inverts each step; see convert.h for what is exact.
#include "formats/hf_convert.h"

#include "core/fp16.h"
#include "formats/hf_config.h"
#include "formats/hf_tokenizer.h"
#include "formats/json_util.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "slm/convert.h"
#include "slm/error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <unistd.h>

namespace slm {

namespace {

using hf::ArchSpec;
using hf::TensorRule;
using hf::Xform;
using json_util::json;

// ---- name patterns ------------------------------------------------------------------------------

// Matches `name` against a pattern with "{bid}" / "{xid}" placeholders (decimal numbers).
bool match(const char* pattern, const std::string& name, int64_t* bid, int64_t* xid) {
    const char* p = pattern;
    size_t i = 0;
    *bid = *xid = -1;
    while (*p) {
        if (std::strncmp(p, "{bid}", 5) == 0 || std::strncmp(p, "{xid}", 5) == 0) {
            int64_t* out = p[1] == 'b' ? bid : xid;
            size_t j = i;
            int64_t v = 0;
            while (j < name.size() && name[j] >= '0' && name[j] <= '9' && j - i < 9) v = v * 10 + (name[j++] - '0');
            if (j == i) return false;
            *out = v;
            i = j;
            p += 5;
        } else {
            if (i >= name.size() || name[i] != *p) return false;
            ++i;
            ++p;
        }
    }
    return i == name.size();
}

std::string format(const char* pattern, int64_t bid, int64_t xid) {
    std::string s = pattern;
    for (auto [ph, v] : {std::pair<const char*, int64_t>{"{bid}", bid}, {"{xid}", xid}}) {
        const size_t at = s.find(ph);
        if (at != std::string::npos) s.replace(at, 5, std::to_string(v));
    }
    return s;
}

bool ends_with(const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// ---- element conversions (bit-exact with ggml / gguf-py) ----------------------------------------

std::vector<float> decode(STDtype t, const uint8_t* p, int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        if (t == STDtype::F32) {
            std::memcpy(&v[i], p + 4 * i, 4);
        } else {
            uint16_t h;
            std::memcpy(&h, p + 2 * i, 2);
            v[i] = t == STDtype::F16 ? fp16::half_to_float(h) : fp16::bf16_to_float(h);
        }
    }
    return v;
}

std::vector<uint8_t> encode(const std::vector<float>& v, int64_t ne0, GGMLType t) {
    const int64_t n = static_cast<int64_t>(v.size());
    std::vector<uint8_t> out;
    switch (t) {
    case GGMLType::F32:
        out.resize(4 * v.size());
        std::memcpy(out.data(), v.data(), out.size());
        break;
    case GGMLType::F16:
    case GGMLType::BF16:
        out.resize(2 * v.size());
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t h = t == GGMLType::F16 ? kernels::fp32_to_fp16(v[i]) : kernels::fp32_to_bf16(v[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
        break;
    default: {
        const kernels::TypeTraits* tt = kernels::ref_traits(t);
        if (!tt || !tt->quantize_ref) fail("hf: cannot quantize to %s", type_name(t));
        const size_t rs = row_size(t, ne0);
        const int64_t rows = n / ne0;
        out.resize(rs * static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) tt->quantize_ref(v.data() + r * ne0, out.data() + r * rs, ne0);
    }
    }
    return out;
}

STDtype st_type(GGMLType t) {
    switch (t) {
    case GGMLType::F32: return STDtype::F32;
    case GGMLType::F16: return STDtype::F16;
    case GGMLType::BF16: return STDtype::BF16;
    default: fail("hf: no safetensors dtype for %s", type_name(t));
    }
}

GGMLType ggml_type(STDtype t) {
    switch (t) {
    case STDtype::F32: return GGMLType::F32;
    case STDtype::F16: return GGMLType::F16;
    case STDtype::BF16: return GGMLType::BF16;
    }
    return GGMLType::F32;
}

// llama_ftype of the converter's --outtype.
uint32_t file_type_of(GGMLType t) {
    switch (t) {
    case GGMLType::F32: return 0;
    case GGMLType::F16: return 1;
    case GGMLType::Q8_0: return 7;
    case GGMLType::BF16: return 32;
    default: fail("hf: output type %s is not one the converter writes (f32, f16, bf16, q8_0)", type_name(t));
    }
}

// Llama's RoPE permutation of Q/K rows (LlamaModel.permute): HF orders each head's rows as
// [first halves of the rotated pairs; second halves] (rotate_half), GGUF interleaves them so pairs
// are adjacent (ggml's NORM RoPE). Row r = h*hd + s*hd/2 + j (HF) moves to h*hd + 2j + s (GGUF).
std::vector<uint8_t> permute_rows(const uint8_t* src, int64_t rows, size_t row_bytes, int64_t n_groups,
                                  bool to_gguf, const std::string& name) {
    if (n_groups <= 0 || rows % (2 * n_groups) != 0)
        fail("hf: tensor '%s': %lld rows do not split into %lld heads of pairs", name.c_str(),
             static_cast<long long>(rows), static_cast<long long>(n_groups));
    const int64_t hd = rows / n_groups, half = hd / 2;
    std::vector<uint8_t> out(static_cast<size_t>(rows) * row_bytes);
    for (int64_t h = 0; h < n_groups; ++h)
        for (int64_t s = 0; s < 2; ++s)
            for (int64_t j = 0; j < half; ++j) {
                const int64_t hf_row = h * hd + s * half + j, gg_row = h * hd + 2 * j + s;
                const int64_t from = to_gguf ? hf_row : gg_row, to = to_gguf ? gg_row : hf_row;
                std::memcpy(out.data() + to * row_bytes, src + from * row_bytes, row_bytes);
            }
    return out;
}

// The float h whose fl(h + 1) is g (Gemma's norm shift undone). g - 1 is exact for g >= 0.5;
// below that not every g is reachable and the nearest h is kept.
float inverse_plus_one(float g) {
    const float h = g - 1.0f;
    if (h + 1.0f == g) return h;
    for (int k = 1; k <= 4; ++k)
        for (float c : {std::nextafter(h, HUGE_VALF), std::nextafter(h, -HUGE_VALF)}) {
            float x = h;
            for (int i = 0; i < k; ++i) x = std::nextafter(x, c > h ? HUGE_VALF : -HUGE_VALF);
            if (x + 1.0f == g) return x;
        }
    return h;
}

float neg_exp(float x) { return -static_cast<float>(std::exp(static_cast<double>(x))); }

// The float h with -exp(h) == g (Mamba's A_log from A), or the nearest when no float maps
// exactly (exp spreads floats above e^2 apart by more than one ulp of the result).
float inverse_neg_exp(float g, const std::string& name) {
    if (!(g < 0.0f) || !std::isfinite(g))
        fail("hf: tensor '%s': value %g is not a finite negative number, so A_log = log(-A) is undefined", name.c_str(), g);
    const float h = static_cast<float>(std::log(-static_cast<double>(g)));
    if (neg_exp(h) == g) return h;
    float best = h;
    double best_err = std::fabs(static_cast<double>(neg_exp(h)) - g);
    float up = h, down = h;
    for (int k = 1; k <= 4; ++k) {
        up = std::nextafter(up, HUGE_VALF);
        down = std::nextafter(down, -HUGE_VALF);
        for (float x : {up, down}) {
            if (neg_exp(x) == g) return x;
            const double err = std::fabs(static_cast<double>(neg_exp(x)) - g);
            if (err < best_err) best = x, best_err = err;
        }
    }
    return best;
}

// The Llama 3 RoPE frequency factors as convert_hf_to_gguf.py computes them (float32 torch ops).
std::vector<float> llama3_factors(double base, int64_t dim, double factor, double low, double high, double orig) {
    const float pi2 = static_cast<float>(2.0 * 3.14159265358979323846);
    const double low_wavelen = orig / low, high_wavelen = orig / high;
    std::vector<float> out;
    for (int64_t i = 0; i < dim; i += 2) {
        const float freq = 1.0f / std::pow(static_cast<float>(base), static_cast<float>(i) / static_cast<float>(dim));
        const float wavelen = pi2 / freq;
        if (wavelen < high_wavelen) {
            out.push_back(1.0f);
        } else if (wavelen > low_wavelen) {
            out.push_back(static_cast<float>(factor));
        } else {
            const float smooth = (static_cast<float>(orig) / wavelen - static_cast<float>(low)) /
                                 static_cast<float>(high - low);
            out.push_back(1.0f / ((1.0f - smooth) / static_cast<float>(factor) + smooth));
        }
    }
    return out;
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

std::string dir_name(const std::string& dir) {
    std::filesystem::path p(dir);
    while (!p.empty() && p.filename().empty()) p = p.parent_path();
    std::string n = std::filesystem::absolute(p).lexically_normal().filename().string();
    return n.empty() ? "model" : n;
}

// ---- HF -> GGUF ---------------------------------------------------------------------------------

struct HFConverter {
    std::string dir;
    hf::JsonFile cfg;
    const ArchSpec* spec = nullptr;
    SafetensorsCheckpoint ck;
    GGMLType out_type = GGMLType::F32;
    GGUFWriter w;
    int64_t n_head = 0, n_head_kv = 0, n_expert = 0;
    // Per layer, the expert tensors seen so far: GGUF name -> (expert id -> tensor).
    std::map<int64_t, std::map<std::string, std::map<int64_t, const SafetensorsTensor*>>> experts;
    std::map<int64_t, size_t> expert_seen;
    const SafetensorsTensor* tok_embd = nullptr;

    // The converter's type for a tensor (prepare_tensors).
    GGMLType tensor_type(const std::string& name, size_t n_dims, int64_t ne0) const {
        if (n_dims <= 1 || ends_with(name, "_norm.weight")) return GGMLType::F32;
        for (const char* f32 : {".ffn_gate_inp.weight", ".ffn_gate_inp_shexp.weight", ".ssm_conv1d.weight"})
            if (ends_with(name, f32)) return GGMLType::F32;
        if (!ends_with(name, ".weight")) return GGMLType::F32;
        if (out_type == GGMLType::Q8_0 && ne0 % 32 != 0) return GGMLType::F16;  // QuantError -> F16
        return out_type;
    }

    void add(const std::string& name, std::vector<int64_t> ne, const std::vector<float>& v) {
        const GGMLType t = tensor_type(name, ne.size(), ne[0]);
        w.add_tensor_copy(name, t, ne, encode(v, ne[0], t));
    }

    void emit(const SafetensorsTensor& t, const TensorRule& r, int64_t bid) {
        std::string gname = format(r.gguf, bid, -1);
        std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
        if (r.xform == Xform::Conv1d) {  // torch squeeze(): drop every size-1 dimension
            ne.erase(std::remove(ne.begin(), ne.end(), 1), ne.end());
            if (ne.empty()) ne.push_back(1);
        }
        if (ne.empty()) ne.push_back(1);
        if (ne.size() > 4) fail("hf: %s: tensor '%s' has %zu dimensions (GGUF holds 4)", t.file.c_str(), t.name.c_str(), ne.size());
        if (spec->drop_tied_output && gname == "output.weight" && tok_embd && tok_embd->nbytes == t.nbytes &&
            tok_embd->dtype == t.dtype && std::memcmp(tok_embd->data, t.data, t.nbytes) == 0)
            return;
        if (gname == "token_embd.weight") tok_embd = &t;

        const GGMLType tt = tensor_type(gname, ne.size(), ne[0]);
        const bool permute = r.xform == Xform::PermuteQ || r.xform == Xform::PermuteK;
        const bool values = r.xform == Xform::NormPlusOne || r.xform == Xform::NegExp;
        const int64_t rows = ne.size() == 1 ? ne[0] : t.numel() / ne[0];
        const size_t row_bytes = t.nbytes / static_cast<size_t>(std::max<int64_t>(rows, 1));
        if (!values && tt == ggml_type(t.dtype)) {
            if (permute) {
                w.add_tensor_copy(gname, tt, ne,
                                  permute_rows(t.data, rows, row_bytes, r.xform == Xform::PermuteQ ? n_head : n_head_kv,
                                               true, t.name));
            } else {
                w.add_tensor(gname, tt, ne, t.data, t.nbytes);  // straight from the mapping
            }
            return;
        }
        std::vector<uint8_t> permuted;
        const uint8_t* src = t.data;
        if (permute) {
            permuted = permute_rows(t.data, rows, row_bytes, r.xform == Xform::PermuteQ ? n_head : n_head_kv, true, t.name);
            src = permuted.data();
        }
        std::vector<float> v = decode(t.dtype, src, t.numel());
        if (values) {
            // torch computes in the tensor's own dtype when it is F16 (BF16 was widened to F32 first).
            for (float& x : v) {
                x = r.xform == Xform::NormPlusOne ? x + 1.0f : neg_exp(x);
                if (t.dtype == STDtype::F16) x = fp16::half_to_float(kernels::fp32_to_fp16(x));
            }
        }
        add(gname, ne, v);
    }

    // The first half of the rows to one GGUF tensor, the second half to another.
    void emit_split(const SafetensorsTensor& t, const hf::SplitRule& sr, int64_t bid) {
        if (t.shape.size() != 2 || t.shape[0] % 2 != 0)
            fail("hf: %s: tensor '%s' has shape %s; expected 2-D with an even number of rows", t.file.c_str(),
                 t.name.c_str(), t.shape_str().c_str());
        for (int half = 0; half < 2; ++half) {
            SafetensorsTensor h = t;
            h.shape[0] /= 2;
            h.nbytes = t.nbytes / 2;
            h.data = t.data + half * h.nbytes;
            emit(h, TensorRule{sr.hf, half ? sr.gguf_second : sr.gguf_first}, bid);
        }
    }

    void emit_experts(int64_t bid) {
        for (const std::string& kind : spec->expert_order) {
            const std::string gname = "blk." + std::to_string(bid) + ".ffn_" + kind + "_exps.weight";
            auto& m = experts[bid][gname];
            if (static_cast<int64_t>(m.size()) != n_expert)
                fail("hf: %s: layer %lld has %zu '%s' experts, expected %lld", dir.c_str(), static_cast<long long>(bid),
                     m.size(), kind.c_str(), static_cast<long long>(n_expert));
            const SafetensorsTensor* first = m.begin()->second;
            std::vector<int64_t> ne(first->shape.rbegin(), first->shape.rend());
            if (ne.size() != 2) fail("hf: %s: expert tensor '%s' is not 2-D", dir.c_str(), first->name.c_str());
            std::vector<float> all;
            all.reserve(static_cast<size_t>(first->numel() * n_expert));
            for (auto& [xid, t] : m) {
                if (t->shape != first->shape || t->dtype != first->dtype)
                    fail("hf: %s: expert tensor '%s' has shape %s %s, unlike '%s' (%s %s)", dir.c_str(), t->name.c_str(),
                         t->shape_str().c_str(), st_dtype_name(t->dtype), first->name.c_str(),
                         first->shape_str().c_str(), st_dtype_name(first->dtype));
                const std::vector<float> v = decode(t->dtype, t->data, t->numel());
                all.insert(all.end(), v.begin(), v.end());
            }
            ne.push_back(n_expert);
            add(gname, ne, all);
        }
        experts.erase(bid);
    }

    void extra_tensors() {
        const std::string hf_arch = spec->hf_arch;
        const json* rs = json_util::find(cfg.root, "rope_scaling");
        if (!rs) rs = json_util::find(cfg.root, "rope_parameters");
        if (!rs || !rs->is_object()) return;
        std::string rt;
        if (const json* t = json_util::find(*rs, "rope_type")) rt = json_util::as_string(cfg, *t, "rope_scaling.rope_type");
        else if (const json* t2 = json_util::find(*rs, "type")) rt = json_util::as_string(cfg, *t2, "rope_scaling.type");
        auto num = [&](const char* k, double def) {
            const json* v = json_util::find(*rs, k);
            return v ? json_util::as_number(cfg, *v, std::string("rope_scaling.") + k) : def;
        };
        if (hf_arch == "LlamaForCausalLM" && rt == "llama3") {
            const int64_t hidden = json_util::json_int(cfg, cfg.root, "", "hidden_size");
            const int64_t dim = json_util::json_opt_int(cfg, cfg.root, "", "head_dim").value_or(hidden / n_head);
            const double base = num("rope_theta", json_util::json_opt_number(cfg, cfg.root, "", "rope_theta").value_or(10000.0));
            const double orig = num("original_max_position_embeddings",
                                    json_util::json_opt_number(cfg, cfg.root, "", "original_max_position_embeddings")
                                        .value_or(8192));
            const std::vector<float> f = llama3_factors(base, dim, num("factor", 8.0), num("low_freq_factor", 1.0),
                                                        num("high_freq_factor", 4.0), orig);
            w.add_tensor_copy("rope_freqs.weight", GGMLType::F32, {static_cast<int64_t>(f.size())}, f32_bytes(f));
        }
        if ((hf_arch == "Phi3ForCausalLM" || hf_arch == "PhiMoEForCausalLM") && (rt == "longrope" || rt == "su") &&
            json_util::find(*rs, "long_factor")) {
            const int64_t max_pos = json_util::json_int(cfg, cfg.root, "", "max_position_embeddings");
            const int64_t orig = json_util::json_int(cfg, cfg.root, "", "original_max_position_embeddings");
            const double scale = static_cast<double>(max_pos) / static_cast<double>(orig);
            const double attn = scale > 1.0 ? std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(orig))) : 1.0;
            // One factor per rotated pair.
            const int64_t n_embd = json_util::json_int(cfg, cfg.root, "", "hidden_size");
            const int64_t n_head = hf::config_n_head(cfg);
            const double rot = json_util::json_opt_number(cfg, cfg.root, "", "partial_rotary_factor").value_or(1.0);
            const size_t n_pairs = static_cast<size_t>(static_cast<int64_t>(rot * static_cast<double>(n_embd)) / n_head / 2);
            for (const char* which : {"long_factor", "short_factor"}) {
                const json* a = json_util::find(*rs, which);
                if (!a || !a->is_array() || a->size() != n_pairs)
                    cfg.fail(std::string("rope_scaling.") + which, "expected a list of " + std::to_string(n_pairs) + " numbers");
            }
            w.set(std::string(spec->gguf_arch) + ".rope.scaling.attn_factor", GGUFValue::f32(static_cast<float>(attn)));
            for (const char* which : {"long_factor", "short_factor"}) {
                const json* a = json_util::find(*rs, which);
                if (!a || !a->is_array()) cfg.fail(std::string("rope_scaling.") + which, "expected an array");
                std::vector<float> f;
                for (size_t i = 0; i < a->size(); ++i)
                    f.push_back(static_cast<float>(
                        json_util::as_number(cfg, (*a)[i], std::string("rope_scaling.") + which + "[" + std::to_string(i) + "]")));
                const std::string n = std::string("rope_factors_") + (which[0] == 'l' ? "long" : "short") + ".weight";
                w.add_tensor_copy(n, GGMLType::F32, {static_cast<int64_t>(f.size())}, f32_bytes(f));
            }
        }
    }

    void run(const std::string& type, const std::string& out) {
        cfg = hf::JsonFile::read(dir + "/config.json", "hf");
        const json* archs = json_util::find(cfg.root, "architectures");
        if (!archs || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
            cfg.fail("architectures", "expected a list of architecture names");
        const std::string arch = (*archs)[0].get<std::string>();
        spec = hf::arch_by_hf(arch);
        if (!spec)
            fail("hf: %s: architecture '%s' is not supported; supported: %s", cfg.path.c_str(), arch.c_str(),
                 hf::supported_hf_archs().c_str());
        for (const TensorRule& r : spec->rules)
            if (r.xform == Xform::PermuteQ || r.xform == Xform::PermuteK) {  // only the permutation needs them
                n_head = hf::config_n_head(cfg);
                n_head_kv = hf::config_n_head_kv(cfg);
                break;
            }
        n_expert = hf::config_n_experts(cfg);
        if (!spec->expert_order.empty() && (n_expert < 1 || n_expert > 4096))
            cfg.fail("num_experts", "must be in [1, 4096] for " + arch);

        ck = SafetensorsCheckpoint::open_dir(dir);
        const hf::HFTokenizer tok = hf::read_hf_tokenizer(dir);

        if (type == "auto") {
            // The checkpoint's own float type, taken from its first matrix (the converter's
            // heuristic, except that F32 stays F32 where the converter's default makes F16).
            out_type = GGMLType::F32;
            for (const SafetensorsTensor* t : ck.tensors())
                if (t->shape.size() >= 2) {
                    out_type = ggml_type(t->dtype);
                    break;
                }
        } else if (!type_from_name(type, &out_type)) {
            fail("hf: unknown output type '%s' (auto, f32, f16, bf16, q8_0)", type.c_str());
        }
        const uint32_t ftype = file_type_of(out_type);

        w.set("general.architecture", GGUFValue::string(spec->gguf_arch));
        extra_tensors();
        for (const SafetensorsTensor* t : ck.tensors()) {
            if (ends_with(t->name, ".rotary_emb.inv_freq") || ends_with(t->name, ".attention.masked_bias") ||
                ends_with(t->name, ".attention.bias"))
                continue;
            if (spec->drop_lm_head && t->name == "lm_head.weight") continue;
            const TensorRule* rule = nullptr;
            int64_t bid = -1, xid = -1;
            bool split = false;
            for (const hf::SplitRule& sr : spec->splits)
                if (match(sr.hf, t->name, &bid, &xid)) {
                    emit_split(*t, sr, bid);
                    split = true;
                    break;
                }
            if (split) continue;
            for (const TensorRule& r : spec->rules)
                if (match(r.hf, t->name, &bid, &xid)) {
                    rule = &r;
                    break;
                }
            if (!rule)
                fail("hf: %s: tensor '%s' has no GGUF name for %s", t->file.c_str(), t->name.c_str(), spec->hf_arch);
            if (xid >= 0) {
                if (xid >= n_expert)
                    fail("hf: %s: tensor '%s': expert %lld but the config has %lld", t->file.c_str(), t->name.c_str(),
                         static_cast<long long>(xid), static_cast<long long>(n_expert));
                auto& slot = experts[bid][format(rule->gguf, bid, -1)];
                if (!slot.emplace(xid, t).second) fail("hf: %s: tensor '%s' seen twice", dir.c_str(), t->name.c_str());
                if (++expert_seen[bid] == static_cast<size_t>(n_expert * spec->expert_order.size())) emit_experts(bid);
                continue;
            }
            emit(*t, *rule, bid);
        }
        if (!experts.empty())
            fail("hf: %s: layer %lld has an incomplete set of expert tensors", dir.c_str(),
                 static_cast<long long>(experts.begin()->first));

        w.set("general.type", GGUFValue::string("model"));
        w.set("general.name", GGUFValue::string(dir_name(dir)));
        spec->to_gguf(cfg, ftype, w);
        w.set("general.quantization_version", GGUFValue::u32(2));
        hf::add_vocab_kv(tok.vocab, tok.chat_template, w);
        w.write(out);
    }
};

// ---- GGUF -> HF -------------------------------------------------------------------------------

std::string hf_dtype_name(GGMLType t) {
    switch (t) {
    case GGMLType::F16: return "float16";
    case GGMLType::BF16: return "bfloat16";
    default: return "float32";
    }
}

// Llama 3 rope_freqs.weight back to its rope_scaling, when it is what the standard parameters give.
json llama3_scaling(const GGUFFile& f, const GGUFTensorInfo& t) {
    if (t.type != GGMLType::F32 || t.n_dims != 1) fail("hf: %s: rope_freqs.weight must be 1-D F32", f.path().c_str());
    std::vector<float> got(static_cast<size_t>(t.ne[0]));
    std::memcpy(got.data(), t.data, got.size() * 4);
    const float factor = *std::max_element(got.begin(), got.end());
    const double base = f.get_f32("llama.rope.freq_base", 10000.0f);
    const int64_t dim = 2 * t.ne[0];
    for (double orig : {8192.0, 4096.0, 16384.0, 32768.0, 65536.0, 131072.0, 2048.0})
        for (double low : {1.0, 2.0})
            for (double high : {4.0, 8.0, 2.0})
                if (llama3_factors(base, dim, factor, low, high, orig) == got)
                    return {{"rope_type", "llama3"},
                            {"factor", hf::f32_json(factor)},
                            {"low_freq_factor", low},
                            {"high_freq_factor", high},
                            {"original_max_position_embeddings", static_cast<int64_t>(orig)}};
    fail("hf: %s: rope_freqs.weight is not the Llama 3 formula for any standard low/high frequency factors and "
         "original context; it has no config.json form",
         f.path().c_str());
}

void gguf_to_hf(const std::string& gguf_path, const std::string& dir) {
    const GGUFFile f = GGUFFile::open(gguf_path);
    const std::string arch = f.get_str("general.architecture");
    const ArchSpec* spec = hf::arch_by_gguf(arch);
    if (!spec)
        fail("hf: %s: architecture '%s' cannot be written as a Hugging Face model; supported: %s", gguf_path.c_str(),
             arch.c_str(), hf::supported_gguf_archs().c_str());
    json config = spec->to_config(f);
    const std::string a = arch + ".";
    const GGUFValue* hv = f.find(a + "attention.head_count");
    const GGUFValue* kvv = f.find(a + "attention.head_count_kv");
    const int64_t n_head = hv && hv->is_integer() ? hv->as_int(a + "attention.head_count") : 0;
    const int64_t n_head_kv = kvv && kvv->is_integer() ? kvv->as_int(a + "attention.head_count_kv") : n_head;

    SafetensorsWriter sw;
    sw.set_metadata("format", "pt");
    GGMLType main_type = GGMLType::F32;
    bool main_set = false, dequantized = false;
    for (const GGUFTensorInfo& t : f.tensors()) {
        if (t.name == "rope_freqs.weight") {
            if (arch != "llama") fail("hf: %s: rope_freqs.weight is only understood for llama", gguf_path.c_str());
            config["rope_scaling"] = llama3_scaling(f, t);
            continue;
        }
        if (t.name == "rope_factors_long.weight" || t.name == "rope_factors_short.weight") {
            if (arch != "phi3" && arch != "phimoe")
                fail("hf: %s: %s is only understood for phi3 and phimoe", gguf_path.c_str(), t.name.c_str());
            continue;  // in config.json's rope_scaling (phi3_to_config)
        }
        const TensorRule* rule = nullptr;
        int64_t bid = -1, xid = -1;
        const hf::SplitRule* split = nullptr;
        bool second = false;
        for (const hf::SplitRule& sr : spec->splits) {
            if (match(sr.gguf_first, t.name, &bid, &xid)) split = &sr;
            else if (match(sr.gguf_second, t.name, &bid, &xid)) split = &sr, second = true;
            if (split) break;
        }
        if (split) {
            if (second) continue;  // written with its first half
            const GGUFTensorInfo* u = f.find_tensor(format(split->gguf_second, bid, -1));
            if (!u || u->n_dims != 2 || t.n_dims != 2 || u->ne[0] != t.ne[0] || u->ne[1] != t.ne[1] || u->type != t.type)
                fail("hf: %s: tensor '%s' needs a partner '%s' of the same type and shape", gguf_path.c_str(),
                     t.name.c_str(), format(split->gguf_second, bid, -1).c_str());
            std::vector<uint8_t> both;
            GGMLType type = t.type;
            for (const GGUFTensorInfo* part : {&t, u}) {
                if (type == GGMLType::F32 || type == GGMLType::F16 || type == GGMLType::BF16) {
                    both.insert(both.end(), part->data, part->data + part->nbytes);
                } else {
                    const kernels::TypeTraits* tt = kernels::ref_traits(type);
                    if (!tt || !tt->to_float) fail("hf: %s: tensor '%s' has type %s, which slm cannot dequantize", gguf_path.c_str(), part->name.c_str(), type_name(type));
                    std::vector<float> v(static_cast<size_t>(part->nelements()));
                    const size_t rs = row_size(type, part->ne[0]);
                    for (int64_t r = 0; r < part->nrows(); ++r) tt->to_float(part->data + r * rs, v.data() + r * part->ne[0], part->ne[0]);
                    const std::vector<uint8_t> b = f32_bytes(v);
                    both.insert(both.end(), b.begin(), b.end());
                    dequantized = true;
                }
            }
            if (type != GGMLType::F32 && type != GGMLType::F16 && type != GGMLType::BF16) type = GGMLType::F32;
            sw.add_copy(format(split->hf, bid, -1), st_type(type), {2 * t.ne[1], t.ne[0]}, std::move(both));
            continue;
        }
        for (const TensorRule& r : spec->rules)
            if (match(r.gguf, t.name, &bid, &xid)) {
                rule = &r;
                break;
            }
        if (!rule) fail("hf: %s: tensor '%s' has no Hugging Face name for %s", gguf_path.c_str(), t.name.c_str(), spec->hf_arch);

        // Bytes in a safetensors dtype: float types as they are, quantized ones dequantized to F32.
        GGMLType type = t.type;
        std::vector<uint8_t> owned;
        const uint8_t* data = t.data;
        size_t nbytes = t.nbytes;
        if (type != GGMLType::F32 && type != GGMLType::F16 && type != GGMLType::BF16) {
            const kernels::TypeTraits* tt = kernels::ref_traits(type);
            if (!tt || !tt->to_float) fail("hf: %s: tensor '%s' has type %s, which slm cannot dequantize", gguf_path.c_str(), t.name.c_str(), type_name(type));
            std::vector<float> v(static_cast<size_t>(t.nelements()));
            const size_t rs = row_size(type, t.ne[0]);
            for (int64_t r = 0; r < t.nrows(); ++r) tt->to_float(t.data + r * rs, v.data() + r * t.ne[0], t.ne[0]);
            owned = f32_bytes(v);
            type = GGMLType::F32;
            data = owned.data();
            nbytes = owned.size();
            dequantized = true;
        }
        if (!main_set && t.n_dims >= 2) {
            main_type = type;
            main_set = true;
        }
        const STDtype dt = st_type(type);
        const size_t es = st_dtype_size(dt);

        if (rule->xform == Xform::PermuteQ || rule->xform == Xform::PermuteK) {
            const int64_t rows = t.n_dims == 1 ? t.ne[0] : t.nrows();
            owned = permute_rows(data, rows, nbytes / static_cast<size_t>(rows),
                                 rule->xform == Xform::PermuteQ ? n_head : n_head_kv, false, t.name);
            data = owned.data();
        } else if (rule->xform == Xform::NormPlusOne || rule->xform == Xform::NegExp) {
            if (dt != STDtype::F32) fail("hf: %s: tensor '%s' must be F32, is %s", gguf_path.c_str(), t.name.c_str(), type_name(type));
            std::vector<float> v(static_cast<size_t>(t.nelements()));
            std::memcpy(v.data(), data, nbytes);
            for (float& x : v) x = rule->xform == Xform::NormPlusOne ? inverse_plus_one(x) : inverse_neg_exp(x, t.name);
            owned = f32_bytes(v);
            data = owned.data();
        }

        std::vector<int64_t> shape(t.ne, t.ne + t.n_dims);
        std::reverse(shape.begin(), shape.end());
        if (rule->xform == Xform::Conv1d) {
            if (t.n_dims != 2) fail("hf: %s: tensor '%s' must be 2-D", gguf_path.c_str(), t.name.c_str());
            shape = {t.ne[1], 1, t.ne[0]};
        }
        // nn.Linear(n_embd, 1): a GGUF may hold it as 1-D.
        if (ends_with(t.name, ".ffn_gate_inp_shexp.weight") && t.n_dims == 1) shape = {1, t.ne[0]};

        if (std::strstr(rule->hf, "{xid}")) {  // a stacked expert tensor: one HF tensor per expert
            if (t.n_dims != 3) fail("hf: %s: tensor '%s' must be 3-D", gguf_path.c_str(), t.name.c_str());
            const size_t per = static_cast<size_t>(t.ne[0] * t.ne[1]) * es;
            for (int64_t x = 0; x < t.ne[2]; ++x)
                sw.add_copy(format(rule->hf, bid, x), dt, {t.ne[1], t.ne[0]},
                            std::vector<uint8_t>(data + x * per, data + (x + 1) * per));
            continue;
        }
        if (owned.empty()) sw.add(format(rule->hf, bid, -1), dt, shape, data, nbytes);
        else sw.add_copy(format(rule->hf, bid, -1), dt, shape, std::move(owned));
    }
    config["torch_dtype"] = hf_dtype_name(main_type);

    const VocabData vocab = hf::vocab_data_from_gguf(f);
    if (vocab.bos && *vocab.bos >= 0 && *vocab.bos < static_cast<int64_t>(vocab.tokens.size())) config["bos_token_id"] = *vocab.bos;
    if (vocab.eos && *vocab.eos >= 0 && *vocab.eos < static_cast<int64_t>(vocab.tokens.size())) config["eos_token_id"] = *vocab.eos;

    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (!std::filesystem::is_directory(dir)) fail("hf: %s: cannot create the folder: %s", dir.c_str(), ec.message().c_str());
    sw.write(dir + "/model.safetensors");
    json_util::write_file_atomic(dir + "/config.json", json_util::dump(config, "config.json") + "\n");
    json gen = {{"_from_model_config", true}};
    if (config.contains("bos_token_id")) gen["bos_token_id"] = config["bos_token_id"];
    if (config.contains("eos_token_id")) gen["eos_token_id"] = config["eos_token_id"];
    json_util::write_file_atomic(dir + "/generation_config.json", json_util::dump(gen, "generation_config.json") + "\n");
    hf::write_hf_tokenizer(vocab, hf::chat_template_from_gguf(f), dir);
    if (dequantized)
        std::fprintf(stderr, "slm: note: %s holds quantized tensors; they were dequantized to F32 for %s\n",
                     gguf_path.c_str(), dir.c_str());
}

} // namespace

void convert_hf_to_gguf(const std::string& hf_dir, const std::string& out_gguf, const std::string& type) {
    HFConverter c;
    c.dir = hf_dir;
    c.run(type, out_gguf);
}

void convert_gguf_to_hf(const std::string& gguf, const std::string& out_dir) { gguf_to_hf(gguf, out_dir); }

namespace hf {

bool is_hf_dir(const std::string& path) {
    std::error_code ec;
    return std::filesystem::is_directory(path, ec) && std::filesystem::is_regular_file(path + "/config.json", ec);
}

GGUFFile open_hf_dir_as_gguf(const std::string& dir) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/slm-hf-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = ::mkstemp(buf.data());
    if (fd < 0) fail("hf: cannot create a temporary file %s: %s", tmpl.c_str(), std::strerror(errno));
    ::close(fd);
    const std::string path(buf.data());
    try {
        // The checkpoint's float type, unless slm cannot compute with it (then F32).
        std::string type = "auto";
        const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open_dir(dir);
        for (const SafetensorsTensor* t : ck.tensors())
            if (t->shape.size() >= 2) {
                if (!kernels::traits(ggml_type(t->dtype))) type = "f32";
                break;
            }
        convert_hf_to_gguf(dir, path, type);
        // Errors from here on (hyper-parameters, tensor shapes) name the folder, not a file that
        // is gone by the time they are read.
        GGUFFile f = GGUFFile::open(path, dir);
        std::remove(path.c_str());  // the mapping keeps the data; nothing is left on disk
        return f;
    } catch (...) {
        std::remove(path.c_str());
        throw;
    }
}

} // namespace hf

} // namespace slm
