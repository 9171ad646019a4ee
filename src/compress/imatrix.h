// imatrix.h - llama.cpp's importance-matrix files: the GGUF format of llama-imatrix (read and
// written) and the legacy .dat format (read).
//
// GGUF: general.type "imatrix", imatrix.datasets (array of strings), imatrix.chunk_count and
// imatrix.chunk_size (u32); per weight W two F32 tensors: `W.in_sum2` [n_in, n_mat] (per matrix
// and input column, the sum over tokens of x^2) and `W.counts` [1, n_mat] (tokens seen by each
// matrix: one for a dense weight, one per expert for a merged MoE weight). An optional `W.in_sum`
// (sum of x) of newer llama.cpp is read and ignored.
// Legacy .dat: int32 n_entries; per entry int32 name length, name, int32 ncall, int32 nval,
// nval floats (already the mean times ncall); then optionally int32 chunk count, int32 length
// and the dataset name.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace slm::compress {

struct ImatrixEntry {
    std::vector<float> sums;    // n_mat * n_in: in_sum2 (legacy: the stored values)
    std::vector<float> counts;  // n_mat token counts (legacy: one, ncall)
};

struct Imatrix {
    std::vector<std::string> datasets;
    uint32_t chunk_count = 0;
    uint32_t chunk_size = 0;
    bool legacy = false;
    bool has_metadata = false;  // GGUF with the datasets, chunk_count and chunk_size keys
    std::map<std::string, ImatrixEntry> entries;
};

// Reads either format (GGUF recognized by its magic). Throws slm::Error naming the file and the
// entry for anything malformed: truncation, counts that do not divide the sums, non-F32
// tensors, negative or huge sizes, non-finite values.
Imatrix read_imatrix(const std::string& path);
Imatrix parse_imatrix(const uint8_t* data, size_t size, const std::string& name);

// Writes the GGUF format (temporary file, then rename), entries in name order.
void write_imatrix(const Imatrix& m, const std::string& path);
std::vector<uint8_t> imatrix_gguf_bytes(const Imatrix& m);

// The per-column importances llama-quantize uses: for each matrix, in_sum2 / count (1 where a
// matrix saw no token); legacy files: values / ncall. n_mat * n_in floats per weight.
std::map<std::string, std::vector<float>> imatrix_values(const Imatrix& m);

} // namespace slm::compress
