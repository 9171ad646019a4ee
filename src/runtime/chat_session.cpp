// chat_session.cpp - multi-turn chat over one Session with prefix reuse of the KV cache.
#include "slm/chat_session.h"

#include "slm/chat.h"
#include "slm/error.h"
#include "slm/vocab.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace slm {

namespace {

// ChatML, what llama.cpp falls back to for a model without a template.
const char* const kChatML =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string token_text_or_empty(const Vocab& v, int32_t id) { return id >= 0 ? v.token_text(id) : std::string(); }

} // namespace

ChatSession::ChatSession(std::shared_ptr<const Model> model, const ChatOptions& opt)
    : model_(std::move(model)), opt_(opt) {
    template_src_ = opt.chat_template;
    if (template_src_.empty()) {
        if (auto t = chat_template_from_gguf(model_->file())) template_src_ = *t;
    }
    if (template_src_.empty()) {
        template_src_ = kChatML;
        fallback_ = true;
    }
    tmpl_ = std::make_unique<ChatTemplate>(ChatTemplate::parse(template_src_, opt.chat_template.empty() ? "tokenizer.chat_template" : opt.chat_template_name));
    SessionOptions so = opt.session;
    if (so.n_ctx == 0) so.n_ctx = std::min<uint32_t>(model_->hparams().n_ctx_train, 4096);
    session_ = std::make_unique<Session>(model_, so);
    reset();
}

ChatSession::~ChatSession() = default;

void ChatSession::reset() {
    session_->reset();
    cached_.clear();
    messages_.clear();
    if (!opt_.system.empty()) messages_.push_back({"system", opt_.system});
    reused_last_ = 0;
}

std::string ChatSession::render(bool add_generation_prompt) const {
    const Vocab& v = model_->vocab();
    ChatTemplateOptions to;
    to.bos_token = token_text_or_empty(v, v.bos());
    to.eos_token = token_text_or_empty(v, v.eos());
    to.add_generation_prompt = add_generation_prompt;
    return tmpl_->render(messages_, to);
}

GenerateResult ChatSession::send(std::string_view user, const std::function<bool(std::string_view)>& on_text) {
    const Vocab& v = model_->vocab();
    messages_.push_back({"user", std::string(user)});
    std::vector<int32_t> prompt;
    try {
        const std::string text = render(true);
        // The template may write BOS itself (Llama 3's `{{ bos_token }}`); add it only if not.
        const std::string bos = token_text_or_empty(v, v.bos());
        const bool has_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
        prompt = v.tokenize(text, v.add_bos() && !has_bos, true);
        if (prompt.size() >= session_->n_ctx())
            fail("chat: the conversation is %zu tokens and no longer fits the context of %u; reset to start again",
                 prompt.size(), session_->n_ctx());
    } catch (...) {
        messages_.pop_back();
        throw;
    }

    // The longest prefix of the new prompt already in the cache; at least one token must be
    // evaluated to get logits.
    size_t keep = 0;
    while (keep < cached_.size() && keep < prompt.size() && cached_[keep] == prompt[keep]) ++keep;
    if (keep == prompt.size()) --keep;
    if (keep < cached_.size()) {
        if (keep > 0 && !session_->can_truncate(static_cast<uint32_t>(keep))) {
            keep = 0;  // a recurrent state, or sliding-window rings, cannot go back: read it again
        }
        session_->truncate(static_cast<uint32_t>(keep));
        cached_.resize(keep);
    }
    reused_last_ = keep;

    const std::span<const int32_t> fresh(prompt.data() + keep, prompt.size() - keep);
    GenerateParams gp = opt_.gen;
    GenerateResult r = generate(*session_, fresh, gp, on_text);
    cached_.assign(prompt.begin(), prompt.end());
    // The cache holds every generated token but the last, which was sampled and not evaluated.
    if (!r.tokens.empty()) cached_.insert(cached_.end(), r.tokens.begin(), r.tokens.end() - 1);
    messages_.push_back({"assistant", r.text});
    return r;
}

void ChatSession::save(const std::string& path) const {
    nlohmann::ordered_json j;
    j["messages"] = nlohmann::ordered_json::array();
    for (const ChatMessage& m : messages_) j["messages"].push_back({{"role", m.role}, {"content", m.content}});
    const std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) fail("chat: cannot write %s: %s", tmp.c_str(), std::strerror(errno));
        out << text;
        out.flush();
        if (!out) fail("chat: writing %s failed", tmp.c_str());
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        fail("chat: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), std::strerror(e));
    }
}

} // namespace slm
