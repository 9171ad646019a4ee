// chat/chat_template.cpp - the public ChatTemplate API (slm/chat.h): JSON messages in,
// rendered text out, every failure as slm::Error naming the template and line.
#include "slm/chat.h"

#include "chat/ast.h"
#include "chat/interp.h"
#include "chat/lexer.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <ctime>
#include <sys/time.h>

namespace slm {

using chat::Value;

struct ChatTemplate::Impl {
    std::shared_ptr<chat::Program> prog;
};

ChatTemplate::ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
ChatTemplate::ChatTemplate(const ChatTemplate&) = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(const ChatTemplate&) = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

const std::string& ChatTemplate::name() const { return impl_->prog->name; }

ChatTemplate ChatTemplate::parse(std::string_view source, std::string name) {
    try {
        auto impl = std::make_shared<Impl>();
        impl->prog = chat::parse_program(name, source);
        return ChatTemplate(std::move(impl));
    } catch (const chat::SyntaxError& e) {
        std::string src = chat::normalize_source(source);
        uint32_t line, col;
        chat::line_col(src, e.offset, line, col);
        fail("chat template %s:%u:%u: TemplateSyntaxError: %s", name.c_str(), line, col, e.message.c_str());
    }
}

namespace {

using Json = nlohmann::ordered_json;

Value from_json(const Json& j, int depth) {
    if (depth > chat::MAX_VALUE_DEPTH) chat::raise("ValueError", "JSON nested too deeply");
    switch (j.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::boolean(j.get<bool>());
    case Json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case Json::value_t::number_unsigned: {
        auto u = j.get<uint64_t>();
        return u <= static_cast<uint64_t>(INT64_MAX) ? Value::integer(static_cast<int64_t>(u)) : Value::number(static_cast<double>(u));
    }
    case Json::value_t::number_float: return Value::number(j.get<double>());
    case Json::value_t::string: return Value::string(j.get<std::string>());
    case Json::value_t::array: {
        std::vector<Value> items;
        items.reserve(j.size());
        for (const auto& x : j) items.push_back(from_json(x, depth + 1));
        return Value::list(std::move(items));
    }
    case Json::value_t::object: {
        auto d = std::make_shared<chat::DictObj>();
        for (const auto& [k, x] : j.items()) d->set(Value::string(k), from_json(x, depth + 1));
        return Value::dict(std::move(d));
    }
    default: return Value::none();
    }
}

Json parse_json(std::string_view text, const char* what, const std::string& name) {
    try {
        return Json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        fail("chat template %s: %s is not valid JSON: %s", name.c_str(), what, e.what());
    }
}

// "YYYY-MM-DD HH:MM:SS" -> broken-down time with weekday and day of year filled in
std::tm parse_now(const std::string& s, const std::string& name) {
    std::tm tm{};
    int y, mo, d, h, mi, se;
    char tail;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2d %2d:%2d:%2d%c", &y, &mo, &d, &h, &mi, &se, &tail) != 6 || mo < 1 || mo > 12 ||
        d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || h < 0 || mi < 0 || se < 0 || y < 1)
        fail("chat template %s: now '%s' is not YYYY-MM-DD HH:MM:SS", name.c_str(), s.c_str());
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);  // normalizes and fills tm_wday / tm_yday, with no time zone involved
    gmtime_r(&t, &tm);
    return tm;
}

std::string render_value(const chat::Program& prog, Value messages, std::vector<std::pair<std::string, Value>> extra,
                         const ChatTemplateOptions& opt) {
    chat::Limits limits;
    limits.max_depth = opt.limits.max_depth;
    limits.max_iterations = opt.limits.max_iterations;
    limits.max_output_bytes = opt.limits.max_output_bytes;
    limits.max_work = opt.limits.max_work;
    chat::Interp in(prog, limits);
    // as apply_chat_template: messages, tools, documents, add_generation_prompt, special tokens,
    // then the caller's variables
    in.set_context("messages", std::move(messages));
    in.set_context("tools", Value::none());
    in.set_context("documents", Value::none());
    in.set_context("add_generation_prompt", Value::boolean(opt.add_generation_prompt));
    in.set_context("bos_token", Value::string(opt.bos_token));
    in.set_context("eos_token", Value::string(opt.eos_token));
    for (auto& [k, v] : extra) in.set_context(k, std::move(v));
    if (opt.now.empty()) {
        timeval tv{};
        gettimeofday(&tv, nullptr);
        std::tm tm{};
        time_t secs = tv.tv_sec;
        localtime_r(&secs, &tm);
        in.set_now(tm, static_cast<long>(tv.tv_usec));
    } else {
        in.set_now(parse_now(opt.now, prog.name), 0);
    }
    return in.render();
}

template <class F>
std::string guarded(const chat::Program& prog, F&& f) {
    try {
        return f();
    } catch (const chat::TemplateError& e) {
        if (e.offset >= 0) {
            uint32_t line, col;
            chat::line_col(prog.source, static_cast<size_t>(e.offset), line, col);
            fail("chat template %s:%u: %s: %s", prog.name.c_str(), line, e.type.c_str(), e.message.c_str());
        }
        fail("chat template %s: %s: %s", prog.name.c_str(), e.type.c_str(), e.message.c_str());
    } catch (const std::bad_alloc&) {
        fail("chat template %s: out of memory while rendering", prog.name.c_str());
    }
}

} // namespace

std::string ChatTemplate::render(std::string_view messages_json, const ChatTemplateOptions& opt) const {
    const chat::Program& prog = *impl_->prog;
    Json j = parse_json(messages_json, "messages", prog.name);
    Json extra_j = opt.extra_context_json.empty() ? Json::object() : parse_json(opt.extra_context_json, "extra context", prog.name);
    if (!extra_j.is_object()) fail("chat template %s: extra context must be a JSON object", prog.name.c_str());
    if (!j.is_array() && !(j.is_object() && j.contains("messages")))
        fail("chat template %s: messages must be a JSON array, or an object with \"messages\"", prog.name.c_str());
    return guarded(prog, [&]() {
        Value messages;
        std::vector<std::pair<std::string, Value>> extra;
        if (j.is_array()) {
            messages = from_json(j, 0);
        } else {
            messages = from_json(j["messages"], 0);
            for (const auto& [k, x] : j.items())
                if (k != "messages") extra.emplace_back(k, from_json(x, 0));
        }
        for (const auto& [k, x] : extra_j.items()) extra.emplace_back(k, from_json(x, 0));
        return render_value(prog, std::move(messages), std::move(extra), opt);
    });
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& opt) const {
    const chat::Program& prog = *impl_->prog;
    Json extra_j = opt.extra_context_json.empty() ? Json::object() : parse_json(opt.extra_context_json, "extra context", prog.name);
    if (!extra_j.is_object()) fail("chat template %s: extra context must be a JSON object", prog.name.c_str());
    return guarded(prog, [&]() {
        std::vector<Value> items;
        for (const auto& m : messages) {
            auto d = std::make_shared<chat::DictObj>();
            d->set(Value::string("role"), Value::string(m.role));
            d->set(Value::string("content"), Value::string(m.content));
            items.push_back(Value::dict(std::move(d)));
        }
        std::vector<std::pair<std::string, Value>> extra;
        for (const auto& [k, x] : extra_j.items()) extra.emplace_back(k, from_json(x, 0));
        return render_value(prog, Value::list(std::move(items)), std::move(extra), opt);
    });
}

std::optional<std::string> chat_template_from_gguf(const GGUFFile& f) {
    const GGUFValue* v = f.find("tokenizer.chat_template");
    if (!v) return std::nullopt;
    if (v->type != GGUFType::STRING)
        fail("gguf: %s: key 'tokenizer.chat_template' has type %s, expected STRING", f.path().c_str(), gguf_type_name(v->type));
    return v->str;
}

} // namespace slm
