// repack_test.cpp - the 8-row group layout of kernels/repack.h: where the reference repacker puts
// each nibble (the layout the header documents), the reference gemm over it against vec_dot over
// the original rows, every SIMD gemm over it against the reference (AVX-512's is bit-exact with
// the reference vec_dot), results independent of how rows are split, and whole models with and
// without repacking.
#include "kernels/kernels.h"
#include "kernels/ref/blocks.h"
#include "kernels/repack.h"
#include "kernel_test_util.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using slm::GGMLType;
using namespace slm::kernels;
using namespace slm::test;

std::vector<uint8_t> weight_rows(GGMLType t, int64_t n, int64_t nr, std::mt19937& rng) {
    const size_t bx = slm::row_size(t, n);
    std::vector<uint8_t> w(bx * static_cast<size_t>(nr));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t r = 0; r < nr; ++r) {
        std::vector<float> x(static_cast<size_t>(n));
        const float scale = std::pow(2.0f, static_cast<float>(r % 5) - 2.0f);
        for (float& v : x) v = scale * normal(rng);
        ref_traits(t)->quantize_ref(x.data(), w.data() + bx * static_cast<size_t>(r), n);
    }
    return w;
}

std::vector<uint8_t> q8_rows(int64_t n, int64_t nc, std::mt19937& rng) {
    const size_t by = slm::row_size(GGMLType::Q8_0, n);
    std::vector<uint8_t> a(by * static_cast<size_t>(nc));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t c = 0; c < nc; ++c) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng);
        traits(GGMLType::Q8_0)->from_float(x.data(), a.data() + by * static_cast<size_t>(c), n);
    }
    return a;
}

double abs_dot(GGMLType t, const uint8_t* w, const uint8_t* a, int64_t n) {
    const std::vector<float> x = dequantized(t, w, n), y = dequantized(GGMLType::Q8_0, a, n);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::fabs(double(x[j]) * y[j]);
    return s;
}

TEST(Repack, LayoutIsAsDocumented) {
    // Row r's byte j of block ib is (r * 7 + j + 16 * ib) & 0xff; scales distinct per row.
    const int64_t n = 64, nr = 32;
    const size_t bx = slm::row_size(GGMLType::Q4_0, n);
    std::vector<uint8_t> w(bx * nr);
    for (int64_t r = 0; r < nr; ++r) {
        auto* b = reinterpret_cast<BlockQ4_0*>(w.data() + bx * r);
        for (int ib = 0; ib < 2; ++ib) {
            b[ib].d = static_cast<uint16_t>(0x3c00 + r * 2 + ib);
            for (int j = 0; j < 16; ++j) b[ib].qs[j] = static_cast<uint8_t>(r * 7 + j + 16 * ib);
        }
    }
    std::vector<uint8_t> p(w.size());
    ref::repack_q4_0_r16(w.data(), p.data(), n, nr, bx);
    for (int64_t g = 0; g < 2; ++g) {
        for (int ib = 0; ib < 2; ++ib) {
            const uint8_t* blk = p.data() + g * 16 * bx + ib * 288;
            for (int r = 0; r < 16; ++r) {
                const int64_t row = g * 16 + r;
                uint16_t d;
                std::memcpy(&d, blk + 2 * r, 2);
                EXPECT_EQ(d, 0x3c00 + row * 2 + ib);
                for (int j = 0; j < 4; ++j)
                    for (int i = 0; i < 4; ++i)
                        EXPECT_EQ(blk[32 + 64 * j + 4 * r + i], static_cast<uint8_t>(row * 7 + 4 * j + i + 16 * ib));
            }
        }
    }
}

TEST(Repack, GemmMatchesVecDotOnEveryIsa) {
    std::mt19937 rng(31);
    int tested = 0;
    for (GGMLType t : {GGMLType::Q4_0, GGMLType::Q8_0})
    for (const char* isa : {"scalar", "avx2", "avx512", "neon"}) {
        const RepackTraits* rp = repack_traits_for_isa(isa, t);
        if (rp == nullptr) continue;
        ++tested;
        for (int64_t n : {32, 64, 96, 544, 4096 + 32}) {
            for (int64_t nr : {16, 32, 48}) {
                for (int64_t nc : {1, 2, 3, 5, 9}) {
                    const size_t bx = slm::row_size(t, n), by = slm::row_size(GGMLType::Q8_0, n);
                    const std::vector<uint8_t> w = weight_rows(t, n, nr, rng), a = q8_rows(n, nc, rng);
                    std::vector<uint8_t> p(w.size());
                    rp->repack(w.data(), p.data(), n, nr, bx);
                    // Every row comes back as it was (embedding lookups of a repacked table).
                    std::vector<uint8_t> row(bx);
                    for (int64_t r = 0; r < nr; ++r) {
                        rp->unpack_row(p.data(), bx, r, n, row.data());
                        ASSERT_EQ(std::memcmp(row.data(), w.data() + bx * static_cast<size_t>(r), bx), 0) << isa << " row " << r;
                    }
                    const size_t ldc = static_cast<size_t>(nr) + 5;
                    std::vector<float> s(ldc * static_cast<size_t>(nc), -3.0f), halves(s.size(), -3.0f);
                    rp->gemm(n, p.data(), bx, nr, a.data(), by, nc, s.data(), ldc);
                    // The same rows in two calls (as two threads would split them): the same bits.
                    rp->gemm(n, p.data(), bx, 16, a.data(), by, nc, halves.data(), ldc);
                    if (nr > 16) rp->gemm(n, p.data() + 16 * bx, bx, nr - 16, a.data(), by, nc, halves.data() + 16, ldc);
                    for (int64_t c = 0; c < nc; ++c) {
                        for (size_t r = 0; r < ldc; ++r) {
                            const size_t k = static_cast<size_t>(c) * ldc + r;
                            if (r >= static_cast<size_t>(nr)) {
                                ASSERT_EQ(s[k], -3.0f) << isa << ": wrote past nr";
                                continue;
                            }
                            ASSERT_EQ(bits_of(s[k]), bits_of(halves[k])) << isa << " r=" << r << " c=" << c;
                            const uint8_t* wr = w.data() + bx * r;
                            const uint8_t* ac = a.data() + by * static_cast<size_t>(c);
                            float want = 0;
                            ref_traits(t)->vec_dot(n, &want, wr, ac);
                            ASSERT_NEAR(s[k], want, 1e-5 * abs_dot(t, wr, ac, n) + 1e-30)
                                << isa << " " << slm::type_name(t) << " n=" << n << " " << nr << "x" << nc << " r=" << r << " c=" << c;
                            if (std::string(isa) == "avx512") ASSERT_EQ(bits_of(s[k]), bits_of(want)) << "n=" << n;
                        }
                    }
                }
            }
        }
    }
    EXPECT_GE(tested, 2);  // at least the references
}

// Q4_0 and Q8_0 models give the same logits (to rounding) repacked or as mapped, and say how
// much they repacked: every matrix but token_embd when this CPU has a repacked kernel.
TEST(Repack, ModelWithAndWithoutRepacking) {
    SLM_REQUIRE_SHARED();
    for (const auto& [file, type] : {std::pair<const char*, GGMLType>{"llama.q4_0.gguf", GGMLType::Q4_0},
                                     std::pair<const char*, GGMLType>{"llama.q8_0.gguf", GGMLType::Q8_0}}) {
        SCOPED_TRACE(file);
        const std::string path = shared_path(std::string("reference/archs/llama/") + file);
        setenv("SLM_REPACK", "0", 1);
        auto plain = slm::Model::load(path);
        unsetenv("SLM_REPACK");
        auto packed = slm::Model::load(path);
        EXPECT_EQ(plain->repacked_bytes(), 0u);
        if (repack_traits(type) != nullptr) {
            const size_t embd = plain->file().tensor("token_embd.weight").nbytes;
            EXPECT_EQ(packed->repacked_bytes(), plain->weight_bytes() - embd - 4 * 256 * 5 /* F32 norms */);
        } else {
            EXPECT_EQ(packed->repacked_bytes(), 0u);
        }
        const std::vector<int32_t> toks = {1, 45, 499, 173, 17, 299, 7, 300};
        std::vector<float> la, lb;
        for (auto* m : {&plain, &packed}) {
            slm::SessionOptions so;
            so.n_ctx = 64;
            slm::Session sess(*m, so);
            sess.eval(toks, true);
            auto l = sess.logits();
            (m == &plain ? la : lb).assign(l.begin(), l.end());
        }
        ASSERT_EQ(la.size(), lb.size());
        double mx = 0, diff = 0;
        for (size_t i = 0; i < la.size(); ++i) {
            mx = std::max(mx, std::fabs(double(la[i])));
            diff = std::max(diff, std::fabs(double(la[i]) - lb[i]));
        }
        EXPECT_LE(diff, 1e-3 * mx);
    }
}

} // namespace
