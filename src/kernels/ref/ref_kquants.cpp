// ref_kquants.cpp - scalar reference kernels of the super-block types (Q2_K ... Q6_K, Q8_K,
// IQ4_XS, TQ1_0, TQ2_0) and of IQ4_NL: dequantize_row_* and quantize_row_*_ref of
// ggml-quants.c, ggml_vec_dot_*_generic of ggml-cpu/quants.c.
//
// The quantizers search for scales in float arithmetic, so their bytes depend on every
// rounding: expressions keep ggml's evaluation order, and a*b + c must round twice, as it does
// in ggml-quants.c, which is built without FMA. The dot products then equal ggml's generic ones
// as its baseline x86-64 build computes them (with -mfma GCC fuses ggml's `sum += d * isum`).
// An -march=native build of this file would let the compiler fuse, hence the pragma.
#if defined(__FMA__) || defined(__aarch64__)
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif
#endif

#include "kernels/ref/ref.h"

#include "core/fp16.h"
#include "kernels/ref/blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slm::kernels::ref {
namespace {

using fp16::float_to_half;
using fp16::half_to_float;

constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS: below this a group counts as all zero

// ggml's nearest_int: adding 1.5 * 2^23 leaves round(fval) (ties to even) in the low mantissa
// bits. Exact for |fval| < 2^22; beyond that, and for NaN, it returns what the bits say, as
// ggml does in a release build (its assert is compiled out).
inline int nearest_int(float fval) {
    const float val = fval + 12582912.f;
    int32_t i;
    std::memcpy(&i, &val, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

// ggml's MAX(a, b) / MIN(a, b) macros.
template <typename T> inline T max_of(T a, T b) { return a > b ? a : b; }
template <typename T> inline T min_of(T a, T b) { return a < b ? a : b; }

// ---- scale searches of ggml-quants.c ----------------------------------------------------------

// make_qx_quants with rmse_type 1 (weights x^2, or qw when given): symmetric quants in
// [-nmax, nmax-1], stored + nmax; tries 18 scales around nmax/max and keeps the best fit.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L, const float* qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = max_of(-nmax, min_of(nmax - 1, l));
        L[i] = static_cast<int8_t>(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * x[i]);
            l = max_of(-nmax, min_of(nmax - 1, l));
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                const int l = nearest_int(iscale * x[i]);
                L[i] = static_cast<int8_t>(nmax + max_of(-nmax, min_of(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// make_q3_quants with do_rmse: quants in [-nmax, nmax-1] from the signed extreme, then up to
// five passes that move single quants while the x^2-weighted fit improves.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        const float ax = std::fabs(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = nearest_int(iscale * x[i]);
        l = max_of(-nmax, min_of(nmax - 1, l));
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = max_of(-nmax, min_of(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// make_qkx3_quants (and make_qkx2_quants, the same search with weights always given): asymmetric
// quants in [0, nmax] with x ~ scale*L - the_min, min clamped to <= 0; tries nstep+1 scales and
// keeps the least weighted squared (or absolute) error. Weights x^2 when none are given (the
// imatrix quantizers' default).
float make_qkx3_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    auto wt = [&](int i) { return weights ? weights[i] : x[i] * x[i]; };
    float min = x[0], max = x[0];
    float sum_w = wt(0);
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = wt(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        std::memset(L, 0, static_cast<size_t>(n));
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = static_cast<uint8_t>(max_of(0, min_of(nmax, l)));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        best_mad += wt(i) * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = nearest_int(iscale * (x[i] - min));
            l = max_of(0, min_of(nmax, l));
            Laux[i] = static_cast<uint8_t>(l);
            const float w = wt(i);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? std::fabs(diff) : diff * diff;
                mad += wt(i) * diff;
            }
            if (mad < best_mad) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    return make_qkx3_quants(n, nmax, x, weights, L, the_min, Laux, rmin, rdelta, nstep, use_mad);
}

// make_qp_quants: non-negative values (sub-block scales or mins) to [0, nmax] under weights:
// 9 trial scales, then up to five passes moving single quants while the weighted fit improves.
float make_qp_quants(int n, int nmax, const float* x, uint8_t* L, const float* quant_weights) {
    float max = 0;
    for (int i = 0; i < n; ++i) max = max_of(max, x[i]);
    if (max < kGroupMaxEps) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(nearest_int(iscale * x[i]));
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; ++i) {
        const float diff = x[i] - scale * L[i];
        best_mse += quant_weights[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * is + nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; ++i) {
            const int l = min_of(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * l;
            mse += quant_weights[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        const int l = min_of(nmax, nearest_int(iscale * x[i]));
        L[i] = static_cast<uint8_t>(l);
        const float w = quant_weights[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = quant_weights[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                const int new_l = min_of(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<uint8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Four 2-bit values per byte, in the order of Q2_K/Q3_K: per 128 elements, byte l holds
// elements l, l+32, l+64, l+96 in bits 0-1, 2-3, 4-5, 6-7.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128) {
        for (int l = 0; l < 32; ++l) {
            qs[j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                 (L[j + l + 96] << 6));
        }
    }
}

// The 6-bit scale and min of sub-block j packed as Q4_K/Q5_K store them.
void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
    if (j < 4) {
        scales[j] = ls;
        scales[j + 4] = lm;
    } else {
        scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
        scales[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
        scales[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
}

// The scales and mins of a Q4_K or Q5_K super-block from make_qkx2_quants on each sub-block,
// quantized to 6 bits against their maxima (shared by quantize_row_q4_K_ref and q5_K_ref).
void quantize_k4_scales(const float* x, int nmax, float rmin, float rdelta, int nstep, uint8_t* L,
                        uint16_t* d, uint16_t* dmin, uint8_t* packed) {
    float mins[kQK_K / 32], scales[kQK_K / 32], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;  // scales are positive, as the min is subtracted
    for (int j = 0; j < kQK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, rdelta,
                                     nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < kQK_K / 32; ++j) {
        // ggml assigns the int to a uint8_t before clamping: a negative value wraps, then clamps.
        uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        ls = min_of<uint8_t>(63, ls);
        lm = min_of<uint8_t>(63, lm);
        pack_scale_min_k4(j, ls, lm, packed);
    }
    *d = float_to_half(max_scale / 63.f);
    *dmin = float_to_half(max_min / 63.f);
    // Requantize against the rounded scales, as the dequantizer will see them.
    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed, &sc, &m);
        const float dl = half_to_float(*d) * sc;
        if (dl == 0.0f) continue;
        const float dm = half_to_float(*dmin) * m;
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / dl);
            L[32 * j + ii] = static_cast<uint8_t>(max_of(0, min_of(nmax, l)));
        }
    }
}

// best_index_int8: the index of the nearest code-book value (the lower one on a tie).
int best_index_int8(int n, const int8_t* val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[n - 1]) return n - 1;
    int ml = 0, mu = n - 1;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav]) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

// quantize_row_iq4_nl_impl with 16 code-book values: one super-block of super_block_size
// elements in sub-blocks of 32, fit weighted by x^2, or with importances qw by
// qw * sqrt(sigma2 + x^2); ntry > 0 searches 2*ntry+1 scales per sub-block, as
// quantize_iq4_nl / quantize_iq4_xs do, ntry = -1 is quantize_row_iq4_nl_ref.
void quantize_iq4_impl(int super_block_size, const float* x, uint16_t* dh, uint8_t* q4, uint16_t* scales_h,
                       uint8_t* scales_l, float* scales, uint8_t* L, int ntry, const float* qw = nullptr) {
    constexpr int block_size = 32;
    const int8_t* values = kIQ4NLValues;
    float weight[block_size];
    float sigma2 = 0;
    for (int j = 0; j < super_block_size; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / static_cast<float>(super_block_size);
    std::memset(q4, 0, static_cast<size_t>(super_block_size / 2));
    *dh = float_to_half(0.f);

    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < super_block_size / block_size; ++ib) {
        const float* xb = x + ib * block_size;
        uint8_t* Lb = L + ib * block_size;
        if (qw) {
            for (int j = 0; j < block_size; ++j) weight[j] = qw[ib * block_size + j] * std::sqrt(sigma2 + xb[j] * xb[j]);
        } else {
            for (int j = 0; j < block_size; ++j) weight[j] = xb[j] * xb[j];
        }
        float amax = 0, max = 0;
        for (int j = 0; j < block_size; ++j) {
            const float ax = std::fabs(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < kGroupMaxEps) {
            scales[ib] = 0;
            std::memset(Lb, 0, block_size);
            continue;
        }
        float d = ntry > 0 ? -max / values[0] : max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < block_size; ++j) {
            const float al = id * xb[j];
            const int l = best_index_int8(16, values, al);
            Lb[j] = static_cast<uint8_t>(l);
            const float q = values[l];
            const float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; ++itry) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < block_size; ++j) {
                const float al = id * xb[j];
                const int l = best_index_int8(16, values, al);
                const float q = values[l];
                const float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        const float abs_d = std::fabs(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }

    if (super_block_size / block_size > 1) {
        const int nb = super_block_size / block_size;
        std::memset(scales_h, 0, static_cast<size_t>((nb + 7) / 8) * sizeof(uint16_t));
        const float d = -max_scale / 32;
        *dh = float_to_half(d);
        const float id = d != 0.0f ? 1 / d : 0.f;
        for (int ib = 0; ib < nb; ++ib) {
            int l = nearest_int(id * scales[ib]);
            l = max_of(-32, min_of(31, l));
            // The sub-block is requantized with the unrounded d, as ggml does.
            const float dl = d * l;
            const float idl = dl != 0.0f ? 1 / dl : 0.f;
            uint8_t* Lb = L + ib * block_size;
            const float* xb = x + ib * block_size;
            for (int j = 0; j < block_size; ++j) Lb[j] = static_cast<uint8_t>(best_index_int8(16, values, idl * xb[j]));
            l += 32;
            const auto l_l = static_cast<uint8_t>(l & 0xf);
            const auto l_h = static_cast<uint8_t>(l >> 4);
            if (ib % 2 == 0) {
                scales_l[ib / 2] = l_l;
            } else {
                scales_l[ib / 2] |= static_cast<uint8_t>(l_l << 4);
            }
            scales_h[ib / 8] |= static_cast<uint16_t>(l_h << 2 * (ib % 8));
        }
    } else {
        *dh = float_to_half(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] != 0.0f ? 1 / scales[0] : 0;
            for (int j = 0; j < super_block_size; ++j) L[j] = static_cast<uint8_t>(best_index_int8(16, values, id * x[j]));
        }
    }

    for (int i = 0; i < super_block_size / 32; ++i) {
        for (int j = 0; j < 16; ++j) q4[16 * i + j] = static_cast<uint8_t>(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
    }
}

// One TQ1_0 trit: 0, 1, 2 for -1, 0, 1 (lroundf, ties away from zero).
inline int trit(float v) { return static_cast<int>(std::lround(v)) + 1; }

// Trit n of a TQ1_0 byte: the byte is ceil(t * 256 / 3^k) for the base-3 number t of its trits,
// so multiplying by 3^n (mod 256) brings trit n to the top, where * 3 >> 8 reads it.
inline int tq1_trit(uint8_t byte, uint8_t pow3) {
    const auto q = static_cast<uint8_t>(byte * pow3);
    return (static_cast<uint16_t>(q) * 3) >> 8;
}

constexpr uint8_t kPow3[6] = {1, 3, 9, 27, 81, 243};

} // namespace

// ---- shared unpacking ---------------------------------------------------------------------------

void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

// Scale j: 4 low bits from nibble (j % 8) of bytes 0..7 (low nibbles first), 2 high bits from
// bits 2*(j/4) of byte 8 + j%4.
void unpack_q3_K_scales(const uint8_t packed[12], int8_t out[16]) {
    for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = static_cast<int8_t>((lo | (hi << 4)) - 32);
    }
}

// ---- to_float ---------------------------------------------------------------------------------

void dequantize_row_q2_K(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ2_K*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        const float min = half_to_float(x[i].dmin);
        const uint8_t* q = x[i].qs;
        int is = 0;
        for (int c = 0; c < kQK_K; c += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; ++half) {
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                    for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
            q += 32;
        }
    }
}

void dequantize_row_q3_K(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ3_K*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d_all = half_to_float(x[i].d);
        int8_t scales[16];
        unpack_q3_K_scales(x[i].scales, scales);
        const uint8_t* q = x[i].qs;
        const uint8_t* hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int c = 0; c < kQK_K; c += 128) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; ++half) {
                    const float dl = d_all * scales[is++];
                    for (int l = 16 * half; l < 16 * half + 16; ++l) {
                        *y++ = dl * (((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                    }
                }
                m = static_cast<uint8_t>(m << 1);
            }
            q += 32;
        }
    }
}

void dequantize_row_q4_K(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ4_K*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        const float min = half_to_float(x[i].dmin);
        const uint8_t* q = x[i].qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

void dequantize_row_q5_K(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ5_K*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        const float min = half_to_float(x[i].dmin);
        const uint8_t* ql = x[i].qs;
        const uint8_t* qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32) {
            uint8_t sc, m;
            get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            u1 = static_cast<uint8_t>(u1 << 2);
            u2 = static_cast<uint8_t>(u2 << 2);
        }
    }
}

void dequantize_row_q6_K(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ6_K*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        const int8_t* sc = x[i].scales;
        for (int c = 0; c < kQK_K; c += 128, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; ++l) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                // (d * scale) * q: the product of three can round, so the order is ggml's.
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

void dequantize_row_q8_K(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockQ8_K*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        for (int j = 0; j < kQK_K; ++j) *y++ = x[i].d * x[i].qs[j];
    }
}

void dequantize_row_iq4_nl(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockIQ4_NL*>(vx);
    for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
        const float d = half_to_float(x[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
            y[j] = d * kIQ4NLValues[x[i].qs[j] & 0xf];
            y[j + kQK / 2] = d * kIQ4NLValues[x[i].qs[j] >> 4];
        }
    }
}

void dequantize_row_iq4_xs(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockIQ4_XS*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        const uint8_t* qs = x[i].qs;
        for (int ib = 0; ib < kQK_K / 32; ++ib, y += 32, qs += 16) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; ++j) {
                y[j + 0] = dl * kIQ4NLValues[qs[j] & 0xf];
                y[j + 16] = dl * kIQ4NLValues[qs[j] >> 4];
            }
        }
    }
}

// Element order: qs[0..32) holds elements m + 32*k (k = 0..4) of the first 160, qs[32..48)
// elements 160 + m + 16*k, qh[j] elements 240 + j + 4*k (k = 0..3).
void dequantize_row_tq1_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockTQ1_0*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 32; ++m) *y++ = static_cast<float>(tq1_trit(x[i].qs[m], kPow3[k]) - 1) * d;
        }
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 16; ++m) *y++ = static_cast<float>(tq1_trit(x[i].qs[32 + m], kPow3[k]) - 1) * d;
        }
        for (int k = 0; k < 4; ++k) {
            for (int j = 0; j < 4; ++j) *y++ = static_cast<float>(tq1_trit(x[i].qh[j], kPow3[k]) - 1) * d;
        }
    }
}

void dequantize_row_tq2_0(const void* vx, float* y, int64_t n) {
    const auto* x = static_cast<const BlockTQ2_0*>(vx);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const float d = half_to_float(x[i].d);
        for (int j = 0; j < 64; j += 32) {
            for (int l = 0; l < 4; ++l) {
                for (int m = 0; m < 32; ++m) {
                    const int q = (x[i].qs[j + m] >> (l * 2)) & 3;
                    *y++ = static_cast<float>(q - 1) * d;
                }
            }
        }
    }
}

// ---- quantize_ref -----------------------------------------------------------------------------

namespace {

// The ends every Q2_K..Q5_K quantizer shares, with or without importances: the block's scales
// are chosen, now each element's level follows from them and is packed. A sub-block whose scale
// rounded to 0 keeps the levels the scale search left in L, as ggml does.

// Q2_K: level = round((x + m) / d) in [0, 3] with the sub-block's scale and min.
void q2_K_finish(const float* x, BlockQ2_K& b, uint8_t* L) {
    const float dq = half_to_float(b.d), mq = half_to_float(b.dmin);
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = dq * (b.scales[j] & 0xF);
        if (d == 0.0f) continue;
        const float m = mq * (b.scales[j] >> 4);
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int((x[16 * j + ii] + m) / d);
            L[16 * j + ii] = static_cast<uint8_t>(max_of(0, min_of(3, l)));
        }
    }
    pack_2bit(L, b.qs);
}

// A Q3_K sub-block scale l in [0, 63]: low 4 bits in scales[0..7], high 2 bits in scales[8..11].
void q3_K_pack_scale(int j, int l, uint8_t* scales) {
    if (j < 8)
        scales[j] = static_cast<uint8_t>(l & 0xF);
    else
        scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
    scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
}

// Q3_K: level = round(x / d) in [-4, 3]; its high bit goes to bit j/32 of hmask[j % 32].
void q3_K_finish(const float* x, BlockQ3_K& b, int8_t* L) {
    int8_t sc[16];
    unpack_q3_K_scales(b.scales, sc);
    for (int j = 0; j < kQK_K / 16; ++j) {
        const float d = half_to_float(b.d) * sc[j];
        if (d == 0.0f) continue;
        for (int ii = 0; ii < 16; ++ii) {
            const int l = nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = static_cast<int8_t>(max_of(-4, min_of(3, l)) + 4);
        }
    }
    std::memset(b.hmask, 0, kQK_K / 8);
    uint8_t Lu[kQK_K];
    for (int j = 0; j < kQK_K; ++j) {
        if (L[j] > 3) {
            b.hmask[j % 32] |= static_cast<uint8_t>(1u << (j / 32));
            L[j] = static_cast<int8_t>(L[j] - 4);
        }
        Lu[j] = static_cast<uint8_t>(L[j]);
    }
    pack_2bit(Lu, b.qs);
}

// Q4_K: two 4-bit levels per byte, per 64 elements byte l holding l and l + 32.
void q4_K_pack(const uint8_t* L, uint8_t* q) {
    for (int j = 0; j < kQK_K; j += 64, q += 32)
        for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

// Q5_K: Q4_K's nibbles plus the fifth bits in qh, two bits per 64 elements.
void q5_K_pack(const uint8_t* L, uint8_t* qh, uint8_t* ql) {
    std::memset(qh, 0, kQK_K / 8);
    uint8_t m1 = 1, m2 = 2;
    for (int c = 0; c < kQK_K; c += 64, ql += 32) {
        for (int j = 0; j < 32; ++j) {
            int l1 = L[c + j], l2 = L[c + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= m2;
            }
            ql[j] = static_cast<uint8_t>(l1 | (l2 << 4));
        }
        m1 = static_cast<uint8_t>(m1 << 2);
        m2 = static_cast<uint8_t>(m2 << 2);
    }
}

} // namespace

void quantize_row_q2_K_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ2_K*>(vy);
    uint8_t L[kQK_K], Laux[16];
    float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < kQK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
            y[i].d = float_to_half(max_scale / q4scale);
        } else {
            for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = 0;
            y[i].d = float_to_half(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < kQK_K / 16; ++j) {
                y[i].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
            }
            y[i].dmin = float_to_half(max_min / q4scale);
        } else {
            y[i].dmin = float_to_half(0.f);
        }
        q2_K_finish(x, y[i], L);
    }
}

void quantize_row_q3_K_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ3_K*>(vy);
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < kQK_K / 16; ++j) {
            scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
            const float scale = std::fabs(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }
        std::memset(y[i].scales, 0, 12);
        if (max_scale != 0.0f) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < kQK_K / 16; ++j) {
                auto l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
                q3_K_pack_scale(j, max_of<int>(-32, min_of<int>(31, l)) + 32, y[i].scales);
            }
            y[i].d = float_to_half(1 / iscale);
        } else {
            y[i].d = float_to_half(0.f);
        }
        q3_K_finish(x, y[i], L);
    }
}

void quantize_row_q4_K_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ4_K*>(vy);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        quantize_k4_scales(x, 15, -1.f, 0.1f, 20, L, &y[i].d, &y[i].dmin, y[i].scales);
        q4_K_pack(L, y[i].qs);
    }
}

void quantize_row_q5_K_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ5_K*>(vy);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        quantize_k4_scales(x, 31, -0.5f, 0.1f, 15, L, &y[i].d, &y[i].dmin, y[i].scales);
        q5_K_pack(L, y[i].qh, y[i].qs);
    }
}

namespace {
void quantize_q6_K_rows(const float* x, void* vy, int64_t n, const float* qw);
} // namespace

void quantize_row_q6_K_ref(const float* x, void* vy, int64_t n) { quantize_q6_K_rows(x, vy, n, nullptr); }

namespace {
// quantize_row_q6_K_impl: with importances qw each sub-block's fit is weighted by qw alone
// (ggml leaves its sigma2 variant commented out); without, by x^2 (the _ref).
void quantize_q6_K_rows(const float* x, void* vy, int64_t n, const float* qw) {
    auto* y = static_cast<BlockQ6_K*>(vy);
    int8_t L[kQK_K];
    float scales[kQK_K / 16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, qw ? qw + kQK_K * i + 16 * ib : nullptr);
            scales[ib] = scale;
            const float abs_scale = std::fabs(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < kGroupMaxEps) {
            std::memset(&y[i], 0, sizeof(BlockQ6_K));
            y[i].d = float_to_half(0.f);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = float_to_half(1 / iscale);
        for (int ib = 0; ib < kQK_K / 16; ++ib) {
            y[i].scales[ib] = static_cast<int8_t>(min_of(127, nearest_int(iscale * scales[ib])));
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float d = half_to_float(y[i].d) * y[i].scales[j];
            if (d == 0.0f) continue;
            for (int ii = 0; ii < 16; ++ii) {
                const int l = nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = static_cast<int8_t>(max_of(-32, min_of(31, l)) + 32);
            }
        }
        uint8_t* ql = y[i].ql;
        uint8_t* qh = y[i].qh;
        for (int j = 0; j < kQK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
                ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
                qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                             ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}
} // namespace

// quantize_row_q8_K_ref: scale from the element of largest magnitude (the first one, with its
// sign), iscale = -127/max, nearest_int rounding. ggml leaves bsums unwritten for an all-zero
// block; here they are zero, so the bytes are deterministic.
void quantize_row_q8_K_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockQ8_K*>(vy);
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < kQK_K; ++j) {
            const float ax = std::fabs(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (amax == 0.0f) {
            y[i].d = 0;
            std::memset(y[i].qs, 0, sizeof y[i].qs);
            std::memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < kQK_K; ++j) {
            // An int stored to int8_t: wraps (only NaN or inf can leave [-127, 127]).
            y[i].qs[j] = static_cast<int8_t>(min_of(127, nearest_int(iscale * x[j])));
        }
        for (int j = 0; j < kQK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[j * 16 + ii];
            y[i].bsums[j] = static_cast<int16_t>(sum);
        }
        y[i].d = 1 / iscale;
    }
}

void quantize_row_iq4_nl_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockIQ4_NL*>(vy);
    uint8_t L[kQK];
    float scale;
    uint16_t unused_h;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        quantize_iq4_impl(kQK, x + kQK * ib, &y[ib].d, y[ib].qs, &unused_h, nullptr, &scale, L, -1);
    }
}

// quantize_row_iq4_xs_ref is quantize_iq4_xs without importance weights: ntry = 7.
void quantize_row_iq4_xs_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockIQ4_XS*>(vy);
    uint8_t L[kQK_K];
    float scales[kQK_K / 32];
    for (int64_t ib = 0; ib < n / kQK_K; ++ib) {
        quantize_iq4_impl(kQK_K, x + kQK_K * ib, &y[ib].d, y[ib].qs, &y[ib].scales_h, y[ib].scales_l, scales, L, 7);
    }
}

void quantize_row_tq1_0_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockTQ1_0*>(vy);
    // ceil(t * 256 / 243): the trits as a fraction of 3^5, so that trit k is read back by
    // multiplying by 3^k (see tq1_trit).
    auto scaled = [](int t) { return static_cast<uint8_t>((t * 256 + (243 - 1)) / 243); };
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        float amax = 0.0f;
        for (int j = 0; j < kQK_K; ++j) amax = max_of(amax, std::fabs(x[j]));
        const float d = amax;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = float_to_half(d);
        for (int m = 0; m < 32; ++m) {
            int q = 0;
            for (int k = 0; k < 5; ++k) q = q * 3 + trit(x[m + k * 32] * id);
            y[i].qs[m] = scaled(q);
        }
        x += 5 * 32;
        for (int m = 0; m < 16; ++m) {
            int q = 0;
            for (int k = 0; k < 5; ++k) q = q * 3 + trit(x[m + k * 16] * id);
            y[i].qs[32 + m] = scaled(q);
        }
        x += 5 * 16;
        for (int j = 0; j < 4; ++j) {
            int q = 0;
            for (int k = 0; k < 4; ++k) q = q * 3 + trit(x[j + k * 4] * id);
            y[i].qh[j] = scaled(q * 3);  // the fifth (unused) trit is 0
        }
        x += 4 * 4;
    }
}

void quantize_row_tq2_0_ref(const float* x, void* vy, int64_t n) {
    auto* y = static_cast<BlockTQ2_0*>(vy);
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        float amax = 0.0f;
        for (int j = 0; j < kQK_K; ++j) amax = max_of(amax, std::fabs(x[j]));
        const float d = amax;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = float_to_half(d);
        for (int j = 0; j < 64; j += 32, x += 4 * 32) {
            for (int m = 0; m < 32; ++m) {
                int q = 0;
                for (int k = 0; k < 4; ++k) q += (trit(x[m + k * 32] * id) & 3) << (2 * k);
                y[i].qs[j + m] = static_cast<uint8_t>(q);
            }
        }
    }
}

// ---- vec_dot ----------------------------------------------------------------------------------

void vec_dot_q2_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ2_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const uint8_t* q2 = x[i].qs;
        const int8_t* q8 = y[i].qs;
        const uint8_t* sc = x[i].scales;
        int summs = 0;  // the min term, from the 16-element sums of the activations
        for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * half_to_float(x[i].d);
        const float dmin = y[i].d * half_to_float(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < kQK_K / 128; ++k, q2 += 32) {
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                int d = sc[is++] & 0xF;
                int isuml = 0;
                for (int l = 0; l < 16; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += d * isuml;
                d = sc[is++] & 0xF;
                isuml = 0;
                for (int l = 16; l < 32; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += d * isuml;
            }
        }
        sumf += dall * isum - dmin * summs;
    }
    *s = sumf;
}

// Q3_K .. Q6_K: the generic code's eight int32 lanes (element j goes to lane j % 8) scaled per
// block into eight float sums, which are added up at the end.
void vec_dot_q3_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ3_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sums[8] = {};
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int8_t a[kQK_K];
        const uint8_t* q3 = x[i].qs;
        const uint8_t* hm = x[i].hmask;
        int8_t* pa = a;
        uint8_t m = 1;
        for (int c = 0; c < kQK_K; c += 128, q3 += 32) {
            for (int shift = 0; shift < 8; shift += 2, pa += 32) {
                for (int l = 0; l < 32; ++l) pa[l] = static_cast<int8_t>(((q3[l] >> shift) & 3) - (hm[l] & m ? 0 : 4));
                m = static_cast<uint8_t>(m << 1);
            }
        }
        int8_t scales[16];
        unpack_q3_K_scales(x[i].scales, scales);
        int32_t aux32[8] = {};
        for (int j = 0; j < kQK_K; ++j) aux32[j % 8] += scales[j / 16] * (y[i].qs[j] * a[j]);
        const float d = half_to_float(x[i].d) * y[i].d;
        for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
    }
    float sumf = 0;
    for (float v : sums) sumf += v;
    *s = sumf;
}

namespace {

// The body shared by the Q4_K and Q5_K dots: a[] holds the block's unsigned quants.
void k4_block_dot(const int8_t* a, const uint8_t* packed_scales, uint16_t xd, uint16_t xdmin, const BlockQ8_K& y,
                  float sums[8], float* sumf) {
    uint8_t scales[8], mins[8];
    for (int j = 0; j < 8; ++j) get_scale_min_k4(j, packed_scales, &scales[j], &mins[j]);
    int sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) sumi += y.bsums[j] * mins[j / 2];
    int32_t aux32[8] = {};
    for (int j = 0; j < kQK_K; ++j) aux32[j % 8] += scales[j / 32] * (y.qs[j] * a[j]);
    const float d = half_to_float(xd) * y.d;
    for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
    const float dmin = half_to_float(xdmin) * y.d;
    *sumf -= dmin * sumi;
}

} // namespace

void vec_dot_q4_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ4_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sums[8] = {};
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int8_t a[kQK_K];
        for (int j = 0; j < kQK_K / 64; ++j) {
            for (int l = 0; l < 32; ++l) {
                a[64 * j + l] = static_cast<int8_t>(x[i].qs[32 * j + l] & 0xF);
                a[64 * j + 32 + l] = static_cast<int8_t>(x[i].qs[32 * j + l] >> 4);
            }
        }
        k4_block_dot(a, x[i].scales, x[i].d, x[i].dmin, y[i], sums, &sumf);
    }
    for (float v : sums) sumf += v;
    *s = sumf;
}

void vec_dot_q5_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ5_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sums[8] = {};
    float sumf = 0;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int8_t a[kQK_K];
        for (int j = 0; j < kQK_K / 64; ++j) {
            for (int l = 0; l < 32; ++l) {
                const uint8_t q = x[i].qs[32 * j + l], h = x[i].qh[l];
                a[64 * j + l] = static_cast<int8_t>((q & 0xF) + ((h >> (2 * j)) & 1) * 16);
                a[64 * j + 32 + l] = static_cast<int8_t>((q >> 4) + ((h >> (2 * j + 1)) & 1) * 16);
            }
        }
        k4_block_dot(a, x[i].scales, x[i].d, x[i].dmin, y[i], sums, &sumf);
    }
    for (float v : sums) sumf += v;
    *s = sumf;
}

void vec_dot_q6_K_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockQ6_K*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sums[8] = {};
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        int8_t a[kQK_K];
        const uint8_t* ql = x[i].ql;
        const uint8_t* qh = x[i].qh;
        for (int c = 0; c < kQK_K; c += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; ++l) {
                a[c + l + 0] = static_cast<int8_t>(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                a[c + l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                a[c + l + 64] = static_cast<int8_t>(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                a[c + l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t aux32[8] = {};
        for (int j = 0; j < kQK_K; ++j) aux32[j % 8] += x[i].scales[j / 16] * (y[i].qs[j] * a[j]);
        const float d = half_to_float(x[i].d) * y[i].d;
        for (int l = 0; l < 8; ++l) sums[l] += d * aux32[l];
    }
    float sumf = 0;
    for (float v : sums) sumf += v;
    *s = sumf;
}

void vec_dot_iq4_nl_q8_0(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockIQ4_NL*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    float sumf = 0;
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float d = half_to_float(y[ib].d) * half_to_float(x[ib].d);
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < kQK / 2; ++j) {
            sumi1 += y[ib].qs[j] * kIQ4NLValues[x[ib].qs[j] & 0xf];
            sumi2 += y[ib].qs[j + kQK / 2] * kIQ4NLValues[x[ib].qs[j] >> 4];
        }
        sumf += d * (sumi1 + sumi2);
    }
    *s = sumf;
}

void vec_dot_iq4_xs_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockIQ4_XS*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sumf = 0;
    for (int64_t ibl = 0; ibl < n / kQK_K; ++ibl) {
        const float d4d8 = half_to_float(x[ibl].d) * y[ibl].d;
        const uint8_t* qs = x[ibl].qs;
        const int8_t* q8 = y[ibl].qs;
        for (int ib = 0; ib < kQK_K / 32; ++ib, qs += 16, q8 += 32) {
            const int ls = ((x[ibl].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x[ibl].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d4d8 * (ls - 32);
            int sumi1 = 0, sumi2 = 0;
            for (int j = 0; j < 16; ++j) {
                sumi1 += q8[j + 0] * kIQ4NLValues[qs[j] & 0xf];
                sumi2 += q8[j + 16] * kIQ4NLValues[qs[j] >> 4];
            }
            sumf += dl * (sumi1 + sumi2);
        }
    }
    *s = sumf;
}

void vec_dot_tq1_0_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockTQ1_0*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        const int8_t* q8 = y[i].qs;
        int sum = 0;
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 32; ++m) sum += (tq1_trit(x[i].qs[m], kPow3[k]) - 1) * *q8++;
        }
        for (int k = 0; k < 5; ++k) {
            for (int m = 0; m < 16; ++m) sum += (tq1_trit(x[i].qs[32 + m], kPow3[k]) - 1) * *q8++;
        }
        for (int k = 0; k < 4; ++k) {
            for (int j = 0; j < 4; ++j) sum += (tq1_trit(x[i].qh[j], kPow3[k]) - 1) * *q8++;
        }
        sumf += static_cast<float>(sum) * (half_to_float(x[i].d) * y[i].d);
    }
    *s = sumf;
}

void vec_dot_tq2_0_q8_K(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const BlockTQ2_0*>(vx);
    const auto* y = static_cast<const BlockQ8_K*>(vy);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i) {
        // Unpacked to signed bytes first: GCC 12 with -march=native (AVX512-VNNI) miscompiles
        // the fused form, an unsigned-times-signed dot product with an offset.
        int8_t a[kQK_K];
        for (int j = 0; j < 64; j += 32) {
            for (int l = 0; l < 4; ++l) {
                for (int k = 0; k < 32; ++k) a[j * 4 + l * 32 + k] = static_cast<int8_t>(((x[i].qs[j + k] >> (l * 2)) & 3) - 1);
            }
        }
        int32_t sumi = 0;
        for (int k = 0; k < kQK_K; ++k) sumi += y[i].qs[k] * a[k];
        const float d = y[i].d * half_to_float(x[i].d);
        sumf += static_cast<float>(sumi) * d;
    }
    *s = sumf;
}

// ---- table ------------------------------------------------------------------------------------

void fill_traits_kquants(TypeTraits* table, int n_table) {
    const TypeTraits all[] = {
        {GGMLType::Q2_K, dequantize_row_q2_K, quantize_row_q2_K_ref, vec_dot_q2_K_q8_K, GGMLType::Q8_K,
         quantize_row_q2_K_ref, nullptr},
        {GGMLType::Q3_K, dequantize_row_q3_K, quantize_row_q3_K_ref, vec_dot_q3_K_q8_K, GGMLType::Q8_K,
         quantize_row_q3_K_ref, nullptr},
        {GGMLType::Q4_K, dequantize_row_q4_K, quantize_row_q4_K_ref, vec_dot_q4_K_q8_K, GGMLType::Q8_K,
         quantize_row_q4_K_ref, nullptr},
        {GGMLType::Q5_K, dequantize_row_q5_K, quantize_row_q5_K_ref, vec_dot_q5_K_q8_K, GGMLType::Q8_K,
         quantize_row_q5_K_ref, nullptr},
        {GGMLType::Q6_K, dequantize_row_q6_K, quantize_row_q6_K_ref, vec_dot_q6_K_q8_K, GGMLType::Q8_K,
         quantize_row_q6_K_ref, nullptr},
        // Q8_K is only ever an activation type, as Q8_1 is.
        {GGMLType::Q8_K, dequantize_row_q8_K, quantize_row_q8_K_ref, nullptr, GGMLType::Q8_K, quantize_row_q8_K_ref, nullptr},
        {GGMLType::IQ4_NL, dequantize_row_iq4_nl, quantize_row_iq4_nl_ref, vec_dot_iq4_nl_q8_0, GGMLType::Q8_0,
         quantize_row_iq4_nl_ref, nullptr},
        {GGMLType::IQ4_XS, dequantize_row_iq4_xs, quantize_row_iq4_xs_ref, vec_dot_iq4_xs_q8_K, GGMLType::Q8_K,
         quantize_row_iq4_xs_ref, nullptr},
        {GGMLType::TQ1_0, dequantize_row_tq1_0, quantize_row_tq1_0_ref, vec_dot_tq1_0_q8_K, GGMLType::Q8_K,
         quantize_row_tq1_0_ref, nullptr},
        {GGMLType::TQ2_0, dequantize_row_tq2_0, quantize_row_tq2_0_ref, vec_dot_tq2_0_q8_K, GGMLType::Q8_K,
         quantize_row_tq2_0_ref, nullptr},
    };
    for (const TypeTraits& t : all) {
        const auto id = static_cast<int>(t.type);
        if (id < n_table) table[id] = t;
    }
}

// ---- importance-weighted quantizers (llama-quantize --imatrix) ---------------------------------

// ggml's quantize_row_<type>_impl with quant_weights (ggml-quants.c). The weight of element j
// is the importance qw[j] times sqrt(sigma2 + x[j]^2), sigma2 the row's (or super-block's) mean
// square (twice that for the K-quants), except Q6_K, which uses qw alone.

namespace {

// sum x^2 / n over a row of n.
float mean_square(const float* x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += x[j] * x[j];
    return s / static_cast<float>(n);
}

void q4_0_imatrix(const float* x, BlockQ4_0* y, int64_t n, const float* qw) {
    float weight[kQK];
    int8_t L[kQK];
    const float sigma2 = mean_square(x, n);
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float* xb = x + kQK * ib;
        const float* w = qw + kQK * ib;
        for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
        const float d = make_qx_quants(kQK, 8, xb, L, weight);
        y[ib].d = float_to_half(d);
        for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
    }
}

void q5_0_imatrix(const float* x, BlockQ5_0* y, int64_t n, const float* qw) {
    float weight[kQK];
    int8_t L[kQK];
    const float sigma2 = mean_square(x, n);
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float* xb = x + kQK * ib;
        const float* w = qw + kQK * ib;
        for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
        const float d = make_qx_quants(kQK, 16, xb, L, weight);
        y[ib].d = float_to_half(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; ++j) {
            const auto x0 = static_cast<uint8_t>(L[j]), x1 = static_cast<uint8_t>(L[j + 16]);
            y[ib].qs[j] = static_cast<uint8_t>((x0 & 0x0F) | ((x1 & 0x0F) << 4));
            qh |= ((x0 & 0x10u) >> 4) << j;
            qh |= ((x1 & 0x10u) >> 4) << (j + 16);
        }
        std::memcpy(y[ib].qh, &qh, sizeof qh);
    }
}

// Q4_1 (nmax 15) and Q5_1 (nmax 31): asymmetric, make_qkx3_quants.
template <class Block> void qx_1_imatrix(const float* x, Block* y, int64_t n, const float* qw, int nmax) {
    float weight[kQK];
    uint8_t L[kQK], Laux[kQK];
    const float sigma2 = mean_square(x, n);
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const float* xb = x + kQK * ib;
        const float* w = qw + kQK * ib;
        for (int j = 0; j < kQK; ++j) weight[j] = w[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
        float min;
        const float d = make_qkx3_quants(kQK, nmax, xb, weight, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[ib].d = float_to_half(d);
        y[ib].m = float_to_half(-min);
        if constexpr (sizeof(Block) == sizeof(BlockQ4_1)) {
            for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<uint8_t>(L[j] | (L[j + 16] << 4));
        } else {
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                const uint8_t x0 = L[j], x1 = L[j + 16];
                y[ib].qs[j] = static_cast<uint8_t>((x0 & 0x0F) | ((x1 & 0x0F) << 4));
                qh |= ((x0 & 0x10u) >> 4) << j;
                qh |= ((x1 & 0x10u) >> 4) << (j + 16);
            }
            std::memcpy(y[ib].qh, &qh, sizeof qh);
        }
    }
}

void q2_K_imatrix(const float* x, BlockQ2_K* y, int64_t n, const float* qw) {
    uint8_t L[kQK_K], Laux[16], Ls[kQK_K / 16], Lm[kQK_K / 16];
    float mins[kQK_K / 16], scales[kQK_K / 16], sw[kQK_K / 16], weight[16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        const float sigma2 = mean_square(x, kQK_K);
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float* w = qw + kQK_K * i + 16 * j;
            for (int l = 0; l < 16; ++l) weight[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
            sw[j] = 0;
            for (int l = 0; l < 16; ++l) sw[j] += weight[l];
            scales[j] = make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
        }
        const float dm = make_qp_quants(kQK_K / 16, 15, scales, Ls, sw);
        const float mm = make_qp_quants(kQK_K / 16, 15, mins, Lm, sw);
        y[i].d = float_to_half(dm);
        y[i].dmin = float_to_half(mm);
        for (int j = 0; j < kQK_K / 16; ++j) y[i].scales[j] = static_cast<uint8_t>(Ls[j] | (Lm[j] << 4));
        q2_K_finish(x, y[i], L);
    }
}

void q3_K_imatrix(const float* x, BlockQ3_K* y, int64_t n, const float* qw) {
    int8_t L[kQK_K], Ls[kQK_K / 16];
    float scales[kQK_K / 16], weight[16], sw[kQK_K / 16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float sumx2 = 0;
        for (int j = 0; j < kQK_K; ++j) sumx2 += x[j] * x[j];
        const float sigma2 = 2 * sumx2 / kQK_K;
        for (int j = 0; j < kQK_K / 16; ++j) {
            const float* w = qw + kQK_K * i + 16 * j;
            for (int l = 0; l < 16; ++l) weight[l] = w[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float sumw = 0;
            for (int l = 0; l < 16; ++l) sumw += weight[l];
            sw[j] = sumw;
            scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
        }
        std::memset(y[i].scales, 0, 12);
        const float d_block = make_qx_quants(kQK_K / 16, 32, scales, Ls, sw);
        for (int j = 0; j < kQK_K / 16; ++j) q3_K_pack_scale(j, Ls[j], y[i].scales);
        y[i].d = float_to_half(d_block);
        q3_K_finish(x, y[i], L);
    }
}

// Q4_K (nmax 15) and Q5_K (nmax 31): sub-block scales and mins by make_qkx3_quants, then
// themselves quantized to 6 bits by make_qp_quants under the sub-blocks' total weights.
void k4_imatrix_block(const float* x, const float* qw, int nmax, uint8_t* L, uint16_t* d, uint16_t* dmin,
                      uint8_t* packed) {
    uint8_t Laux[32], Ls[kQK_K / 32], Lm[kQK_K / 32];
    float weights[32], sw[kQK_K / 32], mins[kQK_K / 32], scales[kQK_K / 32];
    float sum_x2 = 0;
    for (int l = 0; l < kQK_K; ++l) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / kQK_K;
    for (int j = 0; j < kQK_K / 32; ++j) {
        const float* w = qw + 32 * j;
        for (int l = 0; l < 32; ++l) weights[l] = w[l] * std::sqrt(sigma2 + x[32 * j + l] * x[32 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 32; ++l) sumw += weights[l];
        sw[j] = sumw;
        scales[j] = make_qkx3_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -0.9f, 0.05f, 36, false);
    }
    const float d_block = make_qp_quants(kQK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(kQK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < kQK_K / 32; ++j)
        pack_scale_min_k4(j, min_of<uint8_t>(63, Ls[j]), min_of<uint8_t>(63, Lm[j]), packed);
    *d = float_to_half(d_block);
    *dmin = float_to_half(m_block);
    for (int j = 0; j < kQK_K / 32; ++j) {
        uint8_t sc, m;
        get_scale_min_k4(j, packed, &sc, &m);
        const float dl = half_to_float(*d) * sc;
        if (dl == 0.0f) continue;
        const float dm = half_to_float(*dmin) * m;
        for (int ii = 0; ii < 32; ++ii) {
            const int l = nearest_int((x[32 * j + ii] + dm) / dl);
            L[32 * j + ii] = static_cast<uint8_t>(max_of(0, min_of(nmax, l)));
        }
    }
}

void q4_K_imatrix(const float* x, BlockQ4_K* y, int64_t n, const float* qw) {
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        std::memset(y[i].scales, 0, sizeof y[i].scales);
        k4_imatrix_block(x, qw + kQK_K * i, 15, L, &y[i].d, &y[i].dmin, y[i].scales);
        q4_K_pack(L, y[i].qs);
    }
}

void q5_K_imatrix(const float* x, BlockQ5_K* y, int64_t n, const float* qw) {
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        std::memset(y[i].scales, 0, sizeof y[i].scales);
        k4_imatrix_block(x, qw + kQK_K * i, 31, L, &y[i].d, &y[i].dmin, y[i].scales);
        q5_K_pack(L, y[i].qh, y[i].qs);
    }
}

} // namespace

bool has_imatrix_quantizer(GGMLType t) {
    switch (t) {
    case GGMLType::Q4_0: case GGMLType::Q4_1: case GGMLType::Q5_0: case GGMLType::Q5_1:
    case GGMLType::Q2_K: case GGMLType::Q3_K: case GGMLType::Q4_K: case GGMLType::Q5_K: case GGMLType::Q6_K:
    case GGMLType::IQ4_NL: case GGMLType::IQ4_XS:
        return true;
    default:
        return false;
    }
}

bool quantize_row_imatrix(GGMLType t, const float* x, void* vy, int64_t n, const float* qw) {
    // Without importances ggml's quantize_<type> is quantize_row_<type>_ref, except IQ4_NL: its
    // quantize_iq4_nl searches 15 scales per block where the _ref searches none.
    if (!qw && t != GGMLType::IQ4_NL) return false;
    switch (t) {
    case GGMLType::Q4_0: q4_0_imatrix(x, static_cast<BlockQ4_0*>(vy), n, qw); return true;
    case GGMLType::Q5_0: q5_0_imatrix(x, static_cast<BlockQ5_0*>(vy), n, qw); return true;
    case GGMLType::Q4_1: qx_1_imatrix(x, static_cast<BlockQ4_1*>(vy), n, qw, 15); return true;
    case GGMLType::Q5_1: qx_1_imatrix(x, static_cast<BlockQ5_1*>(vy), n, qw, 31); return true;
    case GGMLType::Q2_K: q2_K_imatrix(x, static_cast<BlockQ2_K*>(vy), n, qw); return true;
    case GGMLType::Q3_K: q3_K_imatrix(x, static_cast<BlockQ3_K*>(vy), n, qw); return true;
    case GGMLType::Q4_K: q4_K_imatrix(x, static_cast<BlockQ4_K*>(vy), n, qw); return true;
    case GGMLType::Q5_K: q5_K_imatrix(x, static_cast<BlockQ5_K*>(vy), n, qw); return true;
    case GGMLType::Q6_K: quantize_q6_K_rows(x, vy, n, qw); return true;
    case GGMLType::IQ4_NL: {
        auto* y = static_cast<BlockIQ4_NL*>(vy);
        uint8_t L[kQK];
        float scale;
        uint16_t unused_h;
        for (int64_t ib = 0; ib < n / kQK; ++ib)
            quantize_iq4_impl(kQK, x + kQK * ib, &y[ib].d, y[ib].qs, &unused_h, nullptr, &scale, L, 7,
                              qw ? qw + kQK * ib : nullptr);
        return true;
    }
    case GGMLType::IQ4_XS: {
        auto* y = static_cast<BlockIQ4_XS*>(vy);
        uint8_t L[kQK_K];
        float scales[kQK_K / 32];
        for (int64_t ib = 0; ib < n / kQK_K; ++ib)
            quantize_iq4_impl(kQK_K, x + kQK_K * ib, &y[ib].d, y[ib].qs, &y[ib].scales_h, y[ib].scales_l, scales, L,
                              7, qw + kQK_K * ib);
        return true;
    }
    default:
        return false;
    }
}

} // namespace slm::kernels::ref
