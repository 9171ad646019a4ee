// formats/task_file.cpp - task files (YAML or JSON) -> TaskConfig, with lm-evaluation-harness's
// task YAML keys so its task files port with few edits: the HF dataset becomes a local file
// (dataset_path + dataset_format), Python functions (!function) become Jinja templates.
// Every error names the file and the key; unknown keys are errors, so typos do not pass silently.
#include "chat/doc_template.h"
#include "slm/error.h"
#include "slm/tasks.h"

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace slm {

namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxDepth = 32;  // task files are shallow; deeper nesting is garbage

struct Ctx {
    std::string file;
};

Json yaml_to_json(const YAML::Node& n, const Ctx& c, const std::string& key, int depth) {
    if (depth > kMaxDepth) fail("task file %s: key '%s': nested too deeply", c.file.c_str(), key.c_str());
    if (n.Tag() == "!function")
        fail("task file %s: key '%s': Python functions (!function) are not supported; write a Jinja template",
             c.file.c_str(), key.c_str());
    switch (n.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: return nullptr;
    case YAML::NodeType::Scalar: return n.Scalar();
    case YAML::NodeType::Sequence: {
        Json a = Json::array();
        for (size_t i = 0; i < n.size(); ++i) a.push_back(yaml_to_json(n[i], c, key, depth + 1));
        return a;
    }
    case YAML::NodeType::Map: {
        Json o = Json::object();
        for (auto it = n.begin(); it != n.end(); ++it) {
            if (!it->first.IsScalar()) fail("task file %s: under '%s': a key is not a plain name", c.file.c_str(), key.c_str());
            const std::string k = it->first.Scalar();
            if (o.contains(k)) fail("task file %s: key '%s' appears twice", c.file.c_str(), k.c_str());
            o[k] = yaml_to_json(it->second, c, k, depth + 1);
        }
        return o;
    }
    }
    return nullptr;
}

std::string get_str(const Json& v, const Ctx& c, const std::string& key) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number() || v.is_boolean()) return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    fail("task file %s: key '%s': expected a string, got %s", c.file.c_str(), key.c_str(), v.type_name());
}

long get_int(const Json& v, const Ctx& c, const std::string& key, long lo, long hi) {
    long x = 0;
    if (v.is_number_integer()) {
        x = v.get<long>();
    } else if (v.is_string()) {
        const std::string s = v.get<std::string>();
        char* end = nullptr;
        errno = 0;
        x = std::strtol(s.c_str(), &end, 10);
        if (s.empty() || *end != '\0' || errno != 0)
            fail("task file %s: key '%s': '%s' is not an integer", c.file.c_str(), key.c_str(), s.c_str());
    } else {
        fail("task file %s: key '%s': expected an integer, got %s", c.file.c_str(), key.c_str(), v.type_name());
    }
    if (x < lo || x > hi) fail("task file %s: key '%s': %ld is out of range [%ld, %ld]", c.file.c_str(), key.c_str(), x, lo, hi);
    return x;
}

bool get_bool(const Json& v, const Ctx& c, const std::string& key) {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        if (s == "true" || s == "True" || s == "TRUE" || s == "yes") return true;
        if (s == "false" || s == "False" || s == "FALSE" || s == "no") return false;
    }
    fail("task file %s: key '%s': expected true or false, got %s", c.file.c_str(), key.c_str(), v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).substr(0, 40).c_str());
}

std::vector<std::string> get_str_list(const Json& v, const Ctx& c, const std::string& key) {
    std::vector<std::string> out;
    if (v.is_string()) return {v.get<std::string>()};
    if (!v.is_array()) fail("task file %s: key '%s': expected a list of strings, got %s", c.file.c_str(), key.c_str(), v.type_name());
    for (const auto& x : v) out.push_back(get_str(x, c, key));
    return out;
}

const Json& need_object(const Json& v, const Ctx& c, const std::string& key) {
    if (!v.is_object()) fail("task file %s: key '%s': expected a mapping, got %s", c.file.c_str(), key.c_str(), v.type_name());
    return v;
}

[[noreturn]] void unknown(const Ctx& c, const std::string& where, const std::string& key) {
    fail("task file %s: unknown key '%s'%s%s", c.file.c_str(), key.c_str(), where.empty() ? "" : " in ", where.c_str());
}

std::string resolve(const std::string& p, const std::string& base) {
    if (p.empty() || p[0] == '/' || base.empty()) return p;
    return base + "/" + p;
}

TaskConfig from_json(const Json& j, const Ctx& c, const std::string& base_dir) {
    if (!j.is_object()) fail("task file %s: expected a mapping of keys at the top, got %s", c.file.c_str(), j.type_name());
    TaskConfig t;
    t.metric_list.clear();
    bool has_text = false, has_target = false;
    for (const auto& [k, v] : j.items()) {
        if (k == "task") t.task = get_str(v, c, k);
        else if (k == "dataset_path") t.dataset_path = resolve(get_str(v, c, k), base_dir);
        else if (k == "dataset_format") t.dataset_format = get_str(v, c, k);
        else if (k == "fewshot_path") t.fewshot_path = resolve(get_str(v, c, k), base_dir);
        else if (k == "fewshot_format") t.fewshot_format = get_str(v, c, k);
        else if (k == "output_type") t.output_type = get_str(v, c, k);
        else if (k == "description") t.description = get_str(v, c, k);
        else if (k == "doc_to_text") t.doc_to_text = get_str(v, c, k), has_text = true;
        else if (k == "doc_to_target") t.doc_to_target = get_str(v, c, k), has_target = true;
        else if (k == "doc_to_choice") {
            if (v.is_array()) t.choice_list = get_str_list(v, c, k);
            else t.doc_to_choice = get_str(v, c, k);
        } else if (k == "target_delimiter") t.target_delimiter = v.is_null() ? "" : get_str(v, c, k);
        else if (k == "fewshot_delimiter") t.fewshot_delimiter = v.is_null() ? "" : get_str(v, c, k);
        else if (k == "num_fewshot") t.num_fewshot = static_cast<int>(get_int(v, c, k, 0, 1000));
        else if (k == "group_by") t.group_by = get_str(v, c, k);
        else if (k == "fewshot_config") {
            for (const auto& [fk, fv] : need_object(v, c, k).items()) {
                if (fk == "sampler") t.fewshot_sampler = get_str(fv, c, "fewshot_config.sampler");
                else unknown(c, k, fk);
            }
        } else if (k == "metadata") {
            for (const auto& [mk, mv] : need_object(v, c, k).items()) {
                if (mk == "version") {
                    // lm-eval writes versions like 1.0; the report shows the integer part.
                    const std::string vs = get_str(mv, c, "metadata.version");
                    char* end = nullptr;
                    const double d = std::strtod(vs.c_str(), &end);
                    if (end == vs.c_str() || !(d >= 0.0 && d < 1e9))
                        fail("task file %s: key 'metadata.version': expected a number from 0 to 1e9, got '%s'",
                             c.file.c_str(), vs.substr(0, 64).c_str());
                    t.version = static_cast<int>(d);
                }
                // other metadata is free-form in lm-eval
            }
        } else if (k == "metric_list") {
            if (!v.is_array()) fail("task file %s: key 'metric_list': expected a list, got %s", c.file.c_str(), v.type_name());
            for (const auto& m : v) {
                TaskMetric tm;
                for (const auto& [mk, mv] : need_object(m, c, "metric_list").items()) {
                    const std::string key = "metric_list." + mk;
                    if (mk == "metric") tm.metric = get_str(mv, c, key);
                    else if (mk == "aggregation") {
                        if (get_str(mv, c, key) != "mean")
                            fail("task file %s: key '%s': only mean is supported", c.file.c_str(), key.c_str());
                    } else if (mk == "higher_is_better") get_bool(mv, c, key);
                    else if (mk == "ignore_case") tm.ignore_case = get_bool(mv, c, key);
                    else if (mk == "ignore_punctuation") tm.ignore_punctuation = get_bool(mv, c, key);
                    else if (mk == "ignore_numbers") tm.ignore_numbers = get_bool(mv, c, key);
                    else if (mk == "regexes_to_ignore") tm.regexes_to_ignore = get_str_list(mv, c, key);
                    else unknown(c, "metric_list", mk);
                }
                if (tm.metric.empty()) fail("task file %s: key 'metric_list': an entry has no 'metric'", c.file.c_str());
                if (tm.metric != "acc" && tm.metric != "acc_norm" && tm.metric != "acc_mutual_info" && tm.metric != "exact_match")
                    fail("task file %s: key 'metric_list.metric': '%s' is not acc, acc_norm, acc_mutual_info or exact_match",
                         c.file.c_str(), tm.metric.c_str());
                t.metric_list.push_back(std::move(tm));
            }
        } else if (k == "generation_kwargs") {
            for (const auto& [gk, gv] : need_object(v, c, k).items()) {
                const std::string key = "generation_kwargs." + gk;
                if (gk == "until") t.until = get_str_list(gv, c, key);
                else if (gk == "max_gen_toks") t.max_gen_toks = static_cast<int>(get_int(gv, c, key, 1, 1 << 20));
                else if (gk == "do_sample") {
                    if (get_bool(gv, c, key)) fail("task file %s: key '%s': only greedy decoding (false) is supported", c.file.c_str(), key.c_str());
                } else if (gk == "temperature") {
                    if (std::atof(get_str(gv, c, key).c_str()) != 0)
                        fail("task file %s: key '%s': only greedy decoding (0) is supported", c.file.c_str(), key.c_str());
                } else unknown(c, k, gk);
            }
        } else if (k == "filter_list") {
            if (!v.is_array()) fail("task file %s: key 'filter_list': expected a list, got %s", c.file.c_str(), v.type_name());
            for (const auto& f : v) {
                TaskFilter tf;
                for (const auto& [fk, fv] : need_object(f, c, "filter_list").items()) {
                    if (fk == "name") tf.name = get_str(fv, c, "filter_list.name");
                    else if (fk == "filter") {
                        if (!fv.is_array()) fail("task file %s: key 'filter_list.filter': expected a list", c.file.c_str());
                        for (const auto& st : fv) {
                            TaskFilterStep s;
                            for (const auto& [sk, sv] : need_object(st, c, "filter_list.filter").items()) {
                                const std::string key = "filter_list.filter." + sk;
                                if (sk == "function") s.function = get_str(sv, c, key);
                                else if (sk == "regex_pattern") s.regex_pattern = get_str(sv, c, key);
                                else if (sk == "group_select") s.group_select = static_cast<int>(get_int(sv, c, key, -1000, 1000));
                                else if (sk == "fallback") s.fallback = get_str(sv, c, key);
                                else unknown(c, "filter_list.filter", sk);
                            }
                            if (s.function != "regex" && s.function != "take_first" && s.function != "lowercase" &&
                                s.function != "uppercase" && s.function != "remove_whitespace")
                                fail("task file %s: key 'filter_list.filter.function': '%s' is not regex, take_first, "
                                     "lowercase, uppercase or remove_whitespace", c.file.c_str(), s.function.c_str());
                            if (s.function == "regex" && s.regex_pattern.empty())
                                fail("task file %s: key 'filter_list.filter.regex_pattern': missing for a regex filter", c.file.c_str());
                            tf.steps.push_back(std::move(s));
                        }
                    } else unknown(c, "filter_list", fk);
                }
                if (tf.name.empty()) fail("task file %s: key 'filter_list': an entry has no 'name'", c.file.c_str());
                t.filter_list.push_back(std::move(tf));
            }
        } else if (k == "tag" || k == "group" || k == "dataset_name" || k == "dataset_kwargs" || k == "training_split" ||
                   k == "validation_split" || k == "test_split" || k == "fewshot_split" || k == "should_decontaminate" ||
                   k == "doc_to_decontamination_query" || k == "repeats" || k == "include") {
            // lm-eval keys about its Hugging Face datasets or bookkeeping: no meaning for a local file
            if (k == "repeats" && get_int(v, c, k, 0, 1000000) != 1)
                fail("task file %s: key 'repeats': only 1 is supported", c.file.c_str());
            if (k == "include") fail("task file %s: key 'include': not supported; copy the included keys in", c.file.c_str());
        } else {
            unknown(c, "", k);
        }
    }
    if (!has_text || t.doc_to_text.empty()) fail("task file %s: key 'doc_to_text' is missing", c.file.c_str());
    if (!has_target || t.doc_to_target.empty()) fail("task file %s: key 'doc_to_target' is missing", c.file.c_str());
    if (t.output_type != "multiple_choice" && t.output_type != "generate_until")
        fail("task file %s: key 'output_type': '%s' is not multiple_choice or generate_until", c.file.c_str(), t.output_type.c_str());
    if (t.output_type == "multiple_choice" && t.doc_to_choice.empty() && t.choice_list.empty())
        fail("task file %s: key 'doc_to_choice' is missing (a multiple_choice task needs its choices)", c.file.c_str());
    if (t.fewshot_sampler != "default" && t.fewshot_sampler != "first_n")
        fail("task file %s: key 'fewshot_config.sampler': '%s' is not default or first_n", c.file.c_str(), t.fewshot_sampler.c_str());
    if (t.task.empty()) t.task = "custom";
    return t;
}

} // namespace

TaskConfig parse_task_file(const std::string& text, const std::string& name, const std::string& base_dir) {
    Ctx c{name};
    Json j;
    size_t b = 0;
    while (b < text.size() && (text[b] == ' ' || text[b] == '\n' || text[b] == '\r' || text[b] == '\t')) ++b;
    if (b < text.size() && text[b] == '{') {
        try {
            j = Json::parse(text);
        } catch (const nlohmann::json::exception& e) {
            fail("task file %s: not valid JSON: %s", name.c_str(), e.what());
        }
    } else {
        try {
            YAML::Node n = YAML::Load(text);
            j = yaml_to_json(n, c, "(top)", 0);
        } catch (const YAML::Exception& e) {
            fail("task file %s:%d:%d: not valid YAML: %s", name.c_str(), e.mark.line + 1, e.mark.column + 1, e.msg.c_str());
        }
    }
    TaskConfig t;
    try {
        t = from_json(j, c, base_dir);
    } catch (const nlohmann::json::exception& e) {
        fail("task file %s: %s", name.c_str(), e.what());
    }
    t.source_file = name;
    // templates are parsed here, so a syntax error names the file before any model is loaded
    const std::pair<const char*, const std::string*> templates[] = {
        {"description", &t.description}, {"doc_to_text", &t.doc_to_text}, {"doc_to_target", &t.doc_to_target},
        {"doc_to_choice", &t.doc_to_choice}};
    for (const auto& [key, src] : templates)
        if (!src->empty()) chat::DocTemplate::parse(*src, "task file " + name + ": key '" + key + "'");
    return t;
}

TaskConfig load_task_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("task file %s: cannot open", path.c_str());
    std::ostringstream ss;
    ss << f.rdbuf();
    std::string text = ss.str();
    if (text.size() > (8u << 20)) fail("task file %s: larger than 8 MiB", path.c_str());
    const auto slash = path.find_last_of('/');
    return parse_task_file(text, path, slash == std::string::npos ? "" : path.substr(0, slash));
}

} // namespace slm
