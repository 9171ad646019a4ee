// logits_file.h - the base-model log-probability file of `slm eval perplexity --save-logits` and
// `--kl-divergence`, in the layout llama.cpp's llama-perplexity writes (--kl-divergence-base) and
// reads (--kl-divergence), so a file written by either program can be read by the other.
//
// Layout (little-endian, no padding between fields):
//
//   char     magic[8]      "_logits_"
//   uint32   n_ctx         tokens per chunk (-c)
//   int32    n_vocab       logits per token
//   int32    n_chunk       chunks that follow
//   int32    tokens[n_ctx * n_chunk]   the tokenized text the chunks were cut from (tokens[0] is the
//                                      BOS the tokenizer added; a chunk's first token is replaced by
//                                      BOS when it is evaluated, it is stored unreplaced)
//   then per chunk, n_ctx - 1 - n_ctx/2 rows (one per scored token: the logits at positions
//   n_ctx/2 .. n_ctx-2, which predict tokens n_ctx/2+1 .. n_ctx-1 of the chunk), each of
//   row_u16 = 2*((n_vocab+1)/2) + 4 uint16 values:
//     float   scale          (max_logit - min_logit) / 65535
//     float   min_log_prob   log-probability of the smallest logit kept
//     uint16  q[n_vocab]     log p_i ~= scale * q[i] + min_log_prob  (q = 0 for logits more than
//                            16 below the maximum, which are clamped to it; slm lowers that floor
//                            to the scored token's logit when it is lower still, see below)
//     uint16  pad            only when n_vocab is odd
//
// A 16-bit quantized log-probability per vocabulary entry (step at most 16/65535 ~ 2.4e-4 nats)
// keeps a base file at 2 bytes per logit, half of float, and is exact enough for KL divergences
// well below 1e-4.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace slm {

class MappedFile;

inline constexpr char LOGITS_FILE_MAGIC[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
inline constexpr size_t LOGITS_FILE_HEADER_BYTES = 8 + 4 + 4 + 4;

// uint16 values per stored row: 4 for the two floats, n_vocab rounded up to even.
inline size_t logits_row_u16(int32_t n_vocab) { return 2 * ((static_cast<size_t>(n_vocab) + 1) / 2) + 4; }
// Scored tokens (stored rows) per chunk of n_ctx tokens: the second half, less the last position.
inline uint32_t logits_rows_per_chunk(uint32_t n_ctx) { return n_ctx - 1 - n_ctx / 2; }

// Quantizes the log-softmax of one row of logits into `row` (logits_row_u16(n_vocab) values),
// as llama-perplexity does, except that the range is widened to keep `target` (the token this row
// predicts; -1 = none) when it lies more than 16 nats below the top logit, where llama.cpp would
// store it as that floor.
void quantize_log_probs(const float* logits, int32_t n_vocab, uint16_t* row, int32_t target = -1);

// Reads a base file; validates the whole layout on open (magic, counts, exact file size, every
// token id in range) and throws slm::Error naming the file and the field. Nothing is allocated
// from a count before the count is checked against the file size.
class LogitsFileReader {
public:
    explicit LogitsFileReader(const std::string& path);                      // memory-maps the file
    LogitsFileReader(const uint8_t* data, size_t size, std::string source);  // borrows a buffer
    ~LogitsFileReader();
    LogitsFileReader(LogitsFileReader&&) noexcept;

    uint32_t n_ctx() const { return n_ctx_; }
    int32_t n_vocab() const { return n_vocab_; }
    int32_t n_chunk() const { return n_chunk_; }
    uint32_t rows_per_chunk() const { return logits_rows_per_chunk(n_ctx_); }
    const std::string& source() const { return source_; }
    const std::vector<int32_t>& tokens() const { return tokens_; }  // n_ctx * n_chunk

    // Row r of chunk c: scale, min_log_prob and the n_vocab quantized values. Throws slm::Error if
    // c or r is out of range or the row's scale / min_log_prob is not a finite number (scale >= 0).
    struct Row {
        float scale;
        float min_log_prob;
        const uint16_t* q;  // n_vocab values (2-byte aligned in the mapping)
        float log_prob(int32_t i) const { return scale * q[i] + min_log_prob; }
    };
    Row row(int32_t chunk, uint32_t r) const;

private:
    void parse();
    std::unique_ptr<MappedFile> map_;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string source_;
    uint32_t n_ctx_ = 0;
    int32_t n_vocab_ = 0, n_chunk_ = 0;
    std::vector<int32_t> tokens_;
    size_t rows_offset_ = 0;
};

// Writes a base file to `path`.tmp and renames it to `path` in finish(), once every row of every
// chunk has been written; an unfinished writer removes its temp file.
class LogitsFileWriter {
public:
    LogitsFileWriter(const std::string& path, uint32_t n_ctx, int32_t n_vocab, int32_t n_chunk,
                     std::span<const int32_t> tokens);  // tokens: n_ctx * n_chunk
    ~LogitsFileWriter();
    LogitsFileWriter(const LogitsFileWriter&) = delete;
    LogitsFileWriter& operator=(const LogitsFileWriter&) = delete;

    // n_rows rows of logits_row_u16(n_vocab) values each, in file order.
    void write_rows(const uint16_t* rows, size_t n_rows);
    void finish();

private:
    void write(const void* p, size_t n);
    std::string path_, tmp_;
    FILE* f_ = nullptr;
    int32_t n_vocab_;
    uint64_t rows_left_;
};

} // namespace slm
