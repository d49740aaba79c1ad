#!/usr/bin/env bash
# bench/quantize.sh — time qk-quantize on a synthetic checkpoint with a real
# architecture's shapes: seconds, input GB/s, peak RSS and output bytes per
# type, against llama.cpp's figures on the same shapes.
#
#   bench/quantize.sh                          Mistral-7B-v0.3 shapes, BF16 -> Q8_0, Q4_0, Q4_K_M, 3 runs each,
#                                              then the same from a GGUF F16 copy (qk-convert --outtype f16)
#   bench/quantize.sh --preset llama-150m      the same on a 134M-parameter Llama (seconds)
#   bench/quantize.sh --types Q4_K_M --runs 5 --no-f16
#
# The checkpoint is generated once by bench/bin/qk-synth into
# $QK_BENCH_DIR (default bench/out/, gitignored) and reused by later runs,
# as bench/convert.sh does. Each run is
#   qk-quantize INPUT OUT.gguf TYPE -q [-t N]
# under /usr/bin/time -v, the output deleted before it. Inputs:
#   hf   the Hugging Face directory (BF16 safetensors shards)
#   f16  a GGUF F16 copy made once with 'qk-convert DIR -o F16.gguf --outtype f16'
#        (llama.cpp's anchors below were measured on F16 GGUF input)
# Cache modes (as convert.sh): cold drops the page cache first (root only),
# warm reads the input once first. qk-quantize drops the input pages it has
# read as it goes, so a warm run is warm for that run only.
# "load" is the 1-minute load average before the run: other work on the
# machine competes for the CPUs and the disk. GB are 10^9 bytes, MB of RSS
# 2^20 bytes. "CPU %" is (user + sys) / wall: 200 = both CPUs of a 2-CPU
# machine busy for the whole run.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PRESET=mistral-7b-v0.3
DTYPE=bf16
TYPES=Q8_0,Q4_0,Q4_K_M
RUNS=3
SEED=0
MODES=warm
INPUTS=hf,f16
THREADS=$(nproc)
BUILD=1
KEEP_OUTPUT=0
CLEAN=0
QUANTIZE=${QK_QUANTIZE:-$ROOT/bin/qk-quantize}
DIR=${QK_BENCH_DIR:-$ROOT/bench/out}

# llama.cpp's llama-quantize on the same shapes, F16 GGUF input, 2 threads
# (the performance issue's measurements): wall seconds, "lo-hi" for a range.
anchor() {
    [ "$PRESET" = mistral-7b-v0.3 ] || return 0
    case "$1" in
    Q8_0) echo 50.6 ;;
    Q4_0) echo 30 ;;
    Q4_K_M) echo 262-300 ;;
    *) echo "" ;;
    esac
}

usage() {
    cat <<EOF
Usage: bench/quantize.sh [options]

Generate a synthetic checkpoint (bench/bin/qk-synth) once, then time
'qk-quantize INPUT OUT.gguf TYPE' under /usr/bin/time -v for each type and
input, and print seconds, input GB/s, peak RSS and output bytes per run, the
medians, the ratio to llama.cpp's figures, and 'qk-inspect --verify' of each
type's output once.

Options:
  --preset NAME     mistral-7b-v0.3 (default) | llama-150m | tiny
  --dtype TYPE      checkpoint dtype: bf16 (default) | f16 | f32
  --types LIST      qk-quantize types, comma-separated (default Q8_0,Q4_0,Q4_K_M)
  --runs N          runs per type, input and mode (default 3)
  --inputs LIST     hf,f16 (default) | hf | f16
  --no-f16          the same as --inputs hf
  --modes LIST      warm (default) | cold | cold,warm (cold needs a writable
                    /proc/sys/vm/drop_caches)
  -t, --threads LIST  qk-quantize -t N for each N, comma-separated (default: the
                    number of CPUs); with several, the summary adds the speed-up
                    of the largest N over the smallest (e.g. --threads 1,2)
  --dir DIR         where the checkpoint and outputs go (default \$QK_BENCH_DIR
                    or bench/out)
  --quantize PATH   the qk-quantize binary to time (default \$QK_QUANTIZE or
                    bin/qk-quantize), e.g. another build to compare
  --no-build        do not run make first
  --keep-output     keep the last output of each input and type (DIR/PRESET-INPUT-TYPE.gguf)
                    and the F16 GGUF (which is otherwise deleted if this run made it)
  --clean           delete the generated checkpoint at the end too
  -h, --help        this help
EOF
}

die() { echo "quantize.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --preset) PRESET=${2:?--preset needs a value}; shift 2 ;;
    --dtype) DTYPE=${2:?--dtype needs a value}; shift 2 ;;
    --types) TYPES=${2:?--types needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --inputs) INPUTS=${2:?--inputs needs a value}; shift 2 ;;
    --no-f16) INPUTS=hf; shift ;;
    --modes) MODES=${2:?--modes needs a value}; shift 2 ;;
    -t|--threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --quantize) QUANTIZE=${2:?--quantize needs a value}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep-output) KEEP_OUTPUT=1; shift ;;
    --clean) CLEAN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "quantize.sh: unknown option '$1'" >&2; echo "Try 'bench/quantize.sh --help'." >&2; exit 2 ;;
    esac
done

case "$PRESET" in
mistral-7b-v0.3) PARAMS=7248023552 ;;
llama-150m) PARAMS=134105856 ;;
tiny) PARAMS=4196608 ;;
*) echo "quantize.sh: --preset '$PRESET': expected mistral-7b-v0.3, llama-150m or tiny" >&2; exit 2 ;;
esac
case "$DTYPE" in
bf16|f16) IN_ES=2 ;;
f32) IN_ES=4 ;;
*) echo "quantize.sh: --dtype '$DTYPE': expected bf16, f16 or f32" >&2; exit 2 ;;
esac
case "$RUNS" in ''|*[!0-9]*|0) echo "quantize.sh: --runs '$RUNS': expected a positive integer" >&2; exit 2 ;; esac
for th in ${THREADS//,/ }; do
    case "$th" in [1-9]|[1-9][0-9]|[1-9][0-9][0-9]) ;; *) echo "quantize.sh: --threads: '$th' is not a positive integer" >&2; exit 2 ;; esac
done
for i in ${INPUTS//,/ }; do
    case "$i" in hf|f16) ;; *) echo "quantize.sh: --inputs: '$i' is not hf or f16" >&2; exit 2 ;; esac
done
for m in ${MODES//,/ }; do
    case "$m" in cold|warm) ;; *) echo "quantize.sh: --modes: '$m' is not cold or warm" >&2; exit 2 ;; esac
done

# ------------------------------------------------------------------ tools
if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "quantize.sh: installing GNU time (package 'time')" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null || die "cannot install package 'time'"
    else
        die "/usr/bin/time is missing: install the package 'time' (apt-get install time)"
    fi
fi
if [ "$BUILD" = 1 ]; then
    make -s -C "$ROOT" all >&2
    make -s -C "$ROOT/bench" >&2
fi
SYNTH=$ROOT/bench/bin/qk-synth
INSPECT=$ROOT/bin/qk-inspect
CONVERT=$ROOT/bin/qk-convert
for t in "$SYNTH" "$QUANTIZE" "$INSPECT" "$CONVERT"; do
    [ -x "$t" ] || die "$t is not built (run 'make' and 'make -C bench')"
done
QHELP=$("$QUANTIZE" --help)
for ty in ${TYPES//,/ }; do
    grep -qiE "^  $ty( |\$)" <<<"$QHELP" || die "--types: '$ty' is not a qk-quantize TYPE"
done
case ",$MODES," in
*,cold,*)
    { [ -w /proc/sys/vm/drop_caches ] && sync && (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; } ||
        die "--modes cold: cannot drop the page cache here (needs a writable /proc/sys/vm/drop_caches)" ;;
esac

# ------------------------------------------------------------------ space
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CKPT=$DIR/$PRESET-$DTYPE-seed$SEED
F16=$DIR/$PRESET-$DTYPE-to-f16.gguf
OUT=  # $DIR/$PRESET-INPUT-TYPE.gguf of the current runs
F16_MADE=0
IN_BYTES=$((PARAMS * IN_ES))
F16_BYTES=$((PARAMS * 2))
OUT_MAX=$((PARAMS * 9 / 8 + 1000000000)) # Q8_0 is 8.5 bits per weight
NEED=$OUT_MAX
[ -f "$CKPT/config.json" ] || NEED=$((NEED + IN_BYTES))
case ",$INPUTS," in *,f16,*) [ -f "$F16" ] || NEED=$((NEED + F16_BYTES)) ;; esac
AVAIL=$(df -B1 --output=avail "$DIR" | tail -n 1 | tr -d ' ')
gb() { awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1e9 }'; }
if [ "$AVAIL" -lt $((NEED + NEED / 4)) ]; then
    echo "quantize.sh: not enough free disk in $DIR: $(gb "$AVAIL") free, this benchmark needs about $(gb $((NEED + NEED / 4)))" >&2
    echo "quantize.sh: point QK_BENCH_DIR (or --dir) at a larger file system, or use --preset llama-150m" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qk-bench.XXXXXX")
cleanup() {
    rm -rf "$WORK"
    if [ "$KEEP_OUTPUT" = 0 ]; then
        [ -z "$OUT" ] || rm -f "$OUT"
        [ "$F16_MADE" = 0 ] || rm -f "$F16"
    fi
    [ "$CLEAN" = 0 ] || rm -rf "$CKPT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { awk -v k="$1: " '{ sub(/^[ \t]+/, "") } index($0, k) == 1 { print substr($0, length(k) + 1); exit }' "$2"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rss_mb() { echo $(( $(field 'Maximum resident set size (kbytes)' "$1") / 1024 )); }

# ------------------------------------------------------------- machine
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "# qk-quantize benchmark: $PRESET $DTYPE -> ${TYPES//,/, }"
echo
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:  $(nproc) CPUs ($CPU), $MEM RAM, kernel $(uname -r)"
echo "disk:     $DIR on $(df --output=source,fstype "$DIR" | tail -n 1 | tr -s ' '), $(gb "$AVAIL") free"
echo "quantkit: $("$QUANTIZE" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- common formats convert quantize include 2>/dev/null || echo '+changes')), $QUANTIZE"
echo "threads:  ${THREADS//,/, }"
echo

# ------------------------------------------------------------- inputs
if [ -f "$CKPT/config.json" ]; then
    echo "checkpoint: reusing $CKPT"
else
    echo "checkpoint: generating $CKPT"
    echo "  \$ qk-synth --preset $PRESET --dtype $DTYPE --seed $SEED -o $CKPT"
    t0=$(now)
    /usr/bin/time -v -o "$WORK/synth.time" "$SYNTH" --preset "$PRESET" --dtype "$DTYPE" --seed "$SEED" \
        -o "$CKPT" >"$WORK/synth.out" 2>"$WORK/synth.err" || { cat "$WORK/synth.err" >&2; die "qk-synth failed"; }
    t1=$(now)
    echo "  generated in $(secs "$t0" "$t1") s, peak RSS $(rss_mb "$WORK/synth.time") MB"
fi
HF_BYTES=0
for f in "$CKPT"/*.safetensors; do
    HF_BYTES=$((HF_BYTES + $(stat -c %s "$f")))
done
echo "input hf:  $CKPT: $(ls "$CKPT"/*.safetensors | wc -l) safetensors file(s), $HF_BYTES bytes ($(gb "$HF_BYTES"))"
case ",$INPUTS," in
*,f16,*)
    if [ ! -f "$F16" ]; then
        F16_MADE=1
        echo "  \$ qk-convert $CKPT -o $F16 --outtype f16"
        t0=$(now)
        /usr/bin/time -v -o "$WORK/conv.time" "$CONVERT" "$CKPT" -o "$F16" --outtype f16 -q 2>"$WORK/conv.err" ||
            { cat "$WORK/conv.err" >&2; die "qk-convert failed"; }
        t1=$(now)
        echo "  converted in $(secs "$t0" "$t1") s, peak RSS $(rss_mb "$WORK/conv.time") MB"
    fi
    echo "input f16: $F16: $(stat -c %s "$F16") bytes ($(gb "$(stat -c %s "$F16")"))"
    ;;
esac
echo

# ------------------------------------------------------------------ runs
printf '| input | type | threads | run | cache | seconds | input GB/s | peak RSS (MB) | user s | sys s | CPU %% | output bytes | load |\n'
printf '|:------|:-----|--------:|----:|:------|--------:|-----------:|--------------:|-------:|------:|------:|-------------:|-----:|\n'
: >"$WORK/results"
for input in ${INPUTS//,/ }; do
    if [ "$input" = hf ]; then IN=$CKPT; IN_FILES=("$CKPT"/*.safetensors); IB=$HF_BYTES
    else IN=$F16; IN_FILES=("$F16"); IB=$(stat -c %s "$F16"); fi
    for ty in ${TYPES//,/ }; do
        OUT=$DIR/$PRESET-$input-$ty.gguf
        for mode in ${MODES//,/ }; do
          for th in ${THREADS//,/ }; do
            for run in $(seq "$RUNS"); do
                rm -f "$OUT"
                sync
                if [ "$mode" = cold ]; then echo 3 > /proc/sys/vm/drop_caches; else cat "${IN_FILES[@]}" > /dev/null; fi
                load=$(cut -d ' ' -f 1 /proc/loadavg)
                t0=$(now)
                if ! /usr/bin/time -v -o "$WORK/run.time" "$QUANTIZE" "$IN" "$OUT" "$ty" -q -t "$th" \
                    2>"$WORK/run.err"; then
                    cat "$WORK/run.err" >&2
                    die "qk-quantize $ty failed ($input, run $run)"
                fi
                t1=$(now)
                s=$(secs "$t0" "$t1")
                rss=$(rss_mb "$WORK/run.time")
                user=$(field 'User time (seconds)' "$WORK/run.time")
                sys=$(field 'System time (seconds)' "$WORK/run.time")
                ob=$(stat -c %s "$OUT")
                rate=$(awk -v b="$IB" -v s="$s" 'BEGIN { printf "%.2f", b / 1e9 / s }')
                cpu=$(awk -v u="$user" -v y="$sys" -v s="$s" 'BEGIN { printf "%.0f", 100 * (u + y) / s }')
                printf '| %s | %s | %d | %d | %s | %s | %s | %d | %s | %s | %s | %s | %s |\n' "$input" "$ty" "$th" "$run" "$mode" \
                    "$s" "$rate" "$rss" "$user" "$sys" "$cpu" "$ob" "$load"
                echo "$input $ty $mode $s $rate $rss $user $sys $ob $th" >>"$WORK/results"
            done
          done
        done
        # qk-inspect --verify on this type's last output (once, the first input)
        if [ "$input" = "${INPUTS%%,*}" ]; then
            if "$INSPECT" --verify "$OUT" >"$WORK/verify.$ty.out" 2>&1; then echo "ok" >"$WORK/verify.$ty"
            else echo "FAILED" >"$WORK/verify.$ty"; fi
        fi
        [ "$KEEP_OUTPUT" = 1 ] || rm -f "$OUT"
    done
done

# ---------------------------------------------------------------- summary
echo
echo "| input | type | mode | threads | runs | median s | input GB/s | peak RSS (MB) | user+sys s | output bytes | llama.cpp s | llama.cpp / quantkit |"
echo "|:------|:-----|:-----|--------:|-----:|---------:|-----------:|--------------:|-----------:|-------------:|------------:|---------------------:|"
: >"$WORK/medians"
for input in ${INPUTS//,/ }; do
    for ty in ${TYPES//,/ }; do
        for mode in ${MODES//,/ }; do
          for th in ${THREADS//,/ }; do
            awk -v i="$input" -v t="$ty" -v m="$mode" -v th="$th" -v a="$(anchor "$ty")" -v med_out="$WORK/medians" 'BEGIN { n = 0 }
                function med(v, n,   x, y, z) {
                    for (x = 0; x < n; x++) for (y = x + 1; y < n; y++) if (v[y] < v[x]) { z = v[x]; v[x] = v[y]; v[y] = z }
                    return n % 2 ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
                }
                $1 == i && $2 == t && $3 == m && $10 == th { s[n] = $4; r[n] = $5; k[n] = $6; c[n] = $7 + $8; o = $9; n++ }
                END {
                    if (!n) exit
                    ms = med(s, n)
                    ratio = "-"
                    if (a != "") {
                        split(a, b, "-")
                        ratio = (b[2] != "") ? sprintf("%.1f-%.1fx", b[1] / ms, b[2] / ms) : sprintf("%.1fx", b[1] / ms)
                    }
                    printf "| %s | %s | %s | %d | %d | %.2f | %.2f | %d | %.1f | %s | %s | %s |\n", i, t, m, th, n, ms, med(r, n),
                        med(k, n), med(c, n), o, a == "" ? "-" : a, ratio
                    printf "%s %s %s %d %.4f\n", i, t, m, th, ms >>med_out
                }' "$WORK/results"
          done
        done
    done
done
echo
NT=$(echo "${THREADS//,/ }" | wc -w)
if [ "$NT" -gt 1 ]; then
    echo "Thread scaling (median seconds at the fewest threads / at the most):"
    awk 'BEGIN { lo = 1e9; hi = 0 }
        { k = $1 " " $2 " " $3; t[k, $4] = $5; keys[k] = 1; if ($4 < lo) lo = $4; if ($4 > hi) hi = $4 }
        END { for (k in keys) if ((k, lo) in t && (k, hi) in t)
                  printf "  %s: %d -> %d threads: %.2fx\n", k, lo, hi, t[k, lo] / t[k, hi] }' "$WORK/medians" | sort
    echo
fi
echo "llama.cpp: llama-quantize on the same shapes from F16 GGUF, 2 threads (the performance issue's figures);"
echo "a ratio above 1 means quantkit is faster. The 'hf' rows read the BF16 safetensors directly."
echo
fail=0
for ty in ${TYPES//,/ }; do
    v=$(cat "$WORK/verify.$ty" 2>/dev/null || echo "not run")
    echo "qk-inspect --verify ($ty, ${INPUTS%%,*} input): $v"
    [ "$v" = ok ] || { sed 's/^/  /' "$WORK/verify.$ty.out" 2>/dev/null || true; fail=1; }
done
[ "$fail" = 0 ] || die "qk-inspect --verify failed"
