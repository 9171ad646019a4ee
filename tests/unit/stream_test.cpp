// Weight streaming (SessionOptions::low_memory): the same logits and tokens as the default, while
// the model's mapping keeps only about two layers resident; --mlock locks the weights.
#include "slm/error.h"
#include "slm/generate.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace slm;

namespace {

// A model of 8 layers of ~0.85 MB (Q8_0, for llama) with stories260K's 512-token vocabulary, so
// the layers are most of its weights.
std::string synth_layered(const std::string& arch) {
    SynthConfig c;
    c.name = "stream-test";
    c.arch = arch;
    c.n_ctx_train = 256;
    c.n_embd = 256;
    c.n_layer = 8;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 704;
    if (arch == "qwen2moe") {
        c.n_expert = 4;
        c.n_expert_used = 2;
        c.n_ff_exp = 352;
        c.n_ff_shexp = 352;
    }
    c.type = GGMLType::Q8_0;
    c.pure = true;
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");
    const std::string p = test::temp_dir() + "/stream-test-" + arch + ".gguf";
    synthesize(c, p);
    return p;
}

const std::string& layered_model() {
    static const std::string path = synth_layered("llama");
    return path;
}

// Resident bytes of the mapping that holds `addr` (/proc/self/smaps "Rss:").
size_t mapping_rss(const void* addr) {
    std::ifstream f("/proc/self/smaps");
    std::string line;
    const auto a = reinterpret_cast<uintptr_t>(addr);
    bool in = false;
    while (std::getline(f, line)) {
        unsigned long lo = 0, hi = 0;
        if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
            in = a >= lo && a < hi;
            continue;
        }
        size_t kb = 0;
        if (in && std::sscanf(line.c_str(), "Rss: %zu kB", &kb) == 1) return kb * 1024;
    }
    return 0;
}

SessionOptions opts(bool low) {
    SessionOptions so;
    so.n_ctx = 128;
    so.n_threads = 1;
    so.low_memory = low;
    return so;
}

TEST(WeightStream, SameLogitsAndTokens) {
    for (const std::string& path : {test::model_path("stories260K/stories260K.gguf"), layered_model()}) {
        SCOPED_TRACE(path);
        const auto m = Model::load(path, {.repack = false});
        const std::vector<int32_t> prompt = m->vocab().tokenize("Once upon a time, there was a cat", true, true);
        Session a(m, opts(false)), b(m, opts(true));
        a.eval(prompt, true);
        b.eval(prompt, true);
        ASSERT_EQ(a.logits().size(), b.logits().size());
        EXPECT_EQ(std::memcmp(a.logits().data(), b.logits().data(), a.logits().size() * sizeof(float)), 0);
        GenerateParams gp;
        gp.n_predict = 40;
        gp.sampling.temp = 0;
        a.reset();
        b.reset();
        const GenerateResult ra = generate(a, prompt, gp), rb = generate(b, prompt, gp);
        EXPECT_EQ(ra.tokens, rb.tokens);
    }
}

// The mapping's resident set: the whole model after default decoding, about two layers (plus
// the embeddings and output, which are not streamed) with streaming.
TEST(WeightStream, ResidentSetStaysSmall) {
    const auto low = Model::load(layered_model(), {.repack = false});
    const auto full = Model::load(layered_model(), {.repack = false});
    const size_t bytes = low->weight_bytes();
    const void* probe_low = low->file().tensor("blk.3.attn_q.weight").data;
    const void* probe_full = full->file().tensor("blk.3.attn_q.weight").data;
    const std::vector<int32_t> prompt = low->vocab().tokenize("Once upon a time", true, true);
    GenerateParams gp;
    gp.n_predict = 8;
    gp.sampling.temp = 0;
    {
        Session s(low, opts(true));
        generate(s, prompt, gp);
        const size_t rss = mapping_rss(probe_low);
        ASSERT_GT(rss, 0u) << "no mapping found";
        EXPECT_LT(rss, bytes * 2 / 5) << rss << " of " << bytes;
    }
    {
        Session s(full, opts(false));
        generate(s, prompt, gp);
        EXPECT_GT(mapping_rss(probe_full), bytes * 9 / 10);
    }
}

// Every architecture's forward pass calls the hook: streaming keeps the resident set small for
// other block shapes too (MoE experts, state-space layers), with the same logits.
TEST(WeightStream, OtherArchitectures) {
    for (const char* arch : {"gemma", "qwen2moe", "mamba"}) {
        SCOPED_TRACE(arch);
        const std::string path = synth_layered(arch);
        const auto low = Model::load(path, {.repack = false});
        const auto full = Model::load(path, {.repack = false});
        const std::vector<int32_t> prompt = low->vocab().tokenize("Once upon a time", true, true);
        Session a(full, opts(false)), b(low, opts(true));
        const float* la = a.eval(prompt);
        const float* lb = b.eval(prompt);
        EXPECT_EQ(std::memcmp(la, lb, low->hparams().n_vocab * sizeof(float)), 0);
        const std::string probe = low->file().tensors()[low->file().tensors().size() / 2].name;
        const size_t rss = mapping_rss(low->file().tensor(probe).data);
        EXPECT_LT(rss, low->weight_bytes() * 2 / 5) << rss << " of " << low->weight_bytes();
        EXPECT_GT(mapping_rss(full->file().tensor(probe).data), full->weight_bytes() * 9 / 10);
        std::remove(path.c_str());
    }
}

TEST(WeightStream, LockWeights) {
    const auto m = Model::load(layered_model(), {.repack = false});
    try {
        m->lock_weights();
    } catch (const Error& e) {
        // Allowed to fail only for the reason it names: the memlock limit.
        EXPECT_NE(std::string(e.what()).find("RLIMIT_MEMLOCK"), std::string::npos) << e.what();
        GTEST_SKIP() << e.what();
    }
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer makes mlock a no-op";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    GTEST_SKIP() << "AddressSanitizer makes mlock a no-op";
#endif
#endif
    const void* probe = m->file().tensor("blk.5.ffn_up.weight").data;
    EXPECT_GT(mapping_rss(probe), m->weight_bytes() * 9 / 10);  // locked pages are resident
}

// slm run --low-memory (and --mlock) prints what slm run prints.
TEST(WeightStream, CliRunMatchesDefault) {
    const std::vector<std::string> base = {"run", "-m", layered_model(), "-p", "Once upon a time", "-n", "24", "--temp", "0", "-t", "1"};
    const auto plain = test::run_cli(base);
    ASSERT_EQ(plain.exit_code, 0) << plain.err;
    std::vector<std::string> args = base;
    args.push_back("--low-memory");
    const auto low = test::run_cli(args);
    ASSERT_EQ(low.exit_code, 0) << low.err;
    EXPECT_EQ(low.out, plain.out);
}

// slm bench --low-memory: the streamed run, then the default, each with its peak RSS.
TEST(WeightStream, CliBench) {
    const auto r = test::run_cli({"bench", "-m", layered_model(), "-p", "8", "-n", "4", "-r", "1", "-t", "1", "--low-memory",
                                  "--bw-size", "1", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j.size(), 2u);
    EXPECT_TRUE(j[0]["low_memory"].get<bool>());
    EXPECT_FALSE(j[1]["low_memory"].get<bool>());
    for (const auto& row : j) EXPECT_GT(row["peak_rss_bytes"].get<size_t>(), 0u);
}

} // namespace
