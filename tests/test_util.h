// Shared helpers for the tests: where data lives, reading files, running the CLI.
#pragma once

#include <map>
#include <string>
#include <vector>
#include <cstdint>

namespace slm::test {

std::string source_dir();                       // the repository root
std::string shared_dir();                       // ../shared (or $SLM_SHARED_DIR)
std::string shared_path(const std::string& rel); // shared_dir() + "/" + rel
bool shared_available();                        // false when ../shared is absent
std::string model_path(const std::string& rel); // source_dir() + "/models/" + rel
std::string cli_path();                         // the built `slm` binary
std::string temp_dir();                         // a fresh per-process temp directory
std::vector<uint8_t> read_file(const std::string& path);
std::string read_text(const std::string& path);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

// llama.cpp's tokenizer test vectors (test-tokenizer-0.cpp's read_tests): `gguf_path`.inp holds
// inputs split on "\n__ggml_vocab_test__\n" (not stripped), `gguf_path`.out one line of ids per
// input. Keyed by input, so duplicates collapse. Throws if the counts differ.
std::map<std::string, std::vector<int32_t>> read_vocab_vectors(const std::string& gguf_path);

struct RunResult {
    int exit_code;
    std::string out;  // stdout
    std::string err;  // stderr
};
// Runs the slm CLI with the given arguments (no shell quoting issues: args passed as argv) and
// `stdin_text` as its standard input.
RunResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "");

} // namespace slm::test

// Skips the current test when ../shared is not there.
#define SLM_REQUIRE_SHARED()                                                  \
    do {                                                                      \
        if (!::slm::test::shared_available()) GTEST_SKIP() << "no ../shared"; \
    } while (0)
