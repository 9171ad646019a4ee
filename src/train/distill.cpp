// distill.cpp - the teacher (a GGUF run by slm::Session, or a TrainModel) and the distillation
// batch loss, off-policy on the data or on-policy on the student's own samples (GKD, MiniLLM).
// The losses themselves are in distill_loss.cpp.
#include "slm/distill.h"

#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/sampler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <unistd.h>

namespace slm {

// ---- teachers --------------------------------------------------------------------------------

namespace {

class GGUFTeacher : public Teacher {
public:
    GGUFTeacher(const std::string& path, int n_threads) : path_(path), n_threads_(n_threads) {
        model_ = Model::load(path);
    }
    uint32_t n_vocab() const override { return model_->hparams().n_vocab; }
    std::string describe() const override { return "teacher '" + path_ + "'"; }
    const Vocab* vocab() const override { return &model_->vocab(); }
    void logits(std::span<const int32_t> tokens, int B, int T, std::vector<float>& out) override {
        if (B <= 0 || T <= 0 || tokens.size() != size_t(B) * size_t(T))
            fail("distill: %s: %zu tokens for %d sequences of %d", describe().c_str(), tokens.size(), B, T);
        const uint32_t V = n_vocab();
        out.resize(size_t(B) * T * V);
        const uint32_t need = uint32_t(B) * uint32_t(T);
        if (!session_ || session_->n_ctx() < need) {
            SessionOptions so;
            so.n_ctx = need;
            so.kv_type = GGMLType::F32;
            so.n_threads = n_threads_;
            session_ = std::make_unique<Session>(model_, so);
        }
        if (session_->supports_branches()) {
            // All sequences in one pass: each is a branch after an empty prefix.
            std::vector<std::vector<int32_t>> br(B);
            for (int b = 0; b < B; ++b) br[b].assign(tokens.begin() + size_t(b) * T, tokens.begin() + size_t(b + 1) * T);
            session_->eval_branches(0, br);
            std::span<const float> l = session_->logits();
            std::copy(l.begin(), l.begin() + out.size(), out.begin());
            return;
        }
        for (int b = 0; b < B; ++b) {
            session_->reset();
            session_->eval(tokens.subspan(size_t(b) * T, T), true);
            std::span<const float> l = session_->logits();
            std::copy(l.begin(), l.begin() + size_t(T) * V, out.begin() + size_t(b) * T * V);
        }
        session_->reset();
    }

private:
    std::string path_;
    int n_threads_;
    std::shared_ptr<const Model> model_;
    std::unique_ptr<Session> session_;
};

class TrainModelTeacher : public Teacher {
public:
    explicit TrainModelTeacher(std::unique_ptr<TrainModel> m) : model_(std::move(m)) {}
    uint32_t n_vocab() const override { return model_->arch().n_vocab; }
    std::string describe() const override { return "the teacher model"; }
    void logits(std::span<const int32_t> tokens, int B, int T, std::vector<float>& out) override {
        const float* l = model_->forward(tokens, B, T);
        out.assign(l, l + size_t(B) * T * n_vocab());
    }

private:
    std::unique_ptr<TrainModel> model_;
};

} // namespace

std::shared_ptr<Teacher> Teacher::load(const std::string& gguf_path, int n_threads) {
    return std::make_shared<GGUFTeacher>(gguf_path, n_threads);
}

std::shared_ptr<Teacher> Teacher::from_model(std::unique_ptr<TrainModel> model) {
    if (!model) fail("distill: no teacher model");
    return std::make_shared<TrainModelTeacher>(std::move(model));
}

// ---- the batch loss --------------------------------------------------------------------------

void DistillOptions::validate(uint32_t n_vocab) const {
    loss.validate(n_vocab);
    if (!(on_policy >= 0 && on_policy <= 1)) fail("distill: on-policy fraction = %g must be in [0, 1]", double(on_policy));
    if (!(prompt_fraction > 0 && prompt_fraction < 1))
        fail("distill: prompt fraction = %g must be in (0, 1)", double(prompt_fraction));
    if (!(sample_temperature > 0) || !std::isfinite(sample_temperature))
        fail("distill: sample temperature = %g must be a positive number", double(sample_temperature));
    if (sample_top_k < 0) fail("distill: sample top-k = %d must be >= 0", sample_top_k);
}

Distiller::Distiller(std::shared_ptr<Teacher> teacher, DistillOptions o, const TrainModel& student)
    : teacher_(std::move(teacher)), o_(std::move(o)), rng_(o_.seed) {
    if (!teacher_) fail("distill: no teacher");
    const uint32_t vs = student.arch().n_vocab, vt = teacher_->n_vocab();
    if (vs != vt)
        fail("distill: %s has a vocabulary of %u tokens but the student has %u: teacher and student must share the "
             "tokenizer",
             teacher_->describe().c_str(), vt, vs);
    o_.validate(vs);
    // Same size is not the same tokenizer: compare the token texts when both are at hand.
    const std::string& tok = o_.student_tokenizer.empty() ? student.arch().tokenizer : o_.student_tokenizer;
    if (teacher_->vocab() && !tok.empty()) {
        const Vocab sv = Vocab::from_gguf(GGUFFile::open(tok));
        const Vocab& tv = *teacher_->vocab();
        const int32_t n = std::min(sv.n_tokens(), tv.n_tokens());
        for (int32_t i = 0; i < n; ++i)
            if (sv.token_text(i) != tv.token_text(i))
                fail("distill: %s and the student's tokenizer '%s' differ at token %d ('%s' vs '%s'): teacher and "
                     "student must share the tokenizer",
                     teacher_->describe().c_str(), tok.c_str(), i, tv.token_text(i).c_str(), sv.token_text(i).c_str());
    }
}

void Distiller::install(TrainOptions& opts) {
    opts.batch_loss = [this](TrainModel& m, std::span<const int32_t> tokens, std::span<const int32_t> targets, int B,
                             int T, float grad_scale) { return batch_loss(m, tokens, targets, B, T, grad_scale); };
}

float Distiller::batch_loss(TrainModel& student, std::span<const int32_t> tokens, std::span<const int32_t> targets,
                            int B, int T, float grad_scale) {
    using clock = std::chrono::steady_clock;
    const uint32_t V = student.arch().n_vocab;
    if (tokens.size() != size_t(B) * T || targets.size() != tokens.size())
        fail("distill: %zu tokens and %zu targets for %d sequences of %d", tokens.size(), targets.size(), B, T);
    bool on = false;
    if (o_.on_policy > 0 && T >= 2) {
        std::uniform_real_distribution<double> u(0.0, 1.0);
        on = u(rng_) < o_.on_policy;
    }
    std::vector<int32_t> sampled;
    std::span<const int32_t> use = tokens, labels = targets;
    std::span<const uint8_t> mask;
    if (on) {
        const int n_prompt = std::clamp(int(std::lround(o_.prompt_fraction * T)), 1, T - 1);
        auto t0 = clock::now();
        sampled = sample_continuations(student, tokens, B, T, n_prompt, mask_);
        stats_.sample_seconds += std::chrono::duration<double>(clock::now() - t0).count();
        use = sampled;
        labels = {};
        mask = mask_;
        ++stats_.n_on_policy;
    }
    auto t0 = clock::now();
    teacher_->logits(use, B, T, teacher_logits_);
    TeacherDist td = make_teacher_dist(teacher_logits_.data(), size_t(B) * T, V, o_.loss);
    stats_.teacher_seconds += std::chrono::duration<double>(clock::now() - t0).count();
    const float* z = student.forward(use, B, T);
    dlogits_.resize(size_t(B) * T * V);
    DistillLossValue v = distill_loss(o_.loss, z, td, labels, mask, grad_scale, dlogits_.data());
    student.backward(dlogits_.data());
    stats_.last = v;
    ++stats_.n_batches;
    return v.loss;
}

std::vector<int32_t> Distiller::sample_continuations(TrainModel& student, std::span<const int32_t> tokens, int B,
                                                     int T, int n_prompt, std::vector<uint8_t>& mask) {
    if (n_prompt < 1 || n_prompt >= T) fail("distill: prompt of %d tokens in sequences of %d", n_prompt, T);
    // Sampling runs the student by slm::Session with a KV cache: one token per step costs one
    // token's forward, where re-running TrainModel::forward on the growing batch would cost the
    // whole prefix each step (about (T - n_prompt) T / 2 token-forwards per sequence instead of
    // T). Saving the F32 student costs one write of its weights per on-policy batch. Measured
    // (2 threads, B 4, T 128, prompt 64, both including everything): the "tiny" preset 0.06 s
    // with the Session against 4.3 s re-running forward; "stories-5m" 2.3 s against 356 s.
    static std::atomic<uint64_t> counter{0};
    namespace fs = std::filesystem;
    const fs::path dir = o_.tmp_dir.empty() ? fs::temp_directory_path() : fs::path(o_.tmp_dir);
    const fs::path path = dir / strprintf("slm-distill-student-%ld-%llu.gguf", long(getpid()),
                                          (unsigned long long)counter.fetch_add(1));
    student.save(path.string(), GGMLType::F32);
    std::shared_ptr<const Model> model;
    try {
        model = Model::load(path.string());
    } catch (...) {
        std::error_code ec;
        fs::remove(path, ec);
        throw;
    }
    {
        std::error_code ec;
        fs::remove(path, ec);  // the mapping stays valid after unlinking
    }
    SessionOptions so;
    so.n_ctx = uint32_t(T);
    so.kv_type = GGMLType::F32;
    so.n_threads = o_.n_threads;
    Session s(model, so);
    SamplerParams sp;
    sp.temp = o_.sample_temperature;
    sp.top_k = o_.sample_top_k;
    sp.top_p = 1.0f;
    sp.min_p = 0.0f;
    sp.seed = rng_();
    const uint32_t V = student.arch().n_vocab;
    Sampler sampler(sp, int32_t(V));
    const Vocab& vocab = model->vocab();

    std::vector<int32_t> out(tokens.begin(), tokens.end());
    mask.assign(size_t(B) * T, 0);
    for (int b = 0; b < B; ++b) {
        int32_t* seq = out.data() + size_t(b) * T;
        uint8_t* m = mask.data() + size_t(b) * T;
        s.reset();
        const float* logits = s.eval(std::span<const int32_t>(seq, size_t(n_prompt)));
        int t = n_prompt;
        for (; t < T; ++t) {
            const int32_t tok = sampler.sample(logits);
            seq[t] = tok;
            m[t - 1] = 1;
            if (vocab.is_eog(tok)) break;
            if (t + 1 < T) logits = s.eval(std::span<const int32_t>(&seq[t], 1));
        }
        if (t == T) {
            m[T - 1] = 1;  // the last context is the student's too
        } else {
            for (int u = t + 1; u < T; ++u) seq[u] = seq[t];  // padding after end of text, outside the mask
        }
    }
    return out;
}

std::unique_ptr<Distiller> install_self_distillation(TrainModel& model, TrainOptions& opts, const DistillOptions& o) {
    auto d = std::make_unique<Distiller>(Teacher::from_model(model.clone()), o, model);
    d->install(opts);
    return d;
}

} // namespace slm
