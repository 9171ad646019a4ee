// TEMP: empty registrations of the `slm eval` subcommands other helpers write, so this branch
// links on its own. Dropped at merge.
#include "commands.h"

namespace slm::cli {

void add_eval_perplexity(CLI::App&) {}
void add_eval_tasks(CLI::App&) {}

} // namespace slm::cli
