// formats/json_util.cpp - see json_util.h.
#include "formats/json_util.h"

#include "slm/error.h"
#include "slm/limits.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <unistd.h>

namespace slm::json_util {

JsonFile JsonFile::read(const std::string& path, const std::string& op) {
    std::ifstream in(path, std::ios::binary);
    if (!in) slm::fail("%s: %s: cannot open: %s", op.c_str(), path.c_str(), std::strerror(errno));
    // Side files of a model folder: bounded like any model metadata, before anything is read.
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    in.seekg(0, std::ios::beg);
    if (size > 0 && static_cast<uint64_t>(size) > slm::limits().max_metadata_bytes)
        slm::fail("%s: %s: %lld bytes is more than %s", op.c_str(), path.c_str(), static_cast<long long>(size),
                  slm::limit_hint("max_metadata_bytes", slm::limits().max_metadata_bytes).c_str());
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) slm::fail("%s: %s: read error", op.c_str(), path.c_str());
    return parse(ss.str(), path, op);
}

size_t nesting_depth(std::string_view text) {
    size_t depth = 0, max_depth = 0;
    bool in_str = false, esc = false;
    for (char c : text) {
        if (in_str) {
            if (esc) esc = false;
            else if (c == '\\') esc = true;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            max_depth = std::max(max_depth, ++depth);
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return max_depth;
}

JsonFile JsonFile::parse(std::string_view text, const std::string& name, const std::string& op) {
    JsonFile f;
    f.path = name;
    f.op = op;
    try {
        // Nesting depth is bounded by nlohmann's recursive parser only by the stack; refuse deep
        // input before parsing so a hostile file cannot overflow it.
        const size_t max_depth = nesting_depth(text);
        if (max_depth > 512) slm::fail("%s: %s: JSON nested %zu levels deep (limit 512)", op.c_str(), name.c_str(), max_depth);
        f.root = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers too large
        slm::fail("%s: %s: invalid JSON: %s", op.c_str(), name.c_str(), e.what());
    }
    return f;
}

void JsonFile::fail(const std::string& field, const std::string& what) const {
    throw Error(op + ": " + path + ": field '" + field + "': " + what);
}

const char* type_name(const json& v) {
    switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "object";
    case json::value_t::array: return "array";
    case json::value_t::string: return "string";
    case json::value_t::boolean: return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    case json::value_t::number_float: return "number";
    case json::value_t::binary: return "binary";
    case json::value_t::discarded: break;
    }
    return "invalid";
}

const json* find(const json& obj, std::string_view key) {
    if (!obj.is_object()) return nullptr;
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

std::string join_field(const std::string& prefix, std::string_view key) {
    if (prefix.empty()) return std::string(key);
    return prefix + "." + std::string(key);
}

int64_t as_int(const JsonFile& f, const json& v, const std::string& field) {
    if (v.is_number_unsigned()) {
        const uint64_t u = v.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            f.fail(field, "integer " + std::to_string(u) + " is too large");
        return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
        // Python's json writes 2.0 for some integers; accept integral values only.
        const double d = v.get<double>();
        if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
        f.fail(field, "expected an integer, got " + v.dump());
    }
    f.fail(field, std::string("expected an integer, got ") + type_name(v));
}

double as_number(const JsonFile& f, const json& v, const std::string& field) {
    if (!v.is_number()) f.fail(field, std::string("expected a number, got ") + type_name(v));
    return v.get<double>();
}

const std::string& as_string(const JsonFile& f, const json& v, const std::string& field) {
    if (!v.is_string()) f.fail(field, std::string("expected a string, got ") + type_name(v));
    return v.get_ref<const std::string&>();
}

int64_t json_int(const JsonFile& f, const json& obj, const std::string& prefix, std::string_view key) {
    const std::string field = join_field(prefix, key);
    const json* v = find(obj, key);
    if (!v) f.fail(field, "missing");
    return as_int(f, *v, field);
}

std::optional<int64_t> json_opt_int(const JsonFile& f, const json& obj, const std::string& prefix,
                                    std::string_view key) {
    const json* v = find(obj, key);
    if (!v) return std::nullopt;
    return as_int(f, *v, join_field(prefix, key));
}

double json_number(const JsonFile& f, const json& obj, const std::string& prefix, std::string_view key) {
    const std::string field = join_field(prefix, key);
    const json* v = find(obj, key);
    if (!v) f.fail(field, "missing");
    return as_number(f, *v, field);
}

std::optional<double> json_opt_number(const JsonFile& f, const json& obj, const std::string& prefix,
                                      std::string_view key) {
    const json* v = find(obj, key);
    if (!v) return std::nullopt;
    return as_number(f, *v, join_field(prefix, key));
}

bool json_bool(const JsonFile& f, const json& obj, const std::string& prefix, std::string_view key) {
    const std::string field = join_field(prefix, key);
    const json* v = find(obj, key);
    if (!v) f.fail(field, "missing");
    if (!v->is_boolean()) f.fail(field, std::string("expected a boolean, got ") + type_name(*v));
    return v->get<bool>();
}

std::optional<bool> json_opt_bool(const JsonFile& f, const json& obj, const std::string& prefix,
                                  std::string_view key) {
    const json* v = find(obj, key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) f.fail(join_field(prefix, key), std::string("expected a boolean, got ") + type_name(*v));
    return v->get<bool>();
}

std::string json_string(const JsonFile& f, const json& obj, const std::string& prefix, std::string_view key) {
    const std::string field = join_field(prefix, key);
    const json* v = find(obj, key);
    if (!v) f.fail(field, "missing");
    return as_string(f, *v, field);
}

std::optional<std::string> json_opt_string(const JsonFile& f, const json& obj, const std::string& prefix,
                                           std::string_view key) {
    const json* v = find(obj, key);
    if (!v) return std::nullopt;
    return as_string(f, *v, join_field(prefix, key));
}

void write_file_atomic(const std::string& path, std::string_view text) {
    const std::string tmp = path + ".tmp";
    FILE* fp = std::fopen(tmp.c_str(), "wb");
    if (!fp) slm::fail("write: %s: cannot create: %s", tmp.c_str(), std::strerror(errno));
    const bool ok = std::fwrite(text.data(), 1, text.size(), fp) == text.size() && std::fflush(fp) == 0 &&
                    ::fsync(fileno(fp)) == 0;
    const int e = errno;
    if (std::fclose(fp) != 0 || !ok) {
        std::remove(tmp.c_str());
        slm::fail("write: %s: write failed: %s", tmp.c_str(), std::strerror(ok ? errno : e));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e2 = errno;
        std::remove(tmp.c_str());
        slm::fail("write: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), std::strerror(e2));
    }
}

std::string dump(const json& v, const std::string& what) {
    try {
        return v.dump(2, ' ', false, json::error_handler_t::strict) + "\n";
    } catch (const json::type_error& e) {
        slm::fail("%s: cannot serialize: %s", what.c_str(), e.what());
    }
}

} // namespace slm::json_util
