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
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    work_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_chunks(int thread_id) {
    for (;;) {
        const int64_t c = next_chunk_.fetch_add(1, std::memory_order_relaxed);
        if (c >= n_chunks_) return;
        const int64_t begin = c * chunk_size_;
        const int64_t end = std::min(n_, begin + chunk_size_);
        try {
            (*fn_)(begin, end, thread_id);
        } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex_);
            if (!error_) error_ = std::current_exception();
        }
    }
}

void ThreadPool::worker_main(int thread_id) {
    t_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = generation_.load(std::memory_order_acquire);
        for (int i = 0; g == seen && i < kSpinIterations; ++i) {
            cpu_relax();
            g = generation_.load(std::memory_order_acquire);
        }
        if (g == seen) {
            std::unique_lock<std::mutex> lock(mutex_);
            work_cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
            g = generation_.load(std::memory_order_acquire);
        }
        seen = g;
        if (stop_.load(std::memory_order_acquire)) return;

        run_chunks(thread_id);

        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
            // Taking the mutex orders this with the caller's check-then-wait.
            std::lock_guard<std::mutex> lock(mutex_);
            done_cv_.notify_one();
        }
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
    n_chunks_ = (n + chunk_size_ - 1) / chunk_size_;
    next_chunk_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }
    work_cv_.notify_all();

    t_inside_pool = true;
    run_chunks(0);
    t_inside_pool = false;

    for (int i = 0; pending_.load(std::memory_order_acquire) != 0 && i < kSpinIterations; ++i) cpu_relax();
    if (pending_.load(std::memory_order_acquire) != 0) {
        std::unique_lock<std::mutex> lock(mutex_);
        done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
}

} // namespace slm
