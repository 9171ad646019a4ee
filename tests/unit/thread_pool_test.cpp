// thread_pool_test.cpp - parallel_for covers [0, n) exactly once, on every call.
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

// Runs parallel_for(n) and checks every index was visited exactly once by a valid thread id.
void expect_exact_cover(slm::ThreadPool& pool, int64_t n) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    for (auto& h : hits) h.store(0);
    std::atomic<int> bad_ids{0}, bad_ranges{0};
    pool.parallel_for(n, [&](int64_t begin, int64_t end, int thread_id) {
        if (thread_id < 0 || thread_id >= pool.size()) bad_ids.fetch_add(1);
        if (!(0 <= begin && begin < end && end <= n)) bad_ranges.fetch_add(1);
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    });
    EXPECT_EQ(bad_ids.load(), 0);
    EXPECT_EQ(bad_ranges.load(), 0);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
}

TEST(ThreadPool, CoversEveryIndexOnce) {
    for (int n_threads : {1, 2, 3, 4, 8}) {
        slm::ThreadPool pool(n_threads);
        EXPECT_EQ(pool.size(), n_threads);
        for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, int64_t{7}, int64_t{8}, int64_t{9},
                          int64_t{31}, int64_t{100}, int64_t{1000}, int64_t{4097}}) {
            expect_exact_cover(pool, n);
        }
    }
}

TEST(ThreadPool, Repeatedly) {
    slm::ThreadPool pool(4);
    for (int rep = 0; rep < 2000; ++rep) expect_exact_cover(pool, 1 + rep % 37);
}

TEST(ThreadPool, EmptyRangeCallsNothing) {
    slm::ThreadPool pool(3);
    int calls = 0;
    pool.parallel_for(0, [&](int64_t, int64_t, int) { ++calls; });
    pool.parallel_for(-5, [&](int64_t, int64_t, int) { ++calls; });
    EXPECT_EQ(calls, 0);
}

TEST(ThreadPool, SingleThreadRunsInline) {
    slm::ThreadPool pool(1);
    const auto caller = std::this_thread::get_id();
    bool inline_call = false;
    pool.parallel_for(10, [&](int64_t begin, int64_t end, int thread_id) {
        inline_call = std::this_thread::get_id() == caller && begin == 0 && end == 10 && thread_id == 0;
    });
    EXPECT_TRUE(inline_call);
}

TEST(ThreadPool, UsesWorkerThreads) {
    slm::ThreadPool pool(4);
    std::mutex mu;
    std::set<std::thread::id> ids;
    // Enough slow chunks that idle workers pick some up.
    for (int rep = 0; rep < 50 && ids.size() < 2; ++rep) {
        pool.parallel_for(16, [&](int64_t, int64_t, int) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
            std::lock_guard<std::mutex> lock(mu);
            ids.insert(std::this_thread::get_id());
        });
    }
    EXPECT_GE(ids.size(), 2u);
}

TEST(ThreadPool, NestedCallsRunInline) {
    slm::ThreadPool pool(3);
    std::atomic<int64_t> total{0};
    pool.parallel_for(6, [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) {
            pool.parallel_for(10, [&](int64_t b2, int64_t e2, int) { total.fetch_add(e2 - b2); });
        }
    });
    EXPECT_EQ(total.load(), 60);
}

TEST(ThreadPool, ExceptionIsRethrownAndPoolSurvives) {
    slm::ThreadPool pool(4);
    EXPECT_THROW(pool.parallel_for(100,
                                   [&](int64_t b, int64_t e, int) {
                                       if (b <= 50 && 50 < e) throw std::runtime_error("chunk failed");
                                   }),
                 std::runtime_error);
    expect_exact_cover(pool, 1000);
}

TEST(ThreadPool, SharedByTwoCallers) {
    slm::ThreadPool pool(3);
    auto work = [&] {
        for (int rep = 0; rep < 200; ++rep) expect_exact_cover(pool, 50);
    };
    std::thread other(work);
    work();
    other.join();
}

} // namespace

// Many short jobs of varying size back to back: a worker still finishing one job must never
// take part in the next (each index of each job is seen exactly once, and nothing hangs).
TEST(ThreadPool, BackToBackJobsOfVaryingSize) {
    for (int threads : {2, 3}) {
        slm::ThreadPool pool(threads);
        std::atomic<int64_t> sum{0};
        int64_t expect = 0;
        for (int64_t it = 0; it < 300000; ++it) {
            const int64_t n = 1 + it % 13;
            expect += n;
            pool.parallel_for(n, [&](int64_t b, int64_t e, int) { sum.fetch_add(e - b, std::memory_order_relaxed); });
        }
        EXPECT_EQ(sum.load(), expect) << threads << " threads";
    }
}
