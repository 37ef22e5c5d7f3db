"""A hand-written user kernel (WAT) whose one param picks a behaviour, for the install and run
checks of users' kernels: mode 0 echoes the input; 1 loops forever; 2 traps; 3 writes outside
its memory; 4 claims an output outside its memory."""

from __future__ import annotations

import copy
from typing import Any

import wasmtime
from veraltheim.wasm.user_kernels import Example, KernelPackage

from tests.support.wat import ABI_WAT

MODES = {"echo": 0, "spin": 1, "trap": 2, "write_outside": 3, "output_outside": 4}

KERNEL_WAT = r"""
  (func (export "u_main") (param $in i32) (param $len i32) (param $pp i32) (param $np i32)
        (param $res i32) (result i32)
    (local $mode i32) (local $o i32)
    (local.set $mode (i32.trunc_f64_u (call $param (local.get $pp) (i32.const 0))))
    (if (i32.eq (local.get $mode) (i32.const 1)) (then (loop $l (br $l))))
    (if (i32.eq (local.get $mode) (i32.const 2)) (then unreachable))
    (if (i32.eq (local.get $mode) (i32.const 3))
      (then (i32.store (i32.const -16) (i32.const 1))))
    (if (i32.eq (local.get $mode) (i32.const 4))
      (then (call $emit (local.get $res) (i32.const -64) (i32.const 1024)) (return (i32.const 0))))
    (local.set $o (call $alloc (local.get $len)))
    (memory.copy (local.get $o) (local.get $in) (local.get $len))
    (call $emit (local.get $res) (local.get $o) (local.get $len))
    (i32.const 0))
"""


def module_wat(kernel: str = KERNEL_WAT, *, imports: str = "", abi: str = ABI_WAT) -> bytes:
    return wasmtime.wat2wasm(f"(module\n{imports}\n{abi}\n{kernel})\n")


SPEC: dict[str, Any] = {
    "name": "user.echo",
    "export": "u_main",
    "description": "echoes its input; its mode param makes it misbehave",
    "input": {"kind": "bytes"},
    "output": {"kind": "bytes"},
    "params": [{"name": "mode", "type": "int", "min": 0, "max": 4, "default": 0}],
    "grants": [],
}
EXAMPLE = Example(b"hello", {"mode": 0}, b"hello")


def package(wasm: bytes | None = None, examples=(EXAMPLE,), **spec_changes: Any) -> KernelPackage:
    spec = copy.deepcopy(SPEC)
    spec.update(spec_changes)
    return KernelPackage(module_wat() if wasm is None else wasm, spec, tuple(examples))


# The starter projects, by toolchain: (language, toolchain).
STARTERS = {"clang": "c", "zig": "c", "rustc": "rust"}


def build_starter(root, toolchain: str, name: str | None = None) -> KernelPackage:
    """Make and build a starter project (`veraltheim-kernel new` + `build`, in process);
    its package (module, spec, example)."""
    from veraltheim.wasm import sdk

    name = name or f"user.invert_{toolchain}"
    project = root / toolchain
    sdk.new_project(name, STARTERS[toolchain], project)
    sdk.build_project(project, toolchain)
    return sdk.project_package(project)
