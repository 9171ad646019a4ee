// imatrix.cpp - llama.cpp's importance-matrix files (see imatrix.h).
#include "compress/imatrix.h"

#include "slm/error.h"
#include "slm/gguf.h"

#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace slm::compress {

namespace {

constexpr int64_t kMaxValues = int64_t(1) << 31;  // per entry; bounds any allocation from a count

bool ends_with(const std::string& s, const std::string& suf, std::string* stem) {
    if (s.size() < suf.size() || s.compare(s.size() - suf.size(), suf.size(), suf) != 0) return false;
    *stem = s.substr(0, s.size() - suf.size());
    return true;
}

// A cursor over the legacy file that never reads past the end.
struct Reader {
    const uint8_t* p;
    size_t n, off = 0;
    const std::string& name;
    int32_t i32(const char* what) {
        if (n - off < 4) fail("imatrix: %s: truncated at byte %zu reading %s", name.c_str(), off, what);
        int32_t v;
        std::memcpy(&v, p + off, 4);
        off += 4;
        return v;
    }
    std::string str(int32_t len, const char* what) {
        if (len < 0 || static_cast<size_t>(len) > n - off)
            fail("imatrix: %s: %s length %d at byte %zu is outside the file", name.c_str(), what, len, off);
        std::string s(reinterpret_cast<const char*>(p + off), static_cast<size_t>(len));
        off += static_cast<size_t>(len);
        return s;
    }
};

Imatrix parse_legacy(const uint8_t* data, size_t size, const std::string& name) {
    Imatrix m;
    m.legacy = true;
    Reader r{data, size, 0, name};
    const int32_t n_entries = r.i32("the entry count");
    if (n_entries < 1) fail("imatrix: %s: entry count %d (not a GGUF file, nor a legacy imatrix)", name.c_str(), n_entries);
    for (int32_t i = 0; i < n_entries; ++i) {
        const int32_t len = r.i32("a name length");
        std::string wname = r.str(len, "name");
        // llama.cpp reads names as C strings
        if (wname.find('\0') != std::string::npos) wname.resize(wname.find('\0'));
        const int32_t ncall = r.i32("ncall");
        const int32_t nval = r.i32("nval");
        if (nval < 1 || static_cast<uint64_t>(nval) * 4 > size - r.off)
            fail("imatrix: %s: entry '%s': %d values do not fit in the file", name.c_str(), wname.c_str(), nval);
        ImatrixEntry& e = m.entries[wname];
        e.sums.resize(static_cast<size_t>(nval));
        std::memcpy(e.sums.data(), data + r.off, static_cast<size_t>(nval) * 4);
        r.off += static_cast<size_t>(nval) * 4;
        e.counts.assign(1, static_cast<float>(ncall));
    }
    if (r.off < size) {
        const int32_t n_chunks = r.i32("the chunk count");
        m.chunk_count = n_chunks > 0 ? static_cast<uint32_t>(n_chunks) : 0;
        if (size - r.off >= 4) {
            const int32_t len = r.i32("the dataset name length");
            if (len > 0) {
                std::string ds = r.str(len, "dataset name");
                if (ds.find('\0') != std::string::npos) ds.resize(ds.find('\0'));
                m.datasets.push_back(ds);
            }
        }
    }
    return m;
}

Imatrix from_gguf(const GGUFFile& f) {
    const std::string& name = f.path();
    Imatrix m;
    if (const GGUFValue* v = f.find("imatrix.datasets")) {
        if (v->type == GGUFType::ARRAY && v->elem_type == GGUFType::STRING) m.datasets = v->strs;
    }
    const GGUFValue* cc = f.find("imatrix.chunk_count");
    const GGUFValue* cs = f.find("imatrix.chunk_size");
    m.has_metadata = f.has("imatrix.datasets") && cc && cs;
    if (cc) m.chunk_count = static_cast<uint32_t>(cc->as_uint("imatrix.chunk_count"));
    if (cs) m.chunk_size = static_cast<uint32_t>(cs->as_uint("imatrix.chunk_size"));
    struct Parts {
        const GGUFTensorInfo* sum2 = nullptr;
        const GGUFTensorInfo* counts = nullptr;
        const GGUFTensorInfo* sum = nullptr;
    };
    std::map<std::string, Parts> parts;
    for (const GGUFTensorInfo& t : f.tensors()) {
        std::string stem;
        if (ends_with(t.name, ".in_sum2", &stem)) parts[stem].sum2 = &t;
        else if (ends_with(t.name, ".in_sum", &stem)) parts[stem].sum = &t;
        else if (ends_with(t.name, ".counts", &stem)) parts[stem].counts = &t;
    }
    if (f.tensors().empty()) fail("imatrix: %s: no data (no tensors)", name.c_str());
    for (const auto& [wname, p] : parts) {
        if (!p.sum2 || !p.counts)
            fail("imatrix: %s: entry '%s' has no %s tensor", name.c_str(), wname.c_str(), p.sum2 ? "counts" : "in_sum2");
        for (const GGUFTensorInfo* t : {p.sum2, p.counts, p.sum})
            if (t && t->type != GGMLType::F32)
                fail("imatrix: %s: tensor '%s' is %s; must be F32", name.c_str(), t->name.c_str(), type_name(t->type));
        const int64_t nval = p.sum2->nelements(), ncounts = p.counts->nelements();
        if (p.sum && p.sum->nelements() != nval)
            fail("imatrix: %s: entry '%s': in_sum has %lld values, in_sum2 %lld", name.c_str(), wname.c_str(),
                 static_cast<long long>(p.sum->nelements()), static_cast<long long>(nval));
        if (nval > kMaxValues || ncounts < 1 || nval < ncounts || nval % ncounts != 0)
            fail("imatrix: %s: entry '%s': %lld sums do not split into %lld matrices", name.c_str(), wname.c_str(),
                 static_cast<long long>(nval), static_cast<long long>(ncounts));
        ImatrixEntry& e = m.entries[wname];
        e.sums.resize(static_cast<size_t>(nval));
        std::memcpy(e.sums.data(), p.sum2->data, static_cast<size_t>(nval) * 4);
        e.counts.resize(static_cast<size_t>(ncounts));
        std::memcpy(e.counts.data(), p.counts->data, static_cast<size_t>(ncounts) * 4);
        for (float c : e.counts)
            if (!std::isfinite(c) || c < 0 || c > 9.0e15f)
                fail("imatrix: %s: entry '%s': token count %g is not a count", name.c_str(), wname.c_str(), c);
    }
    return m;
}

void check_finite(const Imatrix& m, const std::string& name) {
    for (const auto& [w, e] : m.entries)
        for (float v : e.sums)
            if (!std::isfinite(v)) fail("imatrix: %s: entry '%s' holds a non-finite value %g", name.c_str(), w.c_str(), v);
}

} // namespace

Imatrix parse_imatrix(const uint8_t* data, size_t size, const std::string& name) {
    Imatrix m;
    if (size >= 4 && std::memcmp(data, "GGUF", 4) == 0) m = from_gguf(GGUFFile::parse(data, size, name));
    else m = parse_legacy(data, size, name);
    check_finite(m, name);
    return m;
}

Imatrix read_imatrix(const std::string& path) {
    struct stat st{};
    if (::stat(path.c_str(), &st) != 0) fail("imatrix: %s: cannot open: %s", path.c_str(), std::strerror(errno));
    char magic[4] = {};
    {
        const int fd = ::open(path.c_str(), O_RDONLY);
        if (fd < 0) fail("imatrix: %s: cannot open: %s", path.c_str(), std::strerror(errno));
        const ssize_t got = ::read(fd, magic, 4);
        ::close(fd);
        if (got == 4 && std::memcmp(magic, "GGUF", 4) == 0) {
            Imatrix m = from_gguf(GGUFFile::open(path));
            check_finite(m, path);
            return m;
        }
    }
    std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail("imatrix: %s: cannot open: %s", path.c_str(), std::strerror(errno));
    const size_t got = buf.empty() ? 0 : std::fread(buf.data(), 1, buf.size(), f);
    std::fclose(f);
    if (got != buf.size()) fail("imatrix: %s: short read", path.c_str());
    return parse_imatrix(buf.data(), buf.size(), path);
}

namespace {
GGUFWriter make_writer(const Imatrix& m) {
    GGUFWriter w;
    w.set("general.type", GGUFValue::string("imatrix"));
    w.set("imatrix.datasets", GGUFValue::str_array(m.datasets));
    w.set("imatrix.chunk_count", GGUFValue::u32(m.chunk_count));
    w.set("imatrix.chunk_size", GGUFValue::u32(m.chunk_size));
    for (const auto& [name, e] : m.entries) {
        const int64_t n_mat = static_cast<int64_t>(e.counts.size());
        if (n_mat == 0 || e.sums.empty() || e.sums.size() % e.counts.size() != 0)
            fail("imatrix: entry '%s': %zu sums for %zu matrices", name.c_str(), e.sums.size(), e.counts.size());
        const int64_t n_in = static_cast<int64_t>(e.sums.size()) / n_mat;
        w.add_tensor(name + ".in_sum2", GGMLType::F32, {n_in, n_mat}, e.sums.data(), e.sums.size() * 4);
        w.add_tensor(name + ".counts", GGMLType::F32, {1, n_mat}, e.counts.data(), e.counts.size() * 4);
    }
    return w;
}
} // namespace

void write_imatrix(const Imatrix& m, const std::string& path) { make_writer(m).write(path); }

std::vector<uint8_t> imatrix_gguf_bytes(const Imatrix& m) { return make_writer(m).to_bytes(); }

std::map<std::string, std::vector<float>> imatrix_values(const Imatrix& m) {
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, e] : m.entries) {
        const size_t ncounts = e.counts.size(), nsums = e.sums.size();
        if (ncounts == 0 || nsums == 0) continue;
        std::vector<float>& v = out[name];
        v.resize(nsums);
        if (!m.legacy) {
            const size_t ne0 = nsums / ncounts;
            for (size_t j = 0; j < ncounts; ++j) {
                // llama.cpp rounds the stored count to an integer first
                const float count = static_cast<float>(std::llround(e.counts[j]));
                for (size_t i = 0; i < ne0; ++i) v[j * ne0 + i] = count > 0 ? e.sums[j * ne0 + i] / count : 1.0f;
            }
        } else {
            const float ncall = static_cast<float>(static_cast<int64_t>(e.counts[0]));
            for (size_t i = 0; i < nsums; ++i) v[i] = ncall > 0 ? e.sums[i] / ncall : e.sums[i];
        }
    }
    return out;
}

} // namespace slm::compress
