// slm convert: import other checkpoint formats into GGUF, and export GGUF as a Hugging Face folder.
#include "commands.h"

#include "slm/convert.h"
#include "slm/error.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

namespace slm::cli {

namespace {

struct ConvertOptions {
    std::string from, to, input, tokenizer, output, type = "auto";
    bool unshare = false;
};

void convert(const ConvertOptions& o) {
    if (o.unshare) {
        if (!o.from.empty() || !o.to.empty()) fail("convert: --unshare takes a GGUF and no --from / --to");
        convert_unshare(o.input, o.output);
        std::fprintf(stderr, "slm: wrote %s\n", o.output.c_str());
        return;
    }
    if (o.from.empty() == o.to.empty())
        fail("convert: give exactly one of --from FORMAT (llama2c, hf), --to hf or --unshare");
    if (o.to == "hf") {
        convert_gguf_to_hf(o.input, o.output);
    } else if (o.from == "llama2c") {
        if (o.tokenizer.empty()) fail("convert --from llama2c needs --tokenizer TOK.bin");
        convert_llama2c(o.input, o.tokenizer, o.output);
    } else if (o.from == "hf") {
        convert_hf_to_gguf(o.input, o.output, o.type);
    } else {
        fail("convert: unknown --from '%s' (supported: llama2c, hf)", o.from.c_str());
    }
    std::fprintf(stderr, "slm: wrote %s\n", o.output.c_str());
}

} // namespace

void add_convert(CLI::App& app) {
    auto o = std::make_shared<ConvertOptions>();
    CLI::App* sub = app.add_subcommand(
        "convert", "Convert a checkpoint to GGUF (--from llama2c|hf), or a GGUF to a Hugging Face folder (--to hf)");
    sub->add_option("--from", o->from, "Input format: llama2c (a .bin) or hf (a Hugging Face model folder)")
        ->check(CLI::IsMember({"llama2c", "hf"}));
    sub->add_option("--to", o->to, "Output format: hf (writes a Hugging Face folder from a GGUF)")
        ->check(CLI::IsMember({"hf"}));
    sub->add_option("input", o->input, "Input: llama2.c .bin, Hugging Face folder, or GGUF (with --to hf)")
        ->required()
        ->check(CLI::ExistingPath);
    sub->add_option("--tokenizer", o->tokenizer, "Tokenizer file (llama2.c tokenizer.bin)")->check(CLI::ExistingFile);
    sub->add_option("--type", o->type,
                    "Tensor type for --from hf: auto (the checkpoint's own float type), f32, f16, bf16, q8_0")
        ->check(CLI::IsMember({"auto", "f32", "f16", "bf16", "q8_0"}));
    sub->add_flag("--unshare", o->unshare,
                  "Write a GGUF whose layers share blocks (llama.block_source, MobileLLM) with every layer's "
                  "tensors, the form llama.cpp loads");
    sub->add_option("-o,--output", o->output, "Output GGUF path (or folder, with --to hf)")->required();
    sub->callback([o]() { convert(*o); });
}

} // namespace slm::cli
