// avx2_util.h - small AVX2/F16C helpers shared by the avx2*.cpp kernel files. Include only from
// translation units built with the AVX2 flags (see CMakeLists.txt).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace slm::kernels::avx2 {

inline float half(uint16_t h) { return _cvtsh_ss(h); }

// ggml's hsum_float_8: high half + low half, then movehl and movehdup; the summation order
// matters for matching its float results.
inline float hsum_float_8(__m256 x) {
    __m128 r = _mm256_extractf128_ps(x, 1);
    r = _mm_add_ps(r, _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

} // namespace slm::kernels::avx2
