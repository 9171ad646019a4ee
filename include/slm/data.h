// slm/data.h - data tools for pre-training corpora: quality filtering, deduplication,
// decontamination against evaluation sets, weighted mixing, and template-driven synthetic data
// (`slm data filter|dedup|decontaminate|mix|synth`).
//
//   slm::DocFormatOptions fmt;                                  // blank-line separated (default)
//   slm::DocumentSet in = slm::read_documents("corpus.txt", fmt);
//   slm::FilterOptions f;
//   slm::set_filter_rule(f.rules, "min_words=20");              // thresholds by name
//   slm::FilterResult r = slm::filter_documents(in.docs, f);
//   slm::write_documents("clean.txt", slm::kept_texts(in.docs, r.kept()), fmt);
//
//   slm::DedupResult d = slm::dedup_documents(in.docs, {});    // exact + MinHash-LSH
//   slm::DecontaminateOptions dc;
//   dc.eval_sets = {slm::parse_eval_set_spec("hellaswag:data/eval/hellaswag_val.txt.bz2")};
//   slm::DecontaminateResult c = slm::decontaminate_documents(in.docs, dc);
//
// Documents. A text file holds documents in one of these layouts (DocFormat):
//   Blank (default)  documents separated by one or more blank lines (a line of only spaces, tabs
//                    or '\r' is blank). TinyStories dumps separate paragraphs this way too, so a
//                    "document" there is a paragraph; stories themselves are only sometimes
//                    separated by a blank line (see bench/DATA.md).
//   Lines            every non-blank line is a document.
//   Separator        documents end at a line equal to `separator` ("<|endoftext|>"), trailing
//                    whitespace and '\r' ignored; blank lines stay inside documents.
//   Jsonl            one JSON object per non-empty line, the text in field `jsonl_field` ("text").
// CRLF line ends are read as LF. A document's text is its lines joined by '\n', without the
// separator and without leading/trailing blank lines. Writing uses the same layout (Blank: one
// blank line between documents), so filter/dedup/decontaminate round-trip their input layout.
// Invalid UTF-8 is an error naming the file and line unless skip_invalid_utf8 is set, in which
// case the documents holding it are skipped and counted (DocumentSet::n_invalid_utf8).
// Every file written goes to a temporary file first and is then renamed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

// ---- documents ------------------------------------------------------------------------------

enum class DocFormat { Blank, Lines, Separator, Jsonl };

struct DocFormatOptions {
    DocFormat format = DocFormat::Blank;
    std::string separator = "<|endoftext|>";  // Separator: the literal separator line
    std::string jsonl_field = "text";         // Jsonl: the field holding the text
    bool skip_invalid_utf8 = false;           // false: invalid UTF-8 is an slm::Error
};

// "blank", "lines", "jsonl", or "sep" (Separator); throws slm::Error naming the value otherwise.
DocFormat parse_doc_format(const std::string& name);
const char* doc_format_name(DocFormat f);

struct Document {
    std::string text;
    size_t line = 0;  // 1-based line of the file where the document starts (for reports)
};

struct DocumentSet {
    std::string path;
    std::vector<Document> docs;
    size_t n_bytes = 0;          // sum of the documents' text bytes
    size_t n_invalid_utf8 = 0;   // documents skipped for invalid UTF-8 (skip_invalid_utf8)
};

// Throws slm::Error naming the file (and line, and field for JSONL) when the file cannot be read,
// a JSONL line is not an object or lacks a string `jsonl_field`, or (unless skipped) on invalid
// UTF-8. `name` stands for the file in messages.
DocumentSet read_documents(const std::string& path, const DocFormatOptions& opts);
DocumentSet parse_documents(std::string_view text, const std::string& name, const DocFormatOptions& opts);
// The documents in the layout of `opts`, and that text written atomically (temp file + rename).
std::string format_documents(const std::vector<std::string_view>& texts, const DocFormatOptions& opts);
void write_documents(const std::string& path, const std::vector<std::string_view>& texts, const DocFormatOptions& opts);
// Writes any text atomically (temp file + rename); errors name the file.
void write_text_atomic(const std::string& path, std::string_view text);
// The texts of docs[i] for every i with keep[i].
std::vector<std::string_view> kept_texts(const std::vector<Document>& docs, const std::vector<bool>& keep);

// ---- filter ---------------------------------------------------------------------------------
// Heuristic quality rules after Gopher (Rae et al. 2021, appendix A: quality filter and repetition
// removal) and C4 (Raffel et al. 2020, section 2.2), each with a name and one threshold. Words are
// whitespace-separated; lengths count code points. A rule drops a document when its value is below
// the threshold (kind Min) or above it (kind Max). The table is default_filter_rules().
struct FilterRule {
    std::string name;       // "min_words"
    double threshold = 0;   // 50
    bool is_min = true;     // true: drop when value < threshold; false: drop when value > threshold
    bool enabled = true;
    std::string what;       // one line for --list-rules
};
std::vector<FilterRule> default_filter_rules();
// "NAME=VALUE" sets a threshold (VALUE a number) or "NAME=off"/"NAME=on"; throws slm::Error naming
// the rule or value when the name is unknown or the value not a finite number.
void set_filter_rule(std::vector<FilterRule>& rules, const std::string& assignment);
// Every rule's value on a text, in default_filter_rules() order.
std::vector<double> filter_rule_values(std::string_view text);

struct FilterOptions {
    std::vector<FilterRule> rules = default_filter_rules();  // change thresholds in place; keep the order
    // Perplexity filter ("a textbook model finds it clear"): each document that passes the rules is
    // scored by this GGUF model (its own tokenizer, BOS added; documents longer than the context are
    // scored in windows with half a context of history). Off when empty.
    std::string ppl_model;
    double max_ppl = 0;              // > 0: drop documents with perplexity above this
    double keep_ppl_fraction = 0;    // in (0, 1]: keep only this fraction with the lowest perplexity
    uint32_t ppl_ctx = 512;          // context of the scoring session (at most the model's)
    int n_threads = 0;               // rules and model; 0 = one per physical core
};

struct FilterDecision {
    bool kept = true;
    std::string reason;                // first failed rule in table order ("ppl" for the model), "" if kept
    std::vector<std::string> failed;   // every failed rule
    std::vector<double> values;        // filter_rule_values of the text
    double ppl = std::numeric_limits<double>::quiet_NaN();  // NaN when not scored
};

struct FilterResult {
    std::vector<FilterDecision> decisions;  // one per input document
    std::vector<size_t> n_failed;           // per rule (table order): documents failing it
    std::vector<size_t> n_reason;           // per rule: documents dropped with it as first reason
    size_t n_ppl_dropped = 0;
    double ppl_threshold = 0;               // the cut used (max_ppl, or the fraction's quantile)
    size_t n_kept = 0, n_dropped = 0;
    size_t bytes_kept = 0, bytes_dropped = 0;
    double seconds = 0;
    std::vector<bool> kept() const;
};

// Throws slm::Error if a threshold makes no sense (keep_ppl_fraction outside (0,1], max_ppl < 0)
// or the model cannot be loaded.
FilterResult filter_documents(const std::vector<Document>& docs, const FilterOptions& opts);
// One JSON object per line per document: index, line, bytes, kept, reason, failed, values, ppl.
std::string filter_report_jsonl(const std::vector<Document>& docs, const FilterOptions& opts, const FilterResult& r);

// Perplexity of a text under a model: exp(mean NLL) of its tokens after BOS. Exposed for tests.
class Session;
double text_perplexity(Session& session, std::string_view text);

// ---- dedup ----------------------------------------------------------------------------------
// Exact: documents equal after normalization (normalized_words joined by spaces). Near: MinHash
// over word n-gram shingles (normalized words), n_perm permutations (64-bit hashes seeded from
// `seed`), LSH with n_bands bands of n_perm/n_bands rows; a candidate pair sharing a band is a
// duplicate when the exact Jaccard similarity of their shingle sets is >= threshold. The first
// occurrence is kept; later documents are compared with kept documents only.
struct DedupOptions {
    bool exact = true;
    bool near = true;
    int ngram = 5;           // shingle length in words
    int n_perm = 128;        // MinHash permutations
    int n_bands = 16;        // LSH bands; n_perm must be a multiple (rows = n_perm / n_bands)
    double threshold = 0.8;  // Jaccard similarity
    uint64_t seed = 1;
    int n_threads = 0;       // shingling and signatures; 0 = one per physical core
};

struct DedupDecision {
    bool kept = true;
    int64_t dup_of = -1;     // index of the kept document it duplicates
    bool exact = false;      // exact (normalized) duplicate, else near
    double jaccard = 0;      // near: similarity with dup_of
};

struct DedupCluster {
    size_t kept = 0;                 // the first occurrence
    std::vector<size_t> dropped;     // its duplicates, in input order
};

struct DedupResult {
    std::vector<DedupDecision> decisions;
    std::vector<DedupCluster> clusters;   // in order of their kept document
    size_t n_exact = 0, n_near = 0, n_kept = 0;
    size_t bytes_kept = 0, bytes_dropped = 0;
    size_t n_candidates = 0;              // LSH candidate pairs checked
    double seconds = 0;
    std::vector<bool> kept() const;
};

// Throws slm::Error for ngram < 1, n_perm < 1, n_bands not dividing n_perm, threshold outside [0,1].
DedupResult dedup_documents(const std::vector<Document>& docs, const DedupOptions& opts);
// The MinHash signature (n_perm values) and shingle hashes (sorted, unique) of a text.
std::vector<uint64_t> minhash_signature(std::string_view text, const DedupOptions& opts);
std::vector<uint64_t> shingle_hashes(std::string_view text, int ngram);
double jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b);  // sorted unique sets

// ---- decontaminate --------------------------------------------------------------------------
// Words for overlap tests (dedup, decontaminate, the repetition rules): split on whitespace, every
// character that is punctuation, a symbol or a control (Unicode categories P, S, C) removed from
// each word, ASCII, Latin-1 and basic Cyrillic capitals lowercased, empty words dropped.
// "Lily's ball." -> {"lilys", "ball"}.
std::vector<std::string> normalized_words(std::string_view text);

// An evaluation set: kind "text" (a plain file, blank-line blocks, .bz2 read), "hellaswag",
// "arc", "mmlu" (file or folder), "winogrande", "gsm8k" (read by the readers of slm eval).
struct EvalSetSpec {
    std::string kind;
    std::string path;
    std::string name;  // shown in reports: the file's name
};
// "KIND:PATH", or a bare PATH whose kind is guessed from its name (hellaswag, arc, mmlu,
// winogrande, gsm8k in the path; else text). Throws slm::Error for an unknown KIND.
EvalSetSpec parse_eval_set_spec(const std::string& spec);
// The texts of an evaluation set whose n-grams count: text blocks; HellaSwag context + " " +
// each ending; ARC and MMLU question + " " + each choice; WinoGrande the sentence with each option
// in the blank; GSM8K question and answer.
std::vector<std::string> eval_set_texts(const EvalSetSpec& spec);

struct DecontaminateOptions {
    int ngram = 13;                      // GPT-3's 13-grams
    // Drop a document only when at least this many of its n-gram positions are found in the eval
    // sets (1 = any, GPT-3's rule; more tolerates formulaic openings such as "once upon a time,
    // there was a little girl named lily" shared by many stories).
    size_t min_shared = 1;
    int n_threads = 0;                   // 0 = one per physical core
    std::vector<EvalSetSpec> eval_sets;
};

struct DecontaminateDecision {
    bool kept = true;
    std::vector<size_t> sets;   // indices into eval_sets of the sets it shares an n-gram with
    std::string ngram;          // the first shared n-gram (normalized words)
    size_t n_shared = 0;        // n-gram positions of the document found in some eval set
};

struct EvalSetSummary {
    std::string name, kind;
    size_t n_texts = 0;
    size_t n_ngrams = 0;        // distinct n-grams indexed
    size_t n_docs_matched = 0;  // training documents dropped that share an n-gram with it
};

struct DecontaminateResult {
    std::vector<DecontaminateDecision> decisions;
    std::vector<EvalSetSummary> sets;
    size_t n_kept = 0, n_dropped = 0;
    size_t bytes_kept = 0, bytes_dropped = 0;
    double seconds = 0, index_seconds = 0;
    std::vector<bool> kept() const;
};

// Throws slm::Error for ngram < 1, no eval sets, or an unreadable/malformed eval file.
DecontaminateResult decontaminate_documents(const std::vector<Document>& docs, const DecontaminateOptions& opts);

// ---- mix ------------------------------------------------------------------------------------
// Weighted sampling of several sources into one stream. Each output document comes from source i
// with probability proportional to weight_i (by docs) or weight_i / mean document bytes of source i
// (by bytes, so weights are shares of bytes). A source's documents are taken in a fresh shuffled
// order on each pass (in file order with shuffle = false); a source used up starts another epoch
// (upsampling repeats documents). Random numbers come from std::mt19937_64 with our own
// range reduction, so the same seed gives the same stream on every platform.
struct MixSource {
    std::string path;
    double weight = 1;
};
// "PATH:WEIGHT" (the last ':'); WEIGHT a finite number > 0. Throws slm::Error naming the argument.
MixSource parse_mix_source(const std::string& spec);

struct MixOptions {
    size_t n_docs = 0;       // stop after this many documents...
    size_t n_bytes = 0;      // ...or once this many text bytes are written (one of the two)
    bool by_bytes = false;   // weights are byte shares rather than document shares
    bool shuffle = true;
    uint64_t seed = 1;
};

struct MixSourceStats {
    size_t n_docs = 0, n_bytes = 0;  // taken into the mix
    double epochs = 0;               // n_docs / documents in the source
};

struct MixResult {
    std::vector<std::pair<uint32_t, uint32_t>> picks;  // (source, document) in output order
    std::vector<MixSourceStats> sources;
    size_t n_docs = 0, n_bytes = 0;
};

// Throws slm::Error if there are no sources, a source has no documents, weights are not positive,
// or neither (or both) of n_docs and n_bytes is set.
MixResult mix_documents(const std::vector<DocumentSet>& sources, const std::vector<double>& weights,
                        const MixOptions& opts);

// ---- synth ----------------------------------------------------------------------------------
// Template-driven synthetic examples with worked answers (the Phi idea of constrained, structured
// synthetic data). Families: "arithmetic" (word problems: addition, subtraction, multiplication,
// division, two-step, change from a purchase) and "units" (conversions and comparisons). The text
// is "Question: ...\nAnswer: <steps, one equation \"a op b = c\" per line>\n#### <answer>".
struct DataSynthOptions {
    std::string family = "arithmetic";  // "arithmetic", "units", or "all" (alternating)
    size_t count = 100;
    uint64_t seed = 1;
};

struct DataSynthExample {
    std::string family;     // "arithmetic"
    std::string kind;       // the template: "add", "sub", "mul", "div", "two_step", "change", ...
    std::string question;
    std::string solution;   // the worked steps
    int64_t answer = 0;
    std::string text;       // the whole example as written
};

std::vector<std::string> data_synth_families();
// Throws slm::Error for an unknown family.
std::vector<DataSynthExample> synth_data(const DataSynthOptions& opts);
// One JSON object per line: text, question, solution, answer, family, kind.
std::string synth_data_jsonl(const std::vector<DataSynthExample>& examples);

} // namespace slm
