"""The client end of one channel, sans-I/O: phoenix.js 1.8's rules as a state machine.

Rules: one join per channel; a rejoin (new join_ref) when the socket reopens, and after a
`phx_error`, a refused rejoin or a join timeout with backoff; pushes buffered until joined,
then sent in order; replies matched by ref; each push times out on its own clock (a buffered
push that timed out is never sent); messages for an outdated join_ref dropped; a `phx_close`
shortly before the socket closes with 1001/1012 (the service stopping) is not final.

`ClientChannel` is fed what happens (the app's join/push/leave, a message for its topic, the
socket opening or closing, a timer expiring) and returns outputs, in the order to run them:
`Send`, `SetTimer`, `CancelTimer` (protocol/effects.py) and the ones below. Pushes are named by
an int id the machine hands out; the driver keeps whatever waits for them (futures).
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from veraltheim.protocol.backoff import Backoff
from veraltheim.protocol.constants import (
    CLOSE_GOING_AWAY,
    CLOSE_SERVICE_RESTART,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
)
from veraltheim.protocol.effects import CancelTimer, RefSource, Send, SetTimer
from veraltheim.protocol.message import Message
from veraltheim.protocol.reasons import Reason

# A phx_close this shortly before the socket closes with 1001/1012 was the service stopping (it
# closes channels, waits for in-flight work up to its grace period, then the sockets).
SHUTDOWN_WINDOW_S = 15.0
RESTART_CLOSE_CODES = frozenset({CLOSE_GOING_AWAY, CLOSE_SERVICE_RESTART})

Params = dict[str, Any] | Callable[[], dict[str, Any]]


class ChannelState(StrEnum):
    """A channel's life, as phoenix.js names it."""

    CLOSED = "closed"
    ERRORED = "errored"
    JOINED = "joined"
    JOINING = "joining"
    LEAVING = "leaving"


@dataclass(frozen=True, slots=True)
class Reply:
    """A `phx_reply`: status "ok" or "error" (or whatever the channel said); response is a dict,
    or bytes for a binary reply."""

    status: str
    response: Any

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def reply_of(payload: Any) -> Reply:
    """A Reply from a phx_reply payload, tolerating a malformed one (status "error")."""
    if isinstance(payload, dict) and isinstance(payload.get("status"), str):
        return Reply(payload["status"], payload.get("response"))
    return Reply("error", {"reason": Reason.MALFORMED_REPLY, "payload": payload})


# -- outputs of its own -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolve:
    """The push `push` got its reply."""

    push: int
    reply: Reply


@dataclass(frozen=True, slots=True)
class Fail:
    """The push `push` will get no reply: it timed out (`timed_out`), or the channel closed."""

    push: int
    why: str
    timed_out: bool


@dataclass(frozen=True, slots=True)
class Joined:
    """A join or rejoin succeeded (after the buffered pushes went out)."""

    response: Any


@dataclass(frozen=True, slots=True)
class JoinRefused:
    """The first join was refused: final (phoenix.js would retry); `Closed` follows."""

    response: Any


@dataclass(frozen=True, slots=True)
class Errored:
    """The channel crashed on the service or the connection dropped; a rejoin follows."""

    reason: Any


@dataclass(frozen=True, slots=True)
class Closed:
    """Left, or closed by the service; the channel is off the socket."""

    reason: Any


@dataclass(frozen=True, slots=True)
class Revived:
    """A close that was the service stopping was undone: put the channel back on the socket."""


@dataclass(frozen=True, slots=True)
class LeaveOpenTopic:
    """Before each (re)join: leave any other channel joined or joining this topic on the socket
    (phoenix.js's `socket.leaveOpenTopic`)."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """An event pushed or broadcast on the topic, for the app's bindings."""

    event: str
    payload: Any


# Timer keys: ("push", id) and ("join", id) per push, REJOIN for the rejoin backoff.
REJOIN = "rejoin"


class _Push:
    __slots__ = ("event", "id", "payload", "ref", "timeout_s")

    def __init__(self, id: int, event: str, payload: Any, timeout_s: float) -> None:
        self.id = id
        self.event = event
        self.payload = payload
        self.timeout_s = timeout_s
        self.ref: str | None = None


class ClientChannel:
    """One topic on one client socket. `connected` says whether the socket is open now; the
    driver reports changes with `socket_opened()` / `socket_closed()`."""

    def __init__(
        self,
        topic: str,
        refs: RefSource,
        *,
        params: Params | None = None,
        timeout_s: float,
        rejoin_backoff: Backoff,
        connected: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.topic = topic
        self.state = ChannelState.CLOSED
        self.join_ref: str | None = None
        self.join_response: Any = None  # the response of the latest successful join
        self.timeout_s = timeout_s
        self.connected = connected
        self._refs = refs
        self._params = params if params is not None else {}
        self._backoff = rejoin_backoff
        self._rng = rng
        self._rejoin_tries = 0
        self._rejoin_pending = False
        self._joined_once = False
        self._ever_joined = False
        self._left = False  # leave() or a close: never rejoin (unless revived)
        self._closed_by_service_at: float | None = None
        self._join_push: _Push | None = None
        self._ids = itertools.count(1)
        self._pushes: dict[int, _Push] = {}  # every push still waiting (buffered or on the wire)
        self._buffer: deque[_Push] = deque()  # pushes waiting for the join
        self._pending: dict[str, _Push] = {}  # pushes on the wire waiting for a reply, by ref
        self._out: list[Any] = []

    def __repr__(self) -> str:
        return f"<ClientChannel {self.topic!r} {self.state.value} join_ref={self.join_ref}>"

    @property
    def can_push(self) -> bool:
        return self.state == ChannelState.JOINED and self.connected

    @property
    def buffered(self) -> int:
        """How many pushes wait for the (re)join."""
        return len(self._buffer)

    @property
    def finished(self) -> bool:
        """Left or closed: it never rejoins (unless revived)."""
        return self._left and self.state == ChannelState.CLOSED

    @property
    def may_revive(self) -> bool:
        """Closed by the service: the socket closing with 1001/1012 soon would undo it."""
        return self._closed_by_service_at is not None

    @property
    def in_flight(self) -> int:
        """How many pushes on the wire wait for their reply."""
        return len(self._pending)

    # -- fed by the app ---------------------------------------------------------------------------

    def join(self, timeout_s: float | None = None) -> list[Any]:
        """The first join (`timeout_s`: the channel's timeout from now on); rejoins after it are
        automatic."""
        if self._joined_once:
            raise RuntimeError(f"join() called twice on the channel {self.topic!r}")
        self._joined_once = True
        if timeout_s is not None:
            self.timeout_s = timeout_s
        self._rejoin()
        return self._take()

    def push(self, event: str, payload: Any, timeout_s: float | None = None) -> tuple[int, list]:
        """A new push: its id, and the outputs (sent now if joined, else buffered; its timeout
        runs from now either way; on a closed or leaving channel it fails at once)."""
        if not self._joined_once:
            raise RuntimeError(f"push {event!r} to {self.topic!r} before join()")
        push = self._new_push(event, payload, timeout_s or self.timeout_s)
        if self.state in (ChannelState.CLOSED, ChannelState.LEAVING):
            del self._pushes[push.id]
            why = f"the channel {self.topic!r} is {self.state.value}"
            self._out.append(Fail(push.id, why, timed_out=False))
            return push.id, self._take()
        self._out.append(SetTimer(("push", push.id), push.timeout_s))
        if self.can_push:
            self._write(push)
        else:
            self._buffer.append(push)
        return push.id, self._take()

    def leave(self, timeout_s: float | None = None) -> tuple[int | None, list]:
        """Start leaving: the id of the phx_leave push to wait for (None: nothing to wait for);
        call `close("leave")` once it is answered or failed."""
        self._reset_rejoin()
        if self._join_push is not None:
            self._out.append(CancelTimer(("join", self._join_push.id)))
        if self.state in (ChannelState.CLOSED, ChannelState.LEAVING):
            return None, self._take()
        was_joined = self.can_push or self.state == ChannelState.JOINING
        self._left = True
        self.state = ChannelState.LEAVING
        if not (was_joined and self.connected):
            return None, self._take()
        leave = self._new_push(PHX_LEAVE, {}, timeout_s or self.timeout_s)
        self._out.append(SetTimer(("push", leave.id), leave.timeout_s))
        self._write(leave)
        return leave.id, self._take()

    def close(self, reason: Any) -> list[Any]:
        """End the channel for good: fail what still waits, stop rejoining."""
        self._close(reason)
        return self._take()

    def abandon(self) -> list[Any]:
        """Another channel object joins this topic: send phx_leave without waiting and close."""
        if self.join_ref is not None:
            self._send(Message(self.join_ref, self._refs.make_ref(), self.topic, PHX_LEAVE, {}))
        self._left = True
        self._close("leave")
        return self._take()

    def discard(self, push_id: int) -> list[Any]:
        """The push could not be sent (its payload does not encode): forget it, no reply."""
        push = self._pushes.pop(push_id, None)
        if push is not None:
            self._forget(push)
            self._out.append(CancelTimer(("push", push_id)))
        return self._take()

    # -- fed by the socket ------------------------------------------------------------------------

    def receive(self, msg: Message, now: float) -> list[Any]:
        """A message for this topic. One for another join_ref than ours is outdated: dropped."""
        if msg.join_ref is not None and msg.join_ref != self.join_ref:
            return []
        if msg.event == PHX_REPLY:
            self._reply(msg.ref, reply_of(msg.payload))
            return self._take()
        if msg.event == PHX_ERROR:
            self._errored(msg.payload if msg.payload else {"source": "channel"})
        elif msg.event == PHX_CLOSE:
            if not self._left:  # not the answer to our own leave: maybe the service stopping
                self._closed_by_service_at = now
            self._close(msg.payload if msg.payload else "closed by the service")
        self._out.append(Deliver(msg.event, msg.payload))
        return self._take()

    def socket_opened(self) -> list[Any]:
        self.connected = True
        self._reset_rejoin()
        if self.state in (ChannelState.ERRORED, ChannelState.JOINING):
            self._rejoin()
        return self._take()

    def socket_closed(
        self, reason: str, now: float, code: int | None = None, topic_taken: bool = False
    ) -> list[Any]:
        """The connection dropped with close `code`; `topic_taken`: another channel object
        holds this topic on the socket now (then a closed channel stays closed)."""
        self.connected = False
        closed_at, self._closed_by_service_at = self._closed_by_service_at, None
        if (
            closed_at is not None
            and now - closed_at <= SHUTDOWN_WINDOW_S
            and code in RESTART_CLOSE_CODES
            and self.state == ChannelState.CLOSED
            and not topic_taken
        ):
            self._left = False
            self.state = ChannelState.ERRORED
            self._out.append(Revived())
        self._reset_rejoin()
        if self.state not in (ChannelState.ERRORED, ChannelState.LEAVING, ChannelState.CLOSED):
            self._errored({"source": "transport", "reason": reason})
        return self._take()

    def timeout(self, key: Any) -> list[Any]:
        """The timer `key` (from a SetTimer) expired."""
        if key == REJOIN:
            self._rejoin_pending = False
            self._rejoin_tries += 1
            if self.connected:
                self._rejoin()
        elif key[0] == "join":
            self._join_timed_out(key[1])
        else:
            push = self._pushes.pop(key[1], None)
            if push is not None:
                self._forget(push)
                why = f"no reply to {push.event!r} within {push.timeout_s:g} s"
                self._out.append(Fail(push.id, why, timed_out=True))
        return self._take()

    # -- joining ----------------------------------------------------------------------------------

    def _rejoin(self) -> None:
        if self._left:
            return
        self._out.append(LeaveOpenTopic())
        self.state = ChannelState.JOINING
        if not self.connected:
            return  # the socket opening rejoins joining/errored channels
        self.join_ref = self._refs.make_ref()
        params = self._params() if callable(self._params) else self._params
        join = self._join_push = _Push(next(self._ids), PHX_JOIN, params, self.timeout_s)
        join.ref = self.join_ref
        self._out.append(SetTimer(("join", join.id), join.timeout_s))
        self._send(Message(self.join_ref, self.join_ref, self.topic, PHX_JOIN, params))

    def _join_timed_out(self, join_id: int) -> None:
        join = self._join_push
        if join is None or join.id != join_id or self.state != ChannelState.JOINING:
            return
        self._join_push = None  # a late answer to it must not count as joined
        # tell the service to drop the join it may still be working on, as phoenix.js does
        self._send(Message(self.join_ref, self._refs.make_ref(), self.topic, PHX_LEAVE, {}))
        self.state = ChannelState.ERRORED
        if self.connected:
            self._schedule_rejoin()

    def _reply(self, ref: str | None, reply: Reply) -> None:
        join = self._join_push
        if join is not None and ref is not None and ref == join.ref:
            self._join_push = None
            self._out.append(CancelTimer(("join", join.id)))
            if reply.ok:
                self._joined(reply.response)
            else:
                self._join_refused(reply.response)
            return
        push = self._pending.pop(ref, None) if ref is not None else None
        if push is not None:  # else late or unknown: nobody waits for it
            del self._pushes[push.id]
            self._out.append(CancelTimer(("push", push.id)))
            self._out.append(Resolve(push.id, reply))

    def _joined(self, response: Any) -> None:
        self.state = ChannelState.JOINED
        self._ever_joined = True
        self.join_response = response
        self._reset_rejoin()
        # the buffered pushes go first, as phoenix.js flushes before the join's receive hooks
        while self._buffer and self.can_push:
            self._write(self._buffer.popleft())
        self._out.append(Joined(response))

    def _join_refused(self, response: Any) -> None:
        if not self._ever_joined:
            # the first join was refused: hand it to join()'s caller, stop trying
            self._out.append(JoinRefused(response))
            self._close({"reason": Reason.JOIN_REFUSED, "response": response})
            return
        self.state = ChannelState.ERRORED
        if self.connected:
            self._schedule_rejoin()

    def _errored(self, reason: Any) -> None:
        self._cancel_join()
        if self.state in (ChannelState.LEAVING, ChannelState.CLOSED):
            return
        self.state = ChannelState.ERRORED
        self._out.append(Errored(reason))
        if self.connected:
            self._schedule_rejoin()

    def _close(self, reason: Any) -> None:
        if self._left and self.state == ChannelState.CLOSED:
            return  # closed already (a leave's reply and the service's phx_close both end it)
        self._reset_rejoin()
        self._cancel_join()
        self._left = True
        self.state = ChannelState.CLOSED
        why = f"the channel {self.topic!r} closed: {reason!r}"
        waiting = [*self._buffer, *self._pending.values()]
        self._buffer.clear()
        self._pending.clear()
        for push in waiting:
            del self._pushes[push.id]
            self._out.append(CancelTimer(("push", push.id)))
            self._out.append(Fail(push.id, why, timed_out=False))
        self._out.append(Closed(reason))

    # -- timers and pushes ------------------------------------------------------------------------

    def _schedule_rejoin(self) -> None:
        self._rejoin_pending = True
        delay = self._backoff.delay(self._rejoin_tries + 1, self._rng)
        self._out.append(SetTimer(REJOIN, delay))

    def _reset_rejoin(self) -> None:
        self._rejoin_tries = 0
        if self._rejoin_pending:
            self._rejoin_pending = False
            self._out.append(CancelTimer(REJOIN))

    def _cancel_join(self) -> None:
        if self._join_push is not None:
            self._out.append(CancelTimer(("join", self._join_push.id)))
            self._join_push = None

    def _new_push(self, event: str, payload: Any, timeout_s: float) -> _Push:
        push = _Push(next(self._ids), event, payload, timeout_s)
        self._pushes[push.id] = push
        return push

    def _write(self, push: _Push) -> None:
        push.ref = self._refs.make_ref()  # each write gets a new ref, as in phoenix.js
        self._pending[push.ref] = push
        msg = Message(self.join_ref, push.ref, self.topic, push.event, push.payload)
        self._out.append(Send(msg, push.id))

    def _forget(self, push: _Push) -> None:
        """A push that timed out or was discarded must not be sent later nor get a reply."""
        if push.ref is not None and self._pending.get(push.ref) is push:
            del self._pending[push.ref]
        if push in self._buffer:
            self._buffer.remove(push)

    def _send(self, msg: Message) -> None:
        self._out.append(Send(msg))

    def _take(self) -> list[Any]:
        out, self._out = self._out, []
        return out
