"""The one place that uses websockets' private internals, each with a public fallback.

The fast path writes a pre-encoded frame (service/wire.py: a server frame is unmasked, so with
compression off its bytes are the same for every socket) straight to the connection's asyncio
transport: a broadcast costs one encode plus one `transport.write` per socket, and the transport's
buffer size tells a client that does not read. Eviction queues a close frame behind the data
(`protocol.send_close` + `send_data`) and cuts the TCP connection if it is not answered soon.

At import, `probe()` builds a real websockets `ServerConnection` on a recording transport and
checks that these internals exist and write the bytes websockets itself would. If not (a future
websockets), `FAST` is False and every call goes through the public API instead: `broadcast()`
writes a frame's payload (websockets encodes it again), `close()` evicts, and the write buffer
cannot be seen (so no eviction by buffer size; the idle sweep still closes silent sockets).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import types
from collections.abc import Callable
from typing import Any, Protocol

from veraltheim.service.wire import wire_frame
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

_OPCODE_TEXT = Opcode.TEXT.value


class FrameWriter(Protocol):
    """Writes whole pre-encoded frames to one connection, without waiting."""

    def write(self, wire: bytes) -> None: ...

    def writelines(self, wires: list[bytes]) -> None: ...

    def get_write_buffer_size(self) -> int: ...


class _PublicWriter:
    """The fallback: websockets' public `broadcast()` to one connection, sent as the frame's
    payload (it skips a connection that is not open, as the fast path's callers do)."""

    __slots__ = ("_conns",)

    def __init__(self, conn: ServerConnection) -> None:
        self._conns = (conn,)

    def write(self, wire: bytes) -> None:
        opcode, payload = frame_payload(wire)
        broadcast(self._conns, payload, text=opcode == _OPCODE_TEXT)

    def writelines(self, wires: list[bytes]) -> None:
        for wire in wires:
            self.write(wire)

    def get_write_buffer_size(self) -> int:
        return 0  # not visible through the public API


def frame_payload(wire: bytes) -> tuple[int, memoryview]:
    """(opcode, payload) of one unmasked, unfragmented frame made by `wire_frame`."""
    length = wire[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    return wire[0] & 0x0F, memoryview(wire)[start:]


def writer(conn: ServerConnection) -> FrameWriter:
    """The writer for an open connection (its transport itself on the fast path)."""
    return conn.transport if FAST else _PublicWriter(conn)


def evict(conn: ServerConnection, code: int, reason: str, abort_after_s: float) -> Any:
    """Close a connection whose client does not read: the close frame queues behind the data,
    and the connection is cut `abort_after_s` later if the client has not answered. Returns the
    task to keep alive (fallback) or None."""
    if not FAST:
        return asyncio.get_running_loop().create_task(conn.close(code, reason))
    try:
        conn.protocol.send_close(code, reason)
        conn.send_data()
    except Exception as exc:
        log.debug("close frame not written: %s", exc)
    conn.loop.call_later(abort_after_s, conn.transport.abort)
    return None


def close_sent_code(conn: ServerConnection) -> int | None:
    """The code of the close frame the service sent (the fallback reads the code the closing
    handshake ended with: the client echoes ours)."""
    if not FAST:
        return conn.close_code
    sent = conn.protocol.close_sent
    return None if sent is None else sent.code


# -- the probe ---------------------------------------------------------------------------------


class _RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return len(self.written)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _no_handler(conn: ServerConnection) -> None:
    pass


async def _check_internals() -> None:
    # a stand-in for the Server: connection_made starts its handler and registers the task
    server = types.SimpleNamespace(handler=_no_handler, handler_tasks=set())
    conn = ServerConnection(ServerProtocol(), server)  # type: ignore[arg-type]
    transport = _RecordingTransport()
    conn.connection_made(transport)
    conn.protocol.state = State.OPEN  # as after the handshake
    assert conn.transport is transport and conn.loop is asyncio.get_running_loop()
    # our pre-encoded frames are the bytes websockets writes for the same messages
    for message in ("probe \u2713", b"\x00\x01" * 100, "x" * 70_000):
        transport.written.clear()
        if isinstance(message, str):
            conn.protocol.send_text(message.encode())
        else:
            conn.protocol.send_binary(message)
        conn.send_data()
        assert bytes(transport.written) == wire_frame(message)
        assert transport.get_write_buffer_size() == len(transport.written)
    transport.written.clear()
    conn.protocol.send_close(4001, "probe")
    conn.send_data()
    close = Frame(Opcode.CLOSE, Close(4001, "probe").serialize())
    assert bytes(transport.written) == close.serialize(mask=False, extensions=[])
    assert conn.protocol.close_sent == Close(4001, "probe")
    assert conn.protocol.state is State.CLOSING and conn.state is State.CLOSING


def probe(check: Callable[[], Any] = _check_internals) -> bool:
    """Whether the fast path's internals exist and behave (run on a loop of its own, in a thread,
    so it works whether or not the importing thread runs a loop)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            asyncio.run(check())
            outcome.append(None)
        except BaseException as exc:  # any failure means: do not use the internals
            outcome.append(exc)

    thread = threading.Thread(target=run, name="ws-fastpath-probe", daemon=True)
    thread.start()
    thread.join()
    failure = outcome[0] if outcome else RuntimeError("probe did not finish")
    if failure is not None:
        log.warning("websockets internals not usable (%r): using its public API", failure)
    return failure is None


FAST: bool = probe()
