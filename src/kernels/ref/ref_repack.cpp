// ref_repack.cpp - the row-group layout of repack.h, written and read back by scalar code: the
// oracle for the SIMD kernels over it.
#include "kernels/repack.h"

#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include <cstring>

namespace slm::kernels::ref {
namespace {

constexpr int kRows = static_cast<int>(kRepackRows);
constexpr size_t kGroupBlock = kRows * sizeof(BlockQ4_0);  // 288

} // namespace

void repack_q4_0_r16(const void* vx, void* vy, int64_t n, int64_t n_rows, size_t bx) {
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    auto* y = static_cast<uint8_t*>(vy);
    for (int64_t g = 0; g < n_rows / kRows; ++g) {
        const uint8_t* src = x + static_cast<size_t>(g) * kRows * bx;
        uint8_t* dst = y + static_cast<size_t>(g) * kRows * bx;
        for (int64_t ib = 0; ib < nb; ++ib) {
            uint8_t* o = dst + static_cast<size_t>(ib) * kGroupBlock;
            for (int r = 0; r < kRows; ++r) {
                const auto* b = reinterpret_cast<const BlockQ4_0*>(src + r * bx) + ib;
                std::memcpy(o + 2 * r, &b->d, 2);
                for (int j = 0; j < 4; ++j) std::memcpy(o + 32 + 64 * j + 4 * r, b->qs + 4 * j, 4);
            }
        }
    }
}

void gemm_q4_0_r16(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
                   size_t ldc) {
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    constexpr int64_t kChunk = 64;  // blocks unpacked at a time
    BlockQ4_0 rows[kRows][kChunk];
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
                        for (int j = 0; j < 4; ++j) std::memcpy(rows[r][ib].qs + 4 * j, o + 32 + 64 * j + 4 * r, 4);
                    }
                }
                for (int r = 0; r < kRows; ++r) {
                    float part = 0;
                    vec_dot_q4_0_q8_0(bn * kQK, &part, rows[r], y + c * by + static_cast<size_t>(b0) * sizeof(BlockQ8_0));
                    sum[r] += part;
                }
            }
            for (int r = 0; r < kRows; ++r) s[c * ldc + g * kRows + r] = sum[r];
        }
    }
}

} // namespace slm::kernels::ref
