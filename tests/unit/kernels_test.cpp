// kernels_test.cpp - the per-type kernels: scalar reference against hand-computed values and
// straightforward conversions, every SIMD table against the reference, and mul_mat.
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/ref/blocks.h"
#include "kernel_test_util.h"
#include "slm/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using slm::GGMLType;
using namespace slm::kernels;
using namespace slm::test;

const GGMLType kWeightTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16, GGMLType::Q4_0,
                                 GGMLType::Q4_1, GGMLType::Q5_0, GGMLType::Q5_1, GGMLType::Q8_0};
const GGMLType kAllTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16, GGMLType::Q4_0, GGMLType::Q4_1,
                              GGMLType::Q5_0, GGMLType::Q5_1, GGMLType::Q8_0, GGMLType::Q8_1};

// Sizes with odd block counts: 1, 2, 3 and 129 blocks, plus ragged ones for block size 1.
std::vector<int64_t> test_sizes(GGMLType t) {
    if (block_size(t) == 1) return {1, 3, 7, 32, 37, 96, 4096 + 32 + 5};
    return {32, 64, 96, 4096 + 32};
}


// Gaussian rows whose scale varies per 32-element block over many orders of magnitude, with
// an all-zero block and a constant block, so every scale computation is exercised.
std::vector<float> random_row(int64_t n, std::mt19937& rng, float max_log10_scale = 3.5f) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> log_scale(-6.0f, max_log10_scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t b = 0; b < n; b += 32) {
        const float scale = std::pow(10.0f, log_scale(rng));
        const int kind = static_cast<int>(rng() % 16);
        for (int64_t j = b; j < std::min(n, b + 32); ++j) {
            v[static_cast<size_t>(j)] = kind == 0 ? 0.0f : kind == 1 ? scale : scale * normal(rng);
        }
    }
    return v;
}

// Activations stay below ~1000: Q8_1's s = d * sum(q) overflows fp16 once a block's maximum
// reaches ~2000 (in ggml as well), which would make the min term of Q4_1/Q5_1 dots infinite.
std::vector<float> activation_row(int64_t n, std::mt19937& rng) { return random_row(n, rng, 2.0f); }

// Random bytes for a row of `t`, with every fp16 scale field a finite random half, so that
// dequantization results can be compared bit for bit.
std::vector<uint8_t> random_blocks(GGMLType t, int64_t n, std::mt19937& rng) {
    std::vector<uint8_t> bytes(slm::row_size(t, n));
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    auto finite_half = [&] {
        uint16_t h;
        do {
            h = static_cast<uint16_t>(rng());
        } while ((h & 0x7c00) == 0x7c00);
        return h;
    };
    const size_t bs = slm::type_info(t).type_size;
    int n_halves = 0;
    switch (t) {
        case GGMLType::Q4_0: case GGMLType::Q5_0: case GGMLType::Q8_0: n_halves = 1; break;
        case GGMLType::Q4_1: case GGMLType::Q5_1: case GGMLType::Q8_1: n_halves = 2; break;
        case GGMLType::F16: {
            for (size_t i = 0; i < bytes.size(); i += 2) {
                const uint16_t h = finite_half();
                std::memcpy(&bytes[i], &h, 2);
            }
            return bytes;
        }
        case GGMLType::BF16: {
            for (size_t i = 0; i < bytes.size(); i += 2) {
                uint16_t h;
                do {
                    h = static_cast<uint16_t>(rng());
                } while ((h & 0x7f80) == 0x7f80);
                std::memcpy(&bytes[i], &h, 2);
            }
            return bytes;
        }
        case GGMLType::F32: {
            std::vector<float> f = random_row(n, rng);
            std::memcpy(bytes.data(), f.data(), bytes.size());
            return bytes;
        }
        default: break;
    }
    for (size_t off = 0; off < bytes.size(); off += bs) {
        for (int k = 0; k < n_halves; ++k) {
            const uint16_t h = finite_half();
            std::memcpy(&bytes[off + 2 * static_cast<size_t>(k)], &h, 2);
        }
    }
    return bytes;
}

// ---- block layout --------------------------------------------------------------------------

TEST(Kernels, BlockSizesMatchTypeTable) {
    EXPECT_EQ(sizeof(BlockQ4_0), slm::type_info(GGMLType::Q4_0).type_size);
    EXPECT_EQ(sizeof(BlockQ4_1), slm::type_info(GGMLType::Q4_1).type_size);
    EXPECT_EQ(sizeof(BlockQ5_0), slm::type_info(GGMLType::Q5_0).type_size);
    EXPECT_EQ(sizeof(BlockQ5_1), slm::type_info(GGMLType::Q5_1).type_size);
    EXPECT_EQ(sizeof(BlockQ8_0), slm::type_info(GGMLType::Q8_0).type_size);
    EXPECT_EQ(sizeof(BlockQ8_1), slm::type_info(GGMLType::Q8_1).type_size);
    for (GGMLType t : kAllTypes) {
        ASSERT_NE(ref_traits(t), nullptr) << slm::type_name(t);
        ASSERT_NE(traits(t), nullptr) << slm::type_name(t);
        EXPECT_EQ(traits(t)->type, t);
    }
    EXPECT_EQ(traits(GGMLType::IQ2_XXS), nullptr);
    EXPECT_EQ(traits_for_isa("scalar", GGMLType::Q4_0), ref_traits(GGMLType::Q4_0));
    const std::string isa = isa_name();
    EXPECT_TRUE(isa == "scalar" || isa == "avx2" || isa == "avx512" || isa == "neon") << isa;
}

TEST(Kernels, VecDotTypes) {
    EXPECT_EQ(traits(GGMLType::Q4_0)->vec_dot_type, GGMLType::Q8_0);
    EXPECT_EQ(traits(GGMLType::Q5_0)->vec_dot_type, GGMLType::Q8_0);
    EXPECT_EQ(traits(GGMLType::Q8_0)->vec_dot_type, GGMLType::Q8_0);
    EXPECT_EQ(traits(GGMLType::Q4_1)->vec_dot_type, GGMLType::Q8_1);
    EXPECT_EQ(traits(GGMLType::Q5_1)->vec_dot_type, GGMLType::Q8_1);
    EXPECT_EQ(traits(GGMLType::F16)->vec_dot_type, GGMLType::F16);
    EXPECT_EQ(traits(GGMLType::BF16)->vec_dot_type, GGMLType::BF16);
    EXPECT_EQ(traits(GGMLType::F32)->vec_dot_type, GGMLType::F32);
}

// ---- fp16 / bf16 conversions ---------------------------------------------------------------

// binary16 by its definition: (-1)^s * 2^(e-15) * 1.m, or 2^-14 * 0.m for e = 0.
double half_value(uint16_t h) {
    const int e = (h >> 10) & 0x1f;
    const int m = h & 0x3ff;
    if (e == 31 && m == 0) return (h & 0x8000) ? -INFINITY : INFINITY;
    const double mag = e == 0 ? std::ldexp(m, -24) : std::ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -mag : mag;
}

// Nearest binary16 with ties to even, found in double arithmetic; NaN -> canonical 0x7e00.
uint16_t half_of(float f) {
    const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
    if (std::isnan(f)) return sign | 0x7e00;
    const double a = std::fabs(static_cast<double>(f));
    if (a >= 65520.0) return sign | 0x7c00;
    const double unit = a < 0x1p-14 ? 0x1p-24 : std::ldexp(1.0, std::ilogb(a) - 10);
    const double v = std::nearbyint(a / unit) * unit;  // exact: a/unit has at most 24 bits
    if (v == 0) return sign;
    if (v < 0x1p-14) return sign | static_cast<uint16_t>(v / 0x1p-24);
    const int e = std::ilogb(v);
    const int m = static_cast<int>(v / std::ldexp(1.0, e - 10)) - 1024;
    return sign | static_cast<uint16_t>(((e + 15) << 10) | m);
}

// Nearest bfloat16 with ties to even; NaN kept and made quiet (ggml_compute_fp32_to_bf16).
uint16_t bf16_of(float f) {
    const uint32_t u = bits_of(f);
    if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
    const uint16_t sign = (u >> 16) & 0x8000;
    const double a = std::fabs(static_cast<double>(f));
    if (a == 0) return sign;
    const double unit = a < 0x1p-126 ? 0x1p-133 : std::ldexp(1.0, std::ilogb(a) - 7);
    const double v = std::nearbyint(a / unit) * unit;
    if (v >= 0x1p128) return sign | 0x7f80;
    return sign | static_cast<uint16_t>(bits_of(static_cast<float>(v)) >> 16);
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) float hw_half_to_float(uint16_t h) { return _cvtsh_ss(h); }
__attribute__((target("f16c"))) uint16_t hw_float_to_half(float f) { return _cvtss_sh(f, 0); }
// The avx2 table is only offered when the CPU has F16C as well.
bool have_f16c() { return traits_for_isa("avx2", GGMLType::F16) != nullptr; }
#endif

TEST(Fp16, ExhaustiveHalfToFloat) {
    int mismatches = 0;
    for (uint32_t i = 0; i < 65536; ++i) {
        const auto h = static_cast<uint16_t>(i);
        const float f = fp16_to_fp32(h);
        const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
        if (is_nan) {
            // A quiet NaN with the payload kept: what ggml's table and F16C both give.
            const uint32_t expect = (static_cast<uint32_t>(h & 0x8000) << 16) | 0x7fc00000u |
                                    (static_cast<uint32_t>(h & 0x3ff) << 13);
            if (bits_of(f) != expect) ++mismatches;
        } else if (static_cast<double>(f) != half_value(h) || std::signbit(f) != ((h & 0x8000) != 0)) {
            ++mismatches;
        } else if (fp32_to_fp16(f) != h) {
            ++mismatches;  // every non-NaN half survives a round trip
        }
#if defined(__x86_64__)
        if (have_f16c() && bits_of(f) != bits_of(hw_half_to_float(h))) ++mismatches;
#endif
        if (mismatches > 0) FAIL() << "half 0x" << std::hex << i;
    }
}

TEST(Fp16, FloatToHalfMatchesDefinition) {
    std::mt19937 rng(42);
    std::vector<float> samples;
    // Random bit patterns cover NaNs, infinities and subnormals; the neighbours of every
    // rounding boundary (the midpoints between adjacent halves) test ties and near-ties.
    for (int i = 0; i < 2000000; ++i) samples.push_back(slm::fp16::bits_float(static_cast<uint32_t>(rng())));
    for (uint32_t h = 0; h < 0x7c00; ++h) {
        // 0x7bff's upper neighbour is infinity; the boundary there is 65520.
        const double next = h == 0x7bff ? 65536.0 : half_value(static_cast<uint16_t>(h + 1));
        const float mid = static_cast<float>((half_value(static_cast<uint16_t>(h)) + next) / 2);
        for (float f : {std::nextafter(mid, 0.0f), mid, std::nextafter(mid, 1e9f)}) {
            samples.push_back(f);
            samples.push_back(-f);
        }
    }
    for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 1e-8f, 2.9802322e-08f, 5.9604645e-08f,
                    std::numeric_limits<float>::infinity(), std::numeric_limits<float>::denorm_min()}) {
        samples.push_back(f);
    }
    for (float f : samples) {
        ASSERT_EQ(fp32_to_fp16(f), half_of(f)) << "float bits 0x" << std::hex << bits_of(f);
#if defined(__x86_64__)
        if (have_f16c()) {
            // F16C agrees everywhere but in a NaN's payload, which the f16c variant keeps.
            ASSERT_EQ(slm::fp16::float_to_half_f16c(f), hw_float_to_half(f)) << std::hex << bits_of(f);
        }
#endif
    }
}

TEST(Bf16, ExhaustiveAndRandom) {
    for (uint32_t i = 0; i < 65536; ++i) {
        ASSERT_EQ(bits_of(bf16_to_fp32(static_cast<uint16_t>(i))), i << 16);
        const float f = bf16_to_fp32(static_cast<uint16_t>(i));
        if (!std::isnan(f)) ASSERT_EQ(fp32_to_bf16(f), i);
    }
    std::mt19937 rng(7);
    for (int i = 0; i < 2000000; ++i) {
        const float f = slm::fp16::bits_float(static_cast<uint32_t>(rng()));
        ASSERT_EQ(fp32_to_bf16(f), bf16_of(f)) << std::hex << bits_of(f);
    }
    // Ties go to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7.
    EXPECT_EQ(fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    EXPECT_EQ(fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
    EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
}

// ---- hand-computed blocks ------------------------------------------------------------------

void expect_dequant(GGMLType t, const void* block, const std::vector<float>& expect) {
    for (const char* isa : {"scalar", "avx2"}) {
        const TypeTraits* tt = traits_for_isa(isa, t);
        if (tt == nullptr) continue;
        std::vector<float> got(expect.size());
        tt->to_float(block, got.data(), static_cast<int64_t>(expect.size()));
        for (size_t j = 0; j < expect.size(); ++j) {
            EXPECT_EQ(bits_of(got[j]), bits_of(expect[j])) << isa << " " << slm::type_name(t) << " element " << j
                                                            << ": " << got[j] << " vs " << expect[j];
        }
    }
}

TEST(Dequantize, KnownQ4_0) {
    BlockQ4_0 b{};
    b.d = 0x3800;  // 0.5
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    std::vector<float> expect(32);
    for (int j = 0; j < 16; ++j) {
        expect[j] = (j - 8) * 0.5f;             // low nibble j
        expect[j + 16] = ((15 - j) - 8) * 0.5f;  // high nibble 15-j
    }
    expect_dequant(GGMLType::Q4_0, &b, expect);
    EXPECT_EQ(expect[0], -4.0f);
    EXPECT_EQ(expect[16], 3.5f);
}

TEST(Dequantize, KnownQ4_1) {
    BlockQ4_1 b{};
    b.d = 0x3400;  // 0.25
    b.m = 0xbc00;  // -1.0
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | (3 << 4));
    std::vector<float> expect(32);
    for (int j = 0; j < 16; ++j) {
        expect[j] = j * 0.25f - 1.0f;
        expect[j + 16] = 3 * 0.25f - 1.0f;
    }
    expect_dequant(GGMLType::Q4_1, &b, expect);
    // d = 0.1 (fp16 0x2e66 = 0.0999755859375), m = 1/3 (0x3555): x*d rounds before + m.
    b.d = 0x2e66;
    b.m = 0x3555;
    const float d = 0.0999755859375f, m = 0.333251953125f;
    for (int j = 0; j < 16; ++j) {
        volatile float p0 = static_cast<float>(j) * d, p1 = 3.0f * d;
        expect[j] = p0 + m;
        expect[j + 16] = p1 + m;
    }
    expect_dequant(GGMLType::Q4_1, &b, expect);
}

TEST(Dequantize, KnownQ5_0AndQ5_1) {
    BlockQ5_0 b{};
    b.d = 0x4000;  // 2.0
    const uint32_t qh = 0xf0f0a5a5u;
    std::memcpy(b.qh, &qh, 4);
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    std::vector<float> expect(32);
    for (int j = 0; j < 16; ++j) {
        const int q0 = j | (((qh >> j) & 1) << 4);
        const int q1 = (15 - j) | (((qh >> (j + 16)) & 1) << 4);
        expect[j] = (q0 - 16) * 2.0f;
        expect[j + 16] = (q1 - 16) * 2.0f;
    }
    EXPECT_EQ(expect[0], (1 * 16 + 0 - 16) * 2.0f);  // bit 0 of 0xa5 is set
    EXPECT_EQ(expect[1], (0 + 1 - 16) * 2.0f);       // bit 1 is clear
    expect_dequant(GGMLType::Q5_0, &b, expect);

    BlockQ5_1 c{};
    c.d = 0x3800;  // 0.5
    c.m = 0x4200;  // 3.0
    std::memcpy(c.qh, &qh, 4);
    std::memcpy(c.qs, b.qs, 16);
    for (int j = 0; j < 16; ++j) {
        const int q0 = j | (((qh >> j) & 1) << 4);
        const int q1 = (15 - j) | (((qh >> (j + 16)) & 1) << 4);
        expect[j] = q0 * 0.5f + 3.0f;
        expect[j + 16] = q1 * 0.5f + 3.0f;
    }
    EXPECT_EQ(expect[31], 16 * 0.5f + 3.0f);  // high nibble 0 of qs[15], bit 31 set: q = 16
    expect_dequant(GGMLType::Q5_1, &c, expect);
}

TEST(Dequantize, KnownQ8AndFloats) {
    BlockQ8_0 b{};
    b.d = 0xc000;  // -2.0
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j * 8 - 128);
    std::vector<float> expect(32);
    for (int j = 0; j < 32; ++j) expect[j] = (j * 8 - 128) * -2.0f;
    expect_dequant(GGMLType::Q8_0, &b, expect);

    BlockQ8_1 c{};
    c.d = 0x0001;  // smallest subnormal half, 2^-24
    std::memcpy(c.qs, b.qs, 32);
    for (int j = 0; j < 32; ++j) expect[j] = static_cast<float>(j * 8 - 128) * 0x1p-24f;
    expect_dequant(GGMLType::Q8_1, &c, expect);

    const uint16_t halves[9] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x3555, 0x8000};
    expect_dequant(GGMLType::F16, halves,
                   {1.0f, -2.0f, 65504.0f, 0x1p-24f, 0x1p-14f, INFINITY, -INFINITY, 0.333251953125f, -0.0f});
    const uint16_t brains[9] = {0x3f80, 0x4049, 0xc2f7, 0x0001, 0x7f80, 0x0000, 0x8000, 0x3eaa, 0x4780};
    expect_dequant(GGMLType::BF16, brains,
                   {1.0f, 3.140625f, -123.5f, 0x1p-133f, INFINITY, 0.0f, -0.0f, 0.33203125f, 65536.0f});
}

TEST(Quantize, KnownQ8Rounding) {
    // amax = 127 makes the scale exactly 1: the activation quantizer (x86 AVX2) rounds ties to
    // even, the weight quantizer (quantize_row_q8_0_ref) rounds them away from zero.
    std::vector<float> x(32, 0.0f);
    const float vals[] = {127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f, -127.0f, 100.49f, -1.25f};
    std::copy(std::begin(vals), std::end(vals), x.begin());
    const int8_t act[] = {127, 2, 4, -2, 0, 0, 2, -127, 100, -1};
    const int8_t wgt[] = {127, 3, 4, -3, -1, 1, 2, -127, 100, -1};
    for (const char* isa : {"scalar", "avx2"}) {
        const TypeTraits* q80 = traits_for_isa(isa, GGMLType::Q8_0);
        const TypeTraits* q81 = traits_for_isa(isa, GGMLType::Q8_1);
        if (q80 == nullptr) continue;
        BlockQ8_0 a{}, w{};
        BlockQ8_1 a1{};
        q80->from_float(x.data(), &a, 32);
        q80->quantize_ref(x.data(), &w, 32);
        q81->from_float(x.data(), &a1, 32);
        EXPECT_EQ(a.d, 0x3c00) << isa;
        EXPECT_EQ(w.d, 0x3c00) << isa;
        int sum = 0;
        for (int j = 0; j < 10; ++j) {
            EXPECT_EQ(a.qs[j], act[j]) << isa << " element " << j;
            EXPECT_EQ(a1.qs[j], act[j]) << isa << " element " << j;
            EXPECT_EQ(w.qs[j], wgt[j]) << isa << " element " << j;
            sum += act[j];
        }
        EXPECT_EQ(a1.s, fp32_to_fp16(static_cast<float>(sum))) << isa;  // s = d * sum, d = 1
    }
}

TEST(Quantize, KnownQ4_0) {
    // max = -8 (largest magnitude, negative): d = max / -8 = 1, so q = x + 8, truncated after
    // adding 8.5 (halves round up) and clamped to 15.
    std::vector<float> x(32, 0.0f);
    const float vals[] = {-8.0f, 7.0f, 7.9f, 0.5f, -0.5f, 1.49f, -3.5f};
    std::copy(std::begin(vals), std::end(vals), x.begin());
    const int expect[] = {0, 15, 15, 9, 8, 9, 5};
    BlockQ4_0 b{};
    ref_traits(GGMLType::Q4_0)->quantize_ref(x.data(), &b, 32);
    EXPECT_EQ(b.d, 0x3c00);
    for (int j = 0; j < 7; ++j) EXPECT_EQ(b.qs[j] & 0x0f, expect[j]) << "element " << j;
    for (int j = 0; j < 16; ++j) EXPECT_EQ(b.qs[j] >> 4, 8) << "element " << j + 16;
}

// ---- SIMD against the reference ------------------------------------------------------------

TEST(Simd, ToFloatBitExact) {
    std::mt19937 rng(1);
    for (const std::string& isa : simd_isas()) {
        for (GGMLType t : kAllTypes) {
            for (int64_t n : test_sizes(t)) {
                for (int row = 0; row < 3; ++row) {
                    const std::vector<uint8_t> src = random_blocks(t, n, rng);
                    std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
                    ref_traits(t)->to_float(src.data(), a.data(), n);
                    traits_for_isa(isa.c_str(), t)->to_float(src.data(), b.data(), n);
                    for (int64_t i = 0; i < n; ++i) {
                        ASSERT_EQ(bits_of(a[i]), bits_of(b[i]))
                            << isa << " " << slm::type_name(t) << " n=" << n << " i=" << i;
                    }
                }
            }
        }
    }
}

std::vector<std::vector<float>> special_rows() {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::vector<float>> rows;
    std::vector<float> r(64, 0.0f);
    rows.push_back(r);  // all zero
    for (int j = 0; j < 64; ++j) r[j] = j % 32 == 0 ? 127.0f : (j % 2 ? -1.0f : 1.0f) * (static_cast<float>(j % 32) + 0.5f);
    rows.push_back(r);  // amax 127, so the scale is 1 and every other product is an exact tie
    for (int j = 0; j < 64; ++j) r[j] = std::ldexp(1.0f + static_cast<float>(j) / 64, -140);
    rows.push_back(r);  // subnormal inputs
    for (int j = 0; j < 64; ++j) r[j] = 3e38f * std::sin(static_cast<float>(j));
    rows.push_back(r);  // near FLT_MAX
    r.assign(64, 1.0f);
    r[3] = nan;
    r[40] = -inf;
    r[41] = inf;
    rows.push_back(r);  // NaN and infinities: garbage out, but the same garbage
    r.assign(64, 0.0f);
    r[5] = slm::fp16::bits_float(0x7fa00001u);  // signalling NaN with a payload
    r[6] = -1e-3f;
    r[63] = slm::fp16::bits_float(0xffc12345u);
    rows.push_back(r);
    return rows;
}

TEST(Simd, FromFloatByteIdentical) {
    std::mt19937 rng(2);
    for (const std::string& isa : simd_isas()) {
        for (GGMLType t : kAllTypes) {
            const TypeTraits* simd = traits_for_isa(isa.c_str(), t);
            const TypeTraits* ref = ref_traits(t);
            std::vector<std::vector<float>> rows;
            for (int64_t n : test_sizes(t)) {
                for (int k = 0; k < 3; ++k) rows.push_back(random_row(n, rng));
            }
            // Extreme inputs only for the activation converters: Q4_0 ... Q5_1 use ggml's
            // quantize_row_*_ref, for which NaN and overflow are undefined (float to int).
            if (ref->from_float != ref->quantize_ref || block_size(t) == 1) {
                for (const auto& s : special_rows()) rows.push_back(s);
                if (block_size(t) == 1) {
                    for (const auto& s : special_rows()) rows.emplace_back(s.begin(), s.begin() + 39);  // ragged tail
                }
            }
            for (const auto& x : rows) {
                const std::vector<uint8_t> a = convert(ref, x), b = convert(simd, x);
                ASSERT_EQ(a, b) << isa << " " << slm::type_name(t) << " n=" << x.size();
            }
        }
    }
}

// Relative tolerance of a dot product against the sum of |terms|: quantized dots are exact
// integers per block and round only in the per-block scaling and a short float sum; float dots
// accumulate every product in float over n/32 steps per lane.
double dot_rel_tol(GGMLType t) {
    return t == GGMLType::F32 || t == GGMLType::F16 || t == GGMLType::BF16 ? 1e-5 : 3e-6;
}

// Sum of |terms| of the dot product of two dequantized rows, the scale of its rounding error.
double abs_dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += std::fabs(static_cast<double>(a[i]) * b[i]);
    return s;
}

double exact_dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

// How far a dot over Q8_1 activations may legitimately be from the dequantized dot: its min
// term uses s = fp16(d * sum) with d before fp16 rounding, not fp16(d) * sum (they differ by
// far more than 2^-11 when d is an fp16 subnormal). ggml computes the same.
double q8_1_s_error(GGMLType wt, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a, int64_t n) {
    if (wt != GGMLType::Q4_1 && wt != GGMLType::Q5_1) return 0.0;
    const size_t wbs = slm::type_info(wt).type_size;
    const auto* ab = reinterpret_cast<const BlockQ8_1*>(a.data());
    double e = 0;
    for (int64_t ib = 0; ib < n / 32; ++ib) {
        uint16_t m;
        std::memcpy(&m, w.data() + static_cast<size_t>(ib) * wbs + 2, 2);
        int sum = 0;
        for (int8_t q : ab[ib].qs) sum += q;
        const double s = fp16_to_fp32(ab[ib].s);
        const double s_dequant = static_cast<double>(fp16_to_fp32(ab[ib].d)) * sum;
        e += std::fabs(fp16_to_fp32(m)) * (std::fabs(s - s_dequant) + std::fabs(s) * 1e-6);
    }
    return e;
}

TEST(Simd, VecDotMatchesReference) {
    std::mt19937 rng(3);
    for (const std::string& isa : simd_isas()) {
        for (GGMLType t : kWeightTypes) {
            const TypeTraits* simd = traits_for_isa(isa.c_str(), t);
            const TypeTraits* ref = ref_traits(t);
            const TypeTraits* act = ref_traits(ref->vec_dot_type);
            for (int64_t n : test_sizes(t)) {
                for (int row = 0; row < 3; ++row) {
                    std::vector<uint8_t> w(slm::row_size(t, n));
                    ref->quantize_ref(random_row(n, rng).data(), w.data(), n);
                    const std::vector<uint8_t> a = convert(act, activation_row(n, rng));
                    float r = 0, s = 0;
                    ref->vec_dot(n, &r, w.data(), a.data());
                    simd->vec_dot(n, &s, w.data(), a.data());
                    const double scale = abs_dot(dequantized(t, w.data(), n), dequantized(act->type, a.data(), n));
                    EXPECT_NEAR(r, s, dot_rel_tol(t) * scale + 1e-30)
                        << isa << " " << slm::type_name(t) << " n=" << n << " row " << row;
                }
            }
        }
    }
}

// ---- reference semantics -------------------------------------------------------------------

// Quantize-dequantize error bound of one block, from the type's step and its fp16 scales.
double block_error_bound(GGMLType t, const float* x, int64_t n) {
    double amax = 0, lo = x[0], hi = x[0];
    for (int64_t j = 0; j < n; ++j) {
        amax = std::max(amax, std::fabs(static_cast<double>(x[j])));
        lo = std::min(lo, static_cast<double>(x[j]));
        hi = std::max(hi, static_cast<double>(x[j]));
    }
    const double range = hi - lo, fp16_rel = 0x1p-11, fp16_min = 0x1p-24;
    switch (t) {
        case GGMLType::F32: return 0.0;
        case GGMLType::F16: return amax * fp16_rel + fp16_min;
        case GGMLType::BF16: return amax * 0x1p-8;
        // The value of largest magnitude maps to -8 exactly; its opposite may clamp from +8 to
        // +7, a full step, which is the worst case.
        case GGMLType::Q4_0: return amax / 8 * (1 + 16 * fp16_rel) + 16 * fp16_min;
        case GGMLType::Q5_0: return amax / 16 * (1 + 32 * fp16_rel) + 32 * fp16_min;
        case GGMLType::Q4_1: return range / 30 + (range + std::fabs(lo)) * 2 * fp16_rel + 16 * fp16_min;
        case GGMLType::Q5_1: return range / 62 + (range + std::fabs(lo)) * 2 * fp16_rel + 32 * fp16_min;
        case GGMLType::Q8_0: case GGMLType::Q8_1: return amax / 254 + amax * 2 * fp16_rel + 128 * fp16_min;
        default: return 0.0;
    }
}

TEST(Reference, RoundTripWithinBound) {
    std::mt19937 rng(4);
    for (GGMLType t : kAllTypes) {
        const TypeTraits* tt = ref_traits(t);
        for (int64_t n : test_sizes(t)) {
            const std::vector<float> x = random_row(n, rng);
            for (auto quantize : {tt->quantize_ref, tt->from_float}) {
                std::vector<uint8_t> q(slm::row_size(t, n));
                quantize(x.data(), q.data(), n);
                const std::vector<float> y = dequantized(t, q.data(), n);
                const int64_t bs = t == GGMLType::F32 || t == GGMLType::F16 || t == GGMLType::BF16 ? 1 : 32;
                for (int64_t b = 0; b < n; b += bs) {
                    const double bound = block_error_bound(t, x.data() + b, bs);
                    for (int64_t j = b; j < b + bs; ++j) {
                        ASSERT_LE(std::fabs(static_cast<double>(x[j]) - y[j]), bound)
                            << slm::type_name(t) << " n=" << n << " i=" << j << " x=" << x[j] << " y=" << y[j];
                    }
                }
            }
        }
    }
}

TEST(Reference, Q8_1SumField) {
    std::mt19937 rng(5);
    const std::vector<float> x = random_row(4096, rng);
    std::vector<BlockQ8_1> q(4096 / 32);
    for (const char* isa : {"scalar", "avx2"}) {
        const TypeTraits* tt = traits_for_isa(isa, GGMLType::Q8_1);
        if (tt == nullptr) continue;
        tt->from_float(x.data(), q.data(), 4096);
        for (size_t ib = 0; ib < q.size(); ++ib) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[ib * 32 + j]));
            const float d = amax / 127.f;  // before rounding to fp16
            int sum = 0;
            for (int8_t v : q[ib].qs) sum += v;
            EXPECT_EQ(q[ib].d, fp32_to_fp16(d)) << isa << " block " << ib;
            EXPECT_EQ(q[ib].s, fp32_to_fp16(d * static_cast<float>(sum))) << isa << " block " << ib;
        }
    }
}

TEST(Reference, VecDotMatchesDequantizedDot) {
    std::mt19937 rng(6);
    for (const char* isa : {"scalar", "avx2"}) {
        for (GGMLType t : kWeightTypes) {
            const TypeTraits* tt = traits_for_isa(isa, t);
            if (tt == nullptr) continue;
            const TypeTraits* act = traits_for_isa(isa, tt->vec_dot_type);
            for (int64_t n : test_sizes(t)) {
                std::vector<uint8_t> w(slm::row_size(t, n));
                tt->quantize_ref(random_row(n, rng).data(), w.data(), n);
                const std::vector<uint8_t> a = convert(act, activation_row(n, rng));
                const std::vector<float> wf = dequantized(t, w.data(), n), af = dequantized(act->type, a.data(), n);
                float got = 0;
                tt->vec_dot(n, &got, w.data(), a.data());
                const double tol = dot_rel_tol(t) * abs_dot(wf, af) + q8_1_s_error(t, w, a, n) + 1e-30;
                EXPECT_NEAR(got, exact_dot(wf, af), tol) << isa << " " << slm::type_name(t) << " n=" << n;
            }
        }
    }
}

// ---- mul_mat -------------------------------------------------------------------------------

struct MatCase {
    int64_t n_in, n_out, n_tokens;
};

TEST(MulMat, MatchesNaiveWithAndWithoutPool) {
    std::mt19937 rng(8);
    slm::ThreadPool pool(3);
    std::vector<uint8_t> scratch;
    const MatCase cases[] = {{32, 1, 1}, {96, 37, 3}, {4096 + 32, 70, 1}, {256, 33, 45}};
    for (GGMLType t : kWeightTypes) {
        const TypeTraits* tt = traits(t);
        const TypeTraits* act = traits(tt->vec_dot_type);
        for (const MatCase& c : cases) {
            std::vector<uint8_t> w(slm::row_size(t, c.n_in) * static_cast<size_t>(c.n_out));
            for (int64_t r = 0; r < c.n_out; ++r) {
                tt->quantize_ref(random_row(c.n_in, rng).data(), w.data() + slm::row_size(t, c.n_in) * r, c.n_in);
            }
            std::vector<float> x;
            for (int64_t i = 0; i < c.n_tokens; ++i) {
                const std::vector<float> row = activation_row(c.n_in, rng);
                x.insert(x.end(), row.begin(), row.end());
            }
            const size_t n_y = static_cast<size_t>(c.n_out * c.n_tokens);
            std::vector<float> y1(n_y, NAN), y2(n_y, NAN);
            mul_mat(w.data(), t, c.n_in, c.n_out, x.data(), c.n_tokens, y1.data(), nullptr, scratch);
            mul_mat(w.data(), t, c.n_in, c.n_out, x.data(), c.n_tokens, y2.data(), &pool, scratch);
            for (int64_t tok = 0; tok < c.n_tokens; ++tok) {
                const std::vector<float> xt(x.begin() + tok * c.n_in, x.begin() + (tok + 1) * c.n_in);
                const std::vector<uint8_t> a = convert(act, xt);
                const std::vector<float> af = dequantized(act->type, a.data(), c.n_in);
                for (int64_t r = 0; r < c.n_out; ++r) {
                    const uint8_t* wr = w.data() + slm::row_size(t, c.n_in) * r;
                    const std::vector<float> wf = dequantized(t, wr, c.n_in);
                    const size_t k = static_cast<size_t>(tok * c.n_out + r);
                    // Threads never change a result; tiles (gemm) may sum in another order than
                    // vec_dot, so they agree to rounding, as both do with the exact dot.
                    float direct = 0;
                    tt->vec_dot(c.n_in, &direct, wr, a.data());
                    ASSERT_EQ(bits_of(y2[k]), bits_of(y1[k])) << slm::type_name(t) << " r=" << r << " t=" << tok;
                    const std::vector<uint8_t> wrow(wr, wr + slm::row_size(t, c.n_in));
                    const double tol = dot_rel_tol(t) * abs_dot(wf, af) + q8_1_s_error(t, wrow, a, c.n_in) + 1e-30;
                    ASSERT_NEAR(y1[k], direct, tol) << slm::type_name(t) << " r=" << r << " t=" << tok;
                    ASSERT_NEAR(y1[k], exact_dot(wf, af), tol) << slm::type_name(t) << " r=" << r << " t=" << tok;
                }
            }
        }
    }
}

TEST(MulMat, ScratchIsReused) {
    std::mt19937 rng(9);
    const int64_t n = 256, n_out = 8;
    std::vector<uint8_t> w(slm::row_size(GGMLType::Q4_0, n) * n_out);
    for (int64_t r = 0; r < n_out; ++r) {
        quantize_row_ref(random_row(n, rng).data(), GGMLType::Q4_0, n, w.data() + slm::row_size(GGMLType::Q4_0, n) * r);
    }
    const std::vector<float> x = random_row(n, rng);
    std::vector<float> y(n_out);
    std::vector<uint8_t> scratch;
    mul_mat(w.data(), GGMLType::Q4_0, n, n_out, x.data(), 1, y.data(), nullptr, scratch);
    const uint8_t* data = scratch.data();
    const size_t cap = scratch.capacity();
    EXPECT_GE(scratch.size(), slm::row_size(GGMLType::Q8_0, n));
    for (int i = 0; i < 5; ++i) mul_mat(w.data(), GGMLType::Q4_0, n, n_out, x.data(), 1, y.data(), nullptr, scratch);
    EXPECT_EQ(scratch.data(), data);
    EXPECT_EQ(scratch.capacity(), cap);
}

TEST(MulMat, ErrorsNameTheType) {
    std::vector<uint8_t> w(4096);
    std::vector<float> x(256), y(16);
    std::vector<uint8_t> scratch;
    try {
        mul_mat(w.data(), GGMLType::Q4_0, 40, 2, x.data(), 1, y.data(), nullptr, scratch);
        FAIL() << "no error for n_in = 40";
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("Q4_0"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("40"), std::string::npos) << e.what();
    }
    try {
        mul_mat(w.data(), GGMLType::IQ2_XXS, 256, 2, x.data(), 1, y.data(), nullptr, scratch);
        FAIL() << "no error for IQ2_XXS";
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("IQ2_XXS"), std::string::npos) << e.what();
    }
    EXPECT_THROW(mul_mat(w.data(), GGMLType::Q8_1, 32, 2, x.data(), 1, y.data(), nullptr, scratch), slm::Error);
    EXPECT_THROW(dequantize_row(w.data(), GGMLType::Q8_0, 33, y.data()), slm::Error);
    EXPECT_THROW(dequantize_row(w.data(), GGMLType::IQ3_S, 256, y.data()), slm::Error);
    EXPECT_THROW(mul_mat(w.data(), GGMLType::Q8_K, 256, 2, x.data(), 1, y.data(), nullptr, scratch), slm::Error);
}

TEST(MulMat, DequantizeRowHelper) {
    BlockQ8_0 b{};
    b.d = 0x3c00;
    for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(j - 16);
    std::vector<float> y(32);
    dequantize_row(&b, GGMLType::Q8_0, 32, y.data());
    for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], static_cast<float>(j - 16));
}

} // namespace
