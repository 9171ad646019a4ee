// gptq.h - GPTQ (Frantar et al.) quantization of one weight matrix (implemented by the gptq
// branch; this header is the interface of notes/issue6.md, which `slm quantize --method gptq` calls).
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
// imatrix does. Returns n_out rows of row_size(type, n_in) bytes in the standard GGUF block
// layout. Throws slm::Error naming `name` for a type it cannot do or a bad shape.
std::vector<uint8_t> gptq_quantize(const std::string& name, const float* w, int64_t n_out, int64_t n_in,
                                   const float* hessian, uint64_t n_rows, GGMLType type,
                                   const float* imatrix, const GptqParams& p, ThreadPool* pool);
}
