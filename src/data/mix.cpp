// data/mix.cpp - `slm data mix`: weighted sampling of several sources into one stream, with
// upsampling (another shuffled pass) when a source runs out.
#include "data/text_util.h"

#include "slm/data.h"
#include "slm/error.h"

#include <algorithm>
#include <cmath>

namespace slm {

MixSource parse_mix_source(const std::string& spec) {
    const size_t colon = spec.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
        slm::fail("data mix: source '%s' is not PATH:WEIGHT (e.g. stories.txt:0.7)", spec.c_str());
    MixSource s;
    s.path = spec.substr(0, colon);
    const std::string w = spec.substr(colon + 1);
    size_t used = 0;
    try {
        s.weight = std::stod(w, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != w.size() || !std::isfinite(s.weight) || !(s.weight > 0))
        slm::fail("data mix: source '%s': weight '%s' is not a number > 0", spec.c_str(), w.c_str());
    return s;
}

MixResult mix_documents(const std::vector<DocumentSet>& sources, const std::vector<double>& weights, const MixOptions& o) {
    if (sources.empty()) slm::fail("data mix: no sources");
    if (weights.size() != sources.size())
        slm::fail("data mix: %zu weights for %zu sources", weights.size(), sources.size());
    if ((o.n_docs == 0) == (o.n_bytes == 0)) slm::fail("data mix: give exactly one of --docs N and --bytes N");
    // The output is held as (source, document) pairs: bound it before allocating.
    constexpr size_t kMaxDocs = size_t(1) << 31;
    if (o.n_docs > kMaxDocs) slm::fail("data mix: --docs %zu is more than %zu", o.n_docs, kMaxDocs);
    if (o.n_bytes > (size_t(1) << 40)) slm::fail("data mix: --bytes %zu is more than 1 TiB", o.n_bytes);
    // Probabilities: by documents, w_i; by bytes, w_i / mean bytes per document of source i, so
    // that the expected share of bytes from source i is w_i / sum w.
    std::vector<double> cum(sources.size());
    double total = 0;
    for (size_t i = 0; i < sources.size(); ++i) {
        if (sources[i].docs.empty()) slm::fail("data mix: %s: no documents", sources[i].path.c_str());
        if (sources[i].docs.size() > UINT32_MAX) slm::fail("data mix: %s: too many documents", sources[i].path.c_str());
        if (!std::isfinite(weights[i]) || !(weights[i] > 0))
            slm::fail("data mix: %s: weight %g is not > 0", sources[i].path.c_str(), weights[i]);
        double p = weights[i];
        if (o.by_bytes) p /= std::max(1.0, double(sources[i].n_bytes) / double(sources[i].docs.size()));
        total += p;
        cum[i] = total;
    }

    data::Rng rng(o.seed);
    struct Cursor {
        std::vector<uint32_t> order;
        size_t next = 0;
    };
    std::vector<Cursor> cur(sources.size());
    auto refill = [&](size_t s) {
        Cursor& c = cur[s];
        c.order.resize(sources[s].docs.size());
        for (size_t k = 0; k < c.order.size(); ++k) c.order[k] = static_cast<uint32_t>(k);
        if (o.shuffle) rng.shuffle(c.order);
        c.next = 0;
    };

    MixResult r;
    r.sources.resize(sources.size());
    for (;;) {
        if (o.n_docs && r.n_docs >= o.n_docs) break;
        if (o.n_bytes && r.n_bytes >= o.n_bytes) break;
        if (r.n_docs >= kMaxDocs) slm::fail("data mix: more than %zu documents needed for --bytes %zu", kMaxDocs, o.n_bytes);
        const double u = rng.uniform() * total;
        size_t s = 0;
        while (s + 1 < cum.size() && u >= cum[s]) ++s;
        if (cur[s].next >= cur[s].order.size()) refill(s);
        const uint32_t d = cur[s].order[cur[s].next++];
        const size_t bytes = sources[s].docs[d].text.size();
        r.picks.emplace_back(static_cast<uint32_t>(s), d);
        r.sources[s].n_docs++;
        r.sources[s].n_bytes += bytes;
        r.n_docs++;
        r.n_bytes += bytes;
    }
    for (size_t s = 0; s < sources.size(); ++s)
        r.sources[s].epochs = double(r.sources[s].n_docs) / double(sources[s].docs.size());
    return r;
}

} // namespace slm
