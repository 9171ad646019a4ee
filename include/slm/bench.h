// slm/bench.h - end-to-end speed, shaped like llama.cpp's llama-bench: prompt processing and
// generation tokens/s, time to first token, peak memory, and how close decoding comes to the
// machine's memory bandwidth (the roofline of a memory-bound decoder).
//
//   double bw = slm::measure_memory_bandwidth(0);            // bytes/s, all cores
//   slm::BenchParams p;
//   p.model = "model.gguf";
//   p.n_prompt = 512, p.n_gen = 128, p.n_threads = 2;
//   slm::BenchResult r = slm::run_bench(p, bw);
//   std::printf("pp %.1f t/s, tg %.1f t/s, %.0f%% of bandwidth\n",
//               r.prefill_tps.mean, r.decode_tps.mean, 100 * r.bandwidth_share);
//
// As llama-bench does, the tokens are random ids (speed does not depend on the text), one
// warm-up run is not counted, and rates are the mean and sample standard deviation of the
// per-repetition rates.
#pragma once

#include "slm/model.h"
#include "slm/types.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace slm {

// What the machine is, for the header of a benchmark report.
struct SystemInfo {
    std::string cpu_name;   // "model name" of /proc/cpuinfo, "unknown CPU" if absent
    std::string isa;        // the kernels chosen at start-up: "avx512", "avx2", "neon", "scalar"
    std::string cpu_flags;  // SIMD features of the CPU: "avx2 fma f16c avx512f ... avx512_vnni"
    int n_cores = 0;        // hardware threads (std::thread::hardware_concurrency)
    size_t ram_bytes = 0;   // physical memory
    size_t llc_bytes = 0;   // last-level cache of cpu0 (0 if unknown)
};
SystemInfo system_info();

// The bandwidth test's default buffer: 1 GiB or 8x the last-level cache, whichever is larger,
// but at most a quarter of RAM.
size_t default_bandwidth_bytes();

// Streaming-read bandwidth in bytes/s: n_threads threads (0 = all cores) each sum their own
// slice of a `bytes`-byte buffer (0 = default_bandwidth_bytes()) with the widest vector loads
// the CPU has; pages are touched first by the thread that reads them; best of several passes.
// Pass a small `bytes` in tests and under sanitizers: the result then measures a cache, not
// DRAM. Throws slm::Error if the buffer cannot be allocated.
double measure_memory_bandwidth(int n_threads, size_t bytes = 0);

struct BenchParams {
    std::string model;                 // GGUF path
    int n_prompt = 512;                // prompt tokens, evaluated in one eval() call (llama-bench pp512)
    int n_gen = 128;                   // generated tokens, one eval() each (llama-bench tg128)
    int n_threads = 0;                 // 0 = all cores
    int reps = 5;                      // counted repetitions (plus one warm-up)
    GGMLType kv_type = GGMLType::F16;  // KV cache: F16 (llama.cpp's default) or F32
    uint32_t n_batch = 512;            // most prompt tokens per forward pass (llama-bench's ubatch)
    uint32_t seed = 1234;              // for the random token ids
    bool low_memory = false;           // weight streaming (SessionOptions::low_memory; no repacking)
    bool mlock = false;                // Model::lock_weights before running
};

// Mean and sample standard deviation (n - 1; 0 for one sample) of per-repetition values.
struct BenchStat {
    double mean = 0;
    double sd = 0;
    std::vector<double> samples;
};
BenchStat bench_stat(std::vector<double> samples);

struct BenchResult {
    std::string model;                 // path as given
    std::string model_desc;            // "llama 292K F32": architecture, parameters, main weight type
    size_t model_bytes = 0;            // Model::weight_bytes(): all tensor data
    uint64_t n_params = 0;             // elements of all tensors
    BenchParams params;                // as asked
    int n_threads = 0;                 // threads the sessions actually used

    // Each repetition: a fresh session; n_prompt random ids in one eval (prefill); argmax of the
    // logits (time to first token = prefill + argmax); then n_gen single-token evals (decode),
    // which therefore run after the prompt, at depth n_prompt (llama-bench's "tg128 @ d512").
    BenchStat prefill_tps;             // n_prompt / prefill seconds
    BenchStat decode_tps;              // n_gen / decode seconds
    BenchStat ttft_ms;                 // prefill + choosing the first token

    size_t peak_rss_bytes = 0;         // high-water RSS during this run (reset at its start when Linux allows)
    size_t decode_weight_bytes = 0;    // weight bytes read per decoded token (decode_weight_bytes())
    double decode_bytes_per_s = 0;     // decode_weight_bytes x decode_tps.mean
    double bandwidth = 0;              // the measured bandwidth passed in, bytes/s
    double bandwidth_share = 0;        // decode_bytes_per_s / bandwidth (0 if bandwidth <= 0); can
                                       // exceed 1 when the weights fit in cache
};

// Weight bytes one decoded token reads: every tensor except token_embd, of which only one row is
// read - unless the output is tied to token_embd (no output.weight), which then is read whole,
// once, for the logits. The KV cache is not counted.
size_t decode_weight_bytes(const Model& model);
// Elements of all tensors.
uint64_t param_count(const Model& model);
// "llama 292K F32": architecture, parameter count, the type holding most matrix bytes (as
// llama-bench's model column).
std::string model_description(const Model& model);

// Loads `p.model` once, runs one warm-up (prompt + 1 token) and p.reps measured repetitions.
// `bandwidth` (bytes/s, from measure_memory_bandwidth) only feeds bandwidth_share.
// Throws slm::Error for a bad model or parameters (n_prompt, n_gen, reps < 1; n_threads < 0).
BenchResult run_bench(const BenchParams& p, double bandwidth);

} // namespace slm
