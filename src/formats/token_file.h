// token_file.h - reading whole files and pre-tokenized id files (llm.c shards or plain integers),
// shared by calibration (src/compress/calib.cpp) and training (src/train/data.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slm::formats {

// The whole file; `op` ("calibrate", "train") and `what` ("text", "token") start the error messages,
// which name the file. Refuses files over 4 GiB.
std::string read_whole_file(const std::string& path, const char* op, const char* what);

// True when the bytes start with llm.c's token-shard magic (20240520).
bool is_llmc_shard(const std::string& bytes);

// Token ids from `bytes` (the content of `path`): an llm.c shard (a 256 x int32 header: magic
// 20240520, version 1, token count; then uint16 tokens) or whitespace-separated decimal integers.
// Every id must be below n_vocab. Throws slm::Error starting with `op` and naming the file.
std::vector<int32_t> parse_token_file(const std::string& path, const std::string& bytes, uint32_t n_vocab,
                                      const char* op);
inline std::vector<int32_t> read_token_file(const std::string& path, uint32_t n_vocab, const char* op) {
    return parse_token_file(path, read_whole_file(path, op, "token"), n_vocab, op);
}

} // namespace slm::formats
