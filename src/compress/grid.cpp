#include "compress/grid.h"

#include "core/fp16.h"
#include "kernels/kernels.h"
#include "kernels/ref/blocks.h"
#include "kernels/ref/ref.h"
#include "slm/error.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstddef>

namespace slm::compress {

namespace {

using fp16::half_to_float;
namespace k = slm::kernels;

template <int Lo, int N>
constexpr std::array<int, N> uniform_levels() {
    std::array<int, N> a{};
    for (int i = 0; i < N; ++i) a[i] = Lo + i;
    return a;
}

constexpr auto kL4u = uniform_levels<0, 16>();     // Q4_1, Q4_K
constexpr auto kL4s = uniform_levels<-8, 16>();    // Q4_0
constexpr auto kL5u = uniform_levels<0, 32>();     // Q5_1, Q5_K
constexpr auto kL5s = uniform_levels<-16, 32>();   // Q5_0
constexpr auto kL8 = uniform_levels<-128, 256>();  // Q8_0: the int8 itself
constexpr auto kL2 = uniform_levels<0, 4>();       // Q2_K
constexpr auto kL3 = uniform_levels<-4, 8>();      // Q3_K: low 2 bits + 4 * high bit, minus 4
constexpr auto kL6 = uniform_levels<-32, 64>();    // Q6_K
const std::array<int, 16> kLiq4 = [] {
    std::array<int, 16> a{};
    for (int i = 0; i < 16; ++i) a[i] = k::kIQ4NLValues[i];
    return a;
}();

const GridType kGrids[] = {
    {GGMLType::Q4_0, k::kQK, sizeof(k::BlockQ4_0), 16, kL4s.data()},
    {GGMLType::Q4_1, k::kQK, sizeof(k::BlockQ4_1), 16, kL4u.data()},
    {GGMLType::Q5_0, k::kQK, sizeof(k::BlockQ5_0), 32, kL5s.data()},
    {GGMLType::Q5_1, k::kQK, sizeof(k::BlockQ5_1), 32, kL5u.data()},
    {GGMLType::Q8_0, k::kQK, sizeof(k::BlockQ8_0), 256, kL8.data()},
    {GGMLType::Q2_K, k::kQK_K, sizeof(k::BlockQ2_K), 4, kL2.data()},
    {GGMLType::Q3_K, k::kQK_K, sizeof(k::BlockQ3_K), 8, kL3.data()},
    {GGMLType::Q4_K, k::kQK_K, sizeof(k::BlockQ4_K), 16, kL4u.data()},
    {GGMLType::Q5_K, k::kQK_K, sizeof(k::BlockQ5_K), 32, kL5u.data()},
    {GGMLType::Q6_K, k::kQK_K, sizeof(k::BlockQ6_K), 64, kL6.data()},
    {GGMLType::IQ4_NL, k::kQK, sizeof(k::BlockIQ4_NL), 16, kLiq4.data()},
    {GGMLType::IQ4_XS, k::kQK_K, sizeof(k::BlockIQ4_XS), 16, kLiq4.data()},
};

uint16_t rd16(const uint8_t* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
}

// Sets bits [shift, shift + width) of byte *p to v.
void put_bits(uint8_t* p, int shift, int width, int v) {
    const int mask = ((1 << width) - 1) << shift;
    *p = static_cast<uint8_t>((*p & ~mask) | ((v << shift) & mask));
}

// Low 4 bits of a 32-element block's code j: nibble of qs[j % 16], low for j < 16.
void put_nibble32(uint8_t* qs, int j, int v) { put_bits(qs + (j & 15), j < 16 ? 0 : 4, 4, v); }

} // namespace

const GridType* find_grid_type(GGMLType t) {
    for (const auto& g : kGrids)
        if (g.type == t) return &g;
    return nullptr;
}

const GridType& grid_type(GGMLType t, const char* who) {
    const GridType* g = find_grid_type(t);
    if (!g)
        fail("%s: type %s is not supported (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, "
             "IQ4_XS are)",
             who, type_name(t));
    return *g;
}

void grid_decode(const GridType& g, const uint8_t* blk, ElemGrid* out) {
    switch (g.type) {
    case GGMLType::Q4_0:
    case GGMLType::Q5_0:
    case GGMLType::Q8_0:
    case GGMLType::IQ4_NL: {
        const float d = half_to_float(rd16(blk));
        for (int i = 0; i < g.block; ++i) out[i] = {d, 0.0f};
        break;
    }
    case GGMLType::Q4_1:
    case GGMLType::Q5_1: {
        const float d = half_to_float(rd16(blk)), m = half_to_float(rd16(blk + 2));
        for (int i = 0; i < g.block; ++i) out[i] = {d, m};
        break;
    }
    case GGMLType::Q2_K: {
        const auto* x = reinterpret_cast<const k::BlockQ2_K*>(blk);
        const float d = half_to_float(rd16(blk + offsetof(k::BlockQ2_K, d)));
        const float mn = half_to_float(rd16(blk + offsetof(k::BlockQ2_K, dmin)));
        for (int i = 0; i < g.block; ++i) {
            const uint8_t sc = x->scales[i / 16];
            out[i] = {d * (sc & 0xF), -(mn * (sc >> 4))};
        }
        break;
    }
    case GGMLType::Q3_K: {
        const auto* x = reinterpret_cast<const k::BlockQ3_K*>(blk);
        const float d = half_to_float(rd16(blk + offsetof(k::BlockQ3_K, d)));
        int8_t sc[16];
        k::ref::unpack_q3_K_scales(x->scales, sc);
        for (int i = 0; i < g.block; ++i) out[i] = {d * sc[i / 16], 0.0f};
        break;
    }
    case GGMLType::Q4_K:
    case GGMLType::Q5_K: {
        // Q4_K and Q5_K start alike: d, dmin, 12 scale bytes.
        const float d = half_to_float(rd16(blk)), mn = half_to_float(rd16(blk + 2));
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, m;
            k::ref::get_scale_min_k4(j, blk + 4, &sc, &m);
            const ElemGrid e{d * sc, -(mn * m)};
            for (int i = 0; i < 32; ++i) out[32 * j + i] = e;
        }
        break;
    }
    case GGMLType::Q6_K: {
        const auto* x = reinterpret_cast<const k::BlockQ6_K*>(blk);
        const float d = half_to_float(rd16(blk + offsetof(k::BlockQ6_K, d)));
        for (int i = 0; i < g.block; ++i) out[i] = {d * x->scales[i / 16], 0.0f};
        break;
    }
    case GGMLType::IQ4_XS: {
        const auto* x = reinterpret_cast<const k::BlockIQ4_XS*>(blk);
        const float d = half_to_float(rd16(blk));
        const uint16_t sh = rd16(blk + 2);
        for (int ib = 0; ib < 8; ++ib) {
            const int ls = ((x->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            const ElemGrid e{d * (ls - 32), 0.0f};
            for (int i = 0; i < 32; ++i) out[32 * ib + i] = e;
        }
        break;
    }
    default:
        fail("grid: type %s has no grid", type_name(g.type));
    }
}

int grid_snap(const GridType& g, const ElemGrid& e, float x, float* value) {
    const int* L = g.levels;
    const int n = g.n_codes;
    auto val = [&](int c) { return e.a * static_cast<float>(L[c]) + e.b; };
    int c0 = 0;
    if (e.a != 0.0f && std::isfinite(e.a)) {
        // The level nearest (x - b) / a, then the exact values of it and its neighbours decide.
        const float t = (x - e.b) / e.a;
        c0 = static_cast<int>(std::lower_bound(L, L + n, t) - L);
    }
    int best = -1;
    float best_v = 0.0f, best_err = std::numeric_limits<float>::infinity();
    for (int c = std::max(0, c0 - 1); c <= std::min(n - 1, c0 + 1); ++c) {
        const float v = val(c);
        const float err = std::fabs(v - x);
        if (err < best_err || best < 0) {
            best = c;
            best_v = v;
            best_err = err;
        }
    }
    *value = best_v;
    return best;
}

void grid_set_code(const GridType& g, uint8_t* blk, int i, int c) {
    switch (g.type) {
    case GGMLType::Q4_0:
    case GGMLType::IQ4_NL:
        put_nibble32(blk + 2, i, c);
        break;
    case GGMLType::Q4_1:
        put_nibble32(blk + 4, i, c);
        break;
    case GGMLType::Q5_0:
    case GGMLType::Q5_1: {
        const size_t off = g.type == GGMLType::Q5_0 ? 2 : 4;
        put_bits(blk + off + i / 8, i % 8, 1, c >> 4);  // qh: bit i of a little-endian uint32
        put_nibble32(blk + off + 4, i, c & 15);
        break;
    }
    case GGMLType::Q8_0:
        blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(c - 128));
        break;
    case GGMLType::Q2_K:
    case GGMLType::Q3_K: {
        // Element i = 128 * chunk + 32 * s + l: 2 bits at shift 2s of qs[32 * chunk + l].
        const int chunk = i / 128, s = (i % 128) / 32, l = i % 32;
        uint8_t* qs = blk + (g.type == GGMLType::Q2_K ? offsetof(k::BlockQ2_K, qs) : offsetof(k::BlockQ3_K, qs));
        put_bits(qs + 32 * chunk + l, 2 * s, 2, c & 3);
        if (g.type == GGMLType::Q3_K) put_bits(blk + offsetof(k::BlockQ3_K, hmask) + l, 4 * chunk + s, 1, c >> 2);
        break;
    }
    case GGMLType::Q4_K:
    case GGMLType::Q5_K: {
        // Element i = 64 * chunk + r: low nibble of qs[32 * chunk + r] for r < 32, else the high one.
        const int chunk = i / 64, r = i % 64, l = r % 32;
        uint8_t* qs = blk + (g.type == GGMLType::Q4_K ? offsetof(k::BlockQ4_K, qs) : offsetof(k::BlockQ5_K, qs));
        put_bits(qs + 32 * chunk + l, r < 32 ? 0 : 4, 4, c & 15);
        if (g.type == GGMLType::Q5_K) put_bits(blk + offsetof(k::BlockQ5_K, qh) + l, 2 * chunk + (r < 32 ? 0 : 1), 1, c >> 4);
        break;
    }
    case GGMLType::Q6_K: {
        // Element i = 128 * h + 32 * q + l: ql[64h + l + 32 (q odd)] nibble (q >= 2 high),
        // qh[32h + l] bits 2q..2q+1.
        const int h = i / 128, q = (i % 128) / 32, l = i % 32;
        uint8_t* ql = blk + offsetof(k::BlockQ6_K, ql) + 64 * h + l + (q & 1 ? 32 : 0);
        put_bits(ql, q >= 2 ? 4 : 0, 4, c & 15);
        put_bits(blk + offsetof(k::BlockQ6_K, qh) + 32 * h + l, 2 * q, 2, c >> 4);
        break;
    }
    case GGMLType::IQ4_XS:
        put_nibble32(blk + offsetof(k::BlockIQ4_XS, qs) + 16 * (i / 32), i % 32, c);
        break;
    default:
        fail("grid: type %s has no grid", type_name(g.type));
    }
}

double grid_error(const GridType& g, const uint8_t* blk, const float* x, const float* w) {
    ElemGrid e[k::kQK_K];
    grid_decode(g, blk, e);
    double err = 0.0;
    for (int i = 0; i < g.block; ++i) {
        float v;
        grid_snap(g, e[i], x[i], &v);
        const double d = static_cast<double>(x[i]) - v;
        err += (w ? w[i] : 1.0) * d * d;
    }
    return err;
}

void grid_choose(const GridType& g, const float* x, const float* w, uint8_t* blk) {
    const k::TypeTraits* tt = k::ref_traits(g.type);
    tt->quantize_ref(x, blk, g.block);
    if (!w) return;
    // Factors around 1: below clips the range (as GPTQ's reference's MSE grid search shrinks
    // it), above widens it. Each keeps the quantizer's own structure (sub-block scales, mins).
    static constexpr float kFactors[] = {0.80f, 0.85f, 0.90f, 0.93f, 0.96f, 0.98f, 1.02f, 1.05f};
    double best = grid_error(g, blk, x, w);
    uint8_t cand[sizeof(k::BlockQ6_K) + 64];
    float xs[k::kQK_K];
    for (float f : kFactors) {
        for (int i = 0; i < g.block; ++i) xs[i] = x[i] * f;
        tt->quantize_ref(xs, cand, g.block);
        const double e = grid_error(g, cand, x, w);
        if (e < best) {
            best = e;
            std::memcpy(blk, cand, g.block_bytes);
        }
    }
}

void quantize_dequantize(GGMLType t, const float* x, float* y, int64_t n) {
    if (t == GGMLType::F32) {
        std::copy(x, x + n, y);
        return;
    }
    const k::TypeTraits* tt = k::ref_traits(t);
    if (!tt || !tt->quantize_ref || !tt->to_float) fail("quantize: type %s has no reference quantizer", type_name(t));
    const TypeInfo ti = type_info(t);
    if (n % ti.blck_size != 0)
        fail("quantize: %lld values are not a whole number of %s blocks of %lld", static_cast<long long>(n),
             type_name(t), static_cast<long long>(ti.blck_size));
    std::vector<uint8_t> buf(row_size(t, n));
    tt->quantize_ref(x, buf.data(), n);
    tt->to_float(buf.data(), y, n);
}

} // namespace slm::compress
