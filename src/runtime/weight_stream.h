// weight_stream.h - weight streaming for SessionOptions::low_memory (see slm/model.h).
#pragma once

#include "models/arch.h"

#include <memory>

namespace slm {

// A LayerHook that, at the start of layer il, releases layer il - 1's mapped weights from the
// process (MADV_DONTNEED: the file's pages stay in the page cache, but leave the resident set)
// and reads layer il + 1's ahead (MADV_WILLNEED), wrapping around from the last layer to the
// first for the next pass. A layer's weights are the tensors named "blk.<il>."; matrices held
// repacked in memory of their own are left alone.
std::unique_ptr<LayerHook> make_weight_streamer(const Model& model);

} // namespace slm
