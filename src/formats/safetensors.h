// formats/safetensors.h - read and write Hugging Face safetensors files (one file, or a folder
// sharded with model.safetensors.index.json).
//
//   slm::SafetensorsCheckpoint ck = slm::SafetensorsCheckpoint::open_dir("models/SmolLM-135M");
//   for (const slm::SafetensorsTensor* t : ck.tensors())          // converter order, see below
//       printf("%s %s %zu\n", t->name.c_str(), slm::st_dtype_name(t->dtype), t->nbytes);
//
//   slm::SafetensorsWriter w;                                     // header as the safetensors library writes it
//   w.add("lm_head.weight", slm::STDtype::F32, {512, 64}, data, 512 * 64 * 4);
//   w.write("out/model.safetensors");                             // temp file, then rename
//
// Format (huggingface/safetensors): 8-byte little-endian header length N, N bytes of JSON
// {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}},
// then the data section; offsets are relative to its start. The reader trusts nothing: the header
// length is bounded (100 MB, the library's own limit, and the file size), every field is type-
// checked, element counts are multiplied with overflow checks, every extent must lie inside the
// data section and match shape x dtype exactly, and no two tensors may overlap. Only F32, F16 and
// BF16 are accepted (what language-model checkpoints hold); any other dtype is an error naming it.
// Tensor data is NOT necessarily aligned (the format does not promise it): copy, don't cast.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace slm {

class MappedFile;

enum class STDtype { F32, F16, BF16 };
const char* st_dtype_name(STDtype t);   // "F32", "F16", "BF16"
size_t st_dtype_size(STDtype t);        // 4, 2, 2

struct SafetensorsTensor {
    std::string name;
    STDtype dtype = STDtype::F32;
    std::vector<int64_t> shape;   // PyTorch order: shape.back() is contiguous
    const uint8_t* data = nullptr;
    size_t nbytes = 0;
    std::string file;             // the file it lives in, for messages

    int64_t numel() const;
    std::string shape_str() const;  // "[512, 64]"
};

class SafetensorsFile {
public:
    // Maps a file and validates its header (see above). Throws slm::Error naming the file, the
    // tensor or field, and the bad value.
    static SafetensorsFile open(const std::string& path);
    // Parses a caller-owned buffer (no copy; it must outlive the result). For tests and fuzzing.
    static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name = "<memory>");

    const std::string& path() const { return path_; }
    // In data-offset order.
    const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
    const SafetensorsTensor* find(const std::string& name) const;
    const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"
    uint64_t header_size() const { return header_size_; }

private:
    std::string path_;
    std::shared_ptr<MappedFile> map_;
    std::vector<SafetensorsTensor> tensors_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
    uint64_t header_size_ = 0;
    void parse_all(const uint8_t* data, size_t size);
};

// A model's weights: DIR/model.safetensors, or the shards DIR/model.safetensors.index.json names.
class SafetensorsCheckpoint {
public:
    // Throws if neither file exists, if the index is malformed or names a path outside DIR, if a
    // tensor is listed but missing, found in two shards, or present in a shard but not listed.
    static SafetensorsCheckpoint open_dir(const std::string& dir);

    // Every tensor once, in the order llama.cpp's converter visits them: shard files in name
    // order, and within a file by tensor name (byte order).
    const std::vector<const SafetensorsTensor*>& tensors() const { return order_; }
    const SafetensorsTensor* find(const std::string& name) const;
    const std::vector<std::string>& files() const { return files_; }

private:
    std::vector<std::unique_ptr<SafetensorsFile>> shards_;
    std::vector<std::string> files_;
    std::vector<const SafetensorsTensor*> order_;
    std::map<std::string, const SafetensorsTensor*> by_name_;
};

// Writes one safetensors file byte for byte as the safetensors library's serialize_file does
// (so as torch's save_file and transformers' save_pretrained): tensors sorted by dtype (F32,
// then BF16, then F16: its descending dtype order) and then by name, laid out back to back in
// that order; a compact JSON header in that order, "__metadata__" first, padded with spaces to
// a multiple of 8 bytes so the data section is 8-aligned.
class SafetensorsWriter {
public:
    // `data` must stay valid until write(). nbytes must equal numel x dtype size.
    void add(const std::string& name, STDtype dtype, const std::vector<int64_t>& shape, const void* data,
             size_t nbytes);
    void add_copy(const std::string& name, STDtype dtype, const std::vector<int64_t>& shape,
                  std::vector<uint8_t> bytes);
    void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

    std::string header() const;                    // the padded JSON header
    std::vector<uint8_t> to_bytes() const;         // the whole file in memory (tests)
    void write(const std::string& path) const;     // path + ".tmp", then rename

private:
    struct Entry {
        std::string name;
        STDtype dtype;
        std::vector<int64_t> shape;
        const void* data;
        size_t nbytes;
        std::shared_ptr<std::vector<uint8_t>> owned;
    };
    std::vector<Entry> entries_;
    std::map<std::string, std::string> metadata_;
    std::vector<const Entry*> sorted() const;
};

} // namespace slm
