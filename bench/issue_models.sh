#!/usr/bin/env bash
# bench/issue_models.sh - the end-to-end figures of bench/RESULTS.md: synthesizes the model shapes
# llama.cpp was measured on (once, into $MODELS) and runs `slm bench` on each, with llama-bench's
# settings (-p 128 -n 64 -t 2). Extra arguments go to slm bench (e.g. --json, -r 5).
#
#   bench/issue_models.sh                 # every ISA the CPU has, best first
#   SLM_ISA=avx2 bench/issue_models.sh    # one kernel table, for ratios between ISAs
set -euo pipefail
cd "$(dirname "$0")/.."
SLM=${SLM:-build/bin/slm}
MODELS=${MODELS:-/tmp/slm-bench-models}
mkdir -p "$MODELS"
args=()
for spec in tinyllama-1.1b:Q4_0 tinyllama-1.1b:Q8_0 tinyllama-1.1b:Q4_K_M tinyllama-1.1b:F16 mobilellm-125m:Q4_0; do
    preset=${spec%%:*} type=${spec##*:}
    f="$MODELS/$preset-$type.gguf"
    [ -s "$f" ] || "$SLM" synth --preset "$preset" --type "$type" -o "$f"
    args+=(-m "$f")
done
exec "$SLM" bench "${args[@]}" -p 128 -n 64 -t 2 -r "${REPS:-3}" "$@"
