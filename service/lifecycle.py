"""The running service's book of channels and tasks: what sockets and channels report to it, and
the one thing they ask of it (is it stopping?). The Service owns one; sockets get it as their
`ChannelBook` (service/socket.py), never the Service."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from veraltheim.protocol.channel_server import EndReason

if TYPE_CHECKING:
    from veraltheim.service.channel import Channel
    from veraltheim.service.socket import Counter


class Lifecycle:
    def __init__(self, joins: Counter, crashes: Counter) -> None:
        self.stopping = False
        self.channels: weakref.WeakSet[Channel] = weakref.WeakSet()
        self._joins = joins
        self._crashes = crashes
        self._tasks: set[asyncio.Task[Any]] = set()

    def channel_started(self, channel: Channel) -> None:
        self.channels.add(channel)
        self._joins.inc()

    def channel_ended(self, channel: Channel, reason: str) -> None:
        self.channels.discard(channel)
        if reason == EndReason.CRASHED:
            self._crashes.inc()

    def track_task(self, task: asyncio.Task[Any]) -> None:
        """Keep `task` alive until it ends; `cancel_tasks()` ends those left at the stop."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
