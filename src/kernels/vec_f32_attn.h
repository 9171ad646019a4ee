// vec_f32_attn.h - the F32 attention ops of VecOps (vec.h) in the order of llama.cpp's AVX-512
// build, the build of the reference dumps: attention over an F32 KV cache without flash
// attention is three ggml ops there, and each is reproduced lane for lane:
//  * KQ: ggml_vec_dot_f32 (prompt: Q is a permuted, non-contiguous view, so ggml's own mul_mat
//    runs) - four 16-lane FMA chains over steps of 64, added 0+2, 1+3, 0+1, then the 16 lanes
//    in a tree (_mm512_reduce_add_ps), the last n % 64 products added one by one (fused, as GCC
//    contracts `sumf += x[i]*y[i]`); or llamafile's tinyBLAS (decode: Q contiguous) - one
//    16-lane FMA chain over steps of 16, then the tree;
//  * softmax: ggml_vec_soft_max_f32 - exp by ggml_v_expf (a polynomial, not libm's expf) on 16
//    values at a time, each group's tree sum added to a double;
//  * KQ x V: tinyBLAS over the cache positions - position j goes to lane j % 16 (an FMA chain
//    per lane), then the tree. That one is VecOps::mad_f32 on 16 accumulator rows plus
//    reduce16_rows below.
// Written as plain loops over 16 lanes: every lane is an independent IEEE float operation, so
// any vector width (or none) gives the same bits; each ISA file compiles this with its own
// flags (FMA inline with AVX2/AVX-512, libm's fma in the scalar reference). Include only from
// the vec translation units; internal linkage, as vec_common.h explains.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace slm::kernels::f32attn {
namespace {

constexpr int kLanes = 16;  // one __m512 of floats

// _mm512_reduce_add_ps: lanes i and i + 8, then i and i + 4, then (0 + 2) + (1 + 3).
inline float reduce16(const float* v) {
    float a[8], b[4];
    for (int i = 0; i < 8; ++i) a[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; ++i) b[i] = a[i] + a[i + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

// ggml_vec_dot_f32 of the AVX-512 build (GGML_F32_STEP 64, four accumulators of 16).
inline float dot_ggml(int64_t n, const float* x, const float* y) {
    float acc[4][kLanes] = {};
    const int64_t np = n & ~int64_t{63};
    for (int64_t i = 0; i < np; i += 64) {
        for (int j = 0; j < 4; ++j) {
            const float* xj = x + i + kLanes * j;
            const float* yj = y + i + kLanes * j;
            for (int l = 0; l < kLanes; ++l) acc[j][l] = std::fma(xj[l], yj[l], acc[j][l]);
        }
    }
    for (int l = 0; l < kLanes; ++l) {
        acc[0][l] += acc[2][l];
        acc[1][l] += acc[3][l];
    }
    for (int l = 0; l < kLanes; ++l) acc[0][l] += acc[1][l];
    float s = reduce16(acc[0]);
    for (int64_t i = np; i < n; ++i) s = std::fma(x[i], y[i], s);
    return s;
}

// llamafile's tinyBLAS F32 kernel for AVX-512 (KN = 16): n must be a multiple of 16.
inline float dot_sgemm(int64_t n, const float* x, const float* y) {
    float acc[kLanes] = {};
    for (int64_t i = 0; i < n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] = std::fma(x[i + l], y[i + l], acc[l]);
    return reduce16(acc);
}

// 2^k for k in [-126, 127], built from its bits.
inline float pow2i(int32_t k) { return std::bit_cast<float>(static_cast<uint32_t>(k + 127) << 23); }

// ggml_v_expf (AVX-512), one lane: exp(x) = 2^n (1 + b p(b)) with n = round(x / ln 2) by the
// 1.5 * 2^23 trick and b = x - n ln 2 in two steps; _mm512_scalef_ps(j, n) is j * 2^n rounded
// once, here two exact-then-rounding multiplications by 2^(n/2) and 2^(n - n/2). |n| > 192
// gives 0 (n <= 0) or infinity, as ggml's blend.
inline float expf_ggml(float x) {
    const float r = 0x1.8p23f;
    const float z = std::fma(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                             u, std::fma(0x1.ffffecp-1f, b, 1.0f));
    // Branch-free (so that the 16 lanes vectorize): clamp n (NaN -> -192; j is NaN then anyway).
    float nc = n >= -192.0f ? n : -192.0f;
    nc = nc <= 192.0f ? nc : 192.0f;
    const int32_t k = static_cast<int32_t>(nc), k1 = k >> 1;
    const float res = (j * pow2i(k1)) * pow2i(k - k1);
    const float big = n <= 0.0f ? 0.0f : INFINITY;
    return std::fabs(n) > 192.0f ? big : res;
}

// ggml_vec_soft_max_f32 of the AVX-512 build: y = exp(x - max), returns the sum (groups of 16
// summed by the tree, each added to a double; the last n % 16 by libm's expf, one at a time).
inline double softmax(int64_t n, float* y, const float* x, float max) {
    double sum = 0.0;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        float v[kLanes];
        for (int l = 0; l < kLanes; ++l) v[l] = expf_ggml(x[i + l] - max);
        for (int l = 0; l < kLanes; ++l) y[i + l] = v[l];
        sum += static_cast<double>(reduce16(v));
    }
    for (; i < n; ++i) {
        const float v = std::exp(x[i] - max);
        sum += static_cast<double>(v);
        y[i] = v;
    }
    return sum;
}

} // namespace
} // namespace slm::kernels::f32attn
