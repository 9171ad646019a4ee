// tokenizers/merge_train.cpp - what both tokenizer trainers share: counting the words of the corpus
// in parallel, and learning merges by pair frequency with incremental pair counts (a lazy max-heap
// over the counts, and for each pair the words that hold it, so a merge only revisits those words).
#include "tokenizers/train_impl.h"

#include "core/thread_pool.h"
#include "slm/error.h"
#include "tokenizers/unicode.h"

#include <algorithm>
#include <queue>
#include <unordered_map>

namespace slm::tok {

// ---- words ----------------------------------------------------------------------------------

namespace {

// Chunks are cut at most this far apart (then at the next safe point): small enough to keep two
// threads busy on a few MB, large enough that the per-chunk cost is noise. A fixed size keeps the
// chunking independent of the thread count (not that the counts would change: see below).
constexpr size_t CHUNK_BYTES = 256 * 1024;

// A cut between a '\n' and a printable ASCII character other than space is a word boundary for
// every splitter the trainers use: none of the GPT-2 / Qwen2 regex alternatives can hold a newline
// followed by a non-space, and the SPM splitter ends a word at each newline run.
// The cut must also not split the bytes a lead byte claims (SPM steps over them whatever they are).
bool safe_cut(std::string_view text, size_t i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (text[i - 1] != '\n' || c <= 0x20 || c >= 0x7f) return false;
    for (size_t j = 2; j <= 3 && j <= i; ++j)
        if (utf8_len(text[i - j]) > j) return false;
    return true;
}

struct Chunk {
    size_t file;
    size_t begin, end;
};

std::vector<Chunk> make_chunks(const std::vector<TrainText>& texts) {
    std::vector<Chunk> chunks;
    for (size_t f = 0; f < texts.size(); ++f) {
        const std::string_view t = texts[f].text;
        size_t begin = 0;
        while (begin < t.size()) {
            size_t end = begin + CHUNK_BYTES;
            while (end < t.size() && !safe_cut(t, end)) ++end;
            end = std::min(end, t.size());
            chunks.push_back({f, begin, end});
            begin = end;
        }
    }
    return chunks;
}

} // namespace

int32_t WordTable::find(std::string_view w) const {
    auto it = std::lower_bound(words.begin(), words.end(), w, [](const std::string& a, std::string_view b) {
        return std::string_view(a) < b;
    });
    if (it == words.end() || *it != w) return -1;
    return static_cast<int32_t>(it - words.begin());
}

WordTable count_words(const std::vector<TrainText>& texts, const WordSplitter& split, ThreadPool& pool) {
    const std::vector<Chunk> chunks = make_chunks(texts);
    using Counts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;
    std::vector<Counts> local(static_cast<size_t>(pool.size()));
    std::vector<uint64_t> n_local(local.size(), 0);
    pool.parallel_for(static_cast<int64_t>(chunks.size()), [&](int64_t b, int64_t e, int tid) {
        Counts& counts = local[static_cast<size_t>(tid)];
        for (int64_t i = b; i < e; ++i) {
            const Chunk& c = chunks[static_cast<size_t>(i)];
            const std::string_view t = std::string_view(texts[c.file].text).substr(c.begin, c.end - c.begin);
            split(t, c.begin == 0, [&](std::string_view w) {
                if (w.empty()) return;
                ++n_local[static_cast<size_t>(tid)];
                auto it = counts.find(w);
                if (it == counts.end()) counts.emplace(std::string(w), 1);
                else ++it->second;
            });
        }
    });
    // Sums do not depend on which thread counted what; sorting the words makes the ids not
    // depend on hash order either.
    Counts all = std::move(local[0]);
    for (size_t t = 1; t < local.size(); ++t)
        for (auto& [w, n] : local[t]) all[w] += n;
    WordTable table;
    for (uint64_t n : n_local) table.n_words += n;
    table.words.reserve(all.size());
    for (auto& [w, n] : all) table.words.push_back(w);
    std::sort(table.words.begin(), table.words.end());
    table.freq.reserve(table.words.size());
    for (const std::string& w : table.words) table.freq.push_back(all.find(w)->second);
    return table;
}

void for_each_word(const std::vector<TrainText>& texts, const WordSplitter& split, const WordTable& table,
                   const std::function<void(int32_t)>& emit) {
    for (const Chunk& c : make_chunks(texts)) {
        const std::string_view t = std::string_view(texts[c.file].text).substr(c.begin, c.end - c.begin);
        split(t, c.begin == 0, [&](std::string_view w) {
            if (w.empty()) return;
            const int32_t id = table.find(w);
            if (id < 0) fail("tokenizer train: %s: word not counted (internal error)", texts[c.file].path.c_str());
            emit(id);
        });
    }
}

// ---- merges ---------------------------------------------------------------------------------

int32_t TrainVocab::add(std::string t, int32_t chars) {
    const auto id = static_cast<int32_t>(text.size());
    ids.emplace(t, id);
    text.push_back(std::move(t));
    n_chars.push_back(chars);
    return id;
}

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xffffffffu); }

struct HeapEntry {
    int64_t count;
    uint64_t key;
};

// Max-heap: the larger count, then the smaller (left, right) ids: a total order, so which pair
// wins a tie never depends on hash or insertion order.
struct HeapLess {
    bool operator()(const HeapEntry& x, const HeapEntry& y) const {
        return x.count < y.count || (x.count == y.count && x.key > y.key);
    }
};

} // namespace

std::vector<std::pair<int32_t, int32_t>> learn_merges(std::vector<MergeWord>& words, TrainVocab& vocab,
                                                      const MergeOptions& o) {
    std::unordered_map<uint64_t, int64_t> counts;
    std::unordered_map<uint64_t, std::vector<int32_t>> where;  // words holding the pair (may be stale)
    for (size_t w = 0; w < words.size(); ++w) {
        const std::vector<int32_t>& s = words[w].sym;
        for (size_t i = 0; i + 1 < s.size(); ++i) {
            if (s[i] < 0 || s[i + 1] < 0) continue;
            const uint64_t k = pair_key(s[i], s[i + 1]);
            counts[k] += words[w].freq;
            std::vector<int32_t>& v = where[k];
            if (v.empty() || v.back() != static_cast<int32_t>(w)) v.push_back(static_cast<int32_t>(w));
        }
    }
    std::vector<HeapEntry> init;
    init.reserve(counts.size());
    for (const auto& [k, n] : counts) init.push_back({n, k});
    std::priority_queue<HeapEntry, std::vector<HeapEntry>, HeapLess> heap(HeapLess{}, std::move(init));

    std::vector<std::pair<int32_t, int32_t>> merges;
    std::vector<int32_t> merged, ws;
    std::vector<uint64_t> fresh, joined;
    while (vocab.text.size() < static_cast<size_t>(o.n_vocab) && !heap.empty()) {
        const HeapEntry e = heap.top();
        heap.pop();
        // Counts of existing pairs only fall (a merge creates pairs only with its new token), so an
        // entry is either current or too high: re-queue a stale one at its true count.
        const auto it = counts.find(e.key);
        const int64_t cur = it == counts.end() ? 0 : it->second;
        if (cur != e.count) {
            if (cur > 0) heap.push({cur, e.key});
            continue;
        }
        if (cur < o.min_frequency) break;
        const int32_t a = key_left(e.key), b = key_right(e.key);
        std::string text = vocab.text[a] + vocab.text[b];
        const int32_t chars = vocab.n_chars[a] + vocab.n_chars[b];
        // Each test below stays true once true (the vocab only grows), and a pair is never queued
        // again once dropped here (new pairs all hold the new token).
        if (o.max_chars > 0 && chars > o.max_chars) continue;
        if (vocab.ids.count(text)) continue;  // one merge per token text: see tokenizer_train.h
        // The pairs this merge joins: (a, b), and by text every other pair of tokens spelling it.
        joined.assign(1, e.key);
        if (o.by_text) {
            for (size_t i = 1; i < text.size(); ++i) {
                const int32_t l = vocab.find_id(std::string_view(text).substr(0, i));
                const int32_t r = vocab.find_id(std::string_view(text).substr(i));
                if (l >= 0 && r >= 0 && pair_key(l, r) != e.key) joined.push_back(pair_key(l, r));
            }
        }
        auto joins = [&](int32_t l, int32_t r) {
            if (l < 0 || r < 0) return false;
            const uint64_t k = pair_key(l, r);
            return std::find(joined.begin(), joined.end(), k) != joined.end();
        };
        ws.clear();
        for (uint64_t k : joined)
            if (auto wit = where.find(k); wit != where.end()) ws.insert(ws.end(), wit->second.begin(), wit->second.end());
        std::sort(ws.begin(), ws.end());
        ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
        // By text, the runtime joins any two adjacent symbols spelling a token, best score first. So
        // the new token must not sit next to a symbol it spells an (older, better-scored) token
        // with: the runtime would join those at once where training would not. Such a pair is
        // dropped for good too (its neighbours could change later: rare, and simpler to skip).
        if (o.by_text) {
            const int32_t x_new = static_cast<int32_t>(vocab.text.size());
            auto spells_token = [&](int32_t l, int32_t r) {
                if (l < 0 || r < 0) return false;
                const std::string& tl = l == x_new ? text : vocab.text[l];
                const std::string& tr = r == x_new ? text : vocab.text[r];
                return vocab.ids.count(tl + tr) != 0;
            };
            bool clash = false;
            for (size_t wi = 0; wi < ws.size() && !clash; ++wi) {
                const std::vector<int32_t>& s = words[ws[wi]].sym;
                merged.clear();
                for (size_t i = 0; i < s.size();) {
                    if (i + 1 < s.size() && joins(s[i], s[i + 1])) {
                        merged.push_back(x_new);
                        i += 2;
                    } else {
                        merged.push_back(s[i++]);
                    }
                }
                for (size_t i = 0; i + 1 < merged.size() && !clash; ++i)
                    clash = (merged[i] == x_new || merged[i + 1] == x_new) && spells_token(merged[i], merged[i + 1]);
            }
            if (clash) continue;
        }
        for (uint64_t k : joined) where.erase(k);

        const int32_t x = vocab.add(std::move(text), chars);
        merges.emplace_back(a, b);
        fresh.clear();
        for (int32_t w : ws) {
            std::vector<int32_t>& s = words[w].sym;
            const int64_t f = words[w].freq;
            bool found = false;
            for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = joins(s[i], s[i + 1]);
            if (!found) continue;
            // Take the word's pairs out, merge left to right, put the new pairs in: simpler than
            // tracking each neighbour, and words are short.
            for (size_t i = 0; i + 1 < s.size(); ++i)
                if (s[i] >= 0 && s[i + 1] >= 0) counts[pair_key(s[i], s[i + 1])] -= f;
            merged.clear();
            for (size_t i = 0; i < s.size();) {
                if (i + 1 < s.size() && joins(s[i], s[i + 1])) {
                    merged.push_back(x);
                    i += 2;
                } else {
                    merged.push_back(s[i++]);
                }
            }
            s.assign(merged.begin(), merged.end());
            for (size_t i = 0; i + 1 < s.size(); ++i) {
                if (s[i] < 0 || s[i + 1] < 0) continue;
                const uint64_t k = pair_key(s[i], s[i + 1]);
                counts[k] += f;
                if (s[i] == x || s[i + 1] == x) {
                    std::vector<int32_t>& v = where[k];
                    if (v.empty() || v.back() != w) v.push_back(w);
                    fresh.push_back(k);
                }
            }
        }
        for (uint64_t k : joined) counts.erase(k);
        std::sort(fresh.begin(), fresh.end());
        fresh.erase(std::unique(fresh.begin(), fresh.end()), fresh.end());
        for (uint64_t k : fresh) heap.push({counts[k], k});
    }
    return merges;
}

} // namespace slm::tok
