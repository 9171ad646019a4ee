// Tokenizer throughput on 1 MB of text, per vocabulary (SentencePiece and byte-level BPE).
#include "slm/gguf.h"
#include "slm/vocab.h"

#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

namespace {

std::string vocab_file(const char* name) {
    return std::string(SLM_SOURCE_DIR) + "/tests/data/vocab/ggml-vocab-" + name + ".gguf";
}

std::string one_megabyte() {
    std::ifstream f(vocab_file("gpt-2") + ".inp", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string text;
    while (text.size() < (1u << 20)) text += ss.str();
    return text;
}

void BM_Tokenize(benchmark::State& state, const char* name) {
    slm::GGUFFile f = slm::GGUFFile::open(vocab_file(name));
    slm::Vocab vocab = slm::Vocab::from_gguf(f);
    const std::string text = one_megabyte();
    size_t n_tokens = 0;
    for (auto _ : state) {
        n_tokens = vocab.tokenize(text, true, true).size();
        benchmark::DoNotOptimize(n_tokens);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
    state.counters["tokens"] = static_cast<double>(n_tokens);
}

BENCHMARK_CAPTURE(BM_Tokenize, llama_spm, "llama-spm")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, gpt_2, "gpt-2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Tokenize, deepseek_coder, "deepseek-coder")->Unit(benchmark::kMillisecond);

} // namespace

BENCHMARK_MAIN();
