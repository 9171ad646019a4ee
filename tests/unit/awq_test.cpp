// AWQ (src/compress/awq.h): scale search, folding, clipping.
#include "compress/awq.h"

#include "compress/calib.h"
#include "compress/grid.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "calib_text.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace slm {
namespace {

std::string stories_path() { return test::model_path("stories260K/stories260K.gguf"); }
using test::calib_text;

// Q4_0 where the row is whole blocks, F16 otherwise (stories260K's ffn_down), as the goldens.
std::function<GGMLType(const std::string&)> q4_0_or_f16(const GGUFFile& f) {
    return [&f](const std::string& name) {
        return f.tensor(name).ne[0] % 32 == 0 ? GGMLType::Q4_0 : GGMLType::F16;
    };
}

compress::ActivationStats calibrate(const std::shared_ptr<const Model>& model, uint32_t n_samples) {
    compress::CalibOptions co;
    co.text_file = calib_text();
    co.n_samples = n_samples;
    co.n_ctx = 64;
    const compress::CalibSet set = compress::load_calibration(*model, co);
    compress::ActivationStats::Options o;
    o.hessian = true;
    compress::ActivationStats stats(o);
    compress::run_calibration(model, set, stats, 1, nullptr);
    stats.finish();
    return stats;
}

// The file with AWQ's tensors (F32) in place of the originals.
std::string write_scaled(const GGUFFile& f, const compress::AwqResult& r, const std::string& path) {
    GGUFWriter w;
    w.copy_kv_from(f);
    for (const GGUFTensorInfo& t : f.tensors()) {
        auto it = r.tensors.find(t.name);
        if (it != r.tensors.end()) {
            EXPECT_EQ(it->second.size(), static_cast<size_t>(t.nelements())) << t.name;
            w.add_tensor(t.name, GGMLType::F32, t.shape(), it->second.data(), it->second.size() * sizeof(float));
        } else {
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        }
    }
    w.write(path);
    return path;
}

std::vector<float> all_logits(const std::string& path, const std::vector<int32_t>& tokens) {
    SessionOptions so;
    so.n_ctx = 128;
    so.kv_type = GGMLType::F32;  // an F16 cache would round the (equal up to float rounding) K, V
    so.n_threads = 1;
    Session s(Model::load(path), so);
    s.eval(tokens, true);
    const auto l = s.logits();
    return {l.begin(), l.end()};
}

void expect_same_function(const std::string& a, const std::string& b) {
    const auto model = Model::load(a);
    const std::vector<int32_t> tokens =
        model->vocab().tokenize("Once upon a time, there was a little girl named Lily. She liked to play.", true, false);
    ASSERT_GT(tokens.size(), 10u);
    const auto la = all_logits(a, tokens), lb = all_logits(b, tokens);
    ASSERT_EQ(la.size(), lb.size());
    float mx = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < la.size(); ++i) {
        mx = std::max(mx, std::fabs(la[i]));
        diff = std::max(diff, std::fabs(la[i] - lb[i]));
    }
    EXPECT_LE(diff, 1e-4f * mx) << "max |logit| " << mx;
}

double max_rel_change(const std::vector<float>& a, const GGUFTensorInfo& t) {
    const auto* b = reinterpret_cast<const float*>(t.data);
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i)
        if (b[i] != 0.0f) m = std::max(m, std::fabs(a[i] / b[i] - 1.0));
    return m;
}

TEST(Awq, FoldingKeepsStories260KsFunction) {
    const auto model = Model::load(stories_path());
    const GGUFFile f = GGUFFile::open(stories_path());
    const auto stats = calibrate(model, 8);
    compress::AwqParams p;
    p.n_grid = 10;
    p.clip = false;
    const compress::AwqResult r = compress::awq_search(f, stats, q4_0_or_f16(f), p, nullptr);
    for (const auto& l : r.log) std::printf("%s\n", l.c_str());
    // Every layer's two norm pairs scaled something, and the norms changed by a real amount.
    int n_norms = 0;
    for (const auto& [name, v] : r.tensors)
        if (name.find("_norm.weight") != std::string::npos) {
            ++n_norms;
            EXPECT_GT(max_rel_change(v, f.tensor(name)), 0.05) << name;
        }
    EXPECT_GE(n_norms, 5);
    // stories260K has 8 heads over 4 KV heads: v gives 32 values, attn_output reads 64.
    bool gqa_skip = false;
    for (const auto& l : r.log) gqa_skip = gqa_skip || l.find("attn_v->attn_output: v gives 32") != std::string::npos;
    EXPECT_TRUE(gqa_skip);
    // ffn_down stays F16 (rows of 172): the up->down pair is not quantized and not scaled.
    EXPECT_EQ(r.tensors.count("blk.0.ffn_down.weight"), 0u);
    const std::string out = write_scaled(f, r, test::temp_dir() + "/awq.gguf");
    expect_same_function(stories_path(), out);
}

TEST(Awq, ScalesProtectAnOutlierChannel) {
    const int64_t n_out = 64, n_in = 256;
    const uint64_t n_rows = 512;
    std::mt19937 rng(4);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> w(static_cast<size_t>(n_out * n_in));
    for (auto& v : w) v = 0.05f * nd(rng);
    compress::InputStats x;
    x.n_in = n_in;
    x.n_rows = n_rows;
    x.sum_abs.assign(static_cast<size_t>(n_in), 0.0);
    x.sum_x2.assign(static_cast<size_t>(n_in), 0.0);
    x.hessian.assign(static_cast<size_t>(n_in * n_in), 0.0f);
    std::vector<float> row(static_cast<size_t>(n_in));
    for (uint64_t t = 0; t < n_rows; ++t) {
        for (int64_t j = 0; j < n_in; ++j) row[j] = nd(rng) * (j == 77 ? 40.0f : j % 16 == 3 ? 6.0f : 1.0f);
        for (int64_t i = 0; i < n_in; ++i) {
            x.sum_abs[i] += std::fabs(row[i]);
            for (int64_t j = 0; j < n_in; ++j) x.hessian[i * n_in + j] += row[i] * row[j];
        }
    }
    const std::vector<compress::AwqLinear> lin = {{"blk.0.attn_q.weight", w.data(), n_out, GGMLType::Q4_0}};
    compress::AwqParams p;
    const compress::AwqScales sc = compress::awq_search_scales(lin, x, p, nullptr);
    // Independently of the search's own bookkeeping: the output error of plain RTN and of RTN on
    // W diag(s), mapped back.
    const double plain = compress::awq_loss(lin, x, nullptr, nullptr);
    const double scaled = compress::awq_loss(lin, x, sc.s.data(), nullptr);
    std::printf("output error: RTN %.4g, AWQ+RTN %.4g (x%.3f), alpha %.2f %s\n", plain, scaled, scaled / plain,
                sc.alpha, sc.duo ? "duo" : "x^a");
    EXPECT_FALSE(sc.identity);
    EXPECT_LT(scaled, 0.7 * plain);
    EXPECT_GT(sc.s[77], sc.s[5]);  // the outlier channel is scaled up
    // loss from first principles for the scaled one: sum over rows of ((W - Q(Ws)/s) x)^2.
    std::vector<float> ws(w.size()), q(w.size());
    for (int64_t r = 0; r < n_out; ++r)
        for (int64_t j = 0; j < n_in; ++j) ws[r * n_in + j] = w[r * n_in + j] * sc.s[j];
    compress::quantize_dequantize(GGMLType::Q4_0, ws.data(), q.data(), static_cast<int64_t>(ws.size()));
    double direct = 0.0;
    for (int64_t r = 0; r < n_out; ++r) {
        std::vector<double> d(static_cast<size_t>(n_in));
        for (int64_t j = 0; j < n_in; ++j) d[j] = w[r * n_in + j] - static_cast<double>(q[r * n_in + j]) / sc.s[j];
        for (int64_t i = 0; i < n_in; ++i)
            for (int64_t j = 0; j < n_in; ++j) direct += d[i] * x.hessian[i * n_in + j] * d[j];
    }
    EXPECT_NEAR(direct / n_rows, scaled, 1e-3 * scaled);

    // Clipping never increases the blocks' error and changes only what it reports.
    std::vector<float> wc = ws;
    const auto [before, after] = compress::awq_clip(wc.data(), n_out, GGMLType::Q4_0, x, nullptr);
    EXPECT_LE(after, before);
}

// A one-layer Llama without GQA (4 heads, 4 KV heads) so the attn_v -> attn_output pair exists;
// one value channel made large so that scaling it pays.
TEST(Awq, ValueOutputPairIsFoldedOnASyntheticLayer) {
    SynthConfig c;
    c.arch = "llama";
    c.n_layer = 1;
    c.n_embd = 64;
    c.n_head = 4;
    c.n_head_kv = 4;
    c.n_ff = 128;
    c.n_ctx_train = 128;
    c.type = GGMLType::F32;
    c.tokenizer = test::source_dir() + "/tests/data/vocab/ggml-vocab-llama-spm.gguf";
    const std::string raw = test::temp_dir() + "/synth_raw.gguf";
    synthesize(c, raw);
    std::string path = test::temp_dir() + "/synth.gguf";
    {
        const GGUFFile f = GGUFFile::open(raw);
        compress::AwqResult boost;
        const GGUFTensorInfo& v = f.tensor("blk.0.attn_v.weight");
        std::vector<float> vv(reinterpret_cast<const float*>(v.data),
                              reinterpret_cast<const float*>(v.data) + v.nelements());
        for (int64_t k = 0; k < v.ne[0]; ++k) vv[10 * v.ne[0] + k] *= 30.0f;  // output channel 10
        boost.tensors["blk.0.attn_v.weight"] = vv;
        write_scaled(f, boost, path);
    }
    const auto model = Model::load(path);
    const GGUFFile f = GGUFFile::open(path);
    const auto stats = calibrate(model, 4);
    compress::AwqParams p;
    p.n_grid = 10;
    p.clip = false;
    const compress::AwqResult r =
        compress::awq_search(f, stats, [](const std::string&) { return GGMLType::Q4_0; }, p, nullptr);
    bool vo = false;
    for (const auto& l : r.log) {
        std::printf("%s\n", l.c_str());
        vo = vo || (l.find("attn_v->attn_output: alpha") != std::string::npos);
    }
    EXPECT_TRUE(vo);
    ASSERT_EQ(r.tensors.count("blk.0.attn_output.weight"), 1u);
    ASSERT_EQ(r.tensors.count("blk.0.attn_v.weight"), 1u);
    expect_same_function(path, write_scaled(f, r, test::temp_dir() + "/synth_awq.gguf"));
}

TEST(Awq, NeedsTheHessian) {
    const auto model = Model::load(stories_path());
    const GGUFFile f = GGUFFile::open(stories_path());
    compress::CalibOptions co;
    co.text_file = calib_text();
    co.n_samples = 1;
    co.n_ctx = 32;
    compress::ActivationStats stats(compress::ActivationStats::Options{});
    compress::run_calibration(model, compress::load_calibration(*model, co), stats, 1, nullptr);
    stats.finish();
    try {
        compress::awq_search(f, stats, q4_0_or_f16(f), {}, nullptr);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("X^T X"), std::string::npos) << e.what();
    }
}

} // namespace
} // namespace slm
