// `slm quantize --method gptq|awq` end to end: the pipeline calibrates, hands the statistics to
// GPTQ / AWQ and writes a standard GGUF that runs, closer to the original than round-to-nearest.
// The comparison is on held-out text (data/eval), never the calibration text (data/calib).
#include "slm/error.h"
#include "slm/model.h"
#include "slm/perplexity.h"
#include "slm/quantize.h"
#include "calib_text.h"
#include "test_util.h"

#include <gtest/gtest.h>

namespace slm {
namespace {

struct Variants {
    std::string dir = test::temp_dir();
    std::string f32 = test::model_path("stories260K/stories260K.gguf");
    std::string base = dir + "/base.logits";
    std::string eval_text = test::read_text(test::source_dir() + "/data/eval/tinystories_val.txt").substr(0, 60000);

    Variants() {
        PerplexityParams pp;
        pp.n_ctx = 128;
        pp.n_threads = 2;
        pp.save_logits = base;
        perplexity(Model::load(f32), eval_text, pp, {});
    }
    std::string quantize(const std::string& method, const std::string& type) {
        QuantizeParams p;
        p.type = type;
        p.method = method;
        p.n_threads = 2;
        if (method != "rtn") {
            p.calib_text = test::calib_text();
            p.calib_samples = 16;
            p.calib_ctx = 128;
        }
        const std::string out = dir + "/" + method + "-" + type + ".gguf";
        quantize_model(f32, out, p);
        return out;
    }
    double kld(const std::string& path) {
        KLDivergenceParams k;
        k.base_path = base;
        k.n_threads = 2;
        return kl_divergence(Model::load(path), k).kld.value;
    }
};

Variants& variants() {
    static Variants v;
    return v;
}

TEST(QuantizeMethods, GptqAndAwqBeatRoundToNearestOnHeldOutText) {
    Variants& v = variants();
#ifdef SLM_SANITIZED
    const std::vector<const char*> types = {"Q4_0"};  // the wiring is the same for every type
#else
    const std::vector<const char*> types = {"Q4_0", "Q4_1"};
#endif
    for (const char* type : types) {
        const std::string rtn = v.quantize("rtn", type);
        const std::string gptq = v.quantize("gptq", type);
        const std::string awq = v.quantize("awq", type);
        // Same layout: the methods only choose other values in the same blocks.
        EXPECT_EQ(test::read_file(rtn).size(), test::read_file(gptq).size());
        EXPECT_EQ(test::read_file(rtn).size(), test::read_file(awq).size());
        const double k_rtn = v.kld(rtn), k_gptq = v.kld(gptq), k_awq = v.kld(awq);
        std::printf("%s: KLD rtn %.5f gptq %.5f (%.2fx) awq %.5f (%.2fx)\n", type, k_rtn, k_gptq, k_gptq / k_rtn, k_awq,
                    k_awq / k_rtn);
        // On this model GPTQ gives ~0.6x and AWQ ~0.8x of RTN's KLD; the bounds leave room for
        // noise from the small calibration but fail if a method stops helping.
        EXPECT_LT(k_gptq, 0.8 * k_rtn) << type;
        EXPECT_LT(k_awq, 0.95 * k_rtn) << type;
    }
}

TEST(QuantizeMethods, CalibratedMethodsNeedTextAndSaneSettings) {
    Variants& v = variants();
    QuantizeParams p;
    p.type = "Q4_0";
    p.method = "gptq";
    EXPECT_THROW(quantize_model(v.f32, v.dir + "/x.gguf", p), Error);
    p.method = "bogus";
    p.calib_text = test::calib_text();
    EXPECT_THROW(quantize_model(v.f32, v.dir + "/x.gguf", p), Error);
    p.method = "gptq";
    p.gptq_damp = -1.0f;
    EXPECT_THROW(quantize_model(v.f32, v.dir + "/x.gguf", p), Error);
    p.gptq_damp = 0.01f;
    p.method = "awq";
    p.awq_grid = 0;
    EXPECT_THROW(quantize_model(v.f32, v.dir + "/x.gguf", p), Error);
}

} // namespace
} // namespace slm
