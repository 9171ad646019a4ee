// compress_report - GPTQ / AWQ against round-to-nearest on a real model: quantizes every 2-D
// weight of an F32 GGUF with each method and reports the KL divergence from the F32 model on
// held-out text. Not a benchmark of speed; a quality figure for bench/COMPRESSION.md.
//
//   ./build/bench/bench_compress                      # stories260K, Q4_0 Q4_1 Q5_0
//   ./build/bench/bench_compress --types Q4_0 --chunks 20 --calib-samples 64
//
// Layout, as the stories260K goldens (llama-quantize --pure --tensor-type ffn_down=f16): every
// 2-D weight gets the type, except rows that are not whole blocks (stories260K's ffn_down, 172
// wide) which stay F16. token_embd is looked up, not multiplied, so it has no Hessian: every
// method rounds it to nearest, and the "embd only" row shows how much KLD that alone costs.
// GPTQ quantizes output.weight with its input's Hessian; AWQ scales it through output_norm.
// Rows: RTN (quantize_ref), GPTQ (in order / act-order / layer-sequential: each layer's
// Hessians from the model whose earlier layers are quantized), AWQ with and without clipping
// then RTN, and AWQ (no clip) then GPTQ on the scaled model, calibrated again.
#include "compress/awq.h"
#include "compress/calib.h"
#include "compress/gptq.h"
#include "compress/grid.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/perplexity.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <unistd.h>

using namespace slm;

namespace {

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) fail("compress_report: cannot open %s", path.c_str());
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

bool is_matrix(const GGUFTensorInfo& t) {
    return t.n_dims == 2 && t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".weight") == 0 &&
           t.name.find("_norm") == std::string::npos;
}

GGMLType type_for(const GGUFTensorInfo& t, GGMLType type) {
    return t.ne[0] % type_info(type).blck_size == 0 ? type : GGMLType::F16;
}

std::vector<float> f32_of(const GGUFTensorInfo& t) {
    if (t.type != GGMLType::F32) fail("compress_report: %s is %s; an F32 model is needed", t.name.c_str(), type_name(t.type));
    const auto* p = reinterpret_cast<const float*>(t.data);
    return {p, p + t.nelements()};
}

enum class Method { F32Embd, Rtn, Gptq, GptqAct, GptqSeq, Awq, AwqNoClip, AwqGptq };

struct Job {
    const char* label;
    Method m;
};

void write_model(const GGUFFile& f, GGMLType type, Method m, const compress::ActivationStats& stats,
                 const compress::AwqResult* awq, ThreadPool& pool, const std::string& path) {
    GGUFWriter w;
    w.copy_kv_from(f);
    for (const GGUFTensorInfo& t : f.tensors()) {
        std::vector<float> v = f32_of(t);
        if (awq) {
            auto it = awq->tensors.find(t.name);
            if (it != awq->tensors.end()) v = it->second;
        }
        if (!is_matrix(t) || (m == Method::F32Embd && t.name != "token_embd.weight")) {
            std::vector<uint8_t> bytes(v.size() * sizeof(float));
            std::memcpy(bytes.data(), v.data(), bytes.size());
            w.add_tensor_copy(t.name, GGMLType::F32, t.shape(), std::move(bytes));
            continue;
        }
        const GGMLType qt = type_for(t, type);
        const int64_t n_in = t.ne[0], n_out = t.nrows();
        std::vector<uint8_t> bytes;
        const compress::InputStats* s = stats.find(t.name);
        if ((m == Method::Gptq || m == Method::GptqAct) && qt != GGMLType::F16 && t.name != "token_embd.weight") {
            if (!s) fail("compress_report: no calibration statistics for %s", t.name.c_str());
            compress::GptqParams p;
            p.act_order = m == Method::GptqAct;
            bytes = compress::gptq_quantize(t.name, v.data(), n_out, n_in, s->hessian.data(), s->n_rows, qt, nullptr,
                                            p, &pool);
        } else {
            bytes.resize(row_size(qt, n_in) * static_cast<size_t>(n_out));
            kernels::ref_traits(qt)->quantize_ref(v.data(), bytes.data(), n_in * n_out);
        }
        w.add_tensor_copy(t.name, qt, t.shape(), std::move(bytes));
    }
    w.write(path);
}

struct Quantized {
    GGMLType type;
    std::vector<uint8_t> bytes;
};

// The file with the tensors of `q` in place of the F32 originals.
void write_tensors(const GGUFFile& f, const std::map<std::string, Quantized>& q, const std::string& path) {
    GGUFWriter w;
    w.copy_kv_from(f);
    for (const GGUFTensorInfo& t : f.tensors()) {
        auto it = q.find(t.name);
        if (it != q.end())
            w.add_tensor(t.name, it->second.type, t.shape(), it->second.bytes.data(), it->second.bytes.size());
        else
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    }
    w.write(path);
}

// GPTQ as the paper runs it: layer by layer, each layer's Hessians taken from the model whose
// earlier layers are already quantized, so a layer also compensates what the earlier ones lost.
void write_gptq_sequential(const GGUFFile& f, GGMLType type, const compress::CalibSet& set, int threads,
                           ThreadPool& pool, const std::string& dir, const std::string& path) {
    std::map<std::string, Quantized> q;
    for (const GGUFTensorInfo& t : f.tensors()) {
        if (!is_matrix(t)) continue;
        const GGMLType qt = type_for(t, type);
        if (qt != GGMLType::F16 && t.name != "token_embd.weight") continue;
        Quantized z{qt, std::vector<uint8_t>(row_size(qt, t.ne[0]) * static_cast<size_t>(t.nrows()))};
        kernels::ref_traits(qt)->quantize_ref(reinterpret_cast<const float*>(t.data), z.bytes.data(), t.nelements());
        q[t.name] = std::move(z);
    }
    const std::string arch = f.get_str("general.architecture");
    const uint32_t n_layer = f.get_u32(arch + ".block_count");
    for (uint32_t il = 0; il <= n_layer; ++il) {
        const std::string prefix = il < n_layer ? "blk." + std::to_string(il) + "." : "output.weight";
        std::set<std::string> names;
        for (const GGUFTensorInfo& t : f.tensors())
            if (is_matrix(t) && t.name.rfind(prefix, 0) == 0 && !q.count(t.name)) names.insert(t.name);
        if (names.empty()) continue;
        const std::string tmp = dir + "/partial.gguf";
        write_tensors(f, q, tmp);
        compress::ActivationStats::Options so;
        so.hessian = true;
        so.pool = &pool;
        so.want = [&](const std::string& n) { return names.count(n) > 0; };
        compress::ActivationStats stats(so);
        compress::run_calibration(Model::load(tmp), set, stats, threads, nullptr);
        stats.finish();
        for (const std::string& n : names) {
            const GGUFTensorInfo& t = f.tensor(n);
            const compress::InputStats* s = stats.find(n);
            if (!s) fail("compress_report: no calibration statistics for %s", n.c_str());
            const GGMLType qt = type_for(t, type);
            q[n] = {qt, compress::gptq_quantize(n, reinterpret_cast<const float*>(t.data), t.nrows(), t.ne[0],
                                                s->hessian.data(), s->n_rows, qt, nullptr, {}, &pool)};
        }
    }
    write_tensors(f, q, path);
}

} // namespace

int main(int argc, char** argv) {
    try {
        std::string src = SLM_SOURCE_DIR;
        std::string model_path = src + "/models/stories260K/stories260K.gguf";
        std::string calib = src + "/data/calib/tinystories_train_1k.txt";
        std::string eval = src + "/data/eval/tinystories_val.txt";
        std::vector<GGMLType> types = {GGMLType::Q4_0, GGMLType::Q4_1, GGMLType::Q5_0};
        uint32_t calib_samples = 32, calib_ctx = 128, ctx = 256;
        int chunks = 40, threads = 2;
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc) fail("compress_report: %s needs a value", a.c_str());
                return argv[++i];
            };
            if (a == "-m") model_path = next();
            else if (a == "-f") calib = next();
            else if (a == "--eval") eval = next();
            else if (a == "--calib-samples") calib_samples = static_cast<uint32_t>(std::stoul(next()));
            else if (a == "--calib-ctx") calib_ctx = static_cast<uint32_t>(std::stoul(next()));
            else if (a == "--ctx") ctx = static_cast<uint32_t>(std::stoul(next()));
            else if (a == "--chunks") chunks = std::stoi(next());
            else if (a == "-t") threads = std::stoi(next());
            else if (a == "--types") {
                types.clear();
                std::stringstream ss(next());
                std::string tn;
                while (std::getline(ss, tn, ',')) {
                    bool found = false;
                    for (uint32_t id = 0; id < 64 && !found; ++id)
                        if (type_info(id).name && tn == type_info(id).name) {
                            types.push_back(static_cast<GGMLType>(id));
                            found = true;
                        }
                    if (!found) fail("compress_report: unknown type '%s'", tn.c_str());
                }
            } else {
                fail("compress_report: unknown argument '%s'", a.c_str());
            }
        }
        const std::string dir = (std::filesystem::temp_directory_path() / ("slm_compress_" + std::to_string(::getpid()))).string();
        std::filesystem::create_directories(dir);
        ThreadPool pool(threads);
        const auto t0 = std::chrono::steady_clock::now();
        auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };

        const auto model = Model::load(model_path);
        const GGUFFile f = GGUFFile::open(model_path);
        const std::string text = read_text(eval);
        const std::string base = dir + "/base.bin";
        PerplexityParams pp;
        pp.n_ctx = ctx;
        pp.n_chunks = chunks;
        pp.n_threads = threads;
        pp.save_logits = base;
        const PerplexityResult pr = perplexity(model, text, pp);
        std::fprintf(stderr, "[%.1fs] F32 PPL %.4f over %zu tokens (%d chunks of %u)\n", secs(), pr.ppl, pr.n_scored,
                     pr.n_chunk, ctx);

        compress::CalibOptions co;
        co.text_file = calib;
        co.n_samples = calib_samples;
        co.n_ctx = calib_ctx;
        const compress::CalibSet set = compress::load_calibration(*model, co);
        compress::ActivationStats::Options so;
        so.hessian = true;
        so.pool = &pool;
        compress::ActivationStats stats(so);
        compress::run_calibration(model, set, stats, threads, nullptr);
        stats.finish();
        std::fprintf(stderr, "[%.1fs] calibration: %zu samples x %u tokens from %s\n", secs(), set.samples.size(),
                     calib_ctx, calib.c_str());

        std::printf("| type | method | KLD | ± | vs RTN | PPL | same top |\n|---|---|---|---|---|---|---|\n");
        const Job jobs[] = {{"embd only", Method::F32Embd}, {"RTN", Method::Rtn},         {"GPTQ", Method::Gptq},
                            {"GPTQ act-order", Method::GptqAct}, {"GPTQ layer-sequential", Method::GptqSeq}, {"AWQ+RTN", Method::Awq}, {"AWQ (no clip)+RTN", Method::AwqNoClip},
                            {"AWQ (no clip)+GPTQ", Method::AwqGptq}};
        for (GGMLType type : types) {
            const GGUFFile* ff = &f;
            auto type_of = [&](const std::string& name) { return type_for(ff->tensor(name), type); };
            double rtn = 0.0;
            for (const Job& j : jobs) {
                compress::AwqResult awq;
                const bool is_awq = j.m == Method::Awq || j.m == Method::AwqNoClip || j.m == Method::AwqGptq;
                if (is_awq) {
                    compress::AwqParams ap;
                    ap.clip = j.m == Method::Awq;  // GPTQ picks its own grids: no clipping before it
                    awq = compress::awq_search(f, stats, type_of, ap, &pool);
                }
                const std::string path = dir + "/model.gguf";
                if (j.m == Method::AwqGptq) {
                    // The scaled F32 model, calibrated again (its scaled linears read scaled inputs).
                    std::map<std::string, Quantized> scaled;
                    for (const auto& [name, v] : awq.tensors) {
                        std::vector<uint8_t> b(v.size() * sizeof(float));
                        std::memcpy(b.data(), v.data(), b.size());
                        scaled[name] = {GGMLType::F32, std::move(b)};
                    }
                    const std::string awq_path = dir + "/awq_f32.gguf";
                    write_tensors(f, scaled, awq_path);
                    const GGUFFile g = GGUFFile::open(awq_path);
                    compress::ActivationStats::Options so2;
                    so2.hessian = true;
                    so2.pool = &pool;
                    compress::ActivationStats stats2(so2);
                    compress::run_calibration(Model::load(awq_path), set, stats2, threads, nullptr);
                    stats2.finish();
                    write_model(g, type, Method::Gptq, stats2, nullptr, pool, path);
                } else if (j.m == Method::GptqSeq)
                    write_gptq_sequential(f, type, set, threads, pool, dir, path);
                else
                    write_model(f, type, j.m, stats, is_awq ? &awq : nullptr, pool, path);
                KLDivergenceParams kp;
                kp.base_path = base;
                kp.n_threads = threads;
                const KLDivergenceResult k = kl_divergence(Model::load(path), kp);
                if (j.m == Method::Rtn) rtn = k.kld.value;
                char vs[32] = "";
                if (j.m != Method::F32Embd && rtn > 0) std::snprintf(vs, sizeof vs, "%.2fx", k.kld.value / rtn);
                std::printf("| %s | %s | %.5f | %.5f | %s | %.4f | %.2f%% |\n", type_name(type), j.label, k.kld.value,
                            k.kld.se, vs, k.ppl.value, 100.0 * k.same_top.value);
                std::fflush(stdout);
                std::filesystem::remove(path);
            }
        }
        std::fprintf(stderr, "[%.1fs] done\n", secs());
        std::filesystem::remove_all(dir);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
