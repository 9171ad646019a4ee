// structured.cpp - structured pruning: whole KV groups of attention heads, FFN channels, or whole
// layers, ranked from calibration statistics, written as a model with smaller real shapes.
//
// Scores (all from the calibration set; no gradients: slm cannot compute them yet, so
// LLM-Pruner's first-order Taylor score is not offered):
//  * heads: a KV group g (one K/V head and its query heads) feeds attn_output through its
//    columns C_g. Removing it removes W_o[:, C_g] X_{C_g}^T from the layer's output, whose
//    energy over the calibration tokens is exactly sum_r w_{r,C_g}^T H_{C_g C_g} w_{r,C_g} with
//    H = X^T X of attn_output's input. That is the score (the magnitude x activation product
//    with the cross-column terms kept).
//  * ffn: channel c feeds ffn_down through one column: its output energy is exactly
//    ||W_down[:, c]||^2 * ||x_c||^2; x_c = silu(gate_c . h) * (up_c . h), so the gate and up
//    rows enter through the channel's activation. Score ||W_down[:, c]||_2 * ||x_c||_2.
//  * layers: ShortGPT's block influence, 1 - mean over tokens of cos(h_l, h_{l+1}). h_l's
//    direction is read from the attention input: attn_q sees rmsnorm(h_l) * g_l (g_l =
//    attn_norm.weight) and RMSNorm keeps the direction, so h_l ~ x / g_l; the last layer's
//    output is output.weight's input / output_norm.weight.
#include "compress/calib.h"
#include "compress/prune_internal.h"
#include "core/thread_pool.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>
#include <thread>

namespace slm::compress {

namespace {

// Block influence observer (see the top of the file).
class BlockInfluence : public MatmulObserver {
public:
    BlockInfluence(const GGUFFile& f, uint32_t n_layer, uint32_t n_embd, bool tied)
        : n_layer_(n_layer), n_embd_(n_embd), tied_(tied), sum_(n_layer, 0.0), count_(n_layer, 0) {
        for (uint32_t l = 0; l < n_layer; ++l)
            gains_.push_back(tensor_values(f.tensor("blk." + std::to_string(l) + ".attn_norm.weight")));
        gains_.push_back(tensor_values(f.tensor("output_norm.weight")));
        for (const auto& g : gains_)
            if (g.size() != n_embd) fail("prune: structured layers: a norm weight has %zu values, not n_embd", g.size());
    }

    void on_matmul(const MatmulEvent& e) override {
        const std::string& name = *e.names[0];
        int l = -1;
        const std::string out_name = tied_ ? "token_embd.weight" : "output.weight";
        if (name == out_name) l = static_cast<int>(n_layer_);
        else if (name.size() > 14 && name.compare(name.size() - 14, 14, ".attn_q.weight") == 0) l = layer_of(name);
        if (l < 0 || e.n_in != n_embd_) return;
        std::vector<float> h(static_cast<size_t>(e.n_tokens) * n_embd_);
        const std::vector<float>& g = gains_[l];
        for (uint32_t t = 0; t < e.n_tokens; ++t)
            for (uint32_t j = 0; j < n_embd_; ++j)
                h[t * n_embd_ + j] = g[j] != 0.0f ? e.x[size_t(t) * n_embd_ + j] / g[j] : 0.0f;
        if (l > 0 && prev_layer_ == l - 1 && prev_.size() == h.size()) {
            for (uint32_t t = 0; t < e.n_tokens; ++t) {
                double ab = 0, aa = 0, bb = 0;
                for (uint32_t j = 0; j < n_embd_; ++j) {
                    const double a = prev_[t * n_embd_ + j], b = h[t * n_embd_ + j];
                    ab += a * b, aa += a * a, bb += b * b;
                }
                if (aa > 0 && bb > 0) {
                    sum_[l - 1] += 1.0 - ab / std::sqrt(aa * bb);
                    ++count_[l - 1];
                }
            }
        }
        prev_ = std::move(h);
        prev_layer_ = l;
    }

    std::vector<double> influence() const {
        std::vector<double> bi(n_layer_);
        for (uint32_t l = 0; l < n_layer_; ++l) {
            if (count_[l] == 0) fail("prune: structured layers: layer %u was never observed during calibration", l);
            bi[l] = sum_[l] / static_cast<double>(count_[l]);
        }
        return bi;
    }

private:
    uint32_t n_layer_, n_embd_;
    bool tied_;
    std::vector<std::vector<float>> gains_;
    std::vector<double> sum_;
    std::vector<uint64_t> count_;
    std::vector<float> prev_;
    int prev_layer_ = -1;
};

size_t elem_size(const GGUFTensorInfo& t) { return t.type == GGMLType::F32 ? 4 : 2; }

std::vector<uint8_t> select_rows(const GGUFTensorInfo& t, const std::vector<int64_t>& rows) {
    const size_t rb = static_cast<size_t>(t.ne[0]) * elem_size(t);
    std::vector<uint8_t> out(rows.size() * rb);
    for (size_t i = 0; i < rows.size(); ++i) std::memcpy(out.data() + i * rb, t.data + rows[i] * rb, rb);
    return out;
}

std::vector<uint8_t> select_cols(const GGUFTensorInfo& t, const std::vector<int64_t>& cols) {
    const size_t es = elem_size(t), rb = static_cast<size_t>(t.ne[0]) * es;
    const int64_t nr = t.nrows();
    std::vector<uint8_t> out(static_cast<size_t>(nr) * cols.size() * es);
    uint8_t* o = out.data();
    for (int64_t r = 0; r < nr; ++r)
        for (int64_t c : cols) {
            std::memcpy(o, t.data + r * rb + c * es, es);
            o += es;
        }
    return out;
}

// Indices [g*len, (g+1)*len) for every kept group g.
std::vector<int64_t> expand(const std::vector<int64_t>& groups, int64_t len) {
    std::vector<int64_t> out;
    for (int64_t g : groups)
        for (int64_t i = 0; i < len; ++i) out.push_back(g * len + i);
    return out;
}

// The n_keep highest-scoring of scores' indices, in increasing order.
std::vector<int64_t> keep_top(const std::vector<double>& scores, int64_t n_keep) {
    std::vector<int64_t> idx(scores.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    idx.resize(static_cast<size_t>(n_keep));
    std::sort(idx.begin(), idx.end());
    return idx;
}

bool ends_with(const std::string& s, const char* suffix) {
    const size_t n = std::strlen(suffix);
    return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

GGUFValue per_layer_value(const std::vector<uint32_t>& v) {
    for (uint32_t x : v)
        if (x != v[0]) return GGUFValue::u32_array(v);
    return GGUFValue::u32(v.empty() ? 0 : v[0]);
}

} // namespace

PruneResult prune_structured(const std::string& in, const std::string& out, const PruneParams& p) {
    const std::string& mode = p.structured;
    if (mode != "heads" && mode != "ffn" && mode != "layers")
        fail("prune: field 'structured' is '%s'; expected heads, ffn or layers", mode.c_str());
    if (!(p.ratio >= 0.0f && p.ratio < 1.0f))
        fail("prune: field 'ratio' is %g, not in [0, 1) (the share of %s removed)", static_cast<double>(p.ratio),
             mode == "heads" ? "KV groups" : mode == "ffn" ? "FFN channels" : "layers");
    GGUFFile f = GGUFFile::open(in);
    const std::string arch = f.get_str("general.architecture");
    static const std::set<std::string> kArchs = {"llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "granite"};
    if (arch == "phi3")
        fail("prune: %s: structured pruning of phi3 (fused attn_qkv and gate+up ffn_up tensors) is not supported; "
             "supported architectures: llama, qwen2, qwen3, gemma, gemma2, gemma3, granite",
             in.c_str());
    if (!kArchs.count(arch))
        fail("prune: %s: structured pruning does not support architecture '%s' (state-space, MoE or other layouts); "
             "supported: llama, qwen2, qwen3, gemma, gemma2, gemma3, granite",
             in.c_str(), arch.c_str());
    if (f.has(arch + ".block_source"))
        fail("prune: %s: key '%s.block_source' (layers sharing blocks) is not supported by structured pruning",
             in.c_str(), arch.c_str());
    for (const GGUFTensorInfo& t : f.tensors()) {
        if (layer_of(t.name) < 0) continue;
        if (t.name.find("_exps") != std::string::npos || t.name.find("ffn_gate_inp") != std::string::npos)
            fail("prune: %s: tensor '%s': MoE experts are not supported by structured pruning", in.c_str(),
                 t.name.c_str());
        if (ends_with(t.name, "attn_qkv.weight"))
            fail("prune: %s: tensor '%s': fused QKV is not supported by structured pruning", in.c_str(), t.name.c_str());
        if (!is_float_type(t.type))
            fail("prune: %s: tensor '%s' is %s; structured pruning reads F32/F16/BF16 weights: prune the float model "
                 "first, then quantize (slm prune -> slm quantize)",
                 in.c_str(), t.name.c_str(), type_name(t.type));
    }
    std::shared_ptr<const Model> model = Model::load(in);
    const HParams& hp = model->hparams();
    const uint32_t L = hp.n_layer;
    PruneResult res;
    CalibSet calib;
    std::unique_ptr<ThreadPool> pool =
        std::make_unique<ThreadPool>(p.n_threads > 0 ? p.n_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));

    // Per layer: kept KV groups / FFN channels; kept layers.
    std::vector<std::vector<int64_t>> keep_groups(L), keep_ff(L);
    std::vector<uint32_t> kept_layers;
    std::vector<uint32_t> removed;
    if (mode == "heads") {
        ActivationStats::Options so;
        so.hessian = true;
        so.want = [](const std::string& n) { return ends_with(n, ".attn_output.weight"); };
        so.pool = pool.get();
        ActivationStats stats(so);
        run_prune_calibration(model, p, stats, calib);
        stats.finish();
        for (uint32_t l = 0; l < L; ++l) {
            const uint32_t nh = hp.n_head_l(l), nkv = hp.n_head_kv_l(l);
            if (nh == 0 || nkv == 0 || nh % nkv != 0)
                fail("prune: %s: layer %u has %u heads and %u KV heads: no whole KV groups", in.c_str(), l, nh, nkv);
            const std::string wo_name = "blk." + std::to_string(l) + ".attn_output.weight";
            const GGUFTensorInfo& wo = f.tensor(wo_name);
            const int64_t n_in = int64_t(nh) * hp.n_embd_head_v, n_out = wo.ne[1];
            if (wo.ne[0] != n_in) fail("prune: %s: tensor '%s' has %lld inputs, not %lld", in.c_str(), wo_name.c_str(),
                                       (long long)wo.ne[0], (long long)n_in);
            const InputStats* s = stats.find(wo_name);
            if (!s || s->hessian.size() != size_t(n_in * n_in))
                fail("prune: %s: tensor '%s' was not seen by the calibration run", in.c_str(), wo_name.c_str());
            const std::vector<float> w = tensor_values(wo);
            const int64_t gl = int64_t(nh / nkv) * hp.n_embd_head_v;  // columns per group
            std::vector<double> score(nkv, 0.0);
            for (uint32_t g = 0; g < nkv; ++g) {
                double e = 0;
                for (int64_t r = 0; r < n_out; ++r) {
                    const float* wr = w.data() + r * n_in + g * gl;
                    for (int64_t a = 0; a < gl; ++a) {
                        const float* ha = s->hessian.data() + (g * gl + a) * n_in + g * gl;
                        double t = 0;
                        for (int64_t b = 0; b < gl; ++b) t += double(ha[b]) * wr[b];
                        e += wr[a] * t;
                    }
                }
                score[g] = e / static_cast<double>(s->n_rows);
            }
            const int64_t n_keep = std::max<int64_t>(1, nkv - std::llround(nkv * double(p.ratio)));
            keep_groups[l] = keep_top(score, n_keep);
            removed.push_back(static_cast<uint32_t>(nkv - n_keep));
            res.scores.insert(res.scores.end(), score.begin(), score.end());
            if (p.log) {
                std::string line = strprintf("layer %u: KV group output energy", l);
                for (uint32_t g = 0; g < nkv; ++g) line += strprintf(" %.4g", score[g]);
                line += strprintf(" -> keep %lld of %u", (long long)n_keep, nkv);
                p.log(line);
            }
        }
    } else if (mode == "ffn") {
        ActivationStats::Options so;
        so.want = [](const std::string& n) { return ends_with(n, ".ffn_down.weight"); };
        ActivationStats stats(so);
        run_prune_calibration(model, p, stats, calib);
        stats.finish();
        for (uint32_t l = 0; l < L; ++l) {
            const uint32_t nff = hp.n_ff_l(l);
            const std::string wd_name = "blk." + std::to_string(l) + ".ffn_down.weight";
            const GGUFTensorInfo& wd = f.tensor(wd_name);
            if (wd.ne[0] != nff) fail("prune: %s: tensor '%s' has %lld inputs, not n_ff %u", in.c_str(), wd_name.c_str(),
                                      (long long)wd.ne[0], nff);
            const InputStats* s = stats.find(wd_name);
            if (!s) fail("prune: %s: tensor '%s' was not seen by the calibration run", in.c_str(), wd_name.c_str());
            const std::vector<float> w = tensor_values(wd);
            std::vector<double> col2(nff, 0.0), score(nff);
            for (int64_t r = 0; r < wd.ne[1]; ++r)
                for (uint32_t c = 0; c < nff; ++c) col2[c] += double(w[r * nff + c]) * w[r * nff + c];
            for (uint32_t c = 0; c < nff; ++c) score[c] = std::sqrt(col2[c] * s->sum_x2[c]);
            int64_t n_keep = std::max<int64_t>(1, nff - std::llround(nff * double(p.ratio)));
            // Widths that are multiples of 32 stay so (block-quantized types need whole blocks).
            if (nff % 32 == 0 && n_keep < int64_t(nff)) n_keep = std::max<int64_t>(32, (n_keep + 16) / 32 * 32);
            keep_ff[l] = keep_top(score, n_keep);
            removed.push_back(static_cast<uint32_t>(nff - n_keep));
            res.scores.insert(res.scores.end(), score.begin(), score.end());
            if (p.log) p.log(strprintf("layer %u: keep %lld of %u FFN channels", l, (long long)n_keep, nff));
        }
    } else {
        BlockInfluence bi(f, L, hp.n_embd, hp.tied_output);
        run_prune_calibration(model, p, bi, calib);
        const std::vector<double> infl = bi.influence();
        res.scores = infl;
        const int64_t n_remove = std::min<int64_t>(L - 1, std::llround(L * double(p.ratio)));
        std::vector<int64_t> keep = keep_top(infl, L - n_remove);
        for (int64_t l : keep) kept_layers.push_back(static_cast<uint32_t>(l));
        for (uint32_t l = 0; l < L; ++l) {
            const bool k = std::find(kept_layers.begin(), kept_layers.end(), l) != kept_layers.end();
            if (!k) removed.push_back(l);
            if (p.log) p.log(strprintf("layer %u: block influence %.5f%s", l, infl[l], k ? "" : "  (removed)"));
        }
    }
    if (mode != "layers")
        for (uint32_t l = 0; l < L; ++l) kept_layers.push_back(l);

    // The new hyper-parameters.
    std::vector<uint32_t> new_layer_of(L, UINT32_MAX);
    for (size_t i = 0; i < kept_layers.size(); ++i) new_layer_of[kept_layers[i]] = static_cast<uint32_t>(i);
    res.n_layer = static_cast<uint32_t>(kept_layers.size());
    for (uint32_t l : kept_layers) {
        uint32_t nh = hp.n_head_l(l), nkv = hp.n_head_kv_l(l), nff = hp.n_ff_l(l);
        if (mode == "heads") {
            nh = nh / nkv * static_cast<uint32_t>(keep_groups[l].size());
            nkv = static_cast<uint32_t>(keep_groups[l].size());
        }
        if (mode == "ffn") nff = static_cast<uint32_t>(keep_ff[l].size());
        res.n_head.push_back(nh);
        res.n_head_kv.push_back(nkv);
        res.n_ff.push_back(nff);
    }

    GGUFWriter w;
    w.copy_kv_from(f);
    const std::string a = arch + ".";
    if (mode == "heads") {
        w.set(a + "attention.head_count", per_layer_value(res.n_head));
        w.set(a + "attention.head_count_kv", per_layer_value(res.n_head_kv));
        // The head size defaults to n_embd / n_head: pin it now that n_head changes.
        if (!f.has(a + "attention.key_length")) w.set(a + "attention.key_length", GGUFValue::u32(hp.n_embd_head_k));
        if (!f.has(a + "attention.value_length"))
            w.set(a + "attention.value_length", GGUFValue::u32(hp.n_embd_head_v));
        if (!f.has(a + "rope.dimension_count") && hp.uses_rope)
            w.set(a + "rope.dimension_count", GGUFValue::u32(hp.n_rot));
        if (arch == "gemma2" || arch == "gemma3")
            res.notes.push_back("gemma2/gemma3 27B take the attention scale from n_embd / n_head (llama.cpp has no "
                                "key for it): with fewer heads those models compute a different scale");
    } else if (mode == "ffn") {
        w.set(a + "feed_forward_length", per_layer_value(res.n_ff));
    } else {
        w.set(a + "block_count", GGUFValue::u32(res.n_layer));
        // Per-layer arrays (head counts, FFN widths, SWA flags, ...) lose the removed layers.
        for (const auto& [key, v] : f.kv()) {
            if (key.rfind(a, 0) != 0 || v.type != GGUFType::ARRAY || v.n != L) continue;
            const size_t es = gguf_scalar_size(v.elem_type);
            if (es == 0) fail("prune: %s: per-layer key '%s' is not a numeric array", in.c_str(), key.c_str());
            GGUFValue nv = v;
            nv.n = res.n_layer;
            nv.raw.clear();
            for (uint32_t l : kept_layers) nv.raw.insert(nv.raw.end(), v.raw.begin() + l * es, v.raw.begin() + (l + 1) * es);
            w.set(key, nv);
            if (p.log) p.log("cut per-layer key " + key);
        }
        if (arch == "gemma2" || arch == "gemma3")
            res.notes.push_back("gemma2/gemma3 choose sliding-window layers by index: removing layers shifts the "
                                "pattern for the layers after a removed one");
    }
    w.set("slm.prune.method", GGUFValue::string("structured"));
    w.set("slm.prune.structured", GGUFValue::string(mode));
    w.set("slm.prune.ratio", GGUFValue::f32(p.ratio));
    w.set("slm.prune.removed", GGUFValue::u32_array(removed));
    if (!calib.source.empty()) w.set("slm.prune.calib", GGUFValue::string(calib.source));

    size_t done = 0, total = f.tensors().size();
    for (const GGUFTensorInfo& t : f.tensors()) {
        res.bytes_in += t.nbytes;
        const int l = layer_of(t.name);
        if (p.progress) p.progress(++done, total, "tensors");
        if (l < 0) {
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            res.bytes_out += t.nbytes;
            continue;
        }
        if (static_cast<uint32_t>(l) >= L) fail("prune: %s: tensor '%s' beyond block_count %u", in.c_str(), t.name.c_str(), L);
        if (new_layer_of[l] == UINT32_MAX) continue;  // removed layer
        const std::string suffix = t.name.substr(t.name.find('.', 4));
        const std::string name = "blk." + std::to_string(new_layer_of[l]) + suffix;
        std::vector<int64_t> ne = t.shape();
        std::vector<uint8_t> bytes;
        bool changed = false;
        if (mode == "heads") {
            const uint32_t nh = hp.n_head_l(l), nkv = hp.n_head_kv_l(l), gsz = nh / nkv;
            const int64_t hk = hp.n_embd_head_k, hv = hp.n_embd_head_v;
            std::vector<int64_t> qheads;
            for (int64_t g : keep_groups[l])
                for (uint32_t i = 0; i < gsz; ++i) qheads.push_back(g * gsz + i);
            const std::vector<int64_t> qi = expand(qheads, hk), ki = expand(keep_groups[l], hk),
                                       vi = expand(keep_groups[l], hv), oi = expand(qheads, hv);
            auto rows_or_elems = [&](const std::vector<int64_t>& idx, int64_t want) {
                const bool bias = t.n_dims == 1;
                const int64_t have = bias ? t.ne[0] : t.ne[1];
                if (have != want)
                    fail("prune: %s: tensor '%s' %s has %lld, expected %lld", in.c_str(), t.name.c_str(),
                         bias ? "length" : "rows", (long long)have, (long long)want);
                bytes = bias ? select_cols(t, idx) : select_rows(t, idx);
                ne[bias ? 0 : 1] = static_cast<int64_t>(idx.size());
                changed = true;
            };
            if (suffix == ".attn_q.weight" || suffix == ".attn_q.bias") rows_or_elems(qi, int64_t(nh) * hk);
            else if (suffix == ".attn_k.weight" || suffix == ".attn_k.bias") rows_or_elems(ki, int64_t(nkv) * hk);
            else if (suffix == ".attn_v.weight" || suffix == ".attn_v.bias") rows_or_elems(vi, int64_t(nkv) * hv);
            else if (suffix == ".attn_output.weight") {
                bytes = select_cols(t, oi);
                ne[0] = static_cast<int64_t>(oi.size());
                changed = true;
            }
        } else if (mode == "ffn") {
            const int64_t nff = hp.n_ff_l(l);
            const std::vector<int64_t>& idx = keep_ff[l];
            if (suffix == ".ffn_gate.weight" || suffix == ".ffn_up.weight") {
                if (t.ne[1] != nff) fail("prune: %s: tensor '%s' has %lld rows, not n_ff %lld", in.c_str(), t.name.c_str(), (long long)t.ne[1], (long long)nff);
                bytes = select_rows(t, idx);
                ne[1] = static_cast<int64_t>(idx.size());
                changed = true;
            } else if (suffix == ".ffn_gate.bias" || suffix == ".ffn_up.bias" || suffix == ".ffn_down.weight") {
                if (t.ne[0] != nff) fail("prune: %s: tensor '%s' has rows of %lld, not n_ff %lld", in.c_str(), t.name.c_str(), (long long)t.ne[0], (long long)nff);
                bytes = select_cols(t, idx);
                ne[0] = static_cast<int64_t>(idx.size());
                changed = true;
            }
        }
        if (changed) {
            res.bytes_out += bytes.size();
            w.add_tensor_copy(name, t.type, ne, std::move(bytes));
        } else {
            res.bytes_out += t.nbytes;
            w.add_tensor(name, t.type, ne, t.data, t.nbytes);
        }
    }
    w.write(out);
    return res;
}

} // namespace slm::compress
