"""client.net against the real service in a subprocess: join, push/reply (JSON and binary),
broadcast, presence, refused tokens, fresh tokens, restarts, push timeouts."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import urllib.request

import pytest
from veraltheim.client.net.presence import Presence
from veraltheim.client.net.push import PushTimeout, Reply
from veraltheim.client.net.socket import Socket
from veraltheim.client.net.state import ConnectionState
from veraltheim.protocol.backoff import Backoff
from veraltheim.protocol.channel_client import ChannelState
from veraltheim.service.auth import issue_token
from veraltheim.service.tls import make_dev_cert

from tests.support.service import TEST_SECRET

WAIT_S = 20.0
FAST = Backoff(initial_s=0.02, factor=2.0, max_s=0.5)


def token_for(svc, user: str):
    """An async token callback: a freshly signed token on every connect."""
    return lambda: asyncio.to_thread(svc.token, user)


async def until_state(sock: Socket, state: ConnectionState) -> None:
    changed = asyncio.Event()
    ref = sock.on_state(lambda s: changed.set())
    try:
        async with asyncio.timeout(WAIT_S):
            while sock.state != state:
                changed.clear()
                await changed.wait()
    finally:
        sock.off(ref)


async def refused_handshakes(svc, status: int = 403) -> int:
    def fetch() -> str:
        with urllib.request.urlopen(svc.http_url + "/metrics", timeout=10) as response:
            return response.read().decode()

    text = await asyncio.to_thread(fetch)
    pattern = rf'^veraltheim_handshakes_refused_total{{status="{status}"}} (\d+)$'
    match = re.search(pattern, text, re.M)
    return int(match.group(1)) if match else 0


async def test_connect_join_lobby_push_json_and_binary(service, sockets):
    sock = sockets(service.ws_url, token=token_for(service, "alice"))
    await sock.connect()
    assert sock.state == ConnectionState.CONNECTED
    lobby = sock.channel("lobby")
    assert await lobby.join() == {"user": "alice"}
    assert await lobby.push("ping", {"n": 1, "text": "héllo"}) == Reply(
        "ok", {"n": 1, "text": "héllo"}
    )
    blob = bytes(range(256)) * 4
    reply = await lobby.push("ping", blob)
    assert reply.ok and reply.response == blob
    assert (await lobby.push("no-such-event", {})).status == "error"
    assert await sock.ping() > 0 and sock.rtt_ms is not None


async def test_token_as_query_param_works_too(service, sockets):
    sock = sockets(service.ws_url, token=token_for(service, "qp"), token_in="param")
    await sock.connect()
    assert await sock.channel("lobby").join() == {"user": "qp"}


async def test_broadcast_reaches_the_other_client(service, sockets):
    a = sockets(service.ws_url, token=token_for(service, "alice"))
    b = sockets(service.ws_url, token=token_for(service, "bob"))
    await asyncio.gather(a.connect(), b.connect())
    lobby_a, lobby_b = a.channel("lobby"), b.channel("lobby")
    heard = asyncio.Queue()
    lobby_b.on("shout", heard.put_nowait)
    await asyncio.gather(lobby_a.join(), lobby_b.join())
    assert (await lobby_a.push("shout", {"hi": "bob"})).ok
    assert await asyncio.wait_for(heard.get(), WAIT_S) == {"hi": "bob"}
    assert (await lobby_a.push("shout", b"\x01\x02raw")).ok
    assert await asyncio.wait_for(heard.get(), WAIT_S) == b"\x01\x02raw"


async def test_presence_join_and_leave_seen_by_another_client(service, sockets):
    a = sockets(service.ws_url, token=token_for(service, "alice"))
    b = sockets(service.ws_url, token=token_for(service, "bob"))
    await asyncio.gather(a.connect(), b.connect())
    lobby_a = a.channel("lobby")
    presence = Presence(lobby_a)
    joined, left = asyncio.Queue(), asyncio.Queue()
    presence.on_join(lambda key, current, new: joined.put_nowait(key))
    presence.on_leave(lambda key, current, gone: left.put_nowait((key, current["metas"])))
    await lobby_a.join()
    assert await asyncio.wait_for(joined.get(), WAIT_S) == "alice"

    lobby_b = b.channel("lobby", {"meta": {"device": "laptop"}})
    await lobby_b.join()
    # alice may also see her own join again as a diff (phoenix does this too): wait for bob
    while await asyncio.wait_for(joined.get(), WAIT_S) != "bob":
        pass
    metas = dict(presence.list())["bob"]
    assert metas[0]["device"] == "laptop"
    assert sorted(key for key, _ in presence.list()) == ["alice", "bob"]

    await lobby_b.leave()
    assert await asyncio.wait_for(left.get(), WAIT_S) == ("bob", [])
    assert [key for key, _ in presence.list()] == ["alice"]


async def test_refused_token_goes_offline_without_a_retry_storm(service, sockets):
    forged = sockets(service.ws_url, token="forged.token.value")
    missing = sockets(service.ws_url)
    await asyncio.gather(forged.connect(), missing.connect())
    for sock in (forged, missing):
        assert sock.state == ConnectionState.OFFLINE
        assert "403" in sock.offline_reason
    assert "invalid" in forged.offline_reason and "missing" in missing.offline_reason
    assert await refused_handshakes(service) == 2

    # meanwhile a good client connects, joins, pushes: the refused ones stay quiet
    good = sockets(service.ws_url, token=token_for(service, "alice"))
    await good.connect()
    lobby = good.channel("lobby")
    await lobby.join()
    await lobby.push("ping", {})
    assert await refused_handshakes(service) == 2
    assert forged.handshakes == missing.handshakes == 1

    forged.token = token_for(service, "alice")  # told to retry with a token that works
    await forged.connect()
    assert forged.state == ConnectionState.CONNECTED


async def test_expired_token_is_refused(service, sockets):
    expired = issue_token(TEST_SECRET, "alice", 60, now=time.time() - 3600)
    sock = sockets(service.ws_url, token=expired)
    await sock.connect()
    assert sock.state == ConnectionState.OFFLINE and "expired" in sock.offline_reason


async def test_a_fresh_token_is_asked_for_on_every_reconnect(service, sockets):
    users = iter(["carol-1", "carol-2", "carol-3"])
    calls = []

    async def token():
        user = next(users)
        calls.append(user)
        return await asyncio.to_thread(service.token, user)

    sock = sockets(service.ws_url, token=token)
    await sock.connect()
    lobby = sock.channel("lobby")
    joins = asyncio.Queue()
    lobby.on_join(joins.put_nowait)
    await lobby.join()
    assert await joins.get() == {"user": "carol-1"}
    await sock.reconnect()
    assert await asyncio.wait_for(joins.get(), WAIT_S) == {"user": "carol-2"}
    assert calls == ["carol-1", "carol-2"]


@pytest.mark.slow
async def test_graceful_restart_on_the_same_port_rejoins_and_flushes(service, sockets):
    port = service.port
    sock = sockets(service.ws_url, token=token_for(service, "alice"))
    await sock.connect()
    lobby = sock.channel("lobby")
    joins = asyncio.Queue()
    lobby.on_join(joins.put_nowait)
    await lobby.join()
    await joins.get()
    first_join_ref = lobby.join_ref

    await asyncio.to_thread(service.stop)
    await until_state(sock, ConnectionState.RECONNECTING)
    assert sock.last_close[0] == 1001
    buffered = [lobby.push("ping", {"n": i}, timeout=60) for i in range(3)]
    buffered.append(lobby.push("ping", b"\x00binary", timeout=60))
    assert lobby.buffered == 4

    service.args += ["--port", str(port)]
    await asyncio.to_thread(service.start)
    await asyncio.wait_for(joins.get(), WAIT_S)
    replies = await asyncio.gather(*buffered)
    assert [r.response for r in replies] == [{"n": 0}, {"n": 1}, {"n": 2}, b"\x00binary"]
    assert lobby.state == ChannelState.JOINED and lobby.join_ref != first_join_ref


@pytest.mark.slow
async def test_killed_service_back_on_a_new_port(service, sockets):
    a = sockets(service.ws_url, token=token_for(service, "alice"))
    b = sockets(service.ws_url, token=token_for(service, "bob"))
    await asyncio.gather(a.connect(), b.connect())
    lobby_a, lobby_b = a.channel("lobby"), b.channel("lobby")
    heard, b_joins = asyncio.Queue(), asyncio.Queue()
    lobby_b.on("shout", heard.put_nowait)
    lobby_b.on_join(b_joins.put_nowait)
    await asyncio.gather(lobby_a.join(), lobby_b.join())
    await b_joins.get()

    await asyncio.to_thread(service.kill)
    await asyncio.gather(
        until_state(a, ConnectionState.RECONNECTING), until_state(b, ConnectionState.RECONNECTING)
    )
    with pytest.raises(PushTimeout):
        await lobby_a.push("ping", {"lost": True}, timeout=0.2)
    shout = lobby_a.push("shout", {"after": "restart"}, timeout=60)

    await asyncio.to_thread(service.start)  # same data dir, a new port
    b.url = service.ws_url
    b.retry_now()
    await asyncio.wait_for(b_joins.get(), WAIT_S)  # b listens again before a's shout goes out
    a.url = service.ws_url
    a.retry_now()
    assert (await shout).ok
    assert await asyncio.wait_for(heard.get(), WAIT_S) == {"after": "restart"}


async def test_wss_with_a_trusted_dev_cert_and_an_untrusted_one(service_factory, sockets, tmp_path):
    cert, key = make_dev_cert(tmp_path / "certs")
    svc = service_factory("--certfile", str(cert), "--keyfile", str(key))
    assert svc.ws_url.startswith("wss://")
    trusted = ssl.create_default_context(cafile=str(cert))
    sock = sockets(svc.ws_url, token=token_for(svc, "tess"), ssl=trusted)
    await sock.connect()
    assert await sock.channel("lobby").join() == {"user": "tess"}

    doubtful = sockets(svc.ws_url, token=token_for(svc, "tess"), ssl=ssl.create_default_context())
    await doubtful.connect()
    assert doubtful.state == ConnectionState.OFFLINE
    assert "certificate" in doubtful.offline_reason and doubtful.handshakes == 1


async def test_heartbeats_are_answered_and_keep_the_link_up(service, sockets):
    sock = sockets(service.ws_url, token=token_for(service, "alice"), heartbeat_interval_s=0.1)
    replies = asyncio.Queue()
    sock.on_frame(
        lambda direction, msg: (
            replies.put_nowait(msg.ref) if direction == "in" and msg.topic == "phoenix" else None
        )
    )
    await sock.connect()
    for _ in range(5):  # the first right after connecting, then one per interval
        await asyncio.wait_for(replies.get(), WAIT_S)
    assert sock.state == ConnectionState.CONNECTED and sock.handshakes == 1
    assert sock.rtt_ms is not None and 0 < sock.rtt_ms < WAIT_S * 1000
