// jamba.cpp - Jamba (general.architecture = jamba): a hybrid of Mamba and attention layers.
//
// Each layer is RMSNorm -> mixer -> residual -> RMSNorm -> FFN -> residual, where
//   * the mixer is a Mamba mixer (models/ssm.h) with Jamba's RMSNorms on dt, B and C in the
//     layers whose attention.head_count_kv is 0, else attention without any position encoding
//     (Jamba's Mamba layers carry the order) with grouped KV heads;
//   * the FFN is a mixture of experts (models/moe.h: softmax router, top-k, weights not
//     normalised) in the layers that have ffn_gate_inp, else a dense SwiGLU.
// Final RMSNorm and the output matrix, or the tied embedding. Only the attention layers have a
// KV cache; the Mamba layers keep a recurrent state, so only a reset can rewind a session.
//
// Hyper-parameters (ai21labs/Jamba-v0.1): 32 layers of 4096, one attention layer in 8
// (head_count 32, head_count_kv [0, 0, 0, 0, 8, 0, ...]), MoE every other layer (16 experts,
// top 2, width 14336 as the dense FFN's), ssm.inner_size 8192, state_size 16, conv_kernel 4,
// time_step_rank 256, rms_eps 1e-6, vocab 65536.
#include "models/blocks.h"
#include "models/moe.h"
#include "models/ssm.h"

#include "slm/error.h"

#include <algorithm>
#include <cmath>

namespace slm {

namespace {

struct JambaLayer {
    ModelTensor attn_norm;      // (n_embd): input norm of the mixer, Mamba or attention
    bool is_mamba = false;      // head_count_kv 0
    ssm::MambaMixer mixer;      // Mamba layers
    ModelTensor wq, wk, wv;     // attention layers: (n_embd) -> (n_head hd), (n_head_kv hd) x 2
    ModelTensor wo;             // (n_head hd) -> (n_embd)
    ModelTensor ffn_norm;       // (n_embd)
    bool is_moe = false;        // ffn_gate_inp present
    moe::MoeLayer moe;          // MoE layers
    ModelTensor ffn_gate, ffn_up;  // dense layers: (n_embd) -> (n_ff)
    ModelTensor ffn_down;          // (n_ff) -> (n_embd)
};

class JambaModel final : public ArchModel {
public:
    JambaModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        ssm::read_hparams(f, hp);
        hp.uses_rope = false;  // Jamba's attention layers have no positional encoding: the Mamba layers order tokens
        const int64_t E = hp.n_embd, V = hp.n_vocab;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        hp.tied_output = !output_.present();
        require_f32(f, output_norm_);

        bool any_moe = false;
        for (uint32_t il = 0; il < hp.n_layer; ++il)
            any_moe |= f.find_tensor("blk." + std::to_string(il) + ".ffn_gate_inp.weight") != nullptr;
        if (any_moe) {
            // Jamba's experts are as wide as its dense FFN (no expert_feed_forward_length key).
            moe::read_hparams(f, hp, hp.n_ff);
            if (hp.n_ff_shexp > 0)
                fail("model: %s: jamba.expert_shared_feed_forward_length = %u: Jamba has no shared expert",
                     f.path().c_str(), hp.n_ff_shexp);
            // llama.cpp's Jamba routing: softmax, the chosen weights used as they are.
            moe_ = moe::read_params(f, hp, {.gating = moe::Gating::Softmax, .norm_w = false, .w_scale = 0.0f});
        }

        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            JambaLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm}) require_f32(f, *t);
            L.is_mamba = hp.n_head_kv_l(il) == 0;
            if (L.is_mamba) {
                L.mixer = ssm::load_mixer(f, hp, il, ssm::BcdtNorm::Weighted);
                has_mamba_ = true;
            } else {
                const int64_t nq = int64_t(hp.n_head_l(il)) * hp.n_embd_head_k;
                const int64_t no = int64_t(hp.n_head_l(il)) * hp.n_embd_head_v;
                L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
                L.wk = get_tensor(f, p + "attn_k.weight", {E, int64_t(hp.n_embd_k_gqa(il))});
                L.wv = get_tensor(f, p + "attn_v.weight", {E, int64_t(hp.n_embd_v_gqa(il))});
                L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            }
            L.is_moe = f.find_tensor(p + "ffn_gate_inp.weight") != nullptr;
            if (L.is_moe) {
                L.moe = moe::load_layer(f, p, E, moe_, hp.n_ff_exp, 0);
            } else {
                const int64_t F = hp.n_ff_l(il);
                if (F == 0)
                    fail("model: %s: layer %u has neither experts (ffn_gate_inp) nor a dense FFN (feed_forward_length "
                         "0)", f.path().c_str(), il);
                L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
                L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
                L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            }
        }
    }

    size_t extra_floats_per_token() const override {
        // The Mamba mixer's scratch, and the MoE output (n_embd) in the layers that have one.
        return std::max<size_t>(has_mamba_ ? ssm::scratch_floats_per_token(hp_) : 0, moe_.n_expert ? hp_.n_embd : 0);
    }
    size_t recurrent_state_floats(uint32_t il) const override {
        return layers_[il].is_mamba ? ssm::state_floats(hp_) : 0;
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd;
        float* x = st.x.data();
        float* xb = st.xb.data();
        // Attention as llama.cpp's build_attn: scores scaled by 1/sqrt(head size), no RoPE.
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_k));

        blocks::get_rows(tok_embd_, tokens, n, x);  // (n, E)
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const JambaLayer& L = layers_[il];
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            if (L.is_mamba) {
                // mixer (n, E) -> (n, E), advancing this layer's conv and scan states
                ssm::mixer_forward(st, hp, L.mixer, st.r_state[il].data(), xb, xb, n, st.extra.data());
            } else {
                // Wq, Wk, Wv @ xb -> q (n, n_head hd), k, v (n, n_head_kv hd); no position encoding
                blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
                blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
                blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = kq_scale});
                blocks::matmul(st, L.wo, st.att.data(), xb, n);  // Wo (E, n_head hd) @ att -> (n, E)
            }
            blocks::add_inplace(x, xb, n * E);

            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            if (L.is_moe) {
                float* y = st.extra.data();
                moe::ffn(st, L.moe, moe_, xb, y, n);  // (n, E) -> (n, E)
                blocks::add_inplace(x, y, n * E);
            } else {
                const size_t F = hp.n_ff_l(il);
                // gate (F, E), up (F, E) @ xb -> hb, hb2 (n, F); down (E, F) @ swiglu -> (n, E)
                blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);
                blocks::swiglu(st.hb.data(), st.hb2.data(), n * F);
                blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);
                blocks::add_inplace(x, xb, n * E);
            }
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, hp.tied_output ? tok_embd_ : output_, xb, st.logits.data(), rows);  // (V, E) @ xb
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        std::string mixers, ffns;
        for (const JambaLayer& L : layers_) {
            mixers += L.is_mamba ? 'M' : 'A';
            ffns += L.is_moe ? 'E' : 'D';
        }
        std::vector<std::pair<std::string, std::string>> out{
            {"layer mixers", mixers + " (M Mamba, A attention)"},
            {"layer FFNs", ffns + " (E experts, D dense)"},
        };
        if (has_mamba_)
            out.emplace_back("recurrent state", std::to_string(ssm::state_floats(hp_)) + " floats per Mamba layer");
        if (moe_.n_expert)
            for (auto& kv : moe::info(moe_)) out.push_back(std::move(kv));
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        for (const JambaLayer& L : layers_) {
            out.push_back(&L.attn_norm);
            if (L.is_mamba)
                ssm::append_tensors(L.mixer, out);
            else
                for (const ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo}) out.push_back(t);
            out.push_back(&L.ffn_norm);
            if (L.is_moe)
                moe::append_tensors(L.moe, out);
            else
                for (const ModelTensor* t : {&L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        }
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (JambaLayer& L : layers_) {
            if (L.is_mamba)
                ssm::append_matmul_weights(L.mixer, out);
            else
                for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo}) out.push_back(t);
            if (L.is_moe)
                moe::append_matmul_weights(L.moe, out);
            else
                for (ModelTensor* t : {&L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        }
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

    LayerRope layer_rope(const HParams&, uint32_t, const SessionState&) const override { return {false}; }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_, output_;
    std::vector<JambaLayer> layers_;
    moe::MoeParams moe_;
    bool has_mamba_ = false;
};

} // namespace

std::unique_ptr<ArchModel> make_jamba(const GGUFFile& f, HParams& hp) { return std::make_unique<JambaModel>(f, hp); }

} // namespace slm
