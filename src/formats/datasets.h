// datasets.h - evaluation-set files read into documents (one JSON object per item), with the field
// names lm-evaluation-harness's task YAMLs use for that set, so a task's templates can name them.
//
//   std::vector<slm::Doc> docs = slm::load_arc("data/eval/arc/arc_easy_dev.jsonl");
//   docs[0]["question"], docs[0]["choices"]["text"][2], docs[0]["gold"]
//
// Every reader validates what it reads: a malformed line, a missing or mistyped field, a gold index
// out of range, a truncated .bz2 stream or invalid UTF-8 is an slm::Error naming the file, the line
// (or item) and the field. Sizes are bounded by the file, never by a number read from it.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace slm {

using Doc = nlohmann::json;  // one item of an evaluation set (a JSON object)

// ---- generic layouts (custom task files name one of these) ------------------------------------
// The whole file, a .bz2 decompressed (libbz2; every concatenated stream), up to 2 GiB; raw bytes.
std::string read_text_maybe_bz2(const std::string& path);
std::vector<Doc> read_jsonl(const std::string& path);      // one object per non-empty line
std::vector<Doc> read_json_array(const std::string& path); // a JSON array of objects
// RFC 4180 CSV (quoted fields, "" escapes, CRLF or LF, embedded newlines). With a header, each row
// becomes an object keyed by the header's names; without, by "0", "1", ... Values stay strings.
// Empty lines are skipped and a leading UTF-8 byte-order mark dropped; a quote inside an unquoted
// field is data (as Python's csv module reads it), text after a closing quote an error; every row
// must have as many fields as the first.
std::vector<Doc> read_csv(const std::string& path, bool header = true, char sep = ',');

// ---- the standard sets, each in the layouts it ships in ---------------------------------------
// HellaSwag: llama.cpp's 6-lines-per-task text (.txt or .txt.bz2: context, gold index 0-3, 4
// endings), taken as is, as llama.cpp's hellaswag_score scores context + " " + ending. Its contexts
// are "activity_label: ctx_a ctx_b" NOT in lm-evaluation-harness's form (ctx_b not capitalized,
// WikiHow's "[title]"/"[step]" brackets left in), so scores on it compare with llama.cpp, not with
// lm-eval. Or the official jsonl (activity_label, ctx_a, ctx_b, endings, label; chosen when the
// first character is '{'), preprocessed as lm-eval's hellaswag utils.py does (query = preprocess(
// activity_label + ": " + ctx_a + " " + ctx_b.capitalize()), choices = preprocess(endings)), its
// original fields kept. Fields: query, choices[4], gold (int), label (the raw gold, as the YAML's
// doc_to_target names it).
std::vector<Doc> load_hellaswag(const std::string& path);
// ARC (Easy or Challenge) jsonl: id, question.stem, question.choices[{text,label}], answerKey.
// Fields: id, question, choices{text[], label[]}, answerKey, gold (index of answerKey in labels).
// The Hugging Face layout (question a string, choices {text[], label[]}) is read too.
std::vector<Doc> load_arc(const std::string& path);
// MMLU csv: a file or a folder of <subject>_<split>.csv (header question,choice0..choice3,answer with
// answer 0-3 or A-D; or the original header-less question,A,B,C,D,letter). Fields: subject
// ("abstract_algebra"), question, choices[4], answer (0-3). A folder's subjects come sorted by name.
std::vector<Doc> load_mmlu(const std::string& path);
// WinoGrande: llama.cpp's csv (index, sentence, option1, option2, answer 1|2) or the official jsonl
// (qID, sentence, option1, option2, answer), whose gold may instead come from a sibling
// "<name>-labels.lst" (one 1|2 per line; when both exist they must agree). Every sentence must hold
// the "_" blank. The csv may start with a header row (first field "index"). Fields: sentence,
// option1, option2, answer ("1" or "2"), gold (0 or 1), plus index (csv) or the jsonl's own fields.
std::vector<Doc> load_winogrande(const std::string& path);
// GSM8K jsonl: question, answer (the worked solution ending "#### <number>", required).
std::vector<Doc> load_gsm8k(const std::string& path);

} // namespace slm
