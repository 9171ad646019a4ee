// serve/scheduler.h - continuous batching: one thread owns the BatchSession and runs every
// admitted request one token further per decode() call.
#pragma once

#include "runtime/speculative_impl.h"
#include "runtime/stop_filter.h"
#include "serve/api.h"
#include "slm/batch.h"
#include "slm/model.h"
#include "slm/speculative.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace slm::serve {

using Clock = std::chrono::steady_clock;

// What a request's text grew by in one step, with the token's logprobs if asked for.
struct Piece {
    std::string text;          // final text (whole UTF-8 characters, never part of a stop string)
    bool has_token = false;    // a token was sampled in this step (lp valid when logprobs)
    TokenLogprob lp;
};

// A request as the scheduler runs it, and the channel its HTTP handler reads.
struct Job {
    // Input, set before submit().
    std::vector<int32_t> prompt;
    SamplerParams sampling;
    uint32_t max_tokens = 16;          // already bounded by the slot's context
    std::vector<std::string> stop;
    bool logprobs = false;
    int top_logprobs = 0;
    bool ignore_eos = false;

    // Output, under mu.
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Piece> pieces;          // produced, not yet taken by the handler
    bool done = false;
    std::string finish_reason;         // "stop", "length", "cancelled", "error"
    std::string error;                 // when finish_reason is "error"
    uint32_t n_prompt = 0, n_gen = 0, n_cached = 0;  // n_cached: prompt tokens reused from a slot's cache

    std::atomic<bool> cancelled{false};  // set by the handler (client gone) or by shutdown
    Clock::time_point t_submit, t_first;

    // Handler side: waits up to `timeout` for pieces or the end; moves the pieces out.
    // Returns true when done (after the last pieces).
    bool take(std::vector<Piece>* out, std::chrono::milliseconds timeout);
};

struct SchedulerOptions {
    uint32_t n_parallel = 4;
    uint32_t n_ctx = 0;
    uint32_t n_batch = 512;
    GGMLType kv_type = GGMLType::F16;
    bool swa_full = false;  // BatchOptions::swa_full
    int n_threads = 0;
    uint32_t max_queue = 64;
    bool prefix_cache = true;
    // Speculative decoding: a draft model of the same vocabulary (its own BatchSession, slot i
    // mirroring slot i) or spec.lookup (drafts from each request's own tokens). Greedy requests
    // get exactly the tokens they get without it. Refused for models with a recurrent state.
    std::shared_ptr<const Model> draft;
    SpeculativeParams spec;
    bool speculative() const { return draft != nullptr || spec.lookup; }
};

// A fixed-bucket histogram (seconds), Prometheus style: cumulative counts are derived on output.
struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket, bounds.size() + 1 (the last is +Inf)
    double sum = 0;
    uint64_t n = 0;
    explicit Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1, 0) {}
    void observe(double v);
    void write(std::string& out, const char* name, const char* help) const;
};

struct SchedulerStats {
    uint64_t requests_finished = 0, requests_cancelled = 0, requests_failed = 0;
    uint64_t prompt_tokens = 0, generated_tokens = 0, prefix_reused_tokens = 0, steps = 0;
    uint64_t decode_tokens = 0;         // tokens through decode() (prompt parts not reused + generated)
    size_t queue_len = 0, busy_slots = 0, n_slots = 0;
    uint64_t cached_tokens = 0;         // positions held in all slots' KV cache
    uint64_t cache_capacity = 0;        // n_slots x n_ctx
    size_t cache_bytes = 0;
    double busy_seconds = 0;            // time spent in decode() and sampling
    uint64_t draft_tokens = 0;          // speculative decoding: tokens proposed to the model
    uint64_t draft_accepted = 0;        // of those, kept (emitted)
};

class Scheduler {
public:
    Scheduler(std::shared_ptr<const Model> model, const SchedulerOptions& opts);
    ~Scheduler();  // stop(): cancels everything and joins

    uint32_t n_ctx_slot() const { return n_ctx_; }
    uint32_t n_slots() const { return n_slots_; }

    enum class Admit { Queued, QueueFull, Stopping };
    Admit submit(const std::shared_ptr<Job>& job);

    // Waits until no request is queued or running, up to `timeout`; true if idle.
    bool wait_idle(std::chrono::milliseconds timeout);
    // Refuses new submissions from now on.
    void close();
    // Cancels every queued and running request, then ends the thread.
    void stop();

    SchedulerStats stats() const;
    // Prometheus text of the latency histograms.
    void write_histograms(std::string& out) const;

private:
    struct Slot {
        std::shared_ptr<Job> job;       // null: idle
        std::vector<int32_t> cached;    // the tokens in this slot's KV cache, in order
        std::vector<int32_t> feed;      // tokens to decode in the next step
        std::unique_ptr<Sampler> sampler;
        std::unique_ptr<Utf8Stream> utf8;
        StopFilter stop;                // holds back text that may still become a stop string
        bool strip_space = false;
        uint64_t last_used = 0;
        // Speculative decoding.
        std::vector<int32_t> dcached;   // the tokens in this slot of the draft model's cache
        std::unique_ptr<Sampler> dsampler;
        std::unique_ptr<spec::Verifier> verifier;
        std::vector<int32_t> drafts;    // drafted for this step, after feed[0]
        std::vector<std::vector<TokenProb>> dq;  // the drafter's distribution per draft (sampling)
        size_t k_max = 0;               // most drafts this step
        size_t k_cur = 0;               // the draft length (adaptive)
    };

    void loop();
    void admit_locked();
    void finish(Slot& s, const std::string& reason, const std::string& error = "");
    void step();
    void draft(const std::vector<size_t>& who);
    // Sends `tok` (chosen from `logits`, to sit at cache position `pos`) to the request; finishes
    // it and returns true when this token ends it.
    bool emit(Slot& s, int32_t tok, const float* logits, uint32_t pos);

    std::shared_ptr<const Model> model_;
    std::unique_ptr<BatchSession> batch_;
    std::unique_ptr<BatchSession> dbatch_;  // the draft model's slots (speculative with a draft)
    uint32_t n_slots_ = 0, n_ctx_ = 0;
    SchedulerOptions opts_;

    mutable std::mutex mu_;
    std::condition_variable cv_;       // work arrived / stop
    std::condition_variable idle_cv_;  // became idle
    std::deque<std::shared_ptr<Job>> queue_;
    std::vector<Slot> slots_;          // touched only by the thread, except counts under mu_
    size_t busy_ = 0;                  // slots with a job (under mu_)
    bool closed_ = false, stopping_ = false;
    uint64_t tick_ = 0;

    SchedulerStats st_;                // under mu_
    Histogram h_request_, h_ttft_, h_queue_;
    std::thread thread_;
};

} // namespace slm::serve
