// TEMP: empty registrations of the other `slm eval` subcommands so this branch links alone.
#include "commands.h"

namespace slm::cli {
void add_eval_perplexity(CLI::App&) {}
void add_eval_passkey(CLI::App&) {}
} // namespace slm::cli
