#!/usr/bin/env bash
# compress_report.sh - the compression quality grid of a model: quantization (RTN, importance
# matrix, GPTQ, AWQ) at several types and pruning (magnitude, Wanda, SparseGPT) at 50 %
# unstructured and 2:4, each measured against the original with `slm eval` (perplexity and KL
# divergence on a held-out text) and `slm bench` (decode speed). Writes results.tsv, a Markdown
# table (report.md) and a quality-vs-size plot (quality.svg) into the output folder.
#
#   bench/compress_report.sh                                  # the bundled stories260K
#   bench/compress_report.sh -m model.f32.gguf -o out --chunks 100 --types "Q4_0 Q4_K"
#
# Calibration and evaluation texts must differ (by default data/calib/ and data/eval/).
# Needs: a built slm (build/bin/slm, or $SLM), jq and awk.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
slm=${SLM:-$here/build/bin/slm}
model=$here/models/stories260K/stories260K.gguf
out=compress-report
calib=$here/data/calib/tinystories_train_1k.txt
eval_text=$here/data/eval/tinystories_val.txt
ctx=256
chunks=400
types="Q4_0 Q4_K Q3_K Q2_K"
methods="rtn imatrix gptq awq"
prune_methods="magnitude wanda sparsegpt"
patterns="unstructured 2:4"
threads=0

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
Options: -m MODEL  -o OUTDIR  --calib TEXT  --eval TEXT  -c CTX ($ctx)  --chunks N ($chunks)
         --types "T ..." ($types)  --methods "M ..." ($methods)
         --prune "M ..." ($prune_methods)  --patterns "P ..." ($patterns)  -t THREADS
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        -m) model=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        --calib) calib=$2; shift 2 ;;
        --eval) eval_text=$2; shift 2 ;;
        -c) ctx=$2; shift 2 ;;
        --chunks) chunks=$2; shift 2 ;;
        --types) types=$2; shift 2 ;;
        --methods) methods=$2; shift 2 ;;
        --prune) prune_methods=$2; shift 2 ;;
        --patterns) patterns=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compress_report: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

for tool in jq awk; do
    command -v $tool >/dev/null || { echo "compress_report: needs $tool (apt-get install -y $tool)" >&2; exit 2; }
done
[ -x "$slm" ] || { echo "compress_report: no slm binary at $slm (make build, or set SLM)" >&2; exit 2; }
[ -f "$model" ] || { echo "compress_report: no model at $model" >&2; exit 2; }
if [ "$(readlink -f "$calib")" = "$(readlink -f "$eval_text")" ]; then
    echo "compress_report: the calibration and evaluation texts are the same file; use held-out text" >&2
    exit 2
fi

mkdir -p "$out"
log=$out/log.txt
: > "$log"
tsv=$out/results.tsv
printf 'variant\tfamily\tmethod\ttarget\tbytes\tppl\tppl_se\tkld\tkld_se\tsame_top\tdecode_tps\n' > "$tsv"

run() {  # logs the command and its output; stops the report if it fails
    echo "+ $*" >> "$log"
    "$@" >> "$log" 2>&1 || { echo "compress_report: failed: $* (see $log)" >&2; exit 1; }
}

# The reference: the original model's distribution over the evaluation text.
echo "base: $(basename "$model")" >&2
run "$slm" eval perplexity -m "$model" -f "$eval_text" -c "$ctx" --chunks "$chunks" -t "$threads" \
    --save-logits "$out/base.logits" --json "$out/base.json"

measure() {  # variant family method target file
    local v=$1 fam=$2 meth=$3 target=$4 file=$5
    echo "  $v" >&2
    run "$slm" eval perplexity -m "$file" --kl-divergence "$out/base.logits" -t "$threads" --json "$out/$v.kld.json"
    echo "+ $slm bench -m $file -p 64 -n 64 -r 3 --json" >> "$log"
    "$slm" bench -m "$file" -p 64 -n 64 -r 3 -t "$threads" --json > "$out/$v.bench.json" 2>> "$log"
    local bytes
    bytes=$(stat -c %s "$file")
    jq -r --arg v "$v" --arg f "$fam" --arg m "$meth" --arg t "$target" --arg b "$bytes" \
        --slurpfile bench "$out/$v.bench.json" \
        '[$v, $f, $m, $t, $b, .ppl.value, .ppl.se, .kld.value, .kld.se, .same_top.value,
          $bench[0][0].decode_tps] | @tsv' "$out/$v.kld.json" >> "$tsv"
}

# The original itself (KLD 0 by construction; its row anchors the plot).
measure original original - - "$model"

# Quantization grid.
if printf '%s\n' $methods | grep -qx imatrix; then
    run "$slm" calibrate -m "$model" -f "$calib" -o "$out/imatrix.gguf" -t "$threads"
fi
for t in $types; do
    for meth in $methods; do
        f=$out/q-$meth-$t.gguf
        case $meth in
            rtn) run "$slm" quantize "$model" "$f" "$t" ;;
            imatrix) run "$slm" quantize --imatrix "$out/imatrix.gguf" "$model" "$f" "$t" ;;
            gptq|awq) run "$slm" quantize --method "$meth" -f "$calib" "$model" "$f" "$t" ;;
            *) echo "compress_report: unknown method '$meth'" >&2; exit 2 ;;
        esac
        measure "q-$meth-$t" quantize "$meth" "$t" "$f"
        rm -f "$f"
    done
done

# Pruning grid (50 %: unstructured, or N:M).
for p in $patterns; do
    for meth in $prune_methods; do
        tag=${p/:/of}
        f=$out/p-$meth-$tag.gguf
        run "$slm" prune "$model" "$f" --method "$meth" --sparsity 0.5 --pattern "$p" -f "$calib"
        measure "p-$meth-$tag" prune "$meth" "$p" "$f"
        rm -f "$f"
    done
done

# report.md: the table, sorted as run.
{
    echo "# Compression report: $(basename "$model")"
    echo
    echo "Calibration: \`$(basename "$calib")\`; evaluation: \`$(basename "$eval_text")\`, -c $ctx, $chunks chunks."
    echo "KLD and PPL from \`slm eval perplexity --kl-divergence\` against the original; decode from \`slm bench -n 64\`."
    echo
    echo "The last column is the issue's yardstick: a quantization's KLD over round-to-nearest's at the"
    echo "same target, a pruning's PPL increase over magnitude pruning's at the same pattern."
    echo
    echo "| variant | method | target | size (KiB) | PPL | KLD | same top-1 | decode tok/s | vs baseline |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
        NR == 1 { next }
        { n++; for (i = 1; i <= 11; i++) f[n, i] = $i }
        $2 == "original" { ppl0 = $6 }
        $2 == "quantize" && $3 == "rtn" { rtn[$4] = $8 }
        $2 == "prune" && $3 == "magnitude" { mag[$4] = $6 }
        END {
            for (r = 1; r <= n; r++) {
                vs = "-"
                if (f[r, 2] == "quantize" && (f[r, 4] in rtn) && rtn[f[r, 4]] > 0)
                    vs = sprintf("%.2fx KLD", f[r, 8] / rtn[f[r, 4]])
                if (f[r, 2] == "prune" && (f[r, 4] in mag) && mag[f[r, 4]] > ppl0)
                    vs = sprintf("%.2fx dPPL", (f[r, 6] - ppl0) / (mag[f[r, 4]] - ppl0))
                printf "| %s | %s | %s | %.1f | %.4f ± %.4f | %.6f ± %.6f | %.2f %% | %.0f | %s |\n",
                       f[r, 1], f[r, 3], f[r, 4], f[r, 5] / 1024, f[r, 6], f[r, 7], f[r, 8], f[r, 9],
                       100 * f[r, 10], f[r, 11], vs
            }
        }' "$tsv"
} > "$out/report.md"

# quality.svg: KLD (log scale) against file size; one colour per method, quantization as
# circles, pruning as squares.
awk -F'\t' '
function x_of(b) { return 70 + (b - xmin) / (xmax - xmin) * 560 }
function y_of(k) { return 30 + (log(kmax) - log(k)) / (log(kmax) - log(kmin)) * 330 }
NR > 1 && $2 != "original" && $8 > 0 {
    n++; v[n] = $1; fam[n] = $2; m[n] = $3; b[n] = $5; k[n] = $8
    if (n == 1 || $5 < xmin) xmin = $5; if (n == 1 || $5 > xmax) xmax = $5
    if (n == 1 || $8 < kmin) kmin = $8; if (n == 1 || $8 > kmax) kmax = $8
}
END {
    col["rtn"] = "#1f77b4"; col["imatrix"] = "#2ca02c"; col["gptq"] = "#d62728"; col["awq"] = "#9467bd"
    col["magnitude"] = "#7f7f7f"; col["wanda"] = "#ff7f0e"; col["sparsegpt"] = "#17becf"
    print "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"420\" font-family=\"sans-serif\" font-size=\"11\">"
    print "<rect width=\"820\" height=\"420\" fill=\"white\"/>"
    if (n == 0) { print "<text x=\"20\" y=\"40\">no results</text></svg>"; exit }
    if (xmax == xmin) { xmin -= 1; xmax += 1 }
    if (kmax == kmin) { kmin /= 2; kmax *= 2 }
    kmin /= 1.5; kmax *= 1.5; pad = (xmax - xmin) * 0.05; xmin -= pad; xmax += pad
    print "<line x1=\"70\" y1=\"360\" x2=\"630\" y2=\"360\" stroke=\"black\"/><line x1=\"70\" y1=\"30\" x2=\"70\" y2=\"360\" stroke=\"black\"/>"
    for (i = 0; i <= 4; i++) {
        xb = xmin + i * (xmax - xmin) / 4
        printf "<text x=\"%.1f\" y=\"376\" text-anchor=\"middle\">%.0f</text>\n", x_of(xb), xb / 1024
        kk = exp(log(kmin) + i * (log(kmax) - log(kmin)) / 4)
        printf "<text x=\"64\" y=\"%.1f\" text-anchor=\"end\">%.2g</text>\n", y_of(kk) + 4, kk
        printf "<line x1=\"70\" y1=\"%.1f\" x2=\"630\" y2=\"%.1f\" stroke=\"#eee\"/>\n", y_of(kk), y_of(kk)
    }
    print "<text x=\"350\" y=\"400\" text-anchor=\"middle\">file size (KiB)</text>"
    print "<text x=\"18\" y=\"195\" transform=\"rotate(-90 18 195)\" text-anchor=\"middle\">KL divergence to the original (log)</text>"
    for (i = 1; i <= n; i++) {
        c = (m[i] in col) ? col[m[i]] : "black"
        if (fam[i] == "prune")
            printf "<rect x=\"%.1f\" y=\"%.1f\" width=\"8\" height=\"8\" fill=\"%s\"><title>%s</title></rect>\n", x_of(b[i]) - 4, y_of(k[i]) - 4, c, v[i]
        else
            printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\"><title>%s</title></circle>\n", x_of(b[i]), y_of(k[i]), c, v[i]
    }
    y = 40
    split("rtn imatrix gptq awq magnitude wanda sparsegpt", order, " ")
    for (o = 1; o <= 7; o++) {
        mm = order[o]
        printf "<rect x=\"650\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"666\" y=\"%d\">%s</text>\n", y, col[mm], y + 9, mm
        y += 18
    }
    print "<text x=\"650\" y=\"" y + 14 "\">circle: quantized</text><text x=\"650\" y=\"" y + 30 "\">square: pruned</text>"
    print "</svg>"
}' "$tsv" > "$out/quality.svg"

echo "compress_report: wrote $out/report.md, $out/quality.svg, $tsv" >&2
