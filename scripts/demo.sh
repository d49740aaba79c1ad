#!/bin/sh
# make demo: the main job on the default model (stories260K, a real trained
# Llama-architecture model): convert, quantize to 4 bits, check the result
# against the original and apply the ship gate.
# Data: $QK_TEST_DATA, then ../shared/data, then data/cache (filled by
# data/fetch.sh when the network allows).
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
TEXT="$DATA/text/tinystories-valid-eval.txt"

echo "== 1. qk-convert: llama2.c checkpoint -> GGUF F32 (FFN padded 172 -> 192 so 32-blocks fit)"
bin/qk-convert "$M/stories260K.bin" --vocab "$M/tok512.bin" --pad-ffn 32 -o "$OUT/stories260K-f32.gguf"
bin/qk-inspect --verify "$OUT/stories260K-f32.gguf" | tail -4

echo
echo "== 2. qk-quantize: 4-bit IQ4_NL mix"
bin/qk-quantize "$OUT/stories260K-f32.gguf" "$OUT/stories260K-iq4_nl.gguf" IQ4_NL | sed -n '/^type /,$p'

echo
echo "== 3. qk-eval: consistency with the original and the ship gate"
bin/qk-eval --base "$OUT/stories260K-f32.gguf" --quant "$OUT/stories260K-iq4_nl.gguf" \
    --text "$TEXT" --ctx 256 --max-kld 0.12 --min-same-top 80% --max-ppl-increase 12% \
    --json "$OUT/report.json"
echo
echo "demo outputs in $OUT (report.json holds every number)"
