// slm run: generate text from a prompt.
#include "commands.h"

#include "slm/distill.h"
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/model.h"
#include "slm/speculative.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

namespace slm::cli {

namespace {

struct RunOptions {
    std::string model, prompt, prompt_file, kv_type = "f16", lora, draft;
    bool prompt_given = false, json = false, no_special = false, low_memory = false, mlock = false, swa_full = false;
    SpeculativeParams spec;
    uint32_t n_ctx = 0;
    int threads = 0;
    GenerateParams gen;
};

void run(const RunOptions& o) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string path = o.model.empty() ? default_model() : o.model;
    if (o.low_memory && !o.lora.empty())
        fail("--low-memory streams the weights from the file, but a --lora merge holds them in memory: use one or the other");
    const Model::LoadOptions lo{.repack = !o.low_memory};  // streaming reads the file's own layout
    std::shared_ptr<const Model> model = o.lora.empty() ? Model::load(path, lo) : load_model_with_lora(path, o.lora);
    if (o.mlock) model->lock_weights();
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    std::string text = o.prompt_file.empty() ? o.prompt : read_text_file(o.prompt_file);
    std::vector<int32_t> prompt = model->vocab().tokenize(text, true, !o.no_special);
    if (prompt.empty()) fail("the prompt tokenizes to nothing and the model adds no BOS token; give a prompt with -p");

    SessionOptions so;
    const HParams& hp = model->hparams();
    const uint32_t want = static_cast<uint32_t>(prompt.size()) + static_cast<uint32_t>(std::max(o.gen.n_predict, 0));
    so.n_ctx = o.n_ctx ? o.n_ctx : std::max(std::min<uint32_t>(hp.n_ctx_train, 4096), want);
    so.n_threads = o.threads;
    so.low_memory = o.low_memory;
    so.swa_full = o.swa_full;
    if (!type_from_name(o.kv_type, &so.kv_type)) fail("--cache-type '%s' is not a type name (f16, f32, q8_0, q4_0)", o.kv_type.c_str());
    Session session(model, so);

    // Speculative decoding: a draft model of the same vocabulary, or prompt lookup.
    std::shared_ptr<const Model> draft_model;
    std::unique_ptr<Session> draft;
    if (!o.draft.empty()) {
        draft_model = Model::load(o.draft, lo);
        if (o.mlock) draft_model->lock_weights();
        check_draft_vocab(*model, *draft_model);
        draft = std::make_unique<Session>(draft_model, so);
    }
    const bool speculative = draft != nullptr || o.spec.lookup;
    if (speculative && o.gen.context_shift)
        fail("--context-shift is not supported with --draft or --lookup (speculative decoding stops at the context's end)");
    auto on_text = [&](std::string_view s) {
        if (!o.json) {
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
        }
        return true;
    };
    SpeculativeResult sr;
    if (speculative) sr = generate_speculative(session, draft.get(), prompt, o.gen, o.spec, on_text);
    else sr.gen = generate(session, prompt, o.gen, on_text);
    const GenerateResult& r = sr.gen;
    const GenerateStats& st = r.stats;
    const size_t rss = peak_rss_bytes();
    if (o.json) {
        nlohmann::json j;
        j["prompt_tokens"] = prompt;
        j["tokens"] = r.tokens;
        j["text"] = r.text;
        j["stop_reason"] = r.stop_reason;
        j["timings"] = {{"load_ms", load_ms},           {"prompt_tokens", st.n_prompt}, {"prompt_ms", st.prompt_ms},
                        {"prompt_tps", st.prompt_tps()}, {"ttft_ms", st.ttft_ms},       {"gen_tokens", st.n_gen},
                        {"gen_ms", st.gen_ms},           {"gen_tps", st.gen_tps()},      {"peak_rss_bytes", rss},
                        {"threads", session.n_threads()}};
        if (speculative)
            j["speculative"] = {{"drafted", sr.spec.n_drafted},
                                {"accepted", sr.spec.n_accepted},
                                {"acceptance", sr.spec.acceptance()},
                                {"target_passes", sr.spec.n_target_passes},
                                {"draft_passes", sr.spec.n_draft_passes},
                                {"tokens_per_pass", sr.tokens_per_pass()}};
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::printf("\n");
    }
    std::fprintf(stderr,
                 "slm: load %.1f ms | prompt %u tok, %.1f tok/s | ttft %.2f ms | gen %u tok, %.1f tok/s | "
                 "peak RSS %.1f MiB | %d threads | stop: %s\n",
                 load_ms, st.n_prompt, st.prompt_tps(), st.ttft_ms, st.n_gen, st.gen_tps(), rss / 1048576.0,
                 session.n_threads(), r.stop_reason.c_str());
    if (speculative)
        std::fprintf(stderr, "slm: %s: drafted %llu, accepted %llu (%.1f %%), %.2f tokens per target pass\n",
                     o.spec.lookup ? "prompt lookup" : "draft model", static_cast<unsigned long long>(sr.spec.n_drafted),
                     static_cast<unsigned long long>(sr.spec.n_accepted), 100 * sr.spec.acceptance(), sr.tokens_per_pass());
}

} // namespace

void add_run(CLI::App& app) {
    auto o = std::make_shared<RunOptions>();
    CLI::App* sub = app.add_subcommand("run", "Generate text from a prompt (streams it to stdout)");
    sub->add_option("-m,--model", o->model, "GGUF model file or Hugging Face model folder (default: $SLM_MODEL or the bundled stories260K)");
    auto* p = sub->add_option("-p,--prompt", o->prompt, "Prompt text (default: empty, i.e. BOS only)");
    auto* f = sub->add_option("-f,--file", o->prompt_file, "Read the prompt from a file")->check(CLI::ExistingFile);
    p->excludes(f);
    sub->add_option("--lora", o->lora, "LoRA adapter GGUF (slm finetune --lora), merged into the model at load (F32)")
        ->check(CLI::ExistingFile);
    sub->add_option("-n,--n-predict", o->gen.n_predict, "Tokens to generate; -1 = until end of text or context")
        ->default_val(256)->check(CLI::Range(-1, 1 << 24));
    sub->add_option("--temp", o->gen.sampling.temp, "Temperature; 0 = greedy")->default_val(0.8)->check(CLI::Range(0.0, 100.0));
    sub->add_option("--top-k", o->gen.sampling.top_k, "Keep the k most likely tokens; 0 = all")->default_val(40)->check(CLI::NonNegativeNumber);
    sub->add_option("--top-p", o->gen.sampling.top_p, "Nucleus sampling mass; 1 = off")->default_val(0.95)->check(CLI::Range(0.0, 1.0));
    sub->add_option("--min-p", o->gen.sampling.min_p, "Drop tokens below min-p x the top probability; 0 = off")->default_val(0.05)->check(CLI::Range(0.0, 1.0));
    sub->add_option("--repeat-penalty", o->gen.sampling.repeat_penalty, "Repetition penalty; 1 = off")->default_val(1.0)->check(CLI::Range(0.0, 10.0));
    sub->add_option("--repeat-last-n", o->gen.sampling.penalty_last_n, "Tokens the penalties look back over")->default_val(64)->check(CLI::Range(0, 1 << 20));
    sub->add_option("--frequency-penalty", o->gen.sampling.freq_penalty, "Frequency penalty; 0 = off")->default_val(0.0)->check(CLI::Range(-10.0, 10.0));
    sub->add_option("--presence-penalty", o->gen.sampling.presence_penalty, "Presence penalty; 0 = off")->default_val(0.0)->check(CLI::Range(-10.0, 10.0));
    sub->add_option("-s,--seed", o->gen.sampling.seed, "Random seed: the same seed repeats a run")->default_val(42);
    sub->add_option("--stop", o->gen.stop, "Stop string (repeatable)");
    sub->add_flag("--ignore-eos", o->gen.ignore_eos, "Keep generating past end-of-text tokens");
    sub->add_flag("--context-shift", o->gen.context_shift,
                  "When the context (-c) is full, forget half of the tokens after the first --keep and go on (StreamingLLM "
                  "eviction: constant memory for any -n)");
    sub->add_option("--keep", o->gen.n_keep, "Tokens kept at the start by --context-shift (attention sinks)")
        ->default_val(4)->check(CLI::Range(0, 1 << 20));
    sub->add_flag("--no-special", o->no_special, "Do not parse special tokens (<s>, <|im_start|>) in the prompt");
    sub->add_option("-c,--ctx-size", o->n_ctx, "Context length (default: training context up to 4096, raised to fit)")
        ->check(CLI::Range(0, 1 << 20));
    sub->add_option("--cache-type,--kv-type", o->kv_type, "KV cache type: f16 (default, as llama.cpp), f32, q8_0 or q4_0")
        ->check(CLI::IsMember({"f16", "f32", "q8_0", "q4_0"}, CLI::ignore_case));
    sub->add_option("-t,--threads", o->threads, "Threads (default: one per physical core)")->check(CLI::Range(0, 256));
    auto* dr = sub->add_option("--draft", o->draft, "Speculative decoding with this draft model (same vocabulary, smaller)")
        ->check(CLI::ExistingFile);
    auto* lk = sub->add_flag("--lookup", o->spec.lookup, "Speculative decoding drafted by prompt lookup (n-grams of the prompt and output)");
    dr->excludes(lk);
    sub->add_option("--draft-max", o->spec.draft_max, "Most tokens drafted per target pass")->default_val(16)->check(CLI::Range(1, 1024));
    sub->add_option("--draft-min-p", o->spec.draft_p_min, "Stop drafting when the draft's top token is less likely than this")
        ->default_val(0.0)->check(CLI::Range(0.0, 1.0));
    sub->add_flag("--draft-adaptive", o->spec.adaptive, "Draft length follows acceptance (kept + 1 after a rejection, doubled after a full accept)");
    sub->add_option("--lookup-ngram", o->spec.ngram_max, "Prompt lookup: longest n-gram matched")->default_val(3)->check(CLI::Range(1, 64));
    sub->add_option("--lookup-ngram-min", o->spec.ngram_min, "Prompt lookup: shortest n-gram matched")->default_val(1)->check(CLI::Range(1, 64));
    auto* lm = sub->add_flag("--low-memory", o->low_memory,
                             "Stream the weights layer by layer (read ahead, released after use): resident memory about two layers");
    sub->add_flag("--mlock", o->mlock, "Lock the weights in RAM (fails if ulimit -l is too small)")->excludes(lm);
    sub->add_flag("--swa-full", o->swa_full, "Sliding-window layers (Gemma 2/3) keep the whole context, not only their window (more memory)");
    sub->add_flag("--json", o->json, "Print one JSON object (prompt_tokens, tokens, text, timings) instead of text");
    sub->callback([o]() { run(*o); });
}

} // namespace slm::cli
