// slm/limits.h - resource limits on untrusted input (model files, side files, templates).
//
// Every number slm reads from a file is checked against the file itself (a tensor lies inside the
// file, a string's length fits in what remains, ...). The limits here bound what such checks
// cannot: how large a context a session allocates, how much metadata a loader keeps, how long a
// chat template may run. Each has a safe default; input past a limit is refused with slm::Error
// naming the file, the value and the limit, e.g.
//   gguf: big.gguf: key 'tokenizer.ggml.tokens': array of 20000000 STRING is more than the limit
//   max_array_elements = 16777216 (raise it with --limit max_array_elements=N or SLM_LIMITS)
//
// The `slm` tool sets them with `--limit NAME=VALUE` (any command, repeatable) or the environment
// variable SLM_LIMITS="NAME=VALUE,NAME=VALUE"; `slm limits` prints them. A library user calls
// set_limit() or set_limits() before loading anything (they are process-wide and not
// synchronised: set them before other threads read them). SECURITY.md explains each.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm {

struct Limits {
    // Positions per sequence a session may allocate a KV cache for (run, chat, eval, serve).
    uint32_t max_context = 131072;
    // Bytes of metadata a loader keeps: the GGUF key-value section, a safetensors header, and
    // each JSON side file (config.json, tokenizer.json, tokenizer_config.json).
    uint64_t max_metadata_bytes = 256ull << 20;
    // Elements of one GGUF metadata array (a vocabulary is an array of this many strings).
    uint64_t max_array_elements = 1ull << 24;
    // Tensors in one model file (GGUF or safetensors).
    uint64_t max_tensors = 65536;
    // Bytes of one tensor, and of all tensors of one model file. Each tensor must also lie
    // inside its file and tensors may not overlap (fixed rules, not limits).
    uint64_t max_tensor_bytes = 32ull << 30;
    uint64_t max_model_bytes = 256ull << 30;
    // Chat and task templates (Jinja): nesting of macro calls and recursive loops, loop
    // iterations plus macro calls in one render, the rendered text, and the evaluation work.
    uint64_t template_max_depth = 100;
    uint64_t template_max_iterations = 1000000;
    uint64_t template_max_output_bytes = 64ull << 20;
    uint64_t template_max_work = 200000000;
};

// The limits in force (defaults until changed).
const Limits& limits();
// Replaces them all.
void set_limits(const Limits& l);
// Sets one by name; the value is an integer with an optional K, M, G or T suffix (powers of 1024).
// Throws slm::Error naming the limit for an unknown name or a bad value.
void set_limit(std::string_view name, std::string_view value);
// Applies "NAME=VALUE,NAME=VALUE" (the SLM_LIMITS format; spaces and empty items are ignored).
void set_limits_from_string(std::string_view spec, std::string_view origin);

struct LimitInfo {
    std::string name;
    uint64_t value = 0;
    uint64_t default_value = 0;
    std::string what;
};
// Every limit with its current and default value and what it bounds, in a fixed order.
std::vector<LimitInfo> describe_limits();

// The message tail every limit error ends with: "the limit NAME = VALUE (raise it with ...)".
std::string limit_hint(std::string_view name, uint64_t value);

} // namespace slm
