// fuzz_train_inputs.cpp - libFuzzer target for what training reads besides GGUF: training configs
// (src/train/config.cpp, JSON), documents of the data tools (src/data/documents.cpp: blank-line,
// one-per-line, separator and JSONL layouts) and token files (src/formats/token_file.cpp: llm.c
// shards and whitespace-separated ids). The first byte picks the parser, the rest is its input.
//
// Any input must either parse or throw slm::Error; anything else (a crash, a sanitizer report,
// another exception type, a huge allocation) is a bug. What parses must hold together: a config
// survives a write / re-read with the same fields, documents count their bytes and re-read from
// their own layout as the same texts (one-per-line and separator layouts), token ids are in range.
#include "formats/token_file.h"
#include "slm/data.h"
#include "slm/error.h"
#include "slm/train.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_train_inputs: %s\n", what);
    std::abort();
}

void config(const std::string& text) {
    slm::TrainConfig c = slm::parse_train_config(text, "fuzz.json");
    // A tokenizer path would make validate() open a file: the fuzzer tests parsing, not the disk.
    c.arch.tokenizer.clear();
    const std::string again = slm::train_config_json(c.arch, c.options);
    const slm::TrainConfig d = slm::parse_train_config(again, "fuzz-again.json");
    if (slm::train_config_json(d.arch, d.options) != again) bug("config changed in a write / re-read");
}

void documents(uint8_t mode, std::string_view text) {
    slm::DocFormatOptions o;
    o.format = static_cast<slm::DocFormat>(mode % 4);
    o.skip_invalid_utf8 = (mode & 4) != 0;
    o.separator = "<|endoftext|>";
    const slm::DocumentSet s = slm::parse_documents(text, "fuzz.txt", o);
    size_t n = 0;
    for (const slm::Document& d : s.docs) n += d.text.size();
    if (n != s.n_bytes) bug("n_bytes is not the sum of the documents' sizes");
    if (o.format == slm::DocFormat::Jsonl) {
        // JSONL escapes anything, so every document must come back as it was.
        std::vector<std::string_view> texts;
        for (const slm::Document& d : s.docs) texts.push_back(d.text);
        const slm::DocumentSet r = slm::parse_documents(slm::format_documents(texts, o), "fuzz-again.jsonl", o);
        if (r.docs.size() != s.docs.size()) bug("JSONL re-read gives another document count");
        for (size_t i = 0; i < r.docs.size(); ++i)
            if (r.docs[i].text != s.docs[i].text) bug("JSONL re-read changed a document");
    }
}

void tokens(std::string bytes) {
    constexpr uint32_t n_vocab = 512;
    const std::vector<int32_t> ids = slm::formats::parse_token_file("fuzz.tok", bytes, n_vocab, "fuzz");
    for (int32_t id : ids)
        if (id < 0 || static_cast<uint32_t>(id) >= n_vocab) bug("token id out of range accepted");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // An exact-size copy, so reading one byte past the input is an ASan report.
    const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    try {
        switch (data[0] % 3) {
        case 0: config(rest); break;
        case 1: documents(static_cast<uint8_t>(data[0] / 3), rest); break;
        default: tokens(rest); break;
        }
    } catch (const slm::Error&) {
    }
    return 0;
}
