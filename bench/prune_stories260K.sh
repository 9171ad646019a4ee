#!/bin/sh
# Pruning figures on the bundled stories260K: dense, magnitude / Wanda / SparseGPT at 50 %
# unstructured and 2:4 (uniform and OWL), structured heads / ffn / layers; perplexity on the
# validation text (never the calibration text). Prints a Markdown table.
#   bench/prune_stories260K.sh [build dir] [chunks]     (defaults: build, 100)
set -eu
B=${1:-build}; CHUNKS=${2:-100}
SLM=$B/bin/slm
M=models/stories260K/stories260K.gguf
C=data/calib/tinystories_train_1k.txt
E=data/eval/tinystories_val.txt
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
ppl() { "$SLM" eval perplexity -m "$1" -f "$E" --chunks "$CHUNKS" -t 1 2>&1 | sed -n 's/.*PPL = \([0-9.]*\).*/\1/p'; }
size() { stat -c %s "$1"; }
echo "| model | size | PPL |"
echo "| --- | ---: | ---: |"
echo "| dense | $(size $M) | $(ppl $M) |"
for prof in uniform owl; do
  for pat in unstructured 2:4; do
    [ "$prof" = owl ] && [ "$pat" != unstructured ] && continue
    for m in magnitude wanda sparsegpt; do
      o=$T/p.gguf
      "$SLM" prune $M $o --method $m --sparsity 0.5 --pattern $pat --sparsity-profile $prof -f $C -q -t 1 >/dev/null
      echo "| $m 50% $pat $prof | $(size $o) | $(ppl $o) |"
    done
  done
done
for s in "heads 0.25" "heads 0.5" "ffn 0.25" "ffn 0.5" "layers 0.2" "layers 0.4"; do
  set -- $s
  o=$T/s.gguf
  "$SLM" prune $M $o --structured $1 --ratio $2 -f $C -q -t 1 >/dev/null
  echo "| structured $1 $2 | $(size $o) | $(ppl $o) |"
done
