#include "formats/token_file.h"

#include "slm/error.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>

namespace slm::formats {

namespace {
constexpr uint64_t kMaxFileBytes = 1ull << 32;  // 4 GiB of text or ids is plenty
constexpr int32_t kLlmcMagic = 20240520;
} // namespace

std::string read_whole_file(const std::string& path, const char* op, const char* what) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("%s: %s: cannot open %s file: %s", op, path.c_str(), what, std::strerror(errno));
    f.seekg(0, std::ios::end);
    const auto size = static_cast<int64_t>(f.tellg());
    if (size < 0) fail("%s: %s: cannot read %s file", op, path.c_str(), what);
    if (static_cast<uint64_t>(size) > kMaxFileBytes)
        fail("%s: %s: %s file is %lld bytes, more than the 4 GiB limit", op, path.c_str(), what,
             static_cast<long long>(size));
    f.seekg(0);
    std::string s(static_cast<size_t>(size), '\0');
    if (size > 0 && !f.read(s.data(), size)) fail("%s: %s: short read", op, path.c_str());
    return s;
}

bool is_llmc_shard(const std::string& s) {
    int32_t magic = 0;
    if (s.size() >= 4) std::memcpy(&magic, s.data(), 4);
    return magic == kLlmcMagic;
}

std::vector<int32_t> parse_token_file(const std::string& path, const std::string& s, uint32_t n_vocab,
                                      const char* op) {
    std::vector<int32_t> ids;
    if (is_llmc_shard(s)) {
        if (s.size() < 1024) fail("%s: %s: llm.c token file has a truncated 1024-byte header", op, path.c_str());
        int32_t hdr[3];
        std::memcpy(hdr, s.data(), sizeof hdr);
        if (hdr[1] != 1) fail("%s: %s: llm.c token file field 'version' is %d, not 1", op, path.c_str(), hdr[1]);
        const uint64_t n = static_cast<uint32_t>(hdr[2]);
        if (hdr[2] < 0 || 1024 + 2 * n != s.size())
            fail("%s: %s: llm.c header field 'count' is %d but the file holds %zu tokens", op, path.c_str(), hdr[2],
                 (s.size() - 1024) / 2);
        ids.resize(n);
        for (uint64_t i = 0; i < n; ++i) {
            uint16_t v;
            std::memcpy(&v, s.data() + 1024 + 2 * i, 2);
            ids[i] = v;
        }
    } else {
        std::istringstream in(s);
        std::string word;
        while (in >> word) {
            char* end = nullptr;
            errno = 0;
            const long long v = std::strtoll(word.c_str(), &end, 10);
            if (end == word.c_str() || *end != '\0' || errno != 0 || v < 0 || v > INT32_MAX)
                fail("%s: %s: token %zu is '%.40s', not a token id", op, path.c_str(), ids.size(), word.c_str());
            ids.push_back(static_cast<int32_t>(v));
        }
    }
    for (size_t i = 0; i < ids.size(); ++i)
        if (static_cast<uint32_t>(ids[i]) >= n_vocab)
            fail("%s: %s: token %zu is id %d, outside the model's vocabulary of %u", op, path.c_str(), i, ids[i],
                 n_vocab);
    return ids;
}

} // namespace slm::formats
