"""service/ws_fastpath.py: the fast path (websockets internals) and the public fallback give a
real client the same frames and the same close, and the service works on either."""

from __future__ import annotations

import asyncio

import pytest
from veraltheim.protocol import Message, decode, encode
from veraltheim.protocol.constants import CLOSE_SLOW_READER, VSN
from veraltheim.service import app as app_module
from veraltheim.service import ws_fastpath
from veraltheim.service.app import Service
from veraltheim.service.config import ServiceConfig
from veraltheim.service.wire import wire_frame
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

WAIT_S = 10.0
MESSAGES = [
    "text \u2713",
    b"\x00\x01binary",
    "x" * 200,
    b"y" * 70_000,
]  # 7-, 16- and 64-bit lengths


def test_the_internals_are_usable_with_the_websockets_installed_here():
    assert ws_fastpath.probe() is True
    assert ws_fastpath.FAST is True  # the service runs on the fast path here


def test_a_failing_probe_means_the_public_api():
    async def broken() -> None:
        raise AttributeError("'ServerConnection' object has no attribute 'transport'")

    assert ws_fastpath.probe(broken) is False


@pytest.mark.parametrize("message", MESSAGES)
def test_frame_payload_reads_back_what_wire_frame_wrote(message):
    opcode, payload = ws_fastpath.frame_payload(wire_frame(message))
    raw = message.encode() if isinstance(message, str) else message
    assert (opcode, bytes(payload)) == (1 if isinstance(message, str) else 2, raw)


async def what_a_client_gets(fast: bool, monkeypatch) -> tuple[list, int | None, str, int | None]:
    """Frames written with `writer()`, then an eviction, as a real websockets client sees them."""
    monkeypatch.setattr(ws_fastpath, "FAST", fast)
    sent_code: list[int | None] = []

    async def handler(conn):
        out = ws_fastpath.writer(conn)
        assert (out is conn.transport) == fast
        for message in MESSAGES:
            out.write(wire_frame(message))
        task = ws_fastpath.evict(conn, CLOSE_SLOW_READER, "too slow", abort_after_s=WAIT_S)
        if task is not None:
            await task
        await conn.wait_closed()
        sent_code.append(ws_fastpath.close_sent_code(conn))

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            got = []
            with pytest.raises(ConnectionClosed):
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), WAIT_S))
            code, reason = ws.close_code, ws.close_reason
        async with asyncio.timeout(WAIT_S):
            while not sent_code:
                await asyncio.sleep(0.01)
    return got, code, reason, sent_code[0]


async def test_both_paths_give_a_real_client_the_same_frames_and_close(monkeypatch):
    fast = await what_a_client_gets(True, monkeypatch)
    public = await what_a_client_gets(False, monkeypatch)
    assert fast == public
    assert fast == (MESSAGES, CLOSE_SLOW_READER, "too slow", CLOSE_SLOW_READER)


async def push(ws, ref: str, event: str, payload) -> None:
    await ws.send(encode(Message("1", ref, "lobby", event, payload), sender="client"))


async def receive(ws) -> Message:
    return decode(await asyncio.wait_for(ws.recv(), WAIT_S), sender="server")


async def service_session(fast: bool, tmp_path, monkeypatch) -> list[Message]:
    """Join the lobby with two sockets, ping, shout: what the shouting socket receives."""
    monkeypatch.setattr(ws_fastpath, "FAST", fast)
    monkeypatch.setattr(app_module, "COMPONENTS", {})
    config = ServiceConfig(host="127.0.0.1", port=0, data_dir=tmp_path / str(fast), auth=False)
    service = Service(config)
    host, port = await service.start()
    url = f"ws://{host}:{port}/socket/websocket?vsn={VSN}"
    got = []
    try:
        async with connect(url + "&user=a") as a, connect(url + "&user=b") as b:
            for ws in (a, b):
                await ws.send(
                    encode(
                        Message("1", "1", "lobby", "phx_join", {"presence": False}), sender="client"
                    )
                )
                assert (
                    decode(await asyncio.wait_for(ws.recv(), WAIT_S), sender="server").payload[
                        "status"
                    ]
                    == "ok"
                )
            await a.send(encode(Message("1", "2", "lobby", "ping", {"n": 1}), sender="client"))
            await a.send(encode(Message("1", "3", "lobby", "ping", b"\x00raw"), sender="client"))
            await a.send(
                encode(Message("1", "4", "lobby", "shout", {"hi": "all"}), sender="client")
            )
            for _ in range(4):
                got.append(decode(await asyncio.wait_for(a.recv(), WAIT_S), sender="server"))
            got.append(decode(await asyncio.wait_for(b.recv(), WAIT_S), sender="server"))
    finally:
        await service.stop(1)
    return got


async def test_the_service_answers_and_broadcasts_the_same_on_both_paths(tmp_path, monkeypatch):
    fast = await service_session(True, tmp_path, monkeypatch)
    public = await service_session(False, tmp_path, monkeypatch)
    assert fast == public
    assert sorted((m.event, m.ref) for m in fast) == sorted(
        [
            ("phx_reply", "2"),
            ("phx_reply", "3"),
            ("shout", None),
            ("phx_reply", "4"),
            ("shout", None),
        ]
    )
    assert Message.reply("1", "3", "lobby", "ok", b"\x00raw") in fast
