// slm serve with speculative decoding (a draft model, prompt lookup) on loopback: greedy answers
// of concurrent clients equal the plain server's (max_tokens and stop strings ending requests
// inside drafted blocks), logprobs are the target's, the draft counters of /metrics move, seeded
// sampling with penalties runs to max_tokens, and recurrent models and bad options are refused.
#include "slm/error.h"
#include "slm/model.h"
#include "slm/quantize.h"
#include "slm/serve.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <thread>

using namespace slm;
using json = nlohmann::json;

namespace {

std::shared_ptr<const Model> stories() {
    static auto m = Model::load(test::model_path("stories260K/stories260K.gguf"));
    return m;
}

// A Q8_0 copy of stories260K: the same vocabulary, nearly the same predictions.
std::shared_ptr<const Model> stories_q8() {
    static auto m = [] {
        const std::string path = test::temp_dir() + "/stories-q8_0.gguf";
        QuantizeParams qp;
        qp.type = "Q8_0";
        quantize_model(test::model_path("stories260K/stories260K.gguf"), path, qp);
        return Model::load(path);
    }();
    return m;
}

ServeOptions options() {
    ServeOptions o;
    o.model = stories();
    o.model_path = test::model_path("stories260K/stories260K.gguf");
    o.port = 0;
    o.n_parallel = 4;
    o.n_ctx = 256;
    o.n_threads = 1;
    return o;
}

struct Running {
    std::unique_ptr<Server> server;
    int port = 0;
    explicit Running(const ServeOptions& o) : server(std::make_unique<Server>(o)) {
        port = server->start();
        server->wait_ready();
    }
    ~Running() { server->shutdown(5); }
};

json post(int port, const std::string& path, const json& body, int* status) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60, 0);
    httplib::Result r = cli.Post(path.c_str(), body.dump(), "application/json");
    *status = r ? r->status : -1;
    return r && r->status == 200 ? json::parse(r->body) : json();
}

double metric(int port, const std::string& name) {
    httplib::Client cli("127.0.0.1", port);
    httplib::Result r = cli.Get("/metrics");
    if (!r || r->status != 200) {
        ADD_FAILURE() << "no /metrics";
        return -1;
    }
    const std::string& b = r->body;
    for (size_t p = b.find(name + " "); p != std::string::npos; p = b.find(name + " ", p + 1))
        if (p == 0 || b[p - 1] == '\n') return std::stod(b.substr(p + name.size() + 1));
    ADD_FAILURE() << "metric " << name << " not found";
    return -1;
}

// Requests sent by 4 clients at once (each takes every 4th body); the answers in body order.
std::vector<json> run_all(int port, const std::vector<json>& bodies) {
    std::vector<json> out(bodies.size());
    std::vector<int> status(bodies.size(), 0);
    std::vector<std::thread> th;
    for (size_t c = 0; c < 4; ++c)
        th.emplace_back([&, c] {
            for (size_t i = c; i < bodies.size(); i += 4) out[i] = post(port, "/v1/completions", bodies[i], &status[i]);
        });
    for (auto& t : th) t.join();
    for (size_t i = 0; i < bodies.size(); ++i) EXPECT_EQ(status[i], 200) << bodies[i].dump();
    return out;
}

// Greedy bodies: several prompts, max_tokens from 1 to 90 (ends inside and at the edge of drafted
// blocks), penalties, and stop strings taken from the plain answers (cut inside a block of accepted drafts).
std::vector<json> greedy_bodies() {
    const std::vector<std::string> prompts = {"Once upon a time", "The dog", "Lily and Tom went to the park",
                                              "One day, a little bird", "Sam had a red ball. Sam had a red ball. Sam"};
    std::vector<json> bodies;
    const int max_tokens[] = {1, 2, 5, 17, 90};
    for (size_t i = 0; i < prompts.size(); ++i)
        for (int m : max_tokens)
            if ((i + size_t(m)) % 2 == 0 || m == 90) bodies.push_back({{"prompt", prompts[i]}, {"max_tokens", m}, {"temperature", 0}});
    // Penalties: each accepted draft joins the history before the next position is judged.
    bodies.push_back({{"prompt", prompts[0]}, {"max_tokens", 60}, {"temperature", 0}, {"frequency_penalty", 0.5},
                      {"presence_penalty", 0.3}});
    bodies.push_back({{"prompt", prompts[4]}, {"max_tokens", 60}, {"temperature", 0}, {"repeat_penalty", 1.3}});
    return bodies;
}

void add_stop_bodies(std::vector<json>& bodies, const std::vector<json>& plain) {
    const size_t n = bodies.size();
    for (size_t i = 0; i < n; ++i) {
        const std::string text = plain[i]["choices"][0]["text"];
        if (bodies[i]["max_tokens"] != 90 || text.size() < 60) continue;
        json b = bodies[i];
        b["stop"] = {text.substr(text.size() / 2, 5)};
        bodies.push_back(b);
        b["stop"] = {text.substr(40, 3), "zzzz"};
        bodies.push_back(b);
    }
}

void expect_same(const std::vector<json>& want, const std::vector<json>& got, const std::vector<json>& bodies) {
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < want.size(); ++i) {
        if (got[i].is_null() || want[i].is_null()) continue;  // status already reported
        EXPECT_EQ(got[i]["choices"][0]["text"], want[i]["choices"][0]["text"]) << bodies[i].dump();
        EXPECT_EQ(got[i]["choices"][0]["finish_reason"], want[i]["choices"][0]["finish_reason"]) << bodies[i].dump();
        EXPECT_EQ(got[i]["usage"]["completion_tokens"], want[i]["usage"]["completion_tokens"]) << bodies[i].dump();
    }
}

} // namespace

// The plain server's greedy answers, then a server drafting with a Q8_0 copy (K = 4, and K = 16 on
// one slot less) and one drafting by prompt lookup: the same texts, finish reasons and token
// counts, with drafts proposed and accepted.
TEST(ServeSpeculative, GreedyEqualsPlainServer) {
    std::vector<json> bodies = greedy_bodies();
    std::vector<json> want;
    {
        Running plain(options());
        want = run_all(plain.port, bodies);
        add_stop_bodies(bodies, want);
        ASSERT_GT(bodies.size(), want.size()) << "no stop-string requests";
        const std::vector<json> more(bodies.begin() + static_cast<std::ptrdiff_t>(want.size()), bodies.end());
        for (const json& j : run_all(plain.port, more)) want.push_back(j);
        EXPECT_EQ(metric(plain.port, "slm_draft_tokens_total"), 0);
    }
    for (int variant = 0; variant < 3; ++variant) {
        ServeOptions o = options();
        if (variant < 2) {
            o.draft = stories_q8();
            o.spec.draft_max = variant == 0 ? 4 : 16;
            if (variant == 1) o.n_parallel = 3, o.spec.adaptive = true;
        } else {
            o.spec.lookup = true;
            o.spec.draft_max = 6;
        }
        SCOPED_TRACE(variant == 2 ? "lookup" : "draft K " + std::to_string(o.spec.draft_max));
        Running r(o);
        expect_same(want, run_all(r.port, bodies), bodies);
        const double drafted = metric(r.port, "slm_draft_tokens_total");
        const double accepted = metric(r.port, "slm_draft_accepted_tokens_total");
        EXPECT_GT(accepted, 0);
        EXPECT_LE(accepted, drafted);
        // Accepted drafts save steps: fewer decode steps than generated tokens per slot would need.
        if (variant == 0) EXPECT_GT(accepted, 0.5 * drafted) << "a Q8_0 copy should agree with its model mostly";
    }
}

// Logprobs with drafting are the target's at every accepted position: the plain server's.
TEST(ServeSpeculative, LogprobsAreTheTargets) {
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}, {"logprobs", 3}};
    json want, got;
    int status = 0;
    {
        Running plain(options());
        want = post(plain.port, "/v1/completions", body, &status);
        ASSERT_EQ(status, 200);
    }
    ServeOptions o = options();
    o.draft = stories_q8();
    o.spec.draft_max = 5;
    Running r(o);
    got = post(r.port, "/v1/completions", body, &status);
    ASSERT_EQ(status, 200);
    EXPECT_GT(metric(r.port, "slm_draft_accepted_tokens_total"), 0);
    const json& a = want["choices"][0]["logprobs"];
    const json& b = got["choices"][0]["logprobs"];
    ASSERT_EQ(a["tokens"], b["tokens"]);
    ASSERT_EQ(a["token_logprobs"].size(), b["token_logprobs"].size());
    for (size_t i = 0; i < a["token_logprobs"].size(); ++i) {
        EXPECT_NEAR(a["token_logprobs"][i].get<double>(), b["token_logprobs"][i].get<double>(), 1e-3) << i;
        EXPECT_EQ(a["top_logprobs"][i].size(), b["top_logprobs"][i].size());
    }
}

// Seeded sampling (with frequency and presence penalties) through both drafters: every request
// gets max_tokens tokens, and the same seed gives the same text twice.
TEST(ServeSpeculative, SeededSamplingRunsToMaxTokens) {
    for (int lookup = 0; lookup < 2; ++lookup) {
        ServeOptions o = options();
        if (lookup) o.spec.lookup = true;
        else o.draft = stories_q8();
        o.spec.draft_max = 4;
        Running r(o);
        std::vector<json> bodies;
        for (int i = 0; i < 6; ++i)
            bodies.push_back({{"prompt", i % 2 ? "The cat" : "Once upon a time"}, {"max_tokens", 40 + i}, {"temperature", 0.8},
                              {"top_k", 40}, {"seed", 100 + i % 3}, {"ignore_eos", true}, {"frequency_penalty", 0.3},
                              {"presence_penalty", 0.2}});
        const std::vector<json> got = run_all(r.port, bodies);
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_FALSE(got[i].is_null()) << i;
            EXPECT_EQ(got[i]["usage"]["completion_tokens"], bodies[i]["max_tokens"]) << i;
            EXPECT_EQ(got[i]["choices"][0]["finish_reason"], "length") << i;
        }
        int status = 0;
        const json again = post(r.port, "/v1/completions", bodies[0], &status);
        ASSERT_EQ(status, 200);
        EXPECT_EQ(again["choices"][0]["text"], got[0]["choices"][0]["text"]);
        EXPECT_GT(metric(r.port, "slm_draft_tokens_total"), 0);
    }
}

// A recurrent model cannot take back rejected drafts: the server refuses to load it with a draft
// or lookup (and names the reason), and serves it without.
TEST(ServeSpeculative, RecurrentModelRefused) {
    SynthConfig c;
    c.arch = "mamba";
    c.n_embd = 64;
    c.n_layer = 2;
    c.n_head = c.n_head_kv = c.n_ff = 0;
    c.tied_embeddings = true;
    c.type = GGMLType::F32;
    c.pure = true;
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");
    const std::string path = test::temp_dir() + "/spec-mamba.gguf";
    synthesize(c, path);
    auto m = Model::load(path);
    for (int lookup = 0; lookup < 2; ++lookup) {
        ServeOptions o = options();
        o.model = m;
        o.model_path = path;
        if (lookup) o.spec.lookup = true;
        else o.draft = stories();
        Server s(o);
        s.start();
        try {
            s.wait_ready();
            ADD_FAILURE() << "a recurrent model was served with speculative decoding";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("recurrent"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("mamba"), std::string::npos) << e.what();
        }
        s.shutdown(0);
    }
    ServeOptions o = options();
    o.model = m;
    o.model_path = path;
    Running plain(o);
    int status = 0;
    post(plain.port, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}}, &status);
    EXPECT_EQ(status, 200);
}

// Options that cannot work are refused by start(): both drafters, a bad draft_max; a draft model
// of another vocabulary fails the load naming both files.
TEST(ServeSpeculative, BadOptionsRefused) {
    ServeOptions o = options();
    o.draft = stories_q8();
    o.spec.lookup = true;
    EXPECT_THROW(Server(o).start(), Error);
    o.spec.lookup = false;
    o.spec.draft_max = 0;
    EXPECT_THROW(Server(o).start(), Error);
    SynthConfig c;
    c.n_embd = 32;
    c.n_layer = 1;
    c.n_head = c.n_head_kv = 2;
    c.n_ff = 32;
    c.n_ctx_train = 64;
    c.type = GGMLType::F32;
    c.pure = true;
    c.tied_embeddings = true;
    c.tokenizer = test::source_dir() + "/tests/data/vocab/ggml-vocab-llama-spm.gguf";
    const std::string path = test::temp_dir() + "/spec-other-vocab.gguf";
    synthesize(c, path);
    ServeOptions p = options();
    p.draft_path = path;
    Server s(p);
    s.start();
    try {
        s.wait_ready();
        ADD_FAILURE() << "a draft model of another vocabulary was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("vocabulary"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("spec-other-vocab.gguf"), std::string::npos) << e.what();
    }
    s.shutdown(0);
}
