// fuzz_logits_file.cpp - libFuzzer target for the base log-probability file reader and writer
// (src/formats/logits_file.*, the layout of llama-perplexity --kl-divergence-base).
//
// Any input must either parse or throw slm::Error; anything else (a crash, a sanitizer report,
// another exception type, a huge allocation) is a bug. A file that parses must have every token in
// the vocabulary and every row inside the input; each row either reads or throws slm::Error; and
// writing the parsed contents back must give the input's bytes (the layout has no freedom).
#include "formats/logits_file.h"
#include "slm/error.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_logits_file: %s\n", what);
    std::abort();
}

volatile float g_sink;

std::vector<uint8_t> slurp(const std::string& path) {
    std::vector<uint8_t> out;
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) bug("cannot reopen the rewritten file");
    uint8_t buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
    std::fclose(f);
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // An exact-size copy, so reading one byte past the input is an ASan report.
    std::vector<uint8_t> buf(data, data + size);
    const uint8_t* base = buf.data();
    try {
        const slm::LogitsFileReader f(base, size, "fuzz");
        for (int32_t t : f.tokens())
            if (t < 0 || t >= f.n_vocab()) bug("token outside the vocabulary");
        const size_t row_u16 = slm::logits_row_u16(f.n_vocab());
        std::vector<uint16_t> rows;
        bool all_rows = true;
        for (int32_t c = 0; c < f.n_chunk(); ++c)
            for (uint32_t r = 0; r < f.rows_per_chunk(); ++r) {
                try {
                    const slm::LogitsFileReader::Row row = f.row(c, r);
                    const auto* q = reinterpret_cast<const uint8_t*>(row.q);
                    if (q < base || q + 2 * static_cast<size_t>(f.n_vocab()) > base + size) bug("row outside the input");
                    float s = 0;
                    for (int32_t i = 0; i < f.n_vocab(); ++i) s += row.log_prob(i);
                    g_sink = s;
                    if (!std::isfinite(row.scale) || !std::isfinite(row.min_log_prob)) bug("row header not finite");
                } catch (const slm::Error&) {
                    all_rows = false;
                }
            }
        // Rewrite small files and compare bytes (rows copied raw: the writer does not re-quantize).
        if (all_rows && size <= (1u << 16)) {
            const size_t off = slm::LOGITS_FILE_HEADER_BYTES + f.tokens().size() * 4;
            rows.resize((size - off) / 2);
            std::memcpy(rows.data(), base + off, rows.size() * 2);
            const std::string path = "/tmp/fuzz_logits_file." + std::to_string(::getpid()) + ".bin";
            slm::LogitsFileWriter w(path, f.n_ctx(), f.n_vocab(), f.n_chunk(), f.tokens());
            w.write_rows(rows.data(), rows.size() / row_u16);
            w.finish();
            const std::vector<uint8_t> again = slurp(path);
            std::remove(path.c_str());
            if (again != buf) bug("rewrite differs from the input");
        }
    } catch (const slm::Error&) {
    }
    return 0;
}
