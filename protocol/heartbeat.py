"""The client's heartbeat, sans-I/O: phoenix.js's rule as a state machine.

On open, one heartbeat at once (so the round trip is known right away), then one every
`interval_s`; a heartbeat still unanswered at the next tick means the link is dead (`Dead`: the
driver closes the connection and reconnects). `ping()` sends an extra heartbeat whose reply is
reported as a `Pong`. Round trips are measured with the `now` the driver passes in (seconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from veraltheim.protocol.constants import HEARTBEAT, PHOENIX_TOPIC
from veraltheim.protocol.effects import CancelTimer, RefSource, Send, SetTimer
from veraltheim.protocol.message import Message

TICK = "heartbeat"  # the timer key


@dataclass(frozen=True, slots=True)
class Pong:
    """The reply to `ping()` number `ref` came after `rtt_ms`."""

    ref: str
    rtt_ms: float


@dataclass(frozen=True, slots=True)
class Dead:
    """No reply to the last heartbeat within an interval: close the connection."""

    reason: str


class Heartbeat:
    def __init__(self, interval_s: float, refs: RefSource) -> None:
        self.interval_s = interval_s
        self.rtt_ms: float | None = None  # the latest round trip, heartbeat or ping
        self._refs = refs
        self._ref: str | None = None  # the heartbeat waiting for its reply
        self._sent_at = 0.0
        self._pings: dict[str, float] = {}  # ref -> sent at

    def opened(self, now: float) -> list[Any]:
        self._ref = None
        self._pings.clear()
        return [self._beat(now), SetTimer(TICK, self.interval_s)]

    def closed(self) -> list[Any]:
        self._ref = None
        self._pings.clear()
        return [CancelTimer(TICK)]

    def timeout(self, key: Any, now: float) -> list[Any]:
        if self._ref is not None:
            return [Dead("heartbeat timeout")]
        return [self._beat(now), SetTimer(TICK, self.interval_s)]

    def ping(self, now: float) -> tuple[str, list[Any]]:
        ref = self._refs.make_ref()
        self._pings[ref] = now
        return ref, [Send(Message(None, ref, PHOENIX_TOPIC, HEARTBEAT, {}))]

    def forget_ping(self, ref: str) -> None:
        """The caller of ping() stopped waiting."""
        self._pings.pop(ref, None)

    def receive(self, msg: Message, now: float) -> list[Any]:
        """A message on the `phoenix` topic: the reply to a heartbeat or a ping, or nothing."""
        if msg.topic != PHOENIX_TOPIC or msg.ref is None:
            return []
        if msg.ref == self._ref:
            self._ref = None
            self.rtt_ms = (now - self._sent_at) * 1000
        sent_at = self._pings.pop(msg.ref, None)
        if sent_at is None:
            return []
        self.rtt_ms = (now - sent_at) * 1000
        return [Pong(msg.ref, self.rtt_ms)]

    def _beat(self, now: float) -> Send:
        self._ref = self._refs.make_ref()
        self._sent_at = now
        return Send(Message(None, self._ref, PHOENIX_TOPIC, HEARTBEAT, {}))
