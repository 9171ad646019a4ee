// phimoe.cpp - Phi-3.5-MoE (general.architecture = phimoe).
//
// llama.cpp runs PhiMoE through its Phi-3 graph: every norm (attention input, FFN input, output)
// is an RMSNorm followed by a weight AND a bias (`*_norm.bias`; the Hugging Face model has
// LayerNorms there, llama.cpp normalises without subtracting the mean and this file does as
// llama.cpp); Q, K, V and the attention output have biases; RoPE is NEOX; Q is multiplied by
// 1/sqrt(head size) before attention (which then scales by 1); the FFN is a mixture of experts
// (models/moe.h) with a softmax router whose two chosen weights are renormalised to sum to 1
// (llama.cpp's stand-in for the model's "sparsemixer" routing); the output matrix has a bias.
// Typical hyper-parameters (Phi-3.5-MoE-instruct): 32 layers of 4096, 32 query / 8 KV heads of
// 128, 16 experts, 2 used, expert width 6400, vocab 32064, rms/layer-norm eps 1e-5.
// Not supported: the LongRoPE frequency factors (rope_factors_long/short) of the released model.
#include "models/blocks.h"
#include "models/moe.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct PhimoeLayer {
    ModelTensor attn_norm, attn_norm_b;  // (n_embd): RMSNorm weight and bias
    ModelTensor wq, wk, wv;              // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor bq, bk, bv;              // their biases (optional), F32
    ModelTensor wo, bo;                  // (n_head * hd) -> (n_embd), bias (optional)
    ModelTensor ffn_norm, ffn_norm_b;    // (n_embd)
    moe::MoeLayer moe;                   // router and experts
};

class PhimoeModel final : public ArchModel {
public:
    PhimoeModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        // llama.cpp makes PhiMoE's experts feed_forward_length wide.
        moe::read_hparams(f, hp, hp.n_ff);
        params_ = moe::read_params(f, hp, {.gating = moe::Gating::Softmax, .norm_w = true, .w_scale = 0.0f});
        if (f.find_tensor("rope_factors_long.weight") || f.find_tensor("rope_factors_short.weight"))
            fail("model: %s: phimoe: LongRoPE frequency factors (rope_factors_long/short.weight) are not supported yet",
                 f.path().c_str());

        const int64_t E = hp.n_embd, V = hp.n_vocab;
        const int64_t nq = int64_t(hp.n_head) * hp.n_embd_head_k;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        const int64_t no = int64_t(hp.n_head) * hp.n_embd_head_v;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_norm_b_ = get_tensor(f, "output_norm.bias", {E});
        output_ = get_tensor(f, "output.weight", {E, V});
        output_b_ = get_tensor(f, "output.bias", {V});
        hp.tied_output = false;
        for (const ModelTensor* t : {&output_norm_, &output_norm_b_, &output_b_}) require_f32(f, *t);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            PhimoeLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.attn_norm_b = get_tensor(f, p + "attn_norm.bias", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.bq = get_tensor(f, p + "attn_q.bias", {nq}, false);
            L.bk = get_tensor(f, p + "attn_k.bias", {nk}, false);
            L.bv = get_tensor(f, p + "attn_v.bias", {nv}, false);
            L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            L.bo = get_tensor(f, p + "attn_output.bias", {E}, false);
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_norm_b = get_tensor(f, p + "ffn_norm.bias", {E});
            for (const ModelTensor* t :
                 {&L.attn_norm, &L.attn_norm_b, &L.ffn_norm, &L.ffn_norm_b, &L.bq, &L.bk, &L.bv, &L.bo})
                require_f32(f, *t);
            L.moe = moe::load_layer(f, p, E, params_, hp.n_ff_exp, 0);
        }
    }

    // The MoE block's output before it is added to the residual stream.
    size_t extra_floats_per_token() const override { return hp_.n_embd; }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd, V = hp.n_vocab;
        const size_t nq = size_t(hp.n_head) * hp.n_embd_head_k, nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();
        float* ffn_out = st.extra.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float q_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_k));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const PhimoeLayer& L = layers_[il];
            // attention
            norm(x, L.attn_norm, L.attn_norm_b, xb, n);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb + biases -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            if (L.bq.present()) blocks::add_bias(st.q.data(), L.bq.f32(), n, nq);
            if (L.bk.present()) blocks::add_bias(st.k.data(), L.bk.f32(), n, nk);
            if (L.bv.present()) blocks::add_bias(st.v.data(), L.bv.f32(), n, nv);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, hp.n_embd_head_k, nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, hp.n_embd_head_k, nk);
            // Phi-3 scales Q (ggml_scale), then attends with a scale of 1.
            float* q = st.q.data();
            for (size_t i = 0; i < n * nq; ++i) q[i] *= q_scale;
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, q, st.att.data(), n, {.scale = 1.0f});  // -> (n, no)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, no) @ att -> (n, E)
            if (L.bo.present()) blocks::add_bias(xb, L.bo.f32(), n, E);
            blocks::add_inplace(x, xb, n * E);
            // feed-forward: routed experts
            norm(x, L.ffn_norm, L.ffn_norm_b, xb, n);
            moe::ffn(st, L.moe, params_, xb, ffn_out, n);                       // -> (n, E)
            blocks::add_inplace(x, ffn_out, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        norm(x + first * E, output_norm_, output_norm_b_, xb, rows);
        blocks::matmul(st, output_, xb, st.logits.data(), rows);                // (V, E) @ xb -> (rows, V)
        blocks::add_bias(st.logits.data(), output_b_.f32(), rows, int64_t(V));
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        auto out = moe::info(params_);
        out.emplace_back("norms", "RMSNorm with weight and bias (llama.cpp's Phi-3 graph)");
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_, &output_norm_b_, &output_, &output_b_};
        for (const PhimoeLayer& L : layers_) {
            for (const ModelTensor* t : {&L.attn_norm, &L.attn_norm_b, &L.wq, &L.wk, &L.wv, &L.bq, &L.bk, &L.bv, &L.wo,
                                         &L.bo, &L.ffn_norm, &L.ffn_norm_b})
                if (t->present()) out.push_back(t);
            moe::append_tensors(L.moe, out);
        }
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (PhimoeLayer& L : layers_) {
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo}) out.push_back(t);
            moe::append_matmul_weights(L.moe, out);
        }
        out.push_back(&output_);
        return out;
    }

private:
    // y = rms_norm(x) * w + b over n token rows (ggml_rms_norm, ggml_mul, ggml_add).
    void norm(const float* x, const ModelTensor& w, const ModelTensor& b, float* y, uint32_t n) const {
        blocks::rms_norm(x, w.f32(), y, n, hp_.n_embd, hp_.rms_eps);
        blocks::add_bias(y, b.f32(), n, hp_.n_embd);
    }

    const HParams& hp_;
    moe::MoeParams params_;
    ModelTensor tok_embd_, output_norm_, output_norm_b_, output_, output_b_;
    std::vector<PhimoeLayer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_phimoe(const GGUFFile& f, HParams& hp) { return std::make_unique<PhimoeModel>(f, hp); }

} // namespace slm
