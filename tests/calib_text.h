// calib_text.h - the calibration text the compression tests use (data/calib/, in the repository).
#pragma once

#include "test_util.h"

#include <fstream>
#include <string>

namespace slm::test {

inline std::string calib_text() { return source_dir() + "/data/calib/tinystories_train_1k.txt"; }

// The first 32 KB (whole lines) of the calibration text, enough for the few samples a test
// takes: tokenizing all 0.9 MB on every call would dominate the tests' time.
inline std::string small_calib() {
    static const std::string path = [] {
        const std::string text = read_text(calib_text());
        const std::string out = temp_dir() + "/calib32k.txt";
        std::ofstream(out) << text.substr(0, text.find('\n', 32768));
        return out;
    }();
    return path;
}

} // namespace slm::test
