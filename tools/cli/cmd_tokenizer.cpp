// slm tokenizer train: learn a byte-level BPE or SentencePiece-style tokenizer from text and
// write it as a vocab-only GGUF (see slm/tokenizer_train.h).
#include "commands.h"

#include "slm/error.h"
#include "slm/tokenizer_train.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <memory>

namespace slm::cli {

namespace {

struct TokenizerTrainCli {
    TokenizerTrainOptions o;
    std::string type = "bpe";
    std::string output;
};

void tokenizer_train(TokenizerTrainCli& c) {
    if (c.type == "bpe") c.o.kind = TokenizerKind::Bpe;
    else if (c.type == "spm") c.o.kind = TokenizerKind::Spm;
    else fail("tokenizer train: --type '%s' is not bpe or spm", c.type.c_str());
    const TokenizerTrainResult r = train_tokenizer(c.o, c.output);
    std::printf("corpus:      %zu file(s), %llu bytes, %llu words (%llu distinct)\n", c.o.files.size(),
                static_cast<unsigned long long>(r.n_bytes), static_cast<unsigned long long>(r.n_words),
                static_cast<unsigned long long>(r.n_unique_words));
    std::printf("vocab:       %d tokens (%d base, %d merges) of %d asked%s\n", r.n_vocab, r.n_base, r.n_merges,
                c.o.vocab_size,
                r.n_vocab < c.o.vocab_size ? " (no pair left that is frequent enough: see --min-frequency)" : "");
    std::printf("compression: %llu tokens, %.3f bytes/token on the corpus\n",
                static_cast<unsigned long long>(r.n_tokens), r.bytes_per_token());
    std::printf("time:        %.2f s (%d thread%s)\n", r.seconds, c.o.n_threads, c.o.n_threads == 1 ? "" : "s");
    std::printf("wrote:       %s (%s)\n", c.output.c_str(),
                c.o.kind == TokenizerKind::Bpe ? ("gpt2, pre " + c.o.pre).c_str() : "llama (spm)");
}

} // namespace

void add_tokenizer(CLI::App& app) {
    CLI::App* tok = app.add_subcommand("tokenizer", "Train tokenizers");
    tok->require_subcommand(1);
    auto c = std::make_shared<TokenizerTrainCli>();
    CLI::App* train = tok->add_subcommand("train", "Learn a BPE tokenizer from text and write it as a vocab-only GGUF");
    train->add_option("text", c->o.files, "Training text files (each one a document)")->required()->check(CLI::ExistingFile);
    train->add_option("-o,--output", c->output, "Output GGUF (tokenizer.* keys only)")->required();
    train->add_option("--vocab-size", c->o.vocab_size, "Total tokens, specials and base tokens included")
        ->required()
        ->check(CLI::PositiveNumber);
    train->add_option("--type", c->type, "bpe: byte-level BPE (gpt2); spm: SentencePiece-style BPE (llama)")
        ->capture_default_str();
    train->add_option("--min-frequency", c->o.min_frequency, "Do not merge pairs seen fewer times")->capture_default_str();
    train->add_option("--max-chars", c->o.max_chars, "Longest token in characters (bytes for bpe); 0 = no limit")
        ->capture_default_str();
    train->add_option("--pre", c->o.pre, "bpe pre-tokenizer (tokenizer.ggml.pre): qwen2, smollm or gpt-2")
        ->capture_default_str();
    train->add_flag("--replace-invalid-utf8", c->o.replace_invalid_utf8,
                    "Train on invalid UTF-8 as the tokenizer will see it instead of failing");
    train->add_option("--name", c->o.name, "general.name (default slm-bpe-V / slm-spm-V)");
    train->add_option("-t,--threads", c->o.n_threads, "Threads for pre-tokenization (the result does not depend on it)")
        ->capture_default_str();
    train->callback([c]() { tokenizer_train(*c); });
}

} // namespace slm::cli
