// slm tokenize: print the token ids of a text as a JSON array on one line.
#include "commands.h"

#include "slm/gguf.h"
#include "slm/vocab.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

namespace slm::cli {

namespace {

struct TokenizeOptions {
    std::string model, prompt, file;
    bool no_bos = false, no_special = false, pieces = false;
};

void tokenize(const TokenizeOptions& o) {
    // Only the tokenizer is needed: read it from the metadata without loading the weights.
    GGUFFile f = GGUFFile::open(o.model.empty() ? default_model() : o.model);
    Vocab vocab = Vocab::from_gguf(f);
    std::string text = o.file.empty() ? o.prompt : read_text_file(o.file);
    std::vector<int32_t> ids = vocab.tokenize(text, !o.no_bos, !o.no_special);
    if (o.pieces) {
        nlohmann::json j = nlohmann::json::array();
        for (int32_t id : ids) j.push_back({{"id", id}, {"piece", vocab.token_to_piece(id, true)}});
        std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    } else {
        std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    }
}

} // namespace

void add_tokenize(CLI::App& app) {
    auto o = std::make_shared<TokenizeOptions>();
    CLI::App* sub = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
    sub->add_option("-m,--model", o->model, "GGUF model or vocab file (default: the bundled stories260K)");
    auto* p = sub->add_option("-p,--prompt", o->prompt, "Text to tokenize");
    auto* f = sub->add_option("-f,--file", o->file, "Read the text from a file")->check(CLI::ExistingFile);
    p->excludes(f);
    sub->add_flag("--no-bos", o->no_bos, "Do not add BOS/EOS tokens");
    sub->add_flag("--no-special", o->no_special, "Treat special-token text (<s>, <|im_start|>) as plain text");
    sub->add_flag("--pieces", o->pieces, "Print [{id, piece}] instead of bare ids");
    sub->callback([o]() { tokenize(*o); });
}

} // namespace slm::cli
