"""How a kernel instance calls into wasmtime: its private C-API path when it is there and
behaves, else the public API. The only module that touches wasmtime-py's internals.

`Func.__call__` costs 10-20 us per call (a type lookup and a boxed Val per argument). The private
path (`FastCalls`) calls `wasmtime_func_call_unchecked` over preallocated raw argument arrays and
`ctypes.memmove`s into linear memory, and installs a per-store epoch-deadline callback: every
engine tick asks the running job whether to go on, which is how one job is cancelled without
touching the others.

At import, `probe()` runs a tiny module through the private path (names present, results right,
the epoch callback and a raw host function working). If anything is missing or wrong (a newer
wasmtime-py moved its internals), `FAST` is False and every instance uses `PublicCalls`: the
same results through `Func.__call__`, `Memory.data_ptr`, `Global.set_value` and
`Store.set_epoch_deadline`, with the per-call overhead of the public API, and a cancel that lands
at the kernel's next progress report or at its deadline rather than at the next epoch tick.
"""

from __future__ import annotations

import ctypes
import logging
import math
import time
from ctypes import POINTER, c_size_t, c_uint64, c_void_p
from typing import Any, Protocol

import wasmtime

from .limits import EPOCH_TICK_S

log = logging.getLogger(__name__)


def _progress_type() -> wasmtime.FuncType:
    # A new one per store: a FuncType is bound to the engine it is first used with.
    return wasmtime.FuncType([wasmtime.ValType.i32(), wasmtime.ValType.i32()], [])


class Stopper(Protocol):
    """What the calls ask the running job (the instance's job slot)."""

    def tick(self) -> tuple[BaseException | None, int]:
        """On an epoch tick: why to stop now, else how many ticks until the next check."""

    def progress(self, done: int, total: int) -> BaseException | None:
        """The kernel reported progress: why to stop now, if it must."""

    def fail(self, exc: BaseException) -> None:
        """A callback itself failed (e.g. KeyboardInterrupt): stop the job with it."""

    def deadline(self) -> float | None:
        """The running job's deadline (time.monotonic()), if a job runs."""


class CallFailed(Exception):
    """The call trapped or was stopped; the message is wasmtime's."""


class PublicCalls:
    """One store's calls through wasmtime-py's public API."""

    fast = False

    def __init__(self, store: wasmtime.Store, stopper: Stopper) -> None:
        self.store = store
        self.stopper = stopper
        self._funcs: dict[str, wasmtime.Func] = {}
        self._memory: wasmtime.Memory | None = None
        self._gate: Any = None
        self._gate_on = False

    def host_progress(self) -> wasmtime.Func:
        """The host function behind the progress gate: reports to the job, stops it if told."""
        stopper = self.stopper

        def report(done: int, total: int) -> None:
            stop = stopper.progress(done, total)
            if stop is not None:
                raise stop  # wasmtime-py turns it into a trap, then re-raises it

        return wasmtime.Func(self.store, _progress_type(), report)

    def bind(self, exports: wasmtime.InstanceExports, gate: Any) -> None:
        """After instantiation: the module's exports and the progress gate's `on` global."""
        self._exports = exports
        self._memory = exports["memory"]
        self._gate = gate

    def start_job(self, want_progress: bool) -> None:
        """Before each call of a job: its deadline, and the progress gate on or off."""
        deadline = self.stopper.deadline()
        remaining = (deadline - time.monotonic()) if deadline is not None else 0.0
        # No epoch callback here: the store traps once the job's deadline has passed.
        self.store.set_epoch_deadline(max(1, math.ceil(remaining / EPOCH_TICK_S) + 1))
        self.set_gate(want_progress)

    def set_gate(self, on: bool) -> None:
        if self._gate is not None and on is not self._gate_on:
            self._gate.set_value(self.store, wasmtime.Val.i32(int(on)))
            self._gate_on = on

    def _func(self, export: str) -> wasmtime.Func:
        func = self._funcs.get(export)
        if func is None:
            func = self._funcs[export] = self._exports[export]
        return func

    def call(self, export: str, *args: int) -> int:
        """Call an export with i32 arguments; its first i32 result (0 when it has none)."""
        try:
            result = self._func(export)(self.store, *args)
        except BaseException as e:  # a trap, or the stop our progress callback raised
            raise CallFailed(str(e) or repr(e)) from None
        return int(result) if result is not None else 0

    def memory_size(self) -> int:
        return self._memory.data_len(self.store)

    def memory_base(self) -> int:
        return ctypes.cast(self._memory.data_ptr(self.store), c_void_p).value or 0


try:  # the private path's pieces; any AttributeError here means: not this wasmtime-py
    from wasmtime import _ffi as ffi

    def _prototype(name: str, restype: Any, *argtypes: Any) -> Any:
        # Our own function objects over wasmtime-py's library (`dll[name]` makes a new one),
        # typed with plain addresses: no wrapper frames, and wasmtime-py's own are untouched.
        func = ffi.dll[name]
        func.restype = restype
        func.argtypes = argtypes
        return func

    _EPOCH_CALLBACK_T = ctypes.CFUNCTYPE(
        c_size_t,
        POINTER(ffi.wasmtime_context_t),
        c_void_p,
        POINTER(c_uint64),
        POINTER(ffi.wasmtime_update_deadline_kind_t),
    )
    _NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, c_void_p))
    _func_call = _prototype(
        "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p
    )
    _memory_data = _prototype("wasmtime_memory_data", c_void_p, c_void_p, c_void_p)
    _memory_data_size = _prototype("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
    _set_epoch_deadline = _prototype(
        "wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64
    )
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
    _global_set = _prototype("wasmtime_global_set", c_void_p, c_void_p, c_void_p, c_void_p)
    _VAL_RAW_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)
    _ERROR_PTR = POINTER(ffi.wasmtime_error_t)
    _TRAP_PTR = POINTER(ffi.wasm_trap_t)
    _UPDATE_DEADLINE_CONTINUE = 0

    def _i32_val(value: int) -> Any:
        val = ffi.wasmtime_val_t()
        val.kind = ffi.WASMTIME_I32.value
        val.of.i32 = value
        return val

    _GATE_OFF, _GATE_ON = _i32_val(0), _i32_val(1)
    _GATE_VALUES = (ctypes.addressof(_GATE_OFF), ctypes.addressof(_GATE_ON))
    _PRIVATE_PROBLEM: str | None = None
except Exception as exc:  # pragma: no cover - only with a wasmtime-py whose internals moved
    _PRIVATE_PROBLEM = f"{type(exc).__name__}: {exc}"


def _error_ptr(message: str) -> int:
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), c_void_p).value or 0


class FastCalls(PublicCalls):
    """One store's calls through wasmtime's C API (wasmtime-py's private `_ffi`)."""

    fast = True

    def __init__(self, store: wasmtime.Store, stopper: Stopper) -> None:
        super().__init__(store, stopper)
        self._ctx = store._context()
        self._ctx_addr = ctypes.cast(self._ctx, c_void_p).value
        # ctypes callbacks must outlive the store: keep them on self (the stopper is not the
        # instance, so there is no cycle and the store is freed as soon as it is dropped).
        self._on_epoch = _EPOCH_CALLBACK_T(self._epoch)
        ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), self._on_epoch, None, _NO_FINALIZER)
        self._on_progress = _HOST_CALLBACK_T(self._progress)
        self._addrs: dict[str, int] = {}
        self._keep: list[Any] = []
        self._args = {n: (ffi.wasmtime_val_raw_t * n)() for n in (1, 2, 3, 4, 5)}
        self._args_addr = {n: ctypes.addressof(a) for n, a in self._args.items()}
        self._trap = c_void_p()
        self._trap_addr = ctypes.addressof(self._trap)
        self._memory_addr = 0
        self._gate_addr = 0

    # -- callbacks from wasmtime (never let an exception escape into it) --

    def _epoch(self, _ctx: Any, _data: Any, delta: Any, kind: Any) -> int:
        try:
            stop, ticks = self.stopper.tick()
            if stop is not None:
                return _error_ptr(str(stop))
            delta[0] = ticks
            kind[0] = _UPDATE_DEADLINE_CONTINUE
            return 0
        except BaseException as e:  # e.g. KeyboardInterrupt delivered in this callback
            self.stopper.fail(e)
            return _error_ptr(f"epoch callback failed: {e!r}")

    def _progress(self, _env: Any, _caller: Any, args: int, _nargs: int) -> int:
        try:
            done = ctypes.c_int32.from_address(args).value
            total = ctypes.c_int32.from_address(args + _VAL_RAW_SIZE).value
            stop = self.stopper.progress(done, total)
        except BaseException as e:  # ctypes would return garbage as the trap pointer
            self.stopper.fail(e)
            stop = e
        if stop is None:
            return 0
        msg = str(stop).encode()
        return ctypes.cast(ffi.wasmtime_trap_new(msg, len(msg)), c_void_p).value or 0

    # -- the calls --

    def host_progress(self) -> wasmtime.Func:
        raw = ffi.wasmtime_func_t()
        self._progress_type = ty = _progress_type()  # kept while the store may use it
        _func_new_unchecked(
            self._ctx_addr,
            ctypes.cast(ty.ptr(), c_void_p),
            self._on_progress,
            None,
            None,
            ctypes.addressof(raw),
        )
        return wasmtime.Func._from_raw(raw)

    def bind(self, exports: wasmtime.InstanceExports, gate: Any) -> None:
        super().bind(exports, gate)
        memory = exports["memory"]._memory
        self._keep.append(memory)
        self._memory_addr = ctypes.addressof(memory)
        if gate is not None:
            raw_gate = gate._global
            self._keep.append(raw_gate)
            self._gate_addr = ctypes.addressof(raw_gate)

    def start_job(self, want_progress: bool) -> None:
        _set_epoch_deadline(self._ctx_addr, 1)  # the callback takes it from there
        if want_progress is not self._gate_on:
            self.set_gate(want_progress)

    def set_gate(self, on: bool) -> None:
        if self._gate_addr and on is not self._gate_on:
            err = _global_set(self._ctx_addr, self._gate_addr, _GATE_VALUES[on])
            if err:
                raise CallFailed(self._message(err))
            self._gate_on = on

    def _addr(self, export: str) -> int:
        addr = self._addrs.get(export)
        if addr is None:
            func = self._exports[export]._func
            self._keep.append(func)
            addr = self._addrs[export] = ctypes.addressof(func)
        return addr

    def call(self, export: str, *args: int) -> int:
        n = len(args) or 1  # the raw array holds the arguments, then the results
        values = self._args[n]
        for i, v in enumerate(args):
            values[i].i32 = v  # (ctypes wraps a u32 to the i32 that wasm reads back as u32)
        addr = self._addrs.get(export) or self._addr(export)
        err = _func_call(self._ctx_addr, addr, self._args_addr[n], n, self._trap_addr)
        if err or self._trap.value:
            raise CallFailed(self._message(err))
        return values[0].i32

    def _message(self, err: int | None) -> str:
        trap, self._trap.value = self._trap.value, None
        if err:
            return str(wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, _ERROR_PTR)))
        return wasmtime.Trap._from_ptr(ctypes.cast(trap, _TRAP_PTR)).message

    def memory_size(self) -> int:
        return _memory_data_size(self._ctx_addr, self._memory_addr)

    def memory_base(self) -> int:
        return _memory_data(self._ctx_addr, self._memory_addr) or 0


# -- the probe ---------------------------------------------------------------------------------

_PROBE_WAT = """
(module
  (import "host" "progress" (func $report (param i32 i32)))
  (global $on (export "on") (mut i32) (i32.const 0))
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    (if (global.get $on) (then (call $report (local.get 0) (local.get 1))))
    (i32.store8 (i32.const 7) (i32.const 42))
    (i32.add (local.get 0) (local.get 1)))
  (func (export "spin") (loop $l (br $l))))
"""


class _ProbeStopper:
    def __init__(self) -> None:
        self.reports: list[tuple[int, int]] = []
        self.ticks = 0

    def tick(self) -> tuple[BaseException | None, int]:
        self.ticks += 1
        return RuntimeError("probe stopped"), 1

    def progress(self, done: int, total: int) -> BaseException | None:
        self.reports.append((done, total))
        return None

    def fail(self, exc: BaseException) -> None:
        pass

    def deadline(self) -> float | None:
        return None


def probe() -> str | None:
    """Run a tiny module through the private path; None if it works, else what failed."""
    if _PRIVATE_PROBLEM is not None:
        return _PRIVATE_PROBLEM
    try:
        config = wasmtime.Config()
        config.epoch_interruption = True
        engine = wasmtime.Engine(config)
        store = wasmtime.Store(engine)
        stopper = _ProbeStopper()
        calls = FastCalls(store, stopper)
        module = wasmtime.Module(engine, _PROBE_WAT)
        instance = wasmtime.Instance(store, module, [calls.host_progress()])
        exports = instance.exports(store)
        calls.bind(exports, exports["on"])
        calls.start_job(want_progress=True)
        if calls.call("add", 40, -2) != 38 or stopper.reports != [(40, -2)]:
            return "a call through the private path gave a wrong result"
        if calls.memory_size() != 65536 or ctypes.string_at(calls.memory_base() + 7, 1) != b"*":
            return "linear memory through the private path is not what the guest wrote"
        calls.start_job(want_progress=False)
        for _ in range(2):  # past the deadline: the epoch callback must stop the spin at once
            engine.increment_epoch()
        try:
            calls.call("spin")
        except CallFailed as e:
            if "probe stopped" not in str(e):
                return f"the epoch callback's stop came back as {e}"
        else:
            return "the epoch callback did not stop a spinning call"
        if stopper.ticks != 1:
            return f"the epoch callback ran {stopper.ticks} times, not once"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


PROBLEM = probe()
FAST = PROBLEM is None
if not FAST:
    log.warning("wasmtime's private call path is unavailable (%s): using the public API", PROBLEM)


def calls_for(store: wasmtime.Store, stopper: Stopper, *, fast: bool | None = None) -> PublicCalls:
    """The calls for one store: the private path when the probe passed (or `fast` says so)."""
    return (
        FastCalls(store, stopper)
        if (FAST if fast is None else fast)
        else PublicCalls(store, stopper)
    )
