// moe.h - the mixture-of-experts feed-forward block (Qwen2-MoE, OLMoE, Phi-3.5-MoE, Jamba).
//
// For each token: router logits = W_gate_inp x (n_expert values); probabilities = softmax or
// sigmoid of them; the n_expert_used largest probabilities choose the experts (ggml_argsort in
// descending order, then the first k: ties go the way ggml's std::sort puts them); their
// probabilities, optionally divided by their sum and multiplied by a scale, weight the SwiGLU
// expert outputs, which are added in that top-k order. An optional shared expert (Qwen2-MoE) is
// added last, gated by sigmoid(w . x) when it has a gate vector. The order of every float
// operation follows llama.cpp's build_moe_ffn and the ggml CPU ops it uses.
//
// Only the chosen experts' matrices are read: each expert is a ModelTensor view of one slice of
// the 3-D tensors ffn_{gate,up,down}_exps ([n_in, n_out, n_expert] in ggml order, the slices
// contiguous). A batch is grouped by expert, and each chosen expert multiplies all its tokens'
// rows at once. Scratch lives in SessionState (moe_f32 / moe_i32), sized once for n_batch
// tokens, so decoding allocates nothing.
#pragma once

#include "models/arch.h"

#include <string>
#include <utility>
#include <vector>

namespace slm::moe {

// How router logits become probabilities (llama.cpp's expert_gating_func: 1 softmax, 2 sigmoid).
enum class Gating { Softmax = 1, Sigmoid = 2 };

const char* gating_name(Gating g);

struct MoeParams {
    uint32_t n_expert = 0;        // experts per layer
    uint32_t n_expert_used = 0;   // k: experts per token
    Gating gating = Gating::Softmax;
    bool norm_w = false;          // chosen weights divided by their sum
    float w_scale = 0.0f;         // chosen weights multiplied by this; 0 or 1 = no scaling
};

// One layer's experts and their router.
struct MoeLayer {
    ModelTensor gate_inp;                    // router [n_embd, n_expert], any type
    ModelTensor gate_exps, up_exps;          // [n_embd, n_ff_exp, n_expert]
    ModelTensor down_exps;                   // [n_ff_exp, n_embd, n_expert]
    std::vector<ModelTensor> gate_e, up_e, down_e;  // per-expert 2-D views of the three above
    // Shared expert (absent: not present()): a SwiGLU FFN every token goes through.
    ModelTensor gate_inp_shexp;              // [n_embd], F32: gate sigmoid(w . x); absent = ungated
    ModelTensor gate_shexp, up_shexp;        // [n_embd, n_ff_shexp]
    ModelTensor down_shexp;                  // [n_ff_shexp, n_embd]

    int64_t n_embd() const { return gate_inp.ne[0]; }
    int64_t n_ff_exp() const { return up_exps.ne[1]; }
    int64_t n_ff_shexp() const { return up_shexp.present() ? up_shexp.ne[1] : 0; }
    bool has_shexp() const { return up_shexp.present(); }
};

// Reads `<arch>.expert_count`, `.expert_used_count`, `.expert_feed_forward_length` (default
// n_ff_exp_default) and `.expert_shared_feed_forward_length` (default 0) into hp, checking
// 1 <= n_expert_used <= n_expert <= 4096.
void read_hparams(const GGUFFile& f, HParams& hp, uint32_t n_ff_exp_default);

// The routing of architecture `hp.arch`: llama.cpp's choice for it (`def`), overridden by the
// optional keys `<arch>.expert_gating_func` (1 softmax, 2 sigmoid), `.expert_weights_norm` and
// `.expert_weights_scale` when the file has them.
MoeParams read_params(const GGUFFile& f, const HParams& hp, MoeParams def);

// Loads `<prefix>ffn_gate_inp.weight` and `<prefix>ffn_{gate,up,down}_exps.weight` (prefix
// "blk.3."), checking their shapes against n_embd, n_ff_exp and n_expert, and makes the
// per-expert views. With n_ff_shexp > 0 also the shared expert `<prefix>ffn_{gate,up,down}_shexp`
// and, if present, `<prefix>ffn_gate_inp_shexp`.
MoeLayer load_layer(const GGUFFile& f, const std::string& prefix, int64_t n_embd, const MoeParams& p,
                    int64_t n_ff_exp, int64_t n_ff_shexp);

// The 2-D matrix of expert e of a 3-D expert tensor: a view of its contiguous slice.
ModelTensor expert_view(const ModelTensor& t, int64_t e);

// Routing of n tokens: probs (n x n_expert) from logits (may alias probs), then for each token
// the k chosen experts ids (n x k, best first) and their final weights (n x k). `order` is
// n_expert ints of scratch.
void route(const MoeParams& p, const float* logits, float* probs, uint32_t n, int32_t* ids, float* weights,
           int32_t* order);

// out (n x n_embd) = the MoE FFN of x (n x n_embd) (shared expert included). x and out must not
// alias each other or any SessionState buffer other than x/xb/hb/hb2/att.
void ffn(SessionState& st, const MoeLayer& L, const MoeParams& p, const float* x, float* out, uint32_t n);

// Every matrix of L for matmul_weights() (the per-expert views, not the 3-D tensors) and every
// tensor for tensors() (the 3-D tensors).
void append_matmul_weights(MoeLayer& L, std::vector<ModelTensor*>& out);
void append_tensors(const MoeLayer& L, std::vector<const ModelTensor*>& out);

// `slm info` lines: gating, weight normalisation and scale.
std::vector<std::pair<std::string, std::string>> info(const MoeParams& p);

} // namespace slm::moe
