// chat/strings.h - Python str operations on UTF-8 text, indexed by code point as Python is.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::chat {

// A string with code point positions, for indexing and slicing non-ASCII text.
class CodePoints {
public:
    explicit CodePoints(std::string_view s);
    size_t size() const { return ascii_ ? s_.size() : offs_.size() - 1; }
    size_t byte(size_t cp) const { return ascii_ ? cp : offs_[cp]; }      // byte offset of code point cp (cp <= size())
    size_t index_of_byte(size_t b) const;                                 // code point index of a byte offset
    std::string_view sub(size_t b, size_t e) const { return s_.substr(byte(b), byte(e) - byte(b)); }
    std::string_view str() const { return s_; }
    // Python's slice clamping of optional start/end arguments (has_* false = None).
    void clamp(bool has_start, int64_t start, bool has_end, int64_t end, size_t& b, size_t& e) const;

private:
    std::string_view s_;
    bool ascii_;
    std::vector<size_t> offs_;
};

// str.strip / lstrip / rstrip: chars empty means whitespace.
std::string py_strip(std::string_view s, bool chars_given, std::string_view chars, bool left, bool right);
// str.split / rsplit (sep_given false: runs of whitespace); maxsplit < 0 means no limit.
std::vector<std::string> py_split(std::string_view s, bool sep_given, std::string_view sep, int64_t maxsplit, bool from_right);
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
// str.replace; stops early once the result passes max_bytes (the caller then rejects its size).
std::string py_replace(std::string_view s, std::string_view old, std::string_view with, int64_t count,
                       size_t max_bytes = SIZE_MAX);
std::string py_title(std::string_view s);        // str.title
std::string py_capitalize(std::string_view s);   // str.capitalize
std::string py_swapcase(std::string_view s);
std::string py_center(std::string_view s, int64_t width, uint32_t fill);
std::string py_ljust(std::string_view s, int64_t width, uint32_t fill, bool right_align);
// Occurrences of sub in s (non-overlapping), as str.count.
size_t py_count(std::string_view s, std::string_view sub);

} // namespace slm::chat
