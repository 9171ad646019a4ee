// repack.h - weight matrices re-laid out once at load for the fastest kernels ("row groups").
//
// A row-major matrix of Q4_0 rows reads poorly in decoding: every block of every row needs its
// own scale conversion and nibble shuffle. Repacked, 8 consecutive rows form a group whose blocks
// interleave: block ib of the group is 144 bytes, the 8 rows' fp16 scales (16 bytes) and their
// 8 x 32 nibbles (128 bytes), ordered so that one load and one mask give four 4-element pieces of
// each of the 8 rows in the 32-bit lanes of a 512-bit register; one vpdpbusd then advances 8 rows
// at once, and one conversion serves 8 scales. Byte count and group stride are unchanged (8 rows
// x 18 bytes per block), so row r of the matrix still starts at group r / 8.
//
// Layout of block ib of a group (q[r][e] = element e of row r's block, 0..15):
//   bytes 0..15   d of rows 0..7
//   bytes 16..79  p0: byte 4L + i (lane L = r + 8h, r < 8, h < 2, i < 4) holds q[r][4h + i] in
//                 its low nibble and q[r][8 + 4h + i] in its high nibble
//   bytes 80..143 p1: the same with elements 16 + 4h + i (low) and 24 + 4h + i (high)
// so (p0 & 15, p0 >> 4, p1 & 15, p1 >> 4) hold, in lane L, elements 4g..4g+3 of row r for
// g = h, 2 + h, 4 + h, 6 + h.
//
// The model loader repacks a matrix when the kernel table in use has repack_traits for its type
// (and its row count is a multiple of 8), then returns the file's pages of the original to the
// OS (madvise), so memory holds one copy of the weights, not two.
#pragma once

#include "slm/types.h"

#include <cstddef>
#include <cstdint>

namespace slm::kernels {

struct RepackTraits {
    // n_rows (a multiple of 8) rows of n elements (a multiple of the block size), rows bx bytes
    // apart, into the group layout at y (n_rows * bx bytes, groups 8 * bx bytes apart).
    void (*repack)(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx);
    // gemm (kernels.h) over repacked rows: x points at the start of a group, nr is a multiple of
    // 8, bx is the unrepacked row size (groups are 8 * bx apart). Same results as vec_dot up to
    // the order of float additions.
    void (*gemm)(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                 size_t ldc);
};

// The repacked kernels of the table in use, or nullptr when it has none for this type (the
// matrix then stays as it is in the file).
const RepackTraits* repack_traits(GGMLType t);
// One ISA's ("scalar", "avx512"), for tests; "scalar" is the reference layout and kernel.
const RepackTraits* repack_traits_for_isa(const char* isa, GGMLType t);

namespace ref {
void repack_q4_0_r8(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx);
void gemm_q4_0_r8(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                  size_t ldc);
} // namespace ref

} // namespace slm::kernels
