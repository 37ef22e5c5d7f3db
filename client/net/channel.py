"""A joined topic on a Socket: the asyncio driver of protocol/channel_client.py, which holds
phoenix.js's rules (one join per Channel object, rejoin with backoff after an error or a
reconnect, each with a new join_ref; pushes buffered until joined; replies matched by ref;
messages for an outdated join_ref dropped). This file runs the machine's timers, keeps the
futures the app awaits and calls the app's callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from veraltheim.client.net.callbacks import call_safely
from veraltheim.client.net.push import JoinError, Push, PushTimeout
from veraltheim.protocol import Message
from veraltheim.protocol.backoff import Backoff
from veraltheim.protocol.channel_client import (
    ChannelState,
    ClientChannel,
    Closed,
    Deliver,
    Errored,
    Fail,
    Joined,
    JoinRefused,
    LeaveOpenTopic,
    Params,
    Resolve,
    Revived,
)
from veraltheim.protocol.effects import CancelTimer, Send, SetTimer

__all__ = ["Channel", "ChannelClosed", "ChannelSocket", "Params"]

log = logging.getLogger(__name__)


class ChannelClosed(PushTimeout):
    """The channel was left or closed, so the push will never get a reply."""


class ChannelSocket(Protocol):
    """What a Channel uses of its socket: its public surface, as phoenix.js's channel uses
    socket.push / makeRef / remove / leaveOpenTopic / onOpen / onClose."""

    timeout_s: float
    rejoin_backoff: Backoff

    @property
    def connected(self) -> bool: ...

    @property
    def channels(self) -> list[Any]: ...

    def make_ref(self) -> str: ...

    def push(self, msg: Message) -> bool: ...

    def add(self, channel: Any) -> None: ...

    def remove(self, channel: Any) -> None: ...

    def leave_open_topic(self, channel: Any) -> None: ...

    def on_open(self, callback: Callable[[], Any]) -> int: ...

    def on_close(self, callback: Callable[[int | None, str], Any]) -> int: ...

    def off(self, ref: int) -> None: ...


class Channel:
    """Made by `Socket.channel(topic, params)`; `params` (a dict, or a callable asked on every
    join) is the join payload."""

    def __init__(self, socket: ChannelSocket, topic: str, params: Params | None = None) -> None:
        self.socket = socket
        self.topic = topic
        self._machine = ClientChannel(
            topic,
            socket,
            params=params,
            timeout_s=socket.timeout_s,
            rejoin_backoff=socket.rejoin_backoff,
            connected=socket.connected,
        )
        self._pushes: dict[int, Push] = {}  # by the machine's push id
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._first_join: asyncio.Future[Any] | None = None
        self._bindings: dict[str, list[tuple[int, Callable[[Any], Any]]]] = {}
        self._binding_ref = 0
        self._on_join: list[Callable[[Any], Any]] = []
        self._on_error: list[Callable[[Any], Any]] = []
        self._on_close: list[Callable[[Any], Any]] = []
        self._hooks: list[int] = []
        self._hook_socket()

    def __repr__(self) -> str:
        return f"<Channel {self.topic!r} {self.state.value} join_ref={self.join_ref}>"

    # -- public API ----------------------------------------------------------------------------

    @property
    def state(self) -> ChannelState:
        return self._machine.state

    @property
    def join_ref(self) -> str | None:
        return self._machine.join_ref

    @property
    def join_response(self) -> Any:
        """The response of the latest successful join."""
        return self._machine.join_response

    @property
    def timeout_s(self) -> float:
        return self._machine.timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._machine.timeout_s = value

    async def join(self, timeout: float | None = None) -> Any:
        """Join and return the service's response. Raises JoinError when the service refuses
        (the channel is then closed), PushTimeout when no answer came in time (the channel keeps
        trying, like phoenix.js; leave() to stop). Rejoins after that are automatic."""
        first = asyncio.get_running_loop().create_future()
        first.add_done_callback(lambda f: f.cancelled() or f.exception())
        out = self._machine.join(timeout)  # raises if called twice
        self._first_join = first
        self._run(out)
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
        payload = {} if payload is None else payload
        push_id, out = self._machine.push(event, payload, timeout)
        self._pushes[push_id] = Push(event, payload, timeout or self.timeout_s)
        push = self._pushes[push_id]
        self._run(out)
        return push

    async def leave(self, timeout: float | None = None) -> None:
        """Leave the topic on the service (waiting for its ok, at most `timeout`) and close."""
        done_already = self.state in (ChannelState.CLOSED, ChannelState.LEAVING)
        push_id, out = self._machine.leave(timeout)
        if push_id is not None:
            self._pushes[push_id] = Push("phx_leave", {}, timeout or self.timeout_s)
            leave = self._pushes[push_id]
        self._run(out)
        if done_already:
            return
        if push_id is not None:
            with contextlib.suppress(PushTimeout):
                await leave
        self._run(self._machine.close("leave"))

    def leave_now(self) -> None:
        """Leave without waiting for the service's answer (another channel object joins this
        topic: the socket's `leave_open_topic`)."""
        log.info("leaving duplicate channel %s", self.topic)
        self._run(self._machine.abandon())

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
        return self._machine.can_push

    @property
    def buffered(self) -> int:
        """How many pushes wait for the (re)join."""
        return self._machine.buffered

    def receive(self, msg: Message) -> None:
        """A message for this topic from the socket (one for an outdated join_ref is dropped)."""
        self._run(self._machine.receive(msg, time.monotonic()))

    # -- the socket's open/close hooks ---------------------------------------------------------

    def _hook_socket(self) -> None:
        if not self._hooks:
            self._hooks = [
                self.socket.on_open(self._socket_opened),
                self.socket.on_close(self._socket_closed),
            ]

    def _unhook_socket(self) -> None:
        for ref in self._hooks:
            self.socket.off(ref)
        self._hooks = []

    def _socket_opened(self) -> None:
        self._run(self._machine.socket_opened())

    def _socket_closed(self, code: int | None, reason: str) -> None:
        taken = any(c.topic == self.topic and c is not self for c in self.socket.channels)
        now = time.monotonic()
        self._run(self._machine.socket_closed("connection_closed", now, code, taken))
        if self._machine.finished:
            self._unhook_socket()  # closed for good: a closed channel is not kept alive

    # -- running the machine's outputs ---------------------------------------------------------

    def _run(self, outputs: list[Any]) -> None:
        for out in outputs:
            kind = type(out)
            if kind is Send:
                self._send(out)
            elif kind is SetTimer:
                self._cancel_timer(out.key)
                loop = asyncio.get_running_loop()
                self._timers[out.key] = loop.call_later(out.delay_s, self._timeout, out.key)
            elif kind is CancelTimer:
                self._cancel_timer(out.key)
            elif kind is Resolve:
                self._pushes.pop(out.push).resolve(out.reply)
            elif kind is Fail:
                exc = PushTimeout(out.why) if out.timed_out else ChannelClosed(out.why)
                self._pushes.pop(out.push).fail(exc)
            elif kind is Deliver:
                for _ref, callback in list(self._bindings.get(out.event, ())):
                    call_safely(callback, out.payload)
            else:
                self._lifecycle(out)

    def _lifecycle(self, out: Any) -> None:
        first = self._first_join
        if isinstance(out, LeaveOpenTopic):
            self.socket.leave_open_topic(self)
        elif isinstance(out, Joined):
            if first is not None and not first.done():
                first.set_result(out.response)
            for callback in list(self._on_join):
                call_safely(callback, out.response)
        elif isinstance(out, JoinRefused):
            if first is not None and not first.done():
                first.set_exception(JoinError(out.response))
        elif isinstance(out, Errored):
            log.info("channel %s errored: %r", self.topic, out.reason)
            for callback in list(self._on_error):
                call_safely(callback, out.reason)
        elif isinstance(out, Closed):
            self.socket.remove(self)
            if not self._machine.may_revive:
                self._unhook_socket()
            if first is not None and not first.done():
                first.set_exception(
                    ChannelClosed(f"the channel {self.topic!r} closed: {out.reason!r}")
                )
            for callback in list(self._on_close):
                call_safely(callback, out.reason)
        elif isinstance(out, Revived):
            self.socket.add(self)
            self._hook_socket()
        else:
            raise TypeError(f"unknown channel output {out!r}")

    def _send(self, out: Send) -> None:
        push = self._pushes.get(out.push) if out.push is not None else None
        if push is None:
            self.socket.push(out.message)
            return
        push.ref = out.message.ref
        try:
            self.socket.push(out.message)
        except ValueError as exc:  # ProtocolError: a payload that cannot be encoded
            self._run(self._machine.discard(out.push))  # type: ignore[arg-type]
            self._pushes.pop(out.push, None)  # type: ignore[arg-type]
            push.fail(exc)

    def _timeout(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._run(self._machine.timeout(key))

    def _cancel_timer(self, key: Hashable) -> None:
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()
