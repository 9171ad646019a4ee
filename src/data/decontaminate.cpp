// data/decontaminate.cpp - `slm data decontaminate`: drop training documents that share a word
// n-gram (13 by default, as GPT-3's contamination study, Brown et al. 2020, appendix C) with an
// evaluation set. Words are normalized_words (lowercase, punctuation removed), so the test ignores
// case and punctuation as GPT-3's did. N-grams are hashed to 64 bits: a false match needs a hash
// collision, about n_train * n_eval / 2^64 expected, negligible at these sizes.
// Evaluation files are read by the readers `slm eval` uses (src/formats/datasets.h).
#include "data/text_util.h"

#include "slm/data.h"
#include "slm/error.h"

#include "formats/datasets.h"

#include <algorithm>
#include <chrono>
#include <filesystem>

namespace slm {

namespace {

const char* const kKinds[] = {"text", "hellaswag", "arc", "mmlu", "winogrande", "gsm8k"};

std::string lower_ascii(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return s;
}

std::string str_field(const Doc& d, const char* key, const std::string& where) {
    auto it = d.find(key);
    if (it == d.end() || !it->is_string()) slm::fail("data decontaminate: %s: field '%s' missing or not a string", where.c_str(), key);
    return it->get<std::string>();
}

std::vector<std::string> str_list(const nlohmann::json& v, const char* key, const std::string& where) {
    if (!v.is_array()) slm::fail("data decontaminate: %s: field '%s' is not a list", where.c_str(), key);
    std::vector<std::string> out;
    for (const auto& e : v) {
        if (!e.is_string()) slm::fail("data decontaminate: %s: field '%s' holds a non-string", where.c_str(), key);
        out.push_back(e.get<std::string>());
    }
    return out;
}

} // namespace

EvalSetSpec parse_eval_set_spec(const std::string& spec) {
    EvalSetSpec s;
    const size_t colon = spec.find(':');
    if (colon != std::string::npos) {
        const std::string kind = spec.substr(0, colon);
        if (std::find(std::begin(kKinds), std::end(kKinds), kind) != std::end(kKinds)) {
            s.kind = kind;
            s.path = spec.substr(colon + 1);
        }
    }
    if (s.kind.empty() && colon != std::string::npos && colon > 0) {
        // "KIND:PATH" with a KIND we do not know (and no file of that name): say so rather than
        // failing later to open "KIND:PATH".
        const std::string kind = spec.substr(0, colon);
        const bool word = std::all_of(kind.begin(), kind.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
        std::error_code ec;
        if (word && !std::filesystem::exists(spec, ec))
            slm::fail("data decontaminate: eval set '%s': unknown kind '%s' (text, hellaswag, arc, mmlu, winogrande, gsm8k)",
                      spec.c_str(), kind.c_str());
    }
    if (s.kind.empty()) {
        // Guessed from the file name ("hellaswag_val_full.txt.bz2", "arc_easy_dev.jsonl"), else from a
        // parent or grandparent folder named exactly after the set ("mmlu/dev/anatomy_dev.csv").
        s.path = spec;
        s.kind = "text";
        const std::filesystem::path p(spec);
        const std::string file = lower_ascii(p.filename().string());
        const std::string parents[] = {lower_ascii(p.parent_path().filename().string()),
                                       lower_ascii(p.parent_path().parent_path().filename().string())};
        bool found = false;
        for (const char* k : {"hellaswag", "winogrande", "mmlu", "gsm8k", "arc"})
            if (file.find(k) != std::string::npos) {
                s.kind = k;
                found = true;
                break;
            }
        for (const std::string& dir : parents) {
            if (found) break;
            for (const char* k : {"hellaswag", "winogrande", "mmlu", "gsm8k", "arc"})
                if (dir == k) {
                    s.kind = k;
                    found = true;
                    break;
                }
        }
    }
    if (s.path.empty()) slm::fail("data decontaminate: eval set '%s' names no file", spec.c_str());
    std::string trimmed = s.path;
    while (trimmed.size() > 1 && trimmed.back() == '/') trimmed.pop_back();
    const std::filesystem::path p(trimmed);
    s.name = p.filename().string();
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec) && !p.parent_path().filename().empty())
        s.name = p.parent_path().filename().string() + "/" + s.name;  // "mmlu/dev", not "dev"
    if (s.name.empty()) s.name = s.path;
    return s;
}

std::vector<std::string> eval_set_texts(const EvalSetSpec& spec) {
    std::vector<std::string> out;
    if (spec.kind == "text") {
        DocFormatOptions fo;  // blank-line blocks, so n-grams do not run across paragraphs
        for (Document& d : parse_documents(read_text_maybe_bz2(spec.path), spec.path, fo).docs) out.push_back(std::move(d.text));
        return out;
    }
    std::vector<Doc> docs;
    if (spec.kind == "hellaswag") docs = load_hellaswag(spec.path);
    else if (spec.kind == "arc") docs = load_arc(spec.path);
    else if (spec.kind == "mmlu") docs = load_mmlu(spec.path);
    else if (spec.kind == "winogrande") docs = load_winogrande(spec.path);
    else if (spec.kind == "gsm8k") docs = load_gsm8k(spec.path);
    else slm::fail("data decontaminate: unknown eval set kind '%s' (text, hellaswag, arc, mmlu, winogrande, gsm8k)", spec.kind.c_str());
    for (size_t i = 0; i < docs.size(); ++i) {
        const Doc& d = docs[i];
        const std::string where = strprintf("%s: item %zu", spec.path.c_str(), i + 1);
        if (spec.kind == "hellaswag" || spec.kind == "mmlu" || spec.kind == "arc") {
            const std::string q = str_field(d, spec.kind == "hellaswag" ? "query" : "question", where);
            std::vector<std::string> choices;
            if (spec.kind == "arc") {
                auto c = d.find("choices");
                if (c == d.end() || !c->is_object() || !c->contains("text"))
                    slm::fail("data decontaminate: %s: field 'choices.text' missing", where.c_str());
                choices = str_list((*c)["text"], "choices.text", where);
            } else {
                auto c = d.find("choices");
                if (c == d.end()) slm::fail("data decontaminate: %s: field 'choices' missing", where.c_str());
                choices = str_list(*c, "choices", where);
            }
            out.push_back(q);
            for (const std::string& c : choices) out.push_back(q + " " + c);
        } else if (spec.kind == "winogrande") {
            const std::string s = str_field(d, "sentence", where);
            const size_t blank = s.find('_');
            for (const char* opt : {"option1", "option2"}) {
                std::string t = s;
                if (blank != std::string::npos) t.replace(blank, 1, str_field(d, opt, where));
                out.push_back(std::move(t));
            }
        } else {  // gsm8k
            out.push_back(str_field(d, "question", where));
            out.push_back(str_field(d, "answer", where));
        }
    }
    return out;
}

std::vector<bool> DecontaminateResult::kept() const {
    std::vector<bool> k(decisions.size());
    for (size_t i = 0; i < decisions.size(); ++i) k[i] = decisions[i].kept;
    return k;
}

DecontaminateResult decontaminate_documents(const std::vector<Document>& docs, const DecontaminateOptions& o) {
    if (o.ngram < 1 || o.ngram > 1000) slm::fail("data decontaminate: --ngram %d is not in 1..1000", o.ngram);
    if (o.min_shared < 1) slm::fail("data decontaminate: --min-shared must be >= 1");
    if (o.eval_sets.empty()) slm::fail("data decontaminate: no evaluation set given (--eval)");
    if (o.eval_sets.size() > 64) slm::fail("data decontaminate: %zu evaluation sets (at most 64)", o.eval_sets.size());
    const auto t0 = std::chrono::steady_clock::now();
    const size_t n = static_cast<size_t>(o.ngram);
    DecontaminateResult r;

    // n-gram hash -> bit mask of the eval sets holding it.
    data::HashMap64 index;
    for (size_t s = 0; s < o.eval_sets.size(); ++s) {
        const EvalSetSpec& spec = o.eval_sets[s];
        EvalSetSummary sum;
        sum.name = spec.name;
        sum.kind = spec.kind;
        data::HashMap64 own;
        for (const std::string& t : eval_set_texts(spec)) {
            ++sum.n_texts;
            for (uint64_t h : data::ngram_hashes(data::word_hashes(normalized_words(t)), n)) {
                index.at(h) |= uint64_t(1) << s;
                own.at(h) = 1;
            }
        }
        sum.n_ngrams = own.size();
        r.sets.push_back(sum);
    }
    const auto t1 = std::chrono::steady_clock::now();
    r.index_seconds = std::chrono::duration<double>(t1 - t0).count();

    r.decisions.resize(docs.size());
    std::vector<uint64_t> masks(docs.size(), 0);
    data::for_each_doc(docs.size(), o.n_threads, [&](size_t i) {
        DecontaminateDecision& d = r.decisions[i];
        const std::vector<std::string> w = normalized_words(docs[i].text);
        const std::vector<uint64_t> g = data::ngram_hashes(data::word_hashes(w), n);
        for (size_t k = 0; k < g.size(); ++k) {
            const uint64_t sets = index.get(g[k]);
            if (!sets) continue;
            if (d.n_shared == 0) {
                for (size_t j = 0; j < n; ++j) d.ngram += (j ? " " : "") + w[k + j];
            }
            ++d.n_shared;
            masks[i] |= sets;
        }
    });
    for (size_t i = 0; i < docs.size(); ++i) {
        DecontaminateDecision& d = r.decisions[i];
        const uint64_t mask = masks[i];
        if (mask && d.n_shared >= o.min_shared) {
            d.kept = false;
            for (size_t s = 0; s < o.eval_sets.size(); ++s)
                if (mask >> s & 1) {
                    d.sets.push_back(s);
                    ++r.sets[s].n_docs_matched;
                }
            ++r.n_dropped;
            r.bytes_dropped += docs[i].text.size();
        } else {
            ++r.n_kept;
            r.bytes_kept += docs[i].text.size();
        }
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    return r;
}

} // namespace slm
