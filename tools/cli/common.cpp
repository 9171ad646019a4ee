#include "commands.h"

#include "slm/error.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace slm::cli {

static int g_exit_code = 0;
int exit_code() { return g_exit_code; }
void set_exit_code(int code) { g_exit_code = code; }

static bool exists(const std::string& p) {
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

std::string find_repo_file(const std::string& rel) {
    if (rel.empty() || rel[0] == '/' || exists(rel)) return rel;
    // Next to the binary's build tree (build/bin/slm -> ../../), then the source tree.
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        std::string exe(buf, static_cast<size_t>(n));
        std::string dir = exe.substr(0, exe.rfind('/'));
        for (const char* up : {"/../../", "/../", "/"})
            if (exists(dir + up + rel)) return std::filesystem::weakly_canonical(dir + up + rel).string();
    }
#ifdef SLM_SOURCE_DIR
    if (exists(std::string(SLM_SOURCE_DIR) + "/" + rel))
        return std::filesystem::weakly_canonical(std::string(SLM_SOURCE_DIR) + "/" + rel).string();
#endif
    return "";
}

std::string default_model() {
    if (const char* e = std::getenv("SLM_MODEL"); e && *e) return e;
    const std::string rel = "models/stories260K/stories260K.gguf";
    std::string path = find_repo_file(rel);
    if (path.empty())
        fail("no model given (-m) and the bundled %s was not found; pass -m MODEL.gguf or set SLM_MODEL", rel.c_str());
    return path;
}

std::string read_text_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("%s: cannot open: %s", path.c_str(), std::strerror(errno));
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

} // namespace slm::cli
