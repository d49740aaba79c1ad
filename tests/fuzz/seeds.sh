#!/bin/sh
# Seed corpora for the fuzz targets, derived at run time from the real files
# under ../shared/data (or $QK_TEST_DATA) into build/fuzz/corpus/<target>/.
# Seeds are kept small (a few KB) so mutations run fast: big files are cut
# down with build/fuzz/mkseeds (built by `make fuzz`), tiny models are
# synthesized with the library's own writers. Without the data directory
# only the synthetic seeds are made; the committed cases in
# tests/fuzz/cases/<target>/ are used either way (tests/fuzz/run.sh).
set -eu
cd "$(dirname "$0")/../.."
MK=build/fuzz/mkseeds
OUT=build/fuzz/corpus
SEP='
@@QKFILE@@
'
[ -x "$MK" ] || { echo "seeds.sh: $MK missing; run make fuzz" >&2; exit 1; }
DATA=${QK_TEST_DATA:-../shared/data}
[ -d "$DATA" ] || { echo "seeds.sh: no test data at $DATA; synthetic seeds only" >&2; DATA=; }
rm -rf "$OUT"
for t in gguf safetensors st_index llama2c vocab_llama2c vocab_spm vocab_json hf_config basefile gptq calib; do
    mkdir -p "$OUT/$t"
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qk-seeds-XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# join FILE... > OUT: files of one multi-file input, separated by $SEP.
join() {
    first=1
    for f in "$@"; do
        [ $first = 1 ] || printf '%s' "$SEP"
        cat "$f"
        first=0
    done
}

# A vocabulary for the synthetic models: tok512 when present, else none.
VOCAB=
if [ -n "$DATA" ]; then
    VOCAB=$DATA/models/stories260K/stories260K.gguf
fi

# ---- GGUF: real files cut down, a vocab-only file, tiny models of every type
if [ -n "$DATA" ]; then
    for f in models/stories260K/stories260K.gguf models/llama-2-tiny-random/llama-2-tiny-random.gguf \
             tokenizers/llama-spm/ggml-vocab-llama-spm.gguf \
             golden/llamacpp/stories260K-pad192-q4_0-pure.gguf golden/llamacpp/stories260K-pad256-q4_k_m.gguf \
             golden/llamacpp/stories260K-pad256-iq4_xs-pure.gguf golden/llamacpp/stories260K-pad256-q2_k-pure.gguf; do
        $MK gguf-shrink "$DATA/$f" "$OUT/gguf/$(basename "$f" .gguf)-shrunk.gguf"
    done
    head -c 4096 "$DATA/tokenizers/llama-spm/ggml-vocab-llama-spm.gguf" > "$OUT/gguf/vocab-spm-head4k.gguf"
    for ty in F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_NL IQ4_XS; do
        rc=0
        $MK gguf-tiny $ty "$VOCAB" "$OUT/gguf/tiny-$ty.gguf" || rc=$?
        [ $rc = 0 ] || [ $rc = 3 ] || exit 1
    done
fi

# ---- safetensors, sharded sets, Hugging Face / GPTQ directories
if [ -n "$DATA" ]; then
    for d in float32 float16 bfloat16; do
        $MK st-shrink "$DATA/models/stories260K-hf/$d/model.safetensors" "$OUT/safetensors/stories260K-$d.safetensors"
        cp "$DATA/models/stories260K-hf/$d/config.json" "$OUT/hf_config/stories260K-$d.json"
    done
    $MK st-split "$OUT/safetensors/stories260K-float16.safetensors" "$OUT/st_index/stories260K-f16-2shards"
    $MK hf-tiny "$VOCAB" "$TMP/hf"
    $MK hf-tiny "$VOCAB" "$TMP/hf" 4
    $MK hf-tiny "$VOCAB" "$TMP/hf8" 8
    cp "$TMP/hf/model.safetensors" "$OUT/safetensors/tiny-f16.safetensors"
    cp "$TMP/hf/gptq/model.safetensors" "$OUT/safetensors/tiny-gptq4.safetensors"
    cp "$TMP/hf/config.json" "$OUT/hf_config/tiny.json"
    cp "$TMP/hf/gptq/config.json" "$OUT/hf_config/tiny-gptq4.json"
    join "$TMP/hf/config.json" "$TMP/hf/model.safetensors" > "$OUT/gptq/tiny-f16"
    join "$TMP/hf/gptq/config.json" "$TMP/hf/gptq/model.safetensors" > "$OUT/gptq/tiny-gptq4"
    join "$TMP/hf8/gptq/config.json" "$TMP/hf8/gptq/model.safetensors" > "$OUT/gptq/tiny-gptq8"
    $MK st-split "$TMP/hf/gptq/model.safetensors" "$OUT/st_index/tiny-gptq4-2shards"
fi

# ---- llama2.c checkpoints and tokenizer.bin
$MK l2c-tiny "$TMP/l2c.bin"
$MK l2c-tiny "$TMP/l2c-unshared.bin" unshared
cp "$TMP/l2c.bin" "$OUT/llama2c/tiny-shared.bin"
cp "$TMP/l2c-unshared.bin" "$OUT/llama2c/tiny-unshared.bin"
if [ -n "$DATA" ]; then
    TOK=$DATA/models/stories260K/tok512.bin
    cp "$TOK" "$OUT/vocab_llama2c/tok512.bin"
    $MK l2c-tok "$TOK" 16 "$TMP/tok16.bin"
    $MK l2c-tok "$TOK" 300 "$OUT/vocab_llama2c/tok300.bin"
    cp "$TMP/tok16.bin" "$OUT/vocab_llama2c/tok16.bin"
    join "$TMP/l2c.bin" "$TMP/tok16.bin" > "$OUT/llama2c/tiny-shared-tok16"
    join "$TMP/l2c-unshared.bin" "$TMP/tok16.bin" > "$OUT/llama2c/tiny-unshared-tok16"
fi

# ---- SentencePiece tokenizer.model, tokenizer.json
if [ -n "$DATA" ]; then
    $MK spm-shrink "$DATA/tokenizers/llama2/tokenizer.model" 300 "$OUT/vocab_spm/llama2-300.model"
    $MK spm-shrink "$DATA/tokenizers/llama2/tokenizer.model" 8 "$OUT/vocab_spm/llama2-8.model"
    $MK tokjson "$DATA/models/stories260K/tok512.bin" 300 "$OUT/vocab_json/tok512-300.json"
    $MK tokjson "$DATA/tokenizers/llama-spm/ggml-vocab-llama-spm.gguf" 400 "$OUT/vocab_json/llama-spm-400.json"
    $MK tokjson "$DATA/models/stories260K/tok512.bin" 12 "$OUT/vocab_json/tok512-12.json"
fi

# ---- saved base, imatrix files
$MK base "$OUT/basefile/base-8x4.qkbase"
$MK calib-synth "$OUT/calib/synth-hessian.qkc"
if [ -n "$DATA" ]; then
    for f in "$DATA"/golden/llamacpp/imatrix-*.dat; do
        b=$(basename "$f" .dat)
        $MK calib-shrink "$f" "$OUT/calib/$b-4x8.dat"
        $MK calib-shrink "$f" "$OUT/calib/$b-4x8.qkc"
    done
    cp "$DATA/golden/llamacpp/imatrix-stories260K-pad192-c128.dat" "$OUT/calib/"
fi

for t in "$OUT"/*; do
    printf '%-14s %3d seeds %8d bytes\n' "$(basename "$t")" "$(ls "$t" | wc -l)" "$(cat "$t"/* 2>/dev/null | wc -c)" >&2
done
