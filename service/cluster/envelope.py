"""The messages nodes exchange on the Redis channel, as bytes (sans-I/O, no Redis here).

`version, kind, u16 len(node), node, u16 len(topic), topic, body`. The node is the sender's
name and incarnation, so a node skips its own messages (Redis echoes them) as Phoenix.PubSub's
Redis adapter does. A broadcast's body is the WebSocket frame every subscriber gets, encoded
once on the sending node.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 1
_HEAD = struct.Struct(">BBH")
_LEN = struct.Struct(">H")

# kinds
BROADCAST = ord("B")  # body: a WebSocket frame for topic's subscribers
PRESENCE_DIFF = ord("D")  # body: JSON {"v", "joins", "leaves"} of the sender's own entries
HEARTBEAT = ord("H")  # body: JSON {"v"}: alive, and how many presence changes so far
SYNC_REQUEST = ord("S")  # topic: the node asked ("" all): send your whole presence state
PRESENCE_STATE = ord("F")  # body: JSON {"v", "state": {topic: {key: [meta]}}}
BYE = ord("X")  # the sender is stopping: drop its entries now
DOC_UPDATE = ord("U")  # topic: a document name; body: the stream entry id (the store tails it)
KINDS = frozenset(
    (BROADCAST, PRESENCE_DIFF, HEARTBEAT, SYNC_REQUEST, PRESENCE_STATE, BYE, DOC_UPDATE)
)


class BadEnvelope(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: int
    node: str
    topic: str
    body: bytes


def pack(kind: int, node: str, topic: str, body: bytes) -> bytes:
    n, t = node.encode(), topic.encode()
    return b"".join((_HEAD.pack(VERSION, kind, len(n)), n, _LEN.pack(len(t)), t, body))


def unpack(data: bytes) -> Envelope:
    """Raises BadEnvelope for anything that is not a message of ours."""
    try:
        version, kind, n = _HEAD.unpack_from(data, 0)
        at = _HEAD.size + n
        (t,) = _LEN.unpack_from(data, at)
        if len(data) < at + _LEN.size + t:
            raise struct.error("truncated")
        node = data[_HEAD.size : at].decode()
        topic = data[at + _LEN.size : at + _LEN.size + t].decode()
        at += _LEN.size + t
    except (struct.error, UnicodeDecodeError) as exc:
        raise BadEnvelope(f"not a cluster message: {exc}") from None
    if version != VERSION or kind not in KINDS:
        raise BadEnvelope(f"unknown cluster message (version {version}, kind {kind})")
    return Envelope(kind, node, topic, bytes(data[at:]))
