// slm limits: the resource limits in force (slm/limits.h), and the global --limit option.
#include "commands.h"

#include "slm/limits.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace slm::cli {

namespace {

std::string human(uint64_t v) {
    static const char* units[] = {"K", "M", "G", "T"};
    for (int i = 3; i >= 0; --i) {
        const uint64_t u = uint64_t(1) << (10 * (i + 1));
        if (v >= u && v % u == 0) return std::to_string(v / u) + units[i];
    }
    return std::to_string(v);
}

} // namespace

void add_limits(CLI::App& app) {
    // SLM_LIMITS first, so that --limit overrides it.
    if (const char* env = std::getenv("SLM_LIMITS")) set_limits_from_string(env, "SLM_LIMITS");
    auto args = std::make_shared<std::vector<std::string>>();
    app.add_option("--limit", *args,
                   "Set a resource limit, NAME=VALUE (repeatable; before or after the command; `slm limits` lists them)")
        ->type_name("NAME=VALUE");
    app.parse_complete_callback([args]() {
        for (const std::string& a : *args) set_limits_from_string(a, "--limit");
    });

    CLI::App* sub = app.add_subcommand("limits", "Show the resource limits on untrusted input (see SECURITY.md)");
    sub->callback([]() {
        std::printf("%-26s %14s %14s  %s\n", "limit", "value", "default", "bounds");
        for (const LimitInfo& l : describe_limits())
            std::printf("%-26s %14s %14s  %s\n", l.name.c_str(), human(l.value).c_str(), human(l.default_value).c_str(),
                        l.what.c_str());
        std::printf("\nSet with --limit NAME=VALUE or SLM_LIMITS=\"NAME=VALUE,...\"; VALUE takes K, M, G, T (x1024).\n");
    });
}

} // namespace slm::cli
