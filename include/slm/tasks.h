// slm/tasks.h - benchmark tasks (HellaSwag, ARC, MMLU, WinoGrande, GSM8K, and any multiple-choice
// or generative set described by a task file), prompted and scored as lm-evaluation-harness does.
//
//   slm::TaskConfig cfg = slm::task_preset("arc_easy");           // or slm::load_task_file("piqa.yaml")
//   cfg.dataset_path = "data/eval/arc/arc_easy_dev.jsonl";
//   slm::Session s(model, {});
//   slm::TaskResult r = slm::run_task(s, cfg, {}, nullptr);
//   std::cout << slm::format_task_table({r});
//
// A TaskConfig is an lm-evaluation-harness task YAML with the dataset replaced by a local file:
// the same keys (doc_to_text, doc_to_target, doc_to_choice, target_delimiter, ...), templates in
// Jinja with the document's fields as variables. The built-in tasks are presets of this struct,
// so built-ins and task files run through one engine.
//
// Log-likelihoods follow lm-evaluation-harness's Hugging Face backend: trailing spaces of the
// context move to the continuation, whole = tok(context + continuation), the context is the first
// len(tok(context)) tokens of whole. BOS is added as the model's tokenizer says (llama.cpp's
// behaviour; lm-evaluation-harness adds none by default for most models), so figures can differ
// slightly from lm-eval's on models whose GGUF asks for a BOS.
#pragma once

#include "slm/model.h"

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace slm {

// One step of a filter pipeline (lm-eval's filter_list[].filter[]).
struct TaskFilterStep {
    std::string function;        // "regex", "take_first", "lowercase", "uppercase", "remove_whitespace"
    std::string regex_pattern;   // regex: "#### (\\-?[0-9\\.\\,]+)"
    int group_select = 0;        // regex: which match of findall (-1 = the last)
    std::string fallback = "[invalid]";  // regex: the answer when nothing matches
};

struct TaskFilter {
    std::string name;            // "strict-match" (the Filter column of the report)
    std::vector<TaskFilterStep> steps;
};

struct TaskMetric {
    std::string metric;          // "acc", "acc_norm", "acc_mutual_info" (multiple_choice); "exact_match"
    bool ignore_case = false;    // exact_match options, as lm-eval's (Hugging Face evaluate's) exact_match
    bool ignore_punctuation = false;
    bool ignore_numbers = false;
    std::vector<std::string> regexes_to_ignore;  // removed from prediction and gold first: [",", "\\$"]
};

inline TaskMetric task_metric(std::string name) {
    TaskMetric m;
    m.metric = std::move(name);
    return m;
}

struct TaskConfig {
    std::string task;                // "arc_easy": the name in reports
    std::string dataset_path;        // the evaluated file ("data/eval/arc/arc_easy_dev.jsonl")
    // Layout of dataset_path: "jsonl", "json" (an array of objects), "csv" (with header), or a
    // standard set's reader: "hellaswag", "arc", "mmlu", "winogrande", "gsm8k" (src/formats/datasets.h).
    std::string dataset_format = "jsonl";
    std::string fewshot_path;        // few-shot examples; "" = drawn from the evaluated docs (never the doc itself)
    std::string fewshot_format;      // layout of fewshot_path; "" = dataset_format
    std::string output_type = "multiple_choice";  // or "generate_until"
    // Templates (Jinja; a bare field name means that field of the document, as in lm-eval):
    std::string description;         // before the examples: "The following are ... about {{subject}}.\n\n"
    std::string doc_to_text;         // "Question: {{question}}\nAnswer:"; a value that is an int
                                     // (WinoGrande) selects that choice as the context: the choices are
                                     // then contexts and doc_to_target the one shared continuation
    std::string doc_to_target;       // "{{gold}}": an index into the choices, or the choice text / answer
    std::string doc_to_choice;       // "{{choices.text}}" or "choices": must give a list of strings
    std::vector<std::string> choice_list;  // a fixed list instead (MMLU: A, B, C, D)
    std::string target_delimiter = " ";     // between context and continuation
    std::string fewshot_delimiter = "\n\n"; // after each example
    int num_fewshot = 0;             // 0-shot by default
    std::string fewshot_sampler = "default";  // "default" (Python random.sample, seeded) or "first_n"
    std::vector<TaskMetric> metric_list;      // empty = acc, acc_norm (multiple_choice) / exact_match
    std::vector<std::string> until;  // generate_until: stop strings ("Question:")
    int max_gen_toks = 256;          // generate_until: most tokens generated
    std::vector<TaskFilter> filter_list;      // generate_until: empty = one "none" filter (the raw text)
    std::string group_by;            // a field whose value splits results into subtasks ("subject")
    int version = 1;                 // metadata.version, shown in the report
    std::string source_file;         // the task file it came from ("" for presets), named in errors
};

// Built-in tasks: "hellaswag", "arc_easy", "arc_challenge", "mmlu", "winogrande", "gsm8k", "piqa".
// dataset_path is left empty. Throws slm::Error for other names.
TaskConfig task_preset(const std::string& name);
std::vector<std::string> task_preset_names();

// Task files (src/formats/task_file.cpp): YAML or JSON with TaskConfig's keys, as lm-eval's task
// YAMLs (metric_list, generation_kwargs.until, filter_list, fewshot_config.sampler, metadata.version).
// Relative dataset paths are taken from the task file's folder. Errors name the file and the key.
TaskConfig load_task_file(const std::string& path);
TaskConfig parse_task_file(const std::string& text, const std::string& name, const std::string& base_dir = "");

struct TaskRunOptions {
    size_t limit = 0;          // evaluate only the first `limit` documents of each subtask (0 = all)
    int num_fewshot = -1;      // -1 = the config's
    uint64_t seed = 1234;      // few-shot sampling (lm-eval's default fewshot seed)
    bool kv_reuse = true;      // keep the KV cache of the longest common prefix between requests
    // Score the choices of a question in one batched forward pass (Session::eval_branches): the
    // weights are read once for all of them. Same results; models that cannot branch (Mamba,
    // Jamba, sliding-window Gemma 2/3) score them one by one.
    bool batch_choices = true;
    bool keep_items = true;    // fill TaskResult::items
};

struct ChoiceScore {
    double ll = 0;             // sum of log-probabilities of the continuation's tokens
    bool is_greedy = false;    // every continuation token was the argmax
    uint32_t n_tokens = 0;     // continuation tokens
};

struct TaskItem {
    size_t doc_index = 0;
    std::string group;                 // group_by value ("abstract_algebra")
    std::string prompt;                // context text (few-shot examples included)
    std::vector<std::string> choices;  // choice texts (or contexts, WinoGrande)
    std::vector<std::string> continuations;  // what was scored per choice
    std::vector<ChoiceScore> scores;
    int gold = -1;
    int pred = -1, pred_norm = -1;
    std::string target;                // generate_until: the gold answer text
    std::string generation;            // generate_until: the raw generated text
    std::map<std::string, std::string> filtered;  // generate_until: filter name -> extracted answer
    std::map<std::string, double> values;         // "acc" -> 1, "exact_match,strict-match" -> 0
};

struct MetricValue {
    std::string metric;        // "acc"
    std::string filter = "none";
    double value = 0;
    double stderr_ = 0;        // standard error (sample stddev / sqrt(n), pooled for groups)
};

struct TaskGroupResult {
    std::string name;          // subject, or category for MMLU ("stem")
    std::string parent;        // category of a subject ("" for top-level groups)
    size_t n = 0;
    std::vector<MetricValue> metrics;
};

struct TaskResult {
    std::string task;
    int version = 1;
    int num_fewshot = 0;
    size_t n_items = 0;
    std::vector<MetricValue> metrics;          // over all items (for MMLU: lm-eval's size-weighted mmlu)
    std::vector<MetricValue> macro;            // unweighted mean over subtasks (when grouped)
    std::vector<TaskGroupResult> subtasks;     // per group_by value
    std::vector<TaskGroupResult> categories;   // MMLU: stem, humanities, social_sciences, other
    std::vector<TaskItem> items;
    uint64_t n_tokens_evaluated = 0;           // tokens run through the model
    uint64_t n_tokens_without_reuse = 0;       // what evaluating every request from scratch would take
    uint64_t n_batched = 0;                    // questions whose choices were scored in one batched pass
    // Requests longer than the context, left-truncated as lm-eval does (the context's start is
    // dropped; a continuation longer than the whole context has only its end scored).
    uint64_t n_truncated = 0;
    double seconds = 0;
};

// Loads the config's documents, builds every prompt and scores it. progress(done, total) is called
// after each document. Throws slm::Error on bad data or templates (naming the file and key).
TaskResult run_task(Session& session, const TaskConfig& cfg, const TaskRunOptions& opts,
                    const std::function<void(size_t, size_t)>& progress);

// lm-eval's results table (markdown): Tasks | Version | Filter | n-shot | Metric | | Value | | Stderr.
std::string format_task_table(const std::vector<TaskResult>& results);
// Config, metrics and every item as JSON text (for --json).
std::string task_result_json(const TaskConfig& cfg, const TaskRunOptions& opts, const TaskResult& r);

// MMLU's subject -> lm-eval category ("stem", "humanities", "social_sciences", "other"); "" if unknown.
std::string mmlu_category(const std::string& subject);

} // namespace slm
