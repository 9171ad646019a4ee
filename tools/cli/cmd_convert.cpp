// slm convert: import other checkpoint formats into GGUF.
#include "commands.h"

#include "slm/convert.h"
#include "slm/error.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

namespace slm::cli {

namespace {

struct ConvertOptions {
    std::string from, input, tokenizer, output;
};

void convert(const ConvertOptions& o) {
    if (o.from == "llama2c") {
        if (o.tokenizer.empty()) fail("convert --from llama2c needs --tokenizer TOK.bin");
        convert_llama2c(o.input, o.tokenizer, o.output);
    } else {
        fail("convert: unknown --from '%s' (supported: llama2c)", o.from.c_str());
    }
    std::fprintf(stderr, "slm: wrote %s\n", o.output.c_str());
}

} // namespace

void add_convert(CLI::App& app) {
    auto o = std::make_shared<ConvertOptions>();
    CLI::App* sub = app.add_subcommand("convert", "Convert a checkpoint to GGUF");
    sub->add_option("--from", o->from, "Input format: llama2c")->required()->check(CLI::IsMember({"llama2c"}));
    sub->add_option("input", o->input, "Input checkpoint (llama2.c .bin)")->required()->check(CLI::ExistingFile);
    sub->add_option("--tokenizer", o->tokenizer, "Tokenizer file (llama2.c tokenizer.bin)")->check(CLI::ExistingFile);
    sub->add_option("-o,--output", o->output, "Output GGUF path")->required();
    sub->callback([o]() { convert(*o); });
}

} // namespace slm::cli
