// slm template: render a conversation with a model's chat template, as Hugging Face's
// apply_chat_template would, and print the text exactly (no newline added).
#include "commands.h"

#include "slm/chat.h"
#include "slm/model.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/vocab.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <cstdio>
#include <memory>
#include <optional>

namespace slm::cli {

namespace {

struct TemplateOptions {
    std::string model, messages, chat_template, now;
    std::optional<std::string> bos, eos;
    bool add_generation_prompt = false;
};

void render_template(const TemplateOptions& o) {
    // Of a GGUF only the metadata and the vocabulary are read, not the weights. A Hugging Face
    // folder is converted as `slm run` converts it (its template is tokenizer_config.json's).
    const std::string path = o.model.empty() ? default_model() : o.model;
    std::shared_ptr<const Model> model;
    if (std::filesystem::is_directory(path)) model = Model::load(path);
    GGUFFile f = model ? model->file() : GGUFFile::open(path);
    std::string source, name;
    if (!o.chat_template.empty()) {
        source = read_text_file(o.chat_template);
        name = o.chat_template;
    } else {
        std::optional<std::string> t = chat_template_from_gguf(f);
        if (!t)
            fail("template: %s has no chat template (tokenizer.chat_template); pass --chat-template FILE", path.c_str());
        source = std::move(*t);
        name = path;
    }
    ChatTemplateOptions opt;
    opt.add_generation_prompt = o.add_generation_prompt;
    opt.now = o.now;
    if (!o.bos || !o.eos) {
        Vocab vocab = Vocab::from_gguf(f);
        auto text = [&](int32_t id) { return id == TOKEN_NULL ? std::string() : vocab.token_text(id); };
        opt.bos_token = text(vocab.bos());
        opt.eos_token = text(vocab.eos());
    }
    if (o.bos) opt.bos_token = *o.bos;
    if (o.eos) opt.eos_token = *o.eos;
    ChatTemplate t = ChatTemplate::parse(source, name);
    std::string out = t.render(read_text_file(o.messages), opt);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
}

} // namespace

void add_template(CLI::App& app) {
    auto o = std::make_shared<TemplateOptions>();
    CLI::App* sub = app.add_subcommand("template", "Render a conversation with the model's chat template");
    sub->add_option("-m,--model", o->model,
                    "GGUF model or vocab file, or Hugging Face folder (default: the bundled stories260K)");
    sub->add_option("--messages", o->messages,
                    "JSON file: an array of messages, or an object {\"messages\": [...], \"tools\": [...], ...}")
        ->required()
        ->check(CLI::ExistingFile);
    sub->add_flag("--add-generation-prompt", o->add_generation_prompt, "End with the start of an assistant turn");
    sub->add_option("--chat-template", o->chat_template, "Jinja2 template file to use instead of the model's")
        ->check(CLI::ExistingFile);
    sub->add_option("--bos", o->bos, "Text of bos_token (default: the model's BOS token)");
    sub->add_option("--eos", o->eos, "Text of eos_token (default: the model's EOS token)");
    sub->add_option("--now", o->now, "Pin strftime_now to \"YYYY-MM-DD HH:MM:SS\" (default: the local clock)");
    sub->callback([o]() { render_template(*o); });
}

} // namespace slm::cli
