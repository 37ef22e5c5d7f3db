"""y-protocols messages as y-phoenix-channel sends them, parsed and built with pycrdt's helpers.

Shared by the service's doc channel and the client's document sync: they speak the same messages.

A `yjs`/`yjs_sync` payload is one message: a var-uint message type (0 sync, 1 awareness,
3 query awareness), then for sync a sub-type (0 step 1, 1 step 2, 2 update) and one
length-prefixed payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pycrdt import (
    Decoder,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    write_message,
)

# Phoenix events of the y-phoenix-channel provider.
YJS_EVENT = "yjs"
YJS_SYNC_EVENT = "yjs_sync"
# y-protocols' messageQueryAwareness; pycrdt's YMessageType has only SYNC and AWARENESS.
QUERY_AWARENESS = 3
EMPTY_UPDATE = b"\x00\x00"
# A document is the topic "doc:<name>"; both sides refuse longer names.
DOC_TOPIC_PREFIX = "doc:"
MAX_DOC_NAME_CHARS = 200

__all__ = [
    "DOC_TOPIC_PREFIX",
    "EMPTY_UPDATE",
    "MAX_DOC_NAME_CHARS",
    "QUERY_AWARENESS",
    "YJS_EVENT",
    "YJS_SYNC_EVENT",
    "BadMessage",
    "Kind",
    "YMessage",
    "create_awareness_message",
    "create_sync_message",
    "create_sync_step2_message",
    "create_update_message",
    "parse_message",
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


def _read_one(body: bytes) -> bytes:
    decoder = Decoder(body)
    try:
        data = decoder.read_message()
    except (IndexError, RuntimeError) as exc:
        raise BadMessage("truncated y-protocols message") from exc
    if data is None or decoder.length != 0:
        raise BadMessage("y-protocols message length does not match its payload")
    return bytes(data)


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
