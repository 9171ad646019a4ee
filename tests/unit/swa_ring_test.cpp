// Sliding-window layers kept as rings (SessionOptions::swa_full false, the default): a Gemma 2/3
// session whose local layers hold only n_swa + n_batch positions gives bit for bit the logits of
// the full cache (swa_full true) over a context many times the ring, through prompts split into
// chunks, single tokens, truncation and context shifts; BatchSession slots likewise; truncating
// back past what the rings still hold is refused (can_truncate says so beforehand).
#include "slm/batch.h"
#include "slm/error.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace slm;

namespace {

// The reference models have n_swa 8 on their local layers (gemma2: layer 0 of 2; gemma3: 5 of 6).
std::shared_ptr<const Model> ref_model(const char* arch) {
    return Model::load(test::shared_path(std::string("reference/archs/") + arch + "/" + arch + ".f32.gguf"));
}

// A fixed pseudo-random token stream (no BOS games: any ids of the vocabulary).
std::vector<int32_t> stream(size_t n, uint32_t n_vocab, uint32_t seed) {
    std::vector<int32_t> t(n);
    uint32_t x = seed;
    for (auto& v : t) {
        x = x * 1664525u + 1013904223u;
        v = static_cast<int32_t>((x >> 8) % n_vocab);
    }
    return t;
}

bool same(std::span<const float> a, std::span<const float> b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Pair {
    Session ring, full;
    Pair(std::shared_ptr<const Model> m, SessionOptions so) : ring(m, so), full(m, with_full(so)) {}
    static SessionOptions with_full(SessionOptions so) {
        so.swa_full = true;
        return so;
    }
    // Evaluates the same tokens in both; true when every logit row is identical.
    bool eval(std::span<const int32_t> t, bool all = false) {
        ring.eval(t, all);
        full.eval(t, all);
        return same(ring.logits(), full.logits());
    }
};

SessionOptions opts(GGMLType kv) {
    SessionOptions so;
    so.n_ctx = 256;
    so.n_batch = 16;  // ring of 8 + 16 = 24 rows per local layer
    so.kv_type = kv;
    so.n_threads = 2;
    return so;
}

// 40 prompt tokens (chunks of 16, all logits) then 200 single tokens, past the context's end
// with a context shift: identical logits at every step, on every cache type.
TEST(SwaRing, SessionMatchesFullCache) {
    SLM_REQUIRE_SHARED();
    for (const char* arch : {"gemma2", "gemma3"}) {
        const auto m = ref_model(arch);
        const HParams& hp = m->hparams();
        ASSERT_EQ(hp.n_swa, 8u);
        for (GGMLType kv : {GGMLType::F16, GGMLType::F32, GGMLType::Q8_0, GGMLType::Q4_0}) {
            SCOPED_TRACE(std::string(arch) + " " + type_name(kv));
            Pair p(m, opts(kv));
            // The cache: local layers 24 rows, global ones 256.
            size_t row_bytes = 0, expect_ring = 0;
            for (uint32_t il = 0; il < hp.n_layer; ++il) {
                const size_t b = row_size(kv, hp.n_embd_k_gqa(il)) + row_size(kv, hp.n_embd_v_gqa(il));
                row_bytes += b;
                expect_ring += b * (hp.is_swa(il) ? 24 : 256);
            }
            EXPECT_EQ(p.full.cache_bytes(), row_bytes * 256);
            EXPECT_EQ(p.ring.cache_bytes(), expect_ring);
            EXPECT_LT(p.ring.cache_bytes(), p.full.cache_bytes());

            const auto toks = stream(400, hp.n_vocab, 7);
            ASSERT_TRUE(p.eval(std::span(toks).first(40), true));
            size_t i = 40;
            int n_shift = 0;
            for (int step = 0; step < 260; ++step, ++i) {
                if (p.ring.n_past() == p.ring.n_ctx()) {  // as slm::generate's context shift: keep 4
                    const uint32_t d = (p.ring.n_past() - 4) / 2;
                    p.ring.context_shift(4, d);
                    p.full.context_shift(4, d);
                    ++n_shift;
                }
                ASSERT_TRUE(p.eval(std::span(toks).subspan(i, 1))) << "step " << step << " n_past " << p.ring.n_past();
            }
            EXPECT_EQ(n_shift, 1);
        }
    }
}

// Truncation: within the last n_batch or so positions it works and gives the full cache's
// logits; further back the ring has lost the window, so can_truncate is false and truncate
// throws, naming swa_full, while the full cache truncates anywhere. reset() always works.
TEST(SwaRing, TruncateWithinTheRingOnly) {
    SLM_REQUIRE_SHARED();
    const auto m = ref_model("gemma2");
    const auto toks = stream(200, m->hparams().n_vocab, 3);
    Pair p(m, opts(GGMLType::F16));
    ASSERT_TRUE(p.eval(std::span(toks).first(100)));
    // Positions 76..99 are in the 24-row ring; a query at n needs n - 7..n - 1.
    EXPECT_TRUE(p.ring.can_truncate(83));
    EXPECT_FALSE(p.ring.can_truncate(82));
    EXPECT_FALSE(p.ring.can_truncate(50));
    EXPECT_TRUE(p.ring.can_truncate(0));
    EXPECT_TRUE(p.ring.can_truncate(100));
    EXPECT_FALSE(p.ring.can_truncate(101));
    EXPECT_TRUE(p.full.can_truncate(50));
    try {
        p.ring.truncate(50);
        ADD_FAILURE() << "truncating a ring past its window was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("swa_full"), std::string::npos) << e.what();
    }
    EXPECT_EQ(p.ring.n_past(), 100u);  // unchanged by the refusal
    p.ring.truncate(85);
    p.full.truncate(85);
    ASSERT_TRUE(p.eval(std::span(toks).subspan(120, 20), true));  // another continuation
    // Truncated (or reset) and evaluated again, the ring is as good as new.
    p.ring.reset();
    p.full.truncate(0);
    ASSERT_TRUE(p.eval(std::span(toks).first(60), true));
}

// BatchSession: slots with rings against slots with the whole context, prompts and single tokens
// mixed in passes of n_batch 16 over 3 slots, one slot truncated and one shifted on the way:
// identical logits; and the rings' share of cache_bytes.
TEST(SwaRing, BatchSlotsMatchFullCache) {
    SLM_REQUIRE_SHARED();
    for (const char* arch : {"gemma2", "gemma3"}) {
        SCOPED_TRACE(arch);
        const auto m = ref_model(arch);
        const HParams& hp = m->hparams();
        const size_t nv = hp.n_vocab;
        BatchOptions bo;
        bo.n_slots = 3;
        bo.n_ctx_slot = 128;
        bo.n_batch = 16;
        bo.n_threads = 2;
        BatchSession ring(m, bo);
        bo.swa_full = true;
        BatchSession full(m, bo);
        ASSERT_TRUE(ring.batched());
        size_t expect = 0;
        for (uint32_t il = 0; il < hp.n_layer; ++il)
            expect += (row_size(GGMLType::F16, hp.n_embd_k_gqa(il)) + row_size(GGMLType::F16, hp.n_embd_v_gqa(il))) *
                      (hp.is_swa(il) ? 24 : 128) * 3;
        EXPECT_EQ(ring.cache_bytes(), expect);
        EXPECT_LT(ring.cache_bytes(), full.cache_bytes());

        const auto toks = stream(2000, hp.n_vocab, 11);
        size_t next = 0;
        auto take = [&](size_t n) { return std::span(toks).subspan((next += n) - n, n); };
        const size_t prompt_len[3] = {20, 5, 37};
        for (int step = 0; step < 150; ++step) {
            std::vector<BatchInput> in;
            for (uint32_t s = 0; s < 3; ++s) {
                if (step < int(s) * 3) continue;  // slots join at steps 0, 3, 6
                if (ring.n_past(s) + 1 >= bo.n_ctx_slot) {
                    ring.context_shift(s, 2, 60);
                    full.context_shift(s, 2, 60);
                }
                if (step == 70 && s == 1) {  // roll slot 1 back 10 positions (inside its ring)
                    const uint32_t n = ring.n_past(s) - 10;
                    ASSERT_TRUE(ring.can_truncate(s, n));
                    ASSERT_FALSE(ring.can_truncate(s, n - 20));
                    EXPECT_THROW(ring.truncate(s, n - 20), Error);
                    ring.truncate(s, n);
                    full.truncate(s, n);
                }
                in.push_back({s, step == int(s) * 3 ? take(prompt_len[s]) : take(1)});
            }
            ring.decode(in);
            full.decode(in);
            for (size_t i = 0; i < in.size(); ++i)
                ASSERT_TRUE(same({ring.logits(i), nv}, {full.logits(i), nv})) << "step " << step << " input " << i;
        }
        for (uint32_t s = 0; s < 3; ++s) EXPECT_EQ(ring.n_past(s), full.n_past(s));
    }
}

// A context no longer than n_swa + n_batch needs no ring: the cache is the full one.
TEST(SwaRing, ShortContextKeepsFullCache) {
    SLM_REQUIRE_SHARED();
    const auto m = ref_model("gemma2");
    SessionOptions so = opts(GGMLType::F16);
    so.n_ctx = 24;
    Session a(m, so);
    so.swa_full = true;
    Session b(m, so);
    EXPECT_EQ(a.cache_bytes(), b.cache_bytes());
}

} // namespace
