// chat/value.cpp - Python's data model for template values: printing, equality, ordering,
// hashing, and the Unicode character classes str methods need.
#include "chat/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

namespace slm::chat {

void raise(std::string type, std::string message) { throw TemplateError{std::move(type), std::move(message), -1}; }
void type_error(std::string message) { raise("TypeError", std::move(message)); }

// ---- construction and access -----------------------------------------------------------------

Value Value::undefined(std::string message, bool security) {
    Value v(Kind::Undefined);
    v.p_ = std::make_shared<UndefInfo>(UndefInfo{std::move(message), security});
    return v;
}

Value Value::string(std::string s, bool markup) {
    return string(std::make_shared<const std::string>(std::move(s)), markup);
}

Value Value::string(std::shared_ptr<const std::string> s, bool markup) {
    Value v(Kind::String);
    v.markup_ = markup;
    v.p_ = std::const_pointer_cast<std::string>(std::move(s));
    return v;
}

uint32_t value_depth(const Value& v) {
    if (v.is_list()) return v.list().depth;
    if (v.is_dict()) return v.dict().depth;
    return 0;
}

Value Value::list(std::vector<Value> items, SeqKind kind, std::string iter_type) {
    Value v(Kind::List);
    auto l = std::make_shared<ListObj>();
    uint32_t d = 0;
    for (const Value& x : items) d = std::max(d, value_depth(x));
    // Deeper values would recurse past the stack when printed, compared or freed.
    if (d >= MAX_VALUE_DEPTH) raise("RecursionError", "lists and dicts nested more than " + std::to_string(MAX_VALUE_DEPTH) + " deep");
    l->depth = d + 1;
    l->items = std::move(items);
    l->kind = kind;
    l->iter_type = std::move(iter_type);
    v.p_ = std::move(l);
    return v;
}

Value Value::dict(std::shared_ptr<DictObj> d) {
    Value v(Kind::Dict);
    v.p_ = std::move(d);
    return v;
}

Value Value::empty_dict() { return dict(std::make_shared<DictObj>()); }

Value Value::ns(std::shared_ptr<DictObj> d) {
    Value v(Kind::Namespace);
    v.p_ = std::move(d);
    return v;
}

Value Value::object(std::shared_ptr<Object> o) {
    Value v(Kind::Object);
    v.p_ = std::move(o);
    return v;
}

double Value::as_float() const { return kind_ == Kind::Float ? f_ : static_cast<double>(i_); }
const std::string& Value::str() const { return *static_cast<const std::string*>(p_.get()); }
std::shared_ptr<const std::string> Value::str_ptr() const { return std::static_pointer_cast<const std::string>(p_); }
const ListObj& Value::list() const { return *static_cast<const ListObj*>(p_.get()); }
std::shared_ptr<const ListObj> Value::list_ptr() const { return std::static_pointer_cast<const ListObj>(p_); }
SeqKind Value::seq_kind() const { return list().kind; }
DictObj& Value::dict() const { return *static_cast<DictObj*>(p_.get()); }
std::shared_ptr<DictObj> Value::dict_ptr() const { return std::static_pointer_cast<DictObj>(p_); }
Object& Value::obj() const { return *static_cast<Object*>(p_.get()); }
std::shared_ptr<Object> Value::obj_ptr() const { return std::static_pointer_cast<Object>(p_); }
const UndefInfo* Value::undef() const { return static_cast<const UndefInfo*>(p_.get()); }

void Value::fail_undefined() const {
    const UndefInfo* u = undef();
    if (!u) raise("UndefinedError", "value is undefined");
    raise(u->security ? "SecurityError" : "UndefinedError", u->message);
}

bool Value::same_as(const Value& o) const {
    if (kind_ != o.kind_) return false;
    switch (kind_) {
    case Kind::Undefined: return p_ == o.p_;
    case Kind::None: return true;
    case Kind::Bool:
    case Kind::Int: return i_ == o.i_;
    case Kind::Float: return f_ == o.f_;
    case Kind::String: return p_ == o.p_ || str() == o.str();
    default: return p_ == o.p_;
    }
}

std::string Object::repr() const { return std::string("<") + type_name() + " object>"; }
Value Object::call(Interp&, CallArgs&) { type_error(std::string("'") + type_name() + "' object is not callable"); }
Value Object::get_attr(Interp&, const std::string& name) {
    return no_attribute(std::string(type_name()) + " object", name);
}

// ---- dict ------------------------------------------------------------------------------------

static uint64_t hash_bytes(std::string_view s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

uint64_t py_hash(const Value& v) {
    switch (v.kind()) {
    case Kind::None: return 0x9e3779b97f4a7c15ull;
    case Kind::Bool:
    case Kind::Int: return mix(static_cast<uint64_t>(v.as_int()));
    case Kind::Float: {
        double d = v.as_float();
        // 1.0 == 1 == True: equal numbers hash alike
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return mix(static_cast<uint64_t>(static_cast<int64_t>(d)));
        uint64_t bits;
        std::memcpy(&bits, &d, sizeof bits);
        return mix(bits);
    }
    case Kind::String: return hash_bytes(v.str());
    case Kind::List: {
        uint64_t h = 0x345678;
        for (const Value& x : v.list().items) h = mix(h ^ py_hash(x)) + 0x9e3779b9;
        return h;
    }
    default: return mix(reinterpret_cast<uintptr_t>(&v.obj()));
    }
}

bool hashable(const Value& v) {
    switch (v.kind()) {
    case Kind::None:
    case Kind::Bool:
    case Kind::Int:
    case Kind::Float:
    case Kind::String: return true;
    case Kind::List:
        if (v.seq_kind() != SeqKind::Tuple) return false;
        for (const Value& x : v.list().items)
            if (!hashable(x)) return false;
        return true;
    case Kind::Dict: return false;
    default: return true;  // identity-hashed objects, Undefined
    }
}

static constexpr size_t LINEAR_MAX = 8;

ptrdiff_t DictObj::lookup(const Value& key, uint64_t h) const {
    if (items.size() <= LINEAR_MAX) {
        for (size_t i = 0; i < items.size(); ++i)
            if (py_equal(items[i].first, key)) return static_cast<ptrdiff_t>(i);
        return -1;
    }
    if (indexed_ != items.size()) reindex();
    size_t mask = index_.size() - 1;
    for (size_t slot = h & mask;; slot = (slot + 1) & mask) {
        uint32_t pos = index_[slot];
        if (pos == 0) return -1;
        if (py_equal(items[pos - 1].first, key)) return pos - 1;
    }
}

void DictObj::reindex() const {
    size_t cap = 16;
    while (cap < items.size() * 2) cap *= 2;
    index_.assign(cap, 0);
    for (size_t i = 0; i < items.size(); ++i) {
        size_t slot = py_hash(items[i].first) & (cap - 1);
        while (index_[slot] != 0) slot = (slot + 1) & (cap - 1);
        index_[slot] = static_cast<uint32_t>(i + 1);
    }
    indexed_ = items.size();
}

const Value* DictObj::find(const Value& key) const {
    if (key.is_string()) return find(std::string_view(key.str()));
    ptrdiff_t i = lookup(key, items.size() <= LINEAR_MAX ? 0 : py_hash(key));
    return i < 0 ? nullptr : &items[i].second;
}

const Value* DictObj::find(std::string_view key) const {
    if (items.size() <= LINEAR_MAX) {
        for (const auto& [k, v] : items)
            if (k.is_string() && k.str() == key) return &v;
        return nullptr;
    }
    if (indexed_ != items.size()) reindex();
    size_t mask = index_.size() - 1;
    for (size_t slot = hash_bytes(key) & mask;; slot = (slot + 1) & mask) {
        uint32_t pos = index_[slot];
        if (pos == 0) return nullptr;
        const Value& k = items[pos - 1].first;
        if (k.is_string() && k.str() == key) return &items[pos - 1].second;
    }
}

void DictObj::set(Value key, Value value) {
    uint32_t d = value_depth(value);
    if (d >= MAX_VALUE_DEPTH) raise("RecursionError", "lists and dicts nested more than " + std::to_string(MAX_VALUE_DEPTH) + " deep");
    if (d + 1 > depth) depth = d + 1;
    uint64_t h = py_hash(key);
    ptrdiff_t i = lookup(key, h);
    if (i >= 0) {
        items[i].second = std::move(value);
        return;
    }
    items.emplace_back(std::move(key), std::move(value));
    if (indexed_ == items.size() - 1 && !index_.empty() && items.size() * 2 <= index_.size()) {
        size_t mask = index_.size() - 1;
        size_t slot = h & mask;
        while (index_[slot] != 0) slot = (slot + 1) & mask;
        index_[slot] = static_cast<uint32_t>(items.size());
        indexed_ = items.size();
    }
}

// ---- printing --------------------------------------------------------------------------------

const char* type_name(const Value& v) {
    switch (v.kind()) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return v.is_markup() ? "Markup" : "str";
    case Kind::List:
        switch (v.seq_kind()) {
        case SeqKind::List: return "list";
        case SeqKind::Tuple: return "tuple";
        case SeqKind::Iterator: return v.list().iter_type.c_str();
        }
        return "list";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Object: return v.obj().type_name();
    }
    return "object";
}

std::string object_type_repr(const Value& v) {
    if (v.is_none()) return "None";
    return std::string(type_name(v)) + " object";
}

Value no_attribute(const std::string& type_repr, const std::string& name) {
    std::string m;
    m.reserve(type_repr.size() + name.size() + 24);
    m.append("'").append(type_repr).append("' has no attribute '").append(name).append("'");
    return Value::undefined(std::move(m));
}

bool truthy(const Value& v) {
    switch (v.kind()) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool:
    case Kind::Int: return v.as_int() != 0;
    case Kind::Float: return v.as_float() != 0.0;
    case Kind::String: return !v.str().empty();
    case Kind::List: return v.seq_kind() == SeqKind::Iterator || !v.list().items.empty();
    case Kind::Dict: return v.dict().size() != 0;
    default: return true;
    }
}

std::string int_str(int64_t i) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, i);
    return std::string(buf, r.ptr);
}

std::string float_repr(double d) {
    if (std::isnan(d)) return "nan";
    if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
    // The shortest digits that round-trip, in scientific form ("1.5e-07"); Python writes the
    // same digits in fixed notation when the exponent is in [-4, 16).
    char buf[40];
    auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string sci(buf, r.ptr);
    size_t epos = sci.find('e');
    int exp = std::atoi(sci.c_str() + epos + 1);
    if (exp < -4 || exp >= 16) return sci;
    bool neg = sci[0] == '-';
    std::string digits;
    for (size_t i = neg ? 1 : 0; i < epos; ++i)
        if (sci[i] != '.') digits += sci[i];
    std::string out = neg ? "-" : "";
    if (exp >= 0) {
        size_t n_int = static_cast<size_t>(exp) + 1;
        if (digits.size() <= n_int) {
            out += digits + std::string(n_int - digits.size(), '0') + ".0";
        } else {
            out += digits.substr(0, n_int) + "." + digits.substr(n_int);
        }
    } else {
        out += "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
    }
    return out;
}

static void append_hex(std::string& out, uint32_t v, int width) {
    static const char* hex = "0123456789abcdef";
    for (int s = (width - 1) * 4; s >= 0; s -= 4) out += hex[(v >> s) & 15];
}

static void append_str_repr(std::string& out, std::string_view s) {
    char quote = '\'';
    if (s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos) quote = '"';
    out += quote;
    size_t i = 0;
    while (i < s.size()) {
        size_t start = i;
        uint32_t cp = utf8_next(s, i);
        if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
            out += '\\';
            out += static_cast<char>(cp);
        } else if (cp == '\t') {
            out += "\\t";
        } else if (cp == '\n') {
            out += "\\n";
        } else if (cp == '\r') {
            out += "\\r";
        } else if (cp < 0x20 || cp == 0x7f) {
            out += "\\x";
            append_hex(out, cp, 2);
        } else if (cp < 0x7f) {
            out += static_cast<char>(cp);
        } else if (py_isprintable(cp) && i - start > 1) {
            out.append(s.substr(start, i - start));
        } else if (cp <= 0xff) {
            out += "\\x";
            append_hex(out, cp, 2);
        } else if (cp <= 0xffff) {
            out += "\\u";
            append_hex(out, cp, 4);
        } else {
            out += "\\U";
            append_hex(out, cp, 8);
        }
    }
    out += quote;
}

void append_repr(std::string& out, const Value& v, int depth) {
    if (depth > MAX_VALUE_DEPTH) raise("RecursionError", "maximum recursion depth exceeded while getting the repr of an object");
    switch (v.kind()) {
    case Kind::Undefined: out += "Undefined"; return;
    case Kind::String:
        if (v.is_markup()) {
            out += "Markup(";
            append_str_repr(out, v.str());
            out += ')';
        } else {
            append_str_repr(out, v.str());
        }
        return;
    case Kind::List: {
        const ListObj& l = v.list();
        if (l.kind == SeqKind::Iterator) {
            out += "<" + l.iter_type + " object>";
            return;
        }
        bool tuple = l.kind == SeqKind::Tuple;
        out += tuple ? '(' : '[';
        for (size_t i = 0; i < l.items.size(); ++i) {
            if (i) out += ", ";
            append_repr(out, l.items[i], depth + 1);
        }
        if (tuple && l.items.size() == 1) out += ',';
        out += tuple ? ')' : ']';
        return;
    }
    case Kind::Dict:
    case Kind::Namespace: {
        if (v.is_namespace()) out += "<Namespace ";
        out += '{';
        bool first = true;
        for (const auto& [k, x] : v.dict().items) {
            if (!first) out += ", ";
            first = false;
            append_repr(out, k, depth + 1);
            out += ": ";
            append_repr(out, x, depth + 1);
        }
        out += '}';
        if (v.is_namespace()) out += '>';
        return;
    }
    default: append_str(out, v); return;
    }
}

void append_str(std::string& out, const Value& v) {
    switch (v.kind()) {
    case Kind::Undefined: return;
    case Kind::None: out += "None"; return;
    case Kind::Bool: out += v.as_bool() ? "True" : "False"; return;
    case Kind::Int: {
        char buf[24];
        auto r = std::to_chars(buf, buf + sizeof buf, v.as_int());
        out.append(buf, r.ptr);
        return;
    }
    case Kind::Float: out += float_repr(v.as_float()); return;
    case Kind::String: out += v.str(); return;
    case Kind::Object: out += v.obj().repr(); return;
    default: append_repr(out, v, 0); return;
    }
}

std::string to_str(const Value& v) {
    if (v.is_string()) return v.str();
    std::string s;
    append_str(s, v);
    return s;
}

std::string repr(const Value& v) {
    std::string s;
    append_repr(s, v, 0);
    return s;
}

// ---- equality and ordering -------------------------------------------------------------------

bool py_equal(const Value& a, const Value& b, int depth) {
    if (depth > MAX_VALUE_DEPTH) raise("RecursionError", "maximum recursion depth exceeded in comparison");
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
        return a.as_int() == b.as_int();
    }
    if (a.kind() != b.kind()) return false;
    switch (a.kind()) {
    case Kind::Undefined:
    case Kind::None: return true;
    case Kind::String: return a.str() == b.str();
    case Kind::List: {
        const ListObj& x = a.list();
        const ListObj& y = b.list();
        if (x.kind == SeqKind::Iterator || y.kind == SeqKind::Iterator) return &x == &y;
        if (x.kind != y.kind || x.items.size() != y.items.size()) return false;
        for (size_t i = 0; i < x.items.size(); ++i)
            if (!py_equal(x.items[i], y.items[i], depth + 1)) return false;
        return true;
    }
    case Kind::Dict: {
        const DictObj& x = a.dict();
        const DictObj& y = b.dict();
        if (&x == &y) return true;
        if (x.size() != y.size()) return false;
        for (const auto& [k, v] : x.items) {
            const Value* o = y.find(k);
            if (!o || !py_equal(v, *o, depth + 1)) return false;
        }
        return true;
    }
    case Kind::Namespace: return &a.dict() == &b.dict();
    case Kind::Object: return &a.obj() == &b.obj();
    default: return false;
    }
}

int py_compare(const Value& a, const Value& b, const char* op, int depth) {
    if (depth > MAX_VALUE_DEPTH) raise("RecursionError", "maximum recursion depth exceeded in comparison");
    if (a.is_undefined()) a.fail_undefined();
    if (b.is_undefined()) b.fail_undefined();
    if (a.is_number() && b.is_number()) {
        if (a.is_float() || b.is_float()) {
            double x = a.as_float(), y = b.as_float();
            if (std::isnan(x) || std::isnan(y)) return 2;  // unordered: every comparison false
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = a.as_int(), y = b.as_int();
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.is_string() && b.is_string()) {
        int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
        return c < 0 ? -1 : c > 0 ? 1 : 0;
    }
    if (a.is_list() && b.is_list() && a.seq_kind() == b.seq_kind() && a.seq_kind() != SeqKind::Iterator) {
        const auto& x = a.list().items;
        const auto& y = b.list().items;
        for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
            if (py_equal(x[i], y[i], depth + 1)) continue;
            return py_compare(x[i], y[i], op, depth + 1);
        }
        return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
    }
    type_error(std::string("'") + op + "' not supported between instances of '" + type_name(a) + "' and '" +
               type_name(b) + "'");
}

// ---- UTF-8 -----------------------------------------------------------------------------------

uint32_t utf8_next(std::string_view s, size_t& i) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
        ++i;
        return b;
    }
    // A byte that does not start a well-formed sequence decodes as U+DC80..U+DCFF, as Python's
    // surrogateescape does, so decoding then encoding gives back the same bytes.
    const uint32_t bad = 0xDC00 + b;
    size_t n = b >= 0xC2 && b <= 0xDF ? 1 : b >= 0xE0 && b <= 0xEF ? 2 : b >= 0xF0 && b <= 0xF4 ? 3 : 0;
    if (n == 0 || i + n >= s.size()) {
        ++i;
        return bad;
    }
    uint32_t cp = b & (0x3F >> n);
    for (size_t k = 1; k <= n; ++k) {
        auto c = static_cast<unsigned char>(s[i + k]);
        if ((c & 0xC0) != 0x80) {
            ++i;
            return bad;
        }
        cp = (cp << 6) | (c & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
        ++i;
        return bad;
    }
    i += n + 1;
    return cp;
}

size_t utf8_length(std::string_view s) {
    size_t n = 0;
    for (size_t i = 0; i < s.size();) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
        } else {
            utf8_next(s, i);
        }
        ++n;
    }
    return n;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        if (cp >= 0xDC80 && cp <= 0xDCFF) {  // an undecodable byte kept by utf8_next
            out += static_cast<char>(cp - 0xDC00);
            return;
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // lone surrogates cannot be UTF-8
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp <= 0x10FFFF) {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += "\xEF\xBF\xBD";
    }
}

std::vector<uint32_t> utf8_decode(std::string_view s) {
    std::vector<uint32_t> cps;
    cps.reserve(s.size());
    for (size_t i = 0; i < s.size();) cps.push_back(utf8_next(s, i));
    return cps;
}

std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end) {
    std::string out;
    out.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) utf8_append(out, cps[i]);
    return out;
}

bool is_ascii(std::string_view s) {
    for (char c : s)
        if (static_cast<unsigned char>(c) >= 0x80) return false;
    return true;
}

// ---- character classes -------------------------------------------------------------------------

bool py_isspace(uint32_t cp) {
    if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool py_isdigit(uint32_t cp) {
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    static const uint32_t zeros[] = {0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66,
                                     0xCE6, 0xD66, 0xE50, 0xED0, 0xF20, 0x1040, 0x17E0, 0x1810, 0xFF10};
    for (uint32_t z : zeros)
        if (cp >= z && cp <= z + 9) return true;
    return false;
}

bool py_isprintable(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0)) return false;
    if (cp == 0xAD || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
        (cp >= 0x205F && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0x3000 || cp == 0xFEFF ||
        (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0x600 && cp <= 0x605) || cp == 0x61C || cp == 0x6DD ||
        cp == 0x70F || cp == 0x180E)
        return false;
    if ((cp >= 0xD800 && cp <= 0xF8FF) || (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE) return false;
    if (cp == 0xE0001 || (cp >= 0xE0020 && cp <= 0xE007F) || cp >= 0xF0000) return false;
    return true;
}

namespace {

// Unicode's simple (one code point to one) case mappings of the Basic Multilingual Plane, as
// Python's str.upper / str.lower apply them (Unicode 14): code points first..last, every
// `step`-th, map to cp + delta.
struct CaseRun {
    uint32_t first, last;
    int32_t delta;
    uint32_t step;
};

const CaseRun UPPER_RUNS[] = {
    {0x61, 0x7A, -32, 1}, {0xB5, 0xB5, 743, 1}, {0xE0, 0xF6, -32, 1}, {0xF8, 0xFE, -32, 1},
    {0xFF, 0xFF, 121, 1}, {0x101, 0x12F, -1, 2}, {0x131, 0x131, -232, 1}, {0x133, 0x137, -1, 2},
    {0x13A, 0x148, -1, 2}, {0x14B, 0x177, -1, 2}, {0x17A, 0x17E, -1, 2}, {0x17F, 0x17F, -300, 1},
    {0x180, 0x180, 195, 1}, {0x183, 0x185, -1, 2}, {0x188, 0x188, -1, 1}, {0x18C, 0x18C, -1, 1},
    {0x192, 0x192, -1, 1}, {0x195, 0x195, 97, 1}, {0x199, 0x199, -1, 1}, {0x19A, 0x19A, 163, 1},
    {0x19E, 0x19E, 130, 1}, {0x1A1, 0x1A5, -1, 2}, {0x1A8, 0x1A8, -1, 1}, {0x1AD, 0x1AD, -1, 1},
    {0x1B0, 0x1B0, -1, 1}, {0x1B4, 0x1B6, -1, 2}, {0x1B9, 0x1B9, -1, 1}, {0x1BD, 0x1BD, -1, 1},
    {0x1BF, 0x1BF, 56, 1}, {0x1C5, 0x1C5, -1, 1}, {0x1C6, 0x1C6, -2, 1}, {0x1C8, 0x1C8, -1, 1},
    {0x1C9, 0x1C9, -2, 1}, {0x1CB, 0x1CB, -1, 1}, {0x1CC, 0x1CC, -2, 1}, {0x1CE, 0x1DC, -1, 2},
    {0x1DD, 0x1DD, -79, 1}, {0x1DF, 0x1EF, -1, 2}, {0x1F2, 0x1F2, -1, 1}, {0x1F3, 0x1F3, -2, 1},
    {0x1F5, 0x1F5, -1, 1}, {0x1F9, 0x21F, -1, 2}, {0x223, 0x233, -1, 2}, {0x23C, 0x23C, -1, 1},
    {0x23F, 0x240, 10815, 1}, {0x242, 0x242, -1, 1}, {0x247, 0x24F, -1, 2}, {0x250, 0x250, 10783, 1},
    {0x251, 0x251, 10780, 1}, {0x252, 0x252, 10782, 1}, {0x253, 0x253, -210, 1}, {0x254, 0x254, -206, 1},
    {0x256, 0x257, -205, 1}, {0x259, 0x259, -202, 1}, {0x25B, 0x25B, -203, 1}, {0x25C, 0x25C, 42319, 1},
    {0x260, 0x260, -205, 1}, {0x261, 0x261, 42315, 1}, {0x263, 0x263, -207, 1}, {0x265, 0x265, 42280, 1},
    {0x266, 0x266, 42308, 1}, {0x268, 0x268, -209, 1}, {0x269, 0x269, -211, 1}, {0x26A, 0x26A, 42308, 1},
    {0x26B, 0x26B, 10743, 1}, {0x26C, 0x26C, 42305, 1}, {0x26F, 0x26F, -211, 1}, {0x271, 0x271, 10749, 1},
    {0x272, 0x272, -213, 1}, {0x275, 0x275, -214, 1}, {0x27D, 0x27D, 10727, 1}, {0x280, 0x280, -218, 1},
    {0x282, 0x282, 42307, 1}, {0x283, 0x283, -218, 1}, {0x287, 0x287, 42282, 1}, {0x288, 0x288, -218, 1},
    {0x289, 0x289, -69, 1}, {0x28A, 0x28B, -217, 1}, {0x28C, 0x28C, -71, 1}, {0x292, 0x292, -219, 1},
    {0x29D, 0x29D, 42261, 1}, {0x29E, 0x29E, 42258, 1}, {0x345, 0x345, 84, 1}, {0x371, 0x373, -1, 2},
    {0x377, 0x377, -1, 1}, {0x37B, 0x37D, 130, 1}, {0x3AC, 0x3AC, -38, 1}, {0x3AD, 0x3AF, -37, 1},
    {0x3B1, 0x3C1, -32, 1}, {0x3C2, 0x3C2, -31, 1}, {0x3C3, 0x3CB, -32, 1}, {0x3CC, 0x3CC, -64, 1},
    {0x3CD, 0x3CE, -63, 1}, {0x3D0, 0x3D0, -62, 1}, {0x3D1, 0x3D1, -57, 1}, {0x3D5, 0x3D5, -47, 1},
    {0x3D6, 0x3D6, -54, 1}, {0x3D7, 0x3D7, -8, 1}, {0x3D9, 0x3EF, -1, 2}, {0x3F0, 0x3F0, -86, 1},
    {0x3F1, 0x3F1, -80, 1}, {0x3F2, 0x3F2, 7, 1}, {0x3F3, 0x3F3, -116, 1}, {0x3F5, 0x3F5, -96, 1},
    {0x3F8, 0x3F8, -1, 1}, {0x3FB, 0x3FB, -1, 1}, {0x430, 0x44F, -32, 1}, {0x450, 0x45F, -80, 1},
    {0x461, 0x481, -1, 2}, {0x48B, 0x4BF, -1, 2}, {0x4C2, 0x4CE, -1, 2}, {0x4CF, 0x4CF, -15, 1},
    {0x4D1, 0x52F, -1, 2}, {0x561, 0x586, -48, 1}, {0x10D0, 0x10FA, 3008, 1}, {0x10FD, 0x10FF, 3008, 1},
    {0x13F8, 0x13FD, -8, 1}, {0x1C80, 0x1C80, -6254, 1}, {0x1C81, 0x1C81, -6253, 1},
    {0x1C82, 0x1C82, -6244, 1}, {0x1C83, 0x1C84, -6242, 1}, {0x1C85, 0x1C85, -6243, 1},
    {0x1C86, 0x1C86, -6236, 1}, {0x1C87, 0x1C87, -6181, 1}, {0x1C88, 0x1C88, 35266, 1},
    {0x1D79, 0x1D79, 35332, 1}, {0x1D7D, 0x1D7D, 3814, 1}, {0x1D8E, 0x1D8E, 35384, 1},
    {0x1E01, 0x1E95, -1, 2}, {0x1E9B, 0x1E9B, -59, 1}, {0x1EA1, 0x1EFF, -1, 2}, {0x1F00, 0x1F07, 8, 1},
    {0x1F10, 0x1F15, 8, 1}, {0x1F20, 0x1F27, 8, 1}, {0x1F30, 0x1F37, 8, 1}, {0x1F40, 0x1F45, 8, 1},
    {0x1F51, 0x1F57, 8, 2}, {0x1F60, 0x1F67, 8, 1}, {0x1F70, 0x1F71, 74, 1}, {0x1F72, 0x1F75, 86, 1},
    {0x1F76, 0x1F77, 100, 1}, {0x1F78, 0x1F79, 128, 1}, {0x1F7A, 0x1F7B, 112, 1}, {0x1F7C, 0x1F7D, 126, 1},
    {0x1FB0, 0x1FB1, 8, 1}, {0x1FBE, 0x1FBE, -7205, 1}, {0x1FD0, 0x1FD1, 8, 1}, {0x1FE0, 0x1FE1, 8, 1},
    {0x1FE5, 0x1FE5, 7, 1}, {0x214E, 0x214E, -28, 1}, {0x2170, 0x217F, -16, 1}, {0x2184, 0x2184, -1, 1},
    {0x24D0, 0x24E9, -26, 1}, {0x2C30, 0x2C5F, -48, 1}, {0x2C61, 0x2C61, -1, 1}, {0x2C65, 0x2C65, -10795, 1},
    {0x2C66, 0x2C66, -10792, 1}, {0x2C68, 0x2C6C, -1, 2}, {0x2C73, 0x2C73, -1, 1}, {0x2C76, 0x2C76, -1, 1},
    {0x2C81, 0x2CE3, -1, 2}, {0x2CEC, 0x2CEE, -1, 2}, {0x2CF3, 0x2CF3, -1, 1}, {0x2D00, 0x2D25, -7264, 1},
    {0x2D27, 0x2D27, -7264, 1}, {0x2D2D, 0x2D2D, -7264, 1}, {0xA641, 0xA66D, -1, 2}, {0xA681, 0xA69B, -1, 2},
    {0xA723, 0xA72F, -1, 2}, {0xA733, 0xA76F, -1, 2}, {0xA77A, 0xA77C, -1, 2}, {0xA77F, 0xA787, -1, 2},
    {0xA78C, 0xA78C, -1, 1}, {0xA791, 0xA793, -1, 2}, {0xA794, 0xA794, 48, 1}, {0xA797, 0xA7A9, -1, 2},
    {0xA7B5, 0xA7C3, -1, 2}, {0xA7C8, 0xA7CA, -1, 2}, {0xA7D1, 0xA7D1, -1, 1}, {0xA7D7, 0xA7D9, -1, 2},
    {0xA7F6, 0xA7F6, -1, 1}, {0xAB53, 0xAB53, -928, 1}, {0xAB70, 0xABBF, -38864, 1}, {0xFF41, 0xFF5A, -32, 1},
};
const CaseRun LOWER_RUNS[] = {
    {0x41, 0x5A, 32, 1}, {0xC0, 0xD6, 32, 1}, {0xD8, 0xDE, 32, 1}, {0x100, 0x12E, 1, 2}, {0x132, 0x136, 1, 2},
    {0x139, 0x147, 1, 2}, {0x14A, 0x176, 1, 2}, {0x178, 0x178, -121, 1}, {0x179, 0x17D, 1, 2},
    {0x181, 0x181, 210, 1}, {0x182, 0x184, 1, 2}, {0x186, 0x186, 206, 1}, {0x187, 0x187, 1, 1},
    {0x189, 0x18A, 205, 1}, {0x18B, 0x18B, 1, 1}, {0x18E, 0x18E, 79, 1}, {0x18F, 0x18F, 202, 1},
    {0x190, 0x190, 203, 1}, {0x191, 0x191, 1, 1}, {0x193, 0x193, 205, 1}, {0x194, 0x194, 207, 1},
    {0x196, 0x196, 211, 1}, {0x197, 0x197, 209, 1}, {0x198, 0x198, 1, 1}, {0x19C, 0x19C, 211, 1},
    {0x19D, 0x19D, 213, 1}, {0x19F, 0x19F, 214, 1}, {0x1A0, 0x1A4, 1, 2}, {0x1A6, 0x1A6, 218, 1},
    {0x1A7, 0x1A7, 1, 1}, {0x1A9, 0x1A9, 218, 1}, {0x1AC, 0x1AC, 1, 1}, {0x1AE, 0x1AE, 218, 1},
    {0x1AF, 0x1AF, 1, 1}, {0x1B1, 0x1B2, 217, 1}, {0x1B3, 0x1B5, 1, 2}, {0x1B7, 0x1B7, 219, 1},
    {0x1B8, 0x1B8, 1, 1}, {0x1BC, 0x1BC, 1, 1}, {0x1C4, 0x1C4, 2, 1}, {0x1C5, 0x1C5, 1, 1},
    {0x1C7, 0x1C7, 2, 1}, {0x1C8, 0x1C8, 1, 1}, {0x1CA, 0x1CA, 2, 1}, {0x1CB, 0x1DB, 1, 2},
    {0x1DE, 0x1EE, 1, 2}, {0x1F1, 0x1F1, 2, 1}, {0x1F2, 0x1F4, 1, 2}, {0x1F6, 0x1F6, -97, 1},
    {0x1F7, 0x1F7, -56, 1}, {0x1F8, 0x21E, 1, 2}, {0x220, 0x220, -130, 1}, {0x222, 0x232, 1, 2},
    {0x23A, 0x23A, 10795, 1}, {0x23B, 0x23B, 1, 1}, {0x23D, 0x23D, -163, 1}, {0x23E, 0x23E, 10792, 1},
    {0x241, 0x241, 1, 1}, {0x243, 0x243, -195, 1}, {0x244, 0x244, 69, 1}, {0x245, 0x245, 71, 1},
    {0x246, 0x24E, 1, 2}, {0x370, 0x372, 1, 2}, {0x376, 0x376, 1, 1}, {0x37F, 0x37F, 116, 1},
    {0x386, 0x386, 38, 1}, {0x388, 0x38A, 37, 1}, {0x38C, 0x38C, 64, 1}, {0x38E, 0x38F, 63, 1},
    {0x391, 0x3A1, 32, 1}, {0x3A3, 0x3AB, 32, 1}, {0x3CF, 0x3CF, 8, 1}, {0x3D8, 0x3EE, 1, 2},
    {0x3F4, 0x3F4, -60, 1}, {0x3F7, 0x3F7, 1, 1}, {0x3F9, 0x3F9, -7, 1}, {0x3FA, 0x3FA, 1, 1},
    {0x3FD, 0x3FF, -130, 1}, {0x400, 0x40F, 80, 1}, {0x410, 0x42F, 32, 1}, {0x460, 0x480, 1, 2},
    {0x48A, 0x4BE, 1, 2}, {0x4C0, 0x4C0, 15, 1}, {0x4C1, 0x4CD, 1, 2}, {0x4D0, 0x52E, 1, 2},
    {0x531, 0x556, 48, 1}, {0x10A0, 0x10C5, 7264, 1}, {0x10C7, 0x10C7, 7264, 1}, {0x10CD, 0x10CD, 7264, 1},
    {0x13A0, 0x13EF, 38864, 1}, {0x13F0, 0x13F5, 8, 1}, {0x1C90, 0x1CBA, -3008, 1},
    {0x1CBD, 0x1CBF, -3008, 1}, {0x1E00, 0x1E94, 1, 2}, {0x1E9E, 0x1E9E, -7615, 1}, {0x1EA0, 0x1EFE, 1, 2},
    {0x1F08, 0x1F0F, -8, 1}, {0x1F18, 0x1F1D, -8, 1}, {0x1F28, 0x1F2F, -8, 1}, {0x1F38, 0x1F3F, -8, 1},
    {0x1F48, 0x1F4D, -8, 1}, {0x1F59, 0x1F5F, -8, 2}, {0x1F68, 0x1F6F, -8, 1}, {0x1F88, 0x1F8F, -8, 1},
    {0x1F98, 0x1F9F, -8, 1}, {0x1FA8, 0x1FAF, -8, 1}, {0x1FB8, 0x1FB9, -8, 1}, {0x1FBA, 0x1FBB, -74, 1},
    {0x1FBC, 0x1FBC, -9, 1}, {0x1FC8, 0x1FCB, -86, 1}, {0x1FCC, 0x1FCC, -9, 1}, {0x1FD8, 0x1FD9, -8, 1},
    {0x1FDA, 0x1FDB, -100, 1}, {0x1FE8, 0x1FE9, -8, 1}, {0x1FEA, 0x1FEB, -112, 1}, {0x1FEC, 0x1FEC, -7, 1},
    {0x1FF8, 0x1FF9, -128, 1}, {0x1FFA, 0x1FFB, -126, 1}, {0x1FFC, 0x1FFC, -9, 1}, {0x2126, 0x2126, -7517, 1},
    {0x212A, 0x212A, -8383, 1}, {0x212B, 0x212B, -8262, 1}, {0x2132, 0x2132, 28, 1}, {0x2160, 0x216F, 16, 1},
    {0x2183, 0x2183, 1, 1}, {0x24B6, 0x24CF, 26, 1}, {0x2C00, 0x2C2F, 48, 1}, {0x2C60, 0x2C60, 1, 1},
    {0x2C62, 0x2C62, -10743, 1}, {0x2C63, 0x2C63, -3814, 1}, {0x2C64, 0x2C64, -10727, 1},
    {0x2C67, 0x2C6B, 1, 2}, {0x2C6D, 0x2C6D, -10780, 1}, {0x2C6E, 0x2C6E, -10749, 1},
    {0x2C6F, 0x2C6F, -10783, 1}, {0x2C70, 0x2C70, -10782, 1}, {0x2C72, 0x2C72, 1, 1}, {0x2C75, 0x2C75, 1, 1},
    {0x2C7E, 0x2C7F, -10815, 1}, {0x2C80, 0x2CE2, 1, 2}, {0x2CEB, 0x2CED, 1, 2}, {0x2CF2, 0x2CF2, 1, 1},
    {0xA640, 0xA66C, 1, 2}, {0xA680, 0xA69A, 1, 2}, {0xA722, 0xA72E, 1, 2}, {0xA732, 0xA76E, 1, 2},
    {0xA779, 0xA77B, 1, 2}, {0xA77D, 0xA77D, -35332, 1}, {0xA77E, 0xA786, 1, 2}, {0xA78B, 0xA78B, 1, 1},
    {0xA78D, 0xA78D, -42280, 1}, {0xA790, 0xA792, 1, 2}, {0xA796, 0xA7A8, 1, 2}, {0xA7AA, 0xA7AA, -42308, 1},
    {0xA7AB, 0xA7AB, -42319, 1}, {0xA7AC, 0xA7AC, -42315, 1}, {0xA7AD, 0xA7AD, -42305, 1},
    {0xA7AE, 0xA7AE, -42308, 1}, {0xA7B0, 0xA7B0, -42258, 1}, {0xA7B1, 0xA7B1, -42282, 1},
    {0xA7B2, 0xA7B2, -42261, 1}, {0xA7B3, 0xA7B3, 928, 1}, {0xA7B4, 0xA7C2, 1, 2}, {0xA7C4, 0xA7C4, -48, 1},
    {0xA7C5, 0xA7C5, -42307, 1}, {0xA7C6, 0xA7C6, -35384, 1}, {0xA7C7, 0xA7C9, 1, 2}, {0xA7D0, 0xA7D0, 1, 1},
    {0xA7D6, 0xA7D8, 1, 2}, {0xA7F5, 0xA7F5, 1, 1}, {0xFF21, 0xFF3A, 32, 1},
};

template <size_t N>
uint32_t map_case(const CaseRun (&runs)[N], uint32_t cp) {
    size_t lo = 0, hi = N;
    while (lo < hi) {  // the last run with first <= cp
        size_t mid = (lo + hi) / 2;
        if (runs[mid].first <= cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) return cp;
    const CaseRun& r = runs[lo - 1];
    if (cp > r.last || (cp - r.first) % r.step != 0) return cp;
    return static_cast<uint32_t>(static_cast<int64_t>(cp) + r.delta);
}

} // namespace

uint32_t py_upper(uint32_t cp) {
    if (cp < 0x80) return cp >= 'a' && cp <= 'z' ? cp - 32 : cp;
    return map_case(UPPER_RUNS, cp);
}

uint32_t py_lower(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return map_case(LOWER_RUNS, cp);
}

bool py_isupper(uint32_t cp) { return py_lower(cp) != cp; }
bool py_islower(uint32_t cp) { return py_upper(cp) != cp || cp == 0xDF; }

bool py_isalpha(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (py_isupper(cp) || py_islower(cp)) return true;
    if (cp < 0xC0) return cp == 0xAA || cp == 0xB5 || cp == 0xBA;
    if (cp == 0xD7 || cp == 0xF7) return false;
    if (py_isspace(cp) || py_isdigit(cp) || !py_isprintable(cp)) return false;
    // Combining marks, punctuation and symbol blocks, emoji: not letters. Everything else in the
    // ranges of the world's scripts (CJK, Arabic, Hebrew, Indic ...) counts as a letter.
    if ((cp >= 0x300 && cp <= 0x36F) || (cp >= 0x2000 && cp <= 0x2BFF) || (cp >= 0x3000 && cp <= 0x303F) ||
        (cp >= 0xFE00 && cp <= 0xFE6F) || (cp >= 0xFF00 && cp <= 0xFF20) || (cp >= 0xFF3B && cp <= 0xFF40) ||
        (cp >= 0xFF5B && cp <= 0xFF65) || (cp >= 0x1F000 && cp <= 0x1FAFF) || (cp >= 0x60C && cp <= 0x61F) ||
        (cp >= 0x64B && cp <= 0x65F) || cp == 0x6D4 || (cp >= 0x591 && cp <= 0x5C7) || (cp >= 0x900 && cp <= 0x903) ||
        (cp >= 0x93A && cp <= 0x94F && cp != 0x93D) || cp == 0x964 || cp == 0x965)
        return false;
    return true;
}

bool py_isalnum(uint32_t cp) { return py_isalpha(cp) || py_isdigit(cp); }

std::string py_upper_str(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            out += static_cast<char>(b >= 'a' && b <= 'z' ? b - 32 : b);
            ++i;
            continue;
        }
        uint32_t cp = utf8_next(s, i);
        if (cp == 0xDF) {
            out += "SS";
            continue;
        }
        utf8_append(out, py_upper(cp));
    }
    return out;
}

std::string py_lower_str(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        auto b = static_cast<unsigned char>(s[i]);
        if (b < 0x80) {
            out += static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
            ++i;
            continue;
        }
        uint32_t cp = utf8_next(s, i);
        if (cp == 0x130) {
            out += "i\xCC\x87";  // İ lower-cases to i + combining dot above
            continue;
        }
        utf8_append(out, py_lower(cp));
    }
    return out;
}

} // namespace slm::chat
