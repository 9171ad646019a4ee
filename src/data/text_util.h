// data/text_util.h - what the data tools share: word splitting, stable 64-bit hashes, and a
// random generator whose output does not depend on the standard library's distributions.
#pragma once

#include "core/cpu_info.h"
#include "core/thread_pool.h"

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace slm::data {

// Whitespace-separated words (ASCII whitespace), as views into `text`.
std::vector<std::string_view> split_words(std::string_view text);

// FNV-1a, 64 bits: stable across platforms and runs (std::hash is neither).
inline uint64_t fnv1a(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
    for (unsigned char c : s) {
        h ^= c;
        h *= 0x100000001b3ull;
    }
    return h;
}

// splitmix64's finalizer: a bijective mix of 64 bits.
inline uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// 64-bit hashes of words (FNV-1a, then mixed so every bit depends on every byte).
inline std::vector<uint64_t> word_hashes(const std::vector<std::string>& words) {
    std::vector<uint64_t> h(words.size());
    for (size_t i = 0; i < words.size(); ++i) h[i] = mix64(fnv1a(words[i]));
    return h;
}

// The hash of every run of n consecutive words (wh.size() - n + 1 of them; none if fewer words):
// a polynomial rolling hash over the word hashes (O(1) per position whatever n), then mixed.
inline std::vector<uint64_t> ngram_hashes(const std::vector<uint64_t>& wh, size_t n) {
    std::vector<uint64_t> out;
    if (n == 0 || wh.size() < n) return out;
    constexpr uint64_t P = 0x9e3779b97f4a7c15ull;  // odd, so multiplication is invertible mod 2^64
    uint64_t top = 1;                               // P^(n-1)
    for (size_t k = 1; k < n; ++k) top *= P;
    uint64_t h = 0;
    for (size_t k = 0; k < n; ++k) h = h * P + wh[k];
    out.reserve(wh.size() - n + 1);
    out.push_back(mix64(h ^ n));
    for (size_t i = n; i < wh.size(); ++i) {
        h = (h - wh[i - n] * top) * P + wh[i];
        out.push_back(mix64(h ^ n));
    }
    return out;
}

// A map from 64-bit hashes to 64-bit values, open addressing with linear probing: one cache line
// per lookup and no allocation per element, where std::unordered_map allocates and chases a node.
class HashMap64 {
public:
    explicit HashMap64(size_t expected = 0) {
        size_t n = 16;
        while (n < expected * 2) n *= 2;
        slots_.assign(n, Slot{});
    }
    // The value of `key`, inserted as 0 if absent (then *fresh is set).
    uint64_t& at(uint64_t key, bool* fresh = nullptr) {
        if ((n_ + 1) * 2 > slots_.size()) grow();
        Slot& s = find_slot(key);
        const bool is_new = s.key == 0;
        if (is_new) {
            s.key = fix(key);
            ++n_;
        }
        if (fresh) *fresh = is_new;
        return s.value;
    }
    // The value of `key`, 0 if absent.
    uint64_t get(uint64_t key) const {
        const Slot& s = const_cast<HashMap64*>(this)->find_slot(key);
        return s.key ? s.value : 0;
    }
    size_t size() const { return n_; }
    template <class F>
    void for_each(F&& f) const {
        for (const Slot& s : slots_)
            if (s.key) f(s.key, s.value);
    }

private:
    struct Slot {
        uint64_t key = 0, value = 0;  // key 0 = empty (a hash of 0 is stored as 1)
    };
    static uint64_t fix(uint64_t k) { return k ? k : 1; }
    Slot& find_slot(uint64_t key) {
        key = fix(key);
        const size_t mask = slots_.size() - 1;
        for (size_t i = key & mask;; i = (i + 1) & mask)
            if (slots_[i].key == key || slots_[i].key == 0) return slots_[i];
    }
    void grow() {
        std::vector<Slot> old = std::move(slots_);
        slots_.assign(old.size() * 2, Slot{});
        for (const Slot& s : old)
            if (s.key) find_slot(s.key) = s;
    }
    std::vector<Slot> slots_;
    size_t n_ = 0;
};

// Calls f(i) for every i in [0, n) on n_threads threads (0 = one per physical core); documents are
// independent, so results are the same whatever the thread count.
template <class F>
void for_each_doc(size_t n, int n_threads, const F& f) {
    const int nt = n_threads > 0 ? n_threads : std::max(1, physical_cores());
    if (nt <= 1 || n < 64) {
        for (size_t i = 0; i < n; ++i) f(i);
        return;
    }
    ThreadPool pool(nt);
    pool.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e, int) {
        for (int64_t i = b; i < e; ++i) f(static_cast<size_t>(i));
    });
}

// std::mt19937_64 is specified bit for bit; the reductions below are ours, so a seed gives the same
// numbers everywhere (std::uniform_int_distribution and std::shuffle are implementation-defined).
class Rng {
public:
    explicit Rng(uint64_t seed) : g_(seed) {}
    uint64_t next() { return g_(); }
    // Uniform in [0, n), n > 0, by rejection (no modulo bias).
    uint64_t below(uint64_t n) {
        const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        uint64_t x;
        do x = g_();
        while (x >= limit);
        return x % n;
    }
    int64_t range(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(static_cast<uint64_t>(hi - lo + 1))); }
    double uniform() { return static_cast<double>(g_() >> 11) * 0x1.0p-53; }  // [0, 1)
    template <class T>
    void shuffle(std::vector<T>& v) {  // Fisher-Yates
        for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
    }

private:
    std::mt19937_64 g_;
};

} // namespace slm::data
