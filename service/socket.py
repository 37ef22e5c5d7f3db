"""One client connection: decode frames, enforce per-socket limits, and drive the socket's
channel rules (protocol/socket_server.py: heartbeat, joins, duplicate joins, unmatched topics).

Frames are written without awaiting (as websockets' broadcast does), so a broadcast never waits
for one slow client; instead a socket whose unsent bytes pass `send_buffer_bytes` is evicted.

A socket gets what it uses of the service as small values and interfaces (`SocketEnv`), not the
service itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from veraltheim.protocol import Message, ProtocolError, decode, encode
from veraltheim.protocol.constants import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SLOW_READER,
    STATUS_ERROR,
)
from veraltheim.protocol.effects import Send
from veraltheim.protocol.reasons import Reason
from veraltheim.protocol.socket_server import (
    ChannelLimit,
    Deliver,
    Join,
    Leave,
    ServerSocket,
    Stop,
)
from veraltheim.service import ws_fastpath
from veraltheim.service.channel import CLOSED, Channel
from veraltheim.service.context import ServiceContext
from veraltheim.service.limits import TokenBucket
from veraltheim.service.outbox import ConnectionWriter, Outbox
from veraltheim.service.wire import wire_frame
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from veraltheim.service.config import ServiceConfig
    from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

# A close reason must fit a control frame: 123 bytes of UTF-8.
MAX_CLOSE_REASON = 123
# Text frames longer than this are decoded on a worker thread, not on the event loop.
OFFLOAD_TEXT_CHARS = 64 * 1024
# An evicted client that never reads its close frame is cut off after this long.
EVICT_ABORT_S = 2.0

RATE_LIMITED = {"reason": Reason.RATE_LIMITED}


def _decode(frame: str | bytes) -> Message | ProtocolError:
    try:
        return decode(frame, sender="client")
    except ProtocolError as exc:
        return exc


def close_reason(text: str) -> str:
    raw = text.encode()
    if len(raw) <= MAX_CLOSE_REASON:
        return text
    return raw[: MAX_CLOSE_REASON - 3].decode("utf-8", "ignore") + "..."


# -- what a socket needs of the service ------------------------------------------------------


class Counter(Protocol):
    def inc(self, amount: float = 1.0, **labels: str) -> None: ...


class SocketStats(Protocol):
    """The link's counters a socket bumps."""

    frames_in: Counter
    malformed: Counter
    rate_limited: Counter
    channel_limit: Counter
    closed: Counter


class UserBucketPool(Protocol):
    """One rate-limit bucket per user, shared by their sockets."""

    def acquire(self, user: str, now: float) -> TokenBucket: ...

    def release(self, user: str) -> None: ...


class ChannelBook(Protocol):
    """Where sockets report their channels and hand over the tasks to cancel at the end."""

    @property
    def stopping(self) -> bool: ...

    def channel_started(self, channel: Channel) -> None: ...

    def channel_ended(self, channel: Channel, reason: str) -> None: ...

    def track_task(self, task: asyncio.Task[Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class SocketLimits:
    rate: float  # frames per second per socket (0: no limit)
    burst: float
    flood_close_after: int  # refused frames in a row before the socket is closed
    max_channels: int
    send_buffer_bytes: int  # unsent bytes past which the client counts as not reading
    bytes_per_s: float  # frame bytes per second per socket (0: no limit)
    max_text_frame_bytes: int  # JSON frames; bulk data goes binary

    @classmethod
    def from_config(cls, config: ServiceConfig) -> SocketLimits:
        return cls(
            config.socket_rate,
            config.socket_burst,
            config.flood_close_after,
            config.max_channels_per_socket,
            config.send_buffer_bytes,
            config.socket_bytes_per_s,
            config.max_text_frame_bytes,
        )


@dataclass(frozen=True, slots=True)
class SocketEnv:
    """Everything a socket uses of the running service; one shared by all its sockets."""

    limits: SocketLimits
    stats: SocketStats
    buckets: UserBucketPool
    byte_buckets: UserBucketPool  # the same per user, counting frame bytes
    route: Callable[[str], type[Channel] | None]  # the channel class serving a topic
    book: ChannelBook
    ctx: ServiceContext  # what the channels see
    outbox: Outbox  # every frame waits there for its socket's next write


class Socket:
    __slots__ = (
        "__weakref__",
        "bucket",
        "byte_bucket",
        "claims",
        "closing",
        "conn",
        "env",
        "id",
        "last_seen",
        "params",
        "sink",
        "strikes",
        "table",
        "user_bucket",
        "user_byte_bucket",
        "user_id",
    )

    def __init__(
        self,
        env: SocketEnv,
        conn: ServerConnection,
        socket_id: int,
        user_id: str,
        claims: dict[str, Any],
        params: dict[str, str],
    ) -> None:
        now = asyncio.get_running_loop().time()
        limits = env.limits
        self.env = env
        self.conn = conn
        self.sink = ConnectionWriter(conn, limits.send_buffer_bytes, self.evict)
        self.id = socket_id
        self.user_id = user_id
        self.claims = claims
        self.params = params
        self.table: ServerSocket[Channel] = ServerSocket(env.route, limits.max_channels)
        self.last_seen = now
        self.bucket = TokenBucket(limits.rate, limits.burst, now)
        self.user_bucket = env.buckets.acquire(user_id, now)
        # bytes too, not only frames: one 16 MiB frame costs what thousands of small ones do
        self.byte_bucket = TokenBucket(limits.bytes_per_s, limits.bytes_per_s, now)
        self.user_byte_bucket = env.byte_buckets.acquire(user_id, now)
        self.strikes = 0
        self.closing = False

    @property
    def ctx(self) -> ServiceContext:
        return self.env.ctx

    @property
    def channels(self) -> dict[str, Channel]:
        """The joined channels by topic."""
        return self.table.channels

    # -- receiving ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async for frame in self.conn:
                if isinstance(frame, str) and len(frame) > OFFLOAD_TEXT_CHARS:
                    await self._on_large_text(frame)
                else:
                    self.on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            self.sink.close()
            if ws_fastpath.close_sent_code(self.conn) == CLOSE_MESSAGE_TOO_BIG:
                self.env.stats.closed.inc(reason="frame_too_big")
            for channel in list(self.channels.values()):
                channel.stop(CLOSED)
            self.env.outbox.discard(self.sink)  # nothing more goes out; let go of it now
            self.env.buckets.release(self.user_id)
            self.env.byte_buckets.release(self.user_id)

    async def _on_large_text(self, frame: str) -> None:
        """Decode a big JSON frame on a worker thread, so the loop serves every other socket
        meanwhile; the frames after it wait in websockets' bounded queue (order is kept)."""
        now = asyncio.get_running_loop().time()
        if (
            self.closing
            or len(frame) > self.env.limits.max_text_frame_bytes
            or not self._bytes_affordable(now)
        ):
            self.on_frame(frame)  # refused there, without decoding
            return
        self.on_frame(frame, await asyncio.to_thread(_decode, frame))

    def _bytes_affordable(self, now: float) -> bool:
        return self.byte_bucket.affordable(now) and self.user_byte_bucket.affordable(now)

    def on_frame(self, frame: str | bytes, decoded: Message | ProtocolError | None = None) -> None:
        now = asyncio.get_running_loop().time()
        self.last_seen = now
        stats = self.env.stats
        stats.frames_in.inc()
        if self.closing:
            return
        size, limit = len(frame), self.env.limits.max_text_frame_bytes
        text = isinstance(frame, str)
        if text and size > limit:
            stats.closed.inc(reason="frame_too_big")
            self.close(
                CLOSE_MESSAGE_TOO_BIG,
                f"text frame over {limit} (max_text_frame_bytes): send bulk data as binary",
            )
            return
        if text and size > OFFLOAD_TEXT_CHARS and not self._bytes_affordable(now):
            self._over_limit(None)  # a big JSON frame is not even decoded: no ref to answer
            return
        msg = _decode(frame) if decoded is None else decoded
        if isinstance(msg, ProtocolError):
            stats.malformed.inc()
            stats.closed.inc(reason="malformed")
            log.info("socket %s (user %s): malformed frame: %s", self.id, self.user_id, msg)
            self.close(CLOSE_PROTOCOL_ERROR, f"malformed frame: {msg}")
            return
        if not (
            self.bucket.take(now) and self.user_bucket.take(now) and self._bytes_affordable(now)
        ):
            self._over_limit(msg)
            return
        self.byte_bucket.spend(now, size)
        self.user_byte_bucket.spend(now, size)
        self.strikes = 0
        try:
            self.dispatch(msg)
        except Exception:
            # A bug of ours, not the client's: say so with 1011 rather than drop the socket.
            log.exception(
                "socket %s (user %s): failed on %s %s", self.id, self.user_id, msg.topic, msg.event
            )
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def _over_limit(self, msg: Message | None) -> None:
        stats = self.env.stats
        stats.rate_limited.inc()
        self.strikes += 1
        if self.strikes >= self.env.limits.flood_close_after:
            stats.closed.inc(reason="flood")
            log.warning("socket %s (user %s) closed: kept flooding", self.id, self.user_id)
            self.close(CLOSE_POLICY_VIOLATION, "rate limit exceeded: too many messages")
        elif msg is not None and msg.ref is not None:
            self.reply(msg, STATUS_ERROR, RATE_LIMITED)

    def dispatch(self, msg: Message) -> None:
        """Run what the socket's rules say for one message from the client."""
        for out in self.table.receive(msg, accepting_joins=not self.env.book.stopping):
            kind = type(out)
            if kind is Deliver:
                out.channel.handle_message(out.msg)
            elif kind is Send:
                self.send_message(out.message)
            elif kind is Join:
                self._start(out)
            elif kind is Leave:
                out.channel.leave(out.ref)
            elif kind is Stop:
                out.channel.stop(out.reason)
            elif kind is ChannelLimit:
                self.env.stats.channel_limit.inc()

    def _start(self, join: Join) -> None:
        msg = join.msg
        channel = join.route(self, msg.topic, join.join_ref, msg.payload)
        self.table.add(channel)
        self.env.book.channel_started(channel)
        channel.start(msg.ref, msg.payload)

    def channel_ended(self, channel: Channel, reason: str) -> None:
        self.env.book.channel_ended(channel, reason)
        for out in self.table.ended(channel, reason, closing=self.closing):
            self.send_message(out.message)

    # -- sending -----------------------------------------------------------------------------

    def reply(self, msg: Message, status: str, response: Any) -> None:
        self.send_message(Message.reply(msg.join_ref, msg.ref, msg.topic, status, response))

    def send_message(self, msg: Message) -> None:
        self.write_wire(wire_frame(encode(msg, sender="server")))

    def write_wire(self, wire: bytes) -> None:
        """Queue one complete frame for the socket's next write (service/outbox.py). Whole
        frames, written synchronously, cannot interleave with the frames websockets itself
        writes (pong, close)."""
        if not self.closing and self.sink.admit(len(wire)):
            self.env.outbox.send(self.sink, wire)

    def evict(self) -> None:
        """Close a socket whose client does not read (its sink found too much unsent): the close
        frame queues behind the data, and the TCP connection is cut if the client has not
        answered it soon after."""
        if self.closing:  # being closed already, with a reason of its own
            return
        self.closing = True
        self.env.stats.closed.inc(reason="slow_reader")
        log.warning("socket %s (user %s) evicted: too slow to read", self.id, self.user_id)
        why = "send buffer full: client too slow to read"
        task = ws_fastpath.evict(self.conn, CLOSE_SLOW_READER, why, EVICT_ABORT_S)
        if task is not None:
            self.env.book.track_task(task)

    def close(self, code: int, reason: str) -> None:
        """Close with a code and a reason the client can read (the handshake runs in a task)."""
        if self.closing:
            return
        self.closing = True
        self.env.outbox.write_now(self.sink)  # the close frame goes behind the data
        self.sink.close()
        task = asyncio.get_running_loop().create_task(self.conn.close(code, close_reason(reason)))
        self.env.book.track_task(task)

    @property
    def open(self) -> bool:
        return not self.closing
