// libFuzzer target for slm serve's request parsing: the input is an HTTP request body, parsed as
// /v1/completions, /v1/chat/completions, /tokenize and /detokenize would. Whatever the bytes, each
// parse must return or throw serve::ApiError (never crash, hang or throw anything else).
//
//   tests/fuzz/run_fuzzers.sh build-fuzz 60      (seeds: tests/fuzz/corpus/serve_request/)
#include "serve/api.h"

#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    slm::serve::json j;
    try {
        j = slm::serve::parse_body(body);
    } catch (const slm::serve::ApiError&) {
        return 0;
    }
    for (bool chat : {false, true}) {
        try {
            const slm::serve::CompletionRequest r = slm::serve::parse_completion(j, chat);
            (void)r;
        } catch (const slm::serve::ApiError&) {
        }
    }
    try {
        (void)slm::serve::parse_tokenize(j);
    } catch (const slm::serve::ApiError&) {
    }
    try {
        (void)slm::serve::parse_detokenize(j, 32000);
    } catch (const slm::serve::ApiError&) {
    }
    return 0;
}
