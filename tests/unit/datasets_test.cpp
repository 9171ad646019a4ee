// datasets_test.cpp - the evaluation-set readers: every file shipped in data/eval parses completely
// with the item counts of data/eval/PROVENANCE.md, spot checks of items against the raw files,
// lm-evaluation-harness's HellaSwag preprocessing on hand-written lines (expected values computed
// with Python's re and str methods, as its utils.py does), CSV edge cases, and one test per kind
// of malformed input, each checking the message names the file, the line and the field.
#include "formats/datasets.h"
#include "formats/datasets_parse.h"
#include "slm/error.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using slm::Doc;
namespace ds = slm::datasets;

namespace {

std::string eval_path(const std::string& rel) { return slm::test::source_dir() + "/data/eval/" + rel; }

std::string write_temp(const std::string& name, const std::string& text) {
    const std::string path = slm::test::temp_dir() + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

// Runs `f` and returns the slm::Error message; fails the test if it does not throw one.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const slm::Error& e) {
        return e.what();
    } catch (const std::exception& e) {
        ADD_FAILURE() << "not an slm::Error: " << e.what();
        return "";
    }
    ADD_FAILURE() << "no error thrown";
    return "";
}

#define EXPECT_HAS(haystack, needle) EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)

// ---- the shipped files --------------------------------------------------------------------------

TEST(Datasets, HellaSwagShippedTextParsesCompletely) {
    const std::vector<Doc> docs = slm::load_hellaswag(eval_path("hellaswag/hellaswag_val_full.txt.bz2"));
    ASSERT_EQ(docs.size(), 10042u);
    // First task, as the raw file's lines 1-6 read.
    EXPECT_EQ(docs[0]["query"], "Roof shingle removal: A man is sitting on a roof. he");
    EXPECT_EQ(docs[0]["gold"], 3);
    EXPECT_EQ(docs[0]["label"], "3");
    ASSERT_EQ(docs[0]["choices"].size(), 4u);
    EXPECT_EQ(docs[0]["choices"][0], "is using wrap to wrap a pair of skis.");
    EXPECT_EQ(docs[0]["choices"][3], "starts pulling up roofing on a roof.");
    // Last task (the file's last 6 lines).
    const Doc& last = docs.back();
    EXPECT_EQ(last["gold"], 2);
    EXPECT_EQ(last["choices"][0], "Try to figure out why they are dressing something that is frowned upon.. "
                                  "Understand why your child is acting different.");
    EXPECT_EQ(last["query"].get<std::string>().rfind("Family Life: How to tell if your teen is being abused.", 0), 0u);
    int per_gold[4] = {0, 0, 0, 0};
    for (const Doc& d : docs) {
        ASSERT_EQ(d["choices"].size(), 4u);
        ++per_gold[d["gold"].get<int>()];
    }
    for (int g : per_gold) EXPECT_GT(g, 2000);  // HellaSwag's gold endings are balanced
}

TEST(Datasets, ArcShippedFiles) {
    const std::vector<Doc> easy = slm::load_arc(eval_path("arc/arc_easy_dev.jsonl"));
    const std::vector<Doc> challenge = slm::load_arc(eval_path("arc/arc_challenge_dev.jsonl"));
    ASSERT_EQ(easy.size(), 570u);
    ASSERT_EQ(challenge.size(), 299u);
    // Line 1 of arc_easy_dev.jsonl.
    EXPECT_EQ(easy[0]["id"], "MCAS_2000_4_6");
    EXPECT_EQ(easy[0]["question"], "Which technology was developed most recently?");
    EXPECT_EQ(easy[0]["choices"]["text"], (std::vector<std::string>{"cellular telephone", "television", "refrigerator", "airplane"}));
    EXPECT_EQ(easy[0]["choices"]["label"], (std::vector<std::string>{"A", "B", "C", "D"}));
    EXPECT_EQ(easy[0]["answerKey"], "A");
    EXPECT_EQ(easy[0]["gold"], 0);
    // Line 64: numeric labels, answer "2" -> index 1.
    EXPECT_EQ(easy[63]["id"], "NYSEDREGENTS_2014_8_8");
    EXPECT_EQ(easy[63]["choices"]["label"][0], "1");
    EXPECT_EQ(easy[63]["gold"], 1);
    EXPECT_EQ(easy[63]["choices"]["text"][1], "pedigree chart");
    // Line 211 of the challenge set: five choices, answer E.
    EXPECT_EQ(challenge[210]["id"], "TIMSS_2003_8_pg29");
    EXPECT_EQ(challenge[210]["choices"]["text"].size(), 5u);
    EXPECT_EQ(challenge[210]["gold"], 4);
    EXPECT_EQ(challenge[210]["choices"]["text"][4], "heart");
    EXPECT_EQ(challenge.back()["id"], "Mercury_7082145");
    EXPECT_EQ(challenge.back()["gold"], 3);
}

TEST(Datasets, MmluShippedFolder) {
    const std::vector<Doc> docs = slm::load_mmlu(eval_path("mmlu/dev"));
    ASSERT_EQ(docs.size(), 285u);
    std::set<std::string> subjects;
    for (const Doc& d : docs) subjects.insert(d["subject"].get<std::string>());
    EXPECT_EQ(subjects.size(), 57u);
    EXPECT_EQ(docs[0]["subject"], "abstract_algebra");  // sorted by name
    EXPECT_EQ(docs[0]["question"], "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.");
    EXPECT_EQ(docs[0]["choices"], (std::vector<std::string>{"0", "1", "2", "3"}));
    EXPECT_EQ(docs[0]["answer"], 1);
    // Row 2 of abstract_algebra: quoted fields with commas and '|'.
    EXPECT_EQ(docs[1]["choices"][0], "True, True");
    EXPECT_EQ(docs[1]["question"].get<std::string>().rfind("Statement 1 | If aH is an element of a factor group", 0), 0u);
    // The last row of world_religions_dev.csv.
    EXPECT_EQ(docs.back()["subject"], "world_religions");
    EXPECT_EQ(docs.back()["question"], "How can the Upanishads be characterized?");
    EXPECT_EQ(docs.back()["choices"][1], "Philosophical texts");
    EXPECT_EQ(docs.back()["answer"], 1);
    // One file alone gives the same five questions.
    const std::vector<Doc> one = slm::load_mmlu(eval_path("mmlu/dev/world_religions_dev.csv"));
    ASSERT_EQ(one.size(), 5u);
    EXPECT_EQ(one.back(), docs.back());
}

TEST(Datasets, WinograndeBothLayoutsAgree) {
    const std::vector<Doc> csv = slm::load_winogrande(eval_path("winogrande/winogrande-debiased-eval.csv"));
    const std::vector<Doc> jsonl = slm::load_winogrande(eval_path("winogrande/winogrande_1.1_dev.jsonl"));
    ASSERT_EQ(csv.size(), 1267u);
    ASSERT_EQ(jsonl.size(), 1267u);
    for (size_t i = 0; i < csv.size(); ++i) {
        SCOPED_TRACE(i);
        EXPECT_EQ(csv[i]["index"], std::to_string(i));
        EXPECT_EQ(csv[i]["sentence"], jsonl[i]["sentence"]);
        EXPECT_EQ(csv[i]["option1"], jsonl[i]["option1"]);
        EXPECT_EQ(csv[i]["option2"], jsonl[i]["option2"]);
        EXPECT_EQ(csv[i]["answer"], jsonl[i]["answer"]);
        EXPECT_EQ(csv[i]["gold"], jsonl[i]["gold"]);
    }
    EXPECT_EQ(csv[0]["sentence"], "Sarah was a much better surgeon than Maria so _ always got the easier cases.");
    EXPECT_EQ(csv[0]["answer"], "2");
    EXPECT_EQ(csv[0]["gold"], 1);
    EXPECT_EQ(jsonl[0]["qID"], "3FCO4VKOZ4BJQ6IFC0VAIBK4KTWE7U-2");
    EXPECT_EQ(csv[2]["sentence"], "They were worried the wine would ruin the bed and the blanket, but the _ was't ruined.");
    EXPECT_EQ(csv[1266]["option1"], "black car");
    EXPECT_EQ(csv[1266]["answer"], "2");
}

TEST(Datasets, WinograndeJsonlAnswersFromLabelsFile) {
    // The test split's layout: no answer in the jsonl, the labels in the sibling .lst.
    const std::string dir = slm::test::temp_dir() + "/wg";
    fs::create_directories(dir);
    write_temp("wg/w.jsonl",
               "{\"qID\": \"a\", \"sentence\": \"The cup beat the jar because _ was big.\", \"option1\": \"cup\", \"option2\": \"jar\", \"answer\": \"\"}\n"
               "{\"qID\": \"b\", \"sentence\": \"The cup beat the jar because _ was small.\", \"option1\": \"cup\", \"option2\": \"jar\"}\n");
    write_temp("wg/w-labels.lst", "1\n2\n");
    const std::vector<Doc> docs = slm::load_winogrande(dir + "/w.jsonl");
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[0]["answer"], "1");
    EXPECT_EQ(docs[1]["answer"], "2");
    EXPECT_EQ(docs[1]["gold"], 1);
    // Without the labels file the answers are missing.
    fs::remove(dir + "/w-labels.lst");
    EXPECT_HAS(error_of([&] { slm::load_winogrande(dir + "/w.jsonl"); }), "line 1: field 'answer': missing");
    // A labels file with the wrong count, or disagreeing with an answer present.
    EXPECT_HAS(error_of([&] { ds::parse_winogrande_jsonl("{\"sentence\": \"_ a\", \"option1\": \"x\", \"option2\": \"y\"}", "w.jsonl", std::string("1\n2\n"), "w-labels.lst"); }),
               "w-labels.lst: 2 labels for the 1 items");
    EXPECT_HAS(error_of([&] { ds::parse_winogrande_jsonl("{\"sentence\": \"_ a\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"1\"}", "w.jsonl", std::string("2\n"), "w-labels.lst"); }),
               "field 'answer'");
    EXPECT_HAS(error_of([&] { ds::parse_winogrande_jsonl("{\"sentence\": \"_ a\", \"option1\": \"x\", \"option2\": \"y\"}", "w.jsonl", std::string("3\n"), "w-labels.lst"); }),
               "is not 1 or 2");
}

TEST(Datasets, Gsm8k) {
    const std::string path = write_temp("gsm.jsonl",
        "{\"question\": \"Tom has 3 apples and buys 4 more. How many apples does he have?\", "
        "\"answer\": \"He has 3 + 4 = <<3+4=7>>7 apples.\\n#### 7\"}\n"
        "\n"
        "{\"question\": \"A box holds 12 eggs. How many eggs are in 2 boxes?\", \"answer\": \"2 * 12 = 24\\n#### 24\"}\n");
    const std::vector<Doc> docs = slm::load_gsm8k(path);
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[0]["answer"], "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7");
    EXPECT_EQ(docs[1]["question"], "A box holds 12 eggs. How many eggs are in 2 boxes?");
    EXPECT_HAS(error_of([] { ds::parse_gsm8k("{\"question\": \"q\", \"answer\": \"7\"}\n", "g.jsonl"); }),
               "gsm8k: g.jsonl: line 1: field 'answer': no '#### <number>'");
    EXPECT_HAS(error_of([] { ds::parse_gsm8k("{\"question\": \"q\"}\n", "g.jsonl"); }), "field 'answer': missing");
    EXPECT_HAS(error_of([] { ds::parse_gsm8k("{\"question\": 5, \"answer\": \"#### 1\"}\n", "g.jsonl"); }),
               "field 'question': expected a string, got number");
}

// ---- HellaSwag preprocessing ---------------------------------------------------------------------

// Hand-written official-layout lines; the expected documents were computed with Python 3 running
// lm-evaluation-harness's process_docs logic (str.capitalize, re.sub, str.replace).
TEST(Datasets, HellaSwagJsonlPreprocessedAsLmEval) {
    const std::string text =
        R"({"ind": 4, "activity_label": "Making a cake", "ctx_a": "A woman puts flour in a bowl.", "ctx_b": "she", "endings": [" adds eggs and stirs.", "eats the bowl.", "sings  loudly.", "throws it [away] out."], "split": "val", "label": 0})" "\n"
        R"({"ind": 7, "activity_label": "Home and Garden", "ctx_a": "[header] How to plant tulips [title] Pick a sunny spot.", "ctx_b": "", "endings": ["[step] Dig a hole   about six inches deep. [substeps] Use a trowel.", "Plant them [upside] [down].", "Water them [never", "Sing to [them\n] daily."], "split": "val", "label": "2"})" "\n"
        R"({"activity_label": "Skiing", "ctx_a": "\u00a0 A man skis down a slope. ", "ctx_b": "\u00c9COLE kids WATCH him", "endings": ["and \u00c9mile waves.", "b", "c", "d"], "label": 3})" "\n"
        R"({"activity_label": "Dancing", "ctx_a": "Two people dance.", "ctx_b": "THE crowd", "endings": ["cheers.", "leaves.", "sleeps.", "sits  [title] down."], "label": "1"})" "\n";
    const std::vector<Doc> docs = ds::parse_hellaswag(text, "hs.jsonl");
    ASSERT_EQ(docs.size(), 4u);
    EXPECT_EQ(docs[0]["query"], "Making a cake: A woman puts flour in a bowl. She");
    EXPECT_EQ(docs[0]["choices"], (std::vector<std::string>{"adds eggs and stirs.", "eats the bowl.", "sings loudly.", "throws it out."}));
    EXPECT_EQ(docs[0]["gold"], 0);
    EXPECT_EQ(docs[0]["ind"], 4);  // original fields kept, as datasets.map keeps them
    EXPECT_EQ(docs[1]["query"], "Home and Garden: How to plant tulips. Pick a sunny spot.");
    EXPECT_EQ(docs[1]["choices"], (std::vector<std::string>{" Dig a hole  about six inches deep. Use a trowel.", "Plant them .",
                                                            "Water them [never", "Sing to [them\n] daily."}));
    EXPECT_EQ(docs[1]["gold"], 2);
    EXPECT_EQ(docs[1]["label"], "2");
    EXPECT_EQ(docs[2]["query"], "Skiing: \u00a0 A man skis down a slope. \u00c9cole kids watch him");
    EXPECT_EQ(docs[2]["choices"][0], "and \u00c9mile waves.");
    EXPECT_EQ(docs[2]["gold"], 3);
    EXPECT_EQ(docs[3]["query"], "Dancing: Two people dance. The crowd");
    EXPECT_EQ(docs[3]["choices"][3], "sits . down.");
    EXPECT_EQ(docs[3]["gold"], 1);
}

TEST(Datasets, PythonStringSemantics) {
    EXPECT_EQ(ds::py_capitalize("hello WORLD"), "Hello world");
    EXPECT_EQ(ds::py_capitalize("1ST place"), "1st place");
    EXPECT_EQ(ds::py_capitalize(""), "");
    EXPECT_EQ(ds::py_capitalize("\u00e9T\u00c9"), "\u00c9t\u00e9");          // éTÉ -> Été
    EXPECT_EQ(ds::py_capitalize("\u03c9\u039c\u0395\u0393\u0391"), "\u03a9\u03bc\u03b5\u03b3\u03b1");  // ωΜΕΓΑ -> Ωμεγα
    EXPECT_EQ(ds::hellaswag_preprocess("  a   b    c  "), "a  b  c");  // one "  " -> " " pass
    EXPECT_EQ(ds::hellaswag_preprocess("x [a] y [b"), "x y [b");             // "[a]" removed, then "  " -> " "
    EXPECT_EQ(ds::hellaswag_preprocess("x [[a]] y"), "x ] y");         // shortest match from the first '['
    EXPECT_EQ(ds::hellaswag_preprocess("\u3000 t \u00a0"), "t");       // Unicode whitespace stripped
}

// ---- generic layouts ----------------------------------------------------------------------------

TEST(Datasets, CsvEdgeCases) {
    // Quotes, "" escapes, separators and newlines (LF and CRLF) inside quotes, CRLF records,
    // an empty quoted field, a final record without a newline.
    const std::string text = "q,a,b\r\n"
                             "\"Hello, \"\"world\"\"\",1,\r\n"
                             "\"two\nlines\",\"\",x\r\n"
                             "\"crlf\r\ninside\",3,\"y\"\"\"\n"
                             "\n"
                             "plain 5\" screen,4,z";
    const std::vector<Doc> docs = ds::parse_csv(text, "t.csv");
    ASSERT_EQ(docs.size(), 4u);
    EXPECT_EQ(docs[0]["q"], "Hello, \"world\"");
    EXPECT_EQ(docs[0]["a"], "1");
    EXPECT_EQ(docs[0]["b"], "");
    EXPECT_EQ(docs[1]["q"], "two\nlines");
    EXPECT_EQ(docs[1]["a"], "");
    EXPECT_EQ(docs[2]["q"], "crlf\r\ninside");
    EXPECT_EQ(docs[2]["b"], "y\"");
    EXPECT_EQ(docs[3]["q"], "plain 5\" screen");  // a quote inside an unquoted field is data
    EXPECT_EQ(docs[3]["b"], "z");
    // Without a header, keys "0", "1", ...; another separator.
    const std::vector<Doc> tsv = ds::parse_csv("a\tb\n\"c\td\"\te\n", "t.tsv", false, '\t');
    ASSERT_EQ(tsv.size(), 2u);
    EXPECT_EQ(tsv[1]["0"], "c\td");
    EXPECT_EQ(tsv[1]["1"], "e");
    // Row lines: a record's line is where it starts.
    const std::vector<ds::CsvRow> rows = ds::parse_csv_rows(text, "t.csv");
    ASSERT_EQ(rows.size(), 5u);
    EXPECT_EQ(rows[2].line, 3u);
    EXPECT_EQ(rows[3].line, 5u);
    EXPECT_EQ(rows[4].line, 8u);
    // A file on disk, with a byte-order mark.
    const std::vector<Doc> disk = slm::read_csv(write_temp("bom.csv", "\xEF\xBB\xBFk,v\n1,2\n"));
    ASSERT_EQ(disk.size(), 1u);
    EXPECT_EQ(disk[0]["k"], "1");
}

TEST(Datasets, CsvErrors) {
    EXPECT_HAS(error_of([] { ds::parse_csv("a,b\n\"open,1\n2,3\n", "t.csv"); }),
               "csv: t.csv: line 4: unterminated quoted field (opened on line 2)");
    EXPECT_HAS(error_of([] { ds::parse_csv("a,b\n\"x\"y,1\n", "t.csv"); }), "line 2: unexpected 'y' after a closing quote");
    EXPECT_HAS(error_of([] { ds::parse_csv("a,b\n1,2,3\n", "t.csv"); }), "line 2: 3 fields, expected 2");
    EXPECT_HAS(error_of([] { ds::parse_csv("a,a\n1,2\n", "t.csv"); }), "header names column 'a' twice");
    EXPECT_HAS(error_of([] { ds::parse_csv("a,b\n", "t.csv"); }), "no rows");
    EXPECT_HAS(error_of([] { ds::parse_csv("a,b\n1,\xC3\x28\n", "t.csv"); }), "line 2: invalid UTF-8 (byte 0xC3 at column 3)");
}

TEST(Datasets, JsonlAndJsonArray) {
    const std::string path = write_temp("x.jsonl", "{\"a\": 1}\r\n\r\n  \n{\"a\": [2, \"\\u00e9\"]}");
    const std::vector<Doc> docs = slm::read_jsonl(path);
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[1]["a"][1], "\u00e9");
    const std::vector<Doc> arr = slm::read_json_array(write_temp("x.json", "[{\"a\": 1}, {\"b\": \"c\"}]"));
    ASSERT_EQ(arr.size(), 2u);
    EXPECT_EQ(arr[1]["b"], "c");
    EXPECT_HAS(error_of([] { ds::parse_jsonl("{\"a\": 1}\n{\"a\": }\n", "x.jsonl"); }), "datasets: x.jsonl: line 2: invalid JSON");
    EXPECT_HAS(error_of([] { ds::parse_jsonl("{\"a\": 1}\n[1]\n", "x.jsonl"); }), "line 2: expected a JSON object, got array");
    EXPECT_HAS(error_of([] { ds::parse_jsonl("\n\n", "x.jsonl"); }), "x.jsonl: no items");
    EXPECT_HAS(error_of([] { ds::parse_jsonl(std::string(100000, '['), "x.jsonl"); }), "nested more than 256 levels");
    EXPECT_HAS(error_of([] { ds::parse_json_array("{\"a\": 1}", "x.json"); }), "expected a JSON array of objects, got object");
    EXPECT_HAS(error_of([] { ds::parse_json_array("[{}, 3]", "x.json"); }), "item 1: expected a JSON object, got number");
    EXPECT_HAS(error_of([] { slm::read_jsonl(slm::test::temp_dir() + "/nope.jsonl"); }), "nope.jsonl: cannot open");
}

// ---- malformed standard sets ----------------------------------------------------------------------

TEST(Datasets, HellaSwagErrors) {
    const std::string task = "ctx\n1\na\nb\nc\nd\n";
    EXPECT_EQ(ds::parse_hellaswag(task + task, "h.txt").size(), 2u);
    EXPECT_HAS(error_of([&] { ds::parse_hellaswag(task + "ctx\n2\na\n", "h.txt"); }),
               "hellaswag: h.txt: 9 lines, not a multiple of 6: the task starting at line 7 is incomplete");
    EXPECT_HAS(error_of([&] { ds::parse_hellaswag(task + "ctx\n4\na\nb\nc\nd\n", "h.txt"); }), "line 8: gold ending index '4'");
    EXPECT_HAS(error_of([&] { ds::parse_hellaswag("ctx\nx1\na\nb\nc\nd\n", "h.txt"); }), "line 2: gold ending index 'x1'");
    EXPECT_HAS(error_of([&] { ds::parse_hellaswag("c\xFF\n1\na\nb\nc\nd\n", "h.txt"); }), "h.txt: line 1: invalid UTF-8");
    const std::string ok = R"({"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3", "4"], "label": 1})";
    EXPECT_EQ(ds::parse_hellaswag(ok, "h.jsonl").size(), 1u);
    EXPECT_HAS(error_of([&] { ds::parse_hellaswag(ok + "\n" + R"({"activity_label": "a", "ctx_a": "b", "endings": ["1", "2", "3", "4"], "label": 1})", "h.jsonl"); }),
               "hellaswag: h.jsonl: line 2: field 'ctx_b': missing");
    EXPECT_HAS(error_of([] { ds::parse_hellaswag(R"({"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3", "4"], "label": 4})", "h.jsonl"); }),
               "field 'label': 4 out of range [0, 4)");
    EXPECT_HAS(error_of([] { ds::parse_hellaswag(R"({"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3"], "label": 0})", "h.jsonl"); }),
               "field 'endings': expected 4 items, got 3");
    EXPECT_HAS(error_of([] { ds::parse_hellaswag(R"({"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", 3, "4"], "label": 0})", "h.jsonl"); }),
               "field 'endings[2]': expected a string");
    EXPECT_HAS(error_of([] { ds::parse_hellaswag(R"({"activity_label": "a", "ctx_a": "b", "ctx_b": "c", "endings": ["1", "2", "3", "4"], "label": "-1"})", "h.jsonl"); }),
               "field 'label': expected an index, got '-1'");
}

TEST(Datasets, Bz2Errors) {
    const std::string path = eval_path("hellaswag/hellaswag_val_full.txt.bz2");
    const std::vector<uint8_t> raw = slm::test::read_file(path);
    const std::string bz(raw.begin(), raw.end());
    // Truncated: half the compressed file.
    const std::string half = write_temp("half.txt.bz2", bz.substr(0, bz.size() / 2));
    EXPECT_HAS(error_of([&] { slm::load_hellaswag(half); }), "half.txt.bz2: truncated");
    EXPECT_HAS(error_of([&] { ds::decompress_bz2(bz.substr(0, 3), "x.bz2"); }), "x.bz2: truncated");
    // Corrupt: one flipped byte in the middle fails the block CRC (or the Huffman decoding).
    std::string bad = bz;
    bad[bad.size() / 2] ^= 0x55;
    EXPECT_HAS(error_of([&] { ds::decompress_bz2(bad, "x.bz2"); }), "x.bz2: corrupt data");
    EXPECT_HAS(error_of([] { ds::decompress_bz2("not bzip2 at all", "x.bz2"); }), "x.bz2: not bzip2 data");
    EXPECT_HAS(error_of([] { ds::decompress_bz2("", "x.bz2"); }), "x.bz2: empty file");
    // The size limit: the real file decompresses to ~7 MB.
    EXPECT_HAS(error_of([&] { ds::decompress_bz2(bz, "x.bz2", 1 << 20); }), "x.bz2: decompresses to more than 1048576 bytes");
    // Concatenated streams (as pbzip2 writes) are read whole; garbage after them is an error.
    const std::string two = slm::test::source_dir() + "/tests/data/datasets/two_streams.txt.bz2";
    const std::vector<Doc> docs = slm::load_hellaswag(two);
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[0]["query"], "Baking: A woman cracks two eggs into a bowl. she");
    EXPECT_EQ(docs[1]["choices"][0], "starts to jog around the track.");
    const std::vector<uint8_t> two_raw = slm::test::read_file(two);
    EXPECT_HAS(error_of([&] { ds::decompress_bz2(std::string(two_raw.begin(), two_raw.end()) + "junk", "t.bz2"); }),
               "t.bz2: 4 bytes of trailing garbage");
}

TEST(Datasets, ArcErrors) {
    const auto arc = [](const std::string& answer, const std::string& choices) {
        return R"({"id": "q1", "question": {"stem": "Why?", "choices": )" + choices + R"(}, "answerKey": ")" + answer + "\"}";
    };
    const std::string two = R"([{"text": "yes", "label": "A"}, {"text": "no", "label": "B"}])";
    EXPECT_EQ(ds::parse_arc(arc("B", two), "a.jsonl")[0]["gold"], 1);
    EXPECT_HAS(error_of([&] { ds::parse_arc(arc("C", two), "a.jsonl"); }),
               "arc: a.jsonl: line 1: field 'answerKey': 'C' is not one of the choice labels");
    EXPECT_HAS(error_of([&] { ds::parse_arc(arc("A", R"([{"text": "yes", "label": "A"}, {"text": "no", "label": "A"}])"), "a.jsonl"); }),
               "field 'question.choices[1].label': duplicate label 'A'");
    EXPECT_HAS(error_of([&] { ds::parse_arc(arc("A", R"([{"text": "yes", "label": "A"}, {"label": "B"}])"), "a.jsonl"); }),
               "field 'question.choices[1].text': missing");
    EXPECT_HAS(error_of([&] { ds::parse_arc(arc("A", R"([{"text": "yes", "label": "A"}])"), "a.jsonl"); }), "1 choices");
    EXPECT_HAS(error_of([] { ds::parse_arc(R"({"id": "q", "question": {"choices": []}, "answerKey": "A"})", "a.jsonl"); }),
               "field 'question.stem': missing");
    // The Hugging Face layout is read too.
    const std::vector<Doc> hf = ds::parse_arc(
        R"({"id": "h", "question": "Q?", "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]}, "answerKey": "3"})", "hf.jsonl");
    EXPECT_EQ(hf[0]["gold"], 2);
    EXPECT_EQ(hf[0]["question"], "Q?");
}

TEST(Datasets, MmluLayoutsAndErrors) {
    // The original release: no header, letter answers; subject from the file name.
    const std::string dir = slm::test::temp_dir() + "/mmlu";
    fs::create_directories(dir);
    write_temp("mmlu/zoology_test.csv", "\"What has, four legs?\",A dog,A fish,A snake,A bird,A\nQ2,w,x,y,z,D\n");
    write_temp("mmlu/astronomy_val.csv", "question,choice0,choice1,choice2,choice3,answer\nIs the sun a star?,no,yes,maybe,never,1\n");
    write_temp("mmlu/notes.txt", "ignored");
    const std::vector<Doc> docs = slm::load_mmlu(dir);
    ASSERT_EQ(docs.size(), 3u);
    EXPECT_EQ(docs[0]["subject"], "astronomy");
    EXPECT_EQ(docs[0]["answer"], 1);
    EXPECT_EQ(docs[1]["subject"], "zoology");
    EXPECT_EQ(docs[1]["question"], "What has, four legs?");
    EXPECT_EQ(docs[1]["answer"], 0);
    EXPECT_EQ(docs[2]["answer"], 3);
    EXPECT_EQ(ds::mmlu_subject_from_filename("data/dev/high_school_physics_dev.csv"), "high_school_physics");
    EXPECT_HAS(error_of([] { ds::parse_mmlu("q,a,b,c,d,E\n", "m.csv", "m"); }), "mmlu: m.csv: line 1: field 'answer': 'E' is not 0-3 or A-D");
    EXPECT_HAS(error_of([] { ds::parse_mmlu("q,a,b,c,d,0\nq,a,b,c,0\n", "m.csv", "m"); }), "line 2: 5 fields, expected 6");
    EXPECT_HAS(error_of([] { ds::parse_mmlu("question,choice0,choice1,choice2,choice3,answer\n", "m.csv", "m"); }), "no questions");
    fs::create_directories(dir + "/empty");
    EXPECT_HAS(error_of([&] { slm::load_mmlu(dir + "/empty"); }), "no .csv files in the folder");
}

TEST(Datasets, WinograndeCsvErrors) {
    EXPECT_EQ(ds::parse_winogrande_csv("index,sentence,option1,option2,answer\n0,A _ b,x,y,1\n", "w.csv").size(), 1u);
    EXPECT_HAS(error_of([] { ds::parse_winogrande_csv("0,A _ b,x,y,3\n", "w.csv"); }),
               "winogrande: w.csv: line 1: field 'answer': answer '3' is not 1 or 2");
    EXPECT_HAS(error_of([] { ds::parse_winogrande_csv("0,A _ b,x,y,1\n1,no blank,x,y,1\n", "w.csv"); }),
               "line 2: field 'sentence': no '_' blank");
    EXPECT_HAS(error_of([] { ds::parse_winogrande_csv("0,\"A _ b,x,y,1\n", "w.csv"); }), "unterminated quoted field");
    EXPECT_HAS(error_of([] { ds::parse_winogrande_csv("0,A _ b,x,1\n", "w.csv"); }), "line 1: 4 fields, expected 5");
}

} // namespace
