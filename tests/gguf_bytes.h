// gguf_bytes.h - a little-endian byte builder for crafting GGUF files by hand in tests: malformed
// headers, lying counts and attack shapes that GGUFWriter refuses to produce.
#pragma once

#include "slm/gguf.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace test {

constexpr uint64_t kU64Max = std::numeric_limits<uint64_t>::max();

inline uint32_t id(slm::GGUFType t) { return static_cast<uint32_t>(t); }
inline uint32_t id(slm::GGMLType t) { return static_cast<uint32_t>(t); }

struct GGUFBytes {
    std::vector<uint8_t> b;
    GGUFBytes& le(uint64_t v, int n) {
        for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
        return *this;
    }
    GGUFBytes& u8(uint8_t v) { return le(v, 1); }
    GGUFBytes& u16(uint16_t v) { return le(v, 2); }
    GGUFBytes& u32(uint32_t v) { return le(v, 4); }
    GGUFBytes& i32(int32_t v) { return le(static_cast<uint32_t>(v), 4); }
    GGUFBytes& u64(uint64_t v) { return le(v, 8); }
    GGUFBytes& f32(float f) {
        uint32_t x;
        std::memcpy(&x, &f, 4);
        return u32(x);
    }
    GGUFBytes& raw(const std::string& s) {
        b.insert(b.end(), s.begin(), s.end());
        return *this;
    }
    GGUFBytes& str(const std::string& s) { return u64(s.size()).raw(s); }
    GGUFBytes& zeros(size_t n) {
        b.insert(b.end(), n, 0);
        return *this;
    }
    GGUFBytes& pad(size_t al) {
        while (b.size() % al) b.push_back(0);
        return *this;
    }
    GGUFBytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
        return raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
    }
    // key + type; the caller appends the value.
    GGUFBytes& key(const std::string& k, slm::GGUFType t) { return str(k).u32(id(t)); }
    GGUFBytes& kv_u32(const std::string& k, uint32_t v) { return key(k, slm::GGUFType::U32).u32(v); }
    GGUFBytes& kv_str(const std::string& k, const std::string& v) { return key(k, slm::GGUFType::STRING).str(v); }
    GGUFBytes& tinfo(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(ne.size()));
        for (uint64_t d : ne) u64(d);
        return u32(type).u64(offset);
    }
};

} // namespace test
