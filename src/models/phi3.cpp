// phi3.cpp - Phi-3, Phi-3.5 and Phi-4-mini (general.architecture = phi3).
//
// A Llama-style pre-norm decoder with fused matrices: attn_qkv holds the Q, K and V rows one
// after the other ([q: n_embd; k: n_embd_k_gqa; v: n_embd_v_gqa]) and ffn_up the gate and up
// rows (2 * n_ff: the first n_ff go through SiLU, the last n_ff are the linear half). NEOX RoPE,
// possibly on the first rope.dimension_count dims of a head only (Phi-4-mini: 96 of 128), and Q
// is scaled by 1/sqrt(head size) after RoPE, before attention (as llama.cpp's graph: that
// rounding matters for head size 96).
//
// LongRoPE (Phi-3.5, Phi-4-mini, the 128k Phi-3s): per-pair frequency factors in the global
// tensors rope_factors_long / rope_factors_short; llama.cpp takes the long ones when the
// session's context is longer than rope.scaling.original_context_length (else the short ones),
// and multiplies cos and sin by rope.scaling.attn_factor (the converter's
// sqrt(1 + ln(n_ctx_train / n_ctx_orig) / ln(n_ctx_orig)), 1.19 for Phi-3.5-mini).
//
// Sliding window: phi3.attention.sliding_window (2047 in Phi-3-mini-4k) is read but not applied,
// as llama.cpp disables it for this architecture (every layer sees the whole context).
//
// Typical (Phi-3-mini-4k): 32 layers of 3072, 32 heads of 96 (MHA), FFN 8192, rms_eps 1e-5,
// rope.freq_base 10000, vocab 32064, untied output. Phi-4-mini: 32 layers of 3072, 24 / 8 heads
// of 128, n_rot 96, FFN 8192, tied output, LongRoPE.
#include "models/blocks.h"

#include "slm/error.h"

#include <cmath>

namespace slm {

namespace {

// Rows [row0, row0 + n_rows) of a matrix, as a matrix of its own (rows are stored one after the
// other in every type, so this is a pointer offset): the parts of a fused matrix.
ModelTensor row_slice(const ModelTensor& t, int64_t row0, int64_t n_rows, const char* part) {
    ModelTensor s = t;
    const size_t rs = row_size(t.type, t.n_in());
    s.name = t.name + "[" + part + "]";
    s.data = static_cast<const uint8_t*>(t.data) + rs * static_cast<size_t>(row0);
    s.ne[1] = n_rows;
    s.nbytes = rs * static_cast<size_t>(n_rows);
    return s;
}

struct Phi3Layer {
    ModelTensor attn_norm;            // (n_embd)
    ModelTensor wqkv;                 // (n_embd) -> (n_embd + 2 * n_embd_gqa), or absent
    ModelTensor wq, wk, wv;           // views of wqkv's rows (or separate attn_q/k/v tensors)
    ModelTensor wo;                   // (n_embd) -> (n_embd)
    ModelTensor ffn_norm;             // (n_embd)
    ModelTensor ffn_up;               // (n_embd) -> (2 * n_ff): [gate; up]
    ModelTensor ffn_gate_part, ffn_up_part;  // its two halves
    ModelTensor ffn_down;             // (n_ff) -> (n_embd)
};

class Phi3Model final : public ArchModel {
public:
    Phi3Model(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Neox;
        require_uniform_layers(f, hp);
        const std::string a = hp.arch + ".";
        const int64_t E = hp.n_embd, V = hp.n_vocab, F = hp.n_ff;
        const int64_t nk = hp.n_embd_k_gqa(), nv = hp.n_embd_v_gqa();
        // llama.cpp sizes Q and the output projection by n_embd: the heads must tile it.
        if (hp.n_embd_head_k != hp.n_embd_head_v || int64_t(hp.n_head) * hp.n_embd_head_k != E)
            fail("model: %s: phi3 needs head_count x key_length = embedding_length and key_length = value_length "
                 "(%u x %u, %u, %u)",
                 f.path().c_str(), hp.n_head, hp.n_embd_head_k, hp.n_embd, hp.n_embd_head_v);

        n_ctx_orig_ = f.get_u32(a + "rope.scaling.original_context_length", hp.n_ctx_train);
        if (n_ctx_orig_ == 0)
            fail("model: %s: key '%srope.scaling.original_context_length' is 0", f.path().c_str(), a.c_str());
        attn_factor_ = f.get_f32(a + "rope.scaling.attn_factor", 1.0f);
        if (!(attn_factor_ > 0.0f && attn_factor_ < 100.0f))
            fail("model: %s: key '%srope.scaling.attn_factor' = %g is out of range (0, 100)", f.path().c_str(),
                 a.c_str(), attn_factor_);
        n_swa_ignored_ = f.get_u32(a + "attention.sliding_window", 0);

        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        hp.tied_output = !output_.present();
        require_f32(f, output_norm_);
        const int64_t half_rot = hp.n_rot / 2;
        rope_long_ = get_tensor(f, "rope_factors_long.weight", {half_rot}, false);
        rope_short_ = get_tensor(f, "rope_factors_short.weight", {half_rot}, false);
        require_f32(f, rope_long_);
        require_f32(f, rope_short_);
        if (rope_long_.present() != rope_short_.present())
            fail("model: %s: tensor '%s' is present but '%s' is not; LongRoPE needs both", f.path().c_str(),
                 rope_long_.present() ? "rope_factors_long.weight" : "rope_factors_short.weight",
                 rope_long_.present() ? "rope_factors_short.weight" : "rope_factors_long.weight");

        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            Phi3Layer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wqkv = get_tensor(f, p + "attn_qkv.weight", {E, E + nk + nv}, false);
            if (L.wqkv.present()) {
                L.wq = row_slice(L.wqkv, 0, E, "q");
                L.wk = row_slice(L.wqkv, E, nk, "k");
                L.wv = row_slice(L.wqkv, E + nk, nv, "v");
            } else {
                // llama.cpp also takes separate matrices; a file with neither names the fused one.
                if (!f.find_tensor(p + "attn_q.weight")) get_tensor(f, p + "attn_qkv.weight", {E, E + nk + nv});
                L.wq = get_tensor(f, p + "attn_q.weight", {E, E});
                L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
                L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            }
            L.wo = get_tensor(f, p + "attn_output.weight", {E, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, 2 * F});
            L.ffn_gate_part = row_slice(L.ffn_up, 0, F, "gate");
            L.ffn_up_part = row_slice(L.ffn_up, F, F, "up");
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            require_f32(f, L.attn_norm);
            require_f32(f, L.ffn_norm);
        }
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd, F = hp.n_ff, hd = hp.n_embd_head_k;
        const size_t nk = hp.n_embd_k_gqa();
        float* x = st.x.data();
        float* xb = st.xb.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, rope_factors(st),
                           {hp.rope_freq_base, hp.rope_freq_scale, attn_factor_});
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hd));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const Phi3Layer& L = layers_[il];
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wqkv rows [q; k; v] (E + 2 nk, E) @ xb -> q (n, E), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head, uint32_t(hd), E);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv, uint32_t(hd), nk);
            blocks::scale(st.q.data(), n * E, kq_scale);                         // Q / sqrt(hd), in F32
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = 1.0f});  // -> (n, E)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, E) @ att -> (n, E)
            blocks::add_inplace(x, xb, n * E);
            // feed-forward: fused up (2F, E) @ xb -> gate (n, F), up (n, F); silu(gate) * up
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            blocks::matmul_multi(st, {&L.ffn_gate_part, &L.ffn_up_part}, xb, {st.hb.data(), st.hb2.data()}, n);
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

    std::vector<std::pair<std::string, std::string>> info() const override {
        std::vector<std::pair<std::string, std::string>> out;
        out.emplace_back("fused matrices", layers_.empty() || layers_[0].wqkv.present() ? "attn_qkv, ffn_up (gate; up)"
                                                                                         : "ffn_up (gate; up)");
        if (hp_.n_rot != hp_.n_embd_head_k)
            out.emplace_back("partial rotary", std::to_string(hp_.n_rot) + " of " + std::to_string(hp_.n_embd_head_k) +
                                                   " dims per head");
        if (rope_long_.present())
            out.emplace_back("LongRoPE", "rope_factors_long for contexts > " + std::to_string(n_ctx_orig_) +
                                             " (original_context_length), else rope_factors_short");
        if (attn_factor_ != 1.0f) out.emplace_back("rope attn_factor", std::to_string(attn_factor_));
        if (n_swa_ignored_ > 0)
            out.emplace_back("sliding window", std::to_string(n_swa_ignored_) + " in the file, not applied (as llama.cpp)");
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        if (rope_long_.present()) {
            out.push_back(&rope_long_);
            out.push_back(&rope_short_);
        }
        for (const Phi3Layer& L : layers_) {
            out.push_back(&L.attn_norm);
            if (L.wqkv.present()) {
                out.push_back(&L.wqkv);
            } else {
                for (const ModelTensor* t : {&L.wq, &L.wk, &L.wv}) out.push_back(t);
            }
            for (const ModelTensor* t : {&L.wo, &L.ffn_norm, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        }
        return out;
    }

    // The matmuls read the parts of the fused matrices: those are what may be repacked.
    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (Phi3Layer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate_part, &L.ffn_up_part, &L.ffn_down})
                out.push_back(t);
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

    // LongRoPE: the factors the forward pass chose for this session's context.
    LayerRope layer_rope(const HParams& hp, uint32_t, const SessionState& st) const override {
        return {true, hp.rope_freq_base, hp.rope_freq_scale, rope_factors(st)};
    }

private:
    // llama_model::get_rope_factors: long factors once the context exceeds the original one.
    const float* rope_factors(const SessionState& st) const {
        if (!rope_long_.present()) return nullptr;
        return st.n_ctx > n_ctx_orig_ ? rope_long_.f32() : rope_short_.f32();
    }

    const HParams& hp_;
    uint32_t n_ctx_orig_ = 0;
    float attn_factor_ = 1.0f;
    uint32_t n_swa_ignored_ = 0;
    ModelTensor tok_embd_, output_norm_, output_, rope_long_, rope_short_;
    std::vector<Phi3Layer> layers_;
};

} // namespace

std::unique_ptr<ArchModel> make_phi3(const GGUFFile& f, HParams& hp) { return std::make_unique<Phi3Model>(f, hp); }

} // namespace slm
