// chat/ast.h - the parsed form of a template: expressions and statements as jinja2.nodes has
// them, with variable names interned to small integers.
#pragma once

#include "chat/value.h"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace slm::chat {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind : uint8_t {
    Const,    // value
    Name,     // var
    Getattr,  // a.name
    Getitem,  // a[b]
    Slice,    // start a, stop b, step c (each may be null); only as a Getitem index
    Call,     // a(items..., kwargs..., *star, **starstar)
    Filter,   // a | name(items..., kwargs...); a is null in filter blocks and {% set x | f %}
    Test,     // a is name(items..., kwargs...)
    Neg,      // -a
    Pos,      // +a
    Not,      // not a
    And,      // a and b
    Or,       // a or b
    Binary,   // a op b
    Compare,  // items[0] cmp[0] items[1] cmp[1] items[2] ... (chained like Python)
    Concat,   // items[0] ~ items[1] ~ ...
    Cond,     // b if a else c (c may be null)
    List,     // [items...]
    Tuple,    // (items...)
    Dict,     // {items[0]: items[1], items[2]: items[3], ...}
};

enum class BinOp : uint8_t { Add, Sub, Mul, Div, FloorDiv, Mod, Pow };
enum class CmpOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge, In, NotIn };

class Interp;
struct CallArgs;
using FilterFn = Value (*)(Interp&, const Value& input, CallArgs& args);
using TestFn = bool (*)(Interp&, const Value& input, CallArgs& args);

struct Keyword {
    std::string name;
    ExprPtr value;
};

struct Expr {
    ExprKind kind = ExprKind::Const;
    BinOp op = BinOp::Add;
    uint32_t offset = 0;           // in the normalized source, for error lines
    uint32_t var = 0;              // Name
    Value value;                   // Const
    std::string name;              // Getattr attribute; Filter and Test name
    ExprPtr a, b, c;
    std::vector<ExprPtr> items;
    std::vector<CmpOp> cmp;
    std::vector<Keyword> kwargs;
    ExprPtr star, starstar;        // Call / Filter / Test: *args and **kwargs
    FilterFn filter = nullptr;     // Filter: resolved at parse time (null: unknown, raise when run)
    TestFn test = nullptr;         // Test: likewise
};

// An assignment target: a name, a tuple of targets, or a namespace attribute (ns.attr).
struct Target {
    enum Kind : uint8_t { Name, Tuple, NsAttr } kind = Name;
    uint32_t var = 0;
    std::string attr;
    std::vector<Target> items;
};

struct MacroDef {
    std::string name;
    uint32_t offset = 0;
    std::vector<uint32_t> params;       // variable ids
    std::vector<std::string> param_names;
    std::vector<ExprPtr> defaults;      // for the last defaults.size() params
    Body body;
    bool uses_caller = false, uses_varargs = false, uses_kwargs = false;
};

enum class StmtKind : uint8_t {
    Text,        // text
    Output,      // {{ expr }}
    If,          // if expr: body else else_body (elif is a nested If in else_body)
    For,         // for target in expr [if cond] [recursive]: body else else_body
    Set,         // set target = expr
    SetBlock,    // set target [| filters]: body endset
    Macro,       // macro
    CallBlock,   // call[(macro params)] expr: macro body endcall
    FilterBlock, // filter filters: body endfilter
    With,        // with targets = values: body
    Break,
    Continue,
    Scope,       // a plain body: {% block %}, {% generation %}
};

struct Stmt {
    StmtKind kind = StmtKind::Text;
    uint32_t offset = 0;
    std::string text;
    ExprPtr expr, cond;
    Target target;
    bool recursive = false;
    Body body, else_body;
    std::vector<ExprPtr> filters;       // Filter expressions with a null operand, applied in order
    std::shared_ptr<MacroDef> macro;    // Macro, CallBlock (the caller's body)
    std::vector<Target> with_targets;
    std::vector<ExprPtr> with_values;
};

// A whole parsed template.
struct Program {
    std::string name;
    std::string source;                  // normalized (see normalize_source)
    std::vector<std::string> names;      // variable names by id
    std::unordered_map<std::string, uint32_t> ids;
    Body body;
    uint32_t id(const std::string& n) const {
        auto it = ids.find(n);
        return it == ids.end() ? UINT32_MAX : it->second;
    }
};

// Parses a template. Throws SyntaxError (chat/lexer.h) with the message and source offset.
// `opt`: Hugging Face's settings by default; task templates use plain Jinja2's (see LexOptions).
struct LexOptions;
std::shared_ptr<Program> parse_program(std::string name, std::string_view source);
std::shared_ptr<Program> parse_program(std::string name, std::string_view source, const LexOptions& opt);

// Resolves builtin filters and tests by name (null if unknown).
FilterFn find_filter(const std::string& name);
TestFn find_test(const std::string& name);

} // namespace slm::chat
