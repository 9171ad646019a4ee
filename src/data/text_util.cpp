// data/text_util.cpp - word splitting and the normalization overlap tests use.
#include "data/text_util.h"

#include "slm/data.h"

#include "tokenizers/unicode.h"

namespace slm::data {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
} // namespace

std::vector<std::string_view> split_words(std::string_view text) {
    std::vector<std::string_view> out;
    size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && is_space(text[i])) ++i;
        size_t b = i;
        while (i < text.size() && !is_space(text[i])) ++i;
        if (i > b) out.push_back(text.substr(b, i - b));
    }
    return out;
}

} // namespace slm::data

namespace slm {

namespace {

// Lower case for the capitals whose small letter is at a fixed offset: ASCII, Latin-1 (not the
// multiplication sign) and the basic Cyrillic block. Enough for overlap tests; others stay as is.
uint32_t lower_cpt(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    return c;
}

} // namespace

std::vector<std::string> normalized_words(std::string_view text) {
    std::vector<std::string> out;
    for (std::string_view w : data::split_words(text)) {
        std::string n;
        n.reserve(w.size());
        bool ascii = true;
        for (char c : w) ascii = ascii && static_cast<unsigned char>(c) < 0x80;
        if (ascii) {
            for (char c : w) {
                const unsigned char u = static_cast<unsigned char>(c);
                if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z')) n += c;
                else if (u >= 'A' && u <= 'Z') n += static_cast<char>(u + 32);
                // everything else in printable ASCII is punctuation or a symbol; controls go too
            }
        } else {
            for (uint32_t c : tok::cpts_from_utf8(w)) {
                const tok::CptFlags f = tok::cpt_flags(c);
                if (f.category == tok::CptCategory::Punctuation || f.category == tok::CptCategory::Symbol ||
                    f.category == tok::CptCategory::Control)
                    continue;
                tok::append_utf8(n, lower_cpt(c));
            }
        }
        if (!n.empty()) out.push_back(std::move(n));
    }
    return out;
}

} // namespace slm
