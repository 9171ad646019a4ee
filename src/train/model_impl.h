// model_impl.h - TrainModel's state, shared by model.cpp (forward, backward, files) and lora.cpp.
#pragma once

#include "core/thread_pool.h"
#include "slm/gguf.h"
#include "slm/train.h"

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace slm {

// The seven matrices of a block, in the order of the names below.
enum Mat { kQ, kK, kV, kO, kGate, kUp, kDown, kNumMats };
extern const char* const kMatNames[kNumMats];  // "attn_q", ..., "ffn_down"

struct TrainModel::Impl {
    TrainArch arch;
    std::vector<TrainParam> params;
    struct Store {
        std::vector<float> w, g;
    };
    std::deque<Store> store;  // params[i]'s values (a deque: pointers stay valid as it grows)

    // Parameter indices.
    int tok_embd = -1, output = -1, output_norm = -1;  // output -1: tied
    struct Block {
        int attn_norm = -1, ffn_norm = -1;
        int mat[kNumMats] = {-1, -1, -1, -1, -1, -1, -1};
        int lora_a[kNumMats] = {-1, -1, -1, -1, -1, -1, -1};
        int lora_b[kNumMats] = {-1, -1, -1, -1, -1, -1, -1};
    };
    std::vector<Block> blocks;  // the stored blocks
    uint32_t lora_rank = 0;     // 0: no adapters
    float lora_alpha = 0;
    float lora_scale() const { return lora_rank ? lora_alpha / float(lora_rank) : 0.0f; }

    // tokenizer.* keys of a loaded model (used by save() when arch.tokenizer is empty).
    std::vector<std::pair<std::string, GGUFValue>> tok_kv;

    int n_threads = 0;
    std::unique_ptr<ThreadPool> pool;
    ThreadPool* get_pool();

    // ---- activations of the last forward (sized for the largest B T seen; never shrunk) ----
    int B = 0, T = 0;
    std::vector<int32_t> tokens;
    struct LayerActs {
        std::vector<float> xn1, rstd1, q, k, v, att, lse, x2, xn2, rstd2, g, u, h;
        std::vector<float> lora_t[kNumMats];  // scale * x Aᵀ of each adapter
    };
    std::vector<std::vector<float>> xs;  // residual stream: n_layer + 1 entries
    std::vector<LayerActs> acts;
    std::vector<float> xf, rstdf, logits, loss_rows;
    // backward scratch
    std::vector<float> dx, dtmp, dxn, datt, dq, dk, dv, dg, du, dh, dt;
    std::vector<float> attn_scratch;
    std::vector<float> rope;  // cos/sin table for rope_T positions
    int rope_T = 0;
    bool have_forward = false;

    int add_param(const std::string& name, std::vector<int64_t> ne, bool trainable = true);
    TrainParam& P(int i) { return params[size_t(i)]; }
    const TrainParam& P(int i) const { return params[size_t(i)]; }
    void set_trainable(int i, bool on);
    void build_params();               // registers the base tensors for arch (values zero)
    void init_random(uint64_t seed);
    void prepare(int B, int T);        // sizes activations and scratch
    void forward(const int32_t* tok, int B, int T);
    void backward(const float* dlogits);
    // y (rows x n_out) = (or +=) x Wᵀ (+ the adapter's scale x Aᵀ Bᵀ) for block ib's matrix m.
    void linear_forward(uint32_t ib, Mat m, const float* x, float* y, std::vector<float>& t, int64_t rows,
                        bool accumulate);
    void linear_backward(uint32_t ib, Mat m, const float* dy, const float* x, float* dx, const std::vector<float>& t,
                         int64_t rows, bool accumulate);
    int64_t mat_in(uint32_t ib, Mat m) const { return P(blocks[ib].mat[m]).ne[0]; }
    int64_t mat_out(uint32_t ib, Mat m) const { return P(blocks[ib].mat[m]).ne[1]; }
    // LoRA (lora.cpp)
    void add_adapter(uint32_t ib, Mat m, uint32_t rank);
};

// 64-bit mixing (splitmix64's finalizer): seeds per parameter, independent of thread count.
uint64_t mix64(uint64_t x);
// FNV-1a of a parameter name (seeds per parameter, the same on every platform).
uint64_t hash_name(const std::string& s);

} // namespace slm
