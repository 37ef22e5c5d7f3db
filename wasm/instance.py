"""One Store + Instance of one module, owned by one thread, reused across jobs.

The calls go through `fastcall` (wasmtime's C API when it is there, else the public API);
input and parameters are copied into linear memory with `ctypes.memmove`.

Deadlines and cancellation: every engine tick while wasm runs asks this instance's job slot
whether to go on; it says stop once the job's deadline passed or its token was cancelled.
Only this store's job is affected, so one job is cancelled without disturbing the others.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
from typing import NoReturn

import wasmtime

from . import fastcall
from .errors import BadInput, KernelError, MemoryLimitExceeded
from .fastcall import CallFailed
from .job import Job
from .limits import EPOCH_TICK_S
from .manifest import PROGRESS_IMPORT, KernelSpec, ModuleSpec

# env.vh_progress is bound to this gate, not to Python directly: a job without a progress
# callback switches the gate off (one global.set) and the kernel's reports never leave wasm,
# so they cost neither a ctypes callback nor a wait for the GIL.
_PROGRESS_GATE_WAT = """
(module
  (import "host" "progress" (func $report (param i32 i32)))
  (global $on (export "on") (mut i32) (i32.const 0))
  (func (export "progress") (param i32 i32)
    (if (global.get $on) (then (call $report (local.get 0) (local.get 1))))))
"""
_gate_lock = threading.Lock()
_gate_modules: dict[int, wasmtime.Module] = {}


def _progress_gate(engine: wasmtime.Engine) -> wasmtime.Module:
    with _gate_lock:
        module = _gate_modules.get(id(engine))
        if module is None:
            module = _gate_modules[id(engine)] = wasmtime.Module(engine, _PROGRESS_GATE_WAT)
        return module


_RESULT_SLOT = struct.Struct("<II")  # {u32 out_ptr, u32 out_len}
_MAX_MESSAGE = 500

# Kernel return codes (the ABI in README.md, "Kernels").
RC_BAD_PARAMS, RC_BAD_INPUT, RC_OUT_OF_MEMORY = -1, -2, -3


class Trapped(KernelError):
    """The wasm call unwound (trap, or stopped by the epoch callback): drop the instance."""


def summarize_wasm_error(text: str) -> str:
    """wasmtime's messages carry a backtrace; keep the line that says what happened."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "unknown error"
    if "Caused by:" in lines and lines[-1] != "Caused by:":
        line = lines[lines.index("Caused by:") + 1]
        head, sep, rest = line.partition(": ")
        return rest if sep and head.isdigit() else line
    return lines[0]


class _JobSlot:
    """The running job, seen by the store's callbacks (a fastcall.Stopper).

    The callbacks hold this slot, not the instance, so an instance has no reference
    cycle and its store (and linear memory) is freed as soon as it is dropped.
    """

    __slots__ = ("job",)

    def __init__(self) -> None:
        self.job: Job | None = None

    def tick(self) -> tuple[BaseException | None, int]:
        job = self.job
        if job is None:
            return None, 1
        stop = job.check()
        if stop is not None:
            return stop, 0
        if job.cancel is None:
            # Nothing can cancel it: come back halfway to the deadline, not every tick.
            remaining = job.deadline - time.monotonic()
            return None, max(1, int(remaining / EPOCH_TICK_S / 2))
        return None, 1

    def progress(self, done: int, total: int) -> BaseException | None:
        job = self.job
        if job is None or job.progress is None:
            return None
        try:
            job.report_progress(done, total)
            return job.check()  # e.g. the callback cancelled the job: stop here
        except BaseException as e:  # KeyboardInterrupt & co. stop the job, re-raised later
            self.fail(e)
            return job.stop

    def fail(self, exc: BaseException) -> None:
        if self.job is not None and self.job.stop is None:
            self.job.stop = exc

    def deadline(self) -> float | None:
        return self.job.deadline if self.job is not None else None


class KernelInstance:
    def __init__(
        self,
        engine: wasmtime.Engine,
        module: wasmtime.Module,
        spec: ModuleSpec,
        memory_limit_bytes: int,
        start_deadline_s: float,
        *,
        fast: bool | None = None,
    ) -> None:
        """Instantiate; a start function runs under `start_deadline_s` like any job.
        `fast`: force the private (True) or the public (False) call path; None: fastcall.FAST."""
        self.spec = spec
        self._slot = slot = _JobSlot()
        self.broken = False
        self._memory_limit = memory_limit_bytes
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=memory_limit_bytes)
        self.store = store
        self._calls = calls = fastcall.calls_for(store, slot, fast=fast)
        self._gate = None
        imports = [self._import(engine, f"{imp.module}.{imp.name}") for imp in module.imports]
        slot.job = Job(f"module {spec.name} (start)", start_deadline_s, None, None)
        calls.start_job(want_progress=False)
        try:
            instance = wasmtime.Instance(store, module, imports)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:  # a start function can trap
            stop = slot.job.stop or slot.job.check()
            if stop is not None:
                raise stop from None
            msg = summarize_wasm_error(str(e))
            if "memory" in msg and ("limit" in msg or "minimum" in msg):
                raise MemoryLimitExceeded(
                    f"module {spec.name}: cannot instantiate under the memory limit "
                    f"of {memory_limit_bytes} bytes: {msg}"
                ) from None
            raise KernelError(f"module {spec.name}: cannot instantiate: {msg}") from None
        finally:
            slot.job = None
        calls.bind(instance.exports(store), self._gate)
        self._memory_size = calls.memory_size
        self._known_size = -1
        self._known_base = 0
        #: Linear memory size after the last job (the runtime drops big instances).
        self.memory_bytes = self.memory_size()

    @property
    def fast(self) -> bool:
        """Whether this instance calls through wasmtime's C API (fastcall.FastCalls)."""
        return self._calls.fast

    def _import(self, engine: wasmtime.Engine, name: str) -> wasmtime.Func:
        # Load-time checks already refused anything but granted imports.
        if name != PROGRESS_IMPORT:
            raise KernelError(f"module {self.spec.name}: no host function for import {name}")
        host = self._calls.host_progress()
        gate = wasmtime.Instance(self.store, _progress_gate(engine), [host])
        exports = gate.exports(self.store)
        self._gate = exports["on"]
        return exports["progress"]

    @property
    def job(self) -> Job | None:
        return self._slot.job

    # -- the job path --

    def memory_size(self) -> int:
        return self._memory_size()

    def _base(self) -> int:
        """Address of linear memory; it can move only when the memory grew."""
        size = self._memory_size()
        if size != self._known_size:
            self._known_size = size
            self._known_base = self._calls.memory_base()
        return self._known_base

    def _call(self, export: str, *args: int) -> int:
        try:
            return self._calls.call(export, *args)
        except CallFailed as e:
            self._unwound(str(e))

    def _unwound(self, text: str) -> NoReturn:
        """The call trapped or was stopped: raise why, and mark this instance for disposal."""
        self.broken = True
        job = self.job
        if job is not None and (job.stop is not None or job.check() is not None):
            raise job.stop
        name = job.kernel if job is not None else self.spec.name
        summary = summarize_wasm_error(text)
        margin = max(1 << 20, self._memory_limit // 16)
        if "memory fault" in summary and self.memory_size() + margin > self._memory_limit:
            # memory.grow failed at the cap and the kernel used the memory anyway.
            raise MemoryLimitExceeded(
                f"{name}: memory limit of {self._memory_limit} bytes reached ({summary})"
            )
        raise Trapped(f"{name}: kernel trapped: {summary}")

    def _last_error(self) -> str:
        ptr = self._call("vh_error") & 0xFFFFFFFF
        base = self._base()
        if not ptr or ptr >= self._known_size:
            return ""
        # Never read past the end of linear memory, whatever the guest points at.
        raw = ctypes.string_at(base + ptr, min(_MAX_MESSAGE, self._known_size - ptr))
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace")

    def run(self, spec: KernelSpec, data, size: int, params: bytes, job: Job) -> bytes:
        """Run one kernel call; the caller has validated params and the input size."""
        slot = self._slot
        slot.job = job
        calls = self._calls
        try:
            calls.start_job(want_progress=job.progress is not None)
            # One block: result slot, params (f64[]), then the input, 16-byte aligned.
            head = (8 + len(params) + 15) & ~15
            if head + size > 0xFFFFFFFF:
                raise MemoryLimitExceeded(f"{spec.name}: {size} bytes do not fit in wasm32 memory")
            block = calls.call("vh_begin", head + size) & 0xFFFFFFFF
            if block == 0:
                raise MemoryLimitExceeded(
                    f"{spec.name}: {head + size} bytes of input do not fit under the memory limit"
                )
            base = self._base()
            if block + head + size > self._known_size:
                # The host writes only where the guest's memory is, whatever vh_begin says.
                self.broken = True
                raise KernelError(f"{spec.name}: vh_begin returned a block outside its memory")
            ctypes.memmove(base + block + 8, params, len(params))
            if size:
                _copy_in(base + block + head, data, size)
            rc = calls.call(spec.export, block + head, size, block + 8, len(params) // 8, block)
            if rc != 0:
                raise self._failure(spec, rc)
            base = self._base()
            memory_bytes = self.memory_bytes = self._known_size
            out_ptr, out_len = _RESULT_SLOT.unpack(ctypes.string_at(base + block, 8))
            if out_ptr + out_len > memory_bytes:
                self.broken = True
                raise KernelError(f"{spec.name}: kernel returned an output outside its memory")
            return ctypes.string_at(base + out_ptr, out_len)
        except CallFailed as e:  # trapped or stopped: say why (job.stop first)
            self._unwound(str(e))
        finally:
            slot.job = None

    def _failure(self, spec: KernelSpec, rc: int) -> KernelError:
        detail = self._last_error()
        suffix = f": {detail}" if detail else ""
        if rc in (RC_BAD_PARAMS, RC_BAD_INPUT):
            return BadInput(f"{spec.name}: bad {'params' if rc == -1 else 'input'}{suffix}")
        if rc == RC_OUT_OF_MEMORY:
            self.broken = True  # its memory sits at the cap: start the next job afresh
            limit_mib = self._memory_limit / (1 << 20)
            return MemoryLimitExceeded(
                f"{spec.name}: {detail or 'out of memory'} (limit {limit_mib:g} MiB)"
            )
        return KernelError(f"{spec.name}: kernel failed with code {rc}{suffix}")


def _copy_in(address: int, data, size: int) -> None:
    if isinstance(data, bytes):
        ctypes.memmove(address, data, size)
    else:
        # bytearray / memoryview / any C-contiguous buffer: one copy, no temporary bytes.
        dst = (ctypes.c_ubyte * size).from_address(address)
        memoryview(dst).cast("B")[:] = memoryview(data).cast("B")
