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
from veraltheim.client.net.state import ConnectionState
from veraltheim.protocol import (
    AUTH_TOKEN_PREFIX,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    HEARTBEAT_INTERVAL_S,
    PHOENIX_TOPIC,
    SOCKET_PATH,
    SUBPROTOCOL,
    VSN,
    Message,
    ProtocolError,
    decode,
    encode,
)
from veraltheim.protocol.backoff import RECONNECT_BACKOFF, REJOIN_BACKOFF, Backoff
from veraltheim.protocol.channel_client import ChannelState
from veraltheim.protocol.effects import Send, SetTimer
from veraltheim.protocol.heartbeat import Dead, Heartbeat, Pong
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

log = logging.getLogger("veraltheim.client.net")

FORBIDDEN_RETRY_S = 300.0  # after a refused token, try again only this late (or when told to)
OPEN_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 2.0
MAX_FRAME_BYTES = 256 * 1024 * 1024  # compute results (images) come back in one frame
RETRYABLE_STATUS = frozenset({408, 425, 429})  # 4xx answers worth retrying with the backoff

TokenSource = str | Callable[[], str | Awaitable[str | None] | None] | None
StateCallback = Callable[[ConnectionState], Any]
OpenCallback = Callable[[], Any]
CloseCallback = Callable[[int | None, str], Any]
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
    """One open WebSocket: its outbox (sent in order by one writer task) and its heartbeat (the
    protocol/heartbeat.py machine, its timer, the ping() callers waiting)."""

    def __init__(self, ws: ClientConnection, heartbeat: Heartbeat) -> None:
        self.ws = ws
        self.outbox: deque[str | bytes] = deque()
        self.wake = asyncio.Event()
        self.heartbeat = heartbeat
        self.tick: asyncio.TimerHandle | None = None
        self.closing: asyncio.Task[None] | None = None
        self.pings: dict[str, asyncio.Future[float]] = {}


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
        self._open_callbacks: list[tuple[int, OpenCallback]] = []
        self._close_callbacks: list[tuple[int, CloseCallback]] = []

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
        self.add(ch)
        return ch

    async def ping(self, timeout: float | None = None) -> float:
        """A heartbeat round trip now, in ms (also stored in rtt_ms)."""
        conn = self._conn
        if conn is None or not self.connected:
            raise SocketOffline(f"not connected ({self.state.value})")
        ref, out = conn.heartbeat.ping(time.perf_counter())
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        conn.pings[ref] = future
        self._run_heartbeat(conn, out)
        try:
            return await asyncio.wait_for(future, timeout or self.timeout_s)
        finally:
            conn.pings.pop(ref, None)
            conn.heartbeat.forget_ping(ref)

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

    def on_open(self, callback: OpenCallback) -> int:
        """callback() each time a connection opens (channels rejoin from it); returns a ref."""
        self._callback_ref += 1
        self._open_callbacks.append((self._callback_ref, callback))
        return self._callback_ref

    def on_close(self, callback: CloseCallback) -> int:
        """callback(code, reason) each time an open connection closes; returns a ref."""
        self._callback_ref += 1
        self._close_callbacks.append((self._callback_ref, callback))
        return self._callback_ref

    def off(self, ref: int) -> None:
        self._state_callbacks = [c for c in self._state_callbacks if c[0] != ref]
        self._frame_callbacks = [c for c in self._frame_callbacks if c[0] != ref]
        self._open_callbacks = [c for c in self._open_callbacks if c[0] != ref]
        self._close_callbacks = [c for c in self._close_callbacks if c[0] != ref]

    def make_ref(self) -> str:
        self._ref += 1
        return str(self._ref)

    def push(self, msg: Message) -> bool:
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

    def add(self, ch: Channel) -> None:
        """Route the messages of ch's topic to ch (`channel()` does this)."""
        chans = self._channels.setdefault(ch.topic, [])
        if ch not in chans:
            chans.append(ch)

    def remove(self, ch: Channel) -> None:
        chans = self._channels.get(ch.topic, [])
        if ch in chans:
            chans.remove(ch)
        if not chans:
            self._channels.pop(ch.topic, None)

    def leave_open_topic(self, joining: Channel) -> None:
        """phoenix.js leaves another channel object joined to the same topic first."""
        for other in list(self._channels.get(joining.topic, ())):
            if other is not joining and other.state in (ChannelState.JOINED, ChannelState.JOINING):
                other.leave_now()

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
        conn = self._conn = _Connection(ws, Heartbeat(self.heartbeat_interval_s, self))
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write_loop(conn))
        self._set_state(ConnectionState.CONNECTED)
        self._finish_attempt()
        for _ref, callback in list(self._open_callbacks):
            call_safely(callback)
        self._run_heartbeat(conn, conn.heartbeat.opened(time.perf_counter()))
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
            conn.heartbeat.closed()
            if conn.tick is not None:
                conn.tick.cancel()
            self._conn = None
            self.last_close = (ws.close_code, ws.close_reason or "")
            for future in conn.pings.values():
                if not future.done():
                    future.set_exception(SocketOffline("connection closed"))
            # channels first (a closed channel may be revived: the service only restarted)
            for _ref, callback in list(self._close_callbacks):
                call_safely(callback, ws.close_code, ws.close_reason or "")
            if self.state == ConnectionState.CONNECTED and not self._stopping:
                self._set_state(ConnectionState.RECONNECTING)

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
            # a connection that cannot write is useless: drop it (close() cuts the TCP
            # connection after CLOSE_TIMEOUT_S if the service does not answer); we reconnect
            log.exception("writing to the service failed; reconnecting")
            with contextlib.suppress(Exception):
                await conn.ws.close(CLOSE_INTERNAL_ERROR, "client write failed")

    def _run_heartbeat(self, conn: _Connection, outputs: list[Any]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                self.push(out.message)
            elif isinstance(out, SetTimer):
                if conn.tick is not None:
                    conn.tick.cancel()
                loop = asyncio.get_running_loop()
                conn.tick = loop.call_later(out.delay_s, self._heartbeat_tick, conn, out.key)
            elif isinstance(out, Pong):
                future = conn.pings.pop(out.ref, None)
                if future is not None and not future.done():
                    future.set_result(out.rtt_ms)
            elif isinstance(out, Dead) and conn.closing is None:
                log.warning(
                    "no heartbeat reply within %g s; reconnecting", conn.heartbeat.interval_s
                )
                coro = conn.ws.close(CLOSE_NORMAL, out.reason)
                conn.closing = asyncio.get_running_loop().create_task(coro)
        if conn.heartbeat.rtt_ms is not None:
            self.rtt_ms = conn.heartbeat.rtt_ms

    def _heartbeat_tick(self, conn: _Connection, key: Any) -> None:
        conn.tick = None
        if self._conn is conn:
            self._run_heartbeat(conn, conn.heartbeat.timeout(key, time.perf_counter()))

    def _receive(self, conn: _Connection, frame: str | bytes) -> None:
        try:
            msg = decode(frame, sender="server")
        except ProtocolError as exc:
            self.malformed_frames += 1
            log.warning("dropped a malformed frame from the service: %s", exc)
            return
        for _ref, callback in list(self._frame_callbacks):
            call_safely(callback, "in", msg)
        if msg.topic == PHOENIX_TOPIC:
            self._run_heartbeat(conn, conn.heartbeat.receive(msg, time.perf_counter()))
        for ch in list(self._channels.get(msg.topic, ())):
            ch.receive(msg)

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
