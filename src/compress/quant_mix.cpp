// quant_mix.cpp - llama-quantize's per-tensor type choice (see quant_mix.h) and llama.cpp's file
// types (slm/quantize.h). Rules follow src/llama-quant.cpp for the types slm writes; the IQ1/IQ2/
// IQ3 file types, which slm cannot write, are left out.
#include "compress/quant_mix.h"

#include "slm/error.h"
#include "slm/quantize.h"

#include <algorithm>
#include <cctype>
#include <strings.h>

namespace slm {

// ---- file types -------------------------------------------------------------------------------

namespace {

struct FileType {
    GGMLType type;
    uint32_t ftype;
};
// enum llama_ftype (llama.h); K-quants as llama-quantize's aliases "Q4_K" -> Q4_K_M etc.
constexpr FileType kFileTypes[] = {
    {GGMLType::F32, 0},    {GGMLType::F16, 1},    {GGMLType::Q4_0, 2},   {GGMLType::Q4_1, 3},
    {GGMLType::Q8_0, 7},   {GGMLType::Q5_0, 8},   {GGMLType::Q5_1, 9},   {GGMLType::Q2_K, 10},
    {GGMLType::Q3_K, 12},  {GGMLType::Q4_K, 15},  {GGMLType::Q5_K, 17},  {GGMLType::Q6_K, 18},
    {GGMLType::IQ4_NL, 25}, {GGMLType::IQ4_XS, 30}, {GGMLType::BF16, 32},  {GGMLType::TQ1_0, 36},
    {GGMLType::TQ2_0, 37},
    // slm's 2:4 sparse Q8_0, with a file type id as private as its tensor type id
    // (docs/sparse-format.md).
    {GGMLType::Q8_0_S24, 1024},
};

} // namespace

uint32_t llama_file_type(GGMLType t) {
    for (const FileType& f : kFileTypes)
        if (f.type == t) return f.ftype;
    fail("quantize: type %s is not a model weight type llama.cpp writes", type_name(t));
}

GGMLType quant_fallback_type(GGMLType want, int64_t n_per_row) {
    return compress::shape_fallback_type(want, n_per_row);
}

const std::vector<QuantFileType>& quant_file_types() {
    static const std::vector<QuantFileType> all = {
        {"F32", 0, GGMLType::F32},       {"F16", 1, GGMLType::F16},       {"BF16", 32, GGMLType::BF16},
        {"Q4_0", 2, GGMLType::Q4_0},     {"Q4_1", 3, GGMLType::Q4_1},     {"Q5_0", 8, GGMLType::Q5_0},
        {"Q5_1", 9, GGMLType::Q5_1},     {"Q8_0", 7, GGMLType::Q8_0},     {"Q2_K", 10, GGMLType::Q2_K},
        {"Q3_K_S", 11, GGMLType::Q3_K},  {"Q3_K_M", 12, GGMLType::Q3_K},  {"Q3_K_L", 13, GGMLType::Q3_K},
        {"Q3_K", 12, GGMLType::Q3_K},    {"Q4_K_S", 14, GGMLType::Q4_K},  {"Q4_K_M", 15, GGMLType::Q4_K},
        {"Q4_K", 15, GGMLType::Q4_K},    {"Q5_K_S", 16, GGMLType::Q5_K},  {"Q5_K_M", 17, GGMLType::Q5_K},
        {"Q5_K", 17, GGMLType::Q5_K},    {"Q6_K", 18, GGMLType::Q6_K},    {"IQ4_NL", 25, GGMLType::IQ4_NL},
        {"IQ4_XS", 30, GGMLType::IQ4_XS}, {"TQ1_0", 36, GGMLType::TQ1_0}, {"TQ2_0", 37, GGMLType::TQ2_0},
        {"Q8_0_S24", 1024, GGMLType::Q8_0_S24},
    };
    return all;
}

const QuantFileType* quant_file_type(const std::string& name) {
    for (const QuantFileType& f : quant_file_types())
        if (strcasecmp(f.name, name.c_str()) == 0) return &f;
    return nullptr;
}

} // namespace slm

namespace slm::compress {

namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// enum llama_ftype values the rules name.
enum : uint32_t {
    FT_Q4_0 = 2, FT_Q5_0 = 8, FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14,
    FT_Q4_K_M = 15, FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q2_K_S = 21, FT_IQ4_NL = 25, FT_IQ4_XS = 30,
    FT_TQ1_0 = 36, FT_TQ2_0 = 37,
};

bool use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

bool is_quantized(GGMLType t) { return type_info(t).blck_size > 1; }

// "blk.N." -> N, or -1.
int block_of(const std::string& name) {
    if (name.compare(0, 4, "blk.") != 0) return -1;
    size_t i = 4;
    long v = 0;
    if (i >= name.size() || !std::isdigit(static_cast<unsigned char>(name[i]))) return -1;
    while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i]))) {
        v = v * 10 + (name[i] - '0');
        if (v > (1L << 30)) return -1;
        ++i;
    }
    if (i >= name.size() || name[i] != '.') return -1;
    return static_cast<int>(v);
}

} // namespace

TensorCategory tensor_category(const std::string& n) {
    if (n == "output.weight") return TensorCategory::Output;
    if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") return TensorCategory::TokenEmbd;
    if (contains(n, "attn_qkv.weight")) return TensorCategory::AttnQKV;
    if (contains(n, "attn_kv_b.weight")) return TensorCategory::AttnKVB;
    if (contains(n, "attn_v.weight")) return TensorCategory::AttnV;
    if (contains(n, "attn_k.weight")) return TensorCategory::AttnK;
    if (contains(n, "attn_q.weight")) return TensorCategory::AttnQ;
    if (contains(n, "attn_output.weight")) return TensorCategory::AttnOutput;
    if (contains(n, "ffn_up")) return TensorCategory::FfnUp;
    if (contains(n, "ffn_gate")) return TensorCategory::FfnGate;
    if (contains(n, "ffn_down")) return TensorCategory::FfnDown;
    return TensorCategory::Other;
}

bool tensor_allows_quantization(const std::string& n, uint32_t n_dims, bool quantize_output) {
    if (n_dims < 2) return false;
    if (n.size() < 6 || n.compare(n.size() - 6, 6, "weight") != 0) return false;
    if (contains(n, "_norm.weight")) return false;
    if (!quantize_output && n == "output.weight") return false;
    static const char* const kKeep[] = {
        "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
        ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    };
    for (const char* k : kKeep)
        if (contains(n, k)) return false;
    // position embeddings and BERT's token types (LLM_TENSOR_POS_EMBD / TOKEN_TYPES)
    if (n == "position_embd.weight" || n == "token_types.weight") return false;
    return true;
}

GGMLType shape_fallback_type(GGMLType want, int64_t n_per_row, bool* fell_back) {
    if (fell_back) *fell_back = false;
    const int64_t blk = type_info(want).blck_size;
    if (blk <= 1 || n_per_row % blk == 0) return want;
    if (fell_back) *fell_back = true;
    GGMLType t;
    switch (want) {
    case GGMLType::TQ1_0:
    case GGMLType::TQ2_0: t = GGMLType::Q4_0; break;
    case GGMLType::Q4_K: t = GGMLType::Q5_0; break;
    case GGMLType::Q5_K: t = GGMLType::Q5_1; break;
    case GGMLType::Q6_K: t = GGMLType::Q8_0; break;
    // Q2_K and Q3_K fall back to IQ4_NL as in the llama.cpp the goldens came from (newer
    // llama.cpp picks Q4_0 for them).
    case GGMLType::Q2_K:
    case GGMLType::Q3_K:
    case GGMLType::IQ4_XS: t = GGMLType::IQ4_NL; break;
    // llama-quantize aborts here ("no tensor type fallback"); F16 is where its own fallback ends.
    default: return GGMLType::F16;
    }
    if (n_per_row % type_info(t).blck_size != 0) t = GGMLType::F16;
    return t;
}

GGMLType mix_rule_type(const MixModel& m, uint32_t ft, bool has_imatrix, bool tied, GGMLType new_type,
                       const std::string& name, int64_t ne0, TensorCategory cat, MixCounters& c) {
    const bool falcon = m.arch == "falcon";
    const uint32_t n_expert = m.n_expert;
    // MoE layers are read from the name: experts need not come in layer order.
    auto layer_info = [&](int i_layer, int n_layer) -> std::pair<int, int> {
        if (std::max<uint32_t>(1, n_expert) > 1) {
            i_layer = block_of(name);
            if (i_layer < 0) fail("quantize: cannot determine the layer of tensor '%s'", name.c_str());
            if (i_layer >= n_layer)
                fail("quantize: tensor '%s' is in layer %d, but the model has %d", name.c_str(), i_layer, n_layer);
        }
        return {i_layer, n_layer};
    };
    using TC = TensorCategory;
    // A 2:4 sparse model keeps the token embeddings and the output matrix dense Q8_0, as
    // `slm prune` leaves them dense: the sparse type is for the layers' linear weights.
    if (new_type == GGMLType::Q8_0_S24) return cat == TC::Output || cat == TC::TokenEmbd ? GGMLType::Q8_0 : new_type;
    const bool attn_v_like = cat == TC::AttnV || cat == TC::AttnQKV || cat == TC::AttnKVB;
    if (cat == TC::Output || (tied && cat == TC::TokenEmbd)) {
        if (falcon || ne0 % type_info(new_type).blck_size != 0) return GGMLType::Q8_0;
        return new_type == GGMLType::Q8_0 ? new_type : GGMLType::Q6_K;
    }
    if (cat == TC::TokenEmbd) {
        if (ft == FT_TQ1_0 || ft == FT_TQ2_0) return GGMLType::Q4_K;
        return new_type;
    }
    if (attn_v_like) {
        const uint32_t gqa = m.n_gqa();
        if (ft == FT_Q2_K) new_type = gqa >= 4 ? GGMLType::Q4_K : GGMLType::Q3_K;
        else if (ft == FT_Q2_K_S && gqa >= 4) new_type = GGMLType::Q4_K;
        else if (ft == FT_Q3_K_M) new_type = c.i_attention_wv < 2 ? GGMLType::Q5_K : GGMLType::Q4_K;
        else if (ft == FT_Q3_K_L) new_type = GGMLType::Q5_K;
        else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && gqa >= 4) new_type = GGMLType::Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(c.i_attention_wv, c.n_attention_wv))
            new_type = GGMLType::Q6_K;
        else if (ft == FT_Q4_K_S && c.i_attention_wv < 4) new_type = GGMLType::Q5_K;
        // Llama-2-70B: 8 heads share each V, so a bigger V costs little.
        if (m.is_70b && (new_type == GGMLType::Q3_K || new_type == GGMLType::Q4_K)) new_type = GGMLType::Q5_K;
        if (n_expert == 8) new_type = GGMLType::Q8_0;
        ++c.i_attention_wv;
        return new_type;
    }
    if (cat == TC::AttnK) return n_expert == 8 ? GGMLType::Q8_0 : new_type;
    if (cat == TC::FfnDown) {
        const auto [i_layer, n_layer] = layer_info(c.i_ffn_down, c.n_layer);
        if (ft == FT_Q2_K) new_type = GGMLType::Q3_K;
        else if (ft == FT_Q2_K_S) {
            if (i_layer < n_layer / 8) new_type = GGMLType::Q4_K;
        } else if (ft == FT_Q3_K_M) {
            new_type = i_layer < n_layer / 16                          ? GGMLType::Q5_K
                       : !falcon || use_more_bits(i_layer, n_layer) ? GGMLType::Q4_K
                                                                    : GGMLType::Q3_K;
        } else if (ft == FT_Q3_K_L) {
            new_type = falcon ? GGMLType::Q4_K : GGMLType::Q5_K;
        } else if (ft == FT_Q4_K_M) {
            if (falcon)
                new_type = i_layer < n_layer / 16 ? GGMLType::Q6_K
                           : use_more_bits(i_layer, n_layer) ? GGMLType::Q5_K : GGMLType::Q4_K;
            else if (use_more_bits(i_layer, n_layer)) new_type = GGMLType::Q6_K;
        } else if (i_layer < n_layer / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS) && !has_imatrix) {
            new_type = GGMLType::Q5_K;
        } else if (ft == FT_Q5_K_M && use_more_bits(i_layer, n_layer)) {
            new_type = GGMLType::Q6_K;
        } else if (ft == FT_Q4_K_S && !falcon && i_layer < n_layer / 8) {
            new_type = GGMLType::Q5_K;
        } else if ((ft == FT_Q4_0 || ft == FT_Q5_0) && has_imatrix && i_layer < n_layer / 8) {
            // llama.cpp guards the first ffn_down layers of Q4_0/Q5_0 only when an imatrix is
            // given, so that a plain Q4_0 stays what it always was.
            new_type = ft == FT_Q4_0 ? GGMLType::Q4_1 : GGMLType::Q5_1;
        }
        ++c.i_ffn_down;
        return new_type;
    }
    if (cat == TC::AttnOutput) {
        if (!falcon) {
            if (n_expert == 8) {
                if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL || ft == FT_Q4_K_S ||
                    ft == FT_Q4_K_M || ft == FT_IQ4_XS)
                    new_type = GGMLType::Q5_K;
            } else {
                if (ft == FT_Q2_K) new_type = GGMLType::Q3_K;
                else if (ft == FT_Q3_K_M) new_type = GGMLType::Q4_K;
                else if (ft == FT_Q3_K_L) new_type = GGMLType::Q5_K;
            }
        } else if (ft == FT_Q3_K_L) {
            new_type = GGMLType::Q4_K;
        }
        return new_type;
    }
    if (cat == TC::AttnQKV) return new_type;  // handled with attn_v above (attn_v_like)
    if (cat == TC::FfnGate) {
        layer_info(c.i_ffn_gate, c.n_layer);
        ++c.i_ffn_gate;
        return new_type;
    }
    if (cat == TC::FfnUp) {
        layer_info(c.i_ffn_up, c.n_layer);
        ++c.i_ffn_up;
        return new_type;
    }
    return new_type;
}

QuantMixer::QuantMixer(MixModel m, MixOptions o, const std::vector<std::string>& names)
    : m_(std::move(m)), o_(std::move(o)) {
    for (const auto& [pat, type] : o_.tensor_types) {
        std::string lower = pat;
        for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        try {
            patterns_.emplace_back(std::regex(lower), type);
        } catch (const std::regex_error& e) {
            fail("quantize: --tensor-type '%s': not a valid regular expression (%s)", pat.c_str(), e.what());
        }
    }
    for (const std::string& n : names) {
        const TensorCategory cat = tensor_category(n);
        if (cat == TensorCategory::AttnV || cat == TensorCategory::AttnQKV || cat == TensorCategory::AttnKVB)
            ++c_.n_attention_wv;
        if (cat == TensorCategory::Output) tied_ = false;
    }
    c_.n_layer = static_cast<int>(m_.n_layer);
}

QuantChoice QuantMixer::choose(const std::string& name, uint32_t n_dims, const int64_t* ne, GGMLType cur) {
    QuantChoice r;
    r.type = r.wanted = cur;
    r.allowed = tensor_allows_quantization(name, n_dims, o_.quantize_output);
    if (!r.allowed) return r;
    const TensorCategory cat = tensor_category(name);
    if (o_.embd_type && cat == TensorCategory::TokenEmbd) {
        r.type = r.wanted = *o_.embd_type;
        return r;
    }
    if (o_.output_type && cat == TensorCategory::Output) {
        r.type = r.wanted = *o_.output_type;
        return r;
    }
    GGMLType t = o_.type;
    if (is_quantized(o_.type)) {
        for (const auto& [re, type] : patterns_)
            if (std::regex_search(name, re)) {
                t = type;
                r.manual = true;
                break;
            }
        if (!r.manual && !o_.pure) t = mix_rule_type(m_, o_.ftype, o_.has_imatrix, tied_, t, name, ne[0], cat, c_);
        r.wanted = t;
        t = shape_fallback_type(t, ne[0], &r.fallback);
    }
    r.wanted = r.fallback ? r.wanted : t;
    r.type = t;
    return r;
}

std::vector<size_t> quant_tensor_order(const std::vector<std::string>& names) {
    std::vector<size_t> idx(names.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
        const int la = block_of(names[a]), lb = block_of(names[b]);
        if (la != lb) return la < lb;
        return names[a] < names[b];
    });
    return idx;
}

} // namespace slm::compress
