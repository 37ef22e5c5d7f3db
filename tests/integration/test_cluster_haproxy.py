"""Three nodes, one Redis, haproxy in front (resources/haproxy/veraltheim.cfg), all real
processes; clients are the app's own (client.net Socket, client.state DocumentStore).

Clients spread over the nodes join one topic and one document; broadcasts, presence and edits
reach all of them; a node is killed and its clients reconnect through haproxy to another node
and rejoin with nothing lost; Redis is killed and restarted while they edit and nothing
acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from pycrdt import Array
from veraltheim.client.net.presence import Presence
from veraltheim.client.state.store import DocumentStore
from veraltheim.protocol.backoff import Backoff

from tests.support.cluster import Haproxy
from tests.support.phx_frames import http_get

pytestmark = pytest.mark.slow

FAST = Backoff(initial_s=0.05, factor=2.0, max_s=0.5)  # the sockets fixture's reconnect pace
CLIENTS = 6
WAIT_S = 30.0
ENV = {
    "VERALTHEIM_COMPUTE_WORKERS": "1",
    "VERALTHEIM_CLUSTER_HEARTBEAT_S": "0.2",
    "VERALTHEIM_CLUSTER_DOWN_AFTER_S": "1.0",
}


@pytest.fixture
def cluster(tmp_path, service_factory, redis):
    nodes = [
        service_factory("--no-auth", "--pubsub", redis.url, "--store", redis.url, env=ENV)
        for _ in range(3)
    ]
    lb = Haproxy(tmp_path, [n.port for n in nodes]).start()
    yield nodes, lb, redis
    lb.stop()
    for node in nodes:
        node.kill()


def sockets_on(node) -> int:
    try:
        status, _, body = http_get(node.http_url + "/healthz")
    except OSError:
        return -1
    return json.loads(body)["sockets"] if status == 200 else -1


async def until(predicate, what: str, timeout: float = WAIT_S) -> None:
    """Wait for a condition on client state fed by the network (no single event to await)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def values(doc) -> set[int]:
    return set(doc.doc.get("a", type=Array).to_py())


async def test_clients_through_haproxy_share_everything_and_survive_a_node(
    cluster, sockets, tmp_path
):
    nodes, lb, redis = cluster
    users = [f"u{i}" for i in range(CLIENTS)]
    socks = [sockets(lb.ws_url, params={"user": u}) for u in users]
    for sock in socks:  # one at a time, so leastconn spreads them
        await sock.connect()
    await until(lambda: sum(map(sockets_on, nodes)) == CLIENTS, "the sockets to show up")
    spread = [sockets_on(n) for n in nodes]
    assert all(count >= 1 for count in spread), spread  # every node serves some

    lobbies, presences, shouts = [], [], []
    for sock in socks:
        ch = sock.channel("lobby")
        presences.append(Presence(ch))
        got: list = []
        ch.on("shout", got.append)
        shouts.append(got)
        await ch.join()
        lobbies.append(ch)
    stores = [DocumentStore(tmp_path / f"cache{i}", s) for i, s in enumerate(socks)]
    docs = [await store.open("team") for store in stores]
    try:
        await asyncio.gather(*(d.wait_synced(WAIT_S) for d in docs))

        def everyone_once() -> bool:
            return all(
                sorted(p.state) == users and all(len(v["metas"]) == 1 for v in p.state.values())
                for p in presences
            )

        await until(everyone_once, "every client to see every other once")
        assert (await lobbies[0].push("shout", {"n": 1})).ok
        await until(lambda: all(got == [{"n": 1}] for got in shouts), "the shout on every node")
        for i, doc in enumerate(docs):
            doc.doc.get("a", type=Array).append(i)
        first = set(range(CLIENTS))
        await until(lambda: all(values(d) == first for d in docs), "the first edits everywhere")

        # kill the busiest node: its clients reconnect through haproxy to the others
        victim = max(nodes, key=sockets_on)
        moved = sockets_on(victim)
        victim.kill()
        for i, doc in enumerate(docs):  # edited at once, while some clients are cut off
            doc.doc.get("a", type=Array).append(100 + i)
        every = first | {100 + i for i in range(CLIENTS)}
        await until(lambda: all(values(d) == every for d in docs), "every edit after the kill")
        await asyncio.gather(*(d.flush(WAIT_S) for d in docs))  # all acknowledged
        survivors = [n for n in nodes if n is not victim]
        await until(lambda: sum(map(sockets_on, survivors)) == CLIENTS, "the moved sockets")
        assert moved >= 1
        # the dead node's presence entries left; the moved clients are back, once each
        await until(everyone_once, "presence to settle after the kill")
        assert (await lobbies[-1].push("shout", {"n": 2})).ok
        await until(lambda: all(got[-1] == {"n": 2} for got in shouts), "a shout after the kill")

        # a newcomer through haproxy reads the document from whichever node it lands on
        late_sock = sockets(lb.ws_url, params={"user": "late"})
        await late_sock.connect()
        late_store = DocumentStore(tmp_path / "late", late_sock)
        stores.append(late_store)
        late = await late_store.open("team")
        await late.wait_synced(WAIT_S)
        await until(lambda: values(late) == every, "the newcomer's copy")

        # Redis killed and restarted while every client edits: nothing acknowledged is lost
        redis.kill()
        for i, doc in enumerate(docs):
            doc.doc.get("a", type=Array).append(200 + i)
        redis.start()
        for i, doc in enumerate(docs):
            doc.doc.get("a", type=Array).append(300 + i)
        every |= {200 + i for i in range(CLIENTS)} | {300 + i for i in range(CLIENTS)}
        await asyncio.gather(*(d.flush(WAIT_S) for d in docs))  # every edit acknowledged
        await until(lambda: all(values(d) == every for d in docs), "the edits around the restart")
        await until(lambda: values(late) == every, "the newcomer after the restart")
        await until(everyone_once, "presence after the Redis restart")
    finally:
        for store in stores:
            await store.aclose()
