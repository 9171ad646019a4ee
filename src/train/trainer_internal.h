// trainer_internal.h - the parts of slm::train() (src/train/trainer.cpp): data, AdamW and its
// schedule, checkpoints, the loss-curve SVG and fake quantization. Internal: tests and the
// distillation code use them; frontends use include/slm/train.h.
#pragma once

#include "slm/quantize.h"
#include "slm/train.h"
#include "slm/vocab.h"

#include <cstdint>
#include <string>
#include <vector>

namespace slm::train_impl {

// ---- data (data.cpp) -------------------------------------------------------------------------

// A text file cut into documents by TrainOptions::doc_split ("blank", "line", "none"); lines
// that are exactly "<|endoftext|>" always end a document. Documents keep their inner newlines
// (joined by "\n", a trailing "\r" dropped); empty documents are skipped.
std::vector<std::string> split_documents(const std::string& text, const std::string& mode, const std::string& where);

// The training stream: documents packed one after another, each followed by EOS (text files),
// or the ids of a token file as they are. Its last val_fraction is held out: no training window
// ever reads a token of it, and validation reads only it.
//
// A sequence of T = seq_len positions reads `window()` consecutive stream tokens from `start`:
// with a BOS (text, and the vocabulary adds one) inputs are BOS s[start..start+T-2] and targets
// s[start..start+T-1], so every sequence starts with BOS as llama.cpp's inference does; without
// one, inputs s[start..start+T-1] and targets s[start+1..start+T].
struct TrainData {
    std::vector<int32_t> tokens;
    size_t n_train = 0;          // tokens[0, n_train) train; [n_train, size) held out
    size_t n_docs = 0;           // documents packed (0 for token files)
    int32_t bos = TOKEN_NULL;    // put first in every sequence, or TOKEN_NULL
    int seq_len = 0;
    std::string source;
    bool text = false;

    size_t window() const { return bos != TOKEN_NULL ? static_cast<size_t>(seq_len) : static_cast<size_t>(seq_len) + 1; }
    size_t n_val() const { return tokens.size() - n_train; }
    size_t n_val_windows() const { return n_val() / window(); }  // non-overlapping held-out windows
    // The start of the i-th training sequence of step `step` (0-based; i counts across the
    // step's micro-batches, so grad_accum 2 x batch B reads what batch 2B reads): a uniform draw
    // in [0, n_train - window()] from a counter-based generator keyed by (seed, step, i). The
    // data position and the "RNG state" are thus the step itself, and a resumed run draws
    // exactly what an uninterrupted one would.
    size_t train_start(uint64_t seed, int64_t step, int64_t i) const;
    // Inputs and targets (seq_len each) of the sequence reading from `start`.
    void fill(size_t start, int32_t* inputs, int32_t* targets) const;
    // Sequences micro*B .. micro*B+B-1 of step `step`, concatenated.
    void train_batch(uint64_t seed, int64_t step, int micro, int B, std::vector<int32_t>& inputs,
                     std::vector<int32_t>& targets) const;
    // The held-out windows validation uses: up to n_max of them, evenly spread over the tail;
    // returns their starts.
    std::vector<size_t> val_starts(size_t n_max) const;
};

// Reads `path`: an llm.c token shard, a ".tok" file or a file holding only whitespace-separated
// integers is taken as token ids (checked against n_vocab); anything else is UTF-8 text,
// tokenized with `vocab` (required then). Throws slm::Error naming the file.
TrainData load_train_data(const std::string& path, const Vocab* vocab, uint32_t n_vocab, const TrainOptions& o);

// ---- optimizer (optimizer.cpp) ---------------------------------------------------------------

// The learning rate of step `step` (0-based): linear warm-up lr (step + 1) / warmup over the
// first `warmup` steps, then a cosine from lr down to lr * lr_min_ratio at the last step.
float lr_at(const TrainOptions& o, int64_t step);

// AdamW (Loshchilov & Hutter) with bias correction: per trainable parameter m and v, weight
// decay decoupled from the gradient (w -= lr wd w) and applied to 2-D weights only. Frozen
// parameters (g == nullptr) get no state and are never touched.
class AdamW {
public:
    explicit AdamW(std::vector<TrainParam>& params);  // model.params(); must outlive the optimizer
    // The global L2 norm of every gradient (accumulated in double).
    double grad_norm() const;
    // Scales every gradient by max_norm / norm when norm > max_norm > 0. Returns the norm before.
    double clip(float max_norm);
    // One update with learning rate lr; t = 1-based step count for the bias correction.
    void step(const TrainOptions& o, float lr, int64_t t);

    std::vector<TrainParam>& params() { return *params_; }
    // Per parameter (same order as model.params()): empty for frozen ones.
    std::vector<std::vector<float>> m, v;

private:
    std::vector<TrainParam>* params_;
};

// ---- checkpoints (checkpoint.cpp) ------------------------------------------------------------

struct CheckpointState {
    int64_t step = 0;              // optimizer steps done
    int64_t tokens_seen = 0;
    uint64_t seed = 0;             // the data-order seed (checked on resume)
    uint64_t data_tokens = 0;      // stream length (checked on resume: other data = other windows)
    std::vector<TrainPoint> curve; // every step so far
    std::string config_json;       // the config the checkpoint was written with (load only)
};

// "<dir>/ckpt-<step, 8 digits>.gguf".
std::string checkpoint_path(const std::string& dir, int64_t step);
// The checkpoint with the highest step in dir, or "" (none, or no such folder).
std::string newest_checkpoint(const std::string& dir);
// Weights (every parameter), Adam m and v (trainable ones) as F32 tensors "<name>",
// "adam.m.<name>", "adam.v.<name>", and slm.train.* keys: step, tokens, seed, data length,
// the curve, and the config JSON (arch and options). Written to a temp file, then renamed.
void save_checkpoint(const std::string& path, const TrainModel& model, const AdamW& opt, const CheckpointState& st,
                     const std::string& config_json);
// Restores weights and optimizer state into a model of the same shapes; throws slm::Error
// naming the file and the key or tensor when it is not such a checkpoint or does not match.
CheckpointState load_checkpoint(const std::string& path, TrainModel& model, AdamW& opt);
// Deletes all but the `keep` newest checkpoints of dir.
void prune_checkpoints(const std::string& dir, int keep);

// ---- loss curve (svg.cpp) --------------------------------------------------------------------

// A standalone SVG: training loss (and validation loss where computed) against the step, with
// ticked, labelled axes and a legend.
std::string loss_curve_svg(const std::vector<TrainPoint>& curve, const std::string& title);
// Writes `path` + ".tmp" then renames it over `path`.
void write_file_atomic(const std::string& path, const std::string& content);

// ---- quantization-aware training (qat.cpp) ---------------------------------------------------

// Fake quantization: apply() saves each quantizable 2-D weight (the ones `slm quantize --pure`
// would quantize, LoRA adapters excepted) and replaces it by dequant(quant(w)) in the type the
// export will give it (qat_type, or llama.cpp's shape fallback for its row length); restore()
// puts the float masters back. Gradients computed between the two are applied to the masters:
// the straight-through estimator.
class FakeQuant {
public:
    FakeQuant(TrainModel& model, GGMLType type, int n_threads);
    void apply();
    void restore();
    // The type each quantized parameter gets (parameter name, type), for logs and tests.
    const std::vector<std::pair<std::string, GGMLType>>& types() const { return types_; }
    // dequant(quant(x)) of `rows` rows of n_per_row elements (a multiple of t's block).
    static void round_trip(GGMLType t, const float* x, float* y, int64_t rows, int64_t n_per_row);

private:
    TrainModel& model_;
    int n_threads_;
    std::vector<size_t> index_;                        // into model.params()
    std::vector<std::pair<std::string, GGMLType>> types_;
    std::vector<std::vector<float>> master_;
    bool applied_ = false;
};

// Writes the model to `path` in `type`: F32/F16/BF16 directly, a quantized type by saving F32 to
// a temporary file beside it and running slm::quantize_model with --pure (the types the fake
// quantization used). Returns the type written.
void export_model(const TrainModel& model, const std::string& path, GGMLType type, int n_threads);
// `model` written as `qp` says (slm quantize's types and mixtures): saved as F32 beside `path`,
// quantized into `path`, the F32 file removed whatever happens.
void save_quantized(const TrainModel& model, const std::string& path, const QuantizeParams& qp);

} // namespace slm::train_impl
