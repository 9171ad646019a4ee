// chat/value.h - the values a chat template computes with, following Python's data model as
// Jinja2 exposes it: None, bool, int, float, str, list, tuple, dict, plus Jinja2's Undefined,
// namespace() objects and callables (macros, builtins, bound methods, the loop object).
//
// Strings are UTF-8 and immutable (shared, so passing message contents around never copies them);
// lists and dicts are immutable once built, as Hugging Face's ImmutableSandboxedEnvironment makes
// them. Only namespaces are mutable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace slm::chat {

class Value;
struct ListObj;
struct DictObj;
struct Object;
struct UndefInfo;

enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Object };

// What a List value is in Python: a list, a tuple, or a one-way iterator (a generator from
// select/map, a reversed() iterator): iterable, always true, without len() or indexing.
enum class SeqKind : uint8_t { List, Tuple, Iterator };

// An error raised while rendering: `type` is the Python exception class Jinja2 would raise
// ("UndefinedError", "TypeError", "TemplateError" ...), `offset` where in the normalized source
// (-1 until the node being evaluated fills it in).
struct TemplateError {
    std::string type;
    std::string message;
    int64_t offset = -1;
};
[[noreturn]] void raise(std::string type, std::string message);
[[noreturn]] void type_error(std::string message);

class Value {
public:
    Value() = default;  // an anonymous Undefined

    static Value undefined(std::string message, bool security = false);
    static Value none() { return Value(Kind::None); }
    static Value boolean(bool b) {
        Value v(Kind::Bool);
        v.i_ = b;
        return v;
    }
    static Value integer(int64_t i) {
        Value v(Kind::Int);
        v.i_ = i;
        return v;
    }
    static Value number(double f) {
        Value v(Kind::Float);
        v.f_ = f;
        return v;
    }
    static Value string(std::string s, bool markup = false);
    static Value string(std::shared_ptr<const std::string> s, bool markup = false);
    static Value list(std::vector<Value> items, SeqKind kind = SeqKind::List, std::string iter_type = {});
    static Value tuple(std::vector<Value> items) { return list(std::move(items), SeqKind::Tuple); }
    static Value dict(std::shared_ptr<DictObj> d);
    static Value empty_dict();
    static Value ns(std::shared_ptr<DictObj> d);
    static Value object(std::shared_ptr<Object> o);

    Kind kind() const { return kind_; }
    bool is_undefined() const { return kind_ == Kind::Undefined; }
    bool is_none() const { return kind_ == Kind::None; }
    bool is_bool() const { return kind_ == Kind::Bool; }
    bool is_int() const { return kind_ == Kind::Int; }
    bool is_float() const { return kind_ == Kind::Float; }
    bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
    bool is_string() const { return kind_ == Kind::String; }
    bool is_list() const { return kind_ == Kind::List; }
    bool is_dict() const { return kind_ == Kind::Dict; }
    bool is_namespace() const { return kind_ == Kind::Namespace; }
    bool is_object() const { return kind_ == Kind::Object; }
    bool is_markup() const { return kind_ == Kind::String && markup_; }

    bool as_bool() const { return i_ != 0; }
    int64_t as_int() const { return i_; }             // Int or Bool
    double as_float() const;                          // Int, Bool or Float
    const std::string& str() const;                   // String
    std::shared_ptr<const std::string> str_ptr() const;
    const ListObj& list() const;                      // List
    std::shared_ptr<const ListObj> list_ptr() const;
    SeqKind seq_kind() const;                         // List
    DictObj& dict() const;                            // Dict or Namespace
    std::shared_ptr<DictObj> dict_ptr() const;
    Object& obj() const;                              // Object
    std::shared_ptr<Object> obj_ptr() const;
    const UndefInfo* undef() const;                   // Undefined (null for an anonymous one)
    // Raises the UndefinedError (or SecurityError) this Undefined stands for.
    [[noreturn]] void fail_undefined() const;
    // Identity, for the `sameas` test: same heap object, or equal scalars.
    bool same_as(const Value& o) const;

private:
    explicit Value(Kind k) : kind_(k) {}
    Kind kind_ = Kind::Undefined;
    bool markup_ = false;
    union {
        int64_t i_ = 0;
        double f_;
    };
    std::shared_ptr<void> p_;
};

struct UndefInfo {
    std::string message;   // "'x' is undefined", "'dict object' has no attribute 'y'"
    bool security = false; // an unsafe attribute: using it raises SecurityError
};

struct ListObj {
    std::vector<Value> items;
    SeqKind kind = SeqKind::List;
    uint32_t depth = 1;     // nesting of lists and dicts, bounded by MAX_VALUE_DEPTH
    std::string iter_type;  // Iterator: Python's type name ("generator", "list_reverseiterator")
};

// An insertion-ordered dict (Python 3.7+ semantics) keyed by hashable values.
struct DictObj {
    std::vector<std::pair<Value, Value>> items;
    uint32_t depth = 1;  // as ListObj::depth (namespaces, being mutable, always say 1)
    const Value* find(const Value& key) const;
    const Value* find(std::string_view key) const;
    void set(Value key, Value value);
    size_t size() const { return items.size(); }

private:
    mutable std::vector<uint32_t> index_;  // open-addressing hash of items' positions, built on demand
    mutable size_t indexed_ = 0;           // items covered by index_
    void reindex() const;
    ptrdiff_t lookup(const Value& key, uint64_t h) const;
};

class Interp;
struct CallArgs;

// Anything with attributes or a call operator that is not plain data.
struct Object {
    virtual ~Object() = default;
    virtual const char* type_name() const = 0;                   // Python's type name
    virtual std::string repr() const;                            // str() and repr()
    virtual bool callable() const { return false; }
    virtual Value call(Interp& in, CallArgs& args);
    virtual Value get_attr(Interp& in, const std::string& name); // an Undefined if absent
};

// ---- Python semantics ----------------------------------------------------------------------

const char* type_name(const Value& v);          // "int", "str", "dict", "NoneType", "Undefined" ...
std::string object_type_repr(const Value& v);   // Jinja2's "dict object", "None"
// Jinja2's Undefined for a missing attribute: "'dict object' has no attribute 'x'".
Value no_attribute(const std::string& type_repr, const std::string& name);
bool truthy(const Value& v);
std::string to_str(const Value& v);             // str(v): what {{ v }} prints
std::string repr(const Value& v);               // repr(v)
void append_str(std::string& out, const Value& v);
void append_repr(std::string& out, const Value& v, int depth = 0);
std::string float_repr(double d);               // Python's repr(float): shortest round-trip
std::string int_str(int64_t i);
bool py_equal(const Value& a, const Value& b, int depth = 0);
// Python's <: -1, 0, 1; raises TypeError for unorderable types (names `op` in the message).
int py_compare(const Value& a, const Value& b, const char* op = "<", int depth = 0);
uint64_t py_hash(const Value& v);               // consistent with py_equal for hashable values
bool hashable(const Value& v);

// Deepest nesting of lists and dicts a template may build, and that repr, tojson and comparisons
// follow (through namespaces too) before raising, as Python's recursion limit would.
constexpr int MAX_VALUE_DEPTH = 500;
// Nesting depth of a value: 0 for scalars, ListObj/DictObj::depth for containers.
uint32_t value_depth(const Value& v);

// ---- UTF-8 helpers ---------------------------------------------------------------------------

size_t utf8_length(std::string_view s);                      // code points (bytes of bad UTF-8 count 1 each)
// Decodes the code point at s[i], advancing i; a bad byte decodes as itself (0x80..0xFF).
uint32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, uint32_t cp);
std::vector<uint32_t> utf8_decode(std::string_view s);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
bool is_ascii(std::string_view s);

bool py_isspace(uint32_t cp);       // str.isspace / str.split() / \s in Python's re
bool py_isalpha(uint32_t cp);       // approximate outside Latin, Greek and Cyrillic
bool py_isdigit(uint32_t cp);
bool py_isalnum(uint32_t cp);
bool py_isprintable(uint32_t cp);   // repr() escapes the others
uint32_t py_upper(uint32_t cp);     // simple case mappings (ß upper-cases to "SS" in py_upper_str)
uint32_t py_lower(uint32_t cp);
bool py_isupper(uint32_t cp);
bool py_islower(uint32_t cp);
std::string py_upper_str(std::string_view s);
std::string py_lower_str(std::string_view s);

} // namespace slm::chat
