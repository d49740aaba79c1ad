#!/usr/bin/env bash
# bench/convert.sh — time qk-convert on a synthetic checkpoint with a real
# architecture's shapes and report wall seconds, input GB/s and peak RSS.
#
#   bench/convert.sh                           Mistral-7B-v0.3 shapes, BF16 -> GGUF F16, 3 runs per mode
#   bench/convert.sh --preset llama-150m       the same on a 134M-parameter Llama (seconds)
#   bench/convert.sh --runs 5 --clean          5 runs, delete the generated checkpoint at the end
#
# The checkpoint is generated once by bench/bin/qk-synth into
# $QK_BENCH_DIR (default bench/out/, gitignored) and reused by later runs.
# Each run converts it with
#   qk-convert CKPT -o OUT.gguf --outtype f16
# under /usr/bin/time -v. Modes:
#   cold  page cache dropped before the run (sync; echo 3 > /proc/sys/vm/drop_caches),
#         only when that file is writable (root, not in every container)
#   warm  the shards read once (cat > /dev/null) just before the run
# The output is deleted before every run (so each run writes a new file, and
# the disk never holds two outputs) and at the end unless --keep-output.
# GB are 10^9 bytes, MB of RSS are 2^20 bytes (as /usr/bin/time's kbytes / 1024).
# "load" is the 1-minute load average just before the run: other work on the
# machine competes for the CPUs and the disk.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PRESET=mistral-7b-v0.3
DTYPE=bf16
OUTTYPE=f16
RUNS=3
SEED=0
MODES=auto
BUILD=1
KEEP_OUTPUT=0
CLEAN=0
CONVERT=${QK_CONVERT:-$ROOT/bin/qk-convert}
DIR=${QK_BENCH_DIR:-$ROOT/bench/out}

usage() {
    cat <<EOF
Usage: bench/convert.sh [options]

Generate a synthetic checkpoint (bench/bin/qk-synth) once, then time
'qk-convert CKPT -o OUT.gguf --outtype f16' under /usr/bin/time -v and print
seconds, input GB/s and peak RSS per run, the median per mode, and the result
of 'qk-inspect --verify' on the output.

Options:
  --preset NAME     mistral-7b-v0.3 (default) | llama-150m | tiny
  --dtype TYPE      checkpoint dtype: bf16 (default) | f16 | f32
  --outtype TYPE    qk-convert --outtype: f16 (default) | bf16 | f32
  --runs N          runs per mode (default 3)
  --modes LIST      cold,warm | cold | warm (default: both when the page cache
                    can be dropped, else warm)
  --dir DIR         where the checkpoint and output go (default \$QK_BENCH_DIR
                    or bench/out)
  --convert PATH    the qk-convert binary to time (default \$QK_CONVERT or
                    bin/qk-convert), e.g. a patched build to compare
  --no-build        do not run make first
  --keep-output     keep the converted .gguf
  --clean           delete the generated checkpoint at the end too
  -h, --help        this help
EOF
}

die() { echo "convert.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --preset) PRESET=${2:?--preset needs a value}; shift 2 ;;
    --dtype) DTYPE=${2:?--dtype needs a value}; shift 2 ;;
    --outtype) OUTTYPE=${2:?--outtype needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --modes) MODES=${2:?--modes needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --convert) CONVERT=${2:?--convert needs a value}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep-output) KEEP_OUTPUT=1; shift ;;
    --clean) CLEAN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "convert.sh: unknown option '$1'" >&2; echo "Try 'bench/convert.sh --help'." >&2; exit 2 ;;
    esac
done

# Parameters of each preset (must match qk-synth's table) and bytes per element.
case "$PRESET" in
mistral-7b-v0.3) PARAMS=7248023552 ;;
llama-150m) PARAMS=134105856 ;;
tiny) PARAMS=4196608 ;;
*) echo "convert.sh: --preset '$PRESET': expected mistral-7b-v0.3, llama-150m or tiny" >&2; exit 2 ;;
esac
esize() {
    case "$1" in
    bf16|f16) echo 2 ;;
    f32) echo 4 ;;
    *) echo "convert.sh: unknown type '$1' (expected bf16, f16 or f32)" >&2; exit 2 ;;
    esac
}
IN_ES=$(esize "$DTYPE")
OUT_ES=$(esize "$OUTTYPE")
case "$RUNS" in ''|*[!0-9]*|0) echo "convert.sh: --runs '$RUNS': expected a positive integer" >&2; exit 2 ;; esac

# ------------------------------------------------------------------ tools
if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "convert.sh: installing GNU time (package 'time')" >&2
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
for t in "$SYNTH" "$CONVERT" "$INSPECT"; do
    [ -x "$t" ] || die "$t is not built (run 'make' and 'make -C bench')"
done

DROP_OK=0
if [ -w /proc/sys/vm/drop_caches ] && sync && (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null; then
    DROP_OK=1
fi
if [ "$MODES" = auto ]; then
    if [ "$DROP_OK" = 1 ]; then MODES=cold,warm; else MODES=warm; fi
fi
case ",$MODES," in
*,cold,*) [ "$DROP_OK" = 1 ] || die "--modes cold: cannot drop the page cache here (needs a writable /proc/sys/vm/drop_caches)" ;;
esac

# ------------------------------------------------------------------ space
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CKPT=$DIR/$PRESET-$DTYPE-seed$SEED
OUT=$DIR/$PRESET-$DTYPE-to-$OUTTYPE.gguf
rm -f "$OUT"
IN_BYTES=$((PARAMS * IN_ES))
OUT_BYTES=$((PARAMS * OUT_ES))
NEED=$OUT_BYTES
[ -f "$CKPT/config.json" ] || NEED=$((NEED + IN_BYTES))
# headroom: a third more, at least 1 GB (for the 7B BF16 -> F16 case ~40 GB in all)
HEAD=$(( (IN_BYTES + OUT_BYTES) / 3 ))
[ "$HEAD" -ge 1000000000 ] || HEAD=1000000000
AVAIL=$(df -B1 --output=avail "$DIR" | tail -n 1 | tr -d ' ')
gb() { awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1e9 }'; }
if [ "$AVAIL" -lt $((NEED + HEAD)) ]; then
    echo "convert.sh: not enough free disk in $DIR: $(gb "$AVAIL") free, this benchmark needs about $(gb $((NEED + HEAD)))" >&2
    echo "convert.sh: ($PRESET $DTYPE input $(gb "$IN_BYTES") + $OUTTYPE output $(gb "$OUT_BYTES") + headroom);" \
         "point QK_BENCH_DIR (or --dir) at a larger file system, or use --preset llama-150m" >&2
    exit 1
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qk-bench.XXXXXX")
cleanup() {
    rm -rf "$WORK"
    [ "$KEEP_OUTPUT" = 1 ] || rm -f "$OUT"
    [ "$CLEAN" = 0 ] || rm -rf "$CKPT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# field NAME FILE: a value from /usr/bin/time -v output
field() { awk -v k="$1: " '{ sub(/^[ \t]+/, "") } index($0, k) == 1 { print substr($0, length(k) + 1); exit }' "$2"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# ------------------------------------------------------------- machine
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "# qk-convert benchmark: $PRESET $DTYPE -> GGUF $OUTTYPE"
echo
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:  $(nproc) CPUs ($CPU), $MEM RAM, kernel $(uname -r)"
echo "disk:     $DIR on $(df --output=source,fstype "$DIR" | tail -n 1 | tr -s ' '), $(gb "$AVAIL") free"
echo "quantkit: $("$CONVERT" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- common formats convert include 2>/dev/null || echo '+changes')), $CONVERT"
echo

# ------------------------------------------------------------- generate
if [ -f "$CKPT/config.json" ]; then
    echo "checkpoint: reusing $CKPT"
else
    echo "checkpoint: generating $CKPT"
    echo "  \$ qk-synth --preset $PRESET --dtype $DTYPE --seed $SEED -o $CKPT"
    t0=$(now)
    /usr/bin/time -v -o "$WORK/synth.time" "$SYNTH" --preset "$PRESET" --dtype "$DTYPE" --seed "$SEED" \
        -o "$CKPT" >"$WORK/synth.out" 2>"$WORK/synth.err" || { cat "$WORK/synth.err" >&2; die "qk-synth failed"; }
    t1=$(now)
    sed 's/^/  /' "$WORK/synth.out"
    echo "  generated in $(secs "$t0" "$t1") s, peak RSS $(( $(field 'Maximum resident set size (kbytes)' "$WORK/synth.time") / 1024 )) MB"
fi
N_SHARDS=0
IN_FILE_BYTES=0
for f in "$CKPT"/*.safetensors; do
    N_SHARDS=$((N_SHARDS + 1))
    IN_FILE_BYTES=$((IN_FILE_BYTES + $(stat -c %s "$f")))
done
echo "input:    $N_SHARDS safetensors file(s), $IN_FILE_BYTES bytes ($(gb "$IN_FILE_BYTES"))"
echo
echo "  \$ qk-convert $CKPT -o $OUT --outtype $OUTTYPE"
echo

# ------------------------------------------------------------------ runs
printf '| run | cache | seconds | input GB/s | peak RSS (MB) | user s | sys s | major faults | output bytes | load |\n'
printf '|----:|:------|--------:|-----------:|--------------:|-------:|------:|-------------:|-------------:|-----:|\n'
: >"$WORK/results"
run=0
for mode in ${MODES//,/ }; do
    for _ in $(seq "$RUNS"); do
        run=$((run + 1))
        rm -f "$OUT"
        sync
        if [ "$mode" = cold ]; then
            echo 3 > /proc/sys/vm/drop_caches
        else
            cat "$CKPT"/*.safetensors > /dev/null
        fi
        load=$(cut -d ' ' -f 1 /proc/loadavg)
        t0=$(now)
        if ! /usr/bin/time -v -o "$WORK/run.time" "$CONVERT" "$CKPT" -o "$OUT" --outtype "$OUTTYPE" -q \
            2>"$WORK/run.err"; then
            cat "$WORK/run.err" >&2
            die "qk-convert failed (run $run)"
        fi
        t1=$(now)
        s=$(secs "$t0" "$t1")
        rss=$(( $(field 'Maximum resident set size (kbytes)' "$WORK/run.time") / 1024 ))
        user=$(field 'User time (seconds)' "$WORK/run.time")
        sys=$(field 'System time (seconds)' "$WORK/run.time")
        majf=$(field 'Major (requiring I/O) page faults' "$WORK/run.time")
        ob=$(stat -c %s "$OUT")
        rate=$(awk -v b="$IN_FILE_BYTES" -v s="$s" 'BEGIN { printf "%.2f", b / 1e9 / s }')
        printf '| %d | %s | %s | %s | %d | %s | %s | %s | %s | %s |\n' "$run" "$mode" "$s" "$rate" "$rss" "$user" "$sys" \
            "$majf" "$ob" "$load"
        echo "$mode $s $rate $rss" >>"$WORK/results"
    done
done
echo
for mode in ${MODES//,/ }; do
    # median of seconds, GB/s and RSS over this mode's runs
    awk -v m="$mode" 'BEGIN { n = 0 } $1 == m { s[n] = $2; r[n] = $3; k[n] = $4; n++ }
        function med(a, n,   i, j, t) {
            for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[int(n / 2)] : (a[n / 2 - 1] + a[n / 2]) / 2
        }
        END { if (n) printf "median %-4s (%d runs): %.2f s, %.2f GB/s, peak RSS %d MB\n", m, n, med(s, n), med(r, n), med(k, n) }' \
        "$WORK/results"
done

# ---------------------------------------------------------------- verify
echo
echo "  \$ qk-inspect --verify $OUT"
t0=$(now)
if /usr/bin/time -v -o "$WORK/verify.time" "$INSPECT" --verify "$OUT" >"$WORK/verify.out" 2>"$WORK/verify.err"; then
    vrc=0
else
    vrc=$?
fi
t1=$(now)
grep -E '^(verify|parameters|file size|tensor data)' "$WORK/verify.out" | sed 's/^/  /' || true
sed 's/^/  /' "$WORK/verify.err"
echo "  verify: exit $vrc in $(secs "$t0" "$t1") s, peak RSS $(( $(field 'Maximum resident set size (kbytes)' "$WORK/verify.time") / 1024 )) MB"
[ "$vrc" = 0 ] || die "qk-inspect --verify failed on $OUT"
