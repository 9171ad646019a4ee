// sparse.h - slm's 2:4 sparse weight type Q8_0_S24 (docs/sparse-format.md): the block layout
// and the per-ISA kernel tables, for dispatch.cpp and the tests.
//
// A block holds 32 weights of which exactly 2 in each group of 4 are kept: the Q8_0 scale, a
// 32-bit mask (bit j set = element j kept; two bits in each nibble) and the 16 kept int8
// values in element order. Decoding reads 22 bytes per 32 weights instead of Q8_0's 34.
#pragma once

#include "kernels/kernels.h"

#include <cstdint>

namespace slm::kernels {

struct RepackTraits;

struct BlockQ8_0S24 {
    uint16_t d;        // scale, fp16 (as Q8_0's: max |kept| / 127)
    uint8_t mask[4];   // little-endian uint32: bit j = element j of the block is kept
    int8_t qs[16];     // the kept values, in increasing element order
};
static_assert(sizeof(BlockQ8_0S24) == 22, "block_q8_0_s24 is 22 bytes");

// Whether every nibble of a block's mask has exactly two bits set (the format's invariant; the
// kernels give unspecified, but memory-safe, results for a block that breaks it).
inline bool s24_mask_valid(uint32_t m) {
    // Per nibble: popcount 2. Sum pairs of bits, then nibbles.
    const uint32_t pairs = (m & 0x55555555u) + ((m >> 1) & 0x55555555u);
    const uint32_t nibbles = (pairs & 0x33333333u) + ((pairs >> 2) & 0x33333333u);
    return nibbles == 0x22222222u;
}

// Checks n_blocks consecutive Q8_0_S24 blocks at `data`; returns the index of the first block
// whose mask is not 2:4 (s24_mask_valid), or -1. The model loader runs it on every such tensor.
int64_t s24_first_invalid_block(const void* data, int64_t n_blocks);

namespace ref {
void dequantize_row_q8_0_s24(const void* x, float* y, int64_t n);
void quantize_row_q8_0_s24_ref(const float* x, void* y, int64_t n);
void vec_dot_q8_0_s24_q8_0(int64_t n, float* s, const void* x, const void* y);
// The kernels of the scalar table (gemm nullptr: mul_mat calls vec_dot).
TypeTraits traits_q8_0_s24();
// The repacked layout (repack.h's contract, 16-row groups): block ib of a group is the 16 rows'
// blocks ib one after another (352 bytes), so a group is one sequential stream in decoding.
void repack_q8_0_s24_r16(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx);
void unpack_row_q8_0_s24_r16(const void* x, size_t bx, int64_t row, int64_t n, void* out);
} // namespace ref

#if defined(SLM_HAVE_X86_KERNELS)
namespace avx2 {
TypeTraits traits_q8_0_s24();
}
namespace avx512 {
// Needs AVX512_VBMI2 (vpexpandb) on top of the avx512 table's features.
TypeTraits traits_q8_0_s24();
const RepackTraits* repack_traits_q8_0_s24();
}
#endif

} // namespace slm::kernels
