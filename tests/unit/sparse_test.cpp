// sparse_test.cpp - the 2:4 sparse type Q8_0_S24 (kernels/sparse.h, docs/sparse-format.md): its
// quantizer keeps the two largest of every four and rounds as Q8_0 does; its reference dot
// product is bit-identical to the dense Q8_0 one over the zero-filled weights; every SIMD table
// (vec_dot, gemm, repacked gemm) matches the reference; files round-trip; a model stored sparse
// computes what the same weights stored dense compute.
#include "kernels/kernels.h"
#include "kernels/ref/blocks.h"
#include "kernels/repack.h"
#include "kernels/sparse.h"
#include "kernel_test_util.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace slm;
using namespace slm::kernels;
using namespace slm::test;

constexpr GGMLType kS24 = GGMLType::Q8_0_S24;

std::vector<float> random_row(int64_t n, std::mt19937& rng, float scale = 1.0f) {
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng);
    return x;
}

std::vector<uint8_t> quantize(GGMLType t, const std::vector<float>& x) {
    std::vector<uint8_t> out(row_size(t, static_cast<int64_t>(x.size())));
    ref_traits(t)->quantize_ref(x.data(), out.data(), static_cast<int64_t>(x.size()));
    return out;
}

// Q8_0_S24 rows -> the dense Q8_0 rows of the same weights (the same scale, zeros filled in),
// written independently of the kernels: the k-th set mask bit takes the k-th kept value.
std::vector<uint8_t> densify(const uint8_t* src, int64_t n, int64_t nr) {
    const int64_t nb = n / 32;
    std::vector<uint8_t> out(row_size(GGMLType::Q8_0, n) * static_cast<size_t>(nr));
    const auto* s = reinterpret_cast<const BlockQ8_0S24*>(src);
    auto* d = reinterpret_cast<BlockQ8_0*>(out.data());
    for (int64_t i = 0; i < nb * nr; ++i) {
        d[i].d = s[i].d;
        uint32_t m;
        std::memcpy(&m, s[i].mask, 4);
        int k = 0;
        for (int j = 0; j < 32; ++j) d[i].qs[j] = (m >> j & 1) ? s[i].qs[k++] : 0;
        EXPECT_EQ(k, 16);
    }
    return out;
}

// Activation rows as mul_mat makes them (the Q8_0 table's from_float).
std::vector<uint8_t> act_rows(int64_t n, int64_t nc, std::mt19937& rng) {
    const size_t by = row_size(GGMLType::Q8_0, n);
    std::vector<uint8_t> a(by * static_cast<size_t>(nc));
    for (int64_t c = 0; c < nc; ++c) {
        const std::vector<float> x = random_row(n, rng);
        traits(GGMLType::Q8_0)->from_float(x.data(), a.data() + by * static_cast<size_t>(c), n);
    }
    return a;
}

std::vector<uint8_t> weight_rows(int64_t n, int64_t nr, std::mt19937& rng) {
    const size_t bx = row_size(kS24, n);
    std::vector<uint8_t> w(bx * static_cast<size_t>(nr));
    for (int64_t r = 0; r < nr; ++r) {
        const std::vector<float> x = random_row(n, rng, std::pow(2.0f, static_cast<float>(r % 5) - 2.0f));
        ref_traits(kS24)->quantize_ref(x.data(), w.data() + bx * static_cast<size_t>(r), n);
    }
    return w;
}

// Sum of |w_j * a_j|: the scale of a dot product's rounding error.
double abs_dot(const uint8_t* w, const uint8_t* a, int64_t n) {
    const std::vector<float> x = dequantized(kS24, w, n), y = dequantized(GGMLType::Q8_0, a, n);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::fabs(double(x[j]) * y[j]);
    return s;
}

} // namespace

TEST(Sparse, TypeInfoAndNames) {
    const TypeInfo ti = type_info(kS24);
    ASSERT_NE(ti.name, nullptr);
    EXPECT_STREQ(ti.name, "Q8_0_S24");
    EXPECT_EQ(ti.blck_size, 32);
    EXPECT_EQ(ti.type_size, 22u);
    EXPECT_EQ(row_size(kS24, 2048), 2048u / 32 * 22);
    GGMLType t;
    ASSERT_TRUE(type_from_name("q8_0_s24", &t));
    EXPECT_EQ(t, kS24);
    EXPECT_EQ(static_cast<uint32_t>(kS24), kSlmTypeBase);
    EXPECT_EQ(type_info(kSlmTypeBase + 1).name, nullptr);  // the next private id is not defined
    EXPECT_GE(kSlmTypeBase, 40u);                          // above every ggml id
}

// Exactly two kept values in every group of four, the two largest by magnitude, rounded as Q8_0
// rounds the zero-filled block (same scale, same bytes).
TEST(Sparse, QuantizeKeepsTwoLargestOfFour) {
    std::mt19937 rng(1);
    const int64_t n = 32 * 7;
    for (int trial = 0; trial < 20; ++trial) {
        // Magnitudes in [0.5, 1]: no kept value rounds to zero.
        std::uniform_real_distribution<float> mag(0.5f, 1.0f);
        std::vector<float> x(n);
        for (float& v : x) v = mag(rng) * (rng() & 1 ? 1.0f : -1.0f);
        const std::vector<uint8_t> q = quantize(kS24, x);
        const std::vector<float> y = dequantized(kS24, q.data(), n);
        std::vector<float> pruned(n, 0.0f);
        for (int64_t g = 0; g < n / 4; ++g) {
            int nz = 0;
            for (int j = 0; j < 4; ++j) nz += y[4 * g + j] != 0.0f;
            ASSERT_EQ(nz, 2) << "group " << g;
            // The two kept are the two largest |x| (no ties in random floats).
            std::vector<int> idx = {0, 1, 2, 3};
            std::sort(idx.begin(), idx.end(),
                      [&](int a, int b) { return std::fabs(x[4 * g + a]) > std::fabs(x[4 * g + b]); });
            EXPECT_NE(y[4 * g + idx[0]], 0.0f);
            EXPECT_NE(y[4 * g + idx[1]], 0.0f);
            pruned[4 * g + idx[0]] = x[4 * g + idx[0]];
            pruned[4 * g + idx[1]] = x[4 * g + idx[1]];
        }
        // Same as dense Q8_0 of the pruned row, value for value.
        const std::vector<uint8_t> dense = quantize(GGMLType::Q8_0, pruned);
        EXPECT_EQ(densify(q.data(), n, 1), dense);
        const std::vector<float> yd = dequantized(GGMLType::Q8_0, dense.data(), n);
        EXPECT_EQ(0, std::memcmp(y.data(), yd.data(), n * sizeof(float)));
    }
}

// A row already pruned 2:4 keeps exactly its non-zeros (also groups with one or no non-zero).
TEST(Sparse, QuantizeKeepsAnExisting24Pattern) {
    std::mt19937 rng(2);
    const int64_t n = 32 * 5;
    std::vector<float> x = random_row(n, rng);
    for (int64_t g = 0; g < n / 4; ++g) {
        const int drop = static_cast<int>(rng() % 6);
        static const int pairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
        x[4 * g + pairs[drop][0]] = 0.0f;
        x[4 * g + pairs[drop][1]] = 0.0f;
        if (g % 7 == 3) x[4 * g + 3] = x[4 * g + 2] = x[4 * g + 1] = x[4 * g] = 0.0f;
        if (g % 7 == 5) x[4 * g + (pairs[drop][0] + 1) % 4] = 0.0f;  // groups with one non-zero
    }
    const std::vector<uint8_t> q = quantize(kS24, x);
    EXPECT_EQ(densify(q.data(), n, 1), quantize(GGMLType::Q8_0, x));
    const std::vector<float> y = dequantized(kS24, q.data(), n);
    const std::vector<float> yd = dequantized(GGMLType::Q8_0, quantize(GGMLType::Q8_0, x).data(), n);
    EXPECT_EQ(0, std::memcmp(y.data(), yd.data(), n * sizeof(float)));
    // Every mask is a valid 2:4 mask.
    EXPECT_EQ(s24_first_invalid_block(q.data(), n / 32), -1);
}

TEST(Sparse, MaskValidity) {
    EXPECT_TRUE(s24_mask_valid(0x33333333u));
    EXPECT_TRUE(s24_mask_valid(0x5a6c9c35u));
    EXPECT_FALSE(s24_mask_valid(0x33333337u));
    EXPECT_FALSE(s24_mask_valid(0x33333331u));
    EXPECT_FALSE(s24_mask_valid(0xffff0000u));  // 16 bits but not two per nibble
}

// The reference dot product is the dense Q8_0 reference over the zero-filled weights, bit for
// bit (same integer sums, same float operations in the same order).
TEST(Sparse, RefVecDotEqualsDenseQ8_0) {
    std::mt19937 rng(3);
    for (int64_t n : {32, 96, 32 * 11, 2048}) {
        const std::vector<uint8_t> w = weight_rows(n, 1, rng), a = act_rows(n, 1, rng);
        const std::vector<uint8_t> dense = densify(w.data(), n, 1);
        float s = 0, sd = 0;
        ref_traits(kS24)->vec_dot(n, &s, w.data(), a.data());
        ref_traits(GGMLType::Q8_0)->vec_dot(n, &sd, dense.data(), a.data());
        EXPECT_EQ(bits_of(s), bits_of(sd)) << "n " << n << ": " << s << " vs " << sd;
    }
}

// Every SIMD table: same to_float and quantize_ref bytes as the reference; vec_dot and gemm (any
// nr, nc, including the column counts that expand rows to dense) equal to the reference vec_dot
// up to float summation order.
TEST(Sparse, EveryIsaMatchesReference) {
    std::mt19937 rng(4);
    const std::vector<std::string> isas = simd_isas();
    for (const std::string& isa : isas) {
        SCOPED_TRACE(isa);
        const TypeTraits* tt = traits_for_isa(isa.c_str(), kS24);
        ASSERT_NE(tt, nullptr);
        EXPECT_EQ(tt->vec_dot_type, GGMLType::Q8_0);
        for (int64_t n : {32, 96, 32 * 11, 32 * 65}) {
            SCOPED_TRACE(n);
            const int64_t nr = 19, nc = 7;
            const size_t bx = row_size(kS24, n), by = row_size(GGMLType::Q8_0, n);
            const std::vector<uint8_t> w = weight_rows(n, nr, rng), a = act_rows(n, nc, rng);
            // to_float / quantize_ref
            const std::vector<float> x = random_row(n, rng);
            std::vector<uint8_t> q(bx);
            tt->quantize_ref(x.data(), q.data(), n);
            EXPECT_EQ(q, quantize(kS24, x));
            std::vector<float> f(n);
            tt->to_float(w.data(), f.data(), n);
            EXPECT_EQ(f, dequantized(kS24, w.data(), n));
            // reference results
            std::vector<float> want(static_cast<size_t>(nr * nc));
            for (int64_t c = 0; c < nc; ++c)
                for (int64_t r = 0; r < nr; ++r)
                    ref_traits(kS24)->vec_dot(n, &want[c * nr + r], w.data() + r * bx, a.data() + c * by);
            auto tol = [&](int64_t r, int64_t c) { return 1e-5 * abs_dot(w.data() + r * bx, a.data() + c * by, n) + 1e-6; };
            for (int64_t c = 0; c < nc; ++c)
                for (int64_t r = 0; r < nr; ++r) {
                    float s = 0;
                    tt->vec_dot(n, &s, w.data() + r * bx, a.data() + c * by);
                    EXPECT_NEAR(s, want[c * nr + r], tol(r, c)) << "vec_dot r " << r << " c " << c;
                }
            ASSERT_NE(tt->gemm, nullptr);
            for (int64_t gr : {1, 5, 16, 19}) {
                for (int64_t gc : {1, 3, 4, 7}) {
                    std::vector<float> got(static_cast<size_t>(gr * gc), -1.0f);
                    tt->gemm(n, w.data(), bx, gr, a.data(), by, gc, got.data(), static_cast<size_t>(gr));
                    for (int64_t c = 0; c < gc; ++c)
                        for (int64_t r = 0; r < gr; ++r)
                            EXPECT_NEAR(got[c * gr + r], want[c * nr + r], tol(r, c))
                                << "gemm " << gr << "x" << gc << " r " << r << " c " << c;
                }
            }
        }
    }
}

// The repacked layout, where this build has one: gemm over 16-row groups equals the reference,
// and unpack_row gives each row back.
TEST(Sparse, RepackedGemmMatchesReference) {
    std::mt19937 rng(5);
    for (const std::string& isa : simd_isas()) {
        const RepackTraits* rp = repack_traits_for_isa(isa.c_str(), kS24);
        if (rp == nullptr) continue;
        SCOPED_TRACE(isa);
        for (int64_t n : {32, 96, 32 * 11, 32 * 65}) {
            SCOPED_TRACE(n);
            const int64_t nr = 48;
            const size_t bx = row_size(kS24, n), by = row_size(GGMLType::Q8_0, n);
            const std::vector<uint8_t> w = weight_rows(n, nr, rng), a = act_rows(n, 7, rng);
            std::vector<uint8_t> packed(w.size());
            rp->repack(w.data(), packed.data(), n, nr, bx);
            for (int64_t r = 0; r < nr; ++r) {
                std::vector<uint8_t> row(bx);
                rp->unpack_row(packed.data(), bx, r, n, row.data());
                EXPECT_EQ(0, std::memcmp(row.data(), w.data() + r * bx, bx)) << "row " << r;
            }
            for (int64_t gc : {1, 2, 4, 7}) {
                for (int64_t g0 : {0, 16}) {
                    const int64_t gr = g0 == 0 ? 48 : 16;
                    std::vector<float> got(static_cast<size_t>(gr * gc), -1.0f);
                    rp->gemm(n, packed.data() + g0 * bx, bx, gr, a.data(), by, gc, got.data(), static_cast<size_t>(gr));
                    for (int64_t c = 0; c < gc; ++c)
                        for (int64_t r = 0; r < gr; ++r) {
                            float want = 0;
                            ref_traits(kS24)->vec_dot(n, &want, w.data() + (g0 + r) * bx, a.data() + c * by);
                            EXPECT_NEAR(got[c * gr + r], want,
                                        1e-5 * abs_dot(w.data() + (g0 + r) * bx, a.data() + c * by, n) + 1e-6)
                                << "gemm r " << g0 + r << " c " << c << " of " << gc;
                        }
                }
            }
        }
    }
}

TEST(Sparse, GgufRoundTrip) {
    std::mt19937 rng(6);
    const int64_t n = 96, nr = 3;
    const std::vector<uint8_t> w = weight_rows(n, nr, rng);
    GGUFWriter wr;
    wr.set("general.architecture", GGUFValue::string("llama"));
    wr.add_tensor("blk.0.ffn_up.weight", kS24, {n, nr}, w.data(), w.size());
    const std::vector<uint8_t> bytes = wr.to_bytes();
    GGUFFile f = GGUFFile::parse(bytes.data(), bytes.size());
    const GGUFTensorInfo& t = f.tensor("blk.0.ffn_up.weight");
    EXPECT_EQ(t.type, kS24);
    ASSERT_EQ(t.nbytes, w.size());
    EXPECT_EQ(0, std::memcmp(t.data, w.data(), w.size()));
}

// A row length that is not a multiple of 32 is refused, by the writer and by the reader (the
// file patched after writing), naming the tensor.
TEST(Sparse, RowLengthNotMultipleOf32IsRefused) {
    std::vector<uint8_t> w(row_size(kS24, 64) * 2);
    {
        GGUFWriter wr;
        EXPECT_THROW(wr.add_tensor("bad", kS24, {48, 2}, w.data(), w.size()), Error);
    }
    GGUFWriter wr;
    wr.add_tensor("blk.0.attn_q.weight", kS24, {64, 2}, w.data(), w.size());
    std::vector<uint8_t> bytes = wr.to_bytes();
    // The tensor info: name, n_dims (u32) = 2, ne[0] (u64) = 64 -> 48.
    const std::string name = "blk.0.attn_q.weight";
    auto it = std::search(bytes.begin(), bytes.end(), name.begin(), name.end());
    ASSERT_NE(it, bytes.end());
    const size_t ne0 = static_cast<size_t>(it - bytes.begin()) + name.size() + 4;
    uint64_t v;
    std::memcpy(&v, bytes.data() + ne0, 8);
    ASSERT_EQ(v, 64u);
    v = 48;
    std::memcpy(bytes.data() + ne0, &v, 8);
    try {
        GGUFFile::parse(bytes.data(), bytes.size());
        FAIL() << "a Q8_0_S24 row of 48 elements was accepted";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.0.attn_q.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("Q8_0_S24"), std::string::npos) << msg;
        EXPECT_NE(msg.find("32"), std::string::npos) << msg;
    }
}

// A model stored as Q8_0_S24 computes the same logits as the same weights stored as dense Q8_0
// (the file rewritten with every sparse tensor zero-filled), up to float summation order; with
// and without the repacked layouts.
TEST(Sparse, ModelEqualsDenseCopy) {
    const std::string dir = temp_dir();
    const std::string sparse = dir + "/sparse.gguf", dense = dir + "/dense.gguf";
    SynthConfig c;
    c.n_embd = 128;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 352;  // 32 * 11: an odd number of blocks in ffn_down's rows
    c.n_ctx_train = 128;
    c.type = kS24;
    c.tokenizer = model_path("stories260K/stories260K.gguf");
    synthesize(c, sparse);
    size_t n_sparse = 0;
    {
        GGUFFile f = GGUFFile::open(sparse);
        GGUFWriter w;
        w.copy_kv_from(f);
        for (const GGUFTensorInfo& t : f.tensors()) {
            if (t.type != kS24) {
                w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
                continue;
            }
            ++n_sparse;
            const int64_t n = t.ne[0], nr = static_cast<int64_t>(t.nbytes / row_size(kS24, n));
            w.add_tensor_copy(t.name, GGMLType::Q8_0, t.shape(), densify(static_cast<const uint8_t*>(t.data), n, nr));
        }
        EXPECT_EQ(f.tensor("output.weight").type, GGMLType::Q8_0);      // dense, as prune leaves it
        EXPECT_EQ(f.tensor("token_embd.weight").type, GGMLType::Q8_0);
        w.write(dense);
    }
    EXPECT_EQ(n_sparse, 2u * 7u);  // q, k, v, o, gate, up, down of each layer
    const std::vector<int32_t> toks{1, 403, 407, 261, 378, 300, 12, 99, 4, 77, 150};
    for (const char* repack : {"1", "0"}) {
        SCOPED_TRACE(std::string("SLM_REPACK=") + repack);
        setenv("SLM_REPACK", repack, 1);
        std::vector<float> ls, ld;
        for (const std::string* path : {&sparse, &dense}) {
            auto m = Model::load(*path);
            SessionOptions so;
            so.n_ctx = 64;
            so.kv_type = GGMLType::F32;
            so.n_threads = 2;
            Session s(m, so);
            // Prefill of all but the last token, then one decode step: both kernels paths.
            s.eval(std::vector<int32_t>(toks.begin(), toks.end() - 1), false);
            const std::vector<int32_t> last{toks.back()};
            s.eval(last, true);
            auto l = s.logits();
            (path == &sparse ? ls : ld).assign(l.begin(), l.end());
        }
        unsetenv("SLM_REPACK");
        ASSERT_EQ(ls.size(), ld.size());
        double mx = 0, diff = 0;
        for (size_t i = 0; i < ls.size(); ++i) {
            mx = std::max(mx, std::fabs(double(ld[i])));
            diff = std::max(diff, std::fabs(double(ls[i]) - ld[i]));
        }
        EXPECT_GT(mx, 0.0);
        EXPECT_LE(diff, 1e-4 * mx) << "max |logit| " << mx;
    }
}

// The model loader refuses a Q8_0_S24 tensor whose mask is not 2:4, naming tensor and block.
TEST(Sparse, LoaderRefusesABadMask) {
    const std::string dir = temp_dir();
    const std::string good = dir + "/good.gguf", bad = dir + "/bad.gguf";
    SynthConfig c;
    c.n_embd = 64;
    c.n_layer = 1;
    c.n_head = 2;
    c.n_head_kv = 2;
    c.n_ff = 96;
    c.n_ctx_train = 64;
    c.type = kS24;
    c.tokenizer = model_path("stories260K/stories260K.gguf");
    synthesize(c, good);
    EXPECT_NO_THROW(Model::load(good));
    {
        GGUFFile f = GGUFFile::open(good);
        GGUFWriter w;
        w.copy_kv_from(f);
        for (const GGUFTensorInfo& t : f.tensors()) {
            std::vector<uint8_t> bytes(static_cast<const uint8_t*>(t.data), static_cast<const uint8_t*>(t.data) + t.nbytes);
            if (t.name == "blk.0.ffn_up.weight") {
                ASSERT_EQ(t.type, kS24);
                auto* b = reinterpret_cast<BlockQ8_0S24*>(bytes.data());
                b[3].mask[1] |= 0x0f;  // a nibble with four kept values
            }
            w.add_tensor_copy(t.name, t.type, t.shape(), std::move(bytes));
        }
        w.write(bad);
    }
    try {
        Model::load(bad);
        FAIL() << "a bad mask was accepted";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.0.ffn_up.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("block 3"), std::string::npos) << msg;
    }
}
