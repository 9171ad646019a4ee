// olmoe.cpp - OLMoE (general.architecture = olmoe).
//
// A Llama-style pre-norm decoder (no biases, NEOX RoPE, untied output) with two changes: Q and K
// are RMS-normalised over their whole width (attn_q_norm / attn_k_norm, one weight per feature,
// not per head) before RoPE, and the FFN is a mixture of experts (models/moe.h): softmax router,
// the expert_used_count largest probabilities used as they are (llama.cpp does not renormalise
// them for OLMoE; a file's expert_weights_norm key can ask for it), SwiGLU experts as wide as
// feed_forward_length. Typical hyper-parameters (OLMoE-1B-7B-0924): 16 layers of 2048, 16 heads
// of 128 (no GQA), 64 experts, 8 used, expert width 1024, rope.freq_base 10000, rms_eps 1e-5,
// vocab 50304.
#include "models/blocks.h"
#include "models/moe.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct OlmoeLayer {
    ModelTensor attn_norm;            // (n_embd)
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor q_norm, k_norm;       // (n_head * hd), (n_head_kv * hd): RMSNorm over all of q / k
    ModelTensor wo;                   // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;             // (n_embd)
    moe::MoeLayer moe;                // router and experts
};

class OlmoeModel final : public ArchModel {
public:
    OlmoeModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        // llama.cpp makes OLMoE's experts feed_forward_length wide.
        moe::read_hparams(f, hp, hp.n_ff);
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
            OlmoeLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.q_norm = get_tensor(f, p + "attn_q_norm.weight", {nq});
            L.k_norm = get_tensor(f, p + "attn_k_norm.weight", {nk});
            L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm}) require_f32(f, *t);
            L.moe = moe::load_layer(f, p, E, params_, hp.n_ff_exp, 0);
        }
    }

    // The MoE block's output before it is added to the residual stream.
    size_t extra_floats_per_token() const override { return hp_.n_embd; }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd;
        const size_t nq = size_t(hp.n_head) * hp.n_embd_head_k, nk = hp.n_embd_k_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();
        float* ffn_out = st.extra.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_k));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const OlmoeLayer& L = layers_[il];
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            // RMSNorm of each token's whole q and k rows (before they are split into heads)
            blocks::rms_norm(st.q.data(), L.q_norm.f32(), st.q.data(), n, int64_t(nq), hp.rms_eps);
            blocks::rms_norm(st.k.data(), L.k_norm.f32(), st.k.data(), n, int64_t(nk), hp.rms_eps);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, hp.n_embd_head_k, nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, hp.n_embd_head_k, nk);
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = kq_scale});  // -> (n, no)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, no) @ att -> (n, E)
            blocks::add_inplace(x, xb, n * E);
            // feed-forward: routed experts
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

    std::vector<std::pair<std::string, std::string>> info() const override {
        auto out = moe::info(params_);
        out.emplace_back("q/k norm", "RMSNorm over the whole q and k rows");
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_, &output_};
        for (const OlmoeLayer& L : layers_) {
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.q_norm, &L.k_norm, &L.wo, &L.ffn_norm})
                out.push_back(t);
            moe::append_tensors(L.moe, out);
        }
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (OlmoeLayer& L : layers_) {
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
    std::vector<OlmoeLayer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_olmoe(const GGUFFile& f, HParams& hp) { return std::make_unique<OlmoeModel>(f, hp); }

} // namespace slm
