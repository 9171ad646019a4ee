// slm bench: the bandwidth test, run_bench's bookkeeping, the weight-bytes-per-token accounting
// and the CLI. Correctness only: no test depends on how fast this machine is.
#include "slm/bench.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

using namespace slm;
using namespace slm::test;

namespace {

// Small enough to be quick (and sanitizer-friendly); it then measures a cache, which is fine here.
constexpr size_t kSmallBuffer = size_t(8) << 20;
const char* kSmallBufferMiB = "8";

std::string stories() { return model_path("stories260K/stories260K.gguf"); }

size_t tensor_bytes(const Model& m, const char* name) { return m.file().tensor(name).nbytes; }

TEST(Bandwidth, PositiveAndFinite) {
    for (int nt : {1, 2, 0}) {
        const double bw = measure_memory_bandwidth(nt, kSmallBuffer);
        EXPECT_GT(bw, 0) << nt << " threads";
        EXPECT_TRUE(std::isfinite(bw)) << nt << " threads";
    }
    // Smaller than a page per thread: each thread still gets one whole page.
    EXPECT_GT(measure_memory_bandwidth(2, 100), 0);
    EXPECT_THROW(measure_memory_bandwidth(-1, kSmallBuffer), Error);
}

TEST(Bandwidth, DefaultBufferIsAtLeastOneGiBUnlessRamIsSmall) {
    const SystemInfo s = system_info();
    const size_t def = default_bandwidth_bytes();
    EXPECT_GT(def, 0u);
    if (s.ram_bytes) EXPECT_LE(def, s.ram_bytes / 4);
    if (s.ram_bytes >= (size_t(4) << 30)) EXPECT_GE(def, size_t(1) << 30);
    EXPECT_GE(def, std::min(8 * s.llc_bytes, s.ram_bytes ? s.ram_bytes / 4 : 8 * s.llc_bytes));
    EXPECT_FALSE(s.cpu_name.empty());
    EXPECT_FALSE(s.isa.empty());
    EXPECT_GE(s.n_cores, 1);
}

TEST(BenchStat, MeanAndSampleSd) {
    BenchStat s = bench_stat({2, 4, 4, 4, 5, 5, 7, 9});
    EXPECT_DOUBLE_EQ(s.mean, 5);
    EXPECT_NEAR(s.sd, std::sqrt(32.0 / 7), 1e-12);  // n - 1 in the denominator, as llama-bench
    EXPECT_EQ(s.samples.size(), 8u);
    s = bench_stat({3});
    EXPECT_DOUBLE_EQ(s.mean, 3);
    EXPECT_DOUBLE_EQ(s.sd, 0);
    s = bench_stat({});
    EXPECT_DOUBLE_EQ(s.mean, 0);
}

TEST(RunBench, TinyRunOnStories260K) {
    BenchParams p;
    p.model = stories();
    p.n_prompt = 16;
    p.n_gen = 8;
    p.reps = 2;
    p.n_threads = 1;
    const double bw = 10e9;
    const BenchResult r = run_bench(p, bw);
    EXPECT_EQ(r.model, stories());
    EXPECT_EQ(r.n_threads, 1);
    EXPECT_EQ(r.params.n_prompt, 16);
    EXPECT_EQ(r.params.n_gen, 8);
    for (const BenchStat* s : {&r.prefill_tps, &r.decode_tps, &r.ttft_ms}) {
        ASSERT_EQ(s->samples.size(), 2u);
        EXPECT_GT(s->mean, 0);
        EXPECT_GE(s->sd, 0);
        for (double v : s->samples) EXPECT_GT(v, 0);
    }
    auto model = Model::load(stories());
    EXPECT_EQ(r.model_bytes, model->weight_bytes());
    EXPECT_EQ(r.n_params, param_count(*model));
    EXPECT_EQ(r.decode_weight_bytes, decode_weight_bytes(*model));
    EXPECT_GT(r.peak_rss_bytes, 0u);
    EXPECT_DOUBLE_EQ(r.decode_bytes_per_s, r.decode_weight_bytes * r.decode_tps.mean);
    EXPECT_DOUBLE_EQ(r.bandwidth, bw);
    EXPECT_DOUBLE_EQ(r.bandwidth_share, r.decode_bytes_per_s / bw);
    EXPECT_EQ(r.model_desc.rfind("llama ", 0), 0u) << r.model_desc;
    EXPECT_NE(r.model_desc.find("F32"), std::string::npos) << r.model_desc;

    // F32 KV cache and all cores work too; no bandwidth gives share 0.
    p.kv_type = GGMLType::F32;
    p.n_threads = 0;
    p.reps = 1;
    const BenchResult r2 = run_bench(p, 0);
    EXPECT_GE(r2.n_threads, 1);
    EXPECT_EQ(r2.decode_tps.samples.size(), 1u);
    EXPECT_DOUBLE_EQ(r2.decode_tps.sd, 0);
    EXPECT_DOUBLE_EQ(r2.bandwidth_share, 0);
}

TEST(RunBench, RejectsBadParameters) {
    BenchParams p;
    p.model = stories();
    p.n_prompt = 0;
    EXPECT_THROW(run_bench(p, 1), Error);
    p.n_prompt = 4, p.n_gen = 0;
    EXPECT_THROW(run_bench(p, 1), Error);
    p.n_gen = 4, p.reps = 0;
    EXPECT_THROW(run_bench(p, 1), Error);
    p.reps = 1, p.n_threads = -1;
    EXPECT_THROW(run_bench(p, 1), Error);
    p.n_threads = 1, p.kv_type = GGMLType::Q4_0;
    EXPECT_THROW(run_bench(p, 1), Error);
    p.kv_type = GGMLType::F16, p.model = temp_dir() + "/no-such-model.gguf";
    try {
        run_bench(p, 1);
        FAIL() << "no error for a missing model";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no-such-model.gguf"), std::string::npos) << e.what();
    }
}

TEST(DecodeWeightBytes, UntiedCountsAllButTheEmbedding) {
    auto m = Model::load(stories());
    ASSERT_FALSE(m->hparams().tied_output);
    size_t sum = 0;
    for (const auto& t : m->file().tensors()) sum += t.nbytes;
    ASSERT_EQ(m->weight_bytes(), sum);
    EXPECT_EQ(decode_weight_bytes(*m), sum - tensor_bytes(*m, "token_embd.weight"));
    EXPECT_EQ(decode_weight_bytes(*m), sum - 131072);  // 512 x 64 F32 (slm info)
}

TEST(DecodeWeightBytes, TiedCountsTheEmbeddingOnce) {
    // stories260K without output.weight: the logits then read token_embd.
    GGUFFile src = GGUFFile::open(stories());
    GGUFWriter w;
    w.copy_kv_from(src);
    size_t sum = 0;
    for (const auto& t : src.tensors()) {
        if (t.name == "output.weight") continue;
        w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        sum += t.nbytes;
    }
    const std::string path = temp_dir() + "/tied.gguf";
    w.write(path);
    auto m = Model::load(path);
    ASSERT_TRUE(m->hparams().tied_output);
    EXPECT_EQ(m->weight_bytes(), sum);
    EXPECT_EQ(decode_weight_bytes(*m), sum);
    EXPECT_EQ(decode_weight_bytes(*m), decode_weight_bytes(*Model::load(stories())));  // same bytes, other matrix
    EXPECT_EQ(param_count(*m), param_count(*Model::load(stories())) - 512 * 64);
}

// ---- the CLI ------------------------------------------------------------------------------------

TEST(CliBench, JsonHasTheDocumentedFields) {
    RunResult r = run_cli({"bench", "-p", "16", "-n", "8", "-r", "2", "--json", "--bw-size", kSmallBufferMiB});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);  // stdout is only JSON
    ASSERT_TRUE(j.is_array());
    ASSERT_EQ(j.size(), 1u);
    const auto& o = j[0];
    for (const char* k : {"model", "model_desc", "model_bytes", "n_params", "n_threads", "n_prompt", "n_gen", "reps",
                          "kv_type", "prefill_tps", "prefill_tps_sd", "prefill_tps_samples", "decode_tps",
                          "decode_tps_sd", "decode_tps_samples", "ttft_ms", "ttft_ms_sd", "ttft_ms_samples",
                          "peak_rss_bytes", "decode_weight_bytes", "decode_bytes_per_s", "bandwidth_bytes_per_s",
                          "bandwidth_share", "cpu", "isa"})
        EXPECT_TRUE(o.contains(k)) << k;
    EXPECT_NE(o["model"].get<std::string>().find("stories260K.gguf"), std::string::npos);  // the default model
    EXPECT_EQ(o["n_prompt"], 16);
    EXPECT_EQ(o["n_gen"], 8);
    EXPECT_EQ(o["reps"], 2);
    EXPECT_EQ(o["kv_type"], "F16");
    EXPECT_EQ(o["decode_tps_samples"].size(), 2u);
    EXPECT_GT(o["prefill_tps"].get<double>(), 0);
    EXPECT_GT(o["decode_tps"].get<double>(), 0);
    EXPECT_GE(o["decode_tps_sd"].get<double>(), 0);
    EXPECT_GT(o["bandwidth_bytes_per_s"].get<double>(), 0);
    EXPECT_GT(o["n_threads"].get<int>(), 0);
}

TEST(CliBench, OneRowPerThreadCount) {
    RunResult r = run_cli({"bench", "-m", stories(), "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-t", "2", "--json",
                           "--bw-size", kSmallBufferMiB});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_EQ(j[0]["n_threads"], 1);
    EXPECT_EQ(j[1]["n_threads"], 2);

    // The cross product: 2 prompt sizes x 2 thread counts (comma-separated works too).
    r = run_cli({"bench", "-p", "4,8", "-n", "4", "-r", "1", "-t", "1,2", "--json", "--bw-size", kSmallBufferMiB});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out).size(), 4u);
}

TEST(CliBench, MarkdownTableHasAPpAndATgRowPerConfiguration) {
    RunResult r = run_cli({"bench", "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-t", "2", "--bw-size", kSmallBufferMiB});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("GB/s"), std::string::npos) << r.out;  // the bandwidth header
    EXPECT_NE(r.out.find("| model"), std::string::npos) << r.out;
    int pp = 0, tg = 0;
    for (size_t at = 0; (at = r.out.find(" pp8 |", at)) != std::string::npos; ++at) ++pp;
    for (size_t at = 0; (at = r.out.find(" tg4 @ d8 |", at)) != std::string::npos; ++at) ++tg;
    EXPECT_EQ(pp, 2) << r.out;
    EXPECT_EQ(tg, 2) << r.out;
}

TEST(CliBench, ErrorsExitNonZero) {
    const std::string missing = temp_dir() + "/missing-model.gguf";
    RunResult r = run_cli({"bench", "-m", missing, "-p", "8", "-n", "4", "-r", "1", "--bw-size", kSmallBufferMiB});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("| model"), std::string::npos) << "no table for a bad model";

    // Each bad value alone, on top of otherwise valid, quick arguments.
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"-p", "0"}, {"-r", "0"}, {"-n", "0"}, {"-t", "-1"}, {"--cache-type", "q5_1"}};
    for (const auto& [flag, value] : bad) {
        std::vector<std::string> args = {"bench", flag, value};
        for (const char* f : {"-p", "-n", "-r"})
            if (flag != f) args.insert(args.end(), {f, f == std::string("-p") ? "8" : f == std::string("-n") ? "4" : "1"});
        args.insert(args.end(), {"--bw-size", kSmallBufferMiB});
        r = run_cli(args);
        EXPECT_NE(r.exit_code, 0) << flag << " " << value;
        EXPECT_NE(r.err.find(flag), std::string::npos) << flag << " " << value << ": " << r.err;
    }
}

} // namespace
