"""Frames queued per socket during one turn of the event loop and written together after it.

A broadcast is one encode and, per socket, one write: a loopback `send()` costs far more than
the Python around it, so when the service falls behind (several broadcasts of a busy topic
handled in the same turn) each socket still gets one `send()` with all of them, in order. A
socket that got one frame this turn writes that frame object as is.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from veraltheim.service import ws_fastpath

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)


class Outbox:
    """The writers with frames waiting; one flush per loop turn, scheduled by the first."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: list[BatchedWriter] = []

    def waiting(self, writer: BatchedWriter) -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self.flush)
        self._waiting.append(writer)

    def flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for writer in waiting:
            writer.flush()


class BatchedWriter:
    """Writes whole frames to one connection (service/ws_fastpath.py) at the end of the loop
    turn, and tells a client that does not read: a frame is refused once more than `limit`
    bytes wait for it (in the transport and here)."""

    __slots__ = ("_conn", "_frames", "_out", "_outbox", "_queued", "limit")

    def __init__(self, conn: ServerConnection, outbox: Outbox, limit: int) -> None:
        self._conn = conn
        self._out = ws_fastpath.writer(conn)
        self._outbox = outbox
        self._frames: list[bytes] | None = None  # none for an idle socket
        self._queued = 0
        self.limit = limit

    def write(self, wire: bytes) -> bool:
        """Queue a frame for the end of this turn; False (nothing queued) if the client has
        not read what it was sent. A connection that closes meanwhile drops it (flush)."""
        if self._out.get_write_buffer_size() + self._queued > self.limit:
            return False
        if self._frames is None:
            self._frames = [wire]
            self._outbox.waiting(self)
        else:
            self._frames.append(wire)
        self._queued += len(wire)
        return True

    def get_write_buffer_size(self) -> int:
        return self._out.get_write_buffer_size() + self._queued

    def flush(self) -> None:
        """Write what waits now (the outbox does at the end of the turn; a close frame written
        behind websockets' back must come after the data)."""
        frames, self._frames, self._queued = self._frames, None, 0
        if not frames or not ws_fastpath.is_open(self._conn):
            return  # closing: nothing may follow the close frame
        try:
            if len(frames) == 1:
                self._out.write(frames[0])
            elif ws_fastpath.FAST:  # the transport takes the frames as one piece of data
                self._out.write(b"".join(frames))
            else:
                for wire in frames:
                    self._out.write(wire)
        except Exception as exc:  # the transport went away; the socket's reader cleans up
            log.debug("write failed: %s", exc)
