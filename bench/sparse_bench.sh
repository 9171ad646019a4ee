#!/usr/bin/env bash
# bench/sparse_bench.sh - 2:4 sparse (Q8_0_S24) against dense Q8_0 decode and prefill on the
# synthetic TinyLlama-1.1B shape (docs/sparse-format.md, bench/RESULTS.md). The two models are
# benchmarked alternately ROUNDS times, one `slm bench` run each, so that a noisy machine hits
# both alike; compare the runs pairwise and look at the medians.
#
#   bench/sparse_bench.sh              # ROUNDS=3, -p 128 -n 64 -t 2 -r 3
#   ROUNDS=5 bench/sparse_bench.sh --json
set -euo pipefail
cd "$(dirname "$0")/.."
SLM=${SLM:-build/bin/slm}
MODELS=${MODELS:-/tmp/slm-bench-models}
mkdir -p "$MODELS"
for type in Q8_0 Q8_0_S24; do
    f="$MODELS/tinyllama-1.1b-$type.gguf"
    [ -s "$f" ] || "$SLM" synth --preset tinyllama-1.1b --type "$type" -o "$f"
done
for round in $(seq "${ROUNDS:-3}"); do
    for type in Q8_0 Q8_0_S24; do
        echo "## round $round: $type"
        "$SLM" bench -m "$MODELS/tinyllama-1.1b-$type.gguf" -p 128 -n 64 -t 2 -r "${REPS:-3}" "$@"
    done
done
