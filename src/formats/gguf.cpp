// gguf.cpp - GGUF v2/v3 reader and writer (the layout of llama.cpp's ggml/src/gguf.cpp).
//
// The reader never trusts a number from the file: every count and length is checked against the
// bytes that remain before anything is allocated from it, and every tensor extent against the
// data section.
#include "slm/gguf.h"

#include "core/mmap.h"
#include "slm/error.h"
#include "slm/limits.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unistd.h>
#include <unordered_set>

namespace slm {

namespace {

constexpr uint32_t kMaxDims = 4;           // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;          // nested arrays deeper than this are rejected
constexpr uint64_t kMaxAlignment = 1u << 20;

bool valid_gguf_type(uint32_t t) { return t <= static_cast<uint32_t>(GGUFType::F64); }

} // namespace

const char* gguf_type_name(GGUFType t) {
    switch (t) {
    case GGUFType::U8: return "UINT8";
    case GGUFType::I8: return "INT8";
    case GGUFType::U16: return "UINT16";
    case GGUFType::I16: return "INT16";
    case GGUFType::U32: return "UINT32";
    case GGUFType::I32: return "INT32";
    case GGUFType::F32: return "FLOAT32";
    case GGUFType::BOOL: return "BOOL";
    case GGUFType::STRING: return "STRING";
    case GGUFType::ARRAY: return "ARRAY";
    case GGUFType::U64: return "UINT64";
    case GGUFType::I64: return "INT64";
    case GGUFType::F64: return "FLOAT64";
    }
    return "UNKNOWN";
}

size_t gguf_scalar_size(GGUFType t) {
    switch (t) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::BOOL: return 1;
    case GGUFType::U16: case GGUFType::I16: return 2;
    case GGUFType::U32: case GGUFType::I32: case GGUFType::F32: return 4;
    case GGUFType::U64: case GGUFType::I64: case GGUFType::F64: return 8;
    default: return 0;
    }
}

// ---- GGUFValue ---------------------------------------------------------------------------------

static GGUFValue scalar(GGUFType t, uint64_t bits) {
    GGUFValue v;
    v.type = t;
    v.bits = bits;
    return v;
}

GGUFValue GGUFValue::u8(uint8_t x) { return scalar(GGUFType::U8, x); }
GGUFValue GGUFValue::i8(int8_t x) { return scalar(GGUFType::I8, static_cast<uint8_t>(x)); }
GGUFValue GGUFValue::u16(uint16_t x) { return scalar(GGUFType::U16, x); }
GGUFValue GGUFValue::i16(int16_t x) { return scalar(GGUFType::I16, static_cast<uint16_t>(x)); }
GGUFValue GGUFValue::u32(uint32_t x) { return scalar(GGUFType::U32, x); }
GGUFValue GGUFValue::i32(int32_t x) { return scalar(GGUFType::I32, static_cast<uint32_t>(x)); }
GGUFValue GGUFValue::u64(uint64_t x) { return scalar(GGUFType::U64, x); }
GGUFValue GGUFValue::i64(int64_t x) { return scalar(GGUFType::I64, static_cast<uint64_t>(x)); }
GGUFValue GGUFValue::f32(float x) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    return scalar(GGUFType::F32, b);
}
GGUFValue GGUFValue::f64(double x) {
    uint64_t b;
    std::memcpy(&b, &x, 8);
    return scalar(GGUFType::F64, b);
}
GGUFValue GGUFValue::boolean(bool x) { return scalar(GGUFType::BOOL, x ? 1 : 0); }
GGUFValue GGUFValue::string(std::string x) {
    GGUFValue v;
    v.type = GGUFType::STRING;
    v.str = std::move(x);
    return v;
}
GGUFValue GGUFValue::str_array(std::vector<std::string> x) {
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = GGUFType::STRING;
    v.n = x.size();
    v.strs = std::move(x);
    return v;
}
template <class T>
static GGUFValue numeric_array(GGUFType et, const std::vector<T>& x) {
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = et;
    v.n = x.size();
    v.raw.resize(x.size() * sizeof(T));
    if (!x.empty()) std::memcpy(v.raw.data(), x.data(), v.raw.size());
    return v;
}
GGUFValue GGUFValue::f32_array(const std::vector<float>& x) { return numeric_array(GGUFType::F32, x); }
GGUFValue GGUFValue::i32_array(const std::vector<int32_t>& x) { return numeric_array(GGUFType::I32, x); }
GGUFValue GGUFValue::u32_array(const std::vector<uint32_t>& x) { return numeric_array(GGUFType::U32, x); }
GGUFValue GGUFValue::array_of_arrays(std::vector<GGUFValue> x) {
    GGUFValue v;
    v.type = GGUFType::ARRAY;
    v.elem_type = GGUFType::ARRAY;
    v.n = x.size();
    v.items = std::move(x);
    return v;
}

bool GGUFValue::is_integer() const {
    switch (type) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::U16: case GGUFType::I16:
    case GGUFType::U32: case GGUFType::I32: case GGUFType::U64: case GGUFType::I64: return true;
    default: return false;
    }
}

bool GGUFValue::is_float() const { return type == GGUFType::F32 || type == GGUFType::F64; }

// Decodes scalar bits of type t as a signed/unsigned pair; `neg` is set for negative values.
static void decode_int(GGUFType t, uint64_t b, bool* neg, uint64_t* mag, int64_t* sval) {
    int64_t s = 0;
    bool is_signed = true;
    switch (t) {
    case GGUFType::U8: case GGUFType::U16: case GGUFType::U32: case GGUFType::U64: is_signed = false; break;
    case GGUFType::I8: s = static_cast<int8_t>(b); break;
    case GGUFType::I16: s = static_cast<int16_t>(b); break;
    case GGUFType::I32: s = static_cast<int32_t>(b); break;
    case GGUFType::I64: s = static_cast<int64_t>(b); break;
    default: break;
    }
    if (is_signed) {
        *neg = s < 0;
        *mag = s < 0 ? 0 : static_cast<uint64_t>(s);
        *sval = s;
    } else {
        *neg = false;
        *mag = b;
        *sval = static_cast<int64_t>(b);
    }
}

int64_t GGUFValue::as_int(const std::string& what) const {
    if (!is_integer()) fail("%s: expected an integer, got %s", what.c_str(), gguf_type_name(type));
    bool neg;
    uint64_t mag;
    int64_t s;
    decode_int(type, bits, &neg, &mag, &s);
    if (!neg && mag > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("%s: value %" PRIu64 " too large", what.c_str(), mag);
    return s;
}

uint64_t GGUFValue::as_uint(const std::string& what) const {
    if (!is_integer()) fail("%s: expected an integer, got %s", what.c_str(), gguf_type_name(type));
    bool neg;
    uint64_t mag;
    int64_t s;
    decode_int(type, bits, &neg, &mag, &s);
    if (neg) fail("%s: expected a non-negative value, got %" PRId64, what.c_str(), s);
    return mag;
}

double GGUFValue::as_float(const std::string& what) const {
    if (type == GGUFType::F32) {
        float f;
        uint32_t b = static_cast<uint32_t>(bits);
        std::memcpy(&f, &b, 4);
        return f;
    }
    if (type == GGUFType::F64) {
        double d;
        std::memcpy(&d, &bits, 8);
        return d;
    }
    if (is_integer()) return static_cast<double>(as_int(what));
    fail("%s: expected a number, got %s", what.c_str(), gguf_type_name(type));
}

bool GGUFValue::as_bool(const std::string& what) const {
    if (type != GGUFType::BOOL) fail("%s: expected BOOL, got %s", what.c_str(), gguf_type_name(type));
    return bits != 0;
}

static uint64_t load_le(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
    return v;
}

double GGUFValue::elem_float(uint64_t i) const {
    size_t es = gguf_scalar_size(elem_type);
    if (type != GGUFType::ARRAY || es == 0 || i >= n) fail("gguf: array element %" PRIu64 " out of range", i);
    return scalar(elem_type, load_le(raw.data() + i * es, es)).as_float("array element");
}

int64_t GGUFValue::elem_int(uint64_t i) const {
    size_t es = gguf_scalar_size(elem_type);
    if (type != GGUFType::ARRAY || es == 0 || i >= n) fail("gguf: array element %" PRIu64 " out of range", i);
    return scalar(elem_type, load_le(raw.data() + i * es, es)).as_int("array element");
}

std::string GGUFValue::to_string(size_t max_items) const {
    switch (type) {
    case GGUFType::STRING: {
        std::string s = str.size() > 200 ? str.substr(0, 200) + "..." : str;
        return "\"" + s + "\"";
    }
    case GGUFType::BOOL: return bits ? "true" : "false";
    case GGUFType::F32: case GGUFType::F64: return strprintf("%.9g", as_float(""));
    case GGUFType::ARRAY: {
        std::string s = strprintf("[%s x %" PRIu64 "] [", gguf_type_name(elem_type), n);
        uint64_t k = std::min<uint64_t>(n, max_items);
        for (uint64_t i = 0; i < k; ++i) {
            if (i) s += ", ";
            if (elem_type == GGUFType::STRING) s += GGUFValue::string(strs[i]).to_string();
            else if (elem_type == GGUFType::ARRAY) s += items[i].to_string(max_items);
            else if (elem_type == GGUFType::F32 || elem_type == GGUFType::F64) s += strprintf("%.6g", elem_float(i));
            else if (elem_type == GGUFType::BOOL) s += raw[i] ? "true" : "false";
            else s += scalar(elem_type, load_le(raw.data() + i * gguf_scalar_size(elem_type),
                                                gguf_scalar_size(elem_type))).to_string();  // U64 >= 2^63 too
        }
        if (k < n) s += ", ...";
        return s + "]";
    }
    default: {
        bool neg;
        uint64_t mag;
        int64_t sv;
        decode_int(type, bits, &neg, &mag, &sv);
        return neg ? std::to_string(sv) : std::to_string(mag);
    }
    }
}

bool GGUFValue::operator==(const GGUFValue& o) const {
    if (type != o.type) return false;
    switch (type) {
    case GGUFType::STRING: return str == o.str;
    case GGUFType::ARRAY:
        return elem_type == o.elem_type && n == o.n && raw == o.raw && strs == o.strs && items == o.items;
    default: return bits == o.bits;
    }
}

std::string GGUFTensorInfo::shape_str() const {
    std::string s = "[";
    for (uint32_t i = 0; i < n_dims; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
    return s + "]";
}

// ---- reader -------------------------------------------------------------------------------------

class GGUFParser {
public:
    GGUFParser(const uint8_t* p, size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}

    [[noreturn]] void error(const char* what, const std::string& detail) const {
        fail("gguf: %s: %s %s (at byte %zu of %zu)", name_.c_str(), what, detail.c_str(), pos_, n_);
    }

    size_t remaining() const { return n_ - pos_; }
    size_t pos() const { return pos_; }

    void need(uint64_t bytes, const char* what, const std::string& ctx) const {
        if (bytes > remaining())
            error(what, strprintf("%s: needs %" PRIu64 " bytes but only %zu remain (file truncated?)",
                                  ctx.c_str(), bytes, remaining()));
    }

    uint64_t read_uint(size_t bytes, const char* what, const std::string& ctx) {
        need(bytes, what, ctx);
        uint64_t v = load_le(p_ + pos_, bytes);
        pos_ += bytes;
        return v;
    }
    uint32_t u32(const char* what, const std::string& ctx) { return static_cast<uint32_t>(read_uint(4, what, ctx)); }
    uint64_t u64(const char* what, const std::string& ctx) { return read_uint(8, what, ctx); }

    // Metadata reads may not go past meta_end_ (the max_metadata_bytes limit), checked before
    // anything is allocated for them.
    void meta_need(uint64_t bytes, const std::string& ctx) const {
        if (pos_ > meta_end_ || bytes > meta_end_ - pos_)
            error("key", strprintf("%s: the metadata section would be larger than %s", ctx.c_str(),
                                   limit_hint("max_metadata_bytes", limits().max_metadata_bytes).c_str()));
    }

    std::string str(const char* what, const std::string& ctx) {
        uint64_t len = u64(what, ctx);
        if (len > remaining())
            error(what, strprintf("%s: string length %" PRIu64 " exceeds the %zu bytes left in the file",
                                  ctx.c_str(), len, remaining()));
        meta_need(len, ctx);
        std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }

    GGUFValue value(GGUFType t, const std::string& key, int depth) {
        GGUFValue v;
        v.type = t;
        if (t == GGUFType::STRING) {
            v.str = str("key", "'" + key + "' value");
            return v;
        }
        if (t != GGUFType::ARRAY) {
            size_t sz = gguf_scalar_size(t);
            v.bits = read_uint(sz, "key", "'" + key + "' value");
            if (t == GGUFType::BOOL && v.bits > 1)
                error("key", strprintf("'%s': BOOL value %" PRIu64 " is neither 0 nor 1", key.c_str(), v.bits));
            return v;
        }
        if (depth >= kMaxArrayDepth)
            error("key", strprintf("'%s': arrays nested deeper than %d", key.c_str(), kMaxArrayDepth));
        uint32_t et = u32("key", "'" + key + "' array type");
        if (!valid_gguf_type(et)) error("key", strprintf("'%s': unknown array element type %u", key.c_str(), et));
        v.elem_type = static_cast<GGUFType>(et);
        v.n = u64("key", "'" + key + "' array length");
        // Smallest encoding of one element: a scalar's size, 8 bytes of string length, 12 bytes of
        // array header. The count must fit in what remains before we reserve anything for it.
        size_t min_elem = v.elem_type == GGUFType::STRING ? 8
                        : v.elem_type == GGUFType::ARRAY  ? 12
                                                          : gguf_scalar_size(v.elem_type);
        if (v.n > remaining() / min_elem)
            error("key", strprintf("'%s': array of %" PRIu64 " %s cannot fit in the %zu bytes left", key.c_str(), v.n,
                                   gguf_type_name(v.elem_type), remaining()));
        if (v.n > limits().max_array_elements)
            error("key", strprintf("'%s': array of %" PRIu64 " %s is more than %s", key.c_str(), v.n,
                                   gguf_type_name(v.elem_type),
                                   limit_hint("max_array_elements", limits().max_array_elements).c_str()));
        meta_need(v.n * min_elem, "'" + key + "'");
        if (v.elem_type == GGUFType::STRING) {
            v.strs.reserve(v.n);
            for (uint64_t i = 0; i < v.n; ++i) v.strs.push_back(str("key", strprintf("'%s'[%" PRIu64 "]", key.c_str(), i)));
        } else if (v.elem_type == GGUFType::ARRAY) {
            v.items.reserve(v.n);
            for (uint64_t i = 0; i < v.n; ++i) v.items.push_back(value(GGUFType::ARRAY, key, depth + 1));
        } else {
            size_t bytes = static_cast<size_t>(v.n) * min_elem;
            v.raw.assign(p_ + pos_, p_ + pos_ + bytes);
            pos_ += bytes;
            if (v.elem_type == GGUFType::BOOL)
                for (uint64_t i = 0; i < v.n; ++i)
                    if (v.raw[i] > 1) error("key", strprintf("'%s'[%" PRIu64 "]: BOOL value %u", key.c_str(), i, v.raw[i]));
        }
        return v;
    }

    void parse(GGUFFile& f) {
        need(4, "header", "magic");
        if (std::memcmp(p_, "GGUF", 4) != 0) {
            std::string got;
            for (int i = 0; i < 4; ++i) got += strprintf("%02x", p_[i]);
            error("header", "bad magic 0x" + got + " (expected \"GGUF\"; not a GGUF file)");
        }
        pos_ = 4;
        uint32_t version = u32("header", "version");
        if (version == 1) error("header", "GGUF version 1 is not supported (re-convert the model)");
        if ((version & 0xFFFF) == 0 && version != 0)
            error("header", strprintf("version 0x%08x looks byte-swapped: big-endian GGUF is not supported", version));
        if (version != 2 && version != 3) error("header", strprintf("unsupported version %u (2 and 3 are supported)", version));
        f.version_ = version;
        uint64_t n_tensors = u64("header", "tensor count");
        uint64_t n_kv = u64("header", "metadata count");
        // A KV pair is at least 8 (key length) + 4 (type) + 1 bytes; a tensor info 8 + 4 + 8 + 4 + 8.
        if (n_kv > remaining() / 13)
            error("header", strprintf("metadata count %" PRIu64 " cannot fit in a file of %zu bytes", n_kv, n_));
        if (n_tensors > remaining() / 32)
            error("header", strprintf("tensor count %" PRIu64 " cannot fit in a file of %zu bytes", n_tensors, n_));

        if (n_tensors > limits().max_tensors)
            error("header", strprintf("tensor count %" PRIu64 " is more than %s", n_tensors,
                                      limit_hint("max_tensors", limits().max_tensors).c_str()));
        const uint64_t meta_limit = limits().max_metadata_bytes;
        meta_end_ = meta_limit < n_ - pos_ ? pos_ + meta_limit : n_;

        std::unordered_set<std::string> keys;
        f.kv_.reserve(n_kv);
        for (uint64_t i = 0; i < n_kv; ++i) {
            std::string key = str("key", strprintf("name of key #%" PRIu64, i));
            if (!keys.insert(key).second) error("key", "'" + key + "' appears twice");
            uint32_t t = u32("key", "'" + key + "' type");
            if (!valid_gguf_type(t)) error("key", strprintf("'%s': unknown value type %u", key.c_str(), t));
            GGUFValue v = value(static_cast<GGUFType>(t), key, 0);
            f.kv_.emplace_back(std::move(key), std::move(v));
        }
        meta_end_ = n_;

        f.alignment_ = 32;
        if (const GGUFValue* a = f.find("general.alignment")) {
            if (a->type != GGUFType::U32)
                error("key", strprintf("'general.alignment' has type %s, expected UINT32", gguf_type_name(a->type)));
            uint64_t al = a->bits;
            if (al == 0 || (al & (al - 1)) != 0)
                error("key", strprintf("'general.alignment' = %" PRIu64 " is not a power of two", al));
            if (al > kMaxAlignment)
                error("key", strprintf("'general.alignment' = %" PRIu64 " is larger than %" PRIu64, al, kMaxAlignment));
            f.alignment_ = al;
        }

        std::unordered_set<std::string> names;
        uint64_t total_bytes = 0;
        f.tensors_.reserve(n_tensors);
        for (uint64_t i = 0; i < n_tensors; ++i) {
            GGUFTensorInfo t;
            t.name = str("tensor", strprintf("name of tensor #%" PRIu64, i));
            const std::string q = "'" + t.name + "'";
            if (!names.insert(t.name).second) error("tensor", q + " appears twice");
            t.n_dims = u32("tensor", q + " n_dims");
            if (t.n_dims == 0 || t.n_dims > kMaxDims)
                error("tensor", strprintf("%s: n_dims = %u (must be 1 to %u)", q.c_str(), t.n_dims, kMaxDims));
            for (uint32_t d = 0; d < t.n_dims; ++d) {
                int64_t ne = static_cast<int64_t>(u64("tensor", q + " shape"));
                if (ne < 0) error("tensor", strprintf("%s: dimension %u is negative (%" PRId64 ")", q.c_str(), d, ne));
                t.ne[d] = ne;
            }
            uint32_t type = u32("tensor", q + " type");
            TypeInfo ti = type_info(type);
            if (!ti.name) error("tensor", strprintf("%s: unknown tensor type %u", q.c_str(), type));
            t.type = static_cast<GGMLType>(type);
            t.offset = u64("tensor", q + " offset");
            // Element count and byte size without overflow: INT64_MAX bounds the product of the
            // non-zero dimensions, so every partial product (nelements(), nrows()) fits too, even
            // in a zero-element tensor such as [0, 2^40, 2^40].
            int64_t ne_total = 1, ne_bound = 1;
            for (int d = 0; d < 4; ++d) {
                if (t.ne[d] == 0) {
                    ne_total = 0;
                    continue;
                }
                if (ne_bound > std::numeric_limits<int64_t>::max() / t.ne[d])
                    error("tensor", strprintf("%s: shape %s overflows 64 bits", q.c_str(), t.shape_str().c_str()));
                ne_bound *= t.ne[d];
            }
            if (ne_total != 0) ne_total = ne_bound;
            if (t.ne[0] % ti.blck_size != 0)
                error("tensor", strprintf("%s: row length %" PRId64 " is not a multiple of the %s block size %" PRId64,
                                          q.c_str(), t.ne[0], ti.name, ti.blck_size));
            uint64_t blocks = static_cast<uint64_t>(ne_total / ti.blck_size);
            if (ti.type_size != 0 && blocks > std::numeric_limits<uint64_t>::max() / ti.type_size)
                error("tensor", strprintf("%s: byte size of shape %s overflows", q.c_str(), t.shape_str().c_str()));
            uint64_t nbytes = blocks * ti.type_size;
            if (nbytes > n_) error("tensor", strprintf("%s: shape %s of %s needs %" PRIu64 " bytes, more than the file's %zu",
                                                       q.c_str(), t.shape_str().c_str(), ti.name, nbytes, n_));
            if (nbytes > limits().max_tensor_bytes)
                error("tensor", strprintf("%s: %" PRIu64 " bytes is more than %s", q.c_str(), nbytes,
                                          limit_hint("max_tensor_bytes", limits().max_tensor_bytes).c_str()));
            total_bytes += nbytes;  // each term is at most the file size: no overflow
            if (total_bytes > limits().max_model_bytes)
                error("tensor", strprintf("%s: the tensors so far hold %" PRIu64 " bytes, more than %s", q.c_str(),
                                          total_bytes, limit_hint("max_model_bytes", limits().max_model_bytes).c_str()));
            t.nbytes = static_cast<size_t>(nbytes);
            f.tensors_.push_back(std::move(t));
        }

        uint64_t al = f.alignment_;
        uint64_t data_off = (pos_ + al - 1) / al * al;
        f.data_offset_ = data_off;
        if (n_tensors > 0 && data_off > n_)
            error("tensor", strprintf("data section at %" PRIu64 " starts past the end of the file", data_off));
        uint64_t data_size = n_tensors > 0 ? n_ - data_off : 0;

        std::vector<std::pair<uint64_t, size_t>> order;
        order.reserve(f.tensors_.size());
        for (size_t i = 0; i < f.tensors_.size(); ++i) {
            GGUFTensorInfo& t = f.tensors_[i];
            const std::string q = "'" + t.name + "'";
            if (t.offset % al != 0)
                error("tensor", strprintf("%s: offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                                          q.c_str(), t.offset, al));
            if (t.offset > data_size || t.nbytes > data_size - t.offset)
                error("tensor", strprintf("%s: data [%" PRIu64 ", %" PRIu64 ") extends past the end of the file "
                                          "(data section is %" PRIu64 " bytes)",
                                          q.c_str(), t.offset, t.offset + t.nbytes, data_size));
            t.data = p_ + data_off + t.offset;
            order.emplace_back(t.offset, i);
        }
        std::sort(order.begin(), order.end());
        for (size_t k = 1; k < order.size(); ++k) {
            const GGUFTensorInfo& a = f.tensors_[order[k - 1].second];
            const GGUFTensorInfo& b = f.tensors_[order[k].second];
            if (a.nbytes > 0 && b.nbytes > 0 && a.offset + a.nbytes > b.offset)
                error("tensor", strprintf("'%s' [%" PRIu64 ", %" PRIu64 ") overlaps '%s' at %" PRIu64, a.name.c_str(),
                                          a.offset, a.offset + a.nbytes, b.name.c_str(), b.offset));
        }
    }

private:
    const uint8_t* p_;
    size_t n_;
    size_t pos_ = 0;
    size_t meta_end_ = SIZE_MAX;  // see meta_need()
    const std::string& name_;
};

GGUFFile GGUFFile::open(const std::string& path) { return open(path, path); }

GGUFFile GGUFFile::open(const std::string& path, const std::string& name) {
    GGUFFile f;
    f.path_ = name;
    f.map_ = std::make_shared<MappedFile>(path);
    f.base_ = f.map_->data();
    f.size_ = f.map_->size();
    f.parse_all();
    return f;
}

GGUFFile GGUFFile::parse(const uint8_t* data, size_t size, const std::string& name) {
    GGUFFile f;
    f.path_ = name;
    f.base_ = data;
    f.size_ = size;
    f.parse_all();
    return f;
}

void GGUFFile::parse_all() {
    GGUFParser p(base_, size_, path_);
    p.parse(*this);
}

const GGUFValue* GGUFFile::find(const std::string& key) const {
    for (const auto& [k, v] : kv_)
        if (k == key) return &v;
    return nullptr;
}

static std::string key_ctx(const std::string& path, const std::string& key) {
    return "gguf: " + path + ": key '" + key + "'";
}

uint32_t GGUFFile::get_u32(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) fail("%s: missing", key_ctx(path_, key).c_str());
    uint64_t x = v->as_uint(key_ctx(path_, key));
    if (x > std::numeric_limits<uint32_t>::max()) fail("%s: value %" PRIu64 " too large", key_ctx(path_, key).c_str(), x);
    return static_cast<uint32_t>(x);
}

uint32_t GGUFFile::get_u32(const std::string& key, uint32_t def) const { return has(key) ? get_u32(key) : def; }

int64_t GGUFFile::get_int(const std::string& key, int64_t def) const {
    const GGUFValue* v = find(key);
    return v ? v->as_int(key_ctx(path_, key)) : def;
}

float GGUFFile::get_f32(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) fail("%s: missing", key_ctx(path_, key).c_str());
    return static_cast<float>(v->as_float(key_ctx(path_, key)));
}

float GGUFFile::get_f32(const std::string& key, float def) const { return has(key) ? get_f32(key) : def; }

bool GGUFFile::get_bool(const std::string& key, bool def) const {
    const GGUFValue* v = find(key);
    return v ? v->as_bool(key_ctx(path_, key)) : def;
}

std::string GGUFFile::get_str(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) fail("%s: missing", key_ctx(path_, key).c_str());
    if (v->type != GGUFType::STRING)
        fail("%s: expected STRING, got %s", key_ctx(path_, key).c_str(), gguf_type_name(v->type));
    return v->str;
}

std::string GGUFFile::get_str(const std::string& key, const std::string& def) const {
    return has(key) ? get_str(key) : def;
}

static const GGUFValue& array_of(const GGUFFile& f, const std::string& key, GGUFType et) {
    const GGUFValue* v = f.find(key);
    if (!v) fail("%s: missing", key_ctx(f.path(), key).c_str());
    if (v->type != GGUFType::ARRAY)
        fail("%s: expected an ARRAY of %s, got %s", key_ctx(f.path(), key).c_str(), gguf_type_name(et), gguf_type_name(v->type));
    if (v->elem_type != et)
        fail("%s: expected an ARRAY of %s, got an ARRAY of %s", key_ctx(f.path(), key).c_str(), gguf_type_name(et),
             gguf_type_name(v->elem_type));
    return *v;
}

std::vector<std::string> GGUFFile::get_str_array(const std::string& key) const {
    return array_of(*this, key, GGUFType::STRING).strs;
}

std::vector<float> GGUFFile::get_f32_array(const std::string& key) const {
    const GGUFValue& v = array_of(*this, key, GGUFType::F32);
    std::vector<float> out(v.n);
    if (v.n) std::memcpy(out.data(), v.raw.data(), v.n * 4);
    return out;
}

std::vector<int32_t> GGUFFile::get_i32_array(const std::string& key) const {
    const GGUFValue& v = array_of(*this, key, GGUFType::I32);
    std::vector<int32_t> out(v.n);
    if (v.n) std::memcpy(out.data(), v.raw.data(), v.n * 4);
    return out;
}

std::vector<uint32_t> GGUFFile::get_per_layer_u32(const std::string& key, uint32_t n_layer, uint32_t def) const {
    const GGUFValue* v = find(key);
    std::vector<uint32_t> out(n_layer, def);
    if (!v) return out;
    if (v->type != GGUFType::ARRAY) {
        uint32_t x = get_u32(key);
        std::fill(out.begin(), out.end(), x);
        return out;
    }
    if (v->n != n_layer)
        fail("%s: per-layer array has %" PRIu64 " entries, expected %u (block_count)", key_ctx(path_, key).c_str(), v->n,
             n_layer);
    const size_t es = gguf_scalar_size(v->elem_type);
    if (es == 0 || v->elem_type == GGUFType::BOOL || v->elem_type == GGUFType::F32 || v->elem_type == GGUFType::F64)
        fail("%s: expected an integer ARRAY, got ARRAY of %s", key_ctx(path_, key).c_str(), gguf_type_name(v->elem_type));
    for (uint32_t i = 0; i < n_layer; ++i) {
        // as_uint names the key in its error (elem_int would not), and takes U64 >= 2^63.
        uint64_t x = scalar(v->elem_type, load_le(v->raw.data() + i * es, es))
                         .as_uint(strprintf("%s[%u]", key_ctx(path_, key).c_str(), i));
        if (x > std::numeric_limits<uint32_t>::max())
            fail("%s[%u]: value %" PRIu64 " out of range", key_ctx(path_, key).c_str(), i, x);
        out[i] = static_cast<uint32_t>(x);
    }
    return out;
}

const GGUFTensorInfo* GGUFFile::find_tensor(const std::string& name) const {
    for (const auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

const GGUFTensorInfo& GGUFFile::tensor(const std::string& name) const {
    const GGUFTensorInfo* t = find_tensor(name);
    if (!t) fail("gguf: %s: tensor '%s' not found", path_.c_str(), name.c_str());
    return *t;
}

// ---- writer -------------------------------------------------------------------------------------

void GGUFWriter::set(const std::string& key, GGUFValue v) {
    if (key == "general.alignment") {
        if (v.type != GGUFType::U32 || v.bits == 0 || (v.bits & (v.bits - 1)) != 0 || v.bits > kMaxAlignment)
            fail("gguf writer: 'general.alignment' must be a UINT32 power of two <= %" PRIu64, kMaxAlignment);
        alignment_ = v.bits;
    }
    for (auto& [k, old] : kv_)
        if (k == key) {
            old = std::move(v);
            return;
        }
    kv_.emplace_back(key, std::move(v));
}

void GGUFWriter::remove(const std::string& key) {
    if (key == "general.alignment") alignment_ = 32;
    kv_.erase(std::remove_if(kv_.begin(), kv_.end(), [&](const auto& p) { return p.first == key; }), kv_.end());
}

void GGUFWriter::copy_kv_from(const GGUFFile& f) {
    for (const auto& [k, v] : f.kv()) set(k, v);
}

void GGUFWriter::add_tensor(const std::string& name, GGMLType type, const std::vector<int64_t>& ne, const void* data,
                            size_t nbytes) {
    TypeInfo ti = type_info(type);
    if (!ti.name) fail("gguf writer: tensor '%s': unknown type %u", name.c_str(), static_cast<unsigned>(type));
    if (ne.empty() || ne.size() > kMaxDims) fail("gguf writer: tensor '%s': %zu dimensions", name.c_str(), ne.size());
    for (const auto& t : tensors_)
        if (t.name == name) fail("gguf writer: tensor '%s' added twice", name.c_str());
    int64_t n = 1;
    for (int64_t d : ne) {
        if (d < 0) fail("gguf writer: tensor '%s': negative dimension", name.c_str());
        n *= d;
    }
    if (ne[0] % ti.blck_size != 0)
        fail("gguf writer: tensor '%s': row length %" PRId64 " not a multiple of %s block size %" PRId64, name.c_str(),
             ne[0], ti.name, ti.blck_size);
    size_t expect = static_cast<size_t>(n / ti.blck_size) * ti.type_size;
    if (expect != nbytes)
        fail("gguf writer: tensor '%s': %zu bytes given, shape needs %zu", name.c_str(), nbytes, expect);
    tensors_.push_back({name, type, ne, data, nbytes, nullptr});
}

void GGUFWriter::add_tensor_copy(const std::string& name, GGMLType type, const std::vector<int64_t>& ne,
                                 std::vector<uint8_t> bytes) {
    auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    add_tensor(name, type, ne, owned->data(), owned->size());
    tensors_.back().owned = owned;
}

namespace {

struct VecSink {
    std::vector<uint8_t>& out;
    void write(const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        out.insert(out.end(), b, b + n);
    }
    size_t pos() const { return out.size(); }
};

struct FileSink {
    FILE* f;
    std::string path;
    size_t written = 0;
    std::vector<uint8_t> buf;
    void flush() {
        if (!buf.empty() && std::fwrite(buf.data(), 1, buf.size(), f) != buf.size())
            fail("gguf writer: %s: write failed: %s", path.c_str(), std::strerror(errno));
        buf.clear();
    }
    void write(const void* p, size_t n) {
        const uint8_t* b = static_cast<const uint8_t*>(p);
        if (n >= (1u << 20)) {
            flush();
            if (std::fwrite(b, 1, n, f) != n) fail("gguf writer: %s: write failed: %s", path.c_str(), std::strerror(errno));
        } else {
            buf.insert(buf.end(), b, b + n);
            if (buf.size() >= (1u << 20)) flush();
        }
        written += n;
    }
    size_t pos() const { return written; }
};

template <class Sink> void put_u32(Sink& s, uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    s.write(b, 4);
}
template <class Sink> void put_u64(Sink& s, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    s.write(b, 8);
}
template <class Sink> void put_str(Sink& s, const std::string& str) {
    put_u64(s, str.size());
    s.write(str.data(), str.size());
}
template <class Sink> void put_value(Sink& s, const GGUFValue& v) {
    switch (v.type) {
    case GGUFType::STRING: put_str(s, v.str); break;
    case GGUFType::ARRAY:
        put_u32(s, static_cast<uint32_t>(v.elem_type));
        put_u64(s, v.n);
        if (v.elem_type == GGUFType::STRING)
            for (const auto& x : v.strs) put_str(s, x);
        else if (v.elem_type == GGUFType::ARRAY)
            for (const auto& x : v.items) put_value(s, x);  // each: element type, count, contents
        else
            s.write(v.raw.data(), v.raw.size());
        break;
    default: {
        size_t sz = gguf_scalar_size(v.type);
        uint8_t b[8];
        for (size_t i = 0; i < sz; ++i) b[i] = static_cast<uint8_t>(v.bits >> (8 * i));
        s.write(b, sz);
    }
    }
}
template <class Sink> void pad_to(Sink& s, uint64_t al) {
    static const uint8_t zeros[64] = {};
    size_t p = s.pos();
    size_t target = (p + al - 1) / al * al;
    while (p < target) {
        size_t k = std::min<size_t>(target - p, sizeof zeros);
        s.write(zeros, k);
        p += k;
    }
}

void check_value(const std::string& key, const GGUFValue& v, int depth) {
    if (v.type != GGUFType::ARRAY) return;
    if (depth >= kMaxArrayDepth) fail("gguf writer: key '%s': arrays nested too deep", key.c_str());
    size_t es = gguf_scalar_size(v.elem_type);
    bool ok = v.elem_type == GGUFType::STRING ? v.strs.size() == v.n
            : v.elem_type == GGUFType::ARRAY  ? v.items.size() == v.n
                                              : (es != 0 && v.raw.size() == v.n * es);
    if (!ok) fail("gguf writer: key '%s': array count %" PRIu64 " does not match its contents", key.c_str(), v.n);
    for (const auto& x : v.items) {
        if (x.type != GGUFType::ARRAY) fail("gguf writer: key '%s': nested element is not an ARRAY", key.c_str());
        check_value(key, x, depth + 1);
    }
}

} // namespace

template <class Sink> void GGUFWriter::emit(Sink& s, const std::function<const void*(size_t)>* data_of) const {
    for (const auto& [k, v] : kv_) check_value(k, v, 0);
    s.write("GGUF", 4);
    put_u32(s, version_);
    put_u64(s, tensors_.size());
    put_u64(s, kv_.size());
    for (const auto& [k, v] : kv_) {
        put_str(s, k);
        put_u32(s, static_cast<uint32_t>(v.type));
        put_value(s, v);
    }
    uint64_t off = 0;
    for (const auto& t : tensors_) {
        put_str(s, t.name);
        put_u32(s, static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) put_u64(s, static_cast<uint64_t>(d));
        put_u32(s, static_cast<uint32_t>(t.type));
        put_u64(s, off);
        off += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
    }
    // A file without tensors ends right after its metadata (llama.cpp writes vocab-only files so).
    if (tensors_.empty()) return;
    pad_to(s, alignment_);
    // Each tensor is padded to the alignment, the last one included, as llama.cpp writes them.
    for (size_t i = 0; i < tensors_.size(); ++i) {
        const Tensor& t = tensors_[i];
        const void* data = t.data;
        if (!data && data_of) data = (*data_of)(i);
        if (!data && t.nbytes) fail("gguf writer: tensor '%s' has no data", t.name.c_str());
        s.write(data, t.nbytes);
        pad_to(s, alignment_);
    }
}

std::vector<uint8_t> GGUFWriter::to_bytes() const {
    std::vector<uint8_t> out;
    VecSink s{out};
    emit(s);
    return out;
}

void GGUFWriter::write(const std::string& path) const { write_streamed(path, nullptr); }

void GGUFWriter::write_streamed(const std::string& path, const std::function<const void*(size_t)>& data_of) const {
    std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) fail("gguf writer: %s: cannot create: %s", tmp.c_str(), std::strerror(errno));
    try {
        FileSink s{f, tmp, 0, {}};
        emit(s, data_of ? &data_of : nullptr);
        s.flush();
        if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0)
            fail("gguf writer: %s: flush failed: %s", tmp.c_str(), std::strerror(errno));
    } catch (...) {
        std::fclose(f);
        std::remove(tmp.c_str());
        throw;
    }
    if (std::fclose(f) != 0) {
        std::remove(tmp.c_str());
        fail("gguf writer: %s: close failed: %s", tmp.c_str(), std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        std::remove(tmp.c_str());
        fail("gguf writer: cannot rename %s to %s: %s", tmp.c_str(), path.c_str(), std::strerror(e));
    }
}

} // namespace slm
