"""The one wasmtime Engine of the process, its cache key, and the epoch ticker.

Every Store of every Runtime comes from this engine so compiled modules are shared.
The ticker advances the epoch only while some job is running, so an idle process
does not wake up every few milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import threading
import time

import wasmtime

from .limits import EPOCH_TICK_S

# Everything that changes the machine code goes into the cache key.
ENGINE_SETTINGS = {
    "epoch_interruption": True,
    "consume_fuel": False,
    "cranelift_opt_level": "speed",
}


def wasmtime_version() -> str:
    try:
        return importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def engine_key() -> str:
    """Directory name for compiled blobs: wasmtime version + hash of config and target."""
    fingerprint = json.dumps(
        {"settings": ENGINE_SETTINGS, "machine": platform.machine(), "system": platform.system()},
        sort_keys=True,
    )
    return f"wasmtime-{wasmtime_version()}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}"


class EpochTicker:
    """Calls engine.increment_epoch() every `period_s` while at least one job is active."""

    def __init__(self, engine: wasmtime.Engine, period_s: float = EPOCH_TICK_S) -> None:
        self._engine = engine
        self._period_s = period_s
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._thread: threading.Thread | None = None

    def job_started(self) -> None:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wasm-epoch-ticker", daemon=True
                )
                self._thread.start()
            elif self._active == 1:
                self._cond.notify()

    def job_finished(self) -> None:
        with self._cond:
            self._active -= 1

    def _after_fork_in_child(self) -> None:
        # The thread did not survive the fork; the next job starts a new one.
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._thread = None

    def _run(self) -> None:
        increment = self._engine.increment_epoch
        cond = self._cond
        while True:
            with cond:
                while self._active == 0:
                    cond.wait()
            time.sleep(self._period_s)
            increment()


_lock = threading.Lock()
_shared: tuple[wasmtime.Engine, EpochTicker] | None = None


def shared_engine() -> tuple[wasmtime.Engine, EpochTicker]:
    global _shared
    with _lock:
        if _shared is None:
            config = wasmtime.Config()
            config.epoch_interruption = ENGINE_SETTINGS["epoch_interruption"]
            config.consume_fuel = ENGINE_SETTINGS["consume_fuel"]
            config.cranelift_opt_level = ENGINE_SETTINGS["cranelift_opt_level"]
            engine = wasmtime.Engine(config)
            ticker = EpochTicker(engine)
            if hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=ticker._after_fork_in_child)
            _shared = (engine, ticker)
        return _shared
