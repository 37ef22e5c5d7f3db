"""A Phoenix Channels message, the same shape both ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from veraltheim.protocol.constants import PHX_REPLY


@dataclass(frozen=True, slots=True)
class Message:
    """`[join_ref, ref, topic, event, payload]`.

    payload is a JSON value for text frames and `bytes` for binary ones. A reply has event
    "phx_reply" and payload {"status": str, "response": dict | bytes}.
    """

    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any

    @property
    def is_binary(self) -> bool:
        if self.event == PHX_REPLY and isinstance(self.payload, dict):
            return isinstance(self.payload.get("response"), bytes | bytearray | memoryview)
        return isinstance(self.payload, bytes | bytearray | memoryview)

    @classmethod
    def reply(
        cls, join_ref: str | None, ref: str | None, topic: str, status: str, response: Any
    ) -> Message:
        return cls(join_ref, ref, topic, PHX_REPLY, {"status": status, "response": response})
