// calib.h - calibration data and the activation statistics the compressors learn from.
//
//   compress::CalibSet set = compress::load_calibration(*model, {.text_file = "corpus.txt"});
//   compress::ActivationStats stats({.hessian = true});
//   compress::run_calibration(model, set, stats, 0, nullptr);
//   const compress::InputStats* s = stats.find("blk.0.attn_q.weight");  // shared with attn_k, attn_v
//
// Every matrix product of the calibration passes is observed (Session::set_matmul_observer):
// per input, the number of rows seen, the sum of squares of each column (llama.cpp's importance
// matrix, Wanda's ||X_j||^2) and, when asked, the full X^T X (GPTQ's and SparseGPT's Hessian).
// Weights that read the same input (Q/K/V, gate/up) share one InputStats.
#pragma once

#include "slm/model.h"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::compress {

struct CalibOptions {
    std::string text_file;   // -f: text, tokenized with the model's own tokenizer
    std::string token_file;  // or token ids: an llm.c .bin (uint16 tokens) or whitespace-separated integers
    uint32_t n_samples = 32; // --calib-samples: samples of n_ctx tokens
    uint32_t n_ctx = 128;    // --calib-ctx: tokens per sample; 0 = min(512, the model's training context)
};

struct CalibSet {
    std::vector<std::vector<int32_t>> samples;  // each n_ctx tokens, BOS first when the vocab adds one
    uint64_t n_tokens = 0;                      // over all samples
    size_t n_available = 0;                     // samples the file could give; n_samples of them
                                                // are taken, evenly spaced through it
    std::string source;                         // the file's path
};

// Tokenizes the text (or reads the ids) and cuts it into consecutive windows of n_ctx tokens
// (n_ctx - 1 when a BOS is put first), taking n_samples of them evenly spaced over the file
// (all when fewer). Throws slm::Error naming the file for a missing/unreadable file, invalid
// UTF-8, a token id out of the vocabulary, or text too short for one sample.
CalibSet load_calibration(const Model& model, const CalibOptions& o);

// Evaluates every sample from position 0 (all logits, so output.weight sees every row) with
// `observer` attached. progress(done, total) after each sample when set. n_threads 0 = default.
void run_calibration(const std::shared_ptr<const Model>& model, const CalibSet& set, MatmulObserver& observer,
                     int n_threads, const std::function<void(size_t, size_t)>& progress);

// What one input matrix X (rows = tokens) of the calibration looked like.
struct InputStats {
    std::vector<std::string> weights;  // the weights that read it ("blk.0.attn_q.weight", ...)
    int64_t n_in = 0;
    uint64_t n_rows = 0;               // tokens seen
    std::vector<double> sum_x2;        // per column j: sum over rows of X[t][j]^2
    std::vector<double> sum_abs;       // per column: sum of |X[t][j]| (AWQ's activation scale)
    // X^T X, n_in x n_in row-major (symmetric, both halves filled after finish()); empty unless
    // asked for. Float as GPTQ's reference keeps it; sums of a window's products in float.
    std::vector<float> hessian;
};

class ActivationStats : public MatmulObserver {
public:
    struct Options {
        bool hessian = false;                         // also accumulate X^T X
        int64_t max_hessian_n_in = 32768;             // refuse a bigger X^T X (memory: n_in^2 floats)
        std::function<bool(const std::string&)> want; // weights to observe; unset = every weight
        ThreadPool* pool = nullptr;                   // for X^T X; nullptr = single-threaded
    };
    explicit ActivationStats(Options o) : opt_(std::move(o)) {}
    void on_matmul(const MatmulEvent& e) override;
    // Mirrors the Hessians' upper halves; call once after the last run.
    void finish();

    // The statistics of the input `weight` reads, or nullptr if it never ran.
    const InputStats* find(const std::string& weight) const;
    const std::vector<std::unique_ptr<InputStats>>& inputs() const { return inputs_; }

private:
    void add_hessian(InputStats& s, const float* x, uint32_t n_tokens);
    Options opt_;
    std::vector<std::unique_ptr<InputStats>> inputs_;
    std::map<std::string, InputStats*> by_weight_;
    std::vector<float> xt_;  // a transposed window of rows
};

} // namespace slm::compress
