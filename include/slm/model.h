// slm/model.h - load a model file and run it.
//
//   auto model = slm::Model::load("models/stories260K/stories260K.gguf");
//   slm::Session s(model, {});                              // KV cache, scratch, threads
//   std::vector<int32_t> ids = model->vocab().tokenize("Once upon a time", true, true);
//   const float* logits = s.eval(ids);                       // n_vocab logits after the last token
//
// A Model is immutable weights (memory-mapped, never copied for types the kernels read) and
// may be shared by several Sessions; a Session owns a KV cache and all scratch memory, sized
// once, so evaluating a token allocates nothing.
#pragma once

#include "slm/gguf.h"
#include "slm/types.h"
#include "slm/vocab.h"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace slm {

enum class RopeType {
    Norm,  // rotates adjacent pairs (x[2i], x[2i+1]): Llama's GGUF layout
    Neox,  // rotates halves (x[i], x[i + n_rot/2]): GPT-NeoX, Qwen, Phi-3, Gemma
};

// Hyper-parameters, read from `<arch>.*` GGUF keys. Typical values are TinyLlama-1.1B's.
struct HParams {
    std::string arch;              // general.architecture, "llama"
    std::string name;              // general.name
    uint32_t n_vocab = 0;          // 32000: rows of token_embd
    uint32_t n_ctx_train = 0;      // 2048: context_length
    uint32_t n_embd = 0;           // 2048: embedding_length
    uint32_t n_layer = 0;          // 22: block_count
    uint32_t n_ff = 0;             // 5632: feed_forward_length
    uint32_t n_head = 0;           // 32: attention.head_count
    uint32_t n_head_kv = 0;        // 4: attention.head_count_kv (GQA; = n_head for MHA, 1 for MQA)
    uint32_t n_embd_head_k = 0;    // 64: attention.key_length, default n_embd / n_head
    uint32_t n_embd_head_v = 0;    // 64: attention.value_length, default n_embd / n_head
    uint32_t n_rot = 0;            // 64: rope.dimension_count, default n_embd_head_k
    float rms_eps = 1e-5f;         // attention.layer_norm_rms_epsilon
    float rope_freq_base = 10000;  // rope.freq_base
    float rope_freq_scale = 1;     // 1 / rope.scaling.factor for linear scaling
    RopeType rope_type = RopeType::Norm;
    bool has_rope_freqs = false;   // rope_freqs.weight present (Llama 3.1+ frequency factors)
    bool uses_rope = true;         // false: attention without positions (Jamba) or no attention
    bool tied_output = false;      // no output.weight: logits use token_embd

    // Per layer (OpenELM's layer-wise scaling; Jamba's Mamba layers have no attention heads and
    // Mamba's no FFN): GGUF stores head_count, head_count_kv and feed_forward_length either as one
    // number or as an array of n_layer. n_head, n_head_kv and n_ff above are the largest value
    // over the layers (what buffers are sized by); a uniform model has them in every layer.
    std::vector<uint32_t> n_head_arr, n_head_kv_arr, n_ff_arr;

    // Sliding-window attention (Gemma 2/3, Phi-3): a query at position p sees keys at positions
    // p - n_swa < j <= p in the layers marked in swa_layers.
    uint32_t n_swa = 0;                // attention.sliding_window; 0 = every layer sees everything
    std::vector<uint8_t> swa_layers;   // per layer: 1 = sliding-window layer (empty = none)
    float rope_freq_base_swa = 0;      // rope.freq_base_swa: RoPE base of the local layers (Gemma 3)
    float attn_softcap = 0;            // attn_logit_softcapping (Gemma 2: 50): s -> c tanh(s / c); 0 = off
    float final_softcap = 0;           // final_logit_softcapping (Gemma 2: 30); 0 = off

    // Mixture of experts (Qwen2-MoE, OLMoE, Phi-3.5-MoE, Jamba).
    uint32_t n_expert = 0;             // expert_count: 60 (Qwen1.5-MoE-A2.7B)
    uint32_t n_expert_used = 0;        // expert_used_count: 4 (top-k)
    uint32_t n_ff_exp = 0;             // expert_feed_forward_length: 1408
    uint32_t n_ff_shexp = 0;           // expert_shared_feed_forward_length: 5632 (0 = no shared expert)

    // State-space layers (Mamba, Jamba).
    uint32_t ssm_d_conv = 0;           // ssm.conv_kernel: 4
    uint32_t ssm_d_inner = 0;          // ssm.inner_size: 2 * n_embd
    uint32_t ssm_d_state = 0;          // ssm.state_size: 16
    uint32_t ssm_dt_rank = 0;          // ssm.time_step_rank: n_embd / 16

    uint32_t n_head_l(uint32_t il) const { return n_head_arr[il]; }
    uint32_t n_head_kv_l(uint32_t il) const { return n_head_kv_arr[il]; }
    uint32_t n_ff_l(uint32_t il) const { return n_ff_arr[il]; }
    bool is_swa(uint32_t il) const { return n_swa > 0 && il < swa_layers.size() && swa_layers[il] != 0; }
    uint32_t n_embd_k_gqa() const { return n_embd_head_k * n_head_kv; }
    uint32_t n_embd_v_gqa() const { return n_embd_head_v * n_head_kv; }
    uint32_t n_embd_k_gqa(uint32_t il) const { return n_embd_head_k * n_head_kv_arr[il]; }
    uint32_t n_embd_v_gqa(uint32_t il) const { return n_embd_head_v * n_head_kv_arr[il]; }
};

struct ModelTensor;   // defined in src/models
class ArchModel;      // one per architecture, in src/models/<arch>.cpp

class Model {
public:
    // Opens a GGUF file (or a Hugging Face model folder, converted as convert_hf_to_gguf does,
    // keeping its float type), reads hyper-parameters, tokenizer and tensors; checks every tensor's
    // shape and type. Throws slm::Error naming the file and the key or tensor at fault.
    // Matrices whose type has a faster row-group layout on this CPU (Q4_0 with AVX-512) are
    // repacked into memory of their own and their pages of the file mapping handed back to the
    // OS, so the weights are held once; SLM_REPACK=0 in the environment keeps them as mapped.
    static std::shared_ptr<const Model> load(const std::string& path);
    struct LoadOptions {
        bool repack = true;  // false: every matrix stays as mapped (SLM_REPACK=0), as weight streaming needs
    };
    static std::shared_ptr<const Model> load(const std::string& path, const LoadOptions& opts);
    ~Model();

    // Locks the weights in RAM (mlock: the mapped tensors and any repacked copies), so the OS
    // never pages them out. Throws slm::Error naming the bytes and the limit if the OS refuses
    // (RLIMIT_MEMLOCK, `ulimit -l`). The lock lasts as long as the model.
    void lock_weights() const;

    const HParams& hparams() const { return hp_; }
    const Vocab& vocab() const { return *vocab_; }
    const GGUFFile& file() const { return file_; }
    const ArchModel& arch() const { return *arch_; }
    size_t weight_bytes() const;  // total bytes of all tensors
    size_t repacked_bytes() const { return repacked_bytes_; }  // of those, held repacked
    // The architecture's own hyper-parameters beyond the common ones (per-layer head counts,
    // sliding window, soft-caps, experts, SSM sizes, multipliers, ...), as (name, value) text
    // pairs for `slm info`.
    std::vector<std::pair<std::string, std::string>> arch_info() const;

private:
    Model() = default;
    void realign_tensors();
    void repack_weights();
    GGUFFile file_;
    HParams hp_;
    std::unique_ptr<Vocab> vocab_;
    std::unique_ptr<ArchModel> arch_;
    std::vector<std::shared_ptr<void>> buffers_;  // repacked matrices, realigned tensors
    size_t repacked_bytes_ = 0;
};

struct SessionOptions {
    uint32_t n_ctx = 0;               // KV cache length; 0 = the training context, at most limits().max_context
    uint32_t n_batch = 512;           // most tokens evaluated in one pass (longer inputs are split)
    GGMLType kv_type = GGMLType::F16; // F16 (llama.cpp's default), F32, Q8_0 or Q4_0 (head sizes of whole blocks of 32)
    int n_threads = 0;                // 0 = one per physical core
    // Weight streaming: each layer's mapped weights are read ahead (madvise WILLNEED) while the
    // layer before computes and dropped from the process (MADV_DONTNEED) once used, so resident
    // memory holds about two layers instead of the model. Repacked matrices (Model::LoadOptions)
    // live in memory of their own and are not streamed. Same results, slower.
    bool low_memory = false;
    // Sliding-window layers (Gemma 2/3) hold only their window: n_swa + n_batch positions (a
    // ring), not n_ctx. true keeps the whole context in them too (llama.cpp's --swa-full): more
    // memory, but truncate() can then go back anywhere. Same results either way.
    bool swa_full = false;
};

class ThreadPool;
struct SessionState;

// What a Session's matrix products saw, for calibration (importance matrices, GPTQ/SparseGPT
// Hessians, AWQ and Wanda statistics): one event per input matrix, after the products. Several
// weights read the same input at once (Q/K/V, FFN gate/up); an expert of a stacked MoE tensor is
// named "<tensor>[e]". Called on the thread that runs eval(), never concurrently.
struct MatmulEvent {
    static constexpr int kMaxWeights = 8;
    const float* x = nullptr;       // n_tokens rows of n_in floats
    int64_t n_in = 0;
    uint32_t n_tokens = 0;
    int n_weights = 0;
    const std::string* names[kMaxWeights] = {};  // GGUF tensor names
    const float* y[kMaxWeights] = {};            // n_tokens rows of n_out[i] floats
    int64_t n_out[kMaxWeights] = {};
};
class MatmulObserver {
public:
    virtual ~MatmulObserver() = default;
    virtual void on_matmul(const MatmulEvent& e) = 0;
};

class Session {
public:
    Session(std::shared_ptr<const Model> model, const SessionOptions& opts);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Appends `tokens` at positions n_past().. and runs them through the model in batches of
    // n_batch. Returns the logits after the last token (n_vocab floats), valid until the next
    // call. With all_logits, logits() then holds one row per token of this call.
    // Throws slm::Error if the context would overflow or a token id is out of range.
    const float* eval(std::span<const int32_t> tokens, bool all_logits = false);
    std::span<const float> logits() const;  // rows x n_vocab, from the last eval

    uint32_t n_past() const;
    uint32_t n_ctx() const;
    int n_threads() const;
    void reset();                       // empties the KV cache (and any recurrent state)
    // Forgets positions >= n_past. A model with a recurrent state (Mamba, Jamba) cannot forget
    // part of what it has seen: for it, only n_past 0 (a reset) or the current length is allowed.
    // With sliding-window rings (SessionOptions::swa_full false) the n_swa - 1 positions before
    // n_past must still be in the rings: about the last n_batch positions can be dropped, not
    // more (can_truncate says; a caller that wants to go further resets and evaluates again).
    void truncate(uint32_t n_past);
    // Whether truncate(n_past) is possible now: n_past 0 or the current length always; other
    // lengths unless the model keeps a recurrent state or the rings have lost the window before.
    bool can_truncate(uint32_t n_past) const;
    bool recurrent() const;             // the model keeps a recurrent state (see truncate)
    // Bytes of KV cache (and recurrent state) the session holds.
    size_t cache_bytes() const;
    // Context shift (StreamingLLM eviction, llama.cpp's context shift): forgets positions
    // [n_keep, n_keep + n_discard) - the first n_keep stay as attention sinks - and moves the
    // later ones down, re-rotating their cached keys (RoPE) to their new positions, so that
    // generation can go on at constant memory. n_past() drops by n_discard. The cached values of
    // the kept positions are those computed with the forgotten ones in context (as StreamingLLM).
    // Throws slm::Error for a model with a recurrent state or n_keep + n_discard > n_past().
    void context_shift(uint32_t n_keep, uint32_t n_discard);

    // Several continuations of the cached prefix [0, n_prefix) in one batched pass, each computed
    // as if it alone followed the prefix: branch b's tokens take positions n_prefix.. and attend to
    // the prefix and to their own earlier tokens only. Scoring the choices of a multiple-choice
    // question this way reads the weights once for all of them. Drops positions >= n_prefix
    // first and again afterwards (n_past() is n_prefix on return); logits() then holds one row per
    // token of every branch, branch after branch. Throws slm::Error if the model cannot
    // (supports_branches() false) or the branches overflow the context (they need n_prefix plus
    // all their tokens).
    void eval_branches(uint32_t n_prefix, std::span<const std::vector<int32_t>> branches);
    // Attention-only models without a sliding window: not Mamba/Jamba (a recurrent state is one
    // sequence) nor Gemma 2/3 (their windows count positions, which branches do not keep contiguous).
    bool supports_branches() const;
    const Model& model() const { return *model_; }
    // Calls o->on_matmul for every matrix product of later evals (nullptr: none). The observer
    // must outlive its use; it costs nothing when unset.
    void set_matmul_observer(MatmulObserver* o);
    // The thread pool evals run on (calibration statistics reuse it between evals).
    ThreadPool& thread_pool();

private:
    std::shared_ptr<const Model> model_;
    std::unique_ptr<SessionState> st_;
    std::vector<float> all_logits_;  // rows of an all_logits eval
    size_t n_rows_ = 0;
    bool last_all_ = false;
    bool recurrent_ = false;
};

} // namespace slm
