"""Documents in Redis (`--store redis://...`): real nodes, a real redis-server, raw Phoenix frames.

Two nodes serving one document converge; any node opens any document; killing every node loses
nothing; Redis killed and restarted under load loses no acknowledged edit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import pytest
from pycrdt import Doc, Map
from veraltheim.protocol import Message
from veraltheim.protocol.ysync import (
    YJS_EVENT,
    YJS_SYNC_EVENT,
    Kind,
    create_sync_message,
    create_update_message,
    parse_message,
)

from tests.support.phx_frames import WAIT_S, http_get, join, open_socket, send, until

pytestmark = pytest.mark.slow

ENV = {"VERALTHEIM_COMPUTE_WORKERS": "1", "VERALTHEIM_DOCS_COMPACT_EVERY": "7"}


@pytest.fixture
def node(redis, service_factory):
    def start():
        return service_factory("--pubsub", redis.url, "--store", redis.url, env=ENV)

    return start


class Editor:
    """One raw client editing a Map in one document and counting what was acknowledged."""

    refs = itertools.count(10)

    def __init__(self, ws, topic: str) -> None:
        self.ws, self.topic = ws, topic
        self.doc = Doc()
        self.acked: set[str] = set()
        self.refused: set[str] = set()

    @classmethod
    async def open(cls, url: str, name: str, user: str) -> Editor:
        ws = await open_socket(url, user)
        assert (await join(ws, f"doc:{name}"))["status"] == "ok"
        return cls(ws, f"doc:{name}")

    async def edit(self, key: str) -> bool:
        before = self.doc.get_state()
        self.doc.get("m", type=Map)[key] = 1
        update = self.doc.get_update(before)
        ref = str(next(self.refs))
        await send(self.ws, Message("1", ref, self.topic, YJS_EVENT, create_update_message(update)))
        reply = await until(self.ws, "phx_reply", ref, self.topic)
        ok = reply.payload["status"] == "ok"
        (self.acked if ok else self.refused).add(key)
        return ok


async def read(url: str, name: str) -> set[str]:
    """The keys a fresh client gets from the node at url (its sync step 2)."""
    ws = await open_socket(url, "reader")
    try:
        await join(ws, f"doc:{name}")
        step1 = create_sync_message(Doc())
        await send(ws, Message("1", "2", f"doc:{name}", YJS_SYNC_EVENT, step1))
        while True:
            msg = await until(ws, YJS_EVENT, topic=f"doc:{name}")
            parsed = parse_message(msg.payload)
            if parsed.kind is Kind.SYNC_STEP2:
                doc = Doc()
                doc.apply_update(parsed.data)
                return set(doc.get("m", type=Map).keys())
    finally:
        await ws.close()


async def eventually(check, timeout: float = WAIT_S):
    """Poll a condition held by other processes (no event to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_two_nodes_serving_one_document_converge_and_keep_it(node, redis):
    a, b = node(), node()
    ea, eb = (
        await Editor.open(a.ws_url, "shared", "ann"),
        await Editor.open(b.ws_url, "shared", "bob"),
    )

    async def run(editor: Editor, prefix: str) -> None:
        for i in range(30):
            assert await editor.edit(f"{prefix}{i}")

    await asyncio.gather(run(ea, "a"), run(eb, "b"))
    every = ea.acked | eb.acked
    assert len(every) == 60
    # each node's copy has the other node's edits (the store's tail), compacted or not
    for svc in (a, b):
        assert await eventually(lambda svc=svc: _has(svc.ws_url, "shared", every)), svc.ws_url
    health = json.loads(http_get(a.http_url + "/healthz")[2])
    assert health["cluster"]["docs"]["redis"] == "up"
    # a node that never had it opens it
    c = node()
    assert await read(c.ws_url, "shared") == every
    # every node killed: a new one has it all (Redis holds it)
    for svc in (a, b, c):
        svc.kill()
    redis.restart()  # and Redis itself restarted: its AOF has it
    assert await read(node().ws_url, "shared") == every
    await asyncio.gather(ea.ws.close(), eb.ws.close())


async def _has(url: str, name: str, keys: set[str]) -> bool:
    return keys <= await read(url, name)


async def test_redis_restarted_under_load_loses_no_acknowledged_edit(node, redis):
    a, b = node(), node()
    editors = [
        await Editor.open(a.ws_url, "busy", "ann"),
        await Editor.open(b.ws_url, "busy", "bob"),
        await Editor.open(a.ws_url, "busy", "amy"),
    ]
    stop = asyncio.Event()
    tried = 0

    async def run(editor: Editor, prefix: str) -> None:
        nonlocal tried
        for i in itertools.count():
            if stop.is_set():
                return
            await editor.edit(f"{prefix}{i}")
            tried += 1

    runners = [asyncio.create_task(run(e, p)) for e, p in zip(editors, "xyz", strict=True)]
    await eventually(lambda: _true(tried >= 30), 30)
    redis.kill()
    before_restart = tried
    await eventually(
        lambda: _true(json.loads(http_get(a.http_url + "/healthz")[2])["status"] == "degraded")
    )
    redis.start()
    await eventually(lambda: _true(tried >= before_restart + 30), 60)
    stop.set()
    await asyncio.gather(*runners)

    acked = set().union(*(e.acked for e in editors))
    assert len(acked) >= 60
    assert any("lost the Redis store" in line for line in a.output)
    for svc in (a, b):
        content = await eventually(lambda svc=svc: _has(svc.ws_url, "busy", acked), 20)
        assert content, f"{svc.ws_url} lost acknowledged edits"
    # and after a restart of every node, from Redis alone
    a.kill()
    b.kill()
    assert acked <= await read(node().ws_url, "busy")
    await asyncio.gather(*(e.ws.close() for e in editors))


async def _true(value: bool) -> bool:
    return value
