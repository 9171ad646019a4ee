// slm/train.h - train Llama-family models on the CPU: the model with its backward pass, and the
// training loop around it.
//
//   slm::TrainArch a = slm::train_preset("deep-thin-8m");
//   a.tokenizer = "tok.gguf";                              // tokenizer.* keys (and n_vocab) from it
//   slm::TrainModel m(a, /*seed=*/1);
//   float loss = m.forward_backward(tokens, targets, B, T); // mean cross-entropy; grads accumulated
//   m.save("model.gguf");                                  // llama GGUF: slm and llama.cpp load it
//
//   slm::TrainOptions o;  o.data = "stories.txt";  o.out = "model.gguf";  o.steps = 2000;
//   slm::TrainResult r = slm::train(m, o);                  // AdamW, schedule, checkpoints, SVG
//
// The model is what llama.cpp's "llama" architecture computes (token embedding, RMSNorm,
// RoPE on adjacent pairs, causal attention with grouped K/V heads, SwiGLU FFN, final norm,
// tied or untied output), with the survey's small-model choices: GQA/MQA, tied embeddings,
// MobileLLM block-wise sharing (each stored block computed by layer_share consecutive layers,
// written as <arch>.block_source), and OpenELM layer-wise scaling (per-layer head counts and FFN
// widths, written as per-layer GGUF arrays). Parameters are F32; every operation's backward sits
// beside its forward in src/train/ops.cpp and is checked against finite differences.
#pragma once

#include "slm/types.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace slm {

// ---- architecture ---------------------------------------------------------------------------

struct TrainArch {
    std::string name = "custom";  // general.name
    uint32_t n_vocab = 0;         // 0 = the tokenizer's token count
    uint32_t n_ctx = 256;         // context_length: the longest sequence trained / run
    uint32_t n_embd = 256;        // width
    uint32_t n_layer = 8;         // layers computed (with sharing: n_layer / layer_share stored blocks)
    uint32_t n_head = 8;          // query heads (uniform models; OpenELM scaling overrides per layer)
    uint32_t n_head_kv = 0;       // K/V heads: 0 = n_head (MHA); 1 = MQA; must divide n_head
    uint32_t head_dim = 0;        // 0 = n_embd / n_head
    uint32_t n_ff = 0;            // SwiGLU hidden width; 0 = 8/3 n_embd rounded up to a multiple of 32
    uint32_t layer_share = 1;     // MobileLLM: each stored block repeated this many times (divides n_layer)
    // OpenELM layer-wise scaling: layer i of N gets t = i / (N - 1) and
    //   heads_i = round((alpha_min + t (alpha_max - alpha_min)) n_embd / head_dim) (>= 1, a multiple of
    //   the GQA group n_head / n_head_kv), ffn_i = round((beta_min + t (beta_max - beta_min)) n_embd)
    //   rounded to a multiple of 32. Off when alpha_max == 0. OpenELM-270M: alpha 0.5..1.0, beta 0.5..4.0.
    float elm_alpha_min = 0, elm_alpha_max = 0;
    float elm_beta_min = 0, elm_beta_max = 0;
    bool tied_embeddings = true;  // no output.weight: logits use token_embd
    float rope_freq_base = 10000;
    float rms_eps = 1e-5f;
    float init_std = 0.02f;       // N(0, init_std); residual-writing matrices / sqrt(2 n_layer)
    // A GGUF whose tokenizer.* keys the model takes (a `slm tokenizer train` output, a
    // ggml-vocab-*.gguf, or any model). Required to save; n_vocab defaults to its size.
    std::string tokenizer;

    // Resolved per layer (after validate()): heads, K/V heads, FFN width of layer il. With
    // scaling off, validate() keeps arrays of n_layer entries that differ between layers (a
    // loaded model's per-layer shapes) and sets n_head / n_head_kv / n_ff to their maxima;
    // uniform or absent arrays are refilled from n_head / n_head_kv / n_ff.
    std::vector<uint32_t> heads, heads_kv, ffn;
    // Checks and resolves the fields; throws slm::Error naming the field (and the config
    // file/preset in `where`) and the bad value.
    void validate(const std::string& where = "arch");
    uint32_t n_block() const { return n_layer / layer_share; }  // stored blocks
    uint32_t hd() const { return head_dim ? head_dim : n_embd / n_head; }
    uint64_t n_params() const;    // after validate(): elements over every stored tensor
};

// Presets (src/train/presets.cpp), each documented there with its source:
//   "tiny"            2 x 64, 4/2 heads: tests and smoke runs
//   "stories-5m"      ~5M, 6 x 256, tied
//   "deep-thin-8m"    MobileLLM's deep-and-thin shape, and "wide-shallow-8m" with the same parameter count
//   "mobilellm-ls-8m" deep-thin with block-wise sharing (layer_share 2)
//   "openelm-8m"      layer-wise scaling
//   "gpt2-small"      12 x 768, 12 heads, ffn 3072, vocab 50257 (llm.c's train_gpt2 comparison)
TrainArch train_preset(const std::string& name);  // throws listing the names
std::vector<std::string> train_preset_names();

// ---- the model -----------------------------------------------------------------------------

struct TrainParam {
    std::string name;          // GGUF tensor name: "blk.0.attn_q.weight"
    std::vector<int64_t> ne;   // ggml order: ne[0] is the row length
    float* w = nullptr;        // values (owned by the model)
    float* g = nullptr;        // gradient, same size; nullptr while frozen
    size_t n = 0;              // elements
    bool trainable = true;     // false: frozen (LoRA base), no gradient is computed for it
    bool is_matrix() const { return ne.size() == 2; }
};

struct LoraOptions {
    uint32_t rank = 8;
    float alpha = 16;          // scale alpha / rank, as PEFT and llama.cpp's adapter.lora.alpha
    // Matrices that get adapters, by the part of the tensor name after "blk.N.":
    // attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down.
    std::vector<std::string> targets = {"attn_q", "attn_k", "attn_v", "attn_output"};
    uint64_t seed = 1;         // A ~ Kaiming-uniform as PEFT, B = 0 (the adapter starts as a no-op)
};

class TrainModel {
public:
    // Random initialization (arch.validate() is called; seed fixes every value).
    TrainModel(TrainArch arch, uint64_t seed);
    // A "llama" GGUF, any tensor type (dequantized to F32): with block_source and per-layer
    // arrays, tied or not. The tokenizer keys are kept for save(). Throws slm::Error naming the
    // file and key/tensor for other architectures or bad shapes.
    static std::unique_ptr<TrainModel> load(const std::string& gguf_path);
    ~TrainModel();
    TrainModel(const TrainModel&) = delete;
    TrainModel& operator=(const TrainModel&) = delete;
    std::unique_ptr<TrainModel> clone() const;  // deep copy (teacher snapshots, tests)

    const TrainArch& arch() const;
    std::vector<TrainParam>& params();
    const std::vector<TrainParam>& params() const;
    TrainParam* find(const std::string& name);
    uint64_t n_params() const;        // trainable and frozen, adapters included
    void set_threads(int n_threads);  // 0 = one per core (default)

    // B sequences of T tokens each (tokens.size() == B T, T <= n_ctx, every sequence starting at
    // position 0). Returns logits, B T rows of n_vocab, valid until the next forward.
    const float* forward(std::span<const int32_t> tokens, int B, int T);
    // dL/dlogits for the last forward (B T rows of n_vocab) -> parameter gradients, added to g
    // (accumulation: call zero_grad() yourself).
    void backward(const float* dlogits);
    // forward, mean cross-entropy over the positions whose target is >= 0 (-1 = ignore), and its
    // backward scaled by grad_scale (1 / accumulation steps). Returns the mean loss. The logits
    // buffer holds dL/dlogits afterwards (it is reused in place); no target >= 0: returns 0, no
    // gradient.
    float forward_backward(std::span<const int32_t> tokens, std::span<const int32_t> targets, int B, int T,
                           float grad_scale = 1.0f);
    // Forward only: mean cross-entropy (validation).
    float loss(std::span<const int32_t> tokens, std::span<const int32_t> targets, int B, int T);
    void zero_grad();

    // LoRA: adds "<matrix>.lora_a" [n_in, rank] and "<matrix>.lora_b" [rank, n_out] parameters for
    // the target matrices and freezes every other parameter. Adapters are appended after the base
    // parameters (params() may reallocate: re-read pointers from it afterwards). save() writes
    // the base weights only; merge_lora() first to bake the adapters in.
    void add_lora(const LoraOptions& o);
    bool has_lora() const;
    void merge_lora();                 // W += (alpha / rank) B A, adapters removed, all trainable again
    // llama.cpp's adapter GGUF: general.type "adapter", adapter.type "lora", adapter.lora.alpha,
    // tensors "<matrix>.lora_a" / ".lora_b" as llama.cpp's convert_lora_to_gguf.py names them.
    void save_lora(const std::string& path) const;
    void load_lora(const std::string& path);  // adds and fills adapters from such a file

    // A llama GGUF that slm and llama.cpp load: llama.* keys (per-layer arrays when scaled,
    // block_source when shared), tokenizer keys, F32 norms and 2-D weights of `type`
    // (F32, F16 or BF16; quantized types go through slm::quantize_model afterwards). Temp + rename.
    void save(const std::string& path, GGMLType type = GGMLType::F32) const;

private:
    struct Impl;
    std::unique_ptr<Impl> p_;
    TrainModel();
};

// ---- training --------------------------------------------------------------------------------

struct TrainOptions {
    std::string data;            // text file (tokenized with the model's tokenizer) or tokens
                                 // (llm.c .bin shard, or whitespace-separated ids in a .txt/.tok)
    std::string out;             // final model GGUF ("" = none); with LoRA adapters, the adapter GGUF
    std::string checkpoint_dir;  // "" = beside out: <out>.ckpt/
    int64_t steps = 1000;        // optimizer steps
    int batch = 8;               // sequences per micro-batch
    int seq_len = 128;           // tokens per sequence (<= n_ctx)
    int grad_accum = 1;          // micro-batches per step
    float lr = 1e-3f, lr_min_ratio = 0.1f;  // peak; cosine decays to lr * lr_min_ratio
    int64_t warmup = 100;        // linear warm-up steps
    float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
    float weight_decay = 0.1f;   // AdamW, 2-D weights only (not norms)
    float grad_clip = 1.0f;      // global L2 norm; 0 = off
    float val_fraction = 0.05f;  // the tail of the data held out
    int64_t val_every = 100;     // steps between validation losses; 0 = only at the end
    int val_batches = 8;
    int64_t ckpt_every = 500;    // steps between checkpoints; 0 = only at the end
    uint64_t seed = 1;           // data order and sampling
    int n_threads = 0;
    bool resume = true;          // continue from the newest checkpoint in checkpoint_dir if any
    GGMLType out_type = GGMLType::F32;  // written type of `out` (F32/F16/BF16, or a quantized type)
    // Quantization-aware training: weights are fake-quantized to qat_type in the forward pass
    // (straight-through estimator), and `out` is written in qat_type. Unset = off.
    std::optional<GGMLType> qat_type;
    bool qat_distill = false;    // BitDistiller-style: the full-precision start model is the teacher
    // The loss of one micro-batch (distillation plugs in here): runs model.forward/backward, adds
    // gradients scaled by grad_scale, returns the loss. Unset = cross-entropy on the targets
    // (model.forward_backward). Validation always reports cross-entropy on held-out data.
    std::function<float(TrainModel& model, std::span<const int32_t> tokens, std::span<const int32_t> targets,
                        int B, int T, float grad_scale)>
        batch_loss;
    std::function<void(const std::string&)> log;  // progress lines; default: stderr
    // How a text file splits into documents (each followed by EOS in the packed stream):
    // "blank" = runs of blank lines separate documents (paragraphs or stories: the TinyStories
    // files in ../shared separate paragraphs by a blank line, and stories by a blank line in the
    // validation file but by a single newline in the training files), "line" = every non-empty
    // line is one, "none" = the whole file is one. A line that is exactly "<|endoftext|>" always
    // ends a document (and is dropped). Token files are used as they are.
    std::string doc_split = "blank";
    // The GGUF whose tokenizer cuts text data; "" = model.arch().tokenizer (a model from
    // TrainModel::load keeps its tokenizer keys but not a path: pass the loaded file here).
    std::string tokenizer;
    int64_t log_every = 10;      // steps between progress lines (validation steps always log)
};

struct TrainPoint { int64_t step; int64_t tokens; float loss; float val_loss; float lr; };  // val_loss NaN if none

struct TrainResult {
    std::vector<TrainPoint> curve;   // one per step
    float final_loss = 0, final_val_loss = 0;
    double tokens_per_s = 0;
    int64_t tokens_seen = 0;
    std::string svg_path;            // the loss curve written beside the checkpoints
};

TrainResult train(TrainModel& model, const TrainOptions& opts);

// ---- configs (src/train/config.cpp) ----------------------------------------------------------

// A training config file (JSON):
//   {"preset": "stories-5m",                       // optional: train_preset(name) as the start
//    "arch": {"n_layer": 12, "tokenizer": "tok.gguf"},   // TrainArch fields by name
//    "train": {"steps": 2000, "lr": 6e-4, "qat_type": "Q4_0"}}  // TrainOptions fields by name
// Types are names ("F32", "Q4_0", "TQ2_0"). Unknown keys and mistyped values throw slm::Error
// naming the file and the key. Relative "tokenizer" and "data" paths are taken from the
// config file's folder when they exist there.
struct TrainConfig {
    std::string preset;          // "" = none (arch from "arch" alone)
    TrainArch arch;              // not yet validated
    TrainOptions options;
};
TrainConfig load_train_config(const std::string& path);
TrainConfig parse_train_config(const std::string& json_text, const std::string& where);
// The config a checkpoint or a run used, as JSON (the inverse of parse_train_config).
std::string train_config_json(const TrainArch& arch, const TrainOptions& o);
// The "train" fields whose values differ between two such JSON texts (for a note on resume).
std::vector<std::string> train_config_changes(const std::string& before_json, const std::string& after_json);

} // namespace slm
