// chat/doc_template.h - the Jinja interpreter applied to one JSON document rather than to a
// conversation: the templates of evaluation task files (doc_to_text "Question: {{question}}",
// doc_to_choice "{{[sol1, sol2]}}"), rendered as lm-evaluation-harness renders them (Jinja2 with
// StrictUndefined and keep_trailing_newline; the document's keys are the template's variables).
// Internal: src/eval and src/formats/task_file.cpp use it; the public API is slm/tasks.h.
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace slm::chat {

struct Program;

class DocTemplate {
public:
    DocTemplate() = default;
    // Parses `source`; `name` ("task.yaml: doc_to_text") prefixes every error. Throws slm::Error.
    static DocTemplate parse(std::string_view source, std::string name);

    // The text of the template with the document's keys as variables. Throws slm::Error naming
    // the template and line ("UndefinedError: 'foo' is undefined").
    std::string render(const nlohmann::json& doc) const;
    // A template that is exactly one `{{ expr }}` (surrounding blanks allowed): the value of expr as
    // JSON (a list stays a list, an int an int). Else the rendered text as a JSON string.
    nlohmann::json evaluate(const nlohmann::json& doc) const;
    bool is_expression() const;  // exactly one {{ expr }}
    bool empty() const { return !prog_; }
    const std::string& name() const { return name_; }

private:
    std::shared_ptr<const Program> prog_;
    std::string name_;
};

} // namespace slm::chat
