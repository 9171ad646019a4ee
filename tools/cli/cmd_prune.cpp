// slm prune: unstructured / N:M pruning (magnitude, Wanda, SparseGPT) and structured removal of
// heads, FFN channels or layers (see slm/prune.h).
#include "commands.h"
#include "progress.h"

#include "slm/error.h"
#include "slm/prune.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

namespace slm::cli {

namespace {

struct PruneOptions {
    std::string input, output;
    PruneParams p;
    bool quiet = false;
};

std::string join(const std::vector<uint32_t>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s;
}

void run_prune(PruneOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    std::optional<ProgressBar> bar;
    std::string phase;
    o.p.progress = [&](size_t done, size_t total, const char* what) {
        if (phase != what) {
            bar.reset();
            bar.emplace(what, total);
            phase = what;
        }
        bar->update(done);
    };
    o.p.log = [&](const std::string& line) {
        if (o.quiet) return;
        if (bar) bar->finish();
        std::fprintf(stderr, "%s\n", line.c_str());
    };
    if (!o.p.calib_text.empty()) {  // a repository-relative default works from any directory
        const std::string found = find_repo_file(o.p.calib_text);
        if (!found.empty()) o.p.calib_text = found;
    }
    const PruneResult r = prune_model(o.input, o.output, o.p);
    bar.reset();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o.quiet)
        for (const std::string& n : r.notes) std::fprintf(stderr, "note: %s\n", n.c_str());
    if (o.p.structured.empty()) {
        int64_t z = 0, n = 0;
        for (const auto& m : r.matrices) z += m.n_zero, n += m.n_elements;
        std::printf("per-layer sparsity (reached / target):\n");
        for (size_t l = 0; l < r.layer_sparsity.size(); ++l)
            std::printf("  layer %2zu  %.4f / %.4f\n", l, r.layer_sparsity[l], r.layer_target[l]);
        std::printf("pruned %zu matrices: %lld of %lld weights zero (%.2f%%), method %s, pattern %s, profile %s\n",
                    r.matrices.size(), static_cast<long long>(z), static_cast<long long>(n),
                    n ? 100.0 * z / n : 0.0, o.p.method.c_str(), o.p.pattern.c_str(), o.p.profile.c_str());
    } else {
        std::printf("structured %s, ratio %g: %u layers, heads per layer [%s], KV heads [%s], n_ff [%s]\n",
                    o.p.structured.c_str(), static_cast<double>(o.p.ratio), r.n_layer, join(r.n_head).c_str(),
                    join(r.n_head_kv).c_str(), join(r.n_ff).c_str());
        std::printf("tensor data %.1f KiB -> %.1f KiB (%.1f%%)\n", r.bytes_in / 1024.0, r.bytes_out / 1024.0,
                    r.bytes_in ? 100.0 * r.bytes_out / r.bytes_in : 0.0);
    }
    std::printf("wrote %s in %.1f s\n", o.output.c_str(), secs);
}

} // namespace

void add_prune(CLI::App& app) {
    auto o = std::make_shared<PruneOptions>();
    CLI::App* sub = app.add_subcommand(
        "prune",
        "Prune a float model: unstructured or N:M sparsity (magnitude, Wanda, SparseGPT), or structured removal of "
        "attention heads, FFN channels or layers (smaller real shapes). Prune before quantizing.");
    sub->footer(
        "Importance for --structured comes from calibration activations (magnitude x activation: output energy of a "
        "KV group or FFN channel; block influence 1 - cos(h_in, h_out) for layers, as ShortGPT). LLM-Pruner's "
        "first-order Taylor score needs gradients, which slm cannot compute yet, so it is not offered.\n"
        "Example: slm prune models/stories260K/stories260K.gguf out.gguf --method wanda --sparsity 0.5 --pattern 2:4 "
        "-f data/calib/tinystories_train_1k.txt");
    sub->add_option("input", o->input, "Input GGUF (F32/F16/BF16 weights)")->required();
    sub->add_option("output", o->output, "Output GGUF (written atomically)")->required();
    sub->add_option("--method", o->p.method, "magnitude | wanda | sparsegpt (default magnitude)");
    sub->add_option("--sparsity", o->p.sparsity, "Fraction of weights zeroed, in [0, 1) (default 0.5; ignored for N:M)");
    sub->add_option("--pattern", o->p.pattern,
                    "unstructured (default) | N:M: N weights kept of every M along each row's input (2:4, 4:8)");
    sub->add_option("--sparsity-profile", o->p.profile,
                    "uniform (every matrix the same) | owl (per-layer from outlier ratios, mean = --sparsity)");
    sub->add_option("--owl-lambda", o->p.owl_lambda, "OWL: per-layer sparsities span 2 lambda around the target (0.08)");
    sub->add_option("--owl-m", o->p.owl_m, "OWL: outlier = |W|*||X|| above M times the layer mean (5)");
    sub->add_flag("--include-output", o->p.include_output, "Also prune output.weight (skipped by default)");
    sub->add_flag("--sequential", o->p.sequential,
                  "Wanda/SparseGPT: calibrate layer by layer on the partly pruned model (one pass per layer)");
    sub->add_option("--damp", o->p.sparsegpt.damp, "SparseGPT: damping, fraction of mean(diag(H)) (0.01)");
    sub->add_option("--block", o->p.sparsegpt.block, "SparseGPT: columns per block (128)");
    sub->add_option("--structured", o->p.structured,
                    "heads | ffn | layers: remove whole KV groups (a KV head and its query heads), FFN channels or "
                    "layers, ranked from calibration; writes the smaller shapes");
    sub->add_option("--ratio", o->p.ratio, "Structured: share removed per layer (heads, ffn) or of the layers, in [0, 1)");
    sub->add_option("-f,--file", o->p.calib_text, "Calibration text (needed by wanda, sparsegpt, owl, structured)");
    sub->add_option("--calib-tokens", o->p.calib_tokens, "Calibration token ids instead of text (llm.c .bin or integers)");
    sub->add_option("--calib-samples", o->p.calib_samples, "Calibration samples (32)");
    sub->add_option("--calib-ctx", o->p.calib_ctx, "Tokens per calibration sample (128; 0 = min(512, training context))");
    sub->add_option("-t,--threads", o->p.n_threads, "Threads (0 = one per core)")->check(CLI::Range(0, 256));
    sub->add_flag("-q,--quiet", o->quiet, "No per-matrix log or notes");
    sub->callback([o]() { run_prune(*o); });
}

} // namespace slm::cli
