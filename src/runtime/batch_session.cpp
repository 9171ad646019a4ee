// batch_session.cpp - BatchSession: slots of KV cache decoded together.
//
// This version keeps one Session per slot and evaluates the inputs one after the other: correct
// for every architecture, and the reference the single-pass batched forward is tested against.
#include "slm/batch.h"

#include "slm/error.h"

#include <algorithm>
#include <cstring>

namespace slm {

struct BatchSessionState {
    BatchOptions opts;
    std::vector<std::unique_ptr<Session>> slots;
    std::vector<float> logits;  // one row per input of the last decode()
    size_t n_rows = 0;
};

BatchSession::BatchSession(std::shared_ptr<const Model> model, const BatchOptions& opts)
    : model_(std::move(model)), st_(std::make_unique<BatchSessionState>()) {
    if (opts.n_slots < 1 || opts.n_slots > 256) fail("batch: n_slots = %u must be in 1..256", opts.n_slots);
    st_->opts = opts;
    SessionOptions so;
    so.n_ctx = opts.n_ctx_slot;
    so.n_batch = opts.n_batch;
    so.kv_type = opts.kv_type;
    so.n_threads = opts.n_threads;
    for (uint32_t s = 0; s < opts.n_slots; ++s) st_->slots.push_back(std::make_unique<Session>(model_, so));
    st_->opts.n_ctx_slot = st_->slots[0]->n_ctx();
}

BatchSession::~BatchSession() = default;

void BatchSession::decode(std::span<const BatchInput> inputs) {
    BatchSessionState& st = *st_;
    const HParams& hp = model_->hparams();
    std::vector<uint8_t> seen(st.slots.size(), 0);
    for (size_t i = 0; i < inputs.size(); ++i) {
        const BatchInput& in = inputs[i];
        if (in.slot >= st.slots.size()) fail("batch: input %zu: slot %u is outside 0..%zu", i, in.slot, st.slots.size() - 1);
        if (seen[in.slot]) fail("batch: input %zu: slot %u appears twice", i, in.slot);
        seen[in.slot] = 1;
        if (in.tokens.empty()) fail("batch: input %zu (slot %u) has no tokens", i, in.slot);
        for (size_t t = 0; t < in.tokens.size(); ++t)
            if (in.tokens[t] < 0 || static_cast<uint32_t>(in.tokens[t]) >= hp.n_vocab)
                fail("batch: input %zu (slot %u): token id %d at index %zu is outside the vocabulary [0, %u)", i, in.slot,
                     in.tokens[t], t, hp.n_vocab);
        const Session& s = *st.slots[in.slot];
        if (s.n_past() + in.tokens.size() > s.n_ctx())
            fail("batch: input %zu (slot %u): %zu tokens after %u would overflow the slot's context of %u", i, in.slot,
                 in.tokens.size(), s.n_past(), s.n_ctx());
    }
    st.logits.resize(inputs.size() * hp.n_vocab);
    st.n_rows = inputs.size();
    for (size_t i = 0; i < inputs.size(); ++i) {
        const float* l = st.slots[inputs[i].slot]->eval(inputs[i].tokens);
        std::memcpy(st.logits.data() + i * hp.n_vocab, l, hp.n_vocab * sizeof(float));
    }
}

const float* BatchSession::logits(size_t input) const {
    if (input >= st_->n_rows) fail("batch: logits(%zu): the last decode had %zu inputs", input, st_->n_rows);
    return st_->logits.data() + input * model_->hparams().n_vocab;
}

uint32_t BatchSession::n_past(uint32_t slot) const {
    if (slot >= st_->slots.size()) fail("batch: slot %u is outside 0..%zu", slot, st_->slots.size() - 1);
    return st_->slots[slot]->n_past();
}

void BatchSession::clear(uint32_t slot) {
    if (slot >= st_->slots.size()) fail("batch: slot %u is outside 0..%zu", slot, st_->slots.size() - 1);
    st_->slots[slot]->reset();
}

void BatchSession::truncate(uint32_t slot, uint32_t n) {
    if (slot >= st_->slots.size()) fail("batch: slot %u is outside 0..%zu", slot, st_->slots.size() - 1);
    st_->slots[slot]->truncate(n);
}

uint32_t BatchSession::n_slots() const { return static_cast<uint32_t>(st_->slots.size()); }
uint32_t BatchSession::n_ctx_slot() const { return st_->opts.n_ctx_slot; }
int BatchSession::n_threads() const { return st_->slots[0]->n_threads(); }
bool BatchSession::batched() const { return false; }

size_t BatchSession::cache_bytes() const {
    const HParams& hp = model_->hparams();
    const size_t es = st_->opts.kv_type == GGMLType::F32 ? 4 : 2;
    size_t per_pos = 0;
    for (uint32_t il = 0; il < hp.n_layer; ++il) per_pos += (hp.n_embd_k_gqa(il) + hp.n_embd_v_gqa(il)) * es;
    return per_pos * st_->opts.n_ctx_slot * st_->slots.size();
}

} // namespace slm
