#!/bin/sh
# `make bench`: the benchmarks of bench/README.md in turn -- qk-convert
# (convert.sh), qk-quantize (quantize.sh), qk-eval throughput (eval.sh).
# The preset of the first two comes from QK_BENCH_PRESET (default
# mistral-7b-v0.3: needs about 40 GB of free disk in $QK_BENCH_DIR or
# bench/out; llama-150m runs in minutes).
#
#   sh bench/run.sh                       all three, default options
#   sh bench/run.sh quantize --runs 5     one of them (convert | quantize | eval), options passed on
set -e
here=$(cd "$(dirname "$0")" && pwd)
preset=${QK_BENCH_PRESET:-mistral-7b-v0.3}
case "${1:-all}" in
convert) shift; exec bash "$here/convert.sh" --preset "$preset" "$@" ;;
quantize) shift; exec bash "$here/quantize.sh" --preset "$preset" "$@" ;;
eval) shift; exec bash "$here/eval.sh" "$@" ;;
all)
    [ $# -le 1 ] || { echo "run.sh: options go with one benchmark: run.sh convert|quantize|eval OPTIONS" >&2; exit 2; }
    bash "$here/convert.sh" --preset "$preset"
    bash "$here/quantize.sh" --preset "$preset" --no-build
    bash "$here/eval.sh" --no-build
    ;;
*) echo "run.sh: '$1': expected convert, quantize, eval or all" >&2; exit 2 ;;
esac
