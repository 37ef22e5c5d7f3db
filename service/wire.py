"""Whole WebSocket frames built once: a server frame is unmasked, so with compression off its
bytes are the same for every socket, and a broadcast costs one encode plus one write per socket.

The header is RFC 6455 section 5.2's, packed here rather than through websockets' Frame (which
validates, runs extensions and assembles in a BytesIO: several times the cost, on every reply);
service/ws_fastpath.py's probe checks at start-up that these are the bytes websockets writes.
"""

from __future__ import annotations

import struct

FIN_TEXT = 0x81  # FIN + opcode 1
FIN_BINARY = 0x82  # FIN + opcode 2
_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def wire_frame(frame: str | bytes) -> bytes:
    """The frame on the wire (header + payload) for one Phoenix text or binary frame."""
    if isinstance(frame, str):
        first, payload = FIN_TEXT, frame.encode()
    else:
        first, payload = FIN_BINARY, bytes(frame)
    length = len(payload)
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return _LENGTH_16.pack(first, 126, length) + payload
    return _LENGTH_64.pack(first, 127, length) + payload
