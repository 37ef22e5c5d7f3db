"""A minimal WebSocket client on raw asyncio protocols, for load generators that must cost much
less than the service they load: the handshake, masked client frames out, and every complete
server frame handed to a callback with its arrival time (no websockets library, no tasks)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from veraltheim.protocol import SOCKET_PATH, VSN

OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE = 1, 2, 8


def masked_frame(payload: bytes, opcode: int = OPCODE_TEXT) -> bytes:
    """A client frame; the zero mask key leaves the payload as is (RFC 6455 allows any key)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def handshake(path: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class FrameSplitter:
    """Bytes in (the HTTP 101 response first), complete unmasked server frames out to
    `on_frame(opcode, payload, arrived_ns)`."""

    def __init__(self, on_frame: Callable[[int, bytes, int], None]) -> None:
        self.on_frame = on_frame
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()

    def feed(self, data: bytes, now: int) -> None:
        if not self.buf and self.upgraded.done():
            used = self._frames(data, now)  # the common case: no copy into the buffer
            self.buf += data[used:]
            return
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.upgraded.set_result(None)
        data = bytes(buf)
        buf.clear()
        buf += data[self._frames(data, now) :]

    def _frames(self, data: bytes, now: int) -> int:
        """Hand over every complete frame in data; returns how many bytes they took (an
        incomplete frame after them waits for more data)."""
        pos, size = 0, len(data)
        while size - pos >= 2:
            opcode, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = struct.unpack_from("!H", data, pos + 2)[0], pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = struct.unpack_from("!Q", data, pos + 2)[0], pos + 10
            if size < start + n:
                break
            self.on_frame(opcode, data[start : start + n], now)
            pos = start + n
        return pos

    def lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before upgrade: {exc}"))


class RawWs(asyncio.Protocol):
    """Handshake, then unmasked server frames to `on_frame(opcode, payload, arrived_ns)`;
    arrived_ns (time.monotonic_ns) is when this process read them."""

    def __init__(self, path: str, on_frame: Callable[[int, bytes, int], None]) -> None:
        self.path = path
        self.frames = FrameSplitter(on_frame)
        self.upgraded = self.frames.upgraded
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(handshake(self.path))  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.frames.lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data, time.monotonic_ns())

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)


# Linux's SO_TIMESTAMPNS (= its SCM_TIMESTAMPNS); Python's socket module may not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


class StampedWs:
    """RawWs's frames, with arrived_ns the kernel's receive time of the data (SO_TIMESTAMPNS,
    time.time_ns's clock): the moment the client has them, however long this process, which
    holds many clients on one core, then takes to get to that socket. A real client has a
    machine of its own; this is the latency it would see."""

    clock = staticmethod(time.time_ns)

    def __init__(self, sock: socket.socket, on_frame: Callable[[int, bytes, int], None]) -> None:
        self.sock = sock
        self.frames = FrameSplitter(on_frame)
        self.upgraded = self.frames.upgraded
        self.closed = asyncio.get_running_loop().create_future()
        self._unsent = bytearray()

    def readable(self) -> None:
        try:
            data, ancdata, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(_TIMESPEC.size))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        now = time.time_ns()  # (no stamp: the data's time is now)
        for level, kind, stamp in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = _TIMESPEC.unpack_from(stamp)
                now = seconds * 1_000_000_000 + nanos
        self.frames.feed(data, now)

    def _lost(self, exc: Exception | None) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.sock.fileno())
        loop.remove_writer(self.sock.fileno())
        self.frames.lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)
        self.sock.close()

    def send(self, frame: bytes) -> None:
        if self._unsent:  # behind earlier bytes the kernel had no room for
            self._unsent += frame
            return
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        if sent < len(frame):
            self._unsent += frame[sent:]
            asyncio.get_running_loop().add_writer(self.sock.fileno(), self._writable)

    def _writable(self) -> None:
        try:
            sent = self.sock.send(self._unsent)
        except BlockingIOError:
            return
        del self._unsent[:sent]
        if not self._unsent:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._lost(None)


async def open_stamped(
    port: int, on_frame: Callable[[int, bytes, int], None], path: str | None = None
) -> StampedWs:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    ws = StampedWs(sock, on_frame)
    loop.add_reader(sock.fileno(), ws.readable)
    ws.send(handshake(path or f"{SOCKET_PATH}?vsn={VSN}"))
    await ws.upgraded
    return ws


async def open_raw(
    port: int, on_frame: Callable[[int, bytes, int], None], path: str | None = None
) -> RawWs:
    loop = asyncio.get_running_loop()
    path = path or f"{SOCKET_PATH}?vsn={VSN}"
    _, proto = await loop.create_connection(lambda: RawWs(path, on_frame), "127.0.0.1", port)
    await proto.upgraded
    return proto


def text_frame(
    join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any
) -> bytes:
    return masked_frame(json.dumps([join_ref, ref, topic, event, payload]).encode())


def process_stats() -> dict[str, Any]:
    """This process's CPU seconds (user + system) and descriptor limit [soft, hard]."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "fd_limit": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
