#!/bin/sh
# Check quantkit's build dependencies; install them with apt-get when missing
# and we are root (or sudo works without a password), else print the command.
PKGS="zlib1g-dev libcjson-dev libopenblas-dev libxxhash-dev check pkg-config"
missing=0
if ! command -v cc >/dev/null 2>&1; then
    PKGS="build-essential $PKGS"
    missing=1
fi
if ! command -v pkg-config >/dev/null 2>&1; then
    missing=1
else
    for m in zlib libcjson openblas libxxhash check; do
        pkg-config --exists "$m" || missing=1
    done
fi
[ "$missing" = 0 ] && exit 0
echo "quantkit: build dependencies missing; installing: $PKGS" >&2
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "quantkit: run this, then retry:  sudo apt-get update && sudo apt-get install -y $PKGS" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "quantkit: no apt-get here; install the equivalents of: $PKGS" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
$SUDO apt-get install -y -qq $PKGS >&2 || {
    echo "quantkit: apt-get install failed; run: apt-get install -y $PKGS" >&2
    exit 1
}
