// checkpoint.cpp - training checkpoints: a GGUF holding the weights, AdamW's m and v, the step,
// the data position and the curve, written atomically; resume restores them exactly.
//
// The data order comes from a counter-based generator keyed by (seed, step, micro-batch,
// sequence) (TrainData::train_start), so the step and the seed are the whole data position and
// RNG state: nothing else needs saving for a resumed run to draw the same windows.
#include "train/trainer_internal.h"

#include "slm/error.h"
#include "slm/gguf.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace slm::train_impl {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kCheckpointVersion = 1;
constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".gguf";

GGUFValue i64_array(const std::vector<int64_t>& v) {
    GGUFValue a;
    a.type = GGUFType::ARRAY;
    a.elem_type = GGUFType::I64;
    a.n = v.size();
    a.raw.resize(v.size() * sizeof(int64_t));
    if (!v.empty()) std::memcpy(a.raw.data(), v.data(), a.raw.size());
    return a;
}

// The step number in "ckpt-00000120.gguf", or -1.
int64_t step_of(const std::string& filename) {
    const size_t np = std::strlen(kPrefix), ns = std::strlen(kSuffix);
    if (filename.size() <= np + ns || filename.compare(0, np, kPrefix) != 0 ||
        filename.compare(filename.size() - ns, ns, kSuffix) != 0)
        return -1;
    const std::string digits = filename.substr(np, filename.size() - np - ns);
    if (digits.empty() || digits.size() > 18) return -1;
    for (char c : digits)
        if (c < '0' || c > '9') return -1;
    return std::stoll(digits);
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
    std::vector<std::pair<int64_t, std::string>> out;
    std::error_code ec;
    if (dir.empty() || !fs::is_directory(dir, ec)) return out;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const int64_t s = step_of(e.path().filename().string());
        if (s >= 0 && e.is_regular_file(ec)) out.emplace_back(s, e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

const GGUFValue& need(const GGUFFile& f, const std::string& key) {
    const GGUFValue* v = f.find(key);
    if (!v) fail("train: checkpoint %s: key '%s' is missing", f.path().c_str(), key.c_str());
    return *v;
}

void read_tensor(const GGUFFile& f, const std::string& name, const std::vector<int64_t>& ne, float* dst, size_t n) {
    const GGUFTensorInfo* t = f.find_tensor(name);
    if (!t) fail("train: checkpoint %s: tensor '%s' is missing (a checkpoint of another model?)", f.path().c_str(), name.c_str());
    if (t->type != GGMLType::F32)
        fail("train: checkpoint %s: tensor '%s' is %s, not F32", f.path().c_str(), name.c_str(), type_name(t->type));
    if (t->shape() != ne) {
        std::string want = "[";
        for (size_t i = 0; i < ne.size(); ++i) want += (i ? ", " : "") + std::to_string(ne[i]);
        want += "]";
        fail("train: checkpoint %s: tensor '%s' has shape %s, the model's is %s", f.path().c_str(), name.c_str(),
             t->shape_str().c_str(), want.c_str());
    }
    if (t->nbytes != n * sizeof(float))
        fail("train: checkpoint %s: tensor '%s' holds %zu bytes, not %zu", f.path().c_str(), name.c_str(), t->nbytes,
             n * sizeof(float));
    std::memcpy(dst, t->data, n * sizeof(float));
}

} // namespace

std::string checkpoint_path(const std::string& dir, int64_t step) {
    return (fs::path(dir) / strprintf("%s%08lld%s", kPrefix, static_cast<long long>(step), kSuffix)).string();
}

std::string newest_checkpoint(const std::string& dir) {
    const auto all = list_checkpoints(dir);
    return all.empty() ? std::string() : all.back().second;
}

void prune_checkpoints(const std::string& dir, int keep) {
    const auto all = list_checkpoints(dir);
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
        std::error_code ec;
        fs::remove(all[i].second, ec);  // a checkpoint we cannot delete only costs disk space
    }
}

void save_checkpoint(const std::string& path, const TrainModel& model, const AdamW& opt, const CheckpointState& st,
                     const std::string& config_json) {
    GGUFWriter w;
    w.set("general.type", GGUFValue::string("slm.train.checkpoint"));
    w.set("slm.train.version", GGUFValue::u32(kCheckpointVersion));
    w.set("slm.train.step", GGUFValue::i64(st.step));
    w.set("slm.train.tokens_seen", GGUFValue::i64(st.tokens_seen));
    w.set("slm.train.seed", GGUFValue::u64(st.seed));
    w.set("slm.train.data_tokens", GGUFValue::u64(st.data_tokens));
    w.set("slm.train.config", GGUFValue::string(config_json));
    std::vector<int64_t> steps, tokens;
    std::vector<float> loss, val, lr;
    for (const TrainPoint& p : st.curve) {
        steps.push_back(p.step);
        tokens.push_back(p.tokens);
        loss.push_back(p.loss);
        val.push_back(p.val_loss);
        lr.push_back(p.lr);
    }
    w.set("slm.train.curve.step", i64_array(steps));
    w.set("slm.train.curve.tokens", i64_array(tokens));
    w.set("slm.train.curve.loss", GGUFValue::f32_array(loss));
    w.set("slm.train.curve.val_loss", GGUFValue::f32_array(val));
    w.set("slm.train.curve.lr", GGUFValue::f32_array(lr));
    const std::vector<TrainParam>& ps = model.params();
    for (size_t i = 0; i < ps.size(); ++i)
        w.add_tensor(ps[i].name, GGMLType::F32, ps[i].ne, ps[i].w, ps[i].n * sizeof(float));
    for (size_t i = 0; i < ps.size(); ++i) {
        if (opt.m[i].empty()) continue;
        w.add_tensor("adam.m." + ps[i].name, GGMLType::F32, ps[i].ne, opt.m[i].data(), ps[i].n * sizeof(float));
        w.add_tensor("adam.v." + ps[i].name, GGMLType::F32, ps[i].ne, opt.v[i].data(), ps[i].n * sizeof(float));
    }
    std::error_code ec;
    const fs::path parent = fs::path(path).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (ec) fail("train: cannot create the checkpoint folder %s: %s", parent.string().c_str(), ec.message().c_str());
    w.write(path);
}

CheckpointState load_checkpoint(const std::string& path, TrainModel& model, AdamW& opt) {
    const GGUFFile f = GGUFFile::open(path);
    const GGUFValue* type = f.find("general.type");
    if (!type || type->type != GGUFType::STRING || type->str != "slm.train.checkpoint")
        fail("train: checkpoint %s: key 'general.type' is not 'slm.train.checkpoint': not a training checkpoint",
             path.c_str());
    const uint64_t version = need(f, "slm.train.version").as_uint(path + ": slm.train.version");
    if (version != kCheckpointVersion)
        fail("train: checkpoint %s: key 'slm.train.version' is %llu, this slm reads version %u", path.c_str(),
             static_cast<unsigned long long>(version), kCheckpointVersion);
    CheckpointState st;
    st.step = need(f, "slm.train.step").as_int(path + ": slm.train.step");
    st.tokens_seen = need(f, "slm.train.tokens_seen").as_int(path + ": slm.train.tokens_seen");
    st.seed = need(f, "slm.train.seed").as_uint(path + ": slm.train.seed");
    st.data_tokens = need(f, "slm.train.data_tokens").as_uint(path + ": slm.train.data_tokens");
    if (const GGUFValue* c = f.find("slm.train.config"); c && c->type == GGUFType::STRING) st.config_json = c->str;
    if (st.step < 0) fail("train: checkpoint %s: key 'slm.train.step' is %lld", path.c_str(), static_cast<long long>(st.step));
    const char* keys[] = {"slm.train.curve.step", "slm.train.curve.tokens", "slm.train.curve.loss",
                          "slm.train.curve.val_loss", "slm.train.curve.lr"};
    const GGUFValue* arr[5];
    for (int k = 0; k < 5; ++k) {
        arr[k] = &need(f, keys[k]);
        const bool want_int = k < 2;
        if (arr[k]->type != GGUFType::ARRAY || arr[k]->elem_type != (want_int ? GGUFType::I64 : GGUFType::F32))
            fail("train: checkpoint %s: key '%s' is not an array of %s", path.c_str(), keys[k], want_int ? "I64" : "F32");
        if (arr[k]->n != arr[0]->n)
            fail("train: checkpoint %s: key '%s' has %llu entries, '%s' %llu", path.c_str(), keys[k],
                 static_cast<unsigned long long>(arr[k]->n), keys[0], static_cast<unsigned long long>(arr[0]->n));
    }
    for (uint64_t i = 0; i < arr[0]->n; ++i)
        st.curve.push_back({arr[0]->elem_int(i), arr[1]->elem_int(i), static_cast<float>(arr[2]->elem_float(i)),
                            static_cast<float>(arr[3]->elem_float(i)), static_cast<float>(arr[4]->elem_float(i))});

    std::vector<TrainParam>& ps = model.params();
    size_t expected = 0;
    for (size_t i = 0; i < ps.size(); ++i) expected += 1 + (opt.m[i].empty() ? 0 : 2);
    if (f.tensors().size() != expected)
        fail("train: checkpoint %s: %zu tensors, the model and its optimizer state have %zu (a checkpoint of another "
             "model or of another LoRA setup?)",
             path.c_str(), f.tensors().size(), expected);
    for (size_t i = 0; i < ps.size(); ++i) {
        read_tensor(f, ps[i].name, ps[i].ne, ps[i].w, ps[i].n);
        if (opt.m[i].empty()) continue;
        read_tensor(f, "adam.m." + ps[i].name, ps[i].ne, opt.m[i].data(), ps[i].n);
        read_tensor(f, "adam.v." + ps[i].name, ps[i].ne, opt.v[i].data(), ps[i].n);
    }
    return st;
}

} // namespace slm::train_impl
