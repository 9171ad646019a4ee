// chat/lexer.h - splits a Jinja2 template into tokens the way jinja2.lexer does: template data
// between tags (with whitespace control, trim_blocks and lstrip_blocks already applied), the
// tag delimiters, and the names, literals and operators inside tags. Comments vanish here and
// {% raw %} blocks become data.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::chat {

enum class Tok : uint8_t { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
    Tok type = Tok::Eof;
    std::string text;   // Data: the text; Name; String: the decoded value; Op: the operator
    int64_t ival = 0;   // Int
    double fval = 0;    // Float
    uint32_t offset = 0;// byte offset in the normalized source
};

struct LexOptions {
    bool trim_blocks = true;    // drop the first newline after a block tag (Hugging Face sets both)
    bool lstrip_blocks = true;  // drop spaces and tabs before a block tag at the start of a line
    bool keep_trailing_newline = false;  // Jinja2's default drops one (lm-eval's task templates keep it)
};

// Source with Jinja2's preprocessing: \r\n and \r become \n, and one trailing newline goes
// (keep_trailing_newline=False). Token offsets refer to this text.
std::string normalize_source(std::string_view source, bool keep_trailing_newline = false);

// Tokenizes normalized source. Throws SyntaxError at the offset of the problem.
std::vector<Token> tokenize(const std::string& src, const LexOptions& opt = {});

// 1-based line and column (in code points) of a byte offset.
void line_col(std::string_view src, size_t offset, uint32_t& line, uint32_t& col);

// Thrown by tokenize and the parser: a syntax error at a byte offset of the normalized source.
struct SyntaxError {
    std::string message;
    size_t offset;
};

} // namespace slm::chat
