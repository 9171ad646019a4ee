// chat/lexer.cpp - Jinja2's lexer as a hand-written scanner (see lexer.h).
#include "chat/lexer.h"

#include "chat/value.h"

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace slm::chat {

std::string normalize_source(std::string_view source, bool keep_trailing_newline) {
    std::string s;
    s.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
        char c = source[i];
        if (c == '\r') {
            if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
            s += '\n';
        } else {
            s += c;
        }
    }
    if (!keep_trailing_newline && !s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

void line_col(std::string_view src, size_t offset, uint32_t& line, uint32_t& col) {
    line = 1;
    size_t line_start = 0;
    if (offset > src.size()) offset = src.size();
    for (size_t i = 0; i < offset; ++i)
        if (src[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    col = static_cast<uint32_t>(utf8_length(src.substr(line_start, offset - line_start))) + 1;
}

namespace {

[[noreturn]] void fail_at(size_t offset, std::string msg) { throw SyntaxError{std::move(msg), offset}; }

// Python's \s on str patterns: the whitespace str.isspace() accepts. Returns its byte length at
// s[i], 0 if none.
size_t space_len(std::string_view s, size_t i) {
    auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) return py_isspace(b) ? 1 : 0;
    size_t j = i;
    uint32_t cp = utf8_next(s, j);
    return py_isspace(cp) ? j - i : 0;
}

size_t skip_spaces(std::string_view s, size_t i) {
    while (i < s.size()) {
        size_t n = space_len(s, i);
        if (!n) break;
        i += n;
    }
    return i;
}

// str.rstrip(): the length of `text` without trailing whitespace.
size_t rstrip_len(std::string_view text) {
    size_t end = text.size();
    while (end > 0) {
        // step back over one UTF-8 character
        size_t start = end - 1;
        while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80 && end - start < 4) --start;
        size_t j = start;
        uint32_t cp = utf8_next(text, j);
        if (j != end) {  // not a whole character: treat the last byte alone
            start = end - 1;
            j = start;
            cp = utf8_next(text, j);
        }
        if (!py_isspace(cp)) break;
        end = start;
    }
    return end;
}

bool all_spaces(std::string_view s) {
    if (s.empty()) return false;  // \s+ needs one character
    for (size_t i = 0; i < s.size();) {
        size_t n = space_len(s, i);
        if (!n) return false;
        i += n;
    }
    return true;
}

bool is_name_start(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80; }
bool is_name_char(unsigned char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

class Lexer {
public:
    Lexer(const std::string& src, const LexOptions& opt) : s_(src), opt_(opt) {}

    std::vector<Token> run() {
        size_t pos = 0;
        while (pos < s_.size()) {
            size_t t = find_tag(pos);
            if (t == std::string::npos) {
                push_data(pos, s_.substr(pos));
                break;
            }
            char kind = s_[t + 1];
            char sign = t + 2 < s_.size() && (s_[t + 2] == '-' || s_[t + 2] == '+') ? s_[t + 2] : 0;
            size_t raw_body = kind == '%' ? match_raw_begin(t) : std::string::npos;
            std::string_view text(s_.data() + pos, t - pos);
            push_data(pos, control_whitespace(text, sign, kind != '{'));
            size_t open_end = t + 2 + (sign ? 1 : 0);
            if (raw_body != std::string::npos) {
                line_starting_ = s_[raw_body - 1] == '\n';
                pos = lex_raw(raw_body);
            } else if (kind == '#') {
                line_starting_ = false;
                pos = lex_comment(open_end);
            } else {
                line_starting_ = false;
                pos = lex_tag(t, open_end, kind == '%');
            }
        }
        Token eof;
        eof.type = Tok::Eof;
        eof.offset = static_cast<uint32_t>(s_.size());
        out_.push_back(eof);
        return std::move(out_);
    }

private:
    const std::string& s_;
    LexOptions opt_;
    std::vector<Token> out_;
    bool line_starting_ = true;  // the last match ended a line (jinja2's line_starting)

    size_t find_tag(size_t pos) const {
        for (size_t i = s_.find('{', pos); i != std::string::npos; i = s_.find('{', i + 1))
            if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
        return std::string::npos;
    }

    void push_data(size_t offset, std::string_view text) {
        if (text.empty()) return;
        Token t;
        t.type = Tok::Data;
        t.text.assign(text);
        t.offset = static_cast<uint32_t>(offset);
        out_.push_back(std::move(t));
    }

    void push(Tok type, size_t offset, std::string text = {}) {
        Token t;
        t.type = type;
        t.text = std::move(text);
        t.offset = static_cast<uint32_t>(offset);
        out_.push_back(std::move(t));
    }

    // The text before a tag: "-" strips all whitespace before it; otherwise lstrip_blocks removes
    // the spaces between the line start and a block or comment tag ("+" keeps them).
    std::string_view control_whitespace(std::string_view text, char sign, bool block_or_comment) const {
        if (sign == '-') return text.substr(0, rstrip_len(text));
        if (sign != '+' && opt_.lstrip_blocks && block_or_comment) {
            size_t nl = text.rfind('\n');
            size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
            if ((l_pos > 0 || line_starting_) && all_spaces(text.substr(l_pos))) return text.substr(0, l_pos);
        }
        return text;
    }

    // {%-? raw -?%} at t: returns the offset just after it, or npos if this is not a raw tag.
    size_t match_raw_begin(size_t t) const {
        size_t i = t + 2;
        if (i < s_.size() && (s_[i] == '-' || s_[i] == '+')) ++i;
        i = skip_spaces(s_, i);
        if (s_.compare(i, 3, "raw") != 0) return std::string::npos;
        i = skip_spaces(s_, i + 3);
        if (s_.compare(i, 3, "-%}") == 0) return skip_spaces(s_, i + 3);
        if (s_.compare(i, 2, "%}") == 0) return i + 2;  // no trim_blocks after raw (as jinja2)
        return std::string::npos;
    }

    // An end tag at i: "-X}" (then any whitespace), "+X}" (blocks and comments), or "X}" (then
    // one newline, with trim_blocks, for blocks and comments). Returns the offset after it, or npos.
    size_t match_end(size_t i, char x, bool block) const {
        char c = s_[i];
        if ((c == '-' || (c == '+' && block)) && i + 2 < s_.size() && s_[i + 1] == x && s_[i + 2] == '}')
            return c == '-' ? skip_spaces(s_, i + 3) : i + 3;
        if (c == x && i + 1 < s_.size() && s_[i + 1] == '}') {
            i += 2;
            if (block && opt_.trim_blocks && i < s_.size() && s_[i] == '\n') ++i;
            return i;
        }
        return std::string::npos;
    }

    size_t lex_comment(size_t pos) {
        if (pos >= s_.size()) return pos;  // "{#" at the very end: jinja2 stops without an error
        for (size_t i = pos; i < s_.size(); ++i) {
            if (s_[i] != '#' && s_[i] != '+' && s_[i] != '-') continue;
            size_t end = match_end(i, '#', true);
            if (end != std::string::npos) {
                line_starting_ = s_[end - 1] == '\n';
                return end;
            }
        }
        fail_at(pos, "Missing end of comment tag");
    }

    size_t lex_raw(size_t body) {
        if (body >= s_.size()) return body;  // nothing after {% raw %}: as jinja2, no error
        for (size_t i = s_.find("{%", body); i != std::string::npos; i = s_.find("{%", i + 1)) {
            size_t j = i + 2;
            char sign = 0;
            if (j < s_.size() && (s_[j] == '-' || s_[j] == '+')) sign = s_[j++];
            j = skip_spaces(s_, j);
            if (s_.compare(j, 6, "endraw") != 0) continue;
            j = skip_spaces(s_, j + 6);
            size_t end = match_end(j, '%', true);
            if (end == std::string::npos) continue;
            push_data(body, control_whitespace(std::string_view(s_).substr(body, i - body), sign, true));
            line_starting_ = s_[end - 1] == '\n';
            return end;
        }
        fail_at(body, "Missing end of raw directive");
    }

    size_t lex_tag(size_t t, size_t pos, bool block) {
        push(block ? Tok::BlockBegin : Tok::VarBegin, t);
        std::vector<char> balance;  // closers expected for the open brackets
        size_t i = pos;
        while (true) {
            if (i >= s_.size()) return i;  // the parser reports the unexpected end
            if (balance.empty()) {
                size_t end = block ? match_end(i, '%', true) : match_end(i, '}', false);
                if (end != std::string::npos) {
                    push(block ? Tok::BlockEnd : Tok::VarEnd, i);
                    line_starting_ = s_[end - 1] == '\n';
                    return end;
                }
            }
            if (size_t n = space_len(s_, i)) {
                i += n;
                continue;
            }
            char c = s_[i];
            if (is_digit(c)) {
                i = lex_number(i);
            } else if (is_name_start(static_cast<unsigned char>(c))) {
                size_t j = i;
                while (j < s_.size() && is_name_char(static_cast<unsigned char>(s_[j]))) ++j;
                push(Tok::Name, i, s_.substr(i, j - i));
                i = j;
            } else if (c == '\'' || c == '"') {
                i = lex_string(i);
            } else {
                i = lex_operator(i, balance);
            }
        }
    }

    // Digits with single underscores between them ("1_000"); returns the end, or start if none.
    size_t digits(size_t i, bool (*ok)(char)) const {
        if (i >= s_.size() || !ok(s_[i])) return i;
        ++i;
        while (i < s_.size()) {
            if (ok(s_[i])) {
                ++i;
            } else if (s_[i] == '_' && i + 1 < s_.size() && ok(s_[i + 1])) {
                i += 2;
            } else {
                break;
            }
        }
        return i;
    }

    static std::string strip_underscores(std::string_view v) {
        std::string r;
        for (char c : v)
            if (c != '_') r += c;
        return r;
    }

    size_t lex_number(size_t i) {
        auto dec = [](char c) { return c >= '0' && c <= '9'; };
        // float: digits ("." digits)? e[+-]digits | digits "." digits; not right after a "."
        // (so x.0.1 is x[0][1])
        if (i == 0 || s_[i - 1] != '.') {
            size_t j = digits(i, dec);
            size_t k = j;
            bool frac = false;
            if (k < s_.size() && s_[k] == '.') {
                size_t f = digits(k + 1, dec);
                if (f > k + 1) {
                    k = f;
                    frac = true;
                }
            }
            size_t e = k;
            bool expo = false;
            if (e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
                size_t m = e + 1;
                if (m < s_.size() && (s_[m] == '+' || s_[m] == '-')) ++m;
                size_t d = digits(m, dec);
                if (d > m) {
                    e = d;
                    expo = true;
                }
            }
            if (frac || expo) {
                size_t end = expo ? e : k;
                Token t;
                t.type = Tok::Float;
                t.offset = static_cast<uint32_t>(i);
                std::string v = strip_underscores(std::string_view(s_).substr(i, end - i));
                t.fval = std::strtod(v.c_str(), nullptr);
                out_.push_back(std::move(t));
                return end;
            }
        }
        // integer: 0b.., 0o.., 0x.., [1-9](_?digit)*, 0(_?0)*
        int base = 10;
        size_t start = i, end;
        char p = i + 1 < s_.size() ? static_cast<char>(s_[i + 1] | 0x20) : 0;
        auto bin = [](char c) { return c == '0' || c == '1'; };
        auto oct = [](char c) { return c >= '0' && c <= '7'; };
        auto hex = [](char c) { return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'); };
        auto zero = [](char c) { return c == '0'; };
        if (s_[i] == '0' && (p == 'b' || p == 'o' || p == 'x')) {
            base = p == 'b' ? 2 : p == 'o' ? 8 : 16;
            size_t d = i + 2;
            if (d < s_.size() && s_[d] == '_') ++d;
            size_t j = digits(d, base == 2 ? +bin : base == 8 ? +oct : +hex);
            if (j == d) {
                base = 10;
                end = i + 1;  // just "0"; the letter lexes as a name
            } else {
                start = i + 2;
                end = j;
            }
        } else if (s_[i] == '0') {
            end = digits(i, zero);
        } else {
            end = digits(i, dec);
        }
        std::string v = strip_underscores(std::string_view(s_).substr(start, end - start));
        errno = 0;
        char* stop = nullptr;
        unsigned long long u = std::strtoull(v.c_str(), &stop, base);
        if (errno == ERANGE || u > static_cast<unsigned long long>(INT64_MAX))
            fail_at(i, "integer literal too large: " + s_.substr(i, end - i));
        Token t;
        t.type = Tok::Int;
        t.ival = static_cast<int64_t>(u);
        t.offset = static_cast<uint32_t>(i);
        out_.push_back(std::move(t));
        return end;
    }

    static int hexval(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        c = static_cast<char>(c | 0x20);
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    }

    // A quoted string: the raw text between the quotes, unescaped as Python's
    // .encode("ascii", "backslashreplace").decode("unicode-escape") does.
    size_t lex_string(size_t i) {
        char q = s_[i];
        size_t j = i + 1;
        while (j < s_.size() && s_[j] != q) j += s_[j] == '\\' ? 2 : 1;
        if (j >= s_.size()) fail_at(i, "unexpected char " + repr(Value::string(std::string(1, q))) + " at " + std::to_string(i));
        std::string_view raw(s_.data() + i + 1, j - i - 1);
        std::string v;
        v.reserve(raw.size());
        for (size_t k = 0; k < raw.size();) {
            if (raw[k] != '\\') {
                v += raw[k++];
                continue;
            }
            size_t at = i + 1 + k;
            ++k;  // raw never ends with a lone backslash: the scan above pairs them
            char c = raw[k];
            auto hex_escape = [&](size_t n, const char* what) {
                uint32_t cp = 0;
                for (size_t m = 1; m <= n; ++m) {
                    int h = k + m < raw.size() ? hexval(raw[k + m]) : -1;
                    if (h < 0) fail_at(at, std::string("truncated ") + what + " escape");
                    cp = cp * 16 + static_cast<uint32_t>(h);
                }
                if (cp > 0x10FFFF) fail_at(at, "illegal Unicode character");
                k += n + 1;
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // a lone surrogate has no UTF-8 form
                utf8_append(v, cp);
            };
            switch (c) {
            case '\n': ++k; break;
            case '\\': v += '\\'; ++k; break;
            case '\'': v += '\''; ++k; break;
            case '"': v += '"'; ++k; break;
            case 'a': v += '\a'; ++k; break;
            case 'b': v += '\b'; ++k; break;
            case 'f': v += '\f'; ++k; break;
            case 'n': v += '\n'; ++k; break;
            case 'r': v += '\r'; ++k; break;
            case 't': v += '\t'; ++k; break;
            case 'v': v += '\v'; ++k; break;
            case 'x': hex_escape(2, "\\xXX"); break;
            case 'u': hex_escape(4, "\\uXXXX"); break;
            case 'U': hex_escape(8, "\\UXXXXXXXX"); break;
            case 'N': fail_at(at, "\\N{...} escapes are not supported");
            default:
                if (c >= '0' && c <= '7') {
                    uint32_t cp = 0;
                    for (int m = 0; m < 3 && k < raw.size() && raw[k] >= '0' && raw[k] <= '7'; ++m) cp = cp * 8 + (raw[k++] - '0');
                    utf8_append(v, cp);
                } else if (static_cast<unsigned char>(c) >= 0x80) {
                    // backslashreplace spelled the character as an escape, and the decoder
                    // then read the backslash pair: a literal backslash and the escape's text
                    size_t m = k;
                    uint32_t cp = utf8_next(raw, m);
                    char buf[16];
                    if (cp <= 0xFF)
                        std::snprintf(buf, sizeof buf, "\\x%02x", cp);
                    else if (cp <= 0xFFFF)
                        std::snprintf(buf, sizeof buf, "\\u%04x", cp);
                    else
                        std::snprintf(buf, sizeof buf, "\\U%08x", cp);
                    v += buf;
                    k = m;
                } else {
                    v += '\\';
                    v += c;
                    ++k;
                }
            }
        }
        Token t;
        t.type = Tok::String;
        t.text = std::move(v);
        t.offset = static_cast<uint32_t>(i);
        out_.push_back(std::move(t));
        return j + 1;
    }

    size_t lex_operator(size_t i, std::vector<char>& balance) {
        static const char* two[] = {"//", "**", "==", "!=", ">=", "<="};
        for (const char* op : two)
            if (s_.compare(i, 2, op) == 0) {
                push(Tok::Op, i, op);
                return i + 2;
            }
        char c = s_[i];
        if (!std::strchr("+-/*%~[](){}=.:|,;><", c) || c == 0) {
            size_t j = i;
            uint32_t cp = utf8_next(s_, j);
            std::string ch;
            utf8_append(ch, cp);
            fail_at(i, "unexpected char " + repr(Value::string(ch)) + " at " + std::to_string(i));
        }
        if (c == '{') balance.push_back('}');
        if (c == '(') balance.push_back(')');
        if (c == '[') balance.push_back(']');
        if (c == '}' || c == ')' || c == ']') {
            if (balance.empty()) fail_at(i, std::string("unexpected '") + c + "'");
            char want = balance.back();
            balance.pop_back();
            if (want != c) fail_at(i, std::string("unexpected '") + c + "', expected '" + want + "'");
        }
        push(Tok::Op, i, std::string(1, c));
        return i + 1;
    }
};

} // namespace

std::vector<Token> tokenize(const std::string& src, const LexOptions& opt) { return Lexer(src, opt).run(); }

} // namespace slm::chat
