#!/bin/sh
# Run the libFuzzer targets built by `make fuzz` (see docs/SECURITY.md).
#
#   tests/fuzz/run.sh [-t SECONDS] [-k] [-j JOBS] [TARGET...]
#
#   -t SECONDS  time per target (default 20)
#   -k          keep and grow the working corpus build/fuzz/work/<target>
#               across runs (long runs); without it each run starts from the
#               seeds and the committed cases only, in build/fuzz/smoke/
#               (CI smoke runs)
#   -j JOBS     targets run at the same time (default 1)
#   TARGET      gguf, safetensors, ... (default: every build/fuzz/fuzz_*)
#
# Seeds: build/fuzz/corpus/<target>/ (made here by tests/fuzz/seeds.sh) and
# tests/fuzz/cases/<target>/ (committed regressions and edge cases). Exits 1
# when any target reports a crash, leak, timeout or out-of-memory; the input
# is saved as build/fuzz/crashes/<target>-crash-<sha1> and the log tail shown.
set -eu
cd "$(dirname "$0")/../.."
T=20
KEEP=0
JOBS=1
while getopts t:kj: o; do
    case $o in
    t) T=$OPTARG ;;
    k) KEEP=1 ;;
    j) JOBS=$OPTARG ;;
    *) echo "usage: tests/fuzz/run.sh [-t SECONDS] [-k] [-j JOBS] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
F=build/fuzz
if [ $# -eq 0 ]; then
    set --
    for b in $F/fuzz_*; do
        [ -x "$b" ] && set -- "$@" "${b#$F/fuzz_}"
    done
fi
[ $# -gt 0 ] || { echo "run.sh: no fuzz targets in $F; run make fuzz" >&2; exit 1; }
mkdir -p $F/crashes $F/logs
sh tests/fuzz/seeds.sh 2>$F/logs/seeds.log || { cat $F/logs/seeds.log >&2; exit 1; }
# scratch directories of fuzzers that died without cleaning up (fz_util.c)
for d in /dev/shm/qk-fuzz-* "${TMPDIR:-/tmp}"/qk-fuzz-*; do
    [ -d "$d" ] || continue
    pid=${d##*/qk-fuzz-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || rm -rf "$d"
done

# one TARGET: run it, print one line, return its status
run_one() {
    t=$1
    if [ $KEEP = 1 ]; then
        work=$F/work/$t
    else
        work=$F/smoke/$t # a long run's corpus in work/ is left alone
        rm -rf "$work"
    fi
    mkdir -p "$work" "tests/fuzz/cases/$t" "$F/corpus/$t"
    log=$F/logs/$t.log
    start=$(date +%s)
    rc=0
    # -timeout: a single input taking 10 s is a hang; -rss_limit_mb and
    # -malloc_limit_mb: any allocation or resident set beyond them is a bug
    # (every limit quantkit enforces is far below).
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$F/fuzz_$t" -max_total_time="$T" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -max_len=65536 -dict=tests/fuzz/fuzz.dict -print_final_stats=1 \
        -artifact_prefix="$F/crashes/$t-" "$work" "$F/corpus/$t" "tests/fuzz/cases/$t" > "$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    printf 'fuzz %-14s %s  %10s execs  cov %-6s %4ss\n' "$t" "$([ $rc = 0 ] && echo ok || echo FAIL)" \
        "${execs:-?}" "${cov:-?}" "$(($(date +%s) - start))"
    if [ $rc != 0 ]; then
        grep -E 'ERROR|SUMMARY|FZ_CHECK|runtime error|Test unit written' "$log" | head -20 >&2 || true
        echo "  full log: $log" >&2
    fi
    return $rc
}

fail=0
if [ "$JOBS" -le 1 ]; then
    for t in "$@"; do
        run_one "$t" || fail=1
    done
else
    # simple job slots: start up to JOBS, wait for the batch
    while [ $# -gt 0 ]; do
        pids=
        n=0
        while [ $# -gt 0 ] && [ $n -lt "$JOBS" ]; do
            run_one "$1" &
            pids="$pids $!"
            shift
            n=$((n + 1))
        done
        for p in $pids; do
            wait "$p" || fail=1
        done
    done
fi
[ $fail = 0 ] || { echo "fuzz: FAILED (inputs in $F/crashes/)" >&2; exit 1; }
