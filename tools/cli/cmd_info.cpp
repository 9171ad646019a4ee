// slm info: what a model file holds.
#include "commands.h"

#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>

namespace slm::cli {

namespace {

struct InfoOptions {
    std::string model;
    bool all_keys = false;
};

void info(const InfoOptions& o) {
    const std::string path = o.model.empty() ? default_model() : o.model;
    // A Hugging Face folder is shown as the GGUF it converts to (Model::load converts it).
    std::shared_ptr<const Model> model;
    std::string load_error;
    const bool folder = std::filesystem::is_directory(path);
    if (folder) model = Model::load(path);
    GGUFFile f = folder ? model->file() : GGUFFile::open(path);
    std::printf("file:          %s%s\n", path.c_str(), folder ? " (Hugging Face folder, converted in memory)" : "");
    std::printf("format:        GGUF v%u, %zu bytes, %zu metadata keys, %zu tensors, alignment %" PRIu64 "\n", f.version(),
                f.file_size(), f.kv().size(), f.tensors().size(), f.alignment());

    if (!model && !f.tensors().empty()) {
        try {
            model = Model::load(path);
        } catch (const Error& e) {
            load_error = e.what();
        }
    }
    if (model) {
        const HParams& hp = model->hparams();
        std::printf("architecture:  %s (%s)\n", hp.arch.c_str(), hp.name.c_str());
        std::printf("hparams:       n_vocab %u, n_ctx_train %u, n_embd %u, n_layer %u, n_ff %u\n", hp.n_vocab,
                    hp.n_ctx_train, hp.n_embd, hp.n_layer, hp.n_ff);
        if (hp.n_head > 0)
            std::printf("attention:     n_head %u, n_head_kv %u, head_dim k %u v %u, rms_eps %g\n", hp.n_head,
                        hp.n_head_kv, hp.n_embd_head_k, hp.n_embd_head_v, hp.rms_eps);
        else
            std::printf("attention:     none (state-space layers), rms_eps %g\n", hp.rms_eps);
        if (hp.uses_rope && hp.n_head > 0)
            std::printf("rope:          %s, n_rot %u, freq_base %g, freq_scale %g%s\n",
                        hp.rope_type == RopeType::Norm ? "norm" : "neox", hp.n_rot, hp.rope_freq_base,
                        hp.rope_freq_scale, hp.has_rope_freqs ? ", frequency factors" : "");
        else
            std::printf("rope:          none\n");
        std::printf("output:        %s\n", hp.tied_output ? "tied to token_embd" : "output.weight");
        for (const auto& [k, val] : model->arch_info()) std::printf("%-14s %s\n", (k + ":").c_str(), val.c_str());
        const Vocab& v = model->vocab();
        std::printf("tokenizer:     %s, %d tokens, bos %d, eos %d\n", f.get_str("tokenizer.ggml.model", "?").c_str(),
                    v.n_tokens(), v.bos(), v.eos());
    } else {
        std::printf("architecture:  %s\n", f.get_str("general.architecture", "(none)").c_str());
        if (!load_error.empty()) std::printf("not runnable:  %s\n", load_error.c_str());
        if (f.has("tokenizer.ggml.tokens"))
            std::printf("tokenizer:     %s, %" PRIu64 " tokens\n", f.get_str("tokenizer.ggml.model", "?").c_str(),
                        f.find("tokenizer.ggml.tokens")->n);
    }

    std::printf("\nmetadata:\n");
    for (const auto& [k, v] : f.kv()) std::printf("  %-48s %-8s %s\n", k.c_str(), gguf_type_name(v.type),
                                                  v.to_string(o.all_keys ? 1u << 30 : 6).c_str());

    std::printf("\ntensors:\n  %-40s %-7s %-22s %12s\n", "name", "type", "shape", "bytes");
    std::map<std::string, std::pair<size_t, size_t>> by_type;
    size_t total = 0;
    int64_t params = 0;
    for (const auto& t : f.tensors()) {
        std::printf("  %-40s %-7s %-22s %12zu\n", t.name.c_str(), type_name(t.type), t.shape_str().c_str(), t.nbytes);
        auto& bt = by_type[type_name(t.type)];
        bt.first += 1;
        bt.second += t.nbytes;
        total += t.nbytes;
        params += t.nelements();
    }
    std::printf("\ntotals:        %zu tensors, %" PRId64 " parameters, %zu bytes (%.2f MiB), %.2f bits/parameter\n",
                f.tensors().size(), params, total, total / 1048576.0, params ? total * 8.0 / params : 0.0);
    for (const auto& [name, ct] : by_type)
        std::printf("  %-7s %4zu tensors %12zu bytes\n", name.c_str(), ct.first, ct.second);
}

} // namespace

void add_info(CLI::App& app) {
    auto o = std::make_shared<InfoOptions>();
    CLI::App* sub = app.add_subcommand("info", "Show a model's architecture, hyper-parameters, tokenizer and tensors");
    sub->add_option("model,-m,--model", o->model, "GGUF file or Hugging Face model folder (default: the bundled stories260K)");
    sub->add_flag("--all", o->all_keys, "Print array metadata in full");
    sub->callback([o]() { info(*o); });
}

} // namespace slm::cli
