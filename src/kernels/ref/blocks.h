// blocks.h - quantized block layouts, byte for byte as ggml-common.h declares them.
//
// Every field is a byte array or a uint16_t at an even offset, so the structs have no padding
// and alignment 2 (BlockQ8_K, which starts with a float, has alignment 4 and only ever lives in
// our own activation buffers); rows in a GGUF file are only 32-byte aligned as a whole, so
// kernels must not assume more than that of a block.
#pragma once

#include <cstdint>

namespace slm::kernels {

constexpr int kQK = 32;  // elements per block of the 32-element types (QK4_0 ... QK8_1, QK4_NL)

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

// ---- super-blocks of 256 (K-quants, IQ4_XS, ternary) and IQ4_NL --------------------------------

constexpr int kQK_K = 256;     // elements per super-block (QK_K)
constexpr int kKScaleSize = 12;  // K_SCALE_SIZE: eight 6-bit scales and eight 6-bit mins

// w = d*(scales[j] & 15)*q - dmin*(scales[j] >> 4), q in [0, 3], 16 sub-blocks of 16.
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];  // low nibble scale, high nibble min, per sub-block
    uint8_t qs[kQK_K / 4];       // 2-bit quants, four per byte (see dequantize_row_q2_K)
    uint16_t d;                  // fp16 scale of the scales
    uint16_t dmin;               // fp16 scale of the mins
};

// w = d*(scale_j - 32)*(q - 4), q in [0, 7] split as 2 low bits + 1 high bit.
struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];    // the high bits: bit b of hmask[l] belongs to element 32*b + l
    uint8_t qs[kQK_K / 4];       // the low 2 bits, laid out as Q2_K's
    uint8_t scales[12];          // sixteen 6-bit scales (low 4 bits in 0..7, high 2 bits in 8..11)
    uint16_t d;
};

// w = d*sc_j*q - dmin*m_j, q in [0, 15], 8 sub-blocks of 32 with 6-bit sc_j, m_j.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleSize];  // packed as get_scale_min_k4 reads them
    uint8_t qs[kQK_K / 2];        // per 64 elements: 32 low nibbles, then 32 high nibbles
};

struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[kKScaleSize];
    uint8_t qh[kQK_K / 8];        // 5th bits: bit 2i / 2i+1 of qh[l] for chunk i's low / high half
    uint8_t qs[kQK_K / 2];
};

// w = d*scales[j]*(q - 32), q in [0, 63] split as 4 low bits + 2 high bits, 16 sub-blocks of 16.
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};

// The activation type of the K-quants: float scale, int8 quants and their sums per 16.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};

// w = d*kvalues_iq4nl[q]: a 4-bit index into a fixed non-linear table.
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kQK / 2];
};

// IQ4_NL in super-blocks: 8 sub-blocks of 32 with 6-bit scales (ls - 32).
struct BlockIQ4_XS {
    uint16_t d;
    uint16_t scales_h;            // high 2 bits of each sub-block scale
    uint8_t scales_l[kQK_K / 64];  // low 4 bits, two per byte
    uint8_t qs[kQK_K / 2];
};

// Ternary {-1, 0, 1}*d: five trits per byte in qs (base 3, scaled to fill the byte), four in qh.
struct BlockTQ1_0 {
    uint8_t qs[(kQK_K - 4 * kQK_K / 64) / 5];
    uint8_t qh[kQK_K / 64];
    uint16_t d;
};

// Ternary with two bits per element (q - 1).
struct BlockTQ2_0 {
    uint8_t qs[kQK_K / 4];
    uint16_t d;
};

static_assert(sizeof(BlockQ2_K) == 84, "block_q2_K is 84 bytes");
static_assert(sizeof(BlockQ3_K) == 110, "block_q3_K is 110 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K is 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K is 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K is 210 bytes");
static_assert(sizeof(BlockQ8_K) == 292, "block_q8_K is 292 bytes");
static_assert(sizeof(BlockIQ4_NL) == 18, "block_iq4_nl is 18 bytes");
static_assert(sizeof(BlockIQ4_XS) == 136, "block_iq4_xs is 136 bytes");
static_assert(sizeof(BlockTQ1_0) == 54, "block_tq1_0 is 54 bytes");
static_assert(sizeof(BlockTQ2_0) == 66, "block_tq2_0 is 66 bytes");

// The IQ4_NL / IQ4_XS code book (kvalues_iq4nl), sorted ascending.
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

} // namespace slm::kernels
