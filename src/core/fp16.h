// fp16.h - inline F16 / BF16 conversions for hot loops, bit-exact with ggml.
//
// The out-of-line versions in kernels.h (slm::kernels::fp16_to_fp32, ...) call these. Written
// with integer operations only, so the result does not depend on the compiler's floating-point
// flags (-ffp-contract, excess precision) or on F16C being available.
#pragma once

#include <cstdint>
#include <cstring>

namespace slm::fp16 {

inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

inline float bits_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// Exact widening, as ggml_compute_fp16_to_fp32 and F16C's vcvtph2ps: subnormal halves become
// normal floats, and a signalling NaN comes back quiet with its payload kept.
inline float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) {
        return bits_float(sign | 0x7f800000u | (mant << 13) | (mant ? 0x00400000u : 0u));
    }
    if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return bits_float(sign);
    int e = -14;  // normalise the subnormal: value = mant * 2^-24
    while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --e;
    }
    return bits_float(sign | (static_cast<uint32_t>(e + 127) << 23) | ((mant & 0x3ffu) << 13));
}

// Round-to-nearest-even narrowing of a non-NaN magnitude; the caller handles NaN and the sign.
inline uint16_t narrow_magnitude(uint32_t ax) {
    if (ax >= 0x477ff000u) return 0x7c00;  // >= 65520 rounds to infinity
    if (ax >= 0x38800000u) {               // normal half (>= 2^-14)
        ax += 0xfffu + ((ax >> 13) & 1u);
        return static_cast<uint16_t>((ax - 0x38000000u) >> 13);
    }
    if (ax <= 0x33000000u) return 0;  // <= 2^-25: the tie at 2^-25 goes to even, i.e. zero
    // Subnormal half: q = round(value / 2^-24); a carry into 0x400 is the smallest normal.
    const uint32_t mant = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - (ax >> 23);
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(q);
}

// ggml_compute_fp32_to_fp16 (GGML_FP32_TO_FP16): round to nearest even; every NaN becomes the
// canonical quiet NaN 0x7e00 with the input's sign.
inline uint16_t float_to_half(float f) {
    const uint32_t x = float_bits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00;
    return sign | narrow_magnitude(ax);
}

// F16C's vcvtps2ph (imm 0): as float_to_half except that a NaN keeps the top 9 bits of its
// payload and is made quiet. ggml_cpu_fp32_to_fp16 uses it for the bulk of a row on x86.
inline uint16_t float_to_half_f16c(float f) {
    const uint32_t x = float_bits(f);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00 | static_cast<uint16_t>((ax >> 13) & 0x1ffu);
    return sign | narrow_magnitude(ax);
}

inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

// ggml_compute_fp32_to_bf16: round to nearest even, subnormals kept, NaN forced quiet.
inline uint16_t float_to_bf16(float f) {
    const uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 64u);
    return static_cast<uint16_t>((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

} // namespace slm::fp16
