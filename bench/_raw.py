"""A minimal WebSocket client on raw asyncio protocols, for load generators that must cost much
less than the service they load: the handshake, masked client frames out, and every complete
server frame handed to a callback with its arrival time (no websockets library, no tasks)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
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


class RawWs(asyncio.Protocol):
    """Handshake, then unmasked server frames to `on_frame(opcode, payload, arrived_ns)`."""

    def __init__(self, path: str, on_frame: Callable[[int, bytes, int], None]) -> None:
        self.path = path
        self.on_frame = on_frame
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
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

    def send(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)


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
