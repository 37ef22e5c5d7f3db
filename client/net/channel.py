"""A joined topic on a Socket, with phoenix.js's rules: one join per Channel object, rejoin with
backoff after an error or a reconnect (each with a new join_ref), pushes buffered until joined,
replies matched by ref, messages for an outdated join_ref dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from veraltheim.client.net.callbacks import call_safely
from veraltheim.client.net.push import (
    JoinError,
    PendingReplies,
    Push,
    PushTimeout,
    Reply,
    reply_of,
)
from veraltheim.client.net.state import ChannelState
from veraltheim.client.net.timer import RetryTimer
from veraltheim.protocol import PHX_CLOSE, PHX_ERROR, PHX_JOIN, PHX_LEAVE, PHX_REPLY, Message
from veraltheim.protocol.reasons import Reason

if TYPE_CHECKING:
    from veraltheim.client.net.socket import Socket

log = logging.getLogger(__name__)

Params = dict[str, Any] | Callable[[], dict[str, Any]]


class ChannelClosed(PushTimeout):
    """The channel was left or closed, so the push will never get a reply."""


class Channel:
    """Made by `Socket.channel(topic, params)`; `params` (a dict, or a callable asked on every
    join) is the join payload."""

    def __init__(self, socket: Socket, topic: str, params: Params | None = None) -> None:
        self.socket = socket
        self.topic = topic
        self._params = params if params is not None else {}
        self.state = ChannelState.CLOSED
        self.join_ref: str | None = None
        self.join_response: Any = None  # the response of the latest successful join
        self.timeout_s = socket.timeout_s
        self._joined_once = False
        self._ever_joined = False
        self._left = False  # leave() or a close: never rejoin (unless revived)
        self._join_push: Push | None = None
        self._first_join: asyncio.Future[Any] | None = None
        self._buffer: deque[Push] = deque()  # pushes waiting for the join
        self._pending = PendingReplies()  # pushes on the wire waiting for their reply
        self._bindings: dict[str, list[tuple[int, Callable[[Any], Any]]]] = {}
        self._binding_ref = 0
        self._on_join: list[Callable[[Any], Any]] = []
        self._on_error: list[Callable[[Any], Any]] = []
        self._on_close: list[Callable[[Any], Any]] = []
        self._rejoin_timer = RetryTimer(self._rejoin_if_connected, socket.rejoin_backoff)

    def __repr__(self) -> str:
        return f"<Channel {self.topic!r} {self.state.value} join_ref={self.join_ref}>"

    # -- public API ----------------------------------------------------------------------------

    async def join(self, timeout: float | None = None) -> Any:
        """Join and return the service's response. Raises JoinError when the service refuses
        (the channel is then closed), PushTimeout when no answer came in time (the channel keeps
        trying, like phoenix.js; leave() to stop). Rejoins after that are automatic."""
        if self._joined_once:
            raise RuntimeError(f"join() called twice on the channel {self.topic!r}")
        self._joined_once = True
        if timeout is not None:
            self.timeout_s = timeout
        first = self._first_join = asyncio.get_running_loop().create_future()
        first.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._rejoin()
        try:
            return await asyncio.wait_for(asyncio.shield(first), self.timeout_s)
        except ChannelClosed:
            raise  # left before the answer: a TimeoutError too, but no timeout ran out
        except TimeoutError:
            raise PushTimeout(
                f"no answer to the join of {self.topic!r} in {self.timeout_s:g} s"
            ) from None

    def push(self, event: str, payload: Any = None, timeout: float | None = None) -> Push:
        """Send `event` and return the Push; `await` it for the Reply. A dict payload goes as
        JSON, bytes as a binary frame. While the socket is down or the channel is not joined the
        push waits in a buffer; its timeout runs from now either way."""
        if not self._joined_once:
            raise RuntimeError(f"push {event!r} to {self.topic!r} before join()")
        push = Push(event, {} if payload is None else payload, timeout or self.timeout_s)
        if self.state in (ChannelState.CLOSED, ChannelState.LEAVING):
            push.fail(ChannelClosed(f"the channel {self.topic!r} is {self.state.value}"))
            return push
        push.start_timeout(self._forget)
        if self.can_push:
            self._write(push)
        else:
            self._buffer.append(push)
        return push

    async def leave(self, timeout: float | None = None) -> None:
        """Leave the topic on the service (waiting for its ok, at most `timeout`) and close."""
        self._rejoin_timer.reset()
        if self._join_push is not None:
            self._join_push.cancel_timeout()
        if self.state in (ChannelState.CLOSED, ChannelState.LEAVING):
            return
        was_joined = self.can_push or self.state == ChannelState.JOINING
        self._left = True
        self.state = ChannelState.LEAVING
        if was_joined and self.socket.connected:
            leave = Push(PHX_LEAVE, {}, timeout or self.timeout_s)
            leave.start_timeout()
            self._write(leave)
            with contextlib.suppress(PushTimeout):
                await leave
        self._close("leave")

    def on(self, event: str, callback: Callable[[Any], Any]) -> int:
        """Call callback(payload) for every `event` pushed or broadcast on this topic; returns a
        ref for off(). A coroutine function is run as a task."""
        self._binding_ref += 1
        self._bindings.setdefault(event, []).append((self._binding_ref, callback))
        return self._binding_ref

    def off(self, event: str, ref: int | None = None) -> None:
        """Remove one callback (by the ref on() gave) or all callbacks of `event`."""
        kept = [b for b in self._bindings.get(event, []) if ref is not None and b[0] != ref]
        self._bindings[event] = kept

    def on_join(self, callback: Callable[[Any], Any]) -> None:
        """callback(response) after every successful join and rejoin."""
        self._on_join.append(callback)

    def on_error(self, callback: Callable[[Any], Any]) -> None:
        """callback(reason): the channel crashed on the service (phx_error) or the connection
        dropped ({"source": "transport", ...}); a rejoin follows."""
        self._on_error.append(callback)

    def on_close(self, callback: Callable[[Any], Any]) -> None:
        """callback(reason): the channel was left or closed by the service (phx_close)."""
        self._on_close.append(callback)

    @property
    def can_push(self) -> bool:
        return self.state == ChannelState.JOINED and self.socket.connected

    @property
    def buffered(self) -> int:
        """How many pushes wait for the (re)join."""
        return sum(1 for p in self._buffer if not p.done)

    # -- called by the Socket --------------------------------------------------------------------

    def _is_member(self, msg: Message) -> bool:
        if msg.join_ref is not None and msg.join_ref != self.join_ref:
            log.debug("dropped outdated %s on %s (join_ref %s)", msg.event, msg.topic, msg.join_ref)
            return False
        return True

    def _trigger(self, msg: Message) -> None:
        if msg.event == PHX_REPLY:
            self._handle_reply(msg.ref, reply_of(msg.payload))
            return
        if msg.event == PHX_ERROR:
            self._errored(msg.payload if msg.payload else {"source": "channel"})
        elif msg.event == PHX_CLOSE:
            if not self._left:  # not the answer to our own leave: maybe the service stopping
                self.socket._closed_by_service(self)
            self._close(msg.payload if msg.payload else "closed by the service")
        for _ref, callback in list(self._bindings.get(msg.event, ())):
            call_safely(callback, msg.payload)

    def _socket_opened(self) -> None:
        self._rejoin_timer.reset()
        if self.state in (ChannelState.ERRORED, ChannelState.JOINING):
            self._rejoin()

    def _socket_closed(self, reason: str) -> None:
        self._rejoin_timer.reset()
        if self.state not in (ChannelState.ERRORED, ChannelState.LEAVING, ChannelState.CLOSED):
            self._errored({"source": "transport", "reason": reason})

    # -- joining -------------------------------------------------------------------------------

    def _params_now(self) -> dict[str, Any]:
        return self._params() if callable(self._params) else self._params

    def _rejoin_if_connected(self) -> None:
        if self.socket.connected:
            self._rejoin()

    def _rejoin(self) -> None:
        if self._left:
            return
        self.socket._leave_duplicate(self)
        self.state = ChannelState.JOINING
        if not self.socket.connected:
            return  # the socket rejoins joining/errored channels when it opens
        self.join_ref = self.socket.make_ref()
        join = self._join_push = Push(PHX_JOIN, self._params_now(), self.timeout_s)
        join.ref = self.join_ref
        join.start_timeout(self._join_timed_out)
        self.socket._send(Message(self.join_ref, self.join_ref, self.topic, PHX_JOIN, join.payload))

    def _join_timed_out(self, join: Push) -> None:
        if join is not self._join_push or self.state != ChannelState.JOINING:
            return
        log.info("join of %s timed out after %g s; retrying", self.topic, join.timeout_s)
        self._join_push = None  # a late answer to it must not count as joined
        # tell the service to drop the join it may still be working on, as phoenix.js does
        self.socket._send(Message(self.join_ref, self.socket.make_ref(), self.topic, PHX_LEAVE, {}))
        self.state = ChannelState.ERRORED
        if self.socket.connected:
            self._rejoin_timer.schedule()

    def _handle_reply(self, ref: str | None, reply: Reply) -> None:
        join = self._join_push
        if join is not None and ref is not None and ref == join.ref:
            self._join_push = None
            join.resolve(reply)
            if reply.ok:
                self._joined(reply.response)
            else:
                self._join_refused(reply.response)
            return
        if self._pending.resolve(ref, reply) is None:
            log.debug("reply %s on %s matches no push (late or unknown)", ref, self.topic)

    def _joined(self, response: Any) -> None:
        self.state = ChannelState.JOINED
        self._ever_joined = True
        self.join_response = response
        self._rejoin_timer.reset()
        if self._first_join is not None and not self._first_join.done():
            self._first_join.set_result(response)
        # the buffered pushes go first, as phoenix.js flushes before the join's receive hooks
        while self._buffer and self.can_push:
            push = self._buffer.popleft()
            if not push.done:
                self._write(push)
        for callback in list(self._on_join):
            call_safely(callback, response)

    def _join_refused(self, response: Any) -> None:
        first = self._first_join
        if not self._ever_joined and first is not None and not first.done():
            # the first join was refused: hand it to join()'s caller, stop trying
            first.set_exception(JoinError(response))
            self._close({"reason": Reason.JOIN_REFUSED, "response": response})
            return
        log.info("rejoin of %s refused: %r; retrying", self.topic, response)
        self.state = ChannelState.ERRORED
        if self.socket.connected:
            self._rejoin_timer.schedule()

    def _errored(self, reason: Any) -> None:
        if self._join_push is not None:
            self._join_push.cancel_timeout()
            self._join_push = None
        if self.state in (ChannelState.LEAVING, ChannelState.CLOSED):
            return
        self.state = ChannelState.ERRORED
        for callback in list(self._on_error):
            call_safely(callback, reason)
        if self.socket.connected:
            self._rejoin_timer.schedule()

    def _close(self, reason: Any) -> None:
        if self._left and self.state == ChannelState.CLOSED:
            return  # closed already (a leave's reply and the service's phx_close both end it)
        self._rejoin_timer.reset()
        if self._join_push is not None:
            self._join_push.cancel_timeout()
            self._join_push = None
        self._left = True
        self.state = ChannelState.CLOSED
        self.socket._remove(self)
        closed = ChannelClosed(f"the channel {self.topic!r} closed: {reason!r}")
        while self._buffer:
            self._buffer.popleft().fail(closed)
        self._pending.fail_all(closed)
        if self._first_join is not None and not self._first_join.done():
            self._first_join.set_exception(closed)
        for callback in list(self._on_close):
            call_safely(callback, reason)

    def _revive(self) -> None:
        """Undo a phx_close that was the service shutting down: rejoin after the reconnect."""
        self._left = False
        self.state = ChannelState.ERRORED
        self.socket._add(self)

    # -- pushing -------------------------------------------------------------------------------

    def _write(self, push: Push) -> None:
        push.ref = self.socket.make_ref()
        self._pending.add(push)
        try:
            self.socket._send(
                Message(self.join_ref, push.ref, self.topic, push.event, push.payload)
            )
        except ValueError as exc:  # ProtocolError: a payload that cannot be encoded
            self._pending.discard(push)
            push.fail(exc)

    def _forget(self, push: Push) -> None:
        """A push timed out: it must not be sent later nor wait for a reply."""
        self._pending.discard(push)
        with contextlib.suppress(ValueError):
            self._buffer.remove(push)
