#!/usr/bin/env bash
# Bounded loopback load test of slm serve: starts the server with --parallel 8 and with
# --parallel 1 (one request at a time), runs bench/serve_load at 1, 4 and 8 clients against each,
# stops the server with SIGTERM. Prints Markdown tables (for bench/SERVING.md).
#
#   bench/serve_load.sh [BUILD_DIR] [MODEL.gguf] [REQUESTS per level] [MAX_TOKENS]
#
# Environment: THREADS (2), PORT (18089), LEVELS ("8 1": the --parallel values), CLIENTS (1,4,8),
# TEMP (0.8; 0 = greedy requests), SERVE_ARGS (more slm serve flags, e.g. "--draft d.gguf --draft-max 4").
set -euo pipefail
BUILD=${1:-build}
MODEL=${2:-models/stories260K/stories260K.gguf}
REQUESTS=${3:-32}
MAX_TOKENS=${4:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18089}
LEVELS=${LEVELS:-8 1}
CLIENTS=${CLIENTS:-1,4,8}
TEMP=${TEMP:-0.8}
SERVE_ARGS=${SERVE_ARGS:-}
SLM=$BUILD/bin/slm
LOAD=$BUILD/bench/serve_load
for f in "$SLM" "$LOAD" "$MODEL"; do [ -e "$f" ] || { echo "serve_load.sh: $f not found" >&2; exit 1; }; done

run_level() {  # $1 = --parallel
    "$SLM" serve -m "$MODEL" --port "$PORT" --parallel "$1" -c 512 -t "$THREADS" --queue 64 $SERVE_ARGS 2>/tmp/slm_serve_load.$$.log &
    local pid=$!
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "### --parallel $1 $SERVE_ARGS ($(basename "$MODEL"), $MAX_TOKENS tokens per request, $REQUESTS requests per level, $THREADS threads, temperature $TEMP)"
    echo
    "$LOAD" --port "$PORT" --clients "$CLIENTS" --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" --temperature "$TEMP"
    echo
    curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^slm_(decode_steps_total|decode_tokens_total|generated_tokens_total|draft_tokens_total|draft_accepted_tokens_total) ' || true
    echo
    kill -TERM "$pid"
    wait "$pid"
}

for p in $LEVELS; do run_level "$p"; done
