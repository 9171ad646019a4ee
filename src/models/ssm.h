// ssm.h - the Mamba (v1) selective state-space mixer, shared by Mamba and Jamba's Mamba layers.
//
// Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" (2023), Alg. 2:
//   [x, z] = W_in u;  x = silu(conv1d(x) + b_conv)            causal, depthwise, d_conv taps
//   [dt_in, B, C] = W_x x;  dt = softplus(W_dt dt_in + b_dt)   (Jamba RMS-norms dt_in, B and C)
//   h_t = exp(dt A) h_{t-1} + dt B x_t;  y = C . h_t + D x    per channel, d_state states each
//   out = W_out (y * silu(z))
// computed with the float operations of llama.cpp's graph (ggml_ssm_conv, ggml_ssm_scan), so
// that F32 models give llama.cpp's logits to float rounding.
//
// A layer carries two states from one forward call to the next (SessionState::r_state[il]):
// the last d_conv - 1 inputs of every channel's convolution, then the d_state scan states of
// every channel, laid out [channel][tap] and [channel][state].
#pragma once

#include "models/arch.h"

#include <vector>

namespace slm::ssm {

struct MambaMixer {
    ModelTensor ssm_in;        // (n_embd) -> (2 d_inner): x, then z
    ModelTensor conv1d;        // [d_conv, d_inner] F32: each channel's taps, oldest input first
    ModelTensor conv1d_b;      // (d_inner) F32
    ModelTensor ssm_x;         // (d_inner) -> (dt_rank + 2 d_state): dt_in, B, C
    ModelTensor dt_norm;       // (dt_rank) F32 RMSNorm weight; Jamba only (else absent)
    ModelTensor b_norm;        // (d_state) F32; Jamba only
    ModelTensor c_norm;        // (d_state) F32; Jamba only
    ModelTensor ssm_dt;        // (dt_rank) -> (d_inner)
    ModelTensor ssm_dt_b;      // (d_inner) F32
    ModelTensor ssm_a;         // [d_state, d_inner] F32: A = -exp(A_log), stored so by the converter
    ModelTensor ssm_d;         // (d_inner) F32: the skip D
    ModelTensor ssm_out;       // (d_inner) -> (n_embd)
    // RMSNorm of the dt input, B and C before they are used: Jamba (with the weights above) and
    // Falcon-Mamba (key ssm.dt_b_c_rms, no weights).
    bool bcdt_norm = false;
};

// How a layer normalizes the dt input, B and C (MambaMixer::bcdt_norm).
enum class BcdtNorm {
    None,        // Mamba
    Weighted,    // Jamba: ssm_dt_norm, ssm_b_norm, ssm_c_norm required
    Unweighted,  // Falcon-Mamba (mamba.ssm.dt_b_c_rms = true): plain RMSNorm
};

// Reads ssm.conv_kernel, ssm.inner_size, ssm.state_size and ssm.time_step_rank into hp,
// refusing a missing key or a value outside its range (naming the file, key and value).
void read_hparams(const GGUFFile& f, HParams& hp);

// Layer il's mixer tensors, shapes checked against hp.
MambaMixer load_mixer(const GGUFFile& f, const HParams& hp, uint32_t il, BcdtNorm norm);

// Floats of one layer's recurrent state: (d_conv - 1) d_inner conv inputs + d_state d_inner.
size_t state_floats(const HParams& hp);

// Scratch floats mixer_forward needs per token (SessionState::extra).
size_t scratch_floats_per_token(const HParams& hp);

// Runs n tokens (rows of n_embd in `in`, already normalized) through the mixer, advancing
// `state` (state_floats(hp) floats), and writes n rows of n_embd to `out`. `out` may be `in`.
// `scratch` holds n * scratch_floats_per_token(hp) floats.
void mixer_forward(SessionState& st, const HParams& hp, const MambaMixer& m, float* state, const float* in, float* out,
                   uint32_t n, float* scratch);

// The mixer's tensors (for ArchModel::tensors) and its matrices (for matmul_weights).
void append_tensors(const MambaMixer& m, std::vector<const ModelTensor*>& out);
void append_matmul_weights(MambaMixer& m, std::vector<ModelTensor*>& out);

} // namespace slm::ssm
