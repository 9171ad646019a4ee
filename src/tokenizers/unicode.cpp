// tokenizers/unicode.cpp - see unicode.h.
#include "tokenizers/unicode.h"

#include "slm/error.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <memory>

namespace slm::tok {

std::vector<uint32_t> cpts_from_utf8(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    auto cont = [&](size_t i) { return i < n && (p[i] & 0xC0) == 0x80; };
    size_t i = 0;
    while (i < n) {
        const uint8_t b = p[i];
        if (b < 0x80) {
            out.push_back(b);
            i += 1;
        } else if ((b & 0xE0) == 0xC0 && cont(i + 1)) {
            out.push_back(((b & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu));
            i += 2;
        } else if ((b & 0xF0) == 0xE0 && cont(i + 1) && cont(i + 2)) {
            out.push_back(((b & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu));
            i += 3;
        } else if ((b & 0xF8) == 0xF0 && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
            out.push_back(((b & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) |
                          (p[i + 3] & 0x3Fu));
            i += 4;
        } else {
            out.push_back(CPT_REPLACEMENT);
            i += 1;
        }
    }
    return out;
}

void append_utf8(std::string& out, uint32_t cpt) {
    if (cpt > CPT_MAX) cpt = CPT_REPLACEMENT;
    if (cpt < 0x80) {
        out.push_back(static_cast<char>(cpt));
    } else if (cpt < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cpt >> 6)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else if (cpt < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cpt >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cpt >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cpt >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cpt & 0x3F)));
    }
}

std::string cpt_to_utf8(uint32_t cpt) {
    std::string s;
    append_utf8(s, cpt);
    return s;
}

size_t utf8_invalid_at(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const uint8_t b = p[i];
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (b < 0x80) {
            ++i;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            return i;
        }
        if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k < len; ++k)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += len;
    }
    return std::string_view::npos;
}

bool is_valid_utf8(std::string_view s) { return utf8_invalid_at(s) == std::string_view::npos; }

namespace {

// The Unicode White_Space property: what llama.cpp's generated unicode_set_whitespace holds.
bool is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

struct CodeDeleter {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
    void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

// Groups in the order of CptCategory, Number first; a code point none of them matches is \p{C}.
const pcre2_code* category_pattern() {
    static const std::unique_ptr<pcre2_code, CodeDeleter> code = [] {
        static const char pattern[] = "(\\p{N})|(\\p{L})|(\\p{Z})|(\\p{M})|(\\p{P})|(\\p{S})";
        int err = 0;
        PCRE2_SIZE err_off = 0;
        pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                                      PCRE2_UTF | PCRE2_ANCHORED, &err, &err_off, nullptr);
        if (!c) fail("tokenizer: cannot compile the Unicode category pattern (PCRE2 error %d)", err);
        pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // optional: the interpreter is used if JIT is absent
        return std::unique_ptr<pcre2_code, CodeDeleter>(c);
    }();
    return code.get();
}

CptCategory compute_category(uint32_t cpt) {
    if (cpt > CPT_MAX) return CptCategory::Undefined;
    if (cpt >= 0xD800 && cpt <= 0xDFFF) return CptCategory::Control;  // Cs: not encodable for PCRE2
    thread_local std::unique_ptr<pcre2_match_data, MatchDataDeleter> md(
        pcre2_match_data_create_from_pattern(category_pattern(), nullptr));
    std::string s = cpt_to_utf8(cpt);
    int rc = pcre2_match(category_pattern(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, PCRE2_NO_UTF_CHECK,
                         md.get(), nullptr);
    if (rc <= 1) return CptCategory::Control;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    for (int g = 1; g < rc; ++g)
        if (ov[2 * g] != PCRE2_UNSET) return static_cast<CptCategory>(g);
    return CptCategory::Control;
}

// 0 = not yet looked up; else (category + 1) | whitespace << 4. Races only store the same value.
std::atomic<uint8_t> g_flags_cache[CPT_MAX + 1];

} // namespace

CptFlags cpt_flags(uint32_t cpt) {
    if (cpt > CPT_MAX) return CptFlags{};
    uint8_t v = g_flags_cache[cpt].load(std::memory_order_relaxed);
    if (v == 0) {
        v = static_cast<uint8_t>((static_cast<uint8_t>(compute_category(cpt)) + 1) | (is_white_space(cpt) ? 0x10 : 0));
        g_flags_cache[cpt].store(v, std::memory_order_relaxed);
    }
    return CptFlags{static_cast<CptCategory>((v & 0x0F) - 1), (v & 0x10) != 0};
}

bool cpt_is_han(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0x2CEB0 && c <= 0x2EBEF) || (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

namespace {

struct ByteMaps {
    std::array<std::string, 256> to_utf8;
    std::array<uint16_t, 512> cpt_to_byte;  // code points 0..511 cover all 256 images; 0xFFFF = none

    ByteMaps() {
        cpt_to_byte.fill(0xFFFF);
        auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
        int next = 256;
        for (int b = 0; b < 256; ++b) {
            const uint32_t cpt = printable(b) ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
            to_utf8[b] = cpt_to_utf8(cpt);
            cpt_to_byte[cpt] = static_cast<uint16_t>(b);
        }
    }
};

const ByteMaps& byte_maps() {
    static const ByteMaps maps;
    return maps;
}

} // namespace

const std::string& byte_to_utf8(uint8_t byte) { return byte_maps().to_utf8[byte]; }

int cpt_to_byte(uint32_t cpt) {
    if (cpt >= 512) return -1;
    const uint16_t b = byte_maps().cpt_to_byte[cpt];
    return b == 0xFFFF ? -1 : b;
}

} // namespace slm::tok
