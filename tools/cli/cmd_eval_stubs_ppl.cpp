// TEMPORARY: empty registrations for the `slm eval` subcommands other branches write, so this
// branch links on its own. Dropped at merge.
#include "commands.h"

namespace slm::cli {

void add_eval_tasks(CLI::App&) {}
void add_eval_passkey(CLI::App&) {}

} // namespace slm::cli
