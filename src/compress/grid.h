// grid.h - the value grid a GGUF block's scale bytes fix, for quantizers that choose the scales
// first and the levels later (GPTQ) or that need quantize-dequantize of a row (AWQ's loss).
//
//   const compress::GridType& g = compress::grid_type(GGMLType::Q4_K);  // throws for others
//   std::vector<uint8_t> blk(g.block_bytes);
//   compress::grid_choose(g, x, weights, blk.data());    // scales from the type's own quantizer
//   compress::ElemGrid e[256]; compress::grid_decode(g, blk.data(), e);
//   float v; int code = compress::grid_snap(g, e[i], x[i], &v);  // nearest representable value
//   compress::grid_set_code(g, blk.data(), i, code);     // to_float(blk)[i] == v, bit for bit
//
// Every supported type's element value is a * levels[code] + b, where a and b come from the
// block's scale bytes (fp16 scale times a sub-block scale, minus a min) and levels is the type's
// level table (uniform integers for Q*, the 16 non-uniform values for IQ4_NL/XS). a and b are
// computed in the same float operations, in the same order, as the type's to_float, so the value
// the grid gives is exactly what any GGUF reader decodes.
#pragma once

#include "slm/types.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace slm::compress {

struct GridType {
    GGMLType type;
    int block;           // elements per GGUF block (32 or 256): GPTQ's group
    size_t block_bytes;  // bytes per block
    int n_codes;         // codes an element can take
    const int* levels;   // n_codes levels, increasing
};

// The grid description of `t`, or nullptr if it is not one of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
const GridType* find_grid_type(GGMLType t);
// The same, but throws slm::Error naming `who` and the type for the others.
const GridType& grid_type(GGMLType t, const char* who);

// One element's affine map from level to value: value = a * levels[code] + b.
struct ElemGrid {
    float a = 0.0f;
    float b = 0.0f;
};

// The per-element grids of one block (g.block of them), read from its scale bytes.
void grid_decode(const GridType& g, const uint8_t* block, ElemGrid* out);

// The code whose value is nearest to x (ties: the lower code); *value gets that value exactly
// as to_float computes it.
int grid_snap(const GridType& g, const ElemGrid& e, float x, float* value);

// Stores `code` for element i of the block, leaving the scales and the other elements alone.
void grid_set_code(const GridType& g, uint8_t* block, int i, int code);

// Chooses a block's scale bytes for the values x (g.block of them) with the type's own
// quantize_ref. With weights (g.block non-negative importances, or nullptr), it also tries the
// quantizer on x scaled by a few factors around 1 (a smaller factor clips the range, a larger one
// widens it) and keeps the scales whose grid gives the least weighted squared error of the nearest
// values: the importance-weighted grid choice GPTQ's Hessian diagonal (or an imatrix) asks for.
// The block's codes are those of the chosen quantize_ref call.
void grid_choose(const GridType& g, const float* x, const float* weights, uint8_t* block);

// sum_i weights[i] * (x_i - nearest value on the block's grid)^2 (weights nullptr = 1).
double grid_error(const GridType& g, const uint8_t* block, const float* x, const float* weights);

// Round-to-nearest quantize then dequantize n values (n a multiple of the block) of `t` with
// the type's quantize_ref and to_float: what the weights would become with RTN.
void quantize_dequantize(GGMLType t, const float* x, float* y, int64_t n);

} // namespace slm::compress
