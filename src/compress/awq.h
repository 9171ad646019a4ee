// awq.h - AWQ (Lin et al.) activation-aware scale search (implemented by the gptq branch; this
// header is the interface of notes/issue6.md, which `slm quantize --method awq` calls).
#pragma once

#include "compress/calib.h"
#include "slm/gguf.h"
#include "slm/types.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::compress {
struct AwqParams {
    int n_grid = 20;            // alpha in {0, 1/n, ..., (n-1)/n}
    bool clip = true;           // also search a per-group clipping range (llm-awq auto_clip)
};
struct AwqResult {
    std::map<std::string, std::vector<float>> tensors;  // new F32 values of every changed tensor
    std::vector<std::string> log;                        // "blk.0 attn_in: alpha 0.45, loss 1.2e-3 -> 8.1e-4"
};
// Searches AWQ scales for every (norm or linear -> linears) pair of every layer it knows, on
// the calibration statistics (needs ActivationStats with hessian or kept rows; see awq.h),
// against quantization to the type each weight will get (`type_of(name)`), and returns the
// scaled weights and folded norms. The unquantized model computes the same function.
AwqResult awq_search(const GGUFFile& model, const ActivationStats& stats,
                     const std::function<GGMLType(const std::string&)>& type_of, const AwqParams& p,
                     ThreadPool* pool);
}
