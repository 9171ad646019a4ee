// formats/datasets.cpp - evaluation-set readers; see datasets.h and datasets_parse.h.
//
// Every reader first checks the whole text is UTF-8, then parses it item by item; messages read
// "<set>: <file>: line N: field 'f': what". Nothing is sized from a number read from a file:
// vectors grow with the items actually present.
#include "formats/datasets.h"
#include "formats/datasets_parse.h"
#include "formats/json_util.h"
#include "tokenizers/unicode.h"

#include "slm/error.h"

#include <bzlib.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <mutex>

namespace fs = std::filesystem;

namespace slm::datasets {

namespace {

using json = nlohmann::json;

bool ends_with(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// 1-based line of byte `offset`.
size_t line_of(std::string_view text, size_t offset) {
    offset = std::min(offset, text.size());
    return 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n'));
}

// A quoted, shortened form of a value for messages.
std::string show(std::string_view v) {
    std::string s(v.substr(0, 60));
    if (v.size() > 60) s += "...";
    return "'" + s + "'";
}

// A leading UTF-8 byte-order mark (spreadsheet exports write one) is not part of the data.
std::string_view strip_bom(std::string_view text) {
    if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    return text;
}

// The lines of `text` split on '\n', each without a trailing '\r'; a final newline ends the last
// line rather than starting an empty one (as std::getline reads them).
std::vector<std::string_view> split_lines(std::string_view text) {
    std::vector<std::string_view> lines;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string_view line = text.substr(pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
        pos = nl + 1;
    }
    return lines;
}

bool is_blank(std::string_view s) {
    return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Parses one JSON value. nlohmann's parser recurses once per nesting level, so deep input is
// refused first: a hostile line cannot overflow the stack.
json parse_json(std::string_view text, const std::string& where) {
    if (json_util::nesting_depth(text) > 256) slm::fail("%s: JSON nested more than 256 levels deep", where.c_str());
    try {
        return json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {  // parse_error, out_of_range for huge numbers
        slm::fail("%s: invalid JSON: %s", where.c_str(), e.what());
    }
}

// Reads item fields with messages naming the file, the line and the field.
struct Item {
    const json& obj;
    std::string where;  // "<op>: <file>: line N"

    [[noreturn]] void bad(const std::string& field, const std::string& what) const {
        slm::fail("%s: field '%s': %s", where.c_str(), field.c_str(), what.c_str());
    }
    const json& get(const char* key) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) bad(key, "missing");
        return *it;
    }
    bool has(const char* key) const {
        auto it = obj.find(key);
        return it != obj.end() && !it->is_null();
    }
    std::string str(const char* key) const { return as_str(get(key), key); }
    std::string as_str(const json& v, const std::string& field) const {
        if (!v.is_string()) bad(field, std::string("expected a string, got ") + v.type_name());
        return v.get<std::string>();
    }
    // An index given as a JSON integer or a string of digits ("3"), in [0, n).
    int64_t index(const char* key, int64_t n) const {
        const json& v = get(key);
        int64_t k = -1;
        if (v.is_number_integer()) {
            k = v.get<int64_t>();
        } else if (v.is_string()) {
            const std::string s = v.get<std::string>();
            if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
                bad(key, "expected an index, got " + show(s));
            k = std::stoll(s);
        } else {
            bad(key, std::string("expected an integer, got ") + v.type_name());
        }
        if (k < 0 || k >= n) bad(key, strprintf("%lld out of range [0, %lld)", (long long)k, (long long)n));
        return k;
    }
};

std::string where_line(const char* op, const std::string& name, size_t line) {
    return strprintf("%s: %s: line %zu", op, name.c_str(), line);
}

// The JSON objects of a jsonl text, each with its line number.
std::vector<std::pair<size_t, json>> jsonl_objects(std::string_view text, const std::string& name, const char* op) {
    check_utf8(text, name, op);
    text = strip_bom(text);
    std::vector<std::pair<size_t, json>> out;
    const std::vector<std::string_view> lines = split_lines(text);
    for (size_t i = 0; i < lines.size(); ++i) {
        if (is_blank(lines[i])) continue;
        const std::string where = where_line(op, name, i + 1);
        json v = parse_json(lines[i], where);
        if (!v.is_object()) slm::fail("%s: expected a JSON object, got %s", where.c_str(), v.type_name());
        out.emplace_back(i + 1, std::move(v));
    }
    if (out.empty()) slm::fail("%s: %s: no items", op, name.c_str());
    return out;
}

// Python's str.isspace() for one code point (what str.strip() removes).
bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

// Decodes the code point at s[i] (valid UTF-8 assumed, else the byte itself) and its length.
uint32_t decode_at(std::string_view s, size_t i, size_t& len) {
    const auto b = static_cast<uint8_t>(s[i]);
    len = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
    if (b < 0x80 || i + len > s.size()) {
        len = 1;
        return b;
    }
    uint32_t c = b & (0x7F >> len);
    for (size_t k = 1; k < len; ++k) c = (c << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    return c;
}

// Python's str.strip(): Unicode whitespace off both ends.
std::string_view py_strip(std::string_view s) {
    size_t b = 0;
    while (b < s.size()) {
        size_t len;
        if (!py_isspace(decode_at(s, b, len))) break;
        b += len;
    }
    size_t e = s.size();
    while (e > b) {
        size_t start = e - 1;  // back to the start of the last code point
        while (start > b && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
        size_t len;
        if (!py_isspace(decode_at(s, start, len))) break;
        e = start;
    }
    return s.substr(b, e - b);
}

// PCRE2's extended substitution does Unicode case conversion (\u, \L): used for non-ASCII text.
std::string pcre2_capitalize(std::string_view text) {
    static pcre2_code* re = [] {
        int err = 0;
        PCRE2_SIZE off = 0;
        return pcre2_compile(reinterpret_cast<PCRE2_SPTR>("^(.)(.*)$"), PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_DOTALL | PCRE2_NO_UTF_CHECK, &err, &off, nullptr);
    }();
    if (!re) slm::fail("hellaswag: cannot compile the capitalize pattern");
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(re, nullptr), &pcre2_match_data_free);
    const char* repl = "\\u$1\\L$2";
    std::string out(text.size() + 16, '\0');
    for (int attempt = 0; attempt < 2; ++attempt) {
        PCRE2_SIZE out_len = out.size();
        const int rc = pcre2_substitute(
            re, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
            PCRE2_SUBSTITUTE_EXTENDED | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, md.get(), nullptr,
            reinterpret_cast<PCRE2_SPTR>(repl), PCRE2_ZERO_TERMINATED,
            reinterpret_cast<PCRE2_UCHAR*>(out.data()), &out_len);
        if (rc >= 0) {
            out.resize(out_len);
            return out;
        }
        if (rc != PCRE2_ERROR_NOMEMORY) break;
        out.assign(out_len + 1, '\0');  // out_len is the length needed
    }
    slm::fail("hellaswag: cannot change the case of %s", show(text).c_str());
}

std::vector<std::string> string_array(const Item& it, const char* key, size_t n_min, size_t n_max) {
    const json& v = it.get(key);
    if (!v.is_array()) it.bad(key, std::string("expected an array, got ") + v.type_name());
    if (v.size() < n_min || v.size() > n_max) {
        it.bad(key, n_min == n_max ? strprintf("expected %zu items, got %zu", n_min, v.size())
                                   : strprintf("expected %zu to %zu items, got %zu", n_min, n_max, v.size()));
    }
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) out.push_back(it.as_str(v[i], strprintf("%s[%zu]", key, i)));
    return out;
}

// ---- HellaSwag ----------------------------------------------------------------------------------

// llama.cpp's text: context, gold index, 4 endings per task. Read as llama.cpp's hellaswag_score
// reads it (it scores context + " " + ending), with no preprocessing: these files hold the
// contexts as "activity_label: ctx_a ctx_b" with ctx_b not capitalized and WikiHow's bracket
// artefacts left in, which is not lm-evaluation-harness's query text.
std::vector<Doc> hellaswag_text(std::string_view text, const std::string& name) {
    const std::vector<std::string_view> lines = split_lines(text);
    if (lines.empty()) slm::fail("hellaswag: %s: no tasks", name.c_str());
    if (lines.size() % 6 != 0) {
        const size_t first = lines.size() / 6 * 6 + 1;
        slm::fail("hellaswag: %s: %zu lines, not a multiple of 6: the task starting at line %zu is incomplete "
                  "(truncated file?)", name.c_str(), lines.size(), first);
    }
    std::vector<Doc> docs;
    for (size_t t = 0; t < lines.size(); t += 6) {
        const std::string_view gold = lines[t + 1];
        if (gold.size() != 1 || gold[0] < '0' || gold[0] > '3') {
            slm::fail("hellaswag: %s: line %zu: gold ending index %s of the task starting at line %zu is not 0-3",
                      name.c_str(), t + 2, show(gold).c_str(), t + 1);
        }
        Doc d = Doc::object();
        d["query"] = std::string(lines[t]);
        json choices = json::array();
        for (size_t j = 0; j < 4; ++j) choices.push_back(std::string(lines[t + 2 + j]));
        d["choices"] = std::move(choices);
        d["gold"] = gold[0] - '0';
        d["label"] = std::string(gold);  // hellaswag.yaml's doc_to_target names the raw label
        docs.push_back(std::move(d));
    }
    return docs;
}

// The official jsonl, turned into lm-evaluation-harness's documents (its hellaswag utils.py
// process_docs): the original fields are kept and query, choices and gold added.
std::vector<Doc> hellaswag_jsonl(std::string_view text, const std::string& name) {
    std::vector<Doc> docs;
    for (auto& [line, obj] : jsonl_objects(text, name, "hellaswag")) {
        const Item it{obj, where_line("hellaswag", name, line)};
        const std::string ctx = it.str("ctx_a") + " " + py_capitalize(it.str("ctx_b"));
        const std::string query = hellaswag_preprocess(it.str("activity_label") + ": " + ctx);
        json choices = json::array();
        for (const std::string& e : string_array(it, "endings", 4, 4)) choices.push_back(hellaswag_preprocess(e));
        const int64_t gold = it.index("label", 4);
        Doc d = std::move(obj);
        d["query"] = query;
        d["choices"] = std::move(choices);
        d["gold"] = gold;
        docs.push_back(std::move(d));
    }
    return docs;
}

// ---- WinoGrande -----------------------------------------------------------------------------------

// The checks both layouts share; `answer` may be empty when the labels file gives it later.
void winogrande_check(const std::string& where, const std::string& sentence, const std::string& option1,
                      const std::string& option2) {
    // Each option is scored in place of the one blank (lm-evaluation-harness splits at "_").
    if (sentence.find('_') == std::string::npos)
        slm::fail("%s: field 'sentence': no '_' blank in %s", where.c_str(), show(sentence).c_str());
    if (option1.empty()) slm::fail("%s: field 'option1': empty", where.c_str());
    if (option2.empty()) slm::fail("%s: field 'option2': empty", where.c_str());
}

void winogrande_answer(Doc& d, const std::string& where, const std::string& field, std::string_view answer) {
    if (answer != "1" && answer != "2")
        slm::fail("%s: field '%s': answer %s is not 1 or 2", where.c_str(), field.c_str(), show(answer).c_str());
    d["answer"] = std::string(answer);
    d["gold"] = answer[0] - '1';
}

// Reads a whole file, refusing one larger than kMaxTextBytes.
std::string read_file(const std::string& path, const char* op) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) slm::fail("%s: %s: is a directory, expected a file", op, path.c_str());
    std::ifstream in(path, std::ios::binary);
    if (!in) slm::fail("%s: %s: cannot open: %s", op, path.c_str(), std::strerror(errno));
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    if (size < 0) slm::fail("%s: %s: cannot get the file size", op, path.c_str());
    if (static_cast<uint64_t>(size) > kMaxTextBytes)
        slm::fail("%s: %s: %lld bytes, larger than the %zu-byte limit", op, path.c_str(), (long long)size, kMaxTextBytes);
    in.seekg(0, std::ios::beg);
    std::string data(static_cast<size_t>(size), '\0');  // sized by the file itself, not its content
    in.read(data.data(), size);
    if (in.gcount() != size) slm::fail("%s: %s: read error", op, path.c_str());
    return data;
}

std::string read_text(const std::string& path, const char* op) {
    std::string data = read_file(path, op);
    if (ends_with(path, ".bz2")) data = decompress_bz2(data, path);
    return data;
}

} // namespace

// ---- bz2, UTF-8 -------------------------------------------------------------------------------------

std::string decompress_bz2(std::string_view data, const std::string& name, size_t max_out) {
    if (data.empty()) slm::fail("bz2: %s: empty file", name.c_str());
    std::string out;
    size_t in_pos = 0;
    int n_streams = 0;
    while (in_pos < data.size()) {
        if (n_streams > 0 && data.substr(in_pos, 3) != "BZh") {
            slm::fail("bz2: %s: %zu bytes of trailing garbage after the compressed data", name.c_str(),
                      data.size() - in_pos);
        }
        bz_stream s;
        std::memset(&s, 0, sizeof s);
        if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK) slm::fail("bz2: %s: cannot initialize libbz2", name.c_str());
        std::unique_ptr<bz_stream, void (*)(bz_stream*)> guard(&s, [](bz_stream* p) { BZ2_bzDecompressEnd(p); });
        int rc = BZ_OK;
        while (true) {
            // libbz2 counts in unsigned int: feed and drain at most 1 GiB at a time.
            const size_t avail_in = std::min<size_t>(data.size() - in_pos, size_t(1) << 30);
            s.next_in = const_cast<char*>(data.data() + in_pos);
            s.avail_in = static_cast<unsigned>(avail_in);
            if (out.size() == max_out) {
                slm::fail("bz2: %s: decompresses to more than %zu bytes (limit)", name.c_str(), max_out);
            }
            const size_t chunk = std::min<size_t>({max_out - out.size(), size_t(1) << 20});
            const size_t old = out.size();
            out.resize(old + chunk);
            s.next_out = out.data() + old;
            s.avail_out = static_cast<unsigned>(chunk);
            rc = BZ2_bzDecompress(&s);
            const size_t consumed = avail_in - s.avail_in;
            const size_t produced = chunk - s.avail_out;
            in_pos += consumed;
            out.resize(old + produced);
            if (rc == BZ_STREAM_END) break;
            if (rc != BZ_OK) {
                const char* why = rc == BZ_DATA_ERROR_MAGIC ? "not bzip2 data (bad magic)"
                                  : rc == BZ_DATA_ERROR     ? "corrupt data (CRC or format error)"
                                  : rc == BZ_MEM_ERROR      ? "out of memory"
                                                            : "decompression error";
                slm::fail("bz2: %s: %s near compressed byte %zu", name.c_str(), why, in_pos);
            }
            if (consumed == 0 && produced == 0) {
                if (in_pos >= data.size())
                    slm::fail("bz2: %s: truncated: the compressed data ends before the end of its stream", name.c_str());
                slm::fail("bz2: %s: decompression made no progress at byte %zu", name.c_str(), in_pos);
            }
        }
        ++n_streams;
    }
    return out;
}

void check_utf8(std::string_view text, const std::string& name, const char* op) {
    const size_t i = tok::utf8_invalid_at(text);
    if (i == std::string_view::npos) return;
    const size_t nl = text.rfind('\n', i);
    const size_t line_start = nl == std::string_view::npos ? 0 : nl + 1;
    slm::fail("%s: %s: line %zu: invalid UTF-8 (byte 0x%02X at column %zu)", op, name.c_str(), line_of(text, i),
              static_cast<uint8_t>(text[i]), i - line_start + 1);
}

// ---- generic layouts ------------------------------------------------------------------------------

std::vector<Doc> parse_jsonl(std::string_view text, const std::string& name, const char* op) {
    std::vector<Doc> docs;
    for (auto& [line, obj] : jsonl_objects(text, name, op)) docs.push_back(std::move(obj));
    return docs;
}

std::vector<Doc> parse_json_array(std::string_view text, const std::string& name, const char* op) {
    check_utf8(text, name, op);
    json v = parse_json(strip_bom(text), strprintf("%s: %s", op, name.c_str()));
    if (!v.is_array()) slm::fail("%s: %s: expected a JSON array of objects, got %s", op, name.c_str(), v.type_name());
    if (v.empty()) slm::fail("%s: %s: no items", op, name.c_str());
    std::vector<Doc> docs;
    for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_object())
            slm::fail("%s: %s: item %zu: expected a JSON object, got %s", op, name.c_str(), i, v[i].type_name());
        docs.push_back(std::move(v[i]));
    }
    return docs;
}

std::vector<CsvRow> parse_csv_rows(std::string_view text, const std::string& name, char sep, const char* op) {
    if (sep == '"' || sep == '\n' || sep == '\r') slm::fail("%s: %s: invalid separator", op, name.c_str());
    check_utf8(text, name, op);
    text = strip_bom(text);
    std::vector<CsvRow> rows;
    CsvRow row;
    std::string field;
    size_t line = 1;
    size_t i = 0;
    const size_t n = text.size();
    bool row_open = false;  // the current row has some content (a separator or a character)
    auto end_row = [&] {
        row.fields.push_back(std::move(field));
        field.clear();
        // An empty line is no record (RFC 4180 has none; files often end with one).
        if (row.fields.size() > 1 || !row.fields[0].empty() || row_open) rows.push_back(std::move(row));
        row = CsvRow{};
        row_open = false;
    };
    row.line = line;
    while (i < n) {
        const char c = text[i];
        if (c == '"' && field.empty() && (i == 0 || !row_open || text[i - 1] == sep)) {
            // A quoted field: "" is a quote; separators and newlines are data until the closing quote.
            const size_t open_line = line;
            row_open = true;
            ++i;
            while (true) {
                if (i >= n)
                    slm::fail("%s: %s: line %zu: unterminated quoted field (opened on line %zu)", op, name.c_str(),
                              line, open_line);
                if (text[i] == '"') {
                    if (i + 1 < n && text[i + 1] == '"') {
                        field += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                if (text[i] == '\n') ++line;
                field += text[i++];
            }
            if (i < n && text[i] != sep && text[i] != '\n' && !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') &&
                !(text[i] == '\r' && i + 1 == n)) {
                slm::fail("%s: %s: line %zu: unexpected %s after a closing quote (expected a separator or the end of "
                          "the line)", op, name.c_str(), line, show(text.substr(i, 1)).c_str());
            }
            continue;
        }
        if (c == sep) {
            row.fields.push_back(std::move(field));
            field.clear();
            row_open = true;
            ++i;
        } else if (c == '\n' || (c == '\r' && (i + 1 == n || text[i + 1] == '\n'))) {
            end_row();
            i += c == '\r' ? (i + 1 < n ? 2 : 1) : 1;
            ++line;
            row.line = line;
        } else {
            // A quote inside an unquoted field is kept as data (as Python's csv module does).
            field += c;
            row_open = true;
            ++i;
        }
    }
    if (row_open || !field.empty()) end_row();
    return rows;
}

std::vector<Doc> parse_csv(std::string_view text, const std::string& name, bool header, char sep) {
    const std::vector<CsvRow> rows = parse_csv_rows(text, name, sep, "csv");
    if (rows.empty() || (header && rows.size() == 1)) slm::fail("csv: %s: no rows", name.c_str());
    std::vector<std::string> keys;
    if (header) {
        keys = rows[0].fields;
        for (size_t i = 0; i < keys.size(); ++i) {
            if (keys[i].empty()) slm::fail("csv: %s: line %zu: header column %zu is empty", name.c_str(), rows[0].line, i + 1);
            for (size_t j = 0; j < i; ++j)
                if (keys[j] == keys[i])
                    slm::fail("csv: %s: line %zu: header names column '%s' twice", name.c_str(), rows[0].line,
                              keys[i].c_str());
        }
    } else {
        for (size_t i = 0; i < rows[0].fields.size(); ++i) keys.push_back(std::to_string(i));
    }
    std::vector<Doc> docs;
    for (size_t r = header ? 1 : 0; r < rows.size(); ++r) {
        if (rows[r].fields.size() != keys.size())
            slm::fail("csv: %s: line %zu: %zu fields, expected %zu", name.c_str(), rows[r].line,
                      rows[r].fields.size(), keys.size());
        Doc d = Doc::object();
        for (size_t i = 0; i < keys.size(); ++i) d[keys[i]] = rows[r].fields[i];
        docs.push_back(std::move(d));
    }
    return docs;
}

// ---- HellaSwag ------------------------------------------------------------------------------------

std::vector<Doc> parse_hellaswag(std::string_view text, const std::string& name) {
    check_utf8(text, name, "hellaswag");
    text = strip_bom(text);
    const size_t first = text.find_first_not_of(" \t\r\n");
    if (first != std::string_view::npos && text[first] == '{') return hellaswag_jsonl(text, name);
    return hellaswag_text(text, name);
}

std::string hellaswag_preprocess(std::string_view text) {
    std::string s(py_strip(text));
    // " [title]" -> ". "
    for (size_t pos = 0; (pos = s.find(" [title]", pos)) != std::string::npos; pos += 2) s.replace(pos, 8, ". ");
    // re.sub("\\[.*?\\]", "", s): the shortest "[...]" from each '[' ('.' does not match '\n').
    std::string t;
    for (size_t i = 0; i < s.size();) {
        if (s[i] == '[') {
            const size_t close = s.find_first_of("]\n", i + 1);
            if (close != std::string::npos && s[close] == ']') {
                i = close + 1;
                continue;
            }
        }
        t += s[i++];
    }
    // s.replace("  ", " "): non-overlapping, left to right, one pass (three spaces become two).
    std::string u;
    for (size_t i = 0; i < t.size();) {
        if (t[i] == ' ' && i + 1 < t.size() && t[i + 1] == ' ') {
            u += ' ';
            i += 2;
        } else {
            u += t[i++];
        }
    }
    return u;
}

std::string py_capitalize(std::string_view text) {
    if (text.empty()) return {};
    if (std::all_of(text.begin(), text.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; })) {
        std::string s(text);
        s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
        for (size_t i = 1; i < s.size(); ++i) s[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
        return s;
    }
    return pcre2_capitalize(text);
}

// ---- ARC --------------------------------------------------------------------------------------------

std::vector<Doc> parse_arc(std::string_view text, const std::string& name) {
    std::vector<Doc> docs;
    for (auto& [line, obj] : jsonl_objects(text, name, "arc")) {
        const Item it{obj, where_line("arc", name, line)};
        Doc d = Doc::object();
        d["id"] = it.str("id");
        std::vector<std::string> texts, labels;
        const json& q = it.get("question");
        if (q.is_object()) {
            // The AllenAI release: question {stem, choices [{text, label}]}.
            const Item qi{q, it.where};
            if (!qi.has("stem")) it.bad("question.stem", "missing");
            d["question"] = qi.as_str(q["stem"], "question.stem");
            if (!qi.has("choices")) it.bad("question.choices", "missing");
            const json& cs = q["choices"];
            if (!cs.is_array()) it.bad("question.choices", std::string("expected an array, got ") + cs.type_name());
            for (size_t i = 0; i < cs.size(); ++i) {
                const std::string f = strprintf("question.choices[%zu]", i);
                if (!cs[i].is_object()) it.bad(f, std::string("expected an object, got ") + cs[i].type_name());
                const Item ci{cs[i], it.where};
                if (!ci.has("text")) it.bad(f + ".text", "missing");
                if (!ci.has("label")) it.bad(f + ".label", "missing");
                texts.push_back(ci.as_str(cs[i]["text"], f + ".text"));
                labels.push_back(ci.as_str(cs[i]["label"], f + ".label"));
            }
        } else if (q.is_string()) {
            // The Hugging Face layout: question (string), choices {text[], label[]}.
            d["question"] = q.get<std::string>();
            const json& cs = it.get("choices");
            if (!cs.is_object()) it.bad("choices", std::string("expected an object, got ") + cs.type_name());
            const Item ci{cs, it.where};
            texts = string_array(ci, "text", 0, 64);
            labels = string_array(ci, "label", 0, 64);
            if (texts.size() != labels.size())
                it.bad("choices", strprintf("%zu texts but %zu labels", texts.size(), labels.size()));
        } else {
            it.bad("question", std::string("expected an object or a string, got ") + q.type_name());
        }
        if (texts.size() < 2 || texts.size() > 64) it.bad("question.choices", strprintf("%zu choices (expected 2 or more)", texts.size()));
        for (size_t i = 0; i < labels.size(); ++i) {
            if (labels[i].empty()) it.bad(strprintf("question.choices[%zu].label", i), "empty");
            for (size_t j = 0; j < i; ++j)
                if (labels[j] == labels[i]) it.bad(strprintf("question.choices[%zu].label", i), "duplicate label " + show(labels[i]));
        }
        const std::string key = it.str("answerKey");
        const auto k = std::find(labels.begin(), labels.end(), key);
        if (k == labels.end()) it.bad("answerKey", show(key) + " is not one of the choice labels");
        d["choices"] = {{"text", texts}, {"label", labels}};
        d["answerKey"] = key;
        d["gold"] = k - labels.begin();
        docs.push_back(std::move(d));
    }
    return docs;
}

// ---- MMLU ---------------------------------------------------------------------------------------------

std::string mmlu_subject_from_filename(const std::string& filename) {
    std::string s = fs::path(filename).filename().string();
    if (ends_with(s, ".csv")) s.resize(s.size() - 4);
    for (const char* split : {"_dev", "_val", "_test"})
        if (ends_with(s, split)) {
            s.resize(s.size() - std::strlen(split));
            break;
        }
    return s;
}

std::vector<Doc> parse_mmlu(std::string_view text, const std::string& name, const std::string& subject) {
    const std::vector<CsvRow> rows = parse_csv_rows(text, name, ',', "mmlu");
    static const std::vector<std::string> kHeader = {"question", "choice0", "choice1", "choice2", "choice3", "answer"};
    // The shipped files have a header; the original release (data/dev/*.csv) has none.
    const size_t first = !rows.empty() && rows[0].fields == kHeader ? 1 : 0;
    if (rows.size() <= first) slm::fail("mmlu: %s: no questions", name.c_str());
    std::vector<Doc> docs;
    for (size_t r = first; r < rows.size(); ++r) {
        const std::vector<std::string>& f = rows[r].fields;
        if (f.size() != 6)
            slm::fail("mmlu: %s: line %zu: %zu fields, expected 6 (question, 4 choices, answer)", name.c_str(),
                      rows[r].line, f.size());
        const std::string& a = f[5];
        int answer = -1;
        if (a.size() == 1 && a[0] >= '0' && a[0] <= '3') answer = a[0] - '0';
        if (a.size() == 1 && a[0] >= 'A' && a[0] <= 'D') answer = a[0] - 'A';
        if (answer < 0)
            slm::fail("mmlu: %s: line %zu: field 'answer': %s is not 0-3 or A-D", name.c_str(), rows[r].line,
                      show(a).c_str());
        Doc d = Doc::object();
        d["subject"] = subject;
        d["question"] = f[0];
        d["choices"] = {f[1], f[2], f[3], f[4]};
        d["answer"] = answer;
        docs.push_back(std::move(d));
    }
    return docs;
}

// ---- WinoGrande ------------------------------------------------------------------------------------

std::vector<Doc> parse_winogrande_csv(std::string_view text, const std::string& name) {
    const std::vector<CsvRow> rows = parse_csv_rows(text, name, ',', "winogrande");
    // llama.cpp's file has no header; accept one naming the columns.
    const size_t first = !rows.empty() && !rows[0].fields.empty() && rows[0].fields[0] == "index" ? 1 : 0;
    if (rows.size() <= first) slm::fail("winogrande: %s: no items", name.c_str());
    std::vector<Doc> docs;
    for (size_t r = first; r < rows.size(); ++r) {
        const std::vector<std::string>& f = rows[r].fields;
        const std::string where = where_line("winogrande", name, rows[r].line);
        if (f.size() != 5)
            slm::fail("%s: %zu fields, expected 5 (index, sentence, option1, option2, answer)", where.c_str(), f.size());
        winogrande_check(where, f[1], f[2], f[3]);
        Doc d = Doc::object();
        d["index"] = f[0];
        d["sentence"] = f[1];
        d["option1"] = f[2];
        d["option2"] = f[3];
        winogrande_answer(d, where, "answer", f[4]);
        docs.push_back(std::move(d));
    }
    return docs;
}

std::vector<Doc> parse_winogrande_jsonl(std::string_view text, const std::string& name,
                                        const std::optional<std::string>& labels, const std::string& labels_name) {
    std::vector<std::string_view> label_lines;
    if (labels) {
        check_utf8(*labels, labels_name, "winogrande");
        for (std::string_view l : split_lines(*labels))
            if (!is_blank(l)) label_lines.push_back(l);
    }
    std::vector<Doc> docs;
    auto objs = jsonl_objects(text, name, "winogrande");
    if (labels && label_lines.size() != objs.size())
        slm::fail("winogrande: %s: %zu labels for the %zu items of %s", labels_name.c_str(), label_lines.size(),
                  objs.size(), name.c_str());
    for (size_t i = 0; i < objs.size(); ++i) {
        auto& [line, obj] = objs[i];
        const Item it{obj, where_line("winogrande", name, line)};
        const std::string sentence = it.str("sentence"), option1 = it.str("option1"), option2 = it.str("option2");
        winogrande_check(it.where, sentence, option1, option2);
        // The test split ships without answers ("" or absent); its labels come from the .lst file.
        std::string answer = it.has("answer") ? it.str("answer") : "";
        Doc d = std::move(obj);
        if (labels) {
            const std::string label(py_strip(label_lines[i]));
            if (!answer.empty() && answer != label)
                it.bad("answer", show(answer) + " but " + labels_name + " gives " + show(label) + " for this item");
            answer = label;
            const std::string lwhere = strprintf("winogrande: %s: item %zu", labels_name.c_str(), i + 1);
            winogrande_answer(d, lwhere, "label", answer);
        } else {
            if (answer.empty()) it.bad("answer", "missing, and no labels file given");
            winogrande_answer(d, it.where, "answer", answer);
        }
        docs.push_back(std::move(d));
    }
    return docs;
}

// ---- GSM8K ---------------------------------------------------------------------------------------------

std::vector<Doc> parse_gsm8k(std::string_view text, const std::string& name) {
    std::vector<Doc> docs;
    for (auto& [line, obj] : jsonl_objects(text, name, "gsm8k")) {
        const Item it{obj, where_line("gsm8k", name, line)};
        const std::string question = it.str("question"), answer = it.str("answer");
        if (question.empty()) it.bad("question", "empty");
        // The final answer follows "#### "; without it there is nothing to score against.
        if (answer.find("####") == std::string::npos) it.bad("answer", "no '#### <number>' final answer");
        docs.push_back(std::move(obj));
    }
    return docs;
}

} // namespace slm::datasets

// ---- the path-taking API of datasets.h -----------------------------------------------------------

namespace slm {

std::string read_text_maybe_bz2(const std::string& path) {
    return datasets::read_text(path, "datasets");
}

std::vector<Doc> read_jsonl(const std::string& path) {
    return datasets::parse_jsonl(read_text_maybe_bz2(path), path);
}

std::vector<Doc> read_json_array(const std::string& path) {
    return datasets::parse_json_array(read_text_maybe_bz2(path), path);
}

std::vector<Doc> read_csv(const std::string& path, bool header, char sep) {
    return datasets::parse_csv(read_text_maybe_bz2(path), path, header, sep);
}

std::vector<Doc> load_hellaswag(const std::string& path) {
    return datasets::parse_hellaswag(datasets::read_text(path, "hellaswag"), path);
}

std::vector<Doc> load_arc(const std::string& path) {
    return datasets::parse_arc(datasets::read_text(path, "arc"), path);
}

std::vector<Doc> load_mmlu(const std::string& path) {
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
        return datasets::parse_mmlu(datasets::read_text(path, "mmlu"), path,
                                    datasets::mmlu_subject_from_filename(path));
    }
    std::vector<std::string> files;
    for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
        const std::string f = e.path().filename().string();
        std::error_code fec;
        if (e.is_regular_file(fec) && (datasets::ends_with(f, ".csv") || datasets::ends_with(f, ".csv.bz2")))
            files.push_back(e.path().string());
    }
    if (ec) slm::fail("mmlu: %s: cannot list the folder: %s", path.c_str(), ec.message().c_str());
    if (files.empty()) slm::fail("mmlu: %s: no .csv files in the folder", path.c_str());
    std::sort(files.begin(), files.end());
    std::vector<Doc> docs;
    for (const std::string& f : files) {
        std::string base = f;
        if (datasets::ends_with(base, ".bz2")) base.resize(base.size() - 4);
        for (Doc& d : datasets::parse_mmlu(datasets::read_text(f, "mmlu"), f, datasets::mmlu_subject_from_filename(base)))
            docs.push_back(std::move(d));
    }
    return docs;
}

std::vector<Doc> load_winogrande(const std::string& path) {
    const std::string text = datasets::read_text(path, "winogrande");
    std::string base = path;
    if (datasets::ends_with(base, ".bz2")) base.resize(base.size() - 4);
    if (!datasets::ends_with(base, ".jsonl")) return datasets::parse_winogrande_csv(text, path);
    const std::string labels_path = base.substr(0, base.size() - 6) + "-labels.lst";
    std::error_code ec;
    if (!fs::exists(labels_path, ec)) return datasets::parse_winogrande_jsonl(text, path);
    return datasets::parse_winogrande_jsonl(text, path, datasets::read_text(labels_path, "winogrande"), labels_path);
}

std::vector<Doc> load_gsm8k(const std::string& path) {
    return datasets::parse_gsm8k(datasets::read_text(path, "gsm8k"), path);
}

} // namespace slm
