#!/usr/bin/env bash
# Bounded loopback load test of slm serve: starts the server with --parallel 8 and with
# --parallel 1 (one request at a time), runs bench/serve_load at 1, 4 and 8 clients against each,
# stops the server with SIGTERM. Prints Markdown tables (for bench/SERVING.md).
#
#   bench/serve_load.sh [BUILD_DIR] [MODEL.gguf] [REQUESTS per level] [MAX_TOKENS]
set -euo pipefail
BUILD=${1:-build}
MODEL=${2:-models/stories260K/stories260K.gguf}
REQUESTS=${3:-32}
MAX_TOKENS=${4:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-18089}
SLM=$BUILD/bin/slm
LOAD=$BUILD/bench/serve_load
for f in "$SLM" "$LOAD" "$MODEL"; do [ -e "$f" ] || { echo "serve_load.sh: $f not found" >&2; exit 1; }; done

run_level() {  # $1 = --parallel
    "$SLM" serve -m "$MODEL" --port "$PORT" --parallel "$1" -c 512 -t "$THREADS" --queue 64 2>/tmp/slm_serve_load.$$.log &
    local pid=$!
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "### --parallel $1 ($(basename "$MODEL"), $MAX_TOKENS tokens per request, $REQUESTS requests per level, $THREADS threads)"
    echo
    "$LOAD" --port "$PORT" --clients 1,4,8 --requests "$REQUESTS" --max-tokens "$MAX_TOKENS"
    echo
    curl -s "http://127.0.0.1:$PORT/metrics" | grep -E '^slm_(decode_steps_total|decode_tokens_total|generated_tokens_total) ' || true
    echo
    kill -TERM "$pid"
    wait "$pid"
}

run_level 8
run_level 1
