// slm serve on loopback: every endpoint, streaming against non-streaming, greedy output against
// slm::generate and `slm run`, concurrent clients, prefix reuse, the error statuses, a bounded
// fuzz of bodies, cancellation on disconnect, graceful shutdown (also by SIGTERM to `slm serve`),
// speculative decoding (--draft, --lookup) against the plain server.
#include "slm/chat_session.h"
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/model.h"
#include "slm/quantize.h"
#include "slm/serve.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <random>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <thread>
#include <unistd.h>

using namespace slm;
using json = nlohmann::json;

namespace {

constexpr uint32_t kCtx = 256;

std::shared_ptr<const Model> stories() {
    static auto m = Model::load(test::model_path("stories260K/stories260K.gguf"));
    return m;
}

ServeOptions base_options() {
    ServeOptions o;
    o.model = stories();
    o.model_path = test::model_path("stories260K/stories260K.gguf");
    o.port = 0;
    o.n_parallel = 4;
    o.n_ctx = kCtx;
    o.max_queue = 16;
    o.max_body_bytes = 64 * 1024;
    o.n_threads = 1;
    return o;
}

struct Resp {
    int status = -1;  // -1: no answer (connection failed)
    std::string body;
    httplib::Headers headers;
    json j() const { return json::parse(body); }
};

Resp request(int port, const std::string& method, const std::string& path, const std::string& body = "",
             const httplib::Headers& headers = {}) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60, 0);
    httplib::Result r = method == "GET" ? cli.Get(path.c_str(), headers) : cli.Post(path.c_str(), headers, body, "application/json");
    Resp out;
    if (!r) return out;
    out.status = r->status;
    out.body = r->body;
    out.headers = r->headers;
    return out;
}

Resp post(int port, const std::string& path, const json& body, const httplib::Headers& headers = {}) {
    return request(port, "POST", path, body.dump(), headers);
}

// The "data:" payloads of an SSE stream, in order.
std::vector<std::string> sse_events(const std::string& raw) {
    std::vector<std::string> ev;
    size_t pos = 0;
    while (pos < raw.size()) {
        size_t end = raw.find("\n\n", pos);
        if (end == std::string::npos) end = raw.size();
        const std::string e = raw.substr(pos, end - pos);
        EXPECT_EQ(e.rfind("data: ", 0), 0u) << "not an SSE data event: " << e;
        ev.push_back(e.substr(6));
        pos = end + 2;
    }
    return ev;
}

struct Stream {
    int status = -1;
    std::string content_type;
    std::vector<std::string> events;
};

// POSTs with "stream": true; `max_events` > 0 closes the connection after that many events.
Stream post_stream(int port, const std::string& path, const json& body, size_t max_events = 0) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_read_timeout(60, 0);
    httplib::Request req;
    req.method = "POST";
    req.path = path;
    req.body = body.dump();
    req.set_header("Content-Type", "application/json");
    std::string raw;
    size_t n_events = 0;
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
        raw.append(data, n);
        size_t c = 0;
        for (size_t p = raw.find("\n\n"); p != std::string::npos; p = raw.find("\n\n", p + 2)) ++c;
        n_events = c;
        return max_events == 0 || n_events < max_events;
    };
    Stream s;
    httplib::Result r = cli.send(req);
    if (r) {
        s.status = r->status;
        s.content_type = r->get_header_value("Content-Type");
    }
    if (max_events == 0) s.events = sse_events(raw);
    return s;
}

// What slm run / slm::generate produce for `prompt` greedily (in a Session of its own).
GenerateResult expected_greedy(const std::string& prompt, int n) {
    SessionOptions so;
    so.n_ctx = kCtx;
    so.n_threads = 1;
    Session s(stories(), so);
    GenerateParams gp;
    gp.n_predict = n;
    gp.sampling.temp = 0;
    return generate(s, stories()->vocab().tokenize(prompt, true, true), gp);
}

class Serve : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        server_ = new Server(base_options());
        port_ = server_->start();
        server_->wait_ready();
    }
    static void TearDownTestSuite() {
        server_->shutdown(5);
        delete server_;
        server_ = nullptr;
    }
    static Server* server_;
    static int port_;
};
Server* Serve::server_ = nullptr;
int Serve::port_ = 0;

double metric(int port, const std::string& name) {
    const Resp r = request(port, "GET", "/metrics");
    EXPECT_EQ(r.status, 200);
    size_t p = 0;
    while ((p = r.body.find(name + " ", p)) != std::string::npos) {
        if (p == 0 || r.body[p - 1] == '\n') return std::stod(r.body.substr(p + name.size() + 1));
        ++p;
    }
    ADD_FAILURE() << "metric " << name << " not found";
    return -1;
}

} // namespace

TEST_F(Serve, HealthModelsMetrics) {
    Resp h = request(port_, "GET", "/health");
    ASSERT_EQ(h.status, 200);
    EXPECT_EQ(h.j()["status"], "ok");
    Resp m = request(port_, "GET", "/v1/models");
    ASSERT_EQ(m.status, 200);
    EXPECT_EQ(m.j()["object"], "list");
    ASSERT_EQ(m.j()["data"].size(), 1u);
    EXPECT_EQ(m.j()["data"][0]["id"], "stories260K");
    EXPECT_EQ(m.j()["data"][0]["meta"]["n_ctx_slot"], kCtx);
    // httplib logs a request (where the HTTP counters are bumped) after its answer has been sent,
    // so the /health answer can reach the client before its count does: wait for it (2 s at most).
    Resp x;
    for (int i = 0; i < 100; ++i) {
        x = request(port_, "GET", "/metrics");
        ASSERT_EQ(x.status, 200);
        if (x.body.find("slm_http_requests_total{endpoint=\"/health\",status=\"200\"}") != std::string::npos) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (const char* name : {"slm_queue_length ", "slm_kv_cache_usage_ratio ", "slm_kv_cache_bytes ", "slm_generated_tokens_total ",
                             "slm_request_duration_seconds_bucket{le=\"+Inf\"}", "slm_time_to_first_token_seconds_count",
                             "slm_prompt_tokens_cached_total ", "slm_http_requests_total{endpoint=\"/health\",status=\"200\"}"})
        EXPECT_NE(x.body.find(name), std::string::npos) << name;
    EXPECT_EQ(metric(port_, "slm_slots_total"), 4);
    EXPECT_GT(metric(port_, "slm_kv_cache_bytes"), 0);
}

TEST_F(Serve, TokenizeDetokenize) {
    const std::string text = "Once upon a time, there was a little cat.";
    Resp t = post(port_, "/tokenize", {{"content", text}});
    ASSERT_EQ(t.status, 200) << t.body;
    const std::vector<int32_t> ids = t.j()["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, stories()->vocab().tokenize(text, true, true));
    Resp t2 = post(port_, "/tokenize", {{"content", text}, {"add_special", false}});
    EXPECT_EQ(t2.j()["tokens"].size() + 1, ids.size());  // no BOS
    Resp d = post(port_, "/detokenize", {{"tokens", t2.j()["tokens"]}});
    ASSERT_EQ(d.status, 200) << d.body;
    EXPECT_EQ(d.j()["content"], text);
    EXPECT_EQ(post(port_, "/detokenize", {{"tokens", {1, 99999}}}).status, 400);
    EXPECT_EQ(post(port_, "/detokenize", {{"tokens", {-1}}}).status, 400);
    EXPECT_EQ(post(port_, "/tokenize", {{"content", 5}}).status, 400);
}

// Greedy: the server's text and token count are slm::generate's, and `slm run --temp 0`'s.
TEST_F(Serve, GreedyCompletionEqualsGenerateAndRun) {
    const std::string prompt = "Once upon a time";
    const int n = 40;
    const GenerateResult want = expected_greedy(prompt, n);
    Resp r = post(port_, "/v1/completions", {{"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["choices"][0]["text"], want.text);
    EXPECT_EQ(j["usage"]["completion_tokens"], want.tokens.size());
    EXPECT_EQ(j["usage"]["prompt_tokens"], stories()->vocab().tokenize(prompt, true, true).size());
    EXPECT_EQ(j["choices"][0]["finish_reason"], want.stop_reason == "length" ? "length" : "stop");

    const test::RunResult run = test::run_cli({"run", "-p", prompt, "-n", std::to_string(n), "--temp", "0", "--json", "-c",
                                               std::to_string(kCtx), "-t", "1"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(json::parse(run.out)["text"], j["choices"][0]["text"]);
}

// The stream's text pieces joined are the non-streaming answer; usage comes last, then [DONE].
TEST_F(Serve, StreamingReassemblesToNonStreaming) {
    for (bool chat : {false, true}) {
        SCOPED_TRACE(chat ? "chat" : "completions");
        json body = {{"max_tokens", 30}, {"temperature", 0.9}, {"seed", 1234}, {"top_k", 20}};
        if (chat) body["messages"] = {{{"role", "user"}, {"content", "Tell me a story about a dog."}}};
        else body["prompt"] = "The little girl";
        const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
        Resp full = post(port_, path, body);
        ASSERT_EQ(full.status, 200) << full.body;
        const json fj = full.j();
        const std::string want = chat ? fj["choices"][0]["message"]["content"].get<std::string>()
                                      : fj["choices"][0]["text"].get<std::string>();
        body["stream"] = true;
        body["stream_options"] = {{"include_usage", true}};
        Stream s = post_stream(port_, path, body);
        ASSERT_EQ(s.status, 200);
        EXPECT_EQ(s.content_type.rfind("text/event-stream", 0), 0u);
        ASSERT_GE(s.events.size(), 3u);
        EXPECT_EQ(s.events.back(), "[DONE]");
        std::string text;
        std::string finish;
        for (size_t i = 0; i + 2 < s.events.size(); ++i) {
            const json c = json::parse(s.events[i]);
            EXPECT_EQ(c["object"], chat ? "chat.completion.chunk" : "text_completion");
            ASSERT_EQ(c["choices"].size(), 1u);
            const json& ch = c["choices"][0];
            if (chat && i == 0) {
                EXPECT_EQ(ch["delta"]["role"], "assistant");
            }
            text += chat ? ch["delta"].value("content", "") : ch["text"].get<std::string>();
            if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
        }
        EXPECT_EQ(text, want);
        EXPECT_EQ(finish, fj["choices"][0]["finish_reason"]);
        const json u = json::parse(s.events[s.events.size() - 2]);
        EXPECT_TRUE(u["choices"].empty());
        EXPECT_EQ(u["usage"]["prompt_tokens"], fj["usage"]["prompt_tokens"]);
        EXPECT_EQ(u["usage"]["completion_tokens"], fj["usage"]["completion_tokens"]);
        EXPECT_EQ(u["usage"]["total_tokens"], fj["usage"]["total_tokens"]);
    }
}

// The chat endpoint renders the conversation with the model's template (ChatML for stories260K)
// as slm chat does: greedy replies are ChatSession's.
TEST_F(Serve, ChatGreedyEqualsChatSession) {
    ChatOptions co;
    co.gen.n_predict = 25;
    co.gen.sampling.temp = 0;
    co.session.n_ctx = kCtx;
    co.session.n_threads = 1;
    ChatSession cs(stories(), co);
    const GenerateResult want = cs.send("Hi there, who are you?");
    Resp r = post(port_, "/v1/chat/completions",
                  {{"messages", {{{"role", "user"}, {"content", "Hi there, who are you?"}}}}, {"max_tokens", 25}, {"temperature", 0}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.j();
    EXPECT_EQ(j["object"], "chat.completion");
    EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
    EXPECT_EQ(j["choices"][0]["message"]["content"], want.text);
    EXPECT_EQ(j["usage"]["completion_tokens"], want.tokens.size());
    // Content as a list of text parts renders the same.
    Resp r2 = post(port_, "/v1/chat/completions",
                   {{"messages", {{{"role", "user"}, {"content", {{{"type", "text"}, {"text", "Hi there, who are you?"}}}}}}},
                    {"max_tokens", 25}, {"temperature", 0}});
    ASSERT_EQ(r2.status, 200) << r2.body;
    EXPECT_EQ(r2.j()["choices"][0]["message"]["content"], want.text);
}

// Logprobs are the log-softmax of the raw logits: the chosen token's equals the top alternative's
// under greedy decoding, and they are <= 0 and descending.
TEST_F(Serve, Logprobs) {
    Resp r = post(port_, "/v1/chat/completions",
                  {{"messages", {{{"role", "user"}, {"content", "Hello"}}}}, {"max_tokens", 8}, {"temperature", 0},
                   {"logprobs", true}, {"top_logprobs", 3}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json rj = r.j();
    const json& content = rj["choices"][0]["logprobs"]["content"];
    ASSERT_EQ(content.size(), rj["usage"]["completion_tokens"].get<size_t>());
    for (const json& t : content) {
        ASSERT_EQ(t["top_logprobs"].size(), 3u);
        EXPECT_LE(t["logprob"].get<double>(), 0.0);
        EXPECT_NEAR(t["logprob"].get<double>(), t["top_logprobs"][0]["logprob"].get<double>(), 1e-6);
        EXPECT_EQ(t["token"], t["top_logprobs"][0]["token"]);
        EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(), t["top_logprobs"][1]["logprob"].get<double>());
    }
    // The greedy first token's logprob from a lone Session.
    SessionOptions so;
    so.n_ctx = kCtx;
    Session s(stories(), so);
    const std::vector<int32_t> p = stories()->vocab().tokenize("Once", true, true);
    const float* l = s.eval(p);
    const int32_t nv = static_cast<int32_t>(stories()->hparams().n_vocab);
    double mx = l[0];
    for (int32_t i = 0; i < nv; ++i) mx = std::max<double>(mx, l[i]);
    double sum = 0;
    for (int32_t i = 0; i < nv; ++i) sum += std::exp(l[i] - mx);
    Resp c = post(port_, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 1}, {"temperature", 0}, {"logprobs", 2}});
    ASSERT_EQ(c.status, 200) << c.body;
    const json cj = c.j();
    const json& lp = cj["choices"][0]["logprobs"];
    EXPECT_NEAR(lp["token_logprobs"][0].get<double>(), 0.0 - std::log(sum), 1e-3);  // the argmax: l = mx
    EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
}

// Eight clients at once on four slots (so some wait in the queue): each gets the answer its
// prompt gets alone.
TEST_F(Serve, ConcurrentClientsGetTheirOwnAnswers) {
    const std::vector<std::string> prompts = {"Once upon a time", "The dog", "Lily and Tom went to the park",
                                              "One day, a little bird", "The sun was", "Mom said", "There was a big tree",
                                              "Sam had a red ball"};
    std::vector<GenerateResult> want;
    for (size_t i = 0; i < prompts.size(); ++i) want.push_back(expected_greedy(prompts[i], 20 + 5 * static_cast<int>(i)));
    const double steps0 = metric(port_, "slm_decode_steps_total"), tokens0 = metric(port_, "slm_generated_tokens_total");
    std::vector<json> got(prompts.size());
    std::vector<int> status(prompts.size());
    std::vector<std::thread> th;
    for (size_t i = 0; i < prompts.size(); ++i)
        th.emplace_back([&, i] {
            json body = {{"prompt", prompts[i]}, {"max_tokens", 20 + 5 * static_cast<int>(i)}, {"temperature", 0}};
            if (i % 2) {  // half of them stream
                body["stream"] = true;
                Stream s = post_stream(port_, "/v1/completions", body);
                status[i] = s.status;
                std::string text;
                for (const std::string& e : s.events)
                    if (e != "[DONE]") text += json::parse(e)["choices"][0]["text"].get<std::string>();
                got[i] = {{"text", text}};
            } else {
                Resp r = post(port_, "/v1/completions", body);
                status[i] = r.status;
                if (r.status == 200) got[i] = {{"text", r.j()["choices"][0]["text"]}};
            }
        });
    for (auto& t : th) t.join();
    for (size_t i = 0; i < prompts.size(); ++i) {
        ASSERT_EQ(status[i], 200) << i;
        EXPECT_EQ(got[i]["text"], want[i].text) << prompts[i];
    }
    // Continuous batching: requests shared decode steps (one decode() per step for all of them),
    // so there were fewer steps than tokens generated.
    const double steps = metric(port_, "slm_decode_steps_total") - steps0;
    const double tokens = metric(port_, "slm_generated_tokens_total") - tokens0;
    EXPECT_LT(steps, tokens * 0.75) << steps << " steps for " << tokens << " tokens";
}

// A second request sharing the prompt reuses the cached prefix (reported in usage and /metrics)
// and answers the same.
TEST_F(Serve, PrefixCacheReusesSlots) {
    const std::string prompt = "Once upon a time there was a girl named Lucy who loved to play in the garden with her friends";
    const json body = {{"prompt", prompt}, {"max_tokens", 10}, {"temperature", 0}};
    const double before = metric(port_, "slm_prompt_tokens_cached_total");
    Resp a = post(port_, "/v1/completions", body);
    Resp b = post(port_, "/v1/completions", body);
    ASSERT_EQ(a.status, 200);
    ASSERT_EQ(b.status, 200);
    EXPECT_EQ(a.j()["choices"][0]["text"], b.j()["choices"][0]["text"]);
    const size_t n_prompt = b.j()["usage"]["prompt_tokens"];
    EXPECT_EQ(b.j()["usage"]["prompt_tokens_details"]["cached_tokens"], n_prompt - 1);
    EXPECT_GE(metric(port_, "slm_prompt_tokens_cached_total") - before, static_cast<double>(n_prompt - 1));
    // A longer prompt with the same start reuses the common part.
    Resp c = post(port_, "/v1/completions", {{"prompt", prompt + " and the sun"}, {"max_tokens", 5}, {"temperature", 0}});
    ASSERT_EQ(c.status, 200);
    EXPECT_GE(c.j()["usage"]["prompt_tokens_details"]["cached_tokens"].get<size_t>(), n_prompt - 1);
    EXPECT_EQ(c.j()["choices"][0]["text"], expected_greedy(prompt + " and the sun", 5).text);
}

TEST_F(Serve, StopStrings) {
    const GenerateResult full = expected_greedy("Once upon a time", 60);
    ASSERT_GT(full.text.size(), 20u);
    const std::string stop = full.text.substr(10, 4);
    Resp r = post(port_, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 60}, {"temperature", 0}, {"stop", {stop, "zzzz"}}});
    ASSERT_EQ(r.status, 200);
    EXPECT_EQ(r.j()["choices"][0]["text"], full.text.substr(0, full.text.find(stop)));
    EXPECT_EQ(r.j()["choices"][0]["finish_reason"], "stop");
}

// Every error case gets its status and an OpenAI error object.
TEST_F(Serve, ErrorStatuses) {
    auto check = [&](const Resp& r, int status, const std::string& param = "") {
        ASSERT_EQ(r.status, status) << r.body;
        const json j = r.j();
        ASSERT_TRUE(j.contains("error")) << r.body;
        EXPECT_TRUE(j["error"]["message"].is_string());
        EXPECT_TRUE(j["error"]["type"].is_string());
        EXPECT_TRUE(j["error"].contains("param"));
        EXPECT_TRUE(j["error"].contains("code"));
        if (!param.empty()) {
            EXPECT_EQ(j["error"]["param"], param);
        }
    };
    check(request(port_, "POST", "/v1/completions", "{not json"), 400);
    check(request(port_, "POST", "/v1/completions", "[1, 2]"), 400);
    check(request(port_, "POST", "/v1/completions", ""), 400);
    check(post(port_, "/v1/completions", {{"max_tokens", 5}}), 400, "prompt");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"temperature", "hot"}}), 400, "temperature");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"temperature", 3}}), 400, "temperature");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"max_tokens", 2.5}}), 400, "max_tokens");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"max_tokens", -1}}), 400, "max_tokens");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"n", 2}}), 400, "n");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"stop", {1}}}), 400, "stop");
    check(post(port_, "/v1/completions", {{"prompt", "a"}, {"stream", "yes"}}), 400, "stream");
    check(post(port_, "/v1/completions", {{"prompt", {1, -5}}}), 400, "prompt");
    check(post(port_, "/v1/completions", {{"prompt", {1, 100000}}}), 400, "prompt");
    check(post(port_, "/v1/chat/completions", {{"messages", json::array()}}), 400, "messages");
    check(post(port_, "/v1/chat/completions", {{"messages", "hi"}}), 400, "messages");
    check(post(port_, "/v1/chat/completions", {{"messages", {{{"content", "hi"}}}}}), 400, "messages[0].role");
    check(post(port_, "/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"top_logprobs", 2}}), 400,
          "top_logprobs");
    // max_tokens bounded by the context.
    Resp big = post(port_, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", kCtx}});
    check(big, 400, "max_tokens");
    EXPECT_EQ(big.j()["error"]["code"], "context_length_exceeded");
    std::string long_prompt;
    for (uint32_t i = 0; i < kCtx; ++i) long_prompt += " the cat";
    check(post(port_, "/v1/completions", {{"prompt", long_prompt}}), 400, "prompt");
    // Too deep.
    std::string deep = "{\"prompt\": \"a\", \"x\": " + std::string(200, '[') + std::string(200, ']') + "}";
    check(request(port_, "POST", "/v1/completions", deep), 400);
    check(request(port_, "GET", "/v1/nothing"), 404);
    check(request(port_, "POST", "/v1/completion"), 404);
    // Body over the limit (64 KiB here).
    check(request(port_, "POST", "/v1/completions", "{\"prompt\": \"" + std::string(100000, 'a') + "\"}"), 413);
    EXPECT_EQ(request(port_, "GET", "/health").status, 200);
}

// A few hundred random and mutated bodies: every answer is 200 or 400 with a JSON body, and the
// server stays healthy.
TEST_F(Serve, FuzzBodies) {
    std::mt19937 rng(7);
    const std::vector<std::string> seeds = {
        R"({"prompt": "Once upon", "max_tokens": 3, "temperature": 0.5, "stop": ["x"], "seed": 3})",
        R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": false, "top_p": 0.5})",
        R"({"prompt": [1, 2, 3], "max_tokens": 2, "logprobs": 2, "echo": true})",
        R"({"messages": [{"role": "system", "content": [{"type": "text", "text": "x"}]}], "max_tokens": 2, "logprobs": true, "top_logprobs": 1})",
    };
    const std::string alphabet = "{}[]\":,0123456789.-eE tfnaulrsx\\u";
    int n_ok = 0, n_bad = 0;
    for (int it = 0; it < 300; ++it) {
        std::string body = seeds[rng() % seeds.size()];
        const int mode = static_cast<int>(rng() % 4);
        if (mode == 0) {  // random bytes
            body.assign(rng() % 200, '\0');
            for (char& c : body) c = static_cast<char>(rng() % 256);
        } else {  // a few mutations of a valid body
            const int n_mut = 1 + static_cast<int>(rng() % 4);
            for (int k = 0; k < n_mut && !body.empty(); ++k) {
                const size_t p = rng() % body.size();
                switch (rng() % 3) {
                    case 0: body[p] = alphabet[rng() % alphabet.size()]; break;
                    case 1: body.erase(p, 1 + rng() % 3); break;
                    default: body.insert(p, 1, alphabet[rng() % alphabet.size()]); break;
                }
            }
        }
        const bool chat = body.find("messages") != std::string::npos ? (rng() % 4 != 0) : (rng() % 4 == 0);
        const std::string path = it % 17 == 0 ? "/tokenize" : chat ? "/v1/chat/completions" : "/v1/completions";
        const Resp r = request(port_, "POST", path, body);
        ASSERT_TRUE(r.status == 200 || r.status == 400) << "status " << r.status << " for " << path << " " << body << ": " << r.body;
        json j;
        ASSERT_NO_THROW(j = json::parse(r.body)) << r.body;
        if (r.status == 400) {
            EXPECT_TRUE(j.contains("error")) << r.body;
            ++n_bad;
        } else {
            ++n_ok;
        }
    }
    EXPECT_GT(n_ok, 0);
    EXPECT_GT(n_bad, 0);
    EXPECT_EQ(request(port_, "GET", "/health").status, 200);
    EXPECT_EQ(metric(port_, "slm_slots_busy"), 0);
}

// A streaming client that goes away frees its slot: the request is cancelled, not run to its end.
// ignore_eos and the whole context keep it generating for far longer than the server needs to
// notice the closed connection (its next write fails).
TEST_F(Serve, DisconnectCancels) {
    const double cancelled = metric(port_, "slm_requests_cancelled_total");
    const double generated = metric(port_, "slm_generated_tokens_total");
    Stream s = post_stream(port_, "/v1/completions",
                           {{"prompt", "Once upon a time"}, {"max_tokens", kCtx - 10}, {"ignore_eos", true}, {"stream", true}}, 2);
    (void)s;
    for (int i = 0; i < 500 && metric(port_, "slm_slots_busy") > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(metric(port_, "slm_slots_busy"), 0);
    EXPECT_EQ(metric(port_, "slm_requests_cancelled_total"), cancelled + 1);
    EXPECT_LT(metric(port_, "slm_generated_tokens_total") - generated, static_cast<double>(kCtx - 10));
}

TEST(ServeAuth, ApiKey) {
    ServeOptions o = base_options();
    o.api_key = "sekret";
    Server server(o);
    const int port = server.start();
    server.wait_ready();
    const json body = {{"prompt", "Once"}, {"max_tokens", 2}};
    Resp none = post(port, "/v1/completions", body);
    EXPECT_EQ(none.status, 401);
    EXPECT_EQ(none.j()["error"]["code"], "invalid_api_key");
    EXPECT_EQ(post(port, "/v1/completions", body, {{"Authorization", "Bearer wrong"}}).status, 401);
    EXPECT_EQ(request(port, "GET", "/v1/models", "", {{"Authorization", "Bearer sekre"}}).status, 401);
    EXPECT_EQ(post(port, "/v1/completions", body, {{"Authorization", "Bearer sekret"}}).status, 200);
    EXPECT_EQ(request(port, "GET", "/health").status, 200);  // probes need no key
    server.shutdown(1);
}

// One slot and no queue: of several simultaneous long requests some are refused with 429 and
// Retry-After; the others complete.
TEST(ServeLimits, QueueFullGives429) {
    ServeOptions o = base_options();
    o.n_parallel = 1;
    o.max_queue = 0;
    o.retry_after_s = 3;
    Server server(o);
    const int port = server.start();
    server.wait_ready();
    const int n = 6;
    std::vector<Resp> out(n);
    std::vector<std::thread> th;
    for (int i = 0; i < n; ++i)
        th.emplace_back([&, i] {
            out[i] = post(port, "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 200}, {"ignore_eos", true}, {"temperature", 0}});
        });
    for (auto& t : th) t.join();
    int n200 = 0, n429 = 0;
    for (const Resp& r : out) {
        if (r.status == 200) ++n200;
        if (r.status == 429) {
            ++n429;
            EXPECT_EQ(r.j()["error"]["code"], "queue_full");
            bool has = false;
            for (const auto& [k, v] : r.headers)
                if (k == "Retry-After") has = v == "3";
            EXPECT_TRUE(has);
        }
    }
    EXPECT_EQ(n200 + n429, n);
    EXPECT_GE(n200, 1);
    EXPECT_GE(n429, 1);
    server.shutdown(1);
}

// --max-tokens caps every request: more is a 400 naming max_tokens, none asked gets the cap.
TEST(ServeLimits, MaxTokensCap) {
    ServeOptions o = base_options();
    o.max_tokens = 5;
    Server server(o);
    const int port = server.start();
    server.wait_ready();
    Resp over = post(port, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 6}});
    EXPECT_EQ(over.status, 400);
    EXPECT_EQ(over.j()["error"]["param"], "max_tokens");
    EXPECT_NE(over.j()["error"]["message"].get<std::string>().find("limit of 5"), std::string::npos) << over.body;
    Resp ok = post(port, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 5}, {"ignore_eos", true}, {"temperature", 0}});
    ASSERT_EQ(ok.status, 200) << ok.body;
    EXPECT_EQ(ok.j()["usage"]["completion_tokens"], 5);
    // A chat request without max_tokens runs to the cap, not to the end of the context.
    Resp chat = post(port, "/v1/chat/completions",
                     {{"messages", {{{"role", "user"}, {"content", "Hi"}}}}, {"ignore_eos", true}, {"temperature", 0}});
    ASSERT_EQ(chat.status, 200) << chat.body;
    EXPECT_EQ(chat.j()["usage"]["completion_tokens"], 5);
    EXPECT_EQ(chat.j()["choices"][0]["finish_reason"], "length");
    server.shutdown(1);
}

// Shutdown with time to spare lets a running request finish; afterwards nothing listens.
// Shutdown without grace cancels it promptly.
TEST(ServeLifecycle, GracefulShutdown) {
    for (double grace : {30.0, 0.0}) {
        SCOPED_TRACE(grace);
        ServeOptions o = base_options();
        Server server(o);
        const int port = server.start();
        server.wait_ready();
        Stream s;
        std::atomic<bool> started{false};
        std::thread client([&] {
            httplib::Client cli("127.0.0.1", port);
            httplib::Request req;
            req.method = "POST";
            req.path = "/v1/completions";
            req.body = json{{"prompt", "Once upon a time"}, {"max_tokens", kCtx - 10}, {"ignore_eos", true}, {"stream", true}}.dump();
            req.set_header("Content-Type", "application/json");
            std::string raw;
            req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
                raw.append(d, n);
                started = true;
                return true;
            };
            httplib::Result r = cli.send(req);
            s.status = r ? r->status : -1;
            s.events = sse_events(raw);
        });
        while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        server.shutdown(grace);
        client.join();
        ASSERT_EQ(s.status, 200);
        ASSERT_FALSE(s.events.empty());
        EXPECT_EQ(s.events.back(), "[DONE]");
        if (grace > 0) {
            const json last = json::parse(s.events[s.events.size() - 2]);
            EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
        } else {
            // Either cancelled (an error event) or it had already finished.
            const json last = json::parse(s.events[s.events.size() - 2]);
            EXPECT_TRUE(last.contains("error") || last["choices"][0]["finish_reason"] == "length") << last.dump();
        }
        EXPECT_TRUE(server.stopped());
        EXPECT_EQ(request(port, "GET", "/health").status, -1);  // nothing listens
    }
}

TEST(ServeLifecycle, LoadFailureIsReported) {
    ServeOptions o;
    o.model_path = test::temp_dir() + "/missing.gguf";
    o.port = 0;
    Server server(o);
    const int port = server.start();
    EXPECT_THROW(server.wait_ready(), Error);
    EXPECT_FALSE(server.load_error().empty());
    Resp h = request(port, "GET", "/health");
    EXPECT_EQ(h.status, 503);
    EXPECT_EQ(h.j()["status"], "error");
    EXPECT_EQ(post(port, "/v1/completions", {{"prompt", "a"}}).status, 503);
    server.shutdown(0);
}

// `slm serve` exits 0 on SIGTERM after finishing (the CLI end to end).
TEST(ServeLifecycle, CliSigterm) {
    // A free port: bind port 0, read it, release it.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    const int port = ntohs(a.sin_port);
    ::close(fd);
    const std::string cli = test::cli_path();
    const std::string model = test::model_path("stories260K/stories260K.gguf");
    const std::string port_s = std::to_string(port);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        execl(cli.c_str(), cli.c_str(), "serve", "-m", model.c_str(), "--port", port_s.c_str(), "-c", "128", "-t", "1",
              static_cast<char*>(nullptr));
        _exit(127);
    }
    bool up = false;
    for (int i = 0; i < 500 && !up; ++i) {
        up = request(port, "GET", "/health").status == 200;
        if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_TRUE(up);
    if (up) {
        EXPECT_EQ(post(port, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 4}}).status, 200);
    }
    kill(pid, SIGTERM);
    int st = 0;
    bool exited = false;
    for (int i = 0; i < 1000 && !exited; ++i) {
        exited = waitpid(pid, &st, WNOHANG) == pid;
        if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    ASSERT_TRUE(exited) << "slm serve did not exit within 10 s of SIGTERM";
    EXPECT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 0);
}

// Speculative decoding in the server.
namespace {

// The draft model of the speculative tests: stories260K quantized to Q8_0 (the same vocabulary,
// nearly the same predictions), written once per test process.
std::shared_ptr<const Model> q8_draft() {
    static std::shared_ptr<const Model> m;
    if (!m) {
        QuantizeParams qp;
        qp.type = "Q8_0";
        quantize_model(test::model_path("stories260K/stories260K.gguf"), test::temp_dir() + "/draft-q8_0.gguf", qp);
        m = Model::load(test::temp_dir() + "/draft-q8_0.gguf");
    }
    return m;
}

struct Running {
    Server server;
    int port = 0;
    explicit Running(const ServeOptions& o) : server(o) {
        port = server.start();
        server.wait_ready();
    }
    ~Running() { server.shutdown(5); }
};

// Requests sent by 4 clients at once (client c sends bodies c, c + 4, ...); the answers in body
// order (null when not 200, which is reported).
std::vector<json> run_all(int port, const std::vector<json>& bodies) {
    std::vector<Resp> got(bodies.size());
    std::vector<std::thread> th;
    for (size_t c = 0; c < 4; ++c)
        th.emplace_back([&, c] {
            for (size_t i = c; i < bodies.size(); i += 4) got[i] = post(port, "/v1/completions", bodies[i]);
        });
    for (auto& t : th) t.join();
    std::vector<json> out(bodies.size());
    for (size_t i = 0; i < bodies.size(); ++i) {
        EXPECT_EQ(got[i].status, 200) << bodies[i].dump() << " " << got[i].body;
        if (got[i].status == 200) out[i] = got[i].j();
    }
    return out;
}

// Greedy bodies: several prompts, max_tokens from 1 to 90 (ends inside and at the edge of drafted
// blocks), and penalties (each accepted draft joins the history before the next position is judged).
std::vector<json> spec_greedy_bodies() {
    const std::vector<std::string> prompts = {"Once upon a time", "The dog", "Lily and Tom went to the park",
                                              "One day, a little bird", "Sam had a red ball. Sam had a red ball. Sam"};
    std::vector<json> bodies;
    for (size_t i = 0; i < prompts.size(); ++i)
        for (int m : {1, 2, 5, 17, 90})
            if ((i + size_t(m)) % 2 == 0 || m == 90) bodies.push_back({{"prompt", prompts[i]}, {"max_tokens", m}, {"temperature", 0}});
    bodies.push_back({{"prompt", prompts[0]}, {"max_tokens", 60}, {"temperature", 0}, {"frequency_penalty", 0.5},
                      {"presence_penalty", 0.3}});
    bodies.push_back({{"prompt", prompts[4]}, {"max_tokens", 60}, {"temperature", 0}, {"repeat_penalty", 1.3}});
    return bodies;
}

// Stop strings taken from the plain answers of 90 tokens: they cut inside blocks of accepted drafts.
std::vector<json> spec_stop_bodies(const std::vector<json>& bodies, const std::vector<json>& plain) {
    std::vector<json> out;
    for (size_t i = 0; i < bodies.size(); ++i) {
        if (plain[i].is_null() || bodies[i]["max_tokens"] != 90) continue;
        const std::string text = plain[i]["choices"][0]["text"];
        if (text.size() < 60) continue;
        json b = bodies[i];
        b["stop"] = {text.substr(text.size() / 2, 5)};
        out.push_back(b);
        b["stop"] = {text.substr(40, 3), "zzzz"};
        out.push_back(b);
    }
    return out;
}

// Starting the server fails with an error naming every one of `needles`.
void expect_load_error(const ServeOptions& o, std::initializer_list<const char*> needles) {
    Server s(o);
    s.start();
    try {
        s.wait_ready();
        ADD_FAILURE() << "the server started";
    } catch (const Error& e) {
        for (const char* n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
    }
    s.shutdown(0);
}

} // namespace

// The plain server's greedy answers, then a server drafting with a Q8_0 copy (K = 4; K = 16
// adaptive on 3 slots) and one drafting by prompt lookup, 4 clients at once: the same texts,
// finish reasons and token counts, with drafts proposed and accepted (/metrics).
TEST(ServeSpeculative, GreedyEqualsPlainServer) {
    std::vector<json> bodies = spec_greedy_bodies();
    std::vector<json> want;
    {
        Running plain(base_options());
        want = run_all(plain.port, bodies);
        const std::vector<json> stops = spec_stop_bodies(bodies, want);
        ASSERT_GE(stops.size(), 4u);
        for (const json& j : run_all(plain.port, stops)) want.push_back(j);
        bodies.insert(bodies.end(), stops.begin(), stops.end());
        EXPECT_EQ(metric(plain.port, "slm_draft_tokens_total"), 0);
    }
    for (int variant = 0; variant < 3; ++variant) {
        ServeOptions o = base_options();
        if (variant < 2) {
            o.draft = q8_draft();
            o.spec.draft_max = variant == 0 ? 4 : 16;
            if (variant == 1) o.n_parallel = 3, o.spec.adaptive = true;
        } else {
            o.spec.lookup = true;
            o.spec.draft_max = 6;
        }
        SCOPED_TRACE(variant == 2 ? "lookup" : "draft K " + std::to_string(o.spec.draft_max));
        Running r(o);
        const std::vector<json> got = run_all(r.port, bodies);
        for (size_t i = 0; i < want.size(); ++i) {
            if (got[i].is_null() || want[i].is_null()) continue;  // already reported
            EXPECT_EQ(got[i]["choices"][0]["text"], want[i]["choices"][0]["text"]) << bodies[i].dump();
            EXPECT_EQ(got[i]["choices"][0]["finish_reason"], want[i]["choices"][0]["finish_reason"]) << bodies[i].dump();
            EXPECT_EQ(got[i]["usage"]["completion_tokens"], want[i]["usage"]["completion_tokens"]) << bodies[i].dump();
        }
        const double drafted = metric(r.port, "slm_draft_tokens_total");
        const double accepted = metric(r.port, "slm_draft_accepted_tokens_total");
        EXPECT_GT(accepted, 0);
        EXPECT_LE(accepted, drafted);
        if (variant == 0) EXPECT_GT(accepted, 0.5 * drafted) << "a Q8_0 copy should mostly agree with its model";
    }
}

// Logprobs with drafting are the target's at every accepted position: the plain server's.
TEST(ServeSpeculative, LogprobsAreTheTargets) {
    const json body = {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"temperature", 0}, {"logprobs", 3}};
    json want;
    {
        Running plain(base_options());
        const Resp a = post(plain.port, "/v1/completions", body);
        ASSERT_EQ(a.status, 200) << a.body;
        want = a.j()["choices"][0]["logprobs"];
    }
    ServeOptions o = base_options();
    o.draft = q8_draft();
    o.spec.draft_max = 5;
    Running r(o);
    const Resp b = post(r.port, "/v1/completions", body);
    ASSERT_EQ(b.status, 200) << b.body;
    EXPECT_GT(metric(r.port, "slm_draft_accepted_tokens_total"), 0);
    const json got = b.j()["choices"][0]["logprobs"];
    ASSERT_EQ(want["tokens"], got["tokens"]);
    ASSERT_EQ(want["token_logprobs"].size(), got["token_logprobs"].size());
    for (size_t i = 0; i < want["token_logprobs"].size(); ++i) {
        EXPECT_NEAR(want["token_logprobs"][i].get<double>(), got["token_logprobs"][i].get<double>(), 1e-3) << i;
        ASSERT_EQ(want["top_logprobs"][i].size(), got["top_logprobs"][i].size()) << i;
        for (const auto& [t, lp] : want["top_logprobs"][i].items()) {
            ASSERT_TRUE(got["top_logprobs"][i].contains(t)) << i << " " << t;
            EXPECT_NEAR(lp.get<double>(), got["top_logprobs"][i][t].get<double>(), 1e-3) << i << " " << t;
        }
    }
}

// Seeded sampling (top-k, frequency and presence penalties) through both drafters: every request
// gets its max_tokens tokens, and the same seed gives the same text again.
TEST(ServeSpeculative, SeededSamplingRunsToMaxTokens) {
    for (int lookup = 0; lookup < 2; ++lookup) {
        ServeOptions o = base_options();
        if (lookup) o.spec.lookup = true;
        else o.draft = q8_draft();
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
        const Resp again = post(r.port, "/v1/completions", bodies[0]);
        ASSERT_EQ(again.status, 200);
        EXPECT_EQ(again.j()["choices"][0]["text"], got[0]["choices"][0]["text"]);
        EXPECT_GT(metric(r.port, "slm_draft_tokens_total"), 0);
    }
}

// A recurrent model cannot take back rejected drafts: loading it with a draft model or lookup
// fails naming the reason; without, it is served.
TEST(ServeSpeculative, RecurrentModelRefused) {
    SynthConfig c;
    c.arch = "mamba";
    c.n_embd = 32;
    c.n_layer = 1;
    c.n_head = c.n_head_kv = c.n_ff = 0;
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");
    ServeOptions o = base_options();
    o.model_path = test::temp_dir() + "/spec-mamba.gguf";
    synthesize(c, o.model_path);
    o.model = Model::load(o.model_path);
    o.spec.lookup = true;
    expect_load_error(o, {"recurrent", "mamba", "--lookup"});
    o.spec.lookup = false;
    o.draft = stories();
    expect_load_error(o, {"recurrent", "mamba", "--draft"});
    o.draft = nullptr;
    Running plain(o);
    EXPECT_EQ(post(plain.port, "/v1/completions", {{"prompt", "Once"}, {"max_tokens", 3}}).status, 200);
}

// Options that cannot work: both drafters or a draft_max of 0 are refused by start(); a draft model
// of another vocabulary fails the load naming the draft's file.
TEST(ServeSpeculative, BadOptionsRefused) {
    ServeOptions o = base_options();
    o.draft = q8_draft();
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
    c.tied_embeddings = true;
    c.tokenizer = test::source_dir() + "/tests/data/vocab/ggml-vocab-llama-spm.gguf";
    ServeOptions p = base_options();
    p.draft_path = test::temp_dir() + "/spec-other-vocab.gguf";
    synthesize(c, p.draft_path);
    expect_load_error(p, {"vocabulary", "spec-other-vocab.gguf"});
}
