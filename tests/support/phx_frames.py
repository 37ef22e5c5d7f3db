"""Raw Phoenix V2 frames over a `websockets` client, for the link and service tests: sign tokens,
open sockets, send and wait for messages, read /metrics."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

from veraltheim.protocol import Message, decode, encode
from veraltheim.protocol.constants import VSN
from veraltheim.service.auth import issue_token
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.service import TEST_SECRET

WAIT_S = 10.0


def sign(user: str, ttl: float = 600, **claims: Any) -> str:
    """A token signed with the secret the test services run with."""
    return issue_token(TEST_SECRET, user, ttl, claims or None)


async def open_socket(
    ws_url: str,
    user: str | None = "alice",
    *,
    token: str | None = None,
    query: str = "",
    **kwargs: Any,
) -> ClientConnection:
    """Connect as `user` (a token signed here), or with the given `token`, or (both None)
    with no token; kwargs go to websockets' connect (ssl, origin, max_queue...)."""
    signed = token if token is not None else (sign(user) if user else None)
    q = f"vsn={VSN}" + (f"&token={signed}" if signed else "") + (f"&{query}" if query else "")
    kwargs.setdefault("open_timeout", WAIT_S)
    kwargs.setdefault("compression", None)
    return await connect(f"{ws_url}?{q}", **kwargs)


async def send(ws: ClientConnection, msg: Message) -> None:
    await ws.send(encode(msg, sender="client"))


async def recv(ws: ClientConnection) -> Message:
    return decode(await asyncio.wait_for(ws.recv(), WAIT_S), sender="server")


async def until(ws: ClientConnection, event: str, ref: str | None = None, topic: str = "lobby"):
    """Messages until one matches (topic, event[, ref]); returns it."""
    while True:
        msg = await recv(ws)
        if msg.topic == topic and msg.event == event and (ref is None or msg.ref == ref):
            return msg


async def join(
    ws: ClientConnection, topic: str = "lobby", join_ref: str = "1", payload: Any = None
) -> dict:
    """Join and return the reply payload {"status", "response"}."""
    await send(ws, Message(join_ref, join_ref, topic, "phx_join", payload or {}))
    return (await until(ws, "phx_reply", join_ref, topic)).payload


async def push(
    ws: ClientConnection, event: str, payload: Any, ref: str, topic: str = "lobby", jr: str = "1"
) -> dict:
    await send(ws, Message(jr, ref, topic, event, payload))
    return (await until(ws, "phx_reply", ref, topic)).payload


async def closed(ws: ClientConnection) -> tuple[int | None, str]:
    """Read until the service closes the socket; (close code, reason)."""
    async with asyncio.timeout(WAIT_S):
        try:
            async for _ in ws:
                pass
        except ConnectionClosed:
            pass
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, "")


def http_get(url: str) -> tuple[int, str, str]:
    """(status, content type, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT_S) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def metric(text: str, series: str) -> float:
    """The value of one series line in Prometheus text, or 0 when it is absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0
