"""The websockets server: `/socket/websocket` (handshake, auth, origin), `/healthz`, `/metrics`.

A refused handshake gets a plain HTTP status with a one-line body that says why: 403 for a
missing, forged or expired token or a foreign Origin, 400 for an unsupported protocol version,
503 while the service is stopping.
"""

from __future__ import annotations

import base64
import binascii
import http
import itertools
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from veraltheim.protocol.constants import (
    AUTH_TOKEN_PREFIX,
    CLOSE_TRY_AGAIN_LATER,
    SOCKET_PATH,
    SUBPROTOCOL,
    VSN,
)
from veraltheim.service.admission import SocketCaps, auto_max_sockets, descriptor_limit
from veraltheim.service.auth import TokenError, verify_token
from veraltheim.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from veraltheim.service.socket import Counter, Socket, SocketEnv, close_reason
from veraltheim.service.tls import server_ssl_context
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

if TYPE_CHECKING:
    from veraltheim.service.config import ServiceConfig

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
# Waiting for a client's answer to our close frame; then the TCP connection is cut.
CLOSE_TIMEOUT_S = 5.0
# Thousands of clients may (re)connect at once, e.g. after a restart: asyncio's default of 100
# pending connections would make the rest retry their SYN a second later.
LISTEN_BACKLOG = 4096
# Connect params the service consumes itself; channels never see them.
PRIVATE_PARAMS = ("token", "vsn")


class Refused(Exception):
    def __init__(self, status: http.HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def token_from_subprotocols(values: Sequence[str]) -> str | None:
    """phoenix.js's authToken: `base64url.bearer.phx.<base64 of the token, '=' stripped>`."""
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if item.startswith(AUTH_TOKEN_PREFIX):
                encoded = item[len(AUTH_TOKEN_PREFIX) :]
                encoded = encoded.replace("-", "+").replace("_", "/")  # accept URL-safe too
                try:
                    raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
                    return raw.decode("utf-8")
                except (binascii.Error, ValueError):
                    raise TokenError(
                        "invalid token: bad base64 in Sec-WebSocket-Protocol"
                    ) from None
    return None


def _json_response(conn: ServerConnection, status: http.HTTPStatus, body: Any) -> Response:
    response = conn.respond(status, json.dumps(body, separators=(",", ":")) + "\n")
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


class MetricsPage(Protocol):
    def render(self) -> str: ...


class HandshakeStats(Protocol):
    refused: Counter


class EndpointHost(Protocol):
    """What the endpoint uses of the service."""

    config: ServiceConfig
    metrics: MetricsPage
    stats: HandshakeStats
    socket_env: SocketEnv

    @property
    def stopping(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...

    def socket_opened(self, socket: Socket) -> None: ...

    def socket_closed(self, socket: Socket) -> None: ...


class Endpoint:
    def __init__(self, service: EndpointHost) -> None:
        self.service = service
        self.config = service.config
        self.server: Server | None = None
        self._ids = itertools.count(1)
        config = service.config
        total = config.max_sockets or auto_max_sockets(descriptor_limit())
        self.caps = SocketCaps(total, config.max_sockets_per_user, config.max_sockets_per_ip)
        self._anonymous = itertools.count(1)

    async def start(self) -> tuple[str, int]:
        config = self.config
        self.server = await serve(
            self._handle,
            config.host,
            config.port,
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            compression=None,  # per-connection deflate state costs far more than it saves here
            ping_interval=None,  # phoenix heartbeats + our idle sweep replace websocket pings
            max_size=config.max_frame_bytes,
            close_timeout=CLOSE_TIMEOUT_S,
            server_header="veraltheim",
            ssl=server_ssl_context(config),
            backlog=LISTEN_BACKLOG,
        )
        host, port = self.server.sockets[0].getsockname()[:2]
        return host, port

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close(close_connections=False)

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()

    # -- handshake ---------------------------------------------------------------------------

    def _select_subprotocol(self, conn: ServerConnection, offered: Sequence[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in offered else None

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == HEALTH_PATH:
            return _json_response(conn, http.HTTPStatus.OK, self.service.health())
        if url.path == METRICS_PATH:
            response = conn.respond(http.HTTPStatus.OK, self.service.metrics.render())
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = METRICS_CONTENT_TYPE
            return response
        if url.path != SOCKET_PATH:
            return conn.respond(http.HTTPStatus.NOT_FOUND, f"not found: {url.path}\n")
        try:
            auth = self._admit(request, dict(parse_qsl(url.query)))
            refusal = self.caps.refusal(auth[0], _address(conn))
            if refusal is not None:
                raise Refused(http.HTTPStatus.TOO_MANY_REQUESTS, refusal)
            conn.veraltheim_auth = auth  # type: ignore[attr-defined]
        except Refused as exc:
            self.service.stats.refused.inc(status=str(exc.status.value))
            log.info("handshake refused (%d): %s", exc.status.value, exc.text)
            return conn.respond(exc.status, exc.text + "\n")
        return None

    def _admit(self, request: Request, params: dict[str, str]) -> tuple[str, dict, dict]:
        """(user_id, claims, connect params) for a socket, or Refused."""
        if self.service.stopping:
            raise Refused(http.HTTPStatus.SERVICE_UNAVAILABLE, "service is shutting down")
        allowed = self.config.allowed_origins
        origin = request.headers.get("Origin")
        if allowed and origin is not None and origin not in allowed:
            raise Refused(http.HTTPStatus.FORBIDDEN, f"origin not allowed: {origin}")
        vsn = params.get("vsn", VSN)
        if vsn != VSN:
            raise Refused(http.HTTPStatus.BAD_REQUEST, f"unsupported vsn {vsn!r}: use {VSN}")
        try:
            token = params.get("token") or token_from_subprotocols(
                request.headers.get_all("Sec-WebSocket-Protocol")
            )
            claims = verify_token(self.config.secret_key or "", token) if token else None
            if claims is None and self.config.auth:
                raise TokenError("missing token")
        except TokenError as exc:
            if self.config.auth:
                raise Refused(http.HTTPStatus.FORBIDDEN, f"unauthorized: {exc}") from None
            claims = None  # auth off: a bad token is ignored, not fatal
        public = {k: v for k, v in params.items() if k not in PRIVATE_PARAMS}
        if claims is None:
            user = params.get("user") or f"anonymous-{next(self._anonymous)}"
            claims = {"user": user}
        return claims["user"], claims, public

    # -- one connection ----------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        user_id, claims, params = conn.veraltheim_auth  # type: ignore[attr-defined]
        del conn.veraltheim_auth  # type: ignore[attr-defined]
        address = _address(conn)
        refusal = self.caps.refusal(user_id, address)  # again: handshakes ran side by side
        if refusal is not None:
            await conn.close(CLOSE_TRY_AGAIN_LATER, close_reason(refusal))
            return
        self.caps.add(user_id, address)
        socket = Socket(self.service.socket_env, conn, next(self._ids), user_id, claims, params)
        self.service.socket_opened(socket)
        try:
            await socket.run()
        finally:
            self.caps.remove(user_id, address)
            self.service.socket_closed(socket)


def _address(conn: ServerConnection) -> str:
    peer = conn.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
