// chat/interp.cpp - the tree-walking evaluator (see interp.h).
#include "chat/interp.h"

#include "chat/lexer.h"

#include <algorithm>
#include <cmath>

namespace slm::chat {

void Interp::fail_stack() {
    raise("LimitError", "template nested too deeply (more than " + std::to_string(MAX_STACK_BYTES >> 20) + " MiB of stack)");
}

namespace {

constexpr uint32_t LOOP_ID = 0, CALLER_ID = 1, VARARGS_ID = 2, KWARGS_ID = 3;  // interned first by the parser

std::string line_of(const Program& p, int64_t offset) {
    uint32_t line, col;
    line_col(p.source, static_cast<size_t>(offset), line, col);
    return std::to_string(line);
}

// ---- objects ----

struct MacroObj : Object {
    std::shared_ptr<MacroDef> def;
    ScopePtr closure;
    bool is_caller = false;
    const char* type_name() const override { return "Macro"; }
    std::string repr() const override { return is_caller ? "<Macro anonymous>" : "<Macro '" + def->name + "'>"; }
    bool callable() const override { return true; }
    Value call(Interp& in, CallArgs& args) override { return in.call_macro(def, closure, args); }
    Value get_attr(Interp& in, const std::string& name) override {
        if (name == "name") return Value::string(def->name);
        if (name == "arguments") {
            std::vector<Value> names;
            for (const auto& n : def->param_names) names.push_back(Value::string(n));
            return Value::tuple(std::move(names));
        }
        if (name == "catch_kwargs") return Value::boolean(def->uses_kwargs);
        if (name == "catch_varargs") return Value::boolean(def->uses_varargs);
        if (name == "caller") return Value::boolean(def->uses_caller);
        return Object::get_attr(in, name);
    }
};

struct LoopObj : Object, std::enable_shared_from_this<LoopObj> {
    std::shared_ptr<const ListObj> items;
    size_t index0 = 0;
    uint32_t depth0 = 0;
    const Stmt* stmt = nullptr;  // the for statement, for loop(...) in recursive loops
    ScopePtr scope;              // where it runs
    Value last_changed;          // loop.changed(): the anonymous Undefined until the first call

    size_t length() const { return items->items.size(); }
    const char* type_name() const override { return "LoopContext"; }
    std::string repr() const override {
        return "<LoopContext " + std::to_string(index0 + 1) + "/" + std::to_string(length()) + ">";
    }
    bool callable() const override { return true; }
    Value call(Interp& in, CallArgs& args) override {
        if (!stmt->recursive) type_error("The loop must be marked as 'recursive' to call it.");
        if (args.pos.size() != 1 || !args.kw.empty()) type_error("loop() takes exactly one argument (the iterable)");
        Interp::DepthGuard g(in);
        std::string out;
        in.run_for(*stmt, scope, args.pos[0], out, depth0 + 1);
        return Value::string(std::move(out));
    }
    Value get_attr(Interp& in, const std::string& name) override;
};

struct LoopMethod : Object {
    std::shared_ptr<LoopObj> loop;
    bool changed = false;  // loop.changed, else loop.cycle
    const char* type_name() const override { return "method"; }
    bool callable() const override { return true; }
    Value call(Interp&, CallArgs& args) override {
        if (!args.kw.empty()) type_error(std::string(changed ? "changed" : "cycle") + "() takes no keyword arguments");
        if (changed) {
            Value now = Value::tuple(args.pos);
            if (given(loop->last_changed) && py_equal(loop->last_changed, now)) return Value::boolean(false);
            loop->last_changed = now;
            return Value::boolean(true);
        }
        if (args.pos.empty()) type_error("no items for cycling given");
        return args.pos[loop->index0 % args.pos.size()];
    }
};

Value LoopObj::get_attr(Interp& in, const std::string& name) {
    const size_t n = length();
    auto i64 = [](size_t v) { return Value::integer(static_cast<int64_t>(v)); };
    if (name == "index") return i64(index0 + 1);
    if (name == "index0") return i64(index0);
    if (name == "revindex") return i64(n - index0);
    if (name == "revindex0") return i64(n - index0 - 1);
    if (name == "first") return Value::boolean(index0 == 0);
    if (name == "last") return Value::boolean(index0 + 1 == n);
    if (name == "length") return i64(n);
    if (name == "depth") return i64(depth0 + 1);
    if (name == "depth0") return i64(depth0);
    if (name == "previtem")
        return index0 > 0 ? items->items[index0 - 1] : Value::undefined("there is no previous item");
    if (name == "nextitem")
        return index0 + 1 < n ? items->items[index0 + 1] : Value::undefined("there is no next item");
    if (name == "cycle" || name == "changed") {
        auto m = std::make_shared<LoopMethod>();
        m->loop = shared_from_this();
        m->changed = name == "changed";
        return Value::object(m);
    }
    return Object::get_attr(in, name);
}

struct BoundMethod : Object {
    Value self;
    std::string name;
    const char* type_name() const override { return "builtin_function_or_method"; }
    std::string repr() const override { return "<built-in method " + name + " of " + object_type_repr(self) + ">"; }
    bool callable() const override { return true; }
    Value call(Interp& in, CallArgs& args) override { return call_method(in, self, name, args); }
};

[[noreturn]] void unsafe_attribute(const Value& obj, const std::string& name) {
    raise("SecurityError", "access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.");
}

Value missing_attribute(const Value& obj, const std::string& name) { return no_attribute(object_type_repr(obj), name); }

Value no_element(const Value& obj, const Value& key) {
    return Value::undefined(object_type_repr(obj) + " has no element " + repr(key));
}

// Python's slice.indices(): clamps start/stop for a sequence of length n.
bool slice_index_ok(const Value& v) { return v.is_none() || v.is_int() || v.is_bool(); }

void slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step, int64_t& b, int64_t& e, int64_t& s) {
    auto as_index = [](const Value& v) -> int64_t { return v.as_int(); };
    s = step.is_none() ? 1 : as_index(step);
    if (s == 0) raise("ValueError", "slice step cannot be zero");
    if (s == INT64_MIN) s = -INT64_MAX;
    auto clamp = [&](const Value& v, int64_t def) -> int64_t {
        if (v.is_none()) return def;
        int64_t x = as_index(v);
        if (x < 0) {
            x = x < -n ? (s < 0 ? -1 : 0) : x + n;
        } else if (x >= n) {
            x = s < 0 ? n - 1 : n;
        }
        return x;
    };
    b = clamp(start, s < 0 ? n - 1 : 0);
    e = clamp(stop, s < 0 ? -1 : n);
}

} // namespace

// ---- argument binding ----

std::vector<Value> bind(const CallArgs& args, std::initializer_list<const char*> names, const char* fname, size_t n_required) {
    std::vector<Value> out(names.size());
    if (args.pos.size() > names.size())
        type_error(std::string(fname) + "() takes at most " + std::to_string(names.size()) + " argument(s) (" +
                   std::to_string(args.pos.size()) + " given)");
    for (size_t i = 0; i < args.pos.size(); ++i) out[i] = args.pos[i];
    for (const auto& [k, v] : args.kw) {
        size_t i = 0;
        for (const char* n : names) {
            if (k == n) break;
            ++i;
        }
        if (i == names.size()) type_error(std::string(fname) + "() got an unexpected keyword argument '" + k + "'");
        if (given(out[i])) type_error(std::string(fname) + "() got multiple values for argument '" + k + "'");
        out[i] = v;
    }
    for (size_t i = 0; i < n_required; ++i)
        if (!given(out[i]))
            type_error(std::string(fname) + "() missing required argument '" + *(names.begin() + i) + "'");
    return out;
}

// ---- the interpreter ----

Interp::Interp(const Program& prog, const Limits& limits) : prog_(prog), limits_(limits) {
    context_.resize(prog.names.size());
    globals_.resize(prog.names.size());
    for (auto& [name, v] : make_globals()) {
        uint32_t id = prog.id(name);
        if (id != UINT32_MAX) globals_[id] = std::move(v);
    }
}

Interp::~Interp() {
    // Break reference cycles that went through mutable objects. Lock everything first: clearing
    // one may free another.
    std::vector<std::shared_ptr<DictObj>> nss;
    for (auto& w : namespaces_)
        if (auto ns = w.lock()) nss.push_back(std::move(ns));
    std::vector<ScopePtr> scs;
    for (auto& w : scopes_)
        if (auto sc = w.lock()) scs.push_back(std::move(sc));
    for (auto& ns : nss) ns->items.clear();
    for (auto& sc : scs) sc->vars.clear();
}

template <class T>
static void track_weak(std::vector<std::weak_ptr<T>>& list, size_t& threshold, const std::shared_ptr<T>& p) {
    if (!list.empty() && !list.back().owner_before(p) && !p.owner_before(list.back())) return;  // same as the last
    list.push_back(p);
    if (list.size() >= 2 * threshold) {
        list.erase(std::remove_if(list.begin(), list.end(), [](const std::weak_ptr<T>& w) { return w.expired(); }), list.end());
        threshold = std::max<size_t>(64, list.size());
    }
}

void Interp::track(const std::shared_ptr<DictObj>& ns) { track_weak(namespaces_, namespaces_compacted_, ns); }
void Interp::track(const ScopePtr& sc) { track_weak(scopes_, scopes_compacted_, sc); }

Interp::DepthGuard::DepthGuard(Interp& i) : in(i) {
    if (++in.depth_ > in.limits_.max_depth) {
        --in.depth_;
        raise("LimitError", "macro calls or recursive loops nested deeper than max_depth = " +
                                std::to_string(in.limits_.max_depth));
    }
}

void Interp::fail_work() const {
    raise("LimitError", "render exceeded max_work = " + std::to_string(limits_.max_work) +
                            " operations (a runaway template?)");
}

void Interp::fail_size(uint64_t bytes) const {
    raise("LimitError", "a string of " + std::to_string(bytes) + " bytes exceeds max_output_bytes = " +
                            std::to_string(limits_.max_output_bytes));
}

void Interp::fail_iterations() const {
    raise("LimitError", "render exceeded max_iterations = " + std::to_string(limits_.max_iterations) +
                            " loop iterations and macro calls");
}

void Interp::set_context(const std::string& name, Value v) {
    uint32_t id = prog_.id(name);
    if (id != UINT32_MAX) context_[id] = std::move(v);  // a name the template never mentions cannot be read
}

std::string Interp::render() {
    stack_base_ = static_cast<const char*>(__builtin_frame_address(0));
    auto root = std::make_shared<Scope>();
    track(root);
    std::string out;
    exec(prog_.body, root, out);
    return out;
}

Value Interp::lookup(uint32_t id, const ScopePtr& sc) const {
    for (Scope* s = sc.get(); s; s = s->parent.get())
        if (Value* v = s->find(id)) return *v;
    if (given(context_[id])) return context_[id];
    if (given(globals_[id])) return globals_[id];
    return Value::undefined("'" + prog_.names[id] + "' is undefined");
}

Value Interp::evaluate(const Expr& e) {
    stack_base_ = static_cast<const char*>(__builtin_frame_address(0));
    auto root = std::make_shared<Scope>();
    track(root);
    return eval(e, root);
}

void Interp::emit(std::string& out, const Value& v) {
    if (strict_undefined_ && v.is_undefined()) v.fail_undefined();
    size_t before = out.size();
    append_str(out, v);
    check_size(out.size());
    charge(out.size() - before);
}

void Interp::emit(std::string& out, std::string_view text) {
    out.append(text);
    check_size(out.size());
    charge(text.size());
}

// ---- attribute and item access (the sandbox's getattr / getitem) ----

Value Interp::getattr(const Value& obj, const std::string& name) {
    switch (obj.kind()) {
    case Kind::Undefined: obj.fail_undefined();
    case Kind::String:
    case Kind::List:
    case Kind::Dict: {
        bool unsafe = false;
        if (has_method(obj, name, unsafe)) {
            if (unsafe)
                return Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) + "' object is unsafe.", true);
            auto m = std::make_shared<BoundMethod>();
            m->self = obj;
            m->name = name;
            return Value::object(m);
        }
        if (obj.is_dict()) {
            if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
        }
        return missing_attribute(obj, name);
    }
    case Kind::Namespace:
        if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
        return no_attribute("jinja2.utils.Namespace object", name);
    case Kind::Object: return obj.obj().get_attr(*this, name);
    default: return missing_attribute(obj, name);
    }
}

Value Interp::getitem(const Value& obj, const Value& key) {
    switch (obj.kind()) {
    case Kind::Undefined: obj.fail_undefined();
    case Kind::String:
    case Kind::List: {
        if (key.is_int() || key.is_bool()) {
            if (obj.is_list() && obj.seq_kind() == SeqKind::Iterator) break;
            int64_t i = key.as_int();
            if (obj.is_list()) {
                const auto& items = obj.list().items;
                int64_t n = static_cast<int64_t>(items.size());
                if (i < 0) i += n;
                if (i < 0 || i >= n) return no_element(obj, key);
                return items[static_cast<size_t>(i)];
            }
            const std::string& s = obj.str();
            if (is_ascii(s)) {
                int64_t n = static_cast<int64_t>(s.size());
                if (i < 0) i += n;
                if (i < 0 || i >= n) return no_element(obj, key);
                return Value::string(std::string(1, s[static_cast<size_t>(i)]));
            }
            std::vector<uint32_t> cps = utf8_decode(s);
            int64_t n = static_cast<int64_t>(cps.size());
            if (i < 0) i += n;
            if (i < 0 || i >= n) return no_element(obj, key);
            return Value::string(utf8_encode(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
        }
        break;
    }
    case Kind::Dict:
        if (hashable(key)) {
            if (const Value* v = obj.dict().find(key)) return *v;
        }
        break;
    default: break;
    }
    // obj[key] failed: a string key falls back to an attribute, as Jinja2's getitem does
    if (key.is_string()) {
        Value v = getattr(obj, key.str());
        if (!v.is_undefined() || (v.undef() && v.undef()->security)) return v;
        return missing_attribute(obj, key.str());
    }
    return no_element(obj, key);
}

Value Interp::eval_slice(const Value& obj, const Expr& sl, const ScopePtr& sc) {
    Value start = sl.a ? eval(*sl.a, sc) : Value::none();
    Value stop = sl.b ? eval(*sl.b, sc) : Value::none();
    Value step = sl.c ? eval(*sl.c, sc) : Value::none();
    if (obj.is_undefined()) obj.fail_undefined();
    bool is_str = obj.is_string();
    // Jinja2 compiles slices to a plain Python subscript (not environment.getitem): errors raise
    if (obj.is_dict()) type_error("unhashable type: 'slice'");
    if (!is_str && !(obj.is_list() && obj.seq_kind() != SeqKind::Iterator))
        type_error(std::string("'") + type_name(obj) + "' object is not subscriptable");
    if (!slice_index_ok(start) || !slice_index_ok(stop) || !slice_index_ok(step))
        type_error("slice indices must be integers or None or have an __index__ method");
    std::vector<uint32_t> cps;
    bool ascii = is_str && is_ascii(obj.str());
    if (is_str && !ascii) cps = utf8_decode(obj.str());
    int64_t n = is_str ? static_cast<int64_t>(ascii ? obj.str().size() : cps.size())
                       : static_cast<int64_t>(obj.list().items.size());
    int64_t b, e, s;
    slice_indices(n, start, stop, step, b, e, s);
    if (s == 1) {
        if (e < b) e = b;
        charge(static_cast<uint64_t>(e - b));
        if (ascii) return Value::string(obj.str().substr(static_cast<size_t>(b), static_cast<size_t>(e - b)));
        if (is_str) return Value::string(utf8_encode(cps, static_cast<size_t>(b), static_cast<size_t>(e)));
        const auto& items = obj.list().items;
        return Value::list(std::vector<Value>(items.begin() + b, items.begin() + e), obj.seq_kind());
    }
    std::vector<int64_t> idx;
    for (int64_t i = b; s > 0 ? i < e : i > e; i += s) idx.push_back(i);
    charge(idx.size());
    if (is_str) {
        std::string out;
        for (int64_t i : idx) {
            if (ascii) {
                out += obj.str()[static_cast<size_t>(i)];
            } else {
                utf8_append(out, cps[static_cast<size_t>(i)]);
            }
        }
        return Value::string(std::move(out));
    }
    std::vector<Value> items;
    items.reserve(idx.size());
    for (int64_t i : idx) items.push_back(obj.list().items[static_cast<size_t>(i)]);
    return Value::list(std::move(items), obj.seq_kind());
}

std::shared_ptr<const ListObj> Interp::iterate(const Value& v) {
    switch (v.kind()) {
    case Kind::List: return v.list_ptr();
    case Kind::Undefined: {
        static const auto empty = std::make_shared<const ListObj>();
        return empty;
    }
    case Kind::Dict: {
        auto l = std::make_shared<ListObj>();
        l->items.reserve(v.dict().size());
        for (const auto& kv : v.dict().items) l->items.push_back(kv.first);
        charge(l->items.size());
        return l;
    }
    case Kind::String: {
        auto l = std::make_shared<ListObj>();
        const std::string& s = v.str();
        for (size_t i = 0; i < s.size();) {
            size_t start = i;
            utf8_next(s, i);
            l->items.push_back(Value::string(s.substr(start, i - start)));
        }
        charge(l->items.size());
        return l;
    }
    default: type_error(std::string("'") + type_name(v) + "' object is not iterable");
    }
}

Value Interp::call(const Value& callee, CallArgs& args) {
    if (callee.is_object() && callee.obj().callable()) return callee.obj().call(*this, args);
    if (callee.is_undefined()) callee.fail_undefined();
    type_error(std::string("'") + type_name(callee) + "' object is not callable");
}

Value Interp::apply_filter(const std::string& name, const Value& input, CallArgs& args) {
    FilterFn f = find_filter(name);
    if (!f) raise("TemplateRuntimeError", "No filter named '" + name + "' found.");
    return f(*this, input, args);
}

bool Interp::apply_test(const std::string& name, const Value& input, CallArgs& args) {
    TestFn t = find_test(name);
    if (!t) raise("TemplateRuntimeError", "No test named '" + name + "' found.");
    return t(*this, input, args);
}

// ---- expressions ----

Value Interp::eval(const Expr& e, const ScopePtr& sc) {
    try {
        return eval_inner(e, sc);
    } catch (TemplateError& err) {
        if (err.offset < 0) err.offset = e.offset;
        throw;
    }
}

void Interp::eval_args(const Expr& e, const ScopePtr& sc, CallArgs& args) {
    args.pos.reserve(e.items.size());
    for (const auto& a : e.items) args.pos.push_back(eval(*a, sc));
    if (e.star) {
        auto items = iterate(eval(*e.star, sc));
        args.pos.insert(args.pos.end(), items->items.begin(), items->items.end());
    }
    for (const auto& k : e.kwargs) args.kw.emplace_back(k.name, eval(*k.value, sc));
    if (e.starstar) {
        Value d = eval(*e.starstar, sc);
        if (!d.is_dict()) type_error("argument after ** must be a mapping, not " + std::string(type_name(d)));
        for (const auto& [k, v] : d.dict().items) {
            if (!k.is_string()) type_error("keywords must be strings");
            args.kw.emplace_back(k.str(), v);
        }
    }
}

Value Interp::eval_call(const Expr& e, const ScopePtr& sc) {
    Value callee;
    if (e.a->kind == ExprKind::Getattr) {
        Value obj = eval(*e.a->a, sc);
        const std::string& name = e.a->name;
        bool unsafe = false;
        if ((obj.is_string() || obj.is_list() || obj.is_dict()) && has_method(obj, name, unsafe)) {
            if (unsafe) unsafe_attribute(obj, name);
            CallArgs args;
            eval_args(e, sc, args);
            return call_method(*this, obj, name, args);
        }
        callee = getattr(obj, name);
    } else {
        callee = eval(*e.a, sc);
    }
    CallArgs args;
    eval_args(e, sc, args);
    return call(callee, args);
}

Value Interp::eval_filter(const Expr& e, const Value& input, const ScopePtr& sc) {
    if (!e.filter) raise("TemplateRuntimeError", "No filter named '" + e.name + "' found.");
    CallArgs args;
    eval_args(e, sc, args);
    return e.filter(*this, input, args);
}

bool Interp::eval_test(const Expr& e, const ScopePtr& sc) {
    Value v = eval(*e.a, sc);
    if (!e.test) raise("TemplateRuntimeError", "No test named '" + e.name + "' found.");
    CallArgs args;
    eval_args(e, sc, args);
    return e.test(*this, v, args);
}

Value Interp::eval_compare(const Expr& e, const ScopePtr& sc) {
    Value left = eval(*e.items[0], sc);
    bool r = true;
    for (size_t i = 0; i < e.cmp.size(); ++i) {
        Value right = eval(*e.items[i + 1], sc);
        switch (e.cmp[i]) {
        case CmpOp::Eq: r = py_equal(left, right); break;
        case CmpOp::Ne: r = !py_equal(left, right); break;
        case CmpOp::Lt: r = py_compare(left, right, "<") == -1; break;
        case CmpOp::Le: {
            int c = py_compare(left, right, "<=");
            r = c == -1 || c == 0;
            break;
        }
        case CmpOp::Gt: r = py_compare(left, right, ">") == 1; break;
        case CmpOp::Ge: {
            int c = py_compare(left, right, ">=");
            r = c == 1 || c == 0;
            break;
        }
        case CmpOp::In: r = contains(*this, right, left); break;
        case CmpOp::NotIn: r = !contains(*this, right, left); break;
        }
        if (!r) break;
        left = std::move(right);
    }
    return Value::boolean(r);
}

Value Interp::eval_inner(const Expr& e, const ScopePtr& sc) {
    check_stack(__builtin_frame_address(0));
    charge(1);
    switch (e.kind) {
    case ExprKind::Const: return e.value;
    case ExprKind::Name: return lookup(e.var, sc);
    case ExprKind::Getattr: return getattr(eval(*e.a, sc), e.name);
    case ExprKind::Getitem: {
        Value obj = eval(*e.a, sc);
        if (e.b->kind == ExprKind::Slice) return eval_slice(obj, *e.b, sc);
        return getitem(obj, eval(*e.b, sc));
    }
    case ExprKind::Slice: return Value::undefined("slice outside of a subscript");
    case ExprKind::Call: return eval_call(e, sc);
    case ExprKind::Filter: return eval_filter(e, eval(*e.a, sc), sc);
    case ExprKind::Test: return Value::boolean(eval_test(e, sc));
    case ExprKind::Neg:
    case ExprKind::Pos: {
        Value v = eval(*e.a, sc);
        bool neg = e.kind == ExprKind::Neg;
        if (v.is_int() || v.is_bool()) {
            if (!neg) return Value::integer(v.as_int());
            if (v.as_int() == INT64_MIN) raise("OverflowError", "integer overflow");
            return Value::integer(-v.as_int());
        }
        if (v.is_float()) return Value::number(neg ? -v.as_float() : v.as_float());
        if (v.is_undefined()) v.fail_undefined();
        type_error(std::string("bad operand type for unary ") + (neg ? "-" : "+") + ": '" + type_name(v) + "'");
    }
    case ExprKind::Not: return Value::boolean(!truthy(eval(*e.a, sc)));
    case ExprKind::And: {
        Value l = eval(*e.a, sc);
        return truthy(l) ? eval(*e.b, sc) : l;
    }
    case ExprKind::Or: {
        Value l = eval(*e.a, sc);
        return truthy(l) ? l : eval(*e.b, sc);
    }
    case ExprKind::Binary: {
        Value l = eval(*e.a, sc);
        Value r = eval(*e.b, sc);
        return binary_op(*this, e.op, l, r);
    }
    case ExprKind::Compare: return eval_compare(e, sc);
    case ExprKind::Concat: {
        std::string s;
        for (const auto& part : e.items) {
            append_str(s, eval(*part, sc));
            check_size(s.size());
        }
        charge(s.size());
        return Value::string(std::move(s));
    }
    case ExprKind::Cond:
        if (truthy(eval(*e.a, sc))) return eval(*e.b, sc);
        if (e.c) return eval(*e.c, sc);
        return Value::undefined("the inline if-expression on line " + line_of(prog_, e.offset) +
                                " evaluated to false and no else section was defined.");
    case ExprKind::List:
    case ExprKind::Tuple: {
        std::vector<Value> items;
        items.reserve(e.items.size());
        for (const auto& x : e.items) items.push_back(eval(*x, sc));
        charge(items.size());
        return Value::list(std::move(items), e.kind == ExprKind::Tuple ? SeqKind::Tuple : SeqKind::List);
    }
    case ExprKind::Dict: {
        auto d = std::make_shared<DictObj>();
        for (size_t i = 0; i + 1 < e.items.size(); i += 2) {
            Value k = eval(*e.items[i], sc);
            Value v = eval(*e.items[i + 1], sc);
            if (!hashable(k)) type_error(std::string("unhashable type: '") + type_name(k) + "'");
            d->set(std::move(k), std::move(v));
        }
        charge(d->size());
        return Value::dict(std::move(d));
    }
    }
    return Value::none();
}

// ---- statements ----

void Interp::assign(const Target& t, const Value& v, const ScopePtr& sc) {
    switch (t.kind) {
    case Target::Name: sc->set(t.var, v); return;
    case Target::NsAttr: {
        Value ns = lookup(t.var, sc);
        if (!ns.is_namespace()) raise("TemplateRuntimeError", "cannot assign attribute on non-namespace object");
        ns.dict().set(Value::string(t.attr), v);
        return;
    }
    case Target::Tuple: {
        auto items = iterate(v);
        size_t n = items->items.size(), want = t.items.size();
        if (n < want)
            raise("ValueError", "not enough values to unpack (expected " + std::to_string(want) + ", got " +
                                    std::to_string(n) + ")");
        if (n > want) raise("ValueError", "too many values to unpack (expected " + std::to_string(want) + ")");
        for (size_t i = 0; i < n; ++i) assign(t.items[i], items->items[i], sc);
        return;
    }
    }
}

Flow Interp::exec(const Body& body, const ScopePtr& sc, std::string& out) {
    for (const auto& s : body) {
        Flow f;
        try {
            f = exec_stmt(*s, sc, out);
        } catch (TemplateError& err) {
            if (err.offset < 0) err.offset = s->offset;
            throw;
        }
        if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
}

static ScopePtr child(const ScopePtr& parent) {
    auto s = std::make_shared<Scope>();
    s->parent = parent;
    return s;
}

Flow Interp::run_for(const Stmt& s, const ScopePtr& sc, const Value& iterable, std::string& out, uint32_t depth0) {
    std::shared_ptr<const ListObj> items = iterate(iterable);
    if (s.cond) {
        // `for x in xs if cond`: filter first, so loop.length and loop.last count kept items only
        auto kept = std::make_shared<ListObj>();
        ScopePtr tmp = child(sc);
        for (const Value& item : items->items) {
            count_iteration();
            tmp->vars.clear();
            assign(s.target, item, tmp);
            if (truthy(eval(*s.cond, tmp))) kept->items.push_back(item);
        }
        items = kept;
    }
    if (items->items.empty()) return exec(s.else_body, child(sc), out);
    auto loop = std::make_shared<LoopObj>();
    loop->items = items;
    loop->depth0 = depth0;
    loop->stmt = &s;
    loop->scope = sc;
    Value loop_value = Value::object(loop);
    ScopePtr it;
    for (size_t i = 0; i < items->items.size(); ++i) {
        count_iteration();
        // each iteration starts from a fresh scope (a set in one is not seen by the next);
        // reuse the last one unless something (a macro defined inside) captured it
        if (!it || it.use_count() > 1) {
            it = child(sc);
        } else {
            it->vars.clear();
        }
        loop->index0 = i;
        it->vars.emplace_back(LOOP_ID, loop_value);
        assign(s.target, items->items[i], it);
        if (exec(s.body, it, out) == Flow::Break) break;
    }
    if (it) it->vars.clear();
    return Flow::Normal;
}

Value Interp::call_macro(const std::shared_ptr<MacroDef>& def, const ScopePtr& closure, CallArgs& args) {
    DepthGuard guard(*this);
    count_iteration();
    ScopePtr sc = child(closure);
    const size_t n = def->params.size();
    std::vector<bool> have(n, false);
    size_t n_pos = std::min(args.pos.size(), n);
    for (size_t i = 0; i < n_pos; ++i) {
        sc->set(def->params[i], args.pos[i]);
        have[i] = true;
    }
    auto& kw = args.kw;
    auto take_kw = [&](const std::string& name, Value& v) {
        for (auto it = kw.begin(); it != kw.end(); ++it)
            if (it->first == name) {
                v = std::move(it->second);
                kw.erase(it);
                return true;
            }
        return false;
    };
    bool found_caller = false;
    for (size_t i = n_pos; i < n; ++i) {
        Value v;
        if (take_kw(def->param_names[i], v)) {
            sc->set(def->params[i], std::move(v));
            have[i] = true;
        }
        if (def->param_names[i] == "caller") found_caller = true;
    }
    // defaults run in the macro's scope, in order, so one may use the parameters before it
    const size_t first_default = n - def->defaults.size();
    for (size_t i = 0; i < n; ++i) {
        if (have[i]) continue;
        if (i >= first_default) {
            sc->set(def->params[i], eval(*def->defaults[i - first_default], sc));
        } else {
            sc->set(def->params[i], Value::undefined("parameter '" + def->param_names[i] + "' was not provided"));
        }
    }
    if (def->uses_caller && !found_caller) {
        Value c;
        if (!take_kw("caller", c)) c = Value::undefined("No caller defined");
        sc->set(CALLER_ID, std::move(c));
    }
    if (def->uses_kwargs) {
        auto d = std::make_shared<DictObj>();
        for (auto& [k, v] : kw) d->set(Value::string(k), v);
        sc->set(KWARGS_ID, Value::dict(std::move(d)));
    } else if (!kw.empty()) {
        for (const auto& [k, v] : kw)
            if (k == "caller")
                type_error("macro '" + def->name + "' was invoked with two values for the special caller argument. This is most likely a bug.");
        type_error("macro '" + def->name + "' takes no keyword argument '" + kw.front().first + "'");
    }
    if (def->uses_varargs) {
        std::vector<Value> rest;
        if (args.pos.size() > n) rest.assign(args.pos.begin() + static_cast<ptrdiff_t>(n), args.pos.end());
        sc->set(VARARGS_ID, Value::tuple(std::move(rest)));
    } else if (args.pos.size() > n) {
        type_error("macro '" + def->name + "' takes not more than " + std::to_string(n) + " argument(s)");
    }
    std::string out;
    exec(def->body, sc, out);
    sc->vars.clear();
    return Value::string(std::move(out));
}

Flow Interp::exec_stmt(const Stmt& s, const ScopePtr& sc, std::string& out) {
    check_stack(__builtin_frame_address(0));
    charge(1);
    switch (s.kind) {
    case StmtKind::Text: emit(out, std::string_view(s.text)); return Flow::Normal;
    case StmtKind::Output: emit(out, eval(*s.expr, sc)); return Flow::Normal;
    case StmtKind::If: return truthy(eval(*s.expr, sc)) ? exec(s.body, sc, out) : exec(s.else_body, sc, out);
    case StmtKind::For: return run_for(s, sc, eval(*s.expr, sc), out, 0);
    case StmtKind::Set: assign(s.target, eval(*s.expr, sc), sc); return Flow::Normal;
    case StmtKind::SetBlock: {
        std::string buf;
        Flow f = exec(s.body, child(sc), buf);
        if (f != Flow::Normal) return f;
        Value v = Value::string(std::move(buf));
        for (const auto& flt : s.filters) v = eval_filter(*flt, v, sc);
        assign(s.target, v, sc);
        return Flow::Normal;
    }
    case StmtKind::Macro: {
        auto m = std::make_shared<MacroObj>();
        m->def = s.macro;
        m->closure = sc;
        track(sc);
        sc->set(s.target.var, Value::object(m));
        return Flow::Normal;
    }
    case StmtKind::CallBlock: {
        auto caller = std::make_shared<MacroObj>();
        caller->def = s.macro;
        caller->closure = sc;
        caller->is_caller = true;
        track(sc);
        const Expr& call = *s.expr;
        Value callee = eval(*call.a, sc);
        CallArgs args;
        eval_args(call, sc, args);
        args.kw.emplace_back("caller", Value::object(caller));
        emit(out, this->call(callee, args));
        return Flow::Normal;
    }
    case StmtKind::FilterBlock: {
        std::string buf;
        Flow f = exec(s.body, child(sc), buf);
        Value v = Value::string(std::move(buf));
        for (const auto& flt : s.filters) v = eval_filter(*flt, v, sc);
        emit(out, v);
        return f;
    }
    case StmtKind::With: {
        ScopePtr inner = child(sc);
        for (size_t i = 0; i < s.with_targets.size(); ++i) assign(s.with_targets[i], eval(*s.with_values[i], sc), inner);
        return exec(s.body, inner, out);
    }
    case StmtKind::Break: return Flow::Break;
    case StmtKind::Continue: return Flow::Continue;
    case StmtKind::Scope: return exec(s.body, child(sc), out);
    }
    return Flow::Normal;
}

} // namespace slm::chat
