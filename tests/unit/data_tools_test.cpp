// Tests of the data tools (slm/data.h, `slm data ...`): documents, quality rules, perplexity
// filter, dedup, decontamination, mixing, synthetic examples, bad inputs, and the CLI end to end.
#include "test_util.h"

#include "slm/data.h"
#include "slm/error.h"
#include "slm/model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <climits>
#include <random>
#include <regex>
#include <set>
#include <sstream>

using namespace slm::test;

namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::string write_temp(const std::string& name, const std::string& text) {
    const std::string path = temp_dir() + "/" + name;
    write_file(path, bytes(text));
    return path;
}

// A clean paragraph: over 50 words, stop words, sentences ending in periods, no repetition.
const char* kClean =
    "The old lighthouse keeper climbed the spiral stairs every evening to light the great lamp. "
    "He carried a small lantern and a thermos of tea, and he counted the steps as he went, because "
    "counting kept his mind from wandering to the storms of years past. At the top he wiped the salt "
    "from the windows with a soft cloth. Far below, fishing boats were turning toward the harbor, and "
    "their captains trusted that the light would be waiting for them.";

std::string repeat(const std::string& s, int n, const std::string& sep = " ") {
    std::string out;
    for (int i = 0; i < n; ++i) out += (i ? sep : "") + s;
    return out;
}

// Distinct filler words w0 w1 ... (letters only, so alpha_words holds).
std::string filler(int n, const std::string& prefix = "word") {
    std::string out;
    for (int i = 0; i < n; ++i) {
        std::string w = prefix;
        for (int k = i; k >= 0; k = k / 26 - 1) w += static_cast<char>('a' + k % 26);
        out += (i ? " " : "") + w;
    }
    return out;
}

slm::FilterResult filter_one(const std::string& text, const slm::FilterOptions& o = {}) {
    return slm::filter_documents({{text, 1}}, o);
}

bool failed(const slm::FilterResult& r, const std::string& rule) {
    const auto& f = r.decisions.at(0).failed;
    return std::find(f.begin(), f.end(), rule) != f.end();
}

size_t rule_index(const std::string& name) {
    auto rules = slm::default_filter_rules();
    for (size_t i = 0; i < rules.size(); ++i)
        if (rules[i].name == name) return i;
    ADD_FAILURE() << "no rule " << name;
    return 0;
}

// ---- documents ------------------------------------------------------------------------------

TEST(DataDocuments, LayoutsReadAndRoundTrip) {
    slm::DocFormatOptions o;
    auto s = slm::parse_documents("\n\nfirst line\nsecond line\r\n\r\n  \n\nthird doc\n", "t", o);
    ASSERT_EQ(s.docs.size(), 2u);
    EXPECT_EQ(s.docs[0].text, "first line\nsecond line");
    EXPECT_EQ(s.docs[0].line, 3u);
    EXPECT_EQ(s.docs[1].text, "third doc");
    EXPECT_EQ(s.docs[1].line, 8u);

    o.format = slm::DocFormat::Lines;
    EXPECT_EQ(slm::parse_documents("a\n\nb\nc", "t", o).docs.size(), 3u);

    o.format = slm::DocFormat::Separator;
    o.separator = "<|endoftext|>";
    s = slm::parse_documents("story one\n\nparagraph two\n<|endoftext|>\nstory two\n<|endoftext|>  \n", "t", o);
    ASSERT_EQ(s.docs.size(), 2u);
    EXPECT_EQ(s.docs[0].text, "story one\n\nparagraph two");
    EXPECT_EQ(s.docs[1].text, "story two");

    o.format = slm::DocFormat::Jsonl;
    s = slm::parse_documents("{\"text\": \"a\\n\\nb\", \"id\": 1}\n\n{\"text\": \"c\"}\n", "t", o);
    ASSERT_EQ(s.docs.size(), 2u);
    EXPECT_EQ(s.docs[0].text, "a\n\nb");

    // Writing and reading back gives the same documents in every layout.
    std::vector<std::string_view> texts{"one\ntwo", "three"};
    for (auto f : {slm::DocFormat::Blank, slm::DocFormat::Separator, slm::DocFormat::Jsonl}) {
        o.format = f;
        const std::string path = temp_dir() + "/rt_" + slm::doc_format_name(f);
        slm::write_documents(path, texts, o);
        auto back = slm::read_documents(path, o);
        ASSERT_EQ(back.docs.size(), 2u) << slm::doc_format_name(f);
        EXPECT_EQ(back.docs[0].text, "one\ntwo");
        EXPECT_EQ(back.docs[1].text, "three");
    }
}

TEST(DataDocuments, BadInputsNameFileAndField) {
    slm::DocFormatOptions o;
    try {
        slm::read_documents(temp_dir() + "/missing.txt", o);
        FAIL();
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
    }
    EXPECT_THROW(slm::read_documents(temp_dir(), o), slm::Error);  // a directory
    // Invalid UTF-8: an error naming file and line, or skipped and counted.
    const std::string bad = write_temp("bad.txt", "good one\n\nline\nbad \xC3\x28 byte\n\ngood two\n");
    try {
        slm::read_documents(bad, o);
        FAIL();
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("bad.txt"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("line 4"), std::string::npos) << e.what();
    }
    o.skip_invalid_utf8 = true;
    auto s = slm::read_documents(bad, o);
    EXPECT_EQ(s.docs.size(), 2u);
    EXPECT_EQ(s.n_invalid_utf8, 1u);

    // Malformed JSONL: not JSON, not an object, field missing, field not a string.
    o = {};
    o.format = slm::DocFormat::Jsonl;
    const std::pair<std::string, std::string> cases[] = {
        {"{\"text\": \"ok\"}\n{\"text\": \"unterminated\n", "line 2"},
        {"[1, 2]\n", "not a JSON object"},
        {"{\"body\": \"x\"}\n", "'text' missing"},
        {"{\"text\": 5}\n", "'text' is number"},
    };
    for (const auto& [text, want] : cases) {
        const std::string p = write_temp("bad.jsonl", text);
        try {
            slm::read_documents(p, o);
            ADD_FAILURE() << text;
        } catch (const slm::Error& e) {
            EXPECT_NE(std::string(e.what()).find("bad.jsonl"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(slm::parse_doc_format("csv"), slm::Error);
}

// ---- filter rules ---------------------------------------------------------------------------

TEST(DataFilter, CleanDocumentPassesEveryRule) {
    auto r = filter_one(kClean);
    EXPECT_TRUE(r.decisions[0].kept);
    EXPECT_TRUE(r.decisions[0].failed.empty()) << ::testing::PrintToString(r.decisions[0].failed);
}

TEST(DataFilter, EachRuleTriggersOnACraftedDocument) {
    const std::string clean = kClean;
    std::map<std::string, std::string> crafted;
    crafted["min_words"] = "The cat sat on the mat with the dog.";
    crafted["max_words"] = "The end of the story, and that is that with me to be. " + filler(100001);
    crafted["min_mean_word_len"] = "I am to be at it as we go. " + repeat("He is on it so we go to an ox by me.", 8);
    crafted["max_mean_word_len"] =
        "The " + repeat("internationalization counterrevolutionaries establishmentarianism", 20) + " and that.";
    crafted["symbol_ratio"] = clean + " " + repeat("#tag", 12);
    crafted["bullet_lines"] = "- the first item\n- and the second\n* with the third\n\xE2\x80\xA2 to the fourth\n" +
                              std::string("- ") + clean;
    crafted["ellipsis_lines"] = "The wind rose...\nAnd then the rain came...\n" + clean;
    crafted["alpha_words"] = clean + " " + repeat("12 34 56 78 90 -- ++ 1.5", 6);
    crafted["stop_words"] = filler(60, "zed") + ".";
    crafted["dup_lines"] = clean + "\nThe end.\nThe end.\nThe end.";
    crafted["dup_line_chars"] = clean + "\n" + clean;
    crafted["dup_paragraphs"] = clean + "\n\nThe end.\n\nThe end.\n\nThe end.";
    crafted["dup_paragraph_chars"] = clean + "\n\n" + clean;
    crafted["top_2gram"] = "the cat " + filler(3) + " " + repeat("the cat sat", 20) + ".";
    crafted["top_3gram"] = clean + " " + repeat("to be or", 25) + ".";
    crafted["top_4gram"] = clean + " " + repeat("and that was all", 12) + ".";
    const std::string ten = "a quiet river ran past the mill and the miller";
    crafted["dup_5gram"] = clean + " " + repeat(ten + ".", 4);
    for (const char* r : {"dup_6gram", "dup_7gram", "dup_8gram", "dup_9gram", "dup_10gram"}) crafted[r] = crafted["dup_5gram"];
    crafted["terminal_punct"] = "The first line has no end\nthe second neither\nand the third with that\n" + clean;
    crafted["lorem_ipsum"] = clean + " Lorem Ipsum dolor sit amet.";
    crafted["curly_brace"] = clean + " The value was {x}.";
    crafted["javascript"] = clean + " Please enable JavaScript to view this.";

    const auto rules = slm::default_filter_rules();
    ASSERT_EQ(crafted.size(), rules.size()) << "one crafted document per rule";
    for (const slm::FilterRule& rule : rules) {
        ASSERT_TRUE(crafted.count(rule.name)) << rule.name;
        auto r = filter_one(crafted[rule.name]);
        EXPECT_FALSE(r.decisions[0].kept) << rule.name;
        EXPECT_TRUE(failed(r, rule.name)) << rule.name << " value " << r.decisions[0].values[rule_index(rule.name)]
                                          << " failed: " << ::testing::PrintToString(r.decisions[0].failed);
        // Turned off, the rule no longer fires.
        slm::FilterOptions off;
        slm::set_filter_rule(off.rules, rule.name + "=off");
        EXPECT_FALSE(failed(filter_one(crafted[rule.name], off), rule.name)) << rule.name;
    }
}

TEST(DataFilter, ValuesMatchHandCounts) {
    // 4 lines, the 4th repeats the 2nd: dup_lines 1/4, chars 8/(10+8+9+8).
    const std::string t = "Alpha one.\nBeta two\nGamma six\nBeta two";
    auto v = slm::filter_rule_values(t);
    EXPECT_DOUBLE_EQ(v[rule_index("dup_lines")], 0.25);
    EXPECT_DOUBLE_EQ(v[rule_index("dup_line_chars")], 8.0 / 35.0);
    EXPECT_DOUBLE_EQ(v[rule_index("min_words")], 8);
    EXPECT_DOUBLE_EQ(v[rule_index("terminal_punct")], 0.25);
    // Mean word length in code points: "héllo" is 5, "wörld!" 6.
    v = slm::filter_rule_values("h\xC3\xA9llo w\xC3\xB6rld!");
    EXPECT_DOUBLE_EQ(v[rule_index("min_mean_word_len")], 5.5);
    // Top 2-gram: "a b" three times over words a b a b a b c (normalized bytes 7): 3*2/7.
    v = slm::filter_rule_values("A b, a b. a b c");
    EXPECT_DOUBLE_EQ(v[rule_index("top_2gram")], 6.0 / 7.0);
    // Duplicate 5-gram: words 6..10 repeat words 1..5 -> 5 of 11 words (all 1 byte).
    v = slm::filter_rule_values("a b c d e x a b c d e");
    EXPECT_DOUBLE_EQ(v[rule_index("dup_5gram")], 5.0 / 11.0);
    EXPECT_DOUBLE_EQ(v[rule_index("dup_6gram")], 0.0);
    EXPECT_DOUBLE_EQ(v[rule_index("stop_words")], 0.0);
}

TEST(DataFilter, ThresholdsOverrideByName) {
    slm::FilterOptions o;
    const std::string short_doc = "The cat sat on the mat with the dog.";
    EXPECT_TRUE(failed(filter_one(short_doc, o), "min_words"));
    slm::set_filter_rule(o.rules, "min_words=5");
    EXPECT_TRUE(filter_one(short_doc, o).decisions[0].kept);
    slm::set_filter_rule(o.rules, "min_words=10");
    EXPECT_TRUE(failed(filter_one(short_doc, o), "min_words"));
    for (const char* bad : {"no_such_rule=3", "min_words", "min_words=abc", "min_words=nan", "=3"})
        EXPECT_THROW(slm::set_filter_rule(o.rules, bad), slm::Error) << bad;
    try {
        slm::set_filter_rule(o.rules, "min_wordz=3");
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("min_wordz"), std::string::npos);
    }
}

TEST(DataFilter, CountsAndTotals) {
    std::vector<slm::Document> docs{{kClean, 1}, {"Too short.", 3}, {std::string(kClean) + " The value was {x}.", 5}};
    auto r = slm::filter_documents(docs, {});
    EXPECT_EQ(r.n_kept, 1u);
    EXPECT_EQ(r.n_dropped, 2u);
    EXPECT_EQ(r.bytes_kept, std::string(kClean).size());
    EXPECT_EQ(r.bytes_dropped, docs[1].text.size() + docs[2].text.size());
    EXPECT_EQ(r.n_reason[rule_index("min_words")], 1u);
    EXPECT_EQ(r.n_reason[rule_index("curly_brace")], 1u);
    const std::string report = slm::filter_report_jsonl(docs, {}, r);
    std::istringstream in(report);
    std::string line;
    std::vector<nlohmann::json> rows;
    while (std::getline(in, line)) rows.push_back(nlohmann::json::parse(line));
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[1]["reason"], "min_words");
    EXPECT_EQ(rows[1]["line"], 3);
    EXPECT_EQ(rows[0]["kept"], true);
}

// ---- perplexity filter ----------------------------------------------------------------------

// The first story of the bundled TinyStories validation text with more than 60 words.
std::string real_story() {
    slm::DocFormatOptions o;
    auto set = slm::read_documents(source_dir() + "/data/eval/tinystories_val.txt", o);
    for (const auto& d : set.docs)
        if (std::count(d.text.begin(), d.text.end(), ' ') > 60) return d.text;
    return {};
}

std::string shuffle_words(const std::string& text, uint64_t seed) {
    std::vector<std::string> w;
    std::istringstream in(text);
    std::string s;
    while (in >> s) w.push_back(s);
    std::mt19937_64 g(seed);
    for (size_t i = w.size(); i > 1; --i) std::swap(w[i - 1], w[g() % i]);
    std::string out;
    for (const auto& x : w) out += (out.empty() ? "" : " ") + x;
    return out;
}

TEST(DataFilter, PerplexityKeepsARealStoryOverShuffledWords) {
    const std::string story = real_story();
    ASSERT_FALSE(story.empty());
    const std::string gibberish = shuffle_words(story, 7);
    ASSERT_NE(story, gibberish);

    const std::string stories = model_path("stories260K/stories260K.gguf");
    auto model = slm::Model::load(stories);
    slm::SessionOptions so;
    so.n_ctx = model->hparams().n_ctx_train;  // 128: the filter's session never goes past it
    so.kv_type = slm::GGMLType::F32;
    slm::Session s(model, so);
    const double p_story = slm::text_perplexity(s, story), p_gib = slm::text_perplexity(s, gibberish);
    EXPECT_LT(p_story * 2, p_gib) << p_story << " vs " << p_gib;

    slm::FilterOptions o;
    for (auto& r : o.rules) r.enabled = false;
    o.ppl_model = stories;
    o.keep_ppl_fraction = 0.5;
    auto r = slm::filter_documents({{gibberish, 1}, {story, 2}}, o);
    EXPECT_FALSE(r.decisions[0].kept);
    EXPECT_EQ(r.decisions[0].reason, "ppl");
    EXPECT_TRUE(r.decisions[1].kept);
    EXPECT_NEAR(r.decisions[1].ppl, p_story, 1e-6 * p_story);
    EXPECT_EQ(r.n_ppl_dropped, 1u);

    // A --max-ppl cut between the two keeps the same one.
    o.keep_ppl_fraction = 0;
    o.max_ppl = std::sqrt(p_story * p_gib);
    r = slm::filter_documents({{gibberish, 1}, {story, 2}}, o);
    EXPECT_FALSE(r.decisions[0].kept);
    EXPECT_TRUE(r.decisions[1].kept);

    // A context shorter than the story scores it in windows: close to the one-window value.
    so.n_ctx = 64;
    slm::Session small(model, so);
    const double p_win = slm::text_perplexity(small, story);
    EXPECT_GT(p_win, p_story * 0.8);
    EXPECT_LT(p_win, p_story * 1.5);

    o.max_ppl = 0;
    EXPECT_THROW(slm::filter_documents({{story, 1}}, o), slm::Error);  // a model but no cut
}

// ---- dedup ----------------------------------------------------------------------------------

std::string long_text() {
    return "Once upon a time in a small village by the sea there lived a girl called Nora who loved to collect "
           "shells. Every morning she walked along the shore with her grandfather and a wicker basket. They "
           "looked for spiral shells, flat shells, and shells with tiny holes that the waves had made. One day "
           "Nora found a shell that shone like the inside of a rainbow. Her grandfather told her that such "
           "shells came from far away, carried by a warm current that passed the island only once in many "
           "years. Nora kept the shell on her windowsill, and whenever the wind blew from the south she held "
           "it to her ear and listened to the sound of distant oceans. When winter came and storms kept "
           "everyone indoors, she drew maps of the places the shell might have visited, and she dreamed of "
           "sailing there herself one day with a boat of her own.";
}

TEST(DataDedup, FindsExactAndNearDuplicatesNotDifferentStories) {
    const std::string a = long_text();
    std::string near = a;
    near.replace(near.find("wicker"), 6, "yellow");  // one word changed
    const size_t cut = a.find(' ', 40);
    const std::string exact = "  " + a.substr(0, cut) + "\n" + a.substr(cut + 1);  // whitespace differs only
    std::string upper = a;
    for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const std::string other =
        "Tom had a red kite that his father had built from sticks and paper. On windy afternoons they took it to the "
        "hill behind the school and let the string run out until the kite was a tiny dot in the clouds. One day "
        "the string snapped and the kite drifted over the river, over the farms, and out of sight. Tom was sad, "
        "but his father smiled and said that they could build a better one together, with a longer tail and "
        "brighter colors, and that losing something is sometimes how you learn to make it again.";
    std::vector<slm::Document> docs{{a, 1}, {other, 2}, {near, 3}, {exact, 4}, {upper, 5}};
    const auto r = slm::dedup_documents(docs, {});
    EXPECT_TRUE(r.decisions[0].kept);
    EXPECT_TRUE(r.decisions[1].kept);
    EXPECT_FALSE(r.decisions[2].kept);
    EXPECT_FALSE(r.decisions[2].exact);
    EXPECT_EQ(r.decisions[2].dup_of, 0);
    EXPECT_GT(r.decisions[2].jaccard, 0.9);
    EXPECT_LT(r.decisions[2].jaccard, 1.0);
    EXPECT_FALSE(r.decisions[3].kept);
    EXPECT_TRUE(r.decisions[3].exact);
    EXPECT_FALSE(r.decisions[4].kept);
    EXPECT_TRUE(r.decisions[4].exact);  // case and punctuation are normalized away
    EXPECT_EQ(r.n_exact, 2u);
    EXPECT_EQ(r.n_near, 1u);
    ASSERT_EQ(r.clusters.size(), 1u);
    EXPECT_EQ(r.clusters[0].kept, 0u);
    EXPECT_EQ(r.clusters[0].dropped, (std::vector<size_t>{2, 3, 4}));

    // The exact Jaccard similarity checks what LSH proposes: 10 changed shingles out of ~150.
    const auto sa = slm::shingle_hashes(a, 5), sn = slm::shingle_hashes(near, 5), so = slm::shingle_hashes(other, 5);
    const double j = slm::jaccard(sa, sn);
    EXPECT_NEAR(j, double(sa.size() - 5) / double(sa.size() + 5), 1e-9);  // 5 shingles hold the changed word
    EXPECT_LT(slm::jaccard(sa, so), 0.05);
    // MinHash estimates it: the fraction of equal signature entries.
    slm::DedupOptions o;
    o.n_perm = 256;
    o.n_bands = 32;
    const auto ga = slm::minhash_signature(a, o), gn = slm::minhash_signature(near, o);
    size_t eq = 0;
    for (size_t i = 0; i < ga.size(); ++i) eq += ga[i] == gn[i];
    EXPECT_NEAR(double(eq) / ga.size(), j, 0.08);
    EXPECT_EQ(ga, slm::minhash_signature(a, o));  // deterministic
    o.seed = 2;
    EXPECT_NE(ga, slm::minhash_signature(a, o));

    // A stricter threshold than their similarity keeps the near duplicate.
    slm::DedupOptions strict;
    strict.threshold = 0.99;
    EXPECT_TRUE(slm::dedup_documents(docs, strict).decisions[2].kept);
    slm::DedupOptions bad;
    bad.n_bands = 7;
    EXPECT_THROW(slm::dedup_documents(docs, bad), slm::Error);
}

// ---- decontaminate --------------------------------------------------------------------------

TEST(DataDecontaminate, ThirteenSharedWordsDropTwelveDoNot) {
    const std::string eval = write_temp(
        "eval_stories.txt",
        "The purple elephant danced slowly across the frozen lake while seven tiny penguins watched from the shore.\n\n"
        "Another paragraph that nobody copies.\n");
    slm::DecontaminateOptions o;
    o.eval_sets = {slm::parse_eval_set_spec(eval)};
    EXPECT_EQ(o.eval_sets[0].kind, "text");
    // 13 words of the eval text, with other case and punctuation: dropped.
    const std::string d13 = "Yesterday THE purple elephant, danced slowly across the frozen lake; while seven tiny penguins! laughed.";
    // Only 12 consecutive shared words: kept.
    const std::string d12 = "Yesterday the purple elephant danced slowly across the frozen lake while seven tiny ducks laughed.";
    const auto r = slm::decontaminate_documents({{d13, 1}, {d12, 2}}, o);
    EXPECT_FALSE(r.decisions[0].kept);
    EXPECT_EQ(r.decisions[0].sets, (std::vector<size_t>{0}));
    EXPECT_EQ(r.decisions[0].ngram, "the purple elephant danced slowly across the frozen lake while seven tiny penguins");
    EXPECT_EQ(r.decisions[0].n_shared, 1u);
    EXPECT_TRUE(r.decisions[1].kept);
    EXPECT_EQ(r.n_dropped, 1u);
    EXPECT_EQ(r.sets[0].n_docs_matched, 1u);
    EXPECT_EQ(r.sets[0].n_texts, 2u);
    EXPECT_EQ(r.sets[0].n_ngrams, 5u);  // 17 words in the first paragraph; the second is too short

    o.min_shared = 2;
    EXPECT_TRUE(slm::decontaminate_documents({{d13, 1}}, o).decisions[0].kept);
    EXPECT_EQ(slm::normalized_words("Lily's ball... \xE2\x80\x9CYes!\xE2\x80\x9D"),
              (std::vector<std::string>{"lilys", "ball", "yes"}));
}

TEST(DataDecontaminate, ReadsTheEvalSetFormatsAndNamesTheSet) {
    // HellaSwag's 6-lines-per-task text: context, gold, 4 endings; n-grams run from the context into each ending.
    const std::string hs = write_temp(
        "hellaswag_mini.txt",
        "Baking cookies: A woman pours flour into a large bowl and\n2\nthrows it away.\nsings a song.\n"
        "mixes in sugar and butter with a wooden spoon until smooth.\nleaves the kitchen.\n");
    const std::string arc = write_temp(
        "arc_mini.jsonl",
        "{\"id\": \"q1\", \"question\": {\"stem\": \"Which process lets green plants turn sunlight water and carbon dioxide "
        "into food?\", \"choices\": [{\"text\": \"photosynthesis\", \"label\": \"A\"}, {\"text\": \"erosion\", \"label\": \"B\"}]}, "
        "\"answerKey\": \"A\"}\n");
    slm::DecontaminateOptions o;
    o.eval_sets = {slm::parse_eval_set_spec(hs), slm::parse_eval_set_spec("arc:" + arc)};
    EXPECT_EQ(o.eval_sets[0].kind, "hellaswag");
    EXPECT_EQ(o.eval_sets[1].kind, "arc");
    const std::string from_hs = "she pours flour into a large bowl and mixes in sugar and butter with a wooden spoon.";
    const std::string from_arc = "Quiz: which process lets green plants turn sunlight, water and carbon dioxide into food? Photosynthesis!";
    const std::string clean = kClean;
    const auto r = slm::decontaminate_documents({{from_hs, 1}, {clean, 2}, {from_arc, 3}}, o);
    EXPECT_FALSE(r.decisions[0].kept);
    EXPECT_EQ(r.decisions[0].sets, (std::vector<size_t>{0}));
    EXPECT_TRUE(r.decisions[1].kept);
    EXPECT_FALSE(r.decisions[2].kept);
    EXPECT_EQ(r.decisions[2].sets, (std::vector<size_t>{1}));
    EXPECT_EQ(r.sets[0].name, "hellaswag_mini.txt");

    // Malformed eval files and specs are errors naming them.
    const std::string bad_hs = write_temp("hellaswag_bad.txt", "ctx\n7\na\nb\nc\nd\n");
    o.eval_sets = {slm::parse_eval_set_spec(bad_hs)};
    try {
        slm::decontaminate_documents({{clean, 1}}, o);
        FAIL();
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("hellaswag_bad.txt"), std::string::npos) << e.what();
    }
    o.eval_sets = {slm::parse_eval_set_spec(temp_dir() + "/nope.txt")};
    EXPECT_THROW(slm::decontaminate_documents({{clean, 1}}, o), slm::Error);
    o.eval_sets.clear();
    EXPECT_THROW(slm::decontaminate_documents({{clean, 1}}, o), slm::Error);
    try {
        slm::parse_eval_set_spec("squad:" + hs);
        FAIL();
    } catch (const slm::Error& e) {
        EXPECT_NE(std::string(e.what()).find("unknown kind 'squad'"), std::string::npos) << e.what();
    }
}

// ---- mix ------------------------------------------------------------------------------------

slm::DocumentSet make_set(const std::string& name, size_t n, size_t len) {
    slm::DocumentSet s;
    s.path = name;
    for (size_t i = 0; i < n; ++i) {
        s.docs.push_back({name + std::to_string(i) + std::string(len, 'x'), i + 1});
        s.n_bytes += s.docs.back().text.size();
    }
    return s;
}

TEST(DataMix, ProportionsEpochsAndDeterminism) {
    const std::vector<slm::DocumentSet> src{make_set("a", 100, 10), make_set("b", 30, 100)};
    slm::MixOptions o;
    o.n_docs = 4000;
    o.seed = 5;
    const auto r = slm::mix_documents(src, {0.7, 0.3}, o);
    ASSERT_EQ(r.picks.size(), 4000u);
    EXPECT_NEAR(double(r.sources[0].n_docs) / 4000, 0.7, 0.03);
    EXPECT_NEAR(double(r.sources[1].n_docs) / 4000, 0.3, 0.03);
    EXPECT_NEAR(r.sources[1].epochs, r.sources[1].n_docs / 30.0, 1e-12);
    EXPECT_GT(r.sources[1].epochs, 30);  // upsampled
    // Every pass over a source takes each document once before any repeats.
    std::vector<int> seen(30, 0);
    size_t taken = 0;
    for (auto [s, d] : r.picks) {
        if (s != 1) continue;
        ++seen[d];
        if (++taken == 30) break;
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 30);

    EXPECT_EQ(slm::mix_documents(src, {0.7, 0.3}, o).picks, r.picks);
    o.seed = 6;
    EXPECT_NE(slm::mix_documents(src, {0.7, 0.3}, o).picks, r.picks);

    // By bytes: weights are shares of bytes (b's documents are ~9x longer).
    o.n_docs = 0;
    o.n_bytes = 200000;
    o.by_bytes = true;
    const auto rb = slm::mix_documents(src, {0.5, 0.5}, o);
    EXPECT_GE(rb.n_bytes, 200000u);
    EXPECT_NEAR(double(rb.sources[0].n_bytes) / rb.n_bytes, 0.5, 0.05);
    EXPECT_GT(rb.sources[0].n_docs, 5 * rb.sources[1].n_docs);

    o.n_bytes = 0;
    EXPECT_THROW(slm::mix_documents(src, {0.7, 0.3}, o), slm::Error);  // neither --docs nor --bytes
}

TEST(DataMix, WeightSyntax) {
    auto s = slm::parse_mix_source("dir/a:b.txt:0.25");
    EXPECT_EQ(s.path, "dir/a:b.txt");
    EXPECT_EQ(s.weight, 0.25);
    for (const char* bad : {"a.txt", "a.txt:", "a.txt:abc", "a.txt:-1", "a.txt:0", ":0.5", "a.txt:1x", "a.txt:inf"}) {
        try {
            slm::parse_mix_source(bad);
            ADD_FAILURE() << bad;
        } catch (const slm::Error& e) {
            EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
        }
    }
}

// ---- synth ----------------------------------------------------------------------------------

TEST(DataSynth, AnswersAreArithmeticallyRightAndDeterministic) {
    for (const char* family : {"arithmetic", "units"}) {
        slm::DataSynthOptions o;
        o.family = family;
        o.count = 300;
        o.seed = 11;
        const auto ex = slm::synth_data(o);
        ASSERT_EQ(ex.size(), 300u);
        std::set<std::string> kinds;
        const std::regex eq_re(R"(^(-?\d+) ([-+*/]) (-?\d+) = (-?\d+)$)"), ans_re(R"(#### (-?\d+)$)");
        for (const auto& e : ex) {
            kinds.insert(e.kind);
            // Parse the text back: every step line must be a true equation, the last one giving the answer.
            std::istringstream in(e.text);
            std::string line;
            long long last = LLONG_MIN, final_answer = LLONG_MIN;
            int n_eq = 0;
            while (std::getline(in, line)) {
                std::smatch m;
                if (std::regex_match(line, m, eq_re)) {
                    const long long a = std::stoll(m[1]), b = std::stoll(m[3]), c = std::stoll(m[4]);
                    const char op = m[2].str()[0];
                    long long v = op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : (b ? a / b : LLONG_MIN);
                    if (op == '/') EXPECT_EQ(a % b, 0) << e.text;
                    EXPECT_EQ(v, c) << e.text;
                    last = c;
                    ++n_eq;
                } else if (std::regex_search(line, m, ans_re)) {
                    final_answer = std::stoll(m[1]);
                }
            }
            EXPECT_GE(n_eq, 1) << e.text;
            EXPECT_EQ(final_answer, last) << e.text;
            EXPECT_EQ(final_answer, e.answer) << e.text;
            EXPECT_GE(e.answer, 0) << e.text;
            EXPECT_EQ(e.text.rfind("Question: ", 0), 0u);
        }
        EXPECT_GE(kinds.size(), std::string(family) == "arithmetic" ? 6u : 3u) << family;
        // Same seed, same examples; another seed, others.
        const auto again = slm::synth_data(o);
        for (size_t i = 0; i < ex.size(); ++i) EXPECT_EQ(ex[i].text, again[i].text);
        o.seed = 12;
        EXPECT_NE(slm::synth_data(o)[0].text + slm::synth_data(o)[1].text, ex[0].text + ex[1].text);
    }
    slm::DataSynthOptions bad;
    bad.family = "poetry";
    EXPECT_THROW(slm::synth_data(bad), slm::Error);
}

// ---- threads ------------------------------------------------------------------------------

TEST(DataThreads, ResultsDoNotDependOnTheThreadCount) {
    slm::DocFormatOptions fo;
    auto set = slm::read_documents(source_dir() + "/data/eval/tinystories_val.txt", fo);
    ASSERT_GT(set.docs.size(), 300u);
    std::vector<slm::Document> docs(set.docs.begin(), set.docs.begin() + 300);
    docs.push_back(docs[10]);  // a duplicate to find
    const std::string eval = write_temp("eval_thr.txt", docs[20].text + "\n");

    slm::FilterOptions f1, f2;
    f1.n_threads = 1;
    f2.n_threads = 2;
    auto a = slm::filter_documents(docs, f1), b = slm::filter_documents(docs, f2);
    EXPECT_EQ(a.kept(), b.kept());
    EXPECT_EQ(a.n_failed, b.n_failed);
    for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(a.decisions[i].values, b.decisions[i].values);

    slm::DedupOptions d1, d2;
    d1.n_threads = 1;
    d2.n_threads = 2;
    auto da = slm::dedup_documents(docs, d1), db = slm::dedup_documents(docs, d2);
    EXPECT_EQ(da.kept(), db.kept());
    EXPECT_FALSE(da.decisions.back().kept);

    slm::DecontaminateOptions c1;
    c1.eval_sets = {slm::parse_eval_set_spec("text:" + eval)};
    c1.n_threads = 1;
    slm::DecontaminateOptions c2 = c1;
    c2.n_threads = 2;
    auto ca = slm::decontaminate_documents(docs, c1), cb = slm::decontaminate_documents(docs, c2);
    EXPECT_EQ(ca.kept(), cb.kept());
    EXPECT_FALSE(ca.decisions[20].kept);
}

// ---- CLI ------------------------------------------------------------------------------------

TEST(DataCli, FilterDedupDecontaminateMixSynthEndToEnd) {
    const std::string clean = kClean;
    const std::string in = write_temp("cli_in.txt", clean + "\n\nToo short.\n\n" + clean + "\n\n" + long_text() + "\n");
    const std::string out = temp_dir() + "/cli_out.txt", report = temp_dir() + "/cli_report.jsonl";

    auto r = run_cli({"data", "filter", in, "-o", out, "--report", report});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("min_words"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("kept           3 documents"), std::string::npos) << r.out;
    auto kept = slm::read_documents(out, {});
    ASSERT_EQ(kept.docs.size(), 3u);
    EXPECT_EQ(kept.docs[0].text, clean);
    const std::string rep = read_text(report);
    EXPECT_EQ(std::count(rep.begin(), rep.end(), '\n'), 4);

    r = run_cli({"data", "dedup", out, "-o", out + ".dedup"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("exact duplicates 1"), std::string::npos) << r.out;
    EXPECT_EQ(slm::read_documents(out + ".dedup", {}).docs.size(), 2u);

    const std::string ev = write_temp("cli_eval.txt", long_text().substr(0, 200) + "\n");
    r = run_cli({"data", "decontaminate", out, "--eval", "text:" + ev, "-o", out + ".dc"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("cli_eval.txt"), std::string::npos) << r.out;
    EXPECT_EQ(slm::read_documents(out + ".dc", {}).docs.size(), 2u);
    r = run_cli({"data", "decontaminate", "--eval", "text:" + ev, out});  // one value per --eval
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("dropped        1 documents"), std::string::npos) << r.out;

    r = run_cli({"data", "mix", in + ":0.5", out + ":0.5", "--docs", "20", "--seed", "3", "-o", out + ".mix"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(slm::read_documents(out + ".mix", {}).docs.size(), 20u);
    EXPECT_NE(r.out.find("upsampled"), std::string::npos) << r.out;
    r = run_cli({"data", "mix", in + ":heavy", "--docs", "5"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("weight 'heavy'"), std::string::npos) << r.err;

    auto s1 = run_cli({"data", "synth", "-n", "4", "--seed", "9"}), s2 = run_cli({"data", "synth", "-n", "4", "--seed", "9"});
    ASSERT_EQ(s1.exit_code, 0) << s1.err;
    EXPECT_EQ(s1.out, s2.out);
    EXPECT_EQ(std::count(s1.out.begin(), s1.out.end(), '#'), 16);  // "#### N" once per example
    auto sj = run_cli({"data", "synth", "-n", "2", "--format", "jsonl"});
    ASSERT_EQ(sj.exit_code, 0) << sj.err;
    EXPECT_TRUE(nlohmann::json::parse(sj.out.substr(0, sj.out.find('\n')))["answer"].is_number_integer());

    r = run_cli({"data", "filter", temp_dir() + "/absent.txt"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("absent.txt"), std::string::npos) << r.err;
    r = run_cli({"data", "filter", in, "--rule", "min_words=lots"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("min_words"), std::string::npos) << r.err;
}

} // namespace
