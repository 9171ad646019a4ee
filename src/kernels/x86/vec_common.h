// vec_common.h - the scalar part of attn_f16 (vec.h) shared by the x86 vec files: the online
// softmax weights of a run of scores. Include only from avx2*/avx512* translation units.
#pragma once

#include "kernels/vec.h"

#include <cmath>

namespace slm::kernels::x86vec {
// Internal linkage: the avx2 and avx512 files are built with different -m flags, and one
// shared inline definition could end up running AVX-512 code on an AVX2-only CPU.
namespace {

// Gemma 2's attention soft-cap on scores already multiplied by scale / softcap (vec.h):
// s -> softcap * tanhf(s), one libm tanhf per score as ggml's flash-attention kernel.
inline void apply_softcap(float* s, int64_t n, float softcap) {
    if (softcap == 0.0f) return;
    for (int64_t j = 0; j < n; ++j) s[j] = softcap * std::tanh(s[j]);
}

// For scores s[0..n): the running maximum, the factor ms[j] the accumulator is scaled by before
// row j (1 when the maximum did not grow) and the weight vs[j] of row j, exactly as the
// reference attn_f16 computes them; also advances st.M and st.S.
inline void softmax_weights(const float* s, int64_t n, AttnF16State& st, float* ms, float* vs) {
    float M = st.M, S = st.S;
    for (int64_t j = 0; j < n; ++j) {
        const float sj = s[j];
        float m = 1.0f, v = 1.0f;
        if (sj > M) {
            const float m_old = M;
            M = sj;
            m = std::exp(m_old - M);
        } else {
            v = std::exp(sj - M);
        }
        ms[j] = m;
        vs[j] = v;
        float p = S * m;
        __asm__("" : "+x"(p));  // the product rounded to float, then the sum
        S = p + v;
    }
    st.M = M;
    st.S = S;
}

} // namespace
} // namespace slm::kernels::x86vec
