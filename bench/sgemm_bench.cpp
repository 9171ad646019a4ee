// sgemm_bench.cpp - GFLOP/s of the F32 products of training (kernels/sgemm.h) per ISA.
//
//   ./build/bench/bench_sgemm                                  every ISA's kernel, 1 thread
//   ./build/bench/bench_sgemm --benchmark_filter=threaded      sgemm() on one thread and on a pool
//                                                              of all cores, wall-clock time
//   SLM_ISA=avx2 ./build/bench/bench_sgemm --benchmark_filter=threaded     the same with AVX2
// The per-ISA kernel figures (sgemm/...) are rates per CPU second: on a shared machine they show
// what the core does while it runs this process.
//
// Shapes are one linear layer of a d x d model on a batch of BT = 1024 tokens:
//   fwd  Y = X Wᵀ      ta=0 tb=1  M=1024 N=d    K=d
//   dX   dX = dY W     ta=0 tb=0  M=1024 N=d    K=d
//   dW   dW += dYᵀ X   ta=1 tb=0  M=d    N=d    K=1024  (beta 1)
//   tt   C = Aᵀ Bᵀ     ta=1 tb=1  M=1024 N=d    K=d
// plus a decode-like fwd with M=8 (the threaded split goes over N there), two rank-16 LoRA
// products (N=16: a narrow tile) and the small products of attention.
// "peak" is a register-only loop of independent FMAs: the core's measured FMA throughput, to read
// the sgemm figures as a fraction of it on a machine whose clock and load are unknown.
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/sgemm.h"

#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace {

using namespace slm::kernels;

struct Shape {
    const char* name;
    bool ta, tb;
    int64_t M, N, K;
    float beta;
};

std::vector<Shape> shapes() {
    std::vector<Shape> out;
    for (int64_t d : {256, 512, 768}) {
        out.push_back({"fwd", false, true, 1024, d, d, 0.0f});
        out.push_back({"dX", false, false, 1024, d, d, 0.0f});
        out.push_back({"dW", true, false, d, d, 1024, 1.0f});
        out.push_back({"tt", true, true, 1024, d, d, 0.0f});
    }
    out.push_back({"fwd_m8", false, true, 8, 2048, 768, 0.0f});
    out.push_back({"lora_fwd", false, true, 1024, 16, 768, 0.0f});  // X Aᵀ, rank 16
    out.push_back({"lora_dB", true, false, 768, 16, 1024, 1.0f});   // dYᵀ H
    // One 64-query block of one head (head size 32) against 256 keys, as the training
    // attention calls it: S = Q Kᵀ, O = P V, dK += dSᵀ Q.
    out.push_back({"attn_qk", false, true, 64, 256, 32, 0.0f});
    out.push_back({"attn_pv", false, false, 64, 32, 256, 0.0f});
    out.push_back({"attn_dk", true, false, 256, 32, 64, 1.0f});
    return out;
}

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v)
        x = dist(rng);
    return v;
}

struct Operands {
    std::vector<float> A, B, C;
    int64_t lda, ldb, ldc;
    explicit Operands(const Shape& s) {
        lda = s.ta ? s.M : s.K;
        ldb = s.tb ? s.K : s.N;
        ldc = s.N;
        A = random_floats(static_cast<size_t>(s.M * s.K), 1);
        B = random_floats(static_cast<size_t>(s.K * s.N), 2);
        C.assign(static_cast<size_t>(s.M * s.N), 0.0f);
    }
};

void set_flops(benchmark::State& state, const Shape& s) {
    state.counters["FLOPS"] = benchmark::Counter(2.0 * static_cast<double>(s.M * s.N * s.K),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void bm_kernel(benchmark::State& state, SgemmFn fn, Shape s) {
    Operands o(s);
    for (auto _ : state) {
        fn(s.ta, s.tb, s.M, s.N, s.K, o.A.data(), o.lda, o.B.data(), o.ldb, s.beta, o.C.data(), o.ldc);
        benchmark::DoNotOptimize(o.C.data());
        benchmark::ClobberMemory();
    }
    set_flops(state, s);
}

// sgemm() on all cores, or (all = false) on the calling thread alone, both timed by the wall
// clock so that their ratio is the speed-up.
void bm_threaded(benchmark::State& state, Shape s, bool all) {
    static slm::ThreadPool all_cores(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    slm::ThreadPool* pool = all ? &all_cores : nullptr;
    Operands o(s);
    for (auto _ : state) {
        sgemm(pool, s.ta, s.tb, s.M, s.N, s.K, o.A.data(), o.lda, o.B.data(), o.ldb, s.beta, o.C.data(), o.ldc);
        benchmark::DoNotOptimize(o.C.data());
        benchmark::ClobberMemory();
    }
    set_flops(state, s);
    state.SetLabel(std::string(isa_name()) + " x" + std::to_string(pool ? pool->size() : 1));
}

#if defined(__x86_64__)
// 12 independent FMA chains (more than latency x throughput on any current x86 core), 2 FLOPs per
// lane each, written in assembly so that nothing but the FMAs is timed.
#define SLM_FMA12()                                                                                         \
    "vfmadd231ps %[x], %[y], %[a0]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a1]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a2]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a3]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a4]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a5]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a6]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a7]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a8]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a9]\n\t"                                                                   \
    "vfmadd231ps %[x], %[y], %[a10]\n\t"                                                                  \
    "vfmadd231ps %[x], %[y], %[a11]\n\t"
#define SLM_PEAK_LOOP(V, SET, LANES)                                                                       \
    V a0 = SET(0), a1 = SET(1), a2 = SET(2), a3 = SET(3), a4 = SET(4), a5 = SET(5), a6 = SET(6), a7 = SET(7), \
      a8 = SET(8), a9 = SET(9), a10 = SET(10), a11 = SET(11);                                               \
    const V x = SET(0.999f), y = SET(1e-6f);                                                               \
    constexpr int64_t kIters = 1 << 16;                                                                    \
    for (auto _ : state)                                                                                   \
        for (int64_t it = 0; it < kIters; ++it)                                                            \
            __asm__ volatile(SLM_FMA12()                                                                   \
                             : [a0] "+v"(a0), [a1] "+v"(a1), [a2] "+v"(a2), [a3] "+v"(a3), [a4] "+v"(a4),  \
                               [a5] "+v"(a5), [a6] "+v"(a6), [a7] "+v"(a7), [a8] "+v"(a8), [a9] "+v"(a9),  \
                               [a10] "+v"(a10), [a11] "+v"(a11)                                            \
                             : [x] "v"(x), [y] "v"(y));                                                     \
    V sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                                   \
    float sink[LANES];                                                                                     \
    std::memcpy(sink, &sum, sizeof sink);                                                                  \
    benchmark::DoNotOptimize(sink[0]);                                                                     \
    state.counters["FLOPS"] =                                                                              \
        benchmark::Counter(2.0 * 12 * LANES * kIters, benchmark::Counter::kIsIterationInvariantRate);

__attribute__((target("avx2,fma"))) void bm_peak_avx2(benchmark::State& state) {
    SLM_PEAK_LOOP(__m256, _mm256_set1_ps, 8)
}
__attribute__((target("avx512f"))) void bm_peak_avx512(benchmark::State& state) {
    SLM_PEAK_LOOP(__m512, _mm512_set1_ps, 16)
}
#endif

} // namespace

int main(int argc, char** argv) {
#if defined(__x86_64__)
    if (sgemm_for_isa("avx2"))
        benchmark::RegisterBenchmark("peak/avx2", bm_peak_avx2);
    if (sgemm_for_isa("avx512"))
        benchmark::RegisterBenchmark("peak/avx512", bm_peak_avx512);
#endif
    for (const Shape& s : shapes()) {
        const std::string shape = std::string(s.name) + "/M" + std::to_string(s.M) + "_N" + std::to_string(s.N) + "_K" +
                                  std::to_string(s.K);
        for (const char* isa : {"scalar", "avx2", "avx512", "neon"})
            if (SgemmFn fn = sgemm_for_isa(isa))
                benchmark::RegisterBenchmark(("sgemm/" + shape + "/" + isa).c_str(), bm_kernel, fn, s)
                    ->Unit(benchmark::kMillisecond);
        for (bool all : {false, true})
            benchmark::RegisterBenchmark(("threaded/" + shape + (all ? "/all" : "/one")).c_str(), bm_threaded, s, all)
                ->Unit(benchmark::kMillisecond)
                ->UseRealTime();
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
