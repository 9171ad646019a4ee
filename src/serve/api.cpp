// api.cpp - request parsing and validation, logprobs, error bodies.
#include "serve/api.h"

#include "formats/json_util.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace slm::serve {

namespace {

const json* field(const json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return nullptr;  // null means "not given", as OpenAI reads it
    return &*it;
}

[[noreturn]] void bad(const std::string& param, const std::string& msg) { throw ApiError(400, msg, "invalid_request_error", param); }

double get_number(const json& body, const char* name, double lo, double hi, double def) {
    const json* v = field(body, name);
    if (!v) return def;
    if (!v->is_number()) bad(name, std::string("'") + name + "' must be a number");
    const double d = v->get<double>();
    if (!std::isfinite(d) || d < lo || d > hi)
        bad(name, std::string("'") + name + "' = " + v->dump() + " must be in [" + dump(json(lo)) + ", " + dump(json(hi)) + "]");
    return d;
}

std::optional<int64_t> get_int(const json& body, const char* name, int64_t lo, int64_t hi) {
    const json* v = field(body, name);
    if (!v) return std::nullopt;
    // 3.0 is accepted as 3 (JSON has one number type); 3.5 is not an integer.
    if (v->is_number_float()) {
        const double d = v->get<double>();
        if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
            bad(name, std::string("'") + name + "' = " + v->dump() + " must be an integer in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
        return static_cast<int64_t>(d);
    }
    if (!v->is_number_integer()) bad(name, std::string("'") + name + "' must be an integer");
    if (v->is_number_unsigned()) {
        const uint64_t u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(hi))
            bad(name, std::string("'") + name + "' = " + v->dump() + " must be at most " + std::to_string(hi));
        return static_cast<int64_t>(u);
    }
    const int64_t i = v->get<int64_t>();
    if (i < lo || i > hi)
        bad(name, std::string("'") + name + "' = " + v->dump() + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return i;
}

bool get_bool(const json& body, const char* name, bool def) {
    const json* v = field(body, name);
    if (!v) return def;
    if (!v->is_boolean()) bad(name, std::string("'") + name + "' must be a boolean");
    return v->get<bool>();
}

std::string get_string(const json& body, const char* name, const std::string& def) {
    const json* v = field(body, name);
    if (!v) return def;
    if (!v->is_string()) bad(name, std::string("'") + name + "' must be a string");
    return v->get<std::string>();
}

void check_messages(const json& msgs) {
    if (!msgs.is_array()) bad("messages", "'messages' must be an array of {\"role\", \"content\"} objects");
    if (msgs.empty()) bad("messages", "'messages' must not be empty");
    for (size_t i = 0; i < msgs.size(); ++i) {
        const json& m = msgs[i];
        const std::string p = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) bad(p, "'" + p + "' must be an object");
        auto r = m.find("role");
        if (r == m.end() || !r->is_string()) bad(p + ".role", "'" + p + ".role' must be a string");
        auto c = m.find("content");
        if (c != m.end() && !c->is_null() && !c->is_string() && !c->is_array())
            bad(p + ".content", "'" + p + ".content' must be a string, an array of parts or null");
        if (c != m.end() && c->is_array())
            for (size_t k = 0; k < c->size(); ++k) {
                const json& part = (*c)[k];
                const std::string pp = p + ".content[" + std::to_string(k) + "]";
                if (!part.is_object()) bad(pp, "'" + pp + "' must be an object");
                auto t = part.find("type");
                if (t == part.end() || !t->is_string()) bad(pp + ".type", "'" + pp + ".type' must be a string");
                if (*t == "text") {
                    auto tx = part.find("text");
                    if (tx == part.end() || !tx->is_string()) bad(pp + ".text", "'" + pp + ".text' must be a string");
                } else {
                    bad(pp + ".type", "'" + pp + ".type' = " + t->dump() + ": only \"text\" parts are supported");
                }
            }
    }
}

} // namespace

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_body(const ApiError& e) {
    json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
    if (!e.param.empty()) err["param"] = e.param;
    if (!e.code.empty()) err["code"] = e.code;
    return dump(json{{"error", err}});
}

json parse_body(std::string_view body, int max_depth) {
    // Deeper documents are refused before parsing, so neither the parser nor a later dump()
    // recurses on them.
    if (json_util::nesting_depth(body) > static_cast<size_t>(std::max(max_depth, 0)))
        throw ApiError(400, "the JSON body nests deeper than " + std::to_string(max_depth) + " levels");
    json j = json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
    if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object");
    return j;
}

CompletionRequest parse_completion(const json& body, bool chat) {
    CompletionRequest r;
    r.chat = chat;
    r.model = get_string(body, "model", "");
    if (chat) {
        const json* m = field(body, "messages");
        if (!m) bad("messages", "'messages' is required");
        check_messages(*m);
        // Templates concatenate content as a string: text parts are joined into one string and
        // a null content becomes "", as OpenAI reads them.
        json msgs = *m;
        for (json& msg : msgs) {
            auto c = msg.find("content");
            if (c == msg.end() || c->is_null()) {
                msg["content"] = "";
            } else if (c->is_array()) {
                std::string text;
                for (const json& part : *c) text += part["text"].get<std::string>();
                *c = text;
            }
        }
        r.messages_json = dump(msgs);
    } else {
        const json* p = field(body, "prompt");
        if (!p) bad("prompt", "'prompt' is required");
        if (p->is_string()) {
            r.prompt = p->get<std::string>();
        } else if (p->is_array()) {
            if (p->empty()) bad("prompt", "'prompt' must not be an empty array");
            if ((*p)[0].is_string()) {
                if (p->size() != 1) bad("prompt", "'prompt': only one prompt per request is supported");
                r.prompt = (*p)[0].get<std::string>();
            } else {
                r.prompt_is_tokens = true;
                for (const json& t : *p) {
                    if (!t.is_number_integer()) bad("prompt", "'prompt' must be a string, [string] or an array of token ids");
                    const int64_t id = t.is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(t.get<uint64_t>(), INT32_MAX)) : t.get<int64_t>();
                    if (id < 0 || id > INT32_MAX) bad("prompt", "'prompt': token id " + t.dump() + " is out of range");
                    r.prompt_tokens.push_back(static_cast<int32_t>(id));
                }
            }
        } else {
            bad("prompt", "'prompt' must be a string, [string] or an array of token ids");
        }
        r.echo = get_bool(body, "echo", false);
    }
    if (auto n = get_int(body, "n", 1, 128); n && *n != 1) bad("n", "'n' = " + std::to_string(*n) + ": only n = 1 is supported");
    if (auto n = get_int(body, "best_of", 1, 128); n && *n != 1) bad("best_of", "'best_of': only 1 is supported");
    r.max_tokens = get_int(body, "max_tokens", 1, 1 << 30);
    if (chat) {
        if (auto m = get_int(body, "max_completion_tokens", 1, 1 << 30)) r.max_tokens = m;
    } else if (!r.max_tokens) {
        r.max_tokens = 16;  // OpenAI's default for /v1/completions
    }

    // OpenAI's defaults: plain sampling at temperature 1 over the whole vocabulary. top_k, min_p
    // and repeat_penalty are llama.cpp server extensions, off unless given.
    SamplerParams& sp = r.sampling;
    sp.temp = static_cast<float>(get_number(body, "temperature", 0, 2, 1));
    sp.top_p = static_cast<float>(get_number(body, "top_p", 0, 1, 1));
    if (sp.top_p == 0) {  // nothing survives a zero mass but the most likely token
        sp.top_p = 1;
        sp.top_k = 1;
    } else {
        sp.top_k = static_cast<int32_t>(get_int(body, "top_k", 0, 1 << 30).value_or(0));
    }
    sp.min_p = static_cast<float>(get_number(body, "min_p", 0, 1, 0));
    sp.presence_penalty = static_cast<float>(get_number(body, "presence_penalty", -2, 2, 0));
    sp.freq_penalty = static_cast<float>(get_number(body, "frequency_penalty", -2, 2, 0));
    sp.repeat_penalty = static_cast<float>(get_number(body, "repeat_penalty", 0.01, 10, 1));
    sp.penalty_last_n = static_cast<int32_t>(get_int(body, "repeat_last_n", 0, 4096).value_or(64));
    if (const json* s = field(body, "seed")) {
        if (!s->is_number_integer()) bad("seed", "'seed' must be an integer");
        sp.seed = s->is_number_unsigned() ? s->get<uint64_t>() : static_cast<uint64_t>(s->get<int64_t>());
        r.seed_given = true;
    } else {
        static thread_local std::random_device rd;
        sp.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    }

    if (const json* s = field(body, "stop")) {
        if (s->is_string()) {
            r.stop.push_back(s->get<std::string>());
        } else if (s->is_array()) {
            if (s->size() > 4) bad("stop", "'stop' takes at most 4 strings");
            for (const json& x : *s) {
                if (!x.is_string()) bad("stop", "'stop' must be a string or an array of strings");
                r.stop.push_back(x.get<std::string>());
            }
        } else {
            bad("stop", "'stop' must be a string or an array of strings");
        }
        for (const auto& x : r.stop)
            if (x.empty()) bad("stop", "'stop' strings must not be empty");
    }

    r.ignore_eos = get_bool(body, "ignore_eos", false);
    r.stream = get_bool(body, "stream", false);
    if (const json* so = field(body, "stream_options")) {
        if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
        if (!r.stream) bad("stream_options", "'stream_options' is only allowed with \"stream\": true");
        r.include_usage = get_bool(*so, "include_usage", false);
    }

    if (chat) {
        r.logprobs = get_bool(body, "logprobs", false);
        r.top_logprobs = static_cast<int>(get_int(body, "top_logprobs", 0, 20).value_or(0));
        if (field(body, "top_logprobs") && !r.logprobs) bad("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
    } else if (auto lp = get_int(body, "logprobs", 0, 5)) {
        r.logprobs = true;
        r.top_logprobs = static_cast<int>(*lp);
    }
    return r;
}

TokenizeRequest parse_tokenize(const json& body) {
    TokenizeRequest r;
    const json* c = field(body, "content");
    if (!c || !c->is_string()) bad("content", "'content' must be a string");
    r.content = c->get<std::string>();
    r.add_special = get_bool(body, "add_special", true);
    r.parse_special = get_bool(body, "parse_special", true);
    return r;
}

std::vector<int32_t> parse_detokenize(const json& body, int32_t n_vocab) {
    const json* t = field(body, "tokens");
    if (!t || !t->is_array()) bad("tokens", "'tokens' must be an array of token ids");
    std::vector<int32_t> ids;
    ids.reserve(t->size());
    for (const json& x : *t) {
        if (!x.is_number_integer()) bad("tokens", "'tokens' must be an array of token ids");
        const bool neg = x.is_number_integer() && !x.is_number_unsigned() && x.get<int64_t>() < 0;
        if (neg || x.get<uint64_t>() >= static_cast<uint64_t>(n_vocab))
            bad("tokens", "'tokens': id " + x.dump() + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        ids.push_back(static_cast<int32_t>(x.get<int64_t>()));
    }
    return ids;
}

void logprobs_of(const float* logits, int32_t n_vocab, int32_t id, int k, float* lp,
                 std::vector<std::pair<int32_t, float>>* top) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int32_t i = 0; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
    double sum = 0;
    for (int32_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
    const float lse = mx + static_cast<float>(std::log(sum));
    *lp = logits[id] - lse;
    top->clear();
    if (k <= 0) return;
    k = std::min(k, n_vocab);
    std::vector<int32_t> idx(static_cast<size_t>(n_vocab));
    for (int32_t i = 0; i < n_vocab; ++i) idx[static_cast<size_t>(i)] = i;
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
        return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    for (int i = 0; i < k; ++i) top->push_back({idx[static_cast<size_t>(i)], logits[idx[static_cast<size_t>(i)]] - lse});
}

namespace {
json bytes_of(const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
}
} // namespace

json chat_logprobs_json(const std::vector<TokenLogprob>& toks) {
    json content = json::array();
    for (const TokenLogprob& t : toks) {
        json top = json::array();
        for (const auto& [text, lp] : t.top) top.push_back({{"token", text}, {"logprob", lp}, {"bytes", bytes_of(text)}});
        content.push_back({{"token", t.text}, {"logprob", t.logprob}, {"bytes", bytes_of(t.text)}, {"top_logprobs", top}});
    }
    return json{{"content", content}};
}

json completion_logprobs_json(const std::vector<TokenLogprob>& toks, size_t text_offset) {
    json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
    size_t off = text_offset;
    for (const TokenLogprob& t : toks) {
        tokens.push_back(t.text);
        lps.push_back(t.logprob);
        json top = json::object();
        for (const auto& [text, lp] : t.top)
            if (!top.contains(text)) top[text] = lp;
        tops.push_back(top);
        offs.push_back(off);
        off += t.text.size();
    }
    return json{{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

} // namespace slm::serve
