"""The frames waiting for their sockets: each socket's in the order they were queued, all of
them in one write, a slice of sockets per turn of the event loop.

A loopback `send()` costs far more than the Python around it, so waiting frames are grouped per
socket and each socket gets one write with all of them. Broadcasts go out in rounds, a slice of
sockets per turn, so the loop reads and handles what comes in meanwhile: a broadcast queued while
a round is under way joins it at the sockets not yet written to (one `send()` for both) and goes
to the others in the next round, so no broadcast waits for a whole fan-out before its own starts
and a busy topic costs fewer sends the busier it gets. A socket's own frames (replies to its
client) go out in the next turn, round or not.
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
# The least a slice writes (a tenth of a millisecond of loopback sends, 10-15 us each): an edit's
# way through the service (read, check, store, broadcast) takes several loop turns, each behind
# one slice. bench/docs.py, 1,000 editors: p99 about 24 ms with 4 or 10, 29 with 25, 35 with 100.
# A slice goes on while it has taken less than the loop's other work since the last one, so a
# busy loop cannot starve a round: writes keep at least half the loop.
SINKS_PER_TURN = 10


class FrameSink(Hashable, Protocol):
    """Where one connection's frames go."""

    def send(self, frames: list[bytes]) -> int:
        """Write whole frames, in order; returns how many were written."""


class Outbox:
    """The waiting frames of every socket, written in rounds: a round visits the sockets that
    had frames waiting when it began, in the order they were first queued, a slice per turn."""

    __slots__ = (
        "_clock",
        "_count_written",
        "_replies",
        "_round",
        "_round_at",
        "_round_written",
        "_scheduled",
        "_slice_done",
        "_visited",
        "_waiting",
        "last_round",
    )

    def __init__(
        self,
        count_written: Callable[[int], object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clock = clock
        self._waiting: dict[FrameSink, list[bytes]] = {}
        self._replies: list[FrameSink] = []  # sent a frame of their own since the last slice
        self._round: list[FrameSink] = []  # the sockets this round visits
        self._visited = 0  # how many of them it has
        self._round_at = 0.0  # when it began
        self._round_written = 0  # frames it wrote so far
        self._scheduled = False
        self._slice_done: float | None = None  # when the last slice ended, while slices follow
        self._count_written = count_written  # told how many frames each slice wrote
        # (frames, seconds) of the last round that wrote any, for /metrics
        self.last_round: tuple[int, float] = (0, 0.0)

    def send(self, sink: FrameSink, wire: bytes) -> None:
        """Queue one frame for one connection: what its client asked for goes out in the next
        turn, even if a round under way would come to the socket much later, or not at all."""
        self._replies.append(sink)
        self.broadcast((sink,), wire)

    def broadcast(self, sinks: Sequence[FrameSink], wire: bytes) -> None:
        """Queue one frame for each of `sinks`."""
        waiting = self._waiting
        for sink in sinks:
            frames = waiting.get(sink)
            if frames is None:
                waiting[sink] = [wire]
            else:
                frames.append(wire)
        if not self._scheduled:
            self._schedule()

    def write_now(self, sink: FrameSink) -> None:
        """Write what waits for one socket now: a close frame written behind websockets' back
        must come after the data (the rest of the round goes on a slice per turn)."""
        self._wrote(self._write(sink))

    def discard(self, sink: FrameSink) -> None:
        """Drop what waits for a socket that is gone."""
        self._waiting.pop(sink, None)

    def _write(self, sink: FrameSink) -> int:
        frames = self._waiting.pop(sink, None)  # None: written or discarded already
        return 0 if frames is None else sink.send(frames)

    def _schedule(self) -> None:
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._write_slice)

    def _write_slice(self) -> None:
        self._scheduled = False
        started = self._clock()
        # at least as long as the loop's other work since the last slice took
        until = started if self._slice_done is None else 2 * started - self._slice_done
        replies, self._replies = self._replies, []
        replied = in_round = 0
        if self._visited >= len(self._round):  # a new round: whoever has frames waiting now
            self._round, self._visited = list(self._waiting), 0
            self._round_at = started
        try:
            for sink in replies:
                replied += self._write(sink)
            while self._visited < len(self._round):
                end = self._visited + SINKS_PER_TURN
                for sink in self._round[self._visited : end]:
                    in_round += self._write(sink)
                self._visited = end
                if self._clock() >= until:
                    break
        finally:
            self._round_written += replied + in_round
            self._wrote(replied + in_round)
            self._end_slice()

    def _end_slice(self) -> None:
        if self._visited >= len(self._round):
            if self._round_written:
                self.last_round = (self._round_written, self._clock() - self._round_at)
            self._round, self._visited, self._round_written = [], 0, 0
        if self._round or self._waiting:
            self._slice_done = self._clock()
            if not self._scheduled:
                self._schedule()
        else:
            self._slice_done = None

    def _wrote(self, written: int) -> None:
        if written and self._count_written is not None:
            self._count_written(written)


class ConnectionWriter:
    """A FrameSink for one connection (service/ws_fastpath.py writes to it): it writes while
    the connection is open and the client reads. Once more than `limit` bytes wait unsent, the
    client is not reading: the frames are refused, `on_full` is called, and nothing more is
    written. Broadcasts are checked when written (a client under the limit gets every frame
    waiting for it, which the kernel mostly takes at once: counting them as waiting would evict
    clients that read); the socket's own frames (what its client asks for) are counted as they
    are queued, so its requests cannot pile up past the limit before they are written."""

    __slots__ = ("_out", "_protocol", "_queued", "limit", "on_full", "stopped")

    def __init__(
        self, conn: ServerConnection, limit: int, on_full: Callable[[], None] | None
    ) -> None:
        self._protocol = conn.protocol  # its state, read per write, is one property away here
        self._out = ws_fastpath.writer(conn)
        self._queued = 0  # bytes of the socket's own frames queued, not yet written
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
            except Exception:  # the other sockets of this slice still get their frames
                log.exception("telling a socket that does not read failed")
