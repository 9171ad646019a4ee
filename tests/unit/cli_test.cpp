// End-to-end tests of the `slm` command-line tool: flags, output formats, exit codes.
#include "test_util.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace slm::test;

namespace {

std::string stories() { return model_path("stories260K/stories260K.gguf"); }

TEST(Cli, HelpListsEverySubcommand) {
    RunResult r = run_cli({"--help"});
    EXPECT_EQ(r.exit_code, 0);
    for (const char* cmd : {"run", "info", "tokenize", "convert"}) EXPECT_NE(r.out.find(cmd), std::string::npos) << cmd;
    for (const char* cmd : {"run", "info", "tokenize", "convert"}) {
        RunResult h = run_cli({cmd, "--help"});
        EXPECT_EQ(h.exit_code, 0) << cmd;
        EXPECT_NE(h.out.find("Options"), std::string::npos) << cmd;
    }
}

TEST(Cli, BadFlagIsAClearError) {
    RunResult r = run_cli({"run", "--no-such-flag"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("no-such-flag"), std::string::npos) << r.err;
    r = run_cli({"run", "-m", stories(), "--top-p", "1.5"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("top-p"), std::string::npos) << r.err;
    r = run_cli({});
    EXPECT_NE(r.exit_code, 0);
}

TEST(Cli, RunGreedyJsonMatchesLlamaCpp) {
    // llama.cpp's greedy continuation of "Once upon a time" (tests/data/reference, f32 model).
    RunResult r = run_cli({"run", "-m", stories(), "-p", "Once upon a time", "-n", "8", "--temp", "0", "--json",
                           "--kv-type", "f32"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["prompt_tokens"].get<std::vector<int>>(), (std::vector<int>{1, 403, 407, 261, 378}));
    EXPECT_EQ(j["tokens"].get<std::vector<int>>(), (std::vector<int>{432, 383, 286, 261, 376, 298, 315, 421}));
    EXPECT_TRUE(j["text"].is_string());
    for (const char* k : {"load_ms", "prompt_tokens", "prompt_tps", "ttft_ms", "gen_tokens", "gen_tps", "peak_rss_bytes"})
        EXPECT_TRUE(j["timings"].contains(k)) << k;
    EXPECT_EQ(j["timings"]["gen_tokens"].get<int>(), 8);
    EXPECT_NE(r.err.find("tok/s"), std::string::npos) << "timing line on stderr";
}

TEST(Cli, RunStreamsTextAndSeedRepeats) {
    std::vector<std::string> args{"run", "-m", stories(), "-p", "Lily", "-n", "30", "--temp", "1.0", "--seed", "5"};
    RunResult a = run_cli(args), b = run_cli(args);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(a.out, b.out);
    EXPECT_GT(a.out.size(), 20u);
    args.back() = "6";
    RunResult c = run_cli(args);
    EXPECT_NE(a.out, c.out);
}

TEST(Cli, RunStopsAtStopString) {
    RunResult r = run_cli({"run", "-m", stories(), "-p", "Once upon a time", "-n", "100", "--temp", "0", "--json",
                           "--stop", "Lily"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["stop_reason"], "stop");
    EXPECT_EQ(j["text"].get<std::string>().find("Lily"), std::string::npos);
}

TEST(Cli, RunFromPromptFile) {
    std::string path = temp_dir() + "/prompt.txt";
    write_file(path, {'L', 'i', 'l', 'y'});
    RunResult a = run_cli({"run", "-m", stories(), "-f", path, "-n", "10", "--temp", "0", "--json"});
    RunResult b = run_cli({"run", "-m", stories(), "-p", "Lily", "-n", "10", "--temp", "0", "--json"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
}

TEST(Cli, TokenizePrintsJsonIds) {
    RunResult r = run_cli({"tokenize", "-m", stories(), "-p", "Once upon a time"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out).get<std::vector<int>>(), (std::vector<int>{1, 403, 407, 261, 378}));
    r = run_cli({"tokenize", "-m", stories(), "-p", "Once upon a time", "--no-bos"});
    EXPECT_EQ(nlohmann::json::parse(r.out).get<std::vector<int>>(), (std::vector<int>{403, 407, 261, 378}));
}

TEST(Cli, InfoListsTensorsAndTotals) {
    RunResult r = run_cli({"info", stories()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (const char* s : {"llama", "n_layer 5", "n_head_kv 4", "blk.4.ffn_down.weight", "[172, 64]", "totals", "512 tokens"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(Cli, CorruptModelGivesErrorNamingTheFile) {
    auto bytes = read_file(stories());
    bytes.resize(5000);  // cut inside the token array
    std::string path = temp_dir() + "/truncated.gguf";
    write_file(path, bytes);
    for (const char* cmd : {"run", "info", "tokenize"}) {
        std::vector<std::string> args{cmd};
        if (std::string(cmd) == "info") args.push_back(path);
        else args.insert(args.end(), {"-m", path, "-p", "hi"});
        RunResult r = run_cli(args);
        EXPECT_EQ(r.exit_code, 1) << cmd;
        EXPECT_NE(r.err.find("truncated.gguf"), std::string::npos) << cmd << ": " << r.err;
    }
    RunResult r = run_cli({"run", "-m", temp_dir() + "/does-not-exist.gguf"});
    EXPECT_NE(r.exit_code, 0);
}

TEST(Cli, ConvertLlama2cRunsLikeTheGguf) {
    std::string out = temp_dir() + "/converted.gguf";
    RunResult c = run_cli({"convert", "--from", "llama2c", model_path("stories260K/stories260K.bin"), "--tokenizer",
                           model_path("stories260K/tok512.bin"), "-o", out});
    ASSERT_EQ(c.exit_code, 0) << c.err;
    RunResult a = run_cli({"run", "-m", out, "-p", "Tom", "-n", "20", "--temp", "0", "--json"});
    RunResult b = run_cli({"run", "-m", stories(), "-p", "Tom", "-n", "20", "--temp", "0", "--json"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
}

TEST(Cli, DefaultModelIsTheBundledOne) {
    RunResult r = run_cli({"run", "-p", "Once upon a time", "-n", "4", "--temp", "0", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["tokens"].get<std::vector<int>>(), (std::vector<int>{432, 383, 286, 261}));
}

} // namespace
