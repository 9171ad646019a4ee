// fuzz_llama2c.cpp - libFuzzer target for the llama2.c checkpoint + tokenizer.bin converter.
//
// Input: a little-endian u32 N, then N bytes of checkpoint (model.bin), then the rest as
// tokenizer.bin (an N past the end gives all the bytes to the checkpoint). Both are written to a
// per-process temp dir, since convert_llama2c maps files. Whatever the bytes, the conversion must
// finish or throw slm::Error naming one of the two files; a GGUF it writes must parse, hold a
// vocabulary of |vocab_size| tokens and have token_embd [dim, n_vocab].
#include "slm/convert.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_llama2c: %s\n", what);
    std::abort();
}

struct TempDir {
    std::string path;
    TempDir() {
        std::string t = (std::filesystem::temp_directory_path() / "slm-fuzz-llama2c.XXXXXX").string();
        if (!mkdtemp(t.data())) bug("cannot create a temp dir");
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

void write(const std::string& path, const uint8_t* data, size_t size) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!out) bug("cannot write a temp file");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const TempDir dir;
    uint32_t n = 0;
    if (size >= 4) std::memcpy(&n, data, 4);
    const uint8_t* rest = data + (size >= 4 ? 4 : size);
    const size_t rest_size = size >= 4 ? size - 4 : 0;
    const size_t model_size = n < rest_size ? n : rest_size;

    const std::string model = dir.path + "/model.bin", tok = dir.path + "/tokenizer.bin",
                      out = dir.path + "/out.gguf";
    write(model, rest, model_size);
    write(tok, rest + model_size, rest_size - model_size);
    std::filesystem::remove(out);
    try {
        slm::convert_llama2c(model, tok, out);
    } catch (const slm::Error& e) {
        if (!std::strstr(e.what(), model.c_str()) && !std::strstr(e.what(), tok.c_str()))
            bug("error names neither input file");
        return 0;
    }
    try {
        const slm::GGUFFile f = slm::GGUFFile::open(out);
        int32_t hdr[7];
        std::memcpy(hdr, rest, sizeof hdr);  // the conversion succeeded, so the header is there
        const int64_t n_vocab = hdr[5] < 0 ? -int64_t(hdr[5]) : int64_t(hdr[5]);
        if (static_cast<int64_t>(f.get_str_array("tokenizer.ggml.tokens").size()) != n_vocab)
            bug("token count differs from vocab_size");
        if (f.tensor("token_embd.weight").shape() != std::vector<int64_t>{hdr[0], n_vocab})
            bug("token_embd shape differs from the header");
    } catch (const slm::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        bug("the converted file does not read back");
    }
    return 0;
}
