// Every supported weight type runs end to end: stories260K's matrices are quantized with ggml's
// reference rounding, and the model's logits are compared with those of an F32 model holding the
// same (dequantized) weights. What remains between the two is the activations' conversion to the
// weight type's vec_dot_type (Q8_0, Q8_1, F16, BF16), so the bound depends on that type.
#include "kernels/matmul.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace slm;

namespace {

struct Pair {
    std::string quantized, dequantized;
};

// Writes the two models for weight type `type`; 2-D tensors whose rows fit the block size are
// quantized, the rest (norms, the 172-wide ffn_down rows for 32-blocks) stay F32.
Pair write_models(GGMLType type) {
    GGUFFile src = GGUFFile::open(test::model_path("stories260K/stories260K.gguf"));
    GGUFWriter wq, wd;
    wq.copy_kv_from(src);
    wd.copy_kv_from(src);
    const int64_t blk = type_info(type).blck_size;
    for (const auto& t : src.tensors()) {
        if (t.n_dims == 2 && t.ne[0] % blk == 0) {
            const float* x = reinterpret_cast<const float*>(t.data);
            std::vector<uint8_t> q(row_size(type, t.ne[0]) * t.ne[1]);
            kernels::quantize_row_ref(x, type, t.nelements(), q.data());
            std::vector<float> back(t.nelements());
            kernels::dequantize_row(q.data(), type, t.nelements(), back.data());
            std::vector<uint8_t> bytes(back.size() * 4);
            std::memcpy(bytes.data(), back.data(), bytes.size());
            wq.add_tensor_copy(t.name, type, t.shape(), std::move(q));
            wd.add_tensor_copy(t.name, GGMLType::F32, t.shape(), std::move(bytes));
        } else {
            wq.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            wd.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        }
    }
    const std::string base = test::temp_dir() + "/stories." + type_name(type);
    wq.write(base + ".gguf");
    wd.write(base + ".dequant.gguf");
    return {base + ".gguf", base + ".dequant.gguf"};
}

class WeightType : public ::testing::TestWithParam<std::pair<GGMLType, double>> {};

TEST_P(WeightType, RunsLikeItsDequantizedWeights) {
    const auto [type, bound] = GetParam();
    const Pair p = write_models(type);
    auto mq = Model::load(p.quantized), md = Model::load(p.dequantized);
    size_t n_quant = 0;
    for (const auto& t : mq->file().tensors()) n_quant += t.type == type;
    EXPECT_GE(n_quant, 27u) << "every 64-wide matrix should be " << type_name(type);

    SessionOptions so;
    so.kv_type = GGMLType::F32;
    Session sq(mq, so), sd(md, so);
    auto toks = mq->vocab().tokenize("Sue said, \"I want to go home!\" Mom smiled.", true, true);
    sq.eval(toks, true);
    sd.eval(toks, true);
    auto lq = sq.logits(), ld = sd.logits();
    const size_t nv = mq->hparams().n_vocab;
    double worst = 0;
    size_t argmax_same = 0;
    for (size_t r = 0; r < toks.size(); ++r) {
        double mx = 0, diff = 0;
        size_t aq = 0, ad = 0;
        for (size_t i = 0; i < nv; ++i) {
            mx = std::max(mx, std::fabs(double(ld[r * nv + i])));
            diff = std::max(diff, std::fabs(double(lq[r * nv + i]) - ld[r * nv + i]));
            if (lq[r * nv + i] > lq[r * nv + aq]) aq = i;
            if (ld[r * nv + i] > ld[r * nv + ad]) ad = i;
        }
        worst = std::max(worst, diff / mx);
        argmax_same += aq == ad;
    }
    std::printf("[ %s ] worst |diff|/max|logit| %.3g (bound %.3g), argmax equal on %zu/%zu rows\n", type_name(type),
                worst, bound, argmax_same, toks.size());
    EXPECT_LE(worst, bound);
    EXPECT_GE(argmax_same, toks.size() - 1);
}

// Bounds: F32 activations against F16/BF16 weights round each activation to 11/8 significant
// bits; Q8_0/Q8_1 activations to 8 bits per block (about 0.4% of the block's largest value).
INSTANTIATE_TEST_SUITE_P(Types, WeightType,
                         ::testing::Values(std::pair{GGMLType::F16, 2e-3}, std::pair{GGMLType::BF16, 1e-2},
                                           std::pair{GGMLType::Q8_0, 3e-2}, std::pair{GGMLType::Q4_0, 3e-2},
                                           std::pair{GGMLType::Q4_1, 3e-2}, std::pair{GGMLType::Q5_0, 3e-2},
                                           std::pair{GGMLType::Q5_1, 3e-2}),
                         [](const auto& info) { return std::string(type_name(info.param.first)); });

} // namespace
