// eval/metrics.cpp - lm-evaluation-harness's metrics and filters: accuracy by argmax of
// log-likelihood (raw and per character), means with sample standard errors, pooled errors for
// groups, regex extraction and exact match. Pure functions; the engine is in tasks.cpp.
#define PCRE2_CODE_UNIT_WIDTH 8

#include "chat/value.h"
#include "eval/tasks_impl.h"
#include "slm/error.h"

#include <pcre2.h>

#include <cmath>
#include <limits>
#include <memory>

namespace slm::eval {

double mean(const std::vector<double>& xs) {
    if (xs.empty()) return std::numeric_limits<double>::quiet_NaN();
    double s = 0;
    for (double x : xs) s += x;
    return s / static_cast<double>(xs.size());
}

double mean_stderr(const std::vector<double>& xs) {
    if (xs.size() < 2) return std::numeric_limits<double>::quiet_NaN();
    const double mu = mean(xs);
    double ss = 0;
    for (double x : xs) ss += (x - mu) * (x - mu);
    const double n = static_cast<double>(xs.size());
    return std::sqrt(ss / (n - 1)) / std::sqrt(n);
}

double pooled_stderr(const std::vector<double>& stderrs, const std::vector<size_t>& sizes) {
    if (stderrs.size() != sizes.size() || sizes.empty()) return std::numeric_limits<double>::quiet_NaN();
    double num = 0, total = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        const double n = static_cast<double>(sizes[i]);
        // a group of one has no stderr (NaN): it contributes (1-1)*... = 0, as in lm-eval
        const double se = std::isnan(stderrs[i]) ? 0 : stderrs[i];
        num += (n - 1) * se * se * n;
        total += n;
    }
    const double den = total - static_cast<double>(sizes.size());
    if (den <= 0) return std::numeric_limits<double>::quiet_NaN();
    return std::sqrt(num / den / total);
}

size_t utf8_chars(std::string_view s) { return chat::utf8_length(s); }

size_t argmax_first(const std::vector<double>& v) {
    size_t best = 0;
    for (size_t i = 1; i < v.size(); ++i)
        if (v[i] > v[best]) best = i;
    return best;
}

ChoicePick pick_choice(const std::vector<double>& lls, const std::vector<std::string>& choices) {
    ChoicePick p;
    p.pred = argmax_first(lls);
    std::vector<double> norm(lls.size());
    for (size_t i = 0; i < lls.size(); ++i) {
        // numpy: ll / 0.0 is -inf (or nan for 0/0) for an empty choice; argmax skips neither, but
        // -inf never wins and nan does (numpy's argmax returns the first nan)
        const double len = i < choices.size() ? static_cast<double>(utf8_chars(choices[i])) : 0;
        norm[i] = lls[i] / len;
    }
    size_t best = 0;
    for (size_t i = 0; i < norm.size(); ++i) {
        if (std::isnan(norm[i])) {
            best = i;
            p.pred_norm = best;
            return p;
        }
        if (norm[i] > norm[best]) best = i;
    }
    p.pred_norm = best;
    return p;
}

namespace {

struct Code {
    pcre2_code* code = nullptr;
    ~Code() {
        if (code) pcre2_code_free(code);
    }
};

std::unique_ptr<Code> compile(const std::string& pattern, const std::string& what) {
    int err = 0;
    PCRE2_SIZE off = 0;
    auto c = std::make_unique<Code>();
    c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                            &err, &off, nullptr);
    if (!c->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        fail("%s: regex '%s' does not compile at offset %zu: %s", what.c_str(), pattern.c_str(), static_cast<size_t>(off),
             reinterpret_cast<const char*>(msg));
    }
    return c;
}

struct MatchData {
    pcre2_match_data* md;
    explicit MatchData(pcre2_code* c) : md(pcre2_match_data_create_from_pattern(c, nullptr)) {}
    ~MatchData() { pcre2_match_data_free(md); }
};

} // namespace

void check_regex(const std::string& pattern, const std::string& what) { compile(pattern, what); }

std::vector<std::vector<std::string>> regex_findall(const std::string& pattern, const std::string& text) {
    auto c = compile(pattern, "regex");
    uint32_t n_groups = 0;
    pcre2_pattern_info(c->code, PCRE2_INFO_CAPTURECOUNT, &n_groups);
    MatchData m(c->code);
    std::vector<std::vector<std::string>> out;
    size_t pos = 0;
    while (pos <= text.size()) {
        int rc = pcre2_match(c->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos, 0, m.md, nullptr);
        if (rc < 0) break;
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
        std::vector<std::string> groups;
        auto group = [&](uint32_t g) -> std::string {
            if (g >= static_cast<uint32_t>(rc) || ov[2 * g] == PCRE2_UNSET) return "";
            return text.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
        };
        if (n_groups == 0) {
            groups.push_back(group(0));
        } else {
            for (uint32_t g = 1; g <= n_groups; ++g) groups.push_back(group(g));
        }
        out.push_back(std::move(groups));
        size_t end = ov[1];
        if (end == ov[0]) {  // empty match: step one character
            if (end >= text.size()) break;
            ++end;
            while (end < text.size() && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) ++end;
        }
        pos = end;
    }
    return out;
}

namespace {

std::string py_strip(const std::string& s) {
    size_t b = 0, e = s.size();
    auto ws = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f'; };
    while (b < e && ws(s[b])) ++b;
    while (e > b && ws(s[e - 1])) --e;
    return s.substr(b, e - b);
}

std::string regex_sub(const std::string& pattern, const std::string& text) {
    auto c = compile(pattern, "regexes_to_ignore");
    std::string out(text.size() + 16, '\0');
    PCRE2_SIZE len = out.size();
    int rc = pcre2_substitute(c->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                              PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, nullptr, nullptr,
                              reinterpret_cast<PCRE2_SPTR>(""), 0, reinterpret_cast<PCRE2_UCHAR*>(out.data()), &len);
    if (rc == PCRE2_ERROR_NOMEMORY) {
        out.assign(len, '\0');
        rc = pcre2_substitute(c->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0, PCRE2_SUBSTITUTE_GLOBAL,
                              nullptr, nullptr, reinterpret_cast<PCRE2_SPTR>(""), 0,
                              reinterpret_cast<PCRE2_UCHAR*>(out.data()), &len);
    }
    if (rc < 0) return text;
    out.resize(len);
    return out;
}

} // namespace

std::string apply_filter(const TaskFilter& f, const std::string& response) {
    std::string r = response;
    for (const TaskFilterStep& st : f.steps) {
        if (st.function == "regex") {
            auto ms = regex_findall(st.regex_pattern, r);
            if (ms.empty()) {
                r = st.fallback;
                continue;
            }
            const long n = static_cast<long>(ms.size());
            long i = st.group_select < 0 ? n + st.group_select : st.group_select;
            if (i < 0 || i >= n) {  // Python would raise IndexError; the answer is unusable either way
                r = st.fallback;
                continue;
            }
            const auto& g = ms[static_cast<size_t>(i)];
            if (g.size() > 1) {  // a tuple: its first non-empty group
                std::string pick;
                bool found = false;
                for (const auto& x : g)
                    if (!x.empty()) {
                        pick = x;
                        found = true;
                        break;
                    }
                r = found ? py_strip(pick) : st.fallback;
            } else {
                r = py_strip(g[0]);
            }
        } else if (st.function == "take_first") {
            // one response per item here: nothing to choose
        } else if (st.function == "lowercase") {
            r = chat::py_lower_str(r);
        } else if (st.function == "uppercase") {
            r = chat::py_upper_str(r);
        } else if (st.function == "remove_whitespace") {
            if (!r.empty() && r[0] == ' ') r.erase(0, 1);  // lm-eval drops one leading space
        } else {
            fail("filter %s: unknown function '%s'", f.name.c_str(), st.function.c_str());
        }
    }
    return r;
}

bool exact_match(const std::string& pred, const std::string& gold, const TaskMetric& m) {
    std::string p = pred, g = gold;
    for (const auto& re : m.regexes_to_ignore) {
        p = regex_sub(re, p);
        g = regex_sub(re, g);
    }
    if (m.ignore_case) {
        p = chat::py_lower_str(p);
        g = chat::py_lower_str(g);
    }
    auto drop = [](std::string& s, bool (*pred)(unsigned char)) {
        std::string o;
        for (char ch : s)
            if (!pred(static_cast<unsigned char>(ch))) o += ch;
        s = std::move(o);
    };
    if (m.ignore_punctuation) {
        auto punct = [](unsigned char ch) { return ch < 128 && std::ispunct(ch) != 0; };
        drop(p, punct);
        drop(g, punct);
    }
    if (m.ignore_numbers) {
        auto digit = [](unsigned char ch) { return ch >= '0' && ch <= '9'; };
        drop(p, digit);
        drop(g, digit);
    }
    return p == g;
}

} // namespace slm::eval
