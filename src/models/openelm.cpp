// openelm.cpp - Apple OpenELM (general.architecture = openelm).
//
// Layer-wise scaling (Mehta et al. 2024, "OpenELM", section 2.1): each layer has its own number
// of query and KV heads and its own FFN width, growing with depth, stored in GGUF as arrays of
// block_count in attention.head_count, attention.head_count_kv and feed_forward_length (as
// llama.cpp's converter writes them). Otherwise a pre-norm decoder: RMSNorm -> one fused QKV
// matmul whose rows are [q heads; k heads; v heads] -> RMSNorm over each head of Q and of K ->
// NEOX RoPE -> attention -> residual -> RMSNorm -> SwiGLU -> residual; tied output. Typical
// (OpenELM-270M): 16 layers of 1280, head size 64, 12..20 query heads, 3..5 KV heads, FFN
// 768..5120, rope.freq_base 10000, rms_eps 1e-6.
#include "models/blocks.h"

#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slm {

namespace {

struct OpenELMLayer {
    ModelTensor attn_norm;         // (n_embd)
    ModelTensor wqkv;              // (n_embd) -> ((n_head + 2 n_head_kv) * hd)
    ModelTensor q_norm, k_norm;    // (hd): per-head RMSNorm weights
    ModelTensor wo;                // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;          // (n_embd)
    ModelTensor ffn_gate, ffn_up;  // (n_embd) -> (n_ff(il))
    ModelTensor ffn_down;          // (n_ff(il)) -> (n_embd)
};

class OpenELMModel final : public ArchModel {
public:
    OpenELMModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        if (hp.n_embd_head_k != hp.n_embd_head_v)
            fail("model: %s: openelm needs attention.key_length (%u) = value_length (%u)", f.path().c_str(),
                 hp.n_embd_head_k, hp.n_embd_head_v);
        const int64_t E = hp.n_embd, V = hp.n_vocab, hd = hp.n_embd_head_k;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        hp.tied_output = true;  // OpenELM always shares input and output embeddings
        require_f32(f, output_norm_);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const int64_t nh = hp.n_head_l(il), nkv = hp.n_head_kv_l(il), F = hp.n_ff_l(il);
            if (nh == 0 || nkv == 0 || F == 0)
                fail("model: %s: openelm layer %u has %lld heads, %lld KV heads, FFN width %lld; all must be > 0",
                     f.path().c_str(), il, static_cast<long long>(nh), static_cast<long long>(nkv),
                     static_cast<long long>(F));
            const std::string p = "blk." + std::to_string(il) + ".";
            OpenELMLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wqkv = get_tensor(f, p + "attn_qkv.weight", {E, (nh + 2 * nkv) * hd});
            L.q_norm = get_tensor(f, p + "attn_q_norm.weight", {hd});
            L.k_norm = get_tensor(f, p + "attn_k_norm.weight", {hd});
            L.wo = get_tensor(f, p + "attn_output.weight", {nh * hd, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm}) require_f32(f, *t);
        }
    }

    // The fused QKV output of one token: (n_head + 2 n_head_kv) * hd for the widest layer.
    size_t extra_floats_per_token() const override {
        size_t w = 0;
        for (uint32_t il = 0; il < hp_.n_layer; ++il)
            w = std::max<size_t>(w, size_t(hp_.n_head_l(il) + 2 * hp_.n_head_kv_l(il)) * hp_.n_embd_head_k);
        return w;
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd, hd = hp.n_embd_head_k;
        float* x = st.x.data();
        float* xb = st.xb.data();
        float* qkv = st.extra.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const OpenELMLayer& L = layers_[il];
            const uint32_t nh = hp.n_head_l(il), nkv = hp.n_head_kv_l(il);
            const size_t F = hp.n_ff_l(il);
            const size_t nq = nh * hd, nk = nkv * hd, w = nq + 2 * nk;
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul(st, L.wqkv, xb, qkv, n);                             // Wqkv (w, E) @ xb -> (n, w)
            for (uint32_t t = 0; t < n; ++t) {                                   // split into q (n, nq), k, v (n, nk)
                std::memcpy(st.q.data() + t * nq, qkv + t * w, nq * sizeof(float));
                std::memcpy(st.k.data() + t * nk, qkv + t * w + nq, nk * sizeof(float));
                std::memcpy(st.v.data() + t * nk, qkv + t * w + nq + nk, nk * sizeof(float));
            }
            blocks::rms_norm(st.q.data(), L.q_norm.f32(), st.q.data(), n * nh, int64_t(hd), hp.rms_eps);
            blocks::rms_norm(st.k.data(), L.k_norm.f32(), st.k.data(), n * nkv, int64_t(hd), hp.rms_eps);
            blocks::rope_apply(st, hp, st.q.data(), n, nh, uint32_t(hd), nq);
            blocks::rope_apply(st, hp, st.k.data(), n, nkv, uint32_t(hd), nk);
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = kq_scale});  // -> (n, nq)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, nq) @ att -> (n, E)
            blocks::add_inplace(x, xb, n * E);
            // feed-forward (SwiGLU, this layer's width)
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);  // -> (n, F) x 2
            blocks::swiglu(st.hb.data(), st.hb2.data(), n * F);
            blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);                // (E, F) @ hb -> (n, E)
            blocks::add_inplace(x, xb, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, tok_embd_, xb, st.logits.data(), rows);              // (V, E) @ xb -> (rows, V)
        st.n_logit_rows = rows;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        for (const OpenELMLayer& L : layers_)
            for (const ModelTensor* t : {&L.attn_norm, &L.wqkv, &L.q_norm, &L.k_norm, &L.wo, &L.ffn_norm, &L.ffn_gate,
                                         &L.ffn_up, &L.ffn_down})
                out.push_back(t);
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (OpenELMLayer& L : layers_)
            for (ModelTensor* t : {&L.wqkv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        out.push_back(&tok_embd_);
        return out;
    }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_;
    std::vector<OpenELMLayer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_openelm(const GGUFFile& f, HParams& hp) { return std::make_unique<OpenELMModel>(f, hp); }

} // namespace slm
