// formats/json_util.h - reading JSON files (config.json, tokenizer.json, ...) with errors that name
// the file and the field: "hf: models/x/tokenizer.json: field 'model.vocab["a"]': expected an
// integer, got string".
//
//   JsonFile f = JsonFile::read("dir/config.json", "hf");      // throws slm::Error on bad JSON
//   int64_t n = json_int(f, f.root, "", "vocab_size");          // required, range-checked
//   std::optional<std::string> act = json_opt_string(f, f.root, "", "hidden_act");
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace slm::json_util {

using json = nlohmann::json;

struct JsonFile {
    std::string path;   // for messages
    std::string op;     // message prefix ("hf", "tokenizer", ...)
    json root;

    // Reads and parses a file; bad JSON (including invalid UTF-8 in strings) throws naming the
    // file and the byte offset. `op` is the operation prefix used in every message.
    static JsonFile read(const std::string& path, const std::string& op);
    // Parses text already in memory; `name` stands for the file in messages.
    static JsonFile parse(std::string_view text, const std::string& name, const std::string& op);

    // Throws slm::Error "<op>: <path>: field '<field>': <what>".
    [[noreturn]] void fail(const std::string& field, const std::string& what) const;
};

// The deepest nesting of arrays and objects in JSON text (brackets inside strings not counted),
// found without parsing: nlohmann's parser recurses per level, so deep input is refused first.
size_t nesting_depth(std::string_view text);

// The JSON type of a value for messages: "string", "integer", "number", "object", ...
const char* type_name(const json& v);

// obj[key] or nullptr when obj is not an object or has no such key (a JSON null counts as absent).
const json* find(const json& obj, std::string_view key);

// Typed accessors of obj[key]; `field_prefix` is the dotted path of obj for messages ("" at the root).
// Required forms throw if absent; opt forms return nullopt if absent or null, throw if mistyped.
int64_t json_int(const JsonFile& f, const json& obj, const std::string& field_prefix, std::string_view key);
std::optional<int64_t> json_opt_int(const JsonFile& f, const json& obj, const std::string& field_prefix,
                                    std::string_view key);
double json_number(const JsonFile& f, const json& obj, const std::string& field_prefix, std::string_view key);
std::optional<double> json_opt_number(const JsonFile& f, const json& obj, const std::string& field_prefix,
                                      std::string_view key);
bool json_bool(const JsonFile& f, const json& obj, const std::string& field_prefix, std::string_view key);
std::optional<bool> json_opt_bool(const JsonFile& f, const json& obj, const std::string& field_prefix,
                                  std::string_view key);
std::string json_string(const JsonFile& f, const json& obj, const std::string& field_prefix, std::string_view key);
std::optional<std::string> json_opt_string(const JsonFile& f, const json& obj, const std::string& field_prefix,
                                           std::string_view key);

// Value conversions with the field already spelled out.
int64_t as_int(const JsonFile& f, const json& v, const std::string& field);
double as_number(const JsonFile& f, const json& v, const std::string& field);
const std::string& as_string(const JsonFile& f, const json& v, const std::string& field);

// "a.b" + "c" -> "a.b.c"; "" + "c" -> "c".
std::string join_field(const std::string& prefix, std::string_view key);

// Writes `text` to path + ".tmp" and renames it over `path`, so `path` is whole or untouched.
void write_file_atomic(const std::string& path, std::string_view text);

// Serializes with 2-space indentation; throws slm::Error (naming `what`) on invalid UTF-8.
std::string dump(const json& v, const std::string& what);

} // namespace slm::json_util
