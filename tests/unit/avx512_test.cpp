// avx512_test.cpp - properties of the AVX-512 kernels beyond the shared Simd/Gemm tests:
// the quantized dots (vec_dot and every gemm path: small tiles, decode rows, the wide kernel)
// reproduce the scalar reference bit for bit, except Q4_0 and Q8_0's decode kernels (vec_dot
// and gemm with one column), which sum in their own order for speed: those must agree with each
// other bit for bit and with the reference to float rounding; and the BF16 kernels for CPUs without
// AVX512_BF16 (not otherwise reachable on a machine that has it) match the reference.
#include "kernels/kernels.h"
#include "kernel_test_util.h"
#include "slm/types.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace slm::kernels::avx512::testing {
void bf16_fallback_kernels(decltype(TypeTraits::vec_dot)* vec_dot, decltype(TypeTraits::gemm)* gemm);
}

namespace {

using slm::GGMLType;
using namespace slm::kernels;
using namespace slm::test;

std::vector<float> gaussian(int64_t n, std::mt19937& rng, float scale) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
}

TEST(Avx512, QuantDotsAreBitExactWithReference) {
    if (traits_for_isa("avx512", GGMLType::F32) == nullptr) GTEST_SKIP() << "no AVX-512 on this machine";
    std::mt19937 rng(21);
    for (GGMLType t : {GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_0, GGMLType::Q5_1, GGMLType::Q8_0}) {
        const TypeTraits* tt = traits_for_isa("avx512", t);
        const TypeTraits* ref = ref_traits(t);
        const TypeTraits* at = traits_for_isa("avx512", tt->vec_dot_type);
        for (int64_t n : {32, 64, 96, 544}) {
            for (int64_t nr : {1, 3, 8, 13, 16, 21}) {
                for (int64_t nc : {1, 2, 5, 33}) {
                    const size_t bx = slm::row_size(t, n), by = slm::row_size(at->type, n);
                    std::vector<uint8_t> w(bx * static_cast<size_t>(nr)), a(by * static_cast<size_t>(nc));
                    for (int64_t r = 0; r < nr; ++r) {
                        const std::vector<float> x = gaussian(n, rng, std::pow(10.0f, static_cast<float>(r % 7) - 3.0f));
                        ref->quantize_ref(x.data(), w.data() + bx * static_cast<size_t>(r), n);
                    }
                    for (int64_t c = 0; c < nc; ++c) {
                        const std::vector<float> x = gaussian(n, rng, std::pow(10.0f, static_cast<float>(c % 5) - 2.0f));
                        at->from_float(x.data(), a.data() + by * static_cast<size_t>(c), n);
                    }
                    std::vector<float> s(static_cast<size_t>(nr * nc));
                    tt->gemm(n, w.data(), bx, nr, a.data(), by, nc, s.data(), static_cast<size_t>(nr));
                    for (int64_t c = 0; c < nc; ++c) {
                        for (int64_t r = 0; r < nr; ++r) {
                            const uint8_t* wr = w.data() + bx * static_cast<size_t>(r);
                            const uint8_t* ac = a.data() + by * static_cast<size_t>(c);
                            float want = 0, dot = 0;
                            ref->vec_dot(n, &want, wr, ac);
                            tt->vec_dot(n, &dot, wr, ac);
                            const float got = s[static_cast<size_t>(c * nr + r)];
                            if (t == GGMLType::Q4_0 || t == GGMLType::Q8_0) {
                                const std::vector<float> wf = dequantized(t, wr, n), af = dequantized(at->type, ac, n);
                                double scale = 0;
                                for (int64_t j = 0; j < n; ++j) scale += std::fabs(double(wf[j]) * af[j]);
                                ASSERT_NEAR(dot, want, 1e-5 * scale + 1e-30) << slm::type_name(t) << " vec_dot n=" << n;
                                if (nc == 1) {
                                    ASSERT_EQ(bits_of(got), bits_of(dot)) << slm::type_name(t) << " decode n=" << n << " r=" << r;
                                } else {
                                    ASSERT_EQ(bits_of(got), bits_of(want)) << slm::type_name(t) << " gemm n=" << n << " " << nr
                                                                           << "x" << nc << " r=" << r << " c=" << c;
                                }
                                continue;
                            }
                            ASSERT_EQ(bits_of(dot), bits_of(want)) << slm::type_name(t) << " vec_dot n=" << n;
                            ASSERT_EQ(bits_of(got), bits_of(want))
                                << slm::type_name(t) << " gemm n=" << n << " " << nr << "x" << nc << " r=" << r << " c=" << c;
                        }
                    }
                }
            }
        }
    }
}

TEST(Avx512, Bf16FallbackMatchesReference) {
    if (traits_for_isa("avx512", GGMLType::F32) == nullptr) GTEST_SKIP() << "no AVX-512 on this machine";
    decltype(TypeTraits::vec_dot) vec_dot = nullptr;
    decltype(TypeTraits::gemm) gemm = nullptr;
    slm::kernels::avx512::testing::bf16_fallback_kernels(&vec_dot, &gemm);
    const TypeTraits* ref = ref_traits(GGMLType::BF16);
    std::mt19937 rng(22);
    for (int64_t n : {1, 7, 31, 32, 33, 100, 4133}) {
        for (int64_t nr : {1, 4, 6}) {
            for (int64_t nc : {1, 3, 5}) {
                const size_t row = slm::row_size(GGMLType::BF16, n);
                std::vector<uint8_t> w(row * static_cast<size_t>(nr)), a(row * static_cast<size_t>(nc));
                for (int64_t r = 0; r < nr; ++r) ref->from_float(gaussian(n, rng, 1.0f).data(), w.data() + row * r, n);
                for (int64_t c = 0; c < nc; ++c) ref->from_float(gaussian(n, rng, 1.0f).data(), a.data() + row * c, n);
                std::vector<float> s(static_cast<size_t>(nr * nc));
                gemm(n, w.data(), row, nr, a.data(), row, nc, s.data(), static_cast<size_t>(nr));
                for (int64_t c = 0; c < nc; ++c) {
                    for (int64_t r = 0; r < nr; ++r) {
                        const uint8_t* wr = w.data() + row * r;
                        const uint8_t* ac = a.data() + row * c;
                        float want = 0, dot = 0;
                        ref->vec_dot(n, &want, wr, ac);
                        vec_dot(n, &dot, wr, ac);
                        const std::vector<float> x = dequantized(GGMLType::BF16, wr, n), y = dequantized(GGMLType::BF16, ac, n);
                        double scale = 0;
                        for (int64_t j = 0; j < n; ++j) scale += std::fabs(static_cast<double>(x[j]) * y[j]);
                        EXPECT_NEAR(dot, want, 1e-5 * scale + 1e-30) << "n=" << n;
                        EXPECT_EQ(bits_of(s[static_cast<size_t>(c * nr + r)]), bits_of(dot)) << "n=" << n << " gemm vs vec_dot";
                    }
                }
            }
        }
    }
}

} // namespace
