#!/usr/bin/env bash
# bench/gptq7b.sh — calibration and GPTQ on Mistral-7B-v0.3 shapes, a few
# layers measured, the whole 32-layer model extrapolated.
#
#   bench/gptq7b.sh                         2 layers, 16 windows of 512 tokens, Q4_K, refine 0 and 2
#   bench/gptq7b.sh --layers 1 --chunks 32 --refine "0 1 2"
#   bench/gptq7b.sh --layers 1 --refine 2 --no-calibrate   GPTQ only
#   QK_BENCH_DIR=/data bench/gptq7b.sh      where the synthetic checkpoint is (default bench/out)
#
# Input: the synthetic BF16 checkpoint bench/out/mistral-7b-v0.3-bf16-seed0
# (bench/bin/qk-synth --preset mistral-7b-v0.3; made here when missing) and
# its synthetic tokenizer; calibration text ../shared/data/text/wiki.test.raw
# (or $QK_CALIB_TEXT). Every run is niced ($QK_BENCH_NICE, default 10; 0 to
# run ahead of other niced work) and timed by /usr/bin/time -v:
#   1. qk-calibrate --hessian --layers N: layer-major collection of the
#      Hessians into a .qkc (deleted after), tokens/s and seconds per layer;
#   2. bench/bin/qk-gptq-layers --sequential --layers N: what
#      qk-quantize --method gptq --sequential --calib-text does for the first
#      N layers (Hessians on the partly quantized model, GPTQ per tensor),
#      per --refine value: seconds per layer, split into Hessian collection
#      (forward sweeps and X^T X) and GPTQ, and per tensor (wall s).
# Printed: wall and CPU seconds, peak RSS, the per-layer figures and the
# 32-layer extrapolation. "load" is the 1-minute load average before each
# run: on a shared machine wall times stretch; CPU seconds / threads is the
# idle-machine estimate.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${QK_BENCH_DIR:-$ROOT/bench/out}
LAYERS=2
CHUNKS=16
CTX=512
TYPE=Q4_K
REFINES="0 2"
THREADS=2
CALIBRATE=1
TEXT=${QK_CALIB_TEXT:-$ROOT/../shared/data/text/wiki.test.raw}
NICE=${QK_BENCH_NICE:-10}
while [ $# -gt 0 ]; do
    case "$1" in
        --layers) LAYERS=$2; shift 2 ;;
        --chunks) CHUNKS=$2; shift 2 ;;
        --ctx) CTX=$2; shift 2 ;;
        --type) TYPE=$2; shift 2 ;;
        --refine) REFINES=$2; shift 2 ;;
        -t|--threads) THREADS=$2; shift 2 ;;
        --text) TEXT=$2; shift 2 ;;
        --no-calibrate) CALIBRATE=0; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "gptq7b.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
MODEL=$OUT/mistral-7b-v0.3-bf16-seed0
make -s -C "$ROOT" >/dev/null
make -s -C "$ROOT/bench" >/dev/null
if [ ! -f "$MODEL/config.json" ]; then
    "$ROOT/bench/bin/qk-synth" --preset mistral-7b-v0.3 -o "$MODEL"
fi
[ -f "$TEXT" ] || { echo "gptq7b.sh: no calibration text $TEXT" >&2; exit 1; }
TMP=$(mktemp -d "$OUT/.gptq7b.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# field of /usr/bin/time -v output
tv() { sed -n "s/^[[:space:]]*$2: //p" "$1" | head -1; }
report() { # label time-file
    local wall cpu rss
    wall=$(tv "$2" "Elapsed (wall clock) time (h:mm:ss or m:ss)")
    cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.1f", s}' "$2")
    rss=$(tv "$2" "Maximum resident set size (kbytes)")
    printf '%-34s wall %s  CPU %s s  peak RSS %.2f GiB  (load %s)\n' "$1" "$wall" "$cpu" \
        "$(echo "$rss / 1048576" | bc -l)" "$3"
}

echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(uname -n), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "# model $MODEL, text $TEXT, $CHUNKS windows of $CTX, first $LAYERS layers, $TYPE, -t $THREADS"

if [ "$CALIBRATE" = 1 ]; then
    load=$(cut -d' ' -f1 /proc/loadavg)
    nice -n "$NICE" /usr/bin/time -v -o "$TMP/cal.time" "$ROOT/bin/qk-calibrate" "$MODEL" --text "$TEXT" --ctx "$CTX" \
        --chunks "$CHUNKS" --hessian --layers "$LAYERS" -t "$THREADS" -o "$TMP/h.qkc" > "$TMP/cal.out"
    grep -E '^(text|speed|entries):' "$TMP/cal.out"
    report "qk-calibrate --hessian" "$TMP/cal.time" "$load"
    ls -l "$TMP/h.qkc" | awk '{printf "qkc bytes for %s layers: %d\n", "'"$LAYERS"'", $5}'
    rm -f "$TMP/h.qkc"
fi

for r in $REFINES; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    nice -n "$NICE" /usr/bin/time -v -o "$TMP/g$r.time" "$ROOT/bench/bin/qk-gptq-layers" "$MODEL" --calib-text "$TEXT" \
        --ctx "$CTX" --chunks "$CHUNKS" --layers "$LAYERS" --type "$TYPE" --sequential --refine "$r" \
        -t "$THREADS" > "$TMP/g$r.out" 2> "$TMP/g$r.err"
    cat "$TMP/g$r.out"
    grep -E '^blk\.' "$TMP/g$r.err" | sed 's/^/  /'
    report "GPTQ --sequential --refine $r" "$TMP/g$r.time" "$load"
done
