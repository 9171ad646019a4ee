#include "compress/awq.h"

#include "compress/grid.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <set>

namespace slm::compress {

namespace {

bool is_quantized(GGMLType t) { return t != GGMLType::F32 && t != GGMLType::F16 && t != GGMLType::BF16; }

int64_t block_of(GGMLType t) { return type_info(t).blck_size; }

// Runs fn(row, thread) for rows [0, n) over the pool and sums what it returns.
template <class F>
double sum_rows(int64_t n, ThreadPool* pool, const F& fn) {
    if (!pool || pool->size() <= 1 || n < 4) {
        double s = 0.0;
        for (int64_t r = 0; r < n; ++r) s += fn(r, 0);
        return s;
    }
    std::vector<double> part(static_cast<size_t>(pool->size()), 0.0);
    pool->parallel_for(n, [&](int64_t b, int64_t e, int t) {
        double s = 0.0;
        for (int64_t r = b; r < e; ++r) s += fn(r, t);
        part[static_cast<size_t>(t)] += s;
    });
    double s = 0.0;
    for (double v : part) s += v;
    return s;
}

// d H d^T for a vector d of n, H row-major n x n (float, symmetric).
double quad(const double* d, const float* h, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        if (d[i] == 0.0) continue;
        const float* hi = h + i * n;
        double t = 0.0;
        for (int64_t j = 0; j < n; ++j) t += hi[j] * d[j];
        s += d[i] * t;
    }
    return s;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

void check_stats(const InputStats& x, const char* who) {
    if (x.hessian.size() != static_cast<size_t>(x.n_in * x.n_in))
        fail("awq: %s: the calibration statistics have no X^T X (run ActivationStats with hessian = true)", who);
    if (x.n_rows == 0) fail("awq: %s: the calibration statistics saw 0 rows", who);
}

} // namespace

double awq_loss(const std::vector<AwqLinear>& linears, const InputStats& x, const float* s, ThreadPool* pool) {
    const int64_t n = x.n_in;
    double total = 0.0;
    for (const AwqLinear& L : linears) {
        total += sum_rows(L.n_out, pool, [&](int64_t r, int) {
            thread_local std::vector<float> ws, q;
            thread_local std::vector<double> d;
            ws.resize(static_cast<size_t>(n));
            q.resize(static_cast<size_t>(n));
            d.resize(static_cast<size_t>(n));
            const float* w = L.w + r * n;
            for (int64_t j = 0; j < n; ++j) ws[j] = s ? w[j] * s[j] : w[j];
            quantize_dequantize(L.type, ws.data(), q.data(), n);
            for (int64_t j = 0; j < n; ++j) d[j] = static_cast<double>(w[j]) - (s ? static_cast<double>(q[j]) / s[j] : q[j]);
            return quad(d.data(), x.hessian.data(), n);
        });
    }
    return total / static_cast<double>(x.n_rows);
}

AwqScales awq_search_scales(const std::vector<AwqLinear>& linears, const InputStats& x, const AwqParams& p,
                            ThreadPool* pool) {
    const int64_t n = x.n_in;
    const std::string who = linears.empty() ? std::string("?") : linears[0].name;
    check_stats(x, who.c_str());
    if (p.n_grid < 1 || p.n_grid > 1000) fail("awq: %s: field 'n_grid' is %d, not in [1, 1000]", who.c_str(), p.n_grid);
    for (const AwqLinear& L : linears)
        if (n % block_of(L.type) != 0)
            fail("awq: %s: rows of %lld are not whole %s blocks", L.name.c_str(), static_cast<long long>(n),
                 type_name(L.type));
    // x_mean: mean |x| per channel. w_mean: per channel mean over all output rows of |w|
    // normalized by the max of its block (group), as llm-awq's get_w_mean.
    std::vector<double> x_mean(static_cast<size_t>(n)), w_mean(static_cast<size_t>(n), 0.0);
    for (int64_t j = 0; j < n; ++j) x_mean[j] = x.sum_abs[j] / static_cast<double>(x.n_rows);
    int64_t n_rows_w = 0;
    for (const AwqLinear& L : linears) {
        const int64_t G = is_quantized(L.type) ? block_of(L.type) : n;
        for (int64_t r = 0; r < L.n_out; ++r) {
            const float* w = L.w + r * n;
            for (int64_t g = 0; g < n; g += G) {
                float mx = 0.0f;
                for (int64_t j = g; j < g + G; ++j) mx = std::max(mx, std::fabs(w[j]));
                if (mx == 0.0f) continue;
                for (int64_t j = g; j < g + G; ++j) w_mean[j] += std::fabs(w[j]) / mx;
            }
        }
        n_rows_w += L.n_out;
    }
    for (auto& v : w_mean) v /= static_cast<double>(std::max<int64_t>(1, n_rows_w));

    AwqScales best;
    best.s.assign(static_cast<size_t>(n), 1.0f);
    // Each linear's error relative to its own round-to-nearest error: summed raw, the widest or
    // largest-weighted linear (attn_q) would decide alone, trading a smaller q error for a larger
    // k or v error (on stories260K that made the model worse).
    std::vector<double> base(linears.size());
    for (size_t i = 0; i < linears.size(); ++i) {
        base[i] = awq_loss({linears[i]}, x, nullptr, pool);
        best.loss_before += base[i];
    }
    auto objective = [&](const float* sv, double* raw) {
        double obj = 0.0;
        *raw = 0.0;
        for (size_t i = 0; i < linears.size(); ++i) {
            const double l = awq_loss({linears[i]}, x, sv, pool);
            *raw += l;
            obj += base[i] > 0.0 ? l / base[i] : 0.0;
        }
        return obj;
    };
    double best_obj = 0.0;
    for (double b : base) best_obj += b > 0.0 ? 1.0 : 0.0;
    best.loss_after = best.loss_before;
    std::vector<float> s(static_cast<size_t>(n));
    for (int duo = 0; duo < 2; ++duo) {
        for (int a = duo ? 0 : 1; a < p.n_grid; ++a) {  // alpha 0 without duo is s = 1, done above
            const double alpha = static_cast<double>(a) / p.n_grid;
            double mx = 0.0, mn = INFINITY;
            for (int64_t j = 0; j < n; ++j) {
                double v = std::pow(std::max(x_mean[j], 1e-8), alpha);
                if (duo) v /= std::pow(std::max(w_mean[j], 1e-8), 1.0 - alpha) + 1e-4;
                v = std::max(v, 1e-4);
                s[j] = static_cast<float>(v);
                mx = std::max(mx, v);
                mn = std::min(mn, v);
            }
            const double norm = std::sqrt(mx * mn);
            for (auto& v : s) v = static_cast<float>(v / norm);
            double loss = 0.0;
            const double obj = objective(s.data(), &loss);
            if (obj < best_obj) {
                best_obj = obj;
                best.loss_after = loss;
                best.s = s;
                best.alpha = static_cast<float>(alpha);
                best.duo = duo != 0;
                best.identity = false;
            }
        }
    }
    return best;
}

std::pair<double, double> awq_clip(float* w, int64_t n_out, GGMLType type, const InputStats& x, ThreadPool* pool) {
    check_stats(x, "clip");
    const int64_t n = x.n_in;
    const int64_t G = block_of(type);
    if (!is_quantized(type) || n % G != 0) return {0.0, 0.0};
    constexpr int kSteps = 10;  // max range * (1 - i / 20), i < 10: llm-awq's n_grid 20, max_shrink 0.5
    std::vector<double> before(static_cast<size_t>(n_out)), after(static_cast<size_t>(n_out));
    sum_rows(n_out, pool, [&](int64_t r, int) {
        std::vector<float> c(static_cast<size_t>(G)), q(static_cast<size_t>(G));
        std::vector<double> d(static_cast<size_t>(G));
        float* wr = w + r * n;
        for (int64_t g = 0; g < n; g += G) {
            float* wg = wr + g;
            float mx = 0.0f;
            for (int64_t j = 0; j < G; ++j) mx = std::max(mx, std::fabs(wg[j]));
            // The group's own block of H: the error within the group, as llm-awq measures it.
            auto err = [&](float m) {
                for (int64_t j = 0; j < G; ++j) c[j] = std::clamp(wg[j], -m, m);
                quantize_dequantize(type, c.data(), q.data(), G);
                double s = 0.0;
                for (int64_t i = 0; i < G; ++i) d[i] = static_cast<double>(wg[i]) - q[i];
                for (int64_t i = 0; i < G; ++i) {
                    const float* hi = x.hessian.data() + (g + i) * n + g;
                    double t = 0.0;
                    for (int64_t j = 0; j < G; ++j) t += hi[j] * d[j];
                    s += d[i] * t;
                }
                return s;
            };
            const double e0 = err(mx);
            double best = e0;
            float best_m = mx;
            for (int i = 1; i < kSteps && mx > 0.0f; ++i) {
                const float m = mx * (1.0f - static_cast<float>(i) / 20.0f);
                const double e = err(m);
                if (e < best) {
                    best = e;
                    best_m = m;
                }
            }
            if (best_m != mx)
                for (int64_t j = 0; j < G; ++j) wg[j] = std::clamp(wg[j], -best_m, best_m);
            before[r] += e0;
            after[r] += best;
        }
        return 0.0;
    });
    double b = 0.0, a = 0.0;
    for (int64_t r = 0; r < n_out; ++r) {
        b += before[r];
        a += after[r];
    }
    return {b / static_cast<double>(x.n_rows), a / static_cast<double>(x.n_rows)};
}

namespace {

struct Work {
    std::vector<float> v;
    int64_t n_in = 0, n_out = 0;  // ne[0], rows
    bool changed = false;
};

class AwqRun {
public:
    AwqRun(const GGUFFile& f, const ActivationStats& st, const std::function<GGMLType(const std::string&)>& type_of,
           const AwqParams& p, ThreadPool* pool)
        : f_(f), st_(st), type_of_(type_of), p_(p), pool_(pool) {}

    bool has(const std::string& name) const { return f_.find_tensor(name) != nullptr; }

    Work& get(const std::string& name) {
        auto it = work_.find(name);
        if (it != work_.end()) return it->second;
        const GGUFTensorInfo& t = f_.tensor(name);
        if (t.n_dims > 2) fail("awq: %s: tensor %s has %u dimensions; expected a matrix or vector", f_.path().c_str(), name.c_str(), t.n_dims);
        Work w;
        w.n_in = t.ne[0];
        w.n_out = t.nrows();
        w.v.resize(static_cast<size_t>(t.nelements()));
        if (t.type == GGMLType::F32) {
            std::memcpy(w.v.data(), t.data, w.v.size() * sizeof(float));
        } else {
            const kernels::TypeTraits* tt = kernels::ref_traits(t.type);
            if (!tt || !tt->to_float) fail("awq: %s: tensor %s has type %s, which cannot be read", f_.path().c_str(), name.c_str(), type_name(t.type));
            tt->to_float(t.data, w.v.data(), t.nelements());
        }
        return work_.emplace(name, std::move(w)).first->second;
    }

    const InputStats* stats_for(const std::string& name) const {
        if (const InputStats* s = st_.find(name)) return s;
        for (const char* part : {"[q]", "[gate]"})
            if (const InputStats* s = st_.find(name + part)) return s;
        return nullptr;
    }

    // The output rows [r0, r0 + n_in) (and bias) of `prev` are divided by s; prev_norm is a norm
    // vector divided by s. Exactly one of them is set.
    void pair(const std::string& label, const std::string& prev_norm, const std::string& prev_linear, int64_t r0,
              const std::vector<std::string>& names) {
        const InputStats* x = stats_for(names[0]);
        if (!x) {
            log_.push_back(label + ": no calibration statistics for " + names[0] + "; skipped");
            return;
        }
        check_stats(*x, names[0].c_str());
        const int64_t n = x->n_in;
        std::vector<AwqLinear> linears;
        bool any_quantized = false;
        for (const std::string& nm : names) {
            Work& w = get(nm);
            if (w.n_in != n)
                fail("awq: %s: tensor %s reads rows of %lld but its input had %lld", f_.path().c_str(), nm.c_str(),
                     static_cast<long long>(w.n_in), static_cast<long long>(n));
            const GGMLType t = type_of_(nm);
            if (n % block_of(t) != 0) {
                log_.push_back(fmt("%s: %s rows of %lld are not whole %s blocks; skipped", label.c_str(), nm.c_str(),
                                   static_cast<long long>(n), type_name(t)));
                return;
            }
            any_quantized = any_quantized || is_quantized(t);
            linears.push_back({nm, w.v.data(), w.n_out, t});
        }
        if (!any_quantized) {
            log_.push_back(label + ": not quantized; skipped");
            return;
        }
        Work* norm = nullptr;
        Work* prev = nullptr;
        Work* bias = nullptr;
        if (!prev_norm.empty()) {
            norm = &get(prev_norm);
            if (static_cast<int64_t>(norm->v.size()) != n)
                fail("awq: %s: norm %s has %zu values, its linears read %lld", f_.path().c_str(), prev_norm.c_str(),
                     norm->v.size(), static_cast<long long>(n));
        } else {
            prev = &get(prev_linear);
            if (r0 + n > prev->n_out)
                fail("awq: %s: %s has %lld output rows, fewer than %lld", f_.path().c_str(), prev_linear.c_str(),
                     static_cast<long long>(prev->n_out), static_cast<long long>(r0 + n));
            const std::string bname = prev_linear.substr(0, prev_linear.size() - 6) + "bias";  // "x.weight" -> "x.bias"
            if (has(bname)) {
                bias = &get(bname);
                if (static_cast<int64_t>(bias->v.size()) < r0 + n)
                    fail("awq: %s: bias %s is shorter than its matrix's rows", f_.path().c_str(), bname.c_str());
            }
        }
        const AwqScales sc = awq_search_scales(linears, *x, p_, pool_);
        if (sc.identity) {
            log_.push_back(fmt("%s: s = 1 (no candidate beat it), loss %.4g", label.c_str(), sc.loss_before));
        } else {
            std::string per;
            for (const AwqLinear& L : linears) {
                const std::string shortname =
                    L.name.rfind("blk.", 0) == 0 ? L.name.substr(L.name.find('.', 4) + 1) : L.name;
                per += fmt(" %s %.3g->%.3g", shortname.c_str(), awq_loss({L}, *x, nullptr, pool_),
                           awq_loss({L}, *x, sc.s.data(), pool_));
            }
            log_.push_back(fmt("%s: alpha %.2f%s, loss %.4g -> %.4g (%s)", label.c_str(), sc.alpha,
                               sc.duo ? " (x^a / w^(1-a))" : " (x^a)", sc.loss_before, sc.loss_after, per.c_str() + 1));
            const float* s = sc.s.data();
            if (norm) {
                for (int64_t j = 0; j < n; ++j) norm->v[j] /= s[j];
                norm->changed = true;
            } else {
                for (int64_t j = 0; j < n; ++j) {
                    float* row = prev->v.data() + (r0 + j) * prev->n_in;
                    for (int64_t k = 0; k < prev->n_in; ++k) row[k] /= s[j];
                    if (bias) bias->v[r0 + j] /= s[j];
                }
                prev->changed = true;
                if (bias) bias->changed = true;
            }
            for (const std::string& nm : names) {
                Work& w = get(nm);
                for (int64_t r = 0; r < w.n_out; ++r)
                    for (int64_t j = 0; j < n; ++j) w.v[r * n + j] *= s[j];
                w.changed = true;
            }
        }
        if (!p_.clip) return;
        // The scaled linears read X diag(1/s): their Hessian is diag(1/s) H diag(1/s).
        InputStats xs;
        const InputStats* xc = x;
        if (!sc.identity) {
            xs.n_in = n;
            xs.n_rows = x->n_rows;
            xs.hessian.resize(x->hessian.size());
            for (int64_t i = 0; i < n; ++i)
                for (int64_t j = 0; j < n; ++j)
                    xs.hessian[i * n + j] = x->hessian[i * n + j] / (sc.s[i] * sc.s[j]);
            xc = &xs;
        }
        for (const AwqLinear& L : linears) {
            if (L.name.find(".attn_q.") != std::string::npos || L.name.find(".attn_k.") != std::string::npos ||
                L.name.find(".attn_qkv.") != std::string::npos || !is_quantized(L.type))
                continue;
            Work& w = get(L.name);
            const auto [b, a] = awq_clip(w.v.data(), w.n_out, L.type, *xc, pool_);
            if (a < b) {
                w.changed = true;
                log_.push_back(fmt("%s: clip %s, loss %.4g -> %.4g", label.c_str(), L.name.c_str(), b, a));
            }
        }
    }

    AwqResult run() {
        const std::string arch = f_.get_str("general.architecture", "");
        static const std::set<std::string> known = {"llama", "qwen2", "qwen3", "phi3", "gemma",
                                                    "gemma2", "gemma3", "granite", "openelm"};
        if (!known.count(arch)) {
            log_.push_back("awq: architecture '" + arch + "' is not supported; no scaling done");
            return finish();
        }
        const uint32_t n_layer = f_.get_u32(arch + ".block_count");
        for (uint32_t il = 0; il < n_layer; ++il) {
            const std::string p = "blk." + std::to_string(il) + ".";
            const std::string tag = "blk." + std::to_string(il) + " ";
            auto w = [&](const char* s) { return p + s + ".weight"; };
            // Attention input.
            std::vector<std::string> attn;
            if (has(w("attn_qkv"))) {
                attn = {w("attn_qkv")};
            } else {
                for (const char* s : {"attn_q", "attn_k", "attn_v"})
                    if (has(w(s))) attn.push_back(w(s));
            }
            if (!attn.empty() && has(w("attn_norm"))) {
                pair(tag + "attn_in", w("attn_norm"), "", 0, attn);
            } else {
                log_.push_back(tag + "attn_in: no attn_norm / attention weights; skipped");
            }
            // attn_v -> attn_output.
            if (has(w("attn_v")) && has(w("attn_output"))) {
                const Work& v = get(w("attn_v"));
                const Work& o = get(w("attn_output"));
                if (v.n_out == o.n_in)
                    pair(tag + "attn_v->attn_output", "", w("attn_v"), 0, {w("attn_output")});
                else
                    log_.push_back(fmt("%sattn_v->attn_output: v gives %lld values, attn_output reads %lld (grouped "
                                       "KV heads); skipped",
                                       tag.c_str(), static_cast<long long>(v.n_out), static_cast<long long>(o.n_in)));
            } else if (has(w("attn_qkv"))) {
                log_.push_back(tag + "attn_v->attn_output: fused attn_qkv; skipped");
            }
            // FFN input.
            const bool fused_up = !has(w("ffn_gate")) && has(w("ffn_up")) && has(w("ffn_down")) &&
                                  get(w("ffn_up")).n_out == 2 * get(w("ffn_down")).n_in;
            std::vector<std::string> ffn;
            if (has(w("ffn_gate"))) ffn.push_back(w("ffn_gate"));
            if (has(w("ffn_up"))) ffn.push_back(w("ffn_up"));
            if (!ffn.empty() && has(w("ffn_norm")) && (fused_up || ffn.size() == 2)) {
                pair(tag + "ffn_in", w("ffn_norm"), "", 0, ffn);
            } else {
                log_.push_back(tag + "ffn_in: no ffn_norm / gate+up weights; skipped");
            }
            // ffn_up -> ffn_down: the up rows (Phi-3: the second half of the fused ffn_up).
            if (has(w("ffn_up")) && has(w("ffn_down")) && (fused_up || has(w("ffn_gate")))) {
                const int64_t r0 = fused_up ? get(w("ffn_down")).n_in : 0;
                pair(tag + "ffn_up->ffn_down", "", w("ffn_up"), r0, {w("ffn_down")});
            } else {
                log_.push_back(tag + "ffn_up->ffn_down: no gated FFN; skipped");
            }
        }
        // output_norm -> output.weight: llm-awq leaves the LM head in 16 bits, but a GGUF
        // quantizes it too. Not with tied embeddings: token_embd is also looked up.
        if (has("output.weight") && has("output_norm.weight"))
            pair("output_in", "output_norm.weight", "", 0, {"output.weight"});
        else
            log_.push_back("output_in: no separate output.weight (tied embeddings); skipped");
        return finish();
    }

private:
    AwqResult finish() {
        AwqResult r;
        for (auto& [name, w] : work_)
            if (w.changed) r.tensors.emplace(name, std::move(w.v));
        r.log = std::move(log_);
        return r;
    }

    const GGUFFile& f_;
    const ActivationStats& st_;
    const std::function<GGMLType(const std::string&)>& type_of_;
    const AwqParams& p_;
    ThreadPool* pool_;
    std::map<std::string, Work> work_;
    std::vector<std::string> log_;
};

} // namespace

AwqResult awq_search(const GGUFFile& model, const ActivationStats& stats,
                     const std::function<GGMLType(const std::string&)>& type_of, const AwqParams& p,
                     ThreadPool* pool) {
    if (p.n_grid < 1 || p.n_grid > 1000) fail("awq: field 'n_grid' is %d, not in [1, 1000]", p.n_grid);
    return AwqRun(model, stats, type_of, p, pool).run();
}

} // namespace slm::compress
