#include "models/ssm.h"

#include "core/thread_pool.h"
#include "models/blocks.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>

namespace slm::ssm {

namespace {

// Upper bounds far above any released model (Mamba and Jamba: d_conv 4, d_state 16, dt_rank
// d_model / 16), low enough that a bad file is refused before anything is sized from it.
constexpr uint32_t kMaxConvKernel = 64;    // the convolution keeps its window on the stack
constexpr uint32_t kMaxInner = 1u << 20;
constexpr uint32_t kMaxState = 1024;
constexpr uint32_t kMaxDtRank = 1u << 16;

uint32_t read_key(const GGUFFile& f, const std::string& key, uint32_t hi) {
    if (!f.has(key)) fail("model: %s: key '%s' not found (a state-space model needs it)", f.path().c_str(), key.c_str());
    const int64_t v = f.get_int(key, 0);
    if (v < 1 || v > int64_t(hi))
        fail("model: %s: key '%s' = %lld is out of range [1, %u]", f.path().c_str(), key.c_str(),
             static_cast<long long>(v), hi);
    return static_cast<uint32_t>(v);
}

// ggml_silu_f32: x / (1 + e^-x), in float.
inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

// ggml_compute_softplus_f32: log(1 + e^x), the identity above 20 where that is exact in float.
inline float softplus(float x) { return x > 20.0f ? x : std::log(1.0f + std::exp(x)); }

template <class F>
void parallel(SessionState& st, int64_t n, const F& fn) {
    if (st.pool)
        st.pool->parallel_for(n, fn);
    else
        fn(0, n, 0);
}

} // namespace

void read_hparams(const GGUFFile& f, HParams& hp) {
    const std::string a = hp.arch + ".ssm.";
    hp.ssm_d_conv = read_key(f, a + "conv_kernel", kMaxConvKernel);
    hp.ssm_d_inner = read_key(f, a + "inner_size", kMaxInner);
    hp.ssm_d_state = read_key(f, a + "state_size", kMaxState);
    hp.ssm_dt_rank = read_key(f, a + "time_step_rank", kMaxDtRank);
}

MambaMixer load_mixer(const GGUFFile& f, const HParams& hp, uint32_t il, BcdtNorm norm) {
    const bool with_bcdt_norms = norm == BcdtNorm::Weighted;
    const int64_t E = hp.n_embd, Di = hp.ssm_d_inner, S = hp.ssm_d_state, R = hp.ssm_dt_rank, K = hp.ssm_d_conv;
    const std::string p = "blk." + std::to_string(il) + ".";
    MambaMixer m;
    m.ssm_in = get_tensor(f, p + "ssm_in.weight", {E, 2 * Di});
    m.conv1d = get_tensor(f, p + "ssm_conv1d.weight", {K, Di});
    m.conv1d_b = get_tensor(f, p + "ssm_conv1d.bias", {Di});
    m.ssm_x = get_tensor(f, p + "ssm_x.weight", {Di, R + 2 * S});
    if (with_bcdt_norms) {
        m.dt_norm = get_tensor(f, p + "ssm_dt_norm.weight", {R});
        m.b_norm = get_tensor(f, p + "ssm_b_norm.weight", {S});
        m.c_norm = get_tensor(f, p + "ssm_c_norm.weight", {S});
    }
    m.ssm_dt = get_tensor(f, p + "ssm_dt.weight", {R, Di});
    m.ssm_dt_b = get_tensor(f, p + "ssm_dt.bias", {Di});
    m.ssm_a = get_tensor(f, p + "ssm_a", {S, Di});  // no ".weight": the converter's name
    m.ssm_d = get_tensor(f, p + "ssm_d", {Di});
    m.ssm_out = get_tensor(f, p + "ssm_out.weight", {Di, E});
    for (const ModelTensor* t : {&m.conv1d, &m.conv1d_b, &m.dt_norm, &m.b_norm, &m.c_norm, &m.ssm_dt_b, &m.ssm_a, &m.ssm_d})
        require_f32(f, *t);
    m.bcdt_norm = norm != BcdtNorm::None;
    return m;
}

size_t state_floats(const HParams& hp) {
    return (size_t(hp.ssm_d_conv) - 1) * hp.ssm_d_inner + size_t(hp.ssm_d_state) * hp.ssm_d_inner;
}

size_t scratch_floats_per_token(const HParams& hp) {
    // xz (2 d_inner), conv output (d_inner), x_db (dt_rank + 2 d_state), dt input (dt_rank),
    // dt then y (d_inner).
    return 4 * size_t(hp.ssm_d_inner) + 2 * size_t(hp.ssm_dt_rank) + 2 * size_t(hp.ssm_d_state);
}

void mixer_forward(SessionState& st, const HParams& hp, const MambaMixer& m, float* state, const float* in, float* out,
                   uint32_t n, float* scratch) {
    const size_t Di = hp.ssm_d_inner, S = hp.ssm_d_state, R = hp.ssm_dt_rank, K = hp.ssm_d_conv;
    const size_t n_xdb = R + 2 * S;
    float* xz = scratch;                // (n, 2 Di): x | z
    float* xc = xz + n * 2 * Di;        // (n, Di): x after the convolution and SiLU
    float* xdb = xc + n * Di;           // (n, R + 2 S): dt input | B | C
    float* dtin = xdb + n * n_xdb;      // (n, R): the dt input, contiguous for its matmul
    float* dt = dtin + n * R;           // (n, Di): dt; the scan overwrites it with y
    float* conv_state = state;          // [Di][K - 1]
    float* scan_state = state + (K - 1) * Di;  // [Di][S]

    blocks::matmul(st, m.ssm_in, in, xz, n);  // W_in (2 Di, E) @ in -> xz (n, 2 Di)

    // Causal depthwise convolution over [the channel's last K - 1 inputs, this call's x], as
    // ggml_ssm_conv: a float sum over the taps, oldest first; then bias and SiLU. The window's
    // last K - 1 inputs become the new conv state.
    const float* w = m.conv1d.f32();
    const float* bias = m.conv1d_b.f32();
    parallel(st, static_cast<int64_t>(Di), [&](int64_t c0, int64_t c1, int) {
        float win[kMaxConvKernel];
        for (int64_t c = c0; c < c1; ++c) {
            float* cs = conv_state + c * (K - 1);
            const float* wc = w + c * K;
            std::copy(cs, cs + (K - 1), win);
            for (uint32_t t = 0; t < n; ++t) {
                win[K - 1] = xz[t * 2 * Di + c];
                float sum = 0.0f;
                for (size_t k = 0; k < K; ++k) sum += win[k] * wc[k];
                xc[t * Di + c] = silu(sum + bias[c]);
                std::copy(win + 1, win + K, win);
            }
            std::copy(win, win + (K - 1), cs);
        }
    });

    blocks::matmul(st, m.ssm_x, xc, xdb, n);  // W_x (R + 2 S, Di) @ xc -> xdb (n, R + 2 S)
    for (uint32_t t = 0; t < n; ++t) std::copy(xdb + t * n_xdb, xdb + t * n_xdb + R, dtin + t * R);
    if (m.bcdt_norm) {
        // Jamba, Falcon-Mamba: RMSNorm of the dt input, B and C, each over its own row (times a
        // weight in Jamba).
        auto w = [](const ModelTensor& t) { return t.present() ? t.f32() : nullptr; };
        blocks::rms_norm(dtin, w(m.dt_norm), dtin, n, static_cast<int64_t>(R), hp.rms_eps);
        for (uint32_t t = 0; t < n; ++t) {
            float* b = xdb + t * n_xdb + R;
            blocks::rms_norm(b, w(m.b_norm), b, 1, static_cast<int64_t>(S), hp.rms_eps);
            blocks::rms_norm(b + S, w(m.c_norm), b + S, 1, static_cast<int64_t>(S), hp.rms_eps);
        }
    }
    blocks::matmul(st, m.ssm_dt, dtin, dt, n);  // W_dt (Di, R) @ dtin -> dt (n, Di)
    blocks::add_bias(dt, m.ssm_dt_b.f32(), n, static_cast<int64_t>(Di));

    // Selective scan, one channel at a time (channels are independent), as ggml_ssm_scan for
    // Mamba-1: the state decays by exp(softplus(dt) A) per state, each in float; y is the float
    // sum of state * C in state order. Then the skip D and the gate silu(z), as the graph adds
    // them: (y + x D) * silu(z).
    const float* A = m.ssm_a.f32();
    const float* D = m.ssm_d.f32();
    parallel(st, static_cast<int64_t>(Di), [&](int64_t c0, int64_t c1, int) {
        for (int64_t c = c0; c < c1; ++c) {
            float* h = scan_state + c * S;
            const float* a = A + c * S;
            for (uint32_t t = 0; t < n; ++t) {
                const float* B = xdb + t * n_xdb + R;
                const float* C = B + S;
                const float dsp = softplus(dt[t * Di + c]);
                const float x = xc[t * Di + c];
                const float x_dt = x * dsp;
                float sum = 0.0f;
                for (size_t s = 0; s < S; ++s) {
                    const float hs = h[s] * std::exp(dsp * a[s]) + B[s] * x_dt;
                    sum += hs * C[s];
                    h[s] = hs;
                }
                const float y = sum + x * D[c];
                dt[t * Di + c] = silu(xz[t * 2 * Di + Di + c]) * y;
            }
        }
    });

    blocks::matmul(st, m.ssm_out, dt, out, n);  // W_out (E, Di) @ y -> out (n, E)
}

void append_tensors(const MambaMixer& m, std::vector<const ModelTensor*>& out) {
    for (const ModelTensor* t : {&m.ssm_in, &m.conv1d, &m.conv1d_b, &m.ssm_x, &m.dt_norm, &m.b_norm, &m.c_norm, &m.ssm_dt,
                                 &m.ssm_dt_b, &m.ssm_a, &m.ssm_d, &m.ssm_out})
        if (t->present()) out.push_back(t);
}

void append_matmul_weights(MambaMixer& m, std::vector<ModelTensor*>& out) {
    for (ModelTensor* t : {&m.ssm_in, &m.ssm_x, &m.ssm_dt, &m.ssm_out}) out.push_back(t);
}

} // namespace slm::ssm
