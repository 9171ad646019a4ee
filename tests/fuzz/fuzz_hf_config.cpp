// fuzz_hf_config.cpp - libFuzzer target for reading a Hugging Face config.json (the `<arch>.*` keys
// `slm convert` writes from it) and for the way back (GGUF keys -> config.json).
//
// The input is config.json. Its "architectures"[0] picks the architecture; when that is missing or
// unknown, the input's length picks one, so every table entry sees fuzzed configs. Whatever the
// bytes, reading must return or throw slm::Error naming the file; the keys it writes must make a
// GGUF that parses, and turning that back into a config.json must return or throw slm::Error.
#include "formats/hf_config.h"
#include "formats/json_util.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_hf_config: %s\n", what);
    std::abort();
}

const std::vector<std::string>& arch_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> out;
        const std::string all = slm::hf::supported_hf_archs();  // "LlamaForCausalLM, Qwen2ForCausalLM, ..."
        size_t at = 0;
        while (at < all.size()) {
            size_t comma = all.find(", ", at);
            if (comma == std::string::npos) comma = all.size();
            out.push_back(all.substr(at, comma - at));
            at = comma + 2;
        }
        if (out.empty()) bug("no architectures");
        return out;
    }();
    return names;
}

void expect_named(const slm::Error& e) {
    if (!std::strstr(e.what(), "config.json")) {
        std::fprintf(stderr, "%s\n", e.what());
        bug("error does not name the file");
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    slm::json_util::JsonFile cfg;
    try {
        cfg = slm::json_util::JsonFile::parse(text, "fuzz/config.json", "hf");
    } catch (const slm::Error& e) {
        expect_named(e);
        return 0;
    }
    const slm::hf::ArchSpec* spec = nullptr;
    const slm::json_util::json* archs = slm::json_util::find(cfg.root, "architectures");
    if (archs && archs->is_array() && !archs->empty() && (*archs)[0].is_string())
        spec = slm::hf::arch_by_hf((*archs)[0].get<std::string>());
    if (!spec) spec = slm::hf::arch_by_hf(arch_names()[size % arch_names().size()]);
    if (!spec) bug("arch_by_hf does not find a listed architecture");

    for (auto* count : {&slm::hf::config_n_head, &slm::hf::config_n_head_kv, &slm::hf::config_n_experts}) {
        try {
            (void)count(cfg);
        } catch (const slm::Error& e) {
            expect_named(e);
        }
    }
    slm::GGUFWriter w;
    w.set("general.architecture", slm::GGUFValue::string(spec->gguf_arch));
    try {
        spec->to_gguf(cfg, 1, w);
    } catch (const slm::Error& e) {
        expect_named(e);
        return 0;
    }
    const std::vector<uint8_t> bytes = w.to_bytes();
    slm::GGUFFile f;
    try {
        f = slm::GGUFFile::parse(bytes.data(), bytes.size(), "converted.gguf");
    } catch (const slm::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        bug("the keys written from config.json do not make a GGUF that parses");
    }
    try {
        const slm::json_util::json back = spec->to_config(f);
        (void)slm::json_util::dump(back, "config.json");
    } catch (const slm::Error&) {
        // to_config may need tensors this key-only file lacks
    }
    return 0;
}
