// formats/datasets_parse.h - the dataset readers of datasets.h working on text already in memory,
// so tests and the fuzzer reach them without files. `name` stands for the file in every message.
// The path-taking functions of datasets.h read the file (decompressing .bz2) and call these.
#pragma once

#include "formats/datasets.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slm::datasets {

// Largest text a reader accepts, compressed or not: a bigger file is refused, a .bz2 stream is
// decompressed until it reaches this and then refused (so a small "bomb" cannot exhaust memory).
constexpr size_t kMaxTextBytes = size_t(2) << 30;  // 2 GiB

// Decompresses one or more concatenated bzip2 streams. Truncated input, corrupt data, trailing
// bytes that are not another stream, and output beyond `max_out` bytes are slm::Errors.
std::string decompress_bz2(std::string_view data, const std::string& name, size_t max_out = kMaxTextBytes);

// Throws "<op>: <name>: line L: invalid UTF-8 at byte B" for the first ill-formed sequence
// (overlongs, surrogates and values past U+10FFFF are ill-formed).
void check_utf8(std::string_view text, const std::string& name, const char* op);

// Generic layouts; see datasets.h.
std::vector<Doc> parse_jsonl(std::string_view text, const std::string& name, const char* op = "datasets");
std::vector<Doc> parse_json_array(std::string_view text, const std::string& name, const char* op = "datasets");
// RFC 4180 rows as strings, with the line each row starts on (1-based). Empty lines are skipped.
struct CsvRow {
    size_t line = 0;
    std::vector<std::string> fields;
};
std::vector<CsvRow> parse_csv_rows(std::string_view text, const std::string& name, char sep = ',',
                                   const char* op = "csv");
std::vector<Doc> parse_csv(std::string_view text, const std::string& name, bool header = true, char sep = ',');

// HellaSwag: the 6-lines-per-task text, or the official jsonl (chosen by the first non-blank
// character: '{' means jsonl).
std::vector<Doc> parse_hellaswag(std::string_view text, const std::string& name);
// lm-evaluation-harness's hellaswag preprocess(): strip, " [title]" -> ". ", drop "[...]" spans
// (not across lines), then each "  " -> " " (one left-to-right pass, as Python's str.replace).
std::string hellaswag_preprocess(std::string_view text);
// Python's str.capitalize(): the first character upper-cased, every other one lower-cased. ASCII
// exactly; other letters by Unicode's simple (one-to-one) case mappings, so the rare one-to-many
// mappings (German sharp s upper-cased, dotted capital I lower-cased) and title-case digraphs
// differ from Python's.
std::string py_capitalize(std::string_view text);

std::vector<Doc> parse_arc(std::string_view text, const std::string& name);
// One MMLU csv; `subject` is what the file name gives ("abstract_algebra").
std::vector<Doc> parse_mmlu(std::string_view text, const std::string& name, const std::string& subject);
// "abstract_algebra_dev.csv" -> "abstract_algebra" (strips the extension and a _dev/_val/_test).
std::string mmlu_subject_from_filename(const std::string& filename);
std::vector<Doc> parse_winogrande_csv(std::string_view text, const std::string& name);
// `labels`: the text of the sibling "-labels.lst" when there is one.
std::vector<Doc> parse_winogrande_jsonl(std::string_view text, const std::string& name,
                                        const std::optional<std::string>& labels = std::nullopt,
                                        const std::string& labels_name = "");
std::vector<Doc> parse_gsm8k(std::string_view text, const std::string& name);

} // namespace slm::datasets
