"""One Store + Instance of one module, owned by one thread, reused across jobs.

The per-job path talks to wasmtime's C API directly (wasmtime-py's private `_ffi`):
`wasmtime_func_call_unchecked` with preallocated argument arrays and `ctypes.memmove`
into linear memory, because `Func.__call__` alone costs 10-20 us per call.

Deadlines and cancellation: the store has an epoch-deadline callback that runs on
every engine tick while wasm runs; it resumes the kernel for one more tick, or returns
an error (which unwinds the call) when the job's deadline passed or its token was
cancelled. Only this store's job is affected, so one job is cancelled without
disturbing the others.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
from ctypes import POINTER, c_size_t, c_uint64, c_void_p
from typing import NoReturn

import wasmtime
from wasmtime import _ffi as ffi

from .errors import BadInput, KernelError, MemoryLimitExceeded
from .job import Job
from .limits import EPOCH_TICK_S
from .manifest import PROGRESS_IMPORT, KernelSpec, ModuleSpec

_EPOCH_CALLBACK_T = ctypes.CFUNCTYPE(
    c_size_t,
    POINTER(ffi.wasmtime_context_t),
    c_void_p,
    POINTER(c_uint64),
    POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, c_void_p))


def _prototype(name: str, restype, *argtypes):
    # Our own function objects over wasmtime-py's library (`dll[name]` makes a new one),
    # typed with plain addresses: no wrapper frames, and wasmtime-py's own are untouched.
    func = ffi.dll[name]
    func.restype = restype
    func.argtypes = argtypes
    return func


_func_call = _prototype(
    "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p
)
_memory_data = _prototype("wasmtime_memory_data", c_void_p, c_void_p, c_void_p)
_memory_data_size = _prototype("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
_set_epoch_deadline = _prototype("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64)
# Host function callback with raw addresses (ctypes builds no pointer objects per call).
_HOST_CALLBACK_T = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
_func_new_unchecked = _prototype(
    "wasmtime_func_new_unchecked",
    None,
    c_void_p,
    c_void_p,
    _HOST_CALLBACK_T,
    c_void_p,
    c_void_p,
    c_void_p,
)
_VAL_RAW_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)
_global_set = _prototype("wasmtime_global_set", c_void_p, c_void_p, c_void_p, c_void_p)

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


def _i32_val(value: int) -> ffi.wasmtime_val_t:
    val = ffi.wasmtime_val_t()
    val.kind = ffi.WASMTIME_I32.value
    val.of.i32 = value
    return val


_GATE_OFF, _GATE_ON = _i32_val(0), _i32_val(1)
_GATE_VALUES = (ctypes.addressof(_GATE_OFF), ctypes.addressof(_GATE_ON))
_UPDATE_DEADLINE_CONTINUE = 0
_PROGRESS_TYPE = wasmtime.FuncType([wasmtime.ValType.i32(), wasmtime.ValType.i32()], [])
_RESULT_SLOT = struct.Struct("<II")  # {u32 out_ptr, u32 out_len}
_ERROR_PTR = POINTER(ffi.wasmtime_error_t)
_TRAP_PTR = POINTER(ffi.wasm_trap_t)
_MAX_MESSAGE = 500

# Kernel return codes (the ABI in README.md, "Kernels").
RC_BAD_PARAMS, RC_BAD_INPUT, RC_OUT_OF_MEMORY = -1, -2, -3


class Trapped(KernelError):
    """The wasm call unwound (trap, or stopped by the epoch callback): drop the instance."""


def _i32(v: int) -> int:
    return v - (1 << 32) if v >= (1 << 31) else v


def _error_ptr(message: str) -> int:
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), c_void_p).value or 0


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
    """The running job, seen by the store's callbacks.

    The callbacks hold this slot, not the instance, so an instance has no reference
    cycle and its store (and linear memory) is freed as soon as it is dropped.
    """

    __slots__ = ("job",)

    def __init__(self) -> None:
        self.job: Job | None = None

    def on_epoch(self, _ctx, _data, delta, kind) -> int:
        try:
            job = self.job
            if job is not None:
                stop = job.check()
                if stop is not None:
                    return _error_ptr(str(stop))
                if job.cancel is None:
                    # Nothing can cancel it: come back halfway to the deadline, not every tick.
                    remaining = job.deadline - time.monotonic()
                    delta[0] = max(1, int(remaining / EPOCH_TICK_S / 2))
                    kind[0] = _UPDATE_DEADLINE_CONTINUE
                    return 0
            delta[0] = 1
            kind[0] = _UPDATE_DEADLINE_CONTINUE
            return 0
        except BaseException as e:  # never let an exception escape into wasmtime
            # e.g. KeyboardInterrupt delivered while this callback ran: stop, re-raise later.
            if self.job is not None:
                self.job.stop = e
            return _error_ptr(f"epoch callback failed: {e!r}")

    def on_progress(self, _env, _caller, args: int, _nargs) -> int:
        job = self.job
        if job is None or job.progress is None:
            return 0
        try:
            done = ctypes.c_int32.from_address(args).value
            total = ctypes.c_int32.from_address(args + _VAL_RAW_SIZE).value
            job.report_progress(done, total)
            stop = job.check()  # e.g. the callback cancelled the job: stop here
        except BaseException as e:
            # Never let an exception escape into wasmtime: ctypes would return garbage as the
            # trap pointer (a crash). KeyboardInterrupt & co. stop the job and are re-raised.
            if job.stop is None:
                job.stop = e
            stop = job.stop
        if stop is None:
            return 0
        msg = str(stop).encode()
        return ctypes.cast(ffi.wasmtime_trap_new(msg, len(msg)), c_void_p).value or 0


class KernelInstance:
    def __init__(
        self,
        engine: wasmtime.Engine,
        module: wasmtime.Module,
        spec: ModuleSpec,
        memory_limit_bytes: int,
        start_deadline_s: float,
    ) -> None:
        """Instantiate; a start function runs under `start_deadline_s` like any job."""
        self.spec = spec
        self._slot = slot = _JobSlot()
        self.broken = False
        self._memory_limit = memory_limit_bytes
        store = wasmtime.Store(engine)
        store.set_limits(memory_size=memory_limit_bytes)
        self.store = store
        self._ctx = store._context()
        # ctypes callbacks must outlive the store: keep them on self.
        self._on_epoch = _EPOCH_CALLBACK_T(slot.on_epoch)
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), self._on_epoch, None, _NO_FINALIZER)
        self._on_progress = _HOST_CALLBACK_T(slot.on_progress)
        self._gate = None
        imports = [self._import(engine, f"{imp.module}.{imp.name}") for imp in module.imports]
        slot.job = Job(f"module {spec.name} (start)", start_deadline_s, None, None)
        store.set_epoch_deadline(1)
        try:
            instance = wasmtime.Instance(store, module, imports)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as e:  # a start function can trap
            if slot.job.stop is not None:
                raise slot.job.stop from None
            msg = summarize_wasm_error(str(e))
            if "memory" in msg and ("limit" in msg or "minimum" in msg):
                raise MemoryLimitExceeded(
                    f"module {spec.name}: cannot instantiate under the memory limit "
                    f"of {memory_limit_bytes} bytes: {msg}"
                ) from None
            raise KernelError(f"module {spec.name}: cannot instantiate: {msg}") from None
        finally:
            slot.job = None
        exports = instance.exports(store)
        self._exports = exports
        # Raw addresses for the C calls; the objects behind them live as long as self.
        self._ctx_addr = ctypes.cast(self._ctx, c_void_p).value
        self._memory = exports["memory"]._memory
        self._memory_addr = ctypes.addressof(self._memory)
        self._func_addrs: dict[str, int] = {}
        self._func_keep: list[ffi.wasmtime_func_t] = []
        self._begin = self._func("vh_begin")
        self._vh_error = self._func("vh_error")
        self._arg1 = (ffi.wasmtime_val_raw_t * 1)()
        self._arg5 = (ffi.wasmtime_val_raw_t * 5)()
        self._arg1_addr = ctypes.addressof(self._arg1)
        self._arg5_addr = ctypes.addressof(self._arg5)
        self._trap = c_void_p()
        self._trap_addr = ctypes.addressof(self._trap)
        self._known_size = -1
        self._known_base = 0
        self._gate_addr = ctypes.addressof(self._gate) if self._gate is not None else 0
        self._gate_on = False
        #: Linear memory size after the last job (the runtime drops big instances).
        self.memory_bytes = self.memory_size()

    def _import(self, engine: wasmtime.Engine, name: str) -> wasmtime.Func:
        # Load-time checks already refused anything but granted imports.
        if name != PROGRESS_IMPORT:
            raise KernelError(f"module {self.spec.name}: no host function for import {name}")
        raw = ffi.wasmtime_func_t()
        _func_new_unchecked(
            ctypes.cast(self._ctx, c_void_p),
            ctypes.cast(_PROGRESS_TYPE.ptr(), c_void_p),
            self._on_progress,
            None,
            None,
            ctypes.addressof(raw),
        )
        gate = wasmtime.Instance(self.store, _progress_gate(engine), [wasmtime.Func._from_raw(raw)])
        exports = gate.exports(self.store)
        self._gate = exports["on"]._global
        return exports["progress"]

    @property
    def job(self) -> Job | None:
        return self._slot.job

    # -- the job path --

    def memory_size(self) -> int:
        return _memory_data_size(self._ctx_addr, self._memory_addr)

    def _base(self) -> int:
        """Address of linear memory; it can move only when the memory grew."""
        size = _memory_data_size(self._ctx_addr, self._memory_addr)
        if size != self._known_size:
            self._known_size = size
            self._known_base = _memory_data(self._ctx_addr, self._memory_addr)
        return self._known_base

    def _func(self, export: str) -> int:
        """Address of an exported function's handle (cached on first use)."""
        addr = self._func_addrs.get(export)
        if addr is None:
            func = self._exports[export]._func
            self._func_keep.append(func)
            addr = self._func_addrs[export] = ctypes.addressof(func)
        return addr

    def _call(self, func_addr: int, args_addr: int, nargs: int) -> None:
        err = _func_call(self._ctx_addr, func_addr, args_addr, nargs, self._trap_addr)
        if err or self._trap.value:
            self._unwound(err)

    def _unwound(self, err: int | None) -> NoReturn:
        """The call trapped or was stopped: raise why, and mark this instance for disposal."""
        self.broken = True
        job = self.job
        trap_ptr, self._trap.value = self._trap.value, None
        if err:
            text = str(wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ERROR_PTR)))
        else:
            text = wasmtime.Trap._from_ptr(ctypes.cast(trap_ptr, _TRAP_PTR)).message
        if job is not None and job.stop is not None:
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
        self._call(self._vh_error, self._arg1_addr, 1)
        ptr = self._arg1[0].i32 & 0xFFFFFFFF
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
        ctx = self._ctx_addr
        trap = self._trap
        _set_epoch_deadline(ctx, 1)
        want_progress = job.progress is not None
        if want_progress is not self._gate_on and self._gate_addr:
            err = _global_set(ctx, self._gate_addr, _GATE_VALUES[want_progress])
            if err:
                self._unwound(err)
            self._gate_on = want_progress
        try:
            # One block: result slot, params (f64[]), then the input, 16-byte aligned.
            head = (8 + len(params) + 15) & ~15
            if head + size > 0xFFFFFFFF:
                raise MemoryLimitExceeded(f"{spec.name}: {size} bytes do not fit in wasm32 memory")
            a1 = self._arg1
            a1[0].i32 = _i32(head + size)
            err = _func_call(ctx, self._begin, self._arg1_addr, 1, self._trap_addr)
            if err or trap.value:
                self._unwound(err)
            block = a1[0].i32 & 0xFFFFFFFF
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
            a5 = self._arg5
            a5[0].i32 = _i32(block + head)
            a5[1].i32 = _i32(size)
            a5[2].i32 = _i32(block + 8)
            a5[3].i32 = len(params) // 8
            a5[4].i32 = _i32(block)
            err = _func_call(ctx, self._func(spec.export), self._arg5_addr, 5, self._trap_addr)
            if err or trap.value:
                self._unwound(err)
            rc = a5[0].i32
            if rc != 0:
                raise self._failure(spec, rc)
            base = self._base()
            memory_bytes = self.memory_bytes = self._known_size
            out_ptr, out_len = _RESULT_SLOT.unpack(ctypes.string_at(base + block, 8))
            if out_ptr + out_len > memory_bytes:
                self.broken = True
                raise KernelError(f"{spec.name}: kernel returned an output outside its memory")
            return ctypes.string_at(base + out_ptr, out_len)
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
