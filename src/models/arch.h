// arch.h - what every architecture file provides, and the state a forward pass works in.
#pragma once

#include "slm/gguf.h"
#include "slm/model.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace slm {

class ThreadPool;

// A weight matrix or vector as it lies in the file: ne[0] is the row length (input features).
struct ModelTensor {
    std::string name;
    const void* data = nullptr;
    GGMLType type = GGMLType::F32;
    int64_t ne[4] = {1, 1, 1, 1};
    size_t nbytes = 0;
    // data is in the row-group layout of kernels/repack.h (set by the model loader; get_rows
    // unpacks a row of it, matmul reads it as it is).
    bool repacked = false;

    bool present() const { return data != nullptr; }
    int64_t n_in() const { return ne[0]; }
    int64_t n_out() const { return ne[1]; }
    const float* f32() const { return static_cast<const float*>(data); }
};

// Told by the forward pass as it starts each layer (weight streaming, runtime/weight_stream.h:
// read the next layer's weights ahead, release the previous one's).
class LayerHook {
public:
    virtual ~LayerHook() = default;
    virtual void on_layer(uint32_t il) = 0;
};

// Everything a Session owns: KV cache, scratch activations, threads. Sized once.
struct SessionState {
    uint32_t n_ctx = 0;
    uint32_t n_batch = 0;
    uint32_t n_past = 0;
    GGMLType kv_type = GGMLType::F16;
    std::unique_ptr<ThreadPool> pool;

    // KV cache: per layer, n_kv_rows rows of n_embd_k_gqa(il) (K) / n_embd_v_gqa(il) (V) elements
    // of kv_type (fewer for a ring, below); empty for a layer without attention.
    std::vector<std::vector<uint8_t>> k_cache, v_cache;
    // Sliding-window layers kept as rings (SessionOptions::swa_full false): such a layer holds
    // swa_ring = n_swa + n_batch rows per sequence instead of n_ctx (a chunk of n_batch queries
    // still finds the n_swa keys before its first one), position p of sequence s in row
    // s * swa_ring + p % swa_ring. kv_ring[il] is swa_ring for those layers, 0 for the others.
    // Everything else (tok_row, tok_lo, n_past) keeps counting logical rows, s * n_ctx + p;
    // cache_row() maps one to where it lies in layer il's cache.
    std::vector<uint32_t> kv_ring;
    uint32_t swa_ring = 0;
    // Per sequence: the first position whose K/V the rings still hold (later writes overwrote
    // the ones before, or a context shift dropped them). Attention on a ring layer never reads
    // below it; Session::truncate refuses to go back past the window it still has.
    std::vector<uint32_t> swa_lo;
    // Whether the rings still hold the window (n_swa positions) of a query at position n of
    // sequence seq: what truncating the sequence to n needs.
    bool swa_keeps(uint32_t seq, uint32_t n, uint32_t n_swa) const {
        if (swa_ring == 0) return true;
        return (n + 1 > n_swa ? n + 1 - n_swa : 0) >= swa_lo[seq];
    }
    size_t cache_row(uint32_t il, uint32_t row) const {
        const uint32_t r = kv_ring.empty() ? 0 : kv_ring[il];
        if (r == 0) return row;
        return size_t(row / n_ctx) * r + (row % n_ctx) % r;
    }
    // Recurrent state (Mamba's conv and SSM states): per layer, ArchModel::recurrent_state_floats(il)
    // floats, zero at position 0, carried from one forward call to the next.
    std::vector<std::vector<float>> r_state;

    // Activations for up to n_batch tokens, row-major [token][feature].
    std::vector<float> x, xb, q, k, v, att, hb, hb2, logits;
    std::vector<float> extra;           // n_batch x ArchModel::extra_floats_per_token()
    std::vector<float> scores;          // n_threads x n_ctx attention scores
    // F16-cache attention, per thread (sized by the first attention call): the F16 Q rows and
    // F16 V accumulators of one work item's queries, and their softmax maxima and sums plus
    // the score factors of one K/V tile.
    std::vector<uint16_t> attn_u16;
    std::vector<float> attn_f32;
    std::vector<uint8_t> mm_scratch;    // activations converted to a weight's vec_dot_type
    std::vector<float> rope_cache;      // n_batch x n_rot cos/sin pairs
    // Mixture-of-experts layers (models/moe.h): router probabilities, expert choices and the
    // chosen experts' activations, sized for n_batch tokens by the first MoE layer run.
    std::vector<float> moe_f32;
    std::vector<int32_t> moe_i32;
    uint32_t n_logit_rows = 0;

    // Branches (Session::eval_branches): several continuations of one cached prefix in a single
    // forward call. When tok_pos is set, token t of the call has RoPE position tok_pos[t] and
    // attends to the prefix slots [0, branch_prefix) and to its own branch's slots
    // [tok_lo[t], n_past + t] only. Null = an ordinary causal batch (positions n_past + t).
    const uint32_t* tok_pos = nullptr;
    const uint32_t* tok_lo = nullptr;
    uint32_t branch_prefix = 0;
    // Independent sequences side by side in one cache (BatchSession: slot s owns rows
    // [s * n_ctx, (s + 1) * n_ctx)). When tok_row is set (with tok_pos and tok_lo), token t writes
    // its K/V to row tok_row[t] instead of n_past + t and attends to rows [tok_lo[t], tok_row[t]]
    // (within its sliding window, counted in rows: a slot's rows are its positions shifted).
    const uint32_t* tok_row = nullptr;
    // Rows of the cache: n_ctx for a Session, n_slots x n_ctx for a BatchSession.
    uint32_t n_kv_rows = 0;
    // When set, the forward pass computes logits only for these tokens of the call (increasing
    // indices), one row each in this order (blocks::first_logit_row), whatever all_logits says.
    const uint32_t* logit_sel = nullptr;
    uint32_t n_logit_sel = 0;

    MatmulObserver* observer = nullptr;  // Session::set_matmul_observer
    std::unique_ptr<LayerHook> layer_hook;  // SessionOptions::low_memory; null = none
};

// Called by every architecture's forward pass at the start of layer il.
inline void layer_begin(SessionState& st, uint32_t il) {
    if (st.layer_hook) st.layer_hook->on_layer(il);
}

// The state of a Session (n_seq 1) or of a BatchSession's n_seq slots of opts.n_ctx positions
// each: caches, activations for opts.n_batch tokens, threads. Throws slm::Error for a context,
// KV type or thread count it cannot take.
std::unique_ptr<SessionState> make_session_state(const Model& model, const SessionOptions& opts, uint32_t n_seq);

// One architecture: its tensors and its forward pass (src/models/<arch>.cpp).
class ArchModel {
public:
    virtual ~ArchModel() = default;
    // Runs n_tokens tokens at positions st.n_past.., appends their K/V to the cache and writes
    // logits: one row per token if all_logits, else only the last token's row.
    virtual void forward(SessionState& st, const int32_t* tokens, uint32_t n_tokens, bool all_logits) const = 0;
    // Activations the forward pass needs per token beyond the common buffers (0 by default).
    virtual size_t extra_floats_per_token() const { return 0; }
    // Floats of recurrent state layer il carries between tokens (0: none, the default). A model
    // with any cannot forget the last positions: Session::truncate then only resets to 0.
    virtual size_t recurrent_state_floats(uint32_t il) const { return 0; }
    // The RoPE frequencies of layer il's cached keys, for the context shift (which re-rotates
    // them by a position delta): by default hp.rope_freq_base / rope_freq_scale, no per-pair
    // factors. Architectures with other frequencies (per-layer bases, factor tensors) or keys
    // without RoPE override it.
    struct LayerRope {
        bool rotated = true;                  // false: the keys carry no position (nothing to do)
        float base = 10000.0f, scale = 1.0f;  // rope.freq_base, 1 / linear scaling factor
        const float* freq_factors = nullptr;  // n_rot / 2 divisors of the angles, or null
    };
    virtual LayerRope layer_rope(const HParams& hp, uint32_t il, const SessionState& st) const {
        (void)il, (void)st;
        return {true, hp.rope_freq_base, hp.rope_freq_scale, nullptr};
    }
    // Architecture-specific hyper-parameters for `slm info`, as (name, value) pairs.
    virtual std::vector<std::pair<std::string, std::string>> info() const { return {}; }
    // Every tensor the architecture uses, for `slm info` and weight accounting.
    virtual std::vector<const ModelTensor*> tensors() const = 0;
    // The matrices of the matmuls (and a token embedding table that is also the tied output
    // matrix): what the loader may repack for faster kernels (kernels/repack.h).
    virtual std::vector<ModelTensor*> matmul_weights() { return {}; }
};

// The registry: one switch from general.architecture to an architecture file. Fills the
// architecture-specific parts of `hp` (rope type, ...). Throws for an unknown architecture.
std::unique_ptr<ArchModel> make_arch_model(const GGUFFile& f, HParams& hp);
// The general.architecture names make_arch_model knows, in table order.
std::vector<std::string> supported_architectures();

// Reads the hyper-parameters every transformer shares from `<arch>.*` keys, checking ranges.
HParams read_common_hparams(const GGUFFile& f);

// Throws unless every layer has the same non-zero head, KV-head and FFN counts (architectures
// whose forward pass has no per-layer shapes).
void require_uniform_layers(const GGUFFile& f, const HParams& hp);

// Block-wise weight sharing (MobileLLM): the stored block each layer computes with, from the
// optional `<arch>.block_source` array (identity when absent), validated.
std::vector<uint32_t> read_block_source(const GGUFFile& f, const HParams& hp);

// Fills hp.swa_layers from `<arch>.attention.sliding_window_pattern` as llama.cpp's
// set_swa_pattern: a period p marks layer il local (sliding window) when il % p < p - 1 (p - 1
// local layers, then a global one); an array gives one flag per layer. `def_period` when the
// key is absent (Gemma 2: 2, Gemma 3: 6). Throws for a period of 0 or a malformed array.
void read_swa_pattern(const GGUFFile& f, HParams& hp, uint32_t def_period);

// Throws unless t (a norm weight or bias) is F32, naming the file and the tensor.
void require_f32(const GGUFFile& f, const ModelTensor& t);

// Looks up a tensor, checks its type has kernels and its shape is `shape` (ggml order).
// Returns an empty tensor if it is absent and not required.
ModelTensor get_tensor(const GGUFFile& f, const std::string& name, std::vector<int64_t> shape, bool required = true);

} // namespace slm
