// model.cpp - TrainModel: parameters, the Llama forward and backward over ops.h, and GGUF I/O.
//
// The forward is src/models/llama.cpp's (pre-norm blocks: RMSNorm, Q/K/V, RoPE, causal GQA
// attention, output projection, residual; RMSNorm, SwiGLU FFN, residual; final norm and output),
// run on B sequences of T tokens at once with everything the backward needs kept: the residual
// stream entering each layer and half-way through it, the normalized inputs with their inverse
// RMS, Q/K/V after RoPE, attention outputs with their softmax log-sum-exps, FFN gate/up/hidden.
// Layer il computes with stored block il / layer_share (MobileLLM sharing), so the gradients of
// a shared block sum over the layers using it.
#include "core/cpu_info.h"
#include "kernels/kernels.h"
#include "slm/error.h"
#include "train/model_impl.h"
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace slm {

const char* const kMatNames[kNumMats] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t hash_name(const std::string& s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

namespace {

template <class V>
void need(V& v, size_t n) {
    if (v.size() < n) v.resize(n);
}


// N(0, std) values from a counter-based stream: pair k of a parameter comes from mix64(seed + k)
// alone, so values depend on (seed, name, index) only and any split over threads gives the same
// numbers. Box-Muller on two 53-bit uniforms.
void fill_normal(float* w, size_t n, uint64_t seed, float std, ThreadPool* pool) {
    const int64_t n_pairs = int64_t((n + 1) / 2);
    pool->parallel_for(n_pairs, [&](int64_t k0, int64_t k1, int) {
        for (int64_t k = k0; k < k1; ++k) {
            const uint64_t a = mix64(seed + uint64_t(k) * 0x9e3779b97f4a7c15ull), b = mix64(a);
            const double u1 = double((a >> 11) + 1) * (1.0 / 9007199254740993.0);  // (0, 1]
            const double u2 = double(b >> 11) * (1.0 / 9007199254740992.0);
            const double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
            const size_t i = size_t(k) * 2;
            w[i] = float(r * std::cos(t)) * std;
            if (i + 1 < n) w[i + 1] = float(r * std::sin(t)) * std;
        }
    });
}

} // namespace

// ---- parameters -------------------------------------------------------------------------------

ThreadPool* TrainModel::Impl::get_pool() {
    if (!pool) pool = std::make_unique<ThreadPool>(n_threads > 0 ? n_threads : physical_cores());
    return pool.get();
}

int TrainModel::Impl::add_param(const std::string& name, std::vector<int64_t> ne, bool trainable) {
    size_t n = 1;
    for (int64_t d : ne) n *= size_t(d);
    Store& s = store.emplace_back();
    s.w.assign(n, 0.0f);
    if (trainable) s.g.assign(n, 0.0f);
    TrainParam p;
    p.name = name;
    p.ne = std::move(ne);
    p.w = s.w.data();
    p.g = trainable ? s.g.data() : nullptr;
    p.n = n;
    p.trainable = trainable;
    params.push_back(std::move(p));
    return int(params.size() - 1);
}

void TrainModel::Impl::set_trainable(int i, bool on) {
    TrainParam& p = P(i);
    Store& s = store[size_t(i)];
    if (on && !p.trainable) {
        s.g.assign(p.n, 0.0f);
        p.g = s.g.data();
    } else if (!on && p.trainable) {
        std::vector<float>().swap(s.g);
        p.g = nullptr;
    }
    p.trainable = on;
}

void TrainModel::Impl::build_params() {
    const TrainArch& a = arch;
    const int64_t E = a.n_embd, V = a.n_vocab, hd = a.hd();
    tok_embd = add_param("token_embd.weight", {E, V});
    blocks.assign(a.n_block(), Block{});
    for (uint32_t ib = 0; ib < a.n_block(); ++ib) {
        const uint32_t il = ib * a.layer_share;
        const int64_t nq = a.heads[il] * hd, nk = a.heads_kv[il] * hd, F = a.ffn[il];
        const std::string p = "blk." + std::to_string(ib) + ".";
        Block& b = blocks[ib];
        b.attn_norm = add_param(p + "attn_norm.weight", {E});
        b.mat[kQ] = add_param(p + "attn_q.weight", {E, nq});
        b.mat[kK] = add_param(p + "attn_k.weight", {E, nk});
        b.mat[kV] = add_param(p + "attn_v.weight", {E, nk});
        b.mat[kO] = add_param(p + "attn_output.weight", {nq, E});
        b.ffn_norm = add_param(p + "ffn_norm.weight", {E});
        b.mat[kGate] = add_param(p + "ffn_gate.weight", {E, F});
        b.mat[kUp] = add_param(p + "ffn_up.weight", {E, F});
        b.mat[kDown] = add_param(p + "ffn_down.weight", {F, E});
    }
    output_norm = add_param("output_norm.weight", {E});
    output = a.tied_embeddings ? -1 : add_param("output.weight", {E, V});
}

void TrainModel::Impl::init_random(uint64_t seed) {
    const float resid = arch.init_std / std::sqrt(2.0f * float(arch.n_layer));
    for (TrainParam& p : params) {
        if (!p.is_matrix()) {
            std::fill(p.w, p.w + p.n, 1.0f);  // norms
            continue;
        }
        const bool is_resid = p.name.find("attn_output") != std::string::npos || p.name.find("ffn_down") != std::string::npos;
        fill_normal(p.w, p.n, mix64(seed ^ hash_name(p.name)), is_resid ? resid : arch.init_std, get_pool());
    }
}

// ---- activations --------------------------------------------------------------------------------

void TrainModel::Impl::prepare(int B_, int T_) {
    const TrainArch& a = arch;
    const size_t N = size_t(B_) * size_t(T_), E = a.n_embd, hd = a.hd();
    ThreadPool* tp = get_pool();
    B = B_;
    T = T_;
    need(tokens, N);
    xs.resize(a.n_layer + 1);
    for (auto& x : xs) need(x, N * E);
    acts.resize(a.n_layer);
    size_t max_q = 0, max_k = 0, max_f = 0;
    for (uint32_t il = 0; il < a.n_layer; ++il) {
        LayerActs& L = acts[il];
        const size_t nq = a.heads[il] * hd, nk = a.heads_kv[il] * hd, F = a.ffn[il];
        max_q = std::max(max_q, nq), max_k = std::max(max_k, nk), max_f = std::max(max_f, F);
        need(L.xn1, N * E), need(L.rstd1, N), need(L.q, N * nq), need(L.k, N * nk), need(L.v, N * nk);
        need(L.att, N * nq), need(L.lse, size_t(B_) * a.heads[il] * size_t(T_));
        need(L.x2, N * E), need(L.xn2, N * E), need(L.rstd2, N);
        need(L.g, N * F), need(L.u, N * F), need(L.h, N * F);
        if (lora_rank)
            for (int m = 0; m < kNumMats; ++m)
                if (blocks[il / a.layer_share].lora_a[m] >= 0) need(L.lora_t[m], N * lora_rank);
    }
    need(xf, N * E), need(rstdf, N), need(logits, N * a.n_vocab), need(loss_rows, N);
    need(dx, N * E), need(dtmp, N * E), need(dxn, N * E);
    need(datt, N * max_q), need(dq, N * max_q), need(dk, N * max_k), need(dv, N * max_k);
    need(dg, N * max_f), need(du, N * max_f), need(dh, N * max_f);
    if (lora_rank) need(dt, N * lora_rank);
    need(attn_scratch, size_t(tp->size()) * size_t(train_ops::attention_scratch_floats(T_)));
    if (rope_T < T_) {
        train_ops::rope_table(rope, T_, int64_t(hd), a.rope_freq_base);
        rope_T = T_;
    }
}

// ---- forward / backward ---------------------------------------------------------------------------

void TrainModel::Impl::linear_forward(uint32_t ib, Mat m, const float* x, float* y, std::vector<float>& t,
                                      int64_t rows, bool accumulate) {
    namespace ops = train_ops;
    const Block& b = blocks[ib];
    const TrainParam& W = P(b.mat[m]);
    ThreadPool* tp = pool.get();
    ops::matmul_forward(x, W.w, y, rows, W.ne[0], W.ne[1], tp, accumulate);
    if (b.lora_a[m] >= 0) {
        const TrainParam& A = P(b.lora_a[m]);  // [n_in, r]: r rows of n_in
        const TrainParam& Bm = P(b.lora_b[m]);  // [r, n_out]: n_out rows of r
        const int64_t r = A.ne[1];
        ops::matmul_forward(x, A.w, t.data(), rows, W.ne[0], r, tp);
        const float s = lora_scale();
        for (int64_t i = 0; i < rows * r; ++i) t[size_t(i)] *= s;
        ops::matmul_forward(t.data(), Bm.w, y, rows, r, W.ne[1], tp, true);
    }
}

void TrainModel::Impl::linear_backward(uint32_t ib, Mat m, const float* dy, const float* x, float* dxo,
                                       const std::vector<float>& t, int64_t rows, bool accumulate) {
    namespace ops = train_ops;
    const Block& b = blocks[ib];
    TrainParam& W = P(b.mat[m]);
    ThreadPool* tp = pool.get();
    ops::matmul_backward(dy, x, W.w, dxo, W.g, rows, W.ne[0], W.ne[1], accumulate, tp);
    if (b.lora_a[m] >= 0) {
        TrainParam& A = P(b.lora_a[m]);
        TrainParam& Bm = P(b.lora_b[m]);
        const int64_t r = A.ne[1];
        // y += t Bᵀ with t = s x Aᵀ:  dB += dyᵀ t,  dt = dy B,  dA += s dtᵀ x,  dx += s dt A.
        ops::matmul_backward(dy, t.data(), Bm.w, dt.data(), Bm.g, rows, r, W.ne[1], false, tp);
        const float s = lora_scale();
        for (int64_t i = 0; i < rows * r; ++i) dt[size_t(i)] *= s;
        ops::matmul_backward(dt.data(), x, A.w, dxo, A.g, rows, W.ne[0], r, true, tp);
    }
}

void TrainModel::Impl::forward(const int32_t* tok, int B_, int T_) {
    namespace ops = train_ops;
    prepare(B_, T_);
    const TrainArch& a = arch;
    ThreadPool* tp = pool.get();
    const int64_t N = int64_t(B_) * T_, E = a.n_embd, hd = a.hd();
    std::copy(tok, tok + N, tokens.begin());
    ops::embedding_forward(tok, N, P(tok_embd).w, E, xs[0].data(), tp);
    for (uint32_t il = 0; il < a.n_layer; ++il) {
        const uint32_t ib = il / a.layer_share;
        const Block& b = blocks[ib];
        LayerActs& L = acts[il];
        const int64_t H = a.heads[il], Hk = a.heads_kv[il], F = a.ffn[il];
        const float* x = xs[il].data();
        ops::rmsnorm_forward(x, P(b.attn_norm).w, L.xn1.data(), L.rstd1.data(), N, E, a.rms_eps, tp);
        linear_forward(ib, kQ, L.xn1.data(), L.q.data(), L.lora_t[kQ], N, false);
        linear_forward(ib, kK, L.xn1.data(), L.k.data(), L.lora_t[kK], N, false);
        linear_forward(ib, kV, L.xn1.data(), L.v.data(), L.lora_t[kV], N, false);
        ops::rope_forward(L.q.data(), N, T_, H, hd, rope.data(), tp);
        ops::rope_forward(L.k.data(), N, T_, Hk, hd, rope.data(), tp);
        ops::attention_forward(L.q.data(), L.k.data(), L.v.data(), L.att.data(), L.lse.data(), B_, T_, H, Hk, hd,
                               attn_scratch.data(), tp);
        std::memcpy(L.x2.data(), x, size_t(N * E) * sizeof(float));
        linear_forward(ib, kO, L.att.data(), L.x2.data(), L.lora_t[kO], N, true);
        ops::rmsnorm_forward(L.x2.data(), P(b.ffn_norm).w, L.xn2.data(), L.rstd2.data(), N, E, a.rms_eps, tp);
        linear_forward(ib, kGate, L.xn2.data(), L.g.data(), L.lora_t[kGate], N, false);
        linear_forward(ib, kUp, L.xn2.data(), L.u.data(), L.lora_t[kUp], N, false);
        ops::swiglu_forward(L.g.data(), L.u.data(), L.h.data(), N * F, tp);
        float* y = xs[il + 1].data();
        std::memcpy(y, L.x2.data(), size_t(N * E) * sizeof(float));
        linear_forward(ib, kDown, L.h.data(), y, L.lora_t[kDown], N, true);
    }
    ops::rmsnorm_forward(xs[a.n_layer].data(), P(output_norm).w, xf.data(), rstdf.data(), N, E, a.rms_eps, tp);
    const TrainParam& out = P(output >= 0 ? output : tok_embd);
    ops::matmul_forward(xf.data(), out.w, logits.data(), N, E, a.n_vocab, tp);
    have_forward = true;
}

void TrainModel::Impl::backward(const float* dlogits) {
    namespace ops = train_ops;
    if (!have_forward) fail("train: backward() without a forward() before it");
    const TrainArch& a = arch;
    ThreadPool* tp = pool.get();
    const int64_t N = int64_t(B) * T, E = a.n_embd, hd = a.hd();
    TrainParam& out = P(output >= 0 ? output : tok_embd);
    ops::matmul_backward(dlogits, xf.data(), out.w, dtmp.data(), out.g, N, E, a.n_vocab, false, tp);
    ops::rmsnorm_backward(dtmp.data(), xs[a.n_layer].data(), P(output_norm).w, rstdf.data(), dx.data(),
                          P(output_norm).g, N, E, false, tp);
    for (uint32_t il = a.n_layer; il-- > 0;) {
        const uint32_t ib = il / a.layer_share;
        const Block& b = blocks[ib];
        LayerActs& L = acts[il];
        const int64_t H = a.heads[il], Hk = a.heads_kv[il], F = a.ffn[il];
        // x_{l+1} = x2 + down(h): dx passes to x2 unchanged.
        linear_backward(ib, kDown, dx.data(), L.h.data(), dh.data(), L.lora_t[kDown], N, false);
        ops::swiglu_backward(dh.data(), L.g.data(), L.u.data(), dg.data(), du.data(), N * F, tp);
        linear_backward(ib, kGate, dg.data(), L.xn2.data(), dxn.data(), L.lora_t[kGate], N, false);
        linear_backward(ib, kUp, du.data(), L.xn2.data(), dxn.data(), L.lora_t[kUp], N, true);
        ops::rmsnorm_backward(dxn.data(), L.x2.data(), P(b.ffn_norm).w, L.rstd2.data(), dx.data(), P(b.ffn_norm).g, N,
                              E, true, tp);
        // x2 = x + wo(att)
        linear_backward(ib, kO, dx.data(), L.att.data(), datt.data(), L.lora_t[kO], N, false);
        ops::attention_backward(datt.data(), L.q.data(), L.k.data(), L.v.data(), L.att.data(), L.lse.data(), dq.data(),
                                dk.data(), dv.data(), B, T, H, Hk, hd, attn_scratch.data(), tp);
        ops::rope_backward(dq.data(), N, T, H, hd, rope.data(), tp);
        ops::rope_backward(dk.data(), N, T, Hk, hd, rope.data(), tp);
        linear_backward(ib, kQ, dq.data(), L.xn1.data(), dxn.data(), L.lora_t[kQ], N, false);
        linear_backward(ib, kK, dk.data(), L.xn1.data(), dxn.data(), L.lora_t[kK], N, true);
        linear_backward(ib, kV, dv.data(), L.xn1.data(), dxn.data(), L.lora_t[kV], N, true);
        ops::rmsnorm_backward(dxn.data(), xs[il].data(), P(b.attn_norm).w, L.rstd1.data(), dx.data(),
                              P(b.attn_norm).g, N, E, true, tp);
    }
    if (P(tok_embd).g) ops::embedding_backward(tokens.data(), N, dx.data(), E, P(tok_embd).g, tp);
}

// ---- TrainModel ---------------------------------------------------------------------------------

TrainModel::TrainModel() : p_(std::make_unique<Impl>()) {}

TrainModel::TrainModel(TrainArch arch, uint64_t seed) : p_(std::make_unique<Impl>()) {
    arch.validate();
    p_->arch = std::move(arch);
    p_->build_params();
    p_->init_random(seed);
}

TrainModel::~TrainModel() = default;

std::unique_ptr<TrainModel> TrainModel::clone() const {
    std::unique_ptr<TrainModel> m(new TrainModel());
    Impl& d = *m->p_;
    const Impl& s = *p_;
    d.arch = s.arch;
    for (size_t i = 0; i < s.params.size(); ++i) {
        const TrainParam& p = s.params[i];
        const int j = d.add_param(p.name, p.ne, p.trainable);
        std::copy(p.w, p.w + p.n, d.params[size_t(j)].w);
        if (p.g) std::copy(p.g, p.g + p.n, d.params[size_t(j)].g);
    }
    d.tok_embd = s.tok_embd, d.output = s.output, d.output_norm = s.output_norm;
    d.blocks = s.blocks;
    d.lora_rank = s.lora_rank, d.lora_alpha = s.lora_alpha;
    d.tok_kv = s.tok_kv;
    d.n_threads = s.n_threads;
    return m;
}

const TrainArch& TrainModel::arch() const { return p_->arch; }
std::vector<TrainParam>& TrainModel::params() { return p_->params; }
const std::vector<TrainParam>& TrainModel::params() const { return p_->params; }

TrainParam* TrainModel::find(const std::string& name) {
    for (TrainParam& p : p_->params)
        if (p.name == name) return &p;
    return nullptr;
}

uint64_t TrainModel::n_params() const {
    uint64_t n = 0;
    for (const TrainParam& p : p_->params) n += p.n;
    return n;
}

void TrainModel::set_threads(int n_threads) {
    if (n_threads < 0) fail("train: n_threads = %d must be >= 0", n_threads);
    p_->n_threads = n_threads;
    p_->pool.reset();
    p_->attn_scratch.clear();
}

namespace {
void check_shape(std::span<const int32_t> tokens, int B, int T, const TrainArch& a, const char* what) {
    if (B <= 0 || T <= 0) fail("train: %s: B = %d and T = %d must be positive", what, B, T);
    if (uint32_t(T) > a.n_ctx) fail("train: %s: T = %d exceeds the context length n_ctx = %u", what, T, a.n_ctx);
    if (tokens.size() != size_t(B) * size_t(T))
        fail("train: %s: %zu tokens given for B = %d x T = %d", what, tokens.size(), B, T);
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || uint32_t(tokens[i]) >= a.n_vocab)
            fail("train: %s: token %d at position %zu is outside the vocabulary (0..%u)", what, tokens[i], i,
                 a.n_vocab - 1);
}

void check_targets(std::span<const int32_t> targets, size_t n, uint32_t n_vocab, const char* what) {
    if (targets.size() != n) fail("train: %s: %zu targets for %zu tokens", what, targets.size(), n);
    for (size_t i = 0; i < n; ++i)
        if (targets[i] < -1 || (targets[i] >= 0 && uint32_t(targets[i]) >= n_vocab))
            fail("train: %s: target %d at position %zu is neither -1 (ignored) nor a token id below %u", what,
                 targets[i], i, n_vocab);
}
} // namespace

const float* TrainModel::forward(std::span<const int32_t> tokens, int B, int T) {
    check_shape(tokens, B, T, p_->arch, "forward");
    p_->forward(tokens.data(), B, T);
    return p_->logits.data();
}

void TrainModel::backward(const float* dlogits) { p_->backward(dlogits); }

float TrainModel::loss(std::span<const int32_t> tokens, std::span<const int32_t> targets, int B, int T) {
    check_shape(tokens, B, T, p_->arch, "loss");
    check_targets(targets, tokens.size(), p_->arch.n_vocab, "loss");
    p_->forward(tokens.data(), B, T);
    const int64_t N = int64_t(B) * T;
    const int64_t n = train_ops::cross_entropy_forward(p_->logits.data(), targets.data(), N, p_->arch.n_vocab,
                                                        p_->loss_rows.data(), p_->pool.get());
    double sum = 0;
    for (int64_t i = 0; i < N; ++i) sum += p_->loss_rows[size_t(i)];
    return n ? float(sum / double(n)) : 0.0f;
}

float TrainModel::forward_backward(std::span<const int32_t> tokens, std::span<const int32_t> targets, int B, int T,
                                   float grad_scale) {
    const float l = loss(tokens, targets, B, T);
    const int64_t N = int64_t(B) * T;
    int64_t n = 0;
    for (int32_t t : targets) n += t >= 0;
    if (n == 0) return 0.0f;
    // dlogits overwrite the logits (they are not needed again).
    float* lg = p_->logits.data();
    train_ops::cross_entropy_backward(lg, targets.data(), N, p_->arch.n_vocab, grad_scale / float(n), lg,
                                       p_->pool.get());
    p_->backward(lg);
    return l;
}

void TrainModel::zero_grad() {
    for (TrainParam& p : p_->params)
        if (p.g) std::fill(p.g, p.g + p.n, 0.0f);
}

// ---- files --------------------------------------------------------------------------------------

namespace {

uint32_t llama_file_type(GGMLType t) {
    switch (t) {
    case GGMLType::F32: return 0;
    case GGMLType::F16: return 1;
    case GGMLType::BF16: return 32;
    default: return 0;
    }
}

bool uniform(const std::vector<uint32_t>& v) {
    return std::all_of(v.begin(), v.end(), [&](uint32_t x) { return x == v[0]; });
}

GGUFValue per_layer(const std::vector<uint32_t>& v) {
    if (uniform(v)) return GGUFValue::u32(v[0]);
    // gguf-py writes a list of Python ints as an INT32 array.
    std::vector<int32_t> a(v.begin(), v.end());
    return GGUFValue::i32_array(a);
}

} // namespace

void TrainModel::save(const std::string& path, GGMLType type) const {
    const Impl& s = *p_;
    const TrainArch& a = s.arch;
    if (type != GGMLType::F32 && type != GGMLType::F16 && type != GGMLType::BF16)
        fail("train: save %s: type %s: the model is written as F32, F16 or BF16 (quantize it afterwards)",
             path.c_str(), type_name(type));
    std::vector<std::pair<std::string, GGUFValue>> tok;
    if (!a.tokenizer.empty()) {
        GGUFFile f = GGUFFile::open(a.tokenizer);
        for (const auto& [k, v] : f.kv())
            if (k.rfind("tokenizer.", 0) == 0) tok.emplace_back(k, v);
        if (tok.empty()) fail("train: save %s: tokenizer '%s' has no tokenizer.* keys", path.c_str(), a.tokenizer.c_str());
    } else {
        tok = s.tok_kv;
    }
    if (tok.empty())
        fail("train: save %s: the model has no tokenizer (set TrainArch::tokenizer to a GGUF holding tokenizer.* keys)",
             path.c_str());
    for (const auto& [k, v] : tok)
        if (k == "tokenizer.ggml.tokens" && v.n != a.n_vocab)
            fail("train: save %s: the tokenizer has %llu tokens but the model's vocabulary is %u", path.c_str(),
                 static_cast<unsigned long long>(v.n), a.n_vocab);

    GGUFWriter w;
    const std::string p = "llama.";
    // Keys in convert_hf_to_gguf.py's order, counts UINT32 and floats FLOAT32 as gguf-py writes them.
    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("general.name", GGUFValue::string(a.name));
    w.set(p + "block_count", GGUFValue::u32(a.n_layer));
    w.set(p + "context_length", GGUFValue::u32(a.n_ctx));
    w.set(p + "embedding_length", GGUFValue::u32(a.n_embd));
    w.set(p + "feed_forward_length", per_layer(a.ffn));
    w.set(p + "attention.head_count", per_layer(a.heads));
    w.set(p + "attention.head_count_kv", per_layer(a.heads_kv));
    w.set(p + "rope.freq_base", GGUFValue::f32(a.rope_freq_base));
    w.set(p + "attention.layer_norm_rms_epsilon", GGUFValue::f32(a.rms_eps));
    // Loaders default the head size to n_embd / head_count (the largest count when per layer).
    const uint32_t hd = a.hd();
    if (!uniform(a.heads) || a.n_embd % a.n_head != 0 || a.n_embd / a.n_head != hd) {
        w.set(p + "attention.key_length", GGUFValue::u32(hd));
        w.set(p + "attention.value_length", GGUFValue::u32(hd));
    }
    w.set("general.file_type", GGUFValue::u32(llama_file_type(type)));
    w.set(p + "vocab_size", GGUFValue::u32(a.n_vocab));
    w.set(p + "rope.dimension_count", GGUFValue::u32(hd));
    if (a.layer_share > 1) {
        std::vector<uint32_t> src(a.n_layer);
        for (uint32_t il = 0; il < a.n_layer; ++il) src[il] = il / a.layer_share;
        w.set(p + "block_source", GGUFValue::u32_array(src));
    }
    for (const auto& [k, v] : tok) w.set(k, v);

    const kernels::TypeTraits* tt = kernels::ref_traits(type);
    if (type != GGMLType::F32 && (tt == nullptr || tt->quantize_ref == nullptr))
        fail("train: save %s: no conversion to %s", path.c_str(), type_name(type));
    // Base tensors only (adapters: save_lora), in the converter's order: embedding, blocks, norm, output.
    for (const TrainParam& t : s.params) {
        if (t.name.find(".lora_") != std::string::npos) continue;
        if (t.is_matrix() && type != GGMLType::F32) {
            std::vector<uint8_t> bytes(row_size(type, t.ne[0]) * size_t(t.ne[1]));
            tt->quantize_ref(t.w, bytes.data(), int64_t(t.n));
            w.add_tensor_copy(t.name, type, t.ne, std::move(bytes));
        } else {
            w.add_tensor(t.name, GGMLType::F32, t.ne, t.w, t.n * sizeof(float));
        }
    }
    w.write(path);
}

std::unique_ptr<TrainModel> TrainModel::load(const std::string& path) {
    GGUFFile f = GGUFFile::open(path);
    const char* fp = path.c_str();
    const std::string arch = f.get_str("general.architecture", "");
    if (arch != "llama")
        fail("train: %s: general.architecture is '%s'; only 'llama' models can be trained", fp, arch.c_str());
    const std::string p = "llama.";
    TrainArch a;
    a.name = f.get_str("general.name", "llama");
    a.n_layer = f.get_u32(p + "block_count");
    a.n_embd = f.get_u32(p + "embedding_length");
    a.n_ctx = f.get_u32(p + "context_length", 2048);
    if (a.n_layer == 0 || a.n_layer > 4096) fail("train: %s: key '%sblock_count' = %u is out of range", fp, p.c_str(), a.n_layer);
    if (a.n_embd == 0 || a.n_embd > 65536)
        fail("train: %s: key '%sembedding_length' = %u is out of range", fp, p.c_str(), a.n_embd);
    a.heads = f.get_per_layer_u32(p + "attention.head_count", a.n_layer, 0);
    a.heads_kv = f.get_per_layer_u32(p + "attention.head_count_kv", a.n_layer, 0);
    a.ffn = f.get_per_layer_u32(p + "feed_forward_length", a.n_layer, 0);
    for (uint32_t il = 0; il < a.n_layer; ++il) {
        if (a.heads_kv[il] == 0) a.heads_kv[il] = a.heads[il];
        if (a.heads[il] == 0 || a.heads[il] > 4096 || a.heads[il] % a.heads_kv[il] != 0)
            fail("train: %s: layer %u: key '%sattention.head_count' = %u / head_count_kv = %u: not a training shape",
                 fp, il, p.c_str(), a.heads[il], a.heads_kv[il]);
        if (a.ffn[il] == 0 || a.ffn[il] > (1u << 20))
            fail("train: %s: layer %u: key '%sfeed_forward_length' = %u is out of range", fp, il, p.c_str(), a.ffn[il]);
    }
    a.n_head = *std::max_element(a.heads.begin(), a.heads.end());
    a.n_head_kv = *std::max_element(a.heads_kv.begin(), a.heads_kv.end());
    a.n_ff = *std::max_element(a.ffn.begin(), a.ffn.end());
    const uint32_t hd = f.get_u32(p + "attention.key_length", a.n_embd / a.n_head);
    if (f.get_u32(p + "attention.value_length", hd) != hd)
        fail("train: %s: key '%sattention.value_length' differs from key_length (%u)", fp, p.c_str(), hd);
    if (f.get_u32(p + "rope.dimension_count", hd) != hd)
        fail("train: %s: key '%srope.dimension_count' = %u: only RoPE over the whole head (%u) is supported", fp,
             p.c_str(), f.get_u32(p + "rope.dimension_count", hd), hd);
    a.head_dim = (a.n_embd % a.n_head == 0 && a.n_embd / a.n_head == hd) ? 0 : hd;
    const std::string scaling = f.get_str(p + "rope.scaling.type", "none");
    if (scaling != "none" && !(scaling == "linear" && f.get_f32(p + "rope.scaling.factor", 1.0f) == 1.0f))
        fail("train: %s: key '%srope.scaling.type' = '%s': RoPE scaling is not supported for training", fp, p.c_str(),
             scaling.c_str());
    if (f.find_tensor("rope_freqs.weight"))
        fail("train: %s: tensor 'rope_freqs.weight': RoPE frequency factors are not supported for training", fp);
    a.rope_freq_base = f.get_f32(p + "rope.freq_base", 10000.0f);
    a.rms_eps = f.get_f32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    // MobileLLM sharing: only immediate repeats (layer il computes block il / k) are trainable here.
    if (const GGUFValue* src = f.find(p + "block_source")) {
        if (src->type != GGUFType::ARRAY || src->n != a.n_layer ||
            (src->elem_type != GGUFType::U32 && src->elem_type != GGUFType::I32))
            fail("train: %s: key '%sblock_source' must be an array of block_count (%u) integers", fp, p.c_str(),
                 a.n_layer);
        uint32_t k = 0;
        while (k < a.n_layer && src->elem_int(k) == 0) ++k;
        bool ok = k > 0 && a.n_layer % k == 0;
        for (uint32_t il = 0; ok && il < a.n_layer; ++il) ok = src->elem_int(il) == int64_t(il / k);
        if (!ok)
            fail("train: %s: key '%sblock_source' = %s: only immediate block repeats (layer i computes block i / k) "
                 "can be trained",
                 fp, p.c_str(), src->to_string().c_str());
        a.layer_share = k;
    }
    const GGUFTensorInfo* te = f.find_tensor("token_embd.weight");
    if (te == nullptr) fail("train: %s: tensor 'token_embd.weight' is missing", fp);
    if (te->n_dims != 2 || te->ne[0] != a.n_embd)
        fail("train: %s: tensor 'token_embd.weight' has shape %s, expected [%u, n_vocab]", fp, te->shape_str().c_str(),
             a.n_embd);
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24)) fail("train: %s: tensor 'token_embd.weight': vocabulary %lld out of range", fp, (long long)te->ne[1]);
    a.n_vocab = uint32_t(te->ne[1]);
    a.tied_embeddings = f.find_tensor("output.weight") == nullptr;
    a.validate(std::string("train: ") + path);

    std::unique_ptr<TrainModel> m(new TrainModel());
    Impl& s = *m->p_;
    s.arch = std::move(a);
    s.build_params();
    size_t used = 0;
    for (TrainParam& t : s.params) {
        const GGUFTensorInfo* ti = f.find_tensor(t.name);
        if (ti == nullptr) fail("train: %s: tensor '%s' is missing", fp, t.name.c_str());
        ++used;
        if (ti->shape() != t.ne) {
            std::string want = "[";
            for (size_t i = 0; i < t.ne.size(); ++i) want += (i ? ", " : "") + std::to_string(t.ne[i]);
            fail("train: %s: tensor '%s' has shape %s, expected %s]", fp, t.name.c_str(), ti->shape_str().c_str(),
                 want.c_str());
        }
        const kernels::TypeTraits* tt = kernels::traits(ti->type);
        if (tt == nullptr || tt->to_float == nullptr) tt = kernels::ref_traits(ti->type);
        if (tt == nullptr || tt->to_float == nullptr)
            fail("train: %s: tensor '%s' has type %s, which slm cannot convert to F32", fp, t.name.c_str(),
                 type_name(ti->type));
        tt->to_float(ti->data, t.w, int64_t(t.n));
    }
    if (used != f.tensors().size())
        for (const GGUFTensorInfo& ti : f.tensors())
            if (std::none_of(s.params.begin(), s.params.end(), [&](const TrainParam& q) { return q.name == ti.name; }))
                fail("train: %s: tensor '%s' is not part of a trainable llama model", fp, ti.name.c_str());
    for (const auto& [k, v] : f.kv())
        if (k.rfind("tokenizer.", 0) == 0) s.tok_kv.emplace_back(k, v);
    return m;
}

} // namespace slm
