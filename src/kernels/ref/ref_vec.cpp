// ref_vec.cpp - scalar reference of the attention vector ops (see vec.h): one F16 element at
// a time, widened exactly, one float operation, rounded back to nearest even.
#include "kernels/vec.h"
#include "kernels/vec_f32_attn.h"

#include "core/fp16.h"

#include <cmath>

namespace slm::kernels::ref {
namespace {

using fp16::float_to_half;
using fp16::half_to_float;

// ggml's scalar ggml_vec_dot_f16: float products summed in double.
void dot_f16(int64_t n, float* s, const uint16_t* x, const uint16_t* y) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(half_to_float(x[i]) * half_to_float(y[i]));
    *s = static_cast<float>(sum);
}

// Keeps a product rounded to float before it is added to something: with FMA enabled
// (-march=native, aarch64) GCC's default -ffp-contract=fast would fuse the two.
inline float rounded(float v) {
#if defined(__FMA__) && defined(__x86_64__)
    __asm__("" : "+x"(v));
#elif defined(__aarch64__)
    __asm__("" : "+w"(v));
#endif
    return v;
}

constexpr int64_t kStep = 32;  // GGML_F16_STEP of ggml's AVX2 build

void mad_f16(int64_t n, uint16_t* y, const uint16_t* x, float v) { kernels::ref::mad_f16_step(n, y, x, v, kStep); }

void scale_f16(int64_t n, uint16_t* y, float v) {
    for (int64_t i = 0; i < n; ++i) y[i] = float_to_half(half_to_float(y[i]) * v);
}

void cvt_f32_f16(int64_t n, const float* x, uint16_t* y) {
    for (int64_t i = 0; i < n; ++i) y[i] = float_to_half(x[i]);
}

void cvt_f16_f32_scale(int64_t n, const uint16_t* x, float* y, float v) {
    for (int64_t i = 0; i < n; ++i) y[i] = half_to_float(x[i]) * v;
}

void mad_f32(int64_t n, float* y, const float* x, float v) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::fma(x[i], v, y[i]);
}

void attn_f16(const AttnF16Rows& r, const uint16_t* q, int64_t n, AttnF16State& st, float* /*scratch*/) {
    for (int64_t j = 0; j < n; ++j) {
        float s;
        dot_f16(r.hd_k, &s, r.k + static_cast<size_t>(j) * r.k_stride, q);
        s *= r.scale;
        if (r.softcap != 0.0f) s = r.softcap * std::tanh(s);
        float ms = 1.0f, vs = 1.0f;
        if (s > st.M) {
            const float m_old = st.M;
            st.M = s;
            ms = std::exp(m_old - st.M);
            scale_f16(r.hd_v, st.acc, ms);
        } else {
            vs = std::exp(s - st.M);
        }
        mad_f16(r.hd_v, st.acc, r.v + static_cast<size_t>(j) * r.v_stride, vs);
        st.S = rounded(st.S * ms) + vs;
    }
}

constexpr VecOps kOps = {"scalar", kStep, dot_f16, mad_f16, scale_f16, cvt_f32_f16, cvt_f16_f32_scale, mad_f32, attn_f16,
                       f32attn::dot_ggml, f32attn::dot_sgemm, f32attn::softmax};

} // namespace

const VecOps& vec_ops() { return kOps; }

void mad_f16_step(int64_t n, uint16_t* y, const uint16_t* x, float v, int64_t step) {
    const int64_t np = n - n % step;
    for (int64_t i = 0; i < np; ++i) y[i] = float_to_half(std::fma(half_to_float(x[i]), v, half_to_float(y[i])));
    for (int64_t i = np; i < n; ++i) y[i] = float_to_half(rounded(half_to_float(x[i]) * v) + half_to_float(y[i]));
}

} // namespace slm::kernels::ref
