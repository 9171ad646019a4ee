// tokenizers/unicode.h - the code-point layer under the tokenizers: llama.cpp's lenient UTF-8
// decoding, per-code-point category flags (from PCRE2's Unicode tables), GPT-2's byte <-> unicode
// mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::tok {

constexpr uint32_t CPT_REPLACEMENT = 0xFFFD;
constexpr uint32_t CPT_MAX = 0x10FFFF;

// Length of the UTF-8 sequence a byte starts, from its high nibble alone (continuation bytes count
// as 1), as llama.cpp's unicode_len_utf8: the SPM and BPE symbol splitters step by it.
inline size_t utf8_len(char c) {
    static constexpr uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[static_cast<uint8_t>(c) >> 4];
}

// Decodes like llama.cpp's unicode_cpts_from_utf8: overlong forms and surrogates are accepted, four-
// byte forms up to 0x1FFFFF too; a byte that starts no sequence (or a truncated one) becomes U+FFFD
// and decoding resumes at the next byte.
std::vector<uint32_t> cpts_from_utf8(std::string_view s);

// Appends the UTF-8 form of `cpt`; values above U+10FFFF (where llama.cpp would throw) become U+FFFD.
void append_utf8(std::string& out, uint32_t cpt);
std::string cpt_to_utf8(uint32_t cpt);

// True for well-formed UTF-8 (no overlongs, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s);
// Offset of the first byte that does not start a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points past U+10FFFF are not), or std::string_view::npos if there is none.
size_t utf8_invalid_at(std::string_view s);

// The general category of a code point as llama.cpp's unicode_cpt_flags groups it (\p{N}, \p{L},
// \p{Z}, \p{M}, \p{P}, \p{S}, \p{C}), plus its White_Space property.
enum class CptCategory : uint8_t { Undefined, Number, Letter, Separator, Mark, Punctuation, Symbol, Control };

struct CptFlags {
    CptCategory category = CptCategory::Undefined;
    bool whitespace = false;

    bool is_number() const { return category == CptCategory::Number; }
    bool is_letter() const { return category == CptCategory::Letter; }
    bool is_defined() const { return category != CptCategory::Undefined; }
};

// Categories come from PCRE2 (one anchored match per code point, cached for the process); code
// points past U+10FFFF are Undefined.
CptFlags cpt_flags(uint32_t cpt);

// The CJK ranges llama.cpp's unicode_cpt_is_han lists (not the Unicode Han script).
bool cpt_is_han(uint32_t cpt);

// GPT-2's bytes_to_unicode: every byte maps to one printable code point, as UTF-8.
const std::string& byte_to_utf8(uint8_t byte);
// The inverse, for one code point; -1 if it is not one of the 256 images.
int cpt_to_byte(uint32_t cpt);

} // namespace slm::tok
