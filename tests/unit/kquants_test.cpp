// kquants_test.cpp - the super-block types (Q2_K ... Q6_K, Q8_K, IQ4_XS, TQ1_0, TQ2_0) and IQ4_NL:
// hand-made blocks with known values, every SIMD table against the reference, dot products
// against dequantize-then-dot, quantization error, results recorded from a ggml build (which
// the quantizers and both dot-product tables reproduce bit for bit), and llama-quantize's own
// output, which the reference quantizers must reproduce byte for byte.
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/ref/blocks.h"
#include "kernel_test_util.h"
#include "slm/gguf.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace {

using slm::GGMLType;
using namespace slm::kernels;
using namespace slm::test;

// Weight types added here, and the types the tables must now hold.
const GGMLType kNewWeightTypes[] = {GGMLType::Q2_K,   GGMLType::Q3_K,   GGMLType::Q4_K,  GGMLType::Q5_K, GGMLType::Q6_K,
                                    GGMLType::IQ4_NL, GGMLType::IQ4_XS, GGMLType::TQ1_0, GGMLType::TQ2_0};

std::vector<std::string> all_isas() {
    std::vector<std::string> out = {"scalar"};
    for (const std::string& isa : simd_isas()) out.push_back(isa);
    return out;
}

// Row lengths with 1, 2, 3 and 17 blocks (and 129 for the 32-element IQ4_NL).
std::vector<int64_t> test_sizes(GGMLType t) {
    const int64_t b = block_size(t);
    if (b == 32) return {32, 64, 96, 4096 + 32};
    return {b, 2 * b, 3 * b, 17 * b};
}


// Gaussian rows whose scale changes every 32 elements over many orders of magnitude, with
// all-zero and constant stretches, so every scale search meets its edge cases.
std::vector<float> random_row(int64_t n, std::mt19937& rng, float max_log10_scale = 3.0f) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> log_scale(-5.0f, max_log10_scale);
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

std::vector<float> gaussian_row(int64_t n, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
}

// Offsets of the fp16 fields of a block (d first, then dmin when the type has one).
std::vector<size_t> half_fields(GGMLType t) {
    switch (t) {
        case GGMLType::Q2_K: return {80, 82};
        case GGMLType::Q3_K: return {108};
        case GGMLType::Q4_K: case GGMLType::Q5_K: return {0, 2};
        case GGMLType::Q6_K: return {208};
        case GGMLType::IQ4_NL: case GGMLType::IQ4_XS: return {0};
        case GGMLType::TQ1_0: return {52};
        case GGMLType::TQ2_0: return {64};
        default: return {};
    }
}

// Random bytes for a row of `t` with every fp16 field a finite half of moderate size.
std::vector<uint8_t> random_blocks(GGMLType t, int64_t n, std::mt19937& rng) {
    std::vector<uint8_t> bytes(slm::row_size(t, n));
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    const size_t bs = slm::type_info(t).type_size;
    std::uniform_real_distribution<float> mag(-8.0f, 2.0f);
    for (size_t off = 0; off < bytes.size(); off += bs) {
        for (size_t f : half_fields(t)) {
            const float v = std::pow(2.0f, mag(rng)) * (rng() % 2 ? 1.0f : -1.0f);
            const uint16_t h = fp32_to_fp16(v);
            std::memcpy(&bytes[off + f], &h, 2);
        }
    }
    return bytes;
}

// ---- tables ---------------------------------------------------------------------------------

TEST(KQuants, BlockSizesAndTables) {
    EXPECT_EQ(sizeof(BlockQ2_K), slm::type_info(GGMLType::Q2_K).type_size);
    EXPECT_EQ(sizeof(BlockQ3_K), slm::type_info(GGMLType::Q3_K).type_size);
    EXPECT_EQ(sizeof(BlockQ4_K), slm::type_info(GGMLType::Q4_K).type_size);
    EXPECT_EQ(sizeof(BlockQ5_K), slm::type_info(GGMLType::Q5_K).type_size);
    EXPECT_EQ(sizeof(BlockQ6_K), slm::type_info(GGMLType::Q6_K).type_size);
    EXPECT_EQ(sizeof(BlockQ8_K), slm::type_info(GGMLType::Q8_K).type_size);
    EXPECT_EQ(sizeof(BlockIQ4_NL), slm::type_info(GGMLType::IQ4_NL).type_size);
    EXPECT_EQ(sizeof(BlockIQ4_XS), slm::type_info(GGMLType::IQ4_XS).type_size);
    EXPECT_EQ(sizeof(BlockTQ1_0), slm::type_info(GGMLType::TQ1_0).type_size);
    EXPECT_EQ(sizeof(BlockTQ2_0), slm::type_info(GGMLType::TQ2_0).type_size);
    for (const std::string& isa : all_isas()) {
        for (GGMLType t : kNewWeightTypes) {
            const TypeTraits* tt = traits_for_isa(isa.c_str(), t);
            ASSERT_NE(tt, nullptr) << isa << " " << slm::type_name(t);
            EXPECT_EQ(tt->type, t);
            EXPECT_NE(tt->to_float, nullptr);
            EXPECT_NE(tt->from_float, nullptr);
            EXPECT_NE(tt->vec_dot, nullptr);
            EXPECT_NE(tt->quantize_ref, nullptr);
            EXPECT_EQ(tt->vec_dot_type, t == GGMLType::IQ4_NL ? GGMLType::Q8_0 : GGMLType::Q8_K) << slm::type_name(t);
        }
        const TypeTraits* q8k = traits_for_isa(isa.c_str(), GGMLType::Q8_K);
        ASSERT_NE(q8k, nullptr);
        EXPECT_EQ(q8k->vec_dot, nullptr);  // an activation type only, as in ggml
        EXPECT_NE(q8k->from_float, nullptr);
    }
}

// ---- hand-made blocks -----------------------------------------------------------------------

void expect_dequant(GGMLType t, const void* block, const std::vector<float>& expect) {
    for (const std::string& isa : all_isas()) {
        const TypeTraits* tt = traits_for_isa(isa.c_str(), t);
        std::vector<float> got(expect.size());
        tt->to_float(block, got.data(), static_cast<int64_t>(expect.size()));
        for (size_t j = 0; j < expect.size(); ++j) {
            ASSERT_EQ(bits_of(got[j]), bits_of(expect[j]))
                << isa << " " << slm::type_name(t) << " element " << j << ": " << got[j] << " vs " << expect[j];
        }
    }
}

// Q2_K/Q3_K 2-bit layout: element e of a 128-chunk c sits in byte 32c + e%32, bits 2*((e%128)/32).
void put_2bit(uint8_t* qs, int e, int v) {
    const int c = e / 128, r = e % 128;
    qs[32 * c + r % 32] |= static_cast<uint8_t>(v << (2 * (r / 32)));
}

TEST(KQuantsKnown, Q2_K) {
    BlockQ2_K b{};
    b.d = 0x3800;     // 0.5
    b.dmin = 0x3400;  // 0.25
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<uint8_t>((j % 16) | ((15 - j) << 4));
    std::vector<float> expect(256);
    for (int e = 0; e < 256; ++e) {
        const int q = (e * 7 + e / 16) % 4;
        put_2bit(b.qs, e, q);
        const int sc = (e / 16) % 16, m = 15 - e / 16;
        expect[e] = 0.5f * sc * q - 0.25f * m;  // small exact products
    }
    expect_dequant(GGMLType::Q2_K, &b, expect);
    EXPECT_EQ(expect[0], -3.75f);  // scale 0, min 15
}

TEST(KQuantsKnown, Q3_K) {
    BlockQ3_K b{};
    b.d = 0x3400;  // 0.25
    int raw[16];
    for (int j = 0; j < 16; ++j) {
        raw[j] = (j * 13 + 5) % 64;  // 6-bit scale, value raw - 32
        if (j < 8) {
            b.scales[j] |= static_cast<uint8_t>(raw[j] & 15);
        } else {
            b.scales[j - 8] |= static_cast<uint8_t>((raw[j] & 15) << 4);
        }
        b.scales[8 + j % 4] |= static_cast<uint8_t>((raw[j] >> 4) << (2 * (j / 4)));
    }
    std::vector<float> expect(256);
    for (int e = 0; e < 256; ++e) {
        const int v = (e * 5 + 3) % 8;  // q in [0, 7], value q - 4
        put_2bit(b.qs, e, v & 3);
        if (v & 4) b.hmask[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
        expect[e] = 0.25f * static_cast<float>(raw[e / 16] - 32) * static_cast<float>(v - 4);
    }
    expect_dequant(GGMLType::Q3_K, &b, expect);
}

// Q4_K/Q5_K scales: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scale) and 4..7 (min);
// sub-blocks 4..7 in the nibbles of bytes 8..11 with their top 2 bits in the top bits of
// bytes 0..3 / 4..7.
void pack_k4_scales(const int sc[8], const int m[8], uint8_t out[12]) {
    std::memset(out, 0, 12);
    for (int j = 0; j < 4; ++j) {
        out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
        out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

TEST(KQuantsKnown, Q4_KAndQ5_K) {
    const int sc[8] = {1, 63, 17, 32, 48, 5, 60, 33}, m[8] = {0, 7, 63, 21, 44, 16, 1, 62};
    BlockQ4_K b{};
    b.d = 0x3000;     // 0.125
    b.dmin = 0x2c00;  // 0.0625
    pack_k4_scales(sc, m, b.scales);
    BlockQ5_K c{};
    c.d = b.d;
    c.dmin = b.dmin;
    std::memcpy(c.scales, b.scales, 12);
    std::vector<float> e4(256), e5(256);
    for (int e = 0; e < 256; ++e) {
        const int q = (e * 11 + 7) % 16, hi = (e * 3 / 7) % 2;
        // Element e of 64-chunk c: low nibble of byte 32c + e%32 for the first 32, high after.
        const int byte = 32 * (e / 64) + e % 32, shift = (e % 64) < 32 ? 0 : 4;
        b.qs[byte] |= static_cast<uint8_t>(q << shift);
        c.qs[byte] |= static_cast<uint8_t>(q << shift);
        if (hi) c.qh[e % 32] |= static_cast<uint8_t>(1u << (e / 32));
        const int s = sc[e / 32], mm = m[e / 32];
        e4[e] = 0.125f * s * q - 0.0625f * mm;
        e5[e] = 0.125f * s * (q + 16 * hi) - 0.0625f * mm;
    }
    expect_dequant(GGMLType::Q4_K, &b, e4);
    expect_dequant(GGMLType::Q5_K, &c, e5);
    EXPECT_EQ(e4[32], 0.125f * 63 * ((32 * 11 + 7) % 16) - 0.0625f * 7);
}

TEST(KQuantsKnown, Q6_K) {
    BlockQ6_K b{};
    b.d = 0x2e66;  // 0.0999755859375: d * scale * q rounds, so the order of the products matters
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j * 17 - 128);
    std::vector<float> expect(256);
    const float d = 0.0999755859375f;
    for (int e = 0; e < 256; ++e) {
        const int q = (e * 29 + 11) % 64;  // value q - 32
        const int c = e / 128, r = e % 128, k = r / 32, l = r % 32;
        // Low 4 bits: quarters 0/1 in the low nibbles of ql[64c + l] / ql[64c + 32 + l],
        // quarters 2/3 in their high nibbles; high 2 bits in bits 2k of qh[32c + l].
        b.ql[64 * c + 32 * (k % 2) + l] |= static_cast<uint8_t>((q & 15) << (4 * (k / 2)));
        b.qh[32 * c + l] |= static_cast<uint8_t>((q >> 4) << (2 * k));
        volatile float ds = d * static_cast<float>(b.scales[e / 16]);
        expect[e] = ds * static_cast<float>(q - 32);
    }
    expect_dequant(GGMLType::Q6_K, &b, expect);
}

TEST(KQuantsKnown, Q8_K) {
    BlockQ8_K b{};
    b.d = 0.375f;
    std::vector<float> expect(256);
    for (int e = 0; e < 256; ++e) {
        b.qs[e] = static_cast<int8_t>(e - 128);
        expect[e] = 0.375f * static_cast<float>(e - 128);
    }
    expect_dequant(GGMLType::Q8_K, &b, expect);
}

TEST(KQuantsKnown, IQ4_NLAndIQ4_XS) {
    // kvalues_iq4nl, as published with IQ4_NL.
    const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    BlockIQ4_NL b{};
    b.d = 0x3800;  // 0.5
    for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    std::vector<float> expect(32);
    for (int j = 0; j < 16; ++j) {
        expect[j] = 0.5f * kv[j];
        expect[j + 16] = 0.5f * kv[15 - j];
    }
    expect_dequant(GGMLType::IQ4_NL, &b, expect);

    BlockIQ4_XS c{};
    c.d = 0x3400;  // 0.25
    int ls[8];
    for (int ib = 0; ib < 8; ++ib) {
        ls[ib] = (ib * 23 + 9) % 64;  // 6-bit, value ls - 32
        c.scales_l[ib / 2] |= static_cast<uint8_t>((ls[ib] & 15) << (4 * (ib % 2)));
        c.scales_h |= static_cast<uint16_t>((ls[ib] >> 4) << (2 * ib));
    }
    std::vector<float> e2(256);
    for (int e = 0; e < 256; ++e) {
        const int idx = (e * 7 + e / 32) % 16;
        const int ib = e / 32, r = e % 32;
        c.qs[16 * ib + r % 16] |= static_cast<uint8_t>(idx << (r < 16 ? 0 : 4));
        volatile float dl = 0.25f * static_cast<float>(ls[ib] - 32);
        e2[e] = dl * static_cast<float>(kv[idx]);
    }
    expect_dequant(GGMLType::IQ4_XS, &c, e2);
}

// TQ1_0 by its definition: five trits t (0..2 for -1..1) per byte, first trit most significant,
// stored as ceil(sum t_k 3^(4-k) * 256 / 243); qs[m] (m < 32) holds elements m + 32k,
// qs[32 + m] elements 160 + m + 16k, qh[j] elements 240 + j + 4k (k < 4, fifth trit 0).
TEST(KQuantsKnown, TQ1_0AndTQ2_0) {
    std::vector<int> t(256);
    for (int e = 0; e < 256; ++e) t[e] = (e * 7 + e / 5) % 3;  // trit 0, 1, 2
    auto encode = [](const int* trits, int count) {
        int v = 0;
        for (int k = 0; k < 5; ++k) v = v * 3 + (k < count ? trits[k] : 0);
        return static_cast<uint8_t>((v * 256 + 242) / 243);
    };
    BlockTQ1_0 b{};
    b.d = 0xb800;  // -0.5
    for (int m = 0; m < 32; ++m) {
        const int tr[5] = {t[m], t[m + 32], t[m + 64], t[m + 96], t[m + 128]};
        b.qs[m] = encode(tr, 5);
    }
    for (int m = 0; m < 16; ++m) {
        const int tr[5] = {t[160 + m], t[176 + m], t[192 + m], t[208 + m], t[224 + m]};
        b.qs[32 + m] = encode(tr, 5);
    }
    for (int j = 0; j < 4; ++j) {
        const int tr[4] = {t[240 + j], t[244 + j], t[248 + j], t[252 + j]};
        b.qh[j] = encode(tr, 4);
    }
    std::vector<float> expect(256);
    for (int e = 0; e < 256; ++e) expect[e] = -0.5f * static_cast<float>(t[e] - 1);
    expect_dequant(GGMLType::TQ1_0, &b, expect);

    // TQ2_0: element 128h + 32l + m in bits 2l of qs[32h + m].
    BlockTQ2_0 c{};
    c.d = 0x4000;  // 2.0
    for (int e = 0; e < 256; ++e) c.qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>(t[e] << (2 * ((e % 128) / 32)));
    for (int e = 0; e < 256; ++e) expect[e] = 2.0f * static_cast<float>(t[e] - 1);
    expect_dequant(GGMLType::TQ2_0, &c, expect);
}

// ---- Q8_K activations ---------------------------------------------------------------------------

std::vector<std::vector<float>> special_rows() {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<std::vector<float>> rows;
    std::vector<float> r(512, 0.0f);
    rows.push_back(r);  // all zero
    for (int j = 0; j < 512; ++j) r[j] = j % 256 == 7 ? -127.0f : (j % 2 ? -1.0f : 1.0f) * (static_cast<float>(j % 64) + 0.5f);
    rows.push_back(r);  // max -127: scale 1, and every other element an exact tie
    for (int j = 0; j < 512; ++j) r[j] = (j == 3 || j == 300) ? 5.0f : (j == 9 || j == 260) ? -5.0f : 0.25f * (j % 9);
    rows.push_back(r);  // +max before -max (block 0) and after (block 1): the first one sets the sign
    for (int j = 0; j < 512; ++j) r[j] = std::ldexp(1.0f + static_cast<float>(j) / 512, -140);
    rows.push_back(r);  // subnormal inputs
    const float iscale = -127.f / 0.9f;
    for (int j = 0; j < 512; ++j) r[j] = j % 256 == 0 ? 0.9f : (static_cast<float>(j % 250) - 124.5f) / iscale;
    rows.push_back(r);  // iscale * x within an ulp of k + 0.5: the product must round before the add
    for (int j = 0; j < 512; ++j) r[j] = 3e38f * std::sin(static_cast<float>(j));
    rows.push_back(r);  // near FLT_MAX
    r.assign(512, 1.0f);
    r[3] = nan;
    r[40] = -inf;
    r[300] = inf;
    r[301] = -inf;
    rows.push_back(r);  // NaN and infinities: garbage out, but the same garbage
    r.assign(512, 0.0f);
    r[5] = slm::fp16::bits_float(0x7fa00001u);  // signalling NaN with a payload
    r[6] = -1e-3f;
    r[511] = slm::fp16::bits_float(0xffc12345u);
    rows.push_back(r);
    return rows;
}

TEST(KQuantsQ8_K, FromFloatByteIdenticalAcrossIsas) {
    std::mt19937 rng(11);
    std::vector<std::vector<float>> rows = special_rows();
    for (int64_t n : {256, 512, 768, 256 * 17}) {
        for (int k = 0; k < 4; ++k) rows.push_back(random_row(n, rng));
    }
    const TypeTraits* ref = ref_traits(GGMLType::Q8_K);
    for (const std::string& isa : simd_isas()) {
        const TypeTraits* simd = traits_for_isa(isa.c_str(), GGMLType::Q8_K);
        for (const auto& x : rows) {
            const std::vector<uint8_t> a = convert(ref, x), b = convert(simd, x);
            ASSERT_EQ(a, b) << isa << " n=" << x.size();
        }
    }
}

// quantize_row_q8_K_ref by its definition: d = max/-127 from the first element of largest
// magnitude (with its sign), q = x * (-127/max) rounded half to even, bsums per 16.
TEST(KQuantsQ8_K, MatchesDefinition) {
    std::mt19937 rng(12);
    for (const std::string& isa : all_isas()) {
        const TypeTraits* tt = traits_for_isa(isa.c_str(), GGMLType::Q8_K);
        for (const auto& x : {special_rows()[1], special_rows()[2], random_row(1024, rng), gaussian_row(1024, rng)}) {
            const std::vector<uint8_t> bytes = convert(tt, x);
            const auto* q = reinterpret_cast<const BlockQ8_K*>(bytes.data());
            for (size_t ib = 0; ib < x.size() / 256; ++ib) {
                const float* xb = x.data() + ib * 256;
                float max = 0;
                for (int j = 0; j < 256; ++j) {
                    if (std::fabs(xb[j]) > std::fabs(max)) max = xb[j];
                }
                if (max == 0) {
                    EXPECT_EQ(q[ib].d, 0.0f);
                    continue;
                }
                const float iscale = -127.f / max;
                EXPECT_EQ(bits_of(q[ib].d), bits_of(1 / iscale)) << isa << " block " << ib;
                for (int g = 0; g < 16; ++g) {
                    int sum = 0;
                    for (int j = 16 * g; j < 16 * g + 16; ++j) {
                        const float v = iscale * xb[j];
                        ASSERT_EQ(q[ib].qs[j], static_cast<int>(std::nearbyint(v))) << isa << " x=" << xb[j] << " v=" << v;
                        sum += q[ib].qs[j];
                    }
                    EXPECT_EQ(q[ib].bsums[g], sum) << isa << " block " << ib << " group " << g;
                }
            }
        }
    }
    // A positive maximum 127 gives iscale -1: every sign flips and d = -1; ties go to even,
    // so 0.5 -> -0.5 -> 0, 1.5 -> -1.5 -> -2, -2.5 -> 2.5 -> 2.
    std::vector<float> x(256, 0.0f);
    x[0] = 127.0f;
    x[1] = 0.5f;
    x[2] = 1.5f;
    x[3] = -2.5f;
    for (const std::string& isa : all_isas()) {
        const std::vector<uint8_t> bytes = convert(traits_for_isa(isa.c_str(), GGMLType::Q8_K), x);
        const auto* q = reinterpret_cast<const BlockQ8_K*>(bytes.data());
        EXPECT_EQ(q->qs[0], -127) << isa;
        EXPECT_EQ(q->qs[1], 0) << isa;
        EXPECT_EQ(q->qs[2], -2) << isa;
        EXPECT_EQ(q->qs[3], 2) << isa;
        EXPECT_EQ(q->d, -1.0f) << isa;
        EXPECT_EQ(q->bsums[0], -127);
    }
}

// ---- dot products ---------------------------------------------------------------------------

// Sum of |terms| of a dot product over the dequantized rows, counted the way the kernels
// compute it, so the bound follows the magnitudes they actually round: the K-quants' scale and
// min parts separately (the kernels add the two, which may cancel), and for the ternary types
// sum(t*y) - sum(y) with t in {0, 1, 2} (SIMD lanes hold such partial sums, not the dot's terms).
double dot_scale(GGMLType t, const std::vector<uint8_t>& w, const std::vector<float>& af, int64_t n) {
    const std::vector<size_t> fields = half_fields(t);
    const bool has_min = t == GGMLType::Q2_K || t == GGMLType::Q4_K || t == GGMLType::Q5_K;
    auto abs_dot = [&](const std::vector<float>& wf) {
        double s = 0;
        for (size_t i = 0; i < wf.size(); ++i) s += std::fabs(static_cast<double>(wf[i]) * af[i]);
        return s;
    };
    if (t == GGMLType::TQ1_0 || t == GGMLType::TQ2_0) {
        const std::vector<float> wf = dequantized(t, w.data(), n);
        const size_t bs = slm::type_info(t).type_size;
        double s = 0;
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, &w[static_cast<size_t>(i / 256) * bs + fields[0]], 2);
            s += (std::fabs(static_cast<double>(wf[i])) + 2 * std::fabs(fp16_to_fp32(h))) * std::fabs(af[i]);
        }
        return s;
    }
    if (!has_min) return abs_dot(dequantized(t, w.data(), n));
    double s = 0;
    for (int part = 0; part < 2; ++part) {
        std::vector<uint8_t> c = w;
        const size_t bs = slm::type_info(t).type_size;
        for (size_t off = 0; off < c.size(); off += bs) std::memset(&c[off + fields[part == 0 ? 1 : 0]], 0, 2);
        s += abs_dot(dequantized(t, c.data(), n));
    }
    return s;
}

double exact_dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

// The kernels sum exact integers per block and round only when scaling them and in a short
// float sum, so they stay within a few float roundings of the exact dot.
constexpr double kDotRelTol = 2e-6;

// Weights both from quantize_ref (realistic) and raw random bytes (every bit pattern).
std::vector<std::vector<uint8_t>> weight_rows(GGMLType t, int64_t n, std::mt19937& rng) {
    std::vector<std::vector<uint8_t>> rows;
    for (int k = 0; k < 2; ++k) {
        std::vector<uint8_t> w(slm::row_size(t, n));
        ref_traits(t)->quantize_ref(random_row(n, rng).data(), w.data(), n);
        rows.push_back(w);
    }
    rows.push_back(random_blocks(t, n, rng));
    return rows;
}

TEST(KQuantsDot, MatchesDequantizedDot) {
    std::mt19937 rng(13);
    for (const std::string& isa : all_isas()) {
        for (GGMLType t : kNewWeightTypes) {
            const TypeTraits* tt = traits_for_isa(isa.c_str(), t);
            const TypeTraits* act = traits_for_isa(isa.c_str(), tt->vec_dot_type);
            for (int64_t n : test_sizes(t)) {
                for (const auto& w : weight_rows(t, n, rng)) {
                    const std::vector<uint8_t> a = convert(act, random_row(n, rng, 2.0f));
                    const std::vector<float> wf = dequantized(t, w.data(), n), af = dequantized(act->type, a.data(), n);
                    float got = 0;
                    tt->vec_dot(n, &got, w.data(), a.data());
                    const double tol = kDotRelTol * dot_scale(t, w, af, n) + 1e-30;
                    ASSERT_NEAR(got, exact_dot(wf, af), tol) << isa << " " << slm::type_name(t) << " n=" << n;
                }
            }
        }
    }
}

TEST(KQuantsDot, SimdMatchesReference) {
    std::mt19937 rng(14);
    for (const std::string& isa : simd_isas()) {
        for (GGMLType t : kNewWeightTypes) {
            const TypeTraits* simd = traits_for_isa(isa.c_str(), t);
            const TypeTraits* ref = ref_traits(t);
            const TypeTraits* act = ref_traits(ref->vec_dot_type);
            int n_same = 0, n_total = 0;
            for (int64_t n : test_sizes(t)) {
                for (int rep = 0; rep < 3; ++rep) {
                    for (const auto& w : weight_rows(t, n, rng)) {
                        const std::vector<uint8_t> a = convert(act, random_row(n, rng, 2.0f));
                        float r = 0, s = 0;
                        ref->vec_dot(n, &r, w.data(), a.data());
                        simd->vec_dot(n, &s, w.data(), a.data());
                        const double tol = 2 * kDotRelTol * dot_scale(t, w, dequantized(act->type, a.data(), n), n) + 1e-30;
                        ASSERT_NEAR(r, s, tol) << isa << " " << slm::type_name(t) << " n=" << n;
                        n_same += bits_of(r) == bits_of(s);
                        ++n_total;
                    }
                }
            }
            // Single-block rows have few float operations, so many results agree exactly; a
            // kernel with the wrong lane sums would rarely be this close.
            EXPECT_GT(n_same, 0) << isa << " " << slm::type_name(t) << ": " << n_same << "/" << n_total;
        }
    }
}

// A dot with a single non-zero activation picks out one weight, which proves the activation
// and weight layouts agree element by element (a sum over all elements could hide a swap).
TEST(KQuantsDot, SingleElementPicksTheWeight) {
    std::mt19937 rng(15);
    for (const std::string& isa : all_isas()) {
        for (GGMLType t : kNewWeightTypes) {
            const TypeTraits* tt = traits_for_isa(isa.c_str(), t);
            const TypeTraits* act = traits_for_isa(isa.c_str(), tt->vec_dot_type);
            const int64_t n = 2 * 256;
            std::vector<uint8_t> w(slm::row_size(t, n));
            tt->quantize_ref(gaussian_row(n, rng).data(), w.data(), n);
            const std::vector<float> wf = dequantized(t, w.data(), n);
            for (int64_t e = 0; e < n; e += 7) {
                std::vector<float> x(static_cast<size_t>(n), 0.0f);
                x[static_cast<size_t>(e)] = 1.0f;  // quantizes to exactly 1 (d = 1/127, q = 127)
                const std::vector<uint8_t> a = convert(act, x);
                const double av = dequantized(act->type, a.data(), n)[static_cast<size_t>(e)];
                float got = 0;
                tt->vec_dot(n, &got, w.data(), a.data());
                // The bound counts the K-quants' scale and min parts separately (see dot_scale).
                const double tol = 1e-6 * dot_scale(t, w, dequantized(act->type, a.data(), n), n) + 1e-30;
                ASSERT_NEAR(got, wf[static_cast<size_t>(e)] * av, tol) << isa << " " << slm::type_name(t) << " element " << e;
            }
        }
    }
}

// ---- quantization -----------------------------------------------------------------------------

struct ErrorWindow {
    GGMLType type;
    double lo, hi;  // relative RMSE of quantize-dequantize on N(0, 1) data
};

// Measured with ggml's reference quantizers, which ours reproduce byte for byte: roughly
// step/sqrt(12) of each format (e.g. Q6_K: 16-element blocks, step max/32 ~ 0.056 -> 0.016).
TEST(KQuantsQuantize, RoundTripErrorOnGaussianData) {
    const ErrorWindow windows[] = {
        {GGMLType::Q2_K, 0.27, 0.32},  {GGMLType::Q3_K, 0.14, 0.16},   {GGMLType::Q4_K, 0.066, 0.076},
        {GGMLType::Q5_K, 0.033, 0.039}, {GGMLType::Q6_K, 0.016, 0.019}, {GGMLType::Q8_K, 0.0065, 0.0078},
        {GGMLType::IQ4_NL, 0.074, 0.084}, {GGMLType::IQ4_XS, 0.072, 0.082}, {GGMLType::TQ1_0, 0.78, 0.84},
        {GGMLType::TQ2_0, 0.78, 0.84},
    };
    std::mt19937 rng(16);
    const int64_t n = 256 * 64;
    const std::vector<float> x = gaussian_row(n, rng);
    for (const ErrorWindow& w : windows) {
        const TypeTraits* tt = ref_traits(w.type);
        std::vector<uint8_t> q(slm::row_size(w.type, n));
        tt->quantize_ref(x.data(), q.data(), n);
        const std::vector<float> y = dequantized(w.type, q.data(), n);
        double e = 0, s = 0;
        for (int64_t i = 0; i < n; ++i) {
            e += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
            s += static_cast<double>(x[i]) * x[i];
        }
        const double rel = std::sqrt(e / s);
        EXPECT_GE(rel, w.lo) << slm::type_name(w.type);
        EXPECT_LE(rel, w.hi) << slm::type_name(w.type);
    }
}

// Every value stays within a few quantization steps of the format, on rows whose scale varies
// over eight orders of magnitude from one 32-element stretch to the next. A step is taken as
// max|x| of the (super-)block over the format's levels; the K-quant and IQ4 searches trade
// the error of single values for a better weighted fit, so their worst case is more than half
// a step. The factors are ~1.5x the worst seen over 600 rows of ggml's algorithm (which the
// reference reproduces bit for bit, see KQuantsRealData); a layout or scale bug breaks them
// by far more.
TEST(KQuantsQuantize, RoundTripWithinStepBound) {
    struct Bound {
        GGMLType type;
        double levels, steps;
    };
    const Bound bounds[] = {
        {GGMLType::Q2_K, 3, 1.6},    {GGMLType::Q3_K, 4, 1.4},   {GGMLType::Q4_K, 15, 2.0},  {GGMLType::Q5_K, 31, 2.2},
        {GGMLType::Q6_K, 32, 0.75},  {GGMLType::Q8_K, 127, 0.51}, {GGMLType::IQ4_NL, 8, 3.5}, {GGMLType::IQ4_XS, 8, 1.3},
        {GGMLType::TQ1_0, 1, 0.51},  {GGMLType::TQ2_0, 1, 0.51},
    };
    std::mt19937 rng(17);
    for (const Bound& bd : bounds) {
        const TypeTraits* tt = ref_traits(bd.type);
        const int64_t bs = block_size(bd.type);
        for (int64_t n : test_sizes(bd.type)) {
            for (int rep = 0; rep < 4; ++rep) {
                const std::vector<float> x = rep % 2 ? gaussian_row(n, rng) : random_row(n, rng);
                std::vector<uint8_t> q(slm::row_size(bd.type, n));
                tt->quantize_ref(x.data(), q.data(), n);
                const std::vector<float> y = dequantized(bd.type, q.data(), n);
                for (int64_t b = 0; b < n; b += bs) {
                    double amax = 0;
                    for (int64_t j = b; j < b + bs; ++j) amax = std::max(amax, std::fabs(static_cast<double>(x[j])));
                    const double bound = bd.steps * amax / bd.levels;
                    for (int64_t j = b; j < b + bs; ++j) {
                        ASSERT_LE(std::fabs(static_cast<double>(x[j]) - y[j]), bound)
                            << slm::type_name(bd.type) << " n=" << n << " i=" << j << " x=" << x[j] << " y=" << y[j];
                    }
                }
            }
        }
    }
}

// Quantizing dequantized values again: exact for the ternary types (the values are -d, 0, d
// with d the maximum), and for all but a few blocks of the others that ggml's quantizers
// happen to reproduce (the K-quant scale searches can land on an equivalent encoding).
TEST(KQuantsQuantize, RequantizingIsStable) {
    std::mt19937 rng(18);
    const int64_t n = 256 * 64;
    const std::vector<float> x = gaussian_row(n, rng);
    const std::pair<GGMLType, double> min_same[] = {
        {GGMLType::TQ1_0, 1.0}, {GGMLType::TQ2_0, 1.0}, {GGMLType::IQ4_NL, 0.95}, {GGMLType::Q4_K, 0.95},
        {GGMLType::Q6_K, 0.95},
    };
    for (const auto& [t, share] : min_same) {
        const TypeTraits* tt = ref_traits(t);
        std::vector<uint8_t> q1(slm::row_size(t, n)), q2(q1.size());
        tt->quantize_ref(x.data(), q1.data(), n);
        const std::vector<float> y1 = dequantized(t, q1.data(), n);
        tt->quantize_ref(y1.data(), q2.data(), n);
        const std::vector<float> y2 = dequantized(t, q2.data(), n);
        int64_t same = 0;
        for (int64_t i = 0; i < n; ++i) same += bits_of(y1[i]) == bits_of(y2[i]);
        EXPECT_GE(static_cast<double>(same), share * static_cast<double>(n)) << slm::type_name(t);
    }
}

// ---- mul_mat ------------------------------------------------------------------------------------

TEST(KQuantsMulMat, MatchesVecDotWithAndWithoutPool) {
    std::mt19937 rng(19);
    slm::ThreadPool pool(3);
    std::vector<uint8_t> scratch;
    struct Case { int64_t n_in, n_out, n_tokens; };
    const Case cases[] = {{256, 1, 1}, {768, 37, 3}, {256 * 17, 20, 1}, {512, 33, 45}};
    for (GGMLType t : kNewWeightTypes) {
        const TypeTraits* tt = traits(t);
        const TypeTraits* act = traits(tt->vec_dot_type);
        for (const Case& c : cases) {
            const size_t rs = slm::row_size(t, c.n_in);
            std::vector<uint8_t> w(rs * static_cast<size_t>(c.n_out));
            for (int64_t r = 0; r < c.n_out; ++r) tt->quantize_ref(random_row(c.n_in, rng).data(), w.data() + rs * r, c.n_in);
            std::vector<float> x;
            for (int64_t i = 0; i < c.n_tokens; ++i) {
                const std::vector<float> row = random_row(c.n_in, rng, 2.0f);
                x.insert(x.end(), row.begin(), row.end());
            }
            const size_t n_y = static_cast<size_t>(c.n_out * c.n_tokens);
            std::vector<float> y1(n_y, NAN), y2(n_y, NAN);
            mul_mat(w.data(), t, c.n_in, c.n_out, x.data(), c.n_tokens, y1.data(), nullptr, scratch);
            mul_mat(w.data(), t, c.n_in, c.n_out, x.data(), c.n_tokens, y2.data(), &pool, scratch);
            for (int64_t tok = 0; tok < c.n_tokens; ++tok) {
                const std::vector<float> xt(x.begin() + tok * c.n_in, x.begin() + (tok + 1) * c.n_in);
                const std::vector<uint8_t> a = convert(act, xt);
                for (int64_t r = 0; r < c.n_out; ++r) {
                    float direct = 0;
                    tt->vec_dot(c.n_in, &direct, w.data() + rs * r, a.data());
                    const size_t k = static_cast<size_t>(tok * c.n_out + r);
                    ASSERT_EQ(bits_of(y1[k]), bits_of(direct)) << slm::type_name(t) << " r=" << r << " t=" << tok;
                    ASSERT_EQ(bits_of(y2[k]), bits_of(direct)) << slm::type_name(t) << " r=" << r << " t=" << tok;
                }
            }
        }
    }
}

// ---- a ggml build as the oracle ----------------------------------------------------------------

// A deterministic row that is exact in any IEEE float implementation: 32-element stretches of
// random 31-bit fractions times a power of two, some constant and (unless excluded) some zero.
std::vector<float> oracle_row(uint64_t seed, int64_t n, bool allow_zero) {
    uint64_t state = seed;
    auto next = [&state] {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        return static_cast<uint32_t>(state >> 32);
    };
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t b = 0; b < n; b += 32) {
        const int e = static_cast<int>(next() % 20) - 10;
        const int kind = static_cast<int>(next() % 8);
        const float scale = std::ldexp(1.0f, e);
        for (int64_t j = b; j < b + 32; ++j) {
            const float u = static_cast<float>(static_cast<int32_t>(next())) * 0x1p-31f;
            v[static_cast<size_t>(j)] = kind == 0 && allow_zero ? 0.0f : kind == 1 ? scale * 0.75f : u * scale;
        }
    }
    return v;
}

uint64_t fnv1a(const std::vector<uint8_t>& bytes) {
    uint64_t h = 1469598103934665603ULL;
    for (uint8_t b : bytes) {
        h ^= b;
        h *= 1099511628211ULL;
    }
    return h;
}

// What ggml itself computes for oracle_row inputs, recorded from a release build of ggml
// (commit 0ad4a86, as shipped prebuilt in node-llama-cpp 3.22.1): the FNV-1a hash of
// quantize_row_*_ref's bytes for 1024 weights, and the bits of the dot product of those weights
// with activation row `seed` converted to the vec_dot_type, from ggml_vec_dot_*_generic in the
// baseline x86-64 build (no FMA, as our reference is built) and from the AVX2 kernel of the
// Haswell build (AVX2 + FMA + F16C, as our avx2 table). IQ4_NL rows have no all-zero block: for
// those ggml leaves the quants uninitialized.
struct OracleCase {
    GGMLType type;
    uint64_t seed;
    uint64_t quant_hash;
    uint32_t dot_generic, dot_avx2;
};

const OracleCase kOracle[] = {
    {GGMLType::Q2_K, 1, 0x69a72c94923810c5ull, 0x46905282u, 0x46905283u},
    {GGMLType::Q2_K, 2, 0x1b86c1796528ac74ull, 0x4794a54cu, 0x4794a550u},
    {GGMLType::Q2_K, 3, 0x9b6ca5c2f1faf649ull, 0xc739c9d6u, 0xc739c9d6u},
    {GGMLType::Q3_K, 1, 0x54aa47015ef6205dull, 0x464ea349u, 0x464ea34cu},
    {GGMLType::Q3_K, 2, 0xc4a269174685768aull, 0xc745ca50u, 0xc745ca50u},
    {GGMLType::Q3_K, 3, 0xb4bcc199e175b60bull, 0x48146899u, 0x48146899u},
    {GGMLType::Q4_K, 1, 0x27b94ddf8ee6743eull, 0x46915cfau, 0x46915cfcu},
    {GGMLType::Q4_K, 2, 0xbaf0c6d452aa66f3ull, 0x4880696au, 0x4880696au},
    {GGMLType::Q4_K, 3, 0xa687dea2c5f31dc5ull, 0xc4f33b48u, 0xc4f33b50u},
    {GGMLType::Q5_K, 1, 0x6efa7b6bca066416ull, 0xc5191e20u, 0xc5191e1au},
    {GGMLType::Q5_K, 2, 0x393357f3dd3c8bcaull, 0x47d933e8u, 0x47d933e5u},
    {GGMLType::Q5_K, 3, 0xaa7d02b49a3a8c3cull, 0xc90e1d6au, 0xc90e1d69u},
    {GGMLType::Q6_K, 1, 0x405971f3f3b370c9ull, 0xc52486d5u, 0xc52486d2u},
    {GGMLType::Q6_K, 2, 0x831f8b067682c7b0ull, 0x47cb59a6u, 0x47cb59b0u},
    {GGMLType::Q6_K, 3, 0x507c700f852d357full, 0xc8b72b32u, 0xc8b72b2fu},
    {GGMLType::IQ4_NL, 1, 0x592c7426cbcd9276ull, 0x4584087au, 0x45840870u},
    {GGMLType::IQ4_NL, 2, 0x90ec2663045a08f9ull, 0xc4f0c210u, 0xc4f0c213u},
    {GGMLType::IQ4_NL, 3, 0xd5cd0fff913026e9ull, 0xc6f0ee65u, 0xc6f0ee66u},
    {GGMLType::IQ4_XS, 1, 0x2890e19744f6d50dull, 0x46b0d53fu, 0x46b0d53eu},
    {GGMLType::IQ4_XS, 2, 0x248969428fc39b94ull, 0xc82c2bc3u, 0xc82c2bc2u},
    {GGMLType::IQ4_XS, 3, 0x93b57c1cb5147bbcull, 0xc62ad70au, 0xc62ad70au},
    {GGMLType::TQ1_0, 1, 0x967b4cba902cb16bull, 0x46c8b256u, 0x46c8b25cu},
    {GGMLType::TQ1_0, 2, 0x5c3ef4573a81e303ull, 0x47599f4fu, 0x47599fc0u},
    {GGMLType::TQ1_0, 3, 0x7c31333520a3e169ull, 0x00000000u, 0x3d000000u},  // exact 0; AVX2's lanes do not cancel
    {GGMLType::TQ2_0, 1, 0x2edc87ee2fa27c4full, 0x46a15c34u, 0x46a15c38u},
    {GGMLType::TQ2_0, 2, 0xcc995787fdea8dd6ull, 0x48000ed8u, 0x48000ee0u},
    {GGMLType::TQ2_0, 3, 0xe3dc75cf294da3eaull, 0x45302dd2u, 0x45302d80u},
};

// ggml's quantize_row_q8_K of activation rows 1..3.
const uint64_t kOracleQ8_K[] = {0x55b17e3e72e07c30ull, 0x171da95d9876a0d2ull, 0xf7f85a4954590e37ull};

TEST(KQuantsGgml, ReproducesGgmlBitForBit) {
    const int64_t n = 1024;
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        const std::vector<float> a = oracle_row(1000 + seed, n, true);
        for (const std::string& isa : all_isas()) {
            EXPECT_EQ(fnv1a(convert(traits_for_isa(isa.c_str(), GGMLType::Q8_K), a)), kOracleQ8_K[seed - 1])
                << isa << " Q8_K activation row " << seed;
        }
    }
    for (const OracleCase& c : kOracle) {
        SCOPED_TRACE(std::string(slm::type_name(c.type)) + " row " + std::to_string(c.seed));
        const TypeTraits* ref = ref_traits(c.type);
        const std::vector<float> x = oracle_row(c.seed * 7919 + static_cast<uint64_t>(c.type), n, c.type != GGMLType::IQ4_NL);
        std::vector<uint8_t> w(slm::row_size(c.type, n));
        ref->quantize_ref(x.data(), w.data(), n);
        EXPECT_EQ(fnv1a(w), c.quant_hash);
        const std::vector<uint8_t> a = convert(ref_traits(ref->vec_dot_type), oracle_row(1000 + c.seed, n, true));
        float s = 0;
        ref->vec_dot(n, &s, w.data(), a.data());
        EXPECT_EQ(bits_of(s), c.dot_generic) << "scalar " << s;
        if (const TypeTraits* avx2 = traits_for_isa("avx2", c.type)) {
            avx2->vec_dot(n, &s, w.data(), a.data());
            EXPECT_EQ(bits_of(s), c.dot_avx2) << "avx2 " << s;
        }
    }
}

// ---- llama-quantize output ----------------------------------------------------------------------

// The reference GGUFs were made by llama-quantize --pure from the F32 files, without an
// importance matrix, which runs exactly quantize_row_*_ref. So every block must come out the
// same, and the dequantized values must be the F32 weights within the quantization error.
void check_quantized_file(const std::string& f32_rel, const std::string& q_rel, int* n_k_tensors) {
    const slm::GGUFFile f32 = slm::GGUFFile::open(slm::test::shared_path(f32_rel));
    const slm::GGUFFile q = slm::GGUFFile::open(slm::test::shared_path(q_rel));
    for (const slm::GGUFTensorInfo& t : q.tensors()) {
        if (t.type == GGMLType::F32) continue;
        SCOPED_TRACE(q_rel + ": " + t.name + " " + slm::type_name(t.type));
        const slm::GGUFTensorInfo& src = f32.tensor(t.name);
        ASSERT_EQ(src.type, GGMLType::F32);
        ASSERT_EQ(src.nelements(), t.nelements());
        const TypeTraits* tt = ref_traits(t.type);
        ASSERT_NE(tt, nullptr);
        const int64_t n = t.ne[0];
        const size_t rs = slm::row_size(t.type, n);
        const auto* x = reinterpret_cast<const float*>(src.data);
        std::vector<uint8_t> mine(rs);
        std::vector<float> y(static_cast<size_t>(n));
        double err = 0, ss = 0;
        for (int64_t r = 0; r < t.nrows(); ++r) {
            tt->quantize_ref(x + r * n, mine.data(), n);
            ASSERT_EQ(std::memcmp(mine.data(), t.data + r * rs, rs), 0) << "row " << r;
            tt->to_float(t.data + r * rs, y.data(), n);
            for (int64_t i = 0; i < n; ++i) {
                const double d = static_cast<double>(x[r * n + i]) - y[static_cast<size_t>(i)];
                err += d * d;
                ss += static_cast<double>(x[r * n + i]) * x[r * n + i];
            }
        }
        // Gaussian-like weights: Q4_K ~0.07, Q6_K ~0.018 (see RoundTripErrorOnGaussianData).
        const double bound = t.type == GGMLType::Q6_K ? 0.025 : t.type == GGMLType::Q8_0 ? 0.01 : 0.1;
        EXPECT_LE(std::sqrt(err / ss), bound);
        if (t.type == GGMLType::Q4_K || t.type == GGMLType::Q6_K) ++*n_k_tensors;
    }
}

TEST(KQuantsRealData, LlamaQuantizeOutputReproduced) {
    SLM_REQUIRE_SHARED();
    int n_k = 0;
    check_quantized_file("reference/archs/llama/llama.f32.gguf", "reference/archs/llama/llama.q4_k.gguf", &n_k);
    check_quantized_file("reference/archs/llama/llama.f32.gguf", "reference/archs/llama/llama.q6_k.gguf", &n_k);
    // The other architectures' Q4_K files also hold llama-quantize's Q5_0 / Q8_0 fallbacks.
    for (const char* arch : {"qwen2", "qwen3", "phi3", "gemma2", "gemma3", "qwen2moe", "mamba", "jamba"}) {
        const std::string dir = std::string("reference/archs/") + arch + "/" + arch;
        check_quantized_file(dir + ".f32.gguf", dir + ".q4_k.gguf", &n_k);
    }
    EXPECT_GE(n_k, 100);
}

} // namespace
