#!/bin/sh
# make demo: the main job on the default model (stories260K, a real trained
# Llama-architecture model). Data: $QK_TEST_DATA, then ../shared/data, then
# data/cache (filled by data/fetch.sh when the network allows).
set -eu
cd "$(dirname "$0")/.."
pick() {
    for d in "${QK_TEST_DATA:-}" ../shared/data data/cache; do
        [ -n "$d" ] && [ -f "$d/models/stories260K/stories260K.bin" ] && { echo "$d"; return 0; }
    done
    return 1
}
DATA=$(pick) || {
    echo "demo: no test data found; downloading with data/fetch.sh" >&2
    sh data/fetch.sh data/cache
    DATA=data/cache
}
OUT=${QK_DEMO_OUT:-build/demo}
mkdir -p "$OUT"
M="$DATA/models/stories260K"
echo "== qk-convert: llama2.c checkpoint -> GGUF F32 (FFN padded 172 -> 192 so 32-blocks fit)"
bin/qk-convert "$M/stories260K.bin" --vocab "$M/tok512.bin" --pad-ffn 32 -o "$OUT/stories260K-f32.gguf"
echo
echo "== qk-inspect --verify"
bin/qk-inspect --verify "$OUT/stories260K-f32.gguf" | sed -n '/^tensors:/,$p'
