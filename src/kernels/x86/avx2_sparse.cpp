// avx2_sparse.cpp - AVX2 kernels of the 2:4 sparse type Q8_0_S24 (kernels/sparse.h), for CPUs
// without AVX512_VBMI2 (and the avx512 table of those).
//
// AVX2 has no byte expansion: each byte of a block's mask (8 elements, 4 of them kept) indexes a
// 256-entry table of vpshufb controls, which place the 4 kept bytes of that group at their
// elements (0x80, i.e. zero, elsewhere). The expanded block is then a dense Q8_0 block and the
// dot product is ggml's AVX2 Q8_0 one (|w| times sign(w) * a, vpmaddubsw, vpmaddwd).
#include "kernels/sparse.h"

#include "kernels/ref/blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace slm::kernels::avx2 {
namespace {

using Block = BlockQ8_0S24;

// lut[m] byte j: the rank of bit j among the set bits of m (its place among the group's kept
// values) if set, else 0x80. A valid mask byte has 4 set bits, so ranks are 0..3; the group's
// first kept value is qs[4 * byte index], added below.
struct Lut {
    alignas(64) uint64_t v[256];
    Lut() {
        for (int m = 0; m < 256; ++m) {
            uint8_t b[8];
            int k = 0;
            for (int j = 0; j < 8; ++j) b[j] = (m >> j & 1) ? static_cast<uint8_t>(k++ & 0x0f) : 0x80;
            std::memcpy(&v[m], b, 8);
        }
    }
};
const Lut kLut;

inline __m256i expand(const Block& b) {
    uint32_t m;
    std::memcpy(&m, b.mask, sizeof m);
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs)));
    const __m256i ctrl = _mm256_set_epi64x(static_cast<long long>(kLut.v[m >> 24]),
                                           static_cast<long long>(kLut.v[(m >> 16) & 0xff]),
                                           static_cast<long long>(kLut.v[(m >> 8) & 0xff]),
                                           static_cast<long long>(kLut.v[m & 0xff]));
    // Group g's kept values start at qs[4g]; a 0x80 stays >= 0x80 (zero) after the add.
    const __m256i base = _mm256_set_epi64x(0x0c0c0c0c0c0c0c0cLL, 0x0808080808080808LL, 0x0404040404040404LL, 0);
    return _mm256_shuffle_epi8(v, _mm256_add_epi8(ctrl, base));
}

inline float hsum8(__m256 v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

void vec_dot(int64_t n, float* s, const void* vx, const void* vy) {
    const auto* x = static_cast<const Block*>(vx);
    const auto* y = static_cast<const BlockQ8_0*>(vy);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / kQK; ++ib) {
        const __m256i w = expand(x[ib]);
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y[ib].qs));
        const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
        const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        const float d = _cvtsh_ss(x[ib].d) * _cvtsh_ss(y[ib].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), p, acc);
    }
    *s = hsum8(acc);
}

constexpr int64_t kExpandCols = 4;

// Few columns: one dot per output. More: the rows expanded once to dense Q8_0 and multiplied by
// this table's dense Q8_0 gemm.
void gemm(int64_t n, const void* vx, size_t bx, int64_t nr, const void* vy, size_t by, int64_t nc, float* s,
          size_t ldc) {
    const auto* x = static_cast<const uint8_t*>(vx);
    const auto* y = static_cast<const uint8_t*>(vy);
    if (nc < kExpandCols) {
        for (int64_t c = 0; c < nc; ++c)
            for (int64_t r = 0; r < nr; ++r) vec_dot(n, s + c * ldc + r, x + r * bx, y + c * by);
        return;
    }
    static const TypeTraits* const dense = traits_for_isa("avx2", GGMLType::Q8_0);
    const size_t dense_bx = row_size(GGMLType::Q8_0, n);
    thread_local std::vector<uint8_t> buf;
    constexpr int64_t kTile = 16;
    for (int64_t r0 = 0; r0 < nr; r0 += kTile) {
        const int64_t rr = std::min(kTile, nr - r0);
        if (buf.size() < static_cast<size_t>(rr) * dense_bx) buf.resize(static_cast<size_t>(rr) * dense_bx);
        for (int64_t r = 0; r < rr; ++r) {
            const auto* src = reinterpret_cast<const Block*>(x + (r0 + r) * bx);
            auto* dst = reinterpret_cast<BlockQ8_0*>(buf.data() + r * dense_bx);
            for (int64_t ib = 0; ib < n / kQK; ++ib) {
                dst[ib].d = src[ib].d;
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst[ib].qs), expand(src[ib]));
            }
        }
        dense->gemm(n, buf.data(), dense_bx, rr, y, by, nc, s + r0, ldc);
    }
}

} // namespace

TypeTraits traits_q8_0_s24() {
    return {GGMLType::Q8_0_S24, ref::dequantize_row_q8_0_s24, ref::quantize_row_q8_0_s24_ref, vec_dot,
            GGMLType::Q8_0, ref::quantize_row_q8_0_s24_ref, gemm};
}

} // namespace slm::kernels::avx2
