// session.cpp - Model loading and the Session that evaluates tokens with a KV cache.
#include "slm/model.h"

#include "core/cpu_info.h"
#include "core/thread_pool.h"
#include "formats/hf_convert.h"
#include "kernels/repack.h"
#include "models/arch.h"
#include "slm/error.h"
#include "slm/vocab.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>
#include <unistd.h>

namespace slm {

std::shared_ptr<const Model> Model::load(const std::string& path) {
    std::shared_ptr<Model> m(new Model());
    // A Hugging Face folder is converted to GGUF first (in a temporary file, unlinked once mapped).
    m->file_ = hf::is_hf_dir(path) ? hf::open_hf_dir_as_gguf(path) : GGUFFile::open(path);
    m->hp_ = read_common_hparams(m->file_);
    m->vocab_ = std::make_unique<Vocab>(Vocab::from_gguf(m->file_));
    if (static_cast<uint32_t>(m->vocab_->n_tokens()) != m->hp_.n_vocab)
        fail("model: %s: the tokenizer has %u tokens but token_embd.weight has %u rows", path.c_str(),
             static_cast<uint32_t>(m->vocab_->n_tokens()), m->hp_.n_vocab);
    m->arch_ = make_arch_model(m->file_, m->hp_);
    m->repack_weights();
    return m;
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

size_t Model::weight_bytes() const {
    size_t n = 0;
    for (const auto& t : file_.tensors()) n += t.nbytes;
    return n;
}

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& opts)
    : model_(std::move(model)), st_(std::make_unique<SessionState>()) {
    const HParams& hp = model_->hparams();
    SessionState& st = *st_;
    st.n_ctx = opts.n_ctx ? opts.n_ctx : hp.n_ctx_train;
    if (st.n_ctx > (1u << 20)) fail("session: n_ctx = %u is larger than 1048576", st.n_ctx);
    st.n_batch = std::max<uint32_t>(1, std::min(opts.n_batch ? opts.n_batch : 512, st.n_ctx));
    if (opts.kv_type != GGMLType::F32 && opts.kv_type != GGMLType::F16)
        fail("session: KV cache type %s is not supported (f32, f16)", type_name(opts.kv_type));
    st.kv_type = opts.kv_type;
    const int nt = opts.n_threads > 0 ? opts.n_threads : physical_cores();
    if (nt > 256) fail("session: %d threads is more than 256", nt);
    st.pool = std::make_unique<ThreadPool>(nt);

    const size_t es = st.kv_type == GGMLType::F32 ? 4 : 2;
    st.k_cache.assign(hp.n_layer, std::vector<uint8_t>(size_t(st.n_ctx) * hp.n_embd_k_gqa() * es));
    st.v_cache.assign(hp.n_layer, std::vector<uint8_t>(size_t(st.n_ctx) * hp.n_embd_v_gqa() * es));
    const size_t B = st.n_batch;
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
void Session::reset() { st_->n_past = 0; }

void Session::truncate(uint32_t n_past) {
    if (n_past > st_->n_past) fail("session: cannot truncate to %u, only %u positions are cached", n_past, st_->n_past);
    st_->n_past = n_past;
}

} // namespace slm
