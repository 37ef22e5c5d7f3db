"""Encode and decode Phoenix V2 frames (text JSON and binary), sans-I/O.

`sender` is who sends the frame: a client sends text frames and binary pushes (kind 0 with four
lengths); a server sends text frames, binary pushes (kind 0 with three lengths, no ref), replies
(kind 1) and broadcasts (kind 2). Empty join_ref/ref strings in a binary frame stand for null,
as Phoenix writes `to_string(nil)`.
"""

from __future__ import annotations

from typing import Any, Literal

from veraltheim.protocol import strictjson
from veraltheim.protocol.constants import (
    KIND_BROADCAST,
    KIND_PUSH,
    KIND_REPLY,
    MAX_BINARY_FIELD_BYTES,
    PHX_REPLY,
)
from veraltheim.protocol.errors import ProtocolError
from veraltheim.protocol.message import Message

Sender = Literal["client", "server"]
Frame = str | bytes

_BINARY = (bytes, bytearray, memoryview)
_KIND_NAMES = {KIND_PUSH: "push", KIND_REPLY: "reply", KIND_BROADCAST: "broadcast"}


def _check_sender(sender: str) -> None:
    if sender not in ("client", "server"):
        raise ProtocolError(f"sender must be 'client' or 'server', not {sender!r}")


# -- encode -----------------------------------------------------------------------------------


def encode(msg: Message, *, sender: Sender) -> Frame:
    """The frame for msg: binary when its payload (or reply response) is bytes, else JSON text."""
    _check_sender(sender)
    if msg.is_binary:
        return _encode_binary(msg, sender)
    return encode_text(msg)


def encode_text(msg: Message) -> str:
    _check_fields(msg.join_ref, msg.ref, msg.topic, msg.event, surrogates_possible=False)
    try:
        return strictjson.dumps([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload])
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(
            f"payload of {msg.event!r} on {msg.topic!r} is not JSON: {exc}"
        ) from None


def _field(value: str | None, name: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string or null, not {type(value).__name__}")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{name} is not valid UTF-8 text") from None
    if len(raw) > MAX_BINARY_FIELD_BYTES:
        raise ProtocolError(
            f"{name} is {len(raw)} bytes; a binary frame allows at most {MAX_BINARY_FIELD_BYTES}"
        )
    return raw


def _encode_binary(msg: Message, sender: Sender) -> bytes:
    topic = _field(msg.topic, "topic")
    if msg.event == PHX_REPLY:
        if sender == "client":
            raise ProtocolError("a client does not send replies")
        if not isinstance(msg.payload, dict):
            raise ProtocolError('a reply payload must be {"status": str, "response": bytes}')
        if not isinstance(msg.payload.get("status"), str):
            raise ProtocolError("a reply needs a string status")
        status = _field(msg.payload["status"], "reply status")
        join_ref, ref = _field(msg.join_ref, "join_ref"), _field(msg.ref, "ref")
        head = bytes((KIND_REPLY, len(join_ref), len(ref), len(topic), len(status)))
        return b"".join((head, join_ref, ref, topic, status, msg.payload["response"]))
    event = _field(msg.event, "event")
    if sender == "client":
        join_ref, ref = _field(msg.join_ref, "join_ref"), _field(msg.ref, "ref")
        head = bytes((KIND_PUSH, len(join_ref), len(ref), len(topic), len(event)))
        return b"".join((head, join_ref, ref, topic, event, msg.payload))
    if msg.ref is not None:
        raise ProtocolError("a binary server push carries no ref (only replies do)")
    if msg.join_ref is None:
        return b"".join(
            (bytes((KIND_BROADCAST, len(topic), len(event))), topic, event, msg.payload)
        )
    join_ref = _field(msg.join_ref, "join_ref")
    head = bytes((KIND_PUSH, len(join_ref), len(topic), len(event)))
    return b"".join((head, join_ref, topic, event, msg.payload))


# -- decode -----------------------------------------------------------------------------------


def decode(frame: Frame | bytearray | memoryview, *, sender: Sender) -> Message:
    """The message in frame; raises ProtocolError (and nothing else) when it is malformed."""
    _check_sender(sender)
    if isinstance(frame, str):
        return _decode_text(frame, sender)
    if isinstance(frame, _BINARY):
        return _decode_binary(bytes(frame), sender)
    raise ProtocolError(f"a frame is str or bytes, not {type(frame).__name__}")


def _text_field(value: Any, name: str, *, nullable: bool) -> None:
    if value is None and nullable:
        return
    if not isinstance(value, str):
        kind = "a string or null" if nullable else "a string"
        raise ProtocolError(f"{name} must be {kind}, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{name} is not valid UTF-8 text (lone surrogate)") from None


def _check_fields(
    join_ref: Any, ref: Any, topic: Any, event: Any, *, surrogates_possible: bool
) -> None:
    """Refs are strings or null, topic and event strings, all valid UTF-8 text."""
    if (
        (join_ref is None or type(join_ref) is str)
        and (ref is None or type(ref) is str)
        and type(topic) is str
        and type(event) is str
        and not surrogates_possible
    ):
        return  # the common case, in a handful of cheap checks
    _text_field(join_ref, "join_ref", nullable=True)
    _text_field(ref, "ref", nullable=True)
    _text_field(topic, "topic", nullable=False)
    _text_field(event, "event", nullable=False)


def _decode_text(frame: str, sender: Sender) -> Message:
    try:
        data = strictjson.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"text frame is not JSON: {exc}") from None
    if not isinstance(data, list) or len(data) != 5:
        shape = f"a list of {len(data)}" if isinstance(data, list) else type(data).__name__
        raise ProtocolError(
            f"text frame must be [join_ref, ref, topic, event, payload], not {shape}"
        )
    join_ref, ref, topic, event, payload = data
    # A lone surrogate can only come from a \u escape or from non-ASCII input.
    suspect = "\\u" in frame or not frame.isascii()
    _check_fields(join_ref, ref, topic, event, surrogates_possible=suspect)
    if event == PHX_REPLY and sender == "server":
        if not isinstance(payload, dict) or not isinstance(payload.get("status"), str):
            raise ProtocolError('a reply payload must be {"status": str, "response": ...}')
        if "response" not in payload:
            raise ProtocolError("a reply payload has no response")
    return Message(join_ref, ref, topic, event, payload)


class _Reader:
    """Walks a binary frame; every read checks the bounds."""

    __slots__ = ("data", "kind", "offset")

    def __init__(self, data: bytes, kind: str) -> None:
        self.data, self.kind, self.offset = data, kind, 1

    def lengths(self, n: int) -> bytes:
        if len(self.data) < 1 + n:
            raise ProtocolError(
                f"binary {self.kind} frame of {len(self.data)} bytes is too short for its "
                f"{n} length bytes"
            )
        self.offset = 1 + n
        return self.data[1 : 1 + n]

    def text(self, size: int, name: str) -> str:
        end = self.offset + size
        if end > len(self.data):
            raise ProtocolError(
                f"binary {self.kind} frame is truncated: {name} needs {size} bytes, "
                f"{len(self.data) - self.offset} left"
            )
        raw, self.offset = self.data[self.offset : end], end
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(f"{name} in binary {self.kind} frame is not valid UTF-8") from None

    def rest(self) -> bytes:
        return self.data[self.offset :]


def _decode_binary(data: bytes, sender: Sender) -> Message:
    if not data:
        raise ProtocolError("empty binary frame")
    kind = data[0]
    name = _KIND_NAMES.get(kind)
    if name is None:
        raise ProtocolError(f"unknown binary frame kind {kind} (expected 0, 1 or 2)")
    r = _Reader(data, name)
    if kind == KIND_PUSH and sender == "client":
        jl, rl, tl, el = r.lengths(4)
        join_ref, ref = r.text(jl, "join_ref"), r.text(rl, "ref")
        topic, event = r.text(tl, "topic"), r.text(el, "event")
        return Message(join_ref or None, ref or None, topic, event, r.rest())
    if sender == "client":
        raise ProtocolError(f"a client does not send binary {name} frames (kind {kind})")
    if kind == KIND_PUSH:
        jl, tl, el = r.lengths(3)
        join_ref, topic, event = r.text(jl, "join_ref"), r.text(tl, "topic"), r.text(el, "event")
        return Message(join_ref or None, None, topic, event, r.rest())
    if kind == KIND_REPLY:
        jl, rl, tl, sl = r.lengths(4)
        join_ref, ref = r.text(jl, "join_ref"), r.text(rl, "ref")
        topic, status = r.text(tl, "topic"), r.text(sl, "status")
        return Message.reply(join_ref or None, ref or None, topic, status, r.rest())
    tl, el = r.lengths(2)
    topic, event = r.text(tl, "topic"), r.text(el, "event")
    return Message(None, None, topic, event, r.rest())
