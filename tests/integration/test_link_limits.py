"""Every limit on a real service: frame size (1009), channels per socket, rate limits per socket
and per user (error reply, then 1008 for a flood), the idle close (4000), slow reader eviction
(4001). Each limit leaves the other sockets working."""

import asyncio

import pytest
from veraltheim.protocol import Message
from veraltheim.protocol.constants import (
    CLOSE_IDLE_TIMEOUT,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_SLOW_READER,
)
from websockets.exceptions import ConnectionClosed

from tests.support.phx_frames import (
    closed,
    http_get,
    join,
    metric,
    open_socket,
    push,
    recv,
    send,
    until,
)
from tests.support.service import running_service

BASE = {"VERALTHEIM_COMPUTE_WORKERS": "1"}
LIMITS = {
    **BASE,
    "VERALTHEIM_MAX_FRAME_BYTES": "4096",
    "VERALTHEIM_MAX_CHANNELS_PER_SOCKET": "1",
    # almost no refill: the bursts alone decide, whatever the machine's speed
    "VERALTHEIM_SOCKET_RATE": "0.001",
    "VERALTHEIM_SOCKET_BURST": "6",
    "VERALTHEIM_USER_RATE": "0.001",
    "VERALTHEIM_USER_BURST": "10",
    "VERALTHEIM_FLOOD_CLOSE_AFTER": "5",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("limits"), env=LIMITS) as s:
        yield s


async def test_a_frame_over_max_frame_bytes_closes_with_1009(svc):
    other = await open_socket(svc.ws_url, "frame-ok")
    await join(other, payload={"presence": False})
    ws = await open_socket(svc.ws_url, "frame-big")
    await join(ws, payload={"presence": False})
    await send(ws, Message("1", "2", "lobby", "ping", b"x" * 5000))
    code, _ = await closed(ws)
    assert code == CLOSE_MESSAGE_TOO_BIG
    assert (await push(other, "ping", {"a": 1}, "2"))["response"] == {"a": 1}
    await other.close()


async def test_channels_per_socket(svc):
    ws = await open_socket(svc.ws_url, "chan-limit")
    assert (await join(ws, payload={"presence": False}))["status"] == "ok"
    refused = await join(ws, topic="doc:chan-limit", join_ref="2")
    assert refused == {"status": "error", "response": {"reason": "too many channels", "limit": 1}}
    # rejoining the joined topic is a duplicate join, not a new channel: allowed
    assert (await join(ws, join_ref="3", payload={"presence": False}))["status"] == "ok"
    await ws.close()


async def test_socket_rate_limit_replies_rate_limited_then_closes_a_flood_with_1008(svc):
    ws = await open_socket(svc.ws_url, "flooder")
    await join(ws, payload={"presence": False})  # 1 of the burst of 6
    for i in range(5):
        assert (await push(ws, "ping", {"i": i}, f"ok{i}"))["status"] == "ok"
    for i in range(4):  # over the limit: error replies, the socket stays open
        reply = await push(ws, "ping", {"i": i}, f"over{i}")
        assert reply == {"status": "error", "response": {"reason": "rate_limited"}}
    await send(ws, Message("1", "last", "lobby", "ping", {}))  # the 5th in a row: closed
    code, reason = await closed(ws)
    assert code == CLOSE_POLICY_VIOLATION and "rate limit" in reason
    status, _, text = await asyncio.to_thread(http_get, svc.http_url + "/metrics")
    assert status == 200
    assert metric(text, 'veraltheim_sockets_closed_by_service_total{reason="flood"}') >= 1


async def test_user_rate_limit_is_shared_by_the_users_sockets(svc):
    a = await open_socket(svc.ws_url, "shared-user")
    b = await open_socket(svc.ws_url, "shared-user")
    await join(a, payload={"presence": False})  # user tokens: 1 of 10
    await join(b, payload={"presence": False})  # 2
    for i in range(4):  # 3..6 on a, within a's socket burst
        assert (await push(a, "ping", {}, f"a{i}"))["status"] == "ok"
    for i in range(4):  # 7..10 on b
        assert (await push(b, "ping", {}, f"b{i}"))["status"] == "ok"
    # b's own socket bucket has tokens left, but the user's is empty
    assert (await push(b, "ping", {}, "b-over"))["response"] == {"reason": "rate_limited"}
    other = await open_socket(svc.ws_url, "someone-else")
    await join(other, payload={"presence": False})
    assert (await push(other, "ping", {}, "x"))["status"] == "ok"
    await asyncio.gather(a.close(), b.close(), other.close())


async def test_idle_socket_is_closed_with_4000_while_a_talking_one_stays(service_factory):
    svc = service_factory(env={**BASE, "VERALTHEIM_IDLE_TIMEOUT_S": "0.6"})
    idle = await open_socket(svc.ws_url, "idle")
    talker = await open_socket(svc.ws_url, "talker")
    idle_closed = asyncio.create_task(closed(idle))
    n = 0
    while not idle_closed.done():  # a client heartbeat, far more often than the timeout
        n += 1
        await send(talker, Message(None, f"hb{n}", "phoenix", "heartbeat", {}))
        assert (await until(talker, "phx_reply", f"hb{n}", topic="phoenix")).payload[
            "status"
        ] == "ok"
        await asyncio.wait([idle_closed], timeout=0.1)
    code, reason = idle_closed.result()
    assert code == CLOSE_IDLE_TIMEOUT and "idle timeout" in reason
    assert n >= 3  # the talker outlived the idle timeout several heartbeats over
    await send(talker, Message(None, "last", "phoenix", "heartbeat", {}))
    assert (await recv(talker)).payload["status"] == "ok"
    await talker.close()


SLOW_READER = 'veraltheim_sockets_closed_by_service_total{reason="slow_reader"}'


async def slow_reader_pair(service_factory, other: str):
    """A service with a 64 KiB send buffer, a socket that joins the lobby and never reads, and
    one that reads (`other`)."""
    svc = service_factory(
        env={**BASE, "VERALTHEIM_SEND_BUFFER_BYTES": "65536", "VERALTHEIM_SOCKET_RATE": "0"}
    )
    # max_queue=1: the client library stops reading the TCP socket once one message waits
    slow = await open_socket(svc.ws_url, "slow", max_queue=1)
    await join(slow, payload={"presence": False})
    reader = await open_socket(svc.ws_url, other)
    await join(reader, payload={"presence": False})
    return svc, slow, reader


async def evicted_while(svc, send_one, times: int) -> bool:
    """send_one(i) up to `times` times, until /metrics counts a slow reader evicted."""
    for i in range(times):
        try:
            await send_one(i)
        except ConnectionClosed:
            break
        if i % 10 == 9:
            text = (await asyncio.to_thread(http_get, svc.http_url + "/metrics"))[2]
            if metric(text, SLOW_READER) >= 1:
                return True
    return False


async def test_a_client_too_slow_to_read_is_evicted_with_4001(service_factory):
    svc, slow, fine = await slow_reader_pair(service_factory, "fine")
    blob = b"\x00" * 256 * 1024

    async def ping(i: int) -> None:
        await send(slow, Message("1", f"p{i}", "lobby", "ping", blob))

    # up to 100 MiB of replies; kernel buffers hold a few MiB
    assert await evicted_while(svc, ping, 400), "the client that does not read was not evicted"
    code, reason = await closed(slow)
    assert code == CLOSE_SLOW_READER and "too slow" in reason
    assert (await push(fine, "ping", {"ok": 1}, "f"))["response"] == {"ok": 1}
    await fine.close()


async def test_a_client_that_only_gets_broadcasts_and_does_not_read_is_evicted(service_factory):
    svc, slow, shouter = await slow_reader_pair(service_factory, "shouter")
    blob = "x" * 200_000

    async def shout(i: int) -> None:
        assert (await push(shouter, "shout", {"b": blob}, f"s{i}"))["status"] == "ok"

    # up to 80 MB of broadcasts, nothing sent by the slow one itself
    assert await evicted_while(svc, shout, 400), "the subscriber that does not read stayed"
    code, reason = await closed(slow)
    assert code == CLOSE_SLOW_READER and "too slow" in reason
    assert (await push(shouter, "ping", {"ok": 1}, "after"))["response"] == {"ok": 1}
    await shouter.close()
