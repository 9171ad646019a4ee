// prune_internal.h - what prune.cpp (unstructured / N:M) and structured.cpp share.
#pragma once

#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/prune.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slm::compress {

bool is_float_type(GGMLType t);  // F32, F16, BF16: the types pruning reads and writes
// A float tensor's values as F32 / back to its type (bytes).
std::vector<float> tensor_values(const GGUFTensorInfo& t);
std::vector<uint8_t> values_to_bytes(const std::vector<float>& v, GGMLType type);
// "blk.12.attn_q.weight" -> 12; -1 for a name outside the blocks.
int layer_of(const std::string& name);
struct CalibSet;
// Runs the calibration set through the model with `obs`. The set is read (and tokenized) from
// p's files into *set when it is empty, else reused.
void run_prune_calibration(const std::shared_ptr<const Model>& model, const PruneParams& p, MatmulObserver& obs,
                           CalibSet& set);
// Structured pruning (structured.cpp).
PruneResult prune_structured(const std::string& in, const std::string& out, const PruneParams& p);

} // namespace slm::compress
