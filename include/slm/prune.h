// slm/prune.h - weight pruning: unstructured and N:M sparsity (magnitude, Wanda, SparseGPT) and
// structured removal of attention heads, FFN channels and whole layers.
//
//   slm::PruneParams p;
//   p.method = "wanda"; p.sparsity = 0.5f; p.pattern = "2:4"; p.calib.text_file = "calib.txt";
//   slm::PruneResult r = slm::prune_model("in.gguf", "out.gguf", p);   // atomic write
//
//   p.structured = "heads"; p.ratio = 0.25f;     // a model with fewer heads (real smaller shapes)
//
// Weights keep their float type (F32/F16/BF16); quantized inputs are refused: prune first, then
// quantize. Embeddings and output.weight are skipped (output on request), norms, biases and MoE
// routers are never pruned. The written file records what was done under slm.prune.* keys:
//   slm.prune.method     string  magnitude | wanda | sparsegpt | structured
//   slm.prune.sparsity   f32     target fraction of zeros (unstructured / N:M)
//   slm.prune.pattern    string  unstructured | N:M (N kept of every M along the input dimension)
//   slm.prune.profile    string  uniform | owl
//   slm.prune.sequential bool    calibrated layer by layer on the partly pruned model
//   slm.prune.structured string  heads | ffn | layers (structured only)
//   slm.prune.ratio      f32     fraction of KV groups / FFN channels / layers removed (structured)
//   slm.prune.removed    u32 array  removed KV groups per kept layer, or removed layers' old indices
//   slm.prune.calib      string  the calibration file (when one was used)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace slm {

class ThreadPool;

// N kept of every M consecutive weights along a row's input dimension; m == 0: unstructured.
struct SparsityPattern {
    int n = 0;
    int m = 0;
    bool nm() const { return m > 0; }
    std::string str() const;  // "unstructured" or "2:4"
};
// "unstructured", "2:4", "4:8", "N:M" with 0 < N < M <= 256. Throws naming field 'pattern'.
SparsityPattern parse_sparsity_pattern(const std::string& s);

namespace prune {

// Every function prunes a row-major n_out x n_in F32 matrix in place (row = output, the input
// dimension is contiguous). Unstructured: floor(sparsity * count + 1e-6) weights are zeroed per
// matrix (magnitude), per row (wanda), per block of columns (sparsegpt). N:M: exactly n kept of
// each group of m (n_in % m == 0 is checked by the caller; sparsity is then ignored).

// |W| ranked over the whole matrix (the Wanda paper's magnitude baseline).
void magnitude(float* w, int64_t n_out, int64_t n_in, float sparsity, SparsityPattern p);

// Wanda (Sun et al. 2023): |W_ij| * ||X_j||_2 ranked within each output row; sum_x2 = n_in sums
// of squares of the input columns over the calibration tokens.
void wanda(float* w, int64_t n_out, int64_t n_in, const double* sum_x2, float sparsity, SparsityPattern p);

struct SparseGptParams {
    float damp = 0.01f;  // lambda = damp * mean(diag(H)) added to H's diagonal
    int block = 128;     // columns per block (mask chosen per block, lazy OBS updates)
};
// SparseGPT (Frantar & Alistarh 2023): hessian = X^T X (n_in x n_in, both halves). Masks chosen
// by w^2 / [H^-1]_jj^2 (the upper Cholesky factor of H^-1's diagonal), adaptive per block or per
// M columns for N:M, and the remaining weights updated by OBS to compensate.
void sparsegpt(float* w, int64_t n_out, int64_t n_in, const float* hessian, float sparsity, SparsityPattern p,
               const SparseGptParams& sp, ThreadPool* pool);

// OWL (Yin et al. 2023) per-layer sparsities: outlier ratio D_l = share of |W|*||X|| entries of
// layer l above m * the layer's mean; D is scaled to span [0, 2 lambda] and
// sparsity_l = target - (scaled D_l - mean(scaled D)): more outliers, fewer weights pruned; the
// mean is the target and the layers span 2 lambda (as the paper's code; clamped to [0, 0.99]).
std::vector<double> owl_sparsities(const std::vector<double>& outlier_ratio, double target, double lambda);

} // namespace prune

struct PruneParams {
    // Unstructured / N:M.
    std::string method = "magnitude";   // magnitude | wanda | sparsegpt
    float sparsity = 0.5f;              // [0, 1)
    std::string pattern = "unstructured";
    std::string profile = "uniform";    // uniform | owl
    float owl_lambda = 0.08f;           // OWL's lambda (the paper's 0.08): layers span 2 lambda
    float owl_m = 5.0f;                 // OWL's outlier threshold M (the paper's 5)
    bool include_output = false;        // also prune output.weight
    // Wanda / SparseGPT: calibrate layer by layer on the model pruned so far (as the papers'
    // code); costs one calibration pass per layer. Off: one pass on the dense model.
    bool sequential = false;
    prune::SparseGptParams sparsegpt;
    // Structured (replaces the above when set).
    std::string structured;             // "" | heads | ffn | layers
    float ratio = 0;                    // [0, 1): share of KV groups / FFN channels / layers removed
    // Calibration: text (or token ids), n_samples windows of n_ctx tokens. Not needed by
    // unstructured magnitude with the uniform profile.
    std::string calib_text, calib_tokens;
    uint32_t calib_samples = 32;
    uint32_t calib_ctx = 128;
    int n_threads = 0;
    // progress(done, total, phase): phase "calibration" (samples) or "tensors".
    std::function<void(size_t, size_t, const char*)> progress;
    std::function<void(const std::string&)> log;  // one line per matrix / decision
};

struct PruneMatrixLog {
    std::string name;
    int layer = -1;            // blk index, -1 for output.weight
    int64_t n_elements = 0;
    int64_t n_zero = 0;        // after pruning
    double target = 0;         // requested sparsity for this matrix
    double rel_err = -1;       // ||(W - W') X^T||^2 / ||W X^T||^2 from X^T X when available, else -1
};

struct PruneResult {
    std::vector<PruneMatrixLog> matrices;
    std::vector<double> layer_sparsity;    // reached, per layer (unstructured / N:M)
    std::vector<double> layer_target;      // requested per layer (OWL or uniform)
    std::vector<std::string> notes;        // skipped tensors and why
    // Structured: the new shapes.
    uint32_t n_layer = 0;
    std::vector<uint32_t> n_head, n_head_kv, n_ff;  // per kept layer
    std::vector<double> scores;            // the importance scores used (per group / layer)
    uint64_t bytes_in = 0, bytes_out = 0;  // tensor data
};

// Prunes `in` into `out` (written to out.tmp then renamed). Throws slm::Error naming the file
// and the field (method, sparsity, pattern, ratio, ...) or tensor at fault.
PruneResult prune_model(const std::string& in, const std::string& out, const PruneParams& p);

} // namespace slm
