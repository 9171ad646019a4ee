// slm/error.h - the one exception type slm throws at its boundaries.
//
// Messages name the operation, the file and the offending value, e.g.
//   gguf: models/x.gguf: tensor 'blk.3.attn_q.weight': offset 812 past end of file (size 640)
#pragma once

#include <stdexcept>
#include <string>

namespace slm {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Formats like printf and throws slm::Error.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

// printf-style formatting into a std::string.
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace slm
