// StopFilter (src/runtime/stop_filter.h): stop strings over text that arrives in pieces.
#include "runtime/stop_filter.h"

#include <gtest/gtest.h>

#include <random>

using namespace slm;

namespace {

// Feeds `text` in pieces cut at the given sizes; returns what came out and whether a stop hit.
std::pair<std::string, bool> feed(const std::vector<std::string>& stops, const std::string& text, std::mt19937& rng) {
    StopFilter f(stops);
    std::string out;
    size_t i = 0;
    while (i < text.size() && !f.hit()) {
        const size_t n = std::uniform_int_distribution<size_t>(1, 4)(rng);
        out += f.push(std::string_view(text).substr(i, n));
        i += n;
    }
    out += f.flush();
    return {out, f.hit()};
}

TEST(StopFilter, CutsAtTheFirstStopWhateverThePieces) {
    std::mt19937 rng(7);
    for (int rep = 0; rep < 200; ++rep) {
        auto [a, hit_a] = feed({"The End", "end."}, "Tom ran home. The dog ran after him. The End. More text", rng);
        EXPECT_TRUE(hit_a);
        EXPECT_EQ(a, "Tom ran home. The dog ran after him. ");
        auto [b, hit_b] = feed({"zzz", "him."}, "Tom ran home. The dog ran after him. The End.", rng);
        EXPECT_TRUE(hit_b);
        EXPECT_EQ(b, "Tom ran home. The dog ran after ");
        // A tail that only looks like the start of a stop string comes out at the end.
        auto [c, hit_c] = feed({"The Endless"}, "It was The End", rng);
        EXPECT_FALSE(hit_c);
        EXPECT_EQ(c, "It was The End");
    }
}

TEST(StopFilter, HoldsBackOnlyWhatCouldStillMatch) {
    StopFilter f({"<|end|>"});
    EXPECT_EQ(f.push("Hello <|"), "Hello ");  // "<|" may begin the stop string
    EXPECT_EQ(f.push("x"), "<|x");            // it did not
    EXPECT_EQ(f.push(" world<|en"), " world");
    EXPECT_EQ(f.push("d|> tail"), "");
    EXPECT_TRUE(f.hit());
    EXPECT_EQ(f.flush(), "");
    StopFilter none;
    EXPECT_EQ(none.push("anything <|"), "anything <|");
    EXPECT_FALSE(none.hit());
}

} // namespace
