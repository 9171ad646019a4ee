// gptq.h - GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers"): quantizes a weight matrix column by column, spreading
// each column's rounding error over the columns not yet quantized through the inverse Hessian
// of the layer's inputs, so the layer's output W X^T moves as little as possible.
//
//   std::vector<uint8_t> q = compress::gptq_quantize("blk.0.attn_q.weight", w, n_out, n_in,
//                                                    s->hessian.data(), s->n_rows, GGMLType::Q4_K,
//                                                    nullptr, {}, &pool);
//
// The "group" is the target type's block along the row (32 for Q4_0 ... IQ4_NL, the 256
// super-block for the K-quants and IQ4_XS): when processing reaches a block, its scale bytes are
// chosen by the type's own quantizer from the current (error-updated) weights, with an
// importance-weighted search (see compress::grid_choose); each column is then snapped to that
// fixed grid, and the levels are packed with those scale bytes in the standard block layout, so
// any GGUF reader runs the result and decodes exactly the values GPTQ used.
//
// Numerics: H, its inverse and the updated weights are kept in double precision.
#pragma once

#include "slm/types.h"

#include <cstdint>
#include <string>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::compress {

struct GptqParams {
    float damp = 0.01f;        // percdamp: lambda = damp * mean(diag(H)) added to the diagonal
    int block = 128;           // columns per lazy-update block
    bool act_order = false;    // columns by decreasing diag(H), with static block grids
};

// Quantizes a row-major n_out x n_in F32 matrix `w` to `type` with GPTQ, given the input's
// X^T X (`hessian`, n_in x n_in, both halves, summed over n_rows rows). `imatrix` (n_in
// floats or nullptr) weights the rounding when a block's grid is chosen, as llama.cpp's
// imatrix does (without it, diag(H) does). Returns n_out rows of row_size(type, n_in) bytes in
// the standard GGUF block layout. Throws slm::Error naming `name` for a type it cannot do, a
// bad shape, or a Hessian or weight with a NaN/Inf.
//
// Columns whose Hessian diagonal is 0 (inputs that were always 0) are "dead": their weights
// become 0. With act_order the block grids are static (chosen from the original weights before
// any update, as AutoGPTQ's static_groups), since the columns of a block are no longer
// processed together. The lazy-update block is rounded up to a multiple of the type's block, so
// that every group's columns are up to date when its grid is chosen.
std::vector<uint8_t> gptq_quantize(const std::string& name, const float* w, int64_t n_out, int64_t n_in,
                                   const float* hessian, uint64_t n_rows, GGMLType type, const float* imatrix,
                                   const GptqParams& p, ThreadPool* pool);

// The same, and also returns in `values` (n_out x n_in) the dequantized weights GPTQ used,
// for tests and for callers that want the F32 result.
std::vector<uint8_t> gptq_quantize(const std::string& name, const float* w, int64_t n_out, int64_t n_in,
                                   const float* hessian, uint64_t n_rows, GGMLType type, const float* imatrix,
                                   const GptqParams& p, ThreadPool* pool, std::vector<float>* values);

} // namespace slm::compress
