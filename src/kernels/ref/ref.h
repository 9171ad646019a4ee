// ref.h - scalar reference kernels: the portable fallback and the oracle the SIMD kernels are
// tested against. Each function names the ggml function whose numerics it reproduces.
#pragma once

#include "kernels/kernels.h"

#include <cstdint>

namespace slm::kernels::ref {

// to_float: dequantize_row_* (ggml-quants.c), ggml_fp16_to_fp32_row, ggml_bf16_to_fp32_row.
void f32_to_float(const void* x, float* y, int64_t n);
void f16_to_float(const void* x, float* y, int64_t n);
void bf16_to_float(const void* x, float* y, int64_t n);
void dequantize_row_q4_0(const void* x, float* y, int64_t n);
void dequantize_row_q4_1(const void* x, float* y, int64_t n);
void dequantize_row_q5_0(const void* x, float* y, int64_t n);
void dequantize_row_q5_1(const void* x, float* y, int64_t n);
void dequantize_row_q8_0(const void* x, float* y, int64_t n);
void dequantize_row_q8_1(const void* x, float* y, int64_t n);  // qs*d; ggml has none

// from_float for activations, as ggml-cpu on x86 with AVX2 computes them.
void f32_from_float(const float* x, void* y, int64_t n);
void f16_from_float(const float* x, void* y, int64_t n);   // ggml_cpu_fp32_to_fp16 with F16C
void bf16_from_float(const float* x, void* y, int64_t n);  // ggml_cpu_fp32_to_bf16
void quantize_row_q8_0(const float* x, void* y, int64_t n);  // arch/x86 quantize_row_q8_0
void quantize_row_q8_1(const float* x, void* y, int64_t n);  // arch/x86 quantize_row_q8_1

// quantize_ref: ggml's quantize_row_*_ref (deterministic weight quantization).
void f16_quantize_ref(const float* x, void* y, int64_t n);   // ggml_fp32_to_fp16_row (generic)
void bf16_quantize_ref(const float* x, void* y, int64_t n);  // ggml_fp32_to_bf16_row_ref
void quantize_row_q4_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, void* y, int64_t n);

// vec_dot: ggml_vec_dot_*_generic (ggml-cpu/quants.c) and the scalar ggml_vec_dot_f32/f16/bf16.
void vec_dot_f32(int64_t n, float* s, const void* x, const void* y);
void vec_dot_f16(int64_t n, float* s, const void* x, const void* y);
void vec_dot_bf16(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q4_0_q8_0(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q4_1_q8_1(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q5_0_q8_0(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q5_1_q8_1(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q8_0_q8_0(int64_t n, float* s, const void* x, const void* y);

// Fills table[type id] for every type in this header; the table is indexed by the ggml type id.
void fill_traits(TypeTraits* table, int n_table);

// ---- K-quants, IQ4_NL / IQ4_XS, TQ1_0 / TQ2_0 (ref_kquants.cpp) --------------------------------

// to_float: dequantize_row_* of ggml-quants.c.
void dequantize_row_q2_K(const void* x, float* y, int64_t n);
void dequantize_row_q3_K(const void* x, float* y, int64_t n);
void dequantize_row_q4_K(const void* x, float* y, int64_t n);
void dequantize_row_q5_K(const void* x, float* y, int64_t n);
void dequantize_row_q6_K(const void* x, float* y, int64_t n);
void dequantize_row_q8_K(const void* x, float* y, int64_t n);
void dequantize_row_iq4_nl(const void* x, float* y, int64_t n);
void dequantize_row_iq4_xs(const void* x, float* y, int64_t n);
void dequantize_row_tq1_0(const void* x, float* y, int64_t n);
void dequantize_row_tq2_0(const void* x, float* y, int64_t n);

// quantize_ref: quantize_row_*_ref. These are also ggml-cpu's from_float for the weight types,
// and what llama-quantize runs without an importance matrix. quantize_row_q8_K_ref is the
// activation quantizer the x86 build uses as well (it has no SIMD version).
void quantize_row_q2_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q3_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, void* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, void* y, int64_t n);
void quantize_row_iq4_nl_ref(const float* x, void* y, int64_t n);
void quantize_row_iq4_xs_ref(const float* x, void* y, int64_t n);
void quantize_row_tq1_0_ref(const float* x, void* y, int64_t n);
void quantize_row_tq2_0_ref(const float* x, void* y, int64_t n);

// Importance-weighted weight quantization: ggml's quantize_<type>(src, dst, 1, n, quant_weights)
// with quant_weights given (what llama-quantize runs with an imatrix), one row of n elements;
// qw holds n importances. Returns false, writing nothing, for a type llama.cpp quantizes without
// them (Q8_0, F16, BF16, TQ1_0, TQ2_0): the caller then uses quantize_ref.
bool has_imatrix_quantizer(GGMLType t);
bool quantize_row_imatrix(GGMLType t, const float* x, void* y, int64_t n, const float* qw);

// vec_dot: ggml_vec_dot_*_generic.
void vec_dot_q2_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q3_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q4_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q5_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q6_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_iq4_nl_q8_0(int64_t n, float* s, const void* x, const void* y);
void vec_dot_iq4_xs_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_tq1_0_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_tq2_0_q8_K(int64_t n, float* s, const void* x, const void* y);

// Scale and min of sub-block j (0..7) of a Q4_K/Q5_K block: ggml's get_scale_min_k4.
void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m);
// The sixteen signed 6-bit sub-block scales of a Q3_K block, minus 32.
void unpack_q3_K_scales(const uint8_t packed[12], int8_t out[16]);

// Adds the types above to table[type id]; called by fill_traits.
void fill_traits_kquants(TypeTraits* table, int n_table);

} // namespace slm::kernels::ref
