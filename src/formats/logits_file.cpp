// logits_file.cpp - reader and writer of the base log-probability file (layout in logits_file.h).
#include "formats/logits_file.h"

#include "core/mmap.h"
#include "slm/error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace slm {

void quantize_log_probs(const float* logits, int32_t n_vocab, uint16_t* row, int32_t target) {
    float max_logit = logits[0], min_logit = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) {
        max_logit = std::max(max_logit, logits[i]);
        min_logit = std::min(min_logit, logits[i]);
    }
    // Probabilities below e^-16 of the top one are stored as that floor: they add nothing
    // measurable to a KL divergence, and the floor keeps the 16-bit step at most 16/65535.
    min_logit = std::max(min_logit, max_logit - 16);
    // ...but never above the scored token: its log-probability gives PPL(base), and text the base
    // model finds very unlikely (stray Unicode in TinyStories) would otherwise be read back as
    // e^-16 and make PPL(base) too low (1.2% for stories260K on tinystories_val). The row keeps the
    // same layout, so llama.cpp reads it as it reads its own.
    if (target >= 0 && target < n_vocab) min_logit = std::min(min_logit, logits[target]);
    double sum_exp = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
    const float log_sum_exp = static_cast<float>(std::log(sum_exp));
    const float min_log_prob = min_logit - max_logit - log_sum_exp;
    const float scale = (max_logit - min_logit) / 65535.f;
    std::memcpy(row, &scale, 4);
    std::memcpy(row + 2, &min_log_prob, 4);
    uint16_t* q = row + 4;
    const size_t n_row = logits_row_u16(n_vocab) - 4;
    std::fill(q, q + n_row, uint16_t{0});
    if (scale == 0) return;
    const float inv_scale = 1 / scale;
    for (int32_t i = 0; i < n_vocab; ++i) {
        if (!(logits[i] > min_logit)) continue;
        const long v = std::lrint(inv_scale * (logits[i] - min_logit));  // round half to even
        q[i] = static_cast<uint16_t>(std::clamp(v, 0L, 65535L));
    }
}

// ---- reader ---------------------------------------------------------------------------------

LogitsFileReader::LogitsFileReader(const std::string& path) : source_(path) {
    map_ = std::make_unique<MappedFile>(path);
    data_ = map_->data();
    size_ = map_->size();
    parse();
}

LogitsFileReader::LogitsFileReader(const uint8_t* data, size_t size, std::string source)
    : data_(data), size_(size), source_(std::move(source)) {
    parse();
}

LogitsFileReader::~LogitsFileReader() = default;
LogitsFileReader::LogitsFileReader(LogitsFileReader&&) noexcept = default;

void LogitsFileReader::parse() {
    const char* f = source_.c_str();
    if (size_ < LOGITS_FILE_HEADER_BYTES)
        fail("logits file: %s: %zu bytes, shorter than the %zu-byte header", f, size_, LOGITS_FILE_HEADER_BYTES);
    if (std::memcmp(data_, LOGITS_FILE_MAGIC, 8) != 0)
        fail("logits file: %s: magic is not '_logits_': not a base log-probability file "
             "(written by slm eval perplexity --save-logits or llama-perplexity --kl-divergence-base)", f);
    std::memcpy(&n_ctx_, data_ + 8, 4);
    std::memcpy(&n_vocab_, data_ + 12, 4);
    std::memcpy(&n_chunk_, data_ + 16, 4);
    if (n_ctx_ < 3 || n_ctx_ > (1u << 24))
        fail("logits file: %s: field 'n_ctx' is %u, not in [3, 16777216]", f, n_ctx_);
    if (n_vocab_ < 1) fail("logits file: %s: field 'n_vocab' is %d, not positive", f, n_vocab_);
    if (n_chunk_ < 1) fail("logits file: %s: field 'n_chunk' is %d, not positive", f, n_chunk_);

    // Every product below fits in 128 bits; the file size bounds them before anything is allocated.
    using u128 = unsigned __int128;
    const u128 n_tok = static_cast<u128>(n_ctx_) * static_cast<u128>(n_chunk_);
    const u128 row_bytes = static_cast<u128>(logits_row_u16(n_vocab_)) * 2;
    const u128 want = LOGITS_FILE_HEADER_BYTES + n_tok * 4 +
                      static_cast<u128>(n_chunk_) * logits_rows_per_chunk(n_ctx_) * row_bytes;
    if (want != size_) {
        const unsigned long long w = want > ~0ull ? ~0ull : static_cast<unsigned long long>(want);
        fail("logits file: %s: n_ctx %u, n_vocab %d and n_chunk %d need %llu bytes but the file has %zu (%s)", f,
             n_ctx_, n_vocab_, n_chunk_, w, size_, want > size_ ? "truncated?" : "trailing data?");
    }
    tokens_.resize(static_cast<size_t>(n_tok));
    std::memcpy(tokens_.data(), data_ + LOGITS_FILE_HEADER_BYTES, tokens_.size() * 4);
    for (size_t i = 0; i < tokens_.size(); ++i)
        if (tokens_[i] < 0 || tokens_[i] >= n_vocab_)
            fail("logits file: %s: field 'tokens[%zu]' is %d, outside the vocabulary [0, %d)", f, i, tokens_[i], n_vocab_);
    rows_offset_ = LOGITS_FILE_HEADER_BYTES + tokens_.size() * 4;
}

LogitsFileReader::Row LogitsFileReader::row(int32_t chunk, uint32_t r) const {
    if (chunk < 0 || chunk >= n_chunk_ || r >= rows_per_chunk())
        fail("logits file: %s: row %u of chunk %d out of range (%d chunks of %u rows)", source_.c_str(), r, chunk,
             n_chunk_, rows_per_chunk());
    const size_t row_bytes = logits_row_u16(n_vocab_) * 2;
    const size_t off = rows_offset_ + (static_cast<size_t>(chunk) * rows_per_chunk() + r) * row_bytes;
    Row out;
    std::memcpy(&out.scale, data_ + off, 4);
    std::memcpy(&out.min_log_prob, data_ + off + 4, 4);
    if (!std::isfinite(out.scale) || out.scale < 0 || !std::isfinite(out.min_log_prob) || out.min_log_prob > 0)
        fail("logits file: %s: chunk %d row %u: scale %g / min_log_prob %g is not a valid row header (corrupt file?)",
             source_.c_str(), chunk, r, static_cast<double>(out.scale), static_cast<double>(out.min_log_prob));
    // The header and token block are multiples of 4 bytes and rows are whole uint16s, so the
    // values are 2-byte aligned in a mapping (page aligned) or a vector.
    out.q = reinterpret_cast<const uint16_t*>(data_ + off + 8);
    return out;
}

// ---- writer ---------------------------------------------------------------------------------

LogitsFileWriter::LogitsFileWriter(const std::string& path, uint32_t n_ctx, int32_t n_vocab, int32_t n_chunk,
                                   std::span<const int32_t> tokens)
    : path_(path), tmp_(path + ".tmp"), n_vocab_(n_vocab),
      rows_left_(static_cast<uint64_t>(n_chunk) * logits_rows_per_chunk(n_ctx)) {
    if (n_ctx < 3 || n_vocab < 1 || n_chunk < 1 || tokens.size() != static_cast<size_t>(n_ctx) * n_chunk)
        fail("logits file writer: %s: bad shape (n_ctx %u, n_vocab %d, n_chunk %d, %zu tokens)", path.c_str(), n_ctx,
             n_vocab, n_chunk, tokens.size());
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail("logits file writer: %s: cannot create: %s", tmp_.c_str(), std::strerror(errno));
    write(LOGITS_FILE_MAGIC, 8);
    write(&n_ctx, 4);
    write(&n_vocab, 4);
    write(&n_chunk, 4);
    write(tokens.data(), tokens.size() * 4);
}

LogitsFileWriter::~LogitsFileWriter() {
    if (f_) {
        std::fclose(f_);
        std::remove(tmp_.c_str());
    }
}

void LogitsFileWriter::write(const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f_) != n)
        fail("logits file writer: %s: write failed: %s", tmp_.c_str(), std::strerror(errno));
}

void LogitsFileWriter::write_rows(const uint16_t* rows, size_t n_rows) {
    if (!f_) fail("logits file writer: %s: already finished", path_.c_str());
    if (n_rows > rows_left_)
        fail("logits file writer: %s: %zu rows given, only %llu left in the header's chunks", path_.c_str(), n_rows,
             static_cast<unsigned long long>(rows_left_));
    write(rows, n_rows * logits_row_u16(n_vocab_) * 2);
    rows_left_ -= n_rows;
}

void LogitsFileWriter::finish() {
    if (!f_) fail("logits file writer: %s: already finished", path_.c_str());
    if (rows_left_ != 0)
        fail("logits file writer: %s: %llu rows still missing", path_.c_str(), static_cast<unsigned long long>(rows_left_));
    const bool ok = std::fflush(f_) == 0;
    const int e = errno;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok || !closed) {
        std::remove(tmp_.c_str());
        fail("logits file writer: %s: flush failed: %s", tmp_.c_str(), std::strerror(ok ? errno : e));
    }
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
        const int re = errno;
        std::remove(tmp_.c_str());
        fail("logits file writer: cannot rename %s to %s: %s", tmp_.c_str(), path_.c_str(), std::strerror(re));
    }
}

} // namespace slm
