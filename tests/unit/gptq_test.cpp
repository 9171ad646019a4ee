// GPTQ (src/compress/gptq.h) and the block grids it snaps to (src/compress/grid.h).
#include "compress/gptq.h"

#include "compress/grid.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "slm/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace slm {
namespace {

using compress::GptqParams;

const GGMLType kTypes[] = {GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_0, GGMLType::Q5_1,
                           GGMLType::Q8_0, GGMLType::Q2_K, GGMLType::Q3_K, GGMLType::Q4_K,
                           GGMLType::Q5_K, GGMLType::Q6_K, GGMLType::IQ4_NL, GGMLType::IQ4_XS};

// A layer whose inputs have a few strong directions (as real activations do), so that the
// output error depends on how the rounding errors line up with them.
struct Layer {
    int64_t n_out, n_in;
    uint64_t n_rows;
    std::vector<float> w, x, h;  // w: n_out x n_in, x: n_rows x n_in, h = X^T X
};

Layer make_layer(int64_t n_out, int64_t n_in, uint64_t n_rows, uint32_t seed, int64_t dead_col = -1) {
    Layer L{n_out, n_in, n_rows, {}, {}, {}};
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    L.w.resize(static_cast<size_t>(n_out * n_in));
    for (auto& v : L.w) v = 0.05f * nd(rng);
    constexpr int kDirs = 4;
    std::vector<float> dirs(static_cast<size_t>(kDirs * n_in));
    for (auto& v : dirs) v = nd(rng);
    std::vector<float> col_scale(static_cast<size_t>(n_in));
    for (auto& v : col_scale) v = 0.5f + std::fabs(nd(rng));
    L.x.resize(static_cast<size_t>(n_rows) * n_in);
    for (uint64_t t = 0; t < n_rows; ++t) {
        float c[kDirs];
        for (float& ci : c) ci = 3.0f * nd(rng);
        for (int64_t j = 0; j < n_in; ++j) {
            float v = 0.3f * nd(rng);
            for (int k = 0; k < kDirs; ++k) v += c[k] * dirs[k * n_in + j];
            L.x[t * n_in + j] = j == dead_col ? 0.0f : v * col_scale[j];
        }
    }
    L.h.assign(static_cast<size_t>(n_in * n_in), 0.0f);
    for (int64_t i = 0; i < n_in; ++i)
        for (int64_t j = 0; j < n_in; ++j) {
            double s = 0.0;
            for (uint64_t t = 0; t < n_rows; ++t) s += static_cast<double>(L.x[t * n_in + i]) * L.x[t * n_in + j];
            L.h[i * n_in + j] = static_cast<float>(s);
        }
    return L;
}

// ||W X^T - W_hat X^T||^2 over the calibration rows.
double output_error(const Layer& L, const std::vector<float>& what) {
    double e = 0.0;
    for (uint64_t t = 0; t < L.n_rows; ++t)
        for (int64_t r = 0; r < L.n_out; ++r) {
            double d = 0.0;
            for (int64_t j = 0; j < L.n_in; ++j)
                d += (static_cast<double>(L.w[r * L.n_in + j]) - what[r * L.n_in + j]) * L.x[t * L.n_in + j];
            e += d * d;
        }
    return e;
}

std::vector<float> rtn(const Layer& L, GGMLType t) {
    std::vector<float> y(L.w.size());
    compress::quantize_dequantize(t, L.w.data(), y.data(), static_cast<int64_t>(L.w.size()));
    return y;
}

std::vector<float> decode(const std::vector<uint8_t>& bytes, GGMLType t, size_t n) {
    std::vector<float> y(n);
    kernels::ref_traits(t)->to_float(bytes.data(), y.data(), static_cast<int64_t>(n));
    return y;
}

class GptqTypes : public ::testing::TestWithParam<GGMLType> {};

TEST_P(GptqTypes, BeatsRtnAndDecodesToTheValuesItUsed) {
    const GGMLType t = GetParam();
    static const Layer L = make_layer(24, 512, 1024, 7);
    for (bool act_order : {false, true}) {
        GptqParams p;
        p.act_order = act_order;
        p.block = 64;
        std::vector<float> used;
        const auto q = compress::gptq_quantize("blk.0.test.weight", L.w.data(), L.n_out, L.n_in, L.h.data(),
                                               L.n_rows, t, nullptr, p, nullptr, &used);
        ASSERT_EQ(q.size(), static_cast<size_t>(L.n_out) * row_size(t, L.n_in));
        const auto dec = decode(q, t, L.w.size());
        for (size_t i = 0; i < dec.size(); ++i) ASSERT_EQ(dec[i], used[i]) << type_name(t) << " element " << i;
        const double e_rtn = output_error(L, rtn(L, t));
        const double e_gptq = output_error(L, dec);
        EXPECT_LT(e_gptq, e_rtn) << type_name(t) << (act_order ? " act-order" : "");
        // On inputs this correlated GPTQ should win by a wide margin, not by noise.
        EXPECT_LT(e_gptq, 0.8 * e_rtn) << type_name(t) << (act_order ? " act-order" : "");
        std::printf("%-7s %-9s output error RTN %.4g  GPTQ %.4g  (x%.3f)\n", type_name(t),
                    act_order ? "act-order" : "in order", e_rtn, e_gptq, e_gptq / e_rtn);
    }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, GptqTypes, ::testing::ValuesIn(kTypes),
                         [](const auto& info) { return std::string(type_name(info.param)); });

TEST(Gptq, ThreadsGiveTheSameBytes) {
    const Layer L = make_layer(40, 256, 512, 3);
    ThreadPool pool(3);
    for (bool act_order : {false, true}) {
        GptqParams p;
        p.act_order = act_order;
        const auto a = compress::gptq_quantize("w", L.w.data(), L.n_out, L.n_in, L.h.data(), L.n_rows,
                                               GGMLType::Q4_K, nullptr, p, nullptr);
        const auto b = compress::gptq_quantize("w", L.w.data(), L.n_out, L.n_in, L.h.data(), L.n_rows,
                                               GGMLType::Q4_K, nullptr, p, &pool);
        EXPECT_EQ(a, b);
    }
}

TEST(Gptq, DeadColumnsBecomeZero) {
    const int64_t dead = 37;
    const Layer L = make_layer(8, 128, 512, 11, dead);
    ASSERT_EQ(L.h[dead * L.n_in + dead], 0.0f);
    std::vector<float> used;
    const auto q = compress::gptq_quantize("w", L.w.data(), L.n_out, L.n_in, L.h.data(), L.n_rows, GGMLType::Q4_0,
                                           nullptr, {}, nullptr, &used);
    const auto dec = decode(q, GGMLType::Q4_0, L.w.size());
    for (int64_t r = 0; r < L.n_out; ++r) {
        EXPECT_EQ(dec[r * L.n_in + dead], 0.0f) << "row " << r;  // 0 is on every Q4_0 grid
        EXPECT_NE(L.w[r * L.n_in + dead], 0.0f);
    }
    for (float v : dec) ASSERT_TRUE(std::isfinite(v));
    EXPECT_LT(output_error(L, dec), output_error(L, rtn(L, GGMLType::Q4_0)));
}

TEST(Gptq, ImatrixIsAccepted) {
    const Layer L = make_layer(8, 256, 512, 5);
    std::vector<float> imat(static_cast<size_t>(L.n_in));
    for (int64_t j = 0; j < L.n_in; ++j) imat[j] = L.h[j * L.n_in + j] / static_cast<float>(L.n_rows);
    std::vector<float> used;
    const auto q = compress::gptq_quantize("w", L.w.data(), L.n_out, L.n_in, L.h.data(), L.n_rows, GGMLType::Q4_K,
                                           imat.data(), {}, nullptr, &used);
    EXPECT_EQ(decode(q, GGMLType::Q4_K, L.w.size()), used);
    EXPECT_LT(output_error(L, used), output_error(L, rtn(L, GGMLType::Q4_K)));
    imat[3] = -1.0f;
    EXPECT_THROW(compress::gptq_quantize("w", L.w.data(), L.n_out, L.n_in, L.h.data(), L.n_rows, GGMLType::Q4_K,
                                         imat.data(), {}, nullptr),
                 Error);
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
    try {
        f();
        ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
}

TEST(Gptq, BadInputsAreRefused) {
    Layer L = make_layer(4, 64, 128, 1);
    auto run = [&](GGMLType t, int64_t n_in, const GptqParams& p) {
        compress::gptq_quantize("blk.3.ffn_up.weight", L.w.data(), L.n_out, n_in, L.h.data(), L.n_rows, t, nullptr,
                                p, nullptr);
    };
    expect_error([&] { run(GGMLType::F16, 64, {}); }, "F16");
    expect_error([&] { run(GGMLType::TQ1_0, 64, {}); }, "blk.3.ffn_up.weight");
    expect_error([&] { run(GGMLType::Q4_K, 64, {}); }, "256");  // rows shorter than a super-block
    GptqParams bad;
    bad.damp = -1.0f;
    expect_error([&] { run(GGMLType::Q4_0, 64, bad); }, "damp");
    expect_error(
        [&] {
            compress::gptq_quantize("blk.3.ffn_up.weight", L.w.data(), L.n_out, 64, L.h.data(), 0, GGMLType::Q4_0,
                                    nullptr, {}, nullptr);
        },
        "0 calibration rows");
    L.h[5 * 64 + 9] = std::nanf("");
    expect_error([&] { run(GGMLType::Q4_0, 64, {}); }, "NaN");
    L.h[5 * 64 + 9] = 1.0f;
    L.w[17] = INFINITY;
    expect_error([&] { run(GGMLType::Q4_0, 64, {}); }, "weights");
}

// Every element of every supported type's grid: setting a code and decoding the block gives
// exactly the value grid_snap reports, and snapping picks the nearest decodable value.
TEST(Grid, SnapAndPackAgreeWithToFloat) {
    std::mt19937 rng(2);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (GGMLType t : kTypes) {
        const compress::GridType& g = compress::grid_type(t, "test");
        std::vector<float> x(static_cast<size_t>(g.block));
        for (auto& v : x) v = nd(rng);
        std::vector<uint8_t> blk(g.block_bytes);
        compress::grid_choose(g, x.data(), nullptr, blk.data());
        std::vector<compress::ElemGrid> eg(static_cast<size_t>(g.block));
        compress::grid_decode(g, blk.data(), eg.data());
        std::vector<float> y(x.size()), used(x.size());
        for (int i = 0; i < g.block; ++i) {
            const float target = 1.3f * nd(rng);
            const int code = compress::grid_snap(g, eg[i], target, &used[i]);
            ASSERT_GE(code, 0);
            ASSERT_LT(code, g.n_codes);
            compress::grid_set_code(g, blk.data(), i, code);
            // The nearest: no other code of this element is closer.
            for (int c = 0; c < g.n_codes; ++c) {
                const float v = eg[i].a * static_cast<float>(g.levels[c]) + eg[i].b;
                ASSERT_LE(std::fabs(used[i] - target), std::fabs(v - target)) << type_name(t) << " elem " << i;
            }
        }
        kernels::ref_traits(t)->to_float(blk.data(), y.data(), g.block);
        for (int i = 0; i < g.block; ++i) ASSERT_EQ(y[i], used[i]) << type_name(t) << " elem " << i;
    }
}

} // namespace
} // namespace slm
