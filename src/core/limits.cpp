#include "slm/limits.h"

#include "slm/error.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <limits>

namespace slm {

namespace {

Limits g_limits;

struct Field {
    const char* name;
    uint64_t Limits::*u64;
    uint32_t Limits::*u32;
    uint64_t lo, hi;
    const char* what;
};

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

const Field kFields[] = {
    {"max_context", nullptr, &Limits::max_context, 1, 1u << 24, "positions per sequence a session may allocate"},
    {"max_metadata_bytes", &Limits::max_metadata_bytes, nullptr, 1024, kMax,
     "GGUF metadata section, safetensors header, each JSON side file"},
    {"max_array_elements", &Limits::max_array_elements, nullptr, 1, kMax, "elements of one GGUF metadata array"},
    {"max_tensors", &Limits::max_tensors, nullptr, 1, kMax, "tensors in one model file"},
    {"max_tensor_bytes", &Limits::max_tensor_bytes, nullptr, 1, kMax, "bytes of one tensor"},
    {"max_model_bytes", &Limits::max_model_bytes, nullptr, 1, kMax, "bytes of all tensors of one model file"},
    {"template_max_depth", &Limits::template_max_depth, nullptr, 1, 100000,
     "template macro-call and recursive-loop nesting"},
    {"template_max_iterations", &Limits::template_max_iterations, nullptr, 1, kMax,
     "template loop iterations plus macro calls per render"},
    {"template_max_output_bytes", &Limits::template_max_output_bytes, nullptr, 1, kMax,
     "bytes a template renders, and of any string built on the way"},
    {"template_max_work", &Limits::template_max_work, nullptr, 1, kMax,
     "template expression nodes evaluated plus bytes and items built"},
};

const Field& field(std::string_view name) {
    for (const Field& f : kFields)
        if (name == f.name) return f;
    std::string known;
    for (const Field& f : kFields) known += std::string(known.empty() ? "" : ", ") + f.name;
    fail("limits: unknown limit '%.*s' (known: %s)", static_cast<int>(name.size()), name.data(), known.c_str());
}

uint64_t get(const Limits& l, const Field& f) { return f.u64 ? l.*f.u64 : l.*f.u32; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

} // namespace

const Limits& limits() { return g_limits; }

void set_limits(const Limits& l) { g_limits = l; }

void set_limit(std::string_view name, std::string_view value) {
    const Field& f = field(name);
    const std::string v(trim(value));
    auto bad = [&](const char* why) {
        fail("limits: %s = '%s': %s (an integer from %llu to %llu, with an optional K, M, G or T suffix)", f.name,
             v.c_str(), why, static_cast<unsigned long long>(f.lo), static_cast<unsigned long long>(f.hi));
    };
    if (v.empty() || !std::isdigit(static_cast<unsigned char>(v[0]))) bad("not a number");
    errno = 0;
    char* end = nullptr;
    unsigned long long x = std::strtoull(v.c_str(), &end, 10);
    if (errno == ERANGE) bad("too large");
    int shift = 0;
    if (*end != '\0') {
        switch (std::toupper(static_cast<unsigned char>(*end))) {
            case 'K': shift = 10; break;
            case 'M': shift = 20; break;
            case 'G': shift = 30; break;
            case 'T': shift = 40; break;
            default: bad("not a number");
        }
        // 64M, 64MB, 64Mi and 64MiB all mean 64 << 20.
        const char* rest = end + 1;
        if (*rest == 'i' || *rest == 'I') ++rest;
        if (*rest == 'b' || *rest == 'B') ++rest;
        if (*rest != '\0') bad("not a number");
        if (x > (kMax >> shift)) bad("too large");
        x <<= shift;
    }
    if (x < f.lo || x > f.hi) bad("out of range");
    if (f.u64) g_limits.*f.u64 = x;
    else g_limits.*f.u32 = static_cast<uint32_t>(x);
}

void set_limits_from_string(std::string_view spec, std::string_view origin) {
    while (!spec.empty()) {
        const size_t comma = spec.find(',');
        std::string_view item = trim(spec.substr(0, comma));
        spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
        if (item.empty()) continue;
        const size_t eq = item.find('=');
        if (eq == std::string_view::npos)
            fail("limits: %.*s: '%.*s' is not NAME=VALUE", static_cast<int>(origin.size()), origin.data(),
                 static_cast<int>(item.size()), item.data());
        try {
            set_limit(trim(item.substr(0, eq)), item.substr(eq + 1));
        } catch (const Error& e) {
            fail("%s (from %.*s)", e.what(), static_cast<int>(origin.size()), origin.data());
        }
    }
}

std::vector<LimitInfo> describe_limits() {
    static const Limits defaults;
    std::vector<LimitInfo> out;
    for (const Field& f : kFields) out.push_back({f.name, get(g_limits, f), get(defaults, f), f.what});
    return out;
}

std::string limit_hint(std::string_view name, uint64_t value) {
    return strprintf("the limit %.*s = %llu (raise it with --limit %.*s=N or SLM_LIMITS; see SECURITY.md)",
                     static_cast<int>(name.size()), name.data(), static_cast<unsigned long long>(value),
                     static_cast<int>(name.size()), name.data());
}

} // namespace slm
