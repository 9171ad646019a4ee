// serve_load - a bounded load test of a running `slm serve` (loopback): for each number of
// concurrent clients, every client sends streaming /v1/completions requests back to back until
// the level's requests are done; prints requests/s, generated tokens/s, latency p50/p99 and time
// to first token p50/p99 as a Markdown table, and the throughput against one client.
//
//   slm serve -m model.gguf --parallel 8 --port 8080 &
//   serve_load --port 8080 --clients 1,4,8 --requests 32 --max-tokens 64
//
// Requests use "ignore_eos" so every answer has exactly --max-tokens tokens, and differ by their
// seed (temperature 0.8) so no two are the same computation; --temperature 0 makes them greedy
// (speculative decoding's best case).
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Sample {
    double latency_s = 0, ttft_s = 0;
    int tokens = 0;
    bool ok = false;
};

double pct(std::vector<double> v, double p) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
    return v[i];
}

Sample one_request(httplib::Client& cli, const std::string& prompt, int max_tokens, uint64_t seed, const std::string& key,
                   double temp) {
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", prompt},     {"max_tokens", max_tokens}, {"temperature", temp},
                    {"seed", seed},         {"ignore_eos", true},       {"stream", true},
                    {"stream_options", {{"include_usage", true}}}}
                   .dump();
    req.set_header("Content-Type", "application/json");
    if (!key.empty()) req.set_header("Authorization", "Bearer " + key);
    Sample s;
    const auto t0 = Clock::now();
    bool first = true;
    std::string raw;
    req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
        if (first) {
            first = false;
            s.ttft_s = std::chrono::duration<double>(Clock::now() - t0).count();
        }
        raw.append(d, n);
        return true;
    };
    httplib::Result r = cli.send(req);
    s.latency_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!r || r->status != 200) return s;
    // The usage chunk is the last before [DONE].
    size_t p = raw.rfind("\"usage\":{");
    if (p == std::string::npos) return s;
    size_t q = raw.find("\"completion_tokens\":", p);
    if (q == std::string::npos) return s;
    s.tokens = std::atoi(raw.c_str() + q + 20);
    s.ok = true;
    return s;
}

} // namespace

int main(int argc, char** argv) {
    std::string host = "127.0.0.1", clients_s = "1,4,8", prompt = "Once upon a time, in a small village, there lived", key;
    int port = 8080, requests = 32, max_tokens = 64;
    double temp = 0.8;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "serve_load: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--host") host = next();
        else if (a == "--port") port = std::atoi(next().c_str());
        else if (a == "--clients") clients_s = next();
        else if (a == "--requests") requests = std::atoi(next().c_str());
        else if (a == "--max-tokens") max_tokens = std::atoi(next().c_str());
        else if (a == "--prompt") prompt = next();
        else if (a == "--api-key") key = next();
        else if (a == "--temperature") temp = std::atof(next().c_str());
        else {
            std::fprintf(stderr,
                         "usage: serve_load [--host H] [--port P] [--clients 1,4,8] [--requests N per level] "
                         "[--max-tokens T] [--prompt TEXT] [--api-key KEY] [--temperature T]\n");
            return 2;
        }
    }
    if (requests < 1 || max_tokens < 1 || port <= 0) {
        std::fprintf(stderr, "serve_load: --requests, --max-tokens and --port must be positive\n");
        return 2;
    }
    std::vector<int> levels;
    std::stringstream ss(clients_s);
    for (std::string t; std::getline(ss, t, ',');)
        if (std::atoi(t.c_str()) > 0) levels.push_back(std::atoi(t.c_str()));

    auto client = [&] {
        auto c = std::make_unique<httplib::Client>(host, port);
        c->set_read_timeout(600, 0);
        c->set_keep_alive(true);  // one connection per client, as an SDK keeps it
        c->set_tcp_nodelay(true);
        return c;
    };
    // Warm-up (page in the model, first-touch the caches).
    one_request(*client(), prompt, 4, 1, key, temp);

    std::printf("| clients | requests | failed | requests/s | gen tokens/s | latency p50 (s) | latency p99 (s) | TTFT p50 (ms) | TTFT p99 (ms) |\n");
    std::printf("|--------:|---------:|-------:|-----------:|-------------:|----------------:|----------------:|--------------:|--------------:|\n");
    double tps_1 = 0;
    std::vector<std::pair<int, double>> tps;
    for (int n : levels) {
        std::atomic<int> next{0};
        std::mutex mu;
        std::vector<Sample> samples;
        const auto t0 = Clock::now();
        std::vector<std::thread> th;
        for (int c = 0; c < n; ++c)
            th.emplace_back([&] {
                auto cli = client();
                for (int k; (k = next++) < requests;) {
                    Sample s = one_request(*cli, prompt, max_tokens, 1000 + static_cast<uint64_t>(k), key, temp);
                    std::lock_guard<std::mutex> lk(mu);
                    samples.push_back(s);
                }
            });
        for (auto& t : th) t.join();
        const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
        std::vector<double> lat, ttft;
        long tokens = 0;
        int failed = 0;
        for (const Sample& s : samples) {
            if (!s.ok) {
                ++failed;
                continue;
            }
            lat.push_back(s.latency_s);
            ttft.push_back(s.ttft_s * 1000);
            tokens += s.tokens;
        }
        const double rps = static_cast<double>(lat.size()) / wall, t_s = static_cast<double>(tokens) / wall;
        if (n == 1) tps_1 = t_s;
        tps.push_back({n, t_s});
        std::printf("| %d | %d | %d | %.2f | %.1f | %.3f | %.3f | %.1f | %.1f |\n", n, requests, failed, rps, t_s, pct(lat, 0.5),
                    pct(lat, 0.99), pct(ttft, 0.5), pct(ttft, 0.99));
        std::fflush(stdout);
    }
    if (tps_1 > 0)
        for (const auto& [n, t] : tps)
            if (n > 1) std::printf("\nthroughput at %d clients / 1 client: %.2fx\n", n, t / tps_1);
    return 0;
}
