#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace slm {
namespace {

// Chunks per thread: more than one so a thread that was descheduled (two cores shared by many
// processes) does not hold up the whole loop, few enough that claiming a chunk stays cheap.
constexpr int64_t kChunksPerThread = 4;

// Busy-wait iterations before sleeping: about 50-100 us, longer than the gap between the
// matmuls of one decode step, much shorter than a scheduler time slice.
constexpr int kSpinIterations = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

thread_local bool t_inside_pool = false;

} // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    workers_.reserve(static_cast<size_t>(n_threads_ - 1));
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        stop_.store(true, std::memory_order_release);
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_chunks(int thread_id, uint32_t gen) {
    for (;;) {
        uint64_t t = ticket_.load(std::memory_order_acquire);
        for (;;) {
            if (static_cast<uint32_t>(t >> 32) != gen) return;
            if (static_cast<int64_t>(t & 0xffffffffu) >= n_chunks_.load(std::memory_order_relaxed)) return;
            if (ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) break;
        }
        const int64_t c = static_cast<int64_t>(t & 0xffffffffu);
        const int64_t begin = c * chunk_size_;
        const int64_t end = std::min(n_, begin + chunk_size_);
        try {
            (*fn_)(begin, end, thread_id);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex_);
            if (!error_) error_ = std::current_exception();
        }
        if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_chunks_.load(std::memory_order_relaxed)) {
            // Taking the mutex orders this with the caller's check-then-wait.
            std::lock_guard<std::mutex> lock(mutex_);
            done_cv_.notify_one();
        }
    }
}

void ThreadPool::worker_main(int thread_id) {
    t_inside_pool = true;
    uint32_t seen = 0;
    auto current = [&] { return static_cast<uint32_t>(ticket_.load(std::memory_order_acquire) >> 32); };
    for (;;) {
        for (int i = 0; current() == seen && !stop_.load(std::memory_order_acquire) && i < kSpinIterations; ++i)
            cpu_relax();
        if (current() == seen && !stop_.load(std::memory_order_acquire)) {
            std::unique_lock<std::mutex> lock(mutex_);
            work_cv_.wait(lock, [&] { return current() != seen || stop_.load(std::memory_order_acquire); });
        }
        if (stop_.load(std::memory_order_acquire)) return;
        seen = current();
        run_chunks(thread_id, seen);
    }
}

void ThreadPool::parallel_for(int64_t n, RangeFn fn) {
    if (n <= 0) return;
    if (n_threads_ == 1 || n == 1 || t_inside_pool) {
        fn(0, n, 0);
        return;
    }
    std::lock_guard<std::mutex> call_lock(call_mutex_);

    const int64_t max_chunks = std::min<int64_t>(n, kChunksPerThread * n_threads_);
    fn_ = &fn;
    n_ = n;
    chunk_size_ = (n + max_chunks - 1) / max_chunks;
    const int64_t n_chunks = (n + chunk_size_ - 1) / chunk_size_;
    n_chunks_.store(n_chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const uint32_t gen = ++gen_;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        ticket_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    }
    work_cv_.notify_all();

    t_inside_pool = true;
    run_chunks(0, gen);
    t_inside_pool = false;

    // Only chunks that were claimed can still be running: wait for those, not for idle workers.
    for (int i = 0; done_.load(std::memory_order_acquire) != n_chunks && i < kSpinIterations; ++i) cpu_relax();
    if (done_.load(std::memory_order_acquire) != n_chunks) {
        std::unique_lock<std::mutex> lock(mutex_);
        done_cv_.wait(lock, [&] { return done_.load(std::memory_order_acquire) == n_chunks; });
    }
    // Close this generation before the next call rewrites the job: a worker that loaded the
    // ticket earlier could otherwise claim "chunk n_chunks" against the next job's n_chunks_.
    ticket_.store((static_cast<uint64_t>(gen) << 32) | 0xffffffffu, std::memory_order_release);
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

} // namespace slm
