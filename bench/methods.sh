#!/usr/bin/env bash
# bench/methods.sh: the quantization-method comparison of docs/METHODS.md.
#
# Quantizes the padded stories260K models (../shared/data/golden/llamacpp)
# with round-to-nearest, RTN + importance matrix and GPTQ variants, measures
# each file with qk-eval against the F32 model on the evaluation text (ctx
# 256, llama.cpp's protocol) and prints a Markdown table next to llama.cpp's
# own numbers for its files of the same size (quant_matrix_*.tsv).
#
#   bash bench/methods.sh            # the table on stdout, progress on stderr
#   THREADS=8 bash bench/methods.sh  # qk-quantize -t
#
# Environment: QK_TEST_DATA (default ../shared/data), QK_BIN_DIR (default
# bin/), QK_BENCH_DIR (default bench/out; files go to its methods/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
DATA=${QK_TEST_DATA:-$root/../shared/data}
BIN=${QK_BIN_DIR:-$root/bin}
OUT=${QK_BENCH_DIR:-$root/bench/out}/methods
G=$DATA/golden/llamacpp
CAL=$DATA/text/tinystories-valid-calib.txt
EV=$DATA/text/tinystories-valid-eval.txt
TOK=$DATA/models/stories260K/tok512.bin
T=${THREADS:+-t $THREADS}
for f in "$G/stories260K-pad192-f32.gguf" "$G/stories260K-pad256-f32.gguf" "$CAL" "$EV" "$BIN/qk-quantize" "$BIN/qk-eval"; do
    [ -e "$f" ] || { echo "methods.sh: $f not found (build with make; data in QK_TEST_DATA)" >&2; exit 1; }
done
mkdir -p "$OUT"
GPTQ="--method gptq --calib-text $CAL --calib-ctx 128"

# eval FILE_OR_DIR PAD [extra qk-eval args] -> "kld same_top ppl"
evaluate() {
    "$BIN/qk-eval" --base "$G/stories260K-$2-f32.gguf" --quant "$1" --text "$EV" --ctx 256 "${@:3}" 2>/dev/null |
        awk '/^mean / && !k { k = $2 } /^same top token/ { t = $4 } $1 == "PPL(Q)" { p = $2 } END { print k, t, p }'
}

# the GPTQ seconds per tensor (mean and max) from qk-quantize --json
per_tensor() {
    awk '/"gptq":/ { g = 1 } g && /"seconds":/ { v = $2 + 0; s += v; n++; if (v > m) m = v; g = 0 }
         END { if (n) printf "%.3f / %.3f", s / n, m; else printf "-" }' "$1"
}

header() {
    echo
    echo "$1"
    echo
    echo "| method | file | bytes | mean KLD | same top | PPL | quantize s | GPTQ s/tensor (mean / max) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
}

# ours NAME PAD TYPE [qk-quantize args]
ours() {
    local name=$1 pad=$2 type=$3 f
    shift 3
    f=$OUT/$pad-$type-$(echo "$name" | tr -c 'A-Za-z0-9_\n' '-').gguf
    echo "methods.sh: $pad $name" >&2
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN/qk-quantize" "$G/stories260K-$pad-f32.gguf" "$f" "$type" --pure --json $T "$@" >"$f.json"
    t1=$(date +%s.%N)
    read -r kld top ppl <<<"$(evaluate "$f" "$pad")"
    printf "| quantkit %s | %s | %s | %.4f | %.2f%% | %.4f | %.1f | %s |\n" "$name" "$type" "$(wc -c <"$f")" \
        "$kld" "${top%\%}" "$ppl" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$(per_tensor "$f.json")"
}

# llama PAD ROW: llama.cpp's numbers from its quant_matrix TSV
llama() {
    awk -F'\t' -v row="$2" 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $1 == row { printf "| llama.cpp %s | %s | %s | %.4f | %.2f%% | %.4f | | |\n", row, $2, $c["file_bytes"],
                    $c["mean_kld"], $c["same_top_pct"], $c["ppl"] }' "$G/quant_matrix_stories260K-$1.tsv"
}

# export NAME [qk-quantize args]: the GPTQ safetensors layout, 4-bit g32 sym
export_row() {
    local name=$1 d
    shift
    d=$OUT/pad192-export-$(echo "$name" | tr -c 'A-Za-z0-9_\n' '-')
    echo "methods.sh: export $name" >&2
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN/qk-quantize" "$G/stories260K-pad192-f32.gguf" -o "$d" --format gptq --group-size 32 --force -q $T "$@"
    t1=$(date +%s.%N)
    read -r kld top ppl <<<"$(evaluate "$d" pad192 --vocab "$TOK")"
    printf "| quantkit %s | GPTQ4 g32 | %s | %.4f | %.2f%% | %.4f | %.1f | |\n" "$name" "$(wc -c <"$d/model.safetensors")" \
        "$kld" "${top%\%}" "$ppl" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}

echo "# quantkit methods on stories260K ($(date -u +%Y-%m-%d), $(nproc) CPUs)"
echo
echo "Base F32 PPL 3.6068. KLD, same-top and PPL from qk-eval (ctx 256, second-half scoring); llama.cpp's"
echo "rows are its own perplexity tool's numbers (quant_matrix TSVs). Bytes: file size (quantkit files carry"
echo "~1.2 KB more metadata; tensor data is the same size per type)."

header "## pad192, 4.5 bpw, 32-element blocks (target: KLD <= 0.061)"
llama pad192 q4_0-pure
llama pad192 q4_0-pure-imx
llama pad192 iq4_nl-pure
llama pad192 iq4_nl-pure-imx
ours "rtn" pad192 IQ4_NL
ours "rtn + imatrix" pad192 IQ4_NL --imatrix "$G/imatrix-stories260K-pad192-c128.dat"
ours "gptq" pad192 Q4_0 $GPTQ
ours "gptq, no refine" pad192 IQ4_NL $GPTQ --refine 0
ours "gptq" pad192 IQ4_NL $GPTQ
ours "gptq --act-order" pad192 IQ4_NL $GPTQ --act-order
ours "gptq --sequential" pad192 IQ4_NL $GPTQ --sequential

header "## pad256, Q4_K size (target: KLD <= 0.053)"
llama pad256 q4_k-pure
llama pad256 q4_k-pure-imx
llama pad256 iq4_nl-pure-imx
ours "rtn" pad256 Q4_K
ours "rtn + imatrix" pad256 Q4_K --imatrix "$G/imatrix-stories260K-pad256-c128.dat"
ours "gptq, no refine" pad256 Q4_K $GPTQ --refine 0
ours "gptq" pad256 Q4_K $GPTQ
ours "gptq --act-order" pad256 Q4_K $GPTQ --act-order
ours "gptq" pad256 IQ4_NL $GPTQ

header "## Q8_0 size"
llama pad192 q8_0-pure
ours "rtn" pad192 Q8_0
ours "gptq" pad192 Q8_0 $GPTQ

header "## Other sizes (pad256)"
llama pad256 q3_k-pure-imx
ours "gptq" pad256 Q3_K $GPTQ
llama pad256 q5_k-pure-imx
ours "gptq" pad256 Q5_K $GPTQ
llama pad256 q6_k-pure-imx
ours "gptq" pad256 Q6_K $GPTQ
llama pad256 iq4_xs-pure-imx
ours "gptq" pad256 IQ4_XS $GPTQ

header "## GPTQ safetensors export (pad192; linear layers 4-bit, group 32, symmetric; embeddings and lm_head F16)"
export_row "rtn"
export_row "gptq" $GPTQ
