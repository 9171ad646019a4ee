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

// One product of a mul_mat_multi: Y (n_tokens x n_out) = X . W^T.
struct MatMulOut {
    const void* W;    // n_out rows of n_in elements of `type`
    GGMLType type;
    int64_t n_out;
    float* Y;         // row-major, n_out floats per token
    bool repacked = false;  // W is in repack_traits(type)'s row-group layout (repack.h)
};

// Several products of the same input (Q, K and V; FFN gate and up) in one pass: X is converted
// once per distinct vec_dot_type and all outputs' row blocks are shared out in ONE parallel_for,
// so a decode step wakes the threads once for the three attention projections instead of three
// times. Same results as calling mul_mat for each. At most 8 outputs; n_outs outputs with
// distinct vec_dot_types use that many regions of scratch.
void mul_mat_multi(const MatMulOut* outs, int n_outs, int64_t n_in, const float* X, int64_t n_tokens,
                   ThreadPool* pool, std::vector<uint8_t>& scratch);

// n elements of a row of type `type` to F32 (embedding lookup, debugging). Throws slm::Error for
// a type without kernels or n not a multiple of its block size.
void dequantize_row(const void* src, GGMLType type, int64_t n, float* dst);

// n F32 values to `type` with ggml's quantize_row_*_ref rounding (weights, not activations).
// Same errors as dequantize_row.
void quantize_row_ref(const float* src, GGMLType type, int64_t n, void* dst);

} // namespace slm::kernels
