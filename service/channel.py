"""The Channel base: one joined topic on one socket, with its own task and mailbox.

Like a Phoenix channel process (a GenServer): messages for the channel are handled one at a
time, in order, by its task. A subclass implements join / handle_in / handle_info / terminate.
An exception in the channel ends that channel only and sends `phx_error` to its client. What
goes out to the client, and when, is the rule of protocol/channel_server.py's ServerChannel.

handle_in is a plain method or a coroutine function. When the channel's task has nothing queued
or running (it would handle the push next anyway) handle_in is called as the push arrives: a
plain one's reply goes out without a hop through the task; what it returns that is awaitable
(an async def's coroutine) the task awaits, in turn. Otherwise the task calls it, in turn.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from veraltheim.protocol import Message
from veraltheim.protocol.channel_server import EndReason, ServerChannel
from veraltheim.protocol.constants import PRESENCE_STATE, STATUS_ERROR, STATUS_OK
from veraltheim.protocol.reasons import Reason
from veraltheim.service.context import ServiceContext

if TYPE_CHECKING:
    from veraltheim.service.outbox import FrameSink

log = logging.getLogger(__name__)

Response = dict[str, Any] | bytes

# Why a channel ended (protocol/channel_server.py); the socket tells the client with phx_close
# or phx_error (or not at all).
LEFT = EndReason.LEFT
DUPLICATE = EndReason.DUPLICATE
SHUTDOWN = EndReason.SHUTDOWN
CLOSED = EndReason.CLOSED
CRASHED = EndReason.CRASHED
JOIN_REFUSED = EndReason.JOIN_REFUSED


class ChannelSocket(Protocol):
    """What a channel uses of the socket it is joined on."""

    user_id: str
    claims: dict[str, Any]
    params: dict[str, str]

    @property
    def ctx(self) -> ServiceContext: ...

    # where the socket's frames go (broadcasts are queued for it there)
    sink: FrameSink

    def send_message(self, msg: Message) -> None: ...

    def channel_ended(self, channel: Channel, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Reply:
    status: str
    response: Response = field(default_factory=dict)

    @classmethod
    def ok(cls, response: Response | None = None) -> Reply:
        return cls(STATUS_OK, {} if response is None else response)

    @classmethod
    def error(cls, response: Response | None = None) -> Reply:
        return cls(STATUS_ERROR, {} if response is None else response)


class JoinError(Exception):
    """Raise from join() to refuse it; `response` is the error reply's response."""

    def __init__(self, response: Response | None = None) -> None:
        self.response = {} if response is None else response
        super().__init__(str(self.response))


class _Mailbox:
    """A FIFO with one waiting reader: lighter than asyncio.Queue for thousands of channels."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[tuple] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: tuple) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> tuple:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def drain(self) -> list[tuple]:
        items = list(self._items)
        self._items.clear()
        return items

    @property
    def parked(self) -> bool:
        """The reader waits on an empty mailbox (so it is handling nothing either)."""
        return self._waiter is not None and not self._waiter.done()


_IN, _INFO, _LEAVE, _STOP, _RESULT = range(5)


class Channel:
    """Subclass me; register the class for a topic pattern in service/app.py."""

    def __init__(
        self, socket: ChannelSocket, topic: str, join_ref: str | None, join_params: Any
    ) -> None:
        self._socket = socket
        self.sink = socket.sink
        self._rules = ServerChannel(topic, join_ref)
        self.topic = topic
        self.join_ref = join_ref
        self.join_params = join_params
        self.service: ServiceContext = socket.ctx
        self.user_id: str = socket.user_id
        self.claims: dict[str, Any] = socket.claims
        self.socket_params: dict[str, str] = socket.params
        self._mailbox = _Mailbox()
        self._task: asyncio.Task[None] | None = None
        self._reason: str = CLOSED
        self._pending_done: asyncio.Event | None = None
        self._tracked = False
        self._deferred_tracks: list[tuple[str, dict[str, Any] | None]] = []

    # -- callbacks for subclasses ------------------------------------------------------------

    async def join(self, payload: Any) -> Response | None:
        return {}

    def handle_in(
        self, event: str, payload: Any, ref: str | None
    ) -> Reply | Awaitable[Reply | None] | None:
        """The reply to a push, or None to answer later with reply(); plain or async."""
        return Reply.error({"reason": f"unhandled event {event!r}"})

    async def handle_info(self, message: Any) -> None:
        pass

    async def terminate(self, reason: str) -> None:
        pass

    # -- what a channel can do ---------------------------------------------------------------

    @property
    def joined(self) -> bool:
        return self._rules.joined

    @property
    def in_flight(self) -> int:
        """How many of the client's pushes wait for their reply."""
        return self._rules.in_flight

    def push(self, event: str, payload: Any) -> None:
        """Send event to this channel's client only."""
        self._emit(self._rules.push(event, payload))

    def reply(self, ref: str | None, status: str, response: Response | None = None) -> None:
        """Answer the push `ref` later (after handle_in returned None)."""
        self._emit(self._rules.reply(ref, status, {} if response is None else response))
        if self._rules.drained and self._pending_done is not None:
            self._pending_done.set()

    def broadcast(self, event: str, payload: Any) -> None:
        """Send event to every client joined to this topic, this one included."""
        self.service.pubsub.broadcast(self.topic, event, payload)

    def broadcast_from(self, event: str, payload: Any) -> None:
        """Send event to every client joined to this topic but this one."""
        self.service.pubsub.broadcast(self.topic, event, payload, exclude=self)

    def track_presence(self, key: str, meta: dict[str, Any] | None = None) -> None:
        """Be present on this topic as key: the client gets presence_state, others a diff."""
        if not self.joined:
            self._deferred_tracks.append((key, meta))  # done right after the join reply
            return
        self._tracked = True
        presence = self.service.presence
        _, entry = presence.add(self, self.topic, key, meta)
        self.push(PRESENCE_STATE, presence.list(self.topic))
        presence.announce_join(self.topic, key, entry)

    # -- the socket side ---------------------------------------------------------------------

    def deliver_info(self, message: Any) -> None:
        self._mailbox.put((_INFO, message))

    def _emit(self, messages: list[Message]) -> None:
        for msg in messages:
            self._socket.send_message(msg)

    def start(self, ref: str | None, payload: Any) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(ref, payload))

    def handle_message(self, msg: Message) -> None:
        if self._mailbox.parked:
            self._handle_in_now(msg.event, msg.payload, msg.ref)
        else:
            self._mailbox.put((_IN, msg.event, msg.payload, msg.ref))

    def leave(self, ref: str | None) -> None:
        self._mailbox.put((_LEAVE, ref))

    def stop(self, reason: str, *, drain: bool = False) -> None:
        """End the channel: at once, or (drain) after its queued messages and pending replies."""
        if self._task is None or self._task.done() or self._task.cancelling():
            return  # ended, or ending with a reason of its own (the first one given stays)
        if drain and self.joined:
            self._mailbox.put((_STOP, reason))
        else:
            self._reason = reason
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    # -- the task ----------------------------------------------------------------------------

    async def _run(self, ref: str | None, payload: Any) -> None:
        try:
            if not await self._join(ref, payload):
                return
            while True:
                item = await self._mailbox.get()
                kind = item[0]
                if kind == _IN:
                    await self._handle_in(*item[1:])
                elif kind == _INFO:
                    await self.handle_info(item[1])
                elif kind == _RESULT:
                    self._answer(item[1], await item[2])
                elif kind == _LEAVE:
                    self._reason = LEFT
                    self._emit(self._rules.leave(item[1]))
                    return
                else:
                    self._reason = item[1]
                    await self._wait_pending()
                    return
        except asyncio.CancelledError:
            if self._task is not None and not self._task.cancelling():
                self._crashed()  # raised by the channel's own code, not by stop()
        except Exception:
            self._crashed()
        finally:
            await self._cleanup()

    async def _join(self, ref: str | None, payload: Any) -> bool:
        try:
            response = await self.join(payload)
        except JoinError as exc:
            self._reason = JOIN_REFUSED
            self._emit(self._rules.join_refused(ref, exc.response))
            return False
        except Exception:
            self._reason = JOIN_REFUSED
            log.exception("join of %s (user %s) failed", self.topic, self.user_id)
            self._emit(self._rules.join_refused(ref, {"reason": Reason.JOIN_CRASHED}))
            return False
        out = self._rules.join_ok(ref, {} if response is None else response)
        self.service.pubsub.subscribe(self.topic, self)
        self._emit(out)
        tracks, self._deferred_tracks = self._deferred_tracks, []
        for key, meta in tracks:
            self.track_presence(key, meta)
        return True

    async def _handle_in(self, event: str, payload: Any, ref: str | None) -> None:
        # Pending from the start: a deferred reply may come before handle_in returns.
        self._rules.received(ref)
        result = self.handle_in(event, payload, ref)
        if inspect.isawaitable(result):
            result = await result
        self._answer(ref, result)

    def _handle_in_now(self, event: str, payload: Any, ref: str | None) -> None:
        """handle_in called outside the task: a failure ends the channel as it would."""
        self._rules.received(ref)
        try:
            result = self.handle_in(event, payload, ref)
            if inspect.isawaitable(result):  # an async def's coroutine: the task runs it
                self._mailbox.put((_RESULT, ref, result))
            else:
                self._answer(ref, result)
        except (Exception, asyncio.CancelledError):  # in handle_in, or a reply not sendable
            self._crashed()
            self.stop(CRASHED)

    def _crashed(self) -> None:
        self._reason = CRASHED
        log.exception("channel %s (user %s) crashed", self.topic, self.user_id)

    def _answer(self, ref: str | None, result: Reply | None) -> None:
        if result is not None:
            self._emit(self._rules.reply(ref, result.status, result.response))

    async def _wait_pending(self) -> None:
        if not self._rules.drained:
            self._pending_done = asyncio.Event()
            await self._pending_done.wait()

    async def _cleanup(self) -> None:
        for item in self._mailbox.drain():
            if item[0] == _RESULT and hasattr(item[2], "close"):
                item[2].close()  # a coroutine the task did not reach: never awaited, on purpose
        was_joined = self._rules.joined
        self._rules.end()
        if was_joined:
            self.service.pubsub.unsubscribe(self.topic, self)
        if self._tracked:
            self.service.presence.untrack(self, self.topic)
        if was_joined:
            try:
                await self.terminate(self._reason)
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("terminate of channel %s failed", self.topic)
        self._socket.channel_ended(self, self._reason)
