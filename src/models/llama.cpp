// llama.cpp - the Llama family: Llama 1/2/3, TinyLlama, SmolLM, MobileLLM, llama2.c models.
//
// Pre-norm decoder: RMSNorm -> attention with RoPE (adjacent-pair "NORM" layout, optional
// Llama-3 frequency factors, linear scaling) and grouped KV heads -> residual -> RMSNorm ->
// SwiGLU FFN -> residual; final RMSNorm and the output matrix (or the tied embedding).
//
// Block-wise weight sharing (MobileLLM, Liu et al. 2024, section 2.3: "immediate block-wise
// repeat", one stored block computed twice in a row): the optional key llama.block_source, an
// array of block_count stored-block indices, says which blk.N.* tensors layer il computes with.
// Only the stored blocks are in the file and in memory; every layer still has its own KV cache.
// llama.cpp does not read this key: `slm convert --unshare` writes the plain form it loads.
//
// Layer-wise scaling (OpenELM, Mehta et al. 2024): attention.head_count, head_count_kv and
// feed_forward_length may be per-layer arrays (as `slm train` writes for scaled configs; the
// head size then comes from attention.key_length). Layers sharing a block share its shape.
#include "models/blocks.h"

#include "slm/error.h"

#include <algorithm>
#include <cmath>

namespace slm {

namespace {

struct LlamaLayer {
    ModelTensor attn_norm;    // (n_embd)
    ModelTensor wq, wk, wv;   // (n_embd) -> (n_head * hd), (n_head_kv * hd), (n_head_kv * hd)
    ModelTensor wo;           // (n_head * hd) -> (n_embd)
    ModelTensor ffn_norm;     // (n_embd)
    ModelTensor ffn_gate;     // (n_embd) -> (n_ff)
    ModelTensor ffn_up;       // (n_embd) -> (n_ff)
    ModelTensor ffn_down;     // (n_ff) -> (n_embd)
};

class LlamaModel final : public ArchModel {
public:
    LlamaModel(const GGUFFile& f, HParams& hp) : hp_(hp) {
        hp.rope_type = RopeType::Norm;
        for (uint32_t il = 0; il < hp.n_layer; ++il)
            if (hp.n_head_arr[il] == 0 || hp.n_head_kv_arr[il] == 0 || hp.n_head_arr[il] % hp.n_head_kv_arr[il] != 0 ||
                hp.n_ff_arr[il] == 0)
                fail("model: %s: layer %u has %u heads, %u KV heads and FFN width %u; llama needs non-zero counts "
                     "with the KV heads dividing the heads",
                     f.path().c_str(), il, hp.n_head_arr[il], hp.n_head_kv_arr[il], hp.n_ff_arr[il]);
        const int64_t E = hp.n_embd, V = hp.n_vocab;
        tok_embd_ = get_tensor(f, "token_embd.weight", {E, V});
        output_norm_ = get_tensor(f, "output_norm.weight", {E});
        output_ = get_tensor(f, "output.weight", {E, V}, false);
        if (!output_.present()) output_ = tok_embd_;  // tied embeddings
        hp.tied_output = output_.data == tok_embd_.data;
        rope_freqs_ = get_tensor(f, "rope_freqs.weight", {hp.n_rot / 2}, false);
        hp.has_rope_freqs = rope_freqs_.present();
        for (const ModelTensor* t : {&output_norm_, &rope_freqs_}) require_f32(f, *t);
        source_ = read_block_source(f, hp);
        layers_.resize(*std::max_element(source_.begin(), source_.end()) + 1);
        for (uint32_t ib = 0; ib < layers_.size(); ++ib) {
            const std::string p = "blk." + std::to_string(ib) + ".";
            // The block's shape: that of the layers computing with it, which must agree.
            uint32_t l0 = hp.n_layer;
            for (uint32_t il = 0; il < hp.n_layer; ++il) {
                if (source_[il] != ib) continue;
                if (l0 == hp.n_layer) l0 = il;
                if (hp.n_head_arr[il] != hp.n_head_arr[l0] || hp.n_head_kv_arr[il] != hp.n_head_kv_arr[l0] ||
                    hp.n_ff_arr[il] != hp.n_ff_arr[l0])
                    fail("model: %s: layers %u and %u compute with block %u (llama.block_source) but their head "
                         "counts or FFN widths differ",
                         f.path().c_str(), l0, il, ib);
            }
            if (l0 == hp.n_layer) l0 = 0;  // a block no layer uses: read_block_source refuses gaps
            const int64_t F = hp.n_ff_l(l0);
            const int64_t nq = int64_t(hp.n_head_l(l0)) * hp.n_embd_head_k;
            const int64_t nk = hp.n_embd_k_gqa(l0), nv = hp.n_embd_v_gqa(l0);
            const int64_t no = int64_t(hp.n_head_l(l0)) * hp.n_embd_head_v;
            LlamaLayer& L = layers_[ib];
            L.attn_norm = get_tensor(f, p + "attn_norm.weight", {E});
            L.wq = get_tensor(f, p + "attn_q.weight", {E, nq});
            L.wk = get_tensor(f, p + "attn_k.weight", {E, nk});
            L.wv = get_tensor(f, p + "attn_v.weight", {E, nv});
            L.wo = get_tensor(f, p + "attn_output.weight", {no, E});
            L.ffn_norm = get_tensor(f, p + "ffn_norm.weight", {E});
            L.ffn_gate = get_tensor(f, p + "ffn_gate.weight", {E, F});
            L.ffn_up = get_tensor(f, p + "ffn_up.weight", {E, F});
            L.ffn_down = get_tensor(f, p + "ffn_down.weight", {F, E});
            for (const ModelTensor* t : {&L.attn_norm, &L.ffn_norm}) require_f32(f, *t);
        }
    }

    void forward(SessionState& st, const int32_t* tokens, uint32_t n, bool all_logits) const override {
        const HParams& hp = hp_;
        const size_t E = hp.n_embd;
        float* x = st.x.data();
        float* xb = st.xb.data();

        blocks::get_rows(tok_embd_, tokens, n, x);                               // (n, E)
        blocks::rope_cache(st, hp, st.n_past, n, rope_freqs_.present() ? rope_freqs_.f32() : nullptr);
        const float kq_scale = 1.0f / std::sqrt(static_cast<float>(hp.n_embd_head_k));

        for (uint32_t il = 0; il < hp.n_layer; ++il) {
            layer_begin(st, il);  // weight streaming (SessionOptions::low_memory)
            const LlamaLayer& L = layers_[source_[il]];
            const size_t F = hp.n_ff_l(il), nq = size_t(hp.n_head_l(il)) * hp.n_embd_head_k;
            // attention
            blocks::rms_norm(x, L.attn_norm.f32(), xb, n, E, hp.rms_eps);
            // Wq (nq, E), Wk (nk, E), Wv (nv, E) @ xb -> q (n, nq), k (n, nk), v (n, nv)
            blocks::matmul_multi(st, {&L.wq, &L.wk, &L.wv}, xb, {st.q.data(), st.k.data(), st.v.data()}, n);
            blocks::rope_apply(st, hp, st.q.data(), n, hp.n_head_l(il), hp.n_embd_head_k, nq);
            blocks::rope_apply(st, hp, st.k.data(), n, hp.n_head_kv_l(il), hp.n_embd_head_k, hp.n_embd_k_gqa(il));
            blocks::kv_store(st, hp, il, st.k.data(), st.v.data(), n);
            blocks::attention(st, hp, il, st.q.data(), st.att.data(), n, {.scale = kq_scale});  // -> (n, no)
            blocks::matmul(st, L.wo, st.att.data(), xb, n);                     // Wo (E, no) @ att -> (n, E)
            blocks::add_inplace(x, xb, n * E);
            // feed-forward
            blocks::rms_norm(x, L.ffn_norm.f32(), xb, n, E, hp.rms_eps);
            // gate (F, E), up (F, E) @ xb -> hb (n, F), hb2 (n, F)
            blocks::matmul_multi(st, {&L.ffn_gate, &L.ffn_up}, xb, {st.hb.data(), st.hb2.data()}, n);
            blocks::swiglu(st.hb.data(), st.hb2.data(), n * F);
            blocks::matmul(st, L.ffn_down, st.hb.data(), xb, n);                // (E, F) @ hb -> (n, E)
            blocks::add_inplace(x, xb, n * E);
        }

        // Only the rows whose logits are wanted go through the final norm and output matrix.
        const uint32_t first = blocks::first_logit_row(st, x, n, E, all_logits);
        const uint32_t rows = n - first;
        blocks::rms_norm(x + first * E, output_norm_.f32(), xb, rows, E, hp.rms_eps);
        const ModelTensor& out = hp.tied_output ? tok_embd_ : output_;          // (the loader may repack one)
        blocks::matmul(st, out, xb, st.logits.data(), rows);                    // (V, E) @ xb -> (rows, V)
        st.n_logit_rows = rows;
    }

    std::vector<const ModelTensor*> tensors() const override {
        std::vector<const ModelTensor*> out{&tok_embd_, &output_norm_};
        if (!hp_.tied_output) out.push_back(&output_);
        if (rope_freqs_.present()) out.push_back(&rope_freqs_);
        for (const LlamaLayer& L : layers_)
            for (const ModelTensor* t :
                 {&L.attn_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_norm, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
                out.push_back(t);
        return out;
    }

    std::vector<std::pair<std::string, std::string>> info() const override {
        if (layers_.size() == hp_.n_layer) return {};
        std::string s;
        for (uint32_t il = 0; il < hp_.n_layer; ++il) {
            if (il) s += ',';
            s += std::to_string(source_[il]);
        }
        return {{"block sharing", std::to_string(layers_.size()) + " stored blocks for " + std::to_string(hp_.n_layer) +
                                      " layers (llama.block_source " + s + ")"}};
    }

    std::vector<ModelTensor*> matmul_weights() override {
        std::vector<ModelTensor*> out;
        for (LlamaLayer& L : layers_)
            for (ModelTensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.ffn_gate, &L.ffn_up, &L.ffn_down}) out.push_back(t);
        // Tied: the embedding table is the output matrix; get_rows reads repacked rows too.
        out.push_back(hp_.tied_output ? &tok_embd_ : &output_);
        return out;
    }

    // Llama 3's rope_freqs.weight divides the angles of the cached keys too.
    LayerRope layer_rope(const HParams& hp, uint32_t, const SessionState&) const override {
        return {true, hp.rope_freq_base, hp.rope_freq_scale, rope_freqs_.present() ? rope_freqs_.f32() : nullptr};
    }

private:
    const HParams& hp_;
    ModelTensor tok_embd_, output_norm_, output_, rope_freqs_;
    std::vector<LlamaLayer> layers_;  // the stored blocks
    std::vector<uint32_t> source_;     // per layer: the stored block it computes with
};

} // namespace

std::unique_ptr<ArchModel> make_llama(const GGUFFile& f, HParams& hp) { return std::make_unique<LlamaModel>(f, hp); }

} // namespace slm
