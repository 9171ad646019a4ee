// eval/task_presets.cpp - the built-in tasks as TaskConfigs, written from lm-evaluation-harness's
// task YAMLs (prompt templates, delimiters, metrics, generation and filter settings), and MMLU's
// subject -> category table (lm-eval's four groups).
#include "slm/error.h"
#include "slm/tasks.h"

#include <utility>

namespace slm {

namespace {

TaskConfig mc(std::string name, std::string format, std::string text, std::string target, std::string choice) {
    TaskConfig c;
    c.task = std::move(name);
    c.dataset_format = std::move(format);
    c.output_type = "multiple_choice";
    c.doc_to_text = std::move(text);
    c.doc_to_target = std::move(target);
    c.doc_to_choice = std::move(choice);
    return c;
}

} // namespace

std::vector<std::string> task_preset_names() {
    return {"hellaswag", "arc_easy", "arc_challenge", "mmlu", "winogrande", "gsm8k", "piqa"};
}

TaskConfig task_preset(const std::string& name) {
    if (name == "hellaswag") {
        // the reader preprocesses as lm-eval's hellaswag utils: query = "<activity>: <ctx>"
        TaskConfig c = mc(name, "hellaswag", "{{query}}", "{{gold}}", "choices");
        c.metric_list = {task_metric("acc"), task_metric("acc_norm")};
        return c;
    }
    if (name == "arc_easy" || name == "arc_challenge") {
        TaskConfig c = mc(name, "arc", "Question: {{question}}\nAnswer:", "{{choices.label.index(answerKey)}}",
                          "{{choices.text}}");
        c.metric_list = {task_metric("acc"), task_metric("acc_norm")};
        return c;
    }
    if (name == "mmlu") {
        TaskConfig c = mc(name, "mmlu",
                          "{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:",
                          "answer", "");
        c.choice_list = {"A", "B", "C", "D"};
        c.description = "The following are multiple choice questions (with answers) about {{ subject | replace('_', ' ') }}.\n\n";
        c.fewshot_sampler = "first_n";  // the dev questions in order, as lm-eval's mmlu
        c.metric_list = {task_metric("acc")};
        c.group_by = "subject";
        return c;
    }
    if (name == "winogrande") {
        // partial scoring: each option fills the blank to make a context; what follows the blank
        // is the continuation scored after either
        TaskConfig c = mc(name, "winogrande", "{{ {'1': 0, '2': 1}[answer] }}",
                          "{{ sentence[sentence.index('_') + 1:].strip() }}",
                          "{{ [sentence[:sentence.index('_')] ~ option1, sentence[:sentence.index('_')] ~ option2] }}");
        c.metric_list = {task_metric("acc")};
        return c;
    }
    if (name == "piqa") {
        TaskConfig c = mc(name, "jsonl", "Question: {{goal}}\nAnswer:", "label", "{{[sol1, sol2]}}");
        c.metric_list = {task_metric("acc"), task_metric("acc_norm")};
        return c;
    }
    if (name == "gsm8k") {
        TaskConfig c;
        c.task = name;
        c.dataset_format = "gsm8k";
        c.output_type = "generate_until";
        c.doc_to_text = "Question: {{question}}\nAnswer:";
        c.doc_to_target = "{{answer}}";
        c.num_fewshot = 5;
        c.until = {"Question:", "</s>", "<|im_end|>"};
        c.max_gen_toks = 256;
        TaskMetric em;
        em.metric = "exact_match";
        em.ignore_case = true;
        em.ignore_punctuation = false;
        em.regexes_to_ignore = {",", "\\$", "(?s).*#### ", "\\.$"};
        c.metric_list = {em};
        c.filter_list = {
            {"strict-match", {{"regex", "#### (\\-?[0-9\\.\\,]+)", 0, "[invalid]"}, {"take_first", "", 0, "[invalid]"}}},
            {"flexible-extract", {{"regex", "(-?[$0-9.,]{2,})|(-?[0-9]+)", -1, "[invalid]"}, {"take_first", "", 0, "[invalid]"}}},
        };
        c.version = 3;
        return c;
    }
    fail("task: unknown task '%s' (built-in: hellaswag, arc_easy, arc_challenge, mmlu, winogrande, gsm8k, piqa)",
         name.c_str());
}

std::string mmlu_category(const std::string& subject) {
    static const std::pair<const char*, const char*> table[] = {
        {"abstract_algebra", "stem"}, {"anatomy", "stem"}, {"astronomy", "stem"}, {"business_ethics", "other"},
        {"clinical_knowledge", "other"}, {"college_biology", "stem"}, {"college_chemistry", "stem"},
        {"college_computer_science", "stem"}, {"college_mathematics", "stem"}, {"college_medicine", "other"},
        {"college_physics", "stem"}, {"computer_security", "stem"}, {"conceptual_physics", "stem"},
        {"econometrics", "social_sciences"}, {"electrical_engineering", "stem"}, {"elementary_mathematics", "stem"},
        {"formal_logic", "humanities"}, {"global_facts", "other"}, {"high_school_biology", "stem"},
        {"high_school_chemistry", "stem"}, {"high_school_computer_science", "stem"},
        {"high_school_european_history", "humanities"}, {"high_school_geography", "social_sciences"},
        {"high_school_government_and_politics", "social_sciences"}, {"high_school_macroeconomics", "social_sciences"},
        {"high_school_mathematics", "stem"}, {"high_school_microeconomics", "social_sciences"},
        {"high_school_physics", "stem"}, {"high_school_psychology", "social_sciences"},
        {"high_school_statistics", "stem"}, {"high_school_us_history", "humanities"},
        {"high_school_world_history", "humanities"}, {"human_aging", "other"}, {"human_sexuality", "social_sciences"},
        {"international_law", "humanities"}, {"jurisprudence", "humanities"}, {"logical_fallacies", "humanities"},
        {"machine_learning", "stem"}, {"management", "other"}, {"marketing", "other"}, {"medical_genetics", "other"},
        {"miscellaneous", "other"}, {"moral_disputes", "humanities"}, {"moral_scenarios", "humanities"},
        {"nutrition", "other"}, {"philosophy", "humanities"}, {"prehistory", "humanities"},
        {"professional_accounting", "other"}, {"professional_law", "humanities"}, {"professional_medicine", "other"},
        {"professional_psychology", "social_sciences"}, {"public_relations", "social_sciences"},
        {"security_studies", "social_sciences"}, {"sociology", "social_sciences"}, {"us_foreign_policy", "social_sciences"},
        {"virology", "other"}, {"world_religions", "humanities"},
    };
    for (const auto& [s, c] : table)
        if (subject == s) return c;
    return "";
}

} // namespace slm
