// BatchSession: slots decoded together give each slot the logits a lone Session gives it.
#include "slm/batch.h"
#include "slm/error.h"
#include "slm/model.h"
#include "slm/synth.h"
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

// A schedule of inputs for up to three slots: prompts, single tokens and short runs mixed in one
// pass, a slot joining late, one cleared and refilled, one truncated. Every input's logits are
// checked against a lone Session fed the same chunks; tolerance relative to the largest logit
// (the same sums, possibly taken in another order when the pass holds more tokens).
void check_against_lone(std::shared_ptr<const Model> m, const BatchOptions& bo, bool expect_batched, float tol = 1e-4f) {
    const HParams& hp = m->hparams();
    const size_t nv = hp.n_vocab;
    BatchSession b(m, bo);
    EXPECT_EQ(b.batched(), expect_batched) << hp.arch;
    SessionOptions so;
    so.n_ctx = bo.n_ctx_slot;
    so.kv_type = bo.kv_type;
    so.n_threads = bo.n_threads;
    std::vector<std::unique_ptr<Session>> lone;
    for (uint32_t s = 0; s < bo.n_slots; ++s) lone.push_back(std::make_unique<Session>(m, so));
    uint64_t rng = 12345;
    auto next_tok = [&] {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        return static_cast<int32_t>((rng >> 33) % nv);
    };
    // step -> {slot, n_tokens}; slot 1's 40-token prompt rides with the others' single tokens.
    const std::vector<std::vector<std::pair<uint32_t, int>>> plan = {
        {{0, 9}},
        {{0, 1}, {1, 40}},
        {{1, 1}, {0, 1}, {2, 3}},
        {{0, 3}, {1, 1}, {2, 1}},
        {{2, 17}, {0, 1}},
        {{0, 1}, {1, 1}, {2, 1}},
        {{1, 2}, {2, 1}},  // then slot 0 is cleared and slot 1 truncated (below)
        {{0, 5}, {1, 1}, {2, 1}},
        {{0, 1}, {1, 1}, {2, 1}},
    };
    for (size_t step = 0; step < plan.size(); ++step) {
        if (step == 7) {
            b.clear(0);
            lone[0]->reset();
            const uint32_t n = lone[1]->recurrent() ? 0 : b.n_past(1) - 4;  // a recurrent state only resets
            b.truncate(1, n);
            lone[1]->truncate(n);
        }
        std::vector<std::vector<int32_t>> toks;
        std::vector<BatchInput> in;
        for (auto [slot, n] : plan[step]) {
            if (slot >= bo.n_slots) continue;
            toks.emplace_back();
            for (int i = 0; i < n; ++i) toks.back().push_back(next_tok());
        }
        size_t k = 0;
        for (auto [slot, n] : plan[step])
            if (slot < bo.n_slots) in.push_back({slot, toks[k++]});
        b.decode(in);
        for (size_t i = 0; i < in.size(); ++i) {
            const float* want = lone[in[i].slot]->eval(in[i].tokens);
            const float scale = std::fabs(*std::max_element(want, want + nv));
            ASSERT_LE(max_abs_diff(want, b.logits(i), nv), tol * std::max(1.0f, scale))
                << hp.arch << " step " << step << " input " << i << " slot " << in[i].slot;
            EXPECT_EQ(b.n_past(in[i].slot), lone[in[i].slot]->n_past());
        }
    }
}

TEST(BatchSession, SinglePassStories) {
    BatchOptions bo;
    bo.n_slots = 3;
    bo.n_ctx_slot = 96;
    check_against_lone(stories(), bo, true);
    bo.n_batch = 5;  // passes split into chunks, some holding no input's last token
    check_against_lone(stories(), bo, true);
    bo.kv_type = GGMLType::F32;
    bo.n_batch = 512;
    check_against_lone(stories(), bo, true);
}

// The small reference models of the other architectures (F32 weights): GQA llama, qwen2 (biases),
// qwen3, phi3, qwen2moe, gemma2 / gemma3 (sliding-window layers, soft-caps) batched; mamba and
// jamba (recurrent) one slot after the other.
TEST(BatchSession, SinglePassOtherArchitectures) {
    SLM_REQUIRE_SHARED();
    for (const char* a : {"llama", "qwen2", "qwen3", "phi3", "qwen2moe", "gemma2", "gemma3", "mamba", "jamba"}) {
        auto m = Model::load(test::shared_path(std::string("reference/archs/") + a + "/" + a + ".f32.gguf"));
        const bool rec = std::string(a) == "mamba" || std::string(a) == "jamba";
        BatchOptions bo;
        bo.n_slots = 3;
        bo.n_ctx_slot = 96;
        bo.n_batch = 16;
        SCOPED_TRACE(std::string(a) + " n_swa " + std::to_string(m->hparams().n_swa));
        for (GGMLType kv : {GGMLType::F16, GGMLType::F32, GGMLType::Q8_0, GGMLType::Q4_0}) {
            SCOPED_TRACE(type_name(kv));
            bo.kv_type = kv;
            check_against_lone(m, bo, !rec);
        }
    }
}

// The architectures slm synth writes that have no reference model here: gemma (GeGLU, NeoX
// RoPE), granite (multipliers), olmoe and phimoe (mixtures of experts), tiny random shapes.
TEST(BatchSession, SinglePassSynthArchitectures) {
    for (const char* a : {"gemma", "granite", "olmoe", "phimoe"}) {
        SynthConfig c;
        c.arch = a;
        c.n_embd = 128;
        c.n_layer = 2;
        c.n_head = 4;
        c.n_head_kv = 2;
        c.head_dim = 32;
        c.n_ff = 128;
        c.n_ctx_train = 128;
        c.tied_embeddings = true;
        c.type = GGMLType::F32;
        c.pure = true;
        if (std::string(a) == "olmoe" || std::string(a) == "phimoe") c.n_expert = 4, c.n_expert_used = 2, c.tied_embeddings = false;
        if (std::string(a) == "granite") c.embedding_scale = 12, c.residual_scale = 0.22f, c.attention_scale = 0.03f, c.logit_scale = 8;
        c.tokenizer = test::model_path("stories260K/stories260K.gguf");
        const std::string path = test::temp_dir() + "/batch-" + a + ".gguf";
        synthesize(c, path);
        auto m = Model::load(path);
        SCOPED_TRACE(a);
        BatchOptions bo;
        bo.n_slots = 3;
        bo.n_ctx_slot = 96;
        bo.n_batch = 16;
        for (GGMLType kv : {GGMLType::F16, GGMLType::Q8_0}) {
            bo.kv_type = kv;
            check_against_lone(m, bo, true);
        }
    }
}

// all_logits: every row of an input equals a lone Session's logits after the same tokens, next
// to inputs that keep only their last row, with passes split into chunks (n_batch 5) and a slot
// that already holds tokens; logits(i) stays the last row, logits(i, j) of a last-row-only input
// refuses any j but the last. Recurrent models (one Session per slot) too.
TEST(BatchSession, AllLogitsRowsMatchLoneSession) {
    std::vector<std::shared_ptr<const Model>> models = {stories()};
    if (test::shared_available()) models.push_back(Model::load(test::shared_path("reference/archs/mamba/mamba.f32.gguf")));
    for (const auto& m : models) {
        SCOPED_TRACE(m->hparams().arch);
        const size_t nv = m->hparams().n_vocab;
        const auto a = tok("Once upon a time there was"), b = tok("The cat sat on the"), c = tok("Tom");
        for (uint32_t n_batch : {512u, 5u}) {
            BatchOptions bo;
            bo.n_slots = 3;
            bo.n_ctx_slot = 64;
            bo.n_batch = n_batch;
            BatchSession bs(m, bo);
            bs.decode(std::vector<BatchInput>{{2, c}});  // slot 2 holds c before its block
            const std::vector<BatchInput> in = {{0, a, true}, {1, b, false}, {2, a, true}};
            bs.decode(in);
            const std::vector<std::vector<int32_t>> before = {{}, {}, c};
            for (size_t i = 0; i < in.size(); ++i) {
                SessionOptions so;
                so.n_ctx = 64;
                Session lone(m, so);
                if (!before[i].empty()) lone.eval(before[i]);
                lone.eval(in[i].tokens, true);
                const float* rows = lone.logits().data();
                for (size_t j = 0; j < in[i].tokens.size(); ++j) {
                    const bool kept = in[i].all_logits || j + 1 == in[i].tokens.size();
                    if (!kept) {
                        EXPECT_THROW(bs.logits(i, j), Error);
                        continue;
                    }
                    const float* want = rows + j * nv;
                    const float scale = std::fabs(*std::max_element(want, want + nv));
                    EXPECT_LE(max_abs_diff(want, bs.logits(i, j), nv), 1e-4f * std::max(1.0f, scale))
                        << "input " << i << " token " << j << " n_batch " << n_batch;
                    EXPECT_EQ(argmax(want, nv), argmax(bs.logits(i, j), nv));
                }
                EXPECT_EQ(bs.logits(i), bs.logits(i, in[i].tokens.size() - 1));
                EXPECT_THROW(bs.logits(i, in[i].tokens.size()), Error);
            }
            EXPECT_EQ(bs.n_past(2), c.size() + a.size());
            EXPECT_THROW(bs.logits(3, 0), Error);
        }
    }
}

// Quantized caches are stored per head in blocks of 32: stories260K's heads of 8 are refused,
// naming the type and the head size; the cache shrinks as the type says.
TEST(BatchSession, QuantizedCacheNeedsWholeBlocks) {
    BatchOptions bo;
    bo.n_slots = 2;
    bo.n_ctx_slot = 32;
    bo.kv_type = GGMLType::Q8_0;
    try {
        BatchSession b(stories(), bo);
        ADD_FAILURE() << "a Q8_0 cache with heads of 8 was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("Q8_0"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("multiples of 32"), std::string::npos) << e.what();
    }
    SessionOptions so;
    so.kv_type = GGMLType::Q4_0;
    EXPECT_THROW(Session(stories(), so), Error);
    SLM_REQUIRE_SHARED();
    auto m = Model::load(test::shared_path("reference/archs/llama/llama.f32.gguf"));
    size_t bytes[3];
    int i = 0;
    for (GGMLType kv : {GGMLType::F16, GGMLType::Q8_0, GGMLType::Q4_0}) {
        bo.kv_type = kv;
        bytes[i++] = BatchSession(m, bo).cache_bytes();
    }
    // Per 32 values: 64 bytes (F16), 34 (Q8_0), 18 (Q4_0).
    EXPECT_EQ(bytes[0] * 34, bytes[1] * 64);
    EXPECT_EQ(bytes[0] * 18, bytes[2] * 64);
}

} // namespace
