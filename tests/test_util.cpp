#include "test_util.h"

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace slm::test {

std::string source_dir() { return SLM_SOURCE_DIR; }

std::string shared_dir() {
    if (const char* e = std::getenv("SLM_SHARED_DIR")) return e;
    return SLM_SHARED_DIR;
}

std::string shared_path(const std::string& rel) { return shared_dir() + "/" + rel; }

bool shared_available() {
    struct stat st;
    return stat(shared_path("reference/README.md").c_str(), &st) == 0;
}

std::string model_path(const std::string& rel) { return source_dir() + "/models/" + rel; }

std::string cli_path() { return SLM_CLI_PATH; }

namespace {
// The directory of this test process, removed when the process exits normally (a test binary that
// forks removes it only from the process that made it). SLM_KEEP_TEST_TMP=1 keeps it for a post-mortem.
std::string g_temp_dir;
pid_t g_temp_owner = 0;

void remove_temp_dir() {
    if (g_temp_dir.empty() || ::getpid() != g_temp_owner) return;
    if (const char* k = std::getenv("SLM_KEEP_TEST_TMP"); k && *k && std::string(k) != "0") return;
    std::error_code ec;
    std::filesystem::remove_all(g_temp_dir, ec);
}
}  // namespace

std::string temp_dir() {
    static std::string dir = [] {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/slm-test-XXXXXX";
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed in " + tmpl);
        g_temp_dir = tmpl;
        g_temp_owner = ::getpid();
        std::atexit(remove_temp_dir);
        return tmpl;
    }();
    return dir;
}

std::vector<uint8_t> read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::string read_text(const std::string& path) {
    auto b = read_file(path);
    return std::string(b.begin(), b.end());
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
}

static std::string slurp_fd(int fd) {
    std::string s;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
}

RunResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text) {
    // stdout and stderr go to temp files so a large output cannot deadlock a pipe.
    std::string base = temp_dir() + "/run" + std::to_string(::getpid()) + "_" + std::to_string(rand());
    std::string out_path = base + ".out", err_path = base + ".err", in_path = base + ".in";
    {
        std::ofstream in(in_path, std::ios::binary);
        in << stdin_text;
    }
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int in = ::open(in_path.c_str(), O_RDONLY);
        dup2(o, 1);
        dup2(e, 2);
        dup2(in, 0);
        std::vector<char*> argv;
        std::string exe = cli_path();
        argv.push_back(exe.data());
        std::vector<std::string> copy = args;
        for (auto& a : copy) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(exe.c_str(), argv.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    RunResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    int fo = ::open(out_path.c_str(), O_RDONLY), fe = ::open(err_path.c_str(), O_RDONLY);
    r.out = fo >= 0 ? slurp_fd(fo) : "";
    r.err = fe >= 0 ? slurp_fd(fe) : "";
    if (fo >= 0) ::close(fo);
    if (fe >= 0) ::close(fe);
    ::unlink(out_path.c_str());
    ::unlink(err_path.c_str());
    ::unlink(in_path.c_str());
    return r;
}

std::map<std::string, std::vector<int32_t>> read_vocab_vectors(const std::string& gguf_path) {
    const std::string inp = read_text(gguf_path + ".inp");
    std::vector<std::string> outs;
    {
        std::istringstream is(read_text(gguf_path + ".out"));
        for (std::string line; std::getline(is, line);) outs.push_back(line);
    }
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> ins;
    for (size_t pos = 0; pos < inp.size();) {
        const size_t next = inp.find(sep, pos);
        if (next == std::string::npos) {
            ins.push_back(inp.substr(pos));
            break;
        }
        ins.push_back(inp.substr(pos, next - pos));
        pos = next + sep.size();
    }
    if (ins.size() != outs.size())
        throw std::runtime_error(gguf_path + ": " + std::to_string(ins.size()) + " inputs but " +
                                 std::to_string(outs.size()) + " outputs");
    std::map<std::string, std::vector<int32_t>> tests;
    for (size_t i = 0; i < ins.size(); ++i) {
        std::vector<int32_t> ids;
        std::istringstream is(outs[i]);
        for (int32_t id; is >> id;) ids.push_back(id);
        tests[ins[i]] = ids;
    }
    return tests;
}

} // namespace slm::test
