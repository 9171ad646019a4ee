// libFuzzer target for the chat template interpreter: the input is a template, parsed and then
// rendered against a fixed conversation (system, user, assistant with tool calls, tool result,
// content parts) and tools, with small limits so every input finishes fast. Besides the
// sanitizers it checks that a render is deterministic, stays within max_output_bytes and is valid
// UTF-8. Templates that fail to parse or raise while rendering (slm::Error) are fine.
//
//   tests/fuzz/run_fuzzers.sh build-fuzz 60      (seeds: tests/fuzz/corpus/jinja/, jinja.dict)
#include "slm/chat.h"
#include "slm/error.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "fuzz_jinja: %s\n", what);
    std::abort();
}

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<uint8_t>(s[i]);
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            ++i;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            lo = b == 0xE0 ? 0xA0 : 0x80;
            hi = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            lo = b == 0xF0 ? 0x90 : 0x80;
            hi = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            return false;
        }
        if (i + len > s.size()) return false;
        const auto b1 = static_cast<uint8_t>(s[i + 1]);
        if (b1 < lo || b1 > hi) return false;
        for (size_t k = 2; k < len; ++k)
            if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

const char* const kMessages = R"({"messages": [
  {"role": "system", "content": "You are helpful. /think"},
  {"role": "user", "content": "What's the weather in Paris? Ça va — 日本語 😀"},
  {"role": "assistant", "content": "<think>\nchecking\n</think>\n\nLet me look.", "reasoning_content": "checking",
   "tool_calls": [{"id": "call_0001", "type": "function",
                   "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2.5, null, true]}}}]},
  {"role": "tool", "tool_call_id": "call_0001", "content": "{\"temp\": 21}"},
  {"role": "user", "content": [{"type": "text", "text": "and this?"}, {"type": "image"}]}
], "documents": [{"doc_id": 1, "title": "T", "text": "Doc"}], "enable_thinking": false})";

const char* const kTools = R"({"tools": [{"type": "function", "function": {"name": "get_weather",
  "description": "Weather for a city", "parameters": {"type": "object",
  "properties": {"city": {"type": "string"}, "days": {"type": "array", "items": {"type": "integer"}}},
  "required": ["city"]}}}]})";

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view src(reinterpret_cast<const char*>(data), size);
    slm::ChatTemplateOptions o;
    o.bos_token = "<s>";
    o.eos_token = "</s>";
    o.add_generation_prompt = size % 2 == 0;
    o.now = "2026-11-25 09:30:00";
    o.extra_context_json = kTools;
    o.limits.max_depth = 20;
    o.limits.max_iterations = 20000;
    o.limits.max_output_bytes = 1 << 16;
    o.limits.max_work = 2000000;
    std::string first;
    try {
        slm::ChatTemplate t = slm::ChatTemplate::parse(src, "fuzz");
        first = t.render(kMessages, o);
    } catch (const slm::Error&) {
        return 0;
    }
    if (first.size() > o.limits.max_output_bytes) die("output larger than max_output_bytes");
    if (!valid_utf8(first)) die("output is not valid UTF-8");
    std::string second;
    try {
        second = slm::ChatTemplate::parse(src, "fuzz").render(kMessages, o);
    } catch (const slm::Error&) {
        die("second render failed where the first succeeded");
    }
    if (first != second) die("rendering is not deterministic");
    return 0;
}
