// slm chat: an interactive multi-turn chat in the terminal.
//
// Lines typed are user turns; the reply streams as it is generated. Commands: /reset (start
// again), /save FILE (the conversation as JSON), /exit (or end of input). Ctrl-C stops the
// reply being generated, not the program. The KV cache is kept between turns (ChatSession).
#include "commands.h"

#include "slm/chat_session.h"
#include "slm/error.h"
#include "slm/model.h"

#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

namespace slm::cli {

namespace {

struct ChatCliOptions {
    std::string model, system, template_file, kv_type = "f16";
    uint32_t n_ctx = 0;
    int threads = 0;
    bool quiet = false;
    GenerateParams gen;
};

std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) { g_interrupted.store(true); }

// SIGINT sets a flag (no SA_RESTART: a read waiting for input returns, so Ctrl-C at the prompt
// is seen too); the previous handler comes back when the chat ends.
struct SigintGuard {
    struct sigaction old{};
    SigintGuard() {
        struct sigaction sa{};
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        sigaction(SIGINT, &sa, &old);
    }
    ~SigintGuard() { sigaction(SIGINT, &old, nullptr); }
};

void chat(const ChatCliOptions& o) {
    std::shared_ptr<const Model> model = Model::load(o.model.empty() ? default_model() : o.model);
    ChatOptions co;
    co.system = o.system;
    if (!o.template_file.empty()) {
        co.chat_template = read_text_file(o.template_file);
        co.chat_template_name = o.template_file;
    }
    co.gen = o.gen;
    co.session.n_ctx = o.n_ctx;
    co.session.n_threads = o.threads;
    if (!type_from_name(o.kv_type, &co.session.kv_type)) fail("--cache-type '%s' is not a type name (f16, f32, q8_0, q4_0)", o.kv_type.c_str());
    ChatSession chat(model, co);
    SigintGuard guard;  // before the banner: once it is out, Ctrl-C no longer ends the program
    if (chat.template_is_fallback())
        std::fprintf(stderr, "slm: the model has no chat template (tokenizer.chat_template); using ChatML. "
                             "--chat-template FILE sets one.\n");
    if (!o.quiet)
        std::fprintf(stderr, "slm chat: %s, context %u tokens. /reset, /save FILE, /exit; Ctrl-C stops a reply.\n",
                     model->hparams().name.empty() ? model->hparams().arch.c_str() : model->hparams().name.c_str(),
                     chat.n_ctx());

    std::string line;
    for (;;) {
        if (!o.quiet) {
            std::fputs("> ", stdout);
            std::fflush(stdout);
        }
        g_interrupted.store(false);
        if (!std::getline(std::cin, line)) {
            if (g_interrupted.load()) {  // Ctrl-C at the prompt: the read was interrupted, not at end
                std::cin.clear();
                std::clearerr(stdin);
                std::fputs("\n(/exit to quit)\n", stdout);
                continue;
            }
            break;  // end of input
        }
        if (line.empty()) continue;
        if (line == "/exit" || line == "/quit") break;
        if (line == "/reset") {
            chat.reset();
            std::fputs("(conversation reset)\n", stdout);
            continue;
        }
        if (line.rfind("/save", 0) == 0) {
            std::string path = line.size() > 5 ? line.substr(5) : "";
            path.erase(0, path.find_first_not_of(' '));
            if (path.empty()) {
                std::fputs("(usage: /save FILE)\n", stdout);
                continue;
            }
            try {
                chat.save(path);
                std::printf("(saved %zu messages to %s)\n", chat.messages().size(), path.c_str());
            } catch (const Error& e) {
                std::printf("(%s)\n", e.what());
            }
            continue;
        }
        if (line[0] == '/' && line.find(' ') == std::string::npos && line.size() > 1) {
            std::printf("(unknown command %s: /reset, /save FILE, /exit)\n", line.c_str());
            continue;
        }
        g_interrupted.store(false);
        try {
            GenerateResult r = chat.send(line, [](std::string_view s) {
                std::fwrite(s.data(), 1, s.size(), stdout);
                std::fflush(stdout);
                return !g_interrupted.load();
            });
            std::fputs("\n", stdout);
            if (r.stop_reason == "callback") std::fputs("(stopped)\n", stdout);
            if (r.stop_reason == "context")
                std::printf("(the context of %u tokens is full: /reset to start a new conversation)\n", chat.n_ctx());
            std::fflush(stdout);
            if (!o.quiet)
                std::fprintf(stderr, "[%u new prompt tokens, %zu reused from the cache; %u generated, %.1f tok/s; %u/%u]\n",
                             r.stats.n_prompt, chat.reused_last(), r.stats.n_gen, r.stats.gen_tps(), chat.n_past(),
                             chat.n_ctx());
        } catch (const Error& e) {
            std::printf("(%s)\n", e.what());
        }
    }
}

} // namespace

void add_chat(CLI::App& app) {
    auto o = std::make_shared<ChatCliOptions>();
    CLI::App* sub = app.add_subcommand("chat", "Interactive multi-turn chat with the model's chat template");
    sub->add_option("-m,--model", o->model, "GGUF model file or Hugging Face folder (default: $SLM_MODEL or the bundled stories260K)");
    sub->add_option("--system", o->system, "System message opening the conversation");
    sub->add_option("--chat-template", o->template_file, "Jinja chat template file (overrides the model's)")
        ->check(CLI::ExistingFile);
    sub->add_option("-n,--n-predict", o->gen.n_predict, "Most tokens per reply; -1 = until end of turn or context")
        ->default_val(-1);
    sub->add_option("--temp", o->gen.sampling.temp, "Temperature; 0 = greedy")->default_val(0.8)->check(CLI::Range(0.0, 100.0));
    sub->add_option("--top-k", o->gen.sampling.top_k, "Keep the k most likely tokens; 0 = all")->default_val(40)->check(CLI::NonNegativeNumber);
    sub->add_option("--top-p", o->gen.sampling.top_p, "Nucleus sampling mass; 1 = off")->default_val(0.95)->check(CLI::Range(0.0, 1.0));
    sub->add_option("--min-p", o->gen.sampling.min_p, "Drop tokens below min-p x the top probability")->default_val(0.05)->check(CLI::Range(0.0, 1.0));
    sub->add_option("--repeat-penalty", o->gen.sampling.repeat_penalty, "Repetition penalty; 1 = off")->default_val(1.0)->check(CLI::Range(0.0, 10.0));
    sub->add_option("-s,--seed", o->gen.sampling.seed, "Random seed")->default_val(42);
    sub->add_option("-c,--ctx-size", o->n_ctx, "Context length (default: the training context, at most 4096)");
    sub->add_option("--cache-type,--kv-type", o->kv_type, "KV cache type: f16 (default), f32, q8_0 or q4_0")
        ->check(CLI::IsMember({"f16", "f32", "q8_0", "q4_0"}, CLI::ignore_case));
    sub->add_option("-t,--threads", o->threads, "Threads (default: one per physical core)")->check(CLI::Range(0, 256));
    sub->add_flag("-q,--quiet", o->quiet, "No prompt marker, banner or per-turn statistics");
    sub->callback([o]() { chat(*o); });
}

} // namespace slm::cli
