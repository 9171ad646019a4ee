// data.cpp - the training stream: text cut into documents and packed with EOS, or token ids
// read as they are; a held-out tail; training windows drawn by a counter-based generator.
#include "train/trainer_internal.h"

#include "core/cpu_info.h"
#include "core/thread_pool.h"
#include "formats/token_file.h"
#include "slm/error.h"
#include "tokenizers/unicode.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slm::train_impl {

namespace {

bool is_blank(std::string_view line) {
    for (char c : line)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\f' && c != '\v') return false;
    return true;
}

bool ends_with(const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// True when the bytes are nothing but whitespace-separated decimal integers (and at least one).
bool looks_like_ids(const std::string& s) {
    bool any = false;
    for (char c : s) {
        if (c >= '0' && c <= '9') {
            any = true;
        } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
            return false;
        }
    }
    return any;
}

// SplitMix64's finalizer (Steele, Lea & Flood 2014): a bijective 64-bit mix good enough to turn
// a counter into independent-looking draws.
uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

} // namespace

std::vector<std::string> split_documents(const std::string& text, const std::string& mode, const std::string& where) {
    if (mode != "blank" && mode != "line" && mode != "none")
        fail("train: %s: field 'doc_split' is '%s', not blank, line or none", where.c_str(), mode.c_str());
    std::vector<std::string> docs;
    std::string cur;
    bool cur_has_text = false;
    auto flush = [&]() {
        if (cur_has_text) docs.push_back(cur);
        cur.clear();
        cur_has_text = false;
    };
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string_view line(text.data() + pos, nl - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        pos = nl + 1;
        if (line == "<|endoftext|>") {
            flush();
            continue;
        }
        const bool blank = is_blank(line);
        if (mode == "line") {
            if (!blank) docs.emplace_back(line);
            continue;
        }
        if (mode == "blank" && blank) {
            flush();
            continue;
        }
        if (!cur.empty() || cur_has_text) cur += '\n';
        cur.append(line);
        cur_has_text = cur_has_text || !blank;
    }
    flush();
    // "none" keeps blank lines inside, but not the trailing newlines of the file.
    for (std::string& d : docs)
        while (!d.empty() && (d.back() == '\n')) d.pop_back();
    return docs;
}

size_t TrainData::train_start(uint64_t seed, int64_t step, int64_t i) const {
    const size_t n_starts = n_train - window() + 1;
    uint64_t h = mix64(seed);
    h = mix64(h ^ static_cast<uint64_t>(step));
    h = mix64(h ^ static_cast<uint64_t>(i));
    return static_cast<size_t>(h % n_starts);
}

void TrainData::fill(size_t start, int32_t* inputs, int32_t* targets) const {
    const size_t T = static_cast<size_t>(seq_len);
    const int32_t* s = tokens.data() + start;
    if (bos != TOKEN_NULL) {
        inputs[0] = bos;
        std::copy(s, s + T - 1, inputs + 1);
        std::copy(s, s + T, targets);
    } else {
        std::copy(s, s + T, inputs);
        std::copy(s + 1, s + T + 1, targets);
    }
}

void TrainData::train_batch(uint64_t seed, int64_t step, int micro, int B, std::vector<int32_t>& inputs,
                            std::vector<int32_t>& targets) const {
    const size_t T = static_cast<size_t>(seq_len);
    inputs.resize(static_cast<size_t>(B) * T);
    targets.resize(static_cast<size_t>(B) * T);
    for (int b = 0; b < B; ++b)
        fill(train_start(seed, step, static_cast<int64_t>(micro) * B + b), inputs.data() + b * T, targets.data() + b * T);
}

std::vector<size_t> TrainData::val_starts(size_t n_max) const {
    const size_t n_avail = n_val_windows();
    const size_t n = std::min(n_max, n_avail);
    std::vector<size_t> starts(n);
    for (size_t k = 0; k < n; ++k) starts[k] = n_train + (k * n_avail / n) * window();
    return starts;
}

TrainData load_train_data(const std::string& path, const Vocab* vocab, uint32_t n_vocab, const TrainOptions& o) {
    if (path.empty()) fail("train: no data file (field 'data', --data)");
    if (o.seq_len < 1) fail("train: field 'seq_len' is %d, not >= 1", o.seq_len);
    if (!(o.val_fraction >= 0.0f && o.val_fraction < 1.0f))
        fail("train: field 'val_fraction' is %g, not in [0, 1)", static_cast<double>(o.val_fraction));
    TrainData d;
    d.source = path;
    d.seq_len = o.seq_len;
    const std::string bytes = formats::read_whole_file(path, "train", "data");
    if (formats::is_llmc_shard(bytes) || ends_with(path, ".tok") || looks_like_ids(bytes)) {
        d.tokens = formats::parse_token_file(path, bytes, n_vocab, "train");
    } else {
        if (!vocab)
            fail("train: %s: a text file needs the model's tokenizer (arch field 'tokenizer'), and the model has none",
                 path.c_str());
        const size_t bad = tok::utf8_invalid_at(bytes);
        if (bad != std::string::npos) fail("train: %s: invalid UTF-8 at byte %zu (not a text file?)", path.c_str(), bad);
        d.text = true;
        const std::vector<std::string> docs = split_documents(bytes, o.doc_split, path);
        const int32_t eos = vocab->eos();
        // Documents tokenize independently: spread them over the threads (a Vocab's const
        // methods may run concurrently).
        std::vector<std::vector<int32_t>> doc_ids(docs.size());
        ThreadPool pool(o.n_threads > 0 ? o.n_threads : physical_cores());
        pool.parallel_for(static_cast<int64_t>(docs.size()), [&](int64_t begin, int64_t end, int) {
            for (int64_t i = begin; i < end; ++i) doc_ids[i] = vocab->tokenize(docs[i], false, false);
        });
        for (const std::vector<int32_t>& ids : doc_ids) {
            if (ids.empty()) continue;
            d.tokens.insert(d.tokens.end(), ids.begin(), ids.end());
            if (eos != TOKEN_NULL) d.tokens.push_back(eos);
            ++d.n_docs;
        }
        if (vocab->add_bos() && vocab->bos() != TOKEN_NULL) d.bos = vocab->bos();
        for (size_t i = 0; i < d.tokens.size(); ++i)
            if (static_cast<uint32_t>(d.tokens[i]) >= n_vocab)
                fail("train: %s: the tokenizer gave id %d at token %zu, outside the model's vocabulary of %u",
                     path.c_str(), d.tokens[i], i, n_vocab);
    }
    if (d.tokens.empty()) fail("train: %s: no tokens in the data file", path.c_str());
    const size_t n = d.tokens.size();
    const size_t n_val = static_cast<size_t>(std::llround(static_cast<double>(o.val_fraction) * static_cast<double>(n)));
    d.n_train = n - n_val;
    if (d.n_train < d.window())
        fail("train: %s: %zu training tokens (after holding out %zu), fewer than one sequence of seq_len %d",
             path.c_str(), d.n_train, n_val, o.seq_len);
    if (o.val_fraction > 0 && d.n_val_windows() == 0)
        fail("train: %s: the held-out tail (val_fraction %g) has %zu tokens, fewer than one sequence of seq_len %d; "
             "raise val_fraction or set it to 0",
             path.c_str(), static_cast<double>(o.val_fraction), n_val, o.seq_len);
    return d;
}

} // namespace slm::train_impl
