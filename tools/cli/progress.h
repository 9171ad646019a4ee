// progress.h - a one-line progress bar on stderr with rate and ETA, drawn only when stderr is a
// terminal (logs and pipes stay clean). Used by the long-running commands (slm eval).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace slm::cli {

class ProgressBar {
public:
    // `what` names the unit counted ("chunks", "items"); total 0 = unknown.
    ProgressBar(std::string what, size_t total)
        : what_(std::move(what)), total_(total), enabled_(::isatty(2) != 0), t0_(Clock::now()) {}
    ~ProgressBar() { finish(); }

    void update(size_t done) {
        if (!enabled_) return;
        const auto now = Clock::now();
        if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;  // at most 10 redraws/s
        last_ = now;
        const double secs = std::chrono::duration<double>(now - t0_).count();
        const double rate = secs > 0 ? done / secs : 0;
        char line[256];
        if (total_ > 0) {
            const int width = 30;
            const int fill = static_cast<int>(width * static_cast<double>(done) / total_);
            std::string bar(static_cast<size_t>(fill), '#');
            bar.resize(width, '.');
            const double eta = rate > 0 ? (total_ - done) / rate : 0;
            std::snprintf(line, sizeof line, "\r[%s] %zu/%zu %s  %.1f/s  ETA %s ", bar.c_str(), done, total_,
                          what_.c_str(), rate, clock_text(eta).c_str());
        } else {
            std::snprintf(line, sizeof line, "\r%zu %s  %.1f/s  %s ", done, what_.c_str(), rate,
                          clock_text(secs).c_str());
        }
        std::fputs(line, stderr);
        drawn_ = true;
    }

    // Clears the line so the next output starts clean.
    void finish() {
        if (!enabled_ || !drawn_) return;
        std::fputs("\r\033[K", stderr);
        drawn_ = false;
    }

private:
    using Clock = std::chrono::steady_clock;
    static std::string clock_text(double s) {
        const long t = static_cast<long>(s + 0.5);
        char b[32];
        if (t >= 3600) std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
        else std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
        return b;
    }
    std::string what_;
    size_t total_;
    bool enabled_;
    bool drawn_ = false;
    Clock::time_point t0_, last_{};
};

} // namespace slm::cli
