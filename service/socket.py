"""One client connection: decode frames, route them to channels, enforce per-socket limits.

Frames are written without awaiting (as websockets' broadcast does), so a broadcast never waits
for one slow client; instead a socket whose unsent bytes pass `send_buffer_bytes` is evicted.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from veraltheim.protocol import Message, ProtocolError, decode, encode
from veraltheim.protocol.constants import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_SLOW_READER,
    HEARTBEAT,
    MAX_BINARY_FIELD_BYTES,
    PHOENIX_TOPIC,
    PHX_CLOSE,
    PHX_ERROR,
    PHX_JOIN,
    PHX_LEAVE,
    PHX_REPLY,
    STATUS_ERROR,
    STATUS_OK,
)
from veraltheim.protocol.reasons import Reason
from veraltheim.service.channel import CLOSED, CRASHED, DUPLICATE, LEFT, SHUTDOWN, Channel
from veraltheim.service.limits import TokenBucket
from veraltheim.service.wire import wire_frame
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

if TYPE_CHECKING:
    from veraltheim.service.app import Service
    from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

# A close reason must fit a control frame: 123 bytes of UTF-8.
MAX_CLOSE_REASON = 123
# An evicted client that never reads its close frame is cut off after this long.
EVICT_ABORT_S = 2.0

RATE_LIMITED = {"reason": Reason.RATE_LIMITED}
SERVER_EVENTS = frozenset({PHX_REPLY, PHX_ERROR, PHX_CLOSE})
UNMATCHED_TOPIC = {"reason": Reason.UNMATCHED_TOPIC}
SHUTTING_DOWN = {"reason": Reason.SERVICE_SHUTTING_DOWN}


def close_reason(text: str) -> str:
    raw = text.encode()
    if len(raw) <= MAX_CLOSE_REASON:
        return text
    return raw[: MAX_CLOSE_REASON - 3].decode("utf-8", "ignore") + "..."


class Socket:
    __slots__ = (
        "__weakref__",
        "bucket",
        "channels",
        "claims",
        "closing",
        "conn",
        "id",
        "last_seen",
        "params",
        "service",
        "strikes",
        "user_bucket",
        "user_id",
    )

    def __init__(
        self,
        service: Service,
        conn: ServerConnection,
        socket_id: int,
        user_id: str,
        claims: dict[str, Any],
        params: dict[str, str],
    ) -> None:
        now = asyncio.get_running_loop().time()
        config = service.config
        self.service = service
        self.conn = conn
        self.id = socket_id
        self.user_id = user_id
        self.claims = claims
        self.params = params
        self.channels: dict[str, Channel] = {}
        self.last_seen = now
        self.bucket = TokenBucket(config.socket_rate, config.socket_burst, now)
        self.user_bucket = service.user_buckets.acquire(user_id, now)
        self.strikes = 0
        self.closing = False

    # -- receiving ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async for frame in self.conn:
                self.on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closing = True
            sent = self.conn.protocol.close_sent
            if sent is not None and sent.code == CLOSE_MESSAGE_TOO_BIG:
                self.service.stats.closed.inc(reason="frame_too_big")
            for channel in list(self.channels.values()):
                channel.stop(CLOSED)
            self.service.user_buckets.release(self.user_id)

    def on_frame(self, frame: str | bytes) -> None:
        now = self.conn.loop.time()
        self.last_seen = now
        stats = self.service.stats
        stats.frames_in.inc()
        if self.closing:
            return
        try:
            msg = decode(frame, sender="client")
        except ProtocolError as exc:
            stats.malformed.inc()
            stats.closed.inc(reason="malformed")
            log.info("socket %s (user %s): malformed frame: %s", self.id, self.user_id, exc)
            self.close(CLOSE_PROTOCOL_ERROR, f"malformed frame: {exc}")
            return
        if not (self.bucket.take(now) and self.user_bucket.take(now)):
            self._over_limit(msg)
            return
        self.strikes = 0
        try:
            self.dispatch(msg)
        except Exception:
            # A bug of ours, not the client's: say so with 1011 rather than drop the socket.
            log.exception(
                "socket %s (user %s): failed on %s %s", self.id, self.user_id, msg.topic, msg.event
            )
            self.close(CLOSE_INTERNAL_ERROR, "internal error")

    def _over_limit(self, msg: Message) -> None:
        stats = self.service.stats
        stats.rate_limited.inc()
        self.strikes += 1
        if self.strikes >= self.service.config.flood_close_after:
            stats.closed.inc(reason="flood")
            log.warning("socket %s (user %s) closed: kept flooding", self.id, self.user_id)
            self.close(CLOSE_POLICY_VIOLATION, "rate limit exceeded: too many messages")
        elif msg.ref is not None:
            self.reply(msg, STATUS_ERROR, RATE_LIMITED)

    def dispatch(self, msg: Message) -> None:
        if msg.topic == PHOENIX_TOPIC:
            if msg.event == HEARTBEAT:
                self.reply(msg, STATUS_OK, {})
            else:
                self.reply(msg, STATUS_ERROR, UNMATCHED_TOPIC)
            return
        if msg.event == PHX_JOIN:
            self.join(msg)
            return
        if msg.event in SERVER_EVENTS:
            self.reply(msg, STATUS_ERROR, {"reason": f"{msg.event} is sent by the service only"})
            return
        channel = self.channels.get(msg.topic)
        if channel is None or (msg.join_ref is not None and msg.join_ref != channel.join_ref):
            # Phoenix answers a leave of a topic not joined with ok: the client wanted it gone.
            status = STATUS_OK if msg.event == PHX_LEAVE else STATUS_ERROR
            self.reply(msg, status, {} if msg.event == PHX_LEAVE else UNMATCHED_TOPIC)
            return
        if msg.event == PHX_LEAVE:
            channel.leave(msg.ref)
        else:
            channel.handle_message(msg)

    def join(self, msg: Message) -> None:
        service = self.service
        if service.stopping:
            # The stop drains the channels it found; one joined now would escape that drain.
            self.reply(msg, STATUS_ERROR, SHUTTING_DOWN)
            return
        if not isinstance(msg.payload, dict):
            self.reply(msg, STATUS_ERROR, {"reason": Reason.BAD_JOIN_PAYLOAD})
            return
        if len(msg.topic.encode()) > MAX_BINARY_FIELD_BYTES:
            # Refused now rather than crashing the channel at its first binary frame.
            self.reply(
                msg,
                STATUS_ERROR,
                {"reason": Reason.TOPIC_TOO_LONG, "limit": MAX_BINARY_FIELD_BYTES},
            )
            return
        channel_cls = service.router.match(msg.topic)
        if channel_cls is None:
            self.reply(msg, STATUS_ERROR, UNMATCHED_TOPIC)
            return
        old = self.channels.get(msg.topic)
        if old is not None:
            # Phoenix: a second join of a joined topic closes the old channel first.
            del self.channels[msg.topic]
            old.stop(DUPLICATE)
            self.send_message(Message(old.join_ref, old.join_ref, msg.topic, PHX_CLOSE, {}))
        elif len(self.channels) >= service.config.max_channels_per_socket:
            service.stats.channel_limit.inc()
            limit = service.config.max_channels_per_socket
            self.reply(msg, STATUS_ERROR, {"reason": Reason.TOO_MANY_CHANNELS, "limit": limit})
            return
        join_ref = msg.join_ref if msg.join_ref is not None else msg.ref
        channel = channel_cls(self, msg.topic, join_ref, msg.payload)
        self.channels[msg.topic] = channel
        service.channel_started(channel)
        channel.start(msg.ref, msg.payload)

    def channel_ended(self, channel: Channel, reason: str) -> None:
        if self.channels.get(channel.topic) is channel:
            del self.channels[channel.topic]
        self.service.channel_ended(channel, reason)
        if self.closing:
            return
        ref = channel.join_ref
        if reason == CRASHED:
            self.send_message(Message(ref, ref, channel.topic, PHX_ERROR, {}))
        elif reason in (LEFT, SHUTDOWN):
            self.send_message(Message(ref, ref, channel.topic, PHX_CLOSE, {}))
        # DUPLICATE was announced at the new join; CLOSED has nobody to tell.

    # -- sending -----------------------------------------------------------------------------

    def reply(self, msg: Message, status: str, response: Any) -> None:
        self.send_message(Message.reply(msg.join_ref, msg.ref, msg.topic, status, response))

    def send_message(self, msg: Message) -> None:
        self.write_wire(wire_frame(encode(msg, sender="server")))

    def write_wire(self, wire: bytes) -> None:
        """Write one complete frame now, or evict the socket if its client is not reading.

        Frames go straight to the transport: with compression off, an unmasked server frame
        is the same bytes websockets would write, and writing whole frames synchronously
        cannot interleave with the frames websockets itself writes (pong, close).
        """
        conn = self.conn
        if self.closing or conn.protocol.state is not State.OPEN:
            return
        transport = conn.transport
        if transport.get_write_buffer_size() > self.service.config.send_buffer_bytes:
            self.evict()
            return
        try:
            transport.write(wire)
        except Exception as exc:  # the transport went away under us; run() will clean up
            log.debug("socket %s: write failed: %s", self.id, exc)
            return
        self.service.stats.frames_out.inc()

    def evict(self) -> None:
        """Close a socket whose client does not read: its close frame queues behind the data,
        and the TCP connection is cut if the client has not answered it soon after."""
        self.closing = True
        self.service.stats.closed.inc(reason="slow_reader")
        log.warning("socket %s (user %s) evicted: too slow to read", self.id, self.user_id)
        conn = self.conn
        try:
            conn.protocol.send_close(CLOSE_SLOW_READER, "send buffer full: client too slow to read")
            conn.send_data()
        except Exception as exc:
            log.debug("socket %s: close frame not written: %s", self.id, exc)
        conn.loop.call_later(EVICT_ABORT_S, conn.transport.abort)

    def close(self, code: int, reason: str) -> None:
        """Close with a code and a reason the client can read (the handshake runs in a task)."""
        if self.closing:
            return
        self.closing = True
        task = asyncio.get_running_loop().create_task(self.conn.close(code, close_reason(reason)))
        self.service.track_task(task)

    @property
    def open(self) -> bool:
        return not self.closing
