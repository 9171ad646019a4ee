// BatchSession: slots decoded together give each slot the logits a lone Session gives it.
#include "slm/batch.h"
#include "slm/error.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

using namespace slm;

namespace {

std::shared_ptr<const Model> stories() {
    static auto m = Model::load(test::model_path("stories260K/stories260K.gguf"));
    return m;
}

std::vector<int32_t> tok(const char* s) { return stories()->vocab().tokenize(s, true, true); }

int32_t argmax(const float* l, size_t n) { return static_cast<int32_t>(std::max_element(l, l + n) - l); }

float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

// Three sequences of different lengths joining and leaving at different steps, greedy-decoded in
// one BatchSession, against each decoded alone in a Session: the same tokens, logits within 1e-4
// of the largest logit (sums may be taken in another order when slots share a pass).
TEST(BatchSession, SlotsMatchLoneSessions) {
    const auto m = stories();
    const size_t nv = m->hparams().n_vocab;
    const std::vector<std::vector<int32_t>> prompts = {tok("Once upon a time"), tok("Tom had a big red ball. He liked to"),
                                                       tok("The cat")};
    const int start[3] = {0, 2, 5};  // the step at which each sequence joins
    const int n_gen = 12;
    BatchOptions bo;
    bo.n_slots = 4;
    bo.n_ctx_slot = 128;
    BatchSession b(m, bo);
    EXPECT_EQ(b.n_slots(), 4u);
    EXPECT_EQ(b.n_ctx_slot(), 128u);
    std::vector<std::vector<int32_t>> out(3);
    std::vector<std::vector<std::vector<float>>> rows(3);
    for (int step = 0; step < 5 + n_gen; ++step) {
        std::vector<BatchInput> in;
        std::vector<int> who;
        std::vector<int32_t> last(3);
        for (int s = 0; s < 3; ++s) {
            const int k = step - start[s];
            if (k < 0 || k >= n_gen) continue;
            const uint32_t slot = static_cast<uint32_t>(s == 2 ? 3 : s);  // slot 2 stays unused
            if (k == 0) {
                in.push_back({slot, prompts[s]});
            } else {
                last[s] = out[s].back();
                in.push_back({slot, {&last[s], 1}});
            }
            who.push_back(s);
        }
        if (in.empty()) continue;
        b.decode(in);
        for (size_t i = 0; i < in.size(); ++i) {
            const int s = who[i];
            out[s].push_back(argmax(b.logits(i), nv));
            rows[s].emplace_back(b.logits(i), b.logits(i) + nv);
        }
    }
    for (int s = 0; s < 3; ++s) {
        SessionOptions so;
        so.n_ctx = 128;
        Session lone(m, so);
        const float* l = lone.eval(prompts[s]);
        ASSERT_EQ(out[s].size(), size_t(n_gen));
        for (int k = 0; k < n_gen; ++k) {
            const float scale = std::fabs(*std::max_element(l, l + nv));
            EXPECT_LE(max_abs_diff(l, rows[s][k].data(), nv), 1e-4f * std::max(1.0f, scale)) << "sequence " << s << " step " << k;
            ASSERT_EQ(argmax(l, nv), out[s][k]) << "sequence " << s << " step " << k;
            l = lone.eval({&out[s][k], 1});
        }
    }
    EXPECT_EQ(b.n_past(0), prompts[0].size() + n_gen - 1);
    EXPECT_EQ(b.n_past(2), 0u);
    b.clear(0);
    EXPECT_EQ(b.n_past(0), 0u);
    b.truncate(1, 3);
    EXPECT_EQ(b.n_past(1), 3u);
}

TEST(BatchSession, BadInputsChangeNothing) {
    BatchOptions bo;
    bo.n_slots = 2;
    bo.n_ctx_slot = 16;
    BatchSession b(stories(), bo);
    const auto p = tok("Once upon a time");
    std::vector<BatchInput> ok = {{0, p}};
    b.decode(ok);
    const uint32_t before = b.n_past(0);
    const std::vector<int32_t> bad_id = {1, -3};
    const std::vector<int32_t> long_input(20, 1);
    const std::vector<std::vector<BatchInput>> bad = {
        {{2, p}},                        // no such slot
        {{1, p}, {1, p}},                // slot twice
        {{1, {}}},                       // empty
        {{0, p}, {1, bad_id}},           // token outside the vocabulary
        {{1, long_input}},               // overflows the slot
    };
    for (const auto& in : bad) {
        EXPECT_THROW(b.decode(in), Error);
        EXPECT_EQ(b.n_past(0), before);
        EXPECT_EQ(b.n_past(1), 0u);
    }
    EXPECT_THROW(BatchSession(stories(), BatchOptions{0, 16}), Error);
    EXPECT_THROW(BatchSession(stories(), BatchOptions{257, 16}), Error);
    EXPECT_THROW(b.logits(1), Error);
}

} // namespace
