// libFuzzer target for the tokenizers: arbitrary bytes are tokenized (parse_special off and on),
// every id is checked to be in the vocab, and the ids are turned back into text with
// token_to_piece, Utf8Stream (whose output must be valid UTF-8) and detokenize.
//
// The vocab is $SLM_FUZZ_VOCAB if set; otherwise the llama-spm and gpt-2 vocabs of
// tests/data/vocab, plus a small byte-level BPE vocab per pre-tokenizer (the input's first byte
// picks one), so every pre-tokenizer regex and splitter sees fuzzed text.
//
//   clang++ -std=c++20 -fsanitize=fuzzer,address -Iinclude tests/fuzz/fuzz_tokenizer.cpp
//       build/libslm.a -lpcre2-8 -o fuzz_tokenizer && ./fuzz_tokenizer   (one command line)
#include "slm/gguf.h"
#include "slm/vocab.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#ifndef SLM_SOURCE_DIR
#define SLM_SOURCE_DIR "."
#endif

namespace {

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "fuzz_tokenizer: %s\n", what);
    std::abort();
}

bool valid_utf8(const std::string& s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<uint8_t>(s[i]);
        size_t len = 1;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) {
            ++i;
            continue;
        } else if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            lo = b == 0xE0 ? 0xA0 : 0x80;
            hi = b == 0xED ? 0x9F : 0xBF;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            lo = b == 0xF0 ? 0x90 : 0x80;
            hi = b == 0xF4 ? 0x8F : 0xBF;
        } else {
            return false;
        }
        if (i + len > s.size()) return false;
        const auto b1 = static_cast<uint8_t>(s[i + 1]);
        if (b1 < lo || b1 > hi) return false;
        for (size_t k = 2; k < len; ++k)
            if ((static_cast<uint8_t>(s[i + k]) & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

// GPT-2's bytes_to_unicode images, as UTF-8.
std::vector<std::string> byte_tokens() {
    std::vector<std::string> out;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        const int cpt = printable ? b : next++;
        std::string s;
        if (cpt < 0x80) {
            s += static_cast<char>(cpt);
        } else {
            s += static_cast<char>(0xC0 | (cpt >> 6));
            s += static_cast<char>(0x80 | (cpt & 0x3F));
        }
        out.push_back(s);
    }
    return out;
}

slm::Vocab synthetic_bpe(const std::string& pre) {
    slm::VocabData d;
    d.model = "gpt2";
    d.pre = pre;
    d.source = "<fuzz " + pre + ">";
    d.tokens = byte_tokens();
    for (const char* t : {"Ġt", "he", "Ġthe", "in", "<|endoftext|>", "<|im_start|>"}) d.tokens.push_back(t);
    d.token_types.assign(d.tokens.size(), 1);
    d.token_types[d.tokens.size() - 2] = 3;
    d.token_types[d.tokens.size() - 1] = 4;
    d.merges = {"Ġ t", "h e", "Ġt he", "i n"};
    d.bos = d.eos = static_cast<int64_t>(d.tokens.size() - 2);
    return slm::Vocab(std::move(d));
}

struct Vocabs {
    std::vector<slm::Vocab> files;      // tokenize every input with each
    std::vector<slm::Vocab> synthetic;  // one per pre-tokenizer, chosen by the first input byte
};

const Vocabs& vocabs() {
    static const Vocabs v = [] {
        Vocabs out;
        const char* env = std::getenv("SLM_FUZZ_VOCAB");
        std::vector<std::string> paths;
        if (env && *env) {
            paths = {env};
        } else {
            paths = {SLM_SOURCE_DIR "/tests/data/vocab/ggml-vocab-llama-spm.gguf",
                     SLM_SOURCE_DIR "/tests/data/vocab/ggml-vocab-gpt-2.gguf"};
            for (const char* pre :
                 {"default", "llama3", "jais-2", "deepseek-llm", "deepseek-v3", "spark2_5", "youtu", "deepseek-coder",
                  "falcon", "mpt", "starcoder", "gpt-2", "refact", "command-r", "stablelm2", "qwen2", "qwen35", "olmo",
                  "dbrx", "smaug-bpe", "poro-chat", "glm4", "viking", "jais", "tekken", "smollm", "codeshell", "bloom",
                  "gpt3-finnish", "exaone", "exaone-moe", "chameleon", "minerva-7b", "gpt-4o", "minimax-m2",
                  "granite-embed-multi-97m", "tiny_aya", "superbpe", "trillion", "granite-docling", "bailingmoe",
                  "seed-coder", "hunyuan", "hunyuan-dense", "hy_v4", "joyai-llm", "kimi-k2", "ufakzeka", "grok-2",
                  "afmoe", "laguna", "solar-open", "mellum2", "sarvam-moe", "minicpm5", "whitespace"})
                out.synthetic.push_back(synthetic_bpe(pre));
        }
        try {
            for (const std::string& p : paths) out.files.push_back(slm::Vocab::from_gguf(slm::GGUFFile::open(p)));
        } catch (const std::exception& e) {
            std::fprintf(stderr, "fuzz_tokenizer: %s (set SLM_FUZZ_VOCAB or run from the repository root)\n",
                         e.what());
            std::abort();
        }
        return out;
    }();
    return v;
}

void exercise(const slm::Vocab& v, const std::string& text) {
    for (bool special : {false, true}) {
        const std::vector<int32_t> ids = v.tokenize(text, special, special);
        slm::Utf8Stream stream;
        std::string streamed;
        for (int32_t id : ids) {
            if (id < 0 || id >= v.n_tokens()) die("token id out of range");
            streamed += stream.push(v.token_to_piece(id, special));
        }
        streamed += stream.flush();
        if (!valid_utf8(streamed)) die("Utf8Stream produced invalid UTF-8");
        (void)v.detokenize(ids, special, special);
        (void)v.detokenize(ids, !special, !special);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Vocabs& vs = vocabs();
    const std::string text(reinterpret_cast<const char*>(data), size);
    for (const slm::Vocab& v : vs.files) exercise(v, text);
    if (!vs.synthetic.empty() && size > 0) exercise(vs.synthetic[data[0] % vs.synthetic.size()], text.substr(1));
    return 0;
}
