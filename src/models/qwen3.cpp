// qwen3.cpp - Qwen3 dense models (general.architecture = qwen3).
//
// Like Qwen2 without the Q/K/V biases, but with an RMSNorm over each head of Q and of K (its own
// weight of head size, applied before RoPE), and a head size that need not be n_embd / n_head
// (attention.key_length / value_length: Qwen3-0.6B has 16 heads of 128 over a width of 1024).
// NEOX RoPE, tied embeddings in the small models. Typical (Qwen3-0.6B): 28 layers of 1024,
// 16 query / 8 KV heads of 128, FFN 3072, rope.freq_base 1e6, rms_eps 1e-6.
#include "models/blocks.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct Qwen3Layer {
    ModelTensor attn_norm;            // (n_embd)
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor q_norm, k_norm;       // (hd): per-head RMSNorm weights
    ModelTensor wo;                   // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;             // (n_embd)
    ModelTensor ffn_gate, ffn_up;     // (n_embd) -> (n_ff)
    ModelTensor ffn_down;             // (n_ff) -> (n_embd)
};

class Qwen3Model final : public ArchModel {
public:
    Qwen3Model(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff, hd = hp.n_embd_head_k;
        const int64_t nq = int64_t(hp.n_head) * hp.n_embd_head_k;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        const int64_t no = int64_t(hp.n_head) * hp.n_embd_head_v;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        hp.tied_output = !output_.present();
        require_f32(f, output_norm_);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            Qwen3Layer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.q_norm = get_tensor(f, p + "attn_q_norm.weight", {hd});
            L.k_norm = get_tensor(f, p + "attn_k_norm.weight", {hd});
            L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm}) require_f32(f, *t);
        }
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd, F = hp.n_ff, hd = hp.n_embd_head_k;
        const size_t nq = size_t(hp.n_head) * hd, nk = hp.n_embd_k_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const Qwen3Layer& L = layers_[il];
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            // RMSNorm over each head of q and k (rows of hd), in place, then RoPE.
            blocks::rms_norm(st.q.data(), L.q_norm.f32(), st.q.data(), n * hp.n_head, int64_t(hd), hp.rms_eps);
            blocks::rms_norm(st.k.data(), L.k_norm.f32(), st.k.data(), n * hp.n_head_kv, int64_t(hd), hp.rms_eps);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, uint32_t(hd), nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, uint32_t(hd), nk);
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = kq_scale});  // -> (n, no)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, no) @ att -> (n, E)
            blocks::add_inplace(x, xb, n * E);
            // feed-forward (SwiGLU)
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);  // -> (n, F) x 2
            blocks::swiglu(st.hb.data(), st.hb2.data(), n * F);
            blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);                // (E, F) @ hb -> (n, E)
            blocks::add_inplace(x, xb, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, hp.tied_output ? tok_embd_ : output_, xb, st.logits.data(), rows);  // (V, E) @ xb -> (rows, V)
        st.n_logit_rows = rows;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        for (const Qwen3Layer& L : layers_)
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.q_norm, &L.k_norm, &L.wo, &L.ffn_norm,
                                         &L.ffn_gate, &L.ffn_up, &L.ffn_down})
                out.push_back(t);
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (Qwen3Layer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_, output_;
    std::vector<Qwen3Layer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_qwen3(const GGUFFile& f, HParams& hp) { return std::make_unique<Qwen3Model>(f, hp); }

} // namespace slm
