#include "kernels/matmul.h"

#include "core/thread_pool.h"
#include "kernels/repack.h"
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
    const MatMulOut out{W, wtype, n_out, Y};
    mul_mat_multi(&out, 1, n_in, X, n_tokens, pool, scratch);
}

void mul_mat_multi(const MatMulOut* outs, int n_outs, int64_t n_in, const float* X, int64_t n_tokens,
                   ThreadPool* pool, std::vector<uint8_t>& scratch) {
    constexpr int kMaxOuts = 8;
    if (n_outs < 1 || n_outs > kMaxOuts) fail("mul_mat: %d outputs (1 to %d)", n_outs, kMaxOuts);
    struct Job {
        const TypeTraits* wt;
        const RepackTraits* rp;  // non-null: W is repacked, rows go through rp->gemm
        const uint8_t* w;
        size_t w_row, a_row;
        int act;             // index into acts
        int64_t n_out;
        float* Y;
        int64_t block0;      // first global row block of this output
    };
    Job jobs[kMaxOuts];
    GGMLType act_types[kMaxOuts];
    const TypeTraits* act_traits[kMaxOuts];
    int n_acts = 0;
    int64_t n_blocks = 0;
    for (int i = 0; i < n_outs; ++i) {
        const MatMulOut& o = outs[i];
        const TypeTraits& wt = require(o.type, n_in, "mul_mat");
        if (wt.vec_dot == nullptr) fail("mul_mat: weight type %s has no dot product kernel", type_name(o.type));
        int a = 0;
        while (a < n_acts && act_types[a] != wt.vec_dot_type) ++a;
        if (a == n_acts) {
            act_traits[a] = &require(wt.vec_dot_type, n_in, "mul_mat");
            act_types[n_acts++] = wt.vec_dot_type;
        }
        const RepackTraits* rp = nullptr;
        if (o.repacked) {
            rp = repack_traits(o.type);
            if (rp == nullptr || o.n_out % kRepackRows != 0)
                fail("mul_mat: a repacked %s matrix of %lld rows has no kernel here", type_name(o.type),
                     static_cast<long long>(o.n_out));
        }
        jobs[i] = {&wt, rp, static_cast<const uint8_t*>(o.W), row_size(o.type, n_in), row_size(wt.vec_dot_type, n_in),
                   a, std::max<int64_t>(o.n_out, 0), o.Y, n_blocks};
        n_blocks += (jobs[i].n_out + kRowBlock - 1) / kRowBlock;
    }
    if (n_blocks == 0 || n_tokens <= 0) return;

    // Activations converted once per vec_dot_type (F32 weights read X directly).
    const uint8_t* acts[kMaxOuts];
    size_t need = 0, offsets[kMaxOuts];
    for (int a = 0; a < n_acts; ++a) {
        offsets[a] = need;
        if (act_types[a] != GGMLType::F32) need += row_size(act_types[a], n_in) * static_cast<size_t>(n_tokens);
    }
    if (scratch.size() < need) scratch.resize(need);
    for (int a = 0; a < n_acts; ++a) {
        if (act_types[a] == GGMLType::F32) {
            acts[a] = reinterpret_cast<const uint8_t*>(X);
            continue;
        }
        uint8_t* dst = scratch.data() + offsets[a];
        const size_t a_row = row_size(act_types[a], n_in);
        const TypeTraits* at = act_traits[a];
        auto convert = [&](int64_t t0, int64_t t1, int) {
            for (int64_t t = t0; t < t1; ++t) at->from_float(X + t * n_in, dst + static_cast<size_t>(t) * a_row, n_in);
        };
        if (pool != nullptr && n_tokens > 1) {
            pool->parallel_for(n_tokens, convert);
        } else {
            convert(0, n_tokens, 0);
        }
        acts[a] = dst;
    }

    // Row block b of the concatenated outputs -> (output, rows); a chunk may span outputs.
    auto compute = [&](int64_t b0, int64_t b1, int) {
        int j = 0;
        while (j + 1 < n_outs && jobs[j + 1].block0 <= b0) ++j;
        for (; j < n_outs && jobs[j].block0 < b1; ++j) {
            const Job& jb = jobs[j];
            const int64_t jb_blocks = (jb.n_out + kRowBlock - 1) / kRowBlock;
            const int64_t lo = std::max<int64_t>(b0, jb.block0) - jb.block0;
            const int64_t hi = std::min<int64_t>(b1, jb.block0 + jb_blocks) - jb.block0;
            if (lo >= hi) continue;
            const int64_t r_begin = lo * kRowBlock, r_end = std::min(jb.n_out, hi * kRowBlock);
            const uint8_t* act = acts[jb.act];
            if (jb.rp != nullptr) {
                // One call per token tile for the whole chunk: the kernel prepares the tile's
                // activations once for all of its row groups.
                for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
                    const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
                    jb.rp->gemm(n_in, jb.w + static_cast<size_t>(r_begin) * jb.w_row, jb.w_row, r_end - r_begin,
                                act + static_cast<size_t>(t0) * jb.a_row, jb.a_row, t1 - t0, jb.Y + t0 * jb.n_out + r_begin,
                                static_cast<size_t>(jb.n_out));
                }
                continue;
            }
            for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokenBlock) {
                const int64_t t1 = std::min(n_tokens, t0 + kTokenBlock);
                const uint8_t* a0 = act + static_cast<size_t>(t0) * jb.a_row;
                for (int64_t rb = r_begin; rb < r_end; rb += kRowBlock) {
                    const int64_t re = std::min(r_end, rb + kRowBlock);
                    if (jb.wt->gemm != nullptr) {
                        jb.wt->gemm(n_in, jb.w + static_cast<size_t>(rb) * jb.w_row, jb.w_row, re - rb, a0, jb.a_row,
                                    t1 - t0, jb.Y + t0 * jb.n_out + rb, static_cast<size_t>(jb.n_out));
                        continue;
                    }
                    for (int64_t t = t0; t < t1; ++t) {
                        const uint8_t* a = act + static_cast<size_t>(t) * jb.a_row;
                        float* y = jb.Y + t * jb.n_out;
                        for (int64_t r = rb; r < re; ++r)
                            jb.wt->vec_dot(n_in, y + r, jb.w + static_cast<size_t>(r) * jb.w_row, a);
                    }
                }
            }
        }
    };
    if (pool != nullptr) {
        pool->parallel_for(n_blocks, compute);
    } else {
        compute(0, n_blocks, 0);
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
