// slm synth: write a random-weight model of a real shape (see slm/synth.h).
#include "commands.h"

#include "slm/error.h"
#include "slm/synth.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

namespace slm::cli {

namespace {

struct SynthOptions {
    std::string preset, type = "f16", output, tokenizer, arch, embd_type, output_type;
    std::optional<uint32_t> n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx, head_dim, layer_share;
    std::optional<uint32_t> d_inner, d_state, d_conv, dt_rank;  // mamba
    std::optional<uint32_t> n_expert, n_expert_used, n_ff_exp, n_ff_shexp;  // mixture of experts
    std::optional<float> rope_base, rms_eps;
    bool tied = false, untied = false, pure = false;
    uint64_t seed = 42;
    int threads = 0;
    bool list = false;
};

// A relative tokenizer path as given, else inside the slm tree, as the bundled model is found.
std::string find_data_file(const std::string& path) {
    std::string found = find_repo_file(path);
    if (found.empty())
        fail("tokenizer %s not found (relative to the working directory or the slm source tree); pass --tokenizer "
             "VOCAB.gguf",
             path.c_str());
    return found;
}

GGMLType parse_type(const std::string& s, const char* flag) {
    GGMLType t;
    std::string names;
    for (GGMLType w : synth_writable_types()) names += (names.empty() ? "" : ", ") + std::string(type_name(w));
    if (!type_from_name(s, &t)) fail("unknown %s '%s'; this build writes: %s", flag, s.c_str(), names.c_str());
    for (GGMLType w : synth_writable_types())
        if (w == t) return t;
    fail("%s %s cannot be written by this build (no reference quantizer); it writes: %s", flag, type_name(t),
         names.c_str());
}

void list_presets() {
    std::printf("%-18s %-8s %7s %6s %6s %5s %6s %7s %-5s %12s %12s  %s\n", "preset", "arch", "n_layer", "n_embd",
                "n_head", "n_kv", "n_ff", "n_vocab", "tied", "params", "real", "status");
    for (const SynthPreset& p : synth_presets()) {
        const SynthConfig c = p.make();
        const bool ok = synth_arch_supported(c.arch);
        std::string params = "-";
        if (ok) params = strprintf("%.4g", static_cast<double>(synth_param_count(c)));
        std::printf("%-18s %-8s %7u %6u %6u %5u %6u %7u %-5s %12s %12.4g  %s\n", p.name, c.arch.c_str(), c.n_layer,
                    c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab, c.tied_embeddings ? "yes" : "no",
                    params.c_str(), p.real_params, ok ? "ok" : ("not yet: " + c.arch).c_str());
    }
}

void synth(const SynthOptions& o) {
    if (o.list) {
        list_presets();
        return;
    }
    if (o.output.empty()) fail("synth needs -o OUT.gguf (or --list-presets)");
    SynthConfig c = o.preset.empty() ? SynthConfig{} : synth_preset(o.preset);
    if (!o.arch.empty()) c.arch = o.arch;
    if (o.n_embd) c.n_embd = *o.n_embd;
    if (o.n_layer) c.n_layer = *o.n_layer;
    if (o.n_head) c.n_head = *o.n_head;
    if (o.n_head_kv) c.n_head_kv = *o.n_head_kv;
    if (o.n_ff) c.n_ff = *o.n_ff;
    if (o.layer_share) c.layer_share = *o.layer_share;
    if (o.n_ctx) c.n_ctx_train = *o.n_ctx;
    if (o.head_dim) c.head_dim = *o.head_dim;
    if (o.n_expert) c.n_expert = *o.n_expert;
    if (o.n_expert_used) c.n_expert_used = *o.n_expert_used;
    if (o.n_ff_exp) c.n_ff_exp = *o.n_ff_exp;
    if (o.n_ff_shexp) c.n_ff_shexp = *o.n_ff_shexp;
    if (o.rope_base) c.rope_freq_base = *o.rope_base;
    if (o.rms_eps) c.rms_eps = *o.rms_eps;
    if (o.d_inner) c.ssm_d_inner = *o.d_inner;
    if (o.d_state) c.ssm_d_state = *o.d_state;
    if (o.d_conv) c.ssm_d_conv = *o.d_conv;
    if (o.dt_rank) c.ssm_dt_rank = *o.dt_rank;
    if (o.tied) c.tied_embeddings = true;
    if (o.untied) c.tied_embeddings = false;
    const SynthFileType* ft = synth_file_type(o.type);
    if (ft == nullptr) {
        std::string names;
        for (const SynthFileType& f : synth_file_types()) names += (names.empty() ? "" : ", ") + std::string(f.name);
        fail("unknown --type '%s'; file types: %s", o.type.c_str(), names.c_str());
    }
    c.type = parse_type(ft->type == GGMLType::F32 ? "F32" : type_name(ft->type), "--type");  // writable check
    c.ftype = ft->ftype;
    c.pure = o.pure;
    if (!o.embd_type.empty()) c.embd_type = parse_type(o.embd_type, "--embd-type");
    if (!o.output_type.empty()) c.output_type = parse_type(o.output_type, "--output-type");
    c.seed = o.seed;
    c.n_threads = o.threads;
    if (!o.tokenizer.empty()) c.tokenizer = o.tokenizer;
    // Check the shape (and the architecture) before looking for a tokenizer.
    synth_tensors(c);
    c.tokenizer = find_data_file(c.tokenizer);

    const auto t0 = std::chrono::steady_clock::now();
    SynthResult r = synthesize(c, o.output);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // One line per kind of fallback ("Q4_K -> Q5_0 (row 576)"), naming the first tensor.
    std::vector<std::pair<std::string, std::pair<std::string, int>>> kinds;  // kind -> (first tensor, count)
    for (const std::string& f : r.fallbacks) {
        const size_t colon = f.find(": ");
        const std::string tensor = f.substr(0, colon), kind = f.substr(colon + 2);
        auto it = std::find_if(kinds.begin(), kinds.end(), [&](const auto& k) { return k.first == kind; });
        if (it == kinds.end()) kinds.push_back({kind, {tensor, 1}});
        else ++it->second.second;
    }
    for (const auto& [kind, first] : kinds)
        std::fprintf(stderr, "slm: fallback %s: %d tensor%s (%s%s)\n", kind.c_str(), first.second,
                     first.second == 1 ? "" : "s", first.first.c_str(), first.second > 1 ? ", ..." : "");
    if (!o.preset.empty() && r.n_vocab != c.n_vocab)
        std::fprintf(stderr, "slm: note: n_vocab %u from the tokenizer; the real %s has %u\n", r.n_vocab,
                     o.preset.c_str(), c.n_vocab);
    std::fprintf(stderr, "slm: wrote %s: %s, %s, %.4g parameters, %s, %.1f MiB in %.1f s (tokenizer %s)\n",
                 o.output.c_str(), c.name.c_str(), c.arch.c_str(), static_cast<double>(r.n_params),
                 ft->name, r.file_bytes / 1048576.0, s, c.tokenizer.c_str());
}

} // namespace

void add_synth(CLI::App& app) {
    auto o = std::make_shared<SynthOptions>();
    CLI::App* sub = app.add_subcommand("synth", "Write a random-weight model of a real shape (for tests and benchmarks)");
    sub->add_option("--preset", o->preset, "Named shape (see --list-presets); without it, tinyllama-1.1b's shape");
    sub->add_option("--type", o->type,
                    "File type as llama-quantize names it: f32, f16, bf16, q8_0, q4_0, q4_k_m, q4_k_s, q5_k_m, "
                    "q6_k, iq4_xs, tq2_0, ... (default f16); quantized types get llama-quantize's per-tensor "
                    "mixture (e.g. output.weight Q6_K) unless --pure");
    sub->add_flag("--pure", o->pure, "Every 2-D weight of --type's tensor type (llama-quantize --pure)");
    sub->add_option("-o,--output", o->output, "Output GGUF path");
    sub->add_option("--seed", o->seed, "Random seed: the same seed and shape give identical bytes")->default_val(42);
    sub->add_option("--tokenizer", o->tokenizer,
                    "GGUF whose tokenizer.* keys are copied (default: the preset's, from tests/data/vocab)");
    sub->add_option("--arch", o->arch, "Architecture (llama, gemma, granite, qwen2moe, olmoe, phimoe, mamba)");
    sub->add_option("--n-embd", o->n_embd, "Embedding width");
    sub->add_option("--n-layer", o->n_layer, "Blocks");
    sub->add_option("--n-head", o->n_head, "Query heads");
    sub->add_option("--n-head-kv", o->n_head_kv, "Key/value heads (must divide --n-head)");
    sub->add_option("--n-ff", o->n_ff, "Feed-forward width");
    sub->add_option("--layer-share", o->layer_share,
                    "MobileLLM block-wise sharing: each stored block computes this many consecutive layers "
                    "(--n-layer counts layers; writes llama.block_source)");
    sub->add_option("--n-expert", o->n_expert, "Experts per layer (qwen2moe, olmoe, phimoe)");
    sub->add_option("--n-expert-used", o->n_expert_used, "Experts used per token (at most --n-expert)");
    sub->add_option("--n-ff-exp", o->n_ff_exp, "Expert width, qwen2moe (default n_ff / --n-expert-used)");
    sub->add_option("--n-ff-shexp", o->n_ff_shexp, "Shared expert width, qwen2moe (default n_ff)");
    sub->add_option("--n-ctx", o->n_ctx, "Training context length written to the file");
    sub->add_option("--head-dim", o->head_dim, "Per-head size (default n_embd / n_head)");
    sub->add_option("--rope-base", o->rope_base, "RoPE frequency base");
    sub->add_option("--rms-eps", o->rms_eps, "RMSNorm epsilon");
    sub->add_option("--d-inner", o->d_inner, "Mamba: inner width (default 2 n_embd)");
    sub->add_option("--d-state", o->d_state, "Mamba: states per channel (default 16)");
    sub->add_option("--d-conv", o->d_conv, "Mamba: convolution taps (default 4)");
    sub->add_option("--dt-rank", o->dt_rank, "Mamba: rank of the dt projection (default ceil(n_embd / 16))");
    auto* tied = sub->add_flag("--tied", o->tied, "No output.weight: logits use token_embd (tied embeddings)");
    sub->add_flag("--untied", o->untied, "Write a separate output.weight")->excludes(tied);
    sub->add_option("--embd-type", o->embd_type, "Type of token_embd.weight (default: --type)");
    sub->add_option("--output-type", o->output_type, "Type of output.weight (default: --type)");
    sub->add_option("-t,--threads", o->threads, "Threads (default: all cores; the bytes do not depend on it)")
        ->check(CLI::Range(0, 256));
    sub->add_flag("--list-presets", o->list, "List the presets and their parameter counts");
    sub->callback([o]() { synth(*o); });
}

} // namespace slm::cli
