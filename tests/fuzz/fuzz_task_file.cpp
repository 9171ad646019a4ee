// libFuzzer target for task files (slm eval custom): the input is a YAML or JSON task file, parsed
// into a TaskConfig; when that succeeds its templates are rendered against a fixed PIQA-like
// document (doc_to_choice also evaluated as an expression), as the engine would. Whatever the
// bytes, parsing and rendering must return or throw slm::Error.
//
//   tests/fuzz/run_fuzzers.sh build-fuzz 60      (seeds: tests/fuzz/corpus/task_file/, task_file.dict)
#include "chat/doc_template.h"
#include "slm/error.h"
#include "slm/tasks.h"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    slm::TaskConfig cfg;
    try {
        cfg = slm::parse_task_file(text, "fuzz.yaml", "/base");
    } catch (const slm::Error&) {
        return 0;
    }
    static const nlohmann::json doc = {{"goal", "Open a jar"}, {"sol1", "Twist"}, {"sol2", "Hit"}, {"label", 1},
                                       {"choices", {{"text", {"a", "b"}}, {"label", {"A", "B"}}}}};
    for (const std::string* src : {&cfg.description, &cfg.doc_to_text, &cfg.doc_to_target, &cfg.doc_to_choice}) {
        if (src->empty()) continue;
        try {
            auto t = slm::chat::DocTemplate::parse(*src, "fuzz");
            (void)t.render(doc);
            (void)t.evaluate(doc);
        } catch (const slm::Error&) {
        }
    }
    return 0;
}
