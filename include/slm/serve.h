// slm/serve.h - an OpenAI-compatible HTTP server over one model, with continuous batching.
//
//   slm::ServeOptions o;
//   o.model_path = "model.gguf";
//   o.port = 8080;                       // 0 = any free port (tests)
//   o.n_parallel = 4;                    // sequences decoded together
//   slm::Server server(o);
//   int port = server.start();           // listening; the model loads in the background
//   server.wait_ready();                 // /health answers 200 from here on
//   ...
//   server.shutdown(30);                 // stop accepting, let running requests finish (30 s), exit
//
// Endpoints: POST /v1/chat/completions, /v1/completions (non-streaming and SSE streaming),
// GET /v1/models, /health, /metrics (Prometheus text), POST /tokenize, /detokenize. See
// docs/serving.md for the request fields, limits, error codes and metrics.
//
// One scheduler thread owns a BatchSession with n_parallel slots: requests wait in a bounded
// queue, take a free slot (the idle slot whose cached tokens share the longest prefix with the
// prompt, which is then reused), and every step decodes all running requests in one decode()
// call. A request that finishes, is cancelled or whose client disconnects frees its slot at the
// next step. The server keeps nothing between requests apart from these caches.
#pragma once

#include "slm/model.h"
#include "slm/speculative.h"
#include "slm/types.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace slm {

struct ServeOptions {
    std::string model_path;                // loaded by start() in the background
    std::shared_ptr<const Model> model;    // or a model already loaded (model_path then only names it)
    std::string model_id;                  // the id /v1/models reports; "" = the file name without .gguf
    std::string host = "127.0.0.1";
    int port = 8080;                       // 0 = an ephemeral port (start() returns it)
    uint32_t n_parallel = 4;               // slots: requests decoded together (1..256)
    uint32_t n_ctx = 0;                    // context per slot; 0 = the training context, at most 4096
    uint32_t n_batch = 512;                // most tokens in one forward pass
    GGMLType kv_type = GGMLType::F16;
    // Sliding-window layers hold the whole context too (BatchOptions::swa_full): a slot's cached
    // prompt can then be reused from any point, at the cost of memory.
    bool swa_full = false;
    int n_threads = 0;                     // compute threads; 0 = one per physical core
    uint32_t max_queue = 64;               // requests waiting for a slot; more get 429
    size_t max_body_bytes = 1u << 20;      // larger request bodies get 413
    // Most tokens one request may generate (max_tokens past it gets 400; a request without
    // max_tokens gets at most this many); 0 = what the slot's context has room for.
    uint32_t max_tokens = 0;
    int io_timeout_s = 30;                 // a client that sends or reads nothing this long is dropped
    std::string api_key;                   // "" = no authentication; else "Authorization: Bearer KEY"
    std::string chat_template;             // template source; "" = the model's (ChatML if none)
    bool prefix_cache = true;              // reuse a slot's cached prompt prefix
    int retry_after_s = 1;                 // Retry-After of 429 and 503 answers
    uint32_t n_http_threads = 0;           // connection threads; 0 = n_parallel + max_queue + 4
    bool log_requests = false;             // one line per request on stderr
    // Speculative decoding (docs/serving.md): a draft model of the same vocabulary, loaded with
    // the model (draft_path, or `draft` already loaded), or spec.lookup (prompt lookup). Refused
    // for models with a recurrent state.
    std::string draft_path;
    std::shared_ptr<const Model> draft;
    SpeculativeParams spec;
};

class Server {
public:
    explicit Server(ServeOptions opts);
    ~Server();  // shutdown(0) if still running
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds host:port and starts serving (and loading the model if not given). Returns the port.
    // Throws slm::Error when the address cannot be bound or the options are invalid.
    int start();
    // Blocks until the model is loaded and requests are served; throws slm::Error with the load
    // error if loading failed.
    void wait_ready();
    bool ready() const;
    // "" while loading or ready; the load error otherwise.
    std::string load_error() const;
    // Stops accepting new requests (they get 503), lets running and queued ones finish for up to
    // grace_s seconds, cancels the rest, closes the listening socket and joins every thread.
    // Safe to call more than once.
    void shutdown(double grace_s);
    // Whether the listening thread has exited (after shutdown, or if it failed).
    bool stopped() const;

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

} // namespace slm
