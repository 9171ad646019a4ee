// qat.cpp - quantization-aware training: fake quantization with a straight-through estimator
// (LLM-QAT, Liu et al. 2023; BitNet/OneBit for the ternary types), and the export in the real
// quantized type.
//
// Each weight the exporter will quantize is replaced, for the forward and backward passes, by
// dequant(quant(w)) computed with the very quantizer `slm quantize` uses (ggml's
// quantize_row_*_ref through ref_traits), in the very type it will get (llama.cpp's shape
// fallback for rows that are not a multiple of the block). The gradient with respect to the
// rounded weight is applied to the float master: d round(w) / dw is taken as 1.
#include "train/trainer_internal.h"

#include "compress/quant_mix.h"
#include "core/cpu_info.h"
#include "core/thread_pool.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "slm/error.h"
#include "slm/quantize.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

namespace slm::train_impl {

namespace {

bool is_adapter(const std::string& name) {
    const auto ends = [&](const char* s) {
        const size_t n = std::strlen(s);
        return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
    };
    return ends(".lora_a") || ends(".lora_b");
}

bool is_float_type(GGMLType t) { return t == GGMLType::F32 || t == GGMLType::F16 || t == GGMLType::BF16; }

// The llama.cpp file type name slm quantize takes for a tensor type ("Q4_0", "Q2_K", "TQ1_0").
std::string file_type_name(GGMLType t) {
    for (const QuantFileType& ft : quant_file_types())
        if (ft.type == t) return ft.name;
    std::string names;
    for (const QuantFileType& ft : quant_file_types())
        if (!is_float_type(ft.type)) names += std::string(names.empty() ? "" : ", ") + type_name(ft.type);
    fail("train: type %s is not one slm quantize writes (types: %s)", type_name(t), names.c_str());
}

void check_round_trip(GGMLType t) {
    const kernels::TypeTraits* tr = kernels::ref_traits(t);
    if (!tr || !tr->quantize_ref || !tr->to_float)
        fail("train: --qat %s: slm has no reference quantizer for this type", type_name(t));
}

} // namespace

void FakeQuant::round_trip(GGMLType t, const float* x, float* y, int64_t rows, int64_t n_per_row) {
    const kernels::TypeTraits* tr = kernels::ref_traits(t);
    std::vector<uint8_t> buf(row_size(t, n_per_row));
    for (int64_t r = 0; r < rows; ++r) {
        // As slm quantize's quantize_row without importances: the _ref quantizer, except
        // IQ4_NL (the Q2_K/Q3_K fallback), which searches its scale.
        if (!kernels::ref::quantize_row_imatrix(t, x + r * n_per_row, buf.data(), n_per_row, nullptr))
            tr->quantize_ref(x + r * n_per_row, buf.data(), n_per_row);
        tr->to_float(buf.data(), y + r * n_per_row, n_per_row);
    }
}

FakeQuant::FakeQuant(TrainModel& model, GGMLType type, int n_threads) : model_(model), n_threads_(n_threads) {
    if (is_float_type(type)) fail("train: --qat %s: not a quantized type", type_name(type));
    (void)file_type_name(type);  // refuse a type the export could not write, before training
    const std::vector<TrainParam>& ps = model.params();
    for (size_t i = 0; i < ps.size(); ++i) {
        const TrainParam& p = ps[i];
        if (!p.is_matrix() || is_adapter(p.name)) continue;
        if (!compress::tensor_allows_quantization(p.name, 2, true)) continue;
        const GGMLType t = quant_fallback_type(type, p.ne[0]);
        check_round_trip(t);
        index_.push_back(i);
        types_.emplace_back(p.name, t);
    }
    master_.resize(index_.size());
}

void FakeQuant::apply() {
    if (applied_) return;
    std::vector<TrainParam>& ps = model_.params();
    for (size_t k = 0; k < index_.size(); ++k) {
        const TrainParam& p = ps[index_[k]];
        master_[k].assign(p.w, p.w + p.n);
    }
    // Rows are independent: spread them over the threads.
    const int n = n_threads_ > 0 ? n_threads_ : physical_cores();
    ThreadPool pool(n);
    for (size_t k = 0; k < index_.size(); ++k) {
        const TrainParam& p = ps[index_[k]];
        const GGMLType t = types_[k].second;
        const int64_t n_per_row = p.ne[0], rows = static_cast<int64_t>(p.n) / n_per_row;
        const float* src = master_[k].data();
        float* dst = p.w;
        pool.parallel_for(rows, [&](int64_t begin, int64_t end, int) {
            round_trip(t, src + begin * n_per_row, dst + begin * n_per_row, end - begin, n_per_row);
        });
    }
    applied_ = true;
}

void FakeQuant::restore() {
    if (!applied_) return;
    std::vector<TrainParam>& ps = model_.params();
    for (size_t k = 0; k < index_.size(); ++k) std::memcpy(ps[index_[k]].w, master_[k].data(), master_[k].size() * sizeof(float));
    applied_ = false;
}

void export_model(const TrainModel& model, const std::string& path, GGMLType type, int n_threads) {
    if (is_float_type(type)) {
        model.save(path, type);
        return;
    }
    QuantizeParams qp;
    qp.type = file_type_name(type);
    qp.pure = true;  // every tensor `type` (shape fallbacks aside): what the fake quantization used
    qp.n_threads = n_threads;
    save_quantized(model, path, qp);
}

void save_quantized(const TrainModel& model, const std::string& path, const QuantizeParams& qp) {
    const std::string tmp = path + ".f32.tmp";
    model.save(tmp, GGMLType::F32);
    try {
        quantize_model(tmp, path, qp);
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove(tmp, ec);
        throw;
    }
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
}

} // namespace slm::train_impl
