// stop_filter.h - stop strings over streamed text, shared by slm::generate, speculative decoding
// and slm serve's scheduler.
//
// Text arrives in pieces (whole UTF-8 characters). push() returns the part that is final: it
// holds back the longest tail that could still grow into a stop string, and at the first stop
// string found it returns the text before it, sets hit() and drops the rest.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace slm {

class StopFilter {
public:
    StopFilter() = default;
    // Stop strings must not be empty (callers check it: an empty one would match at once).
    explicit StopFilter(std::vector<std::string> stops) : stops_(std::move(stops)) {}

    std::string push(std::string_view text);
    // The held-back tail, once no more text will come (nothing after a hit).
    std::string flush();
    bool hit() const { return hit_; }

private:
    std::vector<std::string> stops_;
    std::string pending_;
    bool hit_ = false;
};

} // namespace slm
