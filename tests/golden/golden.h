// golden.h - runs a model over one of llama.cpp's golden dumps (../shared/reference/README.md).
//
// For every dump line: the same prompt tokens; teacher-forced logits for every prompt position
// within a tolerance relative to the row's largest |logit|; and the greedy continuation equal to
// llama.cpp's up to the first step whose top-1/top-2 gap is below the logit tolerance (past such
// a near-tie either choice is right and the sequences may then legitimately part). Each
// architecture's test file lists its cases and the reasons for their tolerances.
#pragma once

#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace slm::test {

struct GoldenCase {
    const char* name;
    std::string model;   // GGUF path
    std::string dump;    // JSONL path
    GGMLType kv;         // KV cache type to run with
    double tol_rel;      // |ours - ref| <= tol_rel * max|ref| per row
    bool shared;         // needs ../shared
    double min_exact;    // at least this share of rows within 1e-4 * max|ref| (see above)
};

inline void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name; }

// A file of ../shared/reference/archs/<arch>/.
inline std::string arch_ref(const std::string& arch, const std::string& file) {
    return shared_path("reference/archs/" + arch + "/" + file);
}

// n_batch > 0: evaluate the prompts in chunks of n_batch (with sliding-window layers that makes
// their caches rings of n_swa + n_batch rows, which the prompts and continuations then wrap).
inline void run_golden(const GoldenCase& c, uint32_t n_batch = 0) {
    if (c.shared) SLM_REQUIRE_SHARED();
    auto model = Model::load(c.model);
    std::ifstream in(c.dump);
    ASSERT_TRUE(in) << c.dump;
    std::string line;
    int n_lines = 0;
    double worst_rel = 0;
    int n_rows = 0, n_exact = 0;
    size_t n_greedy = 0;
    double case_diff = 0;  // largest |diff| over every prompt row of this case
    struct Pending {
        std::unique_ptr<Session> session;
        std::vector<int32_t> greedy;
        std::vector<double> gap;
        std::vector<float> last;
        std::string prompt;
    };
    std::vector<Pending> pending;
    while (std::getline(in, line)) {
        auto j = nlohmann::json::parse(line);
        const std::string prompt = j["prompt"];
        SCOPED_TRACE(c.name + std::string(": prompt ") + nlohmann::json(prompt).dump());
        const auto ref_tokens = j["tokens"].get<std::vector<int32_t>>();
        std::vector<int32_t> toks = model->vocab().tokenize(prompt, true, true);
        ASSERT_EQ(toks, ref_tokens);

        SessionOptions so;
        so.n_ctx = 512;
        so.kv_type = c.kv;
        so.n_threads = 2;
        if (n_batch > 0) so.n_batch = n_batch;
        auto s = std::make_unique<Session>(model, so);
        s->eval(toks, true);
        auto logits = s->logits();
        const size_t nv = model->hparams().n_vocab;
        const auto& ref = j["logits"];
        double line_diff = 0;  // largest |diff| over this prompt's rows
        ASSERT_EQ(ref.size(), toks.size());
        for (size_t r = 0; r < toks.size(); ++r) {
            const auto row = ref[r].get<std::vector<float>>();
            ASSERT_EQ(row.size(), nv);
            double mx = 0, diff = 0;
            for (size_t i = 0; i < nv; ++i) {
                mx = std::max(mx, std::fabs(double(row[i])));
                diff = std::max(diff, std::fabs(double(row[i]) - logits[r * nv + i]));
            }
            worst_rel = std::max(worst_rel, diff / mx);
            line_diff = std::max(line_diff, diff);
            ++n_rows;
            n_exact += diff <= 1e-4 * mx;
            EXPECT_LE(diff, c.tol_rel * mx) << "row " << r << " max|ref| " << mx;
        }

        case_diff = std::max(case_diff, line_diff);
        pending.push_back({std::move(s), j["greedy"].get<std::vector<int32_t>>(), j["greedy_gap"].get<std::vector<double>>(),
                           std::vector<float>(logits.end() - nv, logits.end()), prompt});
        ++n_lines;
    }
    // Greedy continuations, not stopping at EOS, as the dumps were made. A step whose top-1/top-2
    // gap is within twice the largest logit difference seen on this case's prompts is a
    // near-tie: either token is right, and the sequences may then part (the generated steps have
    // no reference logits; their differences are of the prompts' size).
    const double tie = 2 * case_diff + 1e-4;
    const size_t nv = model->hparams().n_vocab;
    for (Pending& p : pending) {
        SCOPED_TRACE(c.name + std::string(": greedy from prompt ") + nlohmann::json(p.prompt).dump());
        size_t steps_checked = 0;
        for (size_t step = 0; step < p.greedy.size(); ++step, ++steps_checked) {
            const int32_t tok = static_cast<int32_t>(std::max_element(p.last.begin(), p.last.end()) - p.last.begin());
            if (p.gap[step] < tie) break;  // a near-tie
            ASSERT_EQ(tok, p.greedy[step]) << "greedy step " << step << " (gap " << p.gap[step] << ")";
            const float* l = p.session->eval(std::span<const int32_t>(&tok, 1));
            p.last.assign(l, l + nv);
        }
        n_greedy += steps_checked;
    }
    EXPECT_GT(n_lines, 0);
    const double exact = n_rows ? double(n_exact) / n_rows : 0;
    EXPECT_GE(exact, c.min_exact);
    std::printf("[ %s ] %d prompts, worst row |diff|/max|logit| = %.3g (bound %.3g), rows within 1e-4: %.0f%%, greedy steps "
                "equal before a near-tie: %zu\n",
                c.name, n_lines, worst_rel, c.tol_rel, 100 * exact, n_greedy);
}

} // namespace slm::test
