// batch_bench - decode throughput of BatchSession's single forward pass for 1, 4 and 8 sequences
// against the same sequences decoded one after the other (one Session each, what BatchSession did
// before it batched): tokens/s of both and their ratio. A figure for bench/SERVING.md.
//
//   ./build/bench/bench_batch MODEL.gguf [n_gen=32] [n_threads=0]
//
// Each sequence gets its own 16-token prompt (all prompts in one decode), then n_gen steps of one
// token per sequence are timed (greedy: the argmax of its logits).
#include "slm/batch.h"
#include "slm/error.h"
#include "slm/model.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

using namespace slm;

namespace {

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int32_t argmax(const float* l, size_t n) { return static_cast<int32_t>(std::max_element(l, l + n) - l); }

std::vector<int32_t> prompt(uint32_t s, uint32_t n_vocab) {
    std::vector<int32_t> p;
    for (uint32_t i = 0; i < 16; ++i) p.push_back(static_cast<int32_t>((s * 7919u + i * 104729u + 1u) % n_vocab));
    return p;
}

} // namespace

int main(int argc, char** argv) try {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL.gguf [n_gen=32] [n_threads=0]\n", argv[0]);
        return 2;
    }
    const int n_gen = argc > 2 ? std::atoi(argv[2]) : 32;
    const int n_threads = argc > 3 ? std::atoi(argv[3]) : 0;
    if (n_gen < 1 || n_gen > 100000) fail("bench_batch: n_gen %d must be in 1..100000", n_gen);
    auto m = Model::load(argv[1]);
    const uint32_t nv = m->hparams().n_vocab;
    std::printf("model %s (%s, %u layers of %u), %d decode steps per sequence\n", argv[1], m->hparams().arch.c_str(),
                m->hparams().n_layer, m->hparams().n_embd, n_gen);
    std::printf("| sequences | batched tok/s | one at a time tok/s | ratio |\n|---|---|---|---|\n");
    for (uint32_t S : {1u, 4u, 8u}) {
        // Batched: one decode() per step for all sequences.
        BatchOptions bo;
        bo.n_slots = S;
        bo.n_ctx_slot = 16 + n_gen + 1;
        bo.n_threads = n_threads;
        BatchSession b(m, bo);
        std::vector<std::vector<int32_t>> ps;
        std::vector<BatchInput> in;
        for (uint32_t s = 0; s < S; ++s) ps.push_back(prompt(s, nv));
        for (uint32_t s = 0; s < S; ++s) in.push_back({s, ps[s]});
        b.decode(in);
        std::vector<int32_t> last(S);
        for (uint32_t s = 0; s < S; ++s) last[s] = argmax(b.logits(s), nv);
        double t0 = now();
        for (int k = 0; k < n_gen; ++k) {
            for (uint32_t s = 0; s < S; ++s) in[s] = {s, {&last[s], 1}};
            b.decode(in);
            for (uint32_t s = 0; s < S; ++s) last[s] = argmax(b.logits(s), nv);
        }
        const double tb = now() - t0;
        // One at a time: a Session per sequence, one eval per token.
        SessionOptions so;
        so.n_ctx = bo.n_ctx_slot;
        so.n_threads = n_threads;
        std::vector<std::unique_ptr<Session>> ss;
        for (uint32_t s = 0; s < S; ++s) {
            ss.push_back(std::make_unique<Session>(m, so));
            last[s] = argmax(ss[s]->eval(ps[s]), nv);
        }
        t0 = now();
        for (int k = 0; k < n_gen; ++k)
            for (uint32_t s = 0; s < S; ++s) last[s] = argmax(ss[s]->eval({&last[s], 1}), nv);
        const double ts = now() - t0;
        const double nt = double(S) * n_gen;
        std::printf("| %u | %.1f | %.1f | %.2fx |\n", S, nt / tb, nt / ts, ts / tb);
        std::fflush(stdout);
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "bench_batch: %s\n", e.what());
    return 1;
}
