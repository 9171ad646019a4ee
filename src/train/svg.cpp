// svg.cpp - the loss curve as a standalone SVG (no plotting library): training loss per step,
// validation loss where it was computed, ticked and labelled axes, a legend.
#include "train/trainer_internal.h"

#include "slm/error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace slm::train_impl {

namespace {

std::string xml_escape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += c;
        }
    }
    return out;
}

// Tick positions covering [lo, hi] at a 1-2-5 step giving about `want` intervals.
std::vector<double> nice_ticks(double lo, double hi, int want, double* step_out) {
    const double range = hi - lo;
    const double raw = range / want;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * mag >= raw) {
            step = m * mag;
            break;
        }
    std::vector<double> t;
    for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
        t.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
    *step_out = step;
    return t;
}

std::string tick_label(double v, double step) {
    // Enough decimals to tell neighbouring ticks apart.
    const int dec = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
    if (std::fabs(v) >= 1e6) return strprintf("%.3g", v);
    return strprintf("%.*f", dec, v);
}

} // namespace

std::string loss_curve_svg(const std::vector<TrainPoint>& curve, const std::string& title) {
    constexpr double W = 800, H = 480, L = 72, R = 24, T = 44, B = 56;
    const double pw = W - L - R, ph = H - T - B;
    double x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
    bool any = false;
    for (const TrainPoint& p : curve) {
        x_hi = std::max(x_hi, static_cast<double>(p.step));
        for (float v : {p.loss, p.val_loss}) {
            if (!std::isfinite(v)) continue;
            if (!any) y_lo = y_hi = v;
            y_lo = std::min(y_lo, static_cast<double>(v));
            y_hi = std::max(y_hi, static_cast<double>(v));
            any = true;
        }
    }
    if (y_hi - y_lo < 1e-6) {
        y_lo -= 0.5;
        y_hi += 0.5;
    }
    double xs = 1, ys = 1;
    const std::vector<double> xt = nice_ticks(x_lo, x_hi, 8, &xs);
    std::vector<double> yt = nice_ticks(y_lo, y_hi, 6, &ys);
    // Axes start and end on ticks, so the curve never leaves the frame.
    y_lo = std::min(y_lo, std::floor(y_lo / ys) * ys);
    y_hi = std::max(y_hi, std::ceil(y_hi / ys) * ys);
    yt = nice_ticks(y_lo, y_hi, 6, &ys);
    x_hi = std::max(x_hi, xt.empty() ? x_hi : std::ceil(x_hi / xs) * xs);
    auto px = [&](double x) { return L + (x - x_lo) / (x_hi - x_lo) * pw; };
    auto py = [&](double y) { return T + (1.0 - (y - y_lo) / (y_hi - y_lo)) * ph; };

    std::string s;
    s += strprintf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                   "font-family=\"sans-serif\" font-size=\"12\">\n",
                   W, H, W, H);
    s += strprintf("<rect width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H);
    s += strprintf("<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n", L + pw / 2,
                   xml_escape(title).c_str());
    // Grid and ticks.
    for (double v : xt) {
        const double x = px(v);
        s += strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", x, T, x, T + ph);
        s += strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x, T + ph, x, T + ph + 5);
        s += strprintf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x, T + ph + 19,
                       tick_label(v, xs).c_str());
    }
    for (double v : yt) {
        const double y = py(v);
        s += strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>\n", L, y, L + pw, y);
        s += strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L - 5, y, L, y);
        s += strprintf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", L - 8, y + 4,
                       tick_label(v, ys).c_str());
    }
    s += strprintf("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", L, T,
                   pw, ph);
    s += strprintf("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n", L + pw / 2, H - 12);
    s += strprintf("<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 16 %.1f)\">loss "
                   "(cross-entropy, nats)</text>\n",
                   T + ph / 2, T + ph / 2);
    // Training loss: at most ~2000 vertices (every k-th step) so long runs stay small files.
    const size_t k = std::max<size_t>(1, (curve.size() + 1999) / 2000);
    std::string pts;
    for (size_t i = 0; i < curve.size(); i += k)
        if (std::isfinite(curve[i].loss)) pts += strprintf("%.1f,%.1f ", px(curve[i].step), py(curve[i].loss));
    if (!curve.empty() && (curve.size() - 1) % k != 0 && std::isfinite(curve.back().loss))
        pts += strprintf("%.1f,%.1f ", px(curve.back().step), py(curve.back().loss));
    if (!pts.empty())
        s += "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"" + pts + "\"/>\n";
    std::string vpts, dots;
    for (const TrainPoint& p : curve) {
        if (!std::isfinite(p.val_loss)) continue;
        vpts += strprintf("%.1f,%.1f ", px(p.step), py(p.val_loss));
        dots += strprintf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#ff7f0e\"/>\n", px(p.step), py(p.val_loss));
    }
    if (!vpts.empty()) s += "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\" points=\"" + vpts + "\"/>\n" + dots;
    // Legend.
    const double lx = L + pw - 150, ly = T + 12;
    s += strprintf("<rect x=\"%.1f\" y=\"%.1f\" width=\"140\" height=\"44\" fill=\"white\" stroke=\"#999\"/>\n", lx, ly);
    s += strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n",
                   lx + 8, ly + 15, lx + 32, ly + 15);
    s += strprintf("<text x=\"%.1f\" y=\"%.1f\">train loss</text>\n", lx + 40, ly + 19);
    s += strprintf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>\n",
                   lx + 8, ly + 33, lx + 32, ly + 33);
    s += strprintf("<text x=\"%.1f\" y=\"%.1f\">validation loss</text>\n", lx + 40, ly + 37);
    s += "</svg>\n";
    return s;
}

void write_file_atomic(const std::string& path, const std::string& content) {
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) fail("train: cannot write %s: %s", tmp.c_str(), std::strerror(errno));
        f.write(content.data(), static_cast<std::streamsize>(content.size()));
        f.flush();
        if (!f) fail("train: write to %s failed: %s", tmp.c_str(), std::strerror(errno));
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        fail("train: cannot rename %s to %s", tmp.c_str(), path.c_str());
    }
}

} // namespace slm::train_impl
