// formats/safetensors.cpp - see safetensors.h.
#include "formats/safetensors.h"

#include "core/mmap.h"
#include "formats/json_util.h"
#include "slm/error.h"
#include "slm/limits.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unistd.h>

namespace slm {

namespace {

using json_util::json;

// The safetensors library refuses headers above 100 MB (MAX_HEADER_SIZE); so do we, before
// reading a byte of it.
constexpr uint64_t kMaxHeader = 100'000'000;
constexpr size_t kMaxDims = 8;

bool dtype_from_name(const std::string& s, STDtype* out) {
    if (s == "F32") *out = STDtype::F32;
    else if (s == "F16") *out = STDtype::F16;
    else if (s == "BF16") *out = STDtype::BF16;
    else return false;
    return true;
}

// The safetensors Dtype enum order (BOOL < U8 < ... < F16 < BF16 < ... < F32 < ...): the writer
// sorts by it, descending.
int dtype_rank(STDtype t) {
    switch (t) {
    case STDtype::F16: return 7;
    case STDtype::BF16: return 8;
    case STDtype::F32: return 11;
    }
    return 0;
}

uint64_t read_le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// A non-negative JSON integer (nlohmann reads 2^63..2^64-1 as unsigned, larger ones as floats).
bool as_u64(const json& v, uint64_t* out) {
    if (v.is_number_unsigned()) {
        *out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_integer()) {
        const int64_t i = v.get<int64_t>();
        if (i < 0) return false;
        *out = static_cast<uint64_t>(i);
        return true;
    }
    return false;
}

// JSON string escaping as serde_json writes it: \" \\ \b \f \n \r \t, other control characters
// as \u00xx (lowercase hex), everything else (UTF-8 included) verbatim.
void append_json_string(std::string& out, const std::string& s) {
    static const char* hex = "0123456789abcdef";
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 15];
            } else {
                out += static_cast<char>(c);
            }
        }
    }
    out += '"';
}

} // namespace

const char* st_dtype_name(STDtype t) {
    switch (t) {
    case STDtype::F32: return "F32";
    case STDtype::F16: return "F16";
    case STDtype::BF16: return "BF16";
    }
    return "?";
}

size_t st_dtype_size(STDtype t) { return t == STDtype::F32 ? 4 : 2; }

int64_t SafetensorsTensor::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;  // validated at parse time: cannot overflow
    return n;
}

std::string SafetensorsTensor::shape_str() const {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
    SafetensorsFile f;
    f.path_ = path;
    f.map_ = std::make_shared<MappedFile>(path);
    f.parse_all(f.map_->data(), f.map_->size());
    return f;
}

SafetensorsFile SafetensorsFile::parse(const uint8_t* data, size_t size, const std::string& name) {
    SafetensorsFile f;
    f.path_ = name;
    f.parse_all(data, size);
    return f;
}

void SafetensorsFile::parse_all(const uint8_t* data, size_t size) {
    const char* p = path_.c_str();
    if (size < 8) fail("safetensors: %s: file is %zu bytes, shorter than the 8-byte header length", p, size);
    const uint64_t n = read_le64(data);
    if (n > kMaxHeader)
        fail("safetensors: %s: header length %" PRIu64 " is larger than the limit %" PRIu64 " of the format", p, n, kMaxHeader);
    if (n > limits().max_metadata_bytes)
        fail("safetensors: %s: header length %" PRIu64 " is more than %s", p, n,
             limit_hint("max_metadata_bytes", limits().max_metadata_bytes).c_str());
    if (n > size - 8)
        fail("safetensors: %s: header length %" PRIu64 " runs past the end of the file (%zu bytes)", p, n, size);
    header_size_ = n;
    const uint64_t data_size = size - 8 - n;
    const uint8_t* base = data + 8 + n;

    const json_util::JsonFile jf = json_util::JsonFile::parse(
        std::string_view(reinterpret_cast<const char*>(data + 8), static_cast<size_t>(n)), path_, "safetensors");
    const json& root = jf.root;
    if (!root.is_object()) fail("safetensors: %s: header is a JSON %s, not an object", p, json_util::type_name(root));

    struct Extent {
        uint64_t begin, end;
        size_t index;
    };
    std::vector<Extent> extents;
    const size_t n_tensors = root.size() - (root.contains("__metadata__") ? 1 : 0);
    if (n_tensors > limits().max_tensors)
        fail("safetensors: %s: %zu tensors is more than %s", p, n_tensors,
             limit_hint("max_tensors", limits().max_tensors).c_str());
    uint64_t total_bytes = 0;
    for (auto it = root.begin(); it != root.end(); ++it) {
        const std::string& key = it.key();
        const json& v = it.value();
        if (key == "__metadata__") {
            if (v.is_null()) continue;
            if (!v.is_object()) jf.fail("__metadata__", std::string("expected an object, got ") + json_util::type_name(v));
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    jf.fail("__metadata__." + m.key(),
                            std::string("expected a string, got ") + json_util::type_name(m.value()));
                metadata_[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string field = "tensor '" + key + "'";
        if (!v.is_object()) jf.fail(key, std::string("expected an object, got ") + json_util::type_name(v));
        SafetensorsTensor t;
        t.name = key;
        t.file = path_;

        const json* dt = json_util::find(v, "dtype");
        if (!dt) jf.fail(key + ".dtype", "missing");
        if (!dt->is_string()) jf.fail(key + ".dtype", std::string("expected a string, got ") + json_util::type_name(*dt));
        const std::string dname = dt->get<std::string>();
        if (!dtype_from_name(dname, &t.dtype))
            fail("safetensors: %s: tensor '%s': dtype '%s' is not supported (F32, F16, BF16)", p, key.c_str(),
                 dname.c_str());

        const json* sh = json_util::find(v, "shape");
        if (!sh) jf.fail(key + ".shape", "missing");
        if (!sh->is_array()) jf.fail(key + ".shape", std::string("expected an array, got ") + json_util::type_name(*sh));
        if (sh->size() > kMaxDims) jf.fail(key + ".shape", "has " + std::to_string(sh->size()) + " dimensions (at most 8)");
        uint64_t numel = 1;
        for (size_t i = 0; i < sh->size(); ++i) {
            uint64_t d = 0;
            if (!as_u64((*sh)[i], &d))
                jf.fail(key + ".shape[" + std::to_string(i) + "]", "expected a non-negative integer, got " + (*sh)[i].dump());
            if (d > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, d, &numel))
                fail("safetensors: %s: tensor '%s': shape %s has more elements than fit in 64 bits", p, key.c_str(),
                     sh->dump().c_str());
            t.shape.push_back(static_cast<int64_t>(d));
        }
        uint64_t nbytes = 0;
        if (__builtin_mul_overflow(numel, static_cast<uint64_t>(st_dtype_size(t.dtype)), &nbytes) ||
            numel > static_cast<uint64_t>(INT64_MAX))
            fail("safetensors: %s: tensor '%s': shape %s of %s is more bytes than fit in 64 bits", p, key.c_str(),
                 sh->dump().c_str(), dname.c_str());

        const json* off = json_util::find(v, "data_offsets");
        if (!off) jf.fail(key + ".data_offsets", "missing");
        uint64_t b = 0, e = 0;
        if (!off->is_array() || off->size() != 2 || !as_u64((*off)[0], &b) || !as_u64((*off)[1], &e))
            jf.fail(key + ".data_offsets", "expected [begin, end] (two non-negative integers), got " + off->dump());
        if (e < b)
            fail("safetensors: %s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin", p,
                 key.c_str(), b, e);
        if (e > data_size)
            fail("safetensors: %s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                 "] past the end of the data section (%" PRIu64 " bytes)",
                 p, key.c_str(), b, e, data_size);
        if (e - b != nbytes)
            fail("safetensors: %s: tensor '%s': shape %s of %s is %" PRIu64 " bytes but data_offsets [%" PRIu64
                 ", %" PRIu64 "] hold %" PRIu64,
                 p, key.c_str(), t.shape_str().c_str(), dname.c_str(), nbytes, b, e, e - b);
        if (nbytes > limits().max_tensor_bytes)
            fail("safetensors: %s: tensor '%s': %" PRIu64 " bytes is more than %s", p, key.c_str(), nbytes,
                 limit_hint("max_tensor_bytes", limits().max_tensor_bytes).c_str());
        total_bytes += nbytes;  // each term is within the file: no overflow
        if (total_bytes > limits().max_model_bytes)
            fail("safetensors: %s: tensor '%s': the tensors so far hold %" PRIu64 " bytes, more than %s", p,
                 key.c_str(), total_bytes, limit_hint("max_model_bytes", limits().max_model_bytes).c_str());
        t.data = base + b;
        t.nbytes = static_cast<size_t>(nbytes);
        extents.push_back({b, e, tensors_.size()});
        tensors_.push_back(std::move(t));
    }

    // No two tensors may share a byte (empty tensors share none).
    std::sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    const Extent* prev = nullptr;
    for (const Extent& x : extents) {
        if (x.end == x.begin) continue;
        if (prev && x.begin < prev->end)
            fail("safetensors: %s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
                 p, tensors_[prev->index].name.c_str(), prev->begin, prev->end, tensors_[x.index].name.c_str(),
                 x.begin, x.end);
        prev = &x;
    }
    // Keep data-offset order, as the library does.
    std::vector<SafetensorsTensor> ordered;
    ordered.reserve(tensors_.size());
    for (const Extent& x : extents) ordered.push_back(std::move(tensors_[x.index]));
    tensors_ = std::move(ordered);
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsCheckpoint SafetensorsCheckpoint::open_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    SafetensorsCheckpoint ck;
    const std::string single = dir + "/model.safetensors";
    const std::string index = dir + "/model.safetensors.index.json";
    std::error_code ec;
    if (fs::is_regular_file(single, ec)) {
        ck.files_.push_back("model.safetensors");
    } else if (fs::is_regular_file(index, ec)) {
        const json_util::JsonFile jf = json_util::JsonFile::read(index, "safetensors");
        const json* wm = json_util::find(jf.root, "weight_map");
        if (!wm) jf.fail("weight_map", "missing");
        if (!wm->is_object()) jf.fail("weight_map", std::string("expected an object, got ") + json_util::type_name(*wm));
        std::map<std::string, std::string> listed;
        for (auto it = wm->begin(); it != wm->end(); ++it) {
            if (!it.value().is_string())
                jf.fail("weight_map." + it.key(), std::string("expected a string, got ") + json_util::type_name(it.value()));
            const std::string file = it.value().get<std::string>();
            // Shards are plain file names next to the index; anything else could read outside DIR.
            if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..")
                jf.fail("weight_map." + it.key(), "'" + file + "' is not a file name in the model folder");
            listed[it.key()] = file;
            if (std::find(ck.files_.begin(), ck.files_.end(), file) == ck.files_.end()) ck.files_.push_back(file);
        }
        if (listed.empty()) jf.fail("weight_map", "is empty");
        std::sort(ck.files_.begin(), ck.files_.end());
        for (const std::string& file : ck.files_)
            ck.shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(dir + "/" + file)));
        for (size_t i = 0; i < ck.files_.size(); ++i)
            for (const SafetensorsTensor& t : ck.shards_[i]->tensors()) {
                auto it = listed.find(t.name);
                if (it == listed.end())
                    fail("safetensors: %s: tensor '%s' is in shard %s but not in the weight_map", index.c_str(),
                         t.name.c_str(), ck.files_[i].c_str());
                if (it->second != ck.files_[i])
                    fail("safetensors: %s: tensor '%s' is in shard %s but the weight_map puts it in %s", index.c_str(),
                         t.name.c_str(), ck.files_[i].c_str(), it->second.c_str());
            }
        for (const auto& [name, file] : listed) {
            const size_t i = std::find(ck.files_.begin(), ck.files_.end(), file) - ck.files_.begin();
            if (!ck.shards_[i]->find(name))
                fail("safetensors: %s: tensor '%s' is listed in the weight_map but missing from %s", index.c_str(),
                     name.c_str(), file.c_str());
        }
    } else {
        fail("safetensors: %s: no model.safetensors or model.safetensors.index.json in this folder", dir.c_str());
    }
    if (ck.shards_.empty()) ck.shards_.push_back(std::make_unique<SafetensorsFile>(SafetensorsFile::open(single)));

    for (const auto& shard : ck.shards_) {
        std::vector<const SafetensorsTensor*> part;
        for (const SafetensorsTensor& t : shard->tensors()) part.push_back(&t);
        std::sort(part.begin(), part.end(), [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
            return a->name < b->name;
        });
        for (const SafetensorsTensor* t : part) {
            if (!ck.by_name_.emplace(t->name, t).second)
                fail("safetensors: %s: tensor '%s' is in more than one shard", dir.c_str(), t->name.c_str());
            ck.order_.push_back(t);
        }
    }
    return ck;
}

const SafetensorsTensor* SafetensorsCheckpoint::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

void SafetensorsWriter::add(const std::string& name, STDtype dtype, const std::vector<int64_t>& shape,
                            const void* data, size_t nbytes) {
    if (name == "__metadata__") fail("safetensors writer: '__metadata__' cannot name a tensor");
    uint64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d), &n))
            fail("safetensors writer: tensor '%s': bad shape", name.c_str());
    }
    if (n * st_dtype_size(dtype) != nbytes)
        fail("safetensors writer: tensor '%s': %zu bytes for %" PRIu64 " elements of %s", name.c_str(), nbytes, n,
             st_dtype_name(dtype));
    for (const Entry& e : entries_)
        if (e.name == name) fail("safetensors writer: tensor '%s' added twice", name.c_str());
    entries_.push_back({name, dtype, shape, data, nbytes, nullptr});
}

void SafetensorsWriter::add_copy(const std::string& name, STDtype dtype, const std::vector<int64_t>& shape,
                                 std::vector<uint8_t> bytes) {
    auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    add(name, dtype, shape, owned->data(), owned->size());
    entries_.back().owned = std::move(owned);
}

std::vector<const SafetensorsWriter::Entry*> SafetensorsWriter::sorted() const {
    std::vector<const Entry*> v;
    for (const Entry& e : entries_) v.push_back(&e);
    std::sort(v.begin(), v.end(), [](const Entry* a, const Entry* b) {
        if (a->dtype != b->dtype) return dtype_rank(a->dtype) > dtype_rank(b->dtype);
        return a->name < b->name;
    });
    return v;
}

std::string SafetensorsWriter::header() const {
    std::string h = "{";
    bool first = true;
    if (!metadata_.empty()) {
        h += "\"__metadata__\":{";
        bool f2 = true;
        for (const auto& [k, v] : metadata_) {
            if (!f2) h += ',';
            f2 = false;
            append_json_string(h, k);
            h += ':';
            append_json_string(h, v);
        }
        h += '}';
        first = false;
    }
    uint64_t offset = 0;
    for (const Entry* e : sorted()) {
        if (!first) h += ',';
        first = false;
        append_json_string(h, e->name);
        h += ":{\"dtype\":\"";
        h += st_dtype_name(e->dtype);
        h += "\",\"shape\":[";
        for (size_t i = 0; i < e->shape.size(); ++i) h += (i ? "," : "") + std::to_string(e->shape[i]);
        h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + e->nbytes) + "]}";
        offset += e->nbytes;
    }
    h += '}';
    h.append((8 - h.size() % 8) % 8, ' ');
    return h;
}

std::vector<uint8_t> SafetensorsWriter::to_bytes() const {
    const std::string h = header();
    std::vector<uint8_t> out(8);
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
    out.insert(out.end(), h.begin(), h.end());
    for (const Entry* e : sorted()) {
        const uint8_t* d = static_cast<const uint8_t*>(e->data);
        out.insert(out.end(), d, d + e->nbytes);
    }
    return out;
}

void SafetensorsWriter::write(const std::string& path) const {
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("safetensors writer: %s: cannot create: %s", tmp.c_str(), std::strerror(errno));
    auto put = [&](const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f) != n) {
            const int e = errno;
            std::fclose(f);
            std::remove(tmp.c_str());
            fail("safetensors writer: %s: write failed: %s", tmp.c_str(), std::strerror(e));
        }
    };
    const std::string h = header();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
    put(len, 8);
    put(h.data(), h.size());
    for (const Entry* e : sorted()) put(e->data, e->nbytes);
    if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) {
        const int e = errno;
        std::fclose(f);
        std::remove(tmp.c_str());
        fail("safetensors writer: %s: flush failed: %s", tmp.c_str(), std::strerror(e));
    }
    if (std::fclose(f) != 0) {
        std::remove(tmp.c_str());
        fail("safetensors writer: %s: close failed: %s", tmp.c_str(), std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        fail("safetensors writer: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), std::strerror(e));
    }
}

} // namespace slm
