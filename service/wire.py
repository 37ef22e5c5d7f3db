"""Whole WebSocket frames built once: a server frame is unmasked, so with compression off its
bytes are the same for every socket, and a broadcast costs one encode plus one write per socket."""

from __future__ import annotations

from websockets.frames import Frame, Opcode


def wire_frame(frame: str | bytes) -> bytes:
    """The frame on the wire (header + payload) for one Phoenix text or binary frame."""
    if isinstance(frame, str):
        return Frame(Opcode.TEXT, frame.encode()).serialize(mask=False, extensions=[])
    return Frame(Opcode.BINARY, bytes(frame)).serialize(mask=False, extensions=[])
