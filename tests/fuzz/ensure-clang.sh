#!/bin/sh
# Check that $1 (default clang) links libFuzzer + ASan + UBSan programs;
# install Debian's clang and its runtimes with apt-get when not (as root, or
# with password-less sudo), else print the command. Used by `make fuzz`.
CC=${1:-clang}
PKGS="clang libclang-rt-dev"
probe() {
    d=$(mktemp -d "${TMPDIR:-/tmp}/qk-fuzzcc-XXXXXX") || return 1
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$d/p.c"
    "$CC" -fsanitize=fuzzer,address,undefined -o "$d/p" "$d/p.c" >/dev/null 2>&1
    rc=$?
    rm -rf "$d"
    return $rc
}
probe && exit 0
echo "quantkit: '$CC' cannot build libFuzzer targets; installing: $PKGS" >&2
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "quantkit: run this, then retry:  sudo apt-get install -y $PKGS" >&2
    exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "quantkit: no apt-get here; install clang with its compiler-rt (libFuzzer)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2 || true
$SUDO apt-get install -y -qq $PKGS >&2 || { echo "quantkit: apt-get install failed; run: apt-get install -y $PKGS" >&2; exit 1; }
probe || { echo "quantkit: '$CC' still cannot link -fsanitize=fuzzer" >&2; exit 1; }
