// data/filter.cpp - `slm data filter`: Gopher/C4-style quality rules and a perplexity filter.
//
// The rules and their default thresholds follow Gopher (Rae et al. 2021, appendix A.1.1: quality
// filter and repetition removal) and C4 (Raffel et al. 2020, section 2.2). Gopher's repetition
// rules count characters of whitespace words; ours count the bytes of normalized words
// (normalized_words: lowercase, punctuation removed), so "The dog." and "the dog" repeat.
// C4 drops *lines* without terminal punctuation and pages with "lorem ipsum", a curly brace or
// "javascript"; these are document rules here (a fraction of lines, and counts), so one
// decision per document can be reported.
#include "data/text_util.h"

#include "slm/data.h"
#include "slm/error.h"
#include "slm/model.h"

#include "tokenizers/unicode.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace slm {

namespace {

enum RuleId {
    kMinWords,
    kMaxWords,
    kMinMeanWordLen,
    kMaxMeanWordLen,
    kSymbolRatio,
    kBulletLines,
    kEllipsisLines,
    kAlphaWords,
    kStopWords,
    kDupLines,
    kDupLineChars,
    kDupParagraphs,
    kDupParagraphChars,
    kTop2gram,
    kTop3gram,
    kTop4gram,
    kDup5gram,
    kDup6gram,
    kDup7gram,
    kDup8gram,
    kDup9gram,
    kDup10gram,
    kTerminalPunct,
    kLoremIpsum,
    kCurlyBrace,
    kJavascript,
    kNumRules
};

bool is_blank_line(std::string_view line) {
    for (char c : line)
        if (c != ' ' && c != '\t' && c != '\r') return false;
    return true;
}

std::string_view trim(std::string_view s) {
    auto sp = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!s.empty() && sp(s.front())) s.remove_prefix(1);
    while (!s.empty() && sp(s.back())) s.remove_suffix(1);
    return s;
}

size_t n_cpts(std::string_view s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

bool has_alpha(std::string_view w) {
    bool ascii = true;
    for (unsigned char c : w) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
        ascii = ascii && c < 0x80;
    }
    if (ascii) return false;
    for (uint32_t c : tok::cpts_from_utf8(w))
        if (c >= 0x80 && tok::cpt_flags(c).is_letter()) return true;
    return false;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

size_t count_ci(std::string_view text, std::string_view needle) {  // needle lowercase ASCII
    size_t n = 0;
    if (needle.empty() || text.size() < needle.size()) return 0;
    for (size_t i = 0; i + needle.size() <= text.size(); ++i) {
        size_t k = 0;
        while (k < needle.size()) {
            char c = text[i + k];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
            if (c != needle[k]) break;
            ++k;
        }
        if (k == needle.size()) ++n;
    }
    return n;
}

// Fractions of lines (or paragraphs) that repeat an earlier one, by count and by bytes.
std::pair<double, double> dup_fractions(const std::vector<std::string_view>& items) {
    if (items.empty()) return {0, 0};
    std::unordered_set<std::string_view> seen;
    size_t n_dup = 0, bytes_dup = 0, bytes = 0;
    for (std::string_view s : items) {
        bytes += s.size();
        if (!seen.insert(s).second) {
            ++n_dup;
            bytes_dup += s.size();
        }
    }
    return {double(n_dup) / items.size(), bytes ? double(bytes_dup) / bytes : 0.0};
}

// Gopher's "fraction of characters in the most common n-gram" (only if it occurs twice or more).
double top_ngram_fraction(const std::vector<uint64_t>& wh, const std::vector<uint64_t>& sizes, size_t total, int n) {
    if (wh.size() < size_t(n) || total == 0) return 0;
    if (wh.size() >= (uint64_t(1) << 32)) return 0;  // positions are packed in 32 bits
    const std::vector<uint64_t> g = data::ngram_hashes(wh, n);
    data::HashMap64 counts(g.size());  // hash -> count << 32 | first position
    for (size_t i = 0; i < g.size(); ++i) {
        bool fresh = false;
        uint64_t& v = counts.at(g[i], &fresh);
        if (fresh) v = i;
        v += uint64_t(1) << 32;
    }
    double best = 0;
    counts.for_each([&](uint64_t, uint64_t v) {
        const size_t count = v >> 32, first = v & 0xffffffffu;
        if (count < 2) return;
        size_t chars = 0;
        for (int k = 0; k < n; ++k) chars += sizes[first + k];
        best = std::max(best, double(count * chars) / total);
    });
    return best;
}

// Gopher's "fraction of characters in duplicate n-grams": words covered by a later occurrence of
// an n-gram seen before, each word counted once.
double dup_ngram_fraction(const std::vector<uint64_t>& wh, const std::vector<uint64_t>& sizes, size_t total, int n) {
    if (wh.size() < size_t(n) || total == 0) return 0;
    const std::vector<uint64_t> g = data::ngram_hashes(wh, n);
    data::HashMap64 seen(g.size());
    std::vector<char> covered(wh.size(), 0);
    for (size_t i = 0; i < g.size(); ++i) {
        bool fresh = false;
        seen.at(g[i], &fresh);
        if (!fresh) std::fill(covered.begin() + i, covered.begin() + i + n, 1);
    }
    size_t chars = 0;
    for (size_t i = 0; i < wh.size(); ++i)
        if (covered[i]) chars += sizes[i];
    return double(chars) / total;
}

} // namespace

std::vector<FilterRule> default_filter_rules() {
    // Order = RuleId. Gopher: words 50..100000, mean word length 3..10, symbol/word <= 0.1,
    // bullets <= 90% of lines, ellipses <= 30% of lines, >= 80% of words with a letter, >= 2 stop
    // words, repetition table (lines 0.3/0.2, paragraphs 0.3/0.2, top n-grams 0.20/0.18/0.16,
    // duplicate n-grams 0.15..0.10). C4: terminal punctuation, lorem ipsum, {, javascript.
    return {
        {"min_words", 50, true, true, "fewer words than this (Gopher: 50)"},
        {"max_words", 100000, false, true, "more words than this (Gopher: 100000)"},
        {"min_mean_word_len", 3, true, true, "mean word length in code points below this (Gopher: 3)"},
        {"max_mean_word_len", 10, false, true, "mean word length above this (Gopher: 10)"},
        {"symbol_ratio", 0.1, false, true, "('#' + ellipses) per word above this (Gopher: 0.1)"},
        {"bullet_lines", 0.9, false, true, "fraction of lines starting with a bullet above this (Gopher: 0.9)"},
        {"ellipsis_lines", 0.3, false, true, "fraction of lines ending with an ellipsis above this (Gopher: 0.3)"},
        {"alpha_words", 0.8, true, true, "fraction of words with a letter below this (Gopher: 0.8)"},
        {"stop_words", 2, true, true, "distinct stop words (the be to of and that have with) below this (Gopher: 2)"},
        {"dup_lines", 0.3, false, true, "fraction of lines repeating an earlier line (Gopher: 0.3)"},
        {"dup_line_chars", 0.2, false, true, "fraction of bytes in repeated lines (Gopher: 0.2)"},
        {"dup_paragraphs", 0.3, false, true, "fraction of paragraphs repeating an earlier one (Gopher: 0.3)"},
        {"dup_paragraph_chars", 0.2, false, true, "fraction of bytes in repeated paragraphs (Gopher: 0.2)"},
        {"top_2gram", 0.20, false, true, "fraction of word bytes in the most common 2-gram (Gopher: 0.20)"},
        {"top_3gram", 0.18, false, true, "fraction of word bytes in the most common 3-gram (Gopher: 0.18)"},
        {"top_4gram", 0.16, false, true, "fraction of word bytes in the most common 4-gram (Gopher: 0.16)"},
        {"dup_5gram", 0.15, false, true, "fraction of word bytes in repeated 5-grams (Gopher: 0.15)"},
        {"dup_6gram", 0.14, false, true, "fraction of word bytes in repeated 6-grams (Gopher: 0.14)"},
        {"dup_7gram", 0.13, false, true, "fraction of word bytes in repeated 7-grams (Gopher: 0.13)"},
        {"dup_8gram", 0.12, false, true, "fraction of word bytes in repeated 8-grams (Gopher: 0.12)"},
        {"dup_9gram", 0.11, false, true, "fraction of word bytes in repeated 9-grams (Gopher: 0.11)"},
        {"dup_10gram", 0.10, false, true, "fraction of word bytes in repeated 10-grams (Gopher: 0.10)"},
        {"terminal_punct", 0.5, true, true,
         "fraction of lines ending in . ! ? or a closing quote below this (C4 keeps only such lines)"},
        {"lorem_ipsum", 0, false, true, "occurrences of 'lorem ipsum' above this (C4: any)"},
        {"curly_brace", 0, false, true, "'{' or '}' characters above this (C4: any)"},
        {"javascript", 0, false, true, "occurrences of 'javascript' above this (C4: any)"},
    };
}

void set_filter_rule(std::vector<FilterRule>& rules, const std::string& assignment) {
    const size_t eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0)
        slm::fail("data filter: rule setting '%s' is not NAME=VALUE (see --list-rules)", assignment.c_str());
    const std::string name = assignment.substr(0, eq), value = assignment.substr(eq + 1);
    auto it = std::find_if(rules.begin(), rules.end(), [&](const FilterRule& r) { return r.name == name; });
    if (it == rules.end()) {
        std::string names;
        for (const auto& r : rules) names += (names.empty() ? "" : ", ") + r.name;
        slm::fail("data filter: unknown rule '%s' (rules: %s)", name.c_str(), names.c_str());
    }
    if (value == "off") {
        it->enabled = false;
        return;
    }
    if (value == "on") {
        it->enabled = true;
        return;
    }
    size_t used = 0;
    double v = 0;
    try {
        v = std::stod(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != value.size() || value.empty() || !std::isfinite(v))
        slm::fail("data filter: rule '%s': value '%s' is not a number, 'on' or 'off'", name.c_str(), value.c_str());
    it->threshold = v;
    it->enabled = true;
}

std::vector<double> filter_rule_values(std::string_view text) {
    std::vector<double> v(kNumRules, 0.0);

    const std::vector<std::string_view> words = data::split_words(text);
    const size_t n_words = words.size();
    v[kMinWords] = v[kMaxWords] = double(n_words);

    size_t cpts = 0, n_alpha = 0;
    for (std::string_view w : words) {
        cpts += n_cpts(w);
        n_alpha += has_alpha(w);
    }
    v[kMinMeanWordLen] = v[kMaxMeanWordLen] = n_words ? double(cpts) / n_words : 0.0;
    v[kAlphaWords] = n_words ? double(n_alpha) / n_words : 0.0;

    size_t n_symbols = std::count(text.begin(), text.end(), '#') + count_ci(text, "...") + count_ci(text, "\xE2\x80\xA6");
    v[kSymbolRatio] = n_words ? double(n_symbols) / n_words : double(n_symbols);

    // Lines and paragraphs (paragraphs are separated by blank lines inside the document).
    std::vector<std::string_view> lines, paragraphs;
    size_t n_bullet = 0, n_ellipsis = 0, n_terminal = 0;
    {
        size_t pos = 0, para_begin = std::string_view::npos, para_end = 0;
        while (pos <= text.size()) {
            size_t nl = text.find('\n', pos);
            if (nl == std::string_view::npos) nl = text.size();
            std::string_view raw = text.substr(pos, nl - pos);
            if (is_blank_line(raw)) {
                if (para_begin != std::string_view::npos) paragraphs.push_back(trim(text.substr(para_begin, para_end - para_begin)));
                para_begin = std::string_view::npos;
            } else {
                if (para_begin == std::string_view::npos) para_begin = pos;
                para_end = nl;
                std::string_view line = trim(raw);
                lines.push_back(line);
                for (std::string_view b : {"\xE2\x80\xA2", "\xE2\x97\x8F", "\xE2\x97\xA6", "\xE2\x80\xA3", "\xE2\x96\xAA",
                                           "- ", "* "}) {
                    if (starts_with(line, b)) {
                        ++n_bullet;
                        break;
                    }
                }
                if (ends_with(line, "...") || ends_with(line, "\xE2\x80\xA6")) ++n_ellipsis;
                // C4's terminal punctuation: . ! ? or a closing quote (which usually follows one).
                for (std::string_view e : {".", "!", "?", "\"", "'", "\xE2\x80\x9D", "\xE2\x80\x99"}) {
                    if (ends_with(line, e)) {
                        ++n_terminal;
                        break;
                    }
                }
            }
            if (nl == text.size()) break;
            pos = nl + 1;
        }
        if (para_begin != std::string_view::npos) paragraphs.push_back(trim(text.substr(para_begin, para_end - para_begin)));
    }
    const double n_lines = std::max<size_t>(lines.size(), 1);
    v[kBulletLines] = n_bullet / n_lines;
    v[kEllipsisLines] = n_ellipsis / n_lines;
    v[kTerminalPunct] = n_terminal / n_lines;
    std::tie(v[kDupLines], v[kDupLineChars]) = dup_fractions(lines);
    std::tie(v[kDupParagraphs], v[kDupParagraphChars]) = dup_fractions(paragraphs);

    const std::vector<std::string> norm = normalized_words(text);
    {
        static const char* kStop[] = {"the", "be", "to", "of", "and", "that", "have", "with"};
        int found = 0;
        for (const char* s : kStop)
            if (std::find(norm.begin(), norm.end(), s) != norm.end()) ++found;
        v[kStopWords] = found;
    }
    std::vector<uint64_t> sizes(norm.size());
    size_t total = 0;
    for (size_t i = 0; i < norm.size(); ++i) total += sizes[i] = norm[i].size();
    const std::vector<uint64_t> wh = data::word_hashes(norm);
    for (int n = 2; n <= 4; ++n) v[kTop2gram + n - 2] = top_ngram_fraction(wh, sizes, total, n);
    for (int n = 5; n <= 10; ++n) v[kDup5gram + n - 5] = dup_ngram_fraction(wh, sizes, total, n);

    v[kLoremIpsum] = double(count_ci(text, "lorem ipsum"));
    v[kCurlyBrace] = double(std::count(text.begin(), text.end(), '{') + std::count(text.begin(), text.end(), '}'));
    v[kJavascript] = double(count_ci(text, "javascript"));
    return v;
}

double text_perplexity(Session& session, std::string_view text) {
    const Model& model = session.model();
    const std::vector<int32_t> toks = model.vocab().tokenize(text, true, false);
    const size_t n = toks.size();
    if (n < 2) return std::numeric_limits<double>::quiet_NaN();
    const size_t n_ctx = session.n_ctx(), n_vocab = model.hparams().n_vocab;
    if (n_ctx < 4) slm::fail("data filter: perplexity context %zu is too small", n_ctx);
    double nll = 0;
    size_t n_scored = 0, start = 0, scored_until = 1;
    for (;;) {
        const size_t end = std::min(start + n_ctx, n);
        session.reset();
        session.eval(std::span<const int32_t>(toks.data() + start, end - start), true);
        const std::span<const float> logits = session.logits();
        for (size_t t = std::max(scored_until, start + 1); t < end; ++t) {
            const float* row = logits.data() + (t - 1 - start) * n_vocab;
            float mx = row[0];
            for (size_t k = 1; k < n_vocab; ++k) mx = std::max(mx, row[k]);
            double sum = 0;
            for (size_t k = 0; k < n_vocab; ++k) sum += std::exp(double(row[k]) - mx);
            nll += (std::log(sum) + mx) - row[toks[t]];
            ++n_scored;
        }
        scored_until = end;
        if (end == n) break;
        start = end - n_ctx / 2;  // the next window keeps half a context of history
    }
    return std::exp(nll / double(n_scored));
}

std::vector<bool> FilterResult::kept() const {
    std::vector<bool> k(decisions.size());
    for (size_t i = 0; i < decisions.size(); ++i) k[i] = decisions[i].kept;
    return k;
}

FilterResult filter_documents(const std::vector<Document>& docs, const FilterOptions& opts) {
    const auto t0 = std::chrono::steady_clock::now();
    {
        // Values are computed in table order: the rules must be that table, thresholds changed in place.
        const std::vector<FilterRule> table = default_filter_rules();
        if (opts.rules.size() != table.size()) slm::fail("data filter: %zu rules given, %zu expected", opts.rules.size(), table.size());
        for (size_t k = 0; k < table.size(); ++k)
            if (opts.rules[k].name != table[k].name || opts.rules[k].is_min != table[k].is_min)
                slm::fail("data filter: rule %zu is '%s', expected '%s' (keep default_filter_rules() order)", k,
                          opts.rules[k].name.c_str(), table[k].name.c_str());
    }
    if (opts.max_ppl < 0 || !std::isfinite(opts.max_ppl)) slm::fail("data filter: --max-ppl %g is not >= 0", opts.max_ppl);
    if (opts.keep_ppl_fraction < 0 || opts.keep_ppl_fraction > 1 || !std::isfinite(opts.keep_ppl_fraction))
        slm::fail("data filter: --keep-ppl-fraction %g is not in (0, 1]", opts.keep_ppl_fraction);
    const bool use_ppl = !opts.ppl_model.empty();
    if (use_ppl && opts.max_ppl == 0 && opts.keep_ppl_fraction == 0)
        slm::fail("data filter: --ppl-model %s needs --max-ppl or --keep-ppl-fraction", opts.ppl_model.c_str());
    if (!use_ppl && (opts.max_ppl > 0 || opts.keep_ppl_fraction > 0))
        slm::fail("data filter: --max-ppl/--keep-ppl-fraction need --ppl-model");

    FilterResult r;
    r.decisions.resize(docs.size());
    r.n_failed.assign(kNumRules, 0);
    r.n_reason.assign(kNumRules, 0);
    data::for_each_doc(docs.size(), opts.n_threads, [&](size_t i) { r.decisions[i].values = filter_rule_values(docs[i].text); });
    for (size_t i = 0; i < docs.size(); ++i) {
        FilterDecision& d = r.decisions[i];
        for (size_t k = 0; k < kNumRules; ++k) {
            const FilterRule& rule = opts.rules[k];
            if (!rule.enabled) continue;
            const bool fail = rule.is_min ? d.values[k] < rule.threshold : d.values[k] > rule.threshold;
            if (!fail) continue;
            d.failed.push_back(rule.name);
            ++r.n_failed[k];
            if (d.kept) {
                d.kept = false;
                d.reason = rule.name;
                ++r.n_reason[k];
            }
        }
    }

    if (use_ppl) {
        auto model = Model::load(opts.ppl_model);
        SessionOptions so;
        // Never past the training context: positions the model never saw would inflate perplexity.
        const uint32_t n_train = model->hparams().n_ctx_train;
        so.n_ctx = std::max<uint32_t>(opts.ppl_ctx, 4);
        if (n_train > 0) so.n_ctx = std::min(so.n_ctx, n_train);
        so.n_batch = so.n_ctx;
        so.kv_type = GGMLType::F32;
        so.n_threads = opts.n_threads;
        Session session(model, so);
        std::vector<double> scored;
        for (size_t i = 0; i < docs.size(); ++i) {
            if (!r.decisions[i].kept) continue;
            r.decisions[i].ppl = text_perplexity(session, docs[i].text);
            if (std::isfinite(r.decisions[i].ppl)) scored.push_back(r.decisions[i].ppl);
        }
        double cut = std::numeric_limits<double>::infinity();
        if (opts.max_ppl > 0) cut = opts.max_ppl;
        if (opts.keep_ppl_fraction > 0 && !scored.empty()) {
            std::sort(scored.begin(), scored.end());
            size_t k = static_cast<size_t>(std::ceil(opts.keep_ppl_fraction * scored.size()));
            k = std::clamp<size_t>(k, 1, scored.size());
            cut = std::min(cut, scored[k - 1]);
        }
        r.ppl_threshold = cut;
        for (auto& d : r.decisions) {
            if (!d.kept) continue;
            if (!(d.ppl <= cut)) {  // NaN (nothing to score) is dropped too
                d.kept = false;
                d.reason = "ppl";
                d.failed.push_back("ppl");
                ++r.n_ppl_dropped;
            }
        }
    }

    for (size_t i = 0; i < docs.size(); ++i) {
        if (r.decisions[i].kept) {
            ++r.n_kept;
            r.bytes_kept += docs[i].text.size();
        } else {
            ++r.n_dropped;
            r.bytes_dropped += docs[i].text.size();
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

std::string filter_report_jsonl(const std::vector<Document>& docs, const FilterOptions& opts, const FilterResult& r) {
    std::string out;
    for (size_t i = 0; i < docs.size() && i < r.decisions.size(); ++i) {
        const FilterDecision& d = r.decisions[i];
        nlohmann::json j;
        j["index"] = i;
        j["line"] = docs[i].line;
        j["bytes"] = docs[i].text.size();
        j["kept"] = d.kept;
        j["reason"] = d.reason;
        j["failed"] = d.failed;
        nlohmann::json vals = nlohmann::json::object();
        for (size_t k = 0; k < d.values.size() && k < opts.rules.size(); ++k) vals[opts.rules[k].name] = d.values[k];
        j["values"] = vals;
        if (std::isfinite(d.ppl)) j["ppl"] = d.ppl;
        else j["ppl"] = nullptr;
        out += j.dump();
        out += '\n';
    }
    return out;
}

} // namespace slm
