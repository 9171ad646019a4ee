// matmul.h - the matrix products of a forward pass, over the per-type kernels of kernels.h.
#pragma once

#include "kernels/kernels.h"
#include "slm/types.h"

#include <cstdint>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::kernels {

// Y (n_tokens x n_out, row-major) = X (n_tokens x n_in) . W^T, where W is n_out rows of n_in
// elements of wtype, as ggml_mul_mat(W, X) computes it on the CPU: each row of X is converted
// once to the weight type's vec_dot_type (into scratch, which only ever grows, so repeated calls
// of the same shape allocate nothing), then every output is one vec_dot. Parallel over output
// rows when pool is given. Throws slm::Error if wtype has no dot kernel or n_in is not a
// multiple of its block size. W and X must not alias Y.
void mul_mat(const void* W, GGMLType wtype, int64_t n_in, int64_t n_out, const float* X, int64_t n_tokens,
             float* Y, ThreadPool* pool, std::vector<uint8_t>& scratch);

// n elements of a row of type `type` to F32 (embedding lookup, debugging). Throws slm::Error for
// a type without kernels or n not a multiple of its block size.
void dequantize_row(const void* src, GGMLType type, int64_t n, float* dst);

// n F32 values to `type` with ggml's quantize_row_*_ref rounding (weights, not activations).
// Same errors as dequantize_row.
void quantize_row_ref(const float* src, GGMLType type, int64_t n, void* dst);

} // namespace slm::kernels
