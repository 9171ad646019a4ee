// chat/strings.cpp - Python str operations on UTF-8 (see strings.h).
#include "chat/strings.h"

#include "chat/value.h"

#include <algorithm>
#include <cstdint>

namespace slm::chat {

CodePoints::CodePoints(std::string_view s) : s_(s), ascii_(is_ascii(s)) {
    if (ascii_) return;
    offs_.reserve(s.size() + 1);
    for (size_t i = 0; i < s.size();) {
        offs_.push_back(i);
        utf8_next(s, i);
    }
    offs_.push_back(s.size());
}

size_t CodePoints::index_of_byte(size_t b) const {
    if (ascii_) return b;
    return static_cast<size_t>(std::lower_bound(offs_.begin(), offs_.end(), b) - offs_.begin());
}

void CodePoints::clamp(bool has_start, int64_t start, bool has_end, int64_t end, size_t& b, size_t& e) const {
    const auto n = static_cast<int64_t>(size());
    auto fix = [n](int64_t x) {
        if (x < 0) x += n;
        return std::clamp<int64_t>(x, 0, n);
    };
    b = static_cast<size_t>(has_start ? fix(start) : 0);
    e = static_cast<size_t>(has_end ? fix(end) : n);
    if (e < b) e = b;
}

namespace {

std::vector<uint32_t> chars_of(std::string_view s) { return utf8_decode(s); }

bool in_set(uint32_t cp, const std::vector<uint32_t>& set, bool whitespace) {
    if (whitespace) return py_isspace(cp);
    return std::find(set.begin(), set.end(), cp) != set.end();
}

} // namespace

std::string py_strip(std::string_view s, bool chars_given, std::string_view chars, bool left, bool right) {
    std::vector<uint32_t> set = chars_given ? chars_of(chars) : std::vector<uint32_t>{};
    const bool ws = !chars_given;
    size_t b = 0, e = s.size();
    if (left) {
        while (b < e) {
            size_t j = b;
            if (!in_set(utf8_next(s, j), set, ws)) break;
            b = j;
        }
    }
    if (right) {
        while (e > b) {
            // the character ending at e: step back over continuation bytes
            size_t st = e - 1;
            while (st > b && e - st < 4 && (static_cast<unsigned char>(s[st]) & 0xC0) == 0x80) --st;
            size_t j = st;
            uint32_t cp = utf8_next(s, j);
            if (j != e) {  // not one whole character: the last byte is a bad byte on its own
                st = e - 1;
                j = st;
                cp = utf8_next(s, j);
            }
            if (!in_set(cp, set, ws)) break;
            e = st;
        }
    }
    return std::string(s.substr(b, e - b));
}

std::vector<std::string> py_split(std::string_view s, bool sep_given, std::string_view sep, int64_t maxsplit, bool from_right) {
    std::vector<std::string> out;
    if (sep_given) {
        if (!from_right) {
            size_t pos = 0;
            while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
                size_t f = s.find(sep, pos);
                if (f == std::string_view::npos) break;
                out.emplace_back(s.substr(pos, f - pos));
                pos = f + sep.size();
            }
            out.emplace_back(s.substr(pos));
            return out;
        }
        size_t end = s.size();
        while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
            if (end < sep.size()) break;
            size_t f = s.rfind(sep, end - sep.size());
            if (f == std::string_view::npos) break;
            out.emplace_back(s.substr(f + sep.size(), end - f - sep.size()));
            end = f;
        }
        out.emplace_back(s.substr(0, end));
        std::reverse(out.begin(), out.end());
        return out;
    }
    // whitespace runs; leading and trailing whitespace never make empty items
    std::vector<uint32_t> cps = utf8_decode(s);
    const size_t n = cps.size();
    if (!from_right) {
        size_t i = 0;
        while (true) {
            while (i < n && py_isspace(cps[i])) ++i;
            if (i >= n) break;
            if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
                size_t e = n;
                out.push_back(utf8_encode(cps, i, e));
                break;
            }
            size_t j = i;
            while (j < n && !py_isspace(cps[j])) ++j;
            out.push_back(utf8_encode(cps, i, j));
            i = j;
        }
        return out;
    }
    size_t i = n;
    while (true) {
        while (i > 0 && py_isspace(cps[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
            out.push_back(utf8_encode(cps, 0, i));
            break;
        }
        size_t j = i;
        while (j > 0 && !py_isspace(cps[j - 1])) --j;
        out.push_back(utf8_encode(cps, j, i));
        i = j;
    }
    std::reverse(out.begin(), out.end());
    return out;
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
    std::vector<std::string> out;
    size_t start = 0, i = 0;
    while (i < s.size()) {
        size_t at = i;
        uint32_t cp = utf8_next(s, i);
        bool brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || cp == 0x1C || cp == 0x1D || cp == 0x1E ||
                   cp == 0x85 || cp == 0x2028 || cp == 0x2029;
        if (!brk) continue;
        if (cp == '\r' && i < s.size() && s[i] == '\n') ++i;
        out.emplace_back(s.substr(start, (keepends ? i : at) - start));
        start = i;
    }
    if (start < s.size()) out.emplace_back(s.substr(start));
    return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view with, int64_t count, size_t max_bytes) {
    std::string out;
    if (old.empty()) {
        // inserts `with` before every character and at the end
        int64_t done = 0;
        size_t i = 0;
        while (i < s.size() && out.size() <= max_bytes) {
            if (count < 0 || done < count) {
                out += with;
                ++done;
            }
            size_t st = i;
            utf8_next(s, i);
            out.append(s.substr(st, i - st));
        }
        if (count < 0 || done < count) out += with;
        return out;
    }
    size_t pos = 0;
    int64_t done = 0;
    while ((count < 0 || done < count) && out.size() <= max_bytes) {
        size_t f = s.find(old, pos);
        if (f == std::string_view::npos) break;
        out.append(s.substr(pos, f - pos));
        out += with;
        pos = f + old.size();
        ++done;
    }
    out.append(s.substr(pos));
    return out;
}

std::string py_title(std::string_view s) {
    std::string out;
    bool prev_cased = false;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = utf8_next(s, i);
        bool cased = py_isupper(cp) || py_islower(cp);
        utf8_append(out, cased ? (prev_cased ? py_lower(cp) : py_upper(cp)) : cp);
        prev_cased = cased;
    }
    return out;
}

std::string py_capitalize(std::string_view s) {
    std::string out;
    bool first = true;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = utf8_next(s, i);
        utf8_append(out, first ? py_upper(cp) : py_lower(cp));
        first = false;
    }
    return out;
}

std::string py_swapcase(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        uint32_t cp = utf8_next(s, i);
        utf8_append(out, py_isupper(cp) ? py_lower(cp) : py_islower(cp) ? py_upper(cp) : cp);
    }
    return out;
}

std::string py_center(std::string_view s, int64_t width, uint32_t fill) {
    auto n = static_cast<int64_t>(utf8_length(s));
    if (width <= n) return std::string(s);
    int64_t marg = width - n;
    // CPython puts the odd space on the left when the width is odd
    int64_t left = marg / 2 + (marg & width & 1);
    std::string f;
    utf8_append(f, fill);
    std::string out;
    for (int64_t k = 0; k < left; ++k) out += f;
    out += s;
    for (int64_t k = 0; k < marg - left; ++k) out += f;
    return out;
}

std::string py_ljust(std::string_view s, int64_t width, uint32_t fill, bool right_align) {
    auto n = static_cast<int64_t>(utf8_length(s));
    if (width <= n) return std::string(s);
    std::string f;
    utf8_append(f, fill);
    std::string pad;
    for (int64_t k = 0; k < width - n; ++k) pad += f;
    return right_align ? pad + std::string(s) : std::string(s) + pad;
}

size_t py_count(std::string_view s, std::string_view sub) {
    if (sub.empty()) return utf8_length(s) + 1;
    size_t n = 0;
    for (size_t pos = s.find(sub); pos != std::string_view::npos; pos = s.find(sub, pos + sub.size())) ++n;
    return n;
}

} // namespace slm::chat
