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

// The gemm tiles of one ISA's table (traits_for_isa), driven as mul_mat drives them on one
// thread (16 weight rows x 32 tokens per call), over pre-converted activations, so that ISAs
// can be compared in the same process: W n_out x n_in times n_tokens tokens. bytes_per_second
// counts the weight bytes, once per product; MAC/s counts multiply-adds.
void bm_gemm_isa(benchmark::State& state, GGMLType t, const char* isa, int64_t n_in, int64_t n_out, int64_t n_tokens) {
    const TypeTraits* tt = traits_for_isa(isa, t);
    if (tt == nullptr) {
        state.SkipWithError("ISA not available");
        return;
    }
    const TypeTraits* at = traits_for_isa(isa, tt->vec_dot_type);
    const size_t w_row = slm::row_size(t, n_in), a_row = slm::row_size(at->type, n_in);
    std::vector<uint8_t> w(w_row * static_cast<size_t>(n_out));
    {
        const std::vector<float> rows = random_floats(static_cast<size_t>(n_in) * 64, 5);
        for (int64_t r = 0; r < n_out; ++r) {
            tt->quantize_ref(rows.data() + (r % 64) * n_in, w.data() + w_row * static_cast<size_t>(r), n_in);
        }
    }
    const std::vector<float> x = random_floats(static_cast<size_t>(n_in * n_tokens), 6);
    std::vector<uint8_t> a(a_row * static_cast<size_t>(n_tokens));
    for (int64_t k = 0; k < n_tokens; ++k) at->from_float(x.data() + k * n_in, a.data() + a_row * static_cast<size_t>(k), n_in);
    std::vector<float> y(static_cast<size_t>(n_out * n_tokens));
    for (auto _ : state) {
        for (int64_t t0 = 0; t0 < n_tokens; t0 += 32) {
            const int64_t nc = std::min<int64_t>(32, n_tokens - t0);
            for (int64_t r0 = 0; r0 < n_out; r0 += 16) {
                const int64_t nr = std::min<int64_t>(16, n_out - r0);
                if (tt->gemm != nullptr) {
                    tt->gemm(n_in, w.data() + w_row * static_cast<size_t>(r0), w_row, nr,
                             a.data() + a_row * static_cast<size_t>(t0), a_row, nc, y.data() + t0 * n_out + r0,
                             static_cast<size_t>(n_out));
                } else {
                    for (int64_t c = 0; c < nc; ++c) {
                        for (int64_t r = 0; r < nr; ++r) {
                            tt->vec_dot(n_in, y.data() + (t0 + c) * n_out + r0 + r, w.data() + w_row * static_cast<size_t>(r0 + r),
                                        a.data() + a_row * static_cast<size_t>(t0 + c));
                        }
                    }
                }
            }
        }
        benchmark::DoNotOptimize(y.data());
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
    state.counters["MAC/s"] = benchmark::Counter(static_cast<double>(n_in * n_out * n_tokens) * static_cast<double>(state.iterations()),
                                                 benchmark::Counter::kIsRate);
    state.SetLabel(isa);
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
    // Decode (1 token) and prefill (64 tokens) shapes, AVX2 against AVX-512 in one run.
    struct Shape { const char* name; int64_t n_in, n_out, n_tokens; };
    const Shape shapes[] = {{"decode_2048x5632", 2048, 5632, 1}, {"decode_2048x2048", 2048, 2048, 1},
                            {"prefill64_2048x2048", 2048, 2048, 64}};
    for (GGMLType t : {GGMLType::Q4_0, GGMLType::Q8_0, GGMLType::F16, GGMLType::Q4_1, GGMLType::Q5_0, GGMLType::Q5_1,
                       GGMLType::BF16, GGMLType::F32}) {
        for (const Shape& sh : shapes) {
            for (const char* isa : {"avx2", "avx512"}) {
                const std::string name = std::string("GemmIsa/") + slm::type_name(t) + "/" + sh.name + "/" + isa;
                benchmark::RegisterBenchmark(name.c_str(), bm_gemm_isa, t, isa, sh.n_in, sh.n_out, sh.n_tokens)
                    ->UseRealTime();
            }
        }
    }
    // ---- K-quants, IQ4_NL/IQ4_XS, TQ2_0 (avx512_kquants.cpp): AVX2 against AVX-512, decode over
    // an L3-resident matrix and over one larger than L3 (streamed from memory, as in a model),
    // and prefill tiles of 32 tokens.
    const Shape kquant_shapes[] = {{"decode_2048x5632", 2048, 5632, 1}, {"decode_2048x32768", 2048, 32768, 1},
                                   {"prefill32_2048x2048", 2048, 2048, 32}};
    for (GGMLType t : {GGMLType::Q4_K, GGMLType::Q6_K, GGMLType::Q5_K, GGMLType::Q3_K, GGMLType::Q2_K, GGMLType::IQ4_XS,
                       GGMLType::IQ4_NL, GGMLType::TQ2_0}) {
        for (const Shape& sh : kquant_shapes) {
            for (const char* isa : {"avx2", "avx512"}) {
                const std::string name = std::string("GemmIsaK/") + slm::type_name(t) + "/" + sh.name + "/" + isa;
                benchmark::RegisterBenchmark(name.c_str(), bm_gemm_isa, t, isa, sh.n_in, sh.n_out, sh.n_tokens)
                    ->UseRealTime();
            }
        }
    }
    return 0;
}

const int registered = register_all();

} // namespace

BENCHMARK_MAIN();
