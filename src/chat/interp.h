// chat/interp.h - evaluates a parsed template (chat/ast.h) with Jinja2's semantics inside Hugging
// Face's ImmutableSandboxedEnvironment: Python operators and truthiness, the sandbox's attribute
// rules (lists and dicts cannot be mutated), default Undefined, and Jinja2's scoping (each for
// iteration, macro call and with block gets its own scope; if blocks do not).
//
// Every render is bounded: nesting depth (macro calls, recursive loops), loop iterations, output
// size and total work (nodes evaluated plus bytes and items built), each with an error naming the limit.
#pragma once

#include "chat/ast.h"
#include "chat/value.h"

#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace slm::chat {

struct Limits {
    uint32_t max_depth = 100;                 // nested macro calls and recursive loops
    uint64_t max_iterations = 1000000;        // loop iterations and macro calls, whole render
    uint64_t max_output_bytes = 64ull << 20;  // rendered text, and any string built on the way
    uint64_t max_work = 200000000;            // expression nodes evaluated + bytes and items built
};

struct CallArgs {
    std::vector<Value> pos;
    std::vector<std::pair<std::string, Value>> kw;
};

// Whether an argument was passed: bind() leaves missing ones as the anonymous Undefined, which
// no expression ever produces (every Undefined a template computes carries a message).
inline bool given(const Value& v) { return !(v.is_undefined() && v.undef() == nullptr); }

// Binds args to parameters by position then keyword, as a Python function `fname(names...)`
// would. Missing parameters come back as the anonymous Undefined (see given()).
std::vector<Value> bind(const CallArgs& args, std::initializer_list<const char*> names, const char* fname,
                        size_t n_required = 0);

struct Scope {
    std::shared_ptr<Scope> parent;
    std::vector<std::pair<uint32_t, Value>> vars;
    Value* find(uint32_t id) {
        for (auto& [k, v] : vars)
            if (k == id) return &v;
        return nullptr;
    }
    void set(uint32_t id, Value v) {
        if (Value* p = find(id)) {
            *p = std::move(v);
        } else {
            vars.emplace_back(id, std::move(v));
        }
    }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow : uint8_t { Normal, Break, Continue };

class Interp {
public:
    Interp(const Program& prog, const Limits& limits);
    ~Interp();

    // Context variables (render arguments) and the current time for strftime_now.
    void set_context(const std::string& name, Value v);
    void set_now(const std::tm& tm, long usec) {
        now_ = tm;
        now_usec_ = usec;
    }
    const std::tm& now() const { return now_; }
    long now_usec() const { return now_usec_; }

    std::string render();
    // Evaluates one expression in a fresh top-level scope (doc templates: `{{ [sol1, sol2] }}`).
    Value evaluate(const Expr& e);
    // Jinja2's StrictUndefined for output: printing an undefined value raises UndefinedError
    // instead of printing nothing (lm-evaluation-harness renders its task templates this way).
    void set_strict_undefined(bool on) { strict_undefined_ = on; }

    // ---- services for builtins ----
    Value getattr(const Value& obj, const std::string& name);
    Value getitem(const Value& obj, const Value& key);
    Value call(const Value& callee, CallArgs& args);
    // Python iter(): the items of a list, tuple, dict (keys), string (characters) or Undefined
    // (none). Raises TypeError for anything else.
    std::shared_ptr<const ListObj> iterate(const Value& v);
    Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
    bool apply_test(const std::string& name, const Value& input, CallArgs& args);
    // Counts work (see Limits::max_work) and checks a string being built stays within max_output_bytes.
    void charge(uint64_t units) {
        work_ += units;
        if (work_ > limits_.max_work) fail_work();
    }
    void check_size(uint64_t bytes) const {
        if (bytes > limits_.max_output_bytes) fail_size(bytes);
    }
    uint64_t max_output_bytes() const { return limits_.max_output_bytes; }
    void count_iteration() {
        if (++iterations_ > limits_.max_iterations) fail_iterations();
    }
    // Registers a namespace or a captured scope: those still alive at the end of the render are
    // cleared, so reference cycles through them (ns.self = ns, a macro stored in the scope it
    // closes over) free. Dead entries are dropped as the lists grow.
    void track(const std::shared_ptr<DictObj>& ns);
    void track(const ScopePtr& sc);
    const Program& program() const { return prog_; }

    // ---- evaluation ----
    Value eval(const Expr& e, const ScopePtr& sc);
    Flow exec(const Body& body, const ScopePtr& sc, std::string& out);
    // Runs a macro or caller body with bound arguments.
    Value call_macro(const std::shared_ptr<MacroDef>& def, const ScopePtr& closure, CallArgs& args);
    // Runs a for statement (also loop(...) of a recursive loop at depth0 > 0).
    Flow run_for(const Stmt& s, const ScopePtr& sc, const Value& iterable, std::string& out, uint32_t depth0);

    struct DepthGuard {
        Interp& in;
        explicit DepthGuard(Interp& i);
        ~DepthGuard() { --in.depth_; }
    };

private:
    const Program& prog_;
    Limits limits_;
    uint64_t work_ = 0, iterations_ = 0;
    uint32_t depth_ = 0;
    std::vector<Value> context_;  // by variable id; the anonymous Undefined = not set
    std::vector<Value> globals_;
    std::tm now_{};
    long now_usec_ = 0;
    const char* stack_base_ = nullptr;  // frame of render(): the stack used is measured from here
    std::vector<std::weak_ptr<DictObj>> namespaces_;
    std::vector<std::weak_ptr<Scope>> scopes_;
    size_t namespaces_compacted_ = 64, scopes_compacted_ = 64;
    bool strict_undefined_ = false;

    // Nested macro calls, loops and expressions are checked against the C++ stack they use too,
    // besides max_depth, so no template can overflow the stack.
    static constexpr size_t MAX_STACK_BYTES = 4u << 20;
    void check_stack(const void* frame) const {
        const char* here = static_cast<const char*>(frame);
        if (stack_base_ > here && static_cast<size_t>(stack_base_ - here) > MAX_STACK_BYTES) fail_stack();
    }
    [[noreturn]] static void fail_stack();
    [[noreturn]] void fail_work() const;
    [[noreturn]] void fail_size(uint64_t bytes) const;
    [[noreturn]] void fail_iterations() const;

    Value lookup(uint32_t id, const ScopePtr& sc) const;
    Value eval_inner(const Expr& e, const ScopePtr& sc);
    Value eval_call(const Expr& e, const ScopePtr& sc);
    void eval_args(const Expr& e, const ScopePtr& sc, CallArgs& args);
    Value eval_filter(const Expr& e, const Value& input, const ScopePtr& sc);
    bool eval_test(const Expr& e, const ScopePtr& sc);
    Value eval_compare(const Expr& e, const ScopePtr& sc);
    Value eval_slice(const Value& obj, const Expr& slice, const ScopePtr& sc);
    void assign(const Target& t, const Value& v, const ScopePtr& sc);
    Flow exec_stmt(const Stmt& s, const ScopePtr& sc, std::string& out);
    void emit(std::string& out, const Value& v);
    void emit(std::string& out, std::string_view text);
};

// ---- builtins (chat/builtins.cpp) ----

// Python operators.
Value binary_op(Interp& in, BinOp op, const Value& a, const Value& b);
bool contains(Interp& in, const Value& container, const Value& item);  // `item in container`
// Methods of str, list, tuple and dict. has_method says whether `name` is one (and whether the
// sandbox forbids it: list.append, dict.update ... mutate).
bool has_method(const Value& self, const std::string& name, bool& unsafe);
Value call_method(Interp& in, const Value& self, const std::string& name, CallArgs& args);
// The global functions (range, dict, namespace, raise_exception, strftime_now, joiner, cycler).
std::vector<std::pair<std::string, Value>> make_globals();
// str % args (printf-style) and str.format.
std::string percent_format(Interp& in, const std::string& fmt, const Value& args);
std::string str_format(Interp& in, const std::string& fmt, const CallArgs& args);
// Python's json.dumps with Hugging Face's tojson defaults.
std::string to_json(Interp& in, const Value& v, bool ensure_ascii, const Value& indent, const std::string& item_sep,
                    const std::string& key_sep, bool sort_keys);
// HTML escaping (the escape filter and Markup arithmetic).
std::string html_escape(std::string_view s);
// A Markup-aware `a + b` for strings.
Value markup_concat(const Value& a, const Value& b);

} // namespace slm::chat
