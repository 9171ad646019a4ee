// data/documents.cpp - reading and writing documents in the layouts of slm/data.h.
#include "slm/data.h"
#include "slm/error.h"

#include "formats/json_util.h"
#include "tokenizers/unicode.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace slm {

namespace {

bool is_blank(std::string_view line) {
    for (char c : line)
        if (c != ' ' && c != '\t' && c != '\r') return false;
    return true;
}

std::string_view rstrip(std::string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
    return s;
}

// Splits into lines (without '\n', a trailing '\r' removed), remembering nothing else.
template <class F>
void for_each_line(std::string_view text, F&& f) {
    size_t pos = 0, line_no = 1;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string_view::npos) nl = text.size();
        std::string_view line = text.substr(pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        f(line, line_no);
        pos = nl + 1;
        ++line_no;
    }
}

// Adds a document unless it is empty; invalid UTF-8 is fatal or skipped.
void add_doc(DocumentSet& set, std::string text, size_t line, const DocFormatOptions& o) {
    // Trim leading and trailing blank lines (Separator layout keeps inner ones).
    size_t b = 0;
    while (b < text.size()) {
        size_t nl = text.find('\n', b);
        if (nl == std::string::npos || !is_blank(std::string_view(text).substr(b, nl - b))) break;
        b = nl + 1;
        ++line;
    }
    text.erase(0, b);
    while (!text.empty()) {
        size_t nl = text.rfind('\n');
        std::string_view last = std::string_view(text).substr(nl == std::string::npos ? 0 : nl + 1);
        if (!is_blank(last)) break;
        text.resize(nl == std::string::npos ? 0 : nl);
    }
    if (text.empty() || is_blank(text)) return;
    const size_t bad = tok::utf8_invalid_at(text);
    if (bad != std::string_view::npos) {
        if (!o.skip_invalid_utf8) {
            size_t l = line;
            for (size_t i = 0; i < bad; ++i) l += text[i] == '\n';
            slm::fail("data: %s: line %zu: invalid UTF-8 (byte 0x%02x); use --skip-invalid-utf8 to skip such documents",
                      set.path.c_str(), l, static_cast<unsigned>(static_cast<uint8_t>(text[bad])));
        }
        ++set.n_invalid_utf8;
        return;
    }
    set.n_bytes += text.size();
    set.docs.push_back({std::move(text), line});
}

} // namespace

DocFormat parse_doc_format(const std::string& name) {
    if (name == "blank") return DocFormat::Blank;
    if (name == "lines") return DocFormat::Lines;
    if (name == "sep") return DocFormat::Separator;
    if (name == "jsonl") return DocFormat::Jsonl;
    slm::fail("data: unknown document format '%s' (blank, lines, sep, jsonl)", name.c_str());
}

const char* doc_format_name(DocFormat f) {
    switch (f) {
    case DocFormat::Blank: return "blank";
    case DocFormat::Lines: return "lines";
    case DocFormat::Separator: return "sep";
    case DocFormat::Jsonl: return "jsonl";
    }
    return "?";
}

DocumentSet parse_documents(std::string_view text, const std::string& name, const DocFormatOptions& o) {
    DocumentSet set;
    set.path = name;
    if (text.size() >= 3 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // byte-order mark
    std::string cur;
    size_t cur_line = 0;
    bool open = false;
    auto flush = [&]() {
        if (open) add_doc(set, std::move(cur), cur_line, o);
        cur.clear();
        open = false;
    };
    auto append = [&](std::string_view line, size_t line_no) {
        if (!open) {
            open = true;
            cur_line = line_no;
        } else {
            cur += '\n';
        }
        cur.append(line);
    };
    switch (o.format) {
    case DocFormat::Blank:
        for_each_line(text, [&](std::string_view line, size_t n) {
            if (is_blank(line)) flush();
            else append(line, n);
        });
        flush();
        break;
    case DocFormat::Lines:
        for_each_line(text, [&](std::string_view line, size_t n) {
            if (!is_blank(line)) add_doc(set, std::string(line), n, o);
        });
        break;
    case DocFormat::Separator: {
        if (rstrip(o.separator).empty()) slm::fail("data: %s: the document separator is empty", name.c_str());
        const std::string_view sep = rstrip(o.separator);
        for_each_line(text, [&](std::string_view line, size_t n) {
            if (rstrip(line) == sep) flush();
            else append(line, n);
        });
        flush();
        break;
    }
    case DocFormat::Jsonl:
        for_each_line(text, [&](std::string_view line, size_t n) {
            if (is_blank(line)) return;
            nlohmann::json j;
            try {
                j = nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception& e) {
                // nlohmann rejects invalid UTF-8 in strings too; say which it was.
                if (tok::utf8_invalid_at(line) != std::string_view::npos) {
                    if (o.skip_invalid_utf8) {
                        ++set.n_invalid_utf8;
                        return;
                    }
                    slm::fail("data: %s: line %zu: invalid UTF-8; use --skip-invalid-utf8 to skip such documents",
                              name.c_str(), n);
                }
                slm::fail("data: %s: line %zu: not valid JSON: %s", name.c_str(), n, e.what());
            }
            if (!j.is_object()) slm::fail("data: %s: line %zu: not a JSON object", name.c_str(), n);
            auto it = j.find(o.jsonl_field);
            if (it == j.end())
                slm::fail("data: %s: line %zu: field '%s' missing", name.c_str(), n, o.jsonl_field.c_str());
            if (!it->is_string())
                slm::fail("data: %s: line %zu: field '%s' is %s, not a string", name.c_str(), n, o.jsonl_field.c_str(),
                          it->type_name());
            add_doc(set, it->get<std::string>(), n, o);
        });
        break;
    }
    return set;
}

DocumentSet read_documents(const std::string& path, const DocFormatOptions& o) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) slm::fail("data: %s: is a directory, not a text file", path.c_str());
    std::ifstream f(path, std::ios::binary);
    if (!f) slm::fail("data: %s: cannot open: %s", path.c_str(), std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    if (f.bad()) slm::fail("data: %s: read error", path.c_str());
    return parse_documents(ss.str(), path, o);
}

std::string format_documents(const std::vector<std::string_view>& texts, const DocFormatOptions& o) {
    std::string out;
    size_t total = 0;
    for (auto t : texts) total += t.size() + 2;
    out.reserve(total);
    for (size_t i = 0; i < texts.size(); ++i) {
        switch (o.format) {
        case DocFormat::Blank:
            if (i) out += '\n';
            out.append(texts[i]);
            out += '\n';
            break;
        case DocFormat::Lines:
            out.append(texts[i]);
            out += '\n';
            break;
        case DocFormat::Separator:
            out.append(texts[i]);
            out += '\n';
            out += o.separator;
            out += '\n';
            break;
        case DocFormat::Jsonl: {
            nlohmann::json j;
            j[o.jsonl_field] = std::string(texts[i]);
            out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            out += '\n';
            break;
        }
        }
    }
    return out;
}

void write_text_atomic(const std::string& path, std::string_view text) { json_util::write_file_atomic(path, text); }

void write_documents(const std::string& path, const std::vector<std::string_view>& texts, const DocFormatOptions& o) {
    write_text_atomic(path, format_documents(texts, o));
}

std::vector<std::string_view> kept_texts(const std::vector<Document>& docs, const std::vector<bool>& keep) {
    std::vector<std::string_view> out;
    for (size_t i = 0; i < docs.size() && i < keep.size(); ++i)
        if (keep[i]) out.push_back(docs[i].text);
    return out;
}

} // namespace slm
