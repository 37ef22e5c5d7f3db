"""The client end of the link: one WebSocket to the service speaking Phoenix Channels V2, kept up
the way phoenix.js keeps it up (heartbeat, reconnect with backoff, rejoin, fresh token per
connect), in plain asyncio so it also runs inside a qasync loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import ssl as ssl_module
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from veraltheim.client.net.callbacks import call_safely
from veraltheim.client.net.channel import Channel, Params
from veraltheim.client.net.push import DEFAULT_TIMEOUT_S
from veraltheim.client.net.state import ChannelState, ConnectionState
from veraltheim.client.net.timer import RECONNECT_BACKOFF, REJOIN_BACKOFF, Backoff
from veraltheim.protocol import (
    AUTH_TOKEN_PREFIX,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    HEARTBEAT,
    HEARTBEAT_INTERVAL_S,
    PHOENIX_TOPIC,
    PHX_LEAVE,
    SOCKET_PATH,
    SUBPROTOCOL,
    VSN,
    Message,
    ProtocolError,
    decode,
    encode,
)
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

log = logging.getLogger("veraltheim.client.net")

FORBIDDEN_RETRY_S = 300.0  # after a refused token, try again only this late (or when told to)
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
MAX_FRAME_BYTES = 256 * 1024 * 1024  # compute results (images) come back in one frame
RETRYABLE_STATUS = frozenset({408, 425, 429})  # 4xx answers worth retrying with the backoff
SERVICE_RESTART = 1012  # RFC 6455 close code "service restart"; like 1001, not a final close
# A phx_close this shortly before the socket closes with 1001/1012 was the service stopping (it
# closes channels, waits for in-flight work up to its grace period, then the sockets).
SHUTDOWN_WINDOW_S = 15.0

TokenSource = str | Callable[[], str | Awaitable[str | None] | None] | None
StateCallback = Callable[[ConnectionState], Any]
FrameCallback = Callable[[Literal["in", "out"], Message], Any]


class SocketOffline(ConnectionError):
    """The socket is not trying to connect (disconnected, refused, bad URL); says why."""


def endpoint_url(url: str, params: dict[str, Any] | None = None, token: str | None = None) -> str:
    """`ws://H:P/socket/websocket?<params>&vsn=2.0.0[&token=...]` from a base URL that ends in
    /socket or /socket/websocket (http/https are read as ws/wss)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") or SOCKET_PATH.rsplit("/", 1)[0]
    websocket_leaf = "/" + SOCKET_PATH.rsplit("/", 1)[1]
    if not path.endswith(websocket_leaf):
        path += websocket_leaf
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("vsn", "token")]
    query += [(str(k), str(v)) for k, v in (params or {}).items()]
    query.append(("vsn", VSN))
    if token:
        query.append(("token", token))
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def auth_subprotocols(token: str) -> list[str]:
    """phoenix.js's authToken: standard base64 with "=" stripped, after a fixed prefix."""
    encoded = base64.b64encode(token.encode()).decode().rstrip("=")
    return [SUBPROTOCOL, AUTH_TOKEN_PREFIX + encoded]


class _Connection:
    """One open WebSocket: its outbox (sent in order by one writer task) and heartbeat."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.outbox: deque[str | bytes] = deque()
        self.wake = asyncio.Event()
        self.heartbeat_ref: str | None = None
        self.heartbeat_sent_at = 0.0
        self.pings: dict[str, tuple[asyncio.Future[float], float]] = {}
        # (channel, when) for each phx_close seen on this connection
        self.closed_by_service: list[tuple[Channel, float]] = []


class Socket:
    """`Socket(url, params=None, token=None, ...)`; `await sock.connect()`; then channels.

    token: a string, or a callable (sync or async) asked on every connect so a fresh token is
    used; sent as the phoenix.js subprotocol (`token_in="subprotocol"`) or the `token` query
    param (`token_in="param"`). A 401/403 (any 4xx but 408/425/429) at the handshake, or an
    untrusted TLS certificate, puts the socket OFFLINE with `offline_reason`; it tries again
    after `forbidden_retry_s` (None: never) or when `connect()` / `retry_now()` is called.
    Assign `sock.url` to point it elsewhere (a service that came back on another port); the
    next attempt uses it.
    """

    def __init__(
        self,
        url: str,
        params: Params | None = None,
        token: TokenSource = None,
        *,
        token_in: Literal["subprotocol", "param"] = "subprotocol",
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
        rejoin_backoff: Backoff = REJOIN_BACKOFF,
        forbidden_retry_s: float | None = FORBIDDEN_RETRY_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        open_timeout_s: float = OPEN_TIMEOUT_S,
        max_frame_bytes: int | None = MAX_FRAME_BYTES,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        if token_in not in ("subprotocol", "param"):
            raise ValueError(f"token_in must be 'subprotocol' or 'param', not {token_in!r}")
        self.url = url
        self._params = params if params is not None else {}
        self.token = token
        self.token_in = token_in
        self.heartbeat_interval_s = heartbeat_interval_s
        self.reconnect_backoff = reconnect_backoff
        self.rejoin_backoff = rejoin_backoff
        self.forbidden_retry_s = forbidden_retry_s
        self.timeout_s = timeout_s
        self.open_timeout_s = open_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.ssl = ssl

        self.state = ConnectionState.OFFLINE
        self.offline_reason: str | None = None
        self.rtt_ms: float | None = None
        self.last_close: tuple[int | None, str] | None = None  # (code, reason) of the last drop
        self.handshakes = 0  # connection attempts made (each asks for a token)
        self.malformed_frames = 0

        self._ref = 0
        self._channels: dict[str, list[Channel]] = {}
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._waiting = False  # the run loop sleeps between attempts
        self._skip_backoff = False  # reconnect() asked for no delay after this drop
        self._wake = asyncio.Event()
        self._attempt_done: asyncio.Future[None] | None = None
        self._connected_waiters: set[asyncio.Future[None]] = set()
        self._callback_ref = 0
        self._state_callbacks: list[tuple[int, StateCallback]] = []
        self._frame_callbacks: list[tuple[int, FrameCallback]] = []

    # -- public API ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.state == ConnectionState.CONNECTED and self._conn is not None

    @property
    def channels(self) -> list[Channel]:
        return [ch for chans in self._channels.values() for ch in chans]

    async def connect(self) -> None:
        """Start (or, when waiting between attempts or refused, retry at once) and return once
        this attempt connected or failed; then `state` says which. Reconnects by itself until
        `disconnect()`."""
        if self.connected:
            return
        loop = asyncio.get_running_loop()
        if self._attempt_done is None or self._attempt_done.done():
            self._attempt_done = loop.create_future()
        done = self._attempt_done
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = loop.create_task(self._run(), name=f"socket {self.url}")
        elif self._waiting:
            self._wake.set()
        await asyncio.shield(done)

    async def reconnect(self) -> None:
        """Drop the current connection (if any) and connect again at once, with a fresh token
        and the current `url`; channels rejoin as after any drop."""
        conn = self._conn
        if conn is None:
            await self.connect()
            return
        self._skip_backoff = True
        with contextlib.suppress(Exception):
            await conn.ws.close(CLOSE_NORMAL, "reconnect")

    def retry_now(self) -> None:
        """Skip the current backoff (or the long wait after a refusal): try at once."""
        if self._waiting:
            self._wake.set()

    async def disconnect(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Close and stop reconnecting; channels rejoin if connect() is called again."""
        self._stopping = True
        self._wake.set()
        conn, task = self._conn, self._task
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.ws.close(code, reason)
        if task is not None and not task.done():
            if conn is None:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._set_state(ConnectionState.OFFLINE, "disconnected")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Return once CONNECTED; TimeoutError after `timeout`; SocketOffline if the socket is
        or goes OFFLINE for a reason (refused, disconnected)."""
        if self.connected:
            return
        if self.state == ConnectionState.OFFLINE and self.offline_reason:
            raise SocketOffline(self.offline_reason)
        waiter = asyncio.get_running_loop().create_future()
        self._connected_waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            self._connected_waiters.discard(waiter)

    def channel(self, topic: str, params: Params | None = None) -> Channel:
        ch = Channel(self, topic, params)
        self._add(ch)
        return ch

    async def ping(self, timeout: float | None = None) -> float:
        """A heartbeat round trip now, in ms (also stored in rtt_ms)."""
        conn = self._conn
        if conn is None or not self.connected:
            raise SocketOffline(f"not connected ({self.state.value})")
        ref = self.make_ref()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        conn.pings[ref] = (future, time.perf_counter())
        self._send(Message(None, ref, PHOENIX_TOPIC, HEARTBEAT, {}))
        try:
            return await asyncio.wait_for(future, timeout or self.timeout_s)
        finally:
            conn.pings.pop(ref, None)

    def on_state(self, callback: StateCallback) -> int:
        """callback(state) on every change of `state`; returns a ref for off()."""
        self._callback_ref += 1
        self._state_callbacks.append((self._callback_ref, callback))
        return self._callback_ref

    def on_frame(self, callback: FrameCallback) -> int:
        """callback("in" | "out", Message) for every frame, for inspectors; returns a ref."""
        self._callback_ref += 1
        self._frame_callbacks.append((self._callback_ref, callback))
        return self._callback_ref

    def off(self, ref: int) -> None:
        self._state_callbacks = [c for c in self._state_callbacks if c[0] != ref]
        self._frame_callbacks = [c for c in self._frame_callbacks if c[0] != ref]

    def make_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    # -- connection loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._keep_connected()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the app waiting on a dead link
            log.exception("the link's connection loop failed")
            self._set_state(ConnectionState.OFFLINE, f"client error: {exc!r}")
        finally:
            self._finish_attempt()

    async def _keep_connected(self) -> None:
        failures = 0
        next_state = ConnectionState.CONNECTING
        while not self._stopping:
            self._set_state(next_state)
            outcome, reason = await self._attempt()
            if self._stopping:
                break
            delay: float | None
            if outcome == "refused" or outcome == "fatal":
                failures = 0
                delay = self.forbidden_retry_s if outcome == "refused" else None
                log.warning("link offline: %s", reason)
                self._set_state(ConnectionState.OFFLINE, reason)
                next_state = ConnectionState.CONNECTING
            else:
                failures = 1 if outcome == "served" else failures + 1
                delay = 0.0 if self._skip_backoff else self.reconnect_backoff.delay(failures)
                self._skip_backoff = False
                log.info("link %s (%s); retrying in %.2f s", outcome, reason, delay)
                self._set_state(ConnectionState.RECONNECTING)
                next_state = ConnectionState.RECONNECTING
            self._finish_attempt()
            await self._pause(delay)

    async def _pause(self, delay: float | None) -> None:
        self._wake.clear()
        self._waiting = True
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
        finally:
            self._waiting = False

    def _finish_attempt(self) -> None:
        if self._attempt_done is not None and not self._attempt_done.done():
            self._attempt_done.set_result(None)

    async def _token_now(self) -> str | None:
        if self.token is None or isinstance(self.token, str):
            return self.token
        value = self.token()
        if inspect.isawaitable(value):
            value = await value
        return value

    async def _attempt(self) -> tuple[str, str]:
        """One handshake and, when it succeeds, the whole connection. Returns (outcome, why):
        served (was connected, then dropped), failed, refused (token, certificate), fatal."""
        self.handshakes += 1
        try:
            token = await self._token_now()
        except Exception as exc:
            log.exception("token callback failed")
            return "failed", f"token callback failed: {exc}"
        params = self._params() if callable(self._params) else self._params
        in_url = token if self.token_in == "param" else None
        subprotocols = (
            auth_subprotocols(token) if token and self.token_in == "subprotocol" else None
        )
        options: dict[str, Any] = {}
        if self.ssl is not None:
            options["ssl"] = self.ssl
        try:
            url = endpoint_url(self.url, params, in_url)
            ws = await ws_connect(
                url,
                subprotocols=subprotocols,  # type: ignore[arg-type]
                open_timeout=self.open_timeout_s,
                close_timeout=CLOSE_TIMEOUT_S,
                ping_interval=None,  # the Phoenix heartbeat does this job
                compression=None,  # payloads are small JSON or already-compact binary
                max_size=self.max_frame_bytes,
                **options,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = bytes(exc.response.body or b"").decode(errors="replace").strip()[:200]
            why = f"HTTP {status} at the handshake" + (f": {body}" if body else "")
            if 400 <= status < 500 and status not in RETRYABLE_STATUS:
                # a refused token, a wrong path or version: retrying soon cannot help
                return "refused", f"refused by the service ({why})"
            return "failed", why
        except ssl_module.SSLCertVerificationError as exc:
            # retrying at once cannot fix a certificate: wait like after a refused token
            return "refused", f"TLS certificate not trusted: {exc.verify_message or exc}"
        except (InvalidURI, ValueError) as exc:
            return "fatal", f"bad URL {self.url!r}: {exc}"
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            return "failed", f"{type(exc).__name__}: {exc}"
        await self._serve(ws)
        code, reason = self.last_close or (None, "")
        return "served", f"closed {code} {reason}".strip()

    async def _serve(self, ws: ClientConnection) -> None:
        conn = self._conn = _Connection(ws)
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write_loop(conn))
        heartbeat = loop.create_task(self._heartbeat_loop(conn))
        self._set_state(ConnectionState.CONNECTED)
        self._finish_attempt()
        for ch in self.channels:
            ch._socket_opened()
        try:
            async for frame in ws:
                try:
                    self._receive(conn, frame)
                except Exception:  # one message we cannot handle must not end the link
                    log.exception("handling a frame from the service failed")
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            heartbeat.cancel()
            self._conn = None
            self.last_close = (ws.close_code, ws.close_reason or "")
            for future, _sent in conn.pings.values():
                if not future.done():
                    future.set_exception(SocketOffline("connection closed"))
            if ws.close_code in (CLOSE_GOING_AWAY, SERVICE_RESTART):
                # the service went away: its phx_close was not "leave for good", rejoin later
                now = time.monotonic()
                for ch, closed_at in conn.closed_by_service:
                    recent = now - closed_at <= SHUTDOWN_WINDOW_S
                    if (
                        recent
                        and ch.state == ChannelState.CLOSED
                        and ch.topic not in self._channels
                    ):
                        ch._revive()
            if self.state == ConnectionState.CONNECTED and not self._stopping:
                self._set_state(ConnectionState.RECONNECTING)
            for ch in self.channels:
                ch._socket_closed("connection_closed")

    async def _write_loop(self, conn: _Connection) -> None:
        try:
            while True:
                while conn.outbox:
                    await conn.ws.send(conn.outbox.popleft())
                conn.wake.clear()
                await conn.wake.wait()
        except ConnectionClosed:
            pass
        except Exception:
            # a connection that cannot write is useless: drop it, the run loop reconnects
            log.exception("writing to the service failed; reconnecting")
            conn.ws.transport.abort()

    async def _heartbeat_loop(self, conn: _Connection) -> None:
        self._send_heartbeat(conn)  # at once, so rtt_ms is known right after connecting
        while True:
            await asyncio.sleep(self.heartbeat_interval_s)
            if conn.heartbeat_ref is not None:
                log.warning(
                    "no heartbeat reply within %g s; reconnecting", self.heartbeat_interval_s
                )
                await conn.ws.close(CLOSE_NORMAL, "heartbeat timeout")
                return
            self._send_heartbeat(conn)

    def _send_heartbeat(self, conn: _Connection) -> None:
        conn.heartbeat_ref = self.make_ref()
        conn.heartbeat_sent_at = time.perf_counter()
        self._send(Message(None, conn.heartbeat_ref, PHOENIX_TOPIC, HEARTBEAT, {}))

    def _receive(self, conn: _Connection, frame: str | bytes) -> None:
        try:
            msg = decode(frame, sender="server")
        except ProtocolError as exc:
            self.malformed_frames += 1
            log.warning("dropped a malformed frame from the service: %s", exc)
            return
        for _ref, callback in list(self._frame_callbacks):
            call_safely(callback, "in", msg)
        if msg.topic == PHOENIX_TOPIC and msg.ref is not None:
            now = time.perf_counter()
            if msg.ref == conn.heartbeat_ref:
                conn.heartbeat_ref = None
                self.rtt_ms = (now - conn.heartbeat_sent_at) * 1000
            ping = conn.pings.pop(msg.ref, None)
            if ping is not None and not ping[0].done():
                self.rtt_ms = (now - ping[1]) * 1000
                ping[0].set_result(self.rtt_ms)
        for ch in list(self._channels.get(msg.topic, ())):
            if ch._is_member(msg):
                ch._trigger(msg)

    # -- used by channels ----------------------------------------------------------------------

    def _send(self, msg: Message) -> bool:
        """Queue msg on the open connection; False when there is none. Raises ProtocolError for
        a message that cannot be encoded."""
        conn = self._conn
        if conn is None or self.state != ConnectionState.CONNECTED:
            return False
        conn.outbox.append(encode(msg, sender="client"))
        conn.wake.set()
        for _ref, callback in list(self._frame_callbacks):
            call_safely(callback, "out", msg)
        return True

    def _add(self, ch: Channel) -> None:
        chans = self._channels.setdefault(ch.topic, [])
        if ch not in chans:
            chans.append(ch)

    def _remove(self, ch: Channel) -> None:
        chans = self._channels.get(ch.topic, [])
        if ch in chans:
            chans.remove(ch)
        if not chans:
            self._channels.pop(ch.topic, None)

    def _closed_by_service(self, ch: Channel) -> None:
        if self._conn is not None:
            self._conn.closed_by_service.append((ch, time.monotonic()))

    def _leave_duplicate(self, joining: Channel) -> None:
        """phoenix.js leaves another channel object joined to the same topic first."""
        for other in list(self._channels.get(joining.topic, ())):
            if other is joining or other.state not in (ChannelState.JOINED, ChannelState.JOINING):
                continue
            log.info("leaving duplicate channel %s", other.topic)
            if other.join_ref is not None:
                self._send(Message(other.join_ref, self.make_ref(), other.topic, PHX_LEAVE, {}))
            other._left = True
            other._close("leave")

    # -- state ---------------------------------------------------------------------------------

    def _set_state(self, state: ConnectionState, reason: str | None = None) -> None:
        changed = state != self.state or (state == ConnectionState.OFFLINE and reason)
        self.state = state
        self.offline_reason = reason if state == ConnectionState.OFFLINE else None
        if state == ConnectionState.CONNECTED:
            self._resolve_waiters(None)
        elif state == ConnectionState.OFFLINE and reason:
            self._resolve_waiters(SocketOffline(reason))
        if changed:
            for _ref, callback in list(self._state_callbacks):
                call_safely(callback, state)

    def _resolve_waiters(self, exc: Exception | None) -> None:
        for waiter in self._connected_waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
