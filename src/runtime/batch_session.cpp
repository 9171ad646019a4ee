// batch_session.cpp - BatchSession: slots of KV cache decoded together.
//
// Attention-only models run every decode() as one forward pass: one SessionState whose cache holds
// the slots side by side (slot s owns rows [s * n_ctx_slot, (s + 1) * n_ctx_slot)); each token of
// the pass carries its own RoPE position, cache row and visible rows (SessionState::tok_pos /
// tok_row / tok_lo), so it writes and reads only its own slot, and the weights are read once for
// all slots. Only the rows whose logits are wanted (each input's last token) reach the output
// matrix (SessionState::logit_sel); an input with all_logits selects all of its tokens. Models with a recurrent state (Mamba, Jamba) keep one
// Session per slot, evaluated one after the other: a recurrent state is one sequence.
#include "slm/batch.h"

#include "core/thread_pool.h"
#include "models/arch.h"
#include "models/blocks.h"
#include "slm/error.h"

#include <algorithm>
#include <cstring>

namespace slm {

struct BatchSessionState {
    BatchOptions opts;
    // Batched: one state for all slots, and each slot's cached length.
    std::unique_ptr<SessionState> st;
    std::vector<uint32_t> n_past;
    // Fallback (recurrent models): one Session per slot.
    std::vector<std::unique_ptr<Session>> slots;
    std::vector<float> logits;  // the selected rows of the last decode(), input after input
    size_t n_rows = 0;          // inputs of the last decode()
    // Per input of the last decode(): its first row in `logits`, its token count, all_logits.
    std::vector<size_t> row0, n_tok;
    std::vector<uint8_t> all;
    // Per-token views of the current pass (kept to reuse their allocations).
    std::vector<int32_t> tokens;
    std::vector<uint32_t> pos, row, lo, sel;
};

static bool is_recurrent(const Model& m) {
    for (uint32_t il = 0; il < m.hparams().n_layer; ++il)
        if (m.arch().recurrent_state_floats(il) > 0) return true;
    return false;
}

BatchSession::BatchSession(std::shared_ptr<const Model> model, const BatchOptions& opts)
    : model_(std::move(model)), st_(std::make_unique<BatchSessionState>()) {
    if (opts.n_slots < 1 || opts.n_slots > 256) fail("batch: n_slots = %u must be in 1..256", opts.n_slots);
    st_->opts = opts;
    SessionOptions so;
    so.n_ctx = opts.n_ctx_slot;
    so.n_batch = opts.n_batch;
    so.kv_type = opts.kv_type;
    so.n_threads = opts.n_threads;
    so.swa_full = opts.swa_full;
    if (is_recurrent(*model_)) {
        for (uint32_t s = 0; s < opts.n_slots; ++s) st_->slots.push_back(std::make_unique<Session>(model_, so));
        st_->opts.n_ctx_slot = st_->slots[0]->n_ctx();
    } else {
        st_->st = make_session_state(*model_, so, opts.n_slots);
        st_->opts.n_ctx_slot = st_->st->n_ctx;
        st_->n_past.assign(opts.n_slots, 0);
    }
}

BatchSession::~BatchSession() = default;

void BatchSession::decode(std::span<const BatchInput> inputs) {
    BatchSessionState& bs = *st_;
    const HParams& hp = model_->hparams();
    const uint32_t n_slots = this->n_slots();
    std::vector<uint8_t> seen(n_slots, 0);
    size_t total = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const BatchInput& in = inputs[i];
        if (in.slot >= n_slots) fail("batch: input %zu: slot %u is outside 0..%u", i, in.slot, n_slots - 1);
        if (seen[in.slot]) fail("batch: input %zu: slot %u appears twice", i, in.slot);
        seen[in.slot] = 1;
        if (in.tokens.empty()) fail("batch: input %zu (slot %u) has no tokens", i, in.slot);
        for (size_t t = 0; t < in.tokens.size(); ++t)
            if (in.tokens[t] < 0 || static_cast<uint32_t>(in.tokens[t]) >= hp.n_vocab)
                fail("batch: input %zu (slot %u): token id %d at index %zu is outside the vocabulary [0, %u)", i, in.slot,
                     in.tokens[t], t, hp.n_vocab);
        const uint32_t np = n_past(in.slot);
        if (np + in.tokens.size() > n_ctx_slot())
            fail("batch: input %zu (slot %u): %zu tokens after %u would overflow the slot's context of %u", i, in.slot,
                 in.tokens.size(), np, n_ctx_slot());
        total += in.tokens.size();
    }
    bs.n_rows = 0;
    bs.row0.clear();
    bs.n_tok.clear();
    bs.all.clear();
    size_t n_out = 0;  // rows kept
    for (const BatchInput& in : inputs) {
        bs.row0.push_back(n_out);
        bs.n_tok.push_back(in.tokens.size());
        bs.all.push_back(in.all_logits ? 1 : 0);
        n_out += in.all_logits ? in.tokens.size() : 1;
    }
    bs.logits.resize(n_out * hp.n_vocab);
    if (!batched()) {
        for (size_t i = 0; i < inputs.size(); ++i) {
            Session& s = *bs.slots[inputs[i].slot];
            const float* l = s.eval(inputs[i].tokens, inputs[i].all_logits);
            if (inputs[i].all_logits) l = s.logits().data();
            const size_t n = inputs[i].all_logits ? inputs[i].tokens.size() : 1;
            std::memcpy(bs.logits.data() + bs.row0[i] * hp.n_vocab, l, n * hp.n_vocab * sizeof(float));
        }
        bs.n_rows = inputs.size();
        return;
    }

    // All inputs' tokens in one row of the pass, each with its position, cache row and the first
    // row of its slot; sel = each input's last token (every token with all_logits), in the order
    // of `logits`.
    SessionState& st = *bs.st;
    const uint32_t C = st.n_ctx;
    bs.tokens.clear();
    bs.pos.clear();
    bs.row.clear();
    bs.lo.clear();
    bs.sel.clear();
    for (const BatchInput& in : inputs) {
        const uint32_t base = in.slot * C, np = bs.n_past[in.slot];
        for (size_t t = 0; t < in.tokens.size(); ++t) {
            bs.tokens.push_back(in.tokens[t]);
            bs.pos.push_back(np + static_cast<uint32_t>(t));
            bs.row.push_back(base + np + static_cast<uint32_t>(t));
            bs.lo.push_back(base);
            if (in.all_logits) bs.sel.push_back(static_cast<uint32_t>(bs.tokens.size() - 1));
        }
        if (!in.all_logits) bs.sel.push_back(static_cast<uint32_t>(bs.tokens.size() - 1));
    }
    const size_t rows_max = std::min<size_t>(st.n_batch, bs.sel.size());
    if (st.logits.size() < rows_max * hp.n_vocab) st.logits.resize(rows_max * hp.n_vocab);

    // The per-token view lasts for this call only, whatever happens.
    struct Restore {
        SessionState& st;
        ~Restore() {
            st.tok_pos = st.tok_lo = st.tok_row = st.logit_sel = nullptr;
            st.n_logit_sel = 0;
            st.n_past = 0;
        }
    } restore{st};
    std::vector<uint32_t> chunk_sel;
    size_t done = 0, next_sel = 0;
    while (done < total) {
        const uint32_t n = static_cast<uint32_t>(std::min<size_t>(st.n_batch, total - done));
        // The selected tokens of this chunk, relative to it; a chunk holding no input's last
        // token still computes one row (the forward pass always has some), which is dropped.
        chunk_sel.clear();
        const size_t first_sel = next_sel;
        while (next_sel < bs.sel.size() && bs.sel[next_sel] < done + n)
            chunk_sel.push_back(static_cast<uint32_t>(bs.sel[next_sel++] - done));
        if (chunk_sel.empty()) chunk_sel.push_back(n - 1);
        st.n_past = 0;
        st.tok_pos = bs.pos.data() + done;
        st.tok_row = bs.row.data() + done;
        st.tok_lo = bs.lo.data() + done;
        st.logit_sel = chunk_sel.data();
        st.n_logit_sel = static_cast<uint32_t>(chunk_sel.size());
        model_->arch().forward(st, bs.tokens.data() + done, n, false);
        for (size_t i = first_sel; i < next_sel; ++i)
            std::memcpy(bs.logits.data() + i * hp.n_vocab, st.logits.data() + (i - first_sel) * hp.n_vocab,
                        hp.n_vocab * sizeof(float));
        done += n;
    }
    for (const BatchInput& in : inputs) bs.n_past[in.slot] += static_cast<uint32_t>(in.tokens.size());
    bs.n_rows = inputs.size();
}

const float* BatchSession::logits(size_t input) const {
    if (input >= st_->n_rows) fail("batch: logits(%zu): the last decode had %zu inputs", input, st_->n_rows);
    return logits(input, st_->n_tok[input] - 1);
}

const float* BatchSession::logits(size_t input, size_t j) const {
    const BatchSessionState& bs = *st_;
    if (input >= bs.n_rows) fail("batch: logits(%zu, %zu): the last decode had %zu inputs", input, j, bs.n_rows);
    if (j >= bs.n_tok[input])
        fail("batch: logits(%zu, %zu): input %zu had %zu tokens", input, j, input, bs.n_tok[input]);
    if (!bs.all[input] && j + 1 != bs.n_tok[input])
        fail("batch: logits(%zu, %zu): only the last token's logits are kept without all_logits", input, j);
    return bs.logits.data() + (bs.row0[input] + (bs.all[input] ? j : 0)) * model_->hparams().n_vocab;
}

uint32_t BatchSession::n_past(uint32_t slot) const {
    if (slot >= n_slots()) fail("batch: slot %u is outside 0..%u", slot, n_slots() - 1);
    return batched() ? st_->n_past[slot] : st_->slots[slot]->n_past();
}

void BatchSession::clear(uint32_t slot) {
    if (slot >= n_slots()) fail("batch: slot %u is outside 0..%u", slot, n_slots() - 1);
    if (batched()) {
        st_->n_past[slot] = 0;
        st_->st->swa_lo[slot] = 0;
    } else
        st_->slots[slot]->reset();
}

void BatchSession::truncate(uint32_t slot, uint32_t n) {
    if (slot >= n_slots()) fail("batch: slot %u is outside 0..%u", slot, n_slots() - 1);
    if (!batched()) return st_->slots[slot]->truncate(n);
    if (n > st_->n_past[slot])
        fail("batch: slot %u: cannot truncate to %u, only %u positions are cached", slot, n, st_->n_past[slot]);
    if (n == 0) return clear(slot);
    if (!can_truncate(slot, n))
        fail("batch: slot %u: cannot truncate to %u of %u positions: the sliding-window layers keep only the last %u "
             "positions (from %u on), and the window before %u starts earlier; clear the slot and decode again, or "
             "use swa_full", slot, n, st_->n_past[slot], st_->st->swa_ring, st_->st->swa_lo[slot], n);
    st_->n_past[slot] = n;
}

bool BatchSession::can_truncate(uint32_t slot, uint32_t n) const {
    if (slot >= n_slots()) fail("batch: slot %u is outside 0..%u", slot, n_slots() - 1);
    if (!batched()) return st_->slots[slot]->can_truncate(n);
    if (n == 0 || n == st_->n_past[slot]) return true;
    if (n > st_->n_past[slot]) return false;
    return st_->st->swa_keeps(slot, n, model_->hparams().n_swa);
}

void BatchSession::context_shift(uint32_t slot, uint32_t n_keep, uint32_t n_discard) {
    if (slot >= n_slots()) fail("batch: slot %u is outside 0..%u", slot, n_slots() - 1);
    if (!batched()) return st_->slots[slot]->context_shift(n_keep, n_discard);
    const uint32_t np = st_->n_past[slot];
    if (uint64_t(n_keep) + n_discard > np)
        fail("batch: slot %u: context shift keeping %u and discarding %u positions, only %u are cached", slot, n_keep,
             n_discard, np);
    SessionState& st = *st_->st;
    blocks::kv_shift(st, model_->hparams(), model_->arch(), slot * st.n_ctx, np, n_keep, n_discard);
    st_->n_past[slot] = np - n_discard;
}

uint32_t BatchSession::n_slots() const { return st_->opts.n_slots; }
uint32_t BatchSession::n_ctx_slot() const { return st_->opts.n_ctx_slot; }
int BatchSession::n_threads() const { return batched() ? st_->st->pool->size() : st_->slots[0]->n_threads(); }
bool BatchSession::batched() const { return st_->st != nullptr; }

size_t BatchSession::cache_bytes() const {
    if (batched()) {  // what is allocated: sliding-window rings hold fewer rows than the others
        const SessionState& st = *st_->st;
        size_t n = 0;
        for (size_t il = 0; il < st.k_cache.size(); ++il) n += st.k_cache[il].size() + st.v_cache[il].size();
        return n;
    }
    size_t n = 0;
    for (const auto& s : st_->slots) n += s->cache_bytes();
    return n;
}

} // namespace slm
