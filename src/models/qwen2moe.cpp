// qwen2moe.cpp - Qwen1.5-MoE / Qwen2-MoE (general.architecture = qwen2moe).
//
// Qwen2's attention (Q/K/V biases, NEOX RoPE) with a mixture-of-experts FFN (models/moe.h):
// a softmax router over expert_count experts, the expert_used_count largest probabilities used
// as they are (llama.cpp does not renormalise them for this architecture), SwiGLU experts of
// width expert_feed_forward_length, plus a shared SwiGLU expert of width
// expert_shared_feed_forward_length whose output is scaled by sigmoid(ffn_gate_inp_shexp . x).
// The output matrix is never tied. Typical hyper-parameters (Qwen1.5-MoE-A2.7B): 24 layers of
// 2048, 16 heads of 128, 60 experts, 4 used, expert width 1408, shared width 5632, vocab 151936.
#include "models/blocks.h"
#include "models/moe.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct Qwen2MoeLayer {
    ModelTensor attn_norm;            // (n_embd)
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor bq, bk, bv;           // their biases, F32
    ModelTensor wo;                   // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;             // (n_embd)
    moe::MoeLayer moe;                // router, experts, shared expert
};

class Qwen2MoeModel final : public ArchModel {
public:
    Qwen2MoeModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        // As llama.cpp: without the key, an expert is n_ff / n_expert_used wide, and the shared
        // expert n_ff wide.
        const uint32_t used = f.get_u32(hp.arch + ".expert_used_count", 1);
        moe::read_hparams(f, hp, used > 0 ? hp.n_ff / used : hp.n_ff);
        if (hp.n_ff_shexp == 0) hp.n_ff_shexp = hp.n_ff;
        params_ = moe::read_params(f, hp, {.gating = moe::Gating::Softmax, .norm_w = false, .w_scale = 0.0f});

        const int64_t E = hp.n_embd, V = hp.n_vocab;
        const int64_t nq = int64_t(hp.n_head) * hp.n_embd_head_k;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        const int64_t no = int64_t(hp.n_head) * hp.n_embd_head_v;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V});
        hp.tied_output = false;
        require_f32(f, output_norm_);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            Qwen2MoeLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.bq = get_tensor(f, p + "attn_q.bias", {nq});
            L.bk = get_tensor(f, p + "attn_k.bias", {nk});
            L.bv = get_tensor(f, p + "attn_v.bias", {nv});
            L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm, &L.bq, &L.bk, &L.bv}) require_f32(f, *t);
            L.moe = moe::load_layer(f, p, E, params_, hp.n_ff_exp, hp.n_ff_shexp);
        }
    }

    // The MoE block's output before it is added to the residual stream.
    size_t extra_floats_per_token() const override { return hp_.n_embd; }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd;
        const size_t nq = size_t(hp.n_head) * hp.n_embd_head_k, nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();
        float* ffn_out = st.extra.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_k));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const Qwen2MoeLayer& L = layers_[il];
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
            // feed-forward: routed experts + gated shared expert
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            moe::ffn(st, L.moe, params_, xb, ffn_out, n);                       // -> (n, E)
            blocks::add_inplace(x, ffn_out, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, output_, xb, st.logits.data(), rows);                // (V, E) @ xb -> (rows, V)
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override { return moe::info(params_); }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_, &output_};
        for (const Qwen2MoeLayer& L : layers_) {
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.bq, &L.bk, &L.bv, &L.wo, &L.ffn_norm})
                out.push_back(t);
            moe::append_tensors(L.moe, out);
        }
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (Qwen2MoeLayer& L : layers_) {
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo}) out.push_back(t);
            moe::append_matmul_weights(L.moe, out);
        }
        out.push_back(&output_);
        return out;
    }

private:
    const HParams& hp_;
    moe::MoeParams params_;
    ModelTensor tok_embd_, output_norm_, output_;
    std::vector<Qwen2MoeLayer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_qwen2moe(const GGUFFile& f, HParams& hp) {
    return std::make_unique<Qwen2MoeModel>(f, hp);
}

} // namespace slm
