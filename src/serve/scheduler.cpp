// scheduler.cpp - the decode loop of slm serve: admission with prefix reuse, one decode() per
// step for every running request, per-request sampling, UTF-8-safe text and stop strings, and
// speculative decoding (a draft model or prompt lookup proposes tokens, verified in that step).
#include "serve/scheduler.h"

#include "slm/error.h"
#include "slm/vocab.h"

#include <algorithm>
#include <cstdio>

namespace slm::serve {

namespace {

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::vector<double> latency_buckets() {
    return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
}

} // namespace

bool Job::take(std::vector<Piece>* out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, timeout, [&] { return !pieces.empty() || done; });
    while (!pieces.empty()) {
        out->push_back(std::move(pieces.front()));
        pieces.pop_front();
    }
    return done;
}

void Histogram::observe(double v) {
    size_t b = 0;
    while (b < bounds.size() && v > bounds[b]) ++b;
    ++counts[b];
    sum += v;
    ++n;
}

void Histogram::write(std::string& out, const char* name, const char* help) const {
    out += strprintf("# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t b = 0; b < bounds.size(); ++b) {
        cum += counts[b];
        out += strprintf("%s_bucket{le=\"%g\"} %llu\n", name, bounds[b], static_cast<unsigned long long>(cum));
    }
    cum += counts.back();
    out += strprintf("%s_bucket{le=\"+Inf\"} %llu\n", name, static_cast<unsigned long long>(cum));
    out += strprintf("%s_sum %.6f\n%s_count %llu\n", name, sum, name, static_cast<unsigned long long>(n));
}

Scheduler::Scheduler(std::shared_ptr<const Model> model, const SchedulerOptions& opts)
    : model_(std::move(model)), opts_(opts), h_request_(latency_buckets()), h_ttft_(latency_buckets()),
      h_queue_(latency_buckets()) {
    BatchOptions bo;
    bo.n_slots = opts.n_parallel;
    bo.n_ctx_slot = opts.n_ctx ? opts.n_ctx : std::min<uint32_t>(model_->hparams().n_ctx_train, 4096);
    bo.n_batch = opts.n_batch;
    bo.kv_type = opts.kv_type;
    bo.swa_full = opts.swa_full;
    bo.n_threads = opts.n_threads;
    batch_ = std::make_unique<BatchSession>(model_, bo);
    n_slots_ = batch_->n_slots();
    n_ctx_ = batch_->n_ctx_slot();
    if (opts.speculative()) {
        validate_speculative_params(opts.spec);
        if (opts.draft && opts.spec.lookup) fail("serve: give either a draft model or lookup, not both");
        // Verification takes back rejected drafts: a recurrent state cannot forget positions.
        if (!batch_->batched())
            fail("serve: speculative decoding (%s): the model %s (%s) keeps a recurrent state, which cannot take back "
                 "rejected draft tokens; serve it without %s", opts.draft ? "--draft" : "--lookup",
                 model_->file().path().c_str(), model_->hparams().arch.c_str(), opts.draft ? "--draft" : "--lookup");
        if (opts.draft) {
            check_draft_vocab(*model_, *opts.draft);
            bo.n_ctx_slot = n_ctx_;
            dbatch_ = std::make_unique<BatchSession>(opts.draft, bo);
            if (!dbatch_->batched())
                fail("serve: --draft: the draft model %s (%s) keeps a recurrent state, which cannot take back rejected "
                     "tokens", opts.draft->file().path().c_str(), opts.draft->hparams().arch.c_str());
        }
    }
    slots_.resize(n_slots_);
    st_.n_slots = n_slots_;
    st_.cache_capacity = static_cast<uint64_t>(n_slots_) * n_ctx_;
    st_.cache_bytes = batch_->cache_bytes();
    thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

Scheduler::Admit Scheduler::submit(const std::shared_ptr<Job>& job) {
    std::lock_guard<std::mutex> lk(mu_);
    if (closed_ || stopping_) return Admit::Stopping;
    // The queue holds requests waiting for a slot; while a slot is free a request never waits.
    const size_t free_slots = n_slots_ - busy_;
    if (queue_.size() >= free_slots + opts_.max_queue) return Admit::QueueFull;
    job->t_submit = Clock::now();
    queue_.push_back(job);
    cv_.notify_one();
    return Admit::Queued;
}

bool Scheduler::wait_idle(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu_);
    return idle_cv_.wait_for(lk, timeout, [&] { return queue_.empty() && busy_ == 0; });
}

void Scheduler::close() {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
}

void Scheduler::stop() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        closed_ = true;
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

SchedulerStats Scheduler::stats() const {
    std::lock_guard<std::mutex> lk(mu_);
    SchedulerStats s = st_;
    s.queue_len = queue_.size();
    s.busy_slots = busy_;
    return s;
}

void Scheduler::write_histograms(std::string& out) const {
    std::lock_guard<std::mutex> lk(mu_);
    h_request_.write(out, "slm_request_duration_seconds", "Time from a request's arrival to its last token.");
    h_ttft_.write(out, "slm_time_to_first_token_seconds", "Time from a request's arrival to its first generated token.");
    h_queue_.write(out, "slm_queue_wait_seconds", "Time a request waited for a slot.");
}

void Scheduler::loop() {
    for (;;) {
        {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stopping_ || !queue_.empty() || busy_ > 0; });
            if (stopping_) break;
            admit_locked();
        }
        step();
    }
    // Stopping: whatever is left is cancelled, so every waiting handler wakes up.
    for (Slot& s : slots_)
        if (s.job) finish(s, "cancelled");
    std::deque<std::shared_ptr<Job>> left;
    {
        std::lock_guard<std::mutex> lk(mu_);
        left.swap(queue_);
    }
    for (auto& j : left) {
        std::lock_guard<std::mutex> lk(j->mu);
        j->done = true;
        j->finish_reason = "cancelled";
        j->cv.notify_all();
    }
    idle_cv_.notify_all();
}

// Under mu_: moves queued requests into idle slots. The slot chosen is the idle one whose cache
// shares the longest prefix with the prompt (least recently used among equals, so other caches
// survive longer); the cache is cut back to that prefix and only the rest is evaluated.
void Scheduler::admit_locked() {
    const Vocab& vocab = model_->vocab();
    while (!queue_.empty() && busy_ < n_slots_) {
        std::shared_ptr<Job> job = std::move(queue_.front());
        queue_.pop_front();
        const Clock::time_point now = Clock::now();
        h_queue_.observe(seconds(now - job->t_submit));
        if (job->cancelled.load()) {
            std::lock_guard<std::mutex> lk(job->mu);
            job->done = true;
            job->finish_reason = "cancelled";
            job->cv.notify_all();
            ++st_.requests_cancelled;
            continue;
        }
        size_t best = n_slots_, best_lcp = 0;
        uint64_t best_used = 0;
        for (size_t i = 0; i < n_slots_; ++i) {
            const Slot& s = slots_[i];
            if (s.job) continue;
            size_t l = 0;
            if (opts_.prefix_cache)
                while (l < s.cached.size() && l < job->prompt.size() && s.cached[l] == job->prompt[l]) ++l;
            if (best == n_slots_ || l > best_lcp || (l == best_lcp && s.last_used < best_used)) {
                best = i;
                best_lcp = l;
                best_used = s.last_used;
            }
        }
        Slot& s = slots_[best];
        const uint32_t slot = static_cast<uint32_t>(best);
        // At least one prompt token is evaluated, for the logits of the first sample.
        size_t keep = std::min(best_lcp, job->prompt.size() - 1);
        try {
            if (keep < s.cached.size()) batch_->truncate(slot, static_cast<uint32_t>(keep));
        } catch (const Error&) {
            keep = 0;  // a recurrent state cannot forget part of a sequence: start the slot afresh
            batch_->clear(slot);
        }
        s.cached.resize(keep);
        s.feed.assign(job->prompt.begin() + static_cast<std::ptrdiff_t>(keep), job->prompt.end());
        s.sampler = std::make_unique<Sampler>(job->sampling, static_cast<int32_t>(model_->hparams().n_vocab));
        for (int32_t t : job->prompt) s.sampler->accept(t);
        s.utf8 = std::make_unique<Utf8Stream>();
        s.stop = StopFilter(job->stop);
        // As slm::generate: after a prompt of control tokens only (BOS), SentencePiece drops the
        // space prefix of the first word.
        s.strip_space = vocab.add_space_prefix();
        for (int32_t t : job->prompt) s.strip_space = s.strip_space && vocab.is_control(t);
        if (opts_.speculative()) {
            const int32_t n_vocab = static_cast<int32_t>(model_->hparams().n_vocab);
            s.verifier = std::make_unique<spec::Verifier>(job->sampling.seed, n_vocab);
            if (dbatch_) s.dsampler = std::make_unique<Sampler>(spec::draft_sampler_params(job->sampling, opts_.spec), n_vocab);
            s.k_cur = static_cast<size_t>(opts_.spec.draft_max);
        }
        job->n_prompt = static_cast<uint32_t>(job->prompt.size());
        job->n_cached = static_cast<uint32_t>(keep);
        st_.prompt_tokens += job->prompt.size();
        st_.prefix_reused_tokens += keep;
        s.job = std::move(job);
        ++busy_;
    }
}

void Scheduler::finish(Slot& s, const std::string& reason, const std::string& error) {
    std::shared_ptr<Job> job = std::move(s.job);
    s.job.reset();
    s.sampler.reset();
    s.utf8.reset();
    s.feed.clear();
    s.dsampler.reset();
    s.verifier.reset();
    s.drafts.clear();
    s.dq.clear();
    const Clock::time_point now = Clock::now();
    {
        std::lock_guard<std::mutex> lk(job->mu);
        job->done = true;
        job->finish_reason = reason;
        job->error = error;
        job->cv.notify_all();
    }
    std::lock_guard<std::mutex> lk(mu_);
    s.last_used = ++tick_;
    --busy_;
    if (reason == "cancelled") ++st_.requests_cancelled;
    else if (reason == "error") ++st_.requests_failed;
    else ++st_.requests_finished;
    h_request_.observe(seconds(now - job->t_submit));
    if (busy_ == 0 && queue_.empty()) idle_cv_.notify_all();
}

// Speculative decoding, before the model's pass: up to k_max draft tokens for every request
// that is generating (feed = its newest token, not yet evaluated). Prompt lookup searches the
// request's own tokens; a draft model first catches its slot up with the request's tokens (the
// cached prefix they share is kept), then drafts one token per decode() for all slots together,
// a slot dropping out at its k_max or when the drafter is unsure (draft_p_min).
void Scheduler::draft(const std::vector<size_t>& who) {
    std::vector<size_t> live;
    std::vector<std::vector<int32_t>> feeds(n_slots_);
    std::vector<int32_t> hist;
    for (size_t i : who) {
        Slot& s = slots_[i];
        s.drafts.clear();
        s.dq.clear();
        s.k_max = 0;
        if (s.feed.size() != 1 || s.job->n_gen == 0) continue;  // prompt phase
        const size_t pos = s.cached.size();                   // where feed[0] goes
        if (pos + 1 >= n_ctx_ || s.job->n_gen >= s.job->max_tokens) continue;
        // As generate_speculative: never draft past the context or max_tokens.
        s.k_max = std::min({s.k_cur, size_t(n_ctx_) - 1 - pos, size_t(s.job->max_tokens - s.job->n_gen) - 1});
        if (s.k_max == 0) continue;
        hist.assign(s.cached.begin(), s.cached.end());
        hist.push_back(s.feed[0]);
        if (opts_.spec.lookup) {
            s.drafts = spec::lookup_draft(hist, opts_.spec, s.k_max);
            continue;
        }
        size_t common = 0;
        while (common < s.dcached.size() && common < hist.size() && s.dcached[common] == hist[common]) ++common;
        if (common == hist.size()) --common;  // its logits are needed again
        const uint32_t slot = static_cast<uint32_t>(i);
        if (common < s.dcached.size()) {
            if (common > 0 && dbatch_->can_truncate(slot, static_cast<uint32_t>(common))) {
                dbatch_->truncate(slot, static_cast<uint32_t>(common));
            } else {
                dbatch_->clear(slot);
                common = 0;
            }
            s.dcached.resize(common);
        }
        feeds[i].assign(hist.begin() + static_cast<std::ptrdiff_t>(common), hist.end());
        live.push_back(i);
    }
    std::vector<BatchInput> inputs;
    std::vector<size_t> next;
    while (!live.empty()) {
        inputs.clear();
        for (size_t i : live) {
            inputs.push_back({static_cast<uint32_t>(i), feeds[i]});
        }
        try {
            dbatch_->decode(inputs);
        } catch (const std::exception&) {
            // Drafting is only a guess: these slots go on without drafts this step.
            for (size_t i : live) {
                dbatch_->clear(static_cast<uint32_t>(i));
                slots_[i].dcached.clear();
                slots_[i].drafts.clear();
                slots_[i].dq.clear();
            }
            break;
        }
        next.clear();
        for (size_t n = 0; n < live.size(); ++n) {
            Slot& s = slots_[live[n]];
            s.dcached.insert(s.dcached.end(), feeds[live[n]].begin(), feeds[live[n]].end());
            const bool greedy = s.job->sampling.temp <= 0;
            const int32_t d = spec::draft_token(*s.dsampler, dbatch_->logits(n), opts_.spec, greedy ? nullptr : &s.dq);
            if (d < 0) continue;
            s.drafts.push_back(d);
            if (s.drafts.size() == s.k_max) continue;
            feeds[live[n]].assign(1, d);
            next.push_back(live[n]);
        }
        live.swap(next);
    }
}

bool Scheduler::emit(Slot& s, int32_t tok, const float* logits, uint32_t pos) {
    const Vocab& vocab = model_->vocab();
    Job& job = *s.job;
    Piece p;
    p.has_token = true;
    if (job.logprobs) {
        std::vector<std::pair<int32_t, float>> top;
        logprobs_of(logits, static_cast<int32_t>(model_->hparams().n_vocab), tok, job.top_logprobs, &p.lp.logprob, &top);
        p.lp.id = tok;
        p.lp.text = vocab.token_to_piece(tok, true);
        for (const auto& [id, lp] : top) p.lp.top.push_back({vocab.token_to_piece(id, true), lp});
    }
    const uint32_t n_gen = ++job.n_gen;
    const bool first = n_gen == 1;
    const Clock::time_point now = Clock::now();
    std::string reason;
    bool hit = false;
    if (vocab.is_eog(tok) && !job.ignore_eos) {
        reason = "stop";
    } else {
        std::string piece = vocab.token_to_piece(tok, false);
        if (s.strip_space && !piece.empty()) {
            if (piece[0] == ' ') piece.erase(0, 1);
            s.strip_space = false;
        }
        p.text = s.stop.push(s.utf8->push(piece));
        hit = s.stop.hit();
        if (hit) reason = "stop";
        else if (n_gen >= job.max_tokens) reason = "length";
        else if (pos >= n_ctx_) reason = "length";
    }
    if (!reason.empty() && !hit) {
        p.text += s.stop.push(s.utf8->flush());
        p.text += s.stop.flush();  // empty after a hit
    }
    {
        std::lock_guard<std::mutex> lk(job.mu);
        if (first) job.t_first = now;
        job.pieces.push_back(std::move(p));
        job.cv.notify_all();
    }
    if (first) {
        std::lock_guard<std::mutex> lk(mu_);
        h_ttft_.observe(seconds(now - job.t_submit));
    }
    if (reason.empty()) return false;
    finish(s, reason);
    return true;
}

void Scheduler::step() {
    std::vector<BatchInput> inputs;
    std::vector<size_t> who;
    for (size_t i = 0; i < n_slots_; ++i) {
        Slot& s = slots_[i];
        if (!s.job) continue;
        if (s.job->cancelled.load()) {  // client gone or shutdown: free the slot now
            finish(s, "cancelled");
            continue;
        }
        who.push_back(i);
    }
    if (who.empty()) return;
    const Clock::time_point t0 = Clock::now();
    if (opts_.speculative()) draft(who);
    // A generating request's input is its newest token and its drafts, with a row of logits each.
    size_t n_fed = 0;
    for (size_t i : who) {
        Slot& s = slots_[i];
        s.feed.insert(s.feed.end(), s.drafts.begin(), s.drafts.end());
        inputs.push_back({static_cast<uint32_t>(i), s.feed, !s.drafts.empty()});
        n_fed += s.feed.size();
    }
    try {
        batch_->decode(inputs);
    } catch (const std::exception& e) {
        // Inputs are checked before anything is evaluated, so only these requests fail.
        for (size_t i : who) {
            batch_->clear(static_cast<uint32_t>(i));
            slots_[i].cached.clear();
            finish(slots_[i], "error", e.what());
        }
        return;
    }
    uint64_t n_gen_step = 0, n_drafted = 0, n_accepted = 0;
    for (size_t k = 0; k < who.size(); ++k) {
        Slot& s = slots_[who[k]];
        const uint32_t slot = static_cast<uint32_t>(who[k]);
        const size_t np0 = s.cached.size(), n_draft = s.drafts.size();
        // The row after feed's last token that is not a draft (the prompt's last, or the newest).
        const size_t base = s.feed.size() - 1 - n_draft;
        const float* rows = batch_->logits(k, base);
        spec::Verdict v;
        if (s.verifier) {
            v = s.verifier->verify(*s.sampler, rows, s.drafts, s.dq);
        } else {
            v.next = s.sampler->sample(rows);
        }
        // The cache keeps feed up to base and the accepted drafts; the rejected ones go.
        s.cached.insert(s.cached.end(), s.feed.begin(), s.feed.end());
        const size_t keep = np0 + base + 1 + v.n_accepted;
        if (keep < s.cached.size()) {
            if (batch_->can_truncate(slot, static_cast<uint32_t>(keep))) {
                batch_->truncate(slot, static_cast<uint32_t>(keep));
                s.cached.resize(keep);
            } else {
                // A sliding-window ring that cannot go back: evaluate the kept tokens again.
                batch_->clear(slot);
                s.cached.resize(keep);
                s.feed.assign(s.cached.begin(), s.cached.end());
                s.cached.clear();
            }
        }
        n_drafted += n_draft;
        bool ended = false;
        for (size_t i = 0; i < v.n_accepted && !ended; ++i) {
            ++n_accepted;
            ++n_gen_step;
            ended = emit(s, s.drafts[i], rows + i * model_->hparams().n_vocab, static_cast<uint32_t>(np0 + base + 1 + i));
        }
        if (ended) continue;
        if (s.verifier && opts_.spec.adaptive && n_draft > 0)
            s.k_cur = v.n_accepted < n_draft ? v.n_accepted + 1 : std::min<size_t>(opts_.spec.draft_max, 2 * s.k_cur);
        s.sampler->accept(v.next);
        ++n_gen_step;
        const bool rebuilt = s.cached.size() < keep;
        if (emit(s, v.next, rows + v.n_accepted * model_->hparams().n_vocab,
                 static_cast<uint32_t>(np0 + base + 1 + v.n_accepted)))
            continue;
        if (rebuilt) s.feed.push_back(v.next);
        else s.feed.assign(1, v.next);
    }
    const double dt = seconds(Clock::now() - t0);
    std::lock_guard<std::mutex> lk(mu_);
    ++st_.steps;
    st_.generated_tokens += n_gen_step;
    st_.decode_tokens += n_fed;
    st_.draft_tokens += n_drafted;
    st_.draft_accepted += n_accepted;
    st_.busy_seconds += dt;
    uint64_t cached = 0;
    for (const Slot& s : slots_) cached += s.cached.size();
    st_.cached_tokens = cached;
}

} // namespace slm::serve
