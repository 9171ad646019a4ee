// x86.h - entry points of the per-ISA x86 translation units, for dispatch.cpp only.
#pragma once

#include "kernels/kernels.h"

namespace slm::kernels::avx2 {
// Overwrites table[type id] for every type avx2.cpp has kernels for (AVX2 + FMA + F16C).
void fill_traits(TypeTraits* table, int n_table);
// The same for the K-quants, IQ4_NL, IQ4_XS, TQ1_0 and TQ2_0 (avx2_kquants.cpp).
void fill_traits_kquants(TypeTraits* table, int n_table);
} // namespace slm::kernels::avx2

namespace slm::kernels::avx512 {
// AVX-512 F/BW/VL/DQ + VNNI kernels (avx512.cpp: F32/F16/BF16, Q4_0..Q8_1 and the activation
// quantizers; avx512_kquants.cpp: K-quants, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0), over the AVX2 table.
void fill_traits(TypeTraits* table, int n_table);
void fill_traits_kquants(TypeTraits* table, int n_table);
} // namespace slm::kernels::avx512

namespace slm::kernels {
struct RepackTraits;
namespace avx512 {
// Kernels over the row-group layout of repack.h (in avx512.cpp), nullptr for other types.
const RepackTraits* repack_traits(GGMLType t);
} // namespace avx512
} // namespace slm::kernels
