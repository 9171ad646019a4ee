// formats/hf_convert.h - what Model::load and `slm info` need to open a Hugging Face folder.
#pragma once

#include "slm/gguf.h"

#include <string>

namespace slm::hf {

// True if `path` is a directory holding a config.json (a Hugging Face model folder).
bool is_hf_dir(const std::string& path);

// Converts the folder to GGUF in $TMPDIR (or /tmp), maps it and unlinks it at once, so the
// weights live only in the mapping. Keeps the checkpoint's float type where slm's kernels compute
// it, else F32.
GGUFFile open_hf_dir_as_gguf(const std::string& dir);

} // namespace slm::hf
