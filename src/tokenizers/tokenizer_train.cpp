// tokenizers/tokenizer_train.cpp - slm::train_tokenizer: reads and checks the corpus and the
// options, runs the kind's trainer, writes the vocab-only GGUF.
#include "slm/tokenizer_train.h"

#include "core/thread_pool.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "tokenizers/train_impl.h"
#include "tokenizers/unicode.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace slm {

namespace {

std::string read_corpus_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("tokenizer train: %s: cannot open: %s", path.c_str(), std::strerror(errno));
    std::string text;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const bool bad = std::ferror(f) != 0;
    const int err = errno;
    std::fclose(f);
    if (bad) fail("tokenizer train: %s: read error: %s", path.c_str(), std::strerror(err));
    return text;
}

// Fails before the training rather than after it when the output cannot be written.
void check_writable(const std::string& out_path) {
    if (out_path.empty()) fail("tokenizer train: no output file (-o)");
    const std::string tmp = out_path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("tokenizer train: -o %s: cannot write: %s", out_path.c_str(), std::strerror(errno));
    std::fclose(f);
    std::remove(tmp.c_str());
}

} // namespace

// Pre-tokenizers whose words never hold a newline followed by a printable non-space (the chunk
// rule of count_words), that keep every word's merges (no ignore_merges, which would take a whole
// word as one token where the merges might not), and that keep spaces on detokenize (no
// clean_up_tokenization_spaces) - except gpt-2, offered for its familiarity: its detokenize drops
// the space in " ." and " 's", so text holding those does not round-trip.
std::vector<std::string> tokenizer_train_pre_names() { return {"qwen2", "smollm", "gpt-2"}; }

TokenizerTrainResult train_tokenizer(const TokenizerTrainOptions& o, const std::string& out_path) {
    const auto t0 = std::chrono::steady_clock::now();
    if (o.files.empty()) fail("tokenizer train: no training text files");
    if (o.min_frequency < 1)
        fail("tokenizer train: --min-frequency %lld must be at least 1", static_cast<long long>(o.min_frequency));
    if (o.max_chars < 0) fail("tokenizer train: --max-chars %d must be >= 0 (0: no limit)", o.max_chars);
    if (o.n_threads < 1 || o.n_threads > 1024) fail("tokenizer train: -t %d is not in 1..1024", o.n_threads);
    check_writable(out_path);

    std::vector<tok::TrainText> texts;
    for (const std::string& path : o.files) {
        tok::TrainText t{path, read_corpus_file(path)};
        if (t.text.empty()) fail("tokenizer train: %s: the file is empty", path.c_str());
        if (!o.replace_invalid_utf8) {
            const size_t at = tok::utf8_invalid_at(t.text);
            if (at != std::string::npos)
                fail("tokenizer train: %s: invalid UTF-8 at byte %zu (0x%02x); the tokenizer would not give these "
                     "bytes back (--replace-invalid-utf8 trains on the text as the tokenizer will see it)",
                     path.c_str(), at, static_cast<unsigned>(static_cast<unsigned char>(t.text[at])));
        }
        texts.push_back(std::move(t));
    }

    ThreadPool pool(o.n_threads);
    GGUFWriter w;
    TokenizerTrainResult r = o.kind == TokenizerKind::Bpe ? tok::train_bpe(o, texts, pool, w)
                                                          : tok::train_spm(o, texts, pool, w);
    w.write(out_path);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

} // namespace slm
