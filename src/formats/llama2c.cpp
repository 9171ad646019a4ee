// llama2c.cpp - llama2.c legacy checkpoint + tokenizer.bin -> GGUF, matching the file llama.cpp's
// examples/convert-llama2c-to-ggml writes (keys, value types, tensor names, shapes and order).
//
// The checkpoint layout is run.c's memory_map_weights(); the tokenizer layout is run.c's
// build_tokenizer(). Both files are memory-mapped, every size is checked against the file before
// use, and the tensors are handed to the writer as pointers into the checkpoint's mapping.
#include "slm/convert.h"

#include "core/mmap.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <vector>

namespace slm {

namespace {

// Sanity bounds: far above any llama2.c model (the largest, Llama 2 7B exported, has dim 4096,
// hidden 11008, 32 layers, vocab 32000), low enough that no size computed from them overflows.
constexpr int64_t kMaxDim = 1 << 16;
constexpr int64_t kMaxHidden = 1 << 18;
constexpr int64_t kMaxLayers = 1 << 12;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int64_t kMaxSeqLen = 1 << 24;

// run.c's Config, in file order.
struct Llama2cConfig {
    int32_t dim;
    int32_t hidden_dim;
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t vocab_size;  // negative: a separate classifier (wcls) follows the weights
    int32_t seq_len;
};
static_assert(sizeof(Llama2cConfig) == 28);

// llama2.c's versioned exports (export.py --version 1/2) open with the magic "ak42"; read as a
// legacy header it would be a dim of 1,630,221,362.
constexpr uint32_t kLlama2cMagic = 0x616b3432;

// Token types as llama.cpp's llama_token_type numbers them.
constexpr int32_t kTokenNormal = 1;
constexpr int32_t kTokenUnknown = 2;
constexpr int32_t kTokenControl = 3;
constexpr int32_t kTokenByte = 6;

// The converter's fixed special ids and its "no token" value (LLAMA_TOKEN_NULL, -1, stored as u32).
constexpr uint32_t kUnkId = 0;
constexpr uint32_t kBosId = 1;
constexpr uint32_t kEosId = 2;
constexpr uint32_t kNullId = 0xFFFFFFFFu;

// llama.cpp's converter records its own --n-ctx default, not the checkpoint's seq_len.
constexpr uint32_t kConverterContextLength = 128;

// Element counts of the checkpoint's arrays, all derived from a validated header.
struct Layout {
    int64_t n_embd, n_ff, n_layer, n_head, n_head_kv, n_vocab, n_kv_embd, head_size, seq_len;
    bool shared_classifier;
};

void check_range(const std::string& path, const char* field, int64_t v, int64_t max) {
    if (v <= 0 || v > max)
        fail("llama2c: %s: header field '%s' = %" PRId64 " must be in [1, %" PRId64 "]", path.c_str(), field, v, max);
}

Layout validate_header(const std::string& path, const Llama2cConfig& c) {
    if (static_cast<uint32_t>(c.dim) == kLlama2cMagic)
        fail("llama2c: %s: starts with the magic 'ak42' of a versioned llama2.c export; only the legacy "
             "checkpoint (export.py --version 0) is supported",
             path.c_str());
    check_range(path, "dim", c.dim, kMaxDim);
    check_range(path, "hidden_dim", c.hidden_dim, kMaxHidden);
    check_range(path, "n_layers", c.n_layers, kMaxLayers);
    check_range(path, "n_heads", c.n_heads, c.dim);
    check_range(path, "n_kv_heads", c.n_kv_heads, c.n_heads);
    // int64 so that INT32_MIN has a magnitude.
    const int64_t vocab = c.vocab_size < 0 ? -int64_t(c.vocab_size) : int64_t(c.vocab_size);
    if (vocab < 3 || vocab > kMaxVocab)
        fail("llama2c: %s: header field 'vocab_size' = %d: |vocab_size| must be in [3, %" PRId64 "] (ids 0-2 are "
             "<unk>, <s>, </s>)",
             path.c_str(), c.vocab_size, kMaxVocab);
    check_range(path, "seq_len", c.seq_len, kMaxSeqLen);
    if (c.dim % c.n_heads != 0)
        fail("llama2c: %s: header field 'dim' = %d is not a multiple of n_heads = %d", path.c_str(), c.dim, c.n_heads);
    if (c.n_heads % c.n_kv_heads != 0)
        fail("llama2c: %s: header field 'n_heads' = %d is not a multiple of n_kv_heads = %d", path.c_str(), c.n_heads,
             c.n_kv_heads);
    const int64_t head_size = c.dim / c.n_heads;
    // RoPE rotates pairs, and the stored freq_cis tables hold head_size / 2 entries per position.
    if (head_size % 2 != 0)
        fail("llama2c: %s: head size dim / n_heads = %" PRId64 " must be even", path.c_str(), head_size);

    Layout l;
    l.n_embd = c.dim;
    l.n_ff = c.hidden_dim;
    l.n_layer = c.n_layers;
    l.n_head = c.n_heads;
    l.n_head_kv = c.n_kv_heads;
    l.n_vocab = vocab;
    l.head_size = head_size;
    l.n_kv_embd = head_size * c.n_kv_heads;
    l.seq_len = c.seq_len;
    l.shared_classifier = c.vocab_size > 0;
    return l;
}

// Pieces, scores and types of tokenizer.bin (run.c build_tokenizer: int32 max_token_length, then per
// token float score, int32 len, len bytes), converted as llama.cpp's load_vocab does for a
// non-GGUF vocabulary.
struct Vocab {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<int32_t> types;
};

std::string escape_spaces(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (char ch : s) {
        if (ch == ' ')
            out += "\xe2\x96\x81";  // U+2581, SentencePiece's visible space
        else
            out += ch;
    }
    return out;
}

Vocab read_vocab(const std::string& path, int64_t n_vocab) {
    MappedFile f(path);
    const uint8_t* p = f.data();
    const size_t size = f.size();
    // max_token_length only sizes run.c's buffers; llama.cpp ignores it, and so do we.
    if (size < 4) fail("llama2c: %s: file is %zu bytes, too short for the max_token_length field", path.c_str(), size);
    size_t off = 4;

    Vocab v;
    v.tokens.reserve(static_cast<size_t>(n_vocab));
    v.scores.reserve(static_cast<size_t>(n_vocab));
    v.types.reserve(static_cast<size_t>(n_vocab));
    for (int64_t id = 0; id < n_vocab; ++id) {
        if (size - off < 8)
            fail("llama2c: %s: token %" PRId64 ": entry at offset %zu runs past the end of the file (size %zu; the "
                 "model has %" PRId64 " tokens)",
                 path.c_str(), id, off, size, n_vocab);
        float score;
        uint32_t len;  // int32 in run.c; unsigned here so a negative length reads as huge and is refused
        std::memcpy(&score, p + off, 4);
        std::memcpy(&len, p + off + 4, 4);
        off += 8;
        if (len > size - off)
            fail("llama2c: %s: token %" PRId64 ": length %" PRIu32 " at offset %zu runs past the end of the file "
                 "(size %zu)",
                 path.c_str(), id, len, off - 4, size);
        std::string text(reinterpret_cast<const char*>(p + off), len);
        off += len;

        // The converter overrides the llama2.c pieces of ids 0-2 ("<unk>", "\n<s>\n", "\n</s>\n").
        int32_t type = kTokenNormal;
        unsigned char byte_val;
        if (id == kUnkId) {
            text = "<unk>";
            type = kTokenUnknown;
        } else if (id == kBosId) {
            text = "<s>";
            type = kTokenControl;
        } else if (id == kEosId) {
            text = "</s>";
            type = kTokenControl;
        } else if (text.empty()) {
            type = kTokenControl;
        } else if (std::sscanf(text.c_str(), "<0x%02hhX>", &byte_val) == 1) {
            // The same scanf test the converter applies, so the same pieces (including any it
            // accepts loosely, since the closing '>' is not checked) become byte tokens.
            type = kTokenByte;
        }
        v.tokens.push_back(escape_spaces(text));
        v.scores.push_back(score);
        v.types.push_back(type);
    }
    return v;
}

} // namespace

void convert_llama2c(const std::string& model_bin, const std::string& tokenizer_bin, const std::string& out_gguf) {
    MappedFile model(model_bin);
    const size_t file_size = model.size();
    if (file_size < sizeof(Llama2cConfig))
        fail("llama2c: %s: file is %zu bytes, too short for the %zu-byte header", model_bin.c_str(), file_size,
             sizeof(Llama2cConfig));
    Llama2cConfig cfg;
    std::memcpy(&cfg, model.data(), sizeof cfg);
    const Layout l = validate_header(model_bin, cfg);

    // Element offsets of run.c's arrays, in file order. The bounds above keep every product < 2^50.
    const int64_t n_layer = l.n_layer, d = l.n_embd, ff = l.n_ff, kv = l.n_kv_embd;
    int64_t at = 0;
    auto take = [&](int64_t n) {
        int64_t start = at;
        at += n;
        return start;
    };
    const int64_t o_tok_embd = take(l.n_vocab * d);
    const int64_t o_rms_att = take(n_layer * d);
    const int64_t o_wq = take(n_layer * d * d);
    const int64_t o_wk = take(n_layer * d * kv);
    const int64_t o_wv = take(n_layer * d * kv);
    const int64_t o_wo = take(n_layer * d * d);
    const int64_t o_rms_ffn = take(n_layer * d);
    const int64_t o_w1 = take(n_layer * ff * d);
    const int64_t o_w2 = take(n_layer * d * ff);
    const int64_t o_w3 = take(n_layer * ff * d);
    const int64_t o_rms_final = take(d);
    take(l.seq_len * l.head_size);  // freq_cis_real and freq_cis_imag, seq_len x head_size / 2 each: unused
    const int64_t o_wcls = l.shared_classifier ? o_tok_embd : take(l.n_vocab * d);

    const uint64_t expected = sizeof(Llama2cConfig) + static_cast<uint64_t>(at) * sizeof(float);
    if (file_size < expected)
        fail("llama2c: %s: truncated: file is %zu bytes, the header (dim %d, hidden_dim %d, n_layers %d, n_heads %d, "
             "n_kv_heads %d, vocab_size %d, seq_len %d) needs %" PRIu64,
             model_bin.c_str(), file_size, cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads,
             cfg.vocab_size, cfg.seq_len, expected);
    // llama.cpp's converter refuses leftover bytes too: they mean the header was misread.
    if (file_size > expected)
        fail("llama2c: %s: file is %zu bytes, %" PRIu64 " more than the header (dim %d, n_layers %d, vocab_size %d) "
             "accounts for",
             model_bin.c_str(), file_size, file_size - expected, cfg.dim, cfg.n_layers, cfg.vocab_size);

    Vocab vocab = read_vocab(tokenizer_bin, l.n_vocab);

    // Keys in the converter's order and types (save_as_llama_model).
    GGUFWriter w;
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(std::move(vocab.tokens)));
    w.set("tokenizer.ggml.scores", GGUFValue::f32_array(vocab.scores));
    w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(vocab.types));
    w.set("tokenizer.ggml.model", GGUFValue::string("llama"));
    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("general.name", GGUFValue::string("llama"));
    w.set("tokenizer.ggml.unknown_token_id", GGUFValue::u32(kUnkId));
    w.set("tokenizer.ggml.bos_token_id", GGUFValue::u32(kBosId));
    w.set("tokenizer.ggml.eos_token_id", GGUFValue::u32(kEosId));
    // Spelled "seperator" by the converter (and by llama.cpp's GGUF key table).
    w.set("tokenizer.ggml.seperator_token_id", GGUFValue::u32(kNullId));
    w.set("tokenizer.ggml.padding_token_id", GGUFValue::u32(kNullId));
    w.set("llama.context_length", GGUFValue::u32(kConverterContextLength));
    w.set("llama.embedding_length", GGUFValue::u32(static_cast<uint32_t>(l.n_embd)));
    w.set("llama.feed_forward_length", GGUFValue::u32(static_cast<uint32_t>(l.n_ff)));
    w.set("llama.attention.head_count", GGUFValue::u32(static_cast<uint32_t>(l.n_head)));
    w.set("llama.attention.head_count_kv", GGUFValue::u32(static_cast<uint32_t>(l.n_head_kv)));
    w.set("llama.block_count", GGUFValue::u32(static_cast<uint32_t>(l.n_layer)));
    // llama2.c rotates the whole head; the converter writes min(64, head_size).
    w.set("llama.rope.dimension_count", GGUFValue::u32(static_cast<uint32_t>(l.head_size)));
    w.set("llama.attention.layer_norm_rms_epsilon", GGUFValue::f32(1e-5f));

    const float* weights = reinterpret_cast<const float*>(model.data() + sizeof(Llama2cConfig));
    auto add = [&](const std::string& name, int64_t offset, std::vector<int64_t> ne) {
        int64_t n = 1;
        for (int64_t x : ne) n *= x;
        w.add_tensor(name, GGMLType::F32, ne, weights + offset, static_cast<size_t>(n) * sizeof(float));
    };
    // run.c stores each matrix as (out, in) row-major, which is ggml's ne = {in, out}.
    add("token_embd.weight", o_tok_embd, {d, l.n_vocab});
    add("output_norm.weight", o_rms_final, {d});
    add("output.weight", o_wcls, {d, l.n_vocab});
    for (int64_t il = 0; il < n_layer; ++il) {
        const std::string blk = "blk." + std::to_string(il) + ".";
        add(blk + "attn_q.weight", o_wq + il * d * d, {d, d});
        add(blk + "attn_k.weight", o_wk + il * d * kv, {d, kv});
        add(blk + "attn_v.weight", o_wv + il * d * kv, {d, kv});
        add(blk + "attn_output.weight", o_wo + il * d * d, {d, d});
        add(blk + "attn_norm.weight", o_rms_att + il * d, {d});
        add(blk + "ffn_gate.weight", o_w1 + il * ff * d, {d, ff});
        add(blk + "ffn_down.weight", o_w2 + il * d * ff, {ff, d});
        add(blk + "ffn_up.weight", o_w3 + il * ff * d, {d, ff});
        add(blk + "ffn_norm.weight", o_rms_ffn + il * d, {d});
    }
    w.write(out_gguf);
}

} // namespace slm
