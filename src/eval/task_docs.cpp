// eval/task_docs.cpp - run_task: a config's documents read with the dataset readers
// (formats/datasets.h), then the engine (tasks.cpp).
#include "eval/tasks_impl.h"
#include "formats/datasets.h"
#include "slm/error.h"

namespace slm {

namespace {

std::vector<eval::Doc> load_docs(const std::string& path, const std::string& format, const std::string& task) {
    if (path.empty()) fail("task %s: no dataset file (dataset_path)", task.c_str());
    if (format == "jsonl") return read_jsonl(path);
    if (format == "json") return read_json_array(path);
    if (format == "csv") return read_csv(path, true);
    if (format == "hellaswag") return load_hellaswag(path);
    if (format == "arc") return load_arc(path);
    if (format == "mmlu") return load_mmlu(path);
    if (format == "winogrande") return load_winogrande(path);
    if (format == "gsm8k") return load_gsm8k(path);
    fail("task %s: dataset_format '%s' is not jsonl, json, csv, hellaswag, arc, mmlu, winogrande or gsm8k", task.c_str(),
         format.c_str());
}

} // namespace

TaskResult run_task(Session& session, const TaskConfig& cfg, const TaskRunOptions& opts,
                    const std::function<void(size_t, size_t)>& progress) {
    std::vector<eval::Doc> docs = load_docs(cfg.dataset_path, cfg.dataset_format, cfg.task);
    if (docs.empty()) fail("task %s: %s has no documents", cfg.task.c_str(), cfg.dataset_path.c_str());
    if (cfg.fewshot_path.empty()) return eval::run_docs(session, cfg, docs, nullptr, opts, progress);
    std::vector<eval::Doc> shots =
        load_docs(cfg.fewshot_path, cfg.fewshot_format.empty() ? cfg.dataset_format : cfg.fewshot_format, cfg.task);
    return eval::run_docs(session, cfg, docs, &shots, opts, progress);
}

} // namespace slm
