// eval/tasks_impl.h - the pieces of the task engine (slm/tasks.h), exposed for tests: the metric
// functions (pure), filters, few-shot sampling, prompt building and the log-likelihood scorer.
#pragma once

#include "chat/doc_template.h"
#include "slm/tasks.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace slm::eval {

using Doc = nlohmann::json;

// ---- metrics (metrics.cpp) ------------------------------------------------------------------
double mean(const std::vector<double>& xs);
// lm-eval's mean_stderr: sample standard deviation (ddof=1) / sqrt(n); NaN for fewer than 2 values.
double mean_stderr(const std::vector<double>& xs);
// lm-eval's pooled_sample_stderr: the stderr of a size-weighted mean of groups.
double pooled_stderr(const std::vector<double>& stderrs, const std::vector<size_t>& sizes);
size_t utf8_chars(std::string_view s);              // code points, as Python's len(str)
size_t argmax_first(const std::vector<double>& v);  // numpy.argmax: the first of equal maxima
struct ChoicePick {
    size_t pred = 0;       // argmax of ll
    size_t pred_norm = 0;  // argmax of ll / len(choice) in characters
};
ChoicePick pick_choice(const std::vector<double>& lls, const std::vector<std::string>& choices);
// Python's re.findall: whole matches (no group), group 1 (one group) or all groups (several).
std::vector<std::vector<std::string>> regex_findall(const std::string& pattern, const std::string& text);
// lm-eval's filter pipeline on one response (regex, take_first, lowercase, uppercase, remove_whitespace).
std::string apply_filter(const TaskFilter& f, const std::string& response);
// lm-eval's exact_match (Hugging Face evaluate's): regexes removed, then case and punctuation.
bool exact_match(const std::string& pred, const std::string& gold, const TaskMetric& m);
// Checks a regex compiles (task file validation); throws slm::Error naming `what`.
void check_regex(const std::string& pattern, const std::string& what);

// ---- few-shot sampling (fewshot.cpp) --------------------------------------------------------
// Python's random.Random(seed): MT19937 seeded by init_by_array, getrandbits, randbelow, sample.
class PyRandom {
public:
    explicit PyRandom(uint64_t seed);
    uint32_t next32();
    uint64_t randbelow(uint64_t n);
    std::vector<size_t> sample(size_t n, size_t k);  // random.sample(range(n), k): indices
private:
    uint32_t mt_[624];
    int idx_ = 624;
};

// ---- prompts (tasks.cpp) --------------------------------------------------------------------
struct CompiledTask {
    TaskConfig cfg;
    chat::DocTemplate description, text, target, choice;
    bool text_is_field = false, target_is_field = false, choice_is_field = false;
};
CompiledTask compile_task(const TaskConfig& cfg, const std::string& where);

struct PreparedDoc {
    std::string prompt;                      // the context (few-shot examples, description)
    std::vector<std::string> choices;        // the choices (contexts when multiple_input)
    std::vector<std::pair<std::string, std::string>> requests;  // (context, continuation) per choice
    bool multiple_input = false;
    int gold = -1;
    std::string target;                      // generate_until: gold answer text
    std::string group;
};
// doc_to_text / doc_to_target / doc_to_choice of one document as lm-eval computes them.
nlohmann::json doc_text(const CompiledTask& t, const Doc& doc);
nlohmann::json doc_target(const CompiledTask& t, const Doc& doc);
std::vector<std::string> doc_choices(const CompiledTask& t, const Doc& doc, const std::string& where);
// The whole prompt of `doc` with `shots` as examples.
PreparedDoc prepare_doc(const CompiledTask& t, const Doc& doc, const std::vector<const Doc*>& shots,
                        const std::string& where);

// ---- scoring (tasks.cpp) --------------------------------------------------------------------
class Scorer {
public:
    // batch: score the choices of a question in one pass (Session::eval_branches) where the model
    // allows it; the results are those of scoring them one by one.
    Scorer(Session& s, bool kv_reuse, bool batch = true);
    // lm-eval's _encode_pair: (context tokens, continuation tokens).
    std::pair<std::vector<int32_t>, std::vector<int32_t>> encode_pair(const std::string& ctx,
                                                                      const std::string& cont) const;
    ChoiceScore score(const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont);
    ChoiceScore score(const std::string& ctx, const std::string& cont);
    // The (context, continuation) requests of one question, as score() of each would give them:
    // the tokens they all share are evaluated once, then every remainder as one branch of a single
    // batched pass. Falls back to score() one by one when the model cannot branch, a request
    // must be left-truncated, or the branches do not fit in the context.
    std::vector<ChoiceScore> score_group(const std::vector<std::pair<std::string, std::string>>& requests);
    uint64_t n_batched_passes = 0;  // score_group calls that used one batched pass
    std::string generate(const std::string& ctx, const std::vector<std::string>& until, int max_tokens);
    uint64_t n_evaluated = 0, n_without_reuse = 0;
    uint64_t n_truncated = 0;  // requests longer than the context, left-truncated

private:
    // Brings the KV cache to hold `tokens[0..n)` with at most `keep_max` reused; returns how many are reused.
    size_t reuse_prefix(const std::vector<int32_t>& tokens, size_t keep_max);
    // Log-likelihood and greediness of cont[first..] from logit rows (row i predicts cont[first + i]).
    ChoiceScore score_rows(const float* rows, const std::vector<int32_t>& cont, size_t first) const;
    // Adds cont[first..end) to r: rows[i - first] predicts cont[i].
    void add_rows(ChoiceScore& r, const float* rows, const std::vector<int32_t>& cont, size_t first, size_t end) const;
    Session& s_;
    bool reuse_;
    bool batch_;
    std::vector<int32_t> kv_;  // tokens whose keys/values the session holds
};

// Runs a task on documents already loaded (run_task loads them from cfg's files).
TaskResult run_docs(Session& session, const TaskConfig& cfg, const std::vector<Doc>& docs,
                    const std::vector<Doc>* fewshot_pool, const TaskRunOptions& opts,
                    const std::function<void(size_t, size_t)>& progress);

} // namespace slm::eval
