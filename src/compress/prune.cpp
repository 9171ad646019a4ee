// prune.cpp - `slm prune` on a whole model: which matrices, calibration, per-layer sparsity
// (uniform or OWL), the per-matrix algorithms of prune_kernels.cpp, and the atomic write.
#include "compress/calib.h"
#include "compress/prune_internal.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <thread>

namespace slm::compress {

bool is_float_type(GGMLType t) { return t == GGMLType::F32 || t == GGMLType::F16 || t == GGMLType::BF16; }

std::vector<float> tensor_values(const GGUFTensorInfo& t) {
    const int64_t n = t.nelements();
    std::vector<float> v(static_cast<size_t>(n));
    switch (t.type) {
    case GGMLType::F32: std::memcpy(v.data(), t.data, static_cast<size_t>(n) * 4); break;
    case GGMLType::F16:
    case GGMLType::BF16:
        for (int64_t i = 0; i < n; ++i) {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            v[i] = t.type == GGMLType::F16 ? fp16::half_to_float(h) : fp16::bf16_to_float(h);
        }
        break;
    default: fail("prune: tensor '%s' has type %s, not F32/F16/BF16", t.name.c_str(), type_name(t.type));
    }
    return v;
}

std::vector<uint8_t> values_to_bytes(const std::vector<float>& v, GGMLType type) {
    std::vector<uint8_t> out;
    if (type == GGMLType::F32) {
        out.resize(v.size() * 4);
        std::memcpy(out.data(), v.data(), out.size());
        return out;
    }
    out.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
        const uint16_t h = type == GGMLType::F16 ? fp16::float_to_half(v[i]) : fp16::float_to_bf16(v[i]);
        std::memcpy(out.data() + 2 * i, &h, 2);
    }
    return out;
}

int layer_of(const std::string& name) {
    if (name.rfind("blk.", 0) != 0) return -1;
    const size_t dot = name.find('.', 4);
    if (dot == std::string::npos || dot == 4) return -1;
    int l = 0;
    for (size_t i = 4; i < dot; ++i) {
        if (name[i] < '0' || name[i] > '9' || l > 1000000) return -1;
        l = l * 10 + (name[i] - '0');
    }
    return l;
}

void run_prune_calibration(const std::shared_ptr<const Model>& model, const PruneParams& p, MatmulObserver& obs,
                           CalibSet& set) {
    if (set.samples.empty()) {
        CalibOptions co;
        co.text_file = p.calib_text;
        co.token_file = p.calib_tokens;
        co.n_samples = p.calib_samples;
        co.n_ctx = p.calib_ctx;
        if (co.text_file.empty() && co.token_file.empty())
            fail("prune: method '%s'%s needs calibration data: give -f TEXT (or --calib-tokens)",
                 p.structured.empty() ? p.method.c_str() : ("structured " + p.structured).c_str(),
                 p.profile == "owl" ? " with the owl profile" : "");
        set = load_calibration(*model, co);
        if (p.log)
            p.log(strprintf("calibration: %zu samples of %zu tokens (%llu tokens) from %s", set.samples.size(),
                            set.samples.empty() ? size_t{0} : set.samples[0].size(),
                            static_cast<unsigned long long>(set.n_tokens), set.source.c_str()));
    }
    run_calibration(model, set, obs, p.n_threads, [&](size_t d, size_t t) {
        if (p.progress) p.progress(d, t, "calibration");
    });
}

namespace {

int default_threads(int n) {
    if (n > 0) return n;
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// The matrices unstructured pruning touches: 2-D projection weights of the blocks, and output
// on request. Embeddings, norms, biases, routers and position tables stay dense.
bool prunable(const GGUFTensorInfo& t, bool include_output, std::string* why) {
    const std::string& n = t.name;
    if (n == "output.weight") {
        if (!include_output) *why = "output.weight kept dense (--include-output to prune it)";
        return include_output;
    }
    if (layer_of(n) < 0) return false;  // token_embd, output_norm, rope_freqs, ...
    if (n.size() < 7 || n.compare(n.size() - 7, 7, ".weight") != 0) return false;  // biases, scales
    if (n.find("norm") != std::string::npos || n.find("ffn_gate_inp") != std::string::npos) return false;
    if (t.n_dims == 3) {
        *why = n + ": stacked MoE experts are not pruned (skipped)";
        return false;
    }
    if (t.n_dims != 2) return false;
    if (n.find("ssm_") != std::string::npos || n.find("shortconv") != std::string::npos) {
        *why = n + ": state-space tensors are not pruned (skipped)";
        return false;
    }
    return true;
}

void check_params(const PruneParams& p, SparsityPattern pat) {
    if (p.method != "magnitude" && p.method != "wanda" && p.method != "sparsegpt")
        fail("prune: field 'method' is '%s'; expected magnitude, wanda or sparsegpt", p.method.c_str());
    if (!(p.sparsity >= 0.0f && p.sparsity < 1.0f))
        fail("prune: field 'sparsity' is %g, not in [0, 1)", static_cast<double>(p.sparsity));
    if (p.ratio != 0.0f)
        fail("prune: field 'ratio' (%g) applies to structured pruning only: add --structured heads|ffn|layers",
             static_cast<double>(p.ratio));
    if (p.profile != "uniform" && p.profile != "owl")
        fail("prune: field 'sparsity-profile' is '%s'; expected uniform or owl", p.profile.c_str());
    if (p.profile == "owl" && pat.nm())
        fail("prune: field 'sparsity-profile' owl sets per-layer sparsities, which an N:M pattern (%s) fixes; use "
             "--pattern unstructured",
             pat.str().c_str());
    if (!(p.owl_lambda >= 0.0f && p.owl_lambda < 0.5f))
        fail("prune: field 'owl-lambda' is %g, not in [0, 0.5)", static_cast<double>(p.owl_lambda));
    if (!(p.owl_m > 0.0f)) fail("prune: field 'owl-m' is %g, not positive", static_cast<double>(p.owl_m));
}

} // namespace

PruneResult prune_unstructured(const std::string& in, const std::string& out, const PruneParams& p) {
    const SparsityPattern pat = parse_sparsity_pattern(p.pattern);
    check_params(p, pat);
    GGUFFile f = GGUFFile::open(in);
    PruneResult res;
    std::vector<const GGUFTensorInfo*> mats;
    int n_layer = 0;
    for (const GGUFTensorInfo& t : f.tensors()) {
        std::string why;
        if (prunable(t, p.include_output, &why)) {
            if (!is_float_type(t.type))
                fail("prune: %s: tensor '%s' is %s; pruning reads F32/F16/BF16 weights: prune the float model first, "
                     "then quantize (slm prune -> slm quantize)",
                     in.c_str(), t.name.c_str(), type_name(t.type));
            if (pat.nm() && t.ne[0] % pat.m != 0)
                fail("prune: %s: field 'pattern' %s: tensor '%s' has rows of %lld weights, not a multiple of M = %d",
                     in.c_str(), pat.str().c_str(), t.name.c_str(), static_cast<long long>(t.ne[0]), pat.m);
            mats.push_back(&t);
            n_layer = std::max(n_layer, layer_of(t.name) + 1);
        } else if (!why.empty()) {
            res.notes.push_back(why);
        }
    }
    if (mats.empty()) fail("prune: %s: no F32/F16/BF16 projection matrices to prune", in.c_str());

    // Calibration, when the method or the profile needs it.
    // Magnitude needs no statistics (OWL's outlier ratios excepted); sequential calibration
    // only matters to the methods that read activations.
    const bool sequential = p.sequential && p.method != "magnitude";
    const bool need_stats = (p.method != "magnitude" && !sequential) || p.profile == "owl";
    std::unique_ptr<ActivationStats> stats;
    std::unique_ptr<ThreadPool> pool = std::make_unique<ThreadPool>(default_threads(p.n_threads));
    CalibSet calib;
    if (need_stats) {
        std::shared_ptr<const Model> model = Model::load(in);
        std::set<std::string> names;
        for (const auto* t : mats) names.insert(t->name);
        ActivationStats::Options so;
        so.hessian = p.method == "sparsegpt" && !sequential;
        so.want = [names](const std::string& n) { return names.count(n) != 0; };
        so.pool = pool.get();
        stats = std::make_unique<ActivationStats>(so);
        run_prune_calibration(model, p, *stats, calib);
        stats->finish();
    }
    auto stats_of = [&](const GGUFTensorInfo& t) -> const InputStats* {
        const InputStats* s = stats ? stats->find(t.name) : nullptr;
        if (stats && (!s || s->n_in != t.ne[0]))
            fail("prune: %s: tensor '%s' was not seen by the calibration run (or with another width)", in.c_str(),
                 t.name.c_str());
        return s;
    };

    // Per-layer target sparsity.
    res.layer_target.assign(static_cast<size_t>(n_layer), p.sparsity);
    if (p.profile == "owl") {
        std::vector<double> ratio(static_cast<size_t>(n_layer), 0.0);
        for (int l = 0; l < n_layer; ++l) {
            std::vector<float> metric;
            for (const auto* t : mats) {
                if (layer_of(t->name) != l) continue;
                const InputStats* s = stats_of(*t);
                const std::vector<float> w = tensor_values(*t);
                const int64_t n_in = t->ne[0];
                for (size_t i = 0; i < w.size(); ++i)
                    metric.push_back(std::fabs(w[i]) * static_cast<float>(std::sqrt(s->sum_x2[i % n_in])));
            }
            if (metric.empty()) continue;
            double mean = 0.0;
            for (float m : metric) mean += m;
            mean /= static_cast<double>(metric.size());
            size_t n_out = 0;
            for (float m : metric) n_out += m > p.owl_m * mean;
            ratio[l] = static_cast<double>(n_out) / static_cast<double>(metric.size());
            if (p.log) p.log(strprintf("owl: layer %d outlier ratio %.4f%%", l, 100.0 * ratio[l]));
        }
        res.layer_target = prune::owl_sparsities(ratio, p.sparsity, p.owl_lambda);
    }

    std::vector<int64_t> layer_zero(static_cast<size_t>(n_layer), 0), layer_n(static_cast<size_t>(n_layer), 0);
    std::map<std::string, std::vector<uint8_t>> pruned;  // name -> new bytes (same type)
    size_t done = 0;
    auto prune_one = [&](const GGUFTensorInfo& t, const InputStats* s) {
        const int l = layer_of(t.name);
        const double target = l >= 0 ? res.layer_target[l] : p.sparsity;
        const int64_t n_in = t.ne[0], n_out = t.ne[1];
        std::vector<float> v = tensor_values(t);
        const std::vector<float> orig = v;
        if (p.method == "magnitude") {
            prune::magnitude(v.data(), n_out, n_in, static_cast<float>(target), pat);
        } else if (p.method == "wanda") {
            prune::wanda(v.data(), n_out, n_in, s->sum_x2.data(), static_cast<float>(target), pat);
        } else {
            if (s->hessian.size() != static_cast<size_t>(n_in * n_in))
                fail("prune: tensor '%s': no X^T X from calibration", t.name.c_str());
            prune::sparsegpt(v.data(), n_out, n_in, s->hessian.data(), static_cast<float>(target), pat, p.sparsegpt,
                             pool.get());
        }
        PruneMatrixLog ml;
        ml.name = t.name;
        ml.layer = l;
        ml.n_elements = n_out * n_in;
        ml.target = pat.nm() ? 1.0 - static_cast<double>(pat.n) / pat.m : target;
        for (float x : v) ml.n_zero += x == 0.0f;
        // Relative output error tr(dW H dW^T) / tr(W H W^T) when X^T X is at hand.
        if (s && s->hessian.size() == static_cast<size_t>(n_in * n_in)) {
            std::vector<double> num(static_cast<size_t>(n_out)), den(static_cast<size_t>(n_out));
            pool->parallel_for(n_out, [&](int64_t r0, int64_t r1, int) {
                std::vector<double> d(static_cast<size_t>(n_in));
                for (int64_t r = r0; r < r1; ++r) {
                    const float* wo = orig.data() + r * n_in;
                    for (int64_t j = 0; j < n_in; ++j) d[j] = static_cast<double>(wo[j]) - v[r * n_in + j];
                    double a = 0, b = 0;
                    for (int64_t i = 0; i < n_in; ++i) {
                        const float* hi = s->hessian.data() + i * n_in;
                        double hd = 0, hw = 0;
                        for (int64_t j = 0; j < n_in; ++j) {
                            hd += hi[j] * d[j];
                            hw += hi[j] * static_cast<double>(wo[j]);
                        }
                        a += d[i] * hd;
                        b += wo[i] * hw;
                    }
                    num[r] = a;
                    den[r] = b;
                }
            });
            double a = 0, b = 0;
            for (int64_t r = 0; r < n_out; ++r) a += num[r], b += den[r];
            ml.rel_err = b > 0 ? a / b : 0.0;
        }
        if (l >= 0) layer_zero[l] += ml.n_zero, layer_n[l] += ml.n_elements;
        if (p.log) {
            std::string line = strprintf("%-28s %-12s sparsity %.4f (target %.4f)", t.name.c_str(), t.shape_str().c_str(),
                                         static_cast<double>(ml.n_zero) / ml.n_elements, ml.target);
            if (ml.rel_err >= 0) line += strprintf("  rel. output error %.3e", ml.rel_err);
            p.log(line);
        }
        res.matrices.push_back(ml);
        pruned[t.name] = values_to_bytes(v, t.type);
        if (p.progress) p.progress(++done, mats.size(), "tensors");
    };
    // The input model with every matrix pruned so far.
    auto writer = [&]() {
        GGUFWriter w;
        w.copy_kv_from(f);
        for (const GGUFTensorInfo& t : f.tensors()) {
            auto it = pruned.find(t.name);
            if (it == pruned.end()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            else w.add_tensor(t.name, t.type, t.shape(), it->second.data(), it->second.size());
        }
        return w;
    };
    if (!sequential) {
        for (const auto* t : mats) prune_one(*t, stats_of(*t));
    } else {
        // Layer by layer, as the Wanda and SparseGPT references: each layer's statistics come
        // from a model whose earlier layers are already pruned, so later layers see (and
        // compensate for) the inputs they will really get.
        const std::string tmp = out + ".seq.tmp.gguf";
        for (int l = 0; l <= n_layer; ++l) {
            const int group = l < n_layer ? l : -1;  // -1: output.weight, after every block
            std::set<std::string> names;
            for (const auto* t : mats)
                if (layer_of(t->name) == group) names.insert(t->name);
            if (names.empty()) continue;
            std::unique_ptr<ActivationStats> st;
            {
                writer().write(tmp);
                std::shared_ptr<const Model> model = Model::load(tmp);
                ActivationStats::Options so;
                so.hessian = p.method == "sparsegpt";
                so.want = [names](const std::string& n) { return names.count(n) != 0; };
                so.pool = pool.get();
                st = std::make_unique<ActivationStats>(so);
                run_prune_calibration(model, p, *st, calib);
                st->finish();
            }
            std::remove(tmp.c_str());
            for (const auto* t : mats) {
                if (!names.count(t->name)) continue;
                const InputStats* s = st->find(t->name);
                if (!s || s->n_in != t->ne[0])
                    fail("prune: %s: tensor '%s' was not seen by the calibration run", in.c_str(), t->name.c_str());
                prune_one(*t, s);
            }
        }
    }
    for (const GGUFTensorInfo& t : f.tensors()) res.bytes_in += t.nbytes;
    res.bytes_out = res.bytes_in;
    res.layer_sparsity.resize(static_cast<size_t>(n_layer));
    for (int l = 0; l < n_layer; ++l) res.layer_sparsity[l] = layer_n[l] ? double(layer_zero[l]) / layer_n[l] : 0.0;
    GGUFWriter w = writer();
    w.set("slm.prune.method", GGUFValue::string(p.method));
    w.set("slm.prune.sparsity", GGUFValue::f32(p.sparsity));
    w.set("slm.prune.pattern", GGUFValue::string(pat.str()));
    w.set("slm.prune.profile", GGUFValue::string(p.profile));
    w.set("slm.prune.sequential", GGUFValue::boolean(sequential));
    if (!calib.source.empty()) w.set("slm.prune.calib", GGUFValue::string(calib.source));
    w.write(out);
    return res;
}

} // namespace slm::compress

namespace slm {

PruneResult prune_model(const std::string& in, const std::string& out, const PruneParams& p) {
    if (!p.structured.empty()) return compress::prune_structured(in, out, p);
    return compress::prune_unstructured(in, out, p);
}

} // namespace slm
