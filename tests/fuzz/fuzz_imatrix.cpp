// fuzz_imatrix.cpp - libFuzzer target for the importance-matrix reader (src/compress/imatrix.*:
// llama.cpp's imatrix GGUF and legacy .dat formats).
//
// Any input must either parse or throw slm::Error; anything else (a crash, a sanitizer report,
// another exception type, a huge allocation) is a bug. A parsed imatrix must be self-consistent
// (sums split evenly into its matrices, finite values), give llama-quantize's per-column values
// without error, and a GGUF one must survive a write / re-read unchanged.
#include "compress/imatrix.h"
#include "slm/error.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_imatrix: %s\n", what);
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // An exact-size copy, so reading one byte past the input is an ASan report.
    std::vector<uint8_t> buf(data, data + size);
    try {
        const slm::compress::Imatrix m = slm::compress::parse_imatrix(buf.data(), buf.size(), "fuzz");
        for (const auto& [name, e] : m.entries) {
            if (e.counts.empty() || e.sums.empty() || e.sums.size() % e.counts.size() != 0) bug("inconsistent entry");
            for (float v : e.sums)
                if (!std::isfinite(v)) bug("non-finite sum accepted");
        }
        const auto values = slm::compress::imatrix_values(m);
        for (const auto& [name, v] : values)
            if (v.size() != m.entries.at(name).sums.size()) bug("values of the wrong size");
        if (!m.legacy) {
            const std::vector<uint8_t> again = slm::compress::imatrix_gguf_bytes(m);
            const slm::compress::Imatrix r = slm::compress::parse_imatrix(again.data(), again.size(), "rewrite");
            if (r.entries.size() != m.entries.size()) bug("rewrite lost entries");
            for (const auto& [name, e] : m.entries) {
                const auto it = r.entries.find(name);
                if (it == r.entries.end() || it->second.sums != e.sums || it->second.counts != e.counts)
                    bug("rewrite changed an entry");
            }
            if (r.datasets != m.datasets || r.chunk_count != m.chunk_count || r.chunk_size != m.chunk_size)
                bug("rewrite changed the metadata");
        }
    } catch (const slm::Error&) {
    }
    return 0;
}
