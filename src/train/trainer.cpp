// trainer.cpp - slm::train(): the loop around TrainModel. Per step: the fake-quantized weights
// when QAT is on, grad_accum micro-batches of random windows (loss via batch_loss or
// cross-entropy), global-norm clipping, AdamW at the scheduled rate; then validation,
// progress line, checkpoint and loss curve when due; at the end the model in its output type.
#include "train/trainer_internal.h"

#include "slm/error.h"
#include "slm/gguf.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>

namespace slm {

using namespace train_impl;

namespace {

void check_options(const TrainModel& model, const TrainOptions& o) {
    const TrainArch& a = model.arch();
    if (o.steps < 1) fail("train: field 'steps' is %lld, not >= 1", static_cast<long long>(o.steps));
    if (o.batch < 1) fail("train: field 'batch' is %d, not >= 1", o.batch);
    if (o.seq_len < 1 || static_cast<uint32_t>(o.seq_len) > a.n_ctx)
        fail("train: field 'seq_len' is %d, not in [1, n_ctx = %u]", o.seq_len, a.n_ctx);
    if (o.grad_accum < 1) fail("train: field 'grad_accum' is %d, not >= 1", o.grad_accum);
    if (!(o.lr > 0) || !std::isfinite(o.lr)) fail("train: field 'lr' is %g, not > 0", static_cast<double>(o.lr));
    if (!(o.lr_min_ratio >= 0 && o.lr_min_ratio <= 1))
        fail("train: field 'lr_min_ratio' is %g, not in [0, 1]", static_cast<double>(o.lr_min_ratio));
    if (o.warmup < 0) fail("train: field 'warmup' is %lld, not >= 0", static_cast<long long>(o.warmup));
    if (!(o.beta1 >= 0 && o.beta1 < 1)) fail("train: field 'beta1' is %g, not in [0, 1)", static_cast<double>(o.beta1));
    if (!(o.beta2 >= 0 && o.beta2 < 1)) fail("train: field 'beta2' is %g, not in [0, 1)", static_cast<double>(o.beta2));
    if (!(o.eps > 0)) fail("train: field 'eps' is %g, not > 0", static_cast<double>(o.eps));
    if (!(o.weight_decay >= 0)) fail("train: field 'weight_decay' is %g, not >= 0", static_cast<double>(o.weight_decay));
    if (!(o.grad_clip >= 0)) fail("train: field 'grad_clip' is %g, not >= 0 (0 = off)", static_cast<double>(o.grad_clip));
    if (o.val_every < 0) fail("train: field 'val_every' is %lld, not >= 0", static_cast<long long>(o.val_every));
    if (o.val_batches < 1) fail("train: field 'val_batches' is %d, not >= 1", o.val_batches);
    if (o.ckpt_every < 0) fail("train: field 'ckpt_every' is %lld, not >= 0", static_cast<long long>(o.ckpt_every));
    if (o.log_every < 1) fail("train: field 'log_every' is %lld, not >= 1", static_cast<long long>(o.log_every));
    if (o.n_threads < 0) fail("train: field 'n_threads' is %d, not >= 0", o.n_threads);
    if (o.qat_distill && !o.qat_type) fail("train: field 'qat_distill' needs 'qat_type' (--qat TYPE)");
    // Self-distillation is a loss (slm/distill.h plugs it in through batch_loss); without one,
    // qat_distill would silently train on hard labels.
    if (o.qat_distill && !o.batch_loss)
        fail("train: field 'qat_distill' is set but no distillation loss is plugged in (batch_loss); use slm distill's "
             "QAT self-distillation");
}

std::optional<Vocab> model_vocab(const TrainModel& model, const TrainOptions& o) {
    const std::string& tok = o.tokenizer.empty() ? model.arch().tokenizer : o.tokenizer;
    if (tok.empty()) return std::nullopt;
    const GGUFFile f = GGUFFile::open(tok);
    return Vocab::from_gguf(f);
}

// The fake-quantized weights for the lifetime of the scope; the masters come back even when the
// loss throws.
struct FakeQuantScope {
    explicit FakeQuantScope(FakeQuant* f) : fq(f) {
        if (fq) fq->apply();
    }
    ~FakeQuantScope() {
        if (fq) fq->restore();
    }
    FakeQuantScope(const FakeQuantScope&) = delete;
    FakeQuantScope& operator=(const FakeQuantScope&) = delete;
    FakeQuant* fq;
};

std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const long long t = std::llround(s);
    if (t >= 3600) return strprintf("%lldh%02lldm", t / 3600, (t % 3600) / 60);
    if (t >= 60) return strprintf("%lldm%02llds", t / 60, t % 60);
    return strprintf("%llds", t);
}

} // namespace

TrainResult train(TrainModel& model, const TrainOptions& o) {
    check_options(model, o);
    const auto log = [&](const std::string& line) {
        if (o.log) o.log(line);
        else std::fprintf(stderr, "%s\n", line.c_str());
    };
    model.set_threads(o.n_threads);

    // Data.
    std::optional<Vocab> vocab;
    try {
        vocab = model_vocab(model, o);
    } catch (const Error&) {
        if (!o.tokenizer.empty()) throw;  // asked for explicitly
        vocab.reset();  // token files need none; a text file reports the missing tokenizer below
    }
    const TrainData data = load_train_data(o.data, vocab ? &*vocab : nullptr, model.arch().n_vocab, o);
    const int B = o.batch, T = o.seq_len;
    const int64_t tokens_per_step = static_cast<int64_t>(B) * T * o.grad_accum;
    const std::vector<size_t> val_starts =
        o.val_fraction > 0 ? data.val_starts(static_cast<size_t>(o.val_batches) * B) : std::vector<size_t>{};
    log(strprintf("train: %s: %zu tokens (%s%zu held out, %zu validation sequences), %s parameters, %lld steps of "
                  "%lld tokens",
                  data.source.c_str(), data.tokens.size(),
                  data.text ? strprintf("%zu documents, ", data.n_docs).c_str() : "", data.n_val(), val_starts.size(),
                  std::to_string(model.n_params()).c_str(), static_cast<long long>(o.steps),
                  static_cast<long long>(tokens_per_step)));

    std::string ckpt_dir = o.checkpoint_dir;
    if (ckpt_dir.empty() && !o.out.empty()) ckpt_dir = o.out + ".ckpt";
    const std::string config_json = train_config_json(model.arch(), o);

    AdamW opt(model.params());
    std::optional<FakeQuant> fq;
    if (o.qat_type) {
        fq.emplace(model, *o.qat_type, o.n_threads);
        log(strprintf("train: QAT: %zu weights fake-quantized to %s (straight-through estimator)", fq->types().size(),
                      type_name(*o.qat_type)));
    }

    TrainResult res;
    CheckpointState st;
    st.seed = o.seed;
    st.data_tokens = data.tokens.size();
    if (o.resume && !ckpt_dir.empty()) {
        const std::string path = newest_checkpoint(ckpt_dir);
        if (!path.empty()) {
            CheckpointState saved = load_checkpoint(path, model, opt);
            if (saved.seed != o.seed)
                fail("train: checkpoint %s: was trained with seed %llu, this run has seed %llu (--no-resume to start over)",
                     path.c_str(), static_cast<unsigned long long>(saved.seed), static_cast<unsigned long long>(o.seed));
            if (saved.data_tokens != st.data_tokens)
                fail("train: checkpoint %s: was trained on %llu data tokens, %s has %llu (other data; --no-resume to "
                     "start over)",
                     path.c_str(), static_cast<unsigned long long>(saved.data_tokens), o.data.c_str(),
                     static_cast<unsigned long long>(st.data_tokens));
            if (static_cast<int64_t>(saved.curve.size()) != saved.step)
                fail("train: checkpoint %s: its curve has %zu points for %lld steps", path.c_str(), saved.curve.size(),
                     static_cast<long long>(saved.step));
            if (saved.step > o.steps)
                fail("train: checkpoint %s: is at step %lld, past this run's %lld steps", path.c_str(),
                     static_cast<long long>(saved.step), static_cast<long long>(o.steps));
            std::string changed;
            for (const std::string& k : train_config_changes(saved.config_json, config_json))
                if (k != "resume" && k != "n_threads" && k != "log_every" && k != "out" && k != "checkpoint_dir")
                    changed += (changed.empty() ? "" : ", ") + k;
            st = std::move(saved);
            log(strprintf("train: resumed from %s at step %lld", path.c_str(), static_cast<long long>(st.step)));
            // Allowed (e.g. more steps), but then the run is no longer the uninterrupted one.
            if (!changed.empty()) log("train: note: options changed since the checkpoint: " + changed);
        }
    }
    res.svg_path = ckpt_dir.empty() ? std::string() : (std::filesystem::path(ckpt_dir) / "loss.svg").string();
    const std::string title = model.arch().name + (o.qat_type ? std::string(" (QAT ") + type_name(*o.qat_type) + ")" : "");

    const auto validate = [&]() -> float {
        if (val_starts.empty()) return std::numeric_limits<float>::quiet_NaN();
        std::vector<int32_t> in, tg;
        double sum = 0;
        size_t done = 0;
        while (done < val_starts.size()) {
            const int nb = static_cast<int>(std::min<size_t>(B, val_starts.size() - done));
            in.resize(static_cast<size_t>(nb) * T);
            tg.resize(static_cast<size_t>(nb) * T);
            for (int b = 0; b < nb; ++b) data.fill(val_starts[done + b], in.data() + b * T, tg.data() + b * T);
            sum += static_cast<double>(model.loss(in, tg, nb, T)) * nb;
            done += static_cast<size_t>(nb);
        }
        return static_cast<float>(sum / static_cast<double>(val_starts.size()));
    };
    const auto write_outputs = [&]() {
        if (ckpt_dir.empty()) return;
        save_checkpoint(checkpoint_path(ckpt_dir, st.step), model, opt, st, config_json);
        prune_checkpoints(ckpt_dir, 2);
        write_file_atomic(res.svg_path, loss_curve_svg(st.curve, title));
    };

    const auto t0 = std::chrono::steady_clock::now();
    const int64_t first_step = st.step;
    std::vector<int32_t> inputs, targets;
    const float grad_scale = 1.0f / static_cast<float>(o.grad_accum);
    for (int64_t step = st.step; step < o.steps; ++step) {
        const float lr = lr_at(o, step);
        model.zero_grad();
        double loss = 0;
        {
            FakeQuantScope scope(fq ? &*fq : nullptr);
            for (int micro = 0; micro < o.grad_accum; ++micro) {
                data.train_batch(o.seed, step, micro, B, inputs, targets);
                const float l = o.batch_loss ? o.batch_loss(model, inputs, targets, B, T, grad_scale)
                                             : model.forward_backward(inputs, targets, B, T, grad_scale);
                loss += l;
            }
        }
        loss /= o.grad_accum;
        if (!std::isfinite(loss))
            fail("train: step %lld: the loss is %g (diverged: lower lr, raise warmup, or keep grad_clip on)",
                 static_cast<long long>(step + 1), loss);
        const double norm = opt.clip(o.grad_clip);
        opt.step(o, lr, step + 1);
        st.step = step + 1;
        st.tokens_seen += tokens_per_step;

        const bool last = st.step == o.steps;
        const bool do_val = last || (o.val_every > 0 && st.step % o.val_every == 0);
        float val = std::numeric_limits<float>::quiet_NaN();
        if (do_val && !val_starts.empty()) {
            FakeQuantScope scope(fq ? &*fq : nullptr);  // the model QAT exports is the fake-quantized one
            val = validate();
        }
        st.curve.push_back({st.step, st.tokens_seen, static_cast<float>(loss), val, lr});

        if (last || do_val || st.step % o.log_every == 0 || step == first_step) {
            const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const double tps = secs > 0 ? static_cast<double>(st.step - first_step) * tokens_per_step / secs : 0;
            const double eta = st.step > first_step ? secs / static_cast<double>(st.step - first_step) *
                                                          static_cast<double>(o.steps - st.step)
                                                    : 0;
            std::string line = strprintf("step %lld/%lld | loss %.4f", static_cast<long long>(st.step),
                                         static_cast<long long>(o.steps), loss);
            if (std::isfinite(val)) line += strprintf(" | val %.4f", static_cast<double>(val));
            line += strprintf(" | lr %.3e | norm %.3f | %.0f tok/s | ETA %s", static_cast<double>(lr), norm, tps,
                              format_duration(eta).c_str());
            log(line);
        }
        if (last || (o.ckpt_every > 0 && st.step % o.ckpt_every == 0)) write_outputs();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t run_tokens = (st.step - first_step) * tokens_per_step;
    res.tokens_per_s = secs > 0 ? static_cast<double>(run_tokens) / secs : 0;
    res.tokens_seen = st.tokens_seen;
    res.curve = st.curve;
    if (!res.curve.empty()) {
        res.final_loss = res.curve.back().loss;
        res.final_val_loss = res.curve.back().val_loss;
    }
    if (first_step == o.steps) {
        // Nothing left to train (resumed a finished run): still report the held-out loss.
        FakeQuantScope scope(fq ? &*fq : nullptr);
        res.final_val_loss = validate();
    }
    if (!o.out.empty() && model.has_lora()) {
        // What was trained is the adapter (save() would write the untouched base).
        model.save_lora(o.out);
        log(strprintf("train: wrote the LoRA adapter %s", o.out.c_str()));
    } else if (!o.out.empty()) {
        const GGMLType type = o.qat_type ? *o.qat_type : o.out_type;
        export_model(model, o.out, type, o.n_threads);
        log(strprintf("train: wrote %s (%s)", o.out.c_str(), type_name(type)));
    }
    return res;
}

} // namespace slm
