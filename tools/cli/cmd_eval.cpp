// slm eval: measuring a model. Each measurement is a subcommand in its own file; this one only
// groups them (`slm eval perplexity ...`, `slm eval hellaswag ...`).
#include "commands.h"

#include <CLI/CLI.hpp>

namespace slm::cli {

void add_eval(CLI::App& app) {
    CLI::App* eval = app.add_subcommand("eval", "measure a model: perplexity, KL divergence, benchmark tasks");
    eval->require_subcommand(1);
    add_eval_perplexity(*eval);
    add_eval_tasks(*eval);
    add_eval_passkey(*eval);
}

} // namespace slm::cli
