// slm/chat.h - chat templates: the Jinja2 templates models ship to turn a conversation into
// the prompt text they were trained on, rendered as Hugging Face's apply_chat_template does.
//
//   slm::ChatTemplate t = slm::ChatTemplate::parse(*slm::chat_template_from_gguf(gguf), "model");
//   slm::ChatTemplateOptions o;
//   o.bos_token = "<s>";
//   o.add_generation_prompt = true;
//   std::string prompt = t.render({{"system", "Be brief."}, {"user", "Hi!"}}, o);
//   std::string same = t.render(R"([{"role": "user", "content": "Hi!"}])", o);  // JSON messages
//
// The interpreter implements Jinja2 (3.1) as Hugging Face configures it: trim_blocks,
// lstrip_blocks, break/continue, a sandbox in which lists and dicts cannot be mutated,
// raise_exception(msg), strftime_now(fmt), and tojson without ASCII escaping. {% include %},
// {% import %} and {% extends %} are not supported (a chat template is one file).
//
// Rendering is bounded (ChatTemplateLimits): runaway templates stop with slm::Error
// "chat template NAME:LINE: LimitError: ..." instead of hanging or exhausting memory. Errors the
// template raises read "chat template NAME:LINE: TemplateError: <message>", the Python exception
// class Jinja2 would raise followed by its message.
#pragma once

#include "slm/limits.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

class GGUFFile;

struct ChatMessage {
    std::string role;     // "system", "user", "assistant", "tool" ...
    std::string content;
};

// Defaults are the process-wide limits (slm/limits.h) at construction time.
struct ChatTemplateLimits {
    uint32_t max_depth = static_cast<uint32_t>(limits().template_max_depth);  // nested macro calls and recursive loops
    uint64_t max_iterations = limits().template_max_iterations;      // loop iterations plus macro calls in one render
    uint64_t max_output_bytes = limits().template_max_output_bytes;  // the rendering, and any one string built on the way
    uint64_t max_work = limits().template_max_work;                  // expression nodes evaluated plus bytes and items built
};

struct ChatTemplateOptions {
    std::string bos_token;               // the text of the model's BOS token ("<s>"), for {{ bos_token }}
    std::string eos_token;               // the text of its EOS token
    bool add_generation_prompt = false;  // end with the header of an assistant turn
    // A JSON object of further template variables: tools, documents, enable_thinking ...
    // (tools and documents are None unless given, as in Hugging Face). Empty = none.
    std::string extra_context_json;
    // What strftime_now() reads: "" = the local clock, or "YYYY-MM-DD HH:MM:SS" to pin it (tests).
    std::string now;
    ChatTemplateLimits limits;
};

class ChatTemplate {
public:
    // Parses a template; `name` appears in error messages. Throws slm::Error naming the line and
    // column of a syntax error.
    static ChatTemplate parse(std::string_view source, std::string name = "chat template");

    // Renders `messages_json`: a JSON array of messages ({"role": ..., "content": ...}, content
    // may be a string or a list of parts, with tool_calls etc.), or an object with "messages" and
    // further variables. Throws slm::Error on bad JSON, template errors and exceeded limits.
    std::string render(std::string_view messages_json, const ChatTemplateOptions& opt) const;
    std::string render(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& opt) const;

    const std::string& name() const;

    ChatTemplate(const ChatTemplate&);
    ChatTemplate(ChatTemplate&&) noexcept;
    ChatTemplate& operator=(const ChatTemplate&);
    ChatTemplate& operator=(ChatTemplate&&) noexcept;
    ~ChatTemplate();

private:
    struct Impl;
    std::shared_ptr<const Impl> impl_;
    explicit ChatTemplate(std::shared_ptr<const Impl> impl);
};

// The default chat template of a GGUF model (key tokenizer.chat_template), if it has one.
std::optional<std::string> chat_template_from_gguf(const GGUFFile& f);

} // namespace slm
