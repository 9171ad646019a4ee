// replay_main.cpp - runs a libFuzzer target's LLVMFuzzerTestOneInput on every file of the
// directories (or files) given, without libFuzzer: the normal g++ build links it with each
// tests/fuzz/fuzz_<name>.cpp as replay_<name>, and ctest replays tests/fuzz/corpus/<name>/ and
// tests/fuzz/regressions/<name>/ with it, so `make test` and `make test-sanitize` re-check every seed
// and every input a campaign ever crashed on.
//
//   replay_gguf tests/fuzz/corpus/gguf tests/fuzz/regressions/gguf
//
// A target reports a bug by aborting (or by a sanitizer report); this driver adds only that every
// named path must exist, so a renamed corpus folder is noticed. Missing directories named with a
// trailing "?" (e.g. "regressions/gguf?") are optional. Exit code 0 when every input returned.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace fs = std::filesystem;

namespace {

bool run_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
        std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
        return false;
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // An exact-size heap copy, so one byte read past the input is an AddressSanitizer report.
    std::vector<uint8_t> buf(bytes.begin(), bytes.end());
    buf.shrink_to_fit();
    LLVMFuzzerTestOneInput(buf.empty() ? nullptr : buf.data(), buf.size());
    return true;
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR_OR_FILE[?]...\n", argv[0]);
        return 2;
    }
    size_t n = 0;
    bool ok = true;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        const bool optional = !arg.empty() && arg.back() == '?';
        if (optional) arg.pop_back();
        const fs::path root(arg);
        std::error_code ec;
        if (!fs::exists(root, ec)) {
            if (optional) continue;
            std::fprintf(stderr, "replay: %s does not exist\n", arg.c_str());
            ok = false;
            continue;
        }
        std::vector<fs::path> files;
        if (fs::is_directory(root)) {
            for (const auto& e : fs::recursive_directory_iterator(root))
                if (e.is_regular_file()) files.push_back(e.path());
        } else {
            files.push_back(root);
        }
        std::sort(files.begin(), files.end());  // a stable order, so a failure is reproducible
        for (const fs::path& f : files) {
            std::fprintf(stderr, "replay: %s\n", f.c_str());  // the last line names the culprit of a crash
            if (!run_file(f)) ok = false;
            ++n;
        }
    }
    std::printf("replay: %zu inputs, %s\n", n, ok ? "all returned" : "some could not be read");
    return ok ? 0 : 1;
}
