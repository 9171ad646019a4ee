// slm eval perplexity: perplexity, bits per byte, strided perplexity and KL divergence against a
// base file, printed as llama.cpp's llama-perplexity prints them.
#include "commands.h"
#include "progress.h"

#include "slm/error.h"
#include "slm/model.h"
#include "slm/perplexity.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unistd.h>

namespace slm::cli {

namespace {

struct PplOptions {
    std::string model, file, save_logits, kl_base, json_out, kv_type = "f16";
    uint32_t n_ctx = 512, stride = 0, n_batch = 2048;
    int chunks = -1, limit = -1, threads = 0;
    uint64_t seed = 0;
};

nlohmann::json est(const Estimate& e) { return {{"value", e.value}, {"se", e.se}}; }

void write_json(const std::string& path, const nlohmann::json& j) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary);
        if (!f) fail("--json: %s: cannot create", tmp.c_str());
        f << j.dump(2) << "\n";
        if (!f.flush()) fail("--json: %s: write failed", tmp.c_str());
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        fail("--json: cannot rename %s to %s", tmp.c_str(), path.c_str());
    }
}

void run_perplexity(const PplOptions& o, std::shared_ptr<const Model> model, const std::string& model_path) {
    std::string text = read_text_file(o.file);
    if (!text.empty() && text.back() == '\n') text.pop_back();  // as llama.cpp's -f
    PerplexityParams p;
    p.n_ctx = o.n_ctx;
    p.n_chunks = o.chunks;
    p.stride = o.stride;
    p.n_batch = o.n_batch;
    p.n_threads = o.threads;
    p.save_logits = o.save_logits;
    if (!type_from_name(o.kv_type, &p.kv_type)) fail("--cache-type '%s' is not a type name (f16, f32, q8_0, q4_0)", o.kv_type.c_str());

    // The running estimates ("[1]x,[2]y,...", as llama-perplexity) share one line; when stdout and
    // the progress bar are the same terminal, they are printed at the end instead, so redrawing the
    // bar does not erase them.
    const bool defer = ::isatty(1) && ::isatty(2);
    std::string running;
    std::optional<ProgressBar> bar;
    const PerplexityResult r = perplexity(model, text, p, [&](const PerplexityChunk& c, int n_chunk) {
        if (!bar) {
            bar.emplace(o.stride ? "windows" : "chunks", static_cast<size_t>(n_chunk));
            std::printf("perplexity: %s, %s %u%s, %d %s\n", model_path.c_str(), o.stride ? "window" : "n_ctx", o.n_ctx,
                        o.stride ? strprintf(", stride %u", o.stride).c_str() : "", n_chunk,
                        o.stride ? "windows" : "chunks");
            std::fflush(stdout);
        }
        const std::string item = strprintf("[%d]%.4f,", c.index + 1, c.ppl_running);
        if (defer) {
            running += item;
        } else {
            std::fputs(item.c_str(), stdout);
            std::fflush(stdout);
        }
        bar->update(static_cast<size_t>(c.index + 1));
    });
    if (bar) bar->finish();
    std::printf("%s\n", running.c_str());
    std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_se);
    std::printf("bits per byte: %.5f +/- %.5f (%zu tokens scored, %zu bytes, %.3f bytes/token)\n", r.bpb, r.bpb_se,
                r.n_scored, r.n_bytes, r.n_scored ? static_cast<double>(r.n_bytes) / r.n_scored : 0.0);
    std::fprintf(stderr, "slm: %d %s of %zu text tokens in %.2f s (%.1f tok/s)%s\n", r.n_chunk,
                 o.stride ? "windows" : "chunks", r.n_text_tokens, r.seconds,
                 r.seconds > 0 ? r.n_scored / r.seconds : 0.0,
                 o.save_logits.empty() ? "" : (", base file " + o.save_logits).c_str());

    if (!o.json_out.empty()) {
        nlohmann::json chunks = nlohmann::json::array();
        for (const PerplexityChunk& c : r.chunks)
            chunks.push_back({{"index", c.index}, {"n_scored", c.n_scored}, {"nll_sum", c.nll_sum}, {"n_bytes", c.n_bytes},
                              {"ppl", c.ppl}, {"ppl_running", c.ppl_running}});
        nlohmann::json j = {{"command", "perplexity"}, {"model", model_path},   {"file", o.file},
                            {"mode", o.stride ? "strided" : "chunked"},        {"n_ctx", r.n_ctx},
                            {"stride", r.stride},      {"n_chunk", r.n_chunk}, {"n_text_tokens", r.n_text_tokens},
                            {"n_scored", r.n_scored},  {"n_bytes", r.n_bytes}, {"seed", o.seed},
                            {"nll", {{"value", r.nll}, {"se", r.nll_se}}},
                            {"ppl", {{"value", r.ppl}, {"se", r.ppl_se}}},
                            {"bits_per_byte", {{"value", r.bpb}, {"se", r.bpb_se}}},
                            {"seconds", r.seconds},    {"chunks", chunks}};
        if (!o.save_logits.empty()) j["save_logits"] = o.save_logits;
        write_json(o.json_out, j);
    }
}

void run_kl_divergence(const PplOptions& o, std::shared_ptr<const Model> model, const std::string& model_path) {
    KLDivergenceParams p;
    p.base_path = o.kl_base;
    p.n_chunks = o.chunks;
    p.n_batch = o.n_batch;
    p.n_threads = o.threads;
    if (!type_from_name(o.kv_type, &p.kv_type)) fail("--cache-type '%s' is not a type name (f16, f32, q8_0, q4_0)", o.kv_type.c_str());

    std::optional<ProgressBar> bar;
    const KLDivergenceResult r = kl_divergence(model, p, [&](const KLDivergenceChunk& c, int n_chunk) {
        if (!bar) {
            bar.emplace("chunks", static_cast<size_t>(n_chunk));
            std::printf("kl-divergence: %s against %s, %d chunks\n\n", model_path.c_str(), o.kl_base.c_str(), n_chunk);
            std::printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              "
                        "Δp RMS            Same top p\n");
        }
        bar->finish();
        std::printf("%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
                    c.index + 1, c.ppl.value, c.ppl.se, c.ln_ratio.value, c.ln_ratio.se, c.kld.value, c.kld.se,
                    100 * c.rms_dp.value, 100 * c.rms_dp.se, 100 * c.same_top.value, 100 * c.same_top.se);
        std::fflush(stdout);
        bar->update(static_cast<size_t>(c.index + 1));
    });
    if (bar) bar->finish();

    std::printf("\n====== Perplexity statistics ======\n");
    std::printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", r.ppl.value, r.ppl.se);
    std::printf("Mean PPL(base)                : %10.6f ± %10.6f\n", r.ppl_base.value, r.ppl_base.se);
    std::printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100 * r.cor);
    std::printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", r.ln_ratio.value, r.ln_ratio.se);
    std::printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", r.ratio.value, r.ratio.se);
    std::printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n", r.ppl_diff.value, r.ppl_diff.se);
    std::printf("\n====== KL divergence statistics ======\n");
    std::printf("Mean    KLD: %10.6f ± %10.6f\n", r.kld.value, r.kld.se);
    const struct {
        const char* label;
        double f;
    } kl_rows[] = {{"Maximum KLD", 1},    {"99.9%   KLD", 0.999}, {"99.0%   KLD", 0.99}, {"95.0%   KLD", 0.95},
                   {"90.0%   KLD", 0.9},  {"Median  KLD", 0.5},   {"10.0%   KLD", 0.1},  {" 5.0%   KLD", 0.05},
                   {" 1.0%   KLD", 0.01}, {" 0.1%   KLD", 0.001}, {"Minimum KLD", 0}};
    for (const auto& k : kl_rows) std::printf("%s: %10.6f\n", k.label, r.kld_at(k.f));
    std::printf("\n====== Token probability statistics ======\n");
    std::printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100 * r.dp.value, 100 * r.dp.se);
    const struct {
        const char* label;
        double f;
    } dp_rows[] = {{"Maximum Δp", 1},   {"99.9%   Δp", 0.999}, {"99.0%   Δp", 0.99},  {"95.0%   Δp", 0.95},
                   {"90.0%   Δp", 0.9}, {"75.0%   Δp", 0.75},  {"Median  Δp", 0.5},   {"25.0%   Δp", 0.25},
                   {"10.0%   Δp", 0.1}, {" 5.0%   Δp", 0.05},  {" 1.0%   Δp", 0.01},  {" 0.1%   Δp", 0.001},
                   {"Minimum Δp", 0}};
    for (const auto& d : dp_rows) std::printf("%s: %6.3f%%\n", d.label, 100 * r.dp_at(d.f));
    std::printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100 * r.rms_dp.value, 100 * r.rms_dp.se);
    std::printf("Same top p: %6.3f ± %5.3f %%\n", 100 * r.same_top.value, 100 * r.same_top.se);
    std::fprintf(stderr, "slm: %d chunks, %zu tokens compared in %.2f s\n", r.n_chunk, r.n_scored, r.seconds);

    if (!o.json_out.empty()) {
        nlohmann::json chunks = nlohmann::json::array();
        for (const KLDivergenceChunk& c : r.chunks)
            chunks.push_back({{"index", c.index}, {"ppl", est(c.ppl)}, {"ln_ratio", est(c.ln_ratio)}, {"kld", est(c.kld)},
                              {"rms_dp", est(c.rms_dp)}, {"same_top", est(c.same_top)}});
        nlohmann::json kp = nlohmann::json::object(), dp = nlohmann::json::object();
        for (const auto& [f, v] : r.kld_percentiles) kp[strprintf("%g", 100 * f)] = v;
        for (const auto& [f, v] : r.dp_percentiles) dp[strprintf("%g", 100 * f)] = v;
        write_json(o.json_out, {{"command", "kl-divergence"}, {"model", model_path}, {"base", o.kl_base},
                                {"n_ctx", r.n_ctx}, {"n_chunk", r.n_chunk}, {"n_scored", r.n_scored}, {"seed", o.seed},
                                {"ppl", est(r.ppl)}, {"ppl_base", est(r.ppl_base)}, {"cor", r.cor},
                                {"ln_ratio", est(r.ln_ratio)}, {"ratio", est(r.ratio)}, {"ppl_diff", est(r.ppl_diff)},
                                {"kld", est(r.kld)}, {"kld_percentiles", kp}, {"dp", est(r.dp)},
                                {"dp_percentiles", dp}, {"rms_dp", est(r.rms_dp)}, {"same_top", est(r.same_top)},
                                {"seconds", r.seconds}, {"chunks", chunks}});
    }
}

} // namespace

void add_eval_perplexity(CLI::App& eval) {
    auto o = std::make_shared<PplOptions>();
    CLI::App* sub = eval.add_subcommand(
        "perplexity", "Perplexity and bits per byte of a text (as llama-perplexity), strided perplexity (as Hugging "
                      "Face), KL divergence against a base model's saved distribution");
    sub->add_option("-m,--model", o->model, "GGUF model file (default: $SLM_MODEL or the bundled stories260K)");
    sub->add_option("-f,--file", o->file, "Text file to score (not needed with --kl-divergence: the base file holds the tokens)");
    sub->add_option("-c,--ctx-size", o->n_ctx, "Tokens per chunk; the second half of each is scored (window with --stride)")
        ->default_val(512);
    sub->add_option("--chunks", o->chunks, "Most chunks (windows) to score (default: all)")->check(CLI::Range(1, 1 << 30));
    sub->add_option("--limit", o->limit, "Same as --chunks (the option every slm eval command takes)")
        ->check(CLI::Range(1, 1 << 30));
    sub->add_option("-b,--batch-size", o->n_batch, "Most tokens per forward pass")->default_val(2048)->check(CLI::Range(1, 1 << 20));
    sub->add_option("-t,--threads", o->threads, "Threads (0 = one per core)")->check(CLI::Range(0, 256));
    sub->add_option("--stride", o->stride,
                    "Sliding-window perplexity (Hugging Face's loop): windows of -c tokens every S tokens, each token "
                    "scored once")
        ->check(CLI::Range(1, 1 << 24));
    sub->add_option("--save-logits", o->save_logits,
                    "Write this model's log-probabilities of every scored token to a base file (llama.cpp's "
                    "--kl-divergence-base layout) for a later --kl-divergence");
    sub->add_option("--kl-divergence", o->kl_base, "Compare with the base file written by --save-logits (or llama-perplexity)");
    sub->add_option("--cache-type,--kv-type", o->kv_type, "KV cache type: f16 (default, as llama.cpp), f32, q8_0 or q4_0")
        ->check(CLI::IsMember({"f16", "f32", "q8_0", "q4_0"}, CLI::ignore_case));
    sub->add_option("--seed", o->seed, "Recorded in --json; perplexity itself uses no randomness");
    sub->add_option("--json", o->json_out, "Also write every figure, per chunk too, to this JSON file");
    sub->callback([o]() {
        PplOptions opt = *o;
        if (opt.limit > 0) {
            if (opt.chunks > 0 && opt.chunks != opt.limit) fail("--chunks %d and --limit %d disagree; give one", opt.chunks, opt.limit);
            opt.chunks = opt.limit;
        }
        if (!opt.kl_base.empty() && !opt.save_logits.empty())
            fail("--save-logits and --kl-divergence: give one (first save the base model's logits, then compare)");
        if (!opt.kl_base.empty() && opt.stride) fail("--kl-divergence uses the base file's chunks; --stride does not apply");
        if (opt.kl_base.empty() && opt.file.empty()) fail("no text given: pass -f TEXT (or --kl-divergence BASE.bin)");
        const std::string path = opt.model.empty() ? default_model() : opt.model;
        std::shared_ptr<const Model> model = Model::load(path);
        if (opt.kl_base.empty()) run_perplexity(opt, model, path);
        else run_kl_divergence(opt, model, path);
    });
}

} // namespace slm::cli
