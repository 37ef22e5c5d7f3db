#!/bin/sh
# Builds kernel.wasm from kernel.c and the SDK runtime vh.c (what `veraltheim-kernel build .`
# does). Uses clang + wasm-ld when installed, else zig (`pip install ziglang`); CC=zig forces zig.
set -e
cd "$(dirname "$0")"
if [ "${CC:-}" = zig ] || ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null; then
  set -- "${PYTHON:-python3}" -m ziglang cc --target=wasm32-freestanding
else
  set -- clang --target=wasm32
fi
"$@" -O2 -mbulk-memory -nostdlib -Wl,--no-entry -Wl,-z,stack-size=65536 -o kernel.wasm kernel.c vh.c
echo "wrote kernel.wasm"
