// ref_sparse.cpp - scalar reference kernels of Q8_0_S24 (kernels/sparse.h): the portable
// fallback and the oracle of the SIMD versions.
#include "kernels/sparse.h"

#include "core/fp16.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"

#include <cmath>
#include <cstring>

namespace slm::kernels {

int64_t s24_first_invalid_block(const void* data, int64_t n_blocks) {
    const auto* b = static_cast<const BlockQ8_0S24*>(data);
    for (int64_t i = 0; i < n_blocks; ++i) {
        uint32_t m;
        std::memcpy(&m, b[i].mask, sizeof m);
        if (!s24_mask_valid(m)) return i;
    }
    return -1;
}

namespace ref {
namespace {

// The block's 32 int8 values with zeros where nothing is kept. The k-th set bit of the mask
// takes qs[k] (k < 16; a 17th set bit of an invalid mask reads 0, as vpexpandb of the 16 value
// bytes does). Only valid 2:4 masks have a specified result across ISAs (the AVX2 tables assume
// four kept values per mask byte); the loader refuses the others.
inline void expand(const BlockQ8_0S24& b, int8_t out[kQK]) {
    uint32_t m;
    std::memcpy(&m, b.mask, sizeof m);
    int k = 0;
    for (int j = 0; j < kQK; ++j) {
        if (m >> j & 1u) {
            out[j] = k < 16 ? b.qs[k] : 0;
            ++k;
        } else {
            out[j] = 0;
        }
    }
}

} // namespace

void dequantize_row_q8_0_s24(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_0S24*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i) {
        int8_t q[kQK];
        expand(x[i], q);
        const float d = fp16::half_to_float(x[i].d);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = q[j] * d;
    }
}

// Keeps the two largest |x| of each group of four (ties to the lower index, so a group that
// already has at most two non-zeros keeps them), then rounds exactly as quantize_row_q8_0_ref
// would round the zero-filled block: the scale is max |x| / 127 over the block, which the kept
// values contain, and each value is round(x / d).
void quantize_row_q8_0_s24_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_0S24*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float kept[kQK] = {};
        uint32_t m = 0;
        for (int g = 0; g < kQK / 4; ++g) {
            const float* v = x + 4 * g;
            int a = 0;  // index of the largest |v|, lowest index on ties
            for (int j = 1; j < 4; ++j)
                if (std::fabs(v[j]) > std::fabs(v[a])) a = j;
            int b = a == 0 ? 1 : 0;  // the second largest
            for (int j = 0; j < 4; ++j)
                if (j != a && std::fabs(v[j]) > std::fabs(v[b])) b = j;
            m |= (1u << (4 * g + a)) | (1u << (4 * g + b));
            kept[4 * g + a] = v[a];
            kept[4 * g + b] = v[b];
        }
        BlockQ8_0 dense;
        quantize_row_q8_0_ref(kept, &dense, kQK);
        y[i].d = dense.d;
        std::memcpy(y[i].mask, &m, sizeof m);
        int k = 0;
        for (int j = 0; j < kQK; ++j)
            if (m >> j & 1u) y[i].qs[k++] = dense.qs[j];
    }
}

// Exactly ref::vec_dot_q8_0_q8_0 of the zero-filled weights: the same integer sums and float
// operations in the same order, so the two are bit-identical.
void vec_dot_q8_0_s24_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ8_0S24*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int8_t q[kQK];
        expand(x[ib], q);
        int sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += q[j] * y[ib].qs[j];
        sumf += static_cast<float>(sumi) * (fp16::half_to_float(x[ib].d) * fp16::half_to_float(y[ib].d));
    }
    *s = sumf;
}

// Block ib of a group of 16 rows (352 bytes): the 16 scales (32 bytes), the 16 masks (64 bytes),
// then each row's 16 kept values XOR 0x80 (unsigned, for vpdpbusd), row by row (256 bytes).
void repack_q8_0_s24_r16(const void* vx, void* vy, int64_t n, int64_t n_rows, size_t bx) {
    const auto* x = static_cast<const uint8_t*>(vx);
    auto* y = static_cast<uint8_t*>(vy);
    const int64_t nb = n / kQK;
    for (int64_t g = 0; g < n_rows / 16; ++g) {
        const uint8_t* src = x + static_cast<size_t>(g) * 16 * bx;
        uint8_t* dst = y + static_cast<size_t>(g) * 16 * bx;
        for (int64_t ib = 0; ib < nb; ++ib, dst += 16 * sizeof(BlockQ8_0S24)) {
            for (int r = 0; r < 16; ++r) {
                const auto& b = reinterpret_cast<const BlockQ8_0S24*>(src + r * bx)[ib];
                std::memcpy(dst + 2 * r, &b.d, 2);
                std::memcpy(dst + 32 + 4 * r, b.mask, 4);
                for (int k = 0; k < 16; ++k) dst[96 + 16 * r + k] = static_cast<uint8_t>(b.qs[k]) ^ 0x80u;
            }
        }
    }
}

void unpack_row_q8_0_s24_r16(const void* vx, size_t bx, int64_t row, int64_t n, void* out) {
    const auto* g = static_cast<const uint8_t*>(vx) + static_cast<size_t>(row / 16) * 16 * bx;
    const int r = static_cast<int>(row % 16);
    auto* o = static_cast<BlockQ8_0S24*>(out);
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const uint8_t* b = g + ib * 16 * sizeof(BlockQ8_0S24);
        std::memcpy(&o[ib].d, b + 2 * r, 2);
        std::memcpy(o[ib].mask, b + 32 + 4 * r, 4);
        for (int k = 0; k < 16; ++k) o[ib].qs[k] = static_cast<int8_t>(b[96 + 16 * r + k] ^ 0x80u);
    }
}

TypeTraits traits_q8_0_s24() {
    return {GGMLType::Q8_0_S24, dequantize_row_q8_0_s24, quantize_row_q8_0_s24_ref, vec_dot_q8_0_s24_q8_0,
            GGMLType::Q8_0, quantize_row_q8_0_s24_ref, nullptr};
}

} // namespace ref
} // namespace slm::kernels
