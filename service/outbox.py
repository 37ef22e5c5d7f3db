"""The frames of one turn of the event loop, queued in order and written together after it.

A loopback `send()` costs far more than the Python around it, so a turn's frames are grouped
per socket and each socket gets one write: when the service falls behind (several broadcasts of
a busy topic handled in one turn) a socket still gets one `send()` with all of them, in order.
A broadcast is queued as one entry (its frame and the sinks it goes to), not one per socket, so
a turn with a single broadcast, the usual case, is a plain loop of writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Protocol

from veraltheim.service import ws_fastpath
from websockets.protocol import State

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

OPEN = State.OPEN


class FrameSink(Hashable, Protocol):
    """Where one connection's frames go."""

    def send(self, frames: list[bytes]) -> int:
        """Write whole frames, in order; returns how many were written."""


class Outbox:
    """This turn's frames in the order they were queued; one flush at the end of the turn."""

    __slots__ = ("_count_written", "_turn", "last_flush")

    def __init__(self, count_written: Callable[[int], object] | None = None) -> None:
        self._turn: list[tuple[bytes, Sequence[FrameSink]]] = []
        self._count_written = count_written  # told how many frames each flush wrote
        # (frames, seconds) of the last flush that wrote any, for /metrics
        self.last_flush: tuple[int, float] = (0, 0.0)

    def send(self, sink: FrameSink, wire: bytes) -> None:
        """Queue one frame for one connection."""
        self.broadcast((sink,), wire)

    def broadcast(self, sinks: Sequence[FrameSink], wire: bytes) -> None:
        """Queue one frame for each of `sinks` (a snapshot the caller no longer changes)."""
        if not self._turn:
            asyncio.get_running_loop().call_soon(self.flush)
        self._turn.append((wire, sinks))

    def flush(self) -> None:
        """Write what is queued now (the end of the turn does; a close frame written behind
        websockets' back must come after the data)."""
        turn, self._turn = self._turn, []
        if not turn:
            return
        started = time.perf_counter()
        written = 0
        if len(turn) == 1:  # one frame for each sink: nothing to group
            wire, sinks = turn[0]
            frames = [wire]
            for sink in sinks:
                written += sink.send(frames)
        else:
            grouped: dict[FrameSink, list[bytes]] = {}
            for wire, sinks in turn:
                for sink in sinks:
                    queued = grouped.get(sink)
                    if queued is None:
                        grouped[sink] = [wire]
                    else:
                        queued.append(wire)
            for sink, frames in grouped.items():
                written += sink.send(frames)
        if written:
            if self._count_written is not None:
                self._count_written(written)
            self.last_flush = (written, time.perf_counter() - started)


class ConnectionWriter:
    """A FrameSink for one connection (service/ws_fastpath.py writes to it): it writes while
    the connection is open and the client reads. Once more than `limit` bytes wait unsent, the
    client is not reading: the frames are refused, `on_full` is called, and nothing more is
    written. Broadcasts are checked once per turn, when written (a client under the limit gets
    the turn's frames, which the kernel mostly takes at once: counting them as waiting would
    evict clients that read); the socket's own frames (what its client asks for) are counted as
    they are queued, so its requests cannot pile up past the limit within a turn."""

    __slots__ = ("_out", "_protocol", "_queued", "limit", "on_full", "stopped")

    def __init__(
        self, conn: ServerConnection, limit: int, on_full: Callable[[], None] | None
    ) -> None:
        self._protocol = conn.protocol  # its state, read per write, is one property away here
        self._out = ws_fastpath.writer(conn)
        self._queued = 0  # bytes of the socket's own frames queued this turn
        self.limit = limit
        self.on_full = on_full
        self.stopped = False

    def admit(self, size: int) -> bool:
        """Count one of the socket's own frames before it is queued; False (and the client is
        told) if more than `limit` bytes already wait for it."""
        if self.stopped:
            return False
        if self._out.get_write_buffer_size() + self._queued > self.limit:
            self._refuse()
            return False
        self._queued += size
        return True

    def send(self, frames: list[bytes]) -> int:
        self._queued = 0
        if self.stopped or self._protocol.state is not OPEN:
            return 0  # closing: nothing may follow the close frame
        out = self._out
        if out.get_write_buffer_size() > self.limit:
            self._refuse()
            return 0
        try:
            if len(frames) == 1:
                out.write(frames[0])
            else:
                out.writelines(frames)
        except Exception as exc:  # the transport went away; the socket's reader cleans up
            log.debug("write failed: %s", exc)
            return 0
        return len(frames)

    def close(self) -> None:
        """Write nothing more, and let go of `on_full` (it holds the socket)."""
        self.stopped = True
        self.on_full = None

    def _refuse(self) -> None:
        on_full = self.on_full
        self.close()
        if on_full is not None and self._protocol.state is OPEN:  # else it is closing anyway
            try:
                on_full()
            except Exception:  # the other sockets of this flush still get their frames
                log.exception("telling a socket that does not read failed")
