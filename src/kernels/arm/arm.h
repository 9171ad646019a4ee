// arm.h - entry points of the AArch64 kernel translation units, for dispatch.cpp only.
#pragma once

#include "kernels/kernels.h"

namespace slm::kernels::neon {
// Overwrites table[type id] for every type with NEON + dot-product (SDOT) kernels: neon.cpp
// (F32/F16/BF16, Q4_0 ... Q8_1, IQ4_NL, with gemm tiles for the 32-element quants) and, through
// fill_traits_kquants, neon_kquants.cpp (Q2_K ... Q6_K, IQ4_XS, TQ1_0, TQ2_0). Built with
// -march=armv8.2-a+dotprod; dispatch.cpp only uses the table when the CPU has ASIMDDP.
void fill_traits(TypeTraits* table, int n_table);
void fill_traits_kquants(TypeTraits* table, int n_table);
} // namespace slm::kernels::neon
