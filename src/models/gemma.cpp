// gemma.cpp - Gemma (v1: Gemma-2B, Gemma-7B, CodeGemma; general.architecture = gemma).
//
// A pre-norm decoder like Llama with four differences, all as llama.cpp computes them:
//  * the token embeddings are multiplied by sqrt(n_embd) (a float, sqrtf of the width) before
//    the first layer, and the output matrix is always the embedding (tied);
//  * the RMSNorm weights are used as stored: Gemma's norm multiplies by (1 + w), and the GGUF
//    converter has already added the 1;
//  * the FFN is GeGLU: gelu(gate) * up with tanh-GELU from ggml's F16 table (blocks::geglu);
//  * Q is scaled by 1/sqrt(head size) in F32 after RoPE (NEOX), and attention uses scale 1.
// The head size need not be n_embd / n_head (Gemma-7B: 16 heads of 256 over 3072), and
// Gemma-2B has one KV head (MQA).
// Typical (Gemma-2B): 18 layers of 2048, 8 heads / 1 KV head of 256, FFN 16384, rms_eps 1e-6,
// rope.freq_base 10000, vocab 256000.
#include "models/blocks.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

struct GemmaLayer {
    ModelTensor attn_norm;            // (n_embd), 1 + w as stored
    ModelTensor wq, wk, wv;           // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor wo;                   // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;             // (n_embd)
    ModelTensor ffn_gate, ffn_up;     // (n_embd) -> (n_ff)
    ModelTensor ffn_down;             // (n_ff) -> (n_embd)
};

class GemmaModel final : public ArchModel {
public:
    GemmaModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        if (hp.n_embd_head_k != hp.n_embd_head_v)
            fail("model: %s: gemma needs attention.key_length = value_length (%u, %u)", f.path().c_str(),
                 hp.n_embd_head_k, hp.n_embd_head_v);
        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
        const int64_t nq = int64_t(hp.n_head) * hp.n_embd_head_k;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        hp.tied_output = true;  // llama.cpp ignores any output.weight: Gemma ties
        require_f32(f, output_norm_);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            GemmaLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.wo = get_tensor(f, p + "attn_output.weight", {nq, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            require_f32(f, L.attn_norm);
            require_f32(f, L.ffn_norm);
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
        blocks::rope_cache(st, hp, st.n_past, n, nullptr);
        const float q_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_v));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const GemmaLayer& L = layers_[il];
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, uint32_t(hd), nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, uint32_t(hd), nk);
            blocks::scale(st.q.data(), n * nq, q_scale);                         // Q / sqrt(hd), in F32
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = 1.0f});  // -> (n, nq)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, nq) @ att -> (n, E)
            blocks::add_inplace(x, xb, n * E);
            // feed-forward (GeGLU)
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);  // -> (n, F) x 2
            blocks::geglu(st.hb.data(), st.hb2.data(), n * F);
            blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);                // (E, F) @ hb -> (n, E)
            blocks::add_inplace(x, xb, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, tok_embd_, xb, st.logits.data(), rows);             // (V, E) @ xb -> (rows, V)
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        return {{"embedding scale", "sqrt(n_embd) = " + std::to_string(std::sqrt(float(hp_.n_embd)))},
                {"ffn", "GeGLU (tanh GELU, F16 table)"},
                {"attention scale", "1/sqrt(" + std::to_string(hp_.n_embd_head_v) + "), on Q"}};
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        for (const GemmaLayer& L : layers_)
            for (const ModelTensor* t : {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.ffn_gate, &L.ffn_up,
                                         &L.ffn_down})
                out.push_back(t);
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (GemmaLayer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        out.push_back(&tok_embd_);
        return out;
    }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_;
    std::vector<GemmaLayer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_gemma(const GGUFFile& f, HParams& hp) { return std::make_unique<GemmaModel>(f, hp); }

} // namespace slm
