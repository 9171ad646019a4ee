// quantize.cpp - `slm quantize` and `slm calibrate` (slm/quantize.h): llama-quantize's pipeline.
//
// The file's tensors are visited in llama-quantize's order (quant_tensor_order); each one's type
// is chosen first for all (the mixture's counters run in that order), then the output is written
// one tensor at a time (GGUFWriter::write_streamed): the input stays mapped, and only the tensor
// being converted has an F32 copy and an output buffer. Rows are quantized in parallel; each row
// is independent, so the bytes do not depend on the thread count.
#include "slm/quantize.h"

#include "compress/awq.h"
#include "compress/calib.h"
#include "compress/gptq.h"
#include "compress/imatrix.h"
#include "compress/quant_mix.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <thread>

namespace slm {

namespace {

int resolve_threads(int n) {
    if (n > 0) return n;
    const unsigned hc = std::thread::hardware_concurrency();
    return hc ? static_cast<int>(hc) : 1;
}

const QuantFileType& parse_file_type(const std::string& s) {
    if (const QuantFileType* f = quant_file_type(s)) return *f;
    // llama-quantize also takes the numeric llama_ftype
    if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) &&
        s.size() < 4) {
        const unsigned v = static_cast<unsigned>(std::stoul(s));
        for (const QuantFileType& f : quant_file_types())
            if (f.ftype == v) return f;
    }
    std::string names;
    for (const QuantFileType& f : quant_file_types()) names += (names.empty() ? "" : " ") + std::string(f.name);
    fail("quantize: unknown type '%s'; known: %s", s.c_str(), names.c_str());
}

compress::MixModel mix_model(const GGUFFile& f) {
    compress::MixModel m;
    m.arch = f.get_str("general.architecture", "");
    const std::string a = m.arch + ".";
    m.n_layer = static_cast<uint32_t>(std::max<int64_t>(0, f.get_int(a + "block_count", 0)));
    if (m.n_layer > 100000) fail("quantize: %s: %sblock_count %u is out of range", f.path().c_str(), a.c_str(), m.n_layer);
    auto first = [&](const std::string& key) -> uint32_t {
        if (!f.has(key) || m.n_layer == 0) return static_cast<uint32_t>(std::max<int64_t>(0, f.get_int(key, 0)));
        return f.get_per_layer_u32(key, m.n_layer, 0)[0];
    };
    m.n_head = first(a + "attention.head_count");
    m.n_head_kv = f.has(a + "attention.head_count_kv") ? first(a + "attention.head_count_kv") : m.n_head;
    m.n_expert = static_cast<uint32_t>(std::max<int64_t>(0, f.get_int(a + "expert_count", 0)));
    m.is_70b = m.arch == "llama" && m.n_layer == 80 && m.n_head != m.n_head_kv;
    return m;
}

bool is_quantized(GGMLType t) { return type_info(t).blck_size > 1; }

// One row as ggml_quantize_chunk does it: importance-weighted when qw is given, else the
// reference quantizer (IQ4_NL has a search of its own even without importances).
void quantize_row(GGMLType t, const kernels::TypeTraits* tt, const float* x, void* y, int64_t n, const float* qw) {
    if (kernels::ref::quantize_row_imatrix(t, x, y, n, qw)) return;
    tt->quantize_ref(x, y, n);
}

} // namespace

QuantizeResult quantize_model(const std::string& in, const std::string& out, const QuantizeParams& p,
                              const std::function<void(size_t, size_t, const QuantizedTensor&)>& on_tensor,
                              const std::function<void(const std::string&)>& on_warning) {
    const QuantFileType& ft = parse_file_type(p.type);
    if (p.method != "rtn" && p.method != "gptq" && p.method != "awq")
        fail("quantize: unknown --method '%s' (rtn, gptq, awq)", p.method.c_str());
    if (!(p.gptq_damp >= 0.0f && p.gptq_damp <= 1.0f))
        fail("quantize: field 'gptq_damp' (--damp) is %g, not in [0, 1]", static_cast<double>(p.gptq_damp));
    if (p.awq_grid < 1 || p.awq_grid > 1000)
        fail("quantize: field 'awq_grid' (--awq-grid) is %d, not in [1, 1000]", p.awq_grid);
    if (!p.include_weights.empty() && !p.exclude_weights.empty())
        fail("quantize: --include-weights and --exclude-weights cannot be used together");
    if (in == out) fail("quantize: input and output are the same file %s", in.c_str());
    QuantizeResult res;
    auto warn = [&](std::string w) {
        if (on_warning) on_warning(w);
        res.warnings.push_back(std::move(w));
    };
    const GGUFFile f = GGUFFile::open(in);

    // Importance matrix: values per column (in_sum2 / count), filtered as llama-quantize does.
    compress::Imatrix im;
    std::map<std::string, std::vector<float>> imat;
    if (!p.imatrix_file.empty()) {
        im = compress::read_imatrix(p.imatrix_file);
        if (!im.legacy && !im.has_metadata)
            fail("quantize: %s: imatrix without its metadata (imatrix.datasets, chunk_count, chunk_size)",
                 p.imatrix_file.c_str());
        imat = compress::imatrix_values(im);
        for (const std::string& x : p.exclude_weights)
            for (auto it = imat.begin(); it != imat.end();) it = it->first.find(x) != std::string::npos ? imat.erase(it) : std::next(it);
        if (!p.include_weights.empty()) {
            std::map<std::string, std::vector<float>> keep;
            for (const std::string& x : p.include_weights)
                for (auto& [k, v] : imat)
                    if (k.find(x) != std::string::npos) keep.emplace(k, v);
            imat = std::move(keep);
        }
    }

    compress::MixOptions mo;
    mo.ftype = ft.ftype;
    mo.type = ft.type;
    mo.pure = p.pure;
    mo.quantize_output = !p.leave_output;
    mo.has_imatrix = !imat.empty();
    mo.output_type = p.output_type;
    mo.embd_type = p.embd_type;
    mo.tensor_types = p.tensor_types;
    for (const auto& [pat, t] : p.tensor_types)
        if (pat.empty()) fail("quantize: --tensor-type: missing tensor name before '='");

    std::vector<std::string> names;
    for (const GGUFTensorInfo& t : f.tensors()) names.push_back(t.name);
    compress::QuantMixer mixer(mix_model(f), mo, names);
    const std::vector<size_t> order = compress::quant_tensor_order(names);

    // Every type first (llama-quantize's preliminary loop), so a bad input fails before writing.
    struct Plan {
        const GGUFTensorInfo* t;
        compress::QuantChoice c;
        const std::vector<float>* qw = nullptr;
    };
    std::vector<Plan> plan;
    for (size_t i : order) {
        const GGUFTensorInfo& t = f.tensors()[i];
        Plan pl{&t, mixer.choose(t.name, t.n_dims, t.ne, t.type)};
        const GGMLType to = pl.c.type;
        if (!type_info(to).name || t.ne[0] % type_info(to).blck_size != 0)
            fail("quantize: %s: tensor '%s' with rows of %lld cannot be %s", in.c_str(), t.name.c_str(),
                 static_cast<long long>(t.ne[0]), type_name(to));
        if (to != t.type) {
            const kernels::TypeTraits* dst = kernels::ref_traits(to);
            if (!dst || !dst->quantize_ref)
                fail("quantize: tensor '%s': slm cannot write type %s", t.name.c_str(), type_name(to));
            if (t.type != GGMLType::F32) {
                const kernels::TypeTraits* src = kernels::ref_traits(t.type);
                if (!src || !src->to_float)
                    fail("quantize: %s: tensor '%s' is %s, which slm cannot convert", in.c_str(), t.name.c_str(),
                         type_name(t.type));
                if (is_quantized(t.type) && !p.allow_requantize)
                    fail("quantize: %s: tensor '%s' is already %s; requantizing needs --allow-requantize", in.c_str(),
                         t.name.c_str(), type_name(t.type));
            }
            if (!imat.empty()) {
                auto it = imat.find(t.name);
                if (it == imat.end()) {
                    warn("no importance matrix entry for " + t.name);
                } else if (it->second.size() != static_cast<size_t>(t.ne[0] * t.ne[2])) {
                    const std::string msg = strprintf("imatrix size %zu is different from tensor size %lld for %s",
                                                      it->second.size(), static_cast<long long>(t.ne[0] * t.ne[2]),
                                                      t.name.c_str());
                    // token_embd never has an entry of its size (it is a lookup, not a product)
                    if (t.name != "token_embd.weight" && t.name != "per_layer_token_embd.weight")
                        fail("quantize: %s: %s", p.imatrix_file.c_str(), msg.c_str());
                    warn(msg);
                } else {
                    pl.qw = &it->second;
                }
            }
            if (pl.c.fallback)
                warn(strprintf("%s: rows of %lld not divisible by %lld (required for %s) -> falling back to %s",
                               t.name.c_str(), static_cast<long long>(t.ne[0]),
                               static_cast<long long>(type_info(pl.c.wanted).blck_size), type_name(pl.c.wanted),
                               type_name(to)));
        }
        plan.push_back(pl);
    }
    // GPTQ / AWQ: calibrate on the text, then GPTQ per weight (with its X^T X), or AWQ's scaled
    // weights and folded norms replacing the file's values before rounding.
    ThreadPool pool(resolve_threads(p.n_threads));
    std::unique_ptr<compress::ActivationStats> stats;
    compress::AwqResult awq;
    if (p.method != "rtn") {
        if (p.calib_text.empty() == p.calib_tokens.empty())
            fail("quantize: --method %s needs calibration data: -f TEXT or --calib-tokens FILE", p.method.c_str());
        std::map<std::string, GGMLType> planned;
        for (const Plan& pl : plan) planned[pl.t->name] = pl.c.type;
        const std::shared_ptr<const Model> model = Model::load(in);
        compress::CalibOptions co;
        co.text_file = p.calib_text;
        co.token_file = p.calib_tokens;
        co.n_samples = p.calib_samples;
        co.n_ctx = p.calib_ctx;
        const compress::CalibSet set = compress::load_calibration(*model, co);
        compress::ActivationStats::Options so;
        so.hessian = true;
        so.pool = &pool;
        // only the matrices that will be rounded to a block type
        so.want = [&planned](const std::string& n) {
            std::string base = n.substr(0, n.find('['));
            auto it = planned.find(base);
            return it != planned.end() && is_quantized(it->second);
        };
        stats = std::make_unique<compress::ActivationStats>(so);
        compress::run_calibration(model, set, *stats, p.n_threads, p.on_calibration);
        stats->finish();
        if (p.method == "awq") {
            compress::AwqParams awq_params;
            awq_params.n_grid = p.awq_grid;
            awq_params.clip = p.awq_clip;
            awq = compress::awq_search(
                f, *stats,
                [&planned](const std::string& n) {
                    auto it = planned.find(n);
                    return it == planned.end() ? GGMLType::F32 : it->second;
                },
                awq_params, &pool);
            for (const std::string& line : awq.log) warn("awq: " + line);
            for (const auto& [name, v] : awq.tensors) {
                const GGUFTensorInfo* t = f.find_tensor(name);
                if (!t || v.size() != static_cast<size_t>(t->nelements()))
                    fail("quantize: awq returned %zu values for tensor '%s'", v.size(), name.c_str());
            }
        }
    }

    GGUFWriter w;
    w.copy_kv_from(f);
    // as gguf_set_val_*: an existing key is removed and the new one appended
    w.remove("general.quantization_version");
    w.set("general.quantization_version", GGUFValue::u32(2));
    w.remove("general.file_type");
    w.set("general.file_type", GGUFValue::u32(ft.ftype));
    for (const char* k : {"split.no", "split.count", "split.tensors.count"}) w.remove(k);
    if (!imat.empty()) {
        auto set_str = [&](const char* k, const std::string& v) {
            w.remove(k);
            w.set(k, GGUFValue::string(v.substr(0, 127)));  // llama-quantize's override holds 127 chars
        };
        auto set_u32 = [&](const char* k, uint32_t v) {
            w.remove(k);
            w.set(k, GGUFValue::u32(v));
        };
        set_str("quantize.imatrix.file", p.imatrix_file);
        if (!im.datasets.empty()) set_str("quantize.imatrix.dataset", im.datasets[0]);
        set_u32("quantize.imatrix.entries_count", static_cast<uint32_t>(imat.size()));
        if (im.chunk_count > 0) set_u32("quantize.imatrix.chunks_count", im.chunk_count);
    }
    res.ftype = ft.ftype;
    // a tensor written as it is in the input (same type, values not changed by AWQ)
    auto copied = [&](const Plan& pl) { return pl.c.type == pl.t->type && !awq.tensors.count(pl.t->name); };
    for (const Plan& pl : plan) {
        const GGUFTensorInfo& t = *pl.t;
        const size_t nbytes = row_size(pl.c.type, t.ne[0]) * static_cast<size_t>(t.nrows());
        w.add_tensor(t.name, pl.c.type, t.shape(), copied(pl) ? t.data : nullptr, nbytes);
    }

    std::vector<float> f32;
    std::vector<uint8_t> buf;
    size_t next = 0;  // plan index of the next tensor written
    auto report = [&](size_t i) {
        const Plan& pl = plan[i];
        const GGUFTensorInfo& t = *pl.t;
        QuantizedTensor q;
        q.name = t.name;
        q.shape = t.shape();
        q.from = t.type;
        q.to = pl.c.type;
        q.bytes_in = t.nbytes;
        q.bytes_out = row_size(pl.c.type, t.ne[0]) * static_cast<size_t>(t.nrows());
        q.fallback = pl.c.fallback;
        q.imatrix = pl.qw != nullptr && kernels::ref::has_imatrix_quantizer(pl.c.type);
        res.bytes_in += q.bytes_in;
        res.bytes_out += q.bytes_out;
        res.n_elements += static_cast<uint64_t>(t.nelements());
        if (on_tensor) on_tensor(i + 1, plan.size(), q);
        res.tensors.push_back(std::move(q));
    };
    auto data_of = [&](size_t wi) -> const void* {
        // write_streamed asks only for tensors added without data, in order; report the ones
        // copied as they are on the way.
        while (next < plan.size() && copied(plan[next])) report(next++);
        if (next != wi || next >= plan.size()) fail("quantize: internal error: tensor order");
        const Plan& pl = plan[next];
        const GGUFTensorInfo& t = *pl.t;
        const int64_t n = t.nelements(), n_per_row = t.ne[0], nrows = t.nrows();
        const float* x;
        if (auto it = awq.tensors.find(t.name); it != awq.tensors.end()) {
            x = it->second.data();
        } else if (t.type == GGMLType::F32) {
            x = reinterpret_cast<const float*>(t.data);
        } else {
            f32.resize(static_cast<size_t>(n));
            const kernels::TypeTraits* src = kernels::ref_traits(t.type);
            const size_t in_row = row_size(t.type, n_per_row);
            pool.parallel_for(nrows, [&](int64_t b, int64_t e, int) {
                for (int64_t r = b; r < e; ++r)
                    src->to_float(t.data + static_cast<size_t>(r) * in_row, f32.data() + r * n_per_row, n_per_row);
            });
            x = f32.data();
            if (is_quantized(t.type)) warn("requantizing " + t.name + " from " + type_name(t.type));
        }
        const kernels::TypeTraits* dst = kernels::ref_traits(pl.c.type);
        if (pl.c.type == GGMLType::F32) {  // AWQ's new values of a tensor that stays F32 (a norm)
            report(next++);
            return x;
        }
        const size_t out_row = row_size(pl.c.type, n_per_row);
        buf.resize(out_row * static_cast<size_t>(nrows));
        const int64_t ne1 = t.ne[1], ne2 = t.ne[2];
        const float* qw = pl.qw ? pl.qw->data() : nullptr;
        if (p.method == "gptq" && is_quantized(pl.c.type)) {
            compress::GptqParams gptq_params;
            gptq_params.damp = p.gptq_damp;
            gptq_params.act_order = p.act_order;
            // each ne[2] slice (an expert) is its own matrix with its own X^T X
            const int64_t n_mat = nrows / ne1;
            bool done = true;
            for (int64_t e = 0; e < n_mat && done; ++e) {
                const std::string key = n_mat > 1 ? t.name + "[" + std::to_string(e) + "]" : t.name;
                const compress::InputStats* st = stats->find(key);
                if (!st || st->hessian.empty()) {
                    done = false;
                    break;
                }
                const std::vector<uint8_t> q = compress::gptq_quantize(
                    t.name, x + e * ne1 * n_per_row, ne1, n_per_row, st->hessian.data(), st->n_rows, pl.c.type,
                    qw ? qw + (e % ne2) * n_per_row : nullptr, gptq_params, &pool);
                if (q.size() != out_row * static_cast<size_t>(ne1))
                    fail("quantize: gptq returned %zu bytes for tensor '%s'", q.size(), t.name.c_str());
                std::memcpy(buf.data() + static_cast<size_t>(e * ne1) * out_row, q.data(), q.size());
            }
            if (done) {
                report(next++);
                return buf.data();
            }
            warn("gptq: no calibration statistics for " + t.name + "; rounded to nearest");
        }
        pool.parallel_for(nrows, [&](int64_t b, int64_t e, int) {
            for (int64_t r = b; r < e; ++r) {
                // each expert (ne[2] slice) has its own importances
                const float* wr = qw ? qw + ((r / ne1) % ne2) * n_per_row : nullptr;
                quantize_row(pl.c.type, dst, x + r * n_per_row, buf.data() + static_cast<size_t>(r) * out_row,
                             n_per_row, wr);
            }
        });
        report(next++);
        return buf.data();
    };
    w.write_streamed(out, data_of);
    while (next < plan.size()) report(next++);
    return res;
}

// ---- slm calibrate ------------------------------------------------------------------------------

CalibrateResult calibrate_imatrix(const CalibrateParams& p, const std::function<void(size_t, size_t)>& progress) {
    if (p.output.empty()) fail("calibrate: needs -o IMATRIX");
    const std::shared_ptr<const Model> model = Model::load(p.model);
    compress::CalibOptions co;
    co.text_file = p.text_file;
    co.token_file = p.token_file;
    co.n_samples = p.n_samples;
    co.n_ctx = p.n_ctx;
    if (co.text_file.empty() == co.token_file.empty()) fail("calibrate: give exactly one of -f TEXT or --calib-tokens FILE");
    const compress::CalibSet set = compress::load_calibration(*model, co);
    compress::ActivationStats::Options so;
    // llama-imatrix collects the blocks' weights (output.weight only with --process-output)
    so.want = [](const std::string& n) { return n.compare(0, 4, "blk.") == 0; };
    compress::ActivationStats stats(so);
    compress::run_calibration(model, set, stats, p.n_threads, progress);
    stats.finish();

    compress::Imatrix im;
    im.datasets.push_back(set.source);
    im.chunk_count = static_cast<uint32_t>(set.samples.size());
    im.chunk_size = set.samples.empty() ? p.n_ctx : static_cast<uint32_t>(set.samples[0].size());
    im.has_metadata = true;
    const GGUFFile& mf = model->file();
    for (const auto& in : stats.inputs()) {
        for (const std::string& wname : in->weights) {
            std::string base = wname;
            int64_t expert = -1;
            if (const size_t lb = wname.rfind('['); lb != std::string::npos && wname.back() == ']') {
                base = wname.substr(0, lb);
                expert = std::stoll(wname.substr(lb + 1, wname.size() - lb - 2));
            }
            const GGUFTensorInfo* t = mf.find_tensor(base);
            const int64_t n_mat = expert >= 0 && t ? t->ne[2] : 1;
            if (expert >= n_mat) fail("calibrate: '%s': expert %lld of %lld", wname.c_str(), (long long)expert, (long long)n_mat);
            compress::ImatrixEntry& e = im.entries[base];
            if (e.counts.empty()) {
                e.counts.assign(static_cast<size_t>(n_mat), 0.0f);
                e.sums.assign(static_cast<size_t>(n_mat * in->n_in), 0.0f);
            }
            if (e.sums.size() != static_cast<size_t>(n_mat * in->n_in))
                fail("calibrate: '%s' read inputs of two widths", base.c_str());
            const int64_t m = std::max<int64_t>(expert, 0);
            e.counts[static_cast<size_t>(m)] += static_cast<float>(in->n_rows);
            for (int64_t j = 0; j < in->n_in; ++j)
                e.sums[static_cast<size_t>(m * in->n_in + j)] += static_cast<float>(in->sum_x2[static_cast<size_t>(j)]);
        }
    }
    if (im.entries.empty()) fail("calibrate: %s: no block weight was observed", p.model.c_str());
    compress::write_imatrix(im, p.output);
    CalibrateResult r;
    r.n_entries = im.entries.size();
    r.n_chunks = im.chunk_count;
    r.n_tokens = set.n_tokens;
    return r;
}

} // namespace slm
