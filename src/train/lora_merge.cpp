// lora_merge.cpp - base GGUF + LoRA adapter GGUF -> one merged GGUF (slm lora merge).
#include "slm/distill.h"

#include "slm/error.h"
#include "slm/model.h"
#include "slm/quantize.h"
#include "train/trainer_internal.h"

#include <algorithm>
#include <cctype>
#include <atomic>
#include <filesystem>
#include <unistd.h>

namespace slm {

void lora_merge(const std::string& base, const std::string& adapter, const std::string& out, const std::string& type) {
    std::string up = type;
    std::transform(up.begin(), up.end(), up.begin(), [](unsigned char c) { return char(std::toupper(c)); });
    const bool is_float = up == "F32" || up == "F16" || up == "BF16";
    if (!is_float && !quant_file_type(up)) {
        std::string names;
        for (const QuantFileType& ft : quant_file_types()) names += std::string(names.empty() ? "" : ", ") + ft.name;
        fail("lora merge: --type '%s' is not a type slm writes (%s)", type.c_str(), names.c_str());
    }
    std::unique_ptr<TrainModel> m = TrainModel::load(base);
    m->load_lora(adapter);
    m->merge_lora();
    if (is_float) {
        GGMLType t = GGMLType::F32;
        type_from_name(up, &t);
        m->save(out, t);
        return;
    }
    // Quantized: the merged F32 model beside `out`, quantized as slm quantize does, then removed.
    QuantizeParams q;
    q.type = up;
    train_impl::save_quantized(*m, out, q);
}

std::shared_ptr<const Model> load_model_with_lora(const std::string& base, const std::string& adapter) {
    namespace fs = std::filesystem;
    static std::atomic<uint64_t> counter{0};
    const fs::path tmp = fs::temp_directory_path() / strprintf("slm-lora-merged-%ld-%llu.gguf", long(getpid()),
                                                                (unsigned long long)counter.fetch_add(1));
    struct Remove {
        fs::path p;
        ~Remove() {
            std::error_code ec;
            fs::remove(p, ec);
        }
    } remove{tmp};
    lora_merge(base, adapter, tmp.string(), "F32");
    return Model::load(tmp.string());  // the mapping outlives the unlinked file
}

} // namespace slm
