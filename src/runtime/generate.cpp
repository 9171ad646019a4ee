// generate.cpp - prompt processing, sampling loop, UTF-8-safe streaming, stop strings.
#include "slm/generate.h"

#include "runtime/stop_filter.h"

#include "slm/error.h"
#include "slm/vocab.h"

#include <algorithm>
#include <chrono>
#include <sys/resource.h>

namespace slm {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

} // namespace

size_t peak_rss_bytes() {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return static_cast<size_t>(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

GenerateResult generate(Session& session, std::span<const int32_t> prompt, const GenerateParams& params,
                        const std::function<bool(std::string_view)>& on_text) {
    const Model& model = session.model();
    const Vocab& vocab = model.vocab();
    const int32_t n_vocab = static_cast<int32_t>(model.hparams().n_vocab);
    if (prompt.empty()) fail("generate: the prompt has no tokens (add BOS or some text)");

    GenerateResult res;
    Sampler sampler(params.sampling, n_vocab);
    for (int32_t t : prompt) sampler.accept(t);
    for (const auto& st : params.stop)
        if (st.empty()) fail("generate: an empty stop string would stop at once");
    StopFilter stop(params.stop);
    Utf8Stream utf8;
    bool cancelled = false;

    auto emit = [&](const std::string& s) {
        if (s.empty()) return;
        res.text += s;
        if (on_text && !on_text(s)) cancelled = true;
    };

    const uint32_t n_past_before = session.n_past();
    const auto t0 = Clock::now();
    const float* logits = session.eval(prompt);
    res.stats.n_prompt = static_cast<uint32_t>(prompt.size());
    res.stats.prompt_ms = ms_since(t0);
    if (params.n_predict > 0) res.tokens.reserve(static_cast<size_t>(params.n_predict));

    // SentencePiece's decoder drops the space prefix of the text's first word, and llama2.c's
    // generator does the same after BOS: when the prompt is only control tokens (e.g. BOS), the
    // first generated piece starts the text and loses its leading space. (llama.cpp's streaming
    // examples print that space.)
    bool strip_space = vocab.add_space_prefix() && n_past_before == 0;
    for (int32_t t : prompt) strip_space = strip_space && vocab.is_control(t);

    Clock::time_point t_first;
    res.stop_reason = "length";
    for (int32_t i = 0; params.n_predict < 0 || i < params.n_predict; ++i) {
        const int32_t tok = sampler.sample(logits);
        sampler.accept(tok);
        res.tokens.push_back(tok);
        if (i == 0) {
            t_first = Clock::now();
            res.stats.ttft_ms = ms_since(t0);
        }
        ++res.stats.n_gen;
        if (vocab.is_eog(tok) && !params.ignore_eos) {
            res.stop_reason = "eog";
            break;
        }
        std::string piece = vocab.token_to_piece(tok, false);
        if (strip_space && !piece.empty()) {
            if (piece[0] == ' ') piece.erase(0, 1);
            strip_space = false;
        }
        emit(stop.push(utf8.push(piece)));
        if (stop.hit()) {
            res.stop_reason = "stop";
            break;
        }
        if (cancelled) {
            res.stop_reason = "callback";
            break;
        }
        if (params.n_predict >= 0 && i + 1 == params.n_predict) break;
        if (session.n_past() >= session.n_ctx()) {
            // llama.cpp's context shift: discard half of what follows the kept tokens.
            const uint32_t n_keep = std::min(params.n_keep, session.n_past());
            const uint32_t n_discard = (session.n_past() - n_keep) / 2;
            if (!params.context_shift || n_discard == 0 || session.recurrent()) {
                res.stop_reason = "context";
                break;
            }
            session.context_shift(n_keep, n_discard);
            ++res.stats.n_shifts;
        }
        logits = session.eval(std::span<const int32_t>(&tok, 1));
    }
    if (!stop.hit()) emit(stop.push(utf8.flush()) + stop.flush());
    if (res.stats.n_gen > 0) res.stats.gen_ms = std::chrono::duration<double, std::milli>(Clock::now() - t_first).count();
    return res;
}

} // namespace slm
