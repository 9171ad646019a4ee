// tokenizers/train_impl.h - the parts of tokenizer training shared by the byte-level BPE trainer
// (bpe_train.cpp) and the SentencePiece-style one (spm_train.cpp): word counting over the corpus
// and the merge learner (merge_train.cpp).
#pragma once

#include "slm/tokenizer_train.h"
#include "tokenizers/vocab_impl.h"

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

class ThreadPool;
class GGUFWriter;

namespace tok {

// One training file, read and checked.
struct TrainText {
    std::string path;
    std::string text;
};

// Calls emit(word) for every word of `chunk`, in order; `file_start` says the chunk begins a file.
using WordSplitter = std::function<void(std::string_view chunk, bool file_start,
                                        const std::function<void(std::string_view)>& emit)>;

// The distinct words of the corpus, sorted (so ids do not depend on threads), with their counts.
struct WordTable {
    std::vector<std::string> words;
    std::vector<int64_t> freq;
    uint64_t n_words = 0;  // occurrences
    int32_t find(std::string_view w) const;  // index in `words` or -1
};

// Splits every file in chunks that end where any of our splitters ends a word (after a '\n' that an
// ASCII non-space follows), splits the chunks in parallel and counts the words.
WordTable count_words(const std::vector<TrainText>& texts, const WordSplitter& split, ThreadPool& pool);

// Runs split over each whole file in order and calls emit with each word's index in the table.
void for_each_word(const std::vector<TrainText>& texts, const WordSplitter& split, const WordTable& table,
                   const std::function<void(int32_t)>& emit);

// A word as the merge learner sees it: token ids (>= 0, mergeable) or negative ids (a symbol that
// has no token and never merges), and how often the word occurs.
struct MergeWord {
    std::vector<int32_t> sym;
    int64_t freq = 0;
};

// The growing vocabulary: token texts, their lengths in characters, text -> id.
struct TrainVocab {
    std::vector<std::string> text;
    std::vector<int32_t> n_chars;
    StringMap ids;
    int32_t add(std::string t, int32_t chars);  // the new id; the text must be new
    int32_t find_id(std::string_view t) const {
        auto it = ids.find(t);
        return it == ids.end() ? -1 : it->second;
    }
};

struct MergeOptions {
    int32_t n_vocab = 0;        // stop when the vocab has this many tokens
    int64_t min_frequency = 1;  // stop when the best pair is rarer
    int32_t max_chars = 0;      // never form a longer token (0: no limit)
    // SentencePiece semantics: the runtime merges any two adjacent symbols whose text is a token
    // (the best-scoring first), not only the pair a merge was learned from. Then a merge also
    // joins every other pair of tokens spelling the same text, and a merge is dropped when its
    // token would sit next to a symbol it spells an existing token with (the runtime would join
    // them on sight, out of the learned order). Together these keep the runtime's order equal to
    // training's: no two adjacent symbols ever spell a token older than the last merge.
    bool by_text = false;
};

// Learns merges on `words` (rewritten in place into their final segmentation), adding one token to
// `vocab` per merge; returns the merges as (left, right) ids, in rank order.
std::vector<std::pair<int32_t, int32_t>> learn_merges(std::vector<MergeWord>& words, TrainVocab& vocab,
                                                      const MergeOptions& o);

// The kinds' trainers: fill `w` with the general.* and tokenizer.* keys and return the figures
// (seconds is set by the caller).
TokenizerTrainResult train_bpe(const TokenizerTrainOptions& o, const std::vector<TrainText>& texts, ThreadPool& pool,
                               GGUFWriter& w);
TokenizerTrainResult train_spm(const TokenizerTrainOptions& o, const std::vector<TrainText>& texts, ThreadPool& pool,
                               GGUFWriter& w);

} // namespace tok
} // namespace slm
