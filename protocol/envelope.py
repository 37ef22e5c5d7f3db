"""Compute's binary payload: u32 big-endian header length, a JSON header, then raw bytes."""

from __future__ import annotations

import struct
from typing import Any

from veraltheim.protocol import strictjson
from veraltheim.protocol.errors import ProtocolError

_LENGTH = struct.Struct(">I")


def pack_envelope(header: dict[str, Any], body: bytes | bytearray | memoryview = b"") -> bytes:
    if not isinstance(header, dict):
        raise ProtocolError(f"envelope header must be a JSON object, not {type(header).__name__}")
    try:
        raw = strictjson.dumps(header).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"envelope header is not JSON: {exc}") from None
    return b"".join((_LENGTH.pack(len(raw)), raw, body))


def unpack_envelope(data: bytes | bytearray | memoryview) -> tuple[dict[str, Any], bytes]:
    data = bytes(data)
    if len(data) < _LENGTH.size:
        raise ProtocolError(f"envelope of {len(data)} bytes is shorter than its 4-byte length")
    (size,) = _LENGTH.unpack_from(data)
    end = _LENGTH.size + size
    if end > len(data):
        raise ProtocolError(
            f"envelope header length {size} runs past the end ({len(data) - 4} bytes left)"
        )
    try:
        header = strictjson.loads(data[_LENGTH.size : end].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"envelope header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"envelope header must be a JSON object, not {type(header).__name__}")
    return header, data[end:]
