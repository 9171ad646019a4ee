// Distillation: the losses (known values worked out by hand from the definitions, D(p, p) = 0,
// every gradient against central finite differences at odd vocabulary sizes), bad options.
#include "slm/distill.h"
#include "slm/error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

using namespace slm;

namespace {

const Divergence kAll[] = {Divergence::ForwardKL, Divergence::ReverseKL, Divergence::JSD, Divergence::TVD};

DistillLossOptions opts(Divergence d, float T = 1, uint32_t k = 0, float w = 0, float beta = 0.5f) {
    DistillLossOptions o;
    o.divergence = d;
    o.temperature = T;
    o.top_k = k;
    o.ce_weight = w;
    o.jsd_beta = beta;
    return o;
}

// The loss of one row of student logits against one row of teacher logits (all rows count).
DistillLossValue one_row(const DistillLossOptions& o, const std::vector<float>& teacher, const std::vector<float>& student,
                         int32_t label = -1, std::vector<float>* grad = nullptr) {
    const uint32_t V = uint32_t(teacher.size());
    TeacherDist t = make_teacher_dist(teacher.data(), 1, V, o);
    std::vector<float> g(V);
    std::vector<int32_t> labels{label};
    std::vector<uint8_t> mask{1};
    DistillLossValue v = distill_loss(o, student.data(), t, labels, mask, 1.0f, g.data());
    if (grad) *grad = g;
    return v;
}

std::vector<float> logs(std::vector<double> p) {
    std::vector<float> l;
    for (double x : p) l.push_back(float(std::log(x)));
    return l;
}

// p = (0.7, 0.2, 0.1) teacher, q = (0.4, 0.4, 0.2) student, given as log-probabilities (softmax of
// a log-probability vector is the distribution itself).
TEST(DistillLoss, KnownValuesOnThreeTokens) {
    const auto tp = logs({0.7, 0.2, 0.1}), sq = logs({0.4, 0.4, 0.2});
    const double fkl = 0.7 * std::log(0.7 / 0.4) + 0.2 * std::log(0.2 / 0.4) + 0.1 * std::log(0.1 / 0.2);
    const double rkl = 0.4 * std::log(0.4 / 0.7) + 0.4 * std::log(0.4 / 0.2) + 0.2 * std::log(0.2 / 0.1);
    const double m0 = 0.55, m1 = 0.3, m2 = 0.15;  // (p + q) / 2
    const double jsd = 0.5 * (0.7 * std::log(0.7 / m0) + 0.2 * std::log(0.2 / m1) + 0.1 * std::log(0.1 / m2)) +
                       0.5 * (0.4 * std::log(0.4 / m0) + 0.4 * std::log(0.4 / m1) + 0.2 * std::log(0.2 / m2));
    EXPECT_NEAR(fkl, 0.1837869, 1e-6);  // the arithmetic above, done by hand
    EXPECT_NEAR(rkl, 0.1920420, 1e-6);
    EXPECT_NEAR(jsd, 0.0462009, 1e-6);
    EXPECT_NEAR(one_row(opts(Divergence::ForwardKL), tp, sq).loss, fkl, 1e-6);
    EXPECT_NEAR(one_row(opts(Divergence::ReverseKL), tp, sq).loss, rkl, 1e-6);
    EXPECT_NEAR(one_row(opts(Divergence::JSD), tp, sq).loss, jsd, 1e-6);
    EXPECT_NEAR(one_row(opts(Divergence::TVD), tp, sq).loss, 0.3, 1e-6);
    // GKD's beta: m = 0.2 p + 0.8 q.
    {
        const double b = 0.2;
        double kp = 0, kq = 0;
        const double p[3] = {0.7, 0.2, 0.1}, q[3] = {0.4, 0.4, 0.2};
        for (int i = 0; i < 3; ++i) {
            const double m = b * p[i] + (1 - b) * q[i];
            kp += p[i] * std::log(p[i] / m);
            kq += q[i] * std::log(q[i] / m);
        }
        EXPECT_NEAR(one_row(opts(Divergence::JSD, 1, 0, 0, 0.2f), tp, sq).loss, b * kp + (1 - b) * kq, 1e-6);
    }
    // Gradient of forward KL at T = 1 is q - p.
    std::vector<float> g;
    one_row(opts(Divergence::ForwardKL), tp, sq, -1, &g);
    EXPECT_NEAR(g[0], 0.4 - 0.7, 1e-6);
    EXPECT_NEAR(g[1], 0.4 - 0.2, 1e-6);
    EXPECT_NEAR(g[2], 0.2 - 0.1, 1e-6);

    // Top-1 with the rest bucket: categories {token 0, rest}: p = (0.7, 0.3), q = (0.4, 0.6).
    EXPECT_NEAR(one_row(opts(Divergence::ForwardKL, 1, 1), tp, sq).loss,
                0.7 * std::log(0.7 / 0.4) + 0.3 * std::log(0.3 / 0.6), 1e-6);
    EXPECT_NEAR(one_row(opts(Divergence::ReverseKL, 1, 1), tp, sq).loss,
                0.4 * std::log(0.4 / 0.7) + 0.6 * std::log(0.6 / 0.3), 1e-6);
    EXPECT_NEAR(one_row(opts(Divergence::TVD, 1, 1), tp, sq).loss, 0.3, 1e-6);
    // Top-2: categories {0, 1, rest = {2}}: the full distribution again.
    EXPECT_NEAR(one_row(opts(Divergence::ForwardKL, 1, 2), tp, sq).loss, fkl, 1e-6);

    // Hard-label mix: (1 - w) D + w (-log q_label).
    EXPECT_NEAR(one_row(opts(Divergence::ForwardKL, 1, 0, 0.25f), tp, sq, 1).loss,
                0.75 * fkl + 0.25 * -std::log(0.4), 1e-6);
    DistillLossValue v = one_row(opts(Divergence::ForwardKL, 1, 0, 0.25f), tp, sq, 1);
    EXPECT_NEAR(v.divergence, fkl, 1e-6);
    EXPECT_NEAR(v.ce, -std::log(0.4), 1e-6);
}

TEST(DistillLoss, TemperatureSoftensBothAndScalesByTSquared) {
    const std::vector<float> t{2.0f, 0.0f, -2.0f}, s{0.0f, 1.0f, 0.0f};
    const double T = 2;
    // p = softmax(t / 2) = softmax(1, 0, -1), q = softmax(0, 0.5, 0).
    const double zp = std::exp(1.0) + 1 + std::exp(-1.0), zq = 2 + std::exp(0.5);
    const double p[3] = {std::exp(1.0) / zp, 1 / zp, std::exp(-1.0) / zp}, q[3] = {1 / zq, std::exp(0.5) / zq, 1 / zq};
    double kl = 0;
    for (int i = 0; i < 3; ++i) kl += p[i] * std::log(p[i] / q[i]);
    DistillLossValue v = one_row(opts(Divergence::ForwardKL, float(T)), t, s);
    EXPECT_NEAR(v.divergence, kl, 1e-6);
    EXPECT_NEAR(v.loss, T * T * kl, 1e-6);
    // The gradient of T^2 KL is T (q - p).
    std::vector<float> g;
    one_row(opts(Divergence::ForwardKL, float(T)), t, s, -1, &g);
    for (int i = 0; i < 3; ++i) EXPECT_NEAR(g[i], T * (q[i] - p[i]), 1e-6) << i;
}

TEST(DistillLoss, SameDistributionIsZeroWithZeroGradient) {
    std::mt19937 rng(3);
    std::normal_distribution<float> n(0, 2);
    for (uint32_t V : {5u, 31u}) {
        std::vector<float> z(V);
        for (float& x : z) x = n(rng);
        std::vector<float> shifted = z;
        for (float& x : shifted) x += 3.5f;  // softmax ignores a constant shift
        for (Divergence d : kAll)
            for (uint32_t k : {0u, 3u})
                for (float T : {1.0f, 2.5f}) {
                    std::vector<float> g;
                    DistillLossValue v = one_row(opts(d, T, k), z, shifted, -1, &g);
                    EXPECT_NEAR(v.loss, 0.0, 1e-6) << divergence_name(d) << " k " << k << " T " << T;
                    if (d != Divergence::TVD)  // TVD's subgradient at p = q is 0 only where the signs are 0
                        for (float x : g) EXPECT_NEAR(x, 0.0f, 1e-6f) << divergence_name(d);
                }
    }
}

TEST(DistillLoss, DivergencesArePositiveAndTopKBoundsFull) {
    std::mt19937 rng(4);
    std::normal_distribution<float> n(0, 1.5f);
    const uint32_t V = 17;
    std::vector<float> t(V), s(V);
    for (float& x : t) x = n(rng);
    for (float& x : s) x = n(rng);
    for (Divergence d : kAll) {
        const double full = one_row(opts(d), t, s).loss;
        EXPECT_GT(full, 0.0) << divergence_name(d);
        // Coarse-graining (data processing inequality): top-k + rest never exceeds the full value.
        for (uint32_t k : {1u, 4u, 16u}) {
            const double part = one_row(opts(d, 1, k), t, s).loss;
            EXPECT_GE(part, 0.0);
            EXPECT_LE(part, full + 1e-6) << divergence_name(d) << " k " << k;
        }
    }
}

// Every gradient against central differences: several rows (one masked out), labels, odd vocab.
TEST(DistillLoss, GradientsMatchFiniteDifferences) {
    std::mt19937 rng(7);
    std::normal_distribution<float> n(0, 1.5f);
    for (uint32_t V : {7u, 13u}) {
        const size_t R = 3;
        std::vector<float> t(R * V), s(R * V);
        for (float& x : t) x = n(rng);
        for (float& x : s) x = n(rng);
        std::vector<int32_t> labels{2, -1, 5};
        std::vector<uint8_t> mask{1, 1, 0};
        for (Divergence d : kAll)
            for (uint32_t k : {0u, 3u})
                for (float T : {1.0f, 1.7f})
                    for (float w : {0.0f, 0.3f}) {
                        DistillLossOptions o = opts(d, T, k, w, 0.3f);
                        TeacherDist td = make_teacher_dist(t.data(), R, V, o);
                        std::vector<float> g(R * V), scratch(R * V);
                        const float scale = 0.5f;
                        distill_loss(o, s.data(), td, labels, mask, scale, g.data());
                        for (size_t i = 0; i < R * V; ++i) {
                            const float h = 1e-3f;
                            std::vector<float> sp = s, sm = s;
                            sp[i] += h;
                            sm[i] -= h;
                            const double lp = distill_loss(o, sp.data(), td, labels, mask, 1, scratch.data()).loss;
                            const double lm = distill_loss(o, sm.data(), td, labels, mask, 1, scratch.data()).loss;
                            const double fd = scale * (lp - lm) / double(sp[i] - sm[i]);
                            EXPECT_NEAR(g[i], fd, 2e-4 + 2e-3 * std::fabs(fd))
                                << divergence_name(d) << " V " << V << " k " << k << " T " << T << " w " << w << " i "
                                << i;
                        }
                        for (size_t i = 2 * V; i < 3 * V; ++i) EXPECT_EQ(g[i], 0.0f);  // the masked-out row
                    }
    }
}

TEST(DistillLoss, MaskFromLabelsAndMeanOverRows) {
    const auto tp = logs({0.7, 0.2, 0.1}), sq = logs({0.4, 0.4, 0.2});
    std::vector<float> t, s;
    for (int r = 0; r < 3; ++r) {
        t.insert(t.end(), tp.begin(), tp.end());
        s.insert(s.end(), (r == 1 ? tp : sq).begin(), (r == 1 ? tp : sq).end());
    }
    DistillLossOptions o = opts(Divergence::ForwardKL);
    TeacherDist td = make_teacher_dist(t.data(), 3, 3, o);
    std::vector<float> g(9);
    // Rows 0 and 1 count (labels >= 0), row 2 does not: mean of (fkl, 0).
    std::vector<int32_t> labels{0, 1, -1};
    DistillLossValue v = distill_loss(o, s.data(), td, labels, {}, 1, g.data());
    EXPECT_EQ(v.n_rows, 2u);
    EXPECT_NEAR(v.loss, 0.1837869 / 2, 1e-6);
    for (int i = 6; i < 9; ++i) EXPECT_EQ(g[i], 0.0f);
}

TEST(DistillLoss, BadOptionsAreClearErrors) {
    auto msg = [](auto f) {
        try {
            f();
        } catch (const slm::Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(msg([] { divergence_from_name("kld"); }).find("unknown loss 'kld'"), std::string::npos);
    EXPECT_EQ(divergence_from_name("rkl"), Divergence::ReverseKL);
    const std::vector<float> t{1, 2, 3};
    std::vector<float> g(3);
    EXPECT_NE(msg([&] { make_teacher_dist(t.data(), 1, 3, opts(Divergence::ForwardKL, 1, 3)); }).find("top-k = 3"),
              std::string::npos);
    EXPECT_NE(msg([&] { opts(Divergence::ForwardKL, 0).validate(); }).find("temperature"), std::string::npos);
    EXPECT_NE(msg([&] { opts(Divergence::JSD, 1, 0, 0, 1.0f).validate(); }).find("beta"), std::string::npos);
    EXPECT_NE(msg([&] { opts(Divergence::ForwardKL, 1, 0, 1.5f).validate(); }).find("ce-weight"), std::string::npos);
    TeacherDist td = make_teacher_dist(t.data(), 1, 3, opts(Divergence::ForwardKL));
    std::vector<int32_t> bad{7};
    EXPECT_NE(msg([&] { distill_loss(opts(Divergence::ForwardKL), t.data(), td, bad, {}, 1, g.data()); }).find("label 7"),
              std::string::npos);
}

} // namespace

// ---- with models ------------------------------------------------------------------------------

#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/quantize.h"
#include "test_util.h"

#include <filesystem>
#include <nlohmann/json.hpp>

namespace {

using slm::test::model_path;
using slm::test::temp_dir;

std::string tokenizer_gguf() { return model_path("stories260K/stories260K.gguf"); }

TrainArch tiny_arch(uint32_t n_embd = 32, uint32_t n_layer = 2) {
    TrainArch a;
    a.name = "distill-test";
    a.tokenizer = tokenizer_gguf();  // 512 tokens
    a.n_ctx = 64;
    a.n_embd = n_embd;
    a.n_layer = n_layer;
    a.n_head = 4;
    a.n_head_kv = 2;
    a.n_ff = 64;
    return a;
}

// A fixed random teacher whose distributions are far from uniform (a larger init).
std::unique_ptr<TrainModel> make_teacher_model() {
    TrainArch a = tiny_arch(48, 2);
    a.init_std = 0.25f;
    return std::make_unique<TrainModel>(a, 1234);
}

std::vector<int32_t> random_tokens(size_t n, uint32_t seed, int32_t n_vocab = 512) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> d(3, n_vocab - 1);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = d(rng);
    return t;
}

// Plain SGD step over the trainable parameters.
void sgd(TrainModel& m, float lr) {
    for (TrainParam& p : m.params())
        if (p.trainable && p.g)
            for (size_t i = 0; i < p.n; ++i) p.w[i] -= lr * p.g[i];
}

// Adam (no weight decay, no bias correction needed for a test's monotone progress: it is applied).
struct Adam {
    std::vector<std::vector<float>> m, v;
    int t = 0;
    void step(TrainModel& model, float lr) {
        auto& ps = model.params();
        if (m.size() != ps.size()) {
            m.assign(ps.size(), {});
            v.assign(ps.size(), {});
        }
        ++t;
        const float b1 = 0.9f, b2 = 0.99f;
        const float c1 = 1 - std::pow(b1, float(t)), c2 = 1 - std::pow(b2, float(t));
        for (size_t k = 0; k < ps.size(); ++k) {
            TrainParam& p = ps[k];
            if (!p.trainable || !p.g) continue;
            m[k].resize(p.n, 0.0f);
            v[k].resize(p.n, 0.0f);
            for (size_t i = 0; i < p.n; ++i) {
                m[k][i] = b1 * m[k][i] + (1 - b1) * p.g[i];
                v[k][i] = b2 * v[k][i] + (1 - b2) * p.g[i] * p.g[i];
                p.w[i] -= lr * (m[k][i] / c1) / (std::sqrt(v[k][i] / c2) + 1e-8f);
            }
        }
    }
};

// Mean divergence of `student` from `teacher` on a fixed batch (no gradient kept).
float divergence_on(TrainModel& student, Teacher& teacher, const DistillLossOptions& o, std::span<const int32_t> tokens,
                    int B, int T) {
    std::vector<float> tl;
    teacher.logits(tokens, B, T, tl);
    TeacherDist td = make_teacher_dist(tl.data(), size_t(B) * T, 512, o);
    const float* z = student.forward(tokens, B, T);
    std::vector<float> g(size_t(B) * T * 512);
    std::vector<uint8_t> mask(size_t(B) * T, 1);
    return distill_loss(o, z, td, {}, mask, 1, g.data()).divergence;
}

TEST(Distill, GGUFTeacherLogitsAreTheModelsAndVocabMustMatch) {
    auto tm = make_teacher_model();
    const std::string path = temp_dir() + "/teacher.gguf";
    tm->save(path);
    auto t = Teacher::load(path, 1);
    EXPECT_EQ(t->n_vocab(), 512u);
    const int B = 3, T = 9;
    auto tokens = random_tokens(size_t(B) * T, 5);
    std::vector<float> got;
    t->logits(tokens, B, T, got);
    const float* want = tm->forward(tokens, B, T);
    ASSERT_EQ(got.size(), size_t(B) * T * 512);
    double max_err = 0, max_abs = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        max_err = std::max(max_err, double(std::fabs(got[i] - want[i])));
        max_abs = std::max(max_abs, double(std::fabs(want[i])));
    }
    EXPECT_LT(max_err, 1e-4 * std::max(1.0, max_abs));

    // A student with another vocabulary size is refused, naming both sizes.
    TrainArch other = tiny_arch();
    other.tokenizer = "";
    other.n_vocab = 300;
    TrainModel student(other, 1);
    try {
        Distiller d(t, DistillOptions{}, student);
        ADD_FAILURE() << "no error";
    } catch (const slm::Error& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("512"), std::string::npos) << m;
        EXPECT_NE(m.find("300"), std::string::npos) << m;
        EXPECT_NE(m.find("tokenizer"), std::string::npos) << m;
    }
    // Loading something that is not a model names the file.
    EXPECT_THROW(Teacher::load(temp_dir() + "/missing.gguf"), slm::Error);
}

// Off-policy distillation of a small student from the fixed teacher: the divergence on the
// training batch falls, for forward and reverse KL, with a full and a top-k teacher.
TEST(Distill, LossDecreasesOffPolicy) {
    auto teacher_model = make_teacher_model();
    std::shared_ptr<Teacher> teacher = Teacher::from_model(teacher_model->clone());
    const int B = 4, T = 16;
    auto tokens = random_tokens(size_t(B) * T, 9);
    std::vector<int32_t> targets(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) targets[i] = (i + 1) % T ? tokens[i + 1] : 0;
    struct Case { Divergence d; uint32_t k; };
    for (Case c : {Case{Divergence::ForwardKL, 0}, Case{Divergence::ReverseKL, 0}, Case{Divergence::ForwardKL, 8},
                   Case{Divergence::JSD, 0}}) {
        TrainModel student(tiny_arch(), 7);
        DistillOptions o;
        o.loss.divergence = c.d;
        o.loss.top_k = c.k;
        Distiller d(teacher, o, student);
        const float before = divergence_on(student, *teacher, o.loss, tokens, B, T);
        float first = 0, last = 0;
        Adam adam;
        for (int step = 0; step < 40; ++step) {
            student.zero_grad();
            const float l = d.batch_loss(student, tokens, targets, B, T, 1.0f);
            if (step == 0) first = l;
            last = l;
            adam.step(student, 1e-2f);
        }
        const float after = divergence_on(student, *teacher, o.loss, tokens, B, T);
        EXPECT_GT(first, 0.05f) << divergence_name(c.d);
        EXPECT_LT(last, 0.6f * first) << divergence_name(c.d) << " k " << c.k;
        EXPECT_LT(after, 0.6f * before) << divergence_name(c.d) << " k " << c.k;
        EXPECT_EQ(d.stats().n_batches, 40);
        EXPECT_EQ(d.stats().n_on_policy, 0);
    }
}

TEST(Distill, OnPolicySamplesKeepThePromptAndTrain) {
    auto tm = make_teacher_model();
    const std::string path = temp_dir() + "/teacher-op.gguf";
    tm->save(path);
    std::shared_ptr<Teacher> teacher = Teacher::load(path, 1);
    const int B = 3, T = 12;
    // The student: the teacher with noise on every weight, so its samples look like the teacher's
    // and moving toward the teacher lowers the divergence everywhere.
    std::unique_ptr<TrainModel> student_ptr = tm->clone();
    TrainModel& student = *student_ptr;
    {
        std::mt19937 rng(77);
        std::normal_distribution<float> n(0.0f, 0.08f);
        for (TrainParam& p : student.params())
            if (p.is_matrix())
                for (size_t i = 0; i < p.n; ++i) p.w[i] += n(rng);
    }
    DistillOptions o;
    o.loss.divergence = Divergence::ReverseKL;
    o.on_policy = 1.0f;
    o.prompt_fraction = 0.25f;  // 3 prompt tokens
    o.tmp_dir = temp_dir();
    o.seed = 11;
    Distiller d(teacher, o, student);

    auto tokens = random_tokens(size_t(B) * T, 21);
    std::vector<uint8_t> mask;
    std::vector<int32_t> s = d.sample_continuations(student, tokens, B, T, 3, mask);
    ASSERT_EQ(s.size(), tokens.size());
    ASSERT_EQ(mask.size(), tokens.size());
    size_t n_diff = 0;
    for (int b = 0; b < B; ++b) {
        for (int t = 0; t < 3; ++t) EXPECT_EQ(s[b * T + t], tokens[b * T + t]);
        for (int t = 0; t < 2; ++t) EXPECT_EQ(mask[b * T + t], 0) << "prompt rows are not trained";
        EXPECT_EQ(mask[b * T + 2], 1) << "the last prompt row predicts the first sample";
        for (int t = 3; t < T; ++t) n_diff += s[b * T + t] != tokens[b * T + t];
        for (int t = 0; t < T; ++t) EXPECT_TRUE(s[b * T + t] >= 0 && s[b * T + t] < 512);
    }
    EXPECT_GT(n_diff, size_t(B * (T - 3) / 2)) << "continuations are the student's, not the data";
    // Nothing left behind in the temp folder.
    for (const auto& e : std::filesystem::directory_iterator(temp_dir()))
        EXPECT_EQ(e.path().filename().string().find("slm-distill-student"), std::string::npos);

    // Training on-policy: the on-policy loss falls (mean of the last 5 steps against the first 5),
    // and so does the divergence on fixed sequences the student never trained on.
    std::vector<int32_t> targets(tokens.size(), 0);
    auto held = random_tokens(size_t(B) * T, 22);
    const float before = divergence_on(student, *teacher, o.loss, held, B, T);
    Adam adam;
    std::vector<float> losses;
    for (int step = 0; step < 25; ++step) {
        student.zero_grad();
        losses.push_back(d.batch_loss(student, tokens, targets, B, T, 1.0f));
        adam.step(student, 3e-3f);
    }
    const float after = divergence_on(student, *teacher, o.loss, held, B, T);
    float first5 = 0, last5 = 0;
    for (int i = 0; i < 5; ++i) {
        first5 += losses[i] / 5;
        last5 += losses[20 + i] / 5;
    }
    EXPECT_EQ(d.stats().n_on_policy, 25);
    EXPECT_GT(d.stats().sample_seconds, 0.0);
    EXPECT_LT(last5, 0.8f * first5) << "on-policy loss " << first5 << " -> " << last5;
    EXPECT_LT(after, 0.9f * before) << "held-out divergence " << before << " -> " << after;
}

// BitDistiller-style QAT self-distillation through slm::train: the teacher is the full-precision
// start model, the student its Q4_0 fake-quantized self. The exported Q4_0 model ends closer to
// the full-precision one than round-to-nearest quantization of the start model (slm quantize).
TEST(Distill, QatSelfDistillationThroughTrain) {
    TrainArch a = tiny_arch();
    a.init_std = 0.2f;
    TrainModel m(a, 41);
    const std::string fp = temp_dir() + "/qat-fp.gguf", ptq = temp_dir() + "/qat-ptq.gguf",
                      qat = temp_dir() + "/qat-out.gguf";
    m.save(fp);
    slm::QuantizeParams qp;
    qp.type = "Q4_0";
    slm::quantize_model(fp, ptq, qp);

    // Data: a fixed 40-token pattern repeated, so every training window reads the same text.
    auto pattern = random_tokens(40, 43);
    std::string text;
    for (int rep = 0; rep < 60; ++rep)
        for (int32_t t : pattern) text += std::to_string(t) + " ";
    const std::string data = temp_dir() + "/qat.tok";
    slm::test::write_file(data, std::vector<uint8_t>(text.begin(), text.end()));
    TrainOptions o;
    o.data = data;
    o.out = qat;
    o.steps = 40;
    o.batch = 2;
    o.seq_len = 16;
    o.lr = 1e-3f;
    o.warmup = 2;
    o.val_every = 0;
    o.ckpt_every = 0;
    o.checkpoint_dir = temp_dir() + "/qat-ckpt";
    o.resume = false;
    o.qat_type = GGMLType::Q4_0;
    o.qat_distill = true;
    o.log = [](const std::string&) {};
    DistillOptions d;
    d.loss.divergence = Divergence::ForwardKL;
    auto sd = install_self_distillation(m, o, d);
    TrainResult r = train(m, o);
    EXPECT_EQ(sd->stats().n_batches, o.steps);

    // Divergence from the full-precision model on pattern sequences.
    const int B = 2, T = 16;
    std::vector<int32_t> seqs;
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) seqs.push_back(pattern[(b * 7 + t) % pattern.size()]);
    auto teacher = Teacher::load(fp, 1);
    auto divergence = [&](const std::string& path) {
        std::vector<float> tl, sl;
        teacher->logits(seqs, B, T, tl);
        Teacher::load(path, 1)->logits(seqs, B, T, sl);
        DistillLossOptions lo;
        TeacherDist td = make_teacher_dist(tl.data(), size_t(B) * T, 512, lo);
        std::vector<float> g(sl.size());
        std::vector<uint8_t> mask(size_t(B) * T, 1);
        return distill_loss(lo, sl.data(), td, {}, mask, 1, g.data()).divergence;
    };
    const float d_ptq = divergence(ptq), d_qat = divergence(qat);
    EXPECT_GT(d_ptq, 1e-3f) << "Q4_0 moves the model off the full-precision one";
        EXPECT_LT(d_qat, 0.7f * d_ptq) << "QAT self-distillation: " << d_qat << " vs round-to-nearest " << d_ptq;
}

// LoRA: adapters trained on a frozen base; the merged GGUF run by slm::Session gives the logits of
// the base with its adapters (TrainModel forward).
TEST(Lora, MergedModelMatchesAdapterForward) {
    TrainArch a = tiny_arch();
    a.n_ctx = 32;
    TrainModel base(a, 5);
    const std::string base_path = temp_dir() + "/base.gguf";
    base.save(base_path);

    auto m = TrainModel::load(base_path);
    LoraOptions lo;
    lo.rank = 4;
    lo.alpha = 8;
    lo.targets = {"attn_q", "attn_v", "ffn_down"};
    m->add_lora(lo);
    size_t n_train = 0;
    for (const TrainParam& p : m->params()) n_train += p.trainable ? 1 : 0;
    EXPECT_EQ(n_train, size_t(2 * 3 * a.n_layer)) << "only the adapters train";
    const int B = 2, T = 16;
    auto tokens = random_tokens(size_t(B) * T, 31);
    std::vector<int32_t> targets(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) targets[i] = tokens[(i + 1) % tokens.size()];
    float first = 0, last = 0;
    for (int step = 0; step < 15; ++step) {
        m->zero_grad();
        last = m->forward_backward(tokens, targets, B, T);
        if (step == 0) first = last;
        sgd(*m, 0.5f);
    }
    EXPECT_LT(last, first) << "the adapters learn";
    const std::string adapter = temp_dir() + "/adapter.gguf", merged = temp_dir() + "/merged.gguf";
    m->save_lora(adapter);

    std::vector<int32_t> seq(tokens.begin(), tokens.begin() + T);
    const float* want = m->forward(seq, 1, T);
    std::vector<float> ref(want, want + size_t(T) * 512);
    const float* plain = base.forward(seq, 1, T);
    double moved = 0;
    for (size_t i = 0; i < ref.size(); ++i) moved = std::max(moved, double(std::fabs(plain[i] - ref[i])));
    EXPECT_GT(moved, 1e-3) << "the adapter changed the outputs";

    lora_merge(base_path, adapter, merged, "F32");
    auto model = slm::Model::load(merged);
    slm::SessionOptions so;
    so.kv_type = GGMLType::F32;
    slm::Session s(model, so);
    s.eval(seq, true);
    std::span<const float> got = s.logits();
    ASSERT_EQ(got.size(), ref.size());
    double max_err = 0, max_abs = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        max_err = std::max(max_err, double(std::fabs(got[i] - ref[i])));
        max_abs = std::max(max_abs, double(std::fabs(ref[i])));
    }
    // Stated tolerance: 1e-4 of the largest logit (F32 both sides; summation orders differ).
    EXPECT_LT(max_err, 1e-4 * std::max(1.0, max_abs)) << max_err;

    // A quantized merge loads and stays close.
    lora_merge(base_path, adapter, merged, "Q8_0");
    auto q = slm::Model::load(merged);
    slm::Session sq(q, so);
    sq.eval(seq, true);
    std::span<const float> gq = sq.logits();
    double q_err = 0;
    for (size_t i = 0; i < ref.size(); ++i) q_err = std::max(q_err, double(std::fabs(gq[i] - ref[i])));
    EXPECT_LT(q_err, 0.05 * std::max(1.0, max_abs));
    EXPECT_THROW(lora_merge(base_path, adapter, merged, "Q9_9"), slm::Error);
}

} // namespace

// ---- the command line ---------------------------------------------------------------------------

namespace {

using slm::test::run_cli;
using slm::test::RunResult;

std::string write_text(const std::string& name) {
    std::string text;
    const char* lines[] = {"Once upon a time there was a little girl named Lily. She liked to play in the park.",
                           "One day she saw a big red ball. She ran to the ball and kicked it high.",
                           "Tom was a happy dog. He liked to run and jump with his friends in the sun.",
                           "The cat sat on the mat and looked at the bird in the tree."};
    for (int i = 0; i < 12; ++i) {
        text += lines[i % 4];
        text += "\n\n";
    }
    const std::string path = temp_dir() + "/" + name;
    slm::test::write_file(path, std::vector<uint8_t>(text.begin(), text.end()));
    return path;
}

std::string teacher_file() {
    static std::string path;
    if (path.empty()) {
        path = temp_dir() + "/cli-teacher.gguf";
        make_teacher_model()->save(path);
    }
    return path;
}

TEST(DistillCli, DistillsAStudentOnAndOffPolicy) {
    const std::string data = write_text("data.txt"), out = temp_dir() + "/student.gguf";
    RunResult r = run_cli({"distill", "--teacher", teacher_file(), "--student", "tiny", "--data", data, "--loss", "rkl",
                           "--top-k", "16", "--on-policy", "0.5", "--ce-weight", "0.1", "--steps", "4", "--batch", "2",
                           "--seq-len", "16", "--val-every", "0", "--warmup", "1", "--no-resume", "-o", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("on-policy"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("loss rkl"), std::string::npos) << r.err;
    auto m = slm::Model::load(out);
    EXPECT_EQ(m->hparams().n_vocab, 512u);
    EXPECT_EQ(m->hparams().n_embd, 64u) << "the tiny preset";
    // The distilled student runs.
    RunResult run = run_cli({"run", "-m", out, "-p", "Once", "-n", "4", "--temp", "0"});
    EXPECT_EQ(run.exit_code, 0) << run.err;
}

TEST(DistillCli, QatSelfDistillationWithoutTeacher) {
    const std::string data = write_text("self.txt"), out = temp_dir() + "/self-q4.gguf";
    RunResult r = run_cli({"distill", "--student", teacher_file(), "--qat", "Q4_0", "--data", data, "--steps", "3",
                           "--batch", "2", "--seq-len", "16", "--val-every", "0", "--warmup", "1", "--no-resume", "-o",
                           out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("QAT Q4_0"), std::string::npos) << r.err;
    slm::GGUFFile f = slm::GGUFFile::open(out);
    EXPECT_EQ(f.tensor("blk.0.ffn_down.weight").type, GGMLType::Q4_0);  // rows of n_ff 64 (48-wide rows fall back)
    EXPECT_EQ(slm::Model::load(out)->hparams().n_embd, 48u);
    // Without a teacher and without --qat there is nothing to distill from.
    r = run_cli({"distill", "--student", teacher_file(), "--data", data, "--steps", "1", "-o", out});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("no --teacher"), std::string::npos) << r.err;
}

TEST(DistillCli, BadInputsAreClearErrors) {
    const std::string data = write_text("data-bad.txt"), out = temp_dir() + "/bad.gguf";
    std::vector<std::string> base{"distill", "--teacher", teacher_file(), "--student", "tiny", "--data", data,
                                  "--steps", "1", "-o", out};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> a = base;
        a.insert(a.end(), extra.begin(), extra.end());
        return run_cli(a);
    };
    RunResult r = with({"--loss", "kld"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("unknown loss 'kld'"), std::string::npos) << r.err;
    r = with({"--top-k", "0"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("top-k 0"), std::string::npos) << r.err;
    r = with({"--top-k", "512"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("vocabulary size 512"), std::string::npos) << r.err;
    r = with({"--loss", "jsd", "--jsd-beta", "0"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("beta"), std::string::npos) << r.err;
    r = run_cli({"distill", "--teacher", data, "--student", "tiny", "--data", data, "-o", out});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find(data), std::string::npos) << "names the teacher file: " << r.err;
}

TEST(DistillCli, FinetuneLoraThenMergeAndRun) {
    const std::string data = write_text("ft.txt"), base = temp_dir() + "/ft-base.gguf",
                      adapter = temp_dir() + "/ft-adapter.gguf", merged = temp_dir() + "/ft-merged.gguf";
    TrainModel(tiny_arch(), 17).save(base);
    RunResult r = run_cli({"finetune", "-m", base, "--lora", "4", "--lora-alpha", "8", "--lora-targets", "q,v,down",
                           "--data", data, "--steps", "3", "--batch", "2", "--seq-len", "16", "--val-every", "0",
                           "--warmup", "1", "--no-resume", "-o", adapter});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    slm::GGUFFile f = slm::GGUFFile::open(adapter);
    EXPECT_TRUE(f.find_tensor("blk.0.attn_q.weight.lora_a") != nullptr);
    EXPECT_TRUE(f.find_tensor("blk.1.ffn_down.weight.lora_b") != nullptr);
    EXPECT_TRUE(f.find_tensor("blk.0.attn_k.weight.lora_a") == nullptr);
    r = run_cli({"lora", "merge", base, adapter, "-o", merged, "--type", "F16"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(slm::Model::load(merged)->hparams().n_vocab, 512u);
    // slm run --lora merges at load: the same greedy tokens as the merged file (F32 vs F16 may
    // differ in far digits only; compare against an F32 merge).
    r = run_cli({"lora", "merge", base, adapter, "-o", merged});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    RunResult a = run_cli({"run", "-m", merged, "-p", "Once", "-n", "6", "--temp", "0", "--json"});
    RunResult b = run_cli({"run", "-m", base, "--lora", adapter, "-p", "Once", "-n", "6", "--temp", "0", "--json"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
    r = run_cli({"finetune", "-m", base, "--lora", "4", "--lora-targets", "q,x", "--data", data, "-o", adapter});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("unknown matrix 'x'"), std::string::npos) << r.err;
}

} // namespace
