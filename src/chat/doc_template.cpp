// chat/doc_template.cpp - Jinja templates rendered against one JSON document (see doc_template.h).
#include "chat/doc_template.h"

#include "chat/ast.h"
#include "chat/interp.h"
#include "chat/lexer.h"
#include "slm/error.h"
#include "slm/limits.h"

#include <algorithm>
#include <cmath>

namespace slm::chat {

namespace {

Value from_json(const nlohmann::json& j, int depth) {
    if (depth > MAX_VALUE_DEPTH) raise("ValueError", "JSON nested too deeply");
    switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
        auto u = j.get<uint64_t>();
        return u <= static_cast<uint64_t>(INT64_MAX) ? Value::integer(static_cast<int64_t>(u))
                                                      : Value::number(static_cast<double>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::json::value_t::array: {
        std::vector<Value> items;
        items.reserve(j.size());
        for (const auto& x : j) items.push_back(from_json(x, depth + 1));
        return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
        auto d = std::make_shared<DictObj>();
        for (const auto& [k, x] : j.items()) d->set(Value::string(k), from_json(x, depth + 1));
        return Value::dict(std::move(d));
    }
    default: return Value::none();
    }
}

nlohmann::json to_json(const Value& v, int depth) {
    if (depth > MAX_VALUE_DEPTH) raise("ValueError", "value nested too deeply");
    switch (v.kind()) {
    case Kind::Undefined: v.fail_undefined();
    case Kind::None: return nullptr;
    case Kind::Bool: return v.as_bool();
    case Kind::Int: return v.as_int();
    case Kind::Float: return v.as_float();
    case Kind::String: return v.str();
    case Kind::List: {
        if (v.seq_kind() == SeqKind::Iterator) raise("TypeError", "a generator is not a value (use | list)");
        nlohmann::json a = nlohmann::json::array();
        for (const Value& x : v.list().items) a.push_back(to_json(x, depth + 1));
        return a;
    }
    case Kind::Dict: {
        nlohmann::json o = nlohmann::json::object();
        for (const auto& [k, x] : v.dict().items) o[k.is_string() ? k.str() : to_str(k)] = to_json(x, depth + 1);
        return o;
    }
    default: return to_str(v);
    }
}

const Expr* single_expression(const Program& p) {
    const Expr* found = nullptr;
    for (const auto& s : p.body) {
        if (s->kind == StmtKind::Text) {
            for (char c : s->text)
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return nullptr;
        } else if (s->kind == StmtKind::Output && !found) {
            found = s->expr.get();
        } else {
            return nullptr;
        }
    }
    return found;
}

template <class F>
auto guarded(const Program& prog, const std::string& name, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const TemplateError& e) {
        if (e.offset >= 0) {
            uint32_t line, col;
            line_col(prog.source, static_cast<size_t>(e.offset), line, col);
            fail("%s:%u: %s: %s", name.c_str(), line, e.type.c_str(), e.message.c_str());
        }
        fail("%s: %s: %s", name.c_str(), e.type.c_str(), e.message.c_str());
    } catch (const std::bad_alloc&) {
        fail("%s: out of memory while rendering", name.c_str());
    }
}

// Bounds small enough that a task template cannot stall an evaluation of thousands of documents.
// The process-wide template limits (slm/limits.h) still apply when they are lower.
Limits doc_limits() {
    const slm::Limits& g = slm::limits();
    Limits l;
    l.max_depth = static_cast<uint32_t>(std::min<uint64_t>(l.max_depth, g.template_max_depth));
    l.max_iterations = std::min<uint64_t>(100000, g.template_max_iterations);
    l.max_output_bytes = std::min<uint64_t>(16u << 20, g.template_max_output_bytes);
    l.max_work = std::min<uint64_t>(20000000, g.template_max_work);
    return l;
}

void set_doc(Interp& in, const Program& prog, const nlohmann::json& doc) {
    if (!doc.is_object()) return;
    for (const auto& [k, x] : doc.items())
        if (prog.id(k) != UINT32_MAX) in.set_context(k, from_json(x, 0));
}

} // namespace

DocTemplate DocTemplate::parse(std::string_view source, std::string name) {
    DocTemplate t;
    t.name_ = std::move(name);
    try {
        // lm-eval's Environment: Jinja2's defaults (no trim_blocks / lstrip_blocks) and
        // keep_trailing_newline, so "...about {{subject}}.\n\n" keeps its blank line
        LexOptions opt;
        opt.trim_blocks = false;
        opt.lstrip_blocks = false;
        opt.keep_trailing_newline = true;
        t.prog_ = parse_program(t.name_, source, opt);
    } catch (const SyntaxError& e) {
        std::string src = normalize_source(source, true);
        uint32_t line, col;
        line_col(src, e.offset, line, col);
        fail("%s:%u:%u: TemplateSyntaxError: %s", t.name_.c_str(), line, col, e.message.c_str());
    }
    return t;
}

bool DocTemplate::is_expression() const { return prog_ && single_expression(*prog_) != nullptr; }

std::string DocTemplate::render(const nlohmann::json& doc) const {
    if (!prog_) fail("%s: empty template", name_.c_str());
    const Program& prog = *prog_;
    return guarded(prog, name_, [&]() {
        Interp in(prog, doc_limits());
        in.set_strict_undefined(true);
        set_doc(in, prog, doc);
        return in.render();
    });
}

nlohmann::json DocTemplate::evaluate(const nlohmann::json& doc) const {
    if (!prog_) fail("%s: empty template", name_.c_str());
    const Program& prog = *prog_;
    const Expr* e = single_expression(prog);
    if (!e) return render(doc);
    return guarded(prog, name_, [&]() {
        Interp in(prog, doc_limits());
        in.set_strict_undefined(true);
        set_doc(in, prog, doc);
        return to_json(in.evaluate(*e), 0);
    });
}

} // namespace slm::chat
