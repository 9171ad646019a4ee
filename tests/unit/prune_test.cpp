// Unstructured and N:M pruning (slm/prune.h): the per-matrix algorithms, OWL, whole models, CLI.
#include "slm/prune.h"

#include "core/thread_pool.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "calib_text.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

namespace slm {
namespace {

std::string stories() { return test::model_path("stories260K/stories260K.gguf"); }
using test::calib_text;
using test::small_calib;

std::vector<float> random_matrix(int64_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(n));
    for (float& x : w) x = d(rng);
    return w;
}

int64_t zeros(const std::vector<float>& w) {
    int64_t z = 0;
    for (float x : w) z += x == 0.0f;
    return z;
}

// Every group of m along every row has exactly n non-zeros.
void expect_nm(const float* w, int64_t n_out, int64_t n_in, int n, int m, const std::string& what) {
    for (int64_t r = 0; r < n_out; ++r)
        for (int64_t g = 0; g < n_in; g += m) {
            int nz = 0;
            for (int i = 0; i < m; ++i) nz += w[r * n_in + g + i] != 0.0f;
            ASSERT_EQ(nz, n) << what << " row " << r << " group " << g / m;
        }
}

// Inputs with strongly correlated columns of uneven scale: X = Z A (n_tok x n_in).
std::vector<float> correlated_inputs(int64_t n_tok, int64_t n_in, uint32_t seed) {
    const int64_t k = n_in / 4;  // few latent factors -> strong correlations
    std::vector<float> z = random_matrix(n_tok * k, seed), a = random_matrix(k * n_in, seed + 1);
    std::vector<float> noise = random_matrix(n_tok * n_in, seed + 2);
    std::vector<float> x(static_cast<size_t>(n_tok * n_in));
    for (int64_t t = 0; t < n_tok; ++t)
        for (int64_t j = 0; j < n_in; ++j) {
            double s = 0.1 * noise[t * n_in + j];
            for (int64_t i = 0; i < k; ++i) s += z[t * k + i] * a[i * n_in + j];
            x[t * n_in + j] = static_cast<float>(s * (1.0 + (j % 7)));
        }
    return x;
}

std::vector<float> gram(const std::vector<float>& x, int64_t n_tok, int64_t n_in) {
    std::vector<float> h(static_cast<size_t>(n_in * n_in), 0.0f);
    for (int64_t i = 0; i < n_in; ++i)
        for (int64_t j = 0; j < n_in; ++j) {
            double s = 0;
            for (int64_t t = 0; t < n_tok; ++t) s += double(x[t * n_in + i]) * x[t * n_in + j];
            h[i * n_in + j] = static_cast<float>(s);
        }
    return h;
}

// ||W X^T - W' X^T||_F, computed directly from the inputs.
double output_error(const std::vector<float>& w, const std::vector<float>& wp, const std::vector<float>& x,
                    int64_t n_out, int64_t n_in, int64_t n_tok) {
    double e = 0;
    for (int64_t r = 0; r < n_out; ++r)
        for (int64_t t = 0; t < n_tok; ++t) {
            double d = 0;
            for (int64_t j = 0; j < n_in; ++j) d += (double(w[r * n_in + j]) - wp[r * n_in + j]) * x[t * n_in + j];
            e += d * d;
        }
    return std::sqrt(e);
}

TEST(Prune, PatternParsing) {
    EXPECT_FALSE(parse_sparsity_pattern("unstructured").nm());
    const SparsityPattern p = parse_sparsity_pattern("2:4");
    EXPECT_EQ(p.n, 2);
    EXPECT_EQ(p.m, 4);
    EXPECT_EQ(p.str(), "2:4");
    for (const char* bad : {"4:2", "0:4", "2:2", "x", "2:", ":4", "2:4:8", "1:1000"}) {
        try {
            parse_sparsity_pattern(bad);
            ADD_FAILURE() << bad;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("'pattern'"), std::string::npos) << e.what();
        }
    }
}

TEST(Prune, EveryMethodReachesTheSparsityPerMatrix) {
    const int64_t n_out = 24, n_in = 64, n_tok = 200;
    const std::vector<float> x = correlated_inputs(n_tok, n_in, 3);
    const std::vector<float> h = gram(x, n_tok, n_in);
    std::vector<double> sum_x2(n_in);
    for (int64_t j = 0; j < n_in; ++j) sum_x2[j] = h[j * n_in + j];
    ThreadPool pool(2);
    for (float s : {0.0f, 0.3f, 0.5f, 0.7f}) {
        std::vector<float> w = random_matrix(n_out * n_in, 7);
        prune::magnitude(w.data(), n_out, n_in, s, {});
        EXPECT_EQ(zeros(w), static_cast<int64_t>(std::floor(n_out * n_in * s + 1e-6))) << "magnitude " << s;
        w = random_matrix(n_out * n_in, 7);
        prune::wanda(w.data(), n_out, n_in, sum_x2.data(), s, {});
        // Per row.
        for (int64_t r = 0; r < n_out; ++r) {
            int64_t z = 0;
            for (int64_t j = 0; j < n_in; ++j) z += w[r * n_in + j] == 0.0f;
            EXPECT_EQ(z, static_cast<int64_t>(std::floor(n_in * s + 1e-6))) << "wanda row " << r;
        }
        w = random_matrix(n_out * n_in, 7);
        prune::sparsegpt(w.data(), n_out, n_in, h.data(), s, {}, {0.01f, 16}, &pool);
        // Masks are chosen per block of 16 columns: the count rounds down per block.
        EXPECT_EQ(zeros(w), (n_in / 16) * static_cast<int64_t>(std::floor(n_out * 16 * s + 1e-6))) << "sparsegpt " << s;
    }
}

TEST(Prune, NMPatternsKeepExactlyNOfEveryM) {
    const int64_t n_out = 16, n_in = 64, n_tok = 100;
    const std::vector<float> x = correlated_inputs(n_tok, n_in, 5);
    const std::vector<float> h = gram(x, n_tok, n_in);
    std::vector<double> sum_x2(n_in);
    for (int64_t j = 0; j < n_in; ++j) sum_x2[j] = h[j * n_in + j];
    for (const char* pat : {"2:4", "4:8", "1:4", "3:8"}) {
        const SparsityPattern p = parse_sparsity_pattern(pat);
        std::vector<float> w = random_matrix(n_out * n_in, 11);
        prune::magnitude(w.data(), n_out, n_in, 0.5f, p);
        expect_nm(w.data(), n_out, n_in, p.n, p.m, std::string("magnitude ") + pat);
        w = random_matrix(n_out * n_in, 11);
        prune::wanda(w.data(), n_out, n_in, sum_x2.data(), 0.5f, p);
        expect_nm(w.data(), n_out, n_in, p.n, p.m, std::string("wanda ") + pat);
        w = random_matrix(n_out * n_in, 11);
        prune::sparsegpt(w.data(), n_out, n_in, h.data(), 0.5f, p, {0.01f, 20}, nullptr);  // block 20 -> 20/24
        expect_nm(w.data(), n_out, n_in, p.n, p.m, std::string("sparsegpt ") + pat);
    }
    std::vector<float> w = random_matrix(4 * 30, 1);
    EXPECT_THROW(prune::magnitude(w.data(), 4, 30, 0.5f, parse_sparsity_pattern("2:4")), Error);  // 30 % 4 != 0
}

TEST(Prune, WandaWeighsByActivationNorm) {
    // One row: columns 0, 1 have large weights but almost no activation; 2, 3 the reverse.
    // Magnitude keeps 0 and 1; Wanda (|W| * ||X||: 0.01, 0.009, 2, 3) keeps 2 and 3.
    const std::vector<float> w0 = {1.0f, 0.9f, 0.2f, 0.3f, -1.0f, 0.9f, 0.2f, -0.3f};
    const std::vector<double> sum_x2 = {1e-4, 1e-4, 100, 100};
    std::vector<float> m = w0, wd = w0;
    prune::magnitude(m.data(), 2, 4, 0.5f, {});
    prune::wanda(wd.data(), 2, 4, sum_x2.data(), 0.5f, {});
    EXPECT_EQ(m, (std::vector<float>{1.0f, 0.9f, 0, 0, -1.0f, 0.9f, 0, 0}));
    EXPECT_EQ(wd, (std::vector<float>{0, 0, 0.2f, 0.3f, 0, 0, 0.2f, -0.3f}));
    // Wanda compares within a row: a row of small weights keeps its share.
    const std::vector<float> w1 = {10, 9, 8, 7, 0.4f, 0.3f, 0.2f, 0.1f};
    const std::vector<double> ones = {1, 1, 1, 1};
    std::vector<float> a = w1, b = w1;
    prune::magnitude(a.data(), 2, 4, 0.5f, {});
    prune::wanda(b.data(), 2, 4, ones.data(), 0.5f, {});
    EXPECT_EQ(a, (std::vector<float>{10, 9, 8, 7, 0, 0, 0, 0}));
    EXPECT_EQ(b, (std::vector<float>{10, 9, 0, 0, 0.4f, 0.3f, 0, 0}));
}

TEST(Prune, SparseGptHasTheLowestOutputError) {
    const int64_t n_out = 32, n_in = 96, n_tok = 400;
    const std::vector<float> x = correlated_inputs(n_tok, n_in, 21);
    const std::vector<float> h = gram(x, n_tok, n_in);
    std::vector<double> sum_x2(n_in);
    for (int64_t j = 0; j < n_in; ++j) sum_x2[j] = h[j * n_in + j];
    const std::vector<float> w = random_matrix(n_out * n_in, 13);
    for (const char* pat : {"unstructured", "2:4"}) {
        const SparsityPattern p = parse_sparsity_pattern(pat);
        std::vector<float> mg = w, wd = w, sg = w;
        prune::magnitude(mg.data(), n_out, n_in, 0.5f, p);
        prune::wanda(wd.data(), n_out, n_in, sum_x2.data(), 0.5f, p);
        prune::sparsegpt(sg.data(), n_out, n_in, h.data(), 0.5f, p, {0.01f, 32}, nullptr);
        ASSERT_EQ(zeros(mg), zeros(sg)) << pat;  // the same mask budget
        ASSERT_EQ(zeros(wd), zeros(sg)) << pat;
        const double e_mg = output_error(w, mg, x, n_out, n_in, n_tok), e_wd = output_error(w, wd, x, n_out, n_in, n_tok),
                     e_sg = output_error(w, sg, x, n_out, n_in, n_tok);
        EXPECT_LT(e_wd, e_mg) << pat;
        EXPECT_LT(e_sg, 0.8 * e_wd) << pat << ": sparsegpt " << e_sg << " wanda " << e_wd << " magnitude " << e_mg;
    }
}

TEST(Prune, SparseGptUpdateIsTheOptimalReconstruction) {
    // Removing only the first column, the OBS update is the exact least-squares optimum:
    // w'_K = w_K + H_KK^-1 H_K0 w_0, minimizing (w - w')^T H (w - w') with w'_0 = 0.
    const int64_t n = 8, n_tok = 64;
    const std::vector<float> x = correlated_inputs(n_tok, n, 9);
    const std::vector<float> h = gram(x, n_tok, n);
    std::vector<float> w = {1e-3f, 0.8f, -1.1f, 0.5f, 1.3f, -0.7f, 0.9f, 1.2f};
    const std::vector<float> w0 = w;
    prune::sparsegpt(w.data(), 1, n, h.data(), 0.0f, parse_sparsity_pattern("7:8"), {1e-9f, 128}, nullptr);
    ASSERT_EQ(w[0], 0.0f);
    // Solve H_KK d = H_K0 w_0 by Gaussian elimination (double).
    const int k = n - 1;
    std::vector<double> a(k * (k + 1));
    for (int i = 0; i < k; ++i) {
        for (int j = 0; j < k; ++j) a[i * (k + 1) + j] = h[(i + 1) * n + j + 1];
        a[i * (k + 1) + k] = double(h[(i + 1) * n]) * w0[0];
    }
    for (int c = 0; c < k; ++c)
        for (int r = c + 1; r < k; ++r) {
            const double f = a[r * (k + 1) + c] / a[c * (k + 1) + c];
            for (int j = c; j <= k; ++j) a[r * (k + 1) + j] -= f * a[c * (k + 1) + j];
        }
    std::vector<double> d(k);
    for (int r = k - 1; r >= 0; --r) {
        double v = a[r * (k + 1) + k];
        for (int j = r + 1; j < k; ++j) v -= a[r * (k + 1) + j] * d[j];
        d[r] = v / a[r * (k + 1) + r];
    }
    double largest = 0;
    for (int i = 0; i < k; ++i) {
        EXPECT_NEAR(w[i + 1], w0[i + 1] + d[i], 1e-6) << i;
        largest = std::max(largest, std::fabs(d[i]));
    }
    EXPECT_GT(largest, 1e-4);  // the update is far larger than the tolerance
}

TEST(Prune, OwlSparsitiesFollowOutliersAndKeepTheMean) {
    // Scaled ratios {0, 2 lambda}: mean lambda, so the layers get target + lambda and target - lambda.
    std::vector<double> s = prune::owl_sparsities({0.0, 1.0}, 0.5, 0.08);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_NEAR(s[0], 0.58, 1e-12);
    EXPECT_NEAR(s[1], 0.42, 1e-12);
    s = prune::owl_sparsities({0.01, 0.03, 0.02, 0.05}, 0.6, 0.1);
    double mean = 0;
    for (double v : s) mean += v / 4;
    EXPECT_NEAR(mean, 0.6, 1e-12);
    EXPECT_GT(s[0], s[2]);
    EXPECT_GT(s[2], s[1]);
    EXPECT_GT(s[1], s[3]);
    EXPECT_NEAR(s[0] - s[3], 0.2, 1e-12);  // the span is 2 lambda
    s = prune::owl_sparsities({0.02, 0.02}, 0.5, 0.08);  // no spread: uniform
    EXPECT_EQ(s, (std::vector<double>{0.5, 0.5}));
}

PruneParams params(const std::string& method, const std::string& pattern) {
    PruneParams p;
    p.method = method;
    p.pattern = pattern;
    p.calib_text = small_calib();
    p.calib_samples = 4;
    p.calib_ctx = 64;
    p.n_threads = 1;  // spinning workers on a loaded 2-core machine only slow it down
    return p;
}

bool is_pruned_name(const std::string& n) {
    for (const char* s : {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
                          "ffn_up.weight", "ffn_down.weight"})
        if (n.size() > std::strlen(s) && n.compare(n.size() - std::strlen(s), std::strlen(s), s) == 0) return true;
    return false;
}

TEST(Prune, WholeModelNMAndUnstructured) {
    const GGUFFile in = GGUFFile::open(stories());
    const std::string dir = test::temp_dir();
    for (const char* method : {"magnitude", "wanda", "sparsegpt"}) {
        for (const char* pat : {"2:4", "unstructured"}) {
            const std::string out = dir + "/" + method + "_" + (pat[0] == '2' ? "24" : "u") + ".gguf";
            const PruneResult r = prune_model(stories(), out, params(method, pat));
            EXPECT_EQ(r.matrices.size(), 35u);
            const GGUFFile f = GGUFFile::open(out);
            EXPECT_EQ(f.get_str("slm.prune.method"), method);
            EXPECT_EQ(f.get_str("slm.prune.pattern"), pat);
            EXPECT_FLOAT_EQ(f.get_f32("slm.prune.sparsity"), 0.5f);
            // Same keys in the same order, then the slm.prune.* record.
            for (size_t i = 0; i < in.kv().size(); ++i) EXPECT_EQ(f.kv()[i].first, in.kv()[i].first);
            ASSERT_EQ(f.tensors().size(), in.tensors().size());
            for (const GGUFTensorInfo& t : f.tensors()) {
                const GGUFTensorInfo& o = in.tensor(t.name);
                EXPECT_EQ(t.type, o.type);
                EXPECT_EQ(t.shape(), o.shape());
                const float* v = reinterpret_cast<const float*>(t.data);
                if (!is_pruned_name(t.name)) {  // embeddings, output, norms untouched
                    EXPECT_EQ(std::memcmp(t.data, o.data, t.nbytes), 0) << t.name;
                    continue;
                }
                if (pat[0] == '2') {
                    expect_nm(v, t.ne[1], t.ne[0], 2, 4, std::string(method) + " " + t.name);
                } else {
                    int64_t z = 0;
                    for (int64_t i = 0; i < t.nelements(); ++i) z += v[i] == 0.0f;
                    EXPECT_EQ(z, t.nelements() / 2) << method << " " << t.name;
                }
            }
            // It still runs.
            auto model = Model::load(out);
            SessionOptions so;
            so.n_threads = 1;
            Session s(model, so);
            const std::vector<int32_t> ids = model->vocab().tokenize("Once upon a time", true, false);
            const float* logits = s.eval(ids);
            for (uint32_t i = 0; i < model->hparams().n_vocab; ++i) ASSERT_TRUE(std::isfinite(logits[i]));
        }
    }
}

TEST(Prune, SequentialCalibrationSeesThePrunedEarlierLayers) {
    // Layer 0 reads the same inputs either way, so it is pruned identically; later layers see
    // the pruned layer 0's outputs and get other masks.
    const std::string dir = test::temp_dir();
    PruneParams p = params("wanda", "unstructured");
    prune_model(stories(), dir + "/one.gguf", p);
    p.sequential = true;
    const PruneResult r = prune_model(stories(), dir + "/seq.gguf", p);
    EXPECT_EQ(r.matrices.size(), 35u);
    const GGUFFile a = GGUFFile::open(dir + "/one.gguf"), b = GGUFFile::open(dir + "/seq.gguf");
    EXPECT_TRUE(b.get_bool("slm.prune.sequential", false));
    for (const char* n : {"blk.0.attn_q.weight", "blk.0.ffn_down.weight"})
        EXPECT_EQ(std::memcmp(a.tensor(n).data, b.tensor(n).data, a.tensor(n).nbytes), 0) << n;
    const auto& x = a.tensor("blk.3.ffn_down.weight");
    EXPECT_NE(std::memcmp(x.data, b.tensor(x.name).data, x.nbytes), 0);
    EXPECT_FALSE(std::ifstream(dir + "/seq.gguf.seq.tmp.gguf").good());  // the per-layer model is gone
}

TEST(Prune, OwlProfileKeepsTheMeanAndReports) {
    PruneParams p = params("wanda", "unstructured");
    p.profile = "owl";
    const std::string out = test::temp_dir() + "/owl.gguf";
    const PruneResult r = prune_model(stories(), out, p);
    ASSERT_EQ(r.layer_target.size(), 5u);
    double mean = 0;
    for (double t : r.layer_target) {
        mean += t / 5;    }
    EXPECT_NEAR(mean, 0.5, 1e-9);
    const auto [lo, hi] = std::minmax_element(r.layer_target.begin(), r.layer_target.end());
    EXPECT_NEAR(*hi - *lo, 2 * 0.08, 1e-6);  // lambda is a float  // the per-layer sparsities span 2 lambda
    // Wanda rounds per row of 64 or 172 weights: within 1/64 of the layer's target.
    for (size_t l = 0; l < 5; ++l) EXPECT_NEAR(r.layer_sparsity[l], r.layer_target[l], 1.0 / 64) << l;
    EXPECT_EQ(GGUFFile::open(out).get_str("slm.prune.profile"), "owl");
    p.pattern = "2:4";
    EXPECT_THROW(prune_model(stories(), out, p), Error);
}

// stories260K with blk.0.attn_q.weight stored as Q8_0 (zero blocks: the refusal comes first).
std::string quantized_model() {
    const GGUFFile in = GGUFFile::open(stories());
    GGUFWriter w;
    w.copy_kv_from(in);
    for (const GGUFTensorInfo& t : in.tensors()) {
        if (t.name == "blk.0.attn_q.weight") {
            std::vector<uint8_t> q(row_size(GGMLType::Q8_0, t.ne[0]) * t.ne[1], 0);
            w.add_tensor_copy(t.name, GGMLType::Q8_0, t.shape(), std::move(q));
        } else {
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        }
    }
    const std::string path = test::temp_dir() + "/q8.gguf";
    w.write(path);
    return path;
}

TEST(Prune, BadInputsAreClearErrors) {
    const std::string out = test::temp_dir() + "/bad.gguf";
    auto expect_error = [&](PruneParams p, const std::string& in, const std::string& needle) {
        try {
            prune_model(in, out, p);
            ADD_FAILURE() << "no error for " << needle;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    PruneParams p = params("magnitude", "unstructured");
    p.method = "random";
    expect_error(p, stories(), "'method'");
    p = params("magnitude", "unstructured");
    p.sparsity = 1.0f;
    expect_error(p, stories(), "'sparsity'");
    p.sparsity = -0.1f;
    expect_error(p, stories(), "'sparsity'");
    expect_error(params("magnitude", "2:5"), stories(), "'pattern'");  // rows of 64
    expect_error(params("wanda", "unstructured"), quantized_model(), "prune -> slm quantize");
    p = params("wanda", "unstructured");
    p.calib_text.clear();
    expect_error(p, stories(), "calibration");
    p = params("magnitude", "unstructured");
    p.profile = "flat";
    expect_error(p, stories(), "'sparsity-profile'");
}

TEST(PruneCli, RunsAndFailsClearly) {
    const std::string dir = test::temp_dir();
    test::RunResult r = test::run_cli({"prune", stories(), dir + "/w.gguf", "--method", "wanda", "--pattern", "2:4",
                                       "-f", small_calib(), "--calib-samples", "4", "--calib-ctx", "64", "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("per-layer sparsity"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("blk.0.attn_q.weight"), std::string::npos) << r.err;  // per-matrix log
    EXPECT_EQ(GGUFFile::open(dir + "/w.gguf").get_str("slm.prune.pattern"), "2:4");
    r = test::run_cli({"prune", stories(), dir + "/l.gguf", "--structured", "layers", "--ratio", "0.4", "-f",
                       small_calib(), "--calib-samples", "4", "--calib-ctx", "64", "-q", "-t", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("structured layers, ratio 0.4: 3 layers"), std::string::npos) << r.out;
    EXPECT_EQ(GGUFFile::open(dir + "/l.gguf").get_u32("llama.block_count"), 3u);
    struct Case {
        std::vector<std::string> args;
        const char* needle;
    };
    const std::vector<Case> cases = {
        {{"--method", "random"}, "'method'"},
        {{"--sparsity", "1.5"}, "'sparsity'"},
        {{"--pattern", "2:5"}, "'pattern'"},
        {{"--pattern", "4:8"}, "'pattern'"},  // ffn_down rows of 172 weights
        {{"--structured", "heads", "--ratio", "1", "-f", calib_text()}, "'ratio'"},
        {{"--structured", "experts", "--ratio", "0.5"}, "'structured'"},
        {{"--ratio", "0.5"}, "'ratio'"},  // without --structured
    };
    for (const Case& c : cases) {
        std::vector<std::string> args = {"prune", stories(), dir + "/bad.gguf"};
        args.insert(args.end(), c.args.begin(), c.args.end());
        r = test::run_cli(args);
        EXPECT_EQ(r.exit_code, 1) << c.needle;
        EXPECT_NE(r.err.find(c.needle), std::string::npos) << r.err;
    }
    r = test::run_cli({"prune", quantized_model(), dir + "/bad.gguf", "--method", "magnitude"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("then quantize"), std::string::npos) << r.err;
    EXPECT_FALSE(std::ifstream(dir + "/bad.gguf").good());
    r = test::run_cli({"prune", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("Taylor"), std::string::npos) << "--help says why there is no Taylor score";
}

} // namespace
} // namespace slm
