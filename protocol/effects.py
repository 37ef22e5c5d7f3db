"""What a channel state machine asks its driver to do (send a message, start or cancel a timer),
and the one thing it asks of the driver (a fresh message ref).

The machines (protocol/channel_client.py, heartbeat.py, channel_server.py, socket_server.py) do
no I/O and read no clock: they are fed messages, timer expiries and the time, and return lists
of these (plus outputs of their own). A driver runs the outputs in order.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from veraltheim.protocol.message import Message


@dataclass(frozen=True, slots=True)
class Send:
    """Write `message` on the socket. `push` names the client push it carries (None for control
    messages): if it cannot be encoded, the driver tells the machine with `discard(push)`."""

    message: Message
    push: int | None = None


@dataclass(frozen=True, slots=True)
class SetTimer:
    """(Re)start the timer `key`: call the machine's `timeout(key, ...)` after `delay_s`."""

    key: Hashable
    delay_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    key: Hashable


class RefSource(Protocol):
    """The socket's message refs: one counter for every channel and heartbeat on it."""

    def make_ref(self) -> str: ...
