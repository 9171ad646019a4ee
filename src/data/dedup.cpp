// data/dedup.cpp - `slm data dedup`: exact duplicates after normalization, then MinHash-LSH near
// duplicates (Broder 1997; banding as in Leskovec et al., Mining of Massive Datasets, ch. 3).
//
// A pair whose Jaccard similarity is s shares at least one of b bands of r rows with probability
// 1 - (1 - s^r)^b: with the defaults (16 bands x 8 rows) that is 0.98 at s = 0.8 and 0.06 at s = 0.5.
// Candidates are then checked with the exact Jaccard similarity of their shingle sets, so LSH
// only decides what gets compared, never what is dropped.
#include "data/text_util.h"

#include "slm/data.h"
#include "slm/error.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>

namespace slm {

namespace {

void check(const DedupOptions& o) {
    if (o.ngram < 1 || o.ngram > 1000) slm::fail("data dedup: --ngram %d is not in 1..1000", o.ngram);
    if (o.n_perm < 1 || o.n_perm > 4096) slm::fail("data dedup: --perm %d is not in 1..4096", o.n_perm);
    if (o.n_bands < 1 || o.n_perm % o.n_bands != 0)
        slm::fail("data dedup: --bands %d does not divide --perm %d", o.n_bands, o.n_perm);
    if (!(o.threshold >= 0 && o.threshold <= 1)) slm::fail("data dedup: --threshold %g is not in [0, 1]", o.threshold);
}

std::vector<uint64_t> shingles_of(const std::vector<std::string>& w, int ngram) {
    std::vector<uint64_t> s;
    if (w.empty()) return s;
    // A text shorter than one shingle is one shingle of all its words.
    s = data::ngram_hashes(data::word_hashes(w), std::min<size_t>(ngram, w.size()));
    std::sort(s.begin(), s.end());
    s.erase(std::unique(s.begin(), s.end()), s.end());
    return s;
}

// Permutation k is x -> mix64(x ^ seed_k): a fixed random bijection of 64-bit values.
std::vector<uint64_t> perm_seeds(const DedupOptions& o) {
    std::vector<uint64_t> seeds(o.n_perm);
    uint64_t s = o.seed;
    for (auto& v : seeds) v = data::mix64(s += 0x632be59bd9b4e019ull);
    return seeds;
}

std::vector<uint64_t> signature(const std::vector<uint64_t>& shingles, const std::vector<uint64_t>& seeds) {
    std::vector<uint64_t> sig(seeds.size(), UINT64_MAX);
    for (uint64_t x : shingles)
        for (size_t k = 0; k < seeds.size(); ++k) sig[k] = std::min(sig[k], data::mix64(x ^ seeds[k]));
    return sig;
}

} // namespace

std::vector<uint64_t> shingle_hashes(std::string_view text, int ngram) {
    if (ngram < 1) slm::fail("data dedup: --ngram %d is not >= 1", ngram);
    return shingles_of(normalized_words(text), ngram);
}

std::vector<uint64_t> minhash_signature(std::string_view text, const DedupOptions& o) {
    check(o);
    return signature(shingle_hashes(text, o.ngram), perm_seeds(o));
}

double jaccard(const std::vector<uint64_t>& a, const std::vector<uint64_t>& b) {
    if (a.empty() && b.empty()) return 1;
    size_t i = 0, j = 0, inter = 0;
    while (i < a.size() && j < b.size()) {
        if (a[i] < b[j]) ++i;
        else if (b[j] < a[i]) ++j;
        else {
            ++inter;
            ++i;
            ++j;
        }
    }
    return double(inter) / double(a.size() + b.size() - inter);
}

std::vector<bool> DedupResult::kept() const {
    std::vector<bool> k(decisions.size());
    for (size_t i = 0; i < decisions.size(); ++i) k[i] = decisions[i].kept;
    return k;
}

DedupResult dedup_documents(const std::vector<Document>& docs, const DedupOptions& o) {
    check(o);
    const auto t0 = std::chrono::steady_clock::now();
    DedupResult r;
    r.decisions.resize(docs.size());
    std::unordered_map<size_t, size_t> cluster_of;  // kept doc -> index in r.clusters
    auto add_to_cluster = [&](size_t kept, size_t dropped) {
        auto [it, fresh] = cluster_of.try_emplace(kept, r.clusters.size());
        if (fresh) r.clusters.push_back({kept, {}});
        r.clusters[it->second].dropped.push_back(dropped);
    };

    std::unordered_map<std::string, size_t> exact_seen;
    const std::vector<uint64_t> seeds = o.near ? perm_seeds(o) : std::vector<uint64_t>{};
    const size_t rows = o.near ? o.n_perm / o.n_bands : 0;
    // One table per band: hash of the band's rows -> kept documents with that band.
    std::vector<std::unordered_map<uint64_t, std::vector<uint32_t>>> bands(o.near ? o.n_bands : 0);
    std::vector<std::vector<uint64_t>> kept_shingles(o.near ? docs.size() : 0);

    // Per document, in parallel: the normalized text (exact key), shingles and band keys.
    struct Prep {
        std::string key;
        std::vector<uint64_t> shingles, bands;
    };
    std::vector<Prep> prep(docs.size());
    data::for_each_doc(docs.size(), o.n_threads, [&](size_t i) {
        const std::vector<std::string> words = normalized_words(docs[i].text);
        Prep& p = prep[i];
        if (o.exact)
            for (const std::string& w : words) {
                if (!p.key.empty()) p.key += ' ';
                p.key += w;
            }
        if (!o.near) return;
        p.shingles = shingles_of(words, o.ngram);
        const std::vector<uint64_t> sig = signature(p.shingles, seeds);
        p.bands.resize(o.n_bands);
        for (int b = 0; b < o.n_bands; ++b) {
            uint64_t h = data::mix64(static_cast<uint64_t>(b) + 1);
            for (size_t k = 0; k < rows; ++k) h = data::mix64(h ^ sig[b * rows + k]);
            p.bands[b] = h;
        }
    });

    for (size_t i = 0; i < docs.size(); ++i) {
        DedupDecision& d = r.decisions[i];
        std::string& key = prep[i].key;
        if (o.exact) {
            auto it = exact_seen.find(key);
            if (it != exact_seen.end()) {
                d.kept = false;
                d.exact = true;
                d.dup_of = static_cast<int64_t>(it->second);
                d.jaccard = 1;
                ++r.n_exact;
                add_to_cluster(it->second, i);
                continue;
            }
        }
        // Only kept documents become representatives, exact or near.
        if (!o.near) {
            if (o.exact) exact_seen.emplace(std::move(key), i);
            continue;
        }
        std::vector<uint64_t>& sh = prep[i].shingles;
        const std::vector<uint64_t>& keys = prep[i].bands;
        // The earliest kept document similar enough.
        std::vector<uint32_t> cands;
        for (int b = 0; b < o.n_bands; ++b) {
            auto it = bands[b].find(keys[b]);
            if (it != bands[b].end()) cands.insert(cands.end(), it->second.begin(), it->second.end());
        }
        std::sort(cands.begin(), cands.end());
        cands.erase(std::unique(cands.begin(), cands.end()), cands.end());
        for (uint32_t c : cands) {
            ++r.n_candidates;
            const double s = jaccard(sh, kept_shingles[c]);
            if (s >= o.threshold) {
                d.kept = false;
                d.dup_of = c;
                d.jaccard = s;
                ++r.n_near;
                add_to_cluster(c, i);
                break;
            }
        }
        if (!d.kept) continue;
        if (o.exact) exact_seen.emplace(std::move(key), i);
        for (int b = 0; b < o.n_bands; ++b) bands[b][keys[b]].push_back(static_cast<uint32_t>(i));
        kept_shingles[i] = std::move(sh);
        prep[i] = Prep{};  // what is kept lives on in kept_shingles; free the rest early
    }
    std::sort(r.clusters.begin(), r.clusters.end(), [](const DedupCluster& a, const DedupCluster& b) { return a.kept < b.kept; });
    for (size_t i = 0; i < docs.size(); ++i) {
        if (r.decisions[i].kept) {
            ++r.n_kept;
            r.bytes_kept += docs[i].text.size();
        } else {
            r.bytes_dropped += docs[i].text.size();
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

} // namespace slm
