// registry.cpp - general.architecture -> architecture file, and what all of them read alike.
#include "models/arch.h"

#include "kernels/kernels.h"
#include "kernels/sparse.h"
#include "slm/error.h"

#include <algorithm>
#include <cinttypes>
#include <cstring>
#include <optional>

namespace slm {

std::unique_ptr<ArchModel> make_llama(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_qwen2(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_qwen3(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_openelm(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_mamba(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_jamba(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_qwen2moe(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_olmoe(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_phimoe(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_phi3(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_gemma(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_gemma2(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_gemma3(const GGUFFile& f, HParams& hp);
std::unique_ptr<ArchModel> make_granite(const GGUFFile& f, HParams& hp);

namespace {

using MakeArch = std::unique_ptr<ArchModel> (*)(const GGUFFile&, HParams&);
struct ArchEntry {
    const char* name;  // general.architecture
    MakeArch make;
};

// One table: adding a family touches this list and one new file.
const ArchEntry kArchs[] = {
    {"llama", make_llama},       {"qwen2", make_qwen2},       {"qwen3", make_qwen3},
    {"phi3", make_phi3},         {"gemma", make_gemma},       {"gemma2", make_gemma2},
    {"gemma3", make_gemma3},     {"granite", make_granite},   {"openelm", make_openelm},
    {"qwen2moe", make_qwen2moe}, {"olmoe", make_olmoe},       {"phimoe", make_phimoe},
    {"mamba", make_mamba},       {"jamba", make_jamba},
};

} // namespace

std::vector<std::string> supported_architectures() {
    std::vector<std::string> out;
    for (const ArchEntry& e : kArchs) out.emplace_back(e.name);
    return out;
}

std::unique_ptr<ArchModel> make_arch_model(const GGUFFile& f, HParams& hp) {
    for (const ArchEntry& e : kArchs)
        if (hp.arch == e.name) return e.make(f, hp);
    std::string names;
    for (const ArchEntry& e : kArchs) names += std::string(names.empty() ? "" : ", ") + e.name;
    fail("model: %s: architecture '%s' (general.architecture) is not supported; supported: %s", f.path().c_str(),
         hp.arch.c_str(), names.c_str());
}

static std::vector<uint32_t> per_layer(const GGUFFile& f, const std::string& key, uint32_t n_layer,
                                       std::optional<std::vector<uint32_t>> def, uint32_t lo, uint32_t hi);

static uint32_t checked(const GGUFFile& f, const std::string& key, uint32_t v, uint32_t lo, uint32_t hi) {
    if (v < lo || v > hi)
        fail("model: %s: key '%s' = %u is out of range [%u, %u]", f.path().c_str(), key.c_str(), v, lo, hi);
    return v;
}

HParams read_common_hparams(const GGUFFile& f) {
    HParams hp;
    hp.arch = f.get_str("general.architecture");
    hp.name = f.get_str("general.name", "");
    const std::string a = hp.arch + ".";
    // Upper bounds are far above any model slm targets, low enough that sizes computed from
    // them cannot overflow before the tensors' own shapes are checked.
    hp.n_embd = checked(f, a + "embedding_length", f.get_u32(a + "embedding_length"), 1, 1u << 16);
    hp.n_layer = checked(f, a + "block_count", f.get_u32(a + "block_count"), 1, 4096);
    hp.n_ctx_train = checked(f, a + "context_length", f.get_u32(a + "context_length", 2048), 1, 1u << 24);
    // head_count, head_count_kv and feed_forward_length: one number, or one per layer. A layer
    // may have no attention (0 heads: Jamba's Mamba layers, all of Mamba) or no FFN (0).
    hp.n_ff_arr = per_layer(f, a + "feed_forward_length", hp.n_layer, std::nullopt, 0, 1u << 20);
    hp.n_head_arr = per_layer(f, a + "attention.head_count", hp.n_layer, std::nullopt, 0, 4096);
    hp.n_head_kv_arr = per_layer(f, a + "attention.head_count_kv", hp.n_layer, hp.n_head_arr, 0, 4096);
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        const uint32_t nh = hp.n_head_arr[il], nkv = hp.n_head_kv_arr[il];
        // head_count_kv 0 with head_count > 0 is a layer without attention in a hybrid model
        // (Jamba's Mamba layers: head_count 4, head_count_kv [0, 2]); an architecture whose
        // layers all attend refuses it (require_uniform_layers).
        if (nkv > nh || (nkv > 0 && nh % nkv != 0))
            fail("model: %s: layer %u: attention.head_count %u is not a multiple of head_count_kv %u", f.path().c_str(),
                 il, nh, nkv);
        hp.n_head = std::max(hp.n_head, nh);
        hp.n_head_kv = std::max(hp.n_head_kv, nkv);
        hp.n_ff = std::max(hp.n_ff, hp.n_ff_arr[il]);
    }
    const uint32_t head_default = hp.n_head > 0 ? hp.n_embd / hp.n_head : 0;
    if (hp.n_head > 0 && !f.has(a + "attention.key_length") && hp.n_embd % hp.n_head != 0)
        fail("model: %s: embedding_length %u is not a multiple of head_count %u", f.path().c_str(), hp.n_embd, hp.n_head);
    const uint32_t head_min = hp.n_head > 0 ? 1 : 0;
    hp.n_embd_head_k = checked(f, a + "attention.key_length", f.get_u32(a + "attention.key_length", head_default),
                               head_min, 4096);
    hp.n_embd_head_v = checked(f, a + "attention.value_length", f.get_u32(a + "attention.value_length", head_default),
                               head_min, 4096);
    hp.n_rot = checked(f, a + "rope.dimension_count", f.get_u32(a + "rope.dimension_count", hp.n_embd_head_k),
                       std::min(2u, hp.n_embd_head_k), hp.n_embd_head_k);
    if (hp.n_rot % 2 != 0) fail("model: %s: rope.dimension_count %u is odd", f.path().c_str(), hp.n_rot);
    hp.rms_eps = f.get_f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
    if (!(hp.rms_eps > 0.0f && hp.rms_eps < 1.0f))
        fail("model: %s: attention.layer_norm_rms_epsilon = %g is out of range (0, 1)", f.path().c_str(), hp.rms_eps);
    hp.rope_freq_base = f.get_f32(a + "rope.freq_base", 10000.0f);
    if (!(hp.rope_freq_base > 1.0f)) fail("model: %s: rope.freq_base = %g must be > 1", f.path().c_str(), hp.rope_freq_base);
    // Linear scaling: rope.scaling.type "linear" with rope.scaling.factor, or the older rope.scale_linear.
    // "longrope" (Phi-3) scales frequencies by per-pair factor tensors the architecture reads;
    // llama.cpp still applies a rope.scaling.factor given with it, as for "linear".
    float factor = f.get_f32(a + "rope.scale_linear", 0.0f);
    const std::string stype = f.get_str(a + "rope.scaling.type", "");
    if (stype == "linear" || stype == "longrope" || (stype.empty() && f.has(a + "rope.scaling.factor")))
        factor = f.get_f32(a + "rope.scaling.factor", 0.0f);
    else if (!stype.empty() && stype != "none")
        fail("model: %s: rope.scaling.type '%s' is not supported (none, linear, longrope)", f.path().c_str(),
             stype.c_str());
    if (factor < 0.0f || factor > 1024.0f) fail("model: %s: rope scaling factor %g out of range", f.path().c_str(), factor);
    hp.rope_freq_scale = factor > 0.0f ? 1.0f / factor : 1.0f;

    const GGUFTensorInfo* emb = f.find_tensor("token_embd.weight");
    if (!emb) fail("model: %s: tensor 'token_embd.weight' not found", f.path().c_str());
    if (emb->n_dims != 2 || emb->ne[1] < 1 || emb->ne[1] > (1 << 22))
        fail("model: %s: tensor 'token_embd.weight' has shape %s, expected [%u, n_vocab]", f.path().c_str(),
             emb->shape_str().c_str(), hp.n_embd);
    hp.n_vocab = static_cast<uint32_t>(emb->ne[1]);
    return hp;
}

// A count that is one number for every layer or an array of n_layer numbers, each in [lo, hi].
static std::vector<uint32_t> per_layer(const GGUFFile& f, const std::string& key, uint32_t n_layer,
                                       std::optional<std::vector<uint32_t>> def, uint32_t lo, uint32_t hi) {
    const GGUFValue* v = f.find(key);
    if (v == nullptr) {
        if (def) return *def;
        fail("model: %s: key '%s' not found", f.path().c_str(), key.c_str());
    }
    std::vector<uint32_t> out(n_layer);
    if (v->type == GGUFType::ARRAY) {
        if (v->n != n_layer || !(v->elem_type == GGUFType::U32 || v->elem_type == GGUFType::I32))
            fail("model: %s: key '%s' is an array of %llu %s, expected %u integers (one per layer)", f.path().c_str(),
                 key.c_str(), static_cast<unsigned long long>(v->n), gguf_type_name(v->elem_type), n_layer);
        for (uint32_t il = 0; il < n_layer; ++il) {
            const int64_t x = v->elem_int(il);
            if (x < int64_t(lo) || x > int64_t(hi))
                fail("model: %s: key '%s'[%u] = %lld is out of range [%u, %u]", f.path().c_str(), key.c_str(), il,
                     static_cast<long long>(x), lo, hi);
            out[il] = static_cast<uint32_t>(x);
        }
        return out;
    }
    const uint32_t x = checked(f, key, f.get_u32(key), lo, hi);
    std::fill(out.begin(), out.end(), x);
    return out;
}

std::vector<uint32_t> read_block_source(const GGUFFile& f, const HParams& hp) {
    const std::string key = hp.arch + ".block_source";
    std::vector<uint32_t> src(hp.n_layer);
    const GGUFValue* v = f.find(key);
    if (v == nullptr) {
        for (uint32_t il = 0; il < hp.n_layer; ++il) src[il] = il;
        return src;
    }
    if (v->type != GGUFType::ARRAY || v->n != hp.n_layer ||
        !(v->elem_type == GGUFType::U32 || v->elem_type == GGUFType::I32))
        fail("model: %s: key '%s' must be an array of block_count (%u) integers", f.path().c_str(), key.c_str(),
             hp.n_layer);
    // Stored blocks are numbered in order of first use: 0, then each new one the next number,
    // so every stored block is used and the tensors blk.0 .. blk.(n-1) are all there is.
    uint32_t next = 0;
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        const int64_t x = v->elem_int(il);
        if (x < 0 || x > int64_t(next))
            fail("model: %s: key '%s'[%u] = %lld: a layer must use a block already used or the next new one (%u)",
                 f.path().c_str(), key.c_str(), il, static_cast<long long>(x), next);
        if (x == int64_t(next)) ++next;
        src[il] = static_cast<uint32_t>(x);
    }
    return src;
}

void require_uniform_layers(const GGUFFile& f, const HParams& hp) {
    for (uint32_t il = 0; il < hp.n_layer; ++il)
        if (hp.n_head_arr[il] != hp.n_head || hp.n_head_kv_arr[il] != hp.n_head_kv || hp.n_ff_arr[il] != hp.n_ff ||
            hp.n_head == 0 || hp.n_head_kv == 0 || hp.n_ff == 0)
            fail("model: %s: layer %u has %u heads, %u KV heads and FFN width %u; architecture '%s' needs the same "
                 "non-zero counts in every layer (%u, %u, %u)",
                 f.path().c_str(), il, hp.n_head_arr[il], hp.n_head_kv_arr[il], hp.n_ff_arr[il], hp.arch.c_str(),
                 hp.n_head, hp.n_head_kv, hp.n_ff);
}

void read_swa_pattern(const GGUFFile& f, HParams& hp, uint32_t def_period) {
    const std::string key = hp.arch + ".attention.sliding_window_pattern";
    const GGUFValue* v = f.find(key);
    hp.swa_layers.assign(hp.n_layer, 0);
    if (v != nullptr && v->type == GGUFType::ARRAY) {
        // One flag per layer (Gemma 3n, Gemma 4 write bools): non-zero = sliding-window layer.
        if (v->n != hp.n_layer || !(v->elem_type == GGUFType::BOOL || v->elem_type == GGUFType::U8 ||
                                    v->elem_type == GGUFType::I8 || v->elem_type == GGUFType::U32 ||
                                    v->elem_type == GGUFType::I32))
            fail("model: %s: key '%s' is an array of %llu %s, expected %u flags (one per layer) or one period",
                 f.path().c_str(), key.c_str(), static_cast<unsigned long long>(v->n), gguf_type_name(v->elem_type),
                 hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il)
            hp.swa_layers[il] = v->elem_type == GGUFType::BOOL ? v->raw[il] != 0 : v->elem_int(il) != 0;
        return;
    }
    if (v != nullptr && !v->is_integer())
        fail("model: %s: key '%s' is %s, expected an integer period or an array of per-layer flags",
             f.path().c_str(), key.c_str(), gguf_type_name(v->type));
    const uint64_t period = v != nullptr ? v->as_uint(key) : def_period;
    // llama.cpp reads 0 as "every layer local"; no Gemma has that, and a window on every layer
    // with this key's meaning ("every n-th layer is global") is more likely a broken file.
    if (period == 0 || period > 4096)
        fail("model: %s: key '%s' = %llu: the period of global layers must be in [1, 4096]", f.path().c_str(),
             key.c_str(), static_cast<unsigned long long>(period));
    // llama_hparams::set_swa_pattern: layer il is local when il % period < period - 1, so each
    // group of `period` layers is period - 1 local layers and then one global layer.
    for (uint32_t il = 0; il < hp.n_layer; ++il) hp.swa_layers[il] = il % period < period - 1;
}

void require_f32(const GGUFFile& f, const ModelTensor& t) {
    if (t.present() && t.type != GGMLType::F32)
        fail("model: %s: tensor '%s' must be F32, is %s", f.path().c_str(), t.name.c_str(), type_name(t.type));
}

ModelTensor get_tensor(const GGUFFile& f, const std::string& name, std::vector<int64_t> shape, bool required) {
    ModelTensor t;
    const GGUFTensorInfo* info = f.find_tensor(name);
    if (!info) {
        if (required) fail("model: %s: tensor '%s' not found", f.path().c_str(), name.c_str());
        return t;
    }
    // Trailing dimensions of 1 do not count, as in llama.cpp's loader: nn.Linear(n_embd, 1)
    // (Qwen2-MoE's shared-expert gate) is [n_embd, 1] from the converter, [n_embd] elsewhere.
    bool ok = shape.size() <= 4;
    for (size_t i = 0; ok && i < 4; ++i) ok = info->ne[i] == (i < shape.size() ? shape[i] : 1);
    if (!ok) {
        std::string want = "[";
        for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
        fail("model: %s: tensor '%s' has shape %s, expected %s]", f.path().c_str(), name.c_str(),
             info->shape_str().c_str(), want.c_str());
    }
    if (!kernels::traits(info->type))
        fail("model: %s: tensor '%s' has type %s, which slm cannot compute yet", f.path().c_str(), name.c_str(),
             type_name(info->type));
    // The sparse kernels assume two kept values in every group of four; a file breaking that
    // would compute garbage silently, so it is refused here (one pass over the masks).
    if (info->type == GGMLType::Q8_0_S24) {
        const int64_t bad = kernels::s24_first_invalid_block(info->data, static_cast<int64_t>(info->nbytes / sizeof(kernels::BlockQ8_0S24)));
        if (bad >= 0) {
            uint32_t m;
            std::memcpy(&m, reinterpret_cast<const kernels::BlockQ8_0S24*>(info->data)[bad].mask, sizeof m);
            fail("model: %s: tensor '%s' (Q8_0_S24) block %lld has mask 0x%08x, not two kept values in every group of four",
                 f.path().c_str(), name.c_str(), static_cast<long long>(bad), m);
        }
    }
    t.name = name;
    t.data = info->data;
    t.type = info->type;
    for (int i = 0; i < 4; ++i) t.ne[i] = info->ne[i];
    t.nbytes = info->nbytes;
    return t;
}

} // namespace slm
