// fuzz_datasets.cpp - libFuzzer target for the evaluation-set readers (formats/datasets_parse.h).
//
// The first input byte picks a reader, the rest is the file's text. Any input must either parse or
// throw slm::Error; anything else (a crash, a sanitizer report, another exception type, a hang, a
// huge allocation) is a bug. What parses must hold the promised shape (4 HellaSwag choices, gold
// in range, ...), and CSV rows must survive a write-and-reread round trip.
#include "formats/datasets_parse.h"
#include "slm/error.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace ds = slm::datasets;

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_datasets: %s\n", what);
    std::abort();
}

void check_gold(const slm::Doc& d, const char* key, int64_t n) {
    if (!d.contains(key) || !d[key].is_number_integer()) bug("gold missing or not an integer");
    const int64_t g = d[key].get<int64_t>();
    if (g < 0 || g >= n) bug("gold out of range");
}

// Every field quoted, quotes doubled: the most hostile form a writer may produce.
std::string write_csv(const std::vector<ds::CsvRow>& rows, char sep) {
    std::string out;
    for (const ds::CsvRow& r : rows) {
        for (size_t i = 0; i < r.fields.size(); ++i) {
            if (i) out += sep;
            out += '"';
            for (char c : r.fields[i]) {
                if (c == '"') out += '"';
                out += c;
            }
            out += '"';
        }
        out += "\r\n";
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t which = data[0] % 10;
    // An exact-size copy, so reading one byte past the input is an ASan report.
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        switch (which) {
        case 0:
            for (const slm::Doc& d : ds::parse_hellaswag(text, "fuzz")) {
                if (!d["choices"].is_array() || d["choices"].size() != 4) bug("hellaswag: not 4 choices");
                if (!d["query"].is_string()) bug("hellaswag: query not a string");
                check_gold(d, "gold", 4);
            }
            break;
        case 1:
            for (const slm::Doc& d : ds::parse_arc(text, "fuzz")) {
                const size_t n = d["choices"]["text"].size();
                if (n < 2 || n != d["choices"]["label"].size()) bug("arc: choices and labels differ");
                check_gold(d, "gold", static_cast<int64_t>(n));
                if (d["choices"]["label"][d["gold"].get<size_t>()] != d["answerKey"]) bug("arc: gold is not answerKey");
            }
            break;
        case 2:
            for (const slm::Doc& d : ds::parse_mmlu(text, "fuzz", "s")) {
                if (d["choices"].size() != 4) bug("mmlu: not 4 choices");
                check_gold(d, "answer", 4);
            }
            break;
        case 3:
            for (const slm::Doc& d : ds::parse_winogrande_csv(text, "fuzz")) check_gold(d, "gold", 2);
            break;
        case 4: {
            // The jsonl, with a labels file when the input holds a \x01: the text after the last one.
            const size_t cut = text.rfind('\x01');
            if (cut == std::string::npos) {
                for (const slm::Doc& d : ds::parse_winogrande_jsonl(text, "fuzz")) check_gold(d, "gold", 2);
            } else {
                for (const slm::Doc& d : ds::parse_winogrande_jsonl(std::string_view(text).substr(0, cut), "fuzz",
                                                                    text.substr(cut + 1), "fuzz-labels"))
                    check_gold(d, "gold", 2);
            }
            break;
        }
        case 5:
            ds::parse_gsm8k(text, "fuzz");
            break;
        case 6:
            for (const slm::Doc& d : ds::parse_jsonl(text, "fuzz"))
                if (!d.is_object()) bug("jsonl: not an object");
            ds::parse_json_array(text, "fuzz");
            break;
        case 7: {
            const char sep = text.empty() ? ',' : (text[0] == '\t' ? '\t' : text[0] == ';' ? ';' : ',');
            const std::vector<ds::CsvRow> rows = ds::parse_csv_rows(text, "fuzz", sep);
            const std::vector<ds::CsvRow> again = ds::parse_csv_rows(write_csv(rows, sep), "fuzz-rewritten", sep);
            // A row of one empty field is an empty line and disappears on reread; compare the others.
            std::vector<const ds::CsvRow*> kept;
            for (const ds::CsvRow& r : rows)
                if (!(r.fields.size() == 1 && r.fields[0].empty())) kept.push_back(&r);
            size_t k = 0;
            for (const ds::CsvRow& r : again) {
                if (r.fields.size() == 1 && r.fields[0].empty()) continue;
                if (k >= kept.size() || kept[k]->fields != r.fields) bug("csv: round trip changed a row");
                ++k;
            }
            if (k != kept.size()) bug("csv: round trip lost rows");
            ds::parse_csv(text, "fuzz", true, sep);
            break;
        }
        case 8: {
            // Small limit: a tiny bz2 "bomb" must be refused, not allowed to take memory and time.
            const std::string out = ds::decompress_bz2(text, "fuzz", size_t(1) << 20);
            if (out.size() > (size_t(1) << 20)) bug("bz2: output past the limit");
            ds::parse_hellaswag(out, "fuzz-bz2");
            break;
        }
        case 9: {
            const std::string pre = ds::hellaswag_preprocess(text);
            if (pre.size() > text.size()) bug("preprocess grew the text");
            ds::check_utf8(text, "fuzz", "fuzz");
            if (ds::py_capitalize(text).empty() != text.empty()) bug("capitalize emptied the text");
            break;
        }
        }
    } catch (const slm::Error&) {
    }
    return 0;
}
