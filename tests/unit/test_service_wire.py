"""service/wire.py packs frame headers itself: they must be the bytes websockets writes, at
every boundary of the three length encodings."""

from __future__ import annotations

import pytest
from veraltheim.service.wire import wire_frame
from websockets.frames import Frame, Opcode

LENGTHS = [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]


def websockets_bytes(message: str | bytes) -> bytes:
    if isinstance(message, str):
        frame = Frame(Opcode.TEXT, message.encode())
    else:
        frame = Frame(Opcode.BINARY, message)
    return frame.serialize(mask=False, extensions=[])


@pytest.mark.parametrize("length", LENGTHS)
def test_text_and_binary_frames_are_what_websockets_writes(length):
    for message in ("a" * length, b"\x00" * length):
        assert wire_frame(message) == websockets_bytes(message)


def test_text_is_utf8_and_binary_may_be_any_bytes_like():
    assert wire_frame("\u2713") == websockets_bytes("\u2713")  # 3 bytes, not 1 character
    assert wire_frame(bytearray(b"xy")) == wire_frame(memoryview(b"xy")) == websockets_bytes(b"xy")
