// slm/batch.h - several independent sequences decoded together, each in its own slot of KV cache.
//
//   slm::BatchOptions bo;
//   bo.n_slots = 4;                     // sequences held at once
//   bo.n_ctx_slot = 512;                // positions each slot can hold
//   slm::BatchSession b(model, bo);
//   std::vector<slm::BatchInput> in = {{0, prompt_a}, {1, prompt_b}, {2, {&next_c, 1}}};
//   b.decode(in);                       // one forward pass for all of them (when the model allows)
//   const float* la = b.logits(0);      // after prompt_a's last token, as if slot 0 ran alone
//
// What `slm serve` schedules its requests on (continuous batching): a request owns a slot while it
// runs; between two decode() calls new requests may join (their prompts ride in the same pass as
// the others' next tokens) and finished ones leave (clear). Each slot's logits equal those of a
// Session holding the same tokens, up to the order in which floating-point sums are taken.
#pragma once

#include "slm/model.h"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace slm {

struct BatchOptions {
    uint32_t n_slots = 1;              // sequences held at once (1..256)
    uint32_t n_ctx_slot = 0;           // positions per slot; 0 = the model's training context
    uint32_t n_batch = 512;            // most tokens in one forward pass, all slots together
    GGMLType kv_type = GGMLType::F16;  // as SessionOptions::kv_type
    int n_threads = 0;                 // 0 = one per physical core
    bool swa_full = false;             // as SessionOptions::swa_full (per slot)
};

// Tokens to append to one slot. Slots appear at most once in a decode() call.
struct BatchInput {
    uint32_t slot = 0;
    std::span<const int32_t> tokens;   // not empty
    // Keep the logits after every token of the input, not only the last (speculative decoding
    // verifies a drafted block in one pass and needs a row per position): logits(i, j).
    bool all_logits = false;
};

struct BatchSessionState;

class BatchSession {
public:
    // Throws slm::Error for n_slots outside 1..256, a context the model cannot take, or an
    // unsupported KV type, as Session does.
    BatchSession(std::shared_ptr<const Model> model, const BatchOptions& opts);
    ~BatchSession();
    BatchSession(const BatchSession&) = delete;
    BatchSession& operator=(const BatchSession&) = delete;

    // Appends each input's tokens to its slot (positions n_past(slot)..) and evaluates them.
    // Afterwards logits(i) holds the n_vocab logits after input i's last token. Inputs are
    // checked before anything is evaluated (slot range, duplicates, empty inputs, token ids,
    // context overflow of a slot): on error nothing changes and slm::Error names the input.
    void decode(std::span<const BatchInput> inputs);
    const float* logits(size_t input) const;
    // After the j-th token of input `input` (j < its token count); needs all_logits for any j but
    // the last. The rows of one input are contiguous: logits(i, j + 1) == logits(i, j) + n_vocab.
    const float* logits(size_t input, size_t j) const;

    uint32_t n_past(uint32_t slot) const;   // positions cached in the slot
    void clear(uint32_t slot);               // empties the slot
    // Forgets the slot's positions >= n (see Session::truncate for models with a recurrent state).
    void truncate(uint32_t slot, uint32_t n);
    bool can_truncate(uint32_t slot, uint32_t n) const;  // as Session::can_truncate, for one slot
    // Session::context_shift for one slot: forgets its positions [n_keep, n_keep + n_discard) and
    // moves the later ones down (keys re-rotated). Throws slm::Error when not batched() (a
    // recurrent state cannot forget) or for more positions than the slot holds.
    void context_shift(uint32_t slot, uint32_t n_keep, uint32_t n_discard);

    uint32_t n_slots() const;
    uint32_t n_ctx_slot() const;
    int n_threads() const;
    // Whether decode() evaluates all slots in one forward pass (reading the weights once per
    // pass); false when it has to run them one after the other (recurrent models).
    bool batched() const;
    // Bytes of KV cache (and recurrent state) held for all slots.
    size_t cache_bytes() const;
    const Model& model() const { return *model_; }

private:
    std::shared_ptr<const Model> model_;
    std::unique_ptr<BatchSessionState> st_;
};

} // namespace slm
