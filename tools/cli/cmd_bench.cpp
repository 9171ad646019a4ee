// slm bench: prompt and generation speed, time to first token, peak RSS and the memory
// bandwidth roofline, as a markdown table shaped like llama-bench's (or JSON).
#include "commands.h"

#include "slm/bench.h"
#include "slm/error.h"
#include "slm/model.h"
#include "slm/speculative.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace slm::cli {

namespace {

struct BenchOptions {
    std::vector<std::string> models;
    std::vector<int> n_prompt{512}, n_gen{128}, threads{0};
    int reps = 5;
    std::string kv_type = "f16";
    size_t bw_mib = 0;
    bool json = false;
    bool low_memory = false, mlock = false;
    // Speculative decoding: a draft model or prompt lookup, against plain decoding.
    std::string draft, text = "Once upon a time";
    bool lookup = false;
    std::vector<int> draft_max{16};
    int ngram_min = 1, ngram_max = 3;
    float temp = 0;
    bool adaptive = false;
};

std::string human_bytes(double b) {
    if (b >= 1024.0 * 1024 * 1024) return strprintf("%.2f GiB", b / (1024.0 * 1024 * 1024));
    if (b >= 1024.0 * 1024) return strprintf("%.2f MiB", b / (1024.0 * 1024));
    return strprintf("%.2f KiB", b / 1024.0);
}

std::string human_count(uint64_t n) {
    if (n >= 1000000000ull) return strprintf("%.2f B", n / 1e9);
    if (n >= 1000000ull) return strprintf("%.2f M", n / 1e6);
    if (n >= 1000ull) return strprintf("%.2f K", n / 1e3);
    return strprintf("%llu", static_cast<unsigned long long>(n));
}

std::string mean_sd(const BenchStat& s) { return strprintf("%.2f ± %.2f", s.mean, s.sd); }

// A markdown table printed row by row as results arrive; columns after the first are right-aligned.
class Table {
public:
    Table(std::vector<std::string> head, std::vector<int> width) : head_(std::move(head)), width_(std::move(width)) {}
    void header() const {
        row(head_);
        std::string sep = "|";
        for (size_t i = 0; i < width_.size(); ++i)
            sep += " " + (i == 0 ? std::string(width_[i], '-') : std::string(width_[i] - 1, '-') + ":") + " |";
        std::printf("%s\n", sep.c_str());
    }
    void row(const std::vector<std::string>& cells) const {
        std::string line = "|";
        for (size_t i = 0; i < cells.size(); ++i) {
            // Pad by characters, not bytes: "±" is two bytes of UTF-8.
            const size_t chars = std::count_if(cells[i].begin(), cells[i].end(), [](char c) { return (c & 0xC0) != 0x80; });
            const std::string pad(chars < size_t(width_[i]) ? width_[i] - chars : 0, ' ');
            line += " " + (i == 0 ? cells[i] + pad : pad + cells[i]) + " |";
        }
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    }

private:
    std::vector<std::string> head_;
    std::vector<int> width_;
};

nlohmann::json to_json(const BenchResult& r, const SystemInfo& sys) {
    return {
        {"model", r.model},
        {"model_desc", r.model_desc},
        {"model_bytes", r.model_bytes},
        {"n_params", r.n_params},
        {"n_threads", r.n_threads},
        {"n_prompt", r.params.n_prompt},
        {"n_gen", r.params.n_gen},
        {"reps", r.params.reps},
        {"kv_type", type_name(r.params.kv_type)},
        {"low_memory", r.params.low_memory},
        {"prefill_tps", r.prefill_tps.mean},
        {"prefill_tps_sd", r.prefill_tps.sd},
        {"prefill_tps_samples", r.prefill_tps.samples},
        {"decode_tps", r.decode_tps.mean},
        {"decode_tps_sd", r.decode_tps.sd},
        {"decode_tps_samples", r.decode_tps.samples},
        {"ttft_ms", r.ttft_ms.mean},
        {"ttft_ms_sd", r.ttft_ms.sd},
        {"ttft_ms_samples", r.ttft_ms.samples},
        {"peak_rss_bytes", r.peak_rss_bytes},
        {"decode_weight_bytes", r.decode_weight_bytes},
        {"decode_bytes_per_s", r.decode_bytes_per_s},
        {"bandwidth_bytes_per_s", r.bandwidth},
        {"bandwidth_share", r.bandwidth_share},
        {"cpu", sys.cpu_name},
        {"isa", sys.isa},
        {"cpu_flags", sys.cpu_flags},
    };
}

// slm bench --draft / --lookup: decode speed with and without the drafter, greedy, in one run.
void bench_speculative_cmd(const BenchOptions& o, const std::vector<std::string>& models) {
    const SystemInfo sys = system_info();
    std::shared_ptr<const Model> draft;
    if (!o.draft.empty()) draft = Model::load(o.draft);
    const std::string head = strprintf(
        "slm bench: %s, %d cores, kernels %s | speculative decoding (%s), %s, prompt \"%s\", %d reps",
        sys.cpu_name.c_str(), sys.n_cores, sys.isa.c_str(), draft ? ("draft " + o.draft).c_str() : "prompt lookup",
        o.temp > 0 ? strprintf("temp %g", o.temp).c_str() : "greedy", o.text.c_str(), o.reps);
    std::fprintf(o.json ? stderr : stdout, "%s\n%s", head.c_str(), o.json ? "" : "\n");
    Table table({"model", "drafter", "K", "test", "plain t/s", "speculative t/s", "speed-up", "accepted", "tok/pass", "same"},
                {24, 24, 4, 8, 16, 16, 8, 8, 8, 4});
    nlohmann::json all = nlohmann::json::array();
    if (!o.json) table.header();
    for (const std::string& m : models) {
        const auto target = Model::load(m);
        if (draft) check_draft_vocab(*target, *draft);
        const std::vector<int32_t> prompt = target->vocab().tokenize(o.text, true, true);
        const std::string tdesc = model_description(*target);
        const std::string ddesc = draft ? model_description(*draft) : "lookup";
        for (int ng : o.n_gen)
            for (int k : o.draft_max)
                for (int nt : o.threads) {
                    GenerateParams gp;
                    gp.n_predict = ng;
                    gp.sampling.temp = o.temp;  // llama.cpp's other sampling defaults
                    gp.ignore_eos = true;
                    SpeculativeParams sp;
                    sp.lookup = !draft;
                    sp.draft_max = k;
                    sp.ngram_min = o.ngram_min;
                    sp.adaptive = o.adaptive;
                    sp.ngram_max = o.ngram_max;
                    SessionOptions so;
                    so.n_ctx = static_cast<uint32_t>(prompt.size() + ng + 1);
                    so.n_threads = nt;
                    const SpeculativeBenchResult r = bench_speculative(target, draft, prompt, gp, sp, so, o.reps);
                    if (o.json) {
                        all.push_back({{"model", m}, {"draft", draft ? o.draft : "lookup"}, {"draft_max", k}, {"n_gen", ng},
                                       {"threads", nt}, {"plain_tps", r.plain_tps}, {"plain_tps_sd", r.plain_tps_sd},
                                       {"spec_tps", r.spec_tps}, {"spec_tps_sd", r.spec_tps_sd}, {"speedup", r.speedup()},
                                       {"acceptance", r.acceptance}, {"tokens_per_pass", r.tokens_per_pass},
                                       {"same_output", o.temp > 0 ? nlohmann::json() : nlohmann::json(r.same_output)}});
                        continue;
                    }
                    table.row({tdesc, ddesc, std::to_string(k), strprintf("tg%d", ng),
                               strprintf("%.2f ± %.2f", r.plain_tps, r.plain_tps_sd),
                               strprintf("%.2f ± %.2f", r.spec_tps, r.spec_tps_sd), strprintf("%.2fx", r.speedup()),
                               strprintf("%.1f %%", 100 * r.acceptance), strprintf("%.2f", r.tokens_per_pass),
                               o.temp > 0 ? "-" : r.same_output ? "yes" : "NO"});
                }
    }
    if (o.json) std::printf("%s\n", all.dump(2).c_str());
}

void bench(const BenchOptions& o) {
    std::vector<std::string> models = o.models;
    if (models.empty()) models.push_back(default_model());
    if (!o.draft.empty() || o.lookup) return bench_speculative_cmd(o, models);
    GGMLType kv_type;
    if (!type_from_name(o.kv_type, &kv_type)) fail("--cache-type '%s' is not a type name (f16, f32, q8_0, q4_0)", o.kv_type.c_str());

    // Open every model before the (slow) bandwidth test, so a bad path fails at once.
    size_t desc_width = 5;
    for (const std::string& m : models) desc_width = std::max(desc_width, model_description(*Model::load(m)).size());

    const SystemInfo sys = system_info();
    const size_t bw_bytes = o.bw_mib ? o.bw_mib << 20 : default_bandwidth_bytes();
    const double bw = measure_memory_bandwidth(0, bw_bytes);
    const std::string head =
        strprintf("slm bench: %s, %d cores, kernels %s | memory read bandwidth %.2f GB/s (%zu MiB, %d threads) | "
                  "KV cache %s, %d reps%s",
                  sys.cpu_name.c_str(), sys.n_cores, sys.isa.c_str(), bw / 1e9, bw_bytes >> 20, sys.n_cores,
                  type_name(kv_type), o.reps, o.low_memory ? " | weight streaming (low-mem) against the default" : "");

    Table table({"model", "size", "params", "threads", "test", "t/s", "ttft ms", "peak RSS", "decode GB/s", "roofline"},
                {static_cast<int>(desc_width), 10, 10, 7, o.low_memory ? 22 : 14, 20, 16, 10, 11, 8});
    const std::string flags = "CPU flags: " + (sys.cpu_flags.empty() ? std::string("unknown") : sys.cpu_flags);
    if (o.json) {
        std::fprintf(stderr, "%s\n%s\n", head.c_str(), flags.c_str());
    } else {
        std::printf("%s\n%s\n\n", head.c_str(), flags.c_str());
        table.header();
    }

    nlohmann::json all = nlohmann::json::array();
    for (const std::string& m : models)
        for (int np : o.n_prompt)
            for (int ng : o.n_gen)
                for (int nt : o.threads)
                    // --low-memory: the streamed run first (its peak RSS is right even where Linux cannot reset it).
                    for (bool low : o.low_memory ? std::vector<bool>{true, false} : std::vector<bool>{false}) {
                        BenchParams p;
                        p.model = m;
                        p.n_prompt = np;
                        p.n_gen = ng;
                        p.n_threads = nt;
                        p.reps = o.reps;
                        p.kv_type = kv_type;
                        p.low_memory = low;
                        p.mlock = o.mlock;
                        const BenchResult r = run_bench(p, bw);
                        if (o.json) {
                            all.push_back(to_json(r, sys));
                            continue;
                        }
                        const std::string size = human_bytes(static_cast<double>(r.model_bytes));
                        const std::string params = human_count(r.n_params);
                        const std::string threads = std::to_string(r.n_threads);
                        const std::string rss = human_bytes(static_cast<double>(r.peak_rss_bytes));
                        // Decoding runs after the prompt, so its test is named with llama-bench's depth suffix.
                        const std::string mode = low ? " low-mem" : "";
                        table.row({r.model_desc, size, params, threads, strprintf("pp%d", np) + mode, mean_sd(r.prefill_tps),
                                   mean_sd(r.ttft_ms), rss, "", ""});
                        table.row({r.model_desc, size, params, threads, strprintf("tg%d @ d%d", ng, np) + mode, mean_sd(r.decode_tps),
                                   "", rss, strprintf("%.2f", r.decode_bytes_per_s / 1e9),
                                   strprintf("%.1f %%", 100 * r.bandwidth_share)});
                    }
    if (o.json) std::printf("%s\n", all.dump(2).c_str());
}

} // namespace

void add_bench(CLI::App& app) {
    auto o = std::make_shared<BenchOptions>();
    CLI::App* sub = app.add_subcommand("bench", "Measure prompt/generation speed and the memory-bandwidth roofline (like llama-bench)");
    sub->add_option("-m,--model", o->models, "GGUF model file; repeat for several (default: $SLM_MODEL or the bundled stories260K)");
    sub->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens, evaluated in one pass; repeat or comma-separate for several")
        ->delimiter(',')->check(CLI::Range(1, 1 << 19))->default_str("512");
    sub->add_option("-n,--n-gen", o->n_gen, "Generated tokens, one at a time after the prompt; repeat or comma-separate")
        ->delimiter(',')->check(CLI::Range(1, 1 << 19))->default_str("128");
    sub->add_option("-t,--threads", o->threads, "Threads (0 = all cores, the default); repeat or comma-separate")
        ->delimiter(',')->check(CLI::Range(0, 256));
    sub->add_option("-r,--repetitions", o->reps, "Measured repetitions of each test (after one warm-up)")
        ->default_val(5)->check(CLI::Range(1, 1000));
    sub->add_option("--cache-type,--kv-type", o->kv_type, "KV cache type: f16 (default, as llama.cpp), f32, q8_0 or q4_0")
        ->check(CLI::IsMember({"f16", "f32", "q8_0", "q4_0"}, CLI::ignore_case));
    sub->add_option("--bw-size", o->bw_mib, "MiB read by the bandwidth test (default: 1 GiB or 8x the last-level cache, at most RAM/4)")
        ->check(CLI::Range(1, 1 << 20));
    sub->add_flag("--low-memory", o->low_memory, "Also run with weight streaming (slm run --low-memory): peak RSS against speed");
    sub->add_flag("--mlock", o->mlock, "Lock the weights in RAM");
    auto* dr = sub->add_option("--draft", o->draft, "Speculative decoding with this draft model: speed-up and acceptance against plain decoding")
        ->check(CLI::ExistingFile);
    sub->add_flag("--lookup", o->lookup, "Speculative decoding by prompt lookup: speed-up and acceptance")->excludes(dr);
    sub->add_option("--draft-max", o->draft_max, "Most tokens drafted per pass; repeat or comma-separate")
        ->delimiter(',')->check(CLI::Range(1, 1024))->default_str("16");
    sub->add_option("--lookup-ngram", o->ngram_max, "Prompt lookup: longest n-gram matched")->default_val(3)->check(CLI::Range(1, 64));
    sub->add_option("--lookup-ngram-min", o->ngram_min, "Prompt lookup: shortest n-gram matched")->default_val(1)->check(CLI::Range(1, 64));
    sub->add_option("--temp", o->temp, "Sampling temperature for --draft/--lookup (0 = greedy, whose output is checked against plain decoding)")
        ->default_val(0.0)->check(CLI::Range(0.0, 100.0));
    sub->add_flag("--draft-adaptive", o->adaptive, "Draft length follows acceptance (kept + 1 after a rejection, doubled after a full accept)");
    sub->add_option("--text", o->text, "Prompt text for --draft/--lookup (greedy, end of text ignored)");
    sub->add_flag("--json", o->json, "Print a JSON array of result objects instead of the table");
    sub->callback([o]() { bench(*o); });
}

} // namespace slm::cli
