// slm quantize / slm calibrate: llama-quantize and llama-imatrix (see slm/quantize.h).
#include "commands.h"
#include "progress.h"

#include "slm/error.h"
#include "slm/quantize.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>

namespace slm::cli {

namespace {

struct QuantizeOptions {
    std::vector<std::string> positional;  // IN OUT TYPE [N_THREADS]
    std::string output_type, embd_type, imatrix, text, tokens, method = "rtn";
    std::vector<std::string> tensor_types, include, exclude;
    bool pure = false, leave_output = false, allow_requantize = false, act_order = false, no_awq_clip = false;
    float damp = 0.01f;
    int awq_grid = 20;
    uint32_t samples = 32, ctx = 128;
    int threads = 0;
};

GGMLType parse_ggml_type(const std::string& s, const char* flag) {
    GGMLType t;
    if (!type_from_name(s, &t)) fail("%s: unknown tensor type '%s'", flag, s.c_str());
    return t;
}

double mib(uint64_t b) { return static_cast<double>(b) / 1024.0 / 1024.0; }

void run_quantize(const QuantizeOptions& o) {
    const auto& a = o.positional;
    if (a.size() < 3 || a.size() > 4)
        fail("quantize: %zu arguments; usage: slm quantize [options] IN.gguf OUT.gguf TYPE [N_THREADS]", a.size());
    QuantizeParams p;
    p.type = a[2];
    p.n_threads = o.threads;
    if (a.size() == 4) {
        try {
            p.n_threads = std::stoi(a[3]);
        } catch (...) {
            fail("quantize: N_THREADS '%s' is not a number", a[3].c_str());
        }
    }
    p.pure = o.pure;
    p.leave_output = o.leave_output;
    p.allow_requantize = o.allow_requantize;
    if (!o.output_type.empty()) p.output_type = parse_ggml_type(o.output_type, "--output-tensor-type");
    if (!o.embd_type.empty()) p.embd_type = parse_ggml_type(o.embd_type, "--token-embedding-type");
    for (const std::string& tt : o.tensor_types) {
        const size_t eq = tt.find('=');
        if (eq == std::string::npos) fail("--tensor-type '%s': expected PATTERN=TYPE", tt.c_str());
        if (eq == 0) fail("--tensor-type '%s': missing tensor name", tt.c_str());
        if (eq + 1 == tt.size()) fail("--tensor-type '%s': missing type", tt.c_str());
        p.tensor_types.emplace_back(tt.substr(0, eq), parse_ggml_type(tt.substr(eq + 1), "--tensor-type"));
    }
    p.imatrix_file = o.imatrix;
    p.include_weights = o.include;
    p.exclude_weights = o.exclude;
    p.method = o.method;
    p.calib_text = o.text;
    p.calib_tokens = o.tokens;
    p.calib_samples = o.samples;
    p.calib_ctx = o.ctx;
    p.gptq_damp = o.damp;
    p.act_order = o.act_order;
    p.awq_grid = o.awq_grid;
    p.awq_clip = !o.no_awq_clip;

    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<ProgressBar> pb;
    std::unique_ptr<ProgressBar> calib_pb;
    p.on_calibration = [&](size_t done, size_t total) {
        if (!calib_pb) calib_pb = std::make_unique<ProgressBar>("calibration samples", total);
        calib_pb->update(done);
        if (done == total) calib_pb->finish();
    };
    const QuantizeResult r = quantize_model(
        a[0], a[1], p,
        [&](size_t i, size_t n, const QuantizedTensor& t) {
            if (!pb) pb = std::make_unique<ProgressBar>("tensors", n);
            pb->finish();
            std::string shape;
            for (size_t d = 0; d < t.shape.size(); ++d) shape += (d ? ", " : "") + std::to_string(t.shape[d]);
            if (t.from == t.to)
                std::fprintf(stderr, "[%4zu/%4zu] %-36s - [%s], type = %6s, size = %8.3f MiB\n", i, n, t.name.c_str(),
                             shape.c_str(), type_name(t.from), mib(t.bytes_in));
            else
                std::fprintf(stderr, "[%4zu/%4zu] %-36s - [%s], type = %6s, converting to %s%s .. size = %8.2f MiB -> %8.2f MiB\n",
                             i, n, t.name.c_str(), shape.c_str(), type_name(t.from), type_name(t.to),
                             t.imatrix ? " (imatrix)" : "", mib(t.bytes_in), mib(t.bytes_out));
            pb->update(i);
        },
        [&](const std::string& w) {
            if (pb) pb->finish();
            std::fprintf(stderr, "warning: %s\n", w.c_str());
        });
    if (pb) pb->finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double n = static_cast<double>(r.n_elements ? r.n_elements : 1);
    std::fprintf(stderr, "model size  = %8.2f MiB (%.2f BPW)\n", mib(r.bytes_in), r.bytes_in * 8.0 / n);
    std::fprintf(stderr, "quant size  = %8.2f MiB (%.2f BPW)\n", mib(r.bytes_out), r.bytes_out * 8.0 / n);
    std::printf("%s: %zu tensors, %.2f MiB -> %.2f MiB, file type %u, %.2f s\n", a[1].c_str(), r.tensors.size(),
                mib(r.bytes_in), mib(r.bytes_out), r.ftype, secs);
}

} // namespace

void add_quantize(CLI::App& app) {
    auto o = std::make_shared<QuantizeOptions>();
    CLI::App* sub = app.add_subcommand("quantize", "Quantize a GGUF model as llama-quantize does (mixes, imatrix, overrides)");
    sub->add_option("args", o->positional, "IN.gguf OUT.gguf TYPE [N_THREADS]; TYPE: F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 "
                                           "Q8_0 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL "
                                           "IQ4_XS TQ1_0 TQ2_0 (aliases Q3_K Q4_K Q5_K)")
        ->required();
    sub->add_flag("--pure", o->pure, "No k-quant mixture: every quantized tensor gets TYPE's tensor type");
    sub->add_flag("--leave-output-tensor", o->leave_output, "Leave output.weight un(re)quantized");
    sub->add_flag("--allow-requantize", o->allow_requantize, "Allow quantized inputs (dequantized first)");
    sub->add_option("--output-tensor-type", o->output_type, "Tensor type of output.weight");
    sub->add_option("--token-embedding-type", o->embd_type, "Tensor type of token_embd.weight");
    sub->add_option("--tensor-type", o->tensor_types,
                    "PATTERN=TYPE: tensors whose name matches the regular expression get TYPE (repeatable, "
                    "first match wins), e.g. ffn_down=f16")
        ->expected(1)
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    sub->add_option("--imatrix", o->imatrix, "Importance matrix (llama.cpp GGUF or legacy .dat) weighting the rounding");
    sub->add_option("--include-weights", o->include, "Use the imatrix only for tensors whose name contains this")
        ->expected(1)
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    sub->add_option("--exclude-weights", o->exclude, "Do not use the imatrix for tensors whose name contains this")
        ->expected(1)
        ->allow_extra_args(false)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    sub->add_option("--method", o->method, "rtn (round to nearest), gptq or awq (calibrated)")->default_val("rtn");
    sub->add_option("-f,--file", o->text, "Calibration text for --method gptq/awq");
    sub->add_option("--calib-tokens", o->tokens, "Calibration token ids instead of -f");
    sub->add_option("--calib-samples", o->samples, "Calibration samples")->default_val(32);
    sub->add_option("--calib-ctx", o->ctx, "Tokens per calibration sample")->default_val(128);
    sub->add_option("--damp", o->damp, "GPTQ: damping, this share of mean(diag(X^T X)) added to the diagonal")
        ->default_val(0.01f);
    sub->add_flag("--act-order", o->act_order, "GPTQ: columns by decreasing diag(X^T X), block grids fixed first");
    sub->add_option("--awq-grid", o->awq_grid, "AWQ: alpha candidates searched per scaled input")->default_val(20);
    sub->add_flag("--no-awq-clip", o->no_awq_clip, "AWQ: skip the clipping-range search (keeps the function exact)");
    sub->add_option("-t,--threads", o->threads, "Threads (default: all cores; also the optional 4th argument)");
    sub->callback([o] { run_quantize(*o); });
}

namespace {

struct CalibrateOptions {
    std::string model, text, tokens, output;
    uint32_t samples = 32, ctx = 128;
    int threads = 0;
};

void run_calibrate(const CalibrateOptions& o) {
    CalibrateParams p;
    p.model = o.model.empty() ? default_model() : o.model;
    p.text_file = o.text;
    p.token_file = o.tokens;
    p.n_samples = o.samples;
    p.n_ctx = o.ctx;
    p.n_threads = o.threads;
    p.output = o.output;
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<ProgressBar> pb;
    const CalibrateResult r = calibrate_imatrix(p, [&](size_t done, size_t total) {
        if (!pb) pb = std::make_unique<ProgressBar>("chunks", total);
        pb->update(done);
    });
    if (pb) pb->finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %zu entries from %u chunks (%llu tokens), %.2f s\n", o.output.c_str(), r.n_entries, r.n_chunks,
                static_cast<unsigned long long>(r.n_tokens), secs);
}

} // namespace

void add_calibrate(CLI::App& app) {
    auto o = std::make_shared<CalibrateOptions>();
    CLI::App* sub = app.add_subcommand("calibrate", "Compute an importance matrix (llama-imatrix's GGUF) from calibration text");
    sub->add_option("-m,--model", o->model, "Model (default: $SLM_MODEL, else the bundled stories260K)");
    sub->add_option("-f,--file", o->text, "Calibration text");
    sub->add_option("--calib-tokens", o->tokens, "Calibration token ids instead of -f");
    sub->add_option("-o,--output", o->output, "Output imatrix (.gguf)")->required();
    sub->add_option("--calib-samples", o->samples, "Samples (chunks) of --calib-ctx tokens")->default_val(32);
    sub->add_option("--calib-ctx", o->ctx, "Tokens per sample")->default_val(128);
    sub->add_option("-t,--threads", o->threads, "Threads (default: one per physical core)");
    sub->callback([o] { run_calibrate(*o); });
}

} // namespace slm::cli
