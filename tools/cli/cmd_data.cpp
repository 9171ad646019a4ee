// slm data: corpus tools - filter, dedup, decontaminate, mix, synth (the library is slm/data.h).
// Each prints what it kept, what it dropped and why; output files are written atomically.
#include "commands.h"

#include "slm/data.h"
#include "slm/error.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace slm::cli {

namespace {

struct FormatFlags {
    std::string format = "blank", doc_sep, field = "text";
    bool skip_invalid_utf8 = false;

    DocFormatOptions options() const {
        DocFormatOptions o;
        o.format = parse_doc_format(format);
        if (!doc_sep.empty()) {
            o.format = DocFormat::Separator;
            o.separator = doc_sep;
        }
        o.jsonl_field = field;
        o.skip_invalid_utf8 = skip_invalid_utf8;
        return o;
    }
};

void add_format_flags(CLI::App* sub, FormatFlags& f) {
    sub->add_option("--format", f.format,
                    "Document layout of input and output: blank (documents separated by blank lines), lines "
                    "(one per line), jsonl (one JSON object per line), sep (see --doc-sep)")
        ->capture_default_str();
    sub->add_option("--doc-sep", f.doc_sep, "Documents end at a line equal to this (e.g. '<|endoftext|>'); implies --format sep");
    sub->add_option("--field", f.field, "JSONL: the field holding the text")->capture_default_str();
    sub->add_flag("--skip-invalid-utf8", f.skip_invalid_utf8,
                  "Skip (and count) documents with invalid UTF-8 instead of stopping with an error");
}

// The first `n` code points of a text on one line, for listings.
std::string snippet(std::string_view t, size_t n = 60) {
    std::string out;
    size_t cps = 0;
    for (size_t i = 0; i < t.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(t[i]);
        if ((c & 0xC0) != 0x80 && cps++ == n) {
            out += "...";
            break;
        }
        out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : static_cast<char>(c);
    }
    return out;
}

double mb_per_s(size_t bytes, double seconds) { return seconds > 0 ? bytes / 1e6 / seconds : 0; }

DocumentSet read_input(const std::string& path, const DocFormatOptions& fo) {
    DocumentSet in = read_documents(path, fo);
    std::printf("read %s: %zu documents, %zu bytes (%s layout)", path.c_str(), in.docs.size(), in.n_bytes,
                doc_format_name(fo.format));
    if (in.n_invalid_utf8) std::printf(", %zu skipped for invalid UTF-8", in.n_invalid_utf8);
    std::printf("\n");
    return in;
}

void print_totals(size_t n_kept, size_t n_dropped, size_t bytes_kept, size_t bytes_dropped) {
    const size_t n = n_kept + n_dropped, b = bytes_kept + bytes_dropped;
    std::printf("kept    %8zu documents (%5.1f%%) %12zu bytes (%5.1f%%)\n", n_kept, n ? 100.0 * n_kept / n : 0.0, bytes_kept,
                b ? 100.0 * bytes_kept / b : 0.0);
    std::printf("dropped %8zu documents (%5.1f%%) %12zu bytes (%5.1f%%)\n", n_dropped, n ? 100.0 * n_dropped / n : 0.0,
                bytes_dropped, b ? 100.0 * bytes_dropped / b : 0.0);
}

void write_output(const std::string& out, const DocumentSet& in, const std::vector<bool>& keep, const DocFormatOptions& fo) {
    if (out.empty()) return;
    write_documents(out, kept_texts(in.docs, keep), fo);
    std::printf("wrote %s\n", out.c_str());
}

// ---- filter ---------------------------------------------------------------------------------

struct FilterFlags {
    FormatFlags fmt;
    std::string input, output, report, ppl_model;
    std::vector<std::string> rules;
    bool list_rules = false;
    double max_ppl = 0, keep_ppl_fraction = 0;
    uint32_t ppl_ctx = 512;
    int threads = 0;
};

void run_filter(const FilterFlags& f) {
    FilterOptions o;
    for (const std::string& r : f.rules) set_filter_rule(o.rules, r);
    if (f.list_rules) {
        std::printf("%-20s %-4s %10s  %s\n", "rule", "drop", "threshold", "what");
        for (const FilterRule& r : o.rules)
            std::printf("%-20s %-4s %10g  %s%s\n", r.name.c_str(), r.is_min ? "<" : ">", r.threshold, r.what.c_str(),
                        r.enabled ? "" : " [off]");
        return;
    }
    if (f.input.empty()) fail("data filter: no input file");
    o.ppl_model = f.ppl_model;
    o.max_ppl = f.max_ppl;
    o.keep_ppl_fraction = f.keep_ppl_fraction;
    o.ppl_ctx = f.ppl_ctx;
    o.n_threads = f.threads;
    const DocFormatOptions fo = f.fmt.options();
    const DocumentSet in = read_input(f.input, fo);
    const FilterResult r = filter_documents(in.docs, o);
    std::printf("%-20s %-4s %10s %10s %10s\n", "rule", "drop", "threshold", "failing", "dropped");
    for (size_t k = 0; k < o.rules.size(); ++k) {
        const FilterRule& rule = o.rules[k];
        if (!rule.enabled) {
            std::printf("%-20s %-4s %10s %10s %10s\n", rule.name.c_str(), rule.is_min ? "<" : ">", "off", "-", "-");
            continue;
        }
        std::printf("%-20s %-4s %10g %10zu %10zu\n", rule.name.c_str(), rule.is_min ? "<" : ">", rule.threshold, r.n_failed[k],
                    r.n_reason[k]);
    }
    if (!o.ppl_model.empty())
        std::printf("%-20s %-4s %10.4g %10zu %10zu   (model %s)\n", "ppl", ">", r.ppl_threshold, r.n_ppl_dropped,
                    r.n_ppl_dropped, o.ppl_model.c_str());
    std::printf("('failing': documents failing the rule; 'dropped': documents for which it was the first failing rule)\n");
    print_totals(r.n_kept, r.n_dropped, r.bytes_kept, r.bytes_dropped);
    std::printf("time %.2f s, %.2f MB/s\n", r.seconds, mb_per_s(in.n_bytes, r.seconds));
    write_output(f.output, in, r.kept(), fo);
    if (!f.report.empty()) {
        write_text_atomic(f.report, filter_report_jsonl(in.docs, o, r));
        std::printf("wrote report %s\n", f.report.c_str());
    }
}

// ---- dedup ----------------------------------------------------------------------------------

struct DedupFlags {
    FormatFlags fmt;
    std::string input, output, report;
    DedupOptions o;
    bool no_exact = false, no_near = false;
    size_t show = 10;
};

void run_dedup(DedupFlags f) {
    f.o.exact = !f.no_exact;
    f.o.near = !f.no_near;
    if (!f.o.exact && !f.o.near) fail("data dedup: --no-exact and --no-near leave nothing to do");
    const DocFormatOptions fo = f.fmt.options();
    const DocumentSet in = read_input(f.input, fo);
    const DedupResult r = dedup_documents(in.docs, f.o);
    std::printf("exact duplicates %zu, near duplicates %zu (MinHash %d perms, %d bands x %d rows, %d-word shingles, "
                "Jaccard >= %g; %zu candidate pairs checked)\n",
                r.n_exact, r.n_near, f.o.n_perm, f.o.n_bands, f.o.n_perm / f.o.n_bands, f.o.ngram, f.o.threshold,
                r.n_candidates);
    std::printf("%zu clusters (kept document: its duplicates)\n", r.clusters.size());
    for (size_t c = 0; c < r.clusters.size() && c < f.show; ++c) {
        const DedupCluster& cl = r.clusters[c];
        std::printf("  #%zu (line %zu) x%zu: %s\n", cl.kept, in.docs[cl.kept].line, cl.dropped.size() + 1,
                    snippet(in.docs[cl.kept].text).c_str());
        for (size_t k = 0; k < cl.dropped.size() && k < 3; ++k) {
            const DedupDecision& d = r.decisions[cl.dropped[k]];
            std::printf("    #%zu (line %zu) %s J=%.3f: %s\n", cl.dropped[k], in.docs[cl.dropped[k]].line,
                        d.exact ? "exact" : "near", d.jaccard, snippet(in.docs[cl.dropped[k]].text).c_str());
        }
        if (cl.dropped.size() > 3) std::printf("    ... %zu more\n", cl.dropped.size() - 3);
    }
    if (r.clusters.size() > f.show) std::printf("  ... %zu more clusters (--show N)\n", r.clusters.size() - f.show);
    print_totals(r.n_kept, r.n_exact + r.n_near, r.bytes_kept, r.bytes_dropped);
    std::printf("time %.2f s, %.2f MB/s\n", r.seconds, mb_per_s(in.n_bytes, r.seconds));
    write_output(f.output, in, r.kept(), fo);
    if (!f.report.empty()) {
        std::string out;
        for (size_t i = 0; i < r.decisions.size(); ++i) {
            const DedupDecision& d = r.decisions[i];
            nlohmann::json j{{"index", i}, {"line", in.docs[i].line}, {"kept", d.kept}};
            if (!d.kept) {
                j["dup_of"] = d.dup_of;
                j["kind"] = d.exact ? "exact" : "near";
                j["jaccard"] = d.jaccard;
            }
            out += j.dump() + "\n";
        }
        write_text_atomic(f.report, out);
        std::printf("wrote report %s\n", f.report.c_str());
    }
}

// ---- decontaminate --------------------------------------------------------------------------

struct DecontFlags {
    FormatFlags fmt;
    std::string input, output, report;
    std::vector<std::string> evals;
    int ngram = 13, threads = 0;
    size_t min_shared = 1, show = 10;
};

void run_decontaminate(const DecontFlags& f) {
    DecontaminateOptions o;
    o.ngram = f.ngram;
    o.min_shared = f.min_shared;
    o.n_threads = f.threads;
    for (const std::string& e : f.evals) o.eval_sets.push_back(parse_eval_set_spec(e));
    const DocFormatOptions fo = f.fmt.options();
    const DocumentSet in = read_input(f.input, fo);
    const DecontaminateResult r = decontaminate_documents(in.docs, o);
    std::printf("%-32s %-10s %8s %10s %14s\n", "eval set", "kind", "texts", "n-grams", "docs matched");
    for (const EvalSetSummary& s : r.sets)
        std::printf("%-32s %-10s %8zu %10zu %14zu\n", s.name.c_str(), s.kind.c_str(), s.n_texts, s.n_ngrams, s.n_docs_matched);
    size_t shown = 0;
    for (size_t i = 0; i < r.decisions.size(); ++i) {
        const DecontaminateDecision& d = r.decisions[i];
        if (d.kept) continue;
        if (shown++ >= f.show) continue;
        std::string sets;
        for (size_t s : d.sets) sets += (sets.empty() ? "" : ",") + r.sets[s].name;
        std::printf("  dropped #%zu (line %zu) [%s] %zu shared %d-grams, e.g. \"%s\"\n", i, in.docs[i].line, sets.c_str(),
                    d.n_shared, o.ngram, d.ngram.c_str());
    }
    if (shown > f.show) std::printf("  ... %zu more (--show N)\n", shown - f.show);
    print_totals(r.n_kept, r.n_dropped, r.bytes_kept, r.bytes_dropped);
    std::printf("time: index %.2f s, scan %.2f s (%.2f MB/s)\n", r.index_seconds, r.seconds, mb_per_s(in.n_bytes, r.seconds));
    write_output(f.output, in, r.kept(), fo);
    if (!f.report.empty()) {
        std::string out;
        for (size_t i = 0; i < r.decisions.size(); ++i) {
            const DecontaminateDecision& d = r.decisions[i];
            nlohmann::json j{{"index", i}, {"line", in.docs[i].line}, {"kept", d.kept}};
            if (!d.kept) {
                std::vector<std::string> names;
                for (size_t s : d.sets) names.push_back(r.sets[s].name);
                j["eval_sets"] = names;
                j["ngram"] = d.ngram;
                j["n_shared"] = d.n_shared;
            }
            out += j.dump() + "\n";
        }
        write_text_atomic(f.report, out);
        std::printf("wrote report %s\n", f.report.c_str());
    }
}

// ---- mix ------------------------------------------------------------------------------------

struct MixFlags {
    FormatFlags fmt;
    std::vector<std::string> sources;
    std::string output;
    MixOptions o;
    bool no_shuffle = false;
};

void run_mix(MixFlags f) {
    f.o.shuffle = !f.no_shuffle;
    const DocFormatOptions fo = f.fmt.options();
    std::vector<DocumentSet> sets;
    std::vector<double> weights;
    for (const std::string& s : f.sources) {
        const MixSource m = parse_mix_source(s);
        sets.push_back(read_input(m.path, fo));
        weights.push_back(m.weight);
    }
    const MixResult r = mix_documents(sets, weights, f.o);
    double wsum = 0;
    for (double w : weights) wsum += w;
    std::printf("%-40s %7s %9s %12s %9s %12s %8s\n", "source", "weight", "docs", "bytes", "doc %", "byte %", "epochs");
    for (size_t i = 0; i < sets.size(); ++i) {
        const MixSourceStats& s = r.sources[i];
        std::printf("%-40s %7.3f %9zu %12zu %8.1f%% %11.1f%% %8.3f%s\n", sets[i].path.c_str(), weights[i] / wsum, s.n_docs,
                    s.n_bytes, r.n_docs ? 100.0 * s.n_docs / r.n_docs : 0.0, r.n_bytes ? 100.0 * s.n_bytes / r.n_bytes : 0.0,
                    s.epochs, s.epochs > 1 ? "  (upsampled: documents repeat)" : "");
    }
    std::printf("total: %zu documents, %zu bytes (weights are %s shares, seed %llu)\n", r.n_docs, r.n_bytes,
                f.o.by_bytes ? "byte" : "document", (unsigned long long)f.o.seed);
    if (!f.output.empty()) {
        std::vector<std::string_view> texts;
        texts.reserve(r.picks.size());
        for (auto [s, d] : r.picks) texts.push_back(sets[s].docs[d].text);
        write_documents(f.output, texts, fo);
        std::printf("wrote %s\n", f.output.c_str());
    }
}

// ---- synth ----------------------------------------------------------------------------------

struct SynthFlags {
    DataSynthOptions o;
    std::string output, format = "blank";
};

void run_synth(const SynthFlags& f) {
    const std::vector<DataSynthExample> ex = synth_data(f.o);
    std::string text;
    if (f.format == "jsonl") {
        text = synth_data_jsonl(ex);
    } else if (f.format == "blank") {
        std::vector<std::string_view> texts;
        for (const auto& e : ex) texts.push_back(e.text);
        text = format_documents(texts, DocFormatOptions{});
    } else {
        fail("data synth: --format '%s' is not blank or jsonl", f.format.c_str());
    }
    std::map<std::string, size_t> kinds;
    for (const auto& e : ex) ++kinds[e.family + "/" + e.kind];
    std::fprintf(stderr, "synth: %zu examples (seed %llu):", ex.size(), (unsigned long long)f.o.seed);
    for (auto& [k, n] : kinds) std::fprintf(stderr, " %s %zu", k.c_str(), n);
    std::fprintf(stderr, "\n");
    if (f.output.empty() || f.output == "-") {
        std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
        write_text_atomic(f.output, text);
        std::fprintf(stderr, "wrote %s\n", f.output.c_str());
    }
}

} // namespace

void add_data(CLI::App& app) {
    CLI::App* data = app.add_subcommand("data", "corpus tools: filter, dedup, decontaminate, mix, synth");
    data->require_subcommand(1);

    {
        auto f = std::make_shared<FilterFlags>();
        CLI::App* sub = data->add_subcommand("filter", "Drop documents failing Gopher/C4-style quality rules or a perplexity cut");
        sub->add_option("input", f->input, "Input text file");
        sub->add_option("-o,--output", f->output, "Write the kept documents here (same layout)");
        add_format_flags(sub, f->fmt);
        sub->add_option("--rule", f->rules, "Set a rule: NAME=THRESHOLD, NAME=off or NAME=on (repeatable; see --list-rules)")
            ->allow_extra_args(false);
        sub->add_flag("--list-rules", f->list_rules, "List the rules with their thresholds and exit");
        sub->add_option("--ppl-model", f->ppl_model, "GGUF model scoring each document's perplexity");
        sub->add_option("--max-ppl", f->max_ppl, "Drop documents whose perplexity is above this");
        sub->add_option("--keep-ppl-fraction", f->keep_ppl_fraction, "Keep only this fraction with the lowest perplexity");
        sub->add_option("--ppl-ctx", f->ppl_ctx, "Context of the perplexity model")->capture_default_str();
        sub->add_option("-t,--threads", f->threads, "Threads for the rules and the perplexity model (0 = one per physical core)");
        sub->add_option("--report", f->report, "Write one JSON line per document: decision, failed rules, values, ppl");
        sub->callback([f]() { run_filter(*f); });
    }
    {
        auto f = std::make_shared<DedupFlags>();
        CLI::App* sub = data->add_subcommand("dedup", "Drop exact and MinHash near-duplicate documents, keeping the first");
        sub->add_option("input", f->input, "Input text file")->required();
        sub->add_option("-o,--output", f->output, "Write the kept documents here (same layout)");
        add_format_flags(sub, f->fmt);
        sub->add_flag("--no-exact", f->no_exact, "Skip exact (normalized) deduplication");
        sub->add_flag("--no-near", f->no_near, "Skip MinHash near-duplicate detection");
        sub->add_option("--ngram", f->o.ngram, "Shingle length in words")->capture_default_str();
        sub->add_option("--perm", f->o.n_perm, "MinHash permutations")->capture_default_str();
        sub->add_option("--bands", f->o.n_bands, "LSH bands (rows = perm / bands)")->capture_default_str();
        sub->add_option("--threshold", f->o.threshold, "Jaccard similarity at or above which documents are duplicates")
            ->capture_default_str();
        sub->add_option("--seed", f->o.seed, "Seed of the MinHash permutations")->capture_default_str();
        sub->add_option("--show", f->show, "Clusters listed")->capture_default_str();
        sub->add_option("-t,--threads", f->o.n_threads, "Threads (0 = one per physical core)");
        sub->add_option("--report", f->report, "Write one JSON line per document: kept, dup_of, kind, jaccard");
        sub->callback([f]() { run_dedup(*f); });
    }
    {
        auto f = std::make_shared<DecontFlags>();
        CLI::App* sub = data->add_subcommand("decontaminate", "Drop documents sharing a word 13-gram with evaluation sets");
        sub->add_option("input", f->input, "Input text file")->required();
        sub->add_option("-o,--output", f->output, "Write the kept documents here (same layout)");
        add_format_flags(sub, f->fmt);
        sub->add_option("--eval", f->evals,
                        "Evaluation set, [KIND:]PATH with KIND text, hellaswag, arc, mmlu, winogrande or gsm8k (guessed "
                        "from the name when omitted); repeatable")
            ->required()
            ->allow_extra_args(false);  // one value per --eval, so the input may follow it
        sub->add_option("--ngram", f->ngram, "N-gram length in normalized words")->capture_default_str();
        sub->add_option("--min-shared", f->min_shared, "Drop only documents with at least this many shared n-grams")
            ->capture_default_str();
        sub->add_option("--show", f->show, "Dropped documents listed")->capture_default_str();
        sub->add_option("-t,--threads", f->threads, "Threads (0 = one per physical core)");
        sub->add_option("--report", f->report, "Write one JSON line per document: kept, eval_sets, ngram");
        sub->callback([f]() { run_decontaminate(*f); });
    }
    {
        auto f = std::make_shared<MixFlags>();
        CLI::App* sub = data->add_subcommand("mix", "Weighted sampling of several sources into one stream");
        sub->add_option("sources", f->sources, "Sources as PATH:WEIGHT")->required();
        sub->add_option("-o,--output", f->output, "Write the mixed stream here");
        add_format_flags(sub, f->fmt);
        auto* d = sub->add_option("--docs", f->o.n_docs, "Documents to write");
        auto* b = sub->add_option("--bytes", f->o.n_bytes, "Text bytes to write (stops at the first document reaching it)");
        d->excludes(b);
        sub->add_flag("--by-bytes", f->o.by_bytes, "Weights are shares of bytes, not of documents");
        sub->add_flag("--no-shuffle", f->no_shuffle, "Take each source's documents in file order");
        sub->add_option("--seed", f->o.seed, "Random seed")->capture_default_str();
        sub->callback([f]() { run_mix(*f); });
    }
    {
        auto f = std::make_shared<SynthFlags>();
        CLI::App* sub = data->add_subcommand("synth", "Template-driven synthetic examples with worked answers");
        sub->add_option("--family", f->o.family, "arithmetic, units or all")->capture_default_str();
        sub->add_option("-n,--count", f->o.count, "Examples")->capture_default_str();
        sub->add_option("--seed", f->o.seed, "Random seed")->capture_default_str();
        sub->add_option("--format", f->format, "blank (examples separated by blank lines) or jsonl")->capture_default_str();
        sub->add_option("-o,--output", f->output, "Output file (default: standard output)");
        sub->callback([f]() { run_synth(*f); });
    }
}

} // namespace slm::cli
