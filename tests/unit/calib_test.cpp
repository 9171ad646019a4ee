// Calibration data and activation statistics (src/compress/calib.h).
#include "compress/calib.h"

#include "core/thread_pool.h"
#include "slm/error.h"
#include "calib_text.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>

namespace slm {
namespace {

std::shared_ptr<const Model> stories() { return Model::load(test::model_path("stories260K/stories260K.gguf")); }
using test::calib_text;

// Keeps every input a weight saw, to check the running statistics against.
struct Recorder : MatmulObserver {
    std::string weight;
    std::vector<float> rows;
    int64_t n_in = 0;
    void on_matmul(const MatmulEvent& e) override {
        for (int i = 0; i < e.n_weights; ++i)
            if (*e.names[i] == weight) {
                n_in = e.n_in;
                rows.insert(rows.end(), e.x, e.x + static_cast<size_t>(e.n_tokens) * e.n_in);
            }
    }
};

struct Both : MatmulObserver {
    MatmulObserver* a;
    MatmulObserver* b;
    void on_matmul(const MatmulEvent& e) override {
        a->on_matmul(e);
        b->on_matmul(e);
    }
};

TEST(Calib, SamplesAreWindowsOfTheTokenizedText) {
    auto m = stories();
    compress::CalibOptions o;
    o.text_file = calib_text();
    o.n_samples = 5;
    o.n_ctx = 64;
    const compress::CalibSet set = compress::load_calibration(*m, o);
    ASSERT_EQ(set.samples.size(), 5u);
    EXPECT_GT(set.n_available, 5u);
    const std::vector<int32_t> all = m->vocab().tokenize(test::read_text(calib_text()), false, false);
    for (const auto& s : set.samples) {
        ASSERT_EQ(s.size(), 64u);
        EXPECT_EQ(s[0], m->vocab().bos());
    }
    EXPECT_TRUE(std::equal(set.samples[0].begin() + 1, set.samples[0].end(), all.begin()));
    // The last sample is the last whole window.
    const size_t w = set.n_available - 1;
    EXPECT_TRUE(std::equal(set.samples[4].begin() + 1, set.samples[4].end(), all.begin() + static_cast<ptrdiff_t>(w * 63)));
    EXPECT_EQ(set.n_tokens, 5u * 64u);
}

TEST(Calib, BadSourcesAreRefused) {
    auto m = stories();
    const std::string dir = test::temp_dir();
    compress::CalibOptions o;
    EXPECT_THROW(compress::load_calibration(*m, o), Error);  // no source
    o.text_file = dir + "/missing.txt";
    EXPECT_THROW(compress::load_calibration(*m, o), Error);
    {
        std::ofstream(dir + "/bad.txt") << "abc\xff\xfe def";
    }
    o.text_file = dir + "/bad.txt";
    try {
        compress::load_calibration(*m, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("bad.txt"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("UTF-8"), std::string::npos) << e.what();
    }
    {
        std::ofstream(dir + "/short.txt") << "Once upon a time";
    }
    o.text_file = dir + "/short.txt";
    EXPECT_THROW(compress::load_calibration(*m, o), Error);  // shorter than one sample
    o.text_file.clear();
    {
        std::ofstream(dir + "/ids.txt") << "1 2 3 999999";
    }
    o.token_file = dir + "/ids.txt";
    o.n_ctx = 2;
    EXPECT_THROW(compress::load_calibration(*m, o), Error);  // id outside the vocabulary
    {
        std::ofstream(dir + "/ids2.txt") << "5 6 7 8 9 10\n11";
    }
    o.token_file = dir + "/ids2.txt";
    o.n_ctx = 3;
    const auto set = compress::load_calibration(*m, o);
    ASSERT_EQ(set.n_available, 3u);  // windows of 2 ids after BOS
    EXPECT_EQ(set.samples.back(), (std::vector<int32_t>{1, 9, 10}));

    // llm.c token shards: a 256 x int32 header (magic, version 1, count), then uint16 ids.
    auto llmc = [&](const std::string& name, int32_t version, int32_t count, std::vector<uint16_t> ids,
                    size_t header_bytes = 1024) {
        std::vector<uint8_t> bytes(1024, 0);
        const int32_t hdr[3] = {20240520, version, count};
        std::memcpy(bytes.data(), hdr, sizeof hdr);
        bytes.resize(header_bytes);
        for (uint16_t id : ids) {
            bytes.push_back(static_cast<uint8_t>(id & 0xFF));
            bytes.push_back(static_cast<uint8_t>(id >> 8));
        }
        test::write_file(dir + "/" + name, bytes);
        return dir + "/" + name;
    };
    o.token_file = llmc("good.bin", 1, 6, {5, 6, 7, 8, 9, 10});
    const auto shard = compress::load_calibration(*m, o);
    ASSERT_EQ(shard.n_available, 3u);
    EXPECT_EQ(shard.samples[1], (std::vector<int32_t>{1, 7, 8}));
    for (const std::string& bad : {llmc("short_header.bin", 1, 0, {}, 100),     // truncated header
                                   llmc("version.bin", 2, 2, {5, 6}),             // unknown version
                                   llmc("count.bin", 1, 1000000, {5, 6}),         // count past the end
                                   llmc("negative.bin", 1, -4, {5, 6}),           // negative count
                                   llmc("oov.bin", 1, 2, {5, 60000})}) {          // id outside the vocab
        o.token_file = bad;
        try {
            compress::load_calibration(*m, o);
            ADD_FAILURE() << bad << " was accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
}

TEST(Calib, StatisticsMatchTheRecordedInputs) {
    auto m = stories();
    compress::CalibOptions o;
    o.text_file = calib_text();
    o.n_samples = 3;
    o.n_ctx = 100;  // windows that are not multiples of the Hessian's 64-row blocks
    const compress::CalibSet set = compress::load_calibration(*m, o);
    ThreadPool pool(2);
    compress::ActivationStats stats({.hessian = true, .pool = &pool});
    Recorder rec;
    rec.weight = "blk.2.ffn_down.weight";
    Both both;
    both.a = &stats;
    both.b = &rec;
    compress::run_calibration(m, set, both, 1, nullptr);
    stats.finish();

    // Q, K and V read one input; output.weight saw every token (all logits).
    const compress::InputStats* q = stats.find("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr);
    EXPECT_EQ(q, stats.find("blk.0.attn_v.weight"));
    EXPECT_EQ(q->n_rows, set.n_tokens);
    ASSERT_NE(stats.find("output.weight"), nullptr);
    EXPECT_EQ(stats.find("output.weight")->n_rows, set.n_tokens);

    const compress::InputStats* d = stats.find(rec.weight);
    ASSERT_NE(d, nullptr);
    ASSERT_EQ(rec.n_in, 172);
    ASSERT_EQ(d->n_in, 172);
    const size_t n_rows = rec.rows.size() / 172;
    ASSERT_EQ(d->n_rows, n_rows);
    for (int64_t i = 0; i < 172; i += 7) {
        for (int64_t j = 0; j < 172; j += 5) {
            double ref = 0;
            for (size_t t = 0; t < n_rows; ++t) ref += double(rec.rows[t * 172 + i]) * rec.rows[t * 172 + j];
            EXPECT_NEAR(d->hessian[i * 172 + j], ref, 1e-4 * (std::fabs(ref) + 1)) << i << "," << j;
            EXPECT_EQ(d->hessian[i * 172 + j], d->hessian[j * 172 + i]);
        }
        double s2 = 0, sa = 0;
        for (size_t t = 0; t < n_rows; ++t) {
            s2 += double(rec.rows[t * 172 + i]) * rec.rows[t * 172 + i];
            sa += std::fabs(double(rec.rows[t * 172 + i]));
        }
        EXPECT_NEAR(d->sum_x2[i], s2, 1e-9 * (s2 + 1));
        EXPECT_NEAR(d->sum_abs[i], sa, 1e-9 * (sa + 1));
    }
}

TEST(Calib, ObservingDoesNotChangeTheLogits) {
    auto m = stories();
    const std::vector<int32_t> toks = m->vocab().tokenize("Once upon a time, there was a cat.", true, false);
    Session a(m, {});
    const float* la = a.eval(toks);
    std::vector<float> ref(la, la + m->hparams().n_vocab);
    Session b(m, {});
    compress::ActivationStats stats({});
    b.set_matmul_observer(&stats);
    const float* lb = b.eval(toks);
    for (uint32_t i = 0; i < m->hparams().n_vocab; ++i) ASSERT_EQ(ref[i], lb[i]);
    EXPECT_NE(stats.find("blk.4.ffn_up.weight"), nullptr);
}

} // namespace
} // namespace slm
