"""Small hand-written WebAssembly modules for runtime tests, with a manifest around them.

They follow the kernel ABI (README.md, "Kernels") (memory, vh_alloc, vh_reset, vh_begin,
vh_error, kernels `(in_ptr, in_len, params_ptr, n_params, result_ptr) -> i32`) and add the
pathological cases the real kernels never show: a loop that never ends, a memory hog,
a trap, a forbidden import.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import wasmtime
from veraltheim.wasm.manifest import MANIFEST_FORMAT

# The ABI every module shares: a 16-byte aligned bump allocator from offset 1024.
_ABI = r"""
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 1024))
  (global $err (mut i32) (i32.const 0))
  (data (i32.const 16) "test: params rejected\00")
  (data (i32.const 64) "test: no memory left\00")
  (func $reset (export "vh_reset")
    (global.set $top (i32.const 1024)) (global.set $err (i32.const 0)))
  (func $alloc (export "vh_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $top) (i32.const 15)) (i32.const -16)))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                               (i32.const 65535)) (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $top (local.get $end))
    (local.get $p))
  (func (export "vh_begin") (param $n i32) (result i32) (call $reset) (call $alloc (local.get $n)))
  (func (export "vh_error") (result i32) (global.get $err))
  (func $param (param $pp i32) (param $i i32) (result f64)
    (f64.load (i32.add (local.get $pp) (i32.shl (local.get $i) (i32.const 3)))))
  (func $emit (param $res i32) (param $ptr i32) (param $len i32)
    (i32.store (local.get $res) (local.get $ptr))
    (i32.store offset=4 (local.get $res) (local.get $len)))
"""

ABI_WAT = _ABI  # the allocator, vh_* exports and the $param / $emit helpers

_TEST_KERNELS = r"""
  ;; output = input
  (func (export "t_echo") (param $in i32) (param $len i32) (param $pp i32) (param $np i32)
        (param $res i32) (result i32)
    (local $o i32)
    (local.set $o (call $alloc (local.get $len)))
    (if (i32.eqz (local.get $o)) (then (global.set $err (i32.const 64)) (return (i32.const -3))))
    (memory.copy (local.get $o) (local.get $in) (local.get $len))
    (call $emit (local.get $res) (local.get $o) (local.get $len))
    (i32.const 0))
  ;; output = the f64 params block, as received
  (func (export "t_params") (param $in i32) (param $len i32) (param $pp i32) (param $np i32)
        (param $res i32) (result i32)
    (call $emit (local.get $res) (local.get $pp) (i32.shl (local.get $np) (i32.const 3)))
    (i32.const 0))
  ;; acc = acc * 31 + i for i in [0, n) (u64, wrapping); output = acc, little-endian
  (func (export "t_busy") (param $in i32) (param $len i32) (param $pp i32) (param $np i32)
        (param $res i32) (result i32)
    (local $n i64) (local $i i64) (local $acc i64) (local $o i32)
    (local.set $n (i64.trunc_f64_u (call $param (local.get $pp) (i32.const 0))))
    (block $done (loop $l
      (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
      (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 31)) (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l)))
    (local.set $o (call $alloc (i32.const 8)))
    (i64.store (local.get $o) (local.get $acc))
    (call $emit (local.get $res) (local.get $o) (i32.const 8))
    (i32.const 0))
  ;; never returns
  (func (export "t_spin") (param i32 i32 i32 i32 i32) (result i32)
    (loop $l (br $l)) (i32.const 0))
  ;; allocates 1 MiB at a time until the allocator fails, then reports out of memory
  (func (export "t_hog") (param i32 i32 i32 i32 i32) (result i32)
    (block $full (loop $l
      (br_if $full (i32.eqz (call $alloc (i32.const 1048576))))
      (br $l)))
    (global.set $err (i32.const 64))
    (i32.const -3))
  ;; grows memory until memory.grow fails at the cap, then writes past the end anyway
  (func (export "t_overrun") (param i32 i32 i32 i32 i32) (result i32)
    (block $full (loop $l
      (br_if $full (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
      (br $l)))
    (i32.store (i32.shl (memory.size) (i32.const 16)) (i32.const 1))
    (i32.const 0))
  (func (export "t_trap") (param i32 i32 i32 i32 i32) (result i32)
    unreachable)
  ;; recurses until the wasm stack is exhausted
  (func $down (param $n i32) (result i32)
    (i32.add (call $down (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))
  (func (export "t_recurse") (param i32 i32 i32 i32 i32) (result i32)
    (call $down (i32.const 0)))
  (func (export "t_reject") (param i32 i32 i32 i32 i32) (result i32)
    (global.set $err (i32.const 16))
    (i32.const -1))
  ;; calls vh_progress(i, n) for i in 1..n, then returns n as f64
  (func (export "t_progress") (param $in i32) (param $len i32) (param $pp i32) (param $np i32)
        (param $res i32) (result i32)
    (local $n i32) (local $i i32) (local $o i32)
    (local.set $n (i32.trunc_f64_u (call $param (local.get $pp) (i32.const 0))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (call $progress (local.get $i) (local.get $n))
      (br $l)))
    (local.set $o (call $alloc (i32.const 4)))
    (i32.store (local.get $o) (local.get $n))
    (call $emit (local.get $res) (local.get $o) (i32.const 4))
    (i32.const 0))
  ;; like t_spin, but reports progress on every iteration
  (func (export "t_spin_progress") (param i32 i32 i32 i32 i32) (result i32)
    (local $i i32)
    (loop $l
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (call $progress (local.get $i) (i32.const 0))
      (br $l))
    (i32.const 0))
"""

TEST_MODULE_WAT = (
    '(module\n  (import "env" "vh_progress" (func $progress (param i32 i32)))\n'
    + _ABI
    + _TEST_KERNELS
    + ")\n"
)

# A module that asks for a file-system import no manifest can grant.
EVIL_MODULE_WAT = (
    "(module\n"
    '  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))\n'
    + _ABI
    + '  (func (export "t_echo") (param i32 i32 i32 i32 i32) (result i32) (i32.const 0))\n)\n'
)

# A module that imports env.vh_progress although no kernel of it is granted progress.
UNGRANTED_MODULE_WAT = (
    '(module\n  (import "env" "vh_progress" (func $progress (param i32 i32)))\n'
    + _ABI
    + '  (func (export "t_echo") (param i32 i32 i32 i32 i32) (result i32) (i32.const 0))\n)\n'
)


def _count_param(name: str, maximum: float, default: Any = None) -> dict[str, Any]:
    return {"name": name, "type": "int", "min": 0, "max": maximum, "default": default}


def _kernel(export: str, *, params=(), input_kind="bytes", output_kind="bytes", grants=()):
    return {
        "module": "test",
        "export": export,
        "description": f"test kernel {export}",
        "input": {"kind": input_kind},
        "params": list(params),
        "output": {"kind": output_kind},
        "tiles": None,
        "cost": {"ns_per_byte": 1.0},
        "grants": list(grants),
    }


TEST_KERNELS: dict[str, dict[str, Any]] = {
    "test.echo": _kernel("t_echo"),
    "test.params": _kernel(
        "t_params",
        input_kind="none",
        params=[
            {"name": "width", "type": "int", "min": 1, "max": 100, "default": None},
            {"name": "sigma", "type": "float", "min": 0.5, "max": 4.0, "default": 1.5},
            {"name": "dtype", "type": "enum", "choices": ["f64", "i32"], "default": "f64"},
        ],
    ),
    "test.image": _kernel(
        "t_echo",
        input_kind="rgba8",
        output_kind="rgba8",
        params=[
            {"name": "width", "type": "int", "min": 1, "max": 4096, "default": None},
            {"name": "height", "type": "int", "min": 1, "max": 4096, "default": None},
        ],
    ),
    "test.numeric": _kernel(
        "t_echo",
        input_kind="numeric",
        output_kind="numeric",
        params=[{"name": "dtype", "type": "enum", "choices": ["f64", "i32"], "default": "f64"}],
    ),
    "test.busy": _kernel("t_busy", input_kind="none", params=[_count_param("n", 1e15)]),
    "test.spin": _kernel("t_spin", input_kind="none"),
    "test.hog": _kernel("t_hog", input_kind="none"),
    "test.overrun": _kernel("t_overrun", input_kind="none"),
    "test.trap": _kernel("t_trap", input_kind="none"),
    "test.recurse": _kernel("t_recurse", input_kind="none"),
    "test.reject": _kernel("t_reject", input_kind="none"),
    "test.progress": _kernel(
        "t_progress", input_kind="none", params=[_count_param("n", 1e6)], grants=["progress"]
    ),
    "test.progress_ungranted": _kernel(
        "t_progress", input_kind="none", params=[_count_param("n", 1e6)]
    ),
    "test.spin_progress": _kernel("t_spin_progress", input_kind="none", grants=["progress"]),
}


def busy_reference(n: int) -> int:
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) & 0xFFFFFFFFFFFFFFFF
    return acc


def write_manifest(
    directory: Path,
    modules: dict[str, str],
    kernels: dict[str, dict[str, Any]],
) -> Path:
    """Compile each WAT text to `<name>.wasm` in `directory`; write manifest.json; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "modules": {},
        "kernels": copy.deepcopy(kernels),
    }
    for name, wat in modules.items():
        wasm = wasmtime.wat2wasm(wat)
        (directory / f"{name}.wasm").write_bytes(wasm)
        module = wasmtime.Module(wasmtime.Engine(), wasm)
        manifest["modules"][name] = {
            "file": f"{name}.wasm",
            "sha256": hashlib.sha256(wasm).hexdigest(),
            "exports": [e.name for e in module.exports],
            "imports": [f"{i.module}.{i.name}" for i in module.imports],
        }
    path = directory / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2))
    return path


def write_test_manifest(directory: Path) -> Path:
    """The `test` module with every kernel of TEST_KERNELS."""
    return write_manifest(directory, {"test": TEST_MODULE_WAT}, TEST_KERNELS)


# A module whose ABI functions lie: vh_begin hands out a block 16 bytes before the end of
# memory, l_badout claims an output far outside memory, l_unterminated points vh_error at
# the last bytes of memory with no NUL. The host must never read or write outside memory.
LIAR_MODULE_WAT = r"""
(module
  (memory (export "memory") 1)
  (global $err (mut i32) (i32.const 0))
  (func $end (result i32) (i32.shl (memory.size) (i32.const 16)))
  (func (export "vh_reset") (global.set $err (i32.const 0)))
  (func (export "vh_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "vh_begin") (param i32) (result i32) (i32.sub (call $end) (i32.const 16)))
  (func (export "vh_error") (result i32) (global.get $err))
  (func (export "l_badout") (param $in i32) (param $len i32) (param $pp i32) (param $np i32)
        (param $res i32) (result i32)
    (i32.store (local.get $res) (i32.const 0xFFFF0000))
    (i32.store offset=4 (local.get $res) (i32.const 100))
    (i32.const 0))
  (func (export "l_unterminated") (param i32 i32 i32 i32 i32) (result i32)
    (i64.store (i32.sub (call $end) (i32.const 8)) (i64.const 0x4141414141414141))
    (global.set $err (i32.sub (call $end) (i32.const 8)))
    (i32.const -1))
)
"""

LIAR_KERNELS: dict[str, dict[str, Any]] = {
    "liar.badout": {**_kernel("l_badout"), "module": "liar"},
    "liar.unterminated": {**_kernel("l_unterminated", input_kind="none"), "module": "liar"},
}


# A module whose start function never returns: instantiation must be stopped too.
ENDLESS_START_WAT = (
    "(module\n"
    + _ABI
    + "  (func $forever (loop $l (br $l)))\n  (start $forever)\n"
    + '  (func (export "t_echo") (param i32 i32 i32 i32 i32) (result i32) (i32.const 0))\n)\n'
)

# A module whose start function traps: instantiation fails with a KernelError, not a raw Trap.
TRAPPING_START_WAT = (
    "(module\n"
    + _ABI
    + "  (func $boom unreachable)\n  (start $boom)\n"
    + '  (func (export "t_echo") (param i32 i32 i32 i32 i32) (result i32) (i32.const 0))\n)\n'
)
