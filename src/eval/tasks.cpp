// eval/tasks.cpp - the task engine: documents -> prompts (lm-evaluation-harness's ConfigurableTask:
// description, few-shot examples, doc_to_text / doc_to_target / doc_to_choice, delimiters) ->
// log-likelihoods or generations -> per-item scores -> metrics with standard errors.
//
// The KV cache is kept across requests for the longest common token prefix, so a question's
// context (and a shared few-shot prefix) is evaluated once for all its choices.
#include "eval/tasks_impl.h"

#include "slm/error.h"
#include "slm/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace slm::eval {

namespace {

bool is_template(const std::string& s) {
    return s.find("{{") != std::string::npos || s.find("{%") != std::string::npos;
}

chat::DocTemplate compile_one(const std::string& src, const std::string& where, const char* key) {
    if (src.empty()) return {};
    return chat::DocTemplate::parse(src, where + ": key '" + key + "'");
}

std::string json_text(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

bool is_digits(const std::string& s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

} // namespace

CompiledTask compile_task(const TaskConfig& cfg, const std::string& where) {
    CompiledTask t;
    t.cfg = cfg;
    if (cfg.output_type != "multiple_choice" && cfg.output_type != "generate_until")
        fail("%s: output_type '%s' is not multiple_choice or generate_until", where.c_str(), cfg.output_type.c_str());
    if (cfg.doc_to_text.empty()) fail("%s: doc_to_text is missing", where.c_str());
    if (cfg.doc_to_target.empty()) fail("%s: doc_to_target is missing", where.c_str());
    if (cfg.output_type == "multiple_choice" && cfg.doc_to_choice.empty() && cfg.choice_list.empty())
        fail("%s: doc_to_choice is missing (a multiple_choice task needs its choices)", where.c_str());
    if (cfg.num_fewshot < 0) fail("%s: num_fewshot %d is negative", where.c_str(), cfg.num_fewshot);
    if (cfg.fewshot_sampler != "default" && cfg.fewshot_sampler != "first_n")
        fail("%s: fewshot_config.sampler '%s' is not default or first_n", where.c_str(), cfg.fewshot_sampler.c_str());
    t.description = compile_one(cfg.description, where, "description");
    t.text = compile_one(cfg.doc_to_text, where, "doc_to_text");
    t.target = compile_one(cfg.doc_to_target, where, "doc_to_target");
    t.choice = compile_one(cfg.doc_to_choice, where, "doc_to_choice");
    t.text_is_field = !is_template(cfg.doc_to_text);
    t.target_is_field = !is_template(cfg.doc_to_target);
    t.choice_is_field = !is_template(cfg.doc_to_choice);
    for (const TaskFilter& f : cfg.filter_list)
        for (const TaskFilterStep& st : f.steps)
            if (st.function == "regex") check_regex(st.regex_pattern, where + ": filter_list " + f.name);
    for (const TaskMetric& m : cfg.metric_list)
        for (const auto& re : m.regexes_to_ignore) check_regex(re, where + ": metric_list " + m.metric + " regexes_to_ignore");
    return t;
}

nlohmann::json doc_text(const CompiledTask& t, const Doc& doc) {
    if (t.text_is_field && doc.is_object() && doc.contains(t.cfg.doc_to_text)) return doc[t.cfg.doc_to_text];
    if (t.text.is_expression()) {
        nlohmann::json v = t.text.evaluate(doc);
        if (v.is_number_integer() || v.is_string()) return v;
        return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    return t.text.render(doc);
}

nlohmann::json doc_target(const CompiledTask& t, const Doc& doc) {
    if (t.target_is_field && doc.is_object() && doc.contains(t.cfg.doc_to_target)) return doc[t.cfg.doc_to_target];
    std::string s = t.target.render(doc);
    // as lm-eval: a rendered number is an index when the task has choices
    const bool has_choices = !t.cfg.doc_to_choice.empty() || !t.cfg.choice_list.empty();
    if (is_digits(s) && has_choices && s.size() < 10) return std::stoi(s);
    return s;
}

std::vector<std::string> doc_choices(const CompiledTask& t, const Doc& doc, const std::string& where) {
    if (!t.cfg.choice_list.empty()) return t.cfg.choice_list;
    if (t.cfg.doc_to_choice.empty()) return {};
    nlohmann::json v;
    if (t.choice_is_field && doc.is_object() && doc.contains(t.cfg.doc_to_choice)) {
        v = doc[t.cfg.doc_to_choice];
    } else if (t.choice.is_expression()) {
        v = t.choice.evaluate(doc);
    } else {
        const std::string s = t.choice.render(doc);
        fail("%s: key 'doc_to_choice': gives the text '%.60s', not a list (write it as one expression, "
             "\"{{ [a, b] }}\", or name a list field)", where.c_str(), s.c_str());
    }
    if (!v.is_array())
        fail("%s: key 'doc_to_choice': gives %s, not a list of strings", where.c_str(), v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 80).c_str());
    std::vector<std::string> out;
    for (const auto& x : v) {
        if (x.is_string()) out.push_back(x.get<std::string>());
        else if (x.is_number()) out.push_back(x.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        else fail("%s: key 'doc_to_choice': item %s is not a string", where.c_str(), x.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 80).c_str());
    }
    if (out.empty()) fail("%s: key 'doc_to_choice': gives an empty list", where.c_str());
    return out;
}

namespace {

// gold index of a multiple-choice target (an index, or a choice's text)
int gold_index(const nlohmann::json& target, const std::vector<std::string>& choices, const std::string& where) {
    long g;
    if (target.is_number_integer()) {
        g = target.get<long>();
    } else if (target.is_string()) {
        const std::string s = target.get<std::string>();
        auto it = std::find(choices.begin(), choices.end(), s);
        if (it == choices.end())
            fail("%s: key 'doc_to_target': '%.60s' is neither an index nor one of the %zu choices", where.c_str(), s.c_str(),
                 choices.size());
        g = it - choices.begin();
    } else {
        fail("%s: key 'doc_to_target': gives %s, not an index or a choice", where.c_str(), target.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 80).c_str());
    }
    if (g < 0 || g >= static_cast<long>(choices.size()))
        fail("%s: key 'doc_to_target': gold %ld is out of range (%zu choices)", where.c_str(), g, choices.size());
    return static_cast<int>(g);
}

// lm-eval's rendering of an example's answer in a few-shot prompt
std::string target_text(const CompiledTask& t, const Doc& doc, const std::string& where) {
    nlohmann::json tg = doc_target(t, doc);
    if (tg.is_string()) return tg.get<std::string>();
    if (tg.is_array() && !tg.empty()) return json_text(tg[0]);
    if (tg.is_number_integer() && (!t.cfg.doc_to_choice.empty() || !t.cfg.choice_list.empty())) {
        auto ch = doc_choices(t, doc, where);
        return ch[static_cast<size_t>(gold_index(tg, ch, where))];
    }
    return json_text(tg);
}

} // namespace

PreparedDoc prepare_doc(const CompiledTask& t, const Doc& doc, const std::vector<const Doc*>& shots,
                        const std::string& where) {
    PreparedDoc p;
    std::string labeled;
    if (!t.description.empty()) labeled = t.description.render(doc);
    for (const Doc* shot : shots) {
        nlohmann::json txt = doc_text(t, *shot);
        if (txt.is_number_integer()) {
            auto ch = doc_choices(t, *shot, where + " (few-shot example)");
            labeled += ch[static_cast<size_t>(gold_index(txt, ch, where + " (few-shot example)"))];
        } else {
            labeled += json_text(txt);
        }
        const std::string tg = target_text(t, *shot, where + " (few-shot example)");
        if (!tg.empty()) labeled += t.cfg.target_delimiter + tg + t.cfg.fewshot_delimiter;
    }
    if (!t.cfg.group_by.empty() && doc.is_object() && doc.contains(t.cfg.group_by)) p.group = json_text(doc[t.cfg.group_by]);
    nlohmann::json txt = doc_text(t, doc);
    if (t.cfg.output_type == "generate_until") {
        p.prompt = labeled + json_text(txt);
        p.target = target_text(t, doc, where);
        return p;
    }
    p.choices = doc_choices(t, doc, where);
    if (txt.is_number_integer()) {
        // WinoGrande: each choice is a context, the target the continuation they share
        p.multiple_input = true;
        p.gold = gold_index(txt, p.choices, where);
        p.prompt = labeled;
        const std::string cont = t.cfg.target_delimiter + json_text(doc_target(t, doc));
        for (const auto& c : p.choices) p.requests.emplace_back(labeled + c, cont);
    } else {
        p.prompt = labeled + json_text(txt);
        p.gold = gold_index(doc_target(t, doc), p.choices, where);
        for (const auto& c : p.choices) p.requests.emplace_back(p.prompt, t.cfg.target_delimiter + c);
    }
    return p;
}

// ---- scoring ------------------------------------------------------------------------------------

Scorer::Scorer(Session& s, bool kv_reuse, bool batch) : s_(s), reuse_(kv_reuse), batch_(batch) {
    s_.reset();
}

std::pair<std::vector<int32_t>, std::vector<int32_t>> Scorer::encode_pair(const std::string& ctx_in,
                                                                          const std::string& cont_in) const {
    std::string ctx = ctx_in, cont = cont_in;
    // trailing whitespace of the context belongs to the continuation (Python's str.rstrip())
    size_t n = ctx.size();
    while (n > 0 && (ctx[n - 1] == ' ' || (ctx[n - 1] >= '\t' && ctx[n - 1] <= '\r') || (ctx[n - 1] >= 0x1c && ctx[n - 1] <= 0x1f)))
        --n;
    cont = ctx.substr(n) + cont;
    ctx.resize(n);
    const Vocab& v = s_.model().vocab();
    if (ctx.empty()) {
        // lm-eval scores an empty context after its prefix token (BOS, else EOS)
        const int32_t prefix = v.bos() >= 0 ? v.bos() : v.eos();
        return {{prefix}, v.tokenize(cont, false, false)};
    }
    std::vector<int32_t> whole = v.tokenize(ctx + cont, true, false);
    std::vector<int32_t> c = v.tokenize(ctx, true, false);
    const size_t nc = std::min(c.size(), whole.size());
    return {std::vector<int32_t>(whole.begin(), whole.begin() + static_cast<long>(nc)),
            std::vector<int32_t>(whole.begin() + static_cast<long>(nc), whole.end())};
}

size_t Scorer::reuse_prefix(const std::vector<int32_t>& tokens, size_t keep_max) {
    size_t common = 0;
    if (reuse_) {
        while (common < kv_.size() && common < tokens.size() && kv_[common] == tokens[common]) ++common;
        common = std::min(common, keep_max);
    }
    if (common == kv_.size()) return common;
    if (common == 0 || !s_.can_truncate(static_cast<uint32_t>(common))) {
        s_.reset();  // a recurrent state (or a sliding-window ring) cannot go back that far
        kv_.clear();
        return 0;
    }
    s_.truncate(static_cast<uint32_t>(common));
    kv_.resize(common);
    return common;
}

ChoiceScore Scorer::score(const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont) {
    ChoiceScore r;
    r.n_tokens = static_cast<uint32_t>(cont.size());
    if (cont.empty()) {
        r.is_greedy = true;
        return r;
    }
    if (ctx.empty()) fail("task: a request without context tokens");
    const size_t n_ctx = s_.n_ctx();
    std::vector<int32_t> full(ctx);
    full.insert(full.end(), cont.begin(), cont.end());
    // model input: everything but the last token, left-truncated to the context (as lm-eval)
    const size_t n_in = full.size() - 1;
    const size_t start = n_in > n_ctx ? n_in - n_ctx : 0;
    if (start > 0) ++n_truncated;
    std::vector<int32_t> input(full.begin() + static_cast<long>(start), full.end() - 1);
    // continuation tokens predicted by logits inside the window (all of them unless the
    // continuation alone is longer than the context: then only its end is scored)
    const size_t first_cont = start + 1 > ctx.size() ? start + 1 - ctx.size() : 0;
    const size_t first_row = ctx.size() + first_cont - 1 - start;  // input position predicting cont[first_cont]
    const size_t keep = reuse_prefix(input, first_row);
    s_.eval(std::span<const int32_t>(input).subspan(keep), true);
    kv_ = input;
    n_evaluated += input.size() - keep;
    n_without_reuse += input.size();
    const size_t n_vocab = s_.model().hparams().n_vocab;
    ChoiceScore got = score_rows(s_.logits().data() + (first_row - keep) * n_vocab, cont, first_cont);
    got.n_tokens = r.n_tokens;
    return got;
}

ChoiceScore Scorer::score_rows(const float* rows, const std::vector<int32_t>& cont, size_t first) const {
    ChoiceScore r;
    r.n_tokens = static_cast<uint32_t>(cont.size());
    r.is_greedy = true;
    add_rows(r, rows, cont, first, cont.size());
    return r;
}

void Scorer::add_rows(ChoiceScore& r, const float* rows, const std::vector<int32_t>& cont, size_t first,
                      size_t end) const {
    const size_t n_vocab = s_.model().hparams().n_vocab;
    for (size_t i = first; i < end; ++i) {
        const float* row = rows + (i - first) * n_vocab;
        float mx = row[0];
        size_t arg = 0;
        for (size_t k = 1; k < n_vocab; ++k)
            if (row[k] > mx) {
                mx = row[k];
                arg = k;
            }
        double sum = 0;
        for (size_t k = 0; k < n_vocab; ++k) sum += std::exp(static_cast<double>(row[k]) - mx);
        r.ll += static_cast<double>(row[cont[i]]) - mx - std::log(sum);
        if (static_cast<int32_t>(arg) != cont[i]) r.is_greedy = false;
    }
}

ChoiceScore Scorer::score(const std::string& ctx, const std::string& cont) {
    auto [c, k] = encode_pair(ctx, cont);
    return score(c, k);
}

std::vector<ChoiceScore> Scorer::score_group(const std::vector<std::pair<std::string, std::string>>& requests) {
    std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>> enc;
    for (const auto& [ctx, cont] : requests) enc.push_back(encode_pair(ctx, cont));
    auto one_by_one = [&] {
        std::vector<ChoiceScore> out;
        for (const auto& [c, k] : enc) out.push_back(score(c, k));
        return out;
    };
    // Without KV reuse every request is evaluated from scratch (the baseline reuse is measured against).
    if (!batch_ || !reuse_ || enc.size() < 2 || !s_.supports_branches()) return one_by_one();
    // Each request's model input is context + continuation but its last token; the row of the
    // context's last token predicts the first continuation token. The shared prefix is evaluated
    // once, up to and including that token when every request has the same one there (MMLU's
    // " A".." D": one pass, no branch at all); the remainders are branches of one batched pass.
    const size_t n_ctx = s_.n_ctx();
    std::vector<std::vector<int32_t>> inputs;
    size_t prefix = SIZE_MAX;
    for (const auto& [c, k] : enc) {
        if (c.empty() || k.empty()) return one_by_one();
        std::vector<int32_t> in(c);
        in.insert(in.end(), k.begin(), k.end() - 1);
        if (in.size() > n_ctx) return one_by_one();  // left-truncation: score() handles it
        prefix = std::min(prefix, c.size());
        inputs.push_back(std::move(in));
    }
    for (const auto& in : inputs) {
        size_t l = 0;
        while (l < prefix && l < in.size() && in[l] == inputs[0][l]) ++l;
        prefix = l;
    }
    if (prefix == 0) return one_by_one();
    size_t total = 0;
    for (const auto& in : inputs) total += in.size() - prefix;
    if (prefix + total > n_ctx) return one_by_one();

    const size_t n_vocab = s_.model().hparams().n_vocab;
    const std::vector<int32_t> shared(inputs[0].begin(), inputs[0].begin() + static_cast<long>(prefix));
    // The prefix's last row is needed: at least its last token is evaluated.
    const size_t keep = reuse_prefix(shared, prefix - 1);
    const float* last = s_.eval(std::span<const int32_t>(shared).subspan(keep));
    const std::vector<float> last_row(last, last + n_vocab);  // predicts position `prefix`
    kv_ = shared;
    std::vector<std::vector<int32_t>> branches;
    std::vector<size_t> branch_row(inputs.size(), 0);  // first logit row of each request's branch
    size_t rows = 0;
    for (size_t b = 0; b < inputs.size(); ++b) {
        branch_row[b] = rows;
        if (inputs[b].size() == prefix) continue;  // nothing after the prefix: a one-token continuation
        branches.emplace_back(inputs[b].begin() + static_cast<long>(prefix), inputs[b].end());
        rows += branches.back().size();
    }
    if (!branches.empty()) s_.eval_branches(static_cast<uint32_t>(prefix), branches);
    ++n_batched_passes;
    n_evaluated += prefix - keep + total;
    for (const auto& in : inputs) n_without_reuse += in.size();

    const float* logits = branches.empty() ? nullptr : s_.logits().data();
    std::vector<ChoiceScore> out;
    for (size_t b = 0; b < enc.size(); ++b) {
        const std::vector<int32_t>& cont = enc[b].second;
        const size_t first_row = enc[b].first.size() - 1;  // input position predicting cont[0]
        if (first_row >= prefix) {
            out.push_back(score_rows(logits + (branch_row[b] + first_row - prefix) * n_vocab, cont, 0));
            continue;
        }
        // cont[0] from the prefix's last row, the rest from the branch (summed in the same order)
        ChoiceScore r;
        r.n_tokens = static_cast<uint32_t>(cont.size());
        r.is_greedy = true;
        add_rows(r, last_row.data(), cont, 0, 1);
        if (cont.size() > 1) add_rows(r, logits + branch_row[b] * n_vocab, cont, 1, cont.size());
        out.push_back(r);
    }
    return out;
}

std::string Scorer::generate(const std::string& ctx, const std::vector<std::string>& until, int max_tokens) {
    std::vector<int32_t> tokens = s_.model().vocab().tokenize(ctx, true, false);
    const size_t n_ctx = s_.n_ctx();
    const size_t room = max_tokens > 0 && static_cast<size_t>(max_tokens) < n_ctx ? n_ctx - static_cast<size_t>(max_tokens) : 1;
    if (tokens.size() > room) tokens.erase(tokens.begin(), tokens.end() - static_cast<long>(room));  // keep the end
    const size_t keep = reuse_prefix(tokens, tokens.size() - 1);
    GenerateParams gp;
    gp.n_predict = max_tokens;
    gp.sampling.temp = 0;
    gp.stop = until;
    GenerateResult res = slm::generate(s_, std::span<const int32_t>(tokens).subspan(keep), gp);
    n_evaluated += tokens.size() - keep + res.stats.n_gen;
    n_without_reuse += tokens.size() + res.stats.n_gen;
    // forget the generated tokens: the next prompt shares at most this prompt with this one
    const auto n_keep = static_cast<uint32_t>(std::min<size_t>(tokens.size(), s_.n_past()));
    if (!s_.can_truncate(n_keep)) {
        s_.reset();
        kv_.clear();
    } else {
        s_.truncate(n_keep);
        kv_ = tokens;
        kv_.resize(s_.n_past());
    }
    return res.text;
}

// ---- the run ------------------------------------------------------------------------------------

namespace {

struct Agg {
    std::vector<std::string> keys;  // "acc", "exact_match,strict-match" in first-seen order
    void add(const std::string& k) {
        if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
    }
};

MetricValue make_metric(const std::string& key, double value, double se) {
    MetricValue m;
    auto comma = key.find(',');
    m.metric = key.substr(0, comma);
    m.filter = comma == std::string::npos ? "none" : key.substr(comma + 1);
    m.value = value;
    m.stderr_ = se;
    return m;
}

std::vector<MetricValue> item_metrics(const std::vector<const TaskItem*>& items, const Agg& agg) {
    std::vector<MetricValue> out;
    for (const auto& k : agg.keys) {
        std::vector<double> xs;
        for (const TaskItem* it : items) {
            auto f = it->values.find(k);
            if (f != it->values.end()) xs.push_back(f->second);
        }
        out.push_back(make_metric(k, mean(xs), mean_stderr(xs)));
    }
    return out;
}

// lm-eval's group aggregate: size-weighted mean, pooled stderr
std::vector<MetricValue> weighted(const std::vector<const TaskGroupResult*>& gs, const Agg& agg, size_t& n_out) {
    std::vector<MetricValue> out;
    n_out = 0;
    for (const auto* g : gs) n_out += g->n;
    for (size_t mi = 0; mi < agg.keys.size(); ++mi) {
        double num = 0;
        std::vector<double> ses;
        std::vector<size_t> sizes;
        for (const auto* g : gs) {
            num += g->metrics[mi].value * static_cast<double>(g->n);
            ses.push_back(g->metrics[mi].stderr_);
            sizes.push_back(g->n);
        }
        out.push_back(make_metric(agg.keys[mi], n_out ? num / static_cast<double>(n_out) : 0, pooled_stderr(ses, sizes)));
    }
    return out;
}

} // namespace

TaskResult run_docs(Session& session, const TaskConfig& cfg, const std::vector<Doc>& docs,
                    const std::vector<Doc>* fewshot_pool, const TaskRunOptions& opts,
                    const std::function<void(size_t, size_t)>& progress) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string where = !cfg.source_file.empty() ? "task file " + cfg.source_file
                              : cfg.task.empty()       ? std::string("task")
                                                       : "task " + cfg.task;
    CompiledTask t = compile_task(cfg, where);
    const int k = opts.num_fewshot >= 0 ? opts.num_fewshot : cfg.num_fewshot;
    const std::vector<Doc>& pool = fewshot_pool ? *fewshot_pool : docs;
    const bool same_split = fewshot_pool == nullptr;

    // few-shot candidates per group (each subtask samples from its own examples with its own
    // generator, as lm-eval's per-task samplers)
    auto group_of = [&](const Doc& d) -> std::string {
        if (cfg.group_by.empty() || !d.is_object() || !d.contains(cfg.group_by)) return "";
        return json_text(d[cfg.group_by]);
    };
    std::map<std::string, std::vector<size_t>> pool_by_group;
    if (k > 0)
        for (size_t i = 0; i < pool.size(); ++i) pool_by_group[group_of(pool[i])].push_back(i);
    std::map<std::string, PyRandom> rngs;
    // --limit counts per subtask, as lm-eval's limit applies to each task of a group (MMLU subjects)
    std::vector<size_t> order;
    {
        std::map<std::string, size_t> taken;
        for (size_t i = 0; i < docs.size(); ++i)
            if (opts.limit == 0 || taken[group_of(docs[i])]++ < opts.limit) order.push_back(i);
    }
    const size_t n = order.size();

    TaskResult res;
    res.task = cfg.task;
    res.version = cfg.version;
    res.num_fewshot = k;
    Scorer sc(session, opts.kv_reuse, opts.batch_choices);
    Agg agg;
    std::vector<TaskItem> items;
    items.reserve(n);
    std::vector<TaskMetric> metrics = cfg.metric_list;
    if (metrics.empty()) {
        if (cfg.output_type == "multiple_choice") metrics = {task_metric("acc"), task_metric("acc_norm")};
        else metrics = {task_metric("exact_match")};
    }
    for (const auto& m : metrics) {
        if (cfg.output_type == "multiple_choice" && m.metric != "acc" && m.metric != "acc_norm" && m.metric != "acc_mutual_info")
            fail("%s: metric '%s' is not acc, acc_norm or acc_mutual_info (multiple_choice)", where.c_str(), m.metric.c_str());
        if (cfg.output_type == "generate_until" && m.metric != "exact_match")
            fail("%s: metric '%s' is not exact_match (generate_until)", where.c_str(), m.metric.c_str());
    }
    std::vector<TaskFilter> filters = cfg.filter_list;
    if (filters.empty()) filters.push_back({"none", {}});

    for (size_t oi = 0; oi < n; ++oi) {
        const size_t i = order[oi];
        const Doc& doc = docs[i];
        const std::string item_where = where + ": document " + std::to_string(i + 1);
        std::vector<const Doc*> shots;
        if (k > 0) {
            const std::string g = group_of(doc);
            const std::vector<size_t>& cand = pool_by_group[g];
            const size_t n_samples = static_cast<size_t>(k) + (same_split ? 1 : 0);
            if (n_samples > cand.size())
                fail("%s: %d-shot needs %zu example documents%s%s, there are %zu", where.c_str(), k, n_samples,
                     g.empty() ? "" : " for ", g.c_str(), cand.size());
            std::vector<size_t> picked;
            if (cfg.fewshot_sampler == "first_n") {
                picked.assign(cand.begin(), cand.begin() + static_cast<long>(n_samples));
            } else {
                auto it = rngs.find(g);
                if (it == rngs.end()) it = rngs.emplace(g, PyRandom(opts.seed)).first;
                for (size_t j : it->second.sample(cand.size(), n_samples)) picked.push_back(cand[j]);
            }
            for (size_t j : picked) {
                if (shots.size() == static_cast<size_t>(k)) break;
                if (pool[j] != doc) shots.push_back(&pool[j]);
            }
        }
        PreparedDoc p = prepare_doc(t, doc, shots, item_where);
        TaskItem it;
        it.doc_index = i;
        it.group = p.group;
        it.prompt = p.prompt;
        if (cfg.output_type == "generate_until") {
            it.target = p.target;
            it.generation = sc.generate(p.prompt, cfg.until, cfg.max_gen_toks);
            for (const TaskFilter& f : filters) {
                const std::string got = apply_filter(f, it.generation);
                it.filtered[f.name] = got;
                for (const auto& m : metrics) {
                    const std::string key = m.metric + "," + f.name;
                    it.values[key] = exact_match(got, p.target, m) ? 1.0 : 0.0;
                    agg.add(key);
                }
            }
        } else {
            it.choices = p.choices;
            it.gold = p.gold;
            std::vector<double> lls;
            it.scores = sc.score_group(p.requests);
            for (size_t c = 0; c < p.requests.size(); ++c) {
                it.continuations.push_back(p.requests[c].second);
                lls.push_back(it.scores[c].ll);
            }
            ChoicePick pick = pick_choice(lls, p.choices);
            it.pred = static_cast<int>(pick.pred);
            it.pred_norm = static_cast<int>(pick.pred_norm);
            for (const auto& m : metrics) {
                double v = 0;
                if (m.metric == "acc") {
                    v = it.pred == it.gold;
                } else if (m.metric == "acc_norm") {
                    v = it.pred_norm == it.gold;
                } else {  // acc_mutual_info: ll(choice | context) - ll(choice | nothing)
                    std::vector<double> mi;
                    for (size_t c = 0; c < p.choices.size(); ++c)
                        mi.push_back(lls[c] - sc.score(std::string(), cfg.target_delimiter + p.choices[c]).ll);
                    v = static_cast<int>(argmax_first(mi)) == it.gold;
                }
                it.values[m.metric] = v;
                agg.add(m.metric);
            }
        }
        items.push_back(std::move(it));
        if (progress) progress(oi + 1, n);
    }

    std::vector<const TaskItem*> all;
    for (const auto& it : items) all.push_back(&it);
    res.n_items = items.size();
    if (cfg.group_by.empty()) {
        res.metrics = item_metrics(all, agg);
    } else {
        std::map<std::string, std::vector<const TaskItem*>> by;
        for (const auto* it : all) by[it->group].push_back(it);
        for (auto& [g, its] : by) {
            TaskGroupResult gr;
            gr.name = g;
            gr.n = its.size();
            gr.metrics = item_metrics(its, agg);
            if (cfg.group_by == "subject") gr.parent = mmlu_category(g);
            res.subtasks.push_back(std::move(gr));
        }
        // categories (MMLU) when every subject has one, then the whole task over them
        bool all_cat = !res.subtasks.empty();
        for (const auto& s : res.subtasks) all_cat = all_cat && !s.parent.empty();
        std::vector<const TaskGroupResult*> top;
        if (all_cat) {
            for (const char* c : {"humanities", "other", "social_sciences", "stem"}) {
                std::vector<const TaskGroupResult*> members;
                for (const auto& s : res.subtasks)
                    if (s.parent == c) members.push_back(&s);
                if (members.empty()) continue;
                TaskGroupResult cg;
                cg.name = c;
                cg.metrics = weighted(members, agg, cg.n);
                res.categories.push_back(std::move(cg));
            }
            for (const auto& c : res.categories) top.push_back(&c);
        } else {
            for (const auto& s : res.subtasks) top.push_back(&s);
        }
        size_t n_top = 0;
        res.metrics = weighted(top, agg, n_top);
        for (size_t mi = 0; mi < agg.keys.size(); ++mi) {
            double s = 0, v = 0;
            for (const auto& g : res.subtasks) {
                s += g.metrics[mi].value;
                const double se = std::isnan(g.metrics[mi].stderr_) ? 0 : g.metrics[mi].stderr_;
                v += se * se;
            }
            const double G = static_cast<double>(res.subtasks.size());
            res.macro.push_back(make_metric(agg.keys[mi], s / G, std::sqrt(v) / G));
        }
    }
    res.n_tokens_evaluated = sc.n_evaluated;
    res.n_tokens_without_reuse = sc.n_without_reuse;
    res.n_batched = sc.n_batched_passes;
    res.n_truncated = sc.n_truncated;
    if (opts.keep_items) res.items = std::move(items);
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
}

} // namespace slm::eval
