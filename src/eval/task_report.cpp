// eval/task_report.cpp - results as lm-evaluation-harness prints them (its markdown table) and as
// JSON (config, metrics, every item's prompt, log-likelihoods, prediction and gold).
#include "slm/tasks.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>

namespace slm {

namespace {

std::string num(double v) {
    if (std::isnan(v)) return "N/A";
    char b[32];
    std::snprintf(b, sizeof b, "%.4f", v);
    return b;
}

size_t text_width(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

// a markdown table: header cells centred, right-aligned columns where `right`
std::string markdown(const std::vector<std::string>& head, const std::vector<bool>& right,
                     const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w(head.size(), 3);
    for (size_t c = 0; c < head.size(); ++c) w[c] = std::max(w[c], text_width(head[c]));
    for (const auto& r : rows)
        for (size_t c = 0; c < r.size(); ++c) w[c] = std::max(w[c], text_width(r[c]));
    std::string out = "|";
    for (size_t c = 0; c < head.size(); ++c) {
        const size_t pad = w[c] - text_width(head[c]);
        out += std::string(pad / 2, ' ') + head[c] + std::string(pad - pad / 2, ' ') + "|";
    }
    out += "\n|";
    for (size_t c = 0; c < head.size(); ++c) out += std::string(w[c] - (right[c] ? 1 : 0), '-') + (right[c] ? ":|" : "|");
    out += "\n";
    for (const auto& r : rows) {
        out += "|";
        for (size_t c = 0; c < head.size(); ++c) {
            const std::string& s = c < r.size() ? r[c] : std::string();
            const std::string pad(w[c] - text_width(s), ' ');
            out += (right[c] ? pad + s : s + pad) + "|";
        }
        out += "\n";
    }
    return out;
}

void add_rows(std::vector<std::vector<std::string>>& rows, const std::string& name, int version, int shots,
              const std::vector<MetricValue>& ms) {
    bool first = true;
    for (const auto& m : ms) {
        rows.push_back({first ? name : "", first ? std::to_string(version) : "", m.filter,
                        shots >= 0 ? std::to_string(shots) : "", m.metric, "↑", num(m.value), "±", num(m.stderr_)});
        first = false;
    }
}

nlohmann::json metrics_json(const std::vector<MetricValue>& ms) {
    nlohmann::json o = nlohmann::json::object();
    for (const auto& m : ms) {
        const std::string k = m.metric + "," + m.filter;
        o[k] = std::isnan(m.value) ? nlohmann::json(nullptr) : nlohmann::json(m.value);
        o[m.metric + "_stderr," + m.filter] = std::isnan(m.stderr_) ? nlohmann::json(nullptr) : nlohmann::json(m.stderr_);
    }
    return o;
}

} // namespace

std::string format_task_table(const std::vector<TaskResult>& results) {
    const std::vector<std::string> head = {"Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"};
    const std::vector<bool> right = {false, true, false, true, false, false, true, false, true};
    std::vector<std::vector<std::string>> rows;
    std::string extra;
    for (const auto& r : results) {
        add_rows(rows, r.task, r.version, r.num_fewshot, r.metrics);
        for (const auto& c : r.categories) {
            add_rows(rows, " - " + c.name, r.version, r.num_fewshot, c.metrics);
            for (const auto& s : r.subtasks)
                if (s.parent == c.name) add_rows(rows, "  - " + s.name, r.version, r.num_fewshot, s.metrics);
        }
        if (r.categories.empty())
            for (const auto& s : r.subtasks) add_rows(rows, " - " + s.name, r.version, r.num_fewshot, s.metrics);
        if (!r.macro.empty()) {
            extra += r.task + ": " + std::to_string(r.n_items) + " items; the first row is lm-eval's size-weighted (micro) "
                     "average; unweighted (macro) over " + std::to_string(r.subtasks.size()) + " subtasks:";
            for (const auto& m : r.macro) extra += " " + m.metric + " " + num(m.value) + " ± " + num(m.stderr_);
            extra += "\n";
        }
    }
    return markdown(head, right, rows) + (extra.empty() ? "" : "\n" + extra);
}

std::string task_result_json(const TaskConfig& cfg, const TaskRunOptions& opts, const TaskResult& r) {
    nlohmann::json j;
    nlohmann::json c;
    c["task"] = cfg.task;
    c["dataset_path"] = cfg.dataset_path;
    c["dataset_format"] = cfg.dataset_format;
    c["fewshot_path"] = cfg.fewshot_path;
    c["output_type"] = cfg.output_type;
    c["description"] = cfg.description;
    c["doc_to_text"] = cfg.doc_to_text;
    c["doc_to_target"] = cfg.doc_to_target;
    c["doc_to_choice"] = cfg.choice_list.empty() ? nlohmann::json(cfg.doc_to_choice) : nlohmann::json(cfg.choice_list);
    c["target_delimiter"] = cfg.target_delimiter;
    c["fewshot_delimiter"] = cfg.fewshot_delimiter;
    c["num_fewshot"] = r.num_fewshot;
    c["fewshot_config"] = {{"sampler", cfg.fewshot_sampler}};
    nlohmann::json ml = nlohmann::json::array();
    for (const auto& m : cfg.metric_list)
        ml.push_back({{"metric", m.metric}, {"ignore_case", m.ignore_case}, {"ignore_punctuation", m.ignore_punctuation},
                      {"regexes_to_ignore", m.regexes_to_ignore}});
    c["metric_list"] = ml;
    if (cfg.output_type == "generate_until") {
        c["generation_kwargs"] = {{"until", cfg.until}, {"max_gen_toks", cfg.max_gen_toks}, {"do_sample", false}};
        nlohmann::json fl = nlohmann::json::array();
        for (const auto& f : cfg.filter_list) {
            nlohmann::json steps = nlohmann::json::array();
            for (const auto& s : f.steps) {
                nlohmann::json st = {{"function", s.function}};
                if (s.function == "regex") {
                    st["regex_pattern"] = s.regex_pattern;
                    st["group_select"] = s.group_select;
                    st["fallback"] = s.fallback;
                }
                steps.push_back(st);
            }
            fl.push_back({{"name", f.name}, {"filter", steps}});
        }
        c["filter_list"] = fl;
    }
    c["metadata"] = {{"version", cfg.version}};
    j["config"] = c;
    j["options"] = {{"limit", opts.limit}, {"seed", opts.seed}, {"kv_reuse", opts.kv_reuse}, {"batch_choices", opts.batch_choices}};
    nlohmann::json res = metrics_json(r.metrics);
    res["n"] = r.n_items;
    j["results"] = res;
    if (!r.macro.empty()) j["macro"] = metrics_json(r.macro);
    auto groups = [](const std::vector<TaskGroupResult>& gs) {
        nlohmann::json a = nlohmann::json::object();
        for (const auto& g : gs) {
            nlohmann::json o = metrics_json(g.metrics);
            o["n"] = g.n;
            if (!g.parent.empty()) o["category"] = g.parent;
            a[g.name] = o;
        }
        return a;
    };
    if (!r.subtasks.empty()) j["subtasks"] = groups(r.subtasks);
    if (!r.categories.empty()) j["categories"] = groups(r.categories);
    j["n_tokens_evaluated"] = r.n_tokens_evaluated;
    j["n_tokens_without_reuse"] = r.n_tokens_without_reuse;
    j["n_batched_questions"] = r.n_batched;
    j["n_truncated_requests"] = r.n_truncated;
    j["seconds"] = r.seconds;
    nlohmann::json items = nlohmann::json::array();
    for (const auto& it : r.items) {
        nlohmann::json o;
        o["doc"] = it.doc_index;
        if (!it.group.empty()) o["group"] = it.group;
        o["prompt"] = it.prompt;
        if (cfg.output_type == "generate_until") {
            o["target"] = it.target;
            o["generation"] = it.generation;
            o["filtered"] = it.filtered;
        } else {
            o["choices"] = it.choices;
            o["continuations"] = it.continuations;
            nlohmann::json lls = nlohmann::json::array(), greedy = nlohmann::json::array();
            for (const auto& s : it.scores) {
                lls.push_back(s.ll);
                greedy.push_back(s.is_greedy);
            }
            o["loglikelihoods"] = lls;
            o["is_greedy"] = greedy;
            o["gold"] = it.gold;
            o["pred"] = it.pred;
            o["pred_norm"] = it.pred_norm;
        }
        o["scores"] = it.values;
        items.push_back(o);
    }
    j["items"] = items;
    return j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace slm
