#!/bin/sh
# make demo: the main job on the default model (stories260K, a real trained
# Llama-architecture model): convert, calibrate on text, quantize to 4 bits
# with GPTQ (and plainly, for comparison), check the result against the
# original and apply the ship gate.
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

CALIB="$DATA/text/tinystories-valid-calib.txt"

echo "== 1. qk-convert: llama2.c checkpoint -> GGUF F32 (FFN padded 172 -> 192 so 32-blocks fit)"
bin/qk-convert "$M/stories260K.bin" --vocab "$M/tok512.bin" --pad-ffn 32 -o "$OUT/stories260K-f32.gguf"
bin/qk-inspect --verify "$OUT/stories260K-f32.gguf" | tail -4

echo
echo "== 2. qk-calibrate: importance statistics and Hessians from calibration text (disjoint from the eval text)"
bin/qk-calibrate "$OUT/stories260K-f32.gguf" --text "$CALIB" --ctx 128 --hessian --process-output \
    -o "$OUT/stories260K.qkc"

echo
echo "== 3. qk-quantize: 4-bit IQ4_NL mix, plain rounding (what every tool does) and GPTQ (the best method here)"
bin/qk-quantize "$OUT/stories260K-f32.gguf" "$OUT/stories260K-iq4_nl-rtn.gguf" IQ4_NL -q
bin/qk-quantize "$OUT/stories260K-f32.gguf" "$OUT/stories260K-iq4_nl.gguf" IQ4_NL \
    --method gptq --calib "$OUT/stories260K.qkc" | sed -n '/^type /,$p'

echo
echo "== 4. qk-eval: plain rounding against the original (report only)"
bin/qk-eval --base "$OUT/stories260K-f32.gguf" --quant "$OUT/stories260K-iq4_nl-rtn.gguf" \
    --text "$TEXT" --ctx 256 |
    awk '/KL divergence/ { k = 1 } k && /^mean/ { print "mean KLD             " $2; k = 0 } /^PPL|^delta PPL|^same top/'

echo
echo "== 5. qk-eval: the GPTQ file against the original, and the ship gate"
bin/qk-eval --base "$OUT/stories260K-f32.gguf" --quant "$OUT/stories260K-iq4_nl.gguf" \
    --text "$TEXT" --ctx 256 --max-kld 0.08 --min-same-top 85% --max-ppl-increase 8% \
    --json "$OUT/report.json"
echo
echo "demo outputs in $OUT (report.json holds every number)"
