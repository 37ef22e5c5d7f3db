"""The kernels' C sources compiled natively (gcc -O2) and called through ctypes: the baseline
that bench/kernels.py compares wasm against. Same ABI as on wasm, with pointer-sized results."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

from veraltheim.wasm.build import SHARED_SOURCES, SRC_DIR, load_catalogue

NATIVE_CFLAGS = ("-O2", "-shared", "-fPIC", "-ffp-contract=off")


class NativeKernelError(Exception):
    pass


class NativeModule:
    """One module as a shared library. Not thread-safe (one allocator per library)."""

    def __init__(self, path: Path) -> None:
        self._lib = ctypes.CDLL(str(path))
        self._lib.vh_reset.restype = None
        self._lib.vh_error.restype = ctypes.c_char_p
        self._funcs: dict[str, ctypes._CFuncPtr] = {}
        self._result = (ctypes.c_uint64 * 2)()
        self._input = ctypes.create_string_buffer(1)

    def _func(self, export: str):
        f = self._funcs.get(export)
        if f is None:
            f = getattr(self._lib, export)
            f.restype = ctypes.c_int32
            f.argtypes = [
                ctypes.c_void_p,
                ctypes.c_uint32,
                ctypes.c_void_p,
                ctypes.c_int32,
                ctypes.c_void_p,
            ]
            self._funcs[export] = f
        return f

    def call(self, export: str, data: bytes, params: list[float]) -> bytes:
        """Run a kernel; like the wasm host, copy the input into a buffer the kernel may reuse
        (data.sort sorts in it), and return a copy of the output."""
        size = len(data)
        if len(self._input) < size:
            self._input = ctypes.create_string_buffer(size)
        ctypes.memmove(self._input, data, size)
        block = (ctypes.c_double * max(1, len(params)))(*params)
        self._lib.vh_reset()
        rc = self._func(export)(self._input, size, block, len(params), self._result)
        if rc != 0:
            msg = self._lib.vh_error() or b""
            raise NativeKernelError(f"{export} returned {rc}: {msg.decode()}")
        return ctypes.string_at(self._result[0], self._result[1])


def gcc() -> str | None:
    return shutil.which("gcc")


def build_native(out_dir: Path) -> dict[str, NativeModule]:
    """Compile every module of kernels.toml with gcc into out_dir and load it."""
    compiler = gcc()
    if compiler is None:
        raise NativeKernelError("gcc is needed for the native baseline")
    modules = {}
    for name, m in load_catalogue()["modules"].items():
        out = out_dir / f"lib{name}.so"
        cmd = [compiler, *NATIVE_CFLAGS, "-o", str(out), m["source"], *SHARED_SOURCES, "-lm"]
        proc = subprocess.run(cmd, cwd=SRC_DIR, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise NativeKernelError(f"gcc failed on {m['source']}: {proc.stderr.strip()}")
        modules[name] = NativeModule(out)
    return modules
