#!/usr/bin/env bash
# run_fuzzers.sh BUILD_DIR [SECONDS] - runs every BUILD_DIR/bin/fuzz_* for SECONDS (default 60).
# With FUZZ_RUNS=N set, each fuzzer stops after N executions instead, or at SECONDS if that comes
# first (a campaign: FUZZ_RUNS=1000000 tests/fuzz/run_fuzzers.sh build-fuzz 7200).
# FUZZ_ONLY="gguf jinja" runs only those targets.
#
# Build first (needs clang and compiler-rt; Debian: apt-get install clang libclang-rt-14-dev):
#   CXX=clang++ cmake -S . -B build-fuzz -DSLM_BUILD_FUZZ=ON -DSLM_BUILD_TESTS=OFF -DSLM_BUILD_BENCH=OFF
#   cmake --build build-fuzz -j2
#   tests/fuzz/run_fuzzers.sh build-fuzz 60
#
# Each fuzzer starts from a writable copy of tests/fuzz/corpus/<name>/ (name without "fuzz_") and
# tests/fuzz/regressions/<name>/ in a temp dir, with tests/fuzz/corpus/<name>.dict if present. Crash inputs are kept in
# BUILD_DIR/fuzz-artifacts/<fuzzer>/; reproduce one with `BUILD_DIR/bin/fuzz_gguf FILE`.
# Runs FUZZ_JOBS fuzzers at a time (default: the number of cores).
# Exits non-zero if any fuzzer crashed, leaked, timed out or ran out of memory.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 BUILD_DIR [SECONDS]" >&2
    exit 2
fi
build=$(cd "$1" && pwd)
secs=${2:-60}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

shopt -s nullglob
fuzzers=("$build"/bin/fuzz_*)
if [[ -n ${FUZZ_ONLY:-} ]]; then
    fuzzers=()
    for n in $FUZZ_ONLY; do fuzzers+=("$build/bin/fuzz_${n#fuzz_}"); done
fi
if [[ ${#fuzzers[@]} -eq 0 ]]; then
    echo "$0: no fuzzers in $build/bin (configure with -DSLM_BUILD_FUZZ=ON and build)" >&2
    exit 2
fi

# The fuzz build's UBSan is recoverable (only ASan aborts by default): make any report a crash.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

work=$(mktemp -d "${TMPDIR:-/tmp}/slm-fuzz.XXXXXX")
tmp=$work
if [[ -d /dev/shm && -w /dev/shm ]]; then
    tmp=$(mktemp -d /dev/shm/slm-fuzz.XXXXXX)
fi
trap 'rm -rf "$work" "$tmp"' EXIT

# One fuzzer; its summary line goes to $work/<name>.result, its exit code to <name>.rc.
fuzz_one() {
    local exe=$1 fuzzer name max_len corpus artifacts log rc execs rate cov
    fuzzer=$(basename "$exe")
    name=${fuzzer#fuzz_}
    case $name in
        gguf) max_len=65536 ;;      # headers of real files are ~14 KB; room for larger metadata
        llama2c) max_len=65536 ;;   # a checkpoint + tokenizer.bin pair; the seeds are up to 31 KB
        tokenizer) max_len=4096 ;;  # a few lines of text
        *) max_len=16384 ;;
    esac

    corpus="$work/$name/corpus"
    artifacts="$build/fuzz-artifacts/$fuzzer"
    mkdir -p "$corpus" "$artifacts"
    if [[ -d $here/corpus/$name ]]; then
        cp -R "$here/corpus/$name/." "$corpus/"
    fi
    if [[ -d $here/regressions/$name ]]; then  # what once broke is a good place to start from
        cp -R "$here/regressions/$name/." "$corpus/"
    fi
    local args=(-max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048
                -print_final_stats=1 -artifact_prefix="$artifacts/")
    if [[ -n ${FUZZ_RUNS:-} ]]; then
        args+=(-runs="$FUZZ_RUNS")
    fi
    if [[ -f $here/corpus/$name.dict ]]; then
        args+=(-dict="$here/corpus/$name.dict")
    fi

    log="$work/$name.log"
    echo "== $fuzzer: ${secs}s, max_len $max_len, $(ls "$corpus" | wc -l) seeds"
    rc=0
    # Targets that must hand files to the code under test (llama2c) write them under TMPDIR: use
    # memory, not disk, so fsync does not set the pace.
    TMPDIR="$tmp" "$exe" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 || true)
    if [[ $rc -ne 0 ]]; then
        echo "$fuzzer: FAILED (exit $rc)" > "$work/$name.result"
    else
        echo "$fuzzer: ok, ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov: ?}" > "$work/$name.result"
    fi
    echo "$rc" > "$work/$name.rc"
}

# As many fuzzers at once as there are cores (FUZZ_JOBS overrides): each is one process.
par=${FUZZ_JOBS:-$(nproc)}
for exe in "${fuzzers[@]}"; do
    [[ -x $exe && -f $exe ]] || continue
    while (( $(jobs -rp | wc -l) >= par )); do wait -n || true; done
    fuzz_one "$exe" &
done
wait

failed=0
echo "== summary"
for exe in "${fuzzers[@]}"; do
    [[ -x $exe && -f $exe ]] || continue
    fuzzer=$(basename "$exe")
    name=${fuzzer#fuzz_}
    rc=$(cat "$work/$name.rc" 2>/dev/null || echo 1)
    cat "$work/$name.result" 2>/dev/null || echo "$fuzzer: FAILED (no result)"
    if [[ $rc -ne 0 ]]; then
        failed=1
        echo "!! $fuzzer failed (exit $rc). End of its log:"
        tail -n 60 "$work/$name.log" 2>/dev/null || true
        for c in "$build/fuzz-artifacts/$fuzzer"/*; do echo "!! input kept: $c"; done
    fi
done
exit "$failed"
