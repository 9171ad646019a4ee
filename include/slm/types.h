// slm/types.h - ggml tensor types, numbered exactly as in GGUF files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace slm {

// Values are the on-disk ggml_type ids; gaps are ids llama.cpp retired.
enum class GGMLType : uint32_t {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
    IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
    // slm's own types, in a private id range (1024 and up) ggml will not reach: llama.cpp
    // refuses files holding them. See docs/sparse-format.md.
    Q8_0_S24 = 1024,  // Q8_0 with 2:4 sparsity along each row: 22 bytes per 32 weights
};

// First id of slm's private tensor types (ggml's ids stay below it).
constexpr uint32_t kSlmTypeBase = 1024;

struct TypeInfo {
    const char* name;   // "Q4_0"; nullptr for an id no ggml version defines
    int64_t blck_size;  // elements per block (32 for Q4_0, 256 for K-quants, 1 for F32)
    size_t type_size;   // bytes per block
};

// Layout of any ggml type id (known or retired). Returns name == nullptr for an unknown id.
TypeInfo type_info(uint32_t type);
inline TypeInfo type_info(GGMLType t) { return type_info(static_cast<uint32_t>(t)); }
const char* type_name(GGMLType t);  // "Q4_0", or "type<N>" for unknown ids

// Parses "q4_0", "Q8_0", "f16", ... (case-insensitive). Returns false if unknown.
bool type_from_name(const std::string& name, GGMLType* out);

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t row_size(GGMLType t, int64_t n) {
    TypeInfo ti = type_info(t);
    return static_cast<size_t>(n / ti.blck_size) * ti.type_size;
}

} // namespace slm
