// avx512_kquants_test.cpp - the AVX-512 K-quant / IQ4 / TQ tile kernels (avx512_kquants.cpp)
// beyond what gemm_test checks: every tile shape the kernels pick (decode tiles of one or two
// columns, 2 x 8 prefill tiles and their remainders, rows split into chunks of super-blocks)
// must give exactly the table's own vec_dot, since mul_mat mixes the two; weights are raw random
// bytes (every scale and quant pattern, so the integer lane sums reach their extremes) as well as
// quantized rows, and results stay within float rounding of the scalar reference.
#include "kernels/kernels.h"
#include "kernel_test_util.h"
#include "slm/types.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace {

using slm::GGMLType;
using namespace slm::kernels;
using namespace slm::test;

const GGMLType kTypes[] = {GGMLType::Q2_K,   GGMLType::Q3_K,   GGMLType::Q4_K,  GGMLType::Q5_K, GGMLType::Q6_K,
                           GGMLType::IQ4_NL, GGMLType::IQ4_XS, GGMLType::TQ1_0, GGMLType::TQ2_0};

// Offsets of the fp16 fields of a block, which random bytes must keep finite and moderate.
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

// nr rows `stride` bytes apart: even rows quantized from Gaussian data, odd rows random bytes.
std::vector<uint8_t> weight_rows(GGMLType t, int64_t n, int64_t nr, size_t stride, std::mt19937& rng) {
    std::vector<uint8_t> w(stride * static_cast<size_t>(nr), 0xA5);
    const size_t bs = slm::type_info(t).type_size;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> mag(-8.0f, 2.0f);
    for (int64_t r = 0; r < nr; ++r) {
        uint8_t* row = w.data() + stride * static_cast<size_t>(r);
        if (r % 2 == 0) {
            std::vector<float> x(static_cast<size_t>(n));
            for (float& v : x) v = normal(rng);
            ref_traits(t)->quantize_ref(x.data(), row, n);
            continue;
        }
        const size_t size = slm::row_size(t, n);
        for (size_t i = 0; i < size; ++i) row[i] = static_cast<uint8_t>(rng());
        for (size_t off = 0; off < size; off += bs) {
            for (size_t f : half_fields(t)) {
                const uint16_t h = fp32_to_fp16(std::pow(2.0f, mag(rng)) * (rng() % 2 ? 1.0f : -1.0f));
                std::memcpy(row + off + f, &h, 2);
            }
        }
    }
    return w;
}

// nc activation rows (with a saturating outlier each, so quants of +-127 occur).
std::vector<uint8_t> activation_rows(const TypeTraits* at, int64_t n, int64_t nc, size_t stride, std::mt19937& rng) {
    std::vector<uint8_t> a(stride * static_cast<size_t>(nc), 0x5A);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t c = 0; c < nc; ++c) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng);
        x[static_cast<size_t>(rng() % n)] = c % 2 ? 50.0f : -50.0f;
        at->from_float(x.data(), a.data() + stride * static_cast<size_t>(c), n);
    }
    return a;
}

double abs_dot(GGMLType wt, const uint8_t* w, GGMLType at, const uint8_t* a, int64_t n) {
    const std::vector<float> x = dequantized(wt, w, n), y = dequantized(at, a, n);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::fabs(static_cast<double>(x[j]) * y[j]);
    return s;
}

TEST(Avx512KQuants, GemmEqualsVecDotForEveryTileShape) {
    if (traits_for_isa("avx512", GGMLType::Q4_K) == nullptr) GTEST_SKIP() << "no AVX-512 VNNI on this machine";
    std::mt19937 rng(21);
    for (GGMLType t : kTypes) {
        const TypeTraits* tt = traits_for_isa("avx512", t);
        ASSERT_NE(tt, nullptr);
        ASSERT_NE(tt->gemm, nullptr) << slm::type_name(t);
        const TypeTraits* at = traits_for_isa("avx512", tt->vec_dot_type);
        const TypeTraits* ref = ref_traits(t);
        const int64_t b = t == GGMLType::IQ4_NL ? 32 : 256;
        // IQ4_NL: 1, 3 and 17 blocks (partial super-blocks); the others 1, 5 and 17 super-blocks
        // (one chunk, chunks of 4 + 1, 4 chunks + 1).
        for (int64_t n : {b, (b == 32 ? 3 : 5) * b, 17 * b}) {
            for (int64_t nr : {1, 2, 3, 5, 16, 17}) {
                for (int64_t nc : {1, 2, 3, 8, 9, 17}) {
                    const size_t bx = slm::row_size(t, n) + (nr % 2) * 64;
                    const size_t by = slm::row_size(at->type, n) + (nc % 3) * 32;
                    const std::vector<uint8_t> w = weight_rows(t, n, nr, bx, rng);
                    const std::vector<uint8_t> a = activation_rows(at, n, nc, by, rng);
                    const size_t ldc = static_cast<size_t>(nr) + 1;
                    std::vector<float> s(ldc * static_cast<size_t>(nc), -3.0f);
                    tt->gemm(n, w.data(), bx, nr, a.data(), by, nc, s.data(), ldc);
                    for (int64_t c = 0; c < nc; ++c) {
                        ASSERT_EQ(s[static_cast<size_t>(c) * ldc + static_cast<size_t>(nr)], -3.0f) << "wrote past nr";
                        for (int64_t r = 0; r < nr; ++r) {
                            const uint8_t* wr = w.data() + bx * static_cast<size_t>(r);
                            const uint8_t* ac = a.data() + by * static_cast<size_t>(c);
                            float own = 0, want = 0;
                            tt->vec_dot(n, &own, wr, ac);
                            ref->vec_dot(n, &want, wr, ac);
                            const float got = s[static_cast<size_t>(c) * ldc + static_cast<size_t>(r)];
                            ASSERT_EQ(bits_of(got), bits_of(own))
                                << slm::type_name(t) << " n=" << n << " tile " << nr << "x" << nc << " r=" << r << " c=" << c;
                            ASSERT_NEAR(got, want, 1e-5 * abs_dot(t, wr, at->type, ac, n) + 1e-30)
                                << slm::type_name(t) << " n=" << n << " r=" << r << " c=" << c;
                        }
                    }
                }
            }
        }
    }
}

// The prepared activations live in per-thread buffers that grow: a long row after short ones,
// and short ones again, must not see stale data.
TEST(Avx512KQuants, ScratchBuffersGrowAndShrink) {
    if (traits_for_isa("avx512", GGMLType::Q4_K) == nullptr) GTEST_SKIP() << "no AVX-512 VNNI on this machine";
    std::mt19937 rng(22);
    const TypeTraits* tt = traits_for_isa("avx512", GGMLType::Q4_K);
    const TypeTraits* at = traits_for_isa("avx512", tt->vec_dot_type);
    for (int64_t n : {256, 256 * 64, 512, 256 * 3}) {
        const int64_t nr = 4, nc = 12;
        const size_t bx = slm::row_size(GGMLType::Q4_K, n), by = slm::row_size(at->type, n);
        const std::vector<uint8_t> w = weight_rows(GGMLType::Q4_K, n, nr, bx, rng);
        const std::vector<uint8_t> a = activation_rows(at, n, nc, by, rng);
        std::vector<float> s(static_cast<size_t>(nr * nc));
        tt->gemm(n, w.data(), bx, nr, a.data(), by, nc, s.data(), static_cast<size_t>(nr));
        for (int64_t c = 0; c < nc; ++c) {
            for (int64_t r = 0; r < nr; ++r) {
                float own = 0;
                tt->vec_dot(n, &own, w.data() + bx * r, a.data() + by * c);
                ASSERT_EQ(bits_of(s[static_cast<size_t>(c * nr + r)]), bits_of(own)) << "n=" << n;
            }
        }
    }
}

} // namespace
