// stop_filter.cpp - see stop_filter.h.
#include "runtime/stop_filter.h"

#include <algorithm>

namespace slm {

std::string StopFilter::push(std::string_view text) {
    pending_ += text;
    if (stops_.empty()) return flush();
    size_t cut = std::string::npos;
    for (const auto& s : stops_) cut = std::min(cut, pending_.find(s));
    if (cut != std::string::npos) {
        hit_ = true;
        std::string out = pending_.substr(0, cut);
        pending_.clear();
        return out;
    }
    size_t keep = 0;  // the longest suffix of the pending text that begins some stop string
    for (const auto& s : stops_)
        for (size_t k = std::min(s.size() - 1, pending_.size()); k > keep; --k)
            if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
                keep = k;
                break;
            }
    std::string out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
}

std::string StopFilter::flush() {
    std::string out;
    out.swap(pending_);
    return out;
}

} // namespace slm
