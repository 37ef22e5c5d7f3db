#!/bin/sh
# Builds kernel.wasm from src/lib.rs (what `veraltheim-kernel build .` does). Needs a rustc with
# the wasm32-unknown-unknown target: `rustup target add wasm32-unknown-unknown`, or Debian's
# rustc + libstd-rust-dev-wasm32 (RUSTC=/usr/bin/rustc). `cargo build --release --target
# wasm32-unknown-unknown` works too (Cargo.toml).
set -e
cd "$(dirname "$0")"
"${RUSTC:-rustc}" --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib -O \
  -C panic=abort -C strip=debuginfo -o kernel.wasm src/lib.rs
echo "wrote kernel.wasm"
