"""One worker process of the compute pool, and the two threads that carry its pipe.

Messages go in through `send()` (a writer thread pickles them, so the event loop never waits
on a big input) and come back through `on_message` on the loop; EOF on the pipe (the process
died or was killed) calls `on_exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from veraltheim.service.compute.worker import worker_main

T = TypeVar("T")  # what the pool runs on a worker (compute/jobs.py's Task)


class WorkerProcess(Generic[T]):
    """One worker process and the thread that reads its pipe into the event loop."""

    def __init__(
        self,
        index: int,
        manifest_path: str | None,
        memory_limit_bytes: int,
        on_message: Callable[[WorkerProcess, tuple], None],
        on_exit: Callable[[WorkerProcess], None],
        user_kernels_dir: str | None = None,
    ) -> None:
        self.index = index
        self.on_message = on_message
        self.on_exit = on_exit
        self.task: T | None = None  # the pool's bookkeeping: what runs here now
        self.pid = 0
        self.ready = asyncio.Event()
        self.alive = True
        self.jobs_run = 0
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=worker_main,
            args=(child, manifest_path, memory_limit_bytes, user_kernels_dir),
            name=f"veraltheim-compute-{index}",
            daemon=True,
        )
        self.proc.start()
        child.close()  # our copy: without it, EOF never comes when the worker dies
        self.pid = self.proc.pid or 0
        # Pipe I/O happens on two threads of ours: a 16 MiB input is pickled and written (or a
        # result read) without the event loop waiting; one writer keeps run/cancel in order.
        self.outbox: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._read, args=(loop,), name=f"compute-read-{index}", daemon=True
        ).start()
        threading.Thread(
            target=self._write, args=(loop,), name=f"compute-write-{index}", daemon=True
        ).start()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                msg = self.conn.recv()
                loop.call_soon_threadsafe(self.on_message, self, msg)
        except (EOFError, OSError):
            pass
        except RuntimeError:
            return  # loop closed
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.on_exit, self)

    def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        while (msg := self.outbox.get()) is not None:
            if msg[0] == "run" and not isinstance(msg[4], bytes):
                msg = (*msg[:4], bytes(msg[4]), *msg[5:])  # a tile's memoryview: copy it here
            try:
                self.conn.send(msg)
            except (OSError, ValueError):
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self.on_exit, self)
                return

    def send(self, msg: tuple) -> None:
        """Queue a message for the worker (never blocks the loop)."""
        self.outbox.put(msg)

    def close(self) -> None:
        self.outbox.put(None)
        with contextlib.suppress(Exception):
            self.conn.close()

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
