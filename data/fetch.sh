#!/bin/sh
# Download the public test models and texts quantkit's demo and tests use,
# for machines that have network access, into data/cache (or $1).
#
#   stories260K.bin, tok512.bin  karpathy/tinyllamas (MIT license)
#   wiki.test.raw                WikiText-2 raw test split (CC BY-SA 3.0)
#   tinystories-valid-*.txt      TinyStories validation split (CDLA-Sharing-1.0)
#
# The layout mirrors ../shared/data (models/stories260K/..., text/...), so
# QK_TEST_DATA=data/cache works for the tests that need only these files.
set -eu
dest=${1:-$(dirname "$0")/cache}
mkdir -p "$dest/models/stories260K" "$dest/text"
HF=https://huggingface.co

fetch() { # url file [sha256]
    [ -s "$2" ] && return 0
    echo "fetching $1" >&2
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 2 -o "$2.part" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -O "$2.part" "$1"
    else
        echo "fetch.sh: need curl or wget" >&2; exit 1
    fi
    if [ -n "${3:-}" ] && command -v sha256sum >/dev/null 2>&1; then
        echo "$3  $2.part" | sha256sum -c --quiet - || { rm -f "$2.part"; echo "fetch.sh: checksum mismatch for $1" >&2; exit 1; }
    fi
    mv "$2.part" "$2"
}

fetch "$HF/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin" \
      "$dest/models/stories260K/stories260K.bin" \
      b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
fetch "$HF/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin" \
      "$dest/models/stories260K/tok512.bin" \
      037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312

if [ ! -s "$dest/text/wiki.test.raw" ]; then
    fetch "$HF/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip" "$dest/wikitext-2-raw-v1.zip"
    (cd "$dest" && unzip -o -q wikitext-2-raw-v1.zip && mv wikitext-2-raw/wiki.test.raw text/ && rm -rf wikitext-2-raw)
fi

if [ ! -s "$dest/text/tinystories-valid-eval.txt" ]; then
    fetch "$HF/datasets/roneneldan/TinyStories/resolve/main/TinyStories-valid.txt" "$dest/TinyStories-valid.txt"
    # eval: the first 32,000 characters; calibration: 16,000 from character 9,000,000;
    # <|endoftext|> lines become blank lines (bytes stand in for characters: the text is ASCII)
    sed 's/^<|endoftext|>$//' "$dest/TinyStories-valid.txt" > "$dest/ts.txt"
    head -c 32000 "$dest/ts.txt" > "$dest/text/tinystories-valid-eval.txt"
    tail -c +9000001 "$dest/ts.txt" | head -c 16000 > "$dest/text/tinystories-valid-calib.txt"
    rm -f "$dest/ts.txt"
fi
echo "test data in $dest" >&2
