// train_flags.cpp - see train_flags.h.
#include "train_flags.h"

#include "slm/error.h"

#include <CLI/CLI.hpp>

namespace slm::cli {

namespace {

template <class T> void flag(CLI::App& sub, TrainFlags& f, const std::string& names, T TrainOptions::*field,
                             const std::string& help) {
    CLI::Option* opt = sub.add_option(names, f.o.*field, help);
    f.overrides.emplace_back(opt, [&f, field](TrainOptions& o) { o.*field = f.o.*field; });
}

} // namespace

TrainOptions TrainFlags::apply(TrainOptions base) const {
    for (const auto& [opt, set] : overrides)
        if (opt->count() > 0) set(base);
    if (no_resume) base.resume = false;
    if (!out_type.empty() && !type_from_name(out_type, &base.out_type))
        fail("--out-type '%s': unknown type", out_type.c_str());
    return base;
}

void add_train_flags(CLI::App& sub, TrainFlags& f) {
    flag(sub, f, "--data", &TrainOptions::data, "Training data: text, or tokens (llm.c .bin shard, .tok / integers)");
    flag(sub, f, "--steps", &TrainOptions::steps, "Optimizer steps");
    flag(sub, f, "--batch", &TrainOptions::batch, "Sequences per micro-batch");
    flag(sub, f, "--seq-len,--ctx", &TrainOptions::seq_len, "Tokens per sequence (<= the model's n_ctx)");
    flag(sub, f, "--grad-accum", &TrainOptions::grad_accum, "Micro-batches per optimizer step");
    flag(sub, f, "--lr", &TrainOptions::lr, "Peak learning rate");
    flag(sub, f, "--lr-min-ratio", &TrainOptions::lr_min_ratio, "Cosine floor as a fraction of --lr");
    flag(sub, f, "--warmup", &TrainOptions::warmup, "Linear warm-up steps");
    flag(sub, f, "--beta1", &TrainOptions::beta1, "AdamW beta1");
    flag(sub, f, "--beta2", &TrainOptions::beta2, "AdamW beta2");
    flag(sub, f, "--eps", &TrainOptions::eps, "AdamW epsilon");
    flag(sub, f, "--wd", &TrainOptions::weight_decay, "Weight decay (2-D weights only)");
    flag(sub, f, "--clip", &TrainOptions::grad_clip, "Global gradient-norm clip (0 = off)");
    flag(sub, f, "--val-fraction", &TrainOptions::val_fraction, "Tail of the data held out for validation");
    flag(sub, f, "--val-every", &TrainOptions::val_every, "Steps between validation losses (0 = at the end only)");
    flag(sub, f, "--val-batches", &TrainOptions::val_batches, "Validation batches");
    flag(sub, f, "--ckpt-every", &TrainOptions::ckpt_every, "Steps between checkpoints (0 = at the end only)");
    flag(sub, f, "--ckpt-dir", &TrainOptions::checkpoint_dir, "Checkpoint folder (default OUT.ckpt)");
    flag(sub, f, "--seed", &TrainOptions::seed, "Seed of the initialization, the data order and the sampling");
    flag(sub, f, "-t,--threads", &TrainOptions::n_threads, "Threads (0 = one per core)");
    flag(sub, f, "--doc-split", &TrainOptions::doc_split, "blank (default) | line | none: how text splits into documents");
    flag(sub, f, "--log-every", &TrainOptions::log_every, "Steps between progress lines");
    sub.add_flag("--no-resume", f.no_resume, "Start over even if the checkpoint folder holds a checkpoint");
    sub.add_option("--out-type", f.out_type, "Type of the output's weights: F32, F16, BF16 or a quantized type");
}

} // namespace slm::cli
