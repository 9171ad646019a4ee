// Helpers the kernel tests share: which ISA tables this machine runs, and row conversions.
#pragma once

#include "core/fp16.h"
#include "kernels/kernels.h"
#include "slm/types.h"

#include <cstdint>
#include <string>
#include <vector>

namespace slm::test {

inline int64_t block_size(GGMLType t) { return type_info(t).blck_size; }

inline uint32_t bits_of(float f) { return fp16::float_bits(f); }

// Every ISA whose table this machine can run other than the reference itself.
inline std::vector<std::string> simd_isas() {
    std::vector<std::string> out;
    for (const char* isa : {"avx2", "avx512", "neon"}) {
        if (kernels::traits_for_isa(isa, GGMLType::F32) != nullptr) out.emplace_back(isa);
    }
    return out;
}

// n elements of `src` (type t) dequantized by the scalar reference.
inline std::vector<float> dequantized(GGMLType t, const void* src, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    kernels::ref_traits(t)->to_float(src, out.data(), n);
    return out;
}

// x converted with a table's from_float (activation quantization for quantized types).
inline std::vector<uint8_t> convert(const kernels::TypeTraits* tt, const std::vector<float>& x) {
    std::vector<uint8_t> out(row_size(tt->type, static_cast<int64_t>(x.size())));
    tt->from_float(x.data(), out.data(), static_cast<int64_t>(x.size()));
    return out;
}

} // namespace slm::test
