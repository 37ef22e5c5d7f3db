"""Test doubles for the service's frame path: a subscriber that records the frames its socket
is sent, and a queue that hands each broadcast over at once (the real Outbox writes in rounds, a
slice of sockets per loop turn; tests/unit/test_service_outbox.py covers it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RecordingSubscriber:
    """A pubsub subscriber that is its own sink: `wires` holds every frame it was sent."""

    def __init__(self) -> None:
        self.wires: list[bytes] = []
        self.infos: list[Any] = []
        self.sink = self

    def send(self, frames: list[bytes]) -> int:
        self.wires.extend(frames)
        return len(frames)

    def deliver_info(self, message: Any) -> None:
        self.infos.append(message)


class WriteAtOnce:
    """A FrameQueue that writes each broadcast when it is queued."""

    def broadcast(self, sinks: Sequence[Any], wire: bytes) -> None:
        for sink in sinks:
            sink.send([wire])
