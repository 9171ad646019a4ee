// slm serve: an OpenAI-compatible HTTP server (include/slm/serve.h). Flags, then start and wait
// for SIGTERM / SIGINT.
#include "commands.h"

#include "slm/error.h"
#include "slm/serve.h"

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <memory>

namespace slm::cli {

namespace {

struct ServeFlags {
    ServeOptions o;
    std::string cache_type = "f16";
    double shutdown_timeout = 30;
};

void serve(ServeFlags& f) {
    ServeOptions& o = f.o;
    if (o.model_path.empty()) o.model_path = default_model();
    if (!type_from_name(f.cache_type, &o.kv_type)) fail("--cache-type '%s' is not a type name (f16, f32, ...)", f.cache_type.c_str());
    if (!o.chat_template.empty()) o.chat_template = read_text_file(o.chat_template);

    // SIGTERM and SIGINT are taken synchronously by this thread (sigtimedwait), so every thread
    // the server starts inherits them blocked and no handler runs at an arbitrary point.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);

    Server server(o);
    const int port = server.start();
    std::fprintf(stderr, "slm serve: listening on http://%s:%d (model %s loading, %u slots)\n", o.host.c_str(), port,
                 o.model_path.c_str(), o.n_parallel);
    if (!o.draft_path.empty() || o.spec.lookup)
        std::fprintf(stderr, "slm serve: speculative decoding: %s, up to %d tokens drafted per step\n",
                     o.spec.lookup ? "prompt lookup" : o.draft_path.c_str(), o.spec.draft_max);
    bool announced = false;
    for (;;) {
        timespec ts{0, 200 * 1000 * 1000};
        const int sig = sigtimedwait(&set, nullptr, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            std::fprintf(stderr, "slm serve: %s: finishing running requests (up to %.0f s), then exiting\n",
                         sig == SIGTERM ? "SIGTERM" : "SIGINT", f.shutdown_timeout);
            server.shutdown(f.shutdown_timeout);
            std::fprintf(stderr, "slm serve: stopped\n");
            return;
        }
        if (!server.load_error().empty()) {
            server.shutdown(0);
            fail("serve: %s", server.load_error().c_str());
        }
        if (!announced && server.ready()) {
            announced = true;
            std::fprintf(stderr, "slm serve: ready\n");
        }
        if (server.stopped()) fail("serve: the listening socket closed unexpectedly");
    }
}

} // namespace

void add_serve(CLI::App& app) {
    auto f = std::make_shared<ServeFlags>();
    ServeOptions& o = f->o;
    CLI::App* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching (docs/serving.md)");
    sub->add_option("-m,--model", o.model_path, "GGUF model file (default: $SLM_MODEL or the bundled stories260K)");
    sub->add_option("--alias", o.model_id, "Model id reported by /v1/models (default: the file name)");
    sub->add_option("--host", o.host, "Address to listen on (default 127.0.0.1: this machine only)");
    sub->add_option("--port", o.port, "TCP port (0 = any free port)")->check(CLI::Range(0, 65535));
    sub->add_option("--parallel", o.n_parallel, "Requests decoded together (KV-cache slots)")->check(CLI::Range(1, 256));
    sub->add_option("-c,--ctx-size", o.n_ctx, "Context per slot (default: training context, at most 4096)")->check(CLI::Range(0, 1 << 20));
    sub->add_option("-b,--batch-size", o.n_batch, "Most tokens in one forward pass")->check(CLI::Range(1, 1 << 16));
    sub->add_option("--cache-type,--kv-type", f->cache_type, "KV cache type (f16 default)");
    sub->add_flag("--swa-full", o.swa_full, "Sliding-window layers (Gemma 2/3) keep the whole context, not only their window");
    sub->add_option("-t,--threads", o.n_threads, "Compute threads (default: one per physical core)")->check(CLI::Range(0, 256));
    sub->add_option("--queue", o.max_queue, "Requests that may wait for a slot; more get 429")->check(CLI::Range(0, 100000));
    sub->add_option("--max-body", o.max_body_bytes, "Largest request body in bytes; larger get 413")->check(CLI::Range(1024, 1 << 30));
    sub->add_option("--max-tokens", o.max_tokens,
                    "Most tokens one request may generate; 0 = what the context has room for (default 0)")
        ->check(CLI::Range(0, 1 << 24));
    sub->add_option("--timeout", o.io_timeout_s, "Seconds a client may stay silent while sending or reading (default 30)")
        ->check(CLI::Range(1, 3600));
    sub->add_option("--api-key", o.api_key, "Require \"Authorization: Bearer KEY\" (all endpoints but /health)");
    sub->add_option("--chat-template", o.chat_template, "Jinja chat template file (default: the model's)")->check(CLI::ExistingFile);
    sub->add_flag("!--no-prefix-cache", o.prefix_cache, "Do not reuse cached prompt prefixes across requests");
    sub->add_option("--retry-after", o.retry_after_s, "Retry-After seconds of 429/503 answers")->check(CLI::Range(0, 3600));
    sub->add_option("--http-threads", o.n_http_threads, "Connection threads (default: parallel + queue + 4)")->check(CLI::Range(0, 4096));
    sub->add_option("--shutdown-timeout", f->shutdown_timeout, "Seconds running requests get to finish after SIGTERM")
        ->check(CLI::Range(0.0, 3600.0));
    sub->add_flag("--log-requests", o.log_requests, "Log one line per request to stderr");
    auto* dr = sub->add_option("--draft", o.draft_path, "Speculative decoding with this draft model (same vocabulary, smaller)")
        ->check(CLI::ExistingFile);
    auto* lk = sub->add_flag("--lookup", o.spec.lookup, "Speculative decoding drafted by prompt lookup (n-grams of each request's tokens)");
    dr->excludes(lk);
    sub->add_option("--draft-max", o.spec.draft_max, "Most tokens drafted per request and step")->default_val(16)->check(CLI::Range(1, 1024));
    sub->add_option("--draft-min-p,--draft-p-min", o.spec.draft_p_min, "Stop drafting when the draft's top token is less likely than this")
        ->default_val(0.0)->check(CLI::Range(0.0, 1.0));
    sub->add_flag("--draft-adaptive", o.spec.adaptive, "Draft length follows acceptance (kept + 1 after a rejection, doubled after a full accept)");
    sub->add_option("--lookup-ngram", o.spec.ngram_max, "Prompt lookup: longest n-gram matched")->default_val(3)->check(CLI::Range(1, 64));
    sub->add_option("--lookup-ngram-min", o.spec.ngram_min, "Prompt lookup: shortest n-gram matched")->default_val(1)->check(CLI::Range(1, 64));
    sub->callback([f]() { serve(*f); });
}

} // namespace slm::cli
