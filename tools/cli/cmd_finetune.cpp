// slm finetune --lora: train low-rank adapters on a frozen base; slm lora merge: base + adapter
// -> one model.
#include "commands.h"
#include "train_flags.h"

#include "slm/distill.h"
#include "slm/error.h"
#include "slm/train.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <sstream>

namespace slm::cli {

namespace {

struct FinetuneOptions {
    std::string base, out, config, targets = "q,k,v,o";
    uint32_t rank = 0;
    float alpha = 0;  // 0 = 2 rank (PEFT's common choice, alpha 16 at rank 8)
    TrainFlags train;
};

// Short target names as the flag takes them -> the tensor names after "blk.N.".
std::vector<std::string> lora_targets(const std::string& list) {
    std::vector<std::string> out;
    std::stringstream ss(list);
    std::string t;
    while (std::getline(ss, t, ',')) {
        if (t.empty()) continue;
        static const std::pair<const char*, const char*> names[] = {
            {"q", "attn_q"},   {"k", "attn_k"},       {"v", "attn_v"},     {"o", "attn_output"},
            {"gate", "ffn_gate"}, {"up", "ffn_up"},   {"down", "ffn_down"}};
        std::string full;
        for (const auto& [s, l] : names)
            if (t == s || t == l) full = l;
        if (full.empty())
            fail("finetune: --lora-targets: unknown matrix '%s' (use q, k, v, o, gate, up, down)", t.c_str());
        out.push_back(full);
    }
    if (out.empty()) fail("finetune: --lora-targets is empty");
    return out;
}

void finetune(const FinetuneOptions& f) {
    TrainOptions o = f.train.apply(f.config.empty() ? TrainOptions{} : load_train_config(f.config).options);
    if (o.data.empty()) fail("finetune: no data: give --data TEXT|TOKENS");
    std::unique_ptr<TrainModel> m = TrainModel::load(f.base);
    if (o.tokenizer.empty()) o.tokenizer = f.base;  // text data is cut with the base's tokenizer
    LoraOptions lo;
    lo.rank = f.rank;
    lo.alpha = f.alpha > 0 ? f.alpha : 2.0f * float(f.rank);
    lo.targets = lora_targets(f.targets);
    lo.seed = o.seed;
    m->add_lora(lo);
    o.out = f.out;  // with adapters, train() writes the adapter GGUF
    TrainResult r = train(*m, o);
    std::fprintf(stderr, "slm finetune: adapter rank %u alpha %g on %zu matrix kinds: final loss %.4f, val %.4f -> %s\n",
                 lo.rank, double(lo.alpha), lo.targets.size(), double(r.final_loss), double(r.final_val_loss),
                 f.out.c_str());
}

} // namespace

void add_finetune(CLI::App& app) {
    auto f = std::make_shared<FinetuneOptions>();
    CLI::App* sub = app.add_subcommand("finetune", "Fine-tune a model: LoRA adapters on a frozen (possibly quantized) base");
    sub->add_option("-m,--model", f->base, "Base model GGUF (llama architecture; quantized types are dequantized)")
        ->required()->check(CLI::ExistingFile);
    sub->add_option("--lora", f->rank, "Adapter rank R")->required()->check(CLI::Range(1, 4096));
    sub->add_option("--lora-alpha", f->alpha, "Adapter alpha (scale alpha / R; default 2 R)")->check(CLI::PositiveNumber);
    sub->add_option("--lora-targets", f->targets, "Matrices that get adapters: q,k,v,o,gate,up,down (default q,k,v,o)");
    sub->add_option("-o,--output", f->out, "Adapter GGUF to write (llama.cpp's adapter format)")->required();
    sub->add_option("--config", f->config, "Training config JSON (only its \"train\" options are used)")
        ->check(CLI::ExistingFile);
    add_train_flags(*sub, f->train);
    sub->callback([f]() { finetune(*f); });
}

void add_lora(CLI::App& app) {
    CLI::App* lora = app.add_subcommand("lora", "LoRA adapters: merge into the base model");
    lora->require_subcommand(1);
    struct MergeOptions {
        std::string base, adapter, out, type = "F32";
    };
    auto o = std::make_shared<MergeOptions>();
    CLI::App* merge = lora->add_subcommand("merge", "Base + adapter -> one model GGUF (W += alpha / rank B A)");
    merge->add_option("base", o->base, "Base model GGUF")->required()->check(CLI::ExistingFile);
    merge->add_option("adapter", o->adapter, "Adapter GGUF (from slm finetune --lora)")->required()->check(CLI::ExistingFile);
    merge->add_option("-o,--output", o->out, "Merged model GGUF to write")->required();
    merge->add_option("--type", o->type, "Type written: F32 (default), F16, BF16, or a quantized type (Q8_0, Q4_K_M, ...)");
    merge->callback([o]() {
        lora_merge(o->base, o->adapter, o->out, o->type);
        std::fprintf(stderr, "slm lora merge: %s + %s -> %s (%s)\n", o->base.c_str(), o->adapter.c_str(), o->out.c_str(),
                     o->type.c_str());
    });
}

} // namespace slm::cli
