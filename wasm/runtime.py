"""The kernel runtime: `Runtime(...).run(name, data, params)`."""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from .cache import CompiledCache
from .engine import engine_key, shared_engine
from .errors import BadInput, Cancelled, IntegrityError, KernelError, MemoryLimitExceeded
from .instance import KernelInstance, summarize_wasm_error
from .job import CancelToken, Job, ProgressCallback
from .limits import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MEMORY_LIMIT_BYTES,
    RETAIN_MEMORY_BYTES,
    WASM32_MAX_BYTES,
)
from .manifest import (
    ABI_EXPORTS,
    PROGRESS_IMPORT,
    KernelSpec,
    Manifest,
    ModuleSpec,
    load_manifest,
)
from .user_dirs import default_user_kernels_dir

Buffer = bytes | bytearray | memoryview
log = logging.getLogger(__name__)

_I32 = wasmtime.ValType.i32()
_KERNEL_SIGNATURE = ([_I32] * 5, [_I32])
_IMPORT_SIGNATURES = {PROGRESS_IMPORT: ([_I32, _I32], [])}
# The host calls these without type checks, so their types must be exactly these.
_ABI_SIGNATURES = {
    "vh_alloc": ([_I32], [_I32]),
    "vh_reset": ([], []),
    "vh_begin": ([_I32], [_I32]),
    "vh_error": ([], [_I32]),
}


@dataclass(frozen=True, slots=True)
class RunResult:
    output: bytes
    kernel: str
    params: dict[str, Any]
    elapsed_s: float


@dataclass(frozen=True, slots=True)
class ModuleLoad:
    """How a module was made ready: compiled now, or loaded from the on-disk cache."""

    module: str
    from_cache: bool
    elapsed_s: float


class Runtime:
    """Thread-safe. Modules load lazily; each thread gets its own Store + Instance per module."""

    def __init__(
        self,
        manifest_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
        default_deadline_s: float = DEFAULT_DEADLINE_S,
        retain_memory_bytes: int = RETAIN_MEMORY_BYTES,
        user_kernels: str | Path | bool | None = None,
    ) -> None:
        """user_kernels: the directory of installed user kernels (None: the default one,
        False: built-in kernels only)."""
        if not 0 < memory_limit_bytes <= WASM32_MAX_BYTES:
            raise BadInput(f"memory_limit_bytes must be in (0, {WASM32_MAX_BYTES}]")
        _check_deadline(default_deadline_s)
        self.builtin: Manifest = load_manifest(manifest_path)
        self.manifest: Manifest = self.builtin
        self.memory_limit_bytes = memory_limit_bytes
        self.default_deadline_s = default_deadline_s
        self.retain_memory_bytes = retain_memory_bytes
        self._engine, self._ticker = shared_engine()
        self._cache = CompiledCache(cache_dir, engine_key())
        self._modules: dict[str, wasmtime.Module] = {}
        self._locks_lock = threading.Lock()
        self._module_locks: dict[str, threading.Lock] = {}
        self._local = threading.local()
        self._param_structs: dict[str, struct.Struct] = {}
        # Users' installed kernels (wasm/user_kernels.py): a second manifest, re-read on change.
        if user_kernels is None:
            user_kernels = default_user_kernels_dir()
        self.user_manifest_path: Path | None = (
            Path(user_kernels) / "manifest.json" if user_kernels is not False else None
        )
        self._user_stamp: tuple | None = None
        self._reload_lock = threading.Lock()
        self.user_kernel_names: frozenset[str] = frozenset()
        self.reload_user_kernels()

    @property
    def cache_dir(self) -> Path:
        return self._cache.dir

    # -- catalogue --

    def catalogue(self) -> list[KernelSpec]:
        return list(self.manifest.kernels.values())

    def spec(self, name: str) -> KernelSpec:
        return self.manifest.kernel(name)

    def validate(
        self, name: str, data: Buffer | None, params: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Normalized params (defaults filled in); BadInput/UnknownKernel if the job is bad."""
        spec = self.manifest.kernel(name)
        normalized = spec.validate_params(params)
        self._check_size(spec, 0 if data is None else _size(data), normalized)
        return normalized

    def _check_size(self, spec: KernelSpec, size: int, params: dict[str, Any]) -> None:
        spec.check_input(size, params)
        if size > self.memory_limit_bytes:
            raise MemoryLimitExceeded(
                f"{spec.name}: input of {size} bytes exceeds the memory limit of "
                f"{self.memory_limit_bytes} bytes"
            )

    # -- loading --

    def reload_user_kernels(self) -> bool:
        """Re-read the user kernels' manifest if it changed (a stat when it did not); True
        when the catalogue changed. Safe from any thread: jobs see the old or the new one."""
        path = self.user_manifest_path
        if path is None:
            return False
        with self._reload_lock:
            return self._reload_user_kernels(path)

    def _reload_user_kernels(self, path: Path) -> bool:
        try:
            st = path.stat()
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._user_stamp:
            return False
        self._user_stamp = stamp
        user = None
        if stamp is not None:
            try:
                user = load_manifest(path)
            except KernelError as e:  # a broken user manifest must not take the built-ins down
                log.warning("ignoring the user kernels: %s", e)
        kernels = dict(self.builtin.kernels)
        modules = dict(self.builtin.modules)
        names = set()
        if user is not None:
            for name, spec in user.kernels.items():
                if name in kernels:
                    log.warning("user kernel %s has a built-in kernel's name: skipped", name)
                    continue
                kernels[name] = spec
                modules[spec.module] = user.modules[spec.module]
                names.add(name)
        self.user_kernel_names = frozenset(names)
        self.manifest = Manifest(path=self.builtin.path, modules=modules, kernels=kernels)
        return True

    def _module_lock(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._module_locks.setdefault(name, threading.Lock())

    def compile_unchecked(self, name: str) -> wasmtime.Module:
        """Verify a module's sha256 and compile it (or load it from the cache), without the
        interface checks (the user-kernel install runs those one by one)."""
        return self._compile(self.manifest.modules[name])[0]

    def _compile(self, spec: ModuleSpec) -> tuple[wasmtime.Module, bool]:
        wasm = _read_verified(spec)
        try:
            return self._cache.load(self._engine, wasm, spec.sha256)
        except wasmtime.WasmtimeError as e:
            raise IntegrityError(
                f"module {spec.name}: not valid WebAssembly: {summarize_wasm_error(str(e))}"
            ) from None

    def load_module(self, name: str) -> ModuleLoad:
        """Make a module ready now (normally lazy): verify, then compile or load from cache."""
        manifest = self.manifest
        if name not in manifest.modules:
            raise KernelError(f"unknown module {name!r}")
        with self._module_lock(name):
            if name in self._modules:
                return ModuleLoad(name, True, 0.0)
            t0 = time.perf_counter()
            spec = manifest.modules[name]
            module, from_cache = self._compile(spec)
            check_imports(spec, module)
            check_exports(spec, module, manifest)
            self._modules[name] = module
            return ModuleLoad(name, from_cache, time.perf_counter() - t0)

    def _module(self, name: str) -> wasmtime.Module:
        module = self._modules.get(name)
        if module is None:
            self.load_module(name)
            module = self._modules[name]
        return module

    def _instance(self, module: str) -> KernelInstance:
        instances = getattr(self._local, "instances", None)
        if instances is None:
            instances = self._local.instances = {}
        inst = instances.get(module)
        if inst is None:
            compiled = self._module(module)
            self._ticker.job_started()
            try:
                inst = KernelInstance(
                    self._engine,
                    compiled,
                    self.manifest.modules[module],
                    self.memory_limit_bytes,
                    self.default_deadline_s,
                )
            finally:
                self._ticker.job_finished()
            instances[module] = inst
        return inst

    def warm(self) -> None:
        """Load every module (from the disk cache, or compile it once) and instantiate it for
        the calling thread, so that thread's first job runs warm."""
        for module in self.manifest.modules:
            self._instance(module)

    def _drop_instance(self, module: str) -> None:
        self._local.instances.pop(module, None)

    # -- running --

    def run(
        self,
        name: str,
        data: Buffer | None = b"",
        params: dict[str, Any] | None = None,
        *,
        deadline_s: float | None = None,
        cancel: CancelToken | None = None,
        progress: ProgressCallback | None = None,
    ) -> RunResult:
        t0 = time.perf_counter()
        spec = self.manifest.kernel(name)
        normalized = spec.validate_params(params)
        if data is None:  # allowed for kernels that take no input
            data = b""
        size = len(data) if isinstance(data, bytes) else _size(data)
        self._check_size(spec, size, normalized)
        if deadline_s is None:
            deadline_s = self.default_deadline_s
        else:
            _check_deadline(deadline_s)
        if cancel is not None and cancel.cancelled:
            raise Cancelled(f"{name}: cancelled")
        packer = self._param_structs.get(name)
        if packer is None or packer.size != 8 * len(spec.params):
            packer = self._param_structs[name] = struct.Struct(f"<{len(spec.params)}d")
        packed = packer.pack(*spec.param_block(normalized))
        inst = self._instance(spec.module)
        if inst.job is not None:
            raise KernelError(f"{name}: cannot start a kernel from a progress callback of a kernel")
        job = Job(name, deadline_s, cancel, progress if "progress" in spec.grants else None)
        ticker = self._ticker
        ticker.job_started()
        try:
            output = inst.run(spec, data, size, packed, job)
        finally:
            ticker.job_finished()
            if inst.broken or inst.memory_bytes > self.retain_memory_bytes:
                self._drop_instance(spec.module)
        return RunResult(output, name, normalized, time.perf_counter() - t0)


def _size(data: Buffer) -> int:
    if isinstance(data, bytes | bytearray):
        return len(data)
    try:
        mv = memoryview(data)
    except TypeError:
        raise BadInput(f"input must be bytes-like, got {type(data).__name__}") from None
    if not mv.c_contiguous:
        raise BadInput("input buffer must be C-contiguous")
    return mv.nbytes


def _check_deadline(deadline_s: float) -> None:
    if not (isinstance(deadline_s, int | float) and deadline_s > 0 and math.isfinite(deadline_s)):
        raise BadInput(f"deadline must be a positive number of seconds, got {deadline_s!r}")


def _read_verified(spec: ModuleSpec) -> bytes:
    try:
        wasm = spec.file.read_bytes()
    except OSError as e:
        raise IntegrityError(f"module {spec.name}: cannot read {spec.file}: {e.strerror}") from None
    actual = hashlib.sha256(wasm).hexdigest()
    if actual != spec.sha256:
        raise IntegrityError(
            f"module {spec.name}: {spec.file.name} has sha256 {actual[:16]}..., "
            f"the manifest says {spec.sha256[:16]}...; refusing to load it"
        )
    return wasm


def check_imports(spec: ModuleSpec, module: wasmtime.Module) -> None:
    """Refuse imports the kernels' grants do not allow, or of the wrong type."""
    for imp in module.imports:
        name = f"{imp.module}.{imp.name}"
        if name not in spec.allowed_imports:
            granted = ", ".join(sorted(spec.grants)) or "none"
            raise IntegrityError(
                f"module {spec.name} imports {name}, which the manifest does not grant "
                f"(grants: {granted})"
            )
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType) or _signature(ty) != _IMPORT_SIGNATURES[name]:
            raise IntegrityError(f"module {spec.name}: import {name} has the wrong type")


def check_exports(spec: ModuleSpec, module: wasmtime.Module, manifest: Manifest) -> None:
    """Require the ABI exports and every kernel's export, with their exact types."""
    exports = {e.name: e.type for e in module.exports}
    for name in ABI_EXPORTS:
        if name not in exports:
            raise IntegrityError(f"module {spec.name} lacks the export {name}")
    if not isinstance(exports["memory"], wasmtime.MemoryType):
        raise IntegrityError(f"module {spec.name}: export memory is not a memory")
    for name, want in _ABI_SIGNATURES.items():
        ty = exports[name]
        if not isinstance(ty, wasmtime.FuncType) or _signature(ty) != want:
            raise IntegrityError(f"module {spec.name}: export {name} has the wrong type")
    for k in manifest.kernels.values():
        if k.module != spec.name:
            continue
        ty = exports.get(k.export)
        if not isinstance(ty, wasmtime.FuncType) or _signature(ty) != _KERNEL_SIGNATURE:
            raise IntegrityError(
                f"module {spec.name}: kernel {k.name} needs an export {k.export} "
                "of type (i32, i32, i32, i32, i32) -> i32"
            )


def _signature(ty: wasmtime.FuncType) -> tuple[list, list]:
    return (list(ty.params), list(ty.results))
