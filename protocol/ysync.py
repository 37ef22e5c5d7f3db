"""y-protocols messages as y-phoenix-channel sends them, parsed and built with pycrdt's helpers.

Shared by the service's doc channel and the client's document sync: they speak the same messages.

A `yjs`/`yjs_sync` payload is one message: a var-uint message type (0 sync, 1 awareness,
3 query awareness), then for sync a sub-type (0 step 1, 1 step 2, 2 update) and one
length-prefixed payload.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import Enum

from pycrdt import (
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    get_update,
    write_message,
)
from veraltheim.protocol import strictjson

# Phoenix events of the y-phoenix-channel provider.
YJS_EVENT = "yjs"
YJS_SYNC_EVENT = "yjs_sync"
# y-protocols' messageQueryAwareness; pycrdt's YMessageType has only SYNC and AWARENESS.
QUERY_AWARENESS = 3
EMPTY_UPDATE = b"\x00\x00"
# A document is the topic "doc:<name>"; both sides refuse longer names.
DOC_TOPIC_PREFIX = "doc:"
MAX_DOC_NAME_CHARS = 200
# lib0 var-uints carry at most 53 bits (JavaScript numbers): 8 bytes; allow 10 like protobuf.
# Unbounded, a 196 KB run of 0xff bytes made one big int grow bit by bit: quadratic time.
MAX_VARINT_BYTES = 10

__all__ = [
    "DOC_TOPIC_PREFIX",
    "EMPTY_UPDATE",
    "MAX_DOC_NAME_CHARS",
    "QUERY_AWARENESS",
    "YJS_EVENT",
    "YJS_SYNC_EVENT",
    "AwarenessEntry",
    "BadMessage",
    "Kind",
    "YMessage",
    "create_awareness_message",
    "create_sync_message",
    "create_sync_step2_message",
    "create_update_message",
    "encode_awareness_update",
    "parse_awareness_update",
    "parse_message",
    "parse_state_vector",
    "update_is_pending",
]


def create_sync_step2_message(update: bytes) -> bytes:
    """Sync step 2 (the updates the peer's state vector lacks); pycrdt exports no builder."""
    return bytes((YMessageType.SYNC, YSyncMessageType.SYNC_STEP2)) + write_message(update)


class BadMessage(ValueError):
    """A payload that is not one well-formed y-protocols message."""


class Kind(Enum):
    SYNC_STEP1 = "sync_step1"
    SYNC_STEP2 = "sync_step2"
    UPDATE = "update"
    AWARENESS = "awareness"
    QUERY_AWARENESS = "query_awareness"

    @property
    def carries_update(self) -> bool:
        return self in (Kind.SYNC_STEP2, Kind.UPDATE)


_SYNC_KINDS = {
    YSyncMessageType.SYNC_STEP1: Kind.SYNC_STEP1,
    YSyncMessageType.SYNC_STEP2: Kind.SYNC_STEP2,
    YSyncMessageType.SYNC_UPDATE: Kind.UPDATE,
}


@dataclass(frozen=True, slots=True)
class YMessage:
    """kind, and data: the state vector (step 1), the update (step 2, update) or the
    awareness update (awareness; empty for a query)."""

    kind: Kind
    data: bytes


class _Reader:
    """Walks lib0-encoded bytes; every var-uint and every length is bounded before use."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    @property
    def left(self) -> int:
        return len(self.data) - self.pos

    def var_uint(self) -> int:
        value = shift = 0
        data, pos = self.data, self.pos
        for i in range(MAX_VARINT_BYTES):
            if pos + i >= len(data):
                raise BadMessage("truncated y-protocols message")
            byte = data[pos + i]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos + i + 1
                return value
            shift += 7
        raise BadMessage(f"a var-uint longer than {MAX_VARINT_BYTES} bytes")

    def var_bytes(self) -> bytes:
        size = self.var_uint()
        if size > self.left:
            raise BadMessage(f"a length of {size} bytes runs past the end ({self.left} left)")
        start, self.pos = self.pos, self.pos + size
        return self.data[start : self.pos]

    def count(self, what: str, limit: int) -> int:
        """A count of items that each take at least one byte: bounded by what is left."""
        n = self.var_uint()
        if n > min(limit, self.left):
            raise BadMessage(f"{n} {what} in a message that holds at most {min(limit, self.left)}")
        return n


def _read_one(body: bytes) -> bytes:
    reader = _Reader(body)
    data = reader.var_bytes()
    if reader.left:
        raise BadMessage("y-protocols message length does not match its payload")
    return data


def parse_message(payload: bytes | bytearray | memoryview) -> YMessage:
    """Parse one y-protocols message; raises BadMessage with a one-line reason."""
    message = bytes(payload)
    if not message:
        raise BadMessage("empty y-protocols message")
    kind = message[0]
    if kind == YMessageType.SYNC:
        if len(message) < 2 or message[1] not in _SYNC_KINDS:
            raise BadMessage("unknown y-protocols sync message type")
        return YMessage(_SYNC_KINDS[YSyncMessageType(message[1])], _read_one(message[2:]))
    if kind == YMessageType.AWARENESS:
        return YMessage(Kind.AWARENESS, _read_one(message[1:]))
    if kind == QUERY_AWARENESS:
        return YMessage(Kind.QUERY_AWARENESS, b"")
    raise BadMessage(f"unknown y-protocols message type {kind}")


# -- awareness -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    """One client's awareness: its clock and its state as the JSON text it sent ("null":
    the client is gone)."""

    client_id: int
    clock: int
    state: str

    @property
    def removed(self) -> bool:
        return self.state == "null"


def parse_awareness_update(
    data: bytes, *, max_states: int, max_state_bytes: int
) -> list[AwarenessEntry]:
    """The entries of an awareness update (y-protocols awareness encoding); BadMessage if it
    is malformed, has more than max_states entries, or a state over max_state_bytes or not
    JSON (y-protocols clients JSON.parse every state they get)."""
    reader = _Reader(bytes(data))
    entries = []
    for _ in range(reader.count("awareness states", max_states)):
        client_id, clock = reader.var_uint(), reader.var_uint()
        raw = reader.var_bytes()
        if len(raw) > max_state_bytes:
            raise BadMessage(
                f"an awareness state of {len(raw)} bytes is over the limit of {max_state_bytes}"
            )
        try:
            text = raw.decode("utf-8")
            strictjson.loads(text or "null")
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise BadMessage(f"an awareness state is not JSON: {exc}") from None
        entries.append(AwarenessEntry(client_id, clock, text or "null"))
    if reader.left:
        raise BadMessage("trailing bytes after the awareness update")
    return entries


def _write_var_uint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def encode_awareness_update(entries: list[AwarenessEntry]) -> bytes:
    """The awareness update (not yet wrapped in a message) carrying `entries`."""
    out = bytearray()
    _write_var_uint(out, len(entries))
    for entry in entries:
        raw = entry.state.encode()
        _write_var_uint(out, entry.client_id)
        _write_var_uint(out, entry.clock)
        _write_var_uint(out, len(raw))
        out += raw
    return bytes(out)


# -- updates and state vectors -----------------------------------------------------------------


def parse_state_vector(data: bytes) -> dict[int, int]:
    """{client id: clock} from an encoded state vector."""
    reader = _Reader(bytes(data))
    return {reader.var_uint(): reader.var_uint() for _ in range(reader.count("clients", 1 << 32))}


@functools.lru_cache(maxsize=4)
def _clocks(state_vector: bytes) -> dict[int, int]:
    """parse_state_vector, once per state vector: a compaction asks about every update it
    drops against the same one, which lists every client that ever edited (read only)."""
    return parse_state_vector(state_vector)


def update_is_pending(update: bytes, state_vector: bytes) -> bool:
    """Whether a doc at `state_vector` lacks part of `update`: structs it could not integrate
    (their dependency has not arrived) or deletions of items it does not have. A document's
    encoded state leaves such pending parts out, so compaction must keep those updates."""
    state = _clocks(bytes(state_vector))
    # pycrdt: the structs of `update` that `state_vector` does not cover, then its delete set
    reader = _Reader(get_update(update, state_vector))
    if reader.var_uint() != 0:
        return True
    for _ in range(reader.count("clients", 1 << 32)):
        client = reader.var_uint()
        for _ in range(reader.count("ranges", 1 << 32)):
            clock, length = reader.var_uint(), reader.var_uint()
            if clock + length > state.get(client, 0):
                return True
    return False
