#include "kernels/matmul.h"

#include "core/thread_pool.h"
#include "slm/error.h"

#include <algorithm>
#include <cstring>

namespace slm::kernels {
namespace {

// Tiles of the output: a few rows of W are reused across a tile of tokens while they are in
// L1/L2, and a tile of converted activation rows (32 x ~4 KB) stays in L2 across row blocks.
constexpr int64_t kRowBlock = 16;
constexpr int64_t kTokenBlock = 32;

const TypeTraits& require(GGMLType type, int64_t n, const char* op) {
    const TypeTraits* tt = traits(type);
    if (tt == nullptr) fail("%s: type %s has no CPU kernels", op, type_name(type));
    const int64_t blck = type_info(type).blck_size;
    if (n < 0 || n % blck != 0) {
        fail("%s: %lld elements of %s is not a multiple of its block size %lld", op, static_cast<long long>(n),
             type_name(type), static_cast<long long>(blck));
    }
    return *tt;
}

} // namespace

void mul_mat(const void* W, GGMLType wtype, int64_t n_in, int64_t n_out, const float* X, int64_t n_tokens,
             float* Y, ThreadPool* pool, std::vector<uint8_t>& scratch) {
    const TypeTraits& wt = require(wtype, n_in, "mul_mat");
    if (wt.vec_dot == nullptr) fail("mul_mat: weight type %s has no dot product kernel", type_name(wtype));
    const TypeTraits& at = require(wt.vec_dot_type, n_in, "mul_mat");
    if (n_out <= 0 || n_tokens <= 0) return;

    const size_t w_row = row_size(wtype, n_in);
    const size_t a_row = row_size(wt.vec_dot_type, n_in);
    const auto* w = static_cast<const uint8_t*>(W);

    const uint8_t* act = reinterpret_cast<const uint8_t*>(X);
    if (wt.vec_dot_type != GGMLType::F32) {
        const size_t need = a_row * static_cast<size_t>(n_tokens);
        if (scratch.size() < need) scratch.resize(need);
        uint8_t* dst = scratch.data();
        auto convert = [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) at.from_float(X + t * n_in, dst + static_cast<size_t>(t) * a_row, n_in);
        };
        if (pool != nullptr && n_tokens > 1) {
            pool->parallel_for(n_tokens, convert);
        } else {
            convert(0, n_tokens, 0);
        }
        act = dst;
    }

    const int64_t n_row_blocks = (n_out + kRowBlock - 1) / kRowBlock;
    auto compute = [&](int64_t b0, int64_t b1, int) {
        const int64_t r_begin = b0 * kRowBlock;
        const int64_t r_end = std::min(n_out, b1 * kRowBlock);
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
            const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
            for (int64_t rb = r_begin; rb < r_end; rb += kRowBlock) {
                const int64_t re = std::min(r_end, rb + kRowBlock);
                for (int64_t t = t0; t < t1; ++t) {
                    const uint8_t* a = act + static_cast<size_t>(t) * a_row;
                    float* y = Y + t * n_out;
                    for (int64_t r = rb; r < re; ++r) wt.vec_dot(n_in, y + r, w + static_cast<size_t>(r) * w_row, a);
                }
            }
        }
    };
    if (pool != nullptr) {
        pool->parallel_for(n_row_blocks, compute);
    } else {
        compute(0, n_row_blocks, 0);
    }
}

void dequantize_row(const void* src, GGMLType type, int64_t n, float* dst) {
    require(type, n, "dequantize_row").to_float(src, dst, n);
}

void quantize_row_ref(const float* src, GGMLType type, int64_t n, void* dst) {
    const TypeTraits& tt = require(type, n, "quantize_row_ref");
    if (tt.quantize_ref == nullptr) fail("quantize_row_ref: type %s cannot be quantized to", type_name(type));
    tt.quantize_ref(src, dst, n);
}

} // namespace slm::kernels
