// slm - the command-line tool. Argument parsing, then calls into include/slm only.
#include "commands.h"

#include "slm/error.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
    CLI::App app{"slm - build, compress, run and measure small language models on CPUs"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "slm 0.1.0");
    // Options of the main app (--limit) may also follow the command: subcommands created from here
    // on pass what they do not know up to it.
    app.fallthrough();
    try {
        slm::cli::add_limits(app);
    } catch (const slm::Error& e) {
        std::fprintf(stderr, "slm: error: %s\n", e.what());
        return 1;
    }
    slm::cli::add_run(app);
    slm::cli::add_info(app);
    slm::cli::add_tokenize(app);
    slm::cli::add_convert(app);
    slm::cli::add_synth(app);
    slm::cli::add_bench(app);
    slm::cli::add_template(app);
    slm::cli::add_chat(app);
    slm::cli::add_eval(app);
    slm::cli::add_quantize(app);
    slm::cli::add_calibrate(app);
    slm::cli::add_prune(app);
    slm::cli::add_train(app);
    slm::cli::add_tokenizer(app);
    slm::cli::add_data(app);
    slm::cli::add_distill(app);
    slm::cli::add_finetune(app);
    slm::cli::add_lora(app);
    slm::cli::add_serve(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const slm::Error& e) {
        std::fprintf(stderr, "slm: error: %s\n", e.what());
        return 1;
    } catch (const std::bad_alloc&) {
        std::fprintf(stderr, "slm: error: out of memory\n");
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "slm: error: %s\n", e.what());
        return 1;
    }
    return slm::cli::exit_code();
}
