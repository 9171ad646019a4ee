// gemm_test.cpp - the tile kernels (TypeTraits::gemm) of every ISA this machine runs, for every
// weight type that has one, against the scalar reference vec_dot: tiles of every shape from 1x1
// up (so each register-tile remainder path runs), row lengths of 1, 2, 3 and 17 blocks, strides
// wider than a row, and mul_mat over the same data with and without threads.
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernel_test_util.h"
#include "slm/types.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using slm::GGMLType;
using namespace slm::kernels;
using namespace slm::test;

const GGMLType kTypes[] = {GGMLType::F32,  GGMLType::F16,  GGMLType::BF16,   GGMLType::Q4_0,   GGMLType::Q4_1,
                           GGMLType::Q5_0, GGMLType::Q5_1, GGMLType::Q8_0,   GGMLType::Q2_K,   GGMLType::Q3_K,
                           GGMLType::Q4_K, GGMLType::Q5_K, GGMLType::Q6_K,   GGMLType::IQ4_NL, GGMLType::IQ4_XS,
                           GGMLType::TQ1_0, GGMLType::TQ2_0};

std::vector<std::string> all_isas() {
    std::vector<std::string> out = {"scalar"};
    for (const std::string& isa : simd_isas()) out.push_back(isa);
    return out;
}

std::vector<float> gaussian(int64_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng);
    return v;
}

// nr rows of type t, each `stride` bytes apart (stride >= row size; the gap is filled with junk
// that a kernel reading past its row would pick up).
std::vector<uint8_t> weight_rows(GGMLType t, int64_t n, int64_t nr, size_t stride, std::mt19937& rng) {
    std::vector<uint8_t> w(stride * static_cast<size_t>(nr), 0xA5);
    for (int64_t r = 0; r < nr; ++r) {
        // Rows of different magnitudes, as real weight matrices have.
        const std::vector<float> x = gaussian(n, rng, std::pow(2.0f, static_cast<float>(r % 5) - 2.0f));
        ref_traits(t)->quantize_ref(x.data(), w.data() + stride * static_cast<size_t>(r), n);
    }
    return w;
}

// nc activation rows converted with `tt`'s from_float (the ISA under test's own quantizer).
std::vector<uint8_t> activation_rows(const TypeTraits* at, int64_t n, int64_t nc, size_t stride, std::mt19937& rng) {
    std::vector<uint8_t> a(stride * static_cast<size_t>(nc), 0x5A);
    for (int64_t c = 0; c < nc; ++c) {
        std::vector<float> x = gaussian(n, rng);
        // A few outliers, as real activations have.
        x[static_cast<size_t>(rng() % n)] *= 20.0f;
        at->from_float(x.data(), a.data() + stride * static_cast<size_t>(c), n);
    }
    return a;
}

// Sum of |x_j * y_j| over the dequantized rows: the scale a float-order difference is relative to.
double abs_dot(GGMLType wt, const uint8_t* w, GGMLType at, const uint8_t* a, int64_t n) {
    const std::vector<float> x = dequantized(wt, w, n), y = dequantized(at, a, n);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::fabs(static_cast<double>(x[j]) * y[j]);
    return s;
}

TEST(Gemm, TilesMatchReferenceVecDot) {
    std::mt19937 rng(11);
    int tested = 0;
    for (const std::string& isa : all_isas()) {
        for (GGMLType t : kTypes) {
            const TypeTraits* tt = traits_for_isa(isa.c_str(), t);
            if (tt == nullptr || tt->gemm == nullptr) continue;
            const TypeTraits* ref = ref_traits(t);
            const TypeTraits* at = traits_for_isa(isa.c_str(), tt->vec_dot_type);
            ASSERT_NE(at, nullptr);
            ASSERT_EQ(tt->vec_dot_type, ref->vec_dot_type);
            const int64_t b = block_size(t);
            for (int64_t n : {b, 2 * b, 3 * b, 17 * b}) {
                for (int64_t nr : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17}) {
                    for (int64_t nc : {1, 2, 3, 4, 5, 6, 8, 9, 17}) {
                        const size_t bx = slm::row_size(t, n) + (nr % 3) * 64;
                        const size_t by = slm::row_size(at->type, n) + (nc % 2) * 64;
                        const std::vector<uint8_t> w = weight_rows(t, n, nr, bx, rng);
                        const std::vector<uint8_t> a = activation_rows(at, n, nc, by, rng);
                        const size_t ldc = static_cast<size_t>(nr) + 3;
                        std::vector<float> s(ldc * static_cast<size_t>(nc), -7.0f);
                        tt->gemm(n, w.data(), bx, nr, a.data(), by, nc, s.data(), ldc);
                        for (int64_t c = 0; c < nc; ++c) {
                            for (size_t r = 0; r < ldc; ++r) {
                                const float got = s[static_cast<size_t>(c) * ldc + r];
                                if (r >= static_cast<size_t>(nr)) {
                                    ASSERT_EQ(got, -7.0f) << isa << " " << slm::type_name(t) << " wrote past nr";
                                    continue;
                                }
                                const uint8_t* wr = w.data() + bx * r;
                                const uint8_t* ac = a.data() + by * static_cast<size_t>(c);
                                float want = 0;
                                ref->vec_dot(n, &want, wr, ac);
                                const double scale = abs_dot(t, wr, at->type, ac, n);
                                ASSERT_NEAR(got, want, 1e-4 * scale + 1e-30)
                                    << isa << " " << slm::type_name(t) << " n=" << n << " tile " << nr << "x" << nc
                                    << " at r=" << r << " c=" << c;
                            }
                        }
                        ++tested;
                    }
                }
            }
        }
    }
    if (tested == 0) GTEST_SKIP() << "no ISA table on this machine has gemm kernels";
}

// mul_mat (which uses gemm where there is one) against the reference vec_dot for every output,
// at decode (1 token) and prefill shapes, with and without a pool.
TEST(Gemm, MulMatMatchesReference) {
    std::mt19937 rng(12);
    slm::ThreadPool pool(3);
    std::vector<uint8_t> scratch;
    for (GGMLType t : kTypes) {
        const TypeTraits* tt = traits(t);
        ASSERT_NE(tt, nullptr) << slm::type_name(t);
        const TypeTraits* ref = ref_traits(t);
        const int64_t n_in = 2 * std::max<int64_t>(block_size(t), 256), n_out = 37;
        const size_t w_row = slm::row_size(t, n_in);
        const std::vector<uint8_t> w = weight_rows(t, n_in, n_out, w_row, rng);
        for (int64_t n_tok : {1, 5, 40}) {
            const std::vector<float> x = gaussian(n_in * n_tok, rng);
            std::vector<float> y(static_cast<size_t>(n_out * n_tok)), y_pool(y.size());
            mul_mat(w.data(), t, n_in, n_out, x.data(), n_tok, y.data(), nullptr, scratch);
            mul_mat(w.data(), t, n_in, n_out, x.data(), n_tok, y_pool.data(), &pool, scratch);
            const TypeTraits* at = traits(tt->vec_dot_type);
            std::vector<uint8_t> a(slm::row_size(at->type, n_in));
            for (int64_t k = 0; k < n_tok; ++k) {
                at->from_float(x.data() + k * n_in, a.data(), n_in);
                for (int64_t r = 0; r < n_out; ++r) {
                    const uint8_t* wr = w.data() + w_row * r;
                    float want = 0;
                    ref->vec_dot(n_in, &want, wr, a.data());
                    const double scale = abs_dot(t, wr, at->type, a.data(), n_in);
                    const size_t i = static_cast<size_t>(k * n_out + r);
                    ASSERT_NEAR(y[i], want, 1e-4 * scale + 1e-30) << slm::type_name(t) << " tokens " << n_tok;
                    ASSERT_EQ(y[i], y_pool[i]) << slm::type_name(t) << ": threads changed a result";
                }
            }
        }
    }
}

} // namespace
