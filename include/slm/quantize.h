// slm/quantize.h - llama-quantize's file types and mixtures, `slm quantize` and `slm calibrate`.
//
//   slm::QuantizeParams p;
//   p.type = "Q4_K_M";                          // a llama.cpp file type name (or alias "Q4_K")
//   p.imatrix_file = "imatrix.gguf";            // optional: importance-weighted rounding
//   slm::QuantizeResult r = slm::quantize_model("model.f32.gguf", "model.q4_k_m.gguf", p);
//
//   slm::CalibrateParams c{.model = "model.gguf", .text_file = "calib.txt", .output = "imatrix.gguf"};
//   slm::calibrate_imatrix(c);                  // llama.cpp's imatrix GGUF
//
// Round-to-nearest without an importance matrix gives the bytes llama-quantize writes: the same
// per-tensor types (src/compress/quant_mix.h), the same quantizers (ggml's quantize_row_*_ref),
// the same metadata (every input key in order, then general.quantization_version and
// general.file_type) and llama-quantize's tensor order.
#pragma once

#include "slm/types.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace slm {

// ---- llama.cpp file types -------------------------------------------------------------------

// The type llama-quantize gives a tensor with rows of n_per_row elements when `want` needs a
// row length that is a multiple of its block: K-quants fall back as llama.cpp's
// tensor_type_fallback does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS ->
// IQ4_NL, TQ1_0/TQ2_0 -> Q4_0), then to F16 if even that block does not divide the row. Where
// llama-quantize would abort (Q4_0, Q8_0, ... with a row that is not a multiple of 32) this
// picks F16, the type its own fallback ends in. Returns `want` when it fits.
GGMLType quant_fallback_type(GGMLType want, int64_t n_per_row);

// llama.cpp's general.file_type (enum llama_ftype) for a model mostly of type t: F32 0, F16 1,
// Q4_0 2, Q4_1 3, Q8_0 7, Q5_0 8, Q5_1 9, Q2_K 10, Q3_K 12 (Q3_K_M), Q4_K 15 (Q4_K_M),
// Q5_K 17 (Q5_K_M), Q6_K 18, IQ4_NL 25, IQ4_XS 30, BF16 32, TQ1_0 36, TQ2_0 37.
// Throws slm::Error for a type that is no file type.
uint32_t llama_file_type(GGMLType t);

// The llama.cpp file types slm writes, by llama-quantize's names: "Q4_K_M" -> 15 with default
// tensor type Q4_K. Aliases as llama-quantize: "Q4_K" is Q4_K_M, "Q3_K" Q3_K_M, "Q5_K" Q5_K_M.
struct QuantFileType {
    const char* name;   // "Q4_K_M"
    uint32_t ftype;     // 15
    GGMLType type;      // Q4_K
};
const std::vector<QuantFileType>& quant_file_types();
// The entry for a name (case-insensitive), or nullptr.
const QuantFileType* quant_file_type(const std::string& name);

// ---- slm quantize ---------------------------------------------------------------------------

struct QuantizeParams {
    std::string type;                  // TYPE: "Q4_K_M", "Q8_0", "F16", ... (quant_file_types)
    int n_threads = 0;                 // 0 = all cores; the bytes do not depend on it
    bool pure = false;                 // --pure: every quantized tensor `type` (shape fallbacks still apply)
    bool leave_output = false;         // --leave-output-tensor
    bool allow_requantize = false;     // --allow-requantize: dequantize quantized inputs first
    std::optional<GGMLType> output_type;  // --output-tensor-type
    std::optional<GGMLType> embd_type;    // --token-embedding-type
    // --tensor-type PATTERN=TYPE, in order (regular expressions searched in the tensor name; the
    // first match wins), as llama-quantize; e.g. {"ffn_down", F16}.
    std::vector<std::pair<std::string, GGMLType>> tensor_types;
    std::string imatrix_file;          // --imatrix: llama.cpp's imatrix GGUF or legacy .dat
    std::vector<std::string> include_weights;  // --include-weights: use the imatrix only for names containing these
    std::vector<std::string> exclude_weights;  // --exclude-weights: never for names containing these
    // --method: "rtn" (round to nearest, with the imatrix if given), "gptq" or "awq" (calibrated
    // on the text below; see src/compress/gptq.h, awq.h).
    std::string method = "rtn";
    std::string calib_text;            // -f TEXT
    std::string calib_tokens;          // --calib-tokens FILE
    uint32_t calib_samples = 32;       // --calib-samples
    uint32_t calib_ctx = 128;          // --calib-ctx
    float gptq_damp = 0.01f;           // --damp: GPTQ adds damp * mean(diag(X^T X)) to the diagonal
    bool act_order = false;            // --act-order: GPTQ columns by decreasing diag(X^T X)
    int awq_grid = 20;                 // --awq-grid: AWQ's alpha candidates
    bool awq_clip = true;              // --no-awq-clip turns off AWQ's clipping search
    // Called after each calibration sample (done, total) of --method gptq|awq.
    std::function<void(size_t, size_t)> on_calibration;
};

// One tensor as it was written (llama-quantize's log line).
struct QuantizedTensor {
    std::string name;
    std::vector<int64_t> shape;
    GGMLType from = GGMLType::F32, to = GGMLType::F32;
    uint64_t bytes_in = 0, bytes_out = 0;
    bool fallback = false;             // the shape forced another type than the mixture's
    bool imatrix = false;              // rounded with importance weights
};

struct QuantizeResult {
    uint32_t ftype = 0;                // general.file_type written
    uint64_t bytes_in = 0, bytes_out = 0;  // tensor data, before and after
    uint64_t n_elements = 0;
    std::vector<QuantizedTensor> tensors;  // in file order
    std::vector<std::string> warnings;     // fallbacks, imatrix entries missing, requantizing...
};

// Quantizes `in` to `out` (written to a temporary file, then renamed). `on_tensor(i, n, t)` is
// called after each tensor (for a progress bar and the log), `on_warning` for each warning as it
// happens. Peak memory: about one tensor's F32 copy and its output, plus the input's mapping.
// Throws slm::Error naming the file, the tensor and the value for: an unreadable input, an
// unknown TYPE, a bad --tensor-type pattern, a quantized input without allow_requantize, an
// imatrix of the wrong size, a method it cannot run.
QuantizeResult quantize_model(const std::string& in, const std::string& out, const QuantizeParams& p,
                              const std::function<void(size_t, size_t, const QuantizedTensor&)>& on_tensor = {},
                              const std::function<void(const std::string&)>& on_warning = {});

// ---- slm calibrate --------------------------------------------------------------------------

struct CalibrateParams {
    std::string model;                 // -m: the model to run (any type slm reads)
    std::string text_file;             // -f TEXT
    std::string token_file;            // or --calib-tokens FILE
    uint32_t n_samples = 32;           // --calib-samples
    uint32_t n_ctx = 128;              // --calib-ctx (llama.cpp's chunk size)
    int n_threads = 0;                 // -t
    std::string output;                // -o IMATRIX (.gguf; ".dat" writes the legacy format)
};

struct CalibrateResult {
    size_t n_entries = 0;              // weights with statistics
    uint32_t n_chunks = 0;             // samples evaluated
    uint64_t n_tokens = 0;
};

// Runs the model over the calibration text and writes llama.cpp's importance matrix: per weight
// of the blocks (blk.*), the sum over tokens of each input column's square (`<name>.in_sum2`)
// and the token count (`<name>.counts`), per expert for MoE weights. progress(done, total) after
// each sample when set. Written atomically.
CalibrateResult calibrate_imatrix(const CalibrateParams& p, const std::function<void(size_t, size_t)>& progress = {});

} // namespace slm
