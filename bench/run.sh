#!/bin/sh
# `make bench`: the qk-convert benchmark (bench/convert.sh). The preset comes
# from QK_BENCH_PRESET (default mistral-7b-v0.3: needs about 40 GB of free
# disk in $QK_BENCH_DIR or bench/out; llama-150m runs in seconds), and any
# arguments are passed on (e.g. `sh bench/run.sh --runs 5`).
set -e
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/convert.sh" --preset "${QK_BENCH_PRESET:-mistral-7b-v0.3}" "$@"
