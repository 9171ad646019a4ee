// ref_repack.cpp - the row-group layout of repack.h, written and read back by scalar code: the
// oracle for the SIMD kernels over it.
#include "kernels/repack.h"

#include "core/fp16.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include <cstring>
#include <utility>

namespace slm::kernels::ref {
namespace {

constexpr int kGroup = 8;
constexpr size_t kGroupBlock = kGroup * sizeof(BlockQ4_0);  // 144

// Element e (0..31) of a Q4_0 block, 0..15.
inline uint8_t nib(const BlockQ4_0& b, int e) { return e < 16 ? (b.qs[e] & 0x0f) : (b.qs[e - 16] >> 4); }

// Unpacks block ib of a group back into 8 natural blocks.
void unpack_group_block(const uint8_t* g, BlockQ4_0* out) {
    for (int r = 0; r < kGroup; ++r) {
        std::memcpy(&out[r].d, g + 2 * r, 2);
        std::memset(out[r].qs, 0, sizeof out[r].qs);
    }
    for (int part = 0; part < 2; ++part) {
        const uint8_t* p = g + 16 + 64 * part;
        for (int L = 0; L < 16; ++L) {
            const int r = L % 8, h = L / 8;
            for (int i = 0; i < 4; ++i) {
                const uint8_t byte = p[4 * L + i];
                const int e_lo = 16 * part + 4 * h + i, e_hi = 16 * part + 8 + 4 * h + i;
                for (auto [e, v] : {std::pair<int, int>{e_lo, byte & 0x0f}, std::pair<int, int>{e_hi, byte >> 4}}) {
                    if (e < 16) out[r].qs[e] |= static_cast<uint8_t>(v);
                    else out[r].qs[e - 16] |= static_cast<uint8_t>(v << 4);
                }
            }
        }
    }
}

} // namespace

void repack_q4_0_r8(const void* vx, void* vy, int64_t n, int64_t n_rows, size_t bx) {
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    auto* y = static_cast<uint8_t*>(vy);
    for (int64_t g = 0; g < n_rows / kGroup; ++g) {
        const uint8_t* src = x + static_cast<size_t>(g) * kGroup * bx;
        uint8_t* dst = y + static_cast<size_t>(g) * kGroup * bx;
        for (int64_t ib = 0; ib < nb; ++ib) {
            uint8_t* o = dst + static_cast<size_t>(ib) * kGroupBlock;
            const BlockQ4_0* rows[kGroup];
            for (int r = 0; r < kGroup; ++r) rows[r] = reinterpret_cast<const BlockQ4_0*>(src + r * bx) + ib;
            for (int r = 0; r < kGroup; ++r) std::memcpy(o + 2 * r, &rows[r]->d, 2);
            for (int part = 0; part < 2; ++part) {
                uint8_t* p = o + 16 + 64 * part;
                for (int L = 0; L < 16; ++L) {
                    const int r = L % 8, h = L / 8;
                    for (int i = 0; i < 4; ++i) {
                        const uint8_t lo = nib(*rows[r], 16 * part + 4 * h + i);
                        const uint8_t hi = nib(*rows[r], 16 * part + 8 + 4 * h + i);
                        p[4 * L + i] = static_cast<uint8_t>(lo | (hi << 4));
                    }
                }
            }
        }
    }
}

void gemm_q4_0_r8(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
                  size_t ldc) {
    const int64_t nb = n / kQK;
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    BlockQ4_0 rows[kGroup][64];
    for (int64_t g = 0; g < nr / kGroup; ++g) {
        const uint8_t* grp = x + static_cast<size_t>(g) * kGroup * bx;
        // In chunks of 64 blocks: natural rows back, then the reference dot per block chunk.
        for (int c = 0; c < nc; ++c) {
            float sum[kGroup] = {};
            for (int64_t b0 = 0; b0 < nb; b0 += 64) {
                const int64_t bn = nb - b0 < 64 ? nb - b0 : 64;
                for (int64_t ib = 0; ib < bn; ++ib) {
                    BlockQ4_0 blk[kGroup];
                    unpack_group_block(grp + static_cast<size_t>(b0 + ib) * kGroupBlock, blk);
                    for (int r = 0; r < kGroup; ++r) rows[r][ib] = blk[r];
                }
                for (int r = 0; r < kGroup; ++r) {
                    float part = 0;
                    vec_dot_q4_0_q8_0(bn * kQK, &part, rows[r], y + c * by + static_cast<size_t>(b0) * sizeof(BlockQ8_0));
                    sum[r] += part;
                }
            }
            for (int r = 0; r < kGroup; ++r) s[c * ldc + g * kGroup + r] = sum[r];
        }
    }
}

} // namespace slm::kernels::ref
