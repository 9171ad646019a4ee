// vec.h - small vector kernels for attention over the KV cache, chosen at start-up like the
// per-type traits of kernels.h (same ISA as isa_name(), same SLM_ISA override).
//
// The F16 operations reproduce ggml-cpu's flash-attention helpers element for element:
// every F16 value is widened exactly, the arithmetic is done in float, and the result is
// rounded back to F16 to nearest even. mad_f16 is ggml_vec_mad_f16: its SIMD loop (the first
// n - n % f16_step elements, GGML_F16_STEP of the ISA's ggml build) does one fused multiply-add
// per element, its leftover loop a float product and then a float sum (two roundings; this is
// what llama.cpp's logits show, e.g. with head size 8). So mad_f16 of an ISA gives the bits of
// ref::mad_f16_step with that ISA's f16_step, and scale_f16 and cvt_f32_f16 the same bits on
// every ISA (NaN payloads aside). Dot products sum in each ISA's ggml order (see dot_f16), so
// they agree only up to float rounding.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slm::kernels {

// One query's running state in the online softmax of F16 attention (ggml's M, S and VKQ16):
// the largest scaled score so far, the sum of exp(score - M), and the F16 accumulator of V.
struct AttnF16State {
    float M;
    float S;
    uint16_t* acc;  // hd_v F16 values
};

// The K/V rows one call of attn_f16 goes through: row j of K at k + j * k_stride (F16
// elements), of V at v + j * v_stride.
struct AttnF16Rows {
    const uint16_t* k;
    const uint16_t* v;
    size_t k_stride, v_stride;
    int64_t hd_k, hd_v;
    float scale;           // multiplies q . k; with a soft-cap, 1/softcap is already folded in
    float softcap = 0.0f;  // Gemma 2: s -> softcap * tanh(s) after the scale; 0 = off
};

struct VecOps {
    const char* isa;
    // GGML_F16_STEP of the ggml build this ISA follows (32 AVX2, 64 AVX-512; 32 for the
    // reference): mad_f16 fuses the multiply-add of the first n - n % f16_step elements.
    int64_t f16_step;
    // *s = sum_i x[i] * y[i] over n F16 values. Summation order: the reference sums the float
    // products in double (ggml's scalar ggml_vec_dot_f16); AVX2 as ggml's AVX2 build (four
    // chains of 8 over steps of 32, tail in double); AVX-512 as ggml's AVX-512 build (four
    // chains of 16 over steps of 64, tail in double).
    void (*dot_f16)(int64_t n, float* s, const uint16_t* x, const uint16_t* y);
    // y[i] = f16(fma(f32(x[i]), v, f32(y[i])))   for i < n - n % f16_step, then
    // y[i] = f16(f32(x[i]) * v + f32(y[i]))      rounded twice    (ggml_vec_mad_f16)
    void (*mad_f16)(int64_t n, uint16_t* y, const uint16_t* x, float v);
    // y[i] = f16(f32(y[i]) * v)                  (ggml_vec_scale_f16)
    void (*scale_f16)(int64_t n, uint16_t* y, float v);
    // y[i] = f16(x[i]), round to nearest even    (Q to the K cache's type)
    void (*cvt_f32_f16)(int64_t n, const float* x, uint16_t* y);
    // y[i] = f32(x[i]) * v                       (VKQ16 -> VKQ32, then scaled by 1/S)
    void (*cvt_f16_f32_scale)(int64_t n, const uint16_t* x, float* y, float v);
    // y[i] = fma(x[i], v, y[i]) over F32 values (the F32-cache V sum)
    void (*mad_f32)(int64_t n, float* y, const float* x, float v);
    // The online-softmax update of one query over the rows [0, n) of `r`, in row order, with
    // the query q (hd_k F16 values) - ggml_compute_forward_flash_attn_ext_f16's inner loop:
    //   s = dot_f16(K_j, q) * scale;  if softcap != 0: s = softcap * tanhf(s)
    //   if s > M: ms = exp(M_old - M), M = s, acc = scale_f16(acc, ms), vs = 1
    //   else:     ms = 1, vs = exp(s - M)
    //   acc = mad_f16(acc, V_j, vs); S = S * ms + vs (product rounded, then the sum)
    // Bit for bit the sequence of the operations above, so splitting the rows into several
    // calls gives the same result as one call. `scratch` holds at least 3 * n floats.
    // The soft-cap is ggml's: the caller divides the scale by softcap beforehand ("scale /=
    // softcap" in ggml_compute_forward_flash_attn_ext_f16), so s = softcap * tanh(q.k * scale).
    void (*attn_f16)(const AttnF16Rows& r, const uint16_t* q, int64_t n, AttnF16State& st, float* scratch);

    // Attention over an F32 cache as llama.cpp computes it without flash attention, in the
    // order of its AVX-512 build (the reference dumps') on every ISA: the lanes are emulated,
    // so the bits are the same everywhere (vec_f32_attn.h). Gemma's F16 GELU table turns a
    // one-ulp difference here into a visible one in the logits.
    // ggml_vec_dot_f32 (the prompt's KQ): four 16-lane FMA chains over steps of 64.
    float (*dot_f32_ggml)(int64_t n, const float* x, const float* y);
    // llamafile tinyBLAS (the decode step's KQ): one 16-lane FMA chain; n a multiple of 16.
    float (*dot_f32_sgemm)(int64_t n, const float* x, const float* y);
    // ggml_vec_soft_max_f32: y = ggml_v_expf(x - max) over n values, returns their sum (groups
    // of 16 summed by the lane tree into a double).
    double (*softmax_f32)(int64_t n, float* y, const float* x, float max);
};

// The fastest implementation this CPU runs (the one isa_name() names).
const VecOps& vec_ops();
// The ops of one instruction set ("scalar", "avx2", "avx512"), or nullptr when this build or
// CPU lacks it; for tests.
const VecOps* vec_ops_for_isa(const char* isa);

namespace ref {
// The scalar reference (ref_vec.cpp): the portable fallback and the tests' oracle.
const VecOps& vec_ops();
// mad_f16 with a given step (see VecOps::f16_step), to check each ISA's mad_f16 bit for bit.
void mad_f16_step(int64_t n, uint16_t* y, const uint16_t* x, float v, int64_t step);
} // namespace ref

} // namespace slm::kernels
