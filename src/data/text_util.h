// data/text_util.h - what the data tools share: word splitting, stable 64-bit hashes, and a
// random generator whose output does not depend on the standard library's distributions.
#pragma once

#include <cstddef>
#include <cstdint>
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

// The hash of a run of words, as if joined by single spaces.
inline uint64_t hash_words(const std::vector<std::string>& w, size_t begin, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        if (i) h = fnv1a(" ", h);
        h = fnv1a(w[begin + i], h);
    }
    return h;
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
