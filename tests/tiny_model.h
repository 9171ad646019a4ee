// tiny_model.h - tiny random-weight GGUF models built inside a test, and the pieces of a
// straightforward double-precision forward pass to check an architecture file against
// ("hand-computed": every formula written out here from the architecture's definition, none
// of slm's kernels or blocks used).
#pragma once

#include "slm/gguf.h"
#include "test_util.h"

#include <cmath>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace slm::test {

// A GGUF under construction: the 512-token stories260K tokenizer (so Model::load finds a
// vocabulary of 512), `<arch>.*` keys, and F32 tensors drawn from a fixed seed.
struct TinyGGUF {
    std::string arch;
    GGUFWriter w;
    std::mt19937 rng;
    std::vector<std::vector<float>> data;  // kept for the reference forward
    std::vector<std::string> names;

    TinyGGUF(const std::string& arch_, uint32_t seed) : arch(arch_), rng(seed) {
        GGUFFile tok = GGUFFile::open(model_path("stories260K/stories260K.gguf"));
        w.set("general.architecture", GGUFValue::string(arch));
        w.set("general.name", GGUFValue::string("tiny-test"));
        for (const auto& [k, v] : tok.kv())
            if (k.rfind("tokenizer.", 0) == 0) w.set(k, v);
    }
    void u32(const std::string& key, uint32_t v) { w.set(arch + "." + key, GGUFValue::u32(v)); }
    void f32(const std::string& key, float v) { w.set(arch + "." + key, GGUFValue::f32(v)); }
    // A tensor of shape ne (ggml order) with values mean + std * N(0, 1); returns its values.
    const std::vector<float>& tensor(const std::string& name, std::vector<int64_t> ne, float std, float mean = 0.0f) {
        size_t n = 1;
        for (int64_t d : ne) n *= size_t(d);
        std::normal_distribution<float> d(0.0f, 1.0f);
        std::vector<float> v(n);
        for (float& x : v) x = mean + std * d(rng);
        return add(name, std::move(ne), std::move(v));
    }
    const std::vector<float>& add(const std::string& name, std::vector<int64_t> ne, std::vector<float> v) {
        data.push_back(std::move(v));
        names.push_back(name);
        const auto& b = data.back();
        std::vector<uint8_t> bytes(b.size() * 4);
        std::memcpy(bytes.data(), b.data(), bytes.size());
        w.add_tensor_copy(name, GGMLType::F32, ne, std::move(bytes));
        return b;
    }
    const std::vector<float>& get(const std::string& name) const {
        for (size_t i = 0; i < names.size(); ++i)
            if (names[i] == name) return data[i];
        throw std::runtime_error("no tensor " + name);
    }
    std::string write(const std::string& file) {
        const std::string path = temp_dir() + "/" + file;
        w.write(path);
        return path;
    }
};

// ---- double-precision reference pieces ------------------------------------------------------

using Vec = std::vector<double>;

// y = W x for W of ggml shape [n_in, n_out] (row r = output r, n_in values).
inline Vec matvec(const std::vector<float>& W, const Vec& x, size_t n_out) {
    const size_t n_in = x.size();
    Vec y(n_out, 0.0);
    for (size_t r = 0; r < n_out; ++r)
        for (size_t i = 0; i < n_in; ++i) y[r] += double(W[r * n_in + i]) * x[i];
    return y;
}

// x / sqrt(mean(x^2) + eps) * w over consecutive rows of n (w may be empty: no weight).
inline Vec rms_norm(const Vec& x, const std::vector<float>& w, double eps, size_t n) {
    Vec y(x.size());
    for (size_t r = 0; r < x.size() / n; ++r) {
        double ss = 0;
        for (size_t i = 0; i < n; ++i) ss += x[r * n + i] * x[r * n + i];
        const double s = 1.0 / std::sqrt(ss / double(n) + eps);
        for (size_t i = 0; i < n; ++i) y[r * n + i] = x[r * n + i] * s * (w.empty() ? 1.0 : double(w[i]));
    }
    return y;
}

// Rotary embedding of one head (hd values) at position pos over its first n_rot dims: frequency
// base^(-2i / n_rot) for pair i; NEOX pairs (i, i + n_rot/2), Llama's GGUF layout (2i, 2i + 1).
inline void rope(double* h, size_t n_rot, double pos, double base, bool neox) {
    for (size_t i = 0; i < n_rot / 2; ++i) {
        const double th = pos * std::pow(base, -2.0 * double(i) / double(n_rot));
        const size_t a = neox ? i : 2 * i, b = neox ? i + n_rot / 2 : 2 * i + 1;
        const double x0 = h[a], x1 = h[b];
        h[a] = x0 * std::cos(th) - x1 * std::sin(th);
        h[b] = x0 * std::sin(th) + x1 * std::cos(th);
    }
}

// Causal attention of token t (its q: n_head x hd) over keys/values of tokens 0..t (each
// n_head_kv x hd), query head h using KV head h / (n_head / n_head_kv); scores times `scale`.
inline Vec attend(const Vec& q, const std::vector<Vec>& ks, const std::vector<Vec>& vs, size_t t, size_t n_head,
                  size_t n_head_kv, size_t hd, double scale) {
    Vec out(n_head * hd, 0.0);
    for (size_t h = 0; h < n_head; ++h) {
        const size_t hk = h / (n_head / n_head_kv);
        Vec s(t + 1);
        double mx = -INFINITY;
        for (size_t j = 0; j <= t; ++j) {
            double d = 0;
            for (size_t i = 0; i < hd; ++i) d += q[h * hd + i] * ks[j][hk * hd + i];
            s[j] = d * scale;
            mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& x : s) sum += (x = std::exp(x - mx));
        for (size_t j = 0; j <= t; ++j)
            for (size_t i = 0; i < hd; ++i) out[h * hd + i] += s[j] / sum * vs[j][hk * hd + i];
    }
    return out;
}

inline double max_abs(const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, double(std::fabs(x)));
    return m;
}

} // namespace slm::test
