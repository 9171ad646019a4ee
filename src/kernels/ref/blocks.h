// blocks.h - quantized block layouts, byte for byte as ggml-common.h declares them.
//
// Every field is a byte array or a uint16_t at an even offset, so the structs have no padding
// and alignment 2; rows in a GGUF file are only 32-byte aligned as a whole, so kernels must not
// assume more than that of a block.
#pragma once

#include <cstdint>

namespace slm::kernels {

constexpr int kQK = 32;  // elements per block of every type here (QK4_0 ... QK8_1)

struct BlockQ4_0 {
    uint16_t d;             // scale, fp16
    uint8_t qs[kQK / 2];    // element j in the low nibble of qs[j], element j+16 in the high one
};

struct BlockQ4_1 {
    uint16_t d;             // scale, fp16
    uint16_t m;             // minimum, fp16
    uint8_t qs[kQK / 2];
};

struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];          // bit j (little-endian uint32) is the 5th bit of element j
    uint8_t qs[kQK / 2];
};

struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK / 2];
};

struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK];
};

struct BlockQ8_1 {
    uint16_t d;             // scale, fp16
    uint16_t s;             // d * sum(qs), fp16, with d before rounding to fp16
    int8_t qs[kQK];
};

static_assert(sizeof(BlockQ4_0) == 18, "block_q4_0 is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "block_q4_1 is 20 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "block_q5_0 is 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "block_q5_1 is 24 bytes");
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0 is 34 bytes");
static_assert(sizeof(BlockQ8_1) == 36, "block_q8_1 is 36 bytes");

} // namespace slm::kernels
