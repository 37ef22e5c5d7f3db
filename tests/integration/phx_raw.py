"""Raw Phoenix V2 frames over a `websockets` client, for the service-ops integration tests."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from protocol.constants import VSN

WAIT_S = 10.0


def socket_url(ws_url: str, token: str | None = None) -> str:
    query = f"vsn={VSN}" + (f"&token={token}" if token else "")
    return f"{ws_url}?{query}"


async def open_socket(
    ws_url: str,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    origin: str | None = None,
) -> ClientConnection:
    kwargs: dict[str, Any] = {"open_timeout": WAIT_S}
    if ssl_context is not None:
        kwargs["ssl"] = ssl_context
    if origin is not None:
        kwargs["origin"] = origin
    return await connect(socket_url(ws_url, token), **kwargs)


async def next_frame(ws: ClientConnection) -> list:
    frame = await asyncio.wait_for(ws.recv(), WAIT_S)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    return json.loads(frame)


async def until(ws: ClientConnection, topic: str, event: str, ref: str | None = None) -> list:
    """Frames until one matches topic/event (and ref); returns it."""
    while True:
        msg = await next_frame(ws)
        if msg[2] == topic and msg[3] == event and (ref is None or msg[1] == ref):
            return msg


async def join(ws: ClientConnection, topic: str = "lobby", join_ref: str = "1") -> dict:
    await ws.send(json.dumps([join_ref, join_ref, topic, "phx_join", {}]))
    reply = await until(ws, topic, "phx_reply", join_ref)
    return reply[4]
