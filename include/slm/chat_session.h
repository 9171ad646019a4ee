// slm/chat_session.h - a multi-turn conversation over one Session, rendered with the model's
// own chat template, that keeps its KV cache between turns.
//
//   auto model = slm::Model::load("qwen2.5-0.5b-instruct.gguf");
//   slm::ChatOptions opt;
//   opt.system = "You are terse.";
//   slm::ChatSession chat(model, opt);
//   chat.send("Hi!", [](std::string_view t) { fwrite(t.data(), 1, t.size(), stdout); return true; });
//   chat.send("And again?", ...);   // only the new turn's tokens are evaluated
//
// Each turn renders the whole conversation with the template (as Hugging Face's
// apply_chat_template does), tokenizes it, and evaluates only what follows the longest prefix
// already in the KV cache; the cache is cut back to that prefix when the rendering of earlier
// turns changed (a template that trims the assistant's text, say). A model with a recurrent
// state (Mamba) cannot cut back: it re-reads the conversation instead.
#pragma once

#include "slm/chat.h"
#include "slm/generate.h"
#include "slm/model.h"

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

struct ChatOptions {
    std::string system;            // a system message opening the conversation ("" = none)
    std::string chat_template;     // template source; "" = the model's tokenizer.chat_template
    std::string chat_template_name = "chat template";  // for error messages (a file name)
    GenerateParams gen;            // sampling, n_predict (< 0: until end of turn or context)
    SessionOptions session;        // n_ctx (0 = training context, at most 4096), threads, KV type
};

class ChatSession {
public:
    // Throws slm::Error when the template does not parse. A model without a chat template gets
    // ChatML (llama.cpp's fallback); template_source() says which one is in use.
    ChatSession(std::shared_ptr<const Model> model, const ChatOptions& opt);
    ~ChatSession();

    // Adds a user message, evaluates the new part of the rendered conversation, generates the
    // reply (text to on_text as it becomes final; returning false stops it) and adds it as the
    // assistant message. stop_reason "context" means the context filled during the reply (the
    // partial reply is kept). Throws slm::Error, leaving the conversation as it was, when the
    // rendered conversation no longer fits the context: reset() is then the way on.
    GenerateResult send(std::string_view user, const std::function<bool(std::string_view)>& on_text = nullptr);

    void reset();                                   // back to the system message, empty cache
    void save(const std::string& path) const;       // {"messages": [...]} as JSON, written whole
    const std::vector<ChatMessage>& messages() const { return messages_; }
    uint32_t n_past() const { return session_->n_past(); }
    uint32_t n_ctx() const { return session_->n_ctx(); }
    // Tokens of the last send's rendered prompt found in the cache and not evaluated again.
    size_t reused_last() const { return reused_last_; }
    // The conversation rendered (with the generation prompt if add_generation_prompt).
    std::string render(bool add_generation_prompt) const;
    const std::string& template_source() const { return template_src_; }
    bool template_is_fallback() const { return fallback_; }

private:
    std::shared_ptr<const Model> model_;
    std::unique_ptr<Session> session_;
    std::unique_ptr<ChatTemplate> tmpl_;
    std::string template_src_;
    bool fallback_ = false;
    ChatOptions opt_;
    std::vector<ChatMessage> messages_;
    std::vector<int32_t> cached_;                   // the tokens in the session's KV cache
    size_t reused_last_ = 0;
};

} // namespace slm
