// ref.cpp - scalar reference kernels (see ref.h). Loops are written for clarity; the SIMD
// kernels in kernels/x86 are tested against these.
#include "kernels/ref/ref.h"

#include "core/fp16.h"
#include "kernels/ref/blocks.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

namespace slm::kernels {

float fp16_to_fp32(uint16_t h) { return fp16::half_to_float(h); }
uint16_t fp32_to_fp16(float f) { return fp16::float_to_half(f); }
float bf16_to_fp32(uint16_t h) { return fp16::bf16_to_float(h); }
uint16_t fp32_to_bf16(float f) { return fp16::float_to_bf16(f); }

namespace ref {
namespace {

using fp16::half_to_float;

// Keeps a product rounded to float before it is added to something. ggml-quants.c is built
// without FMA, so the x*id + 8.5f of quantize_row_q4_0_ref rounds twice; when FMA is enabled
// (-march=native, aarch64) GCC's default -ffp-contract=fast would fuse the two and round once.
inline float rounded(float v) {
#if defined(__FMA__) && defined(__x86_64__)
    __asm__("" : "+x"(v));
#elif defined(__aarch64__)
    __asm__("" : "+w"(v));
#endif
    return v;
}

// maxps, and ggml's MAX(a, b) macro: the second operand when either is NaN (unlike std::max),
// which decides what a NaN does to a block maximum.
inline float max_ps(float a, float b) { return a > b ? a : b; }

// max(|x[0..31]|) reduced in the same order as ggml's AVX2 code: four 8-lane maxes, then
// high half with low half, then lanes {0,1} with {2,3}, then lane 0 with lane 1.
float block_amax_x86(const float* x) {
    float m[8];
    for (int l = 0; l < 8; ++l) m[l] = std::fabs(x[l]);
    for (int r = 1; r < 4; ++r) {
        for (int l = 0; l < 8; ++l) m[l] = max_ps(m[l], std::fabs(x[8 * r + l]));
    }
    float m4[4];
    for (int l = 0; l < 4; ++l) m4[l] = max_ps(m[4 + l], m[l]);
    const float m0 = max_ps(m4[0], m4[2]);
    const float m1 = max_ps(m4[1], m4[3]);
    return max_ps(m0, m1);
}

// _mm256_round_ps(v, _MM_ROUND_NEAREST) then _mm256_cvtps_epi32: ties to even; NaN and
// out-of-range values give the "integer indefinite" INT32_MIN.
inline int32_t round_even_to_int(float v) {
    const float r = std::nearbyint(v);
    if (!(r >= -2147483648.0f && r < 2147483648.0f)) return INT32_MIN;
    return static_cast<int32_t>(r);
}

// packs_epi32 then packs_epi16: two signed saturations, i.e. a clamp to int8.
inline int8_t saturate_i8(int32_t v) { return static_cast<int8_t>(std::clamp(v, -128, 127)); }

// Shared by the x86 Q8_0 and Q8_1 activation quantizers; returns d (before fp16 rounding)
// and the wrapped int32 sum of the unsaturated quants, as hsum_i32_8 computes it.
float quantize_block_q8_x86(const float* x, int8_t* qs, int32_t* sum) {
    const float amax = block_amax_x86(x);
    const float d = amax / 127.f;
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    uint32_t s = 0;
    for (int j = 0; j < kQK; ++j) {
        const int32_t q = round_even_to_int(x[j] * id);
        s += static_cast<uint32_t>(q);
        qs[j] = saturate_i8(q);
    }
    *sum = static_cast<int32_t>(s);
    return d;
}

// The 5th bits of a Q5 block, as 0 or 0x10 per element (dequantize_row_q5_0).
inline void q5_high_bits(const uint8_t qh_bytes[4], uint8_t hi[kQK]) {
    uint32_t qh;
    std::memcpy(&qh, qh_bytes, sizeof qh);
    for (int j = 0; j < kQK; ++j) hi[j] = static_cast<uint8_t>(((qh >> j) & 1u) << 4);
}

} // namespace

// ---- to_float ------------------------------------------------------------------------------

void f32_to_float(const void* x, float* y, int64_t n) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void f16_to_float(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(vx);
    for (int64_t i = 0; i < n; ++i) y[i] = half_to_float(x[i]);
}

void bf16_to_float(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const uint16_t*>(vx);
    for (int64_t i = 0; i < n; ++i) y[i] = fp16::bf16_to_float(x[i]);
}

void dequantize_row_q4_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ4_0*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = static_cast<float>((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + kQK / 2] = static_cast<float>((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

// q*d is exact in float (a 4- or 5-bit integer times an fp16 significand), so q*d + m rounds
// once whether or not the compiler fuses it.
void dequantize_row_q4_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ4_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        const float m = half_to_float(x[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = static_cast<float>(x[i].qs[j] & 0x0f) * d + m;
            y[j + kQK / 2] = static_cast<float>(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void dequantize_row_q5_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ5_0*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        uint8_t hi[kQK];
        q5_high_bits(x[i].qh, hi);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = static_cast<float>(((x[i].qs[j] & 0x0f) | hi[j]) - 16) * d;
            y[j + kQK / 2] = static_cast<float>(((x[i].qs[j] >> 4) | hi[j + kQK / 2]) - 16) * d;
        }
    }
}

void dequantize_row_q5_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ5_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        const float m = half_to_float(x[i].m);
        uint8_t hi[kQK];
        q5_high_bits(x[i].qh, hi);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = static_cast<float>((x[i].qs[j] & 0x0f) | hi[j]) * d + m;
            y[j + kQK / 2] = static_cast<float>((x[i].qs[j] >> 4) | hi[j + kQK / 2]) * d + m;
        }
    }
}

void dequantize_row_q8_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

void dequantize_row_q8_1(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_1*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
    }
}

// ---- from_float (activations) --------------------------------------------------------------

void f32_from_float(const float* x, void* y, int64_t n) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

// ggml_cpu_fp32_to_fp16 converts groups of 4 (and 8, 16) with F16C and the last n % 4 values
// with GGML_FP32_TO_FP16; the two differ only in what they do to a NaN's payload.
void f16_from_float(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    const int64_t n_vec = n & ~int64_t{3};
    for (int64_t i = 0; i < n_vec; ++i) y[i] = fp16::float_to_half_f16c(x[i]);
    for (int64_t i = n_vec; i < n; ++i) y[i] = fp16::float_to_half(x[i]);
}

void bf16_from_float(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    for (int64_t i = 0; i < n; ++i) y[i] = fp16::float_to_bf16(x[i]);
}

void quantize_row_q8_0(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_0*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        int32_t sum;
        const float d = quantize_block_q8_x86(x, y[i].qs, &sum);
        y[i].d = fp16::float_to_half(d);
    }
}

void quantize_row_q8_1(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_1*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        int32_t sum;
        const float d = quantize_block_q8_x86(x, y[i].qs, &sum);
        y[i].d = fp16::float_to_half(d);
        y[i].s = fp16::float_to_half(d * static_cast<float>(sum));
    }
}

// ---- quantize_ref (weights) ----------------------------------------------------------------

void f16_quantize_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<uint16_t*>(vy);
    for (int64_t i = 0; i < n; ++i) y[i] = fp16::float_to_half(x[i]);
}

void bf16_quantize_ref(const float* x, void* vy, int64_t n) { bf16_from_float(x, vy, n); }

void quantize_row_q4_0_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ4_0*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.0f, max = 0.0f;  // the element of largest magnitude, with its sign
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp16::float_to_half(d);
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = std::min(15, static_cast<int>(rounded(x[j] * id) + 8.5f));
            const int q1 = std::min(15, static_cast<int>(rounded(x[j + kQK / 2] * id) + 8.5f));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

void quantize_row_q4_1_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ4_1*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < kQK; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp16::float_to_half(d);
        y[i].m = fp16::float_to_half(min);
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = std::min(15, static_cast<int>(rounded((x[j] - min) * id) + 0.5f));
            const int q1 = std::min(15, static_cast<int>(rounded((x[j + kQK / 2] - min) * id) + 0.5f));
            y[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
        }
    }
}

void quantize_row_q5_0_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ5_0*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (amax < std::fabs(x[j])) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        const float d = max / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp16::float_to_half(d);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            const int q0 = std::min(31, static_cast<int>(rounded(x[j] * id) + 16.5f));
            const int q1 = std::min(31, static_cast<int>(rounded(x[j + kQK / 2] * id) + 16.5f));
            y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
            qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

void quantize_row_q5_1_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ5_1*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < kQK; ++j) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp16::float_to_half(d);
        y[i].m = fp16::float_to_half(min);
        uint32_t qh = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            // ggml converts straight to uint8_t with no clamp to 31.
            const int q0 = static_cast<uint8_t>(rounded((x[j] - min) * id) + 0.5f);
            const int q1 = static_cast<uint8_t>(rounded((x[j + kQK / 2] - min) * id) + 0.5f);
            y[i].qs[j] = static_cast<uint8_t>((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
            qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + kQK / 2);
        }
        std::memcpy(y[i].qh, &qh, sizeof qh);
    }
}

void quantize_row_q8_0_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_0*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = max_ps(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp16::float_to_half(d);
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    }
}

void quantize_row_q8_1_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_1*>(vy);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.0f;
        for (int j = 0; j < kQK; ++j) amax = max_ps(amax, std::fabs(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = fp16::float_to_half(d);
        int sum = 0;
        for (int j = 0; j < kQK; ++j) {
            y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
            sum += y[i].qs[j];
        }
        y[i].s = fp16::float_to_half(static_cast<float>(sum) * d);
    }
}

// ---- vec_dot -------------------------------------------------------------------------------

// The scalar ggml_vec_dot_f32/f16/bf16 round each product to float and sum in double.
void vec_dot_f32(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const float*>(vx);
    const auto* y = static_cast<const float*>(vy);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * y[i]);
    *s = static_cast<float>(sum);
}

void vec_dot_f16(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const uint16_t*>(vx);
    const auto* y = static_cast<const uint16_t*>(vy);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(half_to_float(x[i]) * half_to_float(y[i]));
    *s = static_cast<float>(sum);
}

void vec_dot_bf16(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const uint16_t*>(vx);
    const auto* y = static_cast<const uint16_t*>(vy);
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        sum += static_cast<double>(fp16::bf16_to_float(x[i]) * fp16::bf16_to_float(y[i]));
    }
    *s = static_cast<float>(sum);
}

// The quantized dots: exact integer sums per block, then float scaling and a float running
// sum in the order of ggml_vec_dot_*_generic.
void vec_dot_q4_0_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ4_0*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += ((x[ib].qs[j] & 0x0f) - 8) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + kQK / 2];
        }
        sumf += static_cast<float>(sumi) * half_to_float(x[ib].d) * half_to_float(y[ib].d);
    }
    *s = sumf;
}

void vec_dot_q4_1_q8_1(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ4_1*>(vx);
    const auto* y = static_cast<const BlockQ8_1*>(vy);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += (x[ib].qs[j] & 0x0f) * y[ib].qs[j];
            sumi += (x[ib].qs[j] >> 4) * y[ib].qs[j + kQK / 2];
        }
        // The min term uses y.s = d_y * sum(q_y), so the offset costs no per-element work.
        sumf += (half_to_float(x[ib].d) * half_to_float(y[ib].d)) * static_cast<float>(sumi) +
                half_to_float(x[ib].m) * half_to_float(y[ib].s);
    }
    *s = sumf;
}

void vec_dot_q5_0_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ5_0*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        uint8_t hi[kQK];
        q5_high_bits(x[ib].qh, hi);
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += (((x[ib].qs[j] & 0x0f) | hi[j]) - 16) * y[ib].qs[j];
            sumi += (((x[ib].qs[j] >> 4) | hi[j + kQK / 2]) - 16) * y[ib].qs[j + kQK / 2];
        }
        sumf += (half_to_float(x[ib].d) * half_to_float(y[ib].d)) * static_cast<float>(sumi);
    }
    *s = sumf;
}

void vec_dot_q5_1_q8_1(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ5_1*>(vx);
    const auto* y = static_cast<const BlockQ8_1*>(vy);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        uint8_t hi[kQK];
        q5_high_bits(x[ib].qh, hi);
        int sumi = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi += ((x[ib].qs[j] & 0x0f) | hi[j]) * y[ib].qs[j];
            sumi += ((x[ib].qs[j] >> 4) | hi[j + kQK / 2]) * y[ib].qs[j + kQK / 2];
        }
        sumf += (half_to_float(x[ib].d) * half_to_float(y[ib].d)) * static_cast<float>(sumi) +
                half_to_float(x[ib].m) * half_to_float(y[ib].s);
    }
    *s = sumf;
}

void vec_dot_q8_0_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ8_0*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        int sumi = 0;
        for (int j = 0; j < kQK; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += static_cast<float>(sumi) * (half_to_float(x[ib].d) * half_to_float(y[ib].d));
    }
    *s = sumf;
}

// ---- table ---------------------------------------------------------------------------------

void fill_traits(TypeTraits* table, int n_table) {
    const TypeTraits all[] = {
        {GGMLType::F32, f32_to_float, f32_from_float, vec_dot_f32, GGMLType::F32, f32_from_float, nullptr},
        {GGMLType::F16, f16_to_float, f16_from_float, vec_dot_f16, GGMLType::F16, f16_quantize_ref, nullptr},
        {GGMLType::BF16, bf16_to_float, bf16_from_float, vec_dot_bf16, GGMLType::BF16, bf16_quantize_ref, nullptr},
        {GGMLType::Q4_0, dequantize_row_q4_0, quantize_row_q4_0_ref, vec_dot_q4_0_q8_0, GGMLType::Q8_0,
         quantize_row_q4_0_ref, nullptr},
        {GGMLType::Q4_1, dequantize_row_q4_1, quantize_row_q4_1_ref, vec_dot_q4_1_q8_1, GGMLType::Q8_1,
         quantize_row_q4_1_ref, nullptr},
        {GGMLType::Q5_0, dequantize_row_q5_0, quantize_row_q5_0_ref, vec_dot_q5_0_q8_0, GGMLType::Q8_0,
         quantize_row_q5_0_ref, nullptr},
        {GGMLType::Q5_1, dequantize_row_q5_1, quantize_row_q5_1_ref, vec_dot_q5_1_q8_1, GGMLType::Q8_1,
         quantize_row_q5_1_ref, nullptr},
        {GGMLType::Q8_0, dequantize_row_q8_0, quantize_row_q8_0, vec_dot_q8_0_q8_0, GGMLType::Q8_0,
         quantize_row_q8_0_ref, nullptr},
        // Q8_1 is only ever an activation type: ggml has no weight kernel for it.
        {GGMLType::Q8_1, dequantize_row_q8_1, quantize_row_q8_1, nullptr, GGMLType::Q8_1, quantize_row_q8_1_ref, nullptr},
    };
    for (const TypeTraits& t : all) {
        const auto id = static_cast<int>(t.type);
        if (id < n_table) table[id] = t;
    }
    fill_traits_kquants(table, n_table);
}

} // namespace ref
} // namespace slm::kernels
