// eval/passkey.cpp - long-context retrieval; see include/slm/passkey.h.
#include "slm/passkey.h"

#include "slm/error.h"
#include "slm/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <span>

namespace slm {

namespace {

// The prompt's fixed parts, short so that small models' contexts hold some filler. The filler
// cycles through plain sentences, one per line, so that nothing but the key line stands out and
// the length grows a sentence at a time.
constexpr const char* kInstruction = "There is a pass key hidden in the text below. Remember it.\n\n";
constexpr const char* kFiller[] = {
    "The river flows past the old mill.\n",
    "A soft wind moves the tall trees.\n",
    "The road winds through quiet fields.\n",
    "Clouds drift slowly over the hills.\n",
};
constexpr size_t kNFiller = sizeof kFiller / sizeof kFiller[0];
constexpr const char* kQuestion = "\nWhat is the pass key? The pass key is";

std::string key_line(const std::string& key) { return "The pass key is " + key + ". Remember " + key + ".\n"; }

uint32_t n_before_of(double depth, uint32_t n_filler) {
    return static_cast<uint32_t>(std::lround(depth * n_filler));
}

PasskeyPrompt assemble(const Vocab& vocab, double depth, const std::string& key, uint32_t n_filler) {
    PasskeyPrompt p;
    p.key = key;
    p.n_filler = n_filler;
    p.n_filler_before = n_before_of(depth, n_filler);
    p.text = kInstruction;
    for (uint32_t i = 0; i < p.n_filler_before; ++i) p.text += kFiller[i % kNFiller];
    p.key_offset = p.text.size();
    p.text += key_line(key);
    for (uint32_t i = p.n_filler_before; i < n_filler; ++i) p.text += kFiller[i % kNFiller];
    p.text += kQuestion;
    p.tokens = vocab.tokenize(p.text, /*add_special=*/true, /*parse_special=*/false);
    return p;
}

// SplitMix64's finalizer: a well-mixed 64-bit function of its input.
uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

std::string depth_text(double d) { return strprintf("%g", d); }

} // namespace

PasskeyPrompt build_passkey_prompt(const Vocab& vocab, uint32_t target_tokens, double depth, const std::string& key) {
    if (!(depth >= 0 && depth <= 1)) fail("passkey: depth %g outside [0, 1]", depth);
    if (key.size() != 5 || !std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; }))
        fail("passkey: key '%s' is not five digits", key.c_str());
    PasskeyPrompt p0 = assemble(vocab, depth, key, 0);
    if (p0.tokens.size() > target_tokens) {
        fail("passkey: length %u is too short: the instruction, key line and question alone take %zu tokens",
             target_tokens, p0.tokens.size());
    }
    // The largest filler count that fits, by bisection (a few tokenizations even for long
    // contexts), starting from an estimate of one cycle of sentences' tokens.
    const PasskeyPrompt pc = assemble(vocab, depth, key, uint32_t(kNFiller));
    const double per_sentence =
        std::max(1.0, double(pc.tokens.size()) - double(p0.tokens.size())) / double(kNFiller);
    uint32_t lo = 0;  // fits
    PasskeyPrompt best = std::move(p0);
    uint64_t hi = 0;  // does not fit (0: not found yet)
    uint64_t n = static_cast<uint64_t>((target_tokens - best.tokens.size()) / per_sentence);
    while (hi == 0 || hi - lo > 1) {
        n = std::clamp<uint64_t>(n, uint64_t(lo) + 1, hi ? hi - 1 : uint64_t(target_tokens));
        PasskeyPrompt p = assemble(vocab, depth, key, static_cast<uint32_t>(n));
        if (p.tokens.size() <= target_tokens) {
            lo = static_cast<uint32_t>(n);
            best = std::move(p);
            if (hi == 0) n = uint64_t(lo) + 1 + uint64_t((target_tokens - best.tokens.size()) / per_sentence);
        } else {
            hi = n;
        }
        if (hi != 0) n = lo + (hi - lo) / 2;
        if (hi == 0 && lo >= target_tokens) break;  // cannot happen: every sentence takes a token
    }
    return best;
}

std::string passkey_key(uint64_t seed, uint32_t length, double depth, int trial) {
    uint64_t h = mix(seed);
    h = mix(h ^ length);
    h = mix(h ^ static_cast<uint64_t>(std::llround(depth * 1e6)));
    h = mix(h ^ static_cast<uint64_t>(static_cast<uint32_t>(trial)));
    return std::to_string(10000 + h % 90000);
}

bool passkey_found(std::string_view answer, std::string_view key) {
    for (size_t i = 0; i < answer.size();) {
        if (answer[i] < '0' || answer[i] > '9') {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < answer.size() && answer[j] >= '0' && answer[j] <= '9') ++j;
        if (answer.substr(i, j - i) == key) return true;
        i = j;
    }
    return false;
}

double PasskeyCell::stderr_acc() const {
    if (n <= 0) return 0;
    const double p = accuracy();
    return std::sqrt(p * (1 - p) / n);
}

PasskeyResult run_passkey(Session& session, const PasskeyParams& params,
                          const std::function<void(size_t, size_t)>& on_trial) {
    if (params.lengths.empty()) fail("passkey: no lengths given");
    if (params.depths.empty()) fail("passkey: no depths given");
    if (params.n_trials < 1) fail("passkey: trials = %d, expected at least 1", params.n_trials);
    if (params.n_predict < 1) fail("passkey: n_predict = %d, expected at least 1", params.n_predict);
    for (double d : params.depths)
        if (!(d >= 0 && d <= 1)) fail("passkey: depth %g outside [0, 1]", d);
    const uint32_t n_ctx = session.n_ctx();
    for (uint32_t len : params.lengths) {
        if (len > n_ctx) {
            fail("passkey: length %u exceeds the context of %u tokens (use shorter lengths, or a larger context if "
                 "the model supports it)", len, n_ctx);
        }
        if (len <= uint32_t(params.n_predict))
            fail("passkey: length %u leaves no room for a prompt before the %d answer tokens", len, params.n_predict);
    }

    const auto t0 = std::chrono::steady_clock::now();
    PasskeyResult r;
    r.n_ctx = n_ctx;
    size_t total = params.lengths.size() * params.depths.size() * static_cast<size_t>(params.n_trials);
    if (params.limit > 0) total = std::min(total, params.limit);

    GenerateParams gp;
    gp.n_predict = params.n_predict;
    gp.sampling.temp = 0;  // greedy
    gp.stop = {"\n"};

    std::vector<int32_t> cached;  // the prompt tokens at the start of the KV cache
    session.reset();
    size_t done = 0;
    for (uint32_t len : params.lengths) {
        for (double depth : params.depths) {
            PasskeyCell cell;
            cell.length = len;
            cell.depth = depth;
            for (int t = 0; t < params.n_trials && done < total; ++t) {
                PasskeyTrial tr;
                tr.length = len;
                tr.depth = depth;
                tr.trial = t;
                tr.key = passkey_key(params.seed, len, depth, t);
                const PasskeyPrompt p = build_passkey_prompt(session.model().vocab(), len - params.n_predict, depth, tr.key);

                // Keep the longest prefix this prompt shares with the previous one (the filler
                // before the key, for trials of one cell); at least one token is evaluated anew,
                // for the logits that start the answer.
                size_t common = 0;
                const size_t lim = std::min({cached.size(), p.tokens.size() - 1, size_t(session.n_past())});
                while (common < lim && cached[common] == p.tokens[common]) ++common;
                if (!session.can_truncate(static_cast<uint32_t>(common))) common = 0;  // cannot go back there
                if (common == 0) session.reset();
                else session.truncate(static_cast<uint32_t>(common));

                const GenerateResult g = generate(session, std::span<const int32_t>(p.tokens).subspan(common), gp);
                cached = p.tokens;
                tr.n_prompt = static_cast<uint32_t>(p.tokens.size());
                tr.n_reused = static_cast<uint32_t>(common);
                tr.answer = g.text;
                tr.found = passkey_found(g.text, tr.key);
                r.n_prompt_tokens += p.tokens.size();
                r.n_eval_tokens += p.tokens.size() - common;
                ++cell.n;
                cell.n_found += tr.found;
                r.trials.push_back(std::move(tr));
                ++done;
                if (on_trial) on_trial(done, total);
            }
            r.overall.n += cell.n;
            r.overall.n_found += cell.n_found;
            r.cells.push_back(cell);
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

std::string passkey_table(const PasskeyResult& r) {
    // Depths and lengths in the order of the cells.
    std::vector<double> depths;
    std::vector<uint32_t> lengths;
    for (const PasskeyCell& c : r.cells) {
        if (std::find(depths.begin(), depths.end(), c.depth) == depths.end()) depths.push_back(c.depth);
        if (std::find(lengths.begin(), lengths.end(), c.length) == lengths.end()) lengths.push_back(c.length);
    }
    const auto cell_text = [](const PasskeyCell& c) {
        return c.n == 0 ? std::string("-") : strprintf("%.2f ± %.2f", c.accuracy(), c.stderr_acc());
    };
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> head = {"length"};
    for (double d : depths) head.push_back("depth " + depth_text(d));
    head.push_back("all depths");
    rows.push_back(head);
    for (uint32_t len : lengths) {
        std::vector<std::string> row = {std::to_string(len)};
        PasskeyCell all;
        for (double d : depths) {
            const auto it = std::find_if(r.cells.begin(), r.cells.end(),
                                         [&](const PasskeyCell& c) { return c.length == len && c.depth == d; });
            const PasskeyCell c = it == r.cells.end() ? PasskeyCell{} : *it;
            all.n += c.n;
            all.n_found += c.n_found;
            row.push_back(cell_text(c));
        }
        row.push_back(cell_text(all));
        rows.push_back(row);
    }
    // Width by characters, not bytes ("±" is two bytes of UTF-8).
    const auto chars = [](const std::string& s) {
        return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
    };
    std::vector<size_t> width(head.size(), 0);
    for (const auto& row : rows)
        for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], chars(row[i]));
    std::string out;
    for (size_t ri = 0; ri < rows.size(); ++ri) {
        out += "|";
        for (size_t i = 0; i < rows[ri].size(); ++i) {
            const std::string pad(width[i] - chars(rows[ri][i]), ' ');
            out += " " + (i == 0 ? rows[ri][i] + pad : pad + rows[ri][i]) + " |";
        }
        out += "\n";
        if (ri == 0) {
            out += "|";
            for (size_t i = 0; i < width.size(); ++i)
                out += " " + (i == 0 ? std::string(width[i], '-') : std::string(width[i] - 1, '-') + ":") + " |";
            out += "\n";
        }
    }
    out += strprintf("overall: %.3f ± %.3f (%d of %d keys retrieved)\n", r.overall.accuracy(), r.overall.stderr_acc(),
                     r.overall.n_found, r.overall.n);
    return out;
}

} // namespace slm
