#!/usr/bin/env bash
# bench/eval.sh — forward-pass throughput of qk-eval (tokens/s) on a
# synthetic 134M-parameter Llama in F32, Q8_0 and Q4_K_M, and on
# stories260K, at 1 and 2 threads, against llama.cpp's figures.
#
#   bench/eval.sh                       3 runs per model and thread count
#   bench/eval.sh --threads 2 --runs 5 --batch 1,2
#
# The models are made once into $QK_BENCH_DIR/eval (default bench/out/eval):
#   /usr/bin/python3 ../shared/bench/make_synth_gguf.py --preset llama-150m --dtype f32 -o llama-150m-f32.gguf
#   qk-quantize llama-150m-f32.gguf llama-150m-q8_0.gguf Q8_0
#   qk-quantize llama-150m-f32.gguf llama-150m-q4_k_m.gguf Q4_K_M
# Each run is
#   qk-eval MODEL --text wiki.test.raw --ctx 512 --chunks 8 -t T [-b B]
# under /usr/bin/time -v; "tok/s" is qk-eval's own figure (tokens through
# the forward pass and scoring / wall seconds in them), "tok/CPU s" the same
# tokens per CPU second (all threads) over the same span, "CPU s" user + sys
# of the whole run (model loading, tokenizing and checksums included).
# "load" is the 1-minute load average before the run: other work on the
# machine competes for the CPUs, and then wall-clock figures (tok/s
# included) drop while CPU seconds (and tok/CPU s) stay.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${QK_TEST_DATA:-$ROOT/../shared/data}
SYNTH_PY=${QK_SYNTH_GGUF:-$ROOT/../shared/bench/make_synth_gguf.py}
RUNS=3
THREADS=1,2
BATCH=1
CTX=512
CHUNKS=8
MODELS=f32,q8_0,q4_k_m,stories260k
BUILD=1
EVAL=${QK_EVAL:-$ROOT/bin/qk-eval}
QUANTIZE=$ROOT/bin/qk-quantize
DIR=${QK_BENCH_DIR:-$ROOT/bench/out}/eval
TEXT=$DATA/text/wiki.test.raw

# llama.cpp's llama-perplexity -c 512 -b 512 --chunks 8 on the same 134M
# model, 2 threads (the performance issue's figures), tokens/s.
anchor() {
    case "$1" in
    f32) echo 520 ;;
    q8_0) echo 610 ;;
    q4_k_m) echo 380 ;;
    *) echo "" ;;
    esac
}

usage() {
    cat <<EOF
Usage: bench/eval.sh [options]

Time 'qk-eval MODEL --text wiki.test.raw --ctx 512 --chunks 8' on a synthetic
llama-150m (F32, Q8_0, Q4_K_M) and stories260K at each thread count and print
tokens/s, CPU seconds and peak RSS per run, the medians, the ratio to
llama.cpp's figures and the 1 -> 2 thread scaling.

Options:
  --models LIST     f32,q8_0,q4_k_m,stories260k (default: all)
  --threads LIST    thread counts (default 1,2)
  --batch LIST      qk-eval -b values, windows per forward pass (default 1)
  --runs N          runs per model, thread count and batch (default 3)
  --chunks K        windows (default 8)
  --ctx N           window length (default 512)
  --dir DIR         where the models go (default \$QK_BENCH_DIR/eval or bench/out/eval)
  --eval PATH       the qk-eval binary to time (default \$QK_EVAL or bin/qk-eval)
  --no-build        do not run make first
  -h, --help        this help
EOF
}

die() { echo "eval.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --models) MODELS=${2:?--models needs a value}; shift 2 ;;
    --threads) THREADS=${2:?--threads needs a value}; shift 2 ;;
    --batch) BATCH=${2:?--batch needs a value}; shift 2 ;;
    --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
    --chunks) CHUNKS=${2:?--chunks needs a value}; shift 2 ;;
    --ctx) CTX=${2:?--ctx needs a value}; shift 2 ;;
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --eval) EVAL=${2:?--eval needs a value}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "eval.sh: unknown option '$1'" >&2; echo "Try 'bench/eval.sh --help'." >&2; exit 2 ;;
    esac
done
posint() { case "$2" in ''|*[!0-9]*|0) echo "eval.sh: $1 '$2': expected a positive integer" >&2; exit 2 ;; esac; }
posint --runs "$RUNS"
posint --chunks "$CHUNKS"
posint --ctx "$CTX"
for t in ${THREADS//,/ }; do posint --threads "$t"; done
for b in ${BATCH//,/ }; do posint --batch "$b"; done
for m in ${MODELS//,/ }; do
    case "$m" in f32|q8_0|q4_k_m|stories260k) ;; *) echo "eval.sh: --models: '$m' is not f32, q8_0, q4_k_m or stories260k" >&2; exit 2 ;; esac
done

if [ ! -x /usr/bin/time ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null || die "cannot install package 'time'"
    else
        die "/usr/bin/time is missing: install the package 'time' (apt-get install time)"
    fi
fi
[ "$BUILD" = 0 ] || make -s -C "$ROOT" all >&2
for t in "$EVAL" "$QUANTIZE"; do [ -x "$t" ] || die "$t is not built (run 'make')"; done
[ -f "$TEXT" ] || die "$TEXT not found (set QK_TEST_DATA)"

# ------------------------------------------------------------- models
mkdir -p "$DIR"
F32=$DIR/llama-150m-f32.gguf
model_path() {
    case "$1" in
    f32) echo "$F32" ;;
    q8_0) echo "$DIR/llama-150m-q8_0.gguf" ;;
    q4_k_m) echo "$DIR/llama-150m-q4_k_m.gguf" ;;
    stories260k) echo "$DATA/models/stories260K/stories260K.gguf" ;;
    esac
}
need_f32=0
for m in ${MODELS//,/ }; do
    case "$m" in f32|q8_0|q4_k_m) need_f32=1 ;; esac
done
if [ "$need_f32" = 1 ] && [ ! -f "$F32" ]; then
    [ -f "$SYNTH_PY" ] || die "$SYNTH_PY not found (set QK_SYNTH_GGUF)"
    echo "making $F32" >&2
    /usr/bin/python3 "$SYNTH_PY" --preset llama-150m --dtype f32 -o "$F32" >&2 || die "make_synth_gguf.py failed (it needs numpy)"
fi
for m in q8_0 q4_k_m; do
    case ",$MODELS," in *,$m,*) ;; *) continue ;; esac
    p=$(model_path "$m")
    if [ ! -f "$p" ]; then
        echo "making $p" >&2
        "$QUANTIZE" "$F32" "$p" "${m^^}" -q || die "qk-quantize ${m^^} failed"
    fi
done
for m in ${MODELS//,/ }; do [ -f "$(model_path "$m")" ] || die "$(model_path "$m") not found"; done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/qk-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
field() { awk -v k="$1: " '{ sub(/^[ \t]+/, "") } index($0, k) == 1 { print substr($0, length(k) + 1); exit }' "$2"; }
now() { date +%s.%N; }

CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
MEM=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
echo "# qk-eval throughput: ctx $CTX, $CHUNKS windows of $(basename "$TEXT")"
echo
echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine:  $(nproc) CPUs ($CPU), $MEM RAM, kernel $(uname -r)"
echo "quantkit: $("$EVAL" --version) ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- common formats eval include 2>/dev/null || echo '+changes')), $EVAL"
for m in ${MODELS//,/ }; do
    p=$(model_path "$m")
    echo "model $m: $p ($(stat -c %s "$p") bytes)"
done
echo
printf '| model | threads | batch | run | tok/s | tok/CPU s | PPL | wall s | CPU s | peak RSS (MB) | load |\n'
printf '|:------|--------:|------:|----:|------:|----------:|----:|-------:|------:|--------------:|-----:|\n'
: >"$WORK/results"
for m in ${MODELS//,/ }; do
    p=$(model_path "$m")
    for t in ${THREADS//,/ }; do
        for b in ${BATCH//,/ }; do
            for run in $(seq "$RUNS"); do
                load=$(cut -d ' ' -f 1 /proc/loadavg)
                t0=$(now)
                if ! /usr/bin/time -v -o "$WORK/run.time" "$EVAL" "$p" --text "$TEXT" --ctx "$CTX" --chunks "$CHUNKS" \
                    -t "$t" -b "$b" >"$WORK/run.out" 2>"$WORK/run.err"; then
                    cat "$WORK/run.err" >&2
                    die "qk-eval failed on $p (-t $t -b $b)"
                fi
                t1=$(now)
                tps=$(awk '/^speed:/ { print $2 }' "$WORK/run.out")
                tpc=$(awk '/^speed:/ { print $4 }' "$WORK/run.out")
                [ -n "$tpc" ] || tpc=0 # qk-eval before it reported CPU time
                ppl=$(awk '/^PPL =/ { print $3 }' "$WORK/run.out")
                wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
                cpu=$(awk -v u="$(field 'User time (seconds)' "$WORK/run.time")" \
                          -v s="$(field 'System time (seconds)' "$WORK/run.time")" 'BEGIN { printf "%.2f", u + s }')
                rss=$(( $(field 'Maximum resident set size (kbytes)' "$WORK/run.time") / 1024 ))
                printf '| %s | %d | %d | %d | %s | %s | %s | %s | %s | %d | %s |\n' "$m" "$t" "$b" "$run" "$tps" "$tpc" "$ppl" \
                    "$wall" "$cpu" "$rss" "$load"
                echo "$m $t $b $tps $cpu $rss $tpc $load" >>"$WORK/results"
            done
        done
    done
done

echo
echo "| model | threads | batch | median tok/s | median tok/CPU s | median CPU s | peak RSS (MB) | median load | vs 1 thread | llama.cpp tok/s (2 threads) | quantkit / llama.cpp |"
echo "|:------|--------:|------:|-------------:|-----------------:|-------------:|--------------:|------------:|------------:|----------------------------:|---------------------:|"
for m in ${MODELS//,/ }; do
    for b in ${BATCH//,/ }; do
        awk -v m="$m" -v b="$b" -v a="$(anchor "$m")" 'BEGIN { no = 0 }
            function med(v, n,   x, y, z) {
                for (x = 0; x < n; x++) for (y = x + 1; y < n; y++) if (v[y] < v[x]) { z = v[x]; v[x] = v[y]; v[y] = z }
                return n % 2 ? v[int(n / 2)] : (v[n / 2 - 1] + v[n / 2]) / 2
            }
            $1 == m && $3 == b {
                t = $2
                if (!(t in cnt)) { order[no++] = t; cnt[t] = 0 }
                c = cnt[t]++
                tps[t, c] = $4; cpu[t, c] = $5; rss[t, c] = $6; tpc[t, c] = $7; ld[t, c] = $8
            }
            END {
                for (i = 0; i < no; i++) {
                    t = order[i]; n = cnt[t]
                    for (k = 0; k < n; k++) { v1[k] = tps[t, k]; v2[k] = cpu[t, k]; v3[k] = rss[t, k]; v4[k] = tpc[t, k]; v5[k] = ld[t, k] }
                    mt[t] = med(v1, n); mc[t] = med(v2, n); mr[t] = med(v3, n); mp[t] = med(v4, n); ml[t] = med(v5, n)
                }
                for (i = 0; i < no; i++) {
                    t = order[i]
                    sc = ((1 in mt) && mt[1] > 0) ? sprintf("%.2fx", mt[t] / mt[1]) : "-"
                    ra = (a != "" && t == 2) ? sprintf("%.2f", mt[t] / a) : "-"
                    printf "| %s | %d | %d | %.1f | %.1f | %.2f | %d | %.2f | %s | %s | %s |\n", m, t, b, mt[t], mp[t], mc[t], mr[t], ml[t], sc,
                        (a != "" && t == 2) ? a : "-", ra
                }
            }' "$WORK/results"
    done
done
echo
echo "llama.cpp: llama-perplexity -c 512 -b 512 --chunks 8 on the same synthetic 134M model, 2 threads"
echo "(the performance issue's figures); a ratio above 1 means quantkit is faster."
