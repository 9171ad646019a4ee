// kernels_bench.cpp - throughput of the per-type kernels and of mul_mat.
//
//   ./build/bench/bench_kernels --benchmark_filter=MulMat
//
// bytes_per_second counts the weight bytes read, the quantity that bounds decode speed.
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using slm::GGMLType;
using namespace slm::kernels;

const GGMLType kTypes[] = {GGMLType::F32,    GGMLType::F16,    GGMLType::BF16,  GGMLType::Q4_0,  GGMLType::Q4_1,
                           GGMLType::Q5_0,   GGMLType::Q5_1,   GGMLType::Q8_0,  GGMLType::Q2_K,  GGMLType::Q3_K,
                           GGMLType::Q4_K,   GGMLType::Q5_K,   GGMLType::Q6_K,  GGMLType::IQ4_NL, GGMLType::IQ4_XS,
                           GGMLType::TQ1_0,  GGMLType::TQ2_0};

std::vector<float> random_floats(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

std::vector<uint8_t> quantized(GGMLType t, const std::vector<float>& x) {
    std::vector<uint8_t> out(slm::row_size(t, static_cast<int64_t>(x.size())));
    quantize_row_ref(x.data(), t, static_cast<int64_t>(x.size()), out.data());
    return out;
}

void bm_vec_dot(benchmark::State& state, GGMLType t) {
    const int64_t n = state.range(0);
    const TypeTraits* tt = traits(t);
    const std::vector<uint8_t> w = quantized(t, random_floats(static_cast<size_t>(n), 1));
    const std::vector<float> x = random_floats(static_cast<size_t>(n), 2);
    std::vector<uint8_t> a(slm::row_size(tt->vec_dot_type, n));
    traits(tt->vec_dot_type)->from_float(x.data(), a.data(), n);
    float s = 0;
    for (auto _ : state) {
        tt->vec_dot(n, &s, w.data(), a.data());
        benchmark::DoNotOptimize(s);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
    state.SetLabel(isa_name());
}

void bm_from_float(benchmark::State& state, GGMLType t) {
    const int64_t n = state.range(0);
    const TypeTraits* tt = traits(t);
    const std::vector<float> x = random_floats(static_cast<size_t>(n), 3);
    std::vector<uint8_t> y(slm::row_size(t, n));
    for (auto _ : state) {
        tt->from_float(x.data(), y.data(), n);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * n * static_cast<int64_t>(sizeof(float)));
}

void bm_to_float(benchmark::State& state, GGMLType t) {
    const int64_t n = state.range(0);
    const std::vector<uint8_t> w = quantized(t, random_floats(static_cast<size_t>(n), 4));
    std::vector<float> y(static_cast<size_t>(n));
    for (auto _ : state) {
        traits(t)->to_float(w.data(), y.data(), n);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
}

// W 2048 x 2048 times range(0) tokens, on range(1) threads (1 = no pool).
void bm_mul_mat(benchmark::State& state, GGMLType t) {
    const int64_t n = 2048;
    const int64_t n_tokens = state.range(0);
    const int n_threads = static_cast<int>(state.range(1));
    const std::vector<uint8_t> w = quantized(t, random_floats(static_cast<size_t>(n * n), 5));
    const std::vector<float> x = random_floats(static_cast<size_t>(n * n_tokens), 6);
    std::vector<float> y(static_cast<size_t>(n * n_tokens));
    std::vector<uint8_t> scratch;
    std::unique_ptr<slm::ThreadPool> pool;
    if (n_threads > 1) pool = std::make_unique<slm::ThreadPool>(n_threads);
    for (auto _ : state) {
        mul_mat(w.data(), t, n, n, x.data(), n_tokens, y.data(), pool.get(), scratch);
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
    state.counters["tok/s"] = benchmark::Counter(static_cast<double>(n_tokens) * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
    state.SetLabel(isa_name());
}

int register_all() {
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (GGMLType t : kTypes) {
        const std::string name = slm::type_name(t);
        benchmark::RegisterBenchmark(("VecDot/" + name).c_str(), bm_vec_dot, t)->Arg(4096);
        benchmark::RegisterBenchmark(("ToFloat/" + name).c_str(), bm_to_float, t)->Arg(4096);
        benchmark::RegisterBenchmark(("MulMat/" + name).c_str(), bm_mul_mat, t)
            ->Args({1, 1})
            ->Args({1, hw})
            ->Args({32, hw})
            ->UseRealTime();
    }
    for (GGMLType t : {GGMLType::Q8_0, GGMLType::Q8_1, GGMLType::Q8_K, GGMLType::F16, GGMLType::BF16}) {
        benchmark::RegisterBenchmark(("FromFloat/" + std::string(slm::type_name(t))).c_str(), bm_from_float, t)
            ->Arg(4096);
    }
    return 0;
}

const int registered = register_all();

} // namespace

BENCHMARK_MAIN();
