// The models slm trained itself and ships (models/stories5m, bench/TRAINING.md experiments 1 and 3):
// they load, they are trained models rather than noise (validation bits per byte well below a
// uniform guess and in the order that training produced: teacher better than its distilled
// student), and the student drafts for the teacher without changing greedy output.
#include "slm/generate.h"
#include "slm/model.h"
#include "slm/perplexity.h"
#include "slm/speculative.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

using namespace slm;

namespace {

std::shared_ptr<const Model> teacher() {
    static auto m = Model::load(test::model_path("stories5m/stories5m.q8_0.gguf"));
    return m;
}
std::shared_ptr<const Model> student() {
    static auto m = Model::load(test::model_path("stories5m/student1m-fkl.q8_0.gguf"));
    return m;
}

std::string val_text() {
    std::ifstream f(test::source_dir() + "/data/eval/tinystories_val.txt", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

double bits_per_byte(const std::shared_ptr<const Model>& m) {
    PerplexityParams pp;
    pp.n_ctx = 128;
    pp.n_chunks = 60;
    pp.n_threads = 2;
    return perplexity(m, val_text(), pp).bpb;
}

} // namespace

TEST(TrainedModels, ShapesAndSharedVocabulary) {
    EXPECT_EQ(teacher()->hparams().n_layer, 6u);
    EXPECT_EQ(teacher()->hparams().n_embd, 256u);
    EXPECT_EQ(student()->hparams().n_layer, 4u);
    EXPECT_EQ(student()->hparams().n_embd, 128u);
    EXPECT_EQ(teacher()->vocab().n_tokens(), 2048);
    EXPECT_NO_THROW(check_draft_vocab(*teacher(), *student()));
}

// A uniform guess over 2,048 tokens at ~3.7 bytes per token costs 11 / 3.7 ≈ 3 bits per byte; the
// full validation run measured 1.386 (teacher) and 1.597 (student). Bounds are loose enough for a
// 60-chunk sample and tight enough that a broken loader, kernel or tokenizer fails them.
TEST(TrainedModels, ValidationBitsPerByte) {
    const double t = bits_per_byte(teacher());
    const double s = bits_per_byte(student());
    EXPECT_GT(t, 1.2);
    EXPECT_LT(t, 1.55);
    EXPECT_GT(s, t + 0.05) << "the distilled student should trail its teacher";
    EXPECT_LT(s, 1.8);
}

TEST(TrainedModels, StudentDraftsForTeacherWithSameGreedyOutput) {
    SessionOptions so;
    so.n_ctx = 256;
    so.n_threads = 1;
    GenerateParams gp;
    gp.n_predict = 96;
    gp.sampling.temp = 0;
    gp.ignore_eos = true;
    const auto prompt = teacher()->vocab().tokenize("Once upon a time, there was a little dog", true, true);

    Session plain(teacher(), so);
    const GenerateResult ref = generate(plain, prompt, gp);

    Session ts(teacher(), so), ds(student(), so);
    SpeculativeParams sp;
    sp.draft_max = 4;
    const SpeculativeResult r = generate_speculative(ts, &ds, prompt, gp, sp);
    EXPECT_EQ(r.gen.tokens, ref.tokens);
    EXPECT_EQ(r.gen.text, ref.text);
    EXPECT_GT(r.spec.n_accepted, r.spec.n_drafted / 4) << "a distilled student should agree often";
}
