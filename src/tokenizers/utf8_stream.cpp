// tokenizers/utf8_stream.cpp - slm::Utf8Stream: the WHATWG UTF-8 decoder, emitting the input's own
// bytes for well-formed characters and U+FFFD for each maximal ill-formed subsequence.
#include "slm/vocab.h"

namespace slm {

namespace {

constexpr std::string_view REPLACEMENT = "\xEF\xBF\xBD";

// Decodes `in`; a well-formed but incomplete sequence at the end is returned (not emitted)
// unless `final`, where it becomes one U+FFFD.
std::string decode(std::string_view in, std::string& out, bool final) {
    size_t i = 0;
    const size_t n = in.size();
    while (i < n) {
        const uint8_t b = static_cast<uint8_t>(in[i]);
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the byte after the lead byte
        if (b < 0x80) {
            out += static_cast<char>(b);
            ++i;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            out += REPLACEMENT;
            ++i;
            continue;
        }
        size_t k = 1;
        for (; k <= need && i + k < n; ++k) {
            const uint8_t c = static_cast<uint8_t>(in[i + k]);
            if (c < lo || c > hi) break;
            lo = 0x80;
            hi = 0xBF;
        }
        if (k == need + 1) {
            out.append(in.substr(i, k));
            i += k;
        } else if (i + k == n) {
            if (!final) return std::string(in.substr(i));
            out += REPLACEMENT;
            i = n;
        } else {
            // The bytes so far form one ill-formed subsequence; the offending byte starts anew.
            out += REPLACEMENT;
            i += k;
        }
    }
    return {};
}

} // namespace

std::string Utf8Stream::push(std::string_view bytes) {
    std::string in;
    in.reserve(pending_.size() + bytes.size());
    in += pending_;
    in += bytes;
    std::string out;
    pending_ = decode(in, out, false);
    return out;
}

std::string Utf8Stream::flush() {
    std::string out;
    decode(pending_, out, true);
    pending_.clear();
    return out;
}

} // namespace slm
