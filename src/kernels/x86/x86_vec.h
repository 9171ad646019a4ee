// x86_vec.h - entry points of the x86 attention vector ops (vec.h), for dispatch.cpp only.
#pragma once

#include "kernels/vec.h"

namespace slm::kernels::avx2 {
// AVX2 + FMA + F16C (avx2_vec.cpp).
const VecOps& vec_ops();
} // namespace slm::kernels::avx2

namespace slm::kernels::avx512 {
// AVX-512 F/BW/VL (avx512_vec.cpp).
const VecOps& vec_ops();
} // namespace slm::kernels::avx512
