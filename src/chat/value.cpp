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

uint32_t py_upper(uint32_t cp) {
    if (cp < 0x80) return cp >= 'a' && cp <= 'z' ? cp - 32 : cp;
    if (cp == 0xB5) return 0x39C;
    if (cp == 0xFF) return 0x178;
    if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7) return cp - 32;
    if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x131) return 'I';
        if (cp == 0x17F) return 'S';
        bool odd_lower = (cp <= 0x137) || (cp >= 0x14A && cp <= 0x177);
        bool even_lower = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
        if (odd_lower && (cp & 1)) return cp - 1;
        if (even_lower && !(cp & 1)) return cp - 1;
        return cp;
    }
    if (cp >= 0x3B1 && cp <= 0x3C9) return cp == 0x3C2 ? 0x3A3 : cp - 32;
    if (cp == 0x3AC) return 0x386;
    if (cp >= 0x3AD && cp <= 0x3AF) return cp - 37;
    if (cp == 0x3CC) return 0x38C;
    if (cp == 0x3CD || cp == 0x3CE) return cp - 63;
    if (cp >= 0x430 && cp <= 0x44F) return cp - 32;
    if (cp >= 0x450 && cp <= 0x45F) return cp - 80;
    if (((cp >= 0x460 && cp <= 0x481) || (cp >= 0x48A && cp <= 0x4BF) || (cp >= 0x4D0 && cp <= 0x52F)) && (cp & 1))
        return cp - 1;
    if (cp >= 0x561 && cp <= 0x586) return cp - 48;
    if (cp >= 0x1E00 && cp <= 0x1EFF && (cp & 1) && !(cp >= 0x1E96 && cp <= 0x1E9F)) return cp - 1;
    if (cp >= 0xFF41 && cp <= 0xFF5A) return cp - 32;
    return cp;
}

uint32_t py_lower(uint32_t cp) {
    if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 32;
    if (cp == 0x178) return 0xFF;
    if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x130) return 'i';
        bool even_upper = (cp <= 0x137) || (cp >= 0x14A && cp <= 0x177);
        bool odd_upper = (cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E);
        if (even_upper && !(cp & 1)) return cp + 1;
        if (odd_upper && (cp & 1)) return cp + 1;
        return cp;
    }
    if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 32;
    if (cp == 0x386) return 0x3AC;
    if (cp >= 0x388 && cp <= 0x38A) return cp + 37;
    if (cp == 0x38C) return 0x3CC;
    if (cp == 0x38E || cp == 0x38F) return cp + 63;
    if (cp >= 0x410 && cp <= 0x42F) return cp + 32;
    if (cp >= 0x400 && cp <= 0x40F) return cp + 80;
    if (((cp >= 0x460 && cp <= 0x481) || (cp >= 0x48A && cp <= 0x4BF) || (cp >= 0x4D0 && cp <= 0x52F)) && !(cp & 1))
        return cp + 1;
    if (cp >= 0x531 && cp <= 0x556) return cp + 48;
    if (cp >= 0x1E00 && cp <= 0x1EFF && !(cp & 1) && !(cp >= 0x1E96 && cp <= 0x1E9F)) return cp + 1;
    if (cp >= 0xFF21 && cp <= 0xFF3A) return cp + 32;
    return cp;
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
