// passkey_test.cpp - long-context retrieval: prompt construction (length, key depth, question),
// the keys, the answer checker, runs on the bundled stories260K and a tiny Mamba (whose answers
// must equal those of a fresh session, so reusing the KV cache changes nothing), and the CLI.
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/passkey.h"
#include "test_util.h"
#include "tiny_model.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

using namespace slm;

namespace {

std::string stories() { return test::model_path("stories260K/stories260K.gguf"); }

std::shared_ptr<const Model> stories_model() {
    static std::shared_ptr<const Model> m = Model::load(stories());
    return m;
}

size_t count_lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

// The answer a fresh session gives to a prompt, greedily, as run_passkey generates it.
std::string fresh_answer(const std::shared_ptr<const Model>& m, uint32_t n_ctx, const std::vector<int32_t>& tokens,
                         int n_predict) {
    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_threads = 1;
    Session s(m, so);
    GenerateParams gp;
    gp.n_predict = n_predict;
    gp.sampling.temp = 0;
    gp.stop = {"\n"};
    return generate(s, tokens, gp).text;
}

TEST(Passkey, PromptLengthKeyDepthAndQuestion) {
    const Vocab& vocab = stories_model()->vocab();
    // The most one filler sentence takes in this tokenizer bounds how far below the target a
    // prompt may fall. With the key at the end, lines 3 to 6 are the four filler sentences.
    const PasskeyPrompt big = build_passkey_prompt(vocab, 1000, 1.0, "12345");
    ASSERT_GT(big.n_filler, 4u);
    size_t max_sentence = 0;
    {
        size_t start = 0;
        for (int i = 0; i < 6; ++i) {
            const size_t nl = big.text.find('\n', start);
            if (i >= 2) max_sentence = std::max(max_sentence, vocab.tokenize(big.text.substr(start, nl - start + 1), false, false).size());
            start = nl + 1;
        }
    }
    ASSERT_GT(max_sentence, 3u);
    for (uint32_t target : {120u, 248u, 504u, 1000u, 8000u}) {
        for (double depth : {0.0, 0.25, 0.5, 0.75, 1.0}) {
            SCOPED_TRACE(testing::Message() << "target " << target << " depth " << depth);
            const std::string key = passkey_key(7, target, depth, 0);
            const PasskeyPrompt p = build_passkey_prompt(vocab, target, depth, key);
            EXPECT_EQ(p.key, key);
            EXPECT_EQ(p.tokens, vocab.tokenize(p.text, true, false));
            EXPECT_EQ(p.tokens[0], 1);  // BOS
            // Within one filler sentence (plus two tokens for merges at the joins) below the target.
            EXPECT_LE(p.tokens.size(), target);
            EXPECT_GT(p.tokens.size() + max_sentence + 2, target);
            // The key line sits after round(depth * n) filler lines: the instruction's lines
            // (two, the second blank) come first.
            EXPECT_EQ(p.n_filler_before, static_cast<uint32_t>(std::lround(depth * p.n_filler)));
            const std::string line = "The pass key is " + key + ".";
            ASSERT_EQ(p.text.find(line), p.key_offset);
            EXPECT_EQ(p.text.find(line, p.key_offset + 1), std::string::npos);  // stated once
            EXPECT_EQ(count_lines(p.text.substr(0, p.key_offset)), 2 + p.n_filler_before);
            const size_t after = count_lines(p.text.substr(p.key_offset)) - 2;  // key line, question's blank line
            EXPECT_EQ(after, p.n_filler - p.n_filler_before);
            // The question ends the prompt.
            const std::string q = "What is the pass key? The pass key is";
            ASSERT_GE(p.text.size(), q.size());
            EXPECT_EQ(p.text.substr(p.text.size() - q.size()), q);
            if (depth == 0) EXPECT_EQ(p.n_filler_before, 0u);
            if (depth == 1) EXPECT_EQ(p.n_filler_before, p.n_filler);
        }
    }
    // The filler grows with the target.
    EXPECT_GT(build_passkey_prompt(vocab, 504, 0.5, "12345").n_filler, build_passkey_prompt(vocab, 248, 0.5, "12345").n_filler);
}

TEST(Passkey, PromptErrors) {
    const Vocab& vocab = stories_model()->vocab();
    EXPECT_THROW(build_passkey_prompt(vocab, 20, 0.5, "12345"), Error);  // too short for the fixed parts
    EXPECT_THROW(build_passkey_prompt(vocab, 500, 1.5, "12345"), Error);
    EXPECT_THROW(build_passkey_prompt(vocab, 500, -0.1, "12345"), Error);
    EXPECT_THROW(build_passkey_prompt(vocab, 500, 0.5, "1234"), Error);
    EXPECT_THROW(build_passkey_prompt(vocab, 500, 0.5, "1234a"), Error);
}

TEST(Passkey, KeysAreFiveDigitsAndDependOnTheSeed) {
    std::set<std::string> seen;
    int differ = 0;
    for (int t = 0; t < 50; ++t) {
        const std::string a = passkey_key(1234, 256, 0.5, t);
        ASSERT_EQ(a.size(), 5u);
        EXPECT_GE(std::stoi(a), 10000);
        EXPECT_EQ(a, passkey_key(1234, 256, 0.5, t));  // a function of its arguments
        seen.insert(a);
        differ += a != passkey_key(1235, 256, 0.5, t);
    }
    EXPECT_GE(seen.size(), 45u);  // trials get different keys
    EXPECT_GE(differ, 45);        // another seed gives other keys
    EXPECT_NE(passkey_key(1, 256, 0.5, 0), passkey_key(1, 256, 0.25, 0));
    EXPECT_NE(passkey_key(1, 256, 0.5, 0), passkey_key(1, 512, 0.5, 0));
}

TEST(Passkey, AnswerChecker) {
    EXPECT_TRUE(passkey_found(" 48213.", "48213"));
    EXPECT_TRUE(passkey_found("48213", "48213"));
    EXPECT_TRUE(passkey_found("It is 12 and then 48213!", "48213"));
    EXPECT_FALSE(passkey_found(" 48214.", "48213"));
    EXPECT_FALSE(passkey_found(" 148213", "48213"));   // inside a longer number
    EXPECT_FALSE(passkey_found(" 482130", "48213"));
    EXPECT_FALSE(passkey_found(" 4821", "48213"));
    EXPECT_FALSE(passkey_found(" 48 213", "48213"));
    EXPECT_FALSE(passkey_found("", "48213"));
    EXPECT_FALSE(passkey_found(" a big dog", "48213"));
}

TEST(Passkey, RunOnStories260K) {
    SessionOptions so;
    so.n_ctx = 512;
    so.n_threads = 1;
    Session s(stories_model(), so);
    PasskeyParams p;
    p.lengths = {128, 256};
    p.depths = {0, 1};
    p.n_trials = 2;
    p.seed = 99;
    size_t calls = 0;
    const PasskeyResult r = run_passkey(s, p, [&](size_t done, size_t total) {
        ++calls;
        EXPECT_EQ(done, calls);
        EXPECT_EQ(total, 8u);
    });
    EXPECT_EQ(calls, 8u);
    ASSERT_EQ(r.trials.size(), 8u);
    ASSERT_EQ(r.cells.size(), 4u);
    EXPECT_EQ(r.n_ctx, 512u);
    int found = 0;
    uint64_t prompt = 0, evaluated = 0;
    for (size_t i = 0; i < r.trials.size(); ++i) {
        const PasskeyTrial& t = r.trials[i];
        EXPECT_EQ(t.length, p.lengths[i / 4]);
        EXPECT_EQ(t.depth, p.depths[i / 2 % 2]);
        EXPECT_EQ(t.trial, int(i % 2));
        EXPECT_EQ(t.key, passkey_key(99, t.length, t.depth, t.trial));
        EXPECT_LE(t.n_prompt + p.n_predict, t.length);
        EXPECT_EQ(t.found, passkey_found(t.answer, t.key));
        found += t.found;
        prompt += t.n_prompt;
        evaluated += t.n_prompt - t.n_reused;
    }
    for (const PasskeyCell& c : r.cells) EXPECT_EQ(c.n, 2);
    EXPECT_EQ(r.cells[1].length, 128u);
    EXPECT_EQ(r.cells[1].depth, 1.0);
    EXPECT_EQ(r.overall.n, 8);
    EXPECT_EQ(r.overall.n_found, found);
    EXPECT_EQ(r.n_prompt_tokens, prompt);
    EXPECT_EQ(r.n_eval_tokens, evaluated);
    // The second trial of a cell shares the filler before the key with the first.
    EXPECT_GT(r.trials[3].n_reused, 40u);
    EXPECT_LT(r.n_eval_tokens, r.n_prompt_tokens);
    // Reusing the cache gives the answers a fresh session gives.
    for (size_t i : {1u, 3u, 5u, 7u}) {
        const PasskeyTrial& t = r.trials[i];
        ASSERT_GT(t.n_reused, 0u);
        const PasskeyPrompt pp = build_passkey_prompt(stories_model()->vocab(), t.length - p.n_predict, t.depth, t.key);
        EXPECT_EQ(fresh_answer(stories_model(), 512, pp.tokens, p.n_predict), t.answer) << "trial " << i;
    }
    const std::string table = passkey_table(r);
    EXPECT_EQ(table.rfind("| length |     depth 0 |     depth 1 |  all depths |\n", 0), 0u) << table;
    EXPECT_NE(table.find("| 256    |"), std::string::npos) << table;
    EXPECT_NE(table.find(strprintf("(%d of 8 keys retrieved)", found)), std::string::npos) << table;

    // --limit: the first cells only.
    p.limit = 3;
    const PasskeyResult l = run_passkey(s, p);
    ASSERT_EQ(l.trials.size(), 3u);
    EXPECT_EQ(l.cells[0].n, 2);
    EXPECT_EQ(l.cells[1].n, 1);
    EXPECT_EQ(l.cells[2].n, 0);
    EXPECT_EQ(l.overall.n, 3);
    EXPECT_EQ(l.trials[2].answer, r.trials[2].answer);  // the same keys and prompts
    EXPECT_NE(passkey_table(l).find(" - |"), std::string::npos);
}

TEST(Passkey, RunRefusesLengthsBeyondTheContext) {
    SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = 1;
    Session s(stories_model(), so);
    PasskeyParams p;
    p.lengths = {128, 512};
    try {
        run_passkey(s, p);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("length 512 exceeds the context of 256 tokens"), std::string::npos) << e.what();
    }
    EXPECT_EQ(s.n_past(), 0u);  // refused before anything ran
    p.lengths = {8};
    EXPECT_THROW(run_passkey(s, p), Error);  // no room for a prompt before the answer
    p.lengths = {128};
    p.depths = {2};
    EXPECT_THROW(run_passkey(s, p), Error);
}

// A tiny random Mamba: its state cannot be truncated, so each trial starts again from the start.
TEST(Passkey, RecurrentModelReevaluates) {
    test::TinyGGUF g("mamba", 11);
    const int64_t E = 8, Di = 16, S = 4, R = 2, K = 3, V = 512;
    g.u32("context_length", 512);
    g.u32("embedding_length", E);
    g.u32("block_count", 1);
    g.u32("feed_forward_length", 0);
    g.u32("attention.head_count", 0);
    g.f32("attention.layer_norm_rms_epsilon", 1e-5f);
    g.u32("ssm.conv_kernel", K);
    g.u32("ssm.inner_size", Di);
    g.u32("ssm.state_size", S);
    g.u32("ssm.time_step_rank", R);
    g.tensor("token_embd.weight", {E, V}, 0.5f);
    g.tensor("output_norm.weight", {E}, 0.1f, 1.0f);
    g.tensor("blk.0.attn_norm.weight", {E}, 0.1f, 1.0f);
    g.tensor("blk.0.ssm_in.weight", {E, 2 * Di}, 0.4f);
    g.tensor("blk.0.ssm_conv1d.weight", {K, Di}, 0.5f);
    g.tensor("blk.0.ssm_conv1d.bias", {Di}, 0.1f);
    g.tensor("blk.0.ssm_x.weight", {Di, R + 2 * S}, 0.4f);
    g.tensor("blk.0.ssm_dt.weight", {R, Di}, 0.5f);
    g.tensor("blk.0.ssm_dt.bias", {Di}, 0.5f, -1.0f);
    g.tensor("blk.0.ssm_a", {S, Di}, 0.1f, -1.0f);
    g.tensor("blk.0.ssm_d", {Di}, 0.1f, 1.0f);
    g.tensor("blk.0.ssm_out.weight", {Di, E}, 0.4f);
    auto m = Model::load(g.write("tiny_mamba_passkey.gguf"));
    SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = 1;
    Session s(m, so);
    ASSERT_TRUE(s.recurrent());
    PasskeyParams p;
    p.lengths = {160};
    p.depths = {0.5};
    p.n_trials = 3;
    const PasskeyResult r = run_passkey(s, p);
    ASSERT_EQ(r.trials.size(), 3u);
    EXPECT_EQ(r.n_eval_tokens, r.n_prompt_tokens);
    for (const PasskeyTrial& t : r.trials) {
        EXPECT_EQ(t.n_reused, 0u);
        const PasskeyPrompt pp = build_passkey_prompt(m->vocab(), t.length - p.n_predict, t.depth, t.key);
        EXPECT_EQ(fresh_answer(m, 256, pp.tokens, p.n_predict), t.answer);
    }
}

TEST(Passkey, Cli) {
    const std::string out = test::temp_dir() + "/passkey.json";
    test::RunResult r = test::run_cli({"eval", "passkey", "-m", stories(), "--ctx", "512", "--lengths", "128,256",
                                       "--depths", "0,0.5", "--trials", "2", "--seed", "5", "-t", "1", "--json", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("| length |     depth 0 |   depth 0.5 |  all depths |"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("of 8 keys retrieved"), std::string::npos) << r.out;
    const nlohmann::json j = nlohmann::json::parse(test::read_text(out));
    EXPECT_EQ(j["task"], "passkey");
    EXPECT_EQ(j["n_ctx"], 256);  // the cache is sized to the longest length
    ASSERT_EQ(j["trials"].size(), 8u);
    ASSERT_EQ(j["cells"].size(), 4u);
    EXPECT_EQ(j["overall"]["n"], 8);
    EXPECT_EQ(j["trials"][5]["key"], passkey_key(5, 256, 0, 1));
    int found = 0;
    for (const auto& t : j["trials"]) {
        EXPECT_EQ(t["found"].get<bool>(), passkey_found(t["answer"].get<std::string>(), t["key"].get<std::string>()));
        found += t["found"].get<bool>();
    }
    EXPECT_EQ(j["overall"]["n_found"], found);

    // Lengths beyond --ctx, or beyond the model's own context (128 tokens) without --ctx.
    r = test::run_cli({"eval", "passkey", "-m", stories(), "--ctx", "512", "--lengths", "128,1024"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("length 1024 exceeds the context of 512 tokens (--ctx)"), std::string::npos) << r.err;
    r = test::run_cli({"eval", "passkey", "-m", stories(), "--lengths", "256"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("length 256 exceeds the context of 128 tokens (the model's training context"), std::string::npos) << r.err;
    r = test::run_cli({"eval", "passkey", "-m", stories(), "--depths", "0,1.5"});
    EXPECT_NE(r.exit_code, 0);
    r = test::run_cli({"eval", "passkey", "-m", test::temp_dir() + "/missing.gguf"});
    EXPECT_EQ(r.exit_code, 1);
}

} // namespace
