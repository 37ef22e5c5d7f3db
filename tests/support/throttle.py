"""A throttling TCP proxy on loopback: added latency and a bandwidth cap, changeable at run time.

`ThrottleProxy(target_port).start()` listens on 127.0.0.1:<free port> and forwards every
connection to 127.0.0.1:target_port. Each direction is a serial link: a chunk takes
len * 8 / bandwidth seconds to "transmit" after the previous one, then arrives rtt/2 later.
It runs its own event loop on a daemon thread so sync tests and benchmarks can use it alike;
`ProxyProcess` runs one in a process of its own, for timings that must not share a GIL with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHUNK_BYTES = 16 * 1024
# Stop reading from a side while this much is in flight, so a fast sender cannot queue unbounded.
MAX_IN_FLIGHT_BYTES = 4 * 1024 * 1024


@dataclass
class LinkShape:
    """One emulated link: round-trip latency added and bandwidth per direction (0 = unlimited)."""

    rtt_ms: float = 0.0
    bandwidth_bps: float = 0.0

    def transmit_s(self, nbytes: int) -> float:
        return nbytes * 8 / self.bandwidth_bps if self.bandwidth_bps > 0 else 0.0


class _Direction:
    """One direction of one connection: delivers chunks in order at their due times."""

    def __init__(self, proxy: ThrottleProxy, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.writer = writer
        self.queue: deque[tuple[float, bytes]] = deque()
        self.wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.in_flight = 0
        self.tx_free_at = 0.0
        self.closed = False

    def submit(self, chunk: bytes) -> None:
        shape = self.proxy.shape
        now = time.monotonic()
        start = max(now, self.tx_free_at)
        self.tx_free_at = start + shape.transmit_s(len(chunk))
        self.queue.append((self.tx_free_at + shape.rtt_ms / 2000, chunk))
        self.in_flight += len(chunk)
        if self.in_flight >= MAX_IN_FLIGHT_BYTES:
            self.room.clear()
        self.wakeup.set()

    async def deliver(self) -> None:
        try:
            while True:
                while not self.queue:
                    if self.closed:
                        return
                    self.wakeup.clear()
                    await self.wakeup.wait()
                due, chunk = self.queue[0]
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.queue.popleft()
                self.in_flight -= len(chunk)
                if self.in_flight < MAX_IN_FLIGHT_BYTES:
                    self.room.set()
                self.writer.write(chunk)
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()

    def finish(self) -> None:
        self.closed = True
        self.wakeup.set()


class ThrottleProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target_port> through an emulated link."""

    def __init__(self, target_port: int, rtt_ms: float = 0.0, bandwidth_bps: float = 0.0) -> None:
        self.target_port = target_port
        self.shape = LinkShape(rtt_ms, bandwidth_bps)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def set_link(self, rtt_ms: float, bandwidth_bps: float) -> None:
        """Change the link for every chunk sent from now on (thread-safe: one assignment)."""
        self.shape = LinkShape(rtt_ms, bandwidth_bps)

    def rewrite_url(self, url: str) -> str:
        return through(url, self.target_port, self.port)

    def start(self) -> ThrottleProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def drop_connections(self) -> None:
        """Cut every open connection at once (a link that goes down)."""
        asyncio.run_coroutine_threadsafe(self._drop(), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ThrottleProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _drop(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            except OSError:
                c_writer.close()
                return
            self._writers |= {c_writer, s_writer}
            up, down = _Direction(self, s_writer), _Direction(self, c_writer)
            await asyncio.gather(
                self._pump(c_reader, up),
                self._pump(s_reader, down),
                up.deliver(),
                down.deliver(),
            )
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, direction: _Direction) -> None:
        try:
            while True:
                await direction.room.wait()
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    break
                direction.submit(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            direction.finish()


def through(url: str, target_port: int, port: int) -> str:
    """`ws://127.0.0.1:<target>/...` -> the same URL through the proxy on `port`."""
    return url.replace(f":{target_port}/", f":{port}/", 1)


class ProxyProcess:
    """A ThrottleProxy in a child process (`python -m tests.support.throttle TARGET_PORT`),
    driven over its stdin: `link RTT_MS BANDWIDTH_BPS` lines, each answered `ok`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.throttle", str(target_port)],
            cwd=REPO_ROOT,  # where `tests` is a package, whoever starts it from where
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._answer().removeprefix("port "))

    def _answer(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError(f"the proxy process ended (exit code {self.proc.wait(10)})")
        return line

    def set_link(self, rtt_ms: float, bandwidth_bps: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"link {rtt_ms} {bandwidth_bps}\n")
        self.proc.stdin.flush()
        if self._answer() != "ok":
            raise RuntimeError("the proxy process did not take the link")

    def rewrite_url(self, url: str) -> str:
        return through(url, self.target_port, self.port)

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # its loop below ends, and with it the process
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def main() -> None:
    with ThrottleProxy(int(sys.argv[1])) as proxy:
        print(f"port {proxy.port}", flush=True)
        for line in sys.stdin:
            _, rtt_ms, bandwidth_bps = line.split()
            proxy.set_link(float(rtt_ms), float(bandwidth_bps))
            print("ok", flush=True)


if __name__ == "__main__":
    main()
