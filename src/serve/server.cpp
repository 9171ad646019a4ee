// server.cpp - slm::Server: the HTTP layer (cpp-httplib) over the scheduler.
#include "slm/serve.h"

#include "serve/api.h"
#include "serve/scheduler.h"
#include "slm/chat.h"
#include "slm/error.h"
#include "slm/vocab.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

namespace slm {

using serve::ApiError;
using serve::json;

namespace {

// ChatML, what llama.cpp (and slm chat) fall back to for a model without a template.
const char* const kChatML =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

enum State { kLoading, kReady, kFailed, kDraining };

std::string token_text_or_empty(const Vocab& v, int32_t id) { return id >= 0 ? v.token_text(id) : std::string(); }

std::string model_id_from_path(const std::string& path) {
    std::string s = path;
    while (!s.empty() && s.back() == '/') s.pop_back();
    const size_t slash = s.find_last_of('/');
    if (slash != std::string::npos) s = s.substr(slash + 1);
    if (s.size() > 5 && s.compare(s.size() - 5, 5, ".gguf") == 0) s.resize(s.size() - 5);
    return s.empty() ? "slm" : s;
}

bool equal_constant_time(const std::string& a, const std::string& b) {
    unsigned char d = a.size() == b.size() ? 0 : 1;
    for (size_t i = 0; i < a.size(); ++i) d |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
    return d == 0;
}

// Debian's cpp-httplib is built with a listen backlog of 5: a burst of clients connecting at once
// overflows it and the dropped SYNs are retried by the kernel only after a second. Listening
// again on the bound socket with a longer backlog (Linux updates it in place) avoids that.
class HttpServer : public httplib::Server {
public:
    void widen_backlog(int n) {
        const socket_t s = svr_sock_;
        if (s != INVALID_SOCKET) ::listen(s, n);
    }
};

} // namespace

struct Server::Impl {
    ServeOptions opts;
    HttpServer http;
    std::thread listen_thread, loader_thread;
    std::atomic<bool> listening_done{false};

    mutable std::mutex mu;
    std::condition_variable ready_cv;
    State state = kLoading;
    std::string load_error;
    bool shut = false;

    std::shared_ptr<const Model> model;
    std::optional<ChatTemplate> tmpl;
    std::unique_ptr<serve::Scheduler> sched;
    std::string model_id;
    std::time_t created = 0;
    std::atomic<uint64_t> next_id{1};
    // Completions whose answer is not fully written yet (a stream until its last chunk): shutdown
    // waits for them, because httplib stops writing a chunked answer once the socket is closed.
    std::atomic<int> in_flight{0};
    std::shared_ptr<void> in_flight_token() {
        ++in_flight;
        return std::shared_ptr<void>(nullptr, [this](void*) { --in_flight; });
    }

    std::mutex metrics_mu;
    std::map<std::pair<std::string, int>, uint64_t> http_counts;  // (endpoint, status) -> requests
    std::atomic<uint64_t> rejected_queue_full{0};

    State get_state() const {
        std::lock_guard<std::mutex> lk(mu);
        return state;
    }
    void load();
    void routes();
    void completion(const httplib::Request& req, httplib::Response& res, bool chat);
    std::string metrics_text();
    void send_error(httplib::Response& res, const ApiError& e) {
        res.status = e.status;
        if (e.status == 429 || e.status == 503) res.set_header("Retry-After", std::to_string(opts.retry_after_s));
        res.set_content(serve::error_body(e), "application/json");
    }
    void check_key(const httplib::Request& req) const {
        if (opts.api_key.empty()) return;
        const std::string auth = req.get_header_value("Authorization");
        if (auth.size() > 7 && auth.compare(0, 7, "Bearer ") == 0 && equal_constant_time(auth.substr(7), opts.api_key)) return;
        throw ApiError(401, "invalid or missing API key (send \"Authorization: Bearer KEY\")", "invalid_request_error", "", "invalid_api_key");
    }
    void require_ready() {
        switch (get_state()) {
            case kReady: return;
            case kLoading: throw ApiError(503, "the model is loading", "server_error", "", "model_loading");
            case kFailed: throw ApiError(503, "the model failed to load", "server_error", "", "model_load_failed");
            case kDraining: throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
        }
    }
};

void Server::Impl::load() {
    try {
        std::shared_ptr<const Model> m = opts.model ? opts.model : Model::load(opts.model_path);
        std::string src = opts.chat_template;
        if (src.empty())
            if (auto t = chat_template_from_gguf(m->file())) src = *t;
        if (src.empty()) src = kChatML;
        ChatTemplate t = ChatTemplate::parse(src, opts.chat_template.empty() ? "tokenizer.chat_template" : "--chat-template");
        serve::SchedulerOptions so;
        so.n_parallel = opts.n_parallel;
        so.n_ctx = opts.n_ctx;
        so.n_batch = opts.n_batch;
        so.kv_type = opts.kv_type;
        so.swa_full = opts.swa_full;
        so.n_threads = opts.n_threads;
        so.max_queue = opts.max_queue;
        so.prefix_cache = opts.prefix_cache;
        so.draft = opts.draft;
        if (!so.draft && !opts.draft_path.empty()) so.draft = Model::load(opts.draft_path);
        so.spec = opts.spec;
        auto s = std::make_unique<serve::Scheduler>(m, so);
        std::lock_guard<std::mutex> lk(mu);
        model = std::move(m);
        tmpl.emplace(std::move(t));
        sched = std::move(s);
        created = std::time(nullptr);
        if (state == kLoading) state = kReady;
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(mu);
        load_error = e.what();
        if (state == kLoading) state = kFailed;
    }
    ready_cv.notify_all();
}

void Server::Impl::completion(const httplib::Request& req, httplib::Response& res, bool chat) {
    std::shared_ptr<void> token = in_flight_token();  // held by the stream's provider when streaming
    require_ready();
    const json body = serve::parse_body(req.body);
    serve::CompletionRequest r = serve::parse_completion(body, chat);
    const Vocab& vocab = model->vocab();
    const int32_t n_vocab = static_cast<int32_t>(model->hparams().n_vocab);

    std::vector<int32_t> prompt;
    if (chat) {
        ChatTemplateOptions to;
        to.bos_token = token_text_or_empty(vocab, vocab.bos());
        to.eos_token = token_text_or_empty(vocab, vocab.eos());
        to.add_generation_prompt = true;
        std::string text;
        try {
            text = tmpl->render(r.messages_json, to);
        } catch (const Error& e) {
            throw ApiError(400, std::string("the chat template failed on these messages: ") + e.what(), "invalid_request_error", "messages");
        }
        // The template may write BOS itself; add it only if it did not.
        const std::string bos = to.bos_token;
        const bool has_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
        prompt = vocab.tokenize(text, vocab.add_bos() && !has_bos, true);
    } else if (r.prompt_is_tokens) {
        for (int32_t t : r.prompt_tokens)
            if (t >= n_vocab)
                throw ApiError(400, "'prompt': token id " + std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")",
                               "invalid_request_error", "prompt");
        prompt = r.prompt_tokens;
    } else {
        prompt = vocab.tokenize(r.prompt, true, true);  // as slm run: BOS as the vocab asks, special tokens parsed
    }
    if (prompt.empty()) throw ApiError(400, "the prompt has no tokens", "invalid_request_error", chat ? "messages" : "prompt");
    const uint32_t n_ctx = sched->n_ctx_slot();
    if (prompt.size() >= n_ctx)
        throw ApiError(400, "This model's maximum context length is " + std::to_string(n_ctx) + " tokens. However, your prompt is " +
                                std::to_string(prompt.size()) + " tokens.",
                       "invalid_request_error", chat ? "messages" : "prompt", "context_length_exceeded");
    const int64_t room = static_cast<int64_t>(n_ctx) - static_cast<int64_t>(prompt.size());
    const int64_t cap = opts.max_tokens ? static_cast<int64_t>(opts.max_tokens) : INT64_MAX;
    const int64_t max_tokens = r.max_tokens.value_or(std::min(room, cap));
    if (max_tokens > cap)
        throw ApiError(400, "max_tokens " + std::to_string(max_tokens) + " is more than this server's limit of " +
                                std::to_string(cap) + " tokens per request",
                       "invalid_request_error", "max_tokens");
    if (max_tokens > room)
        throw ApiError(400, "This model's maximum context length is " + std::to_string(n_ctx) + " tokens. However, you requested " +
                                std::to_string(prompt.size() + static_cast<uint64_t>(max_tokens)) + " tokens (" +
                                std::to_string(prompt.size()) + " in the prompt, " + std::to_string(max_tokens) +
                                " for the completion). Please reduce the prompt or max_tokens.",
                       "invalid_request_error", "max_tokens", "context_length_exceeded");

    auto job = std::make_shared<serve::Job>();
    job->prompt = prompt;
    job->sampling = r.sampling;
    job->max_tokens = static_cast<uint32_t>(max_tokens);
    job->stop = r.stop;
    job->logprobs = r.logprobs;
    job->top_logprobs = r.top_logprobs;
    job->ignore_eos = r.ignore_eos;
    switch (sched->submit(job)) {
        case serve::Scheduler::Admit::Queued: break;
        case serve::Scheduler::Admit::QueueFull:
            ++rejected_queue_full;
            throw ApiError(429, "the server is busy: every slot is taken and the queue is full; retry later", "rate_limit_error", "",
                           "queue_full");
        case serve::Scheduler::Admit::Stopping:
            throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    }

    const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++);
    const std::time_t now = std::time(nullptr);
    const std::string echo = r.echo ? (r.prompt_is_tokens ? vocab.detokenize(r.prompt_tokens, false, false) : r.prompt) : "";
    auto usage = [job] {
        return json{{"prompt_tokens", job->n_prompt},
                    {"completion_tokens", job->n_gen},
                    {"total_tokens", job->n_prompt + job->n_gen},
                    {"prompt_tokens_details", {{"cached_tokens", job->n_cached}}}};
    };
    auto finish_reason = [job]() -> json { return job->finish_reason == "length" ? "length" : "stop"; };

    if (!r.stream) {
        std::string text = echo;
        std::vector<serve::TokenLogprob> lps;
        std::vector<serve::Piece> pieces;
        for (bool done = false; !done;) {
            done = job->take(&pieces, std::chrono::milliseconds(1000));
            for (serve::Piece& p : pieces) {
                text += p.text;
                if (p.has_token && r.logprobs) lps.push_back(std::move(p.lp));
            }
            pieces.clear();
        }
        if (job->finish_reason == "error") throw ApiError(500, "generation failed: " + job->error, "server_error");
        if (job->finish_reason == "cancelled") throw ApiError(503, "the request was cancelled (server shutting down)", "server_error", "", "cancelled");
        json choice;
        if (chat) {
            choice = {{"index", 0},
                      {"message", {{"role", "assistant"}, {"content", text}}},
                      {"logprobs", r.logprobs ? serve::chat_logprobs_json(lps) : json(nullptr)},
                      {"finish_reason", finish_reason()}};
        } else {
            choice = {{"index", 0},
                      {"text", text},
                      {"logprobs", r.logprobs ? serve::completion_logprobs_json(lps, echo.size()) : json(nullptr)},
                      {"finish_reason", finish_reason()}};
        }
        json out = {{"id", id},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", static_cast<int64_t>(now)},
                    {"model", model_id},
                    {"choices", json::array({choice})},
                    {"usage", usage()}};
        res.set_content(serve::dump(out), "application/json");
        return;
    }

    // SSE: one "data: {chunk}" event per piece of text, a last chunk with finish_reason, the usage
    // chunk if asked for, then "data: [DONE]". A failed write (client gone) cancels the request.
    struct StreamState {
        bool started = false, finished = false;
        size_t text_offset = 0;
    };
    auto ss = std::make_shared<StreamState>();
    ss->text_offset = echo.size();
    const bool include_usage = r.include_usage, logprobs = r.logprobs;
    const std::string mid = model_id;
    auto chunk = [=](json choice) {
        json c = {{"id", id},
                  {"object", chat ? "chat.completion.chunk" : "text_completion"},
                  {"created", static_cast<int64_t>(now)},
                  {"model", mid},
                  {"choices", json::array({std::move(choice)})}};
        if (include_usage) c["usage"] = nullptr;
        return "data: " + serve::dump(c) + "\n\n";
    };
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [=, token = token](size_t, httplib::DataSink& sink) -> bool {
            auto write = [&](const std::string& s) {
                if (!sink.write(s.data(), s.size())) {
                    job->cancelled = true;
                    return false;
                }
                return true;
            };
            if (!ss->started) {
                ss->started = true;
                if (chat) {
                    if (!write(chunk({{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}})))
                        return false;
                } else if (!echo.empty()) {
                    if (!write(chunk({{"index", 0}, {"text", echo}, {"logprobs", nullptr}, {"finish_reason", nullptr}}))) return false;
                }
            }
            std::vector<serve::Piece> pieces;
            const bool done = job->take(&pieces, std::chrono::milliseconds(200));
            for (serve::Piece& p : pieces) {
                if (p.text.empty() && !(logprobs && p.has_token)) continue;
                json lp = nullptr;
                if (logprobs && p.has_token) {
                    std::vector<serve::TokenLogprob> one{std::move(p.lp)};
                    lp = chat ? serve::chat_logprobs_json(one) : serve::completion_logprobs_json(one, ss->text_offset);
                }
                ss->text_offset += p.text.size();
                json choice = chat ? json{{"index", 0}, {"delta", {{"content", p.text}}}, {"logprobs", lp}, {"finish_reason", nullptr}}
                                   : json{{"index", 0}, {"text", p.text}, {"logprobs", lp}, {"finish_reason", nullptr}};
                if (!write(chunk(std::move(choice)))) return false;
            }
            if (!done) {
                if (!sink.is_writable()) {
                    job->cancelled = true;
                    return false;
                }
                return true;
            }
            if (job->finish_reason == "error" || job->finish_reason == "cancelled") {
                const ApiError e = job->finish_reason == "error" ? ApiError(500, "generation failed: " + job->error, "server_error")
                                                                 : ApiError(503, "the request was cancelled (server shutting down)", "server_error", "", "cancelled");
                write("data: " + serve::error_body(e) + "\n\n");
            } else {
                json last = chat ? json{{"index", 0}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", finish_reason()}}
                                 : json{{"index", 0}, {"text", ""}, {"logprobs", nullptr}, {"finish_reason", finish_reason()}};
                if (!write(chunk(std::move(last)))) return false;
                if (include_usage) {
                    json u = {{"id", id},
                              {"object", chat ? "chat.completion.chunk" : "text_completion"},
                              {"created", static_cast<int64_t>(now)},
                              {"model", mid},
                              {"choices", json::array()},
                              {"usage", usage()}};
                    if (!write("data: " + serve::dump(u) + "\n\n")) return false;
                }
            }
            write("data: [DONE]\n\n");
            ss->finished = true;
            sink.done();
            return true;
        },
        [job](bool success) {
            if (!success) job->cancelled = true;  // the connection broke: free the slot
        });
}

std::string Server::Impl::metrics_text() {
    std::string out;
    auto gauge = [&](const char* name, const char* help, double v, const char* type = "gauge") {
        out += strprintf("# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
    };
    {
        std::lock_guard<std::mutex> lk(metrics_mu);
        out += "# HELP slm_http_requests_total HTTP requests answered, by endpoint and status.\n# TYPE slm_http_requests_total counter\n";
        for (const auto& [k, n] : http_counts)
            out += strprintf("slm_http_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", k.first.c_str(), k.second,
                             static_cast<unsigned long long>(n));
    }
    gauge("slm_requests_rejected_queue_full_total", "Completions refused with 429 because the queue was full.",
          static_cast<double>(rejected_queue_full.load()), "counter");
    const State s = get_state();
    gauge("slm_ready", "1 once the model is loaded and requests are served.", s == kReady ? 1 : 0);
    serve::Scheduler* sc = nullptr;
    {
        std::lock_guard<std::mutex> lk(mu);
        sc = sched.get();
    }
    if (!sc) return out;
    const serve::SchedulerStats st = sc->stats();
    gauge("slm_requests_finished_total", "Completions that ran to a stop or length limit.", static_cast<double>(st.requests_finished), "counter");
    gauge("slm_requests_cancelled_total", "Completions cancelled (client disconnected or shutdown).", static_cast<double>(st.requests_cancelled), "counter");
    gauge("slm_requests_failed_total", "Completions that failed in decoding.", static_cast<double>(st.requests_failed), "counter");
    gauge("slm_prompt_tokens_total", "Prompt tokens of admitted completions.", static_cast<double>(st.prompt_tokens), "counter");
    gauge("slm_prompt_tokens_cached_total", "Prompt tokens reused from a slot's KV cache (prefix caching), not evaluated again.",
          static_cast<double>(st.prefix_reused_tokens), "counter");
    gauge("slm_generated_tokens_total", "Tokens generated.", static_cast<double>(st.generated_tokens), "counter");
    gauge("slm_decode_tokens_total", "Tokens evaluated by the model (prompts not cached plus generated).", static_cast<double>(st.decode_tokens), "counter");
    gauge("slm_decode_steps_total", "decode() calls (one forward pass over all running requests each).", static_cast<double>(st.steps), "counter");
    gauge("slm_decode_seconds_total", "Time spent in decode steps.", st.busy_seconds, "counter");
    gauge("slm_draft_tokens_total", "Speculative decoding: draft tokens proposed to the model.", static_cast<double>(st.draft_tokens), "counter");
    gauge("slm_draft_accepted_tokens_total", "Speculative decoding: draft tokens accepted (emitted).",
          static_cast<double>(st.draft_accepted), "counter");
    gauge("slm_queue_length", "Requests waiting for a slot.", static_cast<double>(st.queue_len));
    gauge("slm_slots_busy", "Slots running a request.", static_cast<double>(st.busy_slots));
    gauge("slm_slots_total", "Slots (--parallel).", static_cast<double>(st.n_slots));
    gauge("slm_kv_cache_tokens", "Positions held in the KV cache over all slots (running and cached prefixes).", static_cast<double>(st.cached_tokens));
    gauge("slm_kv_cache_capacity_tokens", "Positions the KV cache can hold (slots x context).", static_cast<double>(st.cache_capacity));
    gauge("slm_kv_cache_usage_ratio", "slm_kv_cache_tokens / slm_kv_cache_capacity_tokens.",
          st.cache_capacity ? static_cast<double>(st.cached_tokens) / static_cast<double>(st.cache_capacity) : 0);
    gauge("slm_kv_cache_bytes", "Bytes allocated for the KV cache of all slots.", static_cast<double>(st.cache_bytes));
    sc->write_histograms(out);
    return out;
}

void Server::Impl::routes() {
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        if (res.status == 404) send_error(res, ApiError(404, "no endpoint " + req.method + " " + req.path, "invalid_request_error", "", "not_found"));
        else if (res.status == 413) send_error(res, ApiError(413, "the request body is larger than " + std::to_string(opts.max_body_bytes) + " bytes", "invalid_request_error", "", "body_too_large"));
        else send_error(res, ApiError(res.status, "HTTP error " + std::to_string(res.status), res.status >= 500 ? "server_error" : "invalid_request_error"));
    });
    http.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const ApiError& e) {
            send_error(res, e);
        } catch (const std::exception& e) {
            send_error(res, ApiError(500, std::string("internal error: ") + e.what(), "server_error"));
        } catch (...) {
            send_error(res, ApiError(500, "internal error", "server_error"));
        }
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
        static const char* const known[] = {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health",
                                            "/metrics", "/tokenize", "/detokenize"};
        std::string ep = "other";
        for (const char* k : known)
            if (req.path == k) ep = k;
        {
            std::lock_guard<std::mutex> lk(metrics_mu);
            ++http_counts[{ep, res.status}];
        }
        if (opts.log_requests)
            std::fprintf(stderr, "slm serve: %s %s %s -> %d\n", req.remote_addr.c_str(), req.method.c_str(), req.path.c_str(), res.status);
    });
    // Handlers report errors by throwing ApiError; the exception handler turns it into the answer.
    // The key is checked in the handlers, after httplib has read the body, so a refused request
    // leaves a keep-alive connection in a clean state.
    using Handler = httplib::Server::Handler;
    auto guarded = [this](Handler h) -> Handler {
        return [this, h](const httplib::Request& req, httplib::Response& res) {
            check_key(req);
            h(req, res);
        };
    };
    http.Post("/v1/chat/completions", guarded([this](const httplib::Request& req, httplib::Response& res) { completion(req, res, true); }));
    http.Post("/v1/completions", guarded([this](const httplib::Request& req, httplib::Response& res) { completion(req, res, false); }));
    http.Get("/v1/models", guarded([this](const httplib::Request&, httplib::Response& res) {
        require_ready();
        json m = {{"id", model_id}, {"object", "model"}, {"created", static_cast<int64_t>(created)}, {"owned_by", "slm"},
                  {"meta", {{"n_vocab", model->hparams().n_vocab}, {"n_ctx_train", model->hparams().n_ctx_train},
                            {"n_ctx_slot", sched->n_ctx_slot()}, {"n_parallel", sched->n_slots()},
                            {"n_params_bytes", model->weight_bytes()}}}};
        res.set_content(serve::dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
    }));
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
        State s;
        std::string err;
        {
            std::lock_guard<std::mutex> lk(mu);
            s = state;
            err = load_error;
        }
        json j;
        if (s == kReady) {
            j = {{"status", "ok"}};
        } else {
            res.status = 503;
            res.set_header("Retry-After", std::to_string(opts.retry_after_s));
            j = {{"status", s == kLoading ? "loading" : s == kFailed ? "error" : "shutting down"}};
            if (s == kFailed) j["error"] = err;
        }
        res.set_content(serve::dump(j), "application/json");
    });
    http.Get("/metrics", guarded([this](const httplib::Request&, httplib::Response& res) {
        res.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
    }));
    http.Post("/tokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
        require_ready();
        const serve::TokenizeRequest t = serve::parse_tokenize(serve::parse_body(req.body));
        const std::vector<int32_t> ids = model->vocab().tokenize(t.content, t.add_special, t.parse_special);
        res.set_content(serve::dump(json{{"tokens", ids}}), "application/json");
    }));
    http.Post("/detokenize", guarded([this](const httplib::Request& req, httplib::Response& res) {
        require_ready();
        const std::vector<int32_t> ids = serve::parse_detokenize(serve::parse_body(req.body), static_cast<int32_t>(model->hparams().n_vocab));
        res.set_content(serve::dump(json{{"content", model->vocab().detokenize(ids, false, false)}}), "application/json");
    }));
}

Server::Server(ServeOptions opts) : impl_(std::make_unique<Impl>()) { impl_->opts = std::move(opts); }

Server::~Server() { shutdown(0); }

int Server::start() {
    Impl& im = *impl_;
    const ServeOptions& o = im.opts;
    if (o.n_parallel < 1 || o.n_parallel > 256) fail("serve: --parallel %u must be in 1..256", o.n_parallel);
    if (!o.model && o.model_path.empty()) fail("serve: no model given");
    if (o.port < 0 || o.port > 65535) fail("serve: --port %d must be in 0..65535", o.port);
    if (o.io_timeout_s < 1 || o.io_timeout_s > 3600) fail("serve: --timeout %d must be in 1..3600 seconds", o.io_timeout_s);
    if (o.max_body_bytes < 1024) fail("serve: --max-body %zu must be at least 1024 bytes", o.max_body_bytes);
    const bool has_draft = o.draft || !o.draft_path.empty();
    if (has_draft || o.spec.lookup) validate_speculative_params(o.spec);
    if (has_draft && o.spec.lookup) fail("serve: give either --draft or --lookup, not both");
    im.model_id = !o.model_id.empty() ? o.model_id : model_id_from_path(o.model_path);
    // A client that disconnects mid-stream must not kill the server with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    const size_t n_threads = o.n_http_threads ? o.n_http_threads : o.n_parallel + o.max_queue + 4;
    im.http.new_task_queue = [n_threads] { return new httplib::ThreadPool(n_threads); };
    im.http.set_payload_max_length(o.max_body_bytes);
    im.http.set_keep_alive_timeout(2);
    im.http.set_tcp_nodelay(true);  // SSE chunks are small: send each at once
    im.http.set_keep_alive_max_count(1000);  // httplib closes a connection after 5 requests by default
    im.http.set_read_timeout(o.io_timeout_s, 0);
    im.http.set_write_timeout(o.io_timeout_s, 0);
    im.routes();
    int port = o.port;
    if (port == 0) {
        port = im.http.bind_to_any_port(o.host);
        if (port < 0) fail("serve: cannot bind %s to any port", o.host.c_str());
    } else if (!im.http.bind_to_port(o.host, port)) {
        fail("serve: cannot listen on %s:%d (address in use or not local?)", o.host.c_str(), port);
    }
    im.http.widen_backlog(1024);
    im.listen_thread = std::thread([&im] {
        im.http.listen_after_bind();
        im.listening_done = true;
    });
    im.loader_thread = std::thread([&im] { im.load(); });
    return port;
}

void Server::wait_ready() {
    std::unique_lock<std::mutex> lk(impl_->mu);
    impl_->ready_cv.wait(lk, [&] { return impl_->state != kLoading; });
    if (impl_->state == kFailed) fail("serve: %s", impl_->load_error.c_str());
}

bool Server::ready() const { return impl_->get_state() == kReady; }

std::string Server::load_error() const {
    std::lock_guard<std::mutex> lk(impl_->mu);
    return impl_->load_error;
}

bool Server::stopped() const { return impl_->listening_done.load(); }

void Server::shutdown(double grace_s) {
    Impl& im = *impl_;
    {
        std::lock_guard<std::mutex> lk(im.mu);
        if (im.shut) return;
        im.shut = true;
        im.state = kDraining;  // new requests and /health get 503 from here on
    }
    if (im.loader_thread.joinable()) im.loader_thread.join();
    if (im.sched) {
        im.sched->close();
        im.sched->wait_idle(std::chrono::milliseconds(static_cast<int64_t>(std::max(0.0, grace_s) * 1000)));
        im.sched->stop();  // cancels what is left; waiting handlers answer and return
    }
    // Let every answer finish writing (streams end with their error event and [DONE]).
    for (int i = 0; i < 500 && im.in_flight.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (im.listen_thread.joinable()) {
        // stop() does nothing until the listening loop has started: repeat until it has ended.
        while (!im.listening_done.load()) {
            im.http.stop();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        im.listen_thread.join();
    }
}

} // namespace slm
