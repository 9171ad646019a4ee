// slm/gguf.h - read and write GGUF (versions 2 and 3) exactly as llama.cpp does.
//
//   slm::GGUFFile f = slm::GGUFFile::open("model.gguf");      // mmap, validates everything
//   uint32_t n_layer = f.get_u32("llama.block_count");
//   const slm::GGUFTensorInfo& t = f.tensor("token_embd.weight");  // t.data points into the map
//
//   slm::GGUFWriter w;                                         // version 3, alignment 32
//   w.copy_kv_from(f);
//   w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
//   w.write("out.gguf");                                       // temp file, then rename
//
// Every count, length, offset and shape read from a file is checked against the file's size
// before anything is allocated from it; a bad file throws slm::Error naming the file, the key
// or tensor, and the value.
#pragma once

#include "slm/types.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace slm {

enum class GGUFType : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
    STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GGUFType t);   // "UINT32", "ARRAY", ...
size_t gguf_scalar_size(GGUFType t);      // 0 for STRING/ARRAY/unknown

// One metadata value. Scalars keep their exact on-disk bits, so read -> write is byte-identical.
struct GGUFValue {
    GGUFType type = GGUFType::U32;
    uint64_t bits = 0;                 // scalar: little-endian bits, zero-extended
    std::string str;                   // STRING
    GGUFType elem_type = GGUFType::U8; // ARRAY: element type
    uint64_t n = 0;                    // ARRAY: element count
    std::vector<uint8_t> raw;          // ARRAY of fixed-size scalars: n * scalar size bytes
    std::vector<std::string> strs;     // ARRAY of STRING
    std::vector<GGUFValue> items;      // ARRAY of ARRAY

    static GGUFValue u8(uint8_t v);
    static GGUFValue i8(int8_t v);
    static GGUFValue u16(uint16_t v);
    static GGUFValue i16(int16_t v);
    static GGUFValue u32(uint32_t v);
    static GGUFValue i32(int32_t v);
    static GGUFValue u64(uint64_t v);
    static GGUFValue i64(int64_t v);
    static GGUFValue f32(float v);
    static GGUFValue f64(double v);
    static GGUFValue boolean(bool v);
    static GGUFValue string(std::string v);
    static GGUFValue str_array(std::vector<std::string> v);
    static GGUFValue f32_array(const std::vector<float>& v);
    static GGUFValue i32_array(const std::vector<int32_t>& v);
    static GGUFValue u32_array(const std::vector<uint32_t>& v);
    static GGUFValue array_of_arrays(std::vector<GGUFValue> v);

    bool is_integer() const;           // any of U8..I64 (not BOOL)
    bool is_float() const;             // F32 or F64
    // Conversions; each throws slm::Error naming `what` if the value does not fit.
    int64_t as_int(const std::string& what) const;
    uint64_t as_uint(const std::string& what) const;
    double as_float(const std::string& what) const;  // integers are accepted too
    bool as_bool(const std::string& what) const;
    // i-th element of a numeric array as a double / integer.
    double elem_float(uint64_t i) const;
    int64_t elem_int(uint64_t i) const;
    std::string to_string(size_t max_items = 8) const;  // human-readable, arrays abbreviated
    bool operator==(const GGUFValue& o) const;
};

struct GGUFTensorInfo {
    std::string name;
    GGMLType type = GGMLType::F32;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the row length (contiguous)
    uint64_t offset = 0;           // from the start of the data section
    size_t nbytes = 0;
    const uint8_t* data = nullptr; // into the mapping (or the caller's buffer)

    int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
    int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
    std::vector<int64_t> shape() const { return std::vector<int64_t>(ne, ne + n_dims); }
    std::string shape_str() const;  // "[64, 512]"
};

class MappedFile;

class GGUFFile {
public:
    // Maps the file read-only and parses it. Throws slm::Error on any malformed content.
    static GGUFFile open(const std::string& path);
    // The same, but path() and every error message say `name` (e.g. the Hugging Face folder a
    // temporary GGUF was converted from) instead of `path`.
    static GGUFFile open(const std::string& path, const std::string& name);
    // Parses a caller-owned buffer (no copy: it must outlive the GGUFFile). For fuzzing and tests.
    static GGUFFile parse(const uint8_t* data, size_t size, const std::string& name = "<memory>");

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }
    size_t file_size() const { return size_; }

    const std::vector<std::pair<std::string, GGUFValue>>& kv() const { return kv_; }
    const GGUFValue* find(const std::string& key) const;
    bool has(const std::string& key) const { return find(key) != nullptr; }

    // Typed getters: throw naming the file and key if absent (no default given) or mistyped.
    uint32_t get_u32(const std::string& key) const;
    uint32_t get_u32(const std::string& key, uint32_t def) const;
    int64_t get_int(const std::string& key, int64_t def) const;
    float get_f32(const std::string& key) const;
    float get_f32(const std::string& key, float def) const;
    bool get_bool(const std::string& key, bool def) const;
    std::string get_str(const std::string& key) const;
    std::string get_str(const std::string& key, const std::string& def) const;
    // Arrays: element type must be as named (an error names the key and the actual type).
    std::vector<std::string> get_str_array(const std::string& key) const;
    std::vector<float> get_f32_array(const std::string& key) const;
    std::vector<int32_t> get_i32_array(const std::string& key) const;
    // A per-layer hyper-parameter: either one integer, or an integer array of n_layer entries.
    std::vector<uint32_t> get_per_layer_u32(const std::string& key, uint32_t n_layer, uint32_t def) const;

    const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
    const GGUFTensorInfo* find_tensor(const std::string& name) const;
    const GGUFTensorInfo& tensor(const std::string& name) const;  // throws if absent

private:
    std::string path_;
    std::shared_ptr<MappedFile> map_;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::vector<GGUFTensorInfo> tensors_;
    void parse_all();
    friend class GGUFParser;
};

class GGUFWriter {
public:
    explicit GGUFWriter(uint32_t version = 3) : version_(version) {}

    // Sets a key (replacing an existing one in place, keeping order).
    void set(const std::string& key, GGUFValue v);
    void remove(const std::string& key);
    // Copies every key of `f` (including general.alignment, which sets this writer's alignment).
    void copy_kv_from(const GGUFFile& f);
    // Adds a tensor; `data` must stay valid until write(). nbytes must equal the type's row size.
    void add_tensor(const std::string& name, GGMLType type, const std::vector<int64_t>& ne,
                    const void* data, size_t nbytes);
    // Same, but the writer keeps its own copy of the bytes.
    void add_tensor_copy(const std::string& name, GGMLType type, const std::vector<int64_t>& ne,
                         std::vector<uint8_t> bytes);

    // Writes the whole file to `path` + ".tmp" then renames, so `path` is whole or untouched.
    void write(const std::string& path) const;
    // The same for tensors added with data == nullptr (any others are written from their data):
    // tensor i's bytes come from data_of(i), called once per such tensor in file order, so a
    // big file is produced one tensor at a time; the pointer must stay valid until the next call.
    void write_streamed(const std::string& path, const std::function<const void*(size_t)>& data_of) const;
    // Serializes to memory (for tests).
    std::vector<uint8_t> to_bytes() const;

    uint64_t alignment() const { return alignment_; }
    const std::vector<std::pair<std::string, GGUFValue>>& kv() const { return kv_; }

private:
    struct Tensor {
        std::string name;
        GGMLType type;
        std::vector<int64_t> ne;
        const void* data;
        size_t nbytes;
        std::shared_ptr<std::vector<uint8_t>> owned;
    };
    uint32_t version_;
    uint64_t alignment_ = 32;
    std::vector<std::pair<std::string, GGUFValue>> kv_;
    std::vector<Tensor> tensors_;
    template <class Sink> void emit(Sink& out, const std::function<const void*(size_t)>* data_of = nullptr) const;
};

} // namespace slm
