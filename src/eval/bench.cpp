// bench.cpp - memory bandwidth and end-to-end prefill/decode speed (include/slm/bench.h).
//
// The method follows llama.cpp's llama-bench: random token ids, one uncounted warm-up, mean and
// sample standard deviation of per-repetition rates. The bandwidth test is a STREAM-like
// read-only kernel (McCalpin's STREAM measures copy/scale/add/triad; a decoder mostly reads, so
// a pure read is the relevant roofline).
#include "slm/bench.h"

#include "core/cpu_info.h"
#include "kernels/kernels.h"
#include "slm/error.h"
#include "slm/generate.h"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLM_BENCH_X86 1
#endif

namespace slm {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- reading a buffer as fast as the loads allow ---------------------------------------------
// Each kernel sums 64-bit lanes of n bytes (n a multiple of 256, p 64-byte aligned) into four
// independent accumulators, so the loop is bound by loads, not by an add chain. The sum is
// returned and ends in a volatile store, so the reads cannot be elided.

#ifdef SLM_BENCH_X86
__attribute__((target("avx2"))) uint64_t read_sum_avx2(const uint8_t* p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 256) {
        const __m256i* v = reinterpret_cast<const __m256i*>(p + i);
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + 0));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
        a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + 4));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 5));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 6));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 7));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// SSE2 is part of x86-64, so this needs no feature check.
uint64_t read_sum_sse2(const uint8_t* p, size_t n) {
    __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i < n; i += 256) {
        const __m128i* v = reinterpret_cast<const __m128i*>(p + i);
        for (int k = 0; k < 16; k += 4) {
            a0 = _mm_add_epi64(a0, _mm_load_si128(v + k + 0));
            a1 = _mm_add_epi64(a1, _mm_load_si128(v + k + 1));
            a2 = _mm_add_epi64(a2, _mm_load_si128(v + k + 2));
            a3 = _mm_add_epi64(a3, _mm_load_si128(v + k + 3));
        }
    }
    __m128i s = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
    alignas(16) uint64_t lanes[2];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), s);
    return lanes[0] + lanes[1];
}
#endif

// Portable fallback: a loop the compiler vectorizes.
[[maybe_unused]] uint64_t read_sum_generic(const uint8_t* p, size_t n) {
    const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (size_t i = 0; i < n / 8; i += 4) {
        a0 += w[i + 0];
        a1 += w[i + 1];
        a2 += w[i + 2];
        a3 += w[i + 3];
    }
    return a0 + a1 + a2 + a3;
}

using ReadSum = uint64_t (*)(const uint8_t*, size_t);

ReadSum pick_read_sum() {
#ifdef SLM_BENCH_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return read_sum_avx2;
    return read_sum_sse2;
#else
    return read_sum_generic;
#endif
}

volatile uint64_t g_sink;  // where every sum ends, so no read is dead

// ---- machine facts ------------------------------------------------------------------------------

std::string read_line_file(const std::string& path) {
    std::ifstream f(path);
    std::string s;
    std::getline(f, s);
    return s;
}

// Largest-level data/unified cache of cpu0 from sysfs ("32768K"), else sysconf.
size_t llc_size() {
    int best_level = -1;
    size_t best = 0;
    for (int i = 0; i < 16; ++i) {
        const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
        const std::string level = read_line_file(dir + "level");
        if (level.empty()) break;
        if (read_line_file(dir + "type") == "Instruction") continue;
        const std::string size = read_line_file(dir + "size");
        size_t v = 0;
        char unit = 0;
        if (std::sscanf(size.c_str(), "%zu%c", &v, &unit) < 1) continue;
        if (unit == 'K') v <<= 10;
        if (unit == 'M') v <<= 20;
        const int l = std::atoi(level.c_str());
        if (l > best_level || (l == best_level && v > best)) best_level = l, best = v;
    }
    if (best) return best;
#ifdef _SC_LEVEL3_CACHE_SIZE
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) return static_cast<size_t>(l3);
#endif
    return 0;
}

size_t ram_size() {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
}

int n_cores() { return physical_cores(); }  // as Session's default thread count

// The process's peak RSS counter (VmHWM) restarts from the current RSS when "5" is written to
// /proc/self/clear_refs (Linux 4.0+), so one run's peak is not another's (nor the bandwidth
// buffer's). Where that is refused, the lifetime peak of getrusage is reported instead.
bool reset_peak_rss() {
    std::ofstream f("/proc/self/clear_refs");
    if (!f) return false;
    f << "5";
    f.flush();
    return static_cast<bool>(f);
}

size_t read_peak_rss() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            size_t kib = 0;
            if (std::sscanf(line.c_str() + 6, "%zu", &kib) == 1) return kib * 1024;
        }
    }
    return 0;
}

// "292K", "1.1B": three significant digits at most, as model cards name sizes.
std::string size_label(uint64_t n) {
    const char* unit = "";
    double v = static_cast<double>(n);
    if (n >= 1000000000ull) v /= 1e9, unit = "B";
    else if (n >= 1000000ull) v /= 1e6, unit = "M";
    else if (n >= 1000ull) v /= 1e3, unit = "K";
    return strprintf(v >= 100 || !*unit ? "%.0f%s" : v >= 10 ? "%.1f%s" : "%.2f%s", v, unit);
}

// The type holding the most bytes among the matrices (llama-bench shows the file type).
const char* main_weight_type(const Model& m) {
    std::map<GGMLType, size_t> by_type;
    for (const auto& t : m.file().tensors())
        if (t.n_dims >= 2) by_type[t.type] += t.nbytes;
    GGMLType best = GGMLType::F32;
    size_t most = 0;
    for (auto [type, n] : by_type)
        if (n > most) best = type, most = n;
    return type_name(best);
}

} // namespace

SystemInfo system_info() {
    SystemInfo s;
    s.cpu_name = cpu_model_name();
    s.isa = kernels::isa_name();
    s.cpu_flags = cpu_simd_flags();
    s.n_cores = n_cores();
    s.ram_bytes = ram_size();
    s.llc_bytes = llc_size();
    return s;
}

size_t default_bandwidth_bytes() {
    size_t bytes = std::max<size_t>(size_t(1) << 30, 8 * llc_size());
    if (size_t ram = ram_size()) bytes = std::min(bytes, ram / 4);
    return bytes;
}

double measure_memory_bandwidth(int n_threads, size_t bytes) {
    if (n_threads < 0 || n_threads > 1024) fail("bench: bandwidth test with %d threads (want 0..1024)", n_threads);
    const int nt = n_threads ? n_threads : n_cores();
    if (bytes == 0) bytes = default_bandwidth_bytes();
    // Per-thread slices of whole pages (so no two threads touch one page) and whole 256-byte steps.
    const size_t page = 4096;
    const size_t slice = std::max(page, bytes / nt / page * page);
    const size_t total = slice * nt;

    void* mem = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        fail("bench: cannot allocate %zu bytes for the bandwidth test: %s (pass a smaller size)", total,
             std::strerror(errno));
#ifdef MADV_HUGEPAGE
    madvise(mem, total, MADV_HUGEPAGE);  // fewer TLB misses, as weights in a large mapping see
#endif
    uint8_t* base = static_cast<uint8_t*>(mem);
    const ReadSum read_sum = pick_read_sum();
    constexpr int n_pass = 5;
    double pass_s[n_pass];
    struct alignas(64) Sum { uint64_t v = 0; };
    std::vector<Sum> sums(nt);
    std::barrier sync(nt);

    auto work = [&](int ith) {
        uint8_t* p = base + size_t(ith) * slice;
        // First touch by the reading thread: the pages are really allocated (not the shared zero
        // page), and on NUMA machines they land on this thread's node.
        std::memset(p, ith + 1, slice);
        uint64_t s = 0;
        for (int pass = 0; pass < n_pass; ++pass) {
            sync.arrive_and_wait();
            const auto t0 = Clock::now();
            s += read_sum(p, slice);
            sync.arrive_and_wait();  // the pass ends when the slowest thread is done
            if (ith == 0) pass_s[pass] = seconds_since(t0);
        }
        sums[ith].v = s;
    };
    std::vector<std::thread> threads;
    threads.reserve(nt - 1);
    for (int i = 1; i < nt; ++i) threads.emplace_back(work, i);
    work(0);
    for (auto& t : threads) t.join();
    munmap(mem, total);

    uint64_t all = 0;
    for (const Sum& s : sums) all += s.v;
    g_sink = all;
    const double best = *std::min_element(pass_s, pass_s + n_pass);
    return best > 0 ? static_cast<double>(total) / best : 0;
}

BenchStat bench_stat(std::vector<double> samples) {
    BenchStat s;
    s.samples = std::move(samples);
    const size_t n = s.samples.size();
    if (n == 0) return s;
    double sum = 0;
    for (double v : s.samples) sum += v;
    s.mean = sum / n;
    if (n > 1) {
        double ss = 0;
        for (double v : s.samples) ss += (v - s.mean) * (v - s.mean);
        s.sd = std::sqrt(ss / (n - 1));
    }
    return s;
}

size_t decode_weight_bytes(const Model& model) {
    size_t n = model.weight_bytes();
    if (!model.hparams().tied_output)
        if (const GGUFTensorInfo* e = model.file().find_tensor("token_embd.weight")) n -= e->nbytes;
    return n;
}

uint64_t param_count(const Model& model) {
    uint64_t n = 0;
    for (const auto& t : model.file().tensors()) n += static_cast<uint64_t>(t.nelements());
    return n;
}

std::string model_description(const Model& model) {
    return model.hparams().arch + " " + size_label(param_count(model)) + " " + main_weight_type(model);
}

BenchResult run_bench(const BenchParams& p, double bandwidth) {
    if (p.n_prompt < 1) fail("bench: n_prompt = %d, want at least 1", p.n_prompt);
    if (p.n_gen < 1) fail("bench: n_gen = %d, want at least 1", p.n_gen);
    if (p.reps < 1) fail("bench: reps = %d, want at least 1", p.reps);
    if (p.n_threads < 0) fail("bench: n_threads = %d, want 0 (all cores) or more", p.n_threads);
    if (static_cast<int64_t>(p.n_prompt) + p.n_gen > (1 << 20))
        fail("bench: n_prompt + n_gen = %lld is more than 1048576", static_cast<long long>(p.n_prompt) + p.n_gen);

    const bool rss_reset = reset_peak_rss();
    std::shared_ptr<const Model> model = Model::load(p.model, {.repack = !p.low_memory});
    if (p.mlock) model->lock_weights();
    const uint32_t n_vocab = model->hparams().n_vocab;

    BenchResult r;
    r.model = p.model;
    r.model_bytes = model->weight_bytes();
    r.n_params = param_count(*model);
    r.model_desc = model_description(*model);
    r.params = p;
    r.decode_weight_bytes = decode_weight_bytes(*model);
    r.bandwidth = bandwidth;

    SessionOptions so;
    so.n_ctx = static_cast<uint32_t>(p.n_prompt + p.n_gen);
    so.n_batch = p.n_batch;
    so.kv_type = p.kv_type;
    so.n_threads = p.n_threads;
    so.low_memory = p.low_memory;

    std::mt19937 rng(p.seed);
    std::uniform_int_distribution<int32_t> any_token(0, static_cast<int32_t>(n_vocab) - 1);
    std::vector<int32_t> prompt(p.n_prompt);

    std::vector<double> pp_tps, tg_tps, ttft;
    // Repetition 0 is the warm-up (prompt + one token, as llama-bench's): it faults the weights in
    // and wakes the threads, and is not counted.
    for (int rep = 0; rep <= p.reps; ++rep) {
        const bool warmup = rep == 0;
        Session s(model, so);
        r.n_threads = s.n_threads();
        for (int32_t& t : prompt) t = any_token(rng);

        const auto t0 = Clock::now();
        const float* logits = s.eval(prompt);
        const double pp_s = seconds_since(t0);
        int32_t tok = static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);
        const double ttft_s = seconds_since(t0);

        const int n_gen = warmup ? 1 : p.n_gen;
        const auto t1 = Clock::now();
        for (int i = 0; i < n_gen; ++i) {
            s.eval(std::span<const int32_t>(&tok, 1));
            tok = any_token(rng);
        }
        const double tg_s = seconds_since(t1);
        if (warmup) continue;
        pp_tps.push_back(pp_s > 0 ? p.n_prompt / pp_s : 0);
        tg_tps.push_back(tg_s > 0 ? p.n_gen / tg_s : 0);
        ttft.push_back(ttft_s * 1e3);
    }
    r.prefill_tps = bench_stat(std::move(pp_tps));
    r.decode_tps = bench_stat(std::move(tg_tps));
    r.ttft_ms = bench_stat(std::move(ttft));
    r.peak_rss_bytes = rss_reset ? read_peak_rss() : 0;
    if (r.peak_rss_bytes == 0) r.peak_rss_bytes = peak_rss_bytes();
    r.decode_bytes_per_s = static_cast<double>(r.decode_weight_bytes) * r.decode_tps.mean;
    r.bandwidth_share = bandwidth > 0 ? r.decode_bytes_per_s / bandwidth : 0;
    return r;
}

} // namespace slm
