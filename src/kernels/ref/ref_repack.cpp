// ref_repack.cpp - the row-group layout of repack.h, written and read back by scalar code: the
// oracle for the SIMD kernels over it.
#include "kernels/repack.h"

#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include <cstring>

namespace slm::kernels::ref {
namespace {

constexpr int kRows = static_cast<int>(kRepackRows);

// Block type B with its quant bytes qs (after the fp16 d), Q = bytes of qs.
template <class B, int Q>
void repack_r16(const void* vx, void* vy, int64_t n, int64_t n_rows, size_t bx) {
    constexpr size_t kGroupBlock = kRows * sizeof(B);
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    auto* y = static_cast<uint8_t*>(vy);
    for (int64_t g = 0; g < n_rows / kRows; ++g) {
        const uint8_t* src = x + static_cast<size_t>(g) * kRows * bx;
        uint8_t* dst = y + static_cast<size_t>(g) * kRows * bx;
        for (int64_t ib = 0; ib < nb; ++ib) {
            uint8_t* o = dst + static_cast<size_t>(ib) * kGroupBlock;
            for (int r = 0; r < kRows; ++r) {
                const auto* b = reinterpret_cast<const B*>(src + r * bx) + ib;
                std::memcpy(o + 2 * r, &b->d, 2);
                for (int j = 0; j < Q / 4; ++j) std::memcpy(o + 32 + 64 * j + 4 * r, reinterpret_cast<const uint8_t*>(b->qs) + 4 * j, 4);
            }
        }
    }
}

template <class B, int Q>
void unpack_row_r16(const void* vx, size_t bx, int64_t row, int64_t n, void* vout) {
    constexpr size_t kGroupBlock = kRows * sizeof(B);
    const int64_t nb = n / kQK;
    const auto* grp = static_cast<const uint8_t*>(vx) + static_cast<size_t>(row / kRows) * kRows * bx;
    const int r = static_cast<int>(row % kRows);
    auto* out = static_cast<B*>(vout);
    for (int64_t ib = 0; ib < nb; ++ib) {
        const uint8_t* o = grp + static_cast<size_t>(ib) * kGroupBlock;
        std::memcpy(&out[ib].d, o + 2 * r, 2);
        for (int j = 0; j < Q / 4; ++j) std::memcpy(reinterpret_cast<uint8_t*>(out[ib].qs) + 4 * j, o + 32 + 64 * j + 4 * r, 4);
    }
}

// The reference over the layout: rows unpacked back 64 blocks at a time, then the reference
// vec_dot chunk by chunk.
template <class B, int Q>
void gemm_r16(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
              size_t ldc, void (*dot)(int64_t, float*, const void*, const void*)) {
    constexpr size_t kGroupBlock = kRows * sizeof(B);
    constexpr int64_t kChunk = 64;
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    B rows[kRows][kChunk];
    for (int64_t g = 0; g < nr / kRows; ++g) {
        const uint8_t* grp = x + static_cast<size_t>(g) * kRows * bx;
        for (int64_t c = 0; c < nc; ++c) {
            float sum[kRows] = {};
            for (int64_t b0 = 0; b0 < nb; b0 += kChunk) {
                const int64_t bn = nb - b0 < kChunk ? nb - b0 : kChunk;
                for (int64_t ib = 0; ib < bn; ++ib) {
                    const uint8_t* o = grp + static_cast<size_t>(b0 + ib) * kGroupBlock;
                    for (int r = 0; r < kRows; ++r) {
                        std::memcpy(&rows[r][ib].d, o + 2 * r, 2);
                        for (int j = 0; j < Q / 4; ++j)
                            std::memcpy(reinterpret_cast<uint8_t*>(rows[r][ib].qs) + 4 * j, o + 32 + 64 * j + 4 * r, 4);
                    }
                }
                for (int r = 0; r < kRows; ++r) {
                    float part = 0;
                    dot(bn * kQK, &part, rows[r], y + c * by + static_cast<size_t>(b0) * sizeof(BlockQ8_0));
                    sum[r] += part;
                }
            }
            for (int r = 0; r < kRows; ++r) s[c * ldc + g * kRows + r] = sum[r];
        }
    }
}

} // namespace

void repack_q4_0_r16(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx) {
    repack_r16<BlockQ4_0, 16>(x, y, n, n_rows, bx);
}

void repack_q8_0_r16(const void* x, void* y, int64_t n, int64_t n_rows, size_t bx) {
    repack_r16<BlockQ8_0, 32>(x, y, n, n_rows, bx);
}

void unpack_row_q4_0_r16(const void* x, size_t bx, int64_t row, int64_t n, void* out) {
    unpack_row_r16<BlockQ4_0, 16>(x, bx, row, n, out);
}

void unpack_row_q8_0_r16(const void* x, size_t bx, int64_t row, int64_t n, void* out) {
    unpack_row_r16<BlockQ8_0, 32>(x, bx, row, n, out);
}

void gemm_q4_0_r16(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                   size_t ldc) {
    gemm_r16<BlockQ4_0, 16>(n, x, bx, nr, y, by, nc, s, ldc, vec_dot_q4_0_q8_0);
}

void gemm_q8_0_r16(int64_t n, const void* x, size_t bx, int64_t nr, const void* y, size_t by, int64_t nc, float* s,
                   size_t ldc) {
    gemm_r16<BlockQ8_0, 32>(n, x, bx, nr, y, by, nc, s, ldc, vec_dot_q8_0_q8_0);
}

} // namespace slm::kernels::ref
