// perplexity.cpp - chunked perplexity as llama.cpp's llama-perplexity computes it, Hugging Face's
// strided (sliding-window) perplexity, bits per byte, and the base log-probability file that
// kl_divergence reads (see slm/perplexity.h for what each mode scores).
#include "slm/perplexity.h"

#include "core/thread_pool.h"
#include "formats/logits_file.h"
#include "slm/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

namespace slm {

namespace {

constexpr uint32_t MAX_CTX = 1u << 20;  // far beyond any model here; keeps n_ctx * n_vocab sane

// -log p(tok) from one row of logits: float max subtraction, double sum of exponentials, as
// llama-perplexity, so the printed figures agree to the last digit it prints.
double token_nll(const float* logits, int32_t n_vocab, int32_t tok) {
    float max_logit = logits[0];
    for (int32_t i = 1; i < n_vocab; ++i) max_logit = std::max(max_logit, logits[i]);
    double sum_exp = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum_exp += std::exp(logits[i] - max_logit);
    return -((logits[tok] - max_logit) - std::log(sum_exp));
}

void check_params(const PerplexityParams& p) {
    if (p.n_ctx < 3 || p.n_ctx > MAX_CTX)
        fail("perplexity: field 'n_ctx' (-c) is %u, not in [3, %u]: a chunk must score at least one token", p.n_ctx,
             MAX_CTX);
    if (p.stride > p.n_ctx)
        fail("perplexity: field 'stride' (--stride) is %u, larger than the window n_ctx (-c) %u: tokens between "
             "windows would never be scored", p.stride, p.n_ctx);
    if (p.n_batch < 1) fail("perplexity: field 'n_batch' (-b) is 0");
    if (p.n_chunks == 0 || p.n_chunks < -1) fail("perplexity: field 'n_chunks' (--chunks) is %d: give -1 (all) or more than 0", p.n_chunks);
    if (!p.save_logits.empty() && p.stride > 0)
        fail("perplexity: --save-logits stores llama.cpp's chunked layout; it cannot be combined with --stride");
}

struct Accum {
    double nll = 0, nll2 = 0;
    size_t count = 0, bytes = 0;
};

} // namespace

PerplexityResult perplexity(std::shared_ptr<const Model> model, std::string_view text, const PerplexityParams& params,
                            const PerplexityProgress& progress) {
    check_params(params);
    const auto t0 = std::chrono::steady_clock::now();
    const Vocab& vocab = model->vocab();
    const int32_t n_vocab = static_cast<int32_t>(model->hparams().n_vocab);
    const uint32_t n_ctx = params.n_ctx;
    const std::vector<int32_t> tokens = vocab.tokenize(text, true, false);
    const size_t n_tok = tokens.size();

    // Chunks (llama.cpp) or windows (HF): [begin, begin + len) evaluated, [score_from, end) scored.
    struct Span {
        size_t begin, len, score_from;
    };
    std::vector<Span> spans;
    if (params.stride == 0) {
        if (n_tok < 2 * static_cast<size_t>(n_ctx))
            fail("perplexity: the text tokenizes to %zu tokens; -c %u needs at least %zu (2 x c, as llama-perplexity): "
                 "give a longer text or a smaller -c", n_tok, n_ctx, 2 * static_cast<size_t>(n_ctx));
        const size_t n_max = n_tok / n_ctx;
        for (size_t i = 0; i < n_max; ++i) spans.push_back({i * n_ctx, n_ctx, i * n_ctx + n_ctx / 2 + 1});
    } else {
        if (n_tok < 2) fail("perplexity: the text tokenizes to %zu tokens; at least 2 are needed", n_tok);
        size_t prev_end = 0;
        for (size_t begin = 0;; begin += params.stride) {
            const size_t end = std::min(begin + n_ctx, n_tok);
            spans.push_back({begin, end - begin, std::max(prev_end, begin + 1)});
            prev_end = end;
            if (end == n_tok) break;
        }
    }
    if (params.n_chunks > 0 && static_cast<size_t>(params.n_chunks) < spans.size()) spans.resize(params.n_chunks);
    const int n_chunk = static_cast<int>(spans.size());

    SessionOptions so;
    so.n_ctx = n_ctx;
    so.n_batch = std::min(params.n_batch, n_ctx);
    so.kv_type = params.kv_type;
    so.n_threads = params.n_threads;
    Session session(model, so);
    ThreadPool pool(session.n_threads());

    // Bytes of each token's text, for bits per byte (control tokens such as BOS have none).
    std::vector<uint32_t> piece_bytes(static_cast<size_t>(n_vocab));
    for (int32_t id = 0; id < n_vocab && id < vocab.n_tokens(); ++id)
        piece_bytes[id] = static_cast<uint32_t>(vocab.token_to_piece(id, false).size());

    std::optional<LogitsFileWriter> writer;
    const size_t row_u16 = logits_row_u16(n_vocab);
    std::vector<uint16_t> qrows;
    if (!params.save_logits.empty()) {
        writer.emplace(params.save_logits, n_ctx, n_vocab, n_chunk,
                       std::span<const int32_t>(tokens.data(), static_cast<size_t>(n_chunk) * n_ctx));
        qrows.resize(logits_rows_per_chunk(n_ctx) * row_u16);
    }

    PerplexityResult res;
    res.n_text_tokens = n_tok;
    res.n_ctx = n_ctx;
    res.stride = params.stride;
    res.n_chunk = n_chunk;
    Accum acc;
    std::vector<int32_t> input;
    std::vector<double> nll(n_ctx);
    for (int c = 0; c < n_chunk; ++c) {
        const Span& sp = spans[c];
        input.assign(tokens.begin() + sp.begin, tokens.begin() + sp.begin + sp.len);
        // llama-perplexity starts every chunk with BOS (over the text's own token) so each is
        // scored like the start of a document; the HF loop feeds windows as they are.
        if (params.stride == 0 && vocab.add_bos() && vocab.bos() != TOKEN_NULL) input[0] = vocab.bos();
        session.reset();
        session.eval(input, true);
        const float* logits = session.logits().data();
        // Position j's logits predict token j + 1 of the span.
        const size_t j0 = sp.score_from - sp.begin - 1, j1 = sp.len - 1;
        const size_t n = j1 - j0;
        pool.parallel_for(static_cast<int64_t>(n), [&](int64_t b, int64_t e, int) {
            for (int64_t k = b; k < e; ++k) {
                const size_t j = j0 + static_cast<size_t>(k);
                const float* row = logits + j * static_cast<size_t>(n_vocab);
                nll[k] = token_nll(row, n_vocab, tokens[sp.begin + j + 1]);
                if (writer) quantize_log_probs(row, n_vocab, qrows.data() + k * row_u16, tokens[sp.begin + j + 1]);
            }
        });
        if (writer) writer->write_rows(qrows.data(), n);

        // Summed in token order whatever the thread count, so results are reproducible.
        PerplexityChunk ch;
        ch.index = c;
        ch.n_scored = n;
        for (size_t k = 0; k < n; ++k) {
            ch.nll_sum += nll[k];
            acc.nll2 += nll[k] * nll[k];
            ch.n_bytes += piece_bytes[tokens[sp.begin + j0 + k + 1]];
        }
        acc.nll += ch.nll_sum;
        acc.count += n;
        acc.bytes += ch.n_bytes;
        ch.ppl = n ? std::exp(ch.nll_sum / n) : 0;
        ch.ppl_running = std::exp(acc.nll / acc.count);
        res.chunks.push_back(ch);
        if (progress) progress(ch, n_chunk);
    }
    if (writer) writer->finish();

    res.n_scored = acc.count;
    res.n_bytes = acc.bytes;
    res.nll = acc.nll / acc.count;
    const double var = acc.nll2 / acc.count - res.nll * res.nll;
    res.nll_se = var > 0 && acc.count > 1 ? std::sqrt(var / (acc.count - 1)) : 0;
    res.ppl = std::exp(res.nll);
    res.ppl_se = res.ppl * res.nll_se;
    if (acc.bytes > 0) {
        const double per_byte = static_cast<double>(acc.count) / (std::log(2.0) * acc.bytes);
        res.bpb = res.nll * per_byte;
        res.bpb_se = res.nll_se * per_byte;
    }
    res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return res;
}

} // namespace slm
