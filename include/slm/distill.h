// slm/distill.h - knowledge distillation: token-level divergences between a teacher's
// distribution and a student's, a teacher (any GGUF slm runs, or a TrainModel), and the
// TrainOptions::batch_loss that trains a student on them, off- or on-policy.
//
//   slm::DistillOptions d;  d.loss.divergence = slm::divergence_from_name("rkl");
//   d.on_policy = 0.5f;                                     // GKD: half the batches sampled by the student
//   auto teacher = slm::Teacher::load("teacher.gguf");      // must share the student's vocabulary
//   slm::Distiller distiller(teacher, d, student);
//   slm::TrainOptions o;  o.data = "stories.txt";  distiller.install(o);
//   slm::train(student, o);                                 // the same loop, the distillation loss
//
// Losses, per position, with p the teacher's and q the student's distribution at temperature T
// (softmax(logits / T)), both over the same categories (see top_k):
//   fkl  KL(p || q) = sum p log(p / q)                       (Hinton et al. 2015; mean-seeking)
//   rkl  KL(q || p) = sum q log(q / p)                       (MiniLLM, Gu et al. 2024; mode-seeking)
//   jsd  beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q  (GKD's generalized JSD,
//        Agarwal et al. 2024; 0 < beta < 1, use fkl / rkl for the end points)
//   tvd  1/2 sum |p - q|                                     (total variation distance)
// The position's loss is (1 - ce_weight) T^2 D(p, q) + ce_weight CE(student logits at T = 1, label);
// T^2 keeps the gradient of the soft term at the same scale whatever T (Hinton et al.), so
// ce_weight means the same at every temperature. The batch loss is the mean over the positions
// in the mask.
//
// Top-k teacher (top_k = K > 0): the teacher keeps its K most likely tokens and one "rest" bucket
// holding the remaining mass, 1 - sum of the K. The student's distribution is coarse-grained the
// same way (its probabilities of those K tokens, and the sum of all others), and D is taken over
// the K + 1 categories. Unlike the common approximation that renormalizes both over the top-k and
// drops the rest, this is a true divergence between two distributions: it is 0 exactly when the
// student matches the teacher on the K tokens (hence on the rest), it is a lower bound of the
// full-vocabulary divergence (data processing inequality), and it still pushes the student's mass
// off tokens the teacher finds unlikely. The teacher then costs K + 1 numbers per position
// instead of n_vocab.
#pragma once

#include "slm/train.h"
#include "slm/vocab.h"

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace slm {

enum class Divergence { ForwardKL, ReverseKL, JSD, TVD };

// "fkl", "rkl", "jsd", "tvd" (also "forward-kl", "reverse-kl"); throws slm::Error listing them.
Divergence divergence_from_name(const std::string& name);
const char* divergence_name(Divergence d);  // "fkl", ...

struct DistillLossOptions {
    Divergence divergence = Divergence::ForwardKL;
    float temperature = 1.0f;  // both distributions at softmax(logits / T); > 0
    float jsd_beta = 0.5f;     // jsd only: the teacher's share of the mixture, in (0, 1)
    uint32_t top_k = 0;        // 0 = the teacher's full distribution; K = its top K + a rest bucket
    float ce_weight = 0.0f;    // in [0, 1]: share of the hard-label cross-entropy
    // Throws slm::Error naming the field and value (temperature <= 0, beta outside (0, 1),
    // ce_weight outside [0, 1], top_k >= n_vocab when n_vocab is given).
    void validate(uint32_t n_vocab = 0) const;
};

// The teacher's distribution at n_rows positions, at the loss's temperature: either every
// log-probability (top_k 0) or, per row, the top_k token ids (most likely first) and top_k + 1
// log-probabilities (those tokens, then the rest bucket).
struct TeacherDist {
    size_t n_rows = 0;
    uint32_t n_vocab = 0;
    uint32_t top_k = 0;
    std::vector<float> logp;    // n_rows x n_vocab (full) or n_rows x (top_k + 1)
    std::vector<int32_t> ids;   // top-k: n_rows x top_k
};
// From raw logits (n_rows x n_vocab) as o.temperature and o.top_k ask.
TeacherDist make_teacher_dist(const float* logits, size_t n_rows, uint32_t n_vocab, const DistillLossOptions& o);

struct DistillLossValue {
    float loss = 0;        // what the gradient is of: mean over the masked rows
    float divergence = 0;  // mean D(p, q) at temperature T (without the T^2 factor)
    float ce = 0;          // mean hard-label cross-entropy over the rows with a label (0 if none)
    size_t n_rows = 0;     // rows in the mean
};

// The loss of student logits (teacher.n_rows x n_vocab) against the teacher, and its gradient
// with respect to the logits times grad_scale written to dlogits (same shape; rows outside the
// mask get 0). A row is in the mean when mask[r] != 0 (empty mask: when labels[r] >= 0); its
// cross-entropy term uses labels[r] when >= 0 (labels may be empty: no hard-label term, and the
// divergence takes the whole weight). Throws slm::Error on size mismatches or labels outside
// the vocabulary.
DistillLossValue distill_loss(const DistillLossOptions& o, const float* student_logits, const TeacherDist& teacher,
                              std::span<const int32_t> labels, std::span<const uint8_t> mask, float grad_scale,
                              float* dlogits);

// ---- the teacher ---------------------------------------------------------------------------

// Logits of a fixed model for batches of sequences, each starting at position 0.
class Teacher {
public:
    virtual ~Teacher() = default;
    virtual uint32_t n_vocab() const = 0;
    virtual std::string describe() const = 0;  // for messages: the file, or "the start model"
    virtual const Vocab* vocab() const { return nullptr; }  // the tokenizer, when known
    // B sequences of T tokens -> B T rows of n_vocab logits in `out` (resized).
    virtual void logits(std::span<const int32_t> tokens, int B, int T, std::vector<float>& out) = 0;

    // Any GGUF slm::Model loads (another architecture, any quantized type): run by slm::Session,
    // all B sequences in one batched pass when the architecture allows it.
    static std::shared_ptr<Teacher> load(const std::string& gguf_path, int n_threads = 0);
    // A training model, run by TrainModel::forward (it is not trained: nothing calls backward).
    static std::shared_ptr<Teacher> from_model(std::unique_ptr<TrainModel> model);
};

// ---- the training loss ---------------------------------------------------------------------

struct DistillOptions {
    DistillLossOptions loss;
    // GKD / MiniLLM on-policy: each micro-batch, with this probability, keeps the first
    // prompt_fraction of every sequence (from the data), replaces the rest by the student's own
    // samples, and trains on the divergence at the generated positions only (no hard-label term:
    // sampled tokens are not labels).
    float on_policy = 0.0f;
    float prompt_fraction = 0.5f;  // in (0, 1): the prompt is max(1, round(f T)) tokens
    float sample_temperature = 1.0f;  // of the student's samples (> 0)
    int32_t sample_top_k = 0;         // 0 = the whole vocabulary
    uint64_t seed = 1;                // on-policy draws and sampling
    std::string tmp_dir;              // where the student is saved for sampling ("" = the system temp dir)
    int n_threads = 0;                // of the sampling Session
    // The student's tokenizer GGUF for the token-text check ("" = student.arch().tokenizer; a
    // model from TrainModel::load has none: give its file).
    std::string student_tokenizer;
    void validate(uint32_t n_vocab) const;
};

struct DistillStats {
    int64_t n_batches = 0, n_on_policy = 0;
    DistillLossValue last;        // the last micro-batch
    double sample_seconds = 0;    // spent sampling the student (on-policy)
    double teacher_seconds = 0;   // spent running the teacher
};

// The distillation batch loss. Checks at construction that teacher and student share the
// vocabulary size, and when both tokenizers are known (a GGUF teacher, a student with
// TrainArch::tokenizer) the same token texts (slm::Error naming the first difference). Not thread-safe; one per training run.
class Distiller {
public:
    Distiller(std::shared_ptr<Teacher> teacher, DistillOptions o, const TrainModel& student);
    Distiller(const Distiller&) = delete;  // install() hands out `this`
    Distiller& operator=(const Distiller&) = delete;
    // TrainOptions::batch_loss's signature: forward, loss, backward (gradients added, scaled by
    // grad_scale); returns the loss.
    float batch_loss(TrainModel& student, std::span<const int32_t> tokens, std::span<const int32_t> targets, int B,
                     int T, float grad_scale);
    // Sets opts.batch_loss to call this Distiller (which must outlive train()).
    void install(TrainOptions& opts);
    const DistillStats& stats() const { return stats_; }
    const DistillOptions& options() const { return o_; }

    // The on-policy sequences: the first n_prompt tokens of each of the B sequences kept, the
    // rest sampled from `student` (saved to a temporary GGUF and run by slm::Session with a KV
    // cache). Returns the new tokens and sets mask (B T rows: 1 at rows whose next token was
    // sampled, and at the last row, up to the first end-of-text sampled).
    std::vector<int32_t> sample_continuations(TrainModel& student, std::span<const int32_t> tokens, int B, int T,
                                              int n_prompt, std::vector<uint8_t>& mask);

private:
    std::shared_ptr<Teacher> teacher_;
    DistillOptions o_;
    std::mt19937_64 rng_;
    DistillStats stats_;
    std::vector<float> teacher_logits_, dlogits_;
    std::vector<uint8_t> mask_;
};

// BitDistiller-style self-distillation for quantization-aware training (slm train --qat-distill):
// the teacher is a full-precision clone of `model` taken now (before training), the loss is o.
// Sets opts.batch_loss; the returned Distiller must outlive train().
std::unique_ptr<Distiller> install_self_distillation(TrainModel& model, TrainOptions& opts,
                                                     const DistillOptions& o = {});

// ---- LoRA files ----------------------------------------------------------------------------

// slm lora merge: `base` (any llama GGUF TrainModel::load reads, quantized included: dequantized)
// plus the adapter GGUF `adapter` (TrainModel::save_lora's, llama.cpp's adapter layout), merged
// (W += alpha / rank B A) and written to `out` in `type`: "F32", "F16", "BF16", or a file type
// slm quantize writes ("Q8_0", "Q4_K_M", ...: the merged F32 model goes through quantize_model).
// Written to a temporary file, then renamed. Throws slm::Error naming the file at fault.
void lora_merge(const std::string& base, const std::string& adapter, const std::string& out,
                const std::string& type = "F32");

class Model;
// slm run --lora: the base with the adapter merged at load (F32, through a temporary file that is
// removed once mapped). The base must be a llama GGUF (what TrainModel::load reads).
std::shared_ptr<const Model> load_model_with_lora(const std::string& base, const std::string& adapter);

} // namespace slm
