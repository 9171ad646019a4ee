// chat/builtins.cpp - Python's operators, the str/list/dict methods the sandbox allows, the
// template globals (range, dict, namespace, raise_exception, strftime_now ...), printf-style and
// str.format formatting, and json.dumps.
#include "chat/interp.h"
#include "chat/strings.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <locale.h>

namespace slm::chat {

namespace {

[[noreturn]] void unsupported(const char* op, const Value& a, const Value& b) {
    type_error(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

bool int_like(const Value& v) { return v.is_int() || v.is_bool(); }

void check_overflow(bool overflow) {
    if (overflow) raise("OverflowError", "integer result too large (slm keeps 64-bit integers)");
}

double float_floordiv(double a, double b) {
    double mod = std::fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0.0) {
        if ((b < 0) != (mod < 0)) div -= 1.0;
    }
    if (div != 0.0) {
        double fl = std::floor(div);
        if (div - fl > 0.5) fl += 1.0;
        return fl;
    }
    return std::copysign(0.0, a / b);
}

double float_mod(double a, double b) {
    double mod = std::fmod(a, b);
    if (mod != 0.0) {
        if ((b < 0) != (mod < 0)) mod += b;
    } else {
        mod = std::copysign(0.0, b);
    }
    return mod;
}

Value repeat(Interp& in, const Value& seq, int64_t n) {
    if (n < 0) n = 0;
    if (seq.is_string()) {
        const std::string& s = seq.str();
        in.check_size(s.size() * static_cast<uint64_t>(n));
        in.charge(s.size() * static_cast<uint64_t>(n));
        std::string out;
        out.reserve(s.size() * static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) out += s;
        return Value::string(std::move(out), seq.is_markup());
    }
    const auto& items = seq.list().items;
    uint64_t total = items.size() * static_cast<uint64_t>(n);
    in.check_size(total * sizeof(Value));
    in.charge(total);
    std::vector<Value> out;
    out.reserve(static_cast<size_t>(total));
    for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
    return Value::list(std::move(out), seq.seq_kind());
}

} // namespace

std::string html_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&#34;"; break;
        case '\'': out += "&#39;"; break;
        default: out += c;
        }
    }
    return out;
}

Value markup_concat(const Value& a, const Value& b) {
    // Markup + str escapes the str (and str + Markup too: Markup.__radd__ wins)
    if (a.is_markup() || b.is_markup()) {
        std::string l = a.is_markup() ? a.str() : html_escape(a.str());
        std::string r = b.is_markup() ? b.str() : html_escape(b.str());
        return Value::string(l + r, true);
    }
    std::string s;
    s.reserve(a.str().size() + b.str().size());
    s += a.str();
    s += b.str();
    return Value::string(std::move(s));
}

Value binary_op(Interp& in, BinOp op, const Value& a, const Value& b) {
    if (a.is_undefined()) a.fail_undefined();
    if (b.is_undefined()) b.fail_undefined();
    const bool nums = a.is_number() && b.is_number();
    const bool ints = int_like(a) && int_like(b);
    int64_t r = 0;
    switch (op) {
    case BinOp::Add:
        if (ints) {
            check_overflow(__builtin_add_overflow(a.as_int(), b.as_int(), &r));
            return Value::integer(r);
        }
        if (nums) return Value::number(a.as_float() + b.as_float());
        if (a.is_string() && b.is_string()) {
            in.check_size(a.str().size() + b.str().size());
            in.charge(a.str().size() + b.str().size());
            return markup_concat(a, b);
        }
        if (a.is_list() && b.is_list() && a.seq_kind() == b.seq_kind() && a.seq_kind() != SeqKind::Iterator) {
            std::vector<Value> items = a.list().items;
            items.insert(items.end(), b.list().items.begin(), b.list().items.end());
            in.charge(items.size());
            return Value::list(std::move(items), a.seq_kind());
        }
        if (a.is_string() || (a.is_list() && a.seq_kind() != SeqKind::Iterator))
            type_error(std::string("can only concatenate ") + type_name(a) + " (not \"" + type_name(b) + "\") to " + type_name(a));
        unsupported("+", a, b);
    case BinOp::Sub:
        if (ints) {
            check_overflow(__builtin_sub_overflow(a.as_int(), b.as_int(), &r));
            return Value::integer(r);
        }
        if (nums) return Value::number(a.as_float() - b.as_float());
        unsupported("-", a, b);
    case BinOp::Mul:
        if (ints) {
            check_overflow(__builtin_mul_overflow(a.as_int(), b.as_int(), &r));
            return Value::integer(r);
        }
        if (nums) return Value::number(a.as_float() * b.as_float());
        if ((a.is_string() || (a.is_list() && a.seq_kind() != SeqKind::Iterator)) && int_like(b)) return repeat(in, a, b.as_int());
        if ((b.is_string() || (b.is_list() && b.seq_kind() != SeqKind::Iterator)) && int_like(a)) return repeat(in, b, a.as_int());
        if (a.is_string() || b.is_string() || a.is_list() || b.is_list())
            type_error(std::string("can't multiply sequence by non-int of type '") +
                       type_name(a.is_string() || a.is_list() ? b : a) + "'");
        unsupported("*", a, b);
    case BinOp::Div:
        if (nums) {
            if (b.as_float() == 0.0) raise("ZeroDivisionError", ints ? "division by zero" : "float division by zero");
            return Value::number(a.as_float() / b.as_float());
        }
        unsupported("/", a, b);
    case BinOp::FloorDiv:
        if (ints) {
            int64_t x = a.as_int(), y = b.as_int();
            if (y == 0) raise("ZeroDivisionError", "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1) check_overflow(true);
            int64_t q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) --q;
            return Value::integer(q);
        }
        if (nums) {
            if (b.as_float() == 0.0) raise("ZeroDivisionError", "float floor division by zero");
            return Value::number(float_floordiv(a.as_float(), b.as_float()));
        }
        unsupported("//", a, b);
    case BinOp::Mod:
        if (a.is_string()) return Value::string(percent_format(in, a.str(), b));
        if (ints) {
            int64_t x = a.as_int(), y = b.as_int();
            if (y == 0) raise("ZeroDivisionError", "integer modulo by zero");
            if (y == -1) return Value::integer(0);
            int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return Value::integer(m);
        }
        if (nums) {
            if (b.as_float() == 0.0) raise("ZeroDivisionError", "float modulo");
            return Value::number(float_mod(a.as_float(), b.as_float()));
        }
        unsupported("%", a, b);
    case BinOp::Pow:
        if (ints && b.as_int() >= 0) {
            int64_t base = a.as_int(), e = b.as_int(), acc = 1;
            while (e > 0) {
                if (e & 1) check_overflow(__builtin_mul_overflow(acc, base, &acc));
                e >>= 1;
                if (e) check_overflow(__builtin_mul_overflow(base, base, &base));
            }
            return Value::integer(acc);
        }
        if (nums) {
            double x = a.as_float(), y = b.as_float();
            if (x == 0.0 && y < 0) raise("ZeroDivisionError", "0.0 cannot be raised to a negative power");
            if (x < 0 && y != std::floor(y)) type_error("complex results are not supported");
            double p = std::pow(x, y);
            if (std::isinf(p) && std::isfinite(x) && std::isfinite(y)) raise("OverflowError", "(34, 'Numerical result out of range')");
            return Value::number(p);
        }
        unsupported("** or pow()", a, b);
    }
    return Value::none();
}

bool contains(Interp& in, const Value& c, const Value& item) {
    switch (c.kind()) {
    case Kind::String:
        if (!item.is_string())
            type_error(std::string("'in <string>' requires string as left operand, not ") + type_name(item));
        return c.str().find(item.str()) != std::string::npos;
    case Kind::List:
        in.charge(c.list().items.size());
        for (const Value& x : c.list().items)
            if (py_equal(x, item)) return true;
        return false;
    case Kind::Dict:
        if (!hashable(item)) type_error(std::string("unhashable type: '") + type_name(item) + "'");
        return c.dict().find(item) != nullptr;
    case Kind::Undefined: return false;
    default: type_error(std::string("argument of type '") + type_name(c) + "' is not iterable");
    }
}

// ---- methods ----------------------------------------------------------------------------------

namespace {

const char* const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "endswith", "expandtabs", "find", "format", "index",
    "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
    "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "partition",
    "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
    "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill"};
const char* const LIST_SAFE[] = {"copy", "count", "index"};
const char* const LIST_UNSAFE[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"};
const char* const TUPLE_SAFE[] = {"count", "index"};
const char* const DICT_SAFE[] = {"copy", "get", "items", "keys", "values"};
const char* const DICT_UNSAFE[] = {"clear", "pop", "popitem", "setdefault", "update"};

template <size_t N>
bool in_list(const char* const (&names)[N], const std::string& n) {
    for (const char* x : names)
        if (n[0] == x[0] && n == x) return true;
    return false;
}

const std::string& want_str(const Value& v, const char* what) {
    if (!v.is_string()) type_error(std::string(what) + " must be str, not " + type_name(v));
    return v.str();
}

int64_t want_int(const Value& v, const char* what) {
    if (!int_like(v)) type_error(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer (" + what + ")");
    return v.as_int();
}

uint32_t fill_char(const Value& v) {
    if (!given(v)) return ' ';
    const std::string& s = want_str(v, "fill character");
    if (utf8_length(s) != 1) type_error("The fill character must be exactly one character long");
    size_t i = 0;
    return utf8_next(s, i);
}

// start/end arguments of find, count, startswith ...: None or an int
bool opt_int(const Value& v, int64_t& out) {
    if (!given(v) || v.is_none()) return false;
    out = want_int(v, "slice index");
    return true;
}

Value str_method(Interp& in, const Value& self, const std::string& m, CallArgs& args) {
    const std::string& s = self.str();
    auto str = [](std::string v) { return Value::string(std::move(v)); };
    in.charge(s.size() / 16 + 1);
    if (m == "upper") {
        bind(args, {}, "upper");
        return str(py_upper_str(s));
    }
    if (m == "lower" || m == "casefold") {
        bind(args, {}, m.c_str());
        return str(py_lower_str(s));
    }
    if (m == "title") {
        bind(args, {}, "title");
        return str(py_title(s));
    }
    if (m == "capitalize") {
        bind(args, {}, "capitalize");
        return str(py_capitalize(s));
    }
    if (m == "swapcase") {
        bind(args, {}, "swapcase");
        return str(py_swapcase(s));
    }
    if (m == "strip" || m == "lstrip" || m == "rstrip") {
        auto a = bind(args, {"chars"}, m.c_str());
        bool has = given(a[0]) && !a[0].is_none();
        return str(py_strip(s, has, has ? want_str(a[0], "chars") : std::string(), m != "rstrip", m != "lstrip"));
    }
    if (m == "split" || m == "rsplit") {
        auto a = bind(args, {"sep", "maxsplit"}, m.c_str());
        bool has = given(a[0]) && !a[0].is_none();
        std::string sep = has ? want_str(a[0], "sep") : std::string();
        if (has && sep.empty()) raise("ValueError", "empty separator");
        int64_t maxsplit = given(a[1]) ? want_int(a[1], "maxsplit") : -1;
        std::vector<Value> items;
        for (auto& part : py_split(s, has, sep, maxsplit, m == "rsplit")) items.push_back(str(std::move(part)));
        in.charge(items.size());
        return Value::list(std::move(items));
    }
    if (m == "splitlines") {
        auto a = bind(args, {"keepends"}, "splitlines");
        std::vector<Value> items;
        for (auto& part : py_splitlines(s, given(a[0]) && truthy(a[0]))) items.push_back(str(std::move(part)));
        return Value::list(std::move(items));
    }
    if (m == "startswith" || m == "endswith") {
        auto a = bind(args, {"prefix", "start", "end"}, m.c_str(), 1);
        int64_t st = 0, en = 0;
        bool hs = opt_int(a[1], st), he = opt_int(a[2], en);
        CodePoints cp(s);
        size_t b, e;
        cp.clamp(hs, st, he, en, b, e);
        std::string_view hay = cp.sub(b, e);
        auto test = [&](const Value& p) {
            if (!p.is_string())
                type_error(m + " first arg must be str or a tuple of str, not " + type_name(p));
            const std::string& x = p.str();
            if (x.size() > hay.size()) return false;
            return m == "startswith" ? hay.compare(0, x.size(), x) == 0 : hay.compare(hay.size() - x.size(), x.size(), x) == 0;
        };
        if (a[0].is_list() && a[0].seq_kind() == SeqKind::Tuple) {
            for (const Value& p : a[0].list().items)
                if (test(p)) return Value::boolean(true);
            return Value::boolean(false);
        }
        return Value::boolean(test(a[0]));
    }
    if (m == "find" || m == "rfind" || m == "index" || m == "rindex" || m == "count") {
        auto a = bind(args, {"sub", "start", "end"}, m.c_str(), 1);
        const std::string& sub = want_str(a[0], "substring");
        int64_t st = 0, en = 0;
        bool hs = opt_int(a[1], st), he = opt_int(a[2], en);
        CodePoints cp(s);
        size_t b, e;
        cp.clamp(hs, st, he, en, b, e);
        std::string_view hay = cp.sub(b, e);
        if (m == "count") {
            if (hs && static_cast<size_t>(st < 0 ? 0 : st) > cp.size()) return Value::integer(0);
            return Value::integer(static_cast<int64_t>(sub.empty() ? e - b + 1 : py_count(hay, sub)));
        }
        size_t f = m[0] == 'r' ? hay.rfind(sub) : hay.find(sub);
        if (f == std::string_view::npos) {
            if (m == "index" || m == "rindex") raise("ValueError", "substring not found");
            return Value::integer(-1);
        }
        return Value::integer(static_cast<int64_t>(cp.index_of_byte(cp.byte(b) + f)));
    }
    if (m == "replace") {
        auto a = bind(args, {"old", "new", "count"}, "replace", 2);
        int64_t count = given(a[2]) ? want_int(a[2], "count") : -1;
        std::string r = py_replace(s, want_str(a[0], "replace() argument 1"), want_str(a[1], "replace() argument 2"), count,
                                   in.max_output_bytes());
        in.check_size(r.size());
        in.charge(r.size());
        return str(std::move(r));
    }
    if (m == "join") {
        auto a = bind(args, {"iterable"}, "join", 1);
        auto items = in.iterate(a[0]);
        std::string out;
        size_t i = 0;
        for (const Value& x : items->items) {
            if (!x.is_string())
                type_error("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(x) + " found");
            if (i++) out += s;
            out += x.str();
            in.check_size(out.size());
        }
        in.charge(out.size());
        return str(std::move(out));
    }
    if (m == "center" || m == "ljust" || m == "rjust") {
        auto a = bind(args, {"width", "fillchar"}, m.c_str(), 1);
        int64_t w = want_int(a[0], "width");
        in.check_size(static_cast<uint64_t>(std::max<int64_t>(w, 0)) * 4);
        uint32_t f = fill_char(a[1]);
        return str(m == "center" ? py_center(s, w, f) : py_ljust(s, w, f, m == "rjust"));
    }
    if (m == "zfill") {
        auto a = bind(args, {"width"}, "zfill", 1);
        int64_t w = want_int(a[0], "width");
        in.check_size(static_cast<uint64_t>(std::max<int64_t>(w, 0)));
        auto n = static_cast<int64_t>(utf8_length(s));
        if (w <= n) return self;
        std::string pad(static_cast<size_t>(w - n), '0');
        if (!s.empty() && (s[0] == '+' || s[0] == '-')) return str(s.substr(0, 1) + pad + s.substr(1));
        return str(pad + s);
    }
    if (m == "partition" || m == "rpartition") {
        auto a = bind(args, {"sep"}, m.c_str(), 1);
        const std::string& sep = want_str(a[0], "sep");
        if (sep.empty()) raise("ValueError", "empty separator");
        size_t f = m == "partition" ? s.find(sep) : s.rfind(sep);
        if (f == std::string::npos) {
            if (m == "partition") return Value::tuple({self, str(""), str("")});
            return Value::tuple({str(""), str(""), self});
        }
        return Value::tuple({str(s.substr(0, f)), str(sep), str(s.substr(f + sep.size()))});
    }
    if (m == "removeprefix" || m == "removesuffix") {
        auto a = bind(args, {"affix"}, m.c_str(), 1);
        const std::string& x = want_str(a[0], m.c_str());
        if (m == "removeprefix") return s.compare(0, x.size(), x) == 0 ? str(s.substr(x.size())) : self;
        if (x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0 && !x.empty())
            return str(s.substr(0, s.size() - x.size()));
        return self;
    }
    if (m == "expandtabs") {
        auto a = bind(args, {"tabsize"}, "expandtabs");
        int64_t ts = given(a[0]) ? want_int(a[0], "tabsize") : 8;
        std::string out;
        int64_t col = 0;
        for (size_t i = 0; i < s.size();) {
            size_t st = i;
            uint32_t c = utf8_next(s, i);
            if (c == '\t') {
                if (ts > 0) {
                    int64_t n = ts - col % ts;
                    in.check_size(out.size() + static_cast<uint64_t>(n));
                    out.append(static_cast<size_t>(n), ' ');
                    col += n;
                }
            } else {
                out.append(s, st, i - st);
                col = (c == '\n' || c == '\r') ? 0 : col + 1;
            }
        }
        return str(std::move(out));
    }
    if (m == "format") return str(str_format(in, s, args));
    // predicates
    bind(args, {}, m.c_str());
    std::vector<uint32_t> cps = utf8_decode(s);
    auto all = [&](bool (*f)(uint32_t)) {
        if (cps.empty()) return Value::boolean(false);
        for (uint32_t c : cps)
            if (!f(c)) return Value::boolean(false);
        return Value::boolean(true);
    };
    if (m == "isalnum") return all(py_isalnum);
    if (m == "isalpha") return all(py_isalpha);
    if (m == "isdigit" || m == "isdecimal" || m == "isnumeric") return all(py_isdigit);
    if (m == "isspace") return all(py_isspace);
    if (m == "isprintable") {
        for (uint32_t c : cps)
            if (!py_isprintable(c) && c != ' ') return Value::boolean(false);
        return Value::boolean(true);
    }
    if (m == "isascii") return Value::boolean(is_ascii(s));
    if (m == "isidentifier") {
        if (cps.empty() || py_isdigit(cps[0])) return Value::boolean(false);
        for (uint32_t c : cps)
            if (!(py_isalnum(c) || c == '_')) return Value::boolean(false);
        return Value::boolean(true);
    }
    if (m == "isupper" || m == "islower") {
        bool any = false;
        for (uint32_t c : cps) {
            if (m == "isupper" ? py_islower(c) : py_isupper(c)) return Value::boolean(false);
            any |= m == "isupper" ? py_isupper(c) : py_islower(c);
        }
        return Value::boolean(any);
    }
    if (m == "istitle") {
        bool prev_cased = false, any = false;
        for (uint32_t c : cps) {
            if (py_isupper(c)) {
                if (prev_cased) return Value::boolean(false);
                prev_cased = any = true;
            } else if (py_islower(c)) {
                if (!prev_cased) return Value::boolean(false);
                prev_cased = any = true;
            } else {
                prev_cased = false;
            }
        }
        return Value::boolean(any);
    }
    type_error("'str' object has no method '" + m + "'");
}

Value seq_method(Interp& in, const Value& self, const std::string& m, CallArgs& args) {
    const auto& items = self.list().items;
    if (m == "copy") {
        bind(args, {}, "copy");
        in.charge(items.size());
        return Value::list(items, self.seq_kind());
    }
    if (m == "count") {
        auto a = bind(args, {"value"}, "count", 1);
        in.charge(items.size());
        int64_t n = 0;
        for (const Value& x : items) n += py_equal(x, a[0]);
        return Value::integer(n);
    }
    if (m == "index") {
        auto a = bind(args, {"value", "start", "stop"}, "index", 1);
        auto n = static_cast<int64_t>(items.size());
        int64_t st = 0, en = n;
        opt_int(a[1], st);
        opt_int(a[2], en);
        if (st < 0) st = std::max<int64_t>(st + n, 0);
        if (en < 0) en = std::max<int64_t>(en + n, 0);
        in.charge(items.size());
        for (int64_t i = st; i < std::min(en, n); ++i)
            if (py_equal(items[static_cast<size_t>(i)], a[0])) return Value::integer(i);
        raise("ValueError", repr(a[0]) + " is not in " + type_name(self));
    }
    type_error(std::string("'") + type_name(self) + "' object has no method '" + m + "'");
}

Value dict_method(Interp& in, const Value& self, const std::string& m, CallArgs& args) {
    const DictObj& d = self.dict();
    in.charge(d.size() + 1);
    if (m == "get") {
        auto a = bind(args, {"key", "default"}, "get", 1);
        if (!hashable(a[0])) type_error(std::string("unhashable type: '") + type_name(a[0]) + "'");
        if (const Value* v = d.find(a[0])) return *v;
        return given(a[1]) ? a[1] : Value::none();
    }
    bind(args, {}, m.c_str());
    if (m == "copy") return Value::dict(std::make_shared<DictObj>(d));
    std::vector<Value> out;
    out.reserve(d.size());
    for (const auto& [k, v] : d.items) {
        if (m == "keys") out.push_back(k);
        else if (m == "values") out.push_back(v);
        else out.push_back(Value::tuple({k, v}));
    }
    return Value::list(std::move(out));
}

} // namespace

bool has_method(const Value& self, const std::string& name, bool& unsafe) {
    unsafe = false;
    if (name.empty() || name[0] < 'a' || name[0] > 'z') return false;
    switch (self.kind()) {
    case Kind::String: return in_list(STR_METHODS, name);
    case Kind::List:
        if (self.seq_kind() == SeqKind::Tuple) return in_list(TUPLE_SAFE, name);
        if (self.seq_kind() == SeqKind::Iterator) return false;
        if (in_list(LIST_SAFE, name)) return true;
        return unsafe = in_list(LIST_UNSAFE, name);
    case Kind::Dict:
        if (in_list(DICT_SAFE, name)) return true;
        return unsafe = in_list(DICT_UNSAFE, name);
    default: return false;
    }
}

Value call_method(Interp& in, const Value& self, const std::string& name, CallArgs& args) {
    switch (self.kind()) {
    case Kind::String: return str_method(in, self, name, args);
    case Kind::List: return seq_method(in, self, name, args);
    case Kind::Dict: return dict_method(in, self, name, args);
    default: type_error(std::string("'") + type_name(self) + "' object has no method '" + name + "'");
    }
}

// ---- globals --------------------------------------------------------------------------------

namespace {

struct BuiltinFn : Object {
    std::string name;
    Value (*fn)(Interp&, CallArgs&) = nullptr;
    const char* type_name() const override { return "function"; }
    std::string repr() const override { return "<function " + name + ">"; }
    bool callable() const override { return true; }
    Value call(Interp& in, CallArgs& args) override { return fn(in, args); }
};

struct Joiner : Object {
    std::string sep;
    bool used = false;
    const char* type_name() const override { return "Joiner"; }
    bool callable() const override { return true; }
    Value call(Interp&, CallArgs& args) override {
        bind(args, {}, "joiner");
        if (!used) {
            used = true;
            return Value::string("");
        }
        return Value::string(sep);
    }
};

struct Cycler : Object, std::enable_shared_from_this<Cycler> {
    std::vector<Value> items;
    size_t pos = 0;
    const char* type_name() const override { return "Cycler"; }
    Value get_attr(Interp& in, const std::string& name) override;
};

struct CyclerMethod : Object {
    std::shared_ptr<Cycler> c;
    bool reset = false;
    const char* type_name() const override { return "method"; }
    bool callable() const override { return true; }
    Value call(Interp&, CallArgs& args) override {
        bind(args, {}, reset ? "reset" : "next");
        if (reset) {
            c->pos = 0;
            return Value::none();
        }
        Value v = c->items[c->pos];
        c->pos = (c->pos + 1) % c->items.size();
        return v;
    }
};

Value Cycler::get_attr(Interp& in, const std::string& name) {
    if (name == "current") return items[pos];
    if (name == "next" || name == "reset") {
        auto m = std::make_shared<CyclerMethod>();
        m->c = shared_from_this();
        m->reset = name == "reset";
        return Value::object(m);
    }
    return Object::get_attr(in, name);
}

// dict(...) and namespace(...): a mapping or an iterable of pairs, then keyword arguments
std::shared_ptr<DictObj> dict_from_args(Interp& in, CallArgs& args, const char* fname) {
    auto d = std::make_shared<DictObj>();
    if (args.pos.size() > 1) type_error(std::string(fname) + " expected at most 1 argument, got " + std::to_string(args.pos.size()));
    if (args.pos.size() == 1) {
        const Value& src = args.pos[0];
        if (src.is_undefined()) src.fail_undefined();  // dict() asks it for .keys
        if (src.is_dict() || src.is_namespace()) {
            for (const auto& [k, v] : src.dict().items) d->set(k, v);
        } else {
            auto items = in.iterate(src);
            size_t i = 0;
            for (const Value& pair : items->items) {
                if (!pair.is_list() && !pair.is_string())
                    type_error("cannot convert dictionary update sequence element #" + std::to_string(i) + " to a sequence");
                auto kv = in.iterate(pair);
                if (kv->items.size() != 2)
                    raise("ValueError", "dictionary update sequence element #" + std::to_string(i) + " has length " +
                                            std::to_string(kv->items.size()) + "; 2 is required");
                if (!hashable(kv->items[0])) type_error(std::string("unhashable type: '") + type_name(kv->items[0]) + "'");
                d->set(kv->items[0], kv->items[1]);
                ++i;
            }
        }
    }
    for (auto& [k, v] : args.kw) d->set(Value::string(k), v);
    in.charge(d->size());
    return d;
}

Value g_range(Interp& in, CallArgs& args) {
    if (!args.kw.empty()) type_error("range() takes no keyword arguments");
    if (args.pos.empty() || args.pos.size() > 3)
        type_error("range expected at least 1 argument, got " + std::to_string(args.pos.size()));
    for (const Value& v : args.pos)
        if (!int_like(v)) type_error(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer");
    int64_t start = 0, stop, step = 1;
    if (args.pos.size() == 1) {
        stop = args.pos[0].as_int();
    } else {
        start = args.pos[0].as_int();
        stop = args.pos[1].as_int();
        if (args.pos.size() == 3) step = args.pos[2].as_int();
    }
    if (step == 0) raise("ValueError", "range() arg 3 must not be zero");
    // the sandbox refuses ranges longer than MAX_RANGE = 100000
    long double span = step > 0 ? (static_cast<long double>(stop) - start) : (static_cast<long double>(start) - stop);
    long double len = span <= 0 ? 0 : std::ceil(span / (step > 0 ? step : -static_cast<long double>(step)));
    if (len > 100000)
        raise("OverflowError", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    std::vector<Value> items;
    items.reserve(static_cast<size_t>(len));
    for (int64_t i = 0; i < static_cast<int64_t>(len); ++i) items.push_back(Value::integer(start + i * step));
    in.charge(items.size());
    return Value::list(std::move(items));
}

Value g_dict(Interp& in, CallArgs& args) { return Value::dict(dict_from_args(in, args, "dict")); }

Value g_namespace(Interp& in, CallArgs& args) {
    auto d = dict_from_args(in, args, "namespace");
    d->depth = 1;
    in.track(d);
    return Value::ns(d);
}

Value g_raise_exception(Interp&, CallArgs& args) {
    auto a = bind(args, {"message"}, "raise_exception", 1);
    raise("TemplateError", to_str(a[0]));
}

Value g_strftime_now(Interp& in, CallArgs& args) {
    auto a = bind(args, {"format"}, "strftime_now", 1);
    const std::string& fmt = want_str(a[0], "strftime() argument 1");
    // Python handles %f, %z and %Z itself (naive datetime: empty zone), the rest is C strftime
    std::string f;
    for (size_t i = 0; i < fmt.size(); ++i) {
        if (fmt[i] == '%' && i + 1 < fmt.size()) {
            char c = fmt[i + 1];
            if (c == 'f') {
                char buf[8];
                std::snprintf(buf, sizeof buf, "%06ld", in.now_usec());
                f += buf;
                ++i;
                continue;
            }
            if (c == 'z' || c == 'Z') {
                ++i;
                continue;
            }
            f += fmt[i];
            f += c;
            ++i;
            continue;
        }
        f += fmt[i];
    }
    if (f.empty()) return Value::string("");
    in.check_size(f.size() * 64);
    std::vector<char> buf(f.size() * 64 + 64);
    std::tm tm = in.now();
    // the C locale, as Python (which never calls setlocale) formats dates: "November", "Wed"
    static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", static_cast<locale_t>(nullptr));
    size_t n = strftime_l(buf.data(), buf.size(), f.c_str(), &tm, c_locale);
    return Value::string(std::string(buf.data(), n));
}

Value g_joiner(Interp&, CallArgs& args) {
    auto a = bind(args, {"sep"}, "joiner");
    auto j = std::make_shared<Joiner>();
    j->sep = given(a[0]) ? to_str(a[0]) : ", ";
    return Value::object(j);
}

Value g_cycler(Interp&, CallArgs& args) {
    if (args.pos.empty()) raise("RuntimeError", "at least one item has to be provided");
    auto c = std::make_shared<Cycler>();
    c->items = args.pos;
    return Value::object(c);
}

} // namespace

std::vector<std::pair<std::string, Value>> make_globals() {
    std::vector<std::pair<std::string, Value>> g;
    auto add = [&](const char* name, Value (*fn)(Interp&, CallArgs&)) {
        auto b = std::make_shared<BuiltinFn>();
        b->name = name;
        b->fn = fn;
        g.emplace_back(name, Value::object(b));
    };
    add("range", g_range);
    add("dict", g_dict);
    add("namespace", g_namespace);
    add("raise_exception", g_raise_exception);
    add("strftime_now", g_strftime_now);
    add("joiner", g_joiner);
    add("cycler", g_cycler);
    return g;
}

// ---- formatting ---------------------------------------------------------------------------------

namespace {

// Python's int(x) for %d and friends
int64_t to_int_for_format(const Value& v, char conv) {
    if (int_like(v)) return v.as_int();
    if (v.is_float()) {
        double d = v.as_float();
        if (!std::isfinite(d)) raise("OverflowError", "cannot convert float infinity or NaN to integer");
        if (std::fabs(d) >= 9.2e18) raise("OverflowError", "integer too large");
        return static_cast<int64_t>(d);
    }
    if (conv == 'x' || conv == 'X' || conv == 'o')
        type_error(std::string("%") + conv + " format: an integer is required, not " + type_name(v));
    type_error(std::string("%") + conv + " format: a real number is required, not " + type_name(v));
}

double to_float_for_format(const Value& v, char conv) {
    if (v.is_number()) return v.as_float();
    type_error(std::string("must be real number, not ") + type_name(v) + " (%" + conv + ")");
}

std::string pad_field(std::string body, bool left, int64_t width) {
    auto n = static_cast<int64_t>(utf8_length(body));
    if (width <= n) return body;
    std::string pad(static_cast<size_t>(width - n), ' ');
    return left ? body + pad : pad + body;
}

} // namespace

std::string percent_format(Interp& in, const std::string& fmt, const Value& args) {
    std::vector<Value> pos;
    const DictObj* mapping = nullptr;
    if (args.is_list() && args.seq_kind() == SeqKind::Tuple) {
        pos = args.list().items;
    } else {
        pos.push_back(args);
        if (args.is_dict()) mapping = &args.dict();
    }
    size_t next = 0;
    bool used_mapping = false;
    std::string out;
    auto take = [&]() -> Value {
        if (next >= pos.size()) type_error("not enough arguments for format string");
        return pos[next++];
    };
    for (size_t i = 0; i < fmt.size(); ++i) {
        char c = fmt[i];
        if (c != '%') {
            out += c;
            continue;
        }
        if (++i >= fmt.size()) raise("ValueError", "incomplete format");
        Value arg;
        bool have_arg = false;
        if (fmt[i] == '(') {
            if (!mapping) type_error("format requires a mapping");
            size_t close = fmt.find(')', i);
            if (close == std::string::npos) raise("ValueError", "incomplete format key");
            std::string key = fmt.substr(i + 1, close - i - 1);
            const Value* v = mapping->find(std::string_view(key));
            if (!v) raise("KeyError", repr(Value::string(key)));
            arg = *v;
            have_arg = used_mapping = true;
            i = close + 1;
            if (i >= fmt.size()) raise("ValueError", "incomplete format");
        }
        std::string flags;
        while (i < fmt.size() && fmt[i] != 0 && std::strchr("-+ #0", fmt[i])) flags += fmt[i++];
        int64_t width = -1, prec = -1;
        auto number = [&](int64_t& dst) {
            if (i < fmt.size() && fmt[i] == '*') {
                Value w = take();
                if (!int_like(w)) type_error("* wants int");
                dst = w.as_int();
                ++i;
                return;
            }
            if (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
                dst = 0;
                while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
                    dst = dst * 10 + (fmt[i++] - '0');
                    if (dst > 100000000) raise("ValueError", "width too big");
                }
            }
        };
        number(width);
        if (i < fmt.size() && fmt[i] == '.') {
            ++i;
            prec = 0;
            number(prec);
        }
        while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
        if (i >= fmt.size()) raise("ValueError", "incomplete format");
        char conv = fmt[i];
        if (conv == '%') {
            out += '%';
            continue;
        }
        if (!have_arg) arg = take();
        in.check_size(static_cast<uint64_t>(std::max<int64_t>(width, 0)) + static_cast<uint64_t>(std::max<int64_t>(prec, 0)));
        bool left = flags.find('-') != std::string::npos;
        std::string body;
        switch (conv) {
        case 's':
        case 'r':
        case 'a': {
            body = conv == 's' ? to_str(arg) : repr(arg);
            if (prec >= 0) {
                CodePoints cp(body);
                if (static_cast<size_t>(prec) < cp.size()) body = std::string(cp.sub(0, static_cast<size_t>(prec)));
            }
            out += pad_field(std::move(body), left, width);
            continue;
        }
        case 'c': {
            if (arg.is_string()) {
                if (utf8_length(arg.str()) != 1) type_error("%c requires int or char");
                body = arg.str();
            } else if (int_like(arg)) {
                if (arg.as_int() < 0 || arg.as_int() > 0x10FFFF) raise("OverflowError", "%c arg not in range(0x110000)");
                auto cp = static_cast<uint32_t>(arg.as_int());
                utf8_append(body, cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp);
            } else {
                type_error("%c requires int or char");
            }
            out += pad_field(std::move(body), left, width);
            continue;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            int64_t v = to_int_for_format(arg, conv);
            std::string spec = "%" + flags;
            if (width >= 0) spec += std::to_string(width);
            if (prec >= 0) spec += "." + std::to_string(prec);
            spec += "ll";
            spec += conv == 'i' || conv == 'u' ? 'd' : conv;
            bool neg = v < 0 && conv != 'd' && conv != 'i' && conv != 'u';
            unsigned long long mag = v < 0 ? 0ull - static_cast<unsigned long long>(v) : static_cast<unsigned long long>(v);
            char buf[256];
            if (neg) {
                // Python prints -0x1f as "-1f"; C would print the two's complement
                std::string s2 = "%" + flags;
                s2.erase(std::remove(s2.begin(), s2.end(), '+'), s2.end());
                s2.erase(std::remove(s2.begin(), s2.end(), ' '), s2.end());
                s2 += "ll";
                s2 += conv;
                std::snprintf(buf, sizeof buf, s2.c_str(), mag);
                body = std::string("-") + buf;
                out += pad_field(std::move(body), left, width);
            } else {
                std::vector<char> big(static_cast<size_t>(std::max<int64_t>(width, 0) + std::max<int64_t>(prec, 0)) + 64);
                std::snprintf(big.data(), big.size(), spec.c_str(), conv == 'd' || conv == 'i' || conv == 'u' ? static_cast<long long>(v) : static_cast<long long>(mag));
                out += big.data();
            }
            continue;
        }
        case 'e':
        case 'E':
        case 'f':
        case 'F':
        case 'g':
        case 'G': {
            double v = to_float_for_format(arg, conv);
            std::string spec = "%" + flags;
            if (width >= 0) spec += std::to_string(width);
            spec += "." + std::to_string(prec >= 0 ? std::min<int64_t>(prec, 400) : 6);
            spec += conv;
            std::vector<char> big(static_cast<size_t>(std::max<int64_t>(width, 0)) + 800);
            std::snprintf(big.data(), big.size(), spec.c_str(), v);
            std::string r = big.data();
            // C prints inf/nan; Python likewise, but as "inf"/"nan" regardless of flags' case rules
            out += r;
            continue;
        }
        default: {
            char buf[128];
            std::snprintf(buf, sizeof buf, "unsupported format character '%c' (0x%x) at index %zu", conv,
                          static_cast<unsigned>(static_cast<unsigned char>(conv)), i);
            raise("ValueError", buf);
        }
        }
    }
    if (!used_mapping && !mapping && next < pos.size()) type_error("not all arguments converted during string formatting");
    in.check_size(out.size());
    in.charge(out.size());
    return out;
}

namespace {

// Python's format(value, spec) for the common cases of the format mini-language.
std::string format_spec(Interp& in, const Value& v, const std::string& spec) {
    if (v.is_undefined()) {
        if (!spec.empty()) type_error("unsupported format string passed to Undefined.__format__");
        return "";
    }
    size_t i = 0;
    uint32_t fill = ' ';
    char align = 0;
    auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
    {
        size_t j = 0;
        uint32_t cp = spec.empty() ? 0 : utf8_next(spec, j);
        if (j < spec.size() && is_align(spec[j]) && !spec.empty()) {
            fill = cp;
            align = spec[j];
            i = j + 1;
        } else if (!spec.empty() && is_align(spec[0])) {
            align = spec[0];
            i = 1;
        }
    }
    char sign = 0;
    if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
    bool alt = false;
    if (i < spec.size() && spec[i] == '#') {
        alt = true;
        ++i;
    }
    if (i < spec.size() && spec[i] == '0' && !align) {
        fill = '0';
        align = '=';
        ++i;
    }
    int64_t width = 0;
    while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') {
        width = width * 10 + (spec[i++] - '0');
        if (width > 100000000) raise("ValueError", "Too many decimal digits in format string");
    }
    char grouping = 0;
    if (i < spec.size() && (spec[i] == ',' || spec[i] == '_')) grouping = spec[i++];
    int64_t prec = -1;
    if (i < spec.size() && spec[i] == '.') {
        ++i;
        prec = 0;
        while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') {
            prec = prec * 10 + (spec[i++] - '0');
            if (prec > 400) raise("ValueError", "precision too big");
        }
    }
    char type = i < spec.size() ? spec[i++] : 0;
    if (i != spec.size()) raise("ValueError", "Invalid format specifier '" + spec + "' for object of type '" + type_name(v) + "'");

    std::string body;
    bool numeric = false;
    if (v.is_string() || (!v.is_number() && !type)) {
        if (type && type != 's')
            raise("ValueError", std::string("Unknown format code '") + type + "' for object of type '" + type_name(v) + "'");
        body = to_str(v);
        if (prec >= 0) {
            CodePoints cp(body);
            if (static_cast<size_t>(prec) < cp.size()) body = std::string(cp.sub(0, static_cast<size_t>(prec)));
        }
        if (!align) align = '<';
    } else if (v.is_number()) {
        numeric = true;
        bool as_int = (int_like(v) && (!type || type == 'd' || type == 'n' || type == 'x' || type == 'X' || type == 'o' ||
                                       type == 'b' || type == 'c'));
        if (as_int) {
            if (prec >= 0) raise("ValueError", "Precision not allowed in integer format specifier");
            int64_t n = v.as_int();
            unsigned long long mag = n < 0 ? 0ull - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
            char buf[80];
            if (type == 'c') {
                if (n < 0 || n > 0x10FFFF) raise("OverflowError", "%c arg not in range(0x110000)");
                auto cp = static_cast<uint32_t>(n);
                utf8_append(body, cp >= 0xD800 && cp <= 0xDFFF ? 0xFFFD : cp);
                numeric = false;
            } else if (type == 'b') {
                std::string b;
                do {
                    b += static_cast<char>('0' + (mag & 1));
                    mag >>= 1;
                } while (mag);
                std::reverse(b.begin(), b.end());
                body = (alt ? "0b" : "") + b;
            } else {
                const char* f = type == 'x' ? "%llx" : type == 'X' ? "%llX" : type == 'o' ? "%llo" : "%llu";
                std::snprintf(buf, sizeof buf, f, mag);
                body = buf;
                if (alt && type) body = std::string("0") + (type == 'X' ? 'X' : type) + body;
            }
            if (grouping && (!type || type == 'd')) {
                std::string g;
                int k = 0;
                for (size_t p = body.size(); p-- > 0;) {
                    if (k && k % 3 == 0) g += grouping;
                    g += body[p];
                    ++k;
                }
                std::reverse(g.begin(), g.end());
                body = g;
            }
            if (numeric) {
                if (n < 0) body = "-" + body;
                else if (sign == '+') body = "+" + body;
                else if (sign == ' ') body = " " + body;
            }
        } else {
            double d = v.as_float();
            if (!type || type == 'f' || type == 'F' || type == 'e' || type == 'E' || type == 'g' || type == 'G' || type == '%') {
                if (!type && prec < 0) {
                    body = int_like(v) ? int_str(v.as_int()) : float_repr(d);
                } else {
                    char t = type ? type : 'g';
                    double x = t == '%' ? d * 100 : d;
                    std::string f = std::string("%") + (sign == '+' ? "+" : sign == ' ' ? " " : "") + (alt ? "#" : "") + "." +
                                    std::to_string(prec >= 0 ? prec : 6) + (t == '%' ? 'f' : t);
                    char buf[900];
                    std::snprintf(buf, sizeof buf, f.c_str(), x);
                    body = buf;
                    if (t == '%') body += '%';
                    if (std::isfinite(d) && !type && body.find_first_of(".e") == std::string::npos) body += ".0";
                }
                if (!type && prec < 0 && sign && d >= 0) body = std::string(1, sign == '+' ? '+' : ' ') + body;
                if (grouping) {
                    size_t start = (body[0] == '-' || body[0] == '+' || body[0] == ' ') ? 1 : 0;
                    size_t end = body.find_first_of(".e%", start);
                    if (end == std::string::npos) end = body.size();
                    std::string ip = body.substr(start, end - start), g;
                    int k = 0;
                    for (size_t p = ip.size(); p-- > 0;) {
                        if (k && k % 3 == 0) g += grouping;
                        g += ip[p];
                        ++k;
                    }
                    std::reverse(g.begin(), g.end());
                    body = body.substr(0, start) + g + body.substr(end);
                }
            } else {
                raise("ValueError", std::string("Unknown format code '") + type + "' for object of type '" + type_name(v) + "'");
            }
        }
        if (!align) align = '>';
    } else {
        body = to_str(v);
        if (!align) align = '<';
    }
    auto n = static_cast<int64_t>(utf8_length(body));
    if (width <= n) return body;
    std::string f;
    utf8_append(f, fill);
    in.check_size(static_cast<uint64_t>(width) * f.size());
    auto rep = [&](int64_t k) {
        std::string r;
        for (int64_t q = 0; q < k; ++q) r += f;
        return r;
    };
    int64_t pad = width - n;
    switch (align) {
    case '<': return body + rep(pad);
    case '^': return rep(pad / 2) + body + rep(pad - pad / 2);
    case '=':
        if (numeric && !body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' '))
            return body.substr(0, 1) + rep(pad) + body.substr(1);
        return rep(pad) + body;
    default: return rep(pad) + body;
    }
}

} // namespace

std::string str_format(Interp& in, const std::string& fmt, const CallArgs& args) {
    std::string out;
    size_t auto_index = 0;
    bool manual = false, automatic = false;
    for (size_t i = 0; i < fmt.size(); ++i) {
        char c = fmt[i];
        if (c == '}') {
            if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
                out += '}';
                ++i;
                continue;
            }
            raise("ValueError", "Single '}' encountered in format string");
        }
        if (c != '{') {
            out += c;
            continue;
        }
        if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
            out += '{';
            ++i;
            continue;
        }
        // {field!conv:spec}; nested {} inside the spec are not supported
        size_t close = fmt.find('}', i);
        if (close == std::string::npos) raise("ValueError", "expected '}' before end of string");
        std::string field = fmt.substr(i + 1, close - i - 1);
        i = close;
        std::string spec;
        size_t colon = field.find(':');
        if (colon != std::string::npos) {
            spec = field.substr(colon + 1);
            field.resize(colon);
        }
        char conv = 0;
        size_t bang = field.find('!');
        if (bang != std::string::npos) {
            if (bang + 2 != field.size()) raise("ValueError", "expected ':' after conversion specifier");
            conv = field[bang + 1];
            field.resize(bang);
        }
        // the first name or index, then .attr and [key] parts
        size_t end = field.find_first_of(".[");
        std::string first = field.substr(0, end);
        Value v;
        if (first.empty()) {
            if (manual) raise("ValueError", "cannot switch from manual field specification to automatic field numbering");
            automatic = true;
            if (auto_index >= args.pos.size()) raise("IndexError", "Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
            v = args.pos[auto_index++];
        } else if (std::all_of(first.begin(), first.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
            if (automatic) raise("ValueError", "cannot switch from automatic field numbering to manual field specification");
            manual = true;
            size_t k = std::strtoul(first.c_str(), nullptr, 10);
            if (k >= args.pos.size()) raise("IndexError", "Replacement index " + first + " out of range for positional args tuple");
            v = args.pos[k];
        } else {
            bool found = false;
            for (const auto& [k, x] : args.kw)
                if (k == first) {
                    v = x;
                    found = true;
                }
            if (!found) raise("KeyError", repr(Value::string(first)));
        }
        while (end != std::string::npos && end < field.size()) {
            if (field[end] == '.') {
                size_t nx = field.find_first_of(".[", end + 1);
                v = in.getattr(v, field.substr(end + 1, nx == std::string::npos ? std::string::npos : nx - end - 1));
                end = nx;
            } else {
                size_t rb = field.find(']', end);
                if (rb == std::string::npos) raise("ValueError", "Missing ']' in format string");
                std::string key = field.substr(end + 1, rb - end - 1);
                bool digits = !key.empty() && std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
                v = in.getitem(v, digits ? Value::integer(std::strtoll(key.c_str(), nullptr, 10)) : Value::string(key));
                end = rb + 1;
            }
            if (v.is_undefined()) v.fail_undefined();
        }
        if (conv == 'r' || conv == 'a') v = Value::string(repr(v));
        else if (conv == 's') v = Value::string(to_str(v));
        else if (conv) raise("ValueError", std::string("Unknown conversion specifier ") + conv);
        out += format_spec(in, v, spec);
        in.check_size(out.size());
    }
    in.charge(out.size());
    return out;
}

// ---- json.dumps ---------------------------------------------------------------------------------

namespace {

struct JsonWriter {
    Interp* in;
    bool ensure_ascii;
    bool pretty;
    std::string indent;
    std::string item_sep, key_sep;
    bool sort_keys;
    std::string out;

    void str(std::string_view s) {
        out += '"';
        for (size_t i = 0; i < s.size();) {
            auto b = static_cast<unsigned char>(s[i]);
            if (b < 0x80) {
                ++i;
                switch (b) {
                case '"': out += "\\\""; break;
                case '\\': out += "\\\\"; break;
                case '\n': out += "\\n"; break;
                case '\r': out += "\\r"; break;
                case '\t': out += "\\t"; break;
                case '\b': out += "\\b"; break;
                case '\f': out += "\\f"; break;
                default:
                    if (b < 0x20) {
                        char buf[8];
                        std::snprintf(buf, sizeof buf, "\\u%04x", b);
                        out += buf;
                    } else {
                        out += static_cast<char>(b);
                    }
                }
                continue;
            }
            size_t st = i;
            uint32_t cp = utf8_next(s, i);
            if (!ensure_ascii) {
                out.append(s.substr(st, i - st));
                continue;
            }
            char buf[16];
            if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                std::snprintf(buf, sizeof buf, "\\u%04x", cp);
            }
            out += buf;
        }
        out += '"';
    }

    static std::string float_str(double d) {
        if (std::isnan(d)) return "NaN";
        if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
        return float_repr(d);
    }

    void newline(int level) {
        in->check_size(out.size() + 1 + indent.size() * static_cast<size_t>(level));
        out += '\n';
        for (int i = 0; i < level; ++i) out += indent;
    }

    std::string key_text(const Value& k) {
        switch (k.kind()) {
        case Kind::String: return k.str();
        case Kind::Bool: return k.as_bool() ? "true" : "false";
        case Kind::None: return "null";
        case Kind::Int: return int_str(k.as_int());
        case Kind::Float: return float_str(k.as_float());
        default: type_error(std::string("keys must be str, int, float, bool or None, not ") + type_name(k));
        }
    }

    void value(const Value& v, int level) {
        if (level > MAX_VALUE_DEPTH) raise("RecursionError", "maximum recursion depth exceeded while encoding a JSON object");
        switch (v.kind()) {
        case Kind::None: out += "null"; return;
        case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
        case Kind::Int: out += int_str(v.as_int()); return;
        case Kind::Float: out += float_str(v.as_float()); return;
        case Kind::String:
            str(v.str());
            in->check_size(out.size());
            return;
        case Kind::List: {
            if (v.seq_kind() == SeqKind::Iterator) break;
            const auto& items = v.list().items;
            if (items.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            for (size_t i = 0; i < items.size(); ++i) {
                if (i) out += item_sep;
                if (pretty) newline(level + 1);
                value(items[i], level + 1);
            }
            if (pretty) newline(level);
            out += ']';
            return;
        }
        case Kind::Dict: {
            std::vector<const std::pair<Value, Value>*> items;
            for (const auto& kv : v.dict().items) items.push_back(&kv);
            if (items.empty()) {
                out += "{}";
                return;
            }
            if (sort_keys) {
                // insertion sort is fine for the dict sizes templates see, and safe for any ordering
                for (size_t i = 1; i < items.size(); ++i)
                    for (size_t j = i; j > 0 && py_compare(items[j]->first, items[j - 1]->first) < 0; --j)
                        std::swap(items[j], items[j - 1]);
            }
            out += '{';
            bool first = true;
            for (const auto* kv : items) {
                if (!first) out += item_sep;
                first = false;
                if (pretty) newline(level + 1);
                str(key_text(kv->first));
                out += key_sep;
                value(kv->second, level + 1);
            }
            if (pretty) newline(level);
            out += '}';
            return;
        }
        default: break;
        }
        type_error(std::string("Object of type ") + type_name(v) + " is not JSON serializable");
    }
};

} // namespace

std::string to_json(Interp& in, const Value& v, bool ensure_ascii, const Value& indent, const std::string& item_sep,
                    const std::string& key_sep, bool sort_keys) {
    JsonWriter w;
    w.in = &in;
    w.ensure_ascii = ensure_ascii;
    w.pretty = given(indent) && !indent.is_none();
    if (w.pretty) {
        if (indent.is_string()) {
            w.indent = indent.str();
        } else if (int_like(indent)) {
            int64_t n = indent.as_int();
            if (n > 1000) raise("ValueError", "indent too large");
            w.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
        } else {
            type_error(std::string("can't multiply sequence by non-int of type '") + type_name(indent) + "'");
        }
    }
    w.item_sep = item_sep;
    w.key_sep = key_sep;
    w.sort_keys = sort_keys;
    w.value(v, 0);
    in.check_size(w.out.size());
    in.charge(w.out.size());
    return std::move(w.out);
}

} // namespace slm::chat
