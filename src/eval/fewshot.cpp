// eval/fewshot.cpp - Python's random.Random, so few-shot examples are the ones
// lm-evaluation-harness draws with the same seed: MT19937 seeded by init_by_array with the seed's
// 32-bit words, getrandbits(k) = top k bits of one output, randbelow by rejection, and sample()'s
// two algorithms (a shrinking pool for small populations, a set of picks for large ones).
#include "eval/tasks_impl.h"

#include <cmath>
#include <numeric>
#include <unordered_set>

namespace slm::eval {

namespace {

void init_genrand(uint32_t* mt, uint32_t s) {
    mt[0] = s;
    for (uint32_t i = 1; i < 624; ++i) mt[i] = 1812433253u * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i;
}

} // namespace

PyRandom::PyRandom(uint64_t seed) {
    std::vector<uint32_t> key;
    do {
        key.push_back(static_cast<uint32_t>(seed & 0xffffffffu));
        seed >>= 32;
    } while (seed);
    init_genrand(mt_, 19650218u);
    uint32_t i = 1, j = 0;
    const uint32_t n = 624, klen = static_cast<uint32_t>(key.size());
    for (uint32_t k = n > klen ? n : klen; k; --k) {
        mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1664525u)) + key[j] + j;
        ++i;
        ++j;
        if (i >= n) {
            mt_[0] = mt_[n - 1];
            i = 1;
        }
        if (j >= klen) j = 0;
    }
    for (uint32_t k = n - 1; k; --k) {
        mt_[i] = (mt_[i] ^ ((mt_[i - 1] ^ (mt_[i - 1] >> 30)) * 1566083941u)) - i;
        ++i;
        if (i >= n) {
            mt_[0] = mt_[n - 1];
            i = 1;
        }
    }
    mt_[0] = 0x80000000u;
    idx_ = 624;
}

uint32_t PyRandom::next32() {
    if (idx_ >= 624) {
        for (int k = 0; k < 624; ++k) {
            const uint32_t y = (mt_[k] & 0x80000000u) | (mt_[(k + 1) % 624] & 0x7fffffffu);
            mt_[k] = mt_[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        idx_ = 0;
    }
    uint32_t y = mt_[idx_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t PyRandom::randbelow(uint64_t n) {
    if (n == 0) return 0;
    int k = 0;
    for (uint64_t x = n; x; x >>= 1) ++k;  // n.bit_length()
    // getrandbits(k) for k <= 32 is one output's top k bits (populations here are far below 2^32)
    for (;;) {
        const uint64_t r = k >= 32 ? next32() : (next32() >> (32 - k));
        if (r < n) return r;
    }
}

std::vector<size_t> PyRandom::sample(size_t n, size_t k) {
    std::vector<size_t> result(k);
    size_t setsize = 21;
    if (k > 5) setsize += static_cast<size_t>(std::pow(4.0, std::ceil(std::log(static_cast<double>(k) * 3) / std::log(4.0))));
    if (n <= setsize) {
        std::vector<size_t> pool(n);
        std::iota(pool.begin(), pool.end(), size_t{0});
        for (size_t i = 0; i < k; ++i) {
            const size_t j = static_cast<size_t>(randbelow(n - i));
            result[i] = pool[j];
            pool[j] = pool[n - i - 1];
        }
    } else {
        std::unordered_set<size_t> selected;
        for (size_t i = 0; i < k; ++i) {
            size_t j = static_cast<size_t>(randbelow(n));
            while (selected.count(j)) j = static_cast<size_t>(randbelow(n));
            selected.insert(j);
            result[i] = j;
        }
    }
    return result;
}

} // namespace slm::eval
