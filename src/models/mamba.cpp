// mamba.cpp - Mamba (v1) (general.architecture = mamba): a pure state-space model.
//
// No attention and no FFN: each layer is RMSNorm -> Mamba mixer (models/ssm.h: input projection
// to x and z, causal depthwise convolution, selective scan, gate, output projection) ->
// residual; final RMSNorm and the output matrix, usually tied to the embedding. Everything a
// layer remembers is its recurrent state (conv window and scan states), so the session's KV
// cache is empty and only a reset can rewind it.
//
// Hyper-parameters (state-spaces/mamba-130m): 24 layers of 768, ssm.inner_size 1536 (2 x),
// ssm.state_size 16, ssm.conv_kernel 4, ssm.time_step_rank 48 (768 / 16), rms_eps 1e-5,
// vocab 50280, tied. The GGUF has attention.head_count 0 and feed_forward_length 0.
// Falcon-Mamba-7B is this architecture too, with ssm.dt_b_c_rms = true: RMSNorm (no weight) of
// the dt input, B and C.
#include "models/blocks.h"
#include "models/ssm.h"

#include "slm/error.h"

namespace slm {

namespace {

struct MambaLayer {
    ModelTensor attn_norm;  // (n_embd): the mixer's input norm (llama.cpp's name for it)
    ssm::MambaMixer mixer;
};

class MambaModel final : public ArchModel {
public:
    MambaModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        ssm::read_hparams(f, hp);
        hp.uses_rope = false;
        const int64_t E = hp.n_embd, V = hp.n_vocab;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        hp.tied_output = !output_.present();
        require_f32(f, output_norm_);
        // Falcon-Mamba (also general.architecture mamba) RMS-normalizes dt, B and C, unweighted.
        bcdt_rms_ = f.get_bool(hp.arch + ".ssm.dt_b_c_rms", false);
        layers_.resize(hp.n_layer);
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            MambaLayer& L = layers_[il];
            L.attn_norm = get_tensor(f, "blk." + std::to_string(il) + ".attn_norm.weight", {E});
            require_f32(f, L.attn_norm);
            L.mixer = ssm::load_mixer(f, hp, il, bcdt_rms_ ? ssm::BcdtNorm::Unweighted : ssm::BcdtNorm::None);
        }
    }

    size_t extra_floats_per_token() const override { return ssm::scratch_floats_per_token(hp_); }
    size_t recurrent_state_floats(uint32_t) const override { return ssm::state_floats(hp_); }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd;
        float* x = st.x.data();
        float* xb = st.xb.data();

        blocks::get_rows(tok_embd_, tokens, n, x);  // (n, E)
        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const MambaLayer& L = layers_[il];
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // mixer (n, E) -> (n, E), advancing this layer's conv and scan states
            ssm::mixer_forward(st, hp, L.mixer, st.r_state[il].data(), xb, xb, n, st.extra.data());
            blocks::add_inplace(x, xb, n * E);
        }

        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        blocks::matmul(st, hp.tied_output ? tok_embd_ : output_, xb, st.logits.data(), rows);  // (V, E) @ xb
        st.n_logit_rows = rows;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        std::vector<std::pair<std::string, std::string>> out;
        if (bcdt_rms_) out.emplace_back("dt, B, C", "RMS-normalized (ssm.dt_b_c_rms, Falcon-Mamba)");
        out.push_back({"recurrent state", std::to_string(ssm::state_floats(hp_)) + " floats per layer (conv window " +
                                        std::to_string(hp_.ssm_d_conv - 1) + " x d_inner, scan " +
                                        std::to_string(hp_.ssm_d_state) + " x d_inner); no KV cache"});
        return out;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        for (const MambaLayer& L : layers_) {
            out.push_back(&L.attn_norm);
            ssm::append_tensors(L.mixer, out);
        }
        return out;
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (MambaLayer& L : layers_) ssm::append_matmul_weights(L.mixer, out);
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_, output_;
    std::vector<MambaLayer> layers_;
    bool bcdt_rms_ = false;
};

} // namespace

std::unique_ptr<ArchModel> make_mamba(const GGUFFile& f, HParams& hp) { return std::make_unique<MambaModel>(f, hp); }

} // namespace slm
