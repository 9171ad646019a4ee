// granite.cpp - IBM Granite 3.x dense models (general.architecture = granite).
//
// Llama (RMSNorm, NORM-layout RoPE, SwiGLU, GQA) with four multipliers, each applied where
// llama.cpp's graph applies it (granite.* keys, all float32):
//  * embedding_scale: the token embeddings are multiplied by it (Granite-3.x-2B: 12);
//  * residual_scale: the attention output and the FFN output are multiplied by it before each
//    residual add (0.22);
//  * attention.scale: the KQ scale instead of 1/sqrt(head size) (0.015625);
//  * logit_scale: the logits are multiplied by 1/logit_scale (8), required.
// A multiplier that is absent or 0 is not applied (llama.cpp's "unset"), except logit_scale.
// rope.scaling.finetuned = false turns RoPE off (llama.cpp reads it as "use RoPE", default true).
// Optional biases (attn_output, ffn_gate/up/down) and rope_freqs.weight as llama.cpp loads them.
// Typical (granite-3.1-2b): 40 layers of 2048, 32 / 8 heads of 64, FFN 8192, rope.freq_base 5e6,
// rms_eps 1e-5, vocab 49155, tied output.
#include "models/blocks.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct GraniteLayer {
    ModelTensor attn_norm;            // (n_embd)
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor wo, bo;               // (n_head * hd) -> (n_embd), optional bias
    ModelTensor ffn_norm;             // (n_embd)
    ModelTensor ffn_gate, ffn_up;     // (n_embd) -> (n_ff)
    ModelTensor ffn_gate_b, ffn_up_b; // optional biases (n_ff)
    ModelTensor ffn_down, ffn_down_b; // (n_ff) -> (n_embd), optional bias
};

class GraniteModel final : public ArchModel {
public:
    GraniteModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Norm;
        require_uniform_layers(f, hp);
        const std::string a = hp.arch + ".";
        if (hp.n_embd_head_k != hp.n_embd_head_v || hp.n_rot != hp.n_embd_head_k)
            fail("model: %s: granite needs key_length = value_length = rope.dimension_count (%u, %u, %u)",
                 f.path().c_str(), hp.n_embd_head_k, hp.n_embd_head_v, hp.n_rot);
        if (f.has(a + "expert_count") && f.get_u32(a + "expert_count") > 0)
            fail("model: %s: granite with experts (%sexpert_count) is not supported; dense Granite 3.x only",
                 f.path().c_str(), a.c_str());
        if (f.get_str(a + "rope.scaling.type", "") == "longrope")
            fail("model: %s: granite with LongRoPE (rope.scaling.type longrope) is not supported", f.path().c_str());
        auto multiplier = [&](const std::string& key, bool required) {
            const float v = required ? f.get_f32(a + key) : f.get_f32(a + key, 0.0f);
            if (!std::isfinite(v) || v < 0.0f || v > 1e6f)
                fail("model: %s: key '%s%s' = %g is out of range [0, 1e6]", f.path().c_str(), a.c_str(), key.c_str(), v);
            return v;
        };
        logit_scale_ = multiplier("logit_scale", true);
        if (logit_scale_ == 0.0f) fail("model: %s: key '%slogit_scale' is 0", f.path().c_str(), a.c_str());
        residual_scale_ = multiplier("residual_scale", false);
        embedding_scale_ = multiplier("embedding_scale", false);
        attention_scale_ = multiplier("attention.scale", false);
        use_rope_ = f.get_bool(a + "rope.scaling.finetuned", true);

        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
        const int64_t nq = int64_t(hp.n_head) * hp.n_embd_head_k;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        hp.tied_output = !output_.present();
        require_f32(f, output_norm_);
        rope_freqs_ = get_tensor(f, "rope_freqs.weight", {int64_t(hp.n_rot / 2)}, false);
        require_f32(f, rope_freqs_);
        hp.has_rope_freqs = rope_freqs_.present();
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            GraniteLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.wo = get_tensor(f, p + "attn_output.weight", {nq, E});
            L.bo = get_tensor(f, p + "attn_output.bias", {E}, false);
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            L.ffn_gate_b = get_tensor(f, p + "ffn_gate.bias", {F}, false);
            L.ffn_up_b = get_tensor(f, p + "ffn_up.bias", {F}, false);
            L.ffn_down_b = get_tensor(f, p + "ffn_down.bias", {E}, false);
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm, &L.bo, &L.ffn_gate_b, &L.ffn_up_b, &L.ffn_down_b})
                require_f32(f, *t);
        }
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd, F = hp.n_ff, hd = hp.n_embd_head_k;
        const size_t nq = size_t(hp.n_head) * hd, nk = hp.n_embd_k_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        if (embedding_scale_ != 0.0f) blocks::scale(x, n * E, embedding_scale_);
        if (use_rope_) blocks::rope_cache(st, hp, st.n_past, n, rope_freqs_.present() ? rope_freqs_.f32() : nullptr);
        const float kq_scale = attention_scale_ != 0.0f ? attention_scale_ : 1.0f / std::sqrt(static_cast<float>(hd));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const GraniteLayer& L = layers_[il];
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            if (use_rope_) {
                blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, uint32_t(hd), nq);
                blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, uint32_t(hd), nk);
            }
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = kq_scale});  // -> (n, nq)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, nq) @ att -> (n, E)
            if (L.bo.present()) blocks::add_bias(xb, L.bo.f32(), n, E);
            if (residual_scale_ != 0.0f) blocks::scale(xb, n * E, residual_scale_);
            blocks::add_inplace(x, xb, n * E);
            // feed-forward (SwiGLU)
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);  // -> (n, F) x 2
            if (L.ffn_gate_b.present()) blocks::add_bias(st.hb.data(), L.ffn_gate_b.f32(), n, F);
            if (L.ffn_up_b.present()) blocks::add_bias(st.hb2.data(), L.ffn_up_b.f32(), n, F);
            blocks::swiglu(st.hb.data(), st.hb2.data(), n * F);
            blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);                // (E, F) @ hb -> (n, E)
            if (L.ffn_down_b.present()) blocks::add_bias(xb, L.ffn_down_b.f32(), n, E);
            if (residual_scale_ != 0.0f) blocks::scale(xb, n * E, residual_scale_);
            blocks::add_inplace(x, xb, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, hp.tied_output ? tok_embd_ : output_, xb, st.logits.data(), rows);  // (V, E) @ xb -> (rows, V)
        blocks::scale(st.logits.data(), size_t(rows) * hp.n_vocab, 1.0f / logit_scale_);    // ggml_scale(1/logit_scale)
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        auto opt = [](float v) { return v != 0.0f ? std::to_string(v) : std::string("(none)"); };
        std::vector<std::pair<std::string, std::string>> out{
            {"embedding_scale", opt(embedding_scale_)},
            {"residual_scale", opt(residual_scale_)},
            {"attention.scale", attention_scale_ != 0.0f ? std::to_string(attention_scale_) : "(none: 1/sqrt(head size))"},
            {"logit_scale", std::to_string(logit_scale_) + " (logits divided by it)"}};
        if (!use_rope_) out.emplace_back("rope", "off (rope.scaling.finetuned = false)");
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        if (rope_freqs_.present()) out.push_back(&rope_freqs_);
        for (const GraniteLayer& L : layers_)
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.bo, &L.ffn_norm, &L.ffn_gate,
                                         &L.ffn_gate_b, &L.ffn_up, &L.ffn_up_b, &L.ffn_down, &L.ffn_down_b})
                if (t->present()) out.push_back(t);
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (GraniteLayer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

    LayerRope layer_rope(const HParams& hp, uint32_t, const SessionState&) const override {
        return {use_rope_, hp.rope_freq_base, hp.rope_freq_scale, rope_freqs_.present() ? rope_freqs_.f32() : nullptr};
    }

private:
    const HParams& hp_;
    float logit_scale_ = 1.0f, residual_scale_ = 0.0f, embedding_scale_ = 0.0f, attention_scale_ = 0.0f;
    bool use_rope_ = true;
    ModelTensor tok_embd_, output_norm_, output_, rope_freqs_;
    std::vector<GraniteLayer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_granite(const GGUFFile& f, HParams& hp) { return std::make_unique<GraniteModel>(f, hp); }

} // namespace slm
