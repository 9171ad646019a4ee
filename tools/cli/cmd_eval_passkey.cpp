// slm eval passkey: long-context retrieval. A five-digit key hidden at several depths in filler
// text of several lengths; prints the accuracy per (length, depth) with its standard error, and
// optionally every trial as JSON.
#include "commands.h"
#include "progress.h"

#include "slm/error.h"
#include "slm/model.h"
#include "slm/passkey.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace slm::cli {

namespace {

struct PasskeyOptions {
    std::string model;
    PasskeyParams params;
    uint32_t n_ctx = 0;
    int threads = 0;
    std::string json_out;
};

nlohmann::json cell_json(const PasskeyCell& c) {
    return {{"length", c.length}, {"depth", c.depth}, {"n", c.n}, {"n_found", c.n_found},
            {"accuracy", c.accuracy()}, {"stderr", c.stderr_acc()}};
}

// Written to a temp file then renamed, so OUT is whole or untouched.
void write_json(const std::string& path, const nlohmann::json& j) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary);
        if (!out) fail("eval passkey: cannot write %s", tmp.c_str());
        out << j.dump(2) << "\n";
        if (!out) fail("eval passkey: write error on %s", tmp.c_str());
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) fail("eval passkey: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), ec.message().c_str());
}

void eval_passkey(const PasskeyOptions& o) {
    const std::string path = o.model.empty() ? default_model() : o.model;
    std::shared_ptr<const Model> model = Model::load(path);
    const uint32_t n_ctx_train = model->hparams().n_ctx_train;
    if (o.n_ctx > 0 && n_ctx_train > 0 && o.n_ctx > n_ctx_train) {
        std::fprintf(stderr, "slm: warning: --ctx %u is beyond the model's training context of %u tokens\n", o.n_ctx,
                     n_ctx_train);
    }
    // The cache only as long as the longest length needs, refused (before the cache is allocated)
    // beyond --ctx or the model's training context.
    uint32_t longest = 0;
    for (uint32_t len : o.params.lengths) longest = std::max(longest, len);
    const uint32_t allowed = o.n_ctx > 0 ? o.n_ctx : n_ctx_train;
    if (allowed > 0 && longest > allowed) {
        fail("eval passkey: length %u exceeds the context of %u tokens (%s)", longest, allowed,
             o.n_ctx > 0 ? "--ctx" : "the model's training context; --ctx sets another");
    }
    SessionOptions so;
    so.n_ctx = std::max<uint32_t>(longest, 1);
    so.n_threads = o.threads;
    Session session(model, so);

    std::fprintf(stderr, "slm: passkey retrieval, %zu lengths x %zu depths x %d trials, context %u, %d threads\n",
                 o.params.lengths.size(), o.params.depths.size(), o.params.n_trials, session.n_ctx(),
                 session.n_threads());
    std::unique_ptr<ProgressBar> pb;
    const PasskeyResult r = run_passkey(session, o.params, [&](size_t done, size_t total) {
        if (!pb) pb = std::make_unique<ProgressBar>("trials", total);
        pb->update(done);
    });
    if (pb) pb->finish();

    std::printf("%s", passkey_table(r).c_str());
    std::fprintf(stderr, "slm: %llu prompt tokens, %llu evaluated (the rest reused from the KV cache), %.1f s\n",
                 static_cast<unsigned long long>(r.n_prompt_tokens), static_cast<unsigned long long>(r.n_eval_tokens),
                 r.seconds);

    if (!o.json_out.empty()) {
        nlohmann::json trials = nlohmann::json::array();
        for (const PasskeyTrial& t : r.trials) {
            trials.push_back({{"length", t.length}, {"depth", t.depth}, {"trial", t.trial}, {"key", t.key},
                              {"n_prompt", t.n_prompt}, {"n_reused", t.n_reused}, {"answer", t.answer},
                              {"found", t.found}});
        }
        nlohmann::json cells = nlohmann::json::array();
        for (const PasskeyCell& c : r.cells) cells.push_back(cell_json(c));
        nlohmann::json overall = cell_json(r.overall);
        overall.erase("length");
        overall.erase("depth");
        const nlohmann::json j = {
            {"task", "passkey"},
            {"model", path},
            {"n_ctx", r.n_ctx},
            {"seed", o.params.seed},
            {"n_trials", o.params.n_trials},
            {"lengths", o.params.lengths},
            {"depths", o.params.depths},
            {"overall", overall},
            {"cells", cells},
            {"trials", trials},
            {"n_prompt_tokens", r.n_prompt_tokens},
            {"n_eval_tokens", r.n_eval_tokens},
            {"seconds", r.seconds},
        };
        // Answers are model output: invalid UTF-8 (a token cut mid-character) is replaced, not fatal.
        write_json(o.json_out, nlohmann::json::parse(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    }
}

} // namespace

void add_eval_passkey(CLI::App& eval) {
    auto o = std::make_shared<PasskeyOptions>();
    CLI::App* sub = eval.add_subcommand(
        "passkey", "long-context retrieval: find a 5-digit key hidden at several depths in filler text");
    sub->add_option("-m,--model", o->model, "GGUF model file or Hugging Face model folder (default: $SLM_MODEL or the bundled stories260K)");
    sub->add_option("--lengths", o->params.lengths, "Prompt lengths in tokens, comma-separated")
        ->delimiter(',')->default_str("128,256,512")->check(CLI::PositiveNumber);
    sub->add_option("--depths", o->params.depths, "Key depths: 0 = start, 1 = end of the filler, comma-separated")
        ->delimiter(',')->default_str("0,0.25,0.5,0.75,1")->check(CLI::Range(0.0, 1.0));
    sub->add_option("--trials", o->params.n_trials, "Keys per (length, depth)")->default_val(5)->check(CLI::Range(1, 1000000));
    sub->add_option("--seed", o->params.seed, "Seed of the keys")->default_val(1234);
    sub->add_option("-n,--n-predict", o->params.n_predict, "Most tokens generated per answer")->default_val(8)->check(CLI::Range(1, 256));
    sub->add_option("-c,--ctx", o->n_ctx, "Context length (default: the model's training context); longer lengths are refused");
    sub->add_option("-t,--threads", o->threads, "Threads (0 = one per physical core)")->default_val(0)->check(CLI::NonNegativeNumber);
    sub->add_option("--json", o->json_out, "Also write the cells and every trial to this JSON file");
    sub->add_option("--limit", o->params.limit, "Run at most N trials in all (cells in order); 0 = all")->default_val(0);
    sub->callback([o]() { eval_passkey(*o); });
}

} // namespace slm::cli
