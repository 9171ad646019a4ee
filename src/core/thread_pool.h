// thread_pool.h - a small persistent pool for data-parallel loops (matmul rows, heads).
//
//   slm::ThreadPool pool(4);
//   pool.parallel_for(n_rows, [&](int64_t begin, int64_t end, int thread_id) { ... });
//
// Workers live as long as the pool; between calls they spin briefly (decode issues many small
// loops back to back) and then sleep on a condition variable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace slm {

class ThreadPool {
public:
    // A non-owning reference to any callable (begin, end, thread_id): unlike std::function it
    // never allocates, so a forward pass makes no allocation per parallel_for.
    class RangeFn {
    public:
        template <class F>
        RangeFn(const F& f)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
            : obj_(&f), call_([](const void* o, int64_t b, int64_t e, int t) { (*static_cast<const F*>(o))(b, e, t); }) {}
        void operator()(int64_t begin, int64_t end, int thread_id) const { call_(obj_, begin, end, thread_id); }

    private:
        const void* obj_;
        void (*call_)(const void*, int64_t, int64_t, int);
    };

    // n_threads counts the calling thread: ThreadPool(4) starts 3 workers; n_threads <= 1
    // starts none and parallel_for runs inline.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Calls fn on disjoint chunks covering [0, n) and returns when all are done. The caller
    // runs chunks too (thread_id 0); workers have ids 1..size()-1, so per-thread scratch can
    // be indexed by thread_id. A thread may get several chunks. The first exception thrown by
    // fn is rethrown here after every chunk has finished. Calls from inside fn run inline.
    void parallel_for(int64_t n, RangeFn fn);

private:
    void worker_main(int thread_id);
    // Claims and runs chunks of generation `gen` until none are left (or a newer job started).
    void run_chunks(int thread_id, uint32_t gen);

    int n_threads_;
    std::vector<std::thread> workers_;

    std::mutex call_mutex_;  // one parallel_for at a time when several threads share the pool

    std::mutex mutex_;  // guards the sleeping side of ticket_ / done_ / stop_
    std::condition_variable work_cv_;
    std::condition_variable done_cv_;
    // (generation << 32) | next chunk to claim. A chunk is claimed by a compare-exchange that
    // also checks the generation, so a worker that wakes late cannot take part in a newer job,
    // and the caller never waits for a worker that has not claimed anything: with both cores
    // busy elsewhere the caller simply runs every chunk itself.
    std::atomic<uint64_t> ticket_{0};
    std::atomic<int64_t> done_{0};  // chunks finished in the current generation
    std::atomic<bool> stop_{false};
    uint32_t gen_ = 0;              // the caller's current generation

    // The current job; written before ticket_ publishes a new generation, read by workers only
    // after they claimed a chunk of that generation.
    const RangeFn* fn_ = nullptr;
    int64_t n_ = 0;
    int64_t chunk_size_ = 0;
    std::atomic<int64_t> n_chunks_{0};

    std::mutex error_mutex_;
    std::exception_ptr error_;
};

} // namespace slm
