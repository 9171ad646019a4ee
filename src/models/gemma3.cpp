// gemma3.cpp - Gemma 3 text models (general.architecture = gemma3).
//
// Gemma 2 (gemma2.cpp: embeddings x sqrt(n_embd), norms 1 + w as stored, post-attention and
// post-FFN norms, GeGLU with ggml's F16 GELU table, NEOX RoPE, Q scaled in F32 after RoPE)
// without the attention soft-cap, plus:
//  * an RMSNorm over each head of Q and of K (attn_q_norm, attn_k_norm: head-size weights),
//    before RoPE;
//  * local layers with their own RoPE: rope.freq_base_swa (10000 when absent) and no frequency
//    scaling; global layers use rope.freq_base (1e6) and the file's linear scaling (Gemma-3-4B
//    and larger: factor 8), as llama.cpp's get_rope_freq_base / get_rope_freq_scale;
//  * local / global layers only when attention.sliding_window > 0, with
//    attention.sliding_window_pattern (6 when absent: five local layers, then a global one);
//    without a window every layer is global;
//  * final logit soft-capping only if final_logit_softcapping is in the file (no Gemma 3 has it).
// The attention scale is 1/sqrt(head size), or 1/sqrt(n_embd / n_head) for the 27B model
// (62 layers), as llama.cpp (query_pre_attn_scalar has no GGUF key). Output tied unless the
// file has output.weight.
// Typical (Gemma-3-1B): 26 layers of 1152, 4 heads / 1 KV head of 256, FFN 6912, window 512,
// rms_eps 1e-6, vocab 262144.
#include "models/blocks.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct Gemma3Layer {
    ModelTensor attn_norm;            // (n_embd), 1 + w as stored
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor q_norm, k_norm;       // (hd): per-head RMSNorm weights
    ModelTensor wo;                   // (n_head * hd) -> (n_embd)
    ModelTensor post_attention_norm;  // (n_embd): on the attention output
    ModelTensor ffn_norm;             // (n_embd)
    ModelTensor ffn_gate, ffn_up;     // (n_embd) -> (n_ff)
    ModelTensor ffn_down;             // (n_ff) -> (n_embd)
    ModelTensor post_ffw_norm;        // (n_embd): on the FFN output
};

class Gemma3Model final : public ArchModel {
public:
    Gemma3Model(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        const std::string a = hp.arch + ".";
        if (hp.n_embd_head_k != hp.n_embd_head_v)
            fail("model: %s: gemma3 needs attention.key_length = value_length (%u, %u)", f.path().c_str(),
                 hp.n_embd_head_k, hp.n_embd_head_v);
        hp.n_swa = f.get_u32(a + "attention.sliding_window", 0);
        rope_local_ = {hp.rope_freq_base, hp.rope_freq_scale, 1.0f};
        if (hp.n_swa > 0) {
            read_swa_pattern(f, hp, 6);
            hp.rope_freq_base_swa = f.get_f32(a + "rope.freq_base_swa", 10000.0f);
            if (!(hp.rope_freq_base_swa > 1.0f))
                fail("model: %s: key '%srope.freq_base_swa' = %g must be > 1", f.path().c_str(), a.c_str(),
                     hp.rope_freq_base_swa);
            rope_local_ = {hp.rope_freq_base_swa, 1.0f, 1.0f};
        }
        hp.final_softcap = f.get_f32(a + "final_logit_softcapping", 0.0f);
        if (!(hp.final_softcap >= 0.0f && hp.final_softcap < 1e30f))
            fail("model: %s: key '%sfinal_logit_softcapping' = %g must be a finite value >= 0", f.path().c_str(),
                 a.c_str(), hp.final_softcap);
        is_27b_ = hp.n_layer == 62;  // llama.cpp's LLM_TYPE_27B
        attn_scale_ = is_27b_ ? 1.0f / std::sqrt(float(hp.n_embd / hp.n_head))
                              : 1.0f / std::sqrt(float(hp.n_embd_head_k));

        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff, hd = hp.n_embd_head_k;
        const int64_t nq = int64_t(hp.n_head) * hd;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        hp.tied_output = !output_.present();
        require_f32(f, output_norm_);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            Gemma3Layer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.q_norm = get_tensor(f, p + "attn_q_norm.weight", {hd});
            L.k_norm = get_tensor(f, p + "attn_k_norm.weight", {hd});
            L.wo = get_tensor(f, p + "attn_output.weight", {nq, E});
            L.post_attention_norm = get_tensor(f, p + "post_attention_norm.weight", {E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            L.post_ffw_norm = get_tensor(f, p + "post_ffw_norm.weight", {E});
            for (const ModelTensor* t :
                 {&L.attn_norm, &L.q_norm, &L.k_norm, &L.post_attention_norm, &L.ffn_norm, &L.post_ffw_norm})
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
        blocks::scale(x, n * E, std::sqrt(static_cast<float>(E)));              // x sqrt(n_embd)
        const blocks::RopeFreqs rope_global{hp.rope_freq_base, hp.rope_freq_scale, 1.0f};
        int cached = -1;  // which frequencies st.rope_cache holds: 0 global, 1 local

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const Gemma3Layer& L = layers_[il];
            const bool local = hp.is_swa(il);
            if (cached != int(local)) {
                blocks::rope_cache(st, hp, st.n_past, n, nullptr, local ? rope_local_ : rope_global);
                cached = int(local);
            }
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            // RMSNorm over each head of q and k (rows of hd), in place, then RoPE.
            blocks::rms_norm(st.q.data(), L.q_norm.f32(), st.q.data(), n * hp.n_head, int64_t(hd), hp.rms_eps);
            blocks::rms_norm(st.k.data(), L.k_norm.f32(), st.k.data(), n * hp.n_head_kv, int64_t(hd), hp.rms_eps);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, uint32_t(hd), nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, uint32_t(hd), nk);
            blocks::scale(st.q.data(), n * nq, attn_scale_);                     // query_pre_attn_scalar, on Q
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            const blocks::AttnParams ap{.scale = 1.0f, .n_swa = local ? hp.n_swa : 0};
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, ap);     // -> (n, nq)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, nq) @ att -> (n, E)
            blocks::rms_norm(xb, L.post_attention_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::add_inplace(x, xb, n * E);
            // feed-forward (GeGLU)
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);  // -> (n, F) x 2
            blocks::geglu(st.hb.data(), st.hb2.data(), n * F);
            blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);                // (E, F) @ hb -> (n, E)
            blocks::rms_norm(xb, L.post_ffw_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::add_inplace(x, xb, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, hp.tied_output ? tok_embd_ : output_, xb, st.logits.data(), rows);  // (V, E) @ xb -> (rows, V)
        if (hp.final_softcap > 0.0f) blocks::softcap(st.logits.data(), size_t(rows) * hp.n_vocab, hp.final_softcap);
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        std::vector<std::pair<std::string, std::string>> out{
            {"embedding scale", "sqrt(n_embd) = " + std::to_string(std::sqrt(float(hp_.n_embd)))},
            {"ffn", "GeGLU (tanh GELU, F16 table), post-attention and post-FFN norms, per-head Q/K norms"},
            {"attention scale", std::to_string(attn_scale_) + (is_27b_ ? " = 1/sqrt(n_embd/n_head) (27B)"
                                                                       : " = 1/sqrt(head size)") + ", on Q"}};
        if (hp_.n_swa > 0) {
            uint32_t n_local = 0;
            for (uint32_t il = 0; il < hp_.n_layer; ++il) n_local += hp_.is_swa(il);
            out.emplace_back("local / global layers", std::to_string(n_local) + " / " + std::to_string(hp_.n_layer - n_local));
        }
        if (hp_.rope_freq_scale != 1.0f)
            out.emplace_back("rope linear scaling", "factor " + std::to_string(1.0f / hp_.rope_freq_scale) +
                                                       " on global layers only");
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        for (const Gemma3Layer& L : layers_)
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.q_norm, &L.k_norm, &L.wo,
                                         &L.post_attention_norm, &L.ffn_norm, &L.ffn_gate, &L.ffn_up, &L.ffn_down,
                                         &L.post_ffw_norm})
                out.push_back(t);
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (Gemma3Layer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

    // Local (sliding-window) layers may have their own base.
    LayerRope layer_rope(const HParams& hp, uint32_t il, const SessionState&) const override {
        const blocks::RopeFreqs rf = hp.is_swa(il) ? rope_local_ : blocks::RopeFreqs{hp.rope_freq_base, hp.rope_freq_scale, 1.0f};
        return {true, rf.base, rf.scale, nullptr};
    }

private:
    const HParams& hp_;
    blocks::RopeFreqs rope_local_;
    bool is_27b_ = false;
    float attn_scale_ = 1.0f;
    ModelTensor tok_embd_, output_norm_, output_;
    std::vector<Gemma3Layer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_gemma3(const GGUFFile& f, HParams& hp) { return std::make_unique<Gemma3Model>(f, hp); }

} // namespace slm
