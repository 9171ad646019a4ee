// slm distill: train a student on a teacher's token distributions (forward / reverse KL, GKD's
// JSD, total variation), off-policy on the data and optionally on the student's own samples.
// All the work is slm::Distiller (include/slm/distill.h) plugged into slm::train.
#include "commands.h"
#include "train_flags.h"

#include "slm/distill.h"
#include "slm/error.h"
#include "slm/train.h"

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <memory>

namespace slm::cli {

namespace {

struct DistillCli {
    std::string teacher, student, out, loss = "fkl", qat;
    int64_t top_k = -1;  // -1 = not given: the full distribution
    DistillOptions d;
    TrainFlags train;
};

bool ends_with(const std::string& s, const char* suffix) {
    const std::string x(suffix);
    return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

void run_distill(DistillCli& c) {
    c.d.loss.divergence = divergence_from_name(c.loss);
    if (c.top_k == 0) fail("distill: --top-k 0: give K >= 1 teacher tokens, or leave --top-k out for the full distribution");
    if (c.top_k > 0) c.d.loss.top_k = uint32_t(c.top_k);

    // The student: an existing model, a training config (its "train" options are the defaults the
    // flags override), or a preset; a new student takes the teacher's tokenizer unless told.
    TrainOptions base;
    std::unique_ptr<TrainModel> student;
    TrainArch arch;
    bool fresh = false;
    if (ends_with(c.student, ".gguf")) {
        student = TrainModel::load(c.student);
    } else if (ends_with(c.student, ".json")) {
        TrainConfig cfg = load_train_config(c.student);
        base = cfg.options;
        arch = cfg.arch;
        fresh = true;
    } else {
        arch = train_preset(c.student);
        fresh = true;
    }
    TrainOptions o = c.train.apply(base);
    o.out = c.out;
    if (o.data.empty()) fail("distill: no data: give --data TEXT|TOKENS");
    if (!fresh) {
        if (o.tokenizer.empty()) o.tokenizer = c.student;  // text data is cut with the student's tokenizer
        c.d.student_tokenizer = c.student;
    }
    if (fresh) {
        if (arch.tokenizer.empty()) arch.tokenizer = c.teacher;
        if (arch.tokenizer.empty()) fail("distill: a new student needs a tokenizer: give --teacher or \"tokenizer\" in the config");
        student = std::make_unique<TrainModel>(arch, o.seed);
    }

    if (!c.qat.empty()) {
        GGMLType t;
        if (!type_from_name(c.qat, &t)) fail("distill: --qat '%s': unknown type", c.qat.c_str());
        o.qat_type = t;
    }
    c.d.seed = o.seed;
    c.d.n_threads = o.n_threads;
    // Without --teacher: BitDistiller's self-distillation, the full-precision student at start
    // teaching its fake-quantized self.
    std::unique_ptr<Distiller> owned;
    if (c.teacher.empty()) {
        if (!o.qat_type) fail("distill: no --teacher: give one, or --qat TYPE for self-distillation of the student");
        if (fresh) fail("distill: self-distillation (--qat without --teacher) needs a trained student GGUF, not '%s'",
                        c.student.c_str());
        o.qat_distill = true;
        owned = install_self_distillation(*student, o, c.d);
    } else {
        owned = std::make_unique<Distiller>(Teacher::load(c.teacher, o.n_threads), c.d, *student);
        owned->install(o);
    }
    Distiller& distiller = *owned;
    const TrainArch& a = student->arch();
    std::fprintf(stderr,
                 "distill: student %s (%u layers x %u wide, %llu parameters), teacher %s, loss %s, T %g, %s, "
                 "ce-weight %g, on-policy %g%s\n",
                 a.name.c_str(), a.n_layer, a.n_embd, static_cast<unsigned long long>(student->n_params()),
                 c.teacher.empty() ? "(the student at start)" : c.teacher.c_str(), divergence_name(c.d.loss.divergence), double(c.d.loss.temperature),
                 c.d.loss.top_k ? strprintf("top-%u + rest", c.d.loss.top_k).c_str() : "full distribution",
                 double(c.d.loss.ce_weight), double(c.d.on_policy),
                 o.qat_type ? strprintf(", QAT %s", type_name(*o.qat_type)).c_str() : "");
    const TrainResult r = train(*student, o);
    const DistillStats& st = distiller.stats();
    std::printf("steps %lld, tokens %lld, final distillation loss %.4f", static_cast<long long>(r.curve.size()),
                static_cast<long long>(r.tokens_seen), double(r.final_loss));
    if (std::isfinite(r.final_val_loss))
        std::printf(", validation cross-entropy %.4f (ppl %.2f)", double(r.final_val_loss),
                    std::exp(double(r.final_val_loss)));
    std::printf(", %lld micro-batches (%lld on-policy), teacher %.1f s, sampling %.1f s\n",
                static_cast<long long>(st.n_batches), static_cast<long long>(st.n_on_policy), st.teacher_seconds,
                st.sample_seconds);
    if (!o.out.empty()) std::printf("model: %s\n", o.out.c_str());
}

} // namespace

void add_distill(CLI::App& app) {
    auto c = std::make_shared<DistillCli>();
    CLI::App* sub = app.add_subcommand(
        "distill", "Distill a teacher model into a student: forward KL, reverse KL (MiniLLM), generalized JSD (GKD) or "
                   "total variation on the teacher's token distributions, off- or on-policy");
    sub->footer(
        "The teacher is any GGUF slm runs (any architecture or quantized type) with the student's vocabulary. The "
        "student is a GGUF, a training config (JSON, as slm train's) or a preset, new students taking the teacher's "
        "tokenizer. Per position the loss is (1 - W) T^2 D(teacher || student) + W CE(label); with --top-k K the "
        "teacher keeps its K most likely tokens and a bucket for the rest. Training flags are slm train's.\n"
        "QAT self-distillation: slm distill --student model.gguf --qat Q4_0 --data TEXT -o model.q4_0.gguf\n"
        "Example: slm distill --teacher big.gguf --student tiny --data stories.txt --loss rkl --on-policy 0.5 "
        "--steps 500 -o small.gguf");
    sub->add_option("--teacher", c->teacher, "Teacher model GGUF (without it and with --qat: self-distillation)")
        ->check(CLI::ExistingFile);
    sub->add_option("--student", c->student, "Student: a model GGUF, a training config .json, or a preset name")
        ->required();
    sub->add_option("-o,--out", c->out, "Output model GGUF")->required();
    sub->add_option("--loss", c->loss, "fkl | rkl | jsd | tvd")->default_val("fkl");
    sub->add_option("--top-k", c->top_k, "Use the teacher's top K tokens plus a rest bucket (default: all tokens)");
    sub->add_option("--temperature", c->d.loss.temperature, "Softmax temperature of both distributions")
        ->default_val(1.0);
    sub->add_option("--ce-weight", c->d.loss.ce_weight, "Weight W of the hard-label cross-entropy, in [0, 1]")
        ->default_val(0.0);
    sub->add_option("--jsd-beta", c->d.loss.jsd_beta, "jsd: the teacher's share of the mixture, in (0, 1)")
        ->default_val(0.5);
    sub->add_option("--on-policy", c->d.on_policy,
                    "Fraction of micro-batches whose continuations the student samples (GKD); 0 = off")
        ->default_val(0.0);
    sub->add_option("--prompt-fraction", c->d.prompt_fraction,
                    "On-policy: the share of each sequence kept from the data as the prompt")
        ->default_val(0.5);
    sub->add_option("--sample-temp", c->d.sample_temperature, "On-policy: the student's sampling temperature")
        ->default_val(1.0);
    sub->add_option("--sample-top-k", c->d.sample_top_k, "On-policy: sample among the student's top K (0 = all)")
        ->default_val(0);
    sub->add_option("--qat", c->qat,
                    "Quantization-aware training of the student for this type (Q4_0, Q2_K, TQ2_0, ...), written in it; "
                    "without --teacher the student's full-precision start is the teacher (BitDistiller)");
    add_train_flags(*sub, c->train);
    sub->callback([c]() { run_distill(*c); });
}

} // namespace slm::cli
