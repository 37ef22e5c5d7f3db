"""Nodes on Redis pub/sub: three real service nodes and a real redis-server, raw Phoenix frames.

Broadcasts and presence cross nodes; a killed node's presence entries leave the others within
the stated bound; Redis going away shows in /healthz and the log, each node keeps serving its
own clients, and presence catches up when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from veraltheim.protocol import Message

from tests.support.phx_frames import http_get, join, open_socket, send, until

pytestmark = pytest.mark.slow

HEARTBEAT_S, DOWN_AFTER_S = 0.2, 1.0
# presence.py's bound: down_after_s + heartbeat_s / 2 after the last heartbeat; the margin is
# for a loaded 2-core machine (the socket read, the subprocess being scheduled)
LEAVE_BOUND_S = DOWN_AFTER_S + HEARTBEAT_S / 2 + 2.0


@pytest.fixture
def nodes(redis, service_factory):
    def start(n: int = 3):
        return [
            service_factory(
                "--pubsub",
                redis.url,
                "--node-name",
                f"n{i}",
                env={
                    "VERALTHEIM_COMPUTE_WORKERS": "1",
                    "VERALTHEIM_CLUSTER_HEARTBEAT_S": str(HEARTBEAT_S),
                    "VERALTHEIM_CLUSTER_DOWN_AFTER_S": str(DOWN_AFTER_S),
                },
            )
            for i in range(n)
        ]

    return start


def health(node) -> dict:
    status, _, body = http_get(node.http_url + "/healthz")
    assert status == 200
    return json.loads(body)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    """Poll a condition that lives in another process (no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


async def until_diff(ws, *, joins=None, leaves=None, topic="lobby"):
    while True:
        msg = await until(ws, "presence_diff", topic=topic)
        if (joins and joins in msg.payload["joins"]) or (
            leaves and leaves in msg.payload["leaves"]
        ):
            return msg


async def test_broadcast_and_presence_reach_clients_on_every_node(nodes):
    a, b, c = nodes(3)
    await wait_until(
        lambda: all(health(n)["cluster"]["pubsub"]["nodes_seen"] == 2 for n in (a, b, c))
    )
    wa = await open_socket(a.ws_url, "ann")
    await join(wa, payload={"meta": {"where": "a"}})
    assert set((await until(wa, "presence_state")).payload) == {"ann"}

    wb = await open_socket(b.ws_url, "bob")
    await join(wb, payload={"meta": {"where": "b"}})
    state = (await until(wb, "presence_state")).payload
    assert "bob" in state
    if "ann" not in state:  # node a's news may reach node b just after bob's join (eventual)
        state = (await until_diff(wb, joins="ann")).payload["joins"]
    assert state["ann"]["metas"][0]["where"] == "a"  # ann's entry came from node a
    assert (await until_diff(wa, joins="bob")).payload["joins"]["bob"]["metas"][0]["where"] == "b"

    wc = await open_socket(c.ws_url, "cid")
    await join(wc, payload={"presence": False})
    # a shout on node c reaches the clients of a and b, once each, JSON and binary alike
    for ref, payload in (("2", {"hi": "all"}), ("3", b"\x00\x01bin")):
        await send(wc, Message("1", ref, "lobby", "shout", payload))
        got = await asyncio.gather(until(wa, "shout"), until(wb, "shout"), until(wc, "shout"))
        assert all(m == Message(None, None, "lobby", "shout", payload) for m in got)
        assert (await until(wc, "phx_reply", ref)).payload["status"] == "ok"
    await send(wa, Message(None, "hb", "phoenix", "heartbeat", {}))
    assert (await until(wa, "phx_reply", "hb", topic="phoenix")).ref == "hb"  # no second copy

    # bob leaves node b: ann on node a sees it
    await wb.close()
    assert (await until_diff(wa, leaves="bob")).payload["leaves"]["bob"]["metas"][0]["where"] == "b"
    await asyncio.gather(wa.close(), wc.close())


async def test_a_killed_nodes_presence_leaves_the_others_within_the_bound(nodes):
    a, b = nodes(2)
    await wait_until(lambda: health(a)["cluster"]["pubsub"]["nodes_seen"] == 1)
    wa = await open_socket(a.ws_url, "ann")
    await join(wa)
    await until(wa, "presence_state")
    wb = await open_socket(b.ws_url, "bob")
    await join(wb)
    await until_diff(wa, joins="bob")

    killed_at = time.monotonic()
    b.kill()  # SIGKILL: no goodbye, only silence
    left = await asyncio.wait_for(until_diff(wa, leaves="bob"), LEAVE_BOUND_S + 5)
    elapsed = time.monotonic() - killed_at
    assert left.payload["leaves"]["bob"]["metas"][0]["phx_ref"]
    assert DOWN_AFTER_S - HEARTBEAT_S <= elapsed <= LEAVE_BOUND_S, elapsed
    # and a presence_state taken now no longer has bob
    wa2 = await open_socket(a.ws_url, "amy")
    await join(wa2)
    assert set((await until(wa2, "presence_state")).payload) == {"ann", "amy"}
    await asyncio.gather(wa.close(), wa2.close())


async def test_redis_away_nodes_serve_their_own_clients_and_catch_up(nodes, redis):
    a, b = nodes(2)
    await wait_until(lambda: health(a)["cluster"]["pubsub"]["nodes_seen"] == 1)
    wa = await open_socket(a.ws_url, "ann")
    await join(wa)
    await until(wa, "presence_state")

    redis.kill()
    await wait_until(lambda: health(a)["status"] == "degraded")
    pubsub = health(a)["cluster"]["pubsub"]
    assert pubsub["redis"] == "down" and pubsub["redis_error"]
    assert any("lost Redis" in line for line in a.output)
    # node a still serves its own clients: a shout comes back, a local join shows up
    wa2 = await open_socket(a.ws_url, "amy")
    await join(wa2)
    await until_diff(wa, joins="amy")
    await send(wa2, Message("1", "2", "lobby", "shout", {"n": 1}))
    assert (await until(wa, "shout")).payload == {"n": 1}
    assert (await until(wa2, "phx_reply", "2")).payload["status"] == "ok"
    # node b no longer hears node a: after down_after_s it drops a's entries; bob joins b
    await wait_until(lambda: health(b)["cluster"]["pubsub"]["nodes_seen"] == 0)
    wb = await open_socket(b.ws_url, "bob")
    await join(wb)
    assert set((await until(wb, "presence_state")).payload) == {"bob"}

    redis.start()
    await wait_until(lambda: health(a)["status"] == "ok" and health(b)["status"] == "ok", 20)
    # caught up both ways: states are exchanged when the connection comes back
    await until_diff(wa, joins="bob")
    got = await until_diff(wb, joins="ann")
    assert "ann" in got.payload["joins"] or "amy" in got.payload["joins"]
    wb2 = await open_socket(b.ws_url, "bea")
    await join(wb2)
    assert set((await until(wb2, "presence_state")).payload) == {"ann", "amy", "bob", "bea"}
    await asyncio.gather(wa.close(), wa2.close(), wb.close(), wb2.close())
