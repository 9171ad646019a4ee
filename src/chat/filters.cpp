// chat/filters.cpp - Jinja2's builtin filters and tests, with Hugging Face's tojson.
#include "chat/interp.h"
#include "chat/strings.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

namespace slm::chat {

namespace {

bool int_like(const Value& v) { return v.is_int() || v.is_bool(); }

int64_t want_int(const Value& v, const char* what) {
    if (!int_like(v)) type_error(std::string("'") + type_name(v) + "' object cannot be interpreted as an integer (" + what + ")");
    return v.as_int();
}

// A stable merge sort that tolerates any comparison (std::sort may run off the ends when the
// ordering is inconsistent, as with NaN). `less` may throw.
template <class T, class Less>
void stable_sort_safe(std::vector<T>& v, Less less) {
    std::vector<T> tmp(v.size());
    for (size_t width = 1; width < v.size(); width *= 2) {
        for (size_t lo = 0; lo < v.size(); lo += 2 * width) {
            size_t mid = std::min(lo + width, v.size()), hi = std::min(lo + 2 * width, v.size());
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = less(v[j], v[i]) ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        std::swap(v, tmp);
    }
}

Value lower_if_str(const Value& v) { return v.is_string() ? Value::string(py_lower_str(v.str())) : v; }

// "a.b.0" -> getitem chain, as Jinja2's make_attrgetter
struct AttrGetter {
    std::vector<Value> parts;
    Value def;  // default for an Undefined result (map's default=)
    AttrGetter() = default;
    explicit AttrGetter(const Value& attribute, Value d = Value()) : def(std::move(d)) {
        if (!attribute.is_string()) {
            if (given(attribute) && !attribute.is_none()) parts.push_back(attribute);
            return;
        }
        const std::string& s = attribute.str();
        size_t start = 0;
        while (true) {
            size_t dot = s.find('.', start);
            std::string p = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
            bool digits = !p.empty() && std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
            parts.push_back(digits && p.size() < 18 ? Value::integer(std::stoll(p)) : Value::string(p));
            if (dot == std::string::npos) break;
            start = dot + 1;
        }
    }
    Value operator()(Interp& in, Value item) const {
        for (const Value& p : parts) item = in.getitem(item, p);
        if (given(def) && !def.is_none() && item.is_undefined()) return def;
        return item;
    }
};

// sort's attribute may list several, comma-separated
std::vector<AttrGetter> multi_getter(const Value& attribute) {
    std::vector<AttrGetter> g;
    if (attribute.is_string()) {
        const std::string& s = attribute.str();
        size_t start = 0;
        while (true) {
            size_t comma = s.find(',', start);
            g.emplace_back(Value::string(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    } else {
        g.emplace_back(attribute);
    }
    return g;
}

Value generator(std::vector<Value> items, const char* type = "generator") {
    return Value::list(std::move(items), SeqKind::Iterator, type);
}

std::string soft_str(const Value& v) { return to_str(v); }

// Python's float(str): decimal, exponent, inf/infinity/nan, underscores between digits.
bool parse_py_float(std::string_view text, double& out) {
    std::string s = py_strip(text, false, {}, true, true);
    std::string clean;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '_') {
            bool ok = i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
                      std::isdigit(static_cast<unsigned char>(s[i + 1]));
            if (!ok) return false;
            continue;
        }
        clean += s[i];
    }
    std::string low;
    for (char c : clean) low += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t i = 0;
    bool neg = false;
    if (i < low.size() && (low[i] == '+' || low[i] == '-')) neg = low[i++] == '-';
    std::string rest = low.substr(i);
    if (rest == "inf" || rest == "infinity") {
        out = neg ? -INFINITY : INFINITY;
        return true;
    }
    if (rest == "nan") {
        out = NAN;
        return true;
    }
    // digits [. digits] | . digits, then optional e[+-]digits
    size_t j = 0, d1 = 0, d2 = 0;
    while (j < rest.size() && std::isdigit(static_cast<unsigned char>(rest[j]))) ++j, ++d1;
    if (j < rest.size() && rest[j] == '.') {
        ++j;
        while (j < rest.size() && std::isdigit(static_cast<unsigned char>(rest[j]))) ++j, ++d2;
    }
    if (d1 + d2 == 0) return false;
    if (j < rest.size() && rest[j] == 'e') {
        ++j;
        if (j < rest.size() && (rest[j] == '+' || rest[j] == '-')) ++j;
        size_t d3 = 0;
        while (j < rest.size() && std::isdigit(static_cast<unsigned char>(rest[j]))) ++j, ++d3;
        if (!d3) return false;
    }
    if (j != rest.size()) return false;
    out = std::strtod(clean.c_str(), nullptr);
    return true;
}

// Python's int(str, base).
bool parse_py_int(std::string_view text, int64_t base, int64_t& out) {
    std::string s = py_strip(text, false, {}, true, true);
    size_t i = 0;
    bool neg = false;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    auto prefix_base = [&](size_t at) -> int64_t {
        if (at + 1 >= s.size() || s[at] != '0') return 0;
        char p = static_cast<char>(std::tolower(static_cast<unsigned char>(s[at + 1])));
        return p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    };
    bool after_prefix = false;
    if (base == 0) {
        int64_t pb = prefix_base(i);
        if (pb) {
            base = pb;
            i += 2;
            after_prefix = true;
        } else {
            base = 10;
            // "010" is not valid with base 0 (only zeros may lead)
            size_t k = i;
            while (k < s.size() && (s[k] == '0' || s[k] == '_')) ++k;
            if (k > i && k < s.size() && s[i] == '0') return false;
        }
    } else if (base == 16 || base == 8 || base == 2) {
        if (prefix_base(i) == base) {
            i += 2;
            after_prefix = true;
        }
    }
    if (base < 2 || base > 36) return false;
    unsigned long long acc = 0;
    size_t n_digits = 0;
    bool last_us = false;
    for (; i < s.size(); ++i) {
        char c = s[i];
        if (c == '_') {
            if (last_us || (n_digits == 0 && !after_prefix)) return false;
            last_us = true;
            continue;
        }
        int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                : std::isalpha(static_cast<unsigned char>(c)) ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                                              : 99;
        if (d >= base) return false;
        last_us = false;
        if (acc > (static_cast<unsigned long long>(INT64_MAX) + 1 - static_cast<unsigned long long>(d)) / static_cast<unsigned long long>(base))
            raise("OverflowError", "integer too large (slm keeps 64-bit integers)");
        acc = acc * static_cast<unsigned long long>(base) + static_cast<unsigned long long>(d);
        ++n_digits;
    }
    if (!n_digits || last_us) return false;
    if (!neg && acc > static_cast<unsigned long long>(INT64_MAX)) raise("OverflowError", "integer too large");
    out = neg ? static_cast<int64_t>(0 - acc) : static_cast<int64_t>(acc);
    return true;
}

size_t py_len(const Value& v) {
    switch (v.kind()) {
    case Kind::String: return utf8_length(v.str());
    case Kind::List:
        if (v.seq_kind() != SeqKind::Iterator) return v.list().items.size();
        break;
    case Kind::Dict: return v.dict().size();
    case Kind::Undefined: return 0;
    default: break;
    }
    type_error(std::string("object of type '") + type_name(v) + "' has no len()");
}

// ---- filters ----

Value f_abs(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "abs");
    if (int_like(v)) {
        if (v.as_int() == INT64_MIN) raise("OverflowError", "integer overflow");
        return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    if (v.is_float()) return Value::number(std::fabs(v.as_float()));
    type_error(std::string("bad operand type for abs(): '") + type_name(v) + "'");
}

Value f_attr(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"name"}, "attr", 1);
    std::string name = to_str(p[0]);
    // attributes only: no fallback to items
    if (v.is_dict() || v.is_string() || v.is_list()) {
        bool unsafe = false;
        if (!has_method(v, name, unsafe)) return no_attribute(object_type_repr(v), name);
    }
    return in.getattr(v, name);
}

Value f_batch(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"linecount", "fill_with"}, "batch", 1);
    int64_t n = want_int(p[0], "linecount");
    auto items = in.iterate(v);
    if (given(p[1]) && !p[1].is_none() && n > 0) {  // the last batch is padded to n items
        in.check_size(static_cast<uint64_t>(n) * sizeof(Value));
        in.charge(static_cast<uint64_t>(n));
    }
    std::vector<Value> out, cur;
    for (const Value& x : items->items) {
        if (static_cast<int64_t>(cur.size()) == n) {
            out.push_back(Value::list(std::move(cur)));
            cur.clear();
        }
        cur.push_back(x);
    }
    if (!cur.empty()) {
        if (given(p[1]) && !p[1].is_none())
            while (static_cast<int64_t>(cur.size()) < n) cur.push_back(p[1]);
        out.push_back(Value::list(std::move(cur)));
    }
    in.charge(items->items.size());
    return generator(std::move(out));
}

Value f_capitalize(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "capitalize");
    return Value::string(py_capitalize(soft_str(v)));
}

Value f_center(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"width"}, "center");
    int64_t w = given(p[0]) ? want_int(p[0], "width") : 80;
    in.check_size(static_cast<uint64_t>(std::max<int64_t>(w, 0)));
    return Value::string(py_center(soft_str(v), w, ' '));
}

Value f_length(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "length");
    return Value::integer(static_cast<int64_t>(py_len(v)));
}

Value f_default(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"default_value", "boolean"}, "default");
    bool boolean = given(p[1]) && truthy(p[1]);
    if (v.is_undefined() || (boolean && !truthy(v))) return given(p[0]) ? p[0] : Value::string("");
    return v;
}

Value f_dictsort(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"case_sensitive", "by", "reverse"}, "dictsort");
    bool cs = given(p[0]) && truthy(p[0]);
    std::string by = given(p[1]) ? to_str(p[1]) : "key";
    bool rev = given(p[2]) && truthy(p[2]);
    if (by != "key" && by != "value") raise("FilterArgumentError", "You can only sort by either 'key' or 'value'");
    if (v.is_undefined()) v.fail_undefined();
    if (!v.is_dict()) type_error(std::string("'") + type_name(v) + "' object has no attribute 'items'");
    size_t pos = by == "key" ? 0 : 1;
    std::vector<Value> items;
    for (const auto& [k, x] : v.dict().items) items.push_back(Value::tuple({k, x}));
    in.charge(items.size() * 8);
    auto key = [&](const Value& t) {
        const Value& x = t.list().items[pos];
        return cs ? x : lower_if_str(x);
    };
    stable_sort_safe(items, [&](const Value& l, const Value& r) {
        return rev ? py_compare(key(r), key(l)) == -1 : py_compare(key(l), key(r)) == -1;
    });
    return Value::list(std::move(items));
}

Value f_escape(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "escape");
    if (v.is_markup()) return v;
    return Value::string(html_escape(soft_str(v)), true);
}

Value f_forceescape(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "forceescape");
    return Value::string(html_escape(soft_str(v)), true);
}

Value f_first(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "first");
    auto items = in.iterate(v);
    if (items->items.empty()) return Value::undefined("No first item, sequence was empty.");
    return items->items.front();
}

Value f_last(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "last");
    if (v.is_list() && v.seq_kind() == SeqKind::Iterator) type_error("'" + v.list().iter_type + "' object is not reversible");
    auto items = in.iterate(v);
    if (items->items.empty()) return Value::undefined("No last item, sequence was empty.");
    return items->items.back();
}

Value f_float(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"default"}, "float");
    Value def = given(p[0]) ? p[0] : Value::number(0.0);
    if (v.is_undefined()) v.fail_undefined();
    if (v.is_number()) return Value::number(v.as_float());
    double d;
    if (v.is_string() && parse_py_float(v.str(), d)) return Value::number(d);
    return def;
}

Value f_format(Interp& in, const Value& v, CallArgs& a) {
    if (!a.pos.empty() && !a.kw.empty()) raise("FilterArgumentError", "can't handle positional and keyword arguments at the same time");
    Value args;
    if (!a.kw.empty()) {
        auto d = std::make_shared<DictObj>();
        for (auto& [k, x] : a.kw) d->set(Value::string(k), x);
        args = Value::dict(d);
    } else {
        args = Value::tuple(a.pos);
    }
    return Value::string(percent_format(in, soft_str(v), args));
}

Value f_indent(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"width", "first", "blank"}, "indent");
    std::string ind;
    if (given(p[0]) && p[0].is_string()) {
        ind = p[0].str();
    } else {
        int64_t w = given(p[0]) ? want_int(p[0], "width") : 4;
        in.check_size(static_cast<uint64_t>(std::max<int64_t>(w, 0)));
        ind.assign(static_cast<size_t>(std::max<int64_t>(w, 0)), ' ');
    }
    if (v.is_undefined()) v.fail_undefined();
    if (!v.is_string()) type_error(std::string("unsupported operand type(s) for +=: '") + type_name(v) + "' and 'str'");
    std::vector<std::string> lines = py_splitlines(v.str() + "\n", false);
    in.check_size(v.str().size() + lines.size() * (ind.size() + 1));
    std::string rv;
    if (given(p[2]) && truthy(p[2])) {
        for (size_t i = 0; i < lines.size(); ++i) {
            if (i) rv += "\n" + ind;
            rv += lines[i];
        }
    } else {
        rv = lines.empty() ? std::string() : lines[0];
        for (size_t i = 1; i < lines.size(); ++i) {
            rv += "\n";
            if (!lines[i].empty()) rv += ind;
            rv += lines[i];
        }
    }
    if (given(p[1]) && truthy(p[1])) rv = ind + rv;
    in.charge(rv.size());
    return Value::string(std::move(rv));
}

Value f_int(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"default", "base"}, "int");
    Value def = given(p[0]) ? p[0] : Value::integer(0);
    int64_t base = given(p[1]) ? want_int(p[1], "base") : 10;
    if (v.is_undefined()) v.fail_undefined();
    if (int_like(v)) return Value::integer(v.as_int());
    auto from_float = [&](double d) {
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
        return Value::integer(static_cast<int64_t>(d));
    };
    if (v.is_float()) return from_float(v.as_float());
    if (v.is_string()) {
        int64_t i;
        if (parse_py_int(v.str(), base, i)) return Value::integer(i);
        double d;
        if (parse_py_float(v.str(), d)) return from_float(d);
    }
    return def;
}

Value f_items(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "items");
    if (v.is_undefined()) return generator({});
    if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& [k, x] : v.dict().items) out.push_back(Value::tuple({k, x}));
    in.charge(out.size());
    return generator(std::move(out), "generator");
}

Value f_join(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"d", "attribute"}, "join");
    std::string sep = given(p[0]) ? to_str(p[0]) : "";
    AttrGetter get(given(p[1]) ? p[1] : Value::none());
    auto items = in.iterate(v);
    std::string out;
    bool first = true;
    for (const Value& x : items->items) {
        if (!first) out += sep;
        first = false;
        append_str(out, get.parts.empty() ? x : get(in, x));
        in.check_size(out.size());
    }
    in.charge(out.size() + items->items.size());
    return Value::string(std::move(out));
}

Value f_list(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "list");
    auto items = in.iterate(v);
    in.charge(items->items.size());
    return Value::list(items->items);
}

Value f_lower(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "lower");
    return Value::string(py_lower_str(soft_str(v)));
}

Value f_upper(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "upper");
    return Value::string(py_upper_str(soft_str(v)));
}

Value f_map(Interp& in, const Value& v, CallArgs& a) {
    if (!truthy(v)) return generator({});  // Jinja2 checks its arguments only for a non-empty input
    auto items = in.iterate(v);
    std::vector<Value> out;
    out.reserve(items->items.size());
    in.charge(items->items.size());
    bool by_attr = a.pos.empty() && std::any_of(a.kw.begin(), a.kw.end(), [](const auto& kv) { return kv.first == "attribute"; });
    if (by_attr) {
        Value attribute, def;
        for (const auto& [k, x] : a.kw) {
            if (k == "attribute") attribute = x;
            else if (k == "default") def = x;
            else raise("FilterArgumentError", "Unexpected keyword argument '" + k + "'");
        }
        AttrGetter get(attribute, def);
        for (const Value& x : items->items) out.push_back(get(in, x));
        return generator(std::move(out));
    }
    if (a.pos.empty()) raise("FilterArgumentError", "map requires a filter argument");
    std::string name = to_str(a.pos[0]);
    CallArgs rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    for (const Value& x : items->items) {
        CallArgs args = rest;
        out.push_back(in.apply_filter(name, x, args));
    }
    return generator(std::move(out));
}

Value min_max(Interp& in, const Value& v, CallArgs& a, bool want_max) {
    auto p = bind(a, {"case_sensitive", "attribute"}, want_max ? "max" : "min");
    bool cs = given(p[0]) && truthy(p[0]);
    AttrGetter get(given(p[1]) ? p[1] : Value::none());
    auto items = in.iterate(v);
    in.charge(items->items.size());
    if (items->items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    auto key = [&](const Value& x) {
        Value k = get.parts.empty() ? x : get(in, x);
        return cs ? k : lower_if_str(k);
    };
    size_t best = 0;
    Value best_key = key(items->items[0]);
    for (size_t i = 1; i < items->items.size(); ++i) {
        Value k = key(items->items[i]);
        if (want_max ? py_compare(k, best_key) == 1 : py_compare(k, best_key) == -1) {
            best = i;
            best_key = k;
        }
    }
    return items->items[best];
}

Value f_max(Interp& in, const Value& v, CallArgs& a) { return min_max(in, v, a, true); }
Value f_min(Interp& in, const Value& v, CallArgs& a) { return min_max(in, v, a, false); }

Value f_pprint(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "pprint");
    return Value::string(repr(v));
}

// select / reject / selectattr / rejectattr
Value select_or_reject(Interp& in, const Value& v, CallArgs& a, bool attr, bool keep) {
    if (!truthy(v)) return generator({});
    auto items = in.iterate(v);
    in.charge(items->items.size());
    size_t off = 0;
    AttrGetter get;
    if (attr) {
        if (a.pos.empty()) raise("FilterArgumentError", "Missing parameter for attribute name");
        get = AttrGetter(a.pos[0]);
        off = 1;
    }
    bool have_test = a.pos.size() > off;
    std::string test = have_test ? to_str(a.pos[off]) : "";
    CallArgs rest;
    if (have_test) rest.pos.assign(a.pos.begin() + static_cast<ptrdiff_t>(off) + 1, a.pos.end());
    rest.kw = a.kw;
    std::vector<Value> out;
    for (const Value& x : items->items) {
        Value t = attr ? get(in, x) : x;
        bool r;
        if (have_test) {
            CallArgs args = rest;
            r = in.apply_test(test, t, args);
        } else {
            r = truthy(t);
        }
        if (r == keep) out.push_back(x);
    }
    return generator(std::move(out));
}

Value f_select(Interp& in, const Value& v, CallArgs& a) { return select_or_reject(in, v, a, false, true); }
Value f_reject(Interp& in, const Value& v, CallArgs& a) { return select_or_reject(in, v, a, false, false); }
Value f_selectattr(Interp& in, const Value& v, CallArgs& a) { return select_or_reject(in, v, a, true, true); }
Value f_rejectattr(Interp& in, const Value& v, CallArgs& a) { return select_or_reject(in, v, a, true, false); }

Value f_replace(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"old", "new", "count"}, "replace", 2);
    int64_t count = given(p[2]) && !p[2].is_none() ? want_int(p[2], "count") : -1;
    std::string r = py_replace(soft_str(v), to_str(p[0]), to_str(p[1]), count, in.max_output_bytes());
    in.check_size(r.size());
    in.charge(r.size());
    return Value::string(std::move(r));
}

Value f_reverse(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "reverse");
    if (v.is_string()) {
        std::vector<uint32_t> cps = utf8_decode(v.str());
        std::reverse(cps.begin(), cps.end());
        return Value::string(utf8_encode(cps, 0, cps.size()));
    }
    auto items = in.iterate(v);
    std::vector<Value> out(items->items.rbegin(), items->items.rend());
    in.charge(out.size());
    if (v.is_list() && v.seq_kind() == SeqKind::Iterator) return Value::list(std::move(out));  // not reversible: list(value) reversed
    return generator(std::move(out), v.is_dict() ? "dict_reversekeyiterator" : v.is_list() && v.seq_kind() == SeqKind::Tuple ? "reversed" : "list_reverseiterator");
}

Value f_round(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"precision", "method"}, "round");
    int64_t prec = given(p[0]) ? want_int(p[0], "precision") : 0;
    std::string method = given(p[1]) ? to_str(p[1]) : "common";
    if (method != "common" && method != "ceil" && method != "floor")
        raise("FilterArgumentError", "method must be common, ceil or floor");
    if (!v.is_number()) type_error(std::string("type ") + type_name(v) + " doesn't define __round__ method");
    if (method != "common") {
        double scale = std::pow(10.0, static_cast<double>(prec));
        double x = v.as_float() * scale;
        return Value::number((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
    }
    if (int_like(v)) {
        int64_t x = v.as_int();
        if (prec >= 0) return Value::integer(x);
        if (prec < -18) return Value::integer(0);
        int64_t p10 = 1;
        for (int64_t k = 0; k < -prec; ++k) p10 *= 10;
        int64_t q = x / p10, r = x % p10;
        if (r < 0) {
            r += p10;
            --q;
        }
        if (2 * r > p10 || (2 * r == p10 && (q & 1))) ++q;  // half to even
        int64_t out;
        if (__builtin_mul_overflow(q, p10, &out)) raise("OverflowError", "integer overflow");
        return Value::integer(out);
    }
    double x = v.as_float();
    if (!std::isfinite(x)) {
        return Value::number(x);
    }
    if (prec > 300) return Value::number(x);
    if (prec >= 0) {
        // the correctly rounded decimal, as Python's round (exact ties go to even)
        char buf[512];
        std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), x);
        return Value::number(std::strtod(buf, nullptr));
    }
    double scale = std::pow(10.0, static_cast<double>(-prec));
    return Value::number(std::nearbyint(x / scale) * scale);
}

Value f_safe(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "safe");
    return Value::string(soft_str(v), true);
}

Value f_slice(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"slices", "fill_with"}, "slice", 1);
    int64_t slices = want_int(p[0], "slices");
    auto items = in.iterate(v);
    auto len = static_cast<int64_t>(items->items.size());
    if (slices <= 0) raise("ZeroDivisionError", "integer division or modulo by zero");
    if (slices > 100000) raise("OverflowError", "too many slices");
    int64_t per = len / slices, extra = len % slices, offset = 0;
    std::vector<Value> out;
    for (int64_t k = 0; k < slices; ++k) {
        int64_t start = offset + k * per;
        if (k < extra) ++offset;
        int64_t end = offset + (k + 1) * per;
        std::vector<Value> part(items->items.begin() + start, items->items.begin() + end);
        if (given(p[1]) && !p[1].is_none() && k >= extra) part.push_back(p[1]);
        out.push_back(Value::list(std::move(part)));
    }
    in.charge(items->items.size() + out.size());
    return generator(std::move(out));
}

Value f_sort(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"reverse", "case_sensitive", "attribute"}, "sort");
    bool rev = given(p[0]) && truthy(p[0]);
    bool cs = given(p[1]) && truthy(p[1]);
    bool by_attr = given(p[2]) && !p[2].is_none();
    std::vector<AttrGetter> getters = by_attr ? multi_getter(p[2]) : std::vector<AttrGetter>{};
    auto items = in.iterate(v);
    const size_t n = items->items.size();
    in.charge(n * 8 + 1);
    // sort indices by precomputed keys
    std::vector<Value> keys(n);
    for (size_t i = 0; i < n; ++i) {
        const Value& x = items->items[i];
        if (!by_attr) {
            keys[i] = cs ? x : lower_if_str(x);
        } else {
            std::vector<Value> parts;
            for (const auto& g : getters) {
                Value k = g(in, x);
                parts.push_back(cs ? k : lower_if_str(k));
            }
            keys[i] = Value::list(std::move(parts));
        }
    }
    std::vector<size_t> idx(n);
    for (size_t i = 0; i < n; ++i) idx[i] = i;
    stable_sort_safe(idx, [&](size_t l, size_t r) {
        return rev ? py_compare(keys[r], keys[l]) == -1 : py_compare(keys[l], keys[r]) == -1;
    });
    std::vector<Value> out;
    out.reserve(n);
    for (size_t i : idx) out.push_back(items->items[i]);
    return Value::list(std::move(out));
}

Value f_string(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "string");
    if (v.is_string()) return v;
    return Value::string(soft_str(v));
}

Value f_striptags(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "striptags");
    std::string s = soft_str(v), t;
    for (size_t i = 0; i < s.size();) {
        if (s.compare(i, 4, "<!--") == 0) {
            size_t e = s.find("-->", i + 4);
            if (e == std::string::npos) {
                t += s.substr(i);
                break;
            }
            i = e + 3;
        } else if (s[i] == '<') {
            size_t e = s.find('>', i + 1);
            if (e == std::string::npos) {
                t += s.substr(i);
                break;
            }
            i = e + 1;
        } else {
            t += s[i++];
        }
    }
    static const std::pair<const char*, const char*> entities[] = {
        {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#34;", "\""}, {"&#39;", "'"}, {"&apos;", "'"}};
    std::string u;
    for (size_t i = 0; i < t.size();) {
        bool hit = false;
        if (t[i] == '&')
            for (const auto& [e, r] : entities)
                if (t.compare(i, std::strlen(e), e) == 0) {
                    u += r;
                    i += std::strlen(e);
                    hit = true;
                    break;
                }
        if (!hit) u += t[i++];
    }
    std::string out;
    for (auto& w : py_split(u, false, {}, -1, false)) {
        if (!out.empty()) out += ' ';
        out += w;
    }
    return Value::string(std::move(out));
}

Value f_sum(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"attribute", "start"}, "sum");
    AttrGetter get(given(p[0]) ? p[0] : Value::none());
    Value acc = given(p[1]) ? p[1] : Value::integer(0);
    if (acc.is_string()) type_error("sum() can't sum strings [use ''.join(seq) instead]");
    auto items = in.iterate(v);
    for (const Value& x : items->items) acc = binary_op(in, BinOp::Add, acc, get.parts.empty() ? x : get(in, x));
    in.charge(items->items.size());
    return acc;
}

Value f_title(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "title");
    // Jinja2's title: words start after -, whitespace, (, {, [ or <; each word is capitalized
    std::string s = soft_str(v), out;
    bool start = true;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = utf8_next(s, i);
        bool sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
        if (sep) {
            utf8_append(out, cp);
            start = true;
            continue;
        }
        utf8_append(out, start ? py_upper(cp) : py_lower(cp));
        start = false;
    }
    return Value::string(std::move(out));
}

// Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
Value f_tojson(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"ensure_ascii", "indent", "separators", "sort_keys"}, "tojson");
    bool ascii = given(p[0]) && truthy(p[0]);
    Value indent = given(p[1]) ? p[1] : Value::none();
    std::string item_sep = indent.is_none() ? ", " : ",", key_sep = ": ";
    if (given(p[2]) && !p[2].is_none()) {
        auto seps = in.iterate(p[2]);
        if (seps->items.size() != 2) raise("ValueError", "separators must be a pair (item_separator, key_separator)");
        for (const Value& s : seps->items)
            if (!s.is_string()) type_error("separators must be strings");
        item_sep = seps->items[0].str();
        key_sep = seps->items[1].str();
    }
    return Value::string(to_json(in, v, ascii, indent, item_sep, key_sep, given(p[3]) && truthy(p[3])));
}

Value f_trim(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"chars"}, "trim");
    bool has = given(p[0]) && !p[0].is_none();
    if (has && !p[0].is_string()) type_error("strip arg must be None or str");
    return Value::string(py_strip(soft_str(v), has, has ? p[0].str() : std::string(), true, true));
}

Value f_truncate(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"length", "killwords", "end", "leeway"}, "truncate");
    int64_t length = given(p[0]) ? want_int(p[0], "length") : 255;
    bool killwords = given(p[1]) && truthy(p[1]);
    std::string end = given(p[2]) ? to_str(p[2]) : "...";
    int64_t leeway = given(p[3]) && !p[3].is_none() ? want_int(p[3], "leeway") : 5;
    auto end_len = static_cast<int64_t>(utf8_length(end));
    if (length < end_len) raise("AssertionError", "expected length >= " + std::to_string(end_len) + ", got " + std::to_string(length));
    if (leeway < 0) raise("AssertionError", "expected leeway >= 0, got " + std::to_string(leeway));
    std::string s = soft_str(v);
    CodePoints cp(s);
    if (static_cast<int64_t>(cp.size()) <= length + leeway) return Value::string(s);
    std::string head(cp.sub(0, static_cast<size_t>(length - end_len)));
    if (killwords) return Value::string(head + end);
    size_t sp = head.rfind(' ');
    if (sp != std::string::npos) head.resize(sp);
    return Value::string(head + end);
}

Value f_unique(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"case_sensitive", "attribute"}, "unique");
    bool cs = given(p[0]) && truthy(p[0]);
    AttrGetter get(given(p[1]) ? p[1] : Value::none());
    auto items = in.iterate(v);
    in.charge(items->items.size());
    DictObj seen;
    std::vector<Value> out;
    for (const Value& x : items->items) {
        Value k = get.parts.empty() ? x : get(in, x);
        if (!cs) k = lower_if_str(k);
        if (!hashable(k)) type_error(std::string("unhashable type: '") + type_name(k) + "'");
        if (seen.find(k)) continue;
        seen.set(k, Value::none());
        out.push_back(x);
    }
    return generator(std::move(out));
}

Value f_wordcount(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "wordcount");
    std::string s = soft_str(v);
    int64_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = utf8_next(s, i);
        bool w = py_isalnum(cp) || cp == '_';
        if (w && !in_word) ++n;
        in_word = w;
    }
    return Value::integer(n);
}

struct FilterEntry {
    const char* name;
    FilterFn fn;
};

const FilterEntry FILTERS[] = {
    {"abs", f_abs},           {"attr", f_attr},           {"batch", f_batch},         {"capitalize", f_capitalize},
    {"center", f_center},     {"count", f_length},        {"d", f_default},           {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape},            {"escape", f_escape},       {"first", f_first},
    {"float", f_float},       {"forceescape", f_forceescape}, {"format", f_format},   {"indent", f_indent},
    {"int", f_int},           {"items", f_items},         {"join", f_join},           {"last", f_last},
    {"length", f_length},     {"list", f_list},           {"lower", f_lower},         {"map", f_map},
    {"max", f_max},           {"min", f_min},             {"pprint", f_pprint},       {"reject", f_reject},
    {"rejectattr", f_rejectattr}, {"replace", f_replace}, {"reverse", f_reverse},     {"round", f_round},
    {"safe", f_safe},         {"select", f_select},       {"selectattr", f_selectattr}, {"slice", f_slice},
    {"sort", f_sort},         {"string", f_string},       {"striptags", f_striptags}, {"sum", f_sum},
    {"title", f_title},       {"tojson", f_tojson},       {"trim", f_trim},           {"truncate", f_truncate},
    {"unique", f_unique},     {"upper", f_upper},         {"wordcount", f_wordcount},
};

// ---- tests ----

bool t_defined(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "defined"), !v.is_undefined(); }
bool t_undefined(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "undefined"), v.is_undefined(); }
bool t_none(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "none"), v.is_none(); }
bool t_boolean(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "boolean"), v.is_bool(); }
bool t_true(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "true"), v.is_bool() && v.as_bool(); }
bool t_false(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "false"), v.is_bool() && !v.as_bool(); }
bool t_integer(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "integer"), v.is_int(); }
bool t_float(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "float"), v.is_float(); }
bool t_number(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "number"), v.is_number(); }
bool t_string(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "string"), v.is_string(); }
bool t_mapping(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "mapping"), v.is_dict(); }
bool t_iterable(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "iterable");
    return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
           (v.is_object() && std::strcmp(v.obj().type_name(), "LoopContext") == 0);
}
bool t_sequence(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "sequence");
    return v.is_string() || (v.is_list() && v.seq_kind() != SeqKind::Iterator) || v.is_dict() || v.is_undefined();
}
bool t_callable(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "callable");
    return (v.is_object() && v.obj().callable()) || v.is_undefined();  // Undefined defines __call__
}
bool t_escaped(Interp&, const Value& v, CallArgs& a) { return bind(a, {}, "escaped"), v.is_markup(); }
bool t_lower(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "lower");
    CallArgs none;
    return truthy(call_method(in, Value::string(to_str(v)), "islower", none));
}
bool t_upper(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "upper");
    CallArgs none;
    return truthy(call_method(in, Value::string(to_str(v)), "isupper", none));
}
bool t_odd(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "odd");
    return py_equal(binary_op(in, BinOp::Mod, v, Value::integer(2)), Value::integer(1));
}
bool t_even(Interp& in, const Value& v, CallArgs& a) {
    bind(a, {}, "even");
    return py_equal(binary_op(in, BinOp::Mod, v, Value::integer(2)), Value::integer(0));
}
bool t_divisibleby(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"num"}, "divisibleby", 1);
    return py_equal(binary_op(in, BinOp::Mod, v, p[0]), Value::integer(0));
}
bool t_sameas(Interp&, const Value& v, CallArgs& a) {
    auto p = bind(a, {"other"}, "sameas", 1);
    return v.same_as(p[0]);
}
bool t_in(Interp& in, const Value& v, CallArgs& a) {
    auto p = bind(a, {"seq"}, "in", 1);
    return contains(in, p[0], v);
}
bool t_eq(Interp&, const Value& v, CallArgs& a) { return py_equal(v, bind(a, {"other"}, "eq", 1)[0]); }
bool t_ne(Interp&, const Value& v, CallArgs& a) { return !py_equal(v, bind(a, {"other"}, "ne", 1)[0]); }
bool t_lt(Interp&, const Value& v, CallArgs& a) { return py_compare(v, bind(a, {"other"}, "lt", 1)[0], "<") == -1; }
bool t_gt(Interp&, const Value& v, CallArgs& a) { return py_compare(v, bind(a, {"other"}, "gt", 1)[0], ">") == 1; }
bool t_le(Interp&, const Value& v, CallArgs& a) {
    int c = py_compare(v, bind(a, {"other"}, "le", 1)[0], "<=");
    return c == -1 || c == 0;
}
bool t_ge(Interp&, const Value& v, CallArgs& a) {
    int c = py_compare(v, bind(a, {"other"}, "ge", 1)[0], ">=");
    return c == 1 || c == 0;
}
bool t_filter(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "filter");
    return v.is_string() && find_filter(v.str()) != nullptr;
}
bool t_test(Interp&, const Value& v, CallArgs& a) {
    bind(a, {}, "test");
    return v.is_string() && find_test(v.str()) != nullptr;
}

struct TestEntry {
    const char* name;
    TestFn fn;
};

const TestEntry TESTS[] = {
    {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined}, {"divisibleby", t_divisibleby},
    {"eq", t_eq},           {"equalto", t_eq},        {"==", t_eq},           {"escaped", t_escaped},
    {"even", t_even},       {"false", t_false},       {"filter", t_filter},   {"float", t_float},
    {"ge", t_ge},           {">=", t_ge},             {"gt", t_gt},           {"greaterthan", t_gt},
    {">", t_gt},            {"in", t_in},             {"integer", t_integer}, {"iterable", t_iterable},
    {"le", t_le},           {"<=", t_le},             {"lower", t_lower},     {"lt", t_lt},
    {"lessthan", t_lt},     {"<", t_lt},              {"mapping", t_mapping}, {"ne", t_ne},
    {"!=", t_ne},           {"none", t_none},         {"number", t_number},   {"odd", t_odd},
    {"sameas", t_sameas},   {"sequence", t_sequence}, {"string", t_string},   {"test", t_test},
    {"true", t_true},       {"undefined", t_undefined}, {"upper", t_upper},
};

} // namespace

FilterFn find_filter(const std::string& name) {
    for (const auto& f : FILTERS)
        if (name == f.name) return f.fn;
    return nullptr;
}

TestFn find_test(const std::string& name) {
    for (const auto& t : TESTS)
        if (name == t.name) return t.fn;
    return nullptr;
}

} // namespace slm::chat
