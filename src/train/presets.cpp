// presets.cpp - TrainArch's checks and resolution, its parameter count, and the named presets.
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/train.h"

#include <algorithm>
#include <cmath>

namespace slm {

namespace {

uint32_t round_up(uint32_t x, uint32_t m) { return (x + m - 1) / m * m; }

// Tokens in a tokenizer GGUF (tokenizer.ggml.tokens).
uint32_t tokenizer_size(const std::string& path, const std::string& where) {
    GGUFFile f = GGUFFile::open(path);
    const GGUFValue* v = f.find("tokenizer.ggml.tokens");
    if (v == nullptr || v->type != GGUFType::ARRAY || v->elem_type != GGUFType::STRING)
        fail("%s: tokenizer '%s' has no string array 'tokenizer.ggml.tokens'", where.c_str(), path.c_str());
    return static_cast<uint32_t>(v->n);
}

} // namespace

void TrainArch::validate(const std::string& where) {
    const char* w = where.c_str();
    if (n_embd == 0 || n_embd > 65536) fail("%s: n_embd = %u must be in 1..65536", w, n_embd);
    if (n_layer == 0 || n_layer > 4096) fail("%s: n_layer = %u must be in 1..4096", w, n_layer);
    if (n_ctx == 0 || n_ctx > (1u << 20)) fail("%s: n_ctx = %u must be in 1..1048576", w, n_ctx);
    if (n_head == 0 || n_head > 4096) fail("%s: n_head = %u must be in 1..4096", w, n_head);
    if (n_head_kv == 0) n_head_kv = n_head;
    if (n_head_kv > n_head || n_head % n_head_kv != 0)
        fail("%s: n_head_kv = %u must divide n_head = %u", w, n_head_kv, n_head);
    if (head_dim == 0 && n_embd % n_head != 0)
        fail("%s: n_head = %u does not divide n_embd = %u (set head_dim)", w, n_head, n_embd);
    if (hd() % 2 != 0 || hd() > 4096) fail("%s: head_dim = %u must be even (RoPE rotates pairs) and <= 4096", w, hd());
    if (n_ff == 0 && !(elm_alpha_max > 0)) n_ff = round_up((8 * n_embd + 2) / 3, 32);
    if (n_ff > (1u << 20)) fail("%s: n_ff = %u is out of range", w, n_ff);
    if (layer_share == 0 || n_layer % layer_share != 0)
        fail("%s: layer_share = %u must divide n_layer = %u", w, layer_share, n_layer);
    if (!(rope_freq_base > 0) || !std::isfinite(rope_freq_base))
        fail("%s: rope_freq_base = %g must be > 0", w, double(rope_freq_base));
    if (!(rms_eps > 0) || !std::isfinite(rms_eps)) fail("%s: rms_eps = %g must be > 0", w, double(rms_eps));
    if (!(init_std >= 0) || !std::isfinite(init_std)) fail("%s: init_std = %g must be >= 0", w, double(init_std));
    if (!tokenizer.empty()) {
        const uint32_t nt = tokenizer_size(tokenizer, where);
        if (n_vocab == 0) n_vocab = nt;
        if (n_vocab != nt)
            fail("%s: n_vocab = %u but tokenizer '%s' has %u tokens", w, n_vocab, tokenizer.c_str(), nt);
    }
    if (n_vocab == 0) fail("%s: n_vocab is 0 and no tokenizer is given to take it from", w);
    if (n_vocab > (1u << 24)) fail("%s: n_vocab = %u is out of range", w, n_vocab);

    const uint32_t group = n_head / n_head_kv;
    const uint32_t nb = n_block();
    if (elm_alpha_max > 0) {
        // OpenELM layer-wise scaling over the stored blocks (layers sharing a block share its shape).
        if (!(elm_alpha_min > 0) || elm_alpha_min > elm_alpha_max || !(elm_beta_min > 0) ||
            elm_beta_min > elm_beta_max || !std::isfinite(elm_alpha_max) || !std::isfinite(elm_beta_max))
            fail("%s: OpenELM scaling needs 0 < elm_alpha_min <= elm_alpha_max and 0 < elm_beta_min <= elm_beta_max "
                 "(got alpha %g..%g, beta %g..%g)",
                 w, double(elm_alpha_min), double(elm_alpha_max), double(elm_beta_min), double(elm_beta_max));
        heads.assign(n_layer, 0);
        heads_kv.assign(n_layer, 0);
        ffn.assign(n_layer, 0);
        for (uint32_t il = 0; il < n_layer; ++il) {
            const uint32_t ib = il / layer_share;
            const double t = nb > 1 ? double(ib) / double(nb - 1) : 0.0;
            const double a = elm_alpha_min + t * (elm_alpha_max - elm_alpha_min);
            const double b = elm_beta_min + t * (elm_beta_max - elm_beta_min);
            // One rounding, to the nearest multiple of the group (OpenELM's make_divisible).
            const uint32_t h = std::max(group, static_cast<uint32_t>(std::lround(a * n_embd / hd() / group)) * group);
            uint32_t f = static_cast<uint32_t>(std::lround(b * n_embd));
            f = std::max(32u, static_cast<uint32_t>(std::lround(f / 32.0)) * 32);
            if (h > 4096 || f > (1u << 20)) fail("%s: OpenELM scaling gives layer %u %u heads, FFN %u: too large", w, il, h, f);
            heads[il] = h;
            heads_kv[il] = h / group;
            ffn[il] = f;
        }
        n_head = *std::max_element(heads.begin(), heads.end());
        n_head_kv = *std::max_element(heads_kv.begin(), heads_kv.end());
        n_ff = *std::max_element(ffn.begin(), ffn.end());
    } else if (heads.size() == n_layer && heads_kv.size() == n_layer && ffn.size() == n_layer &&
               std::any_of(heads.begin(), heads.end(), [&](uint32_t h) { return h != heads[0]; }) +
                       std::any_of(heads_kv.begin(), heads_kv.end(), [&](uint32_t h) { return h != heads_kv[0]; }) +
                       std::any_of(ffn.begin(), ffn.end(), [&](uint32_t f) { return f != ffn[0]; }) >
                   0) {
        // Explicit per-layer shapes (a loaded model's): checked and kept.
        for (uint32_t il = 0; il < n_layer; ++il) {
            if (heads[il] == 0 || heads_kv[il] == 0 || heads[il] % heads_kv[il] != 0 || ffn[il] == 0 ||
                heads[il] > 4096 || ffn[il] > (1u << 20))
                fail("%s: layer %u: heads %u, K/V heads %u, FFN %u are not valid", w, il, heads[il], heads_kv[il],
                     ffn[il]);
            const uint32_t i0 = il / layer_share * layer_share;
            if (heads[il] != heads[i0] || heads_kv[il] != heads_kv[i0] || ffn[il] != ffn[i0])
                fail("%s: layers %u and %u share a block but not its shape", w, i0, il);
        }
        n_head = *std::max_element(heads.begin(), heads.end());
        n_head_kv = *std::max_element(heads_kv.begin(), heads_kv.end());
        n_ff = *std::max_element(ffn.begin(), ffn.end());
    } else {
        heads.assign(n_layer, n_head);
        heads_kv.assign(n_layer, n_head_kv);
        ffn.assign(n_layer, n_ff);
    }
}

uint64_t TrainArch::n_params() const {
    const uint64_t E = n_embd, V = n_vocab, d = hd();
    uint64_t n = V * E * (tied_embeddings ? 1 : 2) + E;  // embeddings (and output), output norm
    for (uint32_t ib = 0; ib < n_block(); ++ib) {
        const uint32_t il = ib * layer_share;
        const uint64_t h = il < heads.size() ? heads[il] : n_head, hk = il < heads_kv.size() ? heads_kv[il] : n_head_kv;
        const uint64_t f = il < ffn.size() ? ffn[il] : n_ff;
        n += 2 * E + 2 * E * h * d + 2 * E * hk * d + 3 * E * f;
    }
    return n;
}

// ---- presets ------------------------------------------------------------------------------------
//
// n_vocab 0 takes the tokenizer's size (a `slm tokenizer train` output of a few thousand tokens
// for the small ones). Counts below are for a 4096-token vocabulary.

namespace {

struct Preset {
    const char* name;
    TrainArch (*make)();
};

TrainArch base(const char* name) {
    TrainArch a;
    a.name = name;
    return a;
}

const Preset kPresets[] = {
    // Tests and smoke runs: llama2.c's stories260K shape, smaller (2 x 64, GQA 4/2).
    {"tiny",
     [] {
         TrainArch a = base("tiny");
         a.n_ctx = 128, a.n_embd = 64, a.n_layer = 2, a.n_head = 4, a.n_head_kv = 2, a.n_ff = 192;
         return a;
     }},
    // llama2.c's stories15M shape (6 layers, dim 288) slimmed to 256 wide: ~4.8M parameters in
    // the blocks plus 1M in the tied embedding.
    {"stories-5m",
     [] {
         TrainArch a = base("stories-5m");
         a.n_ctx = 256, a.n_embd = 256, a.n_layer = 6, a.n_head = 8, a.n_head_kv = 8, a.n_ff = 704;
         return a;
     }},
    // MobileLLM (Liu et al. 2024, "MobileLLM: Optimizing Sub-billion Parameter Language Models for
    // On-Device Use Cases"): at a fixed budget, deep and thin beats wide and shallow; GQA and tied
    // embeddings. 20 x 192, 6 query / 2 K/V heads of 32: 7.9M parameters in the blocks.
    {"deep-thin-8m",
     [] {
         TrainArch a = base("deep-thin-8m");
         a.n_ctx = 256, a.n_embd = 192, a.n_layer = 20, a.n_head = 6, a.n_head_kv = 2, a.n_ff = 512;
         return a;
     }},
    // The same block parameter count (7.9M) spent on width: 5 x 384, 6 / 2 heads of 64, FFN 1024
    // (each block is 4 times a deep-thin block: twice the width squared).
    {"wide-shallow-8m",
     [] {
         TrainArch a = base("wide-shallow-8m");
         a.n_ctx = 256, a.n_embd = 384, a.n_layer = 5, a.n_head = 6, a.n_head_kv = 2, a.n_ff = 1024;
         return a;
     }},
    // MobileLLM-LS: deep-thin-8m's 20 stored blocks, each computed twice in a row (immediate
    // block-wise repeat): the same parameters, 40 layers of compute.
    {"mobilellm-ls-8m",
     [] {
         TrainArch a = base("mobilellm-ls-8m");
         a.n_ctx = 256, a.n_embd = 192, a.n_layer = 40, a.n_head = 6, a.n_head_kv = 2, a.n_ff = 512;
         a.layer_share = 2;
         return a;
     }},
    // OpenELM (Mehta et al. 2024) layer-wise scaling with OpenELM-270M's ranges (alpha 0.5..1.0,
    // beta 0.5..4.0) at 12 x 256: 4 to 8 query heads of 32 (K/V groups of 4), FFN 128 to 1024;
    // ~6.8M parameters in the blocks.
    {"openelm-8m",
     [] {
         TrainArch a = base("openelm-8m");
         a.n_ctx = 256, a.n_embd = 256, a.n_layer = 12, a.n_head = 8, a.n_head_kv = 2, a.head_dim = 32;
         a.elm_alpha_min = 0.5f, a.elm_alpha_max = 1.0f, a.elm_beta_min = 0.5f, a.elm_beta_max = 4.0f;
         return a;
     }},
    // GPT-2 small's shape (12 x 768, 12 heads, 3072 hidden, 50257 tokens, 1024 positions) as a
    // Llama block, for comparing speed with llm.c's train_gpt2.c. SwiGLU's three matrices make it
    // ~152M parameters against GPT-2's 124M.
    {"gpt2-small",
     [] {
         TrainArch a = base("gpt2-small");
         a.n_vocab = 50257, a.n_ctx = 1024, a.n_embd = 768, a.n_layer = 12, a.n_head = 12, a.n_ff = 3072;
         return a;
     }},
};

} // namespace

TrainArch train_preset(const std::string& name) {
    for (const Preset& p : kPresets)
        if (name == p.name) return p.make();
    std::string names;
    for (const Preset& p : kPresets) names += std::string(names.empty() ? "" : ", ") + p.name;
    fail("train: unknown preset '%s' (presets: %s)", name.c_str(), names.c_str());
}

std::vector<std::string> train_preset_names() {
    std::vector<std::string> out;
    for (const Preset& p : kPresets) out.push_back(p.name);
    return out;
}

} // namespace slm
