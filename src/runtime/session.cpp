// session.cpp - Model loading and the Session that evaluates tokens with a KV cache.
#include "slm/model.h"

#include "core/cpu_info.h"
#include "core/thread_pool.h"
#include "formats/hf_convert.h"
#include "kernels/repack.h"
#include "models/arch.h"
#include "runtime/weight_stream.h"
#include "models/blocks.h"
#include "slm/error.h"
#include "slm/limits.h"
#include "slm/vocab.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>

#include <sys/mman.h>
#include <unistd.h>

namespace slm {

std::shared_ptr<const Model> Model::load(const std::string& path) { return load(path, LoadOptions{}); }

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& opts) {
    std::shared_ptr<Model> m(new Model());
    // A Hugging Face folder is converted to GGUF first (in a temporary file, unlinked once mapped).
    m->file_ = hf::is_hf_dir(path) ? hf::open_hf_dir_as_gguf(path) : GGUFFile::open(path);
    m->hp_ = read_common_hparams(m->file_);
    m->vocab_ = std::make_unique<Vocab>(Vocab::from_gguf(m->file_));
    if (static_cast<uint32_t>(m->vocab_->n_tokens()) != m->hp_.n_vocab)
        fail("model: %s: the tokenizer has %u tokens but token_embd.weight has %u rows", path.c_str(),
             static_cast<uint32_t>(m->vocab_->n_tokens()), m->hp_.n_vocab);
    m->arch_ = make_arch_model(m->file_, m->hp_);
    m->realign_tensors();
    if (opts.repack) m->repack_weights();
    return m;
}

// Kernels read tensors through typed pointers (floats, fp16 scales, block structs), which must be
// aligned. A GGUF with general.alignment below 8 (llama.cpp's reader allows 1, 2 and 4) can put a
// tensor at an odd address: such tensors are copied once into page-aligned memory. Files written
// with the default alignment of 32 never need it.
void Model::realign_tensors() {
    constexpr uintptr_t kAlign = 8;
    std::vector<std::pair<const void*, const void*>> moved;  // tensors sharing data stay shared
    for (const ModelTensor* ct : arch_->tensors()) {
        if (!ct->present() || ct->nbytes == 0 || reinterpret_cast<uintptr_t>(ct->data) % kAlign == 0) continue;
        auto* t = const_cast<ModelTensor*>(ct);  // the Model owns its architecture
        const auto same = std::find_if(moved.begin(), moved.end(), [&](const auto& p) { return p.first == t->data; });
        if (same != moved.end()) {
            t->data = same->second;
            continue;
        }
        const long page = sysconf(_SC_PAGESIZE);
        const size_t bytes = (t->nbytes + page - 1) / page * page;
        void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) fail("model: out of memory aligning '%s' (%zu bytes)", t->name.c_str(), t->nbytes);
        std::shared_ptr<void> buf(mem, [bytes](void* p) { munmap(p, bytes); });
        std::memcpy(buf.get(), t->data, t->nbytes);
        moved.emplace_back(t->data, buf.get());
        t->data = buf.get();
        buffers_.push_back(std::move(buf));
    }
}

void Model::repack_weights() {
    const char* env = std::getenv("SLM_REPACK");
    if (env != nullptr && std::strcmp(env, "0") == 0) return;
    const long page = sysconf(_SC_PAGESIZE);
    for (ModelTensor* t : arch_->matmul_weights()) {
        if (!t->present() || t->repacked) continue;
        const kernels::RepackTraits* rp = kernels::repack_traits(t->type);
        if (rp == nullptr || t->n_out() % kernels::kRepackRows != 0 || t->ne[2] != 1 || t->ne[3] != 1) continue;
        // The same bytes again in pages of their own (mmap, not the heap: freed, they go back to
        // the OS at once instead of staying in the allocator's arena).
        const size_t bytes = (t->nbytes + page - 1) / page * page;
        void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) fail("model: out of memory repacking '%s' (%zu bytes)", t->name.c_str(), t->nbytes);
        std::shared_ptr<void> buf(mem, [bytes](void* p) { munmap(p, bytes); });
        rp->repack(t->data, buf.get(), t->n_in(), t->n_out(), row_size(t->type, t->n_in()));
        // The file's pages of the original are not needed any more: give them back (the mapping
        // is private and read-only, so a later read would fault them in from the file again).
        const auto begin = reinterpret_cast<uintptr_t>(t->data), end = begin + t->nbytes;
        const uintptr_t lo = (begin + page - 1) / page * page, hi = end / page * page;
        if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
        t->data = buf.get();
        t->repacked = true;
        repacked_bytes_ += t->nbytes;
        buffers_.push_back(std::move(buf));
    }
}

Model::~Model() = default;

std::vector<std::pair<std::string, std::string>> Model::arch_info() const {
    std::vector<std::pair<std::string, std::string>> out;
    const HParams& hp = hp_;
    auto list = [](const std::vector<uint32_t>& v) {
        std::string s = "[";
        for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
        return s + "]";
    };
    auto num = [](double x) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", x);
        return std::string(buf);
    };
    auto uniform = [](const std::vector<uint32_t>& v) { return std::adjacent_find(v.begin(), v.end(), std::not_equal_to<>()) == v.end(); };
    if (!uniform(hp.n_head_arr)) out.emplace_back("n_head per layer", list(hp.n_head_arr));
    if (!uniform(hp.n_head_kv_arr)) out.emplace_back("n_head_kv per layer", list(hp.n_head_kv_arr));
    if (!uniform(hp.n_ff_arr)) out.emplace_back("n_ff per layer", list(hp.n_ff_arr));
    if (hp.n_swa > 0) {
        std::string layers;
        for (uint32_t il = 0; il < hp.n_layer; ++il) layers += hp.is_swa(il) ? 'L' : 'G';
        out.emplace_back("sliding window", std::to_string(hp.n_swa) + " (layers " + layers + ": L local, G global)");
    }
    if (hp.rope_freq_base_swa > 0) out.emplace_back("rope freq_base local", num(hp.rope_freq_base_swa));
    if (hp.attn_softcap > 0) out.emplace_back("attention soft-cap", num(hp.attn_softcap));
    if (hp.final_softcap > 0) out.emplace_back("final logit soft-cap", num(hp.final_softcap));
    if (hp.n_expert > 0)
        out.emplace_back("experts", std::to_string(hp.n_expert) + ", " + std::to_string(hp.n_expert_used) +
                                        " used per token, width " + std::to_string(hp.n_ff_exp) +
                                        (hp.n_ff_shexp ? ", shared expert width " + std::to_string(hp.n_ff_shexp) : ""));
    if (hp.ssm_d_inner > 0)
        out.emplace_back("ssm", "d_inner " + std::to_string(hp.ssm_d_inner) + ", d_state " + std::to_string(hp.ssm_d_state) +
                                    ", d_conv " + std::to_string(hp.ssm_d_conv) + ", dt_rank " + std::to_string(hp.ssm_dt_rank));
    for (auto& kv : arch_->info()) out.push_back(std::move(kv));
    return out;
}

size_t Model::weight_bytes() const {
    size_t n = 0;
    for (const auto& t : file_.tensors()) n += t.nbytes;
    return n;
}

std::unique_ptr<SessionState> make_session_state(const Model& model, const SessionOptions& opts, uint32_t n_seq) {
    const HParams& hp = model.hparams();
    auto stp = std::make_unique<SessionState>();
    SessionState& st = *stp;
    // The default is the training context, at most max_context; an explicit n_ctx past the limit
    // is refused.
    st.n_ctx = opts.n_ctx ? opts.n_ctx : std::min(hp.n_ctx_train, limits().max_context);
    if (st.n_ctx > limits().max_context)
        fail("session: a context of %u positions is more than %s", st.n_ctx,
             limit_hint("max_context", limits().max_context).c_str());
    if (n_seq < 1 || uint64_t(n_seq) * st.n_ctx > (1u << 22))
        fail("session: %u sequences of %u positions is more than 4194304 cache rows", n_seq, st.n_ctx);
    st.n_kv_rows = st.n_ctx * n_seq;
    st.n_batch = std::max<uint32_t>(1, std::min(opts.n_batch ? opts.n_batch : 512, st.n_kv_rows));
    const GGMLType kv = opts.kv_type;
    if (kv != GGMLType::F32 && kv != GGMLType::F16 && kv != GGMLType::Q8_0 && kv != GGMLType::Q4_0)
        fail("session: KV cache type %s is not supported (f16, f32, q8_0, q4_0)", type_name(kv));
    // A quantized cache is stored per head in blocks of 32: head sizes must be whole blocks.
    const int64_t blck = type_info(kv).blck_size;
    if (blck > 1 && (hp.n_embd_head_k % blck != 0 || hp.n_embd_head_v % blck != 0))
        fail("session: KV cache type %s needs head sizes that are multiples of %lld; the model (%s) has %u (K) and %u "
             "(V)", type_name(kv), static_cast<long long>(blck), hp.arch.c_str(), hp.n_embd_head_k, hp.n_embd_head_v);
    st.kv_type = kv;
    const int nt = opts.n_threads > 0 ? opts.n_threads : physical_cores();
    if (nt > 256) fail("session: %d threads is more than 256", nt);
    st.pool = std::make_unique<ThreadPool>(nt);

    const ArchModel& arch = model.arch();
    st.k_cache.resize(hp.n_layer);
    st.v_cache.resize(hp.n_layer);
    st.r_state.resize(hp.n_layer);
    // Sliding-window layers as rings of n_swa + n_batch rows per sequence (a chunk's queries, at
    // most n_batch of one sequence, still find the n_swa keys before the first), when that is
    // less than the context (SessionState::kv_ring).
    st.kv_ring.assign(hp.n_layer, 0);
    st.swa_lo.assign(n_seq, 0);
    if (!opts.swa_full && hp.n_swa > 0) {
        const uint64_t ring = uint64_t(hp.n_swa) + std::min(st.n_batch, st.n_ctx);
        if (ring < st.n_ctx) {
            st.swa_ring = static_cast<uint32_t>(ring);
            for (uint32_t il = 0; il < hp.n_layer; ++il)
                if (hp.is_swa(il)) st.kv_ring[il] = st.swa_ring;
        }
    }
    for (uint32_t il = 0; il < hp.n_layer; ++il) {
        const size_t rows = st.kv_ring[il] > 0 ? size_t(st.kv_ring[il]) * n_seq : size_t(st.n_kv_rows);
        st.k_cache[il].assign(rows * row_size(kv, hp.n_embd_k_gqa(il)), 0);
        st.v_cache[il].assign(rows * row_size(kv, hp.n_embd_v_gqa(il)), 0);
        st.r_state[il].assign(arch.recurrent_state_floats(il), 0.0f);
    }
    const size_t B = st.n_batch;
    st.extra.resize(B * arch.extra_floats_per_token());
    st.x.resize(B * hp.n_embd);
    st.xb.resize(B * std::max<size_t>(hp.n_embd, size_t(hp.n_head) * hp.n_embd_head_v));
    st.q.resize(B * hp.n_head * hp.n_embd_head_k);
    st.k.resize(B * hp.n_embd_k_gqa());
    st.v.resize(B * hp.n_embd_v_gqa());
    st.att.resize(B * hp.n_head * hp.n_embd_head_v);
    st.hb.resize(B * hp.n_ff);
    st.hb2.resize(B * hp.n_ff);
    // One row: a prompt's logits are only wanted for its last token unless eval asks for all,
    // which grows this buffer then (B rows of a 128k vocabulary would be 256 MB).
    st.logits.resize(hp.n_vocab);
    st.scores.resize(size_t(nt) * st.n_ctx);
    st.rope_cache.resize(B * hp.n_rot);
    if (opts.low_memory) st.layer_hook = make_weight_streamer(model);
    return stp;
}

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& opts)
    : model_(std::move(model)), st_(make_session_state(*model_, opts, 1)) {
    for (const auto& r : st_->r_state) recurrent_ = recurrent_ || !r.empty();
}

Session::~Session() = default;

const float* Session::eval(std::span<const int32_t> tokens, bool all_logits) {
    SessionState& st = *st_;
    const HParams& hp = model_->hparams();
    if (tokens.empty()) fail("session: eval of zero tokens");
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || static_cast<uint32_t>(tokens[i]) >= hp.n_vocab)
            fail("session: token id %d at index %zu is outside the vocabulary [0, %u)", tokens[i], i, hp.n_vocab);
    if (st.n_past + tokens.size() > st.n_ctx)
        fail("session: %zu tokens after %u would overflow the context of %u (raise n_ctx)", tokens.size(), st.n_past,
             st.n_ctx);
    if (all_logits) {
        all_logits_.resize(tokens.size() * hp.n_vocab);
        const size_t rows = std::min<size_t>(st.n_batch, tokens.size());
        if (st.logits.size() < rows * hp.n_vocab) st.logits.resize(rows * hp.n_vocab);
    }
    size_t done = 0;
    while (done < tokens.size()) {
        const uint32_t n = static_cast<uint32_t>(std::min<size_t>(st.n_batch, tokens.size() - done));
        model_->arch().forward(st, tokens.data() + done, n, all_logits);
        if (all_logits)
            std::memcpy(all_logits_.data() + done * hp.n_vocab, st.logits.data(), size_t(n) * hp.n_vocab * sizeof(float));
        st.n_past += n;
        done += n;
    }
    n_rows_ = all_logits ? tokens.size() : 1;
    last_all_ = all_logits;
    if (all_logits) return all_logits_.data() + (tokens.size() - 1) * hp.n_vocab;
    return st.logits.data();
}

std::span<const float> Session::logits() const {
    const size_t nv = model_->hparams().n_vocab;
    if (last_all_) return {all_logits_.data(), n_rows_ * nv};
    return {st_->logits.data(), n_rows_ * nv};
}

uint32_t Session::n_past() const { return st_->n_past; }
uint32_t Session::n_ctx() const { return st_->n_ctx; }
int Session::n_threads() const { return st_->pool->size(); }
void Session::set_matmul_observer(MatmulObserver* o) { st_->observer = o; }
ThreadPool& Session::thread_pool() { return *st_->pool; }
void Session::reset() {
    st_->n_past = 0;
    std::fill(st_->swa_lo.begin(), st_->swa_lo.end(), 0u);
    for (auto& r : st_->r_state) std::fill(r.begin(), r.end(), 0.0f);
}

void Session::truncate(uint32_t n_past) {
    if (n_past > st_->n_past) fail("session: cannot truncate to %u, only %u positions are cached", n_past, st_->n_past);
    if (n_past == st_->n_past) return;
    if (n_past == 0) return reset();
    // A recurrent state sums up every position seen; it cannot give back an earlier one.
    if (recurrent_)
        fail("session: cannot truncate to %u of %u positions: the model (%s) keeps a recurrent state; only reset() "
             "to 0 is possible", n_past, st_->n_past, model_->hparams().arch.c_str());
    if (!can_truncate(n_past))
        fail("session: cannot truncate to %u of %u positions: the sliding-window layers keep only the last %u "
             "positions (from %u on), and the window before %u starts earlier; reset() and evaluate again, or use "
             "swa_full (--swa-full)", n_past, st_->n_past, st_->swa_ring, st_->swa_lo[0], n_past);
    st_->n_past = n_past;
}

bool Session::can_truncate(uint32_t n_past) const {
    if (n_past == 0 || n_past == st_->n_past) return true;
    if (n_past > st_->n_past || recurrent_) return false;
    return st_->swa_keeps(0, n_past, model_->hparams().n_swa);
}

size_t Session::cache_bytes() const {
    size_t n = 0;
    for (uint32_t il = 0; il < st_->k_cache.size(); ++il)
        n += st_->k_cache[il].size() + st_->v_cache[il].size() + st_->r_state[il].size() * sizeof(float);
    return n;
}

bool Session::recurrent() const { return recurrent_; }

void Session::context_shift(uint32_t n_keep, uint32_t n_discard) {
    SessionState& st = *st_;
    if (recurrent_)
        fail("session: context shift: the model (%s) keeps a recurrent state, which cannot forget positions",
             model_->hparams().arch.c_str());
    if (uint64_t(n_keep) + n_discard > st.n_past)
        fail("session: context shift: keeping %u and discarding %u positions needs %u cached, only %u are", n_keep,
             n_discard, n_keep + n_discard, st.n_past);
    blocks::kv_shift(st, model_->hparams(), model_->arch(), 0, st.n_past, n_keep, n_discard);
    st.n_past -= n_discard;
}

bool Session::supports_branches() const { return !recurrent_ && model_->hparams().n_swa == 0; }

void Session::eval_branches(uint32_t n_prefix, std::span<const std::vector<int32_t>> branches) {
    SessionState& st = *st_;
    const HParams& hp = model_->hparams();
    if (!supports_branches())
        fail("session: eval_branches: the model (%s) cannot evaluate branches in one pass (%s); evaluate them one "
             "after the other", hp.arch.c_str(), recurrent_ ? "it keeps a recurrent state" : "sliding-window attention");
    if (n_prefix > st.n_past)
        fail("session: eval_branches: prefix of %u positions but only %u are cached", n_prefix, st.n_past);
    size_t total = 0;
    for (size_t b = 0; b < branches.size(); ++b) {
        if (branches[b].empty()) fail("session: eval_branches: branch %zu is empty", b);
        total += branches[b].size();
    }
    if (total == 0) fail("session: eval_branches: no branches");
    if (n_prefix + total > st.n_ctx)
        fail("session: eval_branches: %zu branch tokens after a prefix of %u would overflow the context of %u (raise "
             "n_ctx)", total, n_prefix, st.n_ctx);
    std::vector<int32_t> tokens;
    std::vector<uint32_t> pos, lo;
    tokens.reserve(total);
    pos.reserve(total);
    lo.reserve(total);
    for (const auto& br : branches) {
        const uint32_t start = n_prefix + static_cast<uint32_t>(tokens.size());  // the branch's first cache slot
        for (size_t i = 0; i < br.size(); ++i) {
            if (br[i] < 0 || static_cast<uint32_t>(br[i]) >= hp.n_vocab)
                fail("session: eval_branches: token id %d is outside the vocabulary [0, %u)", br[i], hp.n_vocab);
            tokens.push_back(br[i]);
            pos.push_back(n_prefix + static_cast<uint32_t>(i));
            lo.push_back(start);
        }
    }
    truncate(n_prefix);
    all_logits_.resize(total * hp.n_vocab);
    const size_t rows = std::min<size_t>(st.n_batch, total);
    if (st.logits.size() < rows * hp.n_vocab) st.logits.resize(rows * hp.n_vocab);
    // The branch view lasts for this call only, whatever happens.
    struct Restore {
        SessionState& st;
        uint32_t n_prefix;
        ~Restore() {
            st.tok_pos = st.tok_lo = nullptr;
            st.branch_prefix = 0;
            st.n_past = n_prefix;
        }
    } restore{st, n_prefix};
    st.branch_prefix = n_prefix;
    size_t done = 0;
    while (done < total) {
        const uint32_t n = static_cast<uint32_t>(std::min<size_t>(st.n_batch, total - done));
        st.tok_pos = pos.data() + done;
        st.tok_lo = lo.data() + done;
        model_->arch().forward(st, tokens.data() + done, n, true);
        std::memcpy(all_logits_.data() + done * hp.n_vocab, st.logits.data(), size_t(n) * hp.n_vocab * sizeof(float));
        st.n_past += n;
        done += n;
    }
    n_rows_ = total;
    last_all_ = true;
}

} // namespace slm
