// qwen2.cpp - Qwen2 / Qwen2.5 (general.architecture = qwen2).
//
// A Llama-style pre-norm decoder with three differences: the Q, K and V projections have
// biases, RoPE rotates halves (NEOX layout), and the output matrix is usually tied to the
// embedding (no output.weight). Typical hyper-parameters (Qwen2.5-0.5B): 24 layers of 896,
// 14 query / 2 KV heads of 64, FFN 4864, rope.freq_base 1e6, rms_eps 1e-6, vocab 151936.
#include "models/blocks.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct Qwen2Layer {
    ModelTensor attn_norm;            // (n_embd)
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor bq, bk, bv;           // their biases, F32
    ModelTensor wo;                   // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;             // (n_embd)
    ModelTensor ffn_gate, ffn_up;     // (n_embd) -> (n_ff)
    ModelTensor ffn_down;             // (n_ff) -> (n_embd)
};

class Qwen2Model final : public ArchModel {
public:
    Qwen2Model(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
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
            Qwen2Layer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.bq = get_tensor(f, p + "attn_q.bias", {nq});
            L.bk = get_tensor(f, p + "attn_k.bias", {nk});
            L.bv = get_tensor(f, p + "attn_v.bias", {nv});
            L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm, &L.bq, &L.bk, &L.bv}) require_f32(f, *t);
        }
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd, F = hp.n_ff;
        const size_t nq = size_t(hp.n_head) * hp.n_embd_head_k, nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_k));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const Qwen2Layer& L = layers_[il];
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb + biases -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            blocks::add_bias(st.q.data(), L.bq.f32(), n, nq);
            blocks::add_bias(st.k.data(), L.bk.f32(), n, nk);
            blocks::add_bias(st.v.data(), L.bv.f32(), n, nv);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, hp.n_embd_head_k, nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, hp.n_embd_head_k, nk);
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
        for (const Qwen2Layer& L : layers_)
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.bq, &L.bk, &L.bv, &L.wo, &L.ffn_norm,
                                         &L.ffn_gate, &L.ffn_up, &L.ffn_down})
                out.push_back(t);
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (Qwen2Layer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_, output_;
    std::vector<Qwen2Layer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_qwen2(const GGUFFile& f, HParams& hp) { return std::make_unique<Qwen2Model>(f, hp); }

} // namespace slm
