// serve/api.h - OpenAI request bodies into checked structs, and the JSON the server answers with.
//
// Parsing never trusts the body: every field is type-checked, every number range-checked, and a
// bad one becomes an ApiError (HTTP 400 with an OpenAI error object naming the field in "param").
#pragma once

#include "slm/sampler.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace slm::serve {

using json = nlohmann::ordered_json;

// An answer other than 200: status, and the fields of OpenAI's {"error": {...}} object.
struct ApiError : std::runtime_error {
    int status;
    std::string type, param, code;
    ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
             std::string code = "")
        : std::runtime_error(std::move(message)), status(status), type(std::move(type)), param(std::move(param)),
          code(std::move(code)) {}
};

// {"error": {"message", "type", "param", "code"}} (param and code null when empty).
std::string error_body(const ApiError& e);

// Parses a JSON body: rejects malformed JSON, nesting deeper than max_depth (so nothing later
// recurses deeply on attacker-chosen input) and anything but an object.
json parse_body(std::string_view body, int max_depth = 64);

struct CompletionRequest {
    bool chat = false;
    std::string model;                    // as given ("" if absent); not checked against ours
    std::string prompt;                   // /v1/completions: text ...
    std::vector<int32_t> prompt_tokens;   // ... or token ids (prompt_is_tokens)
    bool prompt_is_tokens = false;
    std::string messages_json;            // /v1/chat/completions: the messages array, re-serialized
    std::optional<int64_t> max_tokens;    // absent: up to the context (chat) / 16 (completions)
    SamplerParams sampling;
    bool seed_given = false;
    std::vector<std::string> stop;
    bool stream = false;
    bool include_usage = false;           // stream_options.include_usage
    bool logprobs = false;
    int top_logprobs = 0;                 // alternatives reported per token (0..20)
    bool echo = false;                    // completions: prepend the prompt to the text
    bool ignore_eos = false;              // llama.cpp server extension: generate past end-of-text
};

// Throws ApiError (400) for wrong types, out-of-range values, unsupported options (n > 1).
CompletionRequest parse_completion(const json& body, bool chat);

// POST /tokenize {"content": str, "add_special": bool=true, "parse_special": bool=true}
struct TokenizeRequest {
    std::string content;
    bool add_special = true;
    bool parse_special = true;
};
TokenizeRequest parse_tokenize(const json& body);
// POST /detokenize {"tokens": [int...]}; ids are range-checked against n_vocab.
std::vector<int32_t> parse_detokenize(const json& body, int32_t n_vocab);

// One generated token as the logprobs fields report it.
struct TokenLogprob {
    int32_t id = 0;
    std::string text;                     // its bytes (may be part of a UTF-8 character)
    float logprob = 0;
    std::vector<std::pair<std::string, float>> top;  // most likely first
};

// Log-softmax of the raw logits: the logprob of `id` and the k most likely (id, logprob).
void logprobs_of(const float* logits, int32_t n_vocab, int32_t id, int k, float* lp,
                 std::vector<std::pair<int32_t, float>>* top);

// The logprobs fields of a choice, OpenAI's two layouts.
json chat_logprobs_json(const std::vector<TokenLogprob>& toks);                         // {"content": [...]}
json completion_logprobs_json(const std::vector<TokenLogprob>& toks, size_t text_offset);  // tokens, token_logprobs...

std::string dump(const json& j);  // compact, invalid UTF-8 replaced by U+FFFD

} // namespace slm::serve
