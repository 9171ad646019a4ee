#include "models/moe.h"

#include "models/blocks.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace slm::moe {

const char* gating_name(Gating g) { return g == Gating::Sigmoid ? "sigmoid" : "softmax"; }

void read_hparams(const GGUFFile& f, HParams& hp, uint32_t n_ff_exp_default) {
    const std::string a = hp.arch + ".";
    auto get = [&](const std::string& key, uint32_t def, bool required, uint32_t lo, uint32_t hi) {
        if (required && !f.has(a + key)) fail("model: %s: key '%s%s' not found", f.path().c_str(), a.c_str(), key.c_str());
        const uint32_t v = f.get_u32(a + key, def);
        if (v < lo || v > hi)
            fail("model: %s: key '%s%s' = %u is out of range [%u, %u]", f.path().c_str(), a.c_str(), key.c_str(), v, lo, hi);
        return v;
    };
    // 4096 experts is far above any model (llama.cpp allows 512) and keeps n_batch x n_expert
    // scratch small enough that no size computed from it can overflow.
    hp.n_expert = get("expert_count", 0, true, 1, 4096);
    hp.n_expert_used = get("expert_used_count", 0, true, 1, hp.n_expert);
    hp.n_ff_exp = get("expert_feed_forward_length", n_ff_exp_default, false, 1, 1u << 20);
    hp.n_ff_shexp = get("expert_shared_feed_forward_length", 0, false, 0, 1u << 20);
}

MoeParams read_params(const GGUFFile& f, const HParams& hp, MoeParams def) {
    const std::string a = hp.arch + ".";
    MoeParams p = def;
    p.n_expert = hp.n_expert;
    p.n_expert_used = hp.n_expert_used;
    if (f.has(a + "expert_gating_func")) {
        const uint32_t g = f.get_u32(a + "expert_gating_func");
        if (g != 1 && g != 2)
            fail("model: %s: key '%sexpert_gating_func' = %u is not supported (1 softmax, 2 sigmoid)", f.path().c_str(),
                 a.c_str(), g);
        p.gating = static_cast<Gating>(g);
    }
    p.norm_w = f.get_bool(a + "expert_weights_norm", p.norm_w);
    p.w_scale = f.get_f32(a + "expert_weights_scale", p.w_scale);
    if (!std::isfinite(p.w_scale))
        fail("model: %s: key '%sexpert_weights_scale' = %g is not finite", f.path().c_str(), a.c_str(), p.w_scale);
    return p;
}

ModelTensor expert_view(const ModelTensor& t, int64_t e) {
    ModelTensor v;
    const size_t bytes = row_size(t.type, t.ne[0]) * static_cast<size_t>(t.ne[1]);
    v.name = t.name + "[" + std::to_string(e) + "]";
    v.data = static_cast<const uint8_t*>(t.data) + bytes * static_cast<size_t>(e);
    v.type = t.type;
    v.ne[0] = t.ne[0];
    v.ne[1] = t.ne[1];
    v.nbytes = bytes;
    return v;
}

MoeLayer load_layer(const GGUFFile& f, const std::string& prefix, int64_t n_embd, const MoeParams& p,
                    int64_t n_ff_exp, int64_t n_ff_shexp) {
    if (p.n_expert == 0 || p.n_expert_used == 0 || p.n_expert_used > p.n_expert)
        fail("model: %s: %u experts with %u used per token: need 1 <= used <= experts", f.path().c_str(), p.n_expert,
             p.n_expert_used);
    const int64_t NE = p.n_expert;
    MoeLayer L;
    L.gate_inp = get_tensor(f, prefix + "ffn_gate_inp.weight", {n_embd, NE});
    L.gate_exps = get_tensor(f, prefix + "ffn_gate_exps.weight", {n_embd, n_ff_exp, NE});
    L.up_exps = get_tensor(f, prefix + "ffn_up_exps.weight", {n_embd, n_ff_exp, NE});
    L.down_exps = get_tensor(f, prefix + "ffn_down_exps.weight", {n_ff_exp, n_embd, NE});
    for (int64_t e = 0; e < NE; ++e) {
        L.gate_e.push_back(expert_view(L.gate_exps, e));
        L.up_e.push_back(expert_view(L.up_exps, e));
        L.down_e.push_back(expert_view(L.down_exps, e));
    }
    if (n_ff_shexp > 0) {
        L.gate_inp_shexp = get_tensor(f, prefix + "ffn_gate_inp_shexp.weight", {n_embd}, false);
        require_f32(f, L.gate_inp_shexp);
        L.gate_shexp = get_tensor(f, prefix + "ffn_gate_shexp.weight", {n_embd, n_ff_shexp});
        L.up_shexp = get_tensor(f, prefix + "ffn_up_shexp.weight", {n_embd, n_ff_shexp});
        L.down_shexp = get_tensor(f, prefix + "ffn_down_shexp.weight", {n_ff_shexp, n_embd});
    }
    return L;
}

namespace {

// ggml_soft_max_f32 on one row: maximum, exp(x - max) with the sum in double, then every value
// times the float of 1/sum.
void softmax_row(const float* x, float* y, uint32_t n) {
    float mx = -INFINITY;
    for (uint32_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
    double sum = 0.0;
    for (uint32_t i = 0; i < n; ++i) {
        y[i] = std::exp(x[i] - mx);
        sum += y[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (uint32_t i = 0; i < n; ++i) y[i] *= inv;
}

} // namespace

void route(const MoeParams& p, const float* logits, float* probs, uint32_t n, int32_t* ids, float* weights,
           int32_t* order) {
    const uint32_t NE = p.n_expert, K = p.n_expert_used;
    for (uint32_t t = 0; t < n; ++t) {
        const float* l = logits + static_cast<size_t>(t) * NE;
        float* pr = probs + static_cast<size_t>(t) * NE;
        if (p.gating == Gating::Softmax) {
            softmax_row(l, pr, NE);
        } else {
            for (uint32_t i = 0; i < NE; ++i) pr[i] = 1.0f / (1.0f + std::exp(-l[i]));  // ggml_vec_sigmoid_f32
        }
        // ggml_argsort (descending) then the first k: std::sort of the indices 0..n-1 by a strict
        // "greater" on the values, as ggml's CPU argsort does, so equal probabilities end up in
        // the same order as llama.cpp's (lowest index first while n_expert <= 16, where
        // std::sort is an insertion sort).
        // A NaN (from a broken model) sorts as -inf: "greater" with NaNs is no strict weak order,
        // and std::sort may then run off the array.
        std::iota(order, order + NE, 0);
        std::sort(order, order + NE, [pr](int32_t a, int32_t b) {
            const float x = std::isnan(pr[a]) ? -INFINITY : pr[a], y = std::isnan(pr[b]) ? -INFINITY : pr[b];
            return x > y;
        });
        int32_t* id = ids + static_cast<size_t>(t) * K;
        float* w = weights + static_cast<size_t>(t) * K;
        for (uint32_t s = 0; s < K; ++s) {
            id[s] = order[s];
            w[s] = pr[order[s]];
        }
        if (p.norm_w) {
            double sum = 0.0;  // ggml_sum_rows: ggml_float accumulation
            for (uint32_t s = 0; s < K; ++s) sum += w[s];
            // Clamped to F16's smallest normal so a row of zeros cannot divide by zero.
            const float fs = std::max(static_cast<float>(sum), 6.103515625e-5f);
            for (uint32_t s = 0; s < K; ++s) w[s] = w[s] / fs;
        }
        if (p.w_scale != 0.0f && p.w_scale != 1.0f)
            for (uint32_t s = 0; s < K; ++s) w[s] *= p.w_scale;
    }
}

namespace {

// Where the scratch of one ffn call lies for up to B tokens.
struct Scratch {
    float *probs, *weights, *xg, *g, *u, *yd, *ye, *gs, *us, *ys, *gate_s;
    int32_t *ids, *rows, *order, *start;
};

Scratch scratch(SessionState& st, const MoeLayer& L, const MoeParams& p) {
    const size_t B = st.n_batch, NE = p.n_expert, K = p.n_expert_used;
    const size_t E = L.n_embd(), F = L.n_ff_exp(), FS = L.n_ff_shexp();
    const size_t n_f32 = B * (NE + K + E + 2 * F + E + K * E + 2 * FS + E + 1);
    const size_t n_i32 = B * 2 * K + 2 * NE + 1;
    // Sized once for n_batch tokens (the first MoE layer, or a wider one later).
    if (st.moe_f32.size() < n_f32) st.moe_f32.resize(n_f32);
    if (st.moe_i32.size() < n_i32) st.moe_i32.resize(n_i32);
    Scratch s;
    float* f = st.moe_f32.data();
    auto take = [&f](size_t n) { float* r = f; f += n; return r; };
    s.probs = take(B * NE);
    s.weights = take(B * K);
    s.xg = take(B * E);
    s.g = take(B * F);
    s.u = take(B * F);
    s.yd = take(B * E);
    s.ye = take(B * K * E);
    s.gs = take(B * FS);
    s.us = take(B * FS);
    s.ys = take(B * E);
    s.gate_s = take(B);
    int32_t* i = st.moe_i32.data();
    s.ids = i;
    s.rows = i + B * K;
    s.order = i + 2 * B * K;
    s.start = s.order + NE;
    return s;
}

} // namespace

void ffn(SessionState& st, const MoeLayer& L, const MoeParams& p, const float* x, float* out, uint32_t n) {
    const uint32_t NE = p.n_expert, K = p.n_expert_used;
    const size_t E = L.n_embd(), F = L.n_ff_exp();
    if (n > st.n_batch) fail("moe: %u tokens in a batch of %u", n, st.n_batch);
    Scratch s = scratch(st, L, p);

    // Router: logits (n x NE), then probabilities, choice and weights.
    blocks::matmul(st, L.gate_inp, x, s.probs, n);
    route(p, s.probs, s.probs, n, s.ids, s.weights, s.order);

    // Group the (token, slot) pairs by expert: a counting sort, tokens in order within an expert.
    int32_t* start = s.start;  // NE + 1 offsets into rows
    std::fill(start, start + NE + 1, 0);
    for (size_t i = 0; i < size_t(n) * K; ++i) ++start[s.ids[i] + 1];
    for (uint32_t e = 0; e < NE; ++e) start[e + 1] += start[e];
    int32_t* fill = s.order;  // next free place per expert
    std::copy(start, start + NE, fill);
    for (size_t i = 0; i < size_t(n) * K; ++i) s.rows[fill[s.ids[i]]++] = static_cast<int32_t>(i);

    // Each chosen expert once over its tokens: gather, gate/up, SwiGLU, down, then every output
    // row times its token's weight into that token's slot (ggml_mul of the down outputs by the
    // weights).
    for (uint32_t e = 0; e < NE; ++e) {
        const int32_t r0 = start[e], r1 = start[e + 1];
        const uint32_t cnt = static_cast<uint32_t>(r1 - r0);
        if (cnt == 0) continue;
        for (uint32_t j = 0; j < cnt; ++j) {
            const size_t t = static_cast<size_t>(s.rows[r0 + j]) / K;
            std::memcpy(s.xg + j * E, x + t * E, E * sizeof(float));
        }
        blocks::matmul_multi(st, {&L.gate_e[e], &L.up_e[e]}, s.xg, {s.g, s.u}, cnt);
        blocks::swiglu(s.g, s.u, cnt * F);
        blocks::matmul(st, L.down_e[e], s.g, s.yd, cnt);
        for (uint32_t j = 0; j < cnt; ++j) {
            const size_t ts = static_cast<size_t>(s.rows[r0 + j]);  // token * K + slot
            const float w = s.weights[ts];
            const float* y = s.yd + j * E;
            float* dst = s.ye + ts * E;
            for (size_t i = 0; i < E; ++i) dst[i] = y[i] * w;
        }
    }

    // Sum over the slots in top-k order: ((y_0 + y_1) + y_2) + ..., as llama.cpp's ggml_add chain.
    for (uint32_t t = 0; t < n; ++t) {
        float* o = out + size_t(t) * E;
        const float* y = s.ye + size_t(t) * K * E;
        std::memcpy(o, y, E * sizeof(float));
        for (uint32_t k = 1; k < K; ++k) blocks::add_inplace(o, y + k * E, E);
    }

    if (L.has_shexp()) {
        // Shared expert: SwiGLU FFN times its gate, added to the routed experts' sum.
        const size_t FS = L.n_ff_shexp();
        blocks::matmul_multi(st, {&L.gate_shexp, &L.up_shexp}, x, {s.gs, s.us}, n);
        blocks::swiglu(s.gs, s.us, n * FS);
        blocks::matmul(st, L.down_shexp, s.gs, s.ys, n);
        if (L.gate_inp_shexp.present()) {
            blocks::matmul(st, L.gate_inp_shexp, x, s.gate_s, n);  // (n x 1)
            for (uint32_t t = 0; t < n; ++t) {
                // llama.cpp forms the sigmoid as silu(v) / v (ggml_div of ggml_silu by v).
                const float v = s.gate_s[t];
                const float silu = v / (1.0f + std::exp(-v));
                const float gate = silu / v;
                float* y = s.ys + size_t(t) * E;
                for (size_t i = 0; i < E; ++i) y[i] *= gate;
            }
        }
        blocks::add_inplace(out, s.ys, size_t(n) * E);
    }
}

void append_matmul_weights(MoeLayer& L, std::vector<ModelTensor*>& out) {
    for (auto* v : {&L.gate_e, &L.up_e, &L.down_e})
        for (ModelTensor& t : *v) out.push_back(&t);
    if (L.has_shexp())
        for (ModelTensor* t : {&L.gate_shexp, &L.up_shexp, &L.down_shexp}) out.push_back(t);
}

void append_tensors(const MoeLayer& L, std::vector<const ModelTensor*>& out) {
    for (const ModelTensor* t : {&L.gate_inp, &L.gate_exps, &L.up_exps, &L.down_exps}) out.push_back(t);
    if (L.has_shexp()) {
        if (L.gate_inp_shexp.present()) out.push_back(&L.gate_inp_shexp);
        for (const ModelTensor* t : {&L.gate_shexp, &L.up_shexp, &L.down_shexp}) out.push_back(t);
    }
}

std::vector<std::pair<std::string, std::string>> info(const MoeParams& p) {
    std::vector<std::pair<std::string, std::string>> out;
    std::string g = std::string(gating_name(p.gating)) + ", top-" + std::to_string(p.n_expert_used) + " of " +
                    std::to_string(p.n_expert);
    g += p.norm_w ? ", weights normalised to sum 1" : ", weights not normalised";
    if (p.w_scale != 0.0f && p.w_scale != 1.0f) g += ", scaled by " + strprintf("%g", p.w_scale);
    out.emplace_back("expert gating", g);
    return out;
}

} // namespace slm::moe
