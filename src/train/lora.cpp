// lora.cpp - low-rank adapters on a frozen base (Hu et al. 2021, "LoRA"), in llama.cpp's layout.
//
// For a matrix W (GGUF [n_in, n_out]) the adapter is "<W>.lora_a" [n_in, r] and "<W>.lora_b"
// [r, n_out] (ggml order), and the layer computes y = W x + (alpha / r) B A x, as llama.cpp's
// llama-adapter.cpp applies an adapter GGUF written by convert_lora_to_gguf.py (general.type
// "adapter", adapter.type "lora", adapter.lora.alpha). A starts Kaiming-uniform as PEFT's
// (bound 1 / sqrt(n_in)), B at zero, so a new adapter changes nothing until trained.
#include "kernels/kernels.h"
#include "kernels/sgemm.h"
#include "slm/error.h"
#include "train/model_impl.h"

#include <algorithm>
#include <cmath>
#include <cctype>
#include <map>

namespace slm {

namespace {

int mat_from_name(const std::string& s) {
    for (int m = 0; m < kNumMats; ++m)
        if (s == kMatNames[m]) return m;
    return -1;
}

std::string mat_list() {
    std::string out;
    for (int m = 0; m < kNumMats; ++m) out += std::string(m ? ", " : "") + kMatNames[m];
    return out;
}

} // namespace

void TrainModel::Impl::add_adapter(uint32_t ib, Mat m, uint32_t rank) {
    Block& b = blocks[ib];
    const TrainParam& W = P(b.mat[m]);
    const std::string name = W.name;
    const int64_t n_in = W.ne[0], n_out = W.ne[1];
    b.lora_a[m] = add_param(name + ".lora_a", {n_in, int64_t(rank)});
    b.lora_b[m] = add_param(name + ".lora_b", {int64_t(rank), n_out});
}

void TrainModel::add_lora(const LoraOptions& o) {
    Impl& s = *p_;
    if (s.lora_rank) fail("train: add_lora: the model already has adapters (merge_lora first)");
    if (o.rank == 0 || o.rank > 4096) fail("train: add_lora: rank = %u must be in 1..4096", o.rank);
    if (!(o.alpha > 0) || !std::isfinite(o.alpha)) fail("train: add_lora: alpha = %g must be > 0", double(o.alpha));
    if (o.targets.empty()) fail("train: add_lora: no target matrices (choose from %s)", mat_list().c_str());
    std::vector<int> ms;
    for (const std::string& t : o.targets) {
        const int m = mat_from_name(t);
        if (m < 0) fail("train: add_lora: unknown target '%s' (choose from %s)", t.c_str(), mat_list().c_str());
        if (std::find(ms.begin(), ms.end(), m) == ms.end()) ms.push_back(m);
    }
    for (size_t i = 0; i < s.params.size(); ++i) s.set_trainable(int(i), false);
    s.lora_rank = o.rank;
    s.lora_alpha = o.alpha;
    for (uint32_t ib = 0; ib < s.blocks.size(); ++ib)
        for (int m : ms) {
            s.add_adapter(ib, Mat(m), o.rank);
            TrainParam& A = s.P(s.blocks[ib].lora_a[m]);
            // Uniform(-1/sqrt(n_in), 1/sqrt(n_in)) from a stream of (seed, name): kaiming_uniform_
            // with a = sqrt(5), as PEFT initializes lora_A.
            const float bound = 1.0f / std::sqrt(float(A.ne[0]));
            uint64_t st = mix64(o.seed * 0x9e3779b97f4a7c15ull + hash_name(A.name));
            for (size_t i = 0; i < A.n; ++i) {
                st = mix64(st);
                const double u = double(st >> 11) * (1.0 / 9007199254740992.0);
                A.w[i] = float((2.0 * u - 1.0) * bound);
            }
        }
    s.have_forward = false;
}

bool TrainModel::has_lora() const { return p_->lora_rank != 0; }

void TrainModel::merge_lora() {
    Impl& s = *p_;
    if (!s.lora_rank) fail("train: merge_lora: the model has no adapters");
    const float sc = s.lora_scale();
    size_t first = s.params.size();
    for (Impl::Block& b : s.blocks)
        for (int m = 0; m < kNumMats; ++m) {
            if (b.lora_a[m] < 0) continue;
            TrainParam& W = s.P(b.mat[m]);
            const TrainParam& A = s.P(b.lora_a[m]);
            const TrainParam& B = s.P(b.lora_b[m]);
            const int64_t r = A.ne[1], n_in = W.ne[0], n_out = W.ne[1];
            // W (n_out x n_in) += sc B (n_out x r) A (r x n_in)
            std::vector<float> Bs(B.w, B.w + B.n);
            for (float& x : Bs) x *= sc;
            kernels::sgemm(s.get_pool(), false, false, n_out, n_in, r, Bs.data(), r, A.w, n_in, 1.0f, W.w, n_in);
            first = std::min(first, size_t(std::min(b.lora_a[m], b.lora_b[m])));
            b.lora_a[m] = b.lora_b[m] = -1;
        }
    // Adapters were appended after every base parameter: drop the tail.
    s.params.resize(first);
    s.store.resize(first);
    s.lora_rank = 0;
    s.lora_alpha = 0;
    for (size_t i = 0; i < s.params.size(); ++i) s.set_trainable(int(i), true);
    s.have_forward = false;
}

void TrainModel::save_lora(const std::string& path) const {
    const Impl& s = *p_;
    if (!s.lora_rank) fail("train: save_lora %s: the model has no adapters", path.c_str());
    GGUFWriter w;
    w.set("general.architecture", GGUFValue::string("llama"));
    w.set("general.type", GGUFValue::string("adapter"));
    w.set("general.name", GGUFValue::string(s.arch.name + " LoRA"));
    w.set("adapter.type", GGUFValue::string("lora"));
    w.set("adapter.lora.alpha", GGUFValue::f32(s.lora_alpha));
    for (const TrainParam& p : s.params)
        if (p.name.find(".lora_") != std::string::npos) w.add_tensor(p.name, GGMLType::F32, p.ne, p.w, p.n * sizeof(float));
    w.write(path);
}

void TrainModel::load_lora(const std::string& path) {
    Impl& s = *p_;
    const char* fp = path.c_str();
    if (s.lora_rank) fail("train: load_lora %s: the model already has adapters", fp);
    GGUFFile f = GGUFFile::open(path);
    if (f.get_str("general.type", "") != "adapter")
        fail("train: load_lora %s: key 'general.type' is '%s', not 'adapter'", fp, f.get_str("general.type", "").c_str());
    if (f.get_str("adapter.type", "") != "lora")
        fail("train: load_lora %s: key 'adapter.type' is '%s', not 'lora'", fp, f.get_str("adapter.type", "").c_str());
    if (f.get_str("general.architecture", "") != "llama")
        fail("train: load_lora %s: key 'general.architecture' is '%s', the model is 'llama'", fp,
             f.get_str("general.architecture", "").c_str());
    // Pair the tensors: <matrix>.lora_a / .lora_b.
    struct Pair {
        const GGUFTensorInfo* a = nullptr;
        const GGUFTensorInfo* b = nullptr;
    };
    std::map<std::string, Pair> pairs;
    for (const GGUFTensorInfo& t : f.tensors()) {
        const auto ends = [&](const char* suf) {
            const size_t n = std::char_traits<char>::length(suf);
            return t.name.size() > n && t.name.compare(t.name.size() - n, n, suf) == 0;
        };
        if (ends(".lora_a"))
            pairs[t.name.substr(0, t.name.size() - 7)].a = &t;
        else if (ends(".lora_b"))
            pairs[t.name.substr(0, t.name.size() - 7)].b = &t;
        else
            fail("train: load_lora %s: tensor '%s' is not a .lora_a / .lora_b tensor", fp, t.name.c_str());
    }
    if (pairs.empty()) fail("train: load_lora %s: no adapter tensors", fp);
    uint32_t rank = 0;
    std::vector<std::pair<std::pair<uint32_t, int>, Pair>> todo;
    for (const auto& [name, pr] : pairs) {
        if (!pr.a || !pr.b) fail("train: load_lora %s: tensor '%s' has only one of lora_a / lora_b", fp, name.c_str());
        // blk.N.<matrix>.weight
        uint32_t ib = 0;
        int m = -1;
        if (name.rfind("blk.", 0) == 0) {
            const size_t dot = name.find('.', 4);
            const std::string num = dot == std::string::npos ? "" : name.substr(4, dot - 4);
            if (!num.empty() && num.size() < 6 && std::all_of(num.begin(), num.end(), ::isdigit)) {
                ib = uint32_t(std::stoul(num));
                const std::string rest = name.substr(dot + 1);
                if (rest.size() > 7 && rest.compare(rest.size() - 7, 7, ".weight") == 0)
                    m = mat_from_name(rest.substr(0, rest.size() - 7));
            }
        }
        if (m < 0 || ib >= s.blocks.size())
            fail("train: load_lora %s: tensor '%s.lora_a': the model has no matrix '%s' with adapters supported", fp,
                 name.c_str(), name.c_str());
        const TrainParam& W = s.P(s.blocks[ib].mat[m]);
        if (pr.a->n_dims != 2 || pr.b->n_dims != 2 || pr.a->ne[0] != W.ne[0] || pr.b->ne[1] != W.ne[1] ||
            pr.a->ne[1] != pr.b->ne[0] || pr.a->ne[1] <= 0 || pr.a->ne[1] > 4096)
            fail("train: load_lora %s: tensors '%s.lora_a' %s / '.lora_b' %s do not fit '%s' %s", fp, name.c_str(),
                 pr.a->shape_str().c_str(), pr.b->shape_str().c_str(), W.name.c_str(),
                 ("[" + std::to_string(W.ne[0]) + ", " + std::to_string(W.ne[1]) + "]").c_str());
        if (rank && uint32_t(pr.a->ne[1]) != rank)
            fail("train: load_lora %s: tensor '%s.lora_a' has rank %lld, others %u (one rank per adapter)", fp,
                 name.c_str(), static_cast<long long>(pr.a->ne[1]), rank);
        rank = uint32_t(pr.a->ne[1]);
        todo.push_back({{ib, m}, pr});
    }
    // llama.cpp: alpha 0 (absent) means scale 1, i.e. alpha = rank.
    float alpha = f.get_f32("adapter.lora.alpha", 0.0f);
    if (alpha == 0.0f) alpha = float(rank);
    if (!(alpha > 0) || !std::isfinite(alpha)) fail("train: load_lora %s: key 'adapter.lora.alpha' = %g", fp, double(alpha));
    // Convert everything before changing the model, so a bad file leaves it untouched.
    std::vector<std::vector<float>> vals;
    for (const auto& [key, pr] : todo)
        for (const GGUFTensorInfo* t : {pr.a, pr.b}) {
            const kernels::TypeTraits* tt = kernels::traits(t->type);
            if (tt == nullptr || tt->to_float == nullptr) tt = kernels::ref_traits(t->type);
            if (tt == nullptr || tt->to_float == nullptr)
                fail("train: load_lora %s: tensor '%s' has type %s, which slm cannot convert to F32", fp, t->name.c_str(),
                     type_name(t->type));
            vals.emplace_back(size_t(t->nelements()));
            tt->to_float(t->data, vals.back().data(), t->nelements());
        }
    for (size_t i = 0; i < s.params.size(); ++i) s.set_trainable(int(i), false);
    s.lora_rank = rank;
    s.lora_alpha = alpha;
    size_t k = 0;
    for (const auto& [key, pr] : todo) {
        s.add_adapter(key.first, Mat(key.second), rank);
        TrainParam& A = s.P(s.blocks[key.first].lora_a[key.second]);
        TrainParam& B = s.P(s.blocks[key.first].lora_b[key.second]);
        std::copy(vals[k].begin(), vals[k].end(), A.w);
        std::copy(vals[k + 1].begin(), vals[k + 1].end(), B.w);
        k += 2;
    }
    s.have_forward = false;
}

} // namespace slm
