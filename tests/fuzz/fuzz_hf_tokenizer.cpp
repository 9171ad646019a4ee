// libFuzzer target for reading HF tokenizer files: the input is tokenizer.json, then optionally
// a NUL byte and tokenizer_config.json, then optionally a NUL byte and config.json. Whatever the
// bytes, parse_hf_tokenizer must return or throw slm::Error; what it returns must build a Vocab
// (or be refused by it with slm::Error) that tokenizes without crashing.
#include "formats/hf_tokenizer.h"
#include "slm/error.h"
#include "slm/vocab.h"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string_view parts[3];
    for (int i = 0; i < 3; ++i) {
        const size_t nul = i < 2 ? in.find('\0') : std::string_view::npos;
        parts[i] = in.substr(0, nul);
        if (nul == std::string_view::npos) break;
        in.remove_prefix(nul + 1);
    }
    slm::hf::HFTokenizer t;
    try {
        t = slm::hf::parse_hf_tokenizer(parts[0], parts[1], parts[2], "fuzz");
    } catch (const slm::Error&) {
        return 0;
    }
    try {
        const slm::Vocab v(t.vocab);
        (void)v.tokenize("Hello world, 123 <s> \xE2\x96\x81\n", true, true);
        (void)v.tokenize("ab ab!", false, false);
    } catch (const slm::Error&) {
    }
    return 0;
}
