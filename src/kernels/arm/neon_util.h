// neon_util.h - small NEON helpers shared by neon*.cpp. Include only from translation units
// built with -march=armv8.2-a+dotprod (see CMakeLists.txt).
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

namespace slm::kernels::neon {

// fp16 -> fp32 with FCVT: exact, a NaN comes back quiet with its payload (FPCR.DN is 0 on Linux),
// as fp16::half_to_float.
inline float half(uint16_t h) {
    __fp16 f;
    std::memcpy(&f, &h, sizeof f);
    return static_cast<float>(f);
}

inline uint32_t load_u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

// Low / high nibbles of 16 bytes as bytes in [0, 15].
inline uint8x16_t low_nibbles(uint8x16_t q) { return vandq_u8(q, vdupq_n_u8(0x0f)); }
inline uint8x16_t high_nibbles(uint8x16_t q) { return vshrq_n_u8(q, 4); }

// 16 bits (element j <- bit j, little-endian) -> 16 bytes, 0xff where the bit is set.
inline uint8x16_t mask_from_bits16(uint32_t bits) {
    static const uint8_t kBit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t v = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(bits)), vdup_n_u8(static_cast<uint8_t>(bits >> 8)));
    return vtstq_u8(v, vld1q_u8(kBit));
}

// The dot product of 32 int8 pairs, as four int32 partial sums (SDOT).
inline int32x4_t dot32(int8x16_t x0, int8x16_t x1, const int8_t* y) {
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), x0, vld1q_s8(y)), x1, vld1q_s8(y + 16));
}

inline int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

} // namespace slm::kernels::neon
