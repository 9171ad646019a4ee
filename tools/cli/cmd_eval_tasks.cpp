// slm eval hellaswag|arc|mmlu|winogrande|gsm8k|custom: benchmark tasks scored as
// lm-evaluation-harness scores them (slm/tasks.h). Each subcommand is a preset TaskConfig plus the
// shipped data file; `custom` reads a task file. Prints lm-eval's results table; --json writes
// config, metrics and every item.
#include "commands.h"
#include "progress.h"

#include "slm/error.h"
#include "slm/model.h"
#include "slm/tasks.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

namespace slm::cli {

namespace {

struct TaskCliOptions {
    std::string model, file, fewshot_file, json_out, task_file, arc_set = "easy";
    size_t limit = 0;
    int num_fewshot = -1;
    uint64_t seed = 1234;
    int threads = 0;
    uint32_t n_ctx = 0;
    bool no_kv_reuse = false;
    bool no_batch = false;
};

void write_atomic(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) fail("eval: cannot write %s", tmp.c_str());
        f << text << "\n";
        f.flush();
        if (!f) fail("eval: cannot write %s", tmp.c_str());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("eval: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), ec.message().c_str());
}

void run_eval_task(const std::string& kind, const TaskCliOptions& o) {
    TaskConfig cfg;
    std::string shipped;
    if (kind == "custom") {
        if (o.task_file.empty()) fail("eval custom: --task-file is required");
        cfg = load_task_file(o.task_file);
    } else if (kind == "arc") {
        if (o.arc_set != "easy" && o.arc_set != "challenge") fail("eval arc: --set '%s' is not easy or challenge", o.arc_set.c_str());
        cfg = task_preset("arc_" + o.arc_set);
        shipped = "data/eval/arc/arc_" + o.arc_set + "_dev.jsonl";
    } else {
        cfg = task_preset(kind);
        if (kind == "hellaswag") shipped = "data/eval/hellaswag/hellaswag_val_full.txt.bz2";
        if (kind == "mmlu") shipped = "data/eval/mmlu/dev";
        if (kind == "winogrande") shipped = "data/eval/winogrande/winogrande-debiased-eval.csv";
    }
    if (!o.file.empty()) {
        cfg.dataset_path = o.file;
    } else if (!shipped.empty()) {
        cfg.dataset_path = find_repo_file(shipped);
        if (cfg.dataset_path.empty()) fail("eval %s: the shipped %s is not found; give the data file with -f", kind.c_str(), shipped.c_str());
    } else if (cfg.dataset_path.empty()) {
        fail("eval %s: give the data file with -f", kind.c_str());
    }
    if (!o.fewshot_file.empty()) cfg.fewshot_path = o.fewshot_file;

    std::shared_ptr<const Model> model = Model::load(o.model.empty() ? default_model() : o.model);
    SessionOptions so;
    so.n_ctx = o.n_ctx ? o.n_ctx : std::min<uint32_t>(model->hparams().n_ctx_train, 4096);
    so.n_threads = o.threads;
    Session session(model, so);

    TaskRunOptions ro;
    ro.limit = o.limit;
    ro.num_fewshot = o.num_fewshot;
    ro.seed = o.seed;
    ro.kv_reuse = !o.no_kv_reuse;
    ro.batch_choices = !o.no_batch;
    ro.keep_items = !o.json_out.empty();
    const int shots = ro.num_fewshot >= 0 ? ro.num_fewshot : cfg.num_fewshot;
    if (shots > 0 && cfg.fewshot_path.empty() && kind == "gsm8k")
        std::fprintf(stderr, "slm: %d-shot examples are drawn from the evaluated file itself (give --fewshot-file train.jsonl)\n", shots);

    TaskResult r;
    {
        std::unique_ptr<ProgressBar> sized;
        r = run_task(session, cfg, ro, [&](size_t done, size_t total) {
            if (!sized) sized = std::make_unique<ProgressBar>("items", total);
            sized->update(done);
        });
    }
    std::printf("%s", format_task_table({r}).c_str());
    std::fprintf(stderr, "slm: %s: %zu items in %.1f s (%.1f items/s) | %llu tokens evaluated, %llu without KV reuse | "
                 "%llu questions batched | %d threads\n",
                 r.task.c_str(), r.n_items, r.seconds, r.seconds > 0 ? r.n_items / r.seconds : 0.0,
                 static_cast<unsigned long long>(r.n_tokens_evaluated),
                 static_cast<unsigned long long>(r.n_tokens_without_reuse),
                 static_cast<unsigned long long>(r.n_batched), session.n_threads());
    if (r.n_truncated > 0)
        std::fprintf(stderr, "slm: warning: %llu requests were longer than the context of %u tokens and were left-truncated "
                             "(as lm-eval does); raise -c to score them whole\n",
                     static_cast<unsigned long long>(r.n_truncated), session.n_ctx());
    if (!o.json_out.empty()) write_atomic(o.json_out, task_result_json(cfg, ro, r));
}

void add_one(CLI::App& eval, const std::string& kind, const std::string& help) {
    auto o = std::make_shared<TaskCliOptions>();
    CLI::App* sub = eval.add_subcommand(kind, help);
    sub->add_option("-m,--model", o->model, "GGUF model file or Hugging Face model folder (default: $SLM_MODEL or the bundled stories260K)");
    if (kind == "custom") {
        sub->add_option("--task-file", o->task_file, "task file (YAML or JSON, lm-eval's task keys; see data/tasks/README.md)")->required();
        sub->add_option("-f,--file", o->file, "data file (default: the task file's dataset_path)");
    } else if (kind == "gsm8k") {
        sub->add_option("-f,--file", o->file, "GSM8K jsonl (question, answer ending '#### N')")->required();
    } else {
        sub->add_option("-f,--file", o->file, "data file (default: the one shipped in data/eval)");
    }
    if (kind == "arc") sub->add_option("--set", o->arc_set, "easy or challenge (default easy)");
    sub->add_option("--fewshot-file", o->fewshot_file, "few-shot examples (same layout; default: the evaluated file, never the item itself)");
    sub->add_option("--limit", o->limit, "evaluate only the first N items (of each MMLU subject)");
    sub->add_option("--num-fewshot", o->num_fewshot, "examples per prompt (default: the task's)");
    sub->add_option("--seed", o->seed, "few-shot sampling seed (default 1234, as lm-eval)");
    sub->add_option("--json", o->json_out, "write config, metrics and every item's scores to this file");
    sub->add_option("-t,--threads", o->threads, "threads (default: one per physical core)");
    sub->add_option("-c,--ctx-size", o->n_ctx, "context length (default: the model's, at most 4096)");
    sub->add_flag("--no-kv-reuse", o->no_kv_reuse, "evaluate every request from scratch (to measure what reuse saves)");
    sub->add_flag("--no-batch", o->no_batch, "score the choices of a question one by one instead of in one batched pass");
    sub->callback([kind, o]() { run_eval_task(kind, *o); });
}

} // namespace

void add_eval_tasks(CLI::App& eval) {
    add_one(eval, "hellaswag", "HellaSwag: acc and acc_norm over 4 endings (lm-eval's hellaswag)");
    add_one(eval, "arc", "ARC-Easy / ARC-Challenge: acc and acc_norm (lm-eval's arc_easy, arc_challenge)");
    add_one(eval, "mmlu", "MMLU: per-subject accuracy, lm-eval's four categories, micro and macro averages");
    add_one(eval, "winogrande", "WinoGrande: partial scoring of the text after the blank (lm-eval's winogrande)");
    add_one(eval, "gsm8k", "GSM8K: greedy generation, strict and flexible answer extraction, exact match");
    add_one(eval, "custom", "any multiple-choice or generative task described by a task file (YAML or JSON)");
}

} // namespace slm::cli
