// kernels.h - per-type kernel traits, chosen once at start-up from the CPU's features.
//
// The layer above (models/, runtime/) never names an ISA: it asks traits(type) and calls
// through the table, as ggml-cpu's type_traits_cpu does. Every fast kernel has a scalar
// reference in kernels/ref/ that is both the portable fallback and the test oracle.
#pragma once

#include "slm/types.h"

#include <cstddef>
#include <cstdint>

namespace slm::kernels {

// Tensor data handed to any kernel is aligned as its element or block type (its float or fp16
// fields are read through typed pointers); Model::load copies tensors of files whose
// general.alignment would break this (runtime/session.cpp, realign_tensors).
struct TypeTraits {
    GGMLType type;
    // Dequantizes n elements (n a multiple of the block size) of this type to F32.
    void (*to_float)(const void* x, float* y, int64_t n);
    // Converts n F32 activations to this type exactly as ggml-cpu does on x86 with AVX2
    // (quantize_row_q8_0/q8_1 of arch/x86/quants.c: scale 127/amax, round half to even;
    // F16C for F16). For Q4_0/Q4_1/Q5_0/Q5_1, which are never activations, it is quantize_ref,
    // as in ggml-cpu's type_traits_cpu. SIMD and scalar versions give identical bytes.
    // Q8_K, the K-quants' activation type, is quantize_row_q8_K_ref, which ggml's x86 build
    // runs as well (scale -127/max from the signed extreme, nearest_int's ties to even); the
    // K-quants, IQ4_NL, IQ4_XS and TQ1_0/TQ2_0 use their quantize_ref, as ggml-cpu does.
    void (*from_float)(const float* x, void* y, int64_t n);
    // *s = dot(x, y) over n elements: x a row of this type, y a row of vec_dot_type.
    void (*vec_dot)(int64_t n, float* s, const void* x, const void* y);
    // The type activations are converted to before vec_dot (ggml-cpu's vec_dot_type):
    // Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, F16 for F16, BF16 for BF16, F32 for F32.
    // Q8_K for Q2_K..Q6_K, IQ4_XS, TQ1_0 and TQ2_0; Q8_0 for IQ4_NL.
    GGMLType vec_dot_type;
    // Weight quantization as ggml's quantize_row_*_ref (ggml-quants.c), which rounds halves
    // upwards (roundf, or truncating x + 8.5) and takes the Q4_0/Q5_0 scale from the signed
    // extreme. Used by the quantizer and by tests to make weights. For F16/BF16 the plain
    // conversions (ggml_fp32_to_fp16_row, ggml_fp32_to_bf16_row_ref); memcpy for F32.
    void (*quantize_ref)(const float* x, void* y, int64_t n);
    // A block of dot products for matrix products (prefill tiles, and several rows at once in
    // decode): s[c * ldc + r] = dot(x_r, y_c) for r < nr, c < nc, where x_r = x + r * bx bytes is
    // a row of this type and y_c = y + c * by bytes a row of vec_dot_type, n elements each.
    // Each result equals vec_dot's up to the order of float additions. The kernel chooses its
    // own register tiling (several rows x several columns per tile, so a weight block is
    // loaded and unpacked once for several tokens) and handles any nr, nc >= 1.
    // nullptr: mul_mat calls vec_dot for every output.
    void (*gemm)(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                 size_t ldc);
};

// The fastest implementation this CPU runs; nullptr if the type has no kernels yet.
const TypeTraits* traits(GGMLType t);
// The scalar reference implementation; nullptr if unsupported.
const TypeTraits* ref_traits(GGMLType t);
// Name of the instruction set chosen at start-up ("avx512", "avx2", "neon", "scalar"). The
// environment variable SLM_ISA=scalar|avx2|avx512|neon overrides the choice, for tests and
// debugging (an ISA this CPU or build lacks is refused with a warning).
const char* isa_name();
// The table of one instruction set ("scalar", "avx2", "avx512", "neon"), or nullptr when this build has no such
// kernels or this CPU cannot run them; lets tests compare every ISA with the reference.
const TypeTraits* traits_for_isa(const char* isa, GGMLType t);

// F16 / BF16 scalar conversions, bit-exact with ggml (round to nearest even).
// fp32_to_fp16 is ggml_compute_fp32_to_fp16: a NaN becomes 0x7e00 (with its sign);
// fp32_to_bf16 is ggml_compute_fp32_to_bf16: subnormals kept, NaN made quiet.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

} // namespace slm::kernels
