// repack.h - weight matrices re-laid out once at load for the fastest kernels ("row groups").
//
// A row-major matrix of Q4_0 rows reads poorly in decoding: every block of every row needs its
// own scale conversion and its own horizontal sum. Repacked, 16 consecutive rows form a group
// whose blocks interleave: block ib of the group is 288 bytes, the 16 rows' fp16 scales (32
// bytes) and their nibbles transposed by 32-bit words (256 bytes), so that one 512-bit load
// gives the same four elements' nibbles of all 16 rows, one per lane: one vpdpbusd then advances
// 16 rows, one conversion serves 16 scales, and each group is one sequential stream. Byte count
// is unchanged (16 rows x 18 bytes per block), so row r still starts at group r / 16.
//
// Layout of block ib of a group:
//   bytes 0..31        d of rows 0..15
//   bytes 32 + 64j ..  for j = 0..3: lane r (4 bytes at 32 + 64j + 4r) = qs[4j .. 4j+3] of row
//                      r's block, i.e. elements 4j..4j+3 in the low nibbles and 16+4j..16+4j+3
//                      in the high nibbles.
// Q8_0 is laid out the same way with its 32 quant bytes: 16 x 34 = 544 bytes per block of a
// group, the scales, then j = 0..7 registers of qs[4j .. 4j+3] of each row.
//
// The model loader repacks a matrix when the kernel table in use has repack_traits for its type
// (and its row count is a multiple of kRepackRows), then returns the file's pages of the original to the
// OS (madvise), so memory holds one copy of the weights, not two.
#pragma once

#include "slm/types.h"

#include <cstddef>
#include <cstdint>

namespace slm::kernels {

constexpr int64_t kRepackRows = 16;  // rows per group

struct RepackTraits {
    // n_rows (a multiple of 16) rows of n elements (a multiple of the block size), rows bx bytes
    // apart, into the group layout at y (n_rows * bx bytes, groups 16 * bx bytes apart).
    void (*repack)(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx);
    // gemm (kernels.h) over repacked rows: x points at the start of a group, nr is a multiple of
    // 16, bx is the unrepacked row size (groups are 16 * bx apart). Same results as the
    // reference vec_dot (up to the order of float additions).
    void (*gemm)(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                 size_t ldc);
    // Row `row` of a repacked matrix back in the file's layout (bx bytes at out): an embedding
    // table that is also the tied output matrix is repacked and still looked up by row.
    void (*unpack_row)(const void* x, size_t bx, int64_t row, int64_t n, void* out);
};

// The repacked kernels of the table in use, or nullptr when it has none for this type (the
// matrix then stays as it is in the file).
const RepackTraits* repack_traits(GGMLType t);
// One ISA's ("scalar", "avx512"), for tests; "scalar" is the reference layout and kernel.
const RepackTraits* repack_traits_for_isa(const char* isa, GGMLType t);

namespace ref {
void repack_q4_0_r16(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx);
void repack_q8_0_r16(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx);
void unpack_row_q4_0_r16(const void* x, size_t bx, int64_t row, int64_t n, void* out);
void unpack_row_q8_0_r16(const void* x, size_t bx, int64_t row, int64_t n, void* out);
void gemm_q8_0_r16(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                   size_t ldc);
void gemm_q4_0_r16(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                  size_t ldc);
} // namespace ref

} // namespace slm::kernels
