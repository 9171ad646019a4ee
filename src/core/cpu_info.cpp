#include "core/cpu_info.h"

#include <fstream>
#include <sched.h>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace slm {

static bool read_int(const std::string& path, int* out) {
    std::ifstream f(path);
    return static_cast<bool>(f >> *out);
}

int physical_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::set<std::pair<int, int>> cores;  // (package, core) of each CPU we may use
    int n_cpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (!CPU_ISSET(cpu, &set)) continue;
            ++n_cpus;
            const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
            int pkg = 0, core = cpu;
            if (!read_int(base + "physical_package_id", &pkg) || !read_int(base + "core_id", &core)) {
                pkg = 0;
                core = cpu;
            }
            cores.emplace(pkg, core);
        }
    }
    if (!cores.empty()) return static_cast<int>(cores.size());
    if (n_cpus > 0) return n_cpus;
    const unsigned hc = std::thread::hardware_concurrency();
    return hc > 0 ? static_cast<int>(hc) : 1;
}

std::string cpu_model_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            if (colon != std::string::npos) {
                size_t b = line.find_first_not_of(" \t", colon + 1);
                return b == std::string::npos ? "unknown" : line.substr(b);
            }
        }
    }
    return "unknown";
}

std::string cpu_simd_flags() {
    static const char* const kInteresting[] = {
        "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq",
        "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",      // x86
        "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2", "sme"};          // Arm
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("flags", 0) != 0 && line.rfind("Features", 0) != 0) continue;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string have = " " + line.substr(colon + 1) + " ", out;
        for (const char* flag : kInteresting) {
            if (have.find(" " + std::string(flag) + " ") == std::string::npos) continue;
            out += (out.empty() ? "" : " ") + std::string(flag);
        }
        return out;
    }
    return "";
}

} // namespace slm
