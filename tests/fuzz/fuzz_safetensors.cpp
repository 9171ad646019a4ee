// fuzz_safetensors.cpp - libFuzzer target for the safetensors reader and writer.
//
// Any input must either parse or throw slm::Error; anything else (a crash, a sanitizer report,
// another exception type, a huge allocation) is a bug. A file that parses must have every tensor
// inside the input, and re-serialize to a file that parses to the same tensors; serializing that
// again must give the same bytes.
#include "formats/safetensors.h"
#include "slm/error.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_safetensors: %s\n", what);
    std::abort();
}

volatile uint64_t g_sink;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // An exact-size copy, so reading one byte past the input is an ASan report.
    std::vector<uint8_t> buf(data, data + size);
    const uint8_t* base = buf.data();
    try {
        const slm::SafetensorsFile f = slm::SafetensorsFile::parse(base, size, "fuzz");
        slm::SafetensorsWriter w;
        for (const auto& [k, v] : f.metadata()) w.set_metadata(k, v);
        for (const slm::SafetensorsTensor& t : f.tensors()) {
            if (t.nbytes != static_cast<size_t>(t.numel()) * slm::st_dtype_size(t.dtype)) bug("nbytes != numel x dtype size");
            if (t.nbytes && (t.data < base || t.data + t.nbytes > base + size)) bug("tensor data outside the input");
            if (t.nbytes) g_sink = g_sink + t.data[0] + t.data[t.nbytes - 1];
            w.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
        }
        const std::vector<uint8_t> once = w.to_bytes();
        const slm::SafetensorsFile g = slm::SafetensorsFile::parse(once.data(), once.size(), "fuzz-rewritten");
        if (g.tensors().size() != f.tensors().size() || g.metadata() != f.metadata()) bug("rewrite lost tensors or metadata");
        slm::SafetensorsWriter w2;
        for (const auto& [k, v] : g.metadata()) w2.set_metadata(k, v);
        for (const slm::SafetensorsTensor& t : g.tensors()) {
            const slm::SafetensorsTensor* o = f.find(t.name);
            if (!o || o->dtype != t.dtype || o->shape != t.shape || o->nbytes != t.nbytes ||
                (t.nbytes && std::memcmp(o->data, t.data, t.nbytes) != 0))
                bug("rewrite changed a tensor");
            w2.add(t.name, t.dtype, t.shape, t.data, t.nbytes);
        }
        if (w2.to_bytes() != once) bug("second rewrite differs");
    } catch (const slm::Error&) {
    }
    return 0;
}
