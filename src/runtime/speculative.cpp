// speculative.cpp - speculative decoding with a draft model or prompt lookup (see slm/speculative.h).
#include "slm/speculative.h"

#include "runtime/speculative_impl.h"
#include "runtime/stop_filter.h"

#include "slm/bench.h"
#include "slm/error.h"
#include "slm/vocab.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace slm {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The text side of generation, as slm::generate does it: whole UTF-8 characters, the space a
// SentencePiece text loses at its start, stop strings held back until they can no longer match,
// end-of-generation, n_predict and the context limit. push() returns false once generation must end.
class TokenOutput {
public:
    TokenOutput(const Vocab& vocab, const GenerateParams& params, GenerateResult& res, bool strip_space,
                const std::function<bool(std::string_view)>& on_text)
        : vocab_(vocab), params_(params), res_(res), strip_space_(strip_space), on_text_(on_text), stop_(params.stop) {
        for (const auto& s : params_.stop)
            if (s.empty()) fail("generate: an empty stop string would stop at once");
    }

    // `tok` was chosen at cache position `pos`; `n_ctx` is the target's context.
    bool push(int32_t tok, uint32_t pos, uint32_t n_ctx) {
        res_.tokens.push_back(tok);
        ++res_.stats.n_gen;
        if (vocab_.is_eog(tok) && !params_.ignore_eos) {
            res_.stop_reason = "eog";
            return false;
        }
        std::string piece = vocab_.token_to_piece(tok, false);
        if (strip_space_ && !piece.empty()) {
            if (piece[0] == ' ') piece.erase(0, 1);
            strip_space_ = false;
        }
        emit(stop_.push(utf8_.push(piece)));
        if (stop_.hit()) {
            res_.stop_reason = "stop";
            return false;
        }
        if (cancelled_) {
            res_.stop_reason = "callback";
            return false;
        }
        if (params_.n_predict >= 0 && res_.stats.n_gen >= static_cast<uint32_t>(params_.n_predict)) return false;
        if (pos >= n_ctx) {
            res_.stop_reason = "context";
            return false;
        }
        return true;
    }

    void finish() {
        if (stop_.hit()) return;
        std::string rest = stop_.push(utf8_.flush());
        rest += stop_.flush();
        emit(rest);
    }

private:
    const Vocab& vocab_;
    const GenerateParams& params_;
    GenerateResult& res_;
    bool strip_space_;
    const std::function<bool(std::string_view)>& on_text_;
    Utf8Stream utf8_;
    StopFilter stop_;
    bool cancelled_ = false;

    void emit(const std::string& s) {
        if (s.empty()) return;
        res_.text += s;
        if (on_text_ && !on_text_(s)) cancelled_ = true;
    }
};

} // namespace

void validate_speculative_params(const SpeculativeParams& p) {
    if (p.draft_max < 1 || p.draft_max > 1024) fail("speculative: draft_max = %d must be in [1, 1024]", p.draft_max);
    if (!(p.draft_p_min >= 0 && p.draft_p_min <= 1)) fail("speculative: draft_p_min = %g must be in [0, 1]", p.draft_p_min);
    if (!(p.draft_temp <= 100)) fail("speculative: draft_temp = %g must be at most 100", p.draft_temp);
    if (p.ngram_min < 1 || p.ngram_max < p.ngram_min || p.ngram_max > 64)
        fail("speculative: n-gram sizes [%d, %d] must satisfy 1 <= min <= max <= 64", p.ngram_min, p.ngram_max);
}

void check_draft_vocab(const Model& target, const Model& draft) {
    const Vocab& a = target.vocab();
    const Vocab& b = draft.vocab();
    const char* ta = target.file().path().c_str();
    const char* tb = draft.file().path().c_str();
    if (a.n_tokens() != b.n_tokens() || target.hparams().n_vocab != draft.hparams().n_vocab)
        fail("speculative: the draft model %s has %d tokens but the target %s has %d: they need the same vocabulary", tb,
             b.n_tokens(), ta, a.n_tokens());
    for (int32_t i = 0; i < a.n_tokens(); ++i)
        if (a.token_text(i) != b.token_text(i))
            fail("speculative: token %d is '%s' in the target %s but '%s' in the draft model %s: they need the same "
                 "vocabulary", i, a.token_text(i).c_str(), ta, b.token_text(i).c_str(), tb);
}

SpeculativeResult generate_speculative(Session& target, Session* draft, std::span<const int32_t> prompt,
                                       const GenerateParams& params, const SpeculativeParams& spec,
                                       const std::function<bool(std::string_view)>& on_text) {
    validate_speculative_params(spec);
    const Model& model = target.model();
    const Vocab& vocab = model.vocab();
    const int32_t n_vocab = static_cast<int32_t>(model.hparams().n_vocab);
    if (prompt.empty()) fail("generate: the prompt has no tokens (add BOS or some text)");
    if (target.recurrent())
        fail("speculative: the target model (%s) keeps a recurrent state and cannot take back rejected tokens",
             model.hparams().arch.c_str());
    if (spec.lookup && draft != nullptr) fail("speculative: give either a draft model or lookup, not both");
    if (!spec.lookup && draft == nullptr) fail("speculative: no draft model session and lookup is off");
    if (draft != nullptr) {
        check_draft_vocab(model, draft->model());
        if (draft->recurrent())
            fail("speculative: the draft model (%s) keeps a recurrent state and cannot take back rejected tokens",
                 draft->model().hparams().arch.c_str());
        if (draft->n_past() != target.n_past())
            fail("speculative: the draft session holds %u positions but the target %u", draft->n_past(), target.n_past());
        if (draft->n_ctx() < target.n_ctx())
            fail("speculative: the draft context (%u) is shorter than the target's (%u)", draft->n_ctx(), target.n_ctx());
    }

    SpeculativeResult out;
    GenerateResult& res = out.gen;
    SpeculativeStats& st = out.spec;
    const bool greedy = params.sampling.temp <= 0;

    Sampler tsamp(params.sampling, n_vocab);
    for (int32_t t : prompt) tsamp.accept(t);
    Sampler dsamp(spec::draft_sampler_params(params.sampling, spec), n_vocab);
    spec::Verifier verifier(params.sampling.seed, n_vocab);

    const uint32_t n_past0 = target.n_past();
    const uint32_t n_ctx = target.n_ctx();
    bool strip_space = vocab.add_space_prefix() && n_past0 == 0;
    for (int32_t t : prompt) strip_space = strip_space && vocab.is_control(t);
    TokenOutput output(vocab, params, res, strip_space, on_text);
    res.stop_reason = "length";

    std::vector<int32_t> hist(prompt.begin(), prompt.end());  // prompt + generated (lookup, draft sync)
    std::vector<int32_t> dcache;                               // what the draft session holds past n_past0

    const auto t0 = Clock::now();
    const float* logits = target.eval(prompt);
    res.stats.n_prompt = static_cast<uint32_t>(prompt.size());
    res.stats.prompt_ms = ms_since(t0);
    if (params.n_predict == 0) return out;

    int32_t tok = tsamp.sample(logits);
    tsamp.accept(tok);
    hist.push_back(tok);
    res.stats.ttft_ms = ms_since(t0);
    const auto t_first = Clock::now();
    bool going = output.push(tok, target.n_past(), n_ctx);

    std::vector<int32_t> drafts, batch;
    std::vector<std::vector<TokenProb>> dq;  // per drafted token: the drafter's distribution (sampling)
    size_t k_cur = static_cast<size_t>(spec.draft_max);  // the draft length for the next pass
    while (going) {
        // tok is the newest token, chosen but not yet evaluated by the target (position n_past).
        const uint32_t pos = target.n_past();
        size_t k = std::min<size_t>(k_cur, n_ctx - 1 - pos);
        if (params.n_predict >= 0) k = std::min<size_t>(k, size_t(params.n_predict) - res.stats.n_gen - 1);

        drafts.clear();
        dq.clear();
        if (k > 0 && spec.lookup) {
            drafts = spec::lookup_draft(hist, spec, k);
        } else if (k > 0) {
            // Bring the draft session to the history: keep the common prefix, evaluate the rest.
            size_t common = 0;
            while (common < dcache.size() && common < hist.size() && dcache[common] == hist[common]) ++common;
            if (common == hist.size()) --common;  // its logits are needed again
            draft->truncate(n_past0 + static_cast<uint32_t>(common));
            dcache.resize(common);
            const float* dl = draft->eval(std::span<const int32_t>(hist.data() + common, hist.size() - common));
            dcache.insert(dcache.end(), hist.begin() + common, hist.end());
            ++st.n_draft_passes;
            for (size_t j = 0; j < k; ++j) {
                const int32_t d = spec::draft_token(dsamp, dl, spec, greedy ? nullptr : &dq);
                if (d < 0) break;
                drafts.push_back(d);
                if (j + 1 == k) break;
                dl = draft->eval(std::span<const int32_t>(&d, 1));
                dcache.push_back(d);
                ++st.n_draft_passes;
            }
        }

        // Verify: tok and the drafts in one pass, one row of logits each.
        batch.assign(1, tok);
        batch.insert(batch.end(), drafts.begin(), drafts.end());
        target.eval(batch, true);
        ++st.n_target_passes;
        st.n_drafted += drafts.size();
        const float* rows = target.logits().data();

        const spec::Verdict v = verifier.verify(tsamp, rows, drafts, dq);
        const int32_t next = v.next;
        size_t n_acc = 0;
        for (; n_acc < v.n_accepted && going; ++n_acc) {
            ++st.n_accepted;
            hist.push_back(drafts[n_acc]);
            going = output.push(drafts[n_acc], pos + 1 + static_cast<uint32_t>(n_acc), n_ctx);
        }
        // The cache keeps tok and the kept drafts; the rejected tail goes. If output ended on a
        // kept draft, that one goes too: as after slm::generate, the last token is not evaluated.
        target.truncate(pos + 1 + static_cast<uint32_t>(n_acc) - (going ? 0 : 1));
        if (!going) break;
        // Adaptive length: after a rejection draft one more than was kept, after a full accept
        // twice as many (up to draft_max), so a drafter that is often wrong costs short passes.
        if (spec.adaptive && !drafts.empty())
            k_cur = n_acc < drafts.size() ? n_acc + 1 : std::min<size_t>(spec.draft_max, 2 * k_cur);
        tsamp.accept(next);
        hist.push_back(next);
        tok = next;
        going = output.push(tok, target.n_past(), n_ctx);
    }
    output.finish();
    res.stats.gen_ms = ms_since(t_first);
    return out;
}

SpeculativeBenchResult bench_speculative(const std::shared_ptr<const Model>& target,
                                         const std::shared_ptr<const Model>& draft, std::span<const int32_t> prompt,
                                         const GenerateParams& params, const SpeculativeParams& spec,
                                         const SessionOptions& so, int reps) {
    if (reps < 1) fail("speculative bench: reps = %d must be at least 1", reps);
    std::vector<double> plain, fast;
    uint64_t drafted = 0, accepted = 0, passes = 0, gen = 0;
    bool same = true;
    for (int r = 0; r <= reps; ++r) {  // r == 0: warm-up
        Session ts(target, so);
        const GenerateResult a = generate(ts, prompt, params);
        Session ts2(target, so);
        std::unique_ptr<Session> ds;
        if (draft) ds = std::make_unique<Session>(draft, so);
        const SpeculativeResult b = generate_speculative(ts2, ds.get(), prompt, params, spec);
        if (params.sampling.temp <= 0 && a.tokens != b.gen.tokens) same = false;
        if (r == 0) continue;
        plain.push_back(a.stats.gen_tps());
        fast.push_back(b.gen.stats.gen_tps());
        drafted += b.spec.n_drafted;
        accepted += b.spec.n_accepted;
        passes += b.spec.n_target_passes + 1;
        gen += b.gen.stats.n_gen;
    }
    SpeculativeBenchResult out;
    const BenchStat p = bench_stat(plain), f = bench_stat(fast);
    out.plain_tps = p.mean, out.plain_tps_sd = p.sd;
    out.spec_tps = f.mean, out.spec_tps_sd = f.sd;
    out.acceptance = drafted ? double(accepted) / double(drafted) : 0;
    out.tokens_per_pass = passes ? double(gen) / double(passes) : 0;
    out.same_output = same;
    return out;
}

} // namespace slm
