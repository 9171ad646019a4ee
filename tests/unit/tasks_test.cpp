// tasks_test.cpp - the benchmark task engine (slm/tasks.h): metric functions on hand-computed
// numbers, Python's random.sample (expected values printed by CPython 3.11), lm-eval's filters and
// exact match on hand-written answers, each preset's prompt for a real item written out by hand in
// lm-eval's format, per-choice log-likelihoods against an independent computation on
// stories260K (with and without KV reuse), task files (YAML, JSON) against the built-in config, and
// malformed task files.
#include "chat/doc_template.h"
#include "eval/tasks_impl.h"
#include "formats/datasets.h"
#include "slm/error.h"
#include "slm/tasks.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace ev = slm::eval;
using nlohmann::json;

namespace {

std::string eval_path(const std::string& rel) { return slm::test::source_dir() + "/data/eval/" + rel; }

std::string write_temp(const std::string& name, const std::string& text) {
    const std::string path = slm::test::temp_dir() + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

std::shared_ptr<const slm::Model> model() {
    static auto m = slm::Model::load(slm::test::model_path("stories260K/stories260K.gguf"));
    return m;
}

slm::SessionOptions sopts() {
    slm::SessionOptions o;
    o.n_ctx = 512;
    o.n_threads = 1;
    return o;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const slm::Error& e) {
        return e.what();
    }
    return "(no error)";
}

// ---- metrics -------------------------------------------------------------------------------------

TEST(TaskMetrics, MeanAndSampleStderr) {
    // mean 0.75; squared deviations 3 * 0.0625 + 0.5625 = 0.75; var (ddof=1) 0.25; sd 0.5; / sqrt(4)
    EXPECT_DOUBLE_EQ(ev::mean({1, 0, 1, 1}), 0.75);
    EXPECT_DOUBLE_EQ(ev::mean_stderr({1, 0, 1, 1}), 0.25);
    // [0, 0, 1]: mean 1/3, ss 2/3, var 1/3, se sqrt(1/3)/sqrt(3) = 1/3
    EXPECT_NEAR(ev::mean_stderr({0, 0, 1}), 1.0 / 3, 1e-15);
    EXPECT_TRUE(std::isnan(ev::mean_stderr({1})));
    EXPECT_DOUBLE_EQ(ev::mean_stderr({1, 1, 1}), 0);
}

TEST(TaskMetrics, PooledStderr) {
    // lm-eval: sqrt(sum((n-1) se^2 n) / (N - groups) / N)
    const double expect = std::sqrt((3 * 0.25 * 0.25 * 4 + 2 * (1.0 / 9) * 3) / 5.0 / 7.0);
    EXPECT_NEAR(ev::pooled_stderr({0.25, 1.0 / 3}, {4, 3}), expect, 1e-15);
    EXPECT_NEAR(expect, 0.2011869, 1e-6);
}

TEST(TaskMetrics, AccAndAccNormTiesAndUtf8Length) {
    // ties go to the first (numpy.argmax)
    auto p = ev::pick_choice({-1.0, -1.0, -3.0}, {"a", "b", "c"});
    EXPECT_EQ(p.pred, 0u);
    EXPECT_EQ(p.pred_norm, 0u);
    // acc_norm divides by characters, not bytes: "é" is one character (2 bytes)
    // -1.5/1 = -1.5 < -2.5/2 = -1.25 -> choice 1; by bytes it would be -0.75 -> choice 0
    p = ev::pick_choice({-1.5, -2.5}, {"\xc3\xa9", "ab"});
    EXPECT_EQ(p.pred, 0u);
    EXPECT_EQ(p.pred_norm, 1u);
    EXPECT_EQ(ev::utf8_chars("\xe6\x97\xa5\xe6\x9c\xac x"), 4u);
    // a longer choice wins acc_norm with a lower total: -6/6 = -1 > -2/1
    p = ev::pick_choice({-2.0, -6.0}, {"a", "abcdef"});
    EXPECT_EQ(p.pred, 0u);
    EXPECT_EQ(p.pred_norm, 1u);
}

TEST(TaskMetrics, PythonRandomSample) {
    // values printed by CPython: random.Random(1234).sample(range(10), 3), then more calls on it
    ev::PyRandom r(1234);
    EXPECT_EQ(r.sample(10, 3), (std::vector<size_t>{7, 1, 0}));
    EXPECT_EQ(r.sample(100, 5), (std::vector<size_t>{11, 74, 4, 85, 88}));
    EXPECT_EQ(r.sample(7, 4), (std::vector<size_t>{0, 6, 2, 1}));
    ev::PyRandom r2(1234);
    EXPECT_EQ(r2.next32(), 4150886329u);
    EXPECT_EQ(r2.next32(), 3342196574u);
    EXPECT_EQ(r2.next32(), 1892932127u);
    ev::PyRandom r3(42);  // population above the pool size: the set algorithm
    EXPECT_EQ(r3.sample(1000, 8), (std::vector<size_t>{654, 114, 25, 759, 281, 250, 228, 142}));
    ev::PyRandom r4((1ull << 40) + 5);  // a seed of two 32-bit words
    EXPECT_EQ(r4.sample(50, 5), (std::vector<size_t>{32, 33, 17, 42, 1}));
}

// ---- GSM8K extraction and exact match ------------------------------------------------------------

TEST(TaskMetrics, Gsm8kFiltersAndExactMatch) {
    const slm::TaskConfig g = slm::task_preset("gsm8k");
    ASSERT_EQ(g.filter_list.size(), 2u);
    const auto& strict = g.filter_list[0];
    const auto& flex = g.filter_list[1];
    const slm::TaskMetric& em = g.metric_list.at(0);
    const std::string gold = "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nSo she makes 9 * 2 = $<<9*2=18>>18.\n#### 1,818";

    std::string gen = "She has 1,800 + 18 = 1,818 dollars.\n#### 1,818\n\n";
    EXPECT_EQ(ev::apply_filter(strict, gen), "1,818");
    EXPECT_EQ(ev::apply_filter(flex, gen), "1,818");
    EXPECT_TRUE(ev::exact_match(ev::apply_filter(strict, gen), gold, em));  // commas removed on both sides

    gen = "The answer is 1818.";
    EXPECT_EQ(ev::apply_filter(strict, gen), "[invalid]");
    EXPECT_EQ(ev::apply_filter(flex, gen), "1818.");
    EXPECT_TRUE(ev::exact_match("1818.", gold, em));  // "\.$" drops the final period
    EXPECT_FALSE(ev::exact_match("[invalid]", gold, em));

    // group_select -1: the last match; a tuple gives its non-empty group
    EXPECT_EQ(ev::apply_filter(flex, "3 apples and 4 pears make 7"), "7");
    EXPECT_EQ(ev::apply_filter(flex, "It costs $18.00 in total"), "$18.00");
    EXPECT_FALSE(ev::exact_match("$18.00", "#### 18", em));  // 18.00 is not 18 (as lm-eval)
    EXPECT_TRUE(ev::exact_match("$18", "#### 18", em));
    EXPECT_EQ(ev::apply_filter(flex, "no numbers here"), "[invalid]");
    EXPECT_EQ(ev::apply_filter(strict, "#### -5.5 and more"), "-5.5");

    slm::TaskMetric plain = slm::task_metric("exact_match");
    EXPECT_FALSE(ev::exact_match("ABC", "abc", plain));
    plain.ignore_case = true;
    EXPECT_TRUE(ev::exact_match("ABC", "abc", plain));
    plain.ignore_punctuation = true;
    EXPECT_TRUE(ev::exact_match("a.b,c!", "ABC", plain));

    auto f = ev::regex_findall("a(b)?", "ab a");
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(f[0][0], "b");
    EXPECT_EQ(f[1][0], "");
}

// ---- doc templates -------------------------------------------------------------------------------

TEST(DocTemplate, RenderEvaluateAndStrictUndefined) {
    json doc = {{"goal", "Open a jar"}, {"sol1", "twist the lid"}, {"sol2", "hit it"}, {"label", 1}};
    auto t = slm::chat::DocTemplate::parse("Question: {{goal}}\nAnswer:", "t");
    EXPECT_EQ(t.render(doc), "Question: Open a jar\nAnswer:");
    auto c = slm::chat::DocTemplate::parse(" {{[sol1, sol2]}} ", "c");
    EXPECT_TRUE(c.is_expression());
    EXPECT_EQ(c.evaluate(doc), json::array({"twist the lid", "hit it"}));
    EXPECT_EQ(slm::chat::DocTemplate::parse("{{label + 1}}", "n").evaluate(doc), json(2));
    // plain Jinja2 with keep_trailing_newline (lm-eval's environment), not Hugging Face's trimming
    EXPECT_EQ(slm::chat::DocTemplate::parse("{% if label %}\n  A{% endif %}\n\n", "w").render(doc), "\n  A\n\n");
    std::string e = error_of([&] { slm::chat::DocTemplate::parse("{{ nosuch }}", "tpl").render(doc); });
    EXPECT_NE(e.find("tpl:1: UndefinedError: 'nosuch' is undefined"), std::string::npos) << e;
    e = error_of([&] { slm::chat::DocTemplate::parse("{{ goal", "tpl"); });
    EXPECT_NE(e.find("tpl:1:"), std::string::npos) << e;
    EXPECT_NE(e.find("TemplateSyntaxError"), std::string::npos) << e;
}

// ---- prompts of the presets on real items --------------------------------------------------------

ev::PreparedDoc prepared(const std::string& preset, const std::vector<slm::Doc>& docs, size_t i,
                         const std::vector<const slm::Doc*>& shots = {}) {
    auto t = ev::compile_task(slm::task_preset(preset), preset);
    return ev::prepare_doc(t, docs.at(i), shots, preset);
}

TEST(TaskPrompts, ArcEasy) {
    auto docs = slm::load_arc(eval_path("arc/arc_easy_dev.jsonl"));
    auto p = prepared("arc_easy", docs, 0);
    EXPECT_EQ(p.prompt, "Question: Which technology was developed most recently?\nAnswer:");
    ASSERT_EQ(p.requests.size(), 4u);
    EXPECT_EQ(p.requests[0].second, " cellular telephone");
    EXPECT_EQ(p.requests[3].second, " airplane");
    EXPECT_EQ(p.gold, 0);
}

TEST(TaskPrompts, HellaSwag) {
    auto docs = slm::load_hellaswag(eval_path("hellaswag/hellaswag_val_full.txt.bz2"));
    auto p = prepared("hellaswag", docs, 0);
    EXPECT_EQ(p.prompt, "Roof shingle removal: A man is sitting on a roof. he");
    ASSERT_EQ(p.requests.size(), 4u);
    EXPECT_EQ(p.requests[1].second, " is ripping level tiles off.");
    EXPECT_EQ(p.gold, 3);
}

TEST(TaskPrompts, WinoGrandePartialContexts) {
    auto docs = slm::load_winogrande(eval_path("winogrande/winogrande_1.1_dev.jsonl"));
    auto p = prepared("winogrande", docs, 0);
    EXPECT_TRUE(p.multiple_input);
    ASSERT_EQ(p.requests.size(), 2u);
    EXPECT_EQ(p.requests[0].first, "Sarah was a much better surgeon than Maria so Sarah");
    EXPECT_EQ(p.requests[1].first, "Sarah was a much better surgeon than Maria so Maria");
    EXPECT_EQ(p.requests[0].second, " always got the easier cases.");
    EXPECT_EQ(p.requests[1].second, " always got the easier cases.");
    EXPECT_EQ(p.gold, 1);  // answer "2"
    // the llama.cpp csv layout gives the same requests
    auto csv = slm::load_winogrande(eval_path("winogrande/winogrande-debiased-eval.csv"));
    auto q = prepared("winogrande", csv, 0);
    EXPECT_EQ(q.requests, p.requests);
    EXPECT_EQ(q.gold, p.gold);
}

const char* kAbstractAlgebra0 =
    "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer:";
const char* kAbstractAlgebra1 =
    "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
    "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:";
const char* kAbstractAlgebra2 =
    "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The symmetric "
    "group S_10 has 10 elements.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:";

TEST(TaskPrompts, Mmlu0ShotAnd2Shot) {
    const std::string desc = "The following are multiple choice questions (with answers) about abstract algebra.\n\n";
    slm::TaskConfig cfg = slm::task_preset("mmlu");
    cfg.dataset_path = eval_path("mmlu/dev/abstract_algebra_dev.csv");
    slm::Session s(model(), sopts());
    slm::TaskRunOptions o;
    o.limit = 1;
    o.num_fewshot = 0;
    auto r = slm::run_task(s, cfg, o, nullptr);
    ASSERT_EQ(r.items.size(), 1u);
    EXPECT_EQ(r.items[0].prompt, desc + kAbstractAlgebra0);
    EXPECT_EQ(r.items[0].continuations, (std::vector<std::string>{" A", " B", " C", " D"}));
    EXPECT_EQ(r.items[0].gold, 1);
    EXPECT_EQ(r.items[0].group, "abstract_algebra");
    // 2-shot on dev: the first dev questions other than the one asked (lm-eval's first_n)
    o.num_fewshot = 2;
    r = slm::run_task(s, cfg, o, nullptr);
    EXPECT_EQ(r.items[0].prompt,
              desc + kAbstractAlgebra1 + " B\n\n" + kAbstractAlgebra2 + " C\n\n" + kAbstractAlgebra0);
    o.limit = 2;  // item 1 skips itself: examples 0 and 2
    r = slm::run_task(s, cfg, o, nullptr);
    EXPECT_EQ(r.items[1].prompt, desc + kAbstractAlgebra0 + " B\n\n" + kAbstractAlgebra2 + " C\n\n" + kAbstractAlgebra1);
    EXPECT_EQ(r.n_items, 2u);
    ASSERT_EQ(r.subtasks.size(), 1u);
    ASSERT_EQ(r.categories.size(), 1u);
    EXPECT_EQ(r.categories[0].name, "stem");
    // 5-shot needs 6 dev questions: a clear error
    o.num_fewshot = 5;
    std::string e = error_of([&] { slm::run_task(s, cfg, o, nullptr); });
    EXPECT_NE(e.find("5-shot needs 6 example documents for abstract_algebra, there are 5"), std::string::npos) << e;
}

TEST(TaskPrompts, MmluCategories) {
    EXPECT_EQ(slm::mmlu_category("anatomy"), "stem");
    EXPECT_EQ(slm::mmlu_category("professional_law"), "humanities");
    EXPECT_EQ(slm::mmlu_category("econometrics"), "social_sciences");
    EXPECT_EQ(slm::mmlu_category("virology"), "other");
    // every shipped subject has a category, 19 / 13 / 12 / 13 as lm-eval's groups
    auto docs = slm::load_mmlu(eval_path("mmlu/dev"));
    std::map<std::string, std::set<std::string>> by;
    for (const auto& d : docs) by[slm::mmlu_category(d["subject"])].insert(d["subject"].get<std::string>());
    EXPECT_EQ(by.count(""), 0u);
    EXPECT_EQ(by["stem"].size(), 19u);
    EXPECT_EQ(by["humanities"].size(), 13u);
    EXPECT_EQ(by["social_sciences"].size(), 12u);
    EXPECT_EQ(by["other"].size(), 13u);
}

TEST(TaskPrompts, Gsm8kFewShotFromFile) {
    const std::string test = write_temp("gsm_test.jsonl",
        "{\"question\": \"Tom has 2 cats and buys 3 more. How many cats?\", \"answer\": \"2 + 3 = <<2+3=5>>5\\n#### 5\"}\n"
        "{\"question\": \"A box holds 4 pens. How many pens in 2 boxes?\", \"answer\": \"4 * 2 = <<4*2=8>>8\\n#### 8\"}\n");
    const std::string train = write_temp("gsm_train.jsonl",
        "{\"question\": \"Q zero?\", \"answer\": \"A zero\\n#### 0\"}\n"
        "{\"question\": \"Q one?\", \"answer\": \"A one\\n#### 1\"}\n"
        "{\"question\": \"Q two?\", \"answer\": \"A two\\n#### 2\"}\n");
    slm::TaskConfig cfg = slm::task_preset("gsm8k");
    cfg.dataset_path = test;
    cfg.fewshot_path = train;
    cfg.max_gen_toks = 8;
    slm::Session s(model(), sopts());
    slm::TaskRunOptions o;
    o.num_fewshot = 2;
    auto r = slm::run_task(s, cfg, o, nullptr);
    ASSERT_EQ(r.items.size(), 2u);
    // Python: random.Random(1234).sample(range(3), 2) -> [1, 0], then [0, 2]
    EXPECT_EQ(r.items[0].prompt,
              "Question: Q one?\nAnswer: A one\n#### 1\n\nQuestion: Q zero?\nAnswer: A zero\n#### 0\n\n"
              "Question: Tom has 2 cats and buys 3 more. How many cats?\nAnswer:");
    EXPECT_EQ(r.items[1].prompt,
              "Question: Q zero?\nAnswer: A zero\n#### 0\n\nQuestion: Q two?\nAnswer: A two\n#### 2\n\n"
              "Question: A box holds 4 pens. How many pens in 2 boxes?\nAnswer:");
    EXPECT_EQ(r.items[0].target, "2 + 3 = <<2+3=5>>5\n#### 5");
    ASSERT_EQ(r.metrics.size(), 2u);
    EXPECT_EQ(r.metrics[0].filter, "strict-match");
    EXPECT_EQ(r.metrics[1].filter, "flexible-extract");
    for (const auto& it : r.items) {
        EXPECT_EQ(it.filtered.size(), 2u);
        EXPECT_EQ(it.generation.find("Question:"), std::string::npos);  // cut at the stop string
    }
}

// ---- log-likelihoods ------------------------------------------------------------------------------

// The continuation's log-probability computed independently: one fresh session over the whole
// sequence, log-softmax by hand.
double reference_ll_tokens(const std::vector<int32_t>& whole, size_t nc);

double reference_ll(const std::string& ctx, const std::string& cont, bool& greedy) {
    const auto& v = model()->vocab();
    std::vector<int32_t> whole = v.tokenize(ctx + cont, true, false);
    const size_t nc = v.tokenize(ctx, true, false).size();
    slm::Session s(model(), sopts());
    std::vector<int32_t> in(whole.begin(), whole.end() - 1);
    s.eval(in, true);
    auto lg = s.logits();
    const size_t nv = model()->hparams().n_vocab;
    double ll = 0;
    greedy = true;
    for (size_t pos = nc; pos < whole.size(); ++pos) {
        const float* row = lg.data() + (pos - 1) * nv;
        double mx = -1e30;
        size_t arg = 0;
        for (size_t k = 0; k < nv; ++k)
            if (row[k] > mx) mx = row[k], arg = k;
        double z = 0;
        for (size_t k = 0; k < nv; ++k) z += std::exp(row[k] - mx);
        ll += row[whole[pos]] - mx - std::log(z);
        if (static_cast<int32_t>(arg) != whole[pos]) greedy = false;
    }
    return ll;
}

double reference_ll_tokens(const std::vector<int32_t>& whole, size_t nc) {
    slm::Session s(model(), sopts());
    std::vector<int32_t> in(whole.begin(), whole.end() - 1);
    s.eval(in, true);
    auto lg = s.logits();
    const size_t nv = model()->hparams().n_vocab;
    double ll = 0;
    for (size_t pos = nc; pos < whole.size(); ++pos) {
        const float* row = lg.data() + (pos - 1) * nv;
        double mx = -1e30;
        for (size_t k = 0; k < nv; ++k) mx = std::max<double>(mx, row[k]);
        double z = 0;
        for (size_t k = 0; k < nv; ++k) z += std::exp(row[k] - mx);
        ll += row[whole[pos]] - mx - std::log(z);
    }
    return ll;
}

TEST(TaskScoring, LoglikelihoodsMatchIndependentComputation) {
    auto docs = slm::load_arc(eval_path("arc/arc_easy_dev.jsonl"));
    auto p0 = prepared("arc_easy", docs, 0);
    auto p1 = prepared("arc_easy", docs, 1);
    for (bool reuse : {true, false}) {
        slm::Session s(model(), sopts());
        ev::Scorer sc(s, reuse);
        for (const auto* p : {&p0, &p1}) {
            for (const auto& [ctx, cont] : p->requests) {
                bool greedy = false;
                const double ref = reference_ll(ctx, cont, greedy);
                auto got = sc.score(ctx, cont);
                EXPECT_NEAR(got.ll, ref, 2e-3 * std::max(1.0, std::abs(ref))) << ctx << "|" << cont << " reuse " << reuse;
                EXPECT_EQ(got.is_greedy, greedy);
                EXPECT_LT(got.ll, 0);
            }
        }
        if (reuse) {
            EXPECT_LT(sc.n_evaluated, sc.n_without_reuse);
        } else {
            EXPECT_EQ(sc.n_evaluated, sc.n_without_reuse);
        }
    }
}

TEST(TaskScoring, EncodePairMovesTrailingSpaces) {
    slm::Session s(model(), sopts());
    ev::Scorer sc(s, true);
    const auto& v = model()->vocab();
    auto [c, k] = sc.encode_pair("Answer: ", "yes");
    std::vector<int32_t> whole = v.tokenize("Answer: yes", true, false);
    std::vector<int32_t> ctx = v.tokenize("Answer:", true, false);
    ASSERT_EQ(c, ctx);
    EXPECT_EQ(k, std::vector<int32_t>(whole.begin() + static_cast<long>(ctx.size()), whole.end()));
    // the same as asking for " yes" after "Answer:"
    auto [c2, k2] = sc.encode_pair("Answer:", " yes");
    EXPECT_EQ(c2, c);
    EXPECT_EQ(k2, k);
    if (v.add_bos()) EXPECT_EQ(c.front(), v.bos());
    bool greedy;
    EXPECT_NEAR(sc.score("Answer: ", "yes").ll, reference_ll("Answer:", " yes", greedy), 2e-3);
}

// lm-eval's truncation by hand: the model sees the last n_ctx tokens of (context + continuation)[:-1];
// the continuation tokens predicted inside that window are scored.
double window_ll(const std::vector<int32_t>& ctx, const std::vector<int32_t>& cont, size_t n_ctx) {
    std::vector<int32_t> full(ctx);
    full.insert(full.end(), cont.begin(), cont.end());
    std::vector<int32_t> in(full.begin(), full.end() - 1);
    const size_t start = in.size() > n_ctx ? in.size() - n_ctx : 0;
    in.erase(in.begin(), in.begin() + static_cast<long>(start));
    slm::Session s(model(), sopts());
    s.eval(in, true);
    auto lg = s.logits();
    const size_t nv = model()->hparams().n_vocab;
    double ll = 0;
    for (size_t pos = ctx.size(); pos < full.size(); ++pos) {
        if (pos - 1 < start) continue;  // predicted by a token outside the window
        const float* row = lg.data() + (pos - 1 - start) * nv;
        double mx = -1e30;
        for (size_t k = 0; k < nv; ++k) mx = std::max<double>(mx, row[k]);
        double z = 0;
        for (size_t k = 0; k < nv; ++k) z += std::exp(row[k] - mx);
        ll += row[full[pos]] - mx - std::log(z);
    }
    return ll;
}

TEST(TaskScoring, LongRequestsAreLeftTruncated) {
    slm::SessionOptions small = sopts();
    small.n_ctx = 16;
    slm::Session s(model(), small);
    ev::Scorer sc(s, true);
    const std::string ctx = "Once upon a time there was a little girl named Lily. She liked to play in the park with her friends";
    for (const std::string cont : {std::string(" and her dog."),
                                   std::string(" and her big brown dog who ran after the red ball all day long in the sun")}) {
        auto [c, k] = sc.encode_pair(ctx, cont);
        ASSERT_GT(c.size() + k.size(), 17u);
        const auto got = sc.score(c, k);
        EXPECT_NEAR(got.ll, window_ll(c, k, 16), 2e-3) << cont;
    }
    EXPECT_EQ(sc.n_truncated, 2u);
}

TEST(TaskScoring, KvReuseGivesTheSameResults) {
    slm::TaskConfig cfg = slm::task_preset("arc_challenge");
    cfg.dataset_path = eval_path("arc/arc_challenge_dev.jsonl");
    slm::TaskRunOptions o;
    o.limit = 6;
    o.num_fewshot = 2;  // a few-shot prefix, drawn from the set itself
    slm::Session s(model(), sopts());
    auto a = slm::run_task(s, cfg, o, nullptr);
    o.kv_reuse = false;
    auto b = slm::run_task(s, cfg, o, nullptr);
    ASSERT_EQ(a.items.size(), 6u);
    for (size_t i = 0; i < a.items.size(); ++i) {
        EXPECT_EQ(a.items[i].prompt, b.items[i].prompt);
        for (size_t c = 0; c < a.items[i].scores.size(); ++c)
            EXPECT_NEAR(a.items[i].scores[c].ll, b.items[i].scores[c].ll, 2e-3);
    }
    EXPECT_EQ(b.n_tokens_evaluated, b.n_tokens_without_reuse);
    EXPECT_GE(a.n_batched, 4u);  // choices in one pass, unless they do not fit in the context together
    EXPECT_EQ(b.n_batched, 0u);  // without reuse every request is evaluated alone
    // Batched choices give what scoring them one by one gives (bit for bit on the F16 cache).
    o.kv_reuse = true;
    o.batch_choices = false;
    auto c = slm::run_task(s, cfg, o, nullptr);
    EXPECT_EQ(c.n_batched, 0u);
    for (size_t i = 0; i < a.items.size(); ++i)
        for (size_t k = 0; k < a.items[i].scores.size(); ++k) {
            EXPECT_EQ(a.items[i].scores[k].ll, c.items[i].scores[k].ll) << i << " " << k;
            EXPECT_EQ(a.items[i].scores[k].is_greedy, c.items[i].scores[k].is_greedy);
        }
    EXPECT_EQ(a.n_tokens_without_reuse, b.n_tokens_without_reuse);
    EXPECT_LT(a.n_tokens_evaluated * 2, a.n_tokens_without_reuse);  // 4 choices share each context
    // metrics: acc is the mean of the per-item scores, its stderr the sample one
    std::vector<double> acc;
    for (const auto& it : a.items) acc.push_back(it.pred == it.gold);
    EXPECT_DOUBLE_EQ(a.metrics[0].value, ev::mean(acc));
    EXPECT_DOUBLE_EQ(a.metrics[0].stderr_, ev::mean_stderr(acc));
    EXPECT_EQ(a.metrics[1].metric, "acc_norm");
}

// ---- task files ----------------------------------------------------------------------------------

const char* kPiqaDocs =
    "{\"goal\": \"How do I open a jar?\", \"sol1\": \"Twist the lid.\", \"sol2\": \"Sing to it.\", \"label\": 0}\n"
    "{\"goal\": \"Keep bread fresh\", \"sol1\": \"Leave it open in the sun.\", \"sol2\": \"Put it in a bag.\", \"label\": 1}\n"
    "{\"goal\": \"Dry wet shoes\", \"sol1\": \"Stuff them with newspaper.\", \"sol2\": \"Fill them with water.\", \"label\": 0}\n";

TEST(TaskFiles, YamlAndJsonMatchTheBuiltInConfig) {
    const std::string data = write_temp("piqa_docs.jsonl", kPiqaDocs);
    const std::string yaml = write_temp("piqa.yaml",
        "task: piqa_local\n"
        "dataset_path: piqa_docs.jsonl\n"
        "dataset_format: jsonl\n"
        "output_type: multiple_choice\n"
        "doc_to_text: \"Question: {{goal}}\\nAnswer:\"\n"
        "doc_to_target: label\n"
        "doc_to_choice: \"{{[sol1, sol2]}}\"\n"
        "target_delimiter: \" \"\n"
        "fewshot_delimiter: \"\\n\\n\"\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        "  - metric: acc_norm\n    aggregation: mean\n    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n");
    const std::string jsn = write_temp("piqa.json", R"({"task": "piqa_local", "dataset_path": "piqa_docs.jsonl",
        "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "{{label}}", "doc_to_choice": "{{[sol1, sol2]}}",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]})");
    slm::TaskConfig builtin = slm::task_preset("piqa");
    builtin.dataset_path = data;
    slm::TaskConfig fy = slm::load_task_file(yaml);
    slm::TaskConfig fj = slm::load_task_file(jsn);
    EXPECT_EQ(fy.dataset_path, data);  // relative to the task file
    slm::Session s(model(), sopts());
    auto rb = slm::run_task(s, builtin, {}, nullptr);
    ASSERT_EQ(rb.items.size(), 3u);
    EXPECT_EQ(rb.items[0].prompt, "Question: How do I open a jar?\nAnswer:");
    EXPECT_EQ(rb.items[1].continuations[1], " Put it in a bag.");
    EXPECT_EQ(rb.items[1].gold, 1);
    for (const auto* cfg : {&fy, &fj}) {
        auto r = slm::run_task(s, *cfg, {}, nullptr);
        ASSERT_EQ(r.items.size(), rb.items.size());
        for (size_t i = 0; i < r.items.size(); ++i) {
            EXPECT_EQ(r.items[i].prompt, rb.items[i].prompt);
            EXPECT_EQ(r.items[i].gold, rb.items[i].gold);
            for (size_t c = 0; c < 2; ++c) EXPECT_NEAR(r.items[i].scores[c].ll, rb.items[i].scores[c].ll, 1e-9);
        }
        ASSERT_EQ(r.metrics.size(), 2u);
        EXPECT_DOUBLE_EQ(r.metrics[0].value, rb.metrics[0].value);
        EXPECT_DOUBLE_EQ(r.metrics[1].stderr_, rb.metrics[1].stderr_);
    }
    // the shipped example parses and runs on its own data
    slm::TaskConfig ex = slm::load_task_file(slm::test::source_dir() + "/data/tasks/piqa_example.yaml");
    auto rx = slm::run_task(s, ex, {}, nullptr);
    EXPECT_GT(rx.n_items, 0u);
}

TEST(TaskFiles, AccMutualInfo) {
    // acc_mutual_info: argmax of ll(choice | question) - ll(choice | nothing), the unconditional
    // continuation scored after the BOS token alone (lm-eval's prefix token)
    const std::string data = write_temp("mi_docs.jsonl", kPiqaDocs);
    slm::TaskConfig cfg = slm::task_preset("piqa");
    cfg.dataset_path = data;
    cfg.metric_list = {slm::task_metric("acc_mutual_info")};
    slm::Session s(model(), sopts());
    auto r = slm::run_task(s, cfg, {}, nullptr);
    ASSERT_EQ(r.items.size(), 3u);
    const auto& v = model()->vocab();
    for (const auto& it : r.items) {
        std::vector<double> mi;
        for (size_t c = 0; c < it.choices.size(); ++c) {
            bool g;
            const double cond = reference_ll(it.prompt, " " + it.choices[c], g);
            std::vector<int32_t> whole = v.tokenize(" " + it.choices[c], false, false);
            whole.insert(whole.begin(), v.bos());
            const double uncond = reference_ll_tokens(whole, 1);
            mi.push_back(cond - uncond);
        }
        EXPECT_EQ(it.values.at("acc_mutual_info"), static_cast<int>(ev::argmax_first(mi)) == it.gold ? 1.0 : 0.0);
    }
}

TEST(TaskFiles, GenerativeTaskFile) {
    slm::TaskConfig t = slm::parse_task_file(
        "task: arith\ndataset_path: x.jsonl\noutput_type: generate_until\n"
        "doc_to_text: \"Q: {{q}}\\nA:\"\ndoc_to_target: \"{{a}}\"\n"
        "generation_kwargs:\n  until: [\"\\n\", \"Q:\"]\n  do_sample: false\n  max_gen_toks: 16\n"
        "metric_list:\n  - metric: exact_match\n    ignore_case: true\n    regexes_to_ignore: [\",\"]\n"
        "filter_list:\n  - name: num\n    filter:\n      - function: regex\n        regex_pattern: \"(\\\\d+)\"\n"
        "        group_select: -1\n      - function: take_first\n",
        "arith.yaml", "/data");
    EXPECT_EQ(t.dataset_path, "/data/x.jsonl");
    EXPECT_EQ(t.until, (std::vector<std::string>{"\n", "Q:"}));
    EXPECT_EQ(t.max_gen_toks, 16);
    ASSERT_EQ(t.filter_list.size(), 1u);
    EXPECT_EQ(t.filter_list[0].steps[0].regex_pattern, "(\\d+)");
    EXPECT_EQ(t.filter_list[0].steps[0].group_select, -1);
    EXPECT_TRUE(t.metric_list[0].ignore_case);
    EXPECT_EQ(ev::apply_filter(t.filter_list[0], "it is 12 or 13"), "13");
}

TEST(TaskFiles, MalformedFilesNameFileAndKey) {
    auto err = [](const std::string& text) {
        return error_of([&] { slm::parse_task_file(text, "bad.yaml"); });
    };
    const std::string ok = "doc_to_text: \"{{q}}\"\ndoc_to_target: label\ndoc_to_choice: \"{{[a, b]}}\"\n";
    EXPECT_NO_THROW(slm::parse_task_file(ok, "ok.yaml"));
    std::string e = err("doc_to_text: [unclosed\n");
    EXPECT_NE(e.find("bad.yaml:"), std::string::npos) << e;
    EXPECT_NE(e.find("not valid YAML"), std::string::npos) << e;
    e = err(ok + "doc_to_txet: x\n");
    EXPECT_NE(e.find("task file bad.yaml: unknown key 'doc_to_txet'"), std::string::npos) << e;
    e = err(ok + "metric_list:\n  - metric: acc\n    weight: 2\n");
    EXPECT_NE(e.find("unknown key 'weight' in metric_list"), std::string::npos) << e;
    e = err("doc_to_target: label\ndoc_to_choice: \"{{[a, b]}}\"\n");
    EXPECT_NE(e.find("task file bad.yaml: key 'doc_to_text' is missing"), std::string::npos) << e;
    e = err("doc_to_text: \"{{q}\"\ndoc_to_target: label\ndoc_to_choice: \"{{[a, b]}}\"\n");
    EXPECT_NE(e.find("task file bad.yaml: key 'doc_to_text':1:"), std::string::npos) << e;
    EXPECT_NE(e.find("TemplateSyntaxError"), std::string::npos) << e;
    e = err(ok + "num_fewshot: many\n");
    EXPECT_NE(e.find("key 'num_fewshot': 'many' is not an integer"), std::string::npos) << e;
    e = err("doc_to_text: !function utils.doc_to_text\ndoc_to_target: label\ndoc_to_choice: c\n");
    EXPECT_NE(e.find("key 'doc_to_text': Python functions (!function) are not supported"), std::string::npos) << e;
    e = err(ok + "metric_list:\n  - metric: exact_match\n    ignore_case: \xc9\xc9\n");  // invalid UTF-8 (fuzz)
    EXPECT_NE(e.find("key 'metric_list.ignore_case': expected true or false"), std::string::npos) << e;
    e = error_of([] { slm::parse_task_file("{\"doc_to_text\": 1,", "bad.json"); });
    EXPECT_NE(e.find("task file bad.json: not valid JSON"), std::string::npos) << e;
    e = error_of([] { slm::load_task_file("/nonexistent/t.yaml"); });
    EXPECT_NE(e.find("/nonexistent/t.yaml: cannot open"), std::string::npos) << e;
}

TEST(TaskFiles, BadTemplatesAndGoldAtRunTime) {
    const std::string data = write_temp("rt_docs.jsonl", kPiqaDocs);
    slm::Session s(model(), sopts());
    auto run = [&](const std::string& extra) {
        const std::string path = write_temp("rt.yaml", "dataset_path: rt_docs.jsonl\ndoc_to_text: \"{{goal}}\"\n" + extra);
        return error_of([&] { slm::run_task(s, slm::load_task_file(path), {}, nullptr); });
    };
    std::string e = run("doc_to_target: label\ndoc_to_choice: \"{{ goal }}\"\n");
    EXPECT_NE(e.find("rt.yaml"), std::string::npos) << e;
    EXPECT_NE(e.find("key 'doc_to_choice': gives \"How do I open a jar?\", not a list"), std::string::npos) << e;
    e = run("doc_to_target: \"{{ label + 5 }}\"\ndoc_to_choice: \"{{[sol1, sol2]}}\"\n");
    EXPECT_NE(e.find("key 'doc_to_target': gold 5 is out of range (2 choices)"), std::string::npos) << e;
    e = run("doc_to_target: \"{{ missing_field }}\"\ndoc_to_choice: \"{{[sol1, sol2]}}\"\n");
    EXPECT_NE(e.find("rt.yaml: key 'doc_to_target':1: UndefinedError: 'missing_field' is undefined"), std::string::npos) << e;
    e = run("doc_to_target: \"{{ sol1 }}x\"\ndoc_to_choice: \"{{[sol1, sol2]}}\"\n");
    EXPECT_NE(e.find("is neither an index nor one of the 2 choices"), std::string::npos) << e;
}

// ---- report --------------------------------------------------------------------------------------

TEST(TaskReport, TableAndJson) {
    slm::TaskResult r;
    r.task = "arc_easy";
    r.num_fewshot = 0;
    r.metrics = {{"acc", "none", 0.25, 0.0125}, {"acc_norm", "none", 0.5, 0.02}};
    const std::string t = slm::format_task_table({r});
    EXPECT_EQ(t, "| Tasks  |Version|Filter|n-shot| Metric |   |Value |   |Stderr|\n"
                 "|--------|------:|------|-----:|--------|---|-----:|---|-----:|\n"
                 "|arc_easy|      1|none  |     0|acc     |↑  |0.2500|±  |0.0125|\n"
                 "|        |       |none  |     0|acc_norm|↑  |0.5000|±  |0.0200|\n");
    slm::TaskConfig cfg = slm::task_preset("arc_easy");
    json j = json::parse(slm::task_result_json(cfg, {}, r));
    EXPECT_DOUBLE_EQ(j["results"]["acc,none"].get<double>(), 0.25);
    EXPECT_DOUBLE_EQ(j["results"]["acc_stderr,none"].get<double>(), 0.0125);
    EXPECT_EQ(j["config"]["doc_to_text"], "Question: {{question}}\nAnswer:");
}

} // namespace

// ---- the CLI -------------------------------------------------------------------------------------

namespace {

json cli_json(const std::vector<std::string>& args, const std::string& name) {
    const std::string out = slm::test::temp_dir() + "/" + name + ".json";
    std::vector<std::string> a = args;
    a.push_back("--json");
    a.push_back(out);
    auto r = slm::test::run_cli(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Tasks"), std::string::npos) << r.out;
    return json::parse(slm::test::read_text(out));
}

TEST(TaskCli, ShippedFilesWithLimit) {
    json j = cli_json({"eval", "arc", "--set", "challenge", "--limit", "5", "-t", "1"}, "arc");
    EXPECT_EQ(j["results"]["n"], 5);
    EXPECT_EQ(j["items"].size(), 5u);
    EXPECT_EQ(j["config"]["task"], "arc_challenge");
    EXPECT_EQ(j["items"][0]["loglikelihoods"].size(), j["items"][0]["choices"].size());
    EXPECT_TRUE(j["results"].contains("acc_norm_stderr,none"));
    EXPECT_LE(j["n_tokens_evaluated"].get<uint64_t>(), j["n_tokens_without_reuse"].get<uint64_t>());

    j = cli_json({"eval", "hellaswag", "--limit", "3", "-t", "1"}, "hs");
    EXPECT_EQ(j["items"].size(), 3u);
    EXPECT_EQ(j["items"][0]["choices"].size(), 4u);

    j = cli_json({"eval", "winogrande", "--limit", "4", "-t", "1"}, "wg");
    EXPECT_EQ(j["items"].size(), 4u);
    EXPECT_EQ(j["items"][0]["continuations"][0], " always got the easier cases.");

    // --limit applies to each subject, as lm-eval's limit to each subtask
    j = cli_json({"eval", "mmlu", "--limit", "1", "--num-fewshot", "1", "-t", "1"}, "mmlu");
    EXPECT_EQ(j["items"].size(), 57u);
    EXPECT_EQ(j["config"]["num_fewshot"], 1);
    EXPECT_EQ(j["subtasks"].size(), 57u);
    EXPECT_EQ(j["subtasks"]["abstract_algebra"]["n"], 1);
    EXPECT_EQ(j["categories"]["stem"]["n"], 19);
    EXPECT_EQ(j["categories"]["humanities"]["n"], 13);
    EXPECT_EQ(j["results"]["n"], 57);

    j = cli_json({"eval", "custom", "--task-file", slm::test::source_dir() + "/data/tasks/piqa_example.yaml", "-t", "1"},
                 "custom");
    EXPECT_EQ(j["items"].size(), 6u);
    EXPECT_EQ(j["config"]["task"], "piqa_example");

    const std::string gsm = write_temp("cli_gsm.jsonl",
        "{\"question\": \"What is 2 plus 2?\", \"answer\": \"2 + 2 = 4\\n#### 4\"}\n"
        "{\"question\": \"What is 3 plus 3?\", \"answer\": \"3 + 3 = 6\\n#### 6\"}\n");
    j = cli_json({"eval", "gsm8k", "-f", gsm, "--fewshot-file", gsm, "--num-fewshot", "1", "-t", "1"}, "gsm");
    EXPECT_EQ(j["items"].size(), 2u);
    EXPECT_TRUE(j["results"].contains("exact_match,strict-match"));
    EXPECT_TRUE(j["results"].contains("exact_match,flexible-extract"));

    // errors: a clear message and a non-zero exit
    auto r = slm::test::run_cli({"eval", "custom", "--task-file", "/nonexistent.yaml"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("/nonexistent.yaml: cannot open"), std::string::npos) << r.err;
    r = slm::test::run_cli({"eval", "arc", "--set", "medium"});
    EXPECT_NE(r.exit_code, 0);
}

} // namespace

TEST(TaskScoring, BatchedChoicesEqualOneByOne) {
    // WinoGrande: the contexts differ (the option fills the blank), the continuation is shared;
    // MMLU: one-token continuations, scored from the shared prefix's last row with no branch.
    struct Case {
        const char* preset;
        std::string file;
    };
    for (const Case& k : {Case{"winogrande", eval_path("winogrande/winogrande_1.1_dev.jsonl")},
                          Case{"mmlu", eval_path("mmlu/dev/anatomy_dev.csv")}}) {
        SCOPED_TRACE(k.preset);
        slm::TaskConfig cfg = slm::task_preset(k.preset);
        cfg.dataset_path = k.file;
        slm::TaskRunOptions o;
        o.limit = 5;
        o.num_fewshot = 0;
        slm::Session s(model(), sopts());
        const auto a = slm::run_task(s, cfg, o, nullptr);
        o.batch_choices = false;
        const auto b = slm::run_task(s, cfg, o, nullptr);
        EXPECT_EQ(a.n_batched, 5u);
        EXPECT_EQ(b.n_batched, 0u);
        ASSERT_EQ(a.items.size(), b.items.size());
        for (size_t i = 0; i < a.items.size(); ++i)
            for (size_t c = 0; c < a.items[i].scores.size(); ++c) {
                EXPECT_EQ(a.items[i].scores[c].ll, b.items[i].scores[c].ll) << i << " " << c;
                EXPECT_EQ(a.items[i].scores[c].is_greedy, b.items[i].scores[c].is_greedy);
                EXPECT_EQ(a.items[i].scores[c].n_tokens, b.items[i].scores[c].n_tokens);
            }
    }
}
