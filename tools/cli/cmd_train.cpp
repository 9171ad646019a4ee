// slm train: train a Llama-family model from a config (or a preset, or an existing model) on a
// text or token file. All the work is slm::train (include/slm/train.h); this file maps flags.
#include "commands.h"
#include "train_flags.h"

#include "slm/distill.h"
#include "slm/error.h"
#include "slm/train.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <memory>

namespace slm::cli {

namespace {

struct TrainCli {
    std::string config, preset, init, tokenizer, qat;
    bool qat_distill = false;
    TrainFlags train;  // the training-loop flags, shared with slm distill / finetune
};

GGMLType parse_type_flag(const std::string& s, const char* flag_name) {
    GGMLType t;
    if (!type_from_name(s, &t)) fail("train: %s '%s': unknown type", flag_name, s.c_str());
    return t;
}

void run_train(TrainCli& c) {
    const int n_sources = !c.config.empty() + !c.preset.empty() + !c.init.empty();
    if (n_sources == 0) fail("train: give the model: --config CFG.json, --preset NAME or --init MODEL.gguf");
    if (!c.config.empty() && !c.preset.empty()) fail("train: --config and --preset both given; the config names its preset");
    // Repository-relative names (configs/train/x.json, models/...) work from any directory.
    const auto in_repo = [](std::string& path) {
        if (path.empty()) return;
        const std::string found = find_repo_file(path);
        if (!found.empty()) path = found;
    };
    in_repo(c.config);
    in_repo(c.init);
    TrainConfig cfg;
    if (!c.config.empty()) cfg = load_train_config(c.config);
    if (!c.preset.empty()) {
        cfg.preset = c.preset;
        cfg.arch = train_preset(c.preset);
    }
    cfg.options = c.train.apply(cfg.options);
    TrainOptions& o = cfg.options;
    if (!c.qat.empty()) o.qat_type = parse_type_flag(c.qat, "--qat");
    if (c.qat_distill) {
        if (!o.qat_type) fail("train: --qat-distill needs --qat TYPE (the type the student is trained for)");
        o.qat_distill = true;
    }
    if (!c.tokenizer.empty()) cfg.arch.tokenizer = c.tokenizer;
    in_repo(cfg.arch.tokenizer);
    in_repo(o.data);
    if (o.data.empty()) fail("train: no data: give --data TEXT|TOKENS (or \"data\" in the config's \"train\")");

    std::unique_ptr<TrainModel> model;
    if (!c.init.empty()) {
        if (!c.config.empty() && cfg.preset.empty())
            std::fprintf(stderr, "note: --init %s: the model's own architecture is used; the config's \"arch\" is ignored\n",
                         c.init.c_str());
        model = TrainModel::load(c.init);
        // Text data is tokenized with the loaded model's own tokenizer unless --tokenizer says otherwise.
        if (o.tokenizer.empty()) o.tokenizer = c.tokenizer.empty() ? c.init : cfg.arch.tokenizer;
    } else {
        model = std::make_unique<TrainModel>(cfg.arch, o.seed);
    }
    const TrainArch& a = model->arch();
    std::fprintf(stderr, "model: %s, %u layers x %u wide, %u heads (%u KV), n_ff %u, vocab %u, ctx %u, %llu parameters\n",
                 a.name.c_str(), a.n_layer, a.n_embd, a.n_head, a.n_head_kv ? a.n_head_kv : a.n_head, a.n_ff, a.n_vocab,
                 a.n_ctx, static_cast<unsigned long long>(model->n_params()));
    // BitDistiller's self-distillation: the full-precision start model teaches its quantized self.
    std::unique_ptr<Distiller> self_distill;
    if (o.qat_distill && !o.batch_loss) self_distill = install_self_distillation(*model, o);
    const TrainResult r = train(*model, o);
    std::printf("steps %lld, tokens %lld, final loss %.4f", static_cast<long long>(r.curve.size()),
                static_cast<long long>(r.tokens_seen), static_cast<double>(r.final_loss));
    if (std::isfinite(r.final_val_loss))
        std::printf(", validation loss %.4f (ppl %.2f)", static_cast<double>(r.final_val_loss),
                    std::exp(static_cast<double>(r.final_val_loss)));
    std::printf(", %.0f tokens/s\n", r.tokens_per_s);
    if (!o.out.empty()) std::printf("model: %s\n", o.out.c_str());
    if (!r.svg_path.empty()) std::printf("loss curve: %s\n", r.svg_path.c_str());
}

} // namespace

void add_train(CLI::App& app) {
    auto c = std::make_shared<TrainCli>();
    CLI::App* sub = app.add_subcommand(
        "train", "Train a Llama-family model on the CPU: AdamW, warm-up + cosine, clipping, accumulation, exact-resume "
                 "checkpoints, validation on a held-out tail, a loss-curve SVG, and quantization-aware training.");
    sub->footer(
        "Config JSON: {\"preset\": NAME, \"arch\": {TrainArch fields, \"tokenizer\": \"tok.gguf\"}, \"train\": "
        "{TrainOptions fields}}; flags override it. Presets: " +
        [] {
            std::string s;
            for (const std::string& n : train_preset_names()) s += (s.empty() ? "" : ", ") + n;
            return s;
        }() +
        ".\nText data is cut into documents at blank lines (--doc-split), each followed by EOS; every sequence starts "
        "with BOS when the tokenizer adds one. Checkpoints go to OUT.ckpt/ (the two newest kept) with loss.svg; a "
        "rerun resumes from the newest.\nExample: slm train --config configs/train/tiny.json --data "
        "../shared/data/corpora/tinystories_train_1k.txt -o tiny.gguf");
    sub->add_option("--config", c->config, "Training config (JSON)");
    sub->add_option("--preset", c->preset, "A preset architecture instead of --config");
    sub->add_option("--init", c->init, "Continue from this model (a llama GGUF, any type) instead of a random init");
    sub->add_option("--tokenizer", c->tokenizer, "GGUF whose tokenizer the model takes (arch field 'tokenizer')");
    TrainCli* t = c.get();  // not the shared_ptr: the override lives inside *c
    CLI::Option* out = sub->add_option("-o,--out", t->train.o.out, "Output model GGUF");
    t->train.overrides.emplace_back(out, [t](TrainOptions& o) { o.out = t->train.o.out; });
    add_train_flags(*sub, c->train);
    sub->add_option("--qat", c->qat, "Quantization-aware training for this type (Q4_0, Q2_K, TQ1_0, TQ2_0, ...); "
                                     "the output is written in it");
    sub->add_flag("--qat-distill", c->qat_distill,
                  "With --qat: the full-precision start model is the teacher (BitDistiller's self-distillation)");
    sub->callback([c]() { run_train(*c); });
}

} // namespace slm::cli
