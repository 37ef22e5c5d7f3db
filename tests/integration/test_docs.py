"""doc:* end to end: the real service in a subprocess, real sockets, our client.state."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pycrdt import Doc, Map, Text, create_update_message
from veraltheim.client.net.push import JoinError
from veraltheim.client.net.socket import Socket
from veraltheim.client.state.cache import DocCache
from veraltheim.client.state.notes import Notes
from veraltheim.client.state.run_history import RunHistory
from veraltheim.client.state.shared_doc import SharedDoc
from veraltheim.client.state.store import DocumentStore
from veraltheim.protocol import encode
from veraltheim.protocol.ysync import create_sync_message

TIMEOUT_S = 15.0


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


class Client:
    """One user: a socket and a document store with its own cache."""

    def __init__(self, url: str, token: str | None, cache: Path) -> None:
        self.sock = Socket(url, token=token)
        self.store = DocumentStore(cache, self.sock)

    async def start(self) -> Client:
        await self.sock.connect()
        await self.sock.wait_connected(TIMEOUT_S)
        return self

    async def open(self, name: str, **kw) -> SharedDoc:
        doc = await self.store.open(name, **kw)
        await doc.wait_synced(TIMEOUT_S)
        return doc

    async def close(self) -> None:
        await self.store.aclose()
        await self.sock.disconnect()


@contextlib.asynccontextmanager
async def clients(svc, tmp_path: Path, *users: str) -> AsyncIterator[list[Client]]:
    made = []
    try:
        for i, user in enumerate(users):
            made.append(await Client(svc.ws_url, svc.token(user), tmp_path / f"c{i}").start())
        yield made
    finally:
        for c in made:
            await c.close()


def snapshot(doc: SharedDoc) -> tuple:
    return (
        Notes(doc).text,
        sorted(r["id"] for r in RunHistory(doc).items()),
        doc.doc.get("m", type=Map).to_py(),
    )


async def test_edits_reach_the_other_client_and_survive_a_restart(service, tmp_path):
    async with clients(service, tmp_path, "ann", "bob") as (a, b):
        da, db = await a.open("lab"), await b.open("lab")
        seen = asyncio.Event()
        RunHistory(db).on_change(seen.set)
        RunHistory(da).append({"id": "r1", "kernel": "image.blur", "status": "done", "size": 3})
        await asyncio.wait_for(seen.wait(), TIMEOUT_S)
        assert RunHistory(db).get("r1")["size"] == 3
        await da.flush()
        assert da.pending == 0
    service.stop()
    service.start()
    async with clients(service, tmp_path / "fresh", "cy") as (c,):
        dc = await c.open("lab")
        assert [r["id"] for r in RunHistory(dc).items()] == ["r1"]


async def test_edits_on_both_sides_while_disconnected_merge(service, tmp_path):
    async with clients(service, tmp_path, "ann", "bob") as (a, b):
        da, db = await a.open("merge"), await b.open("merge")
        Notes(da).append("base ")
        await wait_until(lambda: Notes(db).text == "base ")
        await a.sock.disconnect()
        Notes(da).append("from-a ")
        da.doc.get("m", type=Map)["a"] = 1
        Notes(db).insert(0, "from-b ")
        db.doc.get("m", type=Map)["b"] = 2
        await db.flush()
        assert da.pending == 2  # waiting in a's cache
        await a.sock.connect()
        await wait_until(lambda: snapshot(da) == snapshot(db) and da.pending == 0)
        assert sorted(Notes(da).text.split()) == ["base", "from-a", "from-b"]
        assert da.doc.get("m", type=Map).to_py() == {"a": 1.0, "b": 2.0}


async def test_reconnect_sends_only_what_was_missed(service, tmp_path):
    async with clients(service, tmp_path, "ann", "bob") as (a, b):
        da, db = await a.open("big"), await b.open("big")
        m = da.doc.get("m", type=Map)
        with da.doc.transaction():
            for i in range(5000):
                m[f"key{i}"] = i
        await da.flush()
        await wait_until(lambda: len(db.doc.get("m", type=Map)) == 5000)
        await b.sock.disconnect()
        for i in range(10):
            m[f"new{i}"] = i
        await da.flush()
        frames: list[int] = []

        def count(direction: str, msg) -> None:
            frame = encode(msg, sender="server" if direction == "in" else "client")
            frames.append(len(frame))

        b.sock.on_frame(count)
        await b.sock.connect()
        await wait_until(lambda: len(db.doc.get("m", type=Map)) == 5010)
        full = len(db.doc.get_update())
        assert sum(frames) < full / 20, (sum(frames), full)


async def test_awareness_and_presence(service, tmp_path):
    async with clients(service, tmp_path, "ann", "bob") as (a, b):
        da, db = await a.open("aw"), await b.open("aw")
        da.set_awareness({"user": "ann", "cursor": 1})
        await wait_until(lambda: {"user": "ann", "cursor": 1} in db.peers().values())
        await wait_until(lambda: db.members() == ["ann", "bob"])
        await a.store.close("aw")
        await wait_until(lambda: not db.peers() and db.members() == ["bob"])


async def test_read_only_joins_drop_updates(service, tmp_path):
    async with clients(service, tmp_path, "ann") as (a,):
        da = await a.open("ro")
        Notes(da).append("original")
        await da.flush()
    for how in ("param", "claim"):
        token = service.token("viewer", 3600, *(["--read-only"] if how == "claim" else []))
        sock = Socket(service.ws_url, token=token)
        await sock.connect()
        try:
            ch = sock.channel("doc:ro", {"read_only": True} if how == "param" else {})
            assert (await ch.join())["read_only"] is True
            other = Doc()
            other.get("notes", type=Text).insert(0, "vandalism ")
            reply = await ch.push("yjs", create_update_message(other.get_update()))
            assert reply.status == "error" and reply.response["reason"] == "read_only", how
            # the read-only member still gets the document
            await ch.push("yjs_sync", create_sync_message(Doc()))
        finally:
            await sock.disconnect()
    async with clients(service, tmp_path / "check", "cy") as (c,):
        assert Notes(await c.open("ro")).text == "original"


async def test_corrupt_update_is_refused_and_stored_state_untouched(service, tmp_path):
    async with clients(service, tmp_path, "ann") as (a,):
        da = await a.open("corrupt")
        Notes(da).append("kept")
        await da.flush()
        ch = a.sock.channel("doc:corrupt")
        await ch.join()
        good = Doc()
        good.get("notes", type=Text).insert(0, "x")
        for payload, reason in [
            (create_update_message(b"\x05\xffgarbage"), "bad_update"),
            (create_update_message(good.get_update()[:-4]), "bad_update"),
            (b"\x00\x01\x09ab", "bad_message"),
            (b"\x09", "bad_message"),
            ({"not": "binary"}, "bad_message"),
        ]:
            reply = await ch.push("yjs", payload)
            assert (reply.status, reply.response["reason"]) == ("error", reason), payload
        assert Notes(da).text == "kept"
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(service.http_url + "/metrics", timeout=10).read()
        )
        assert 'veraltheim_doc_updates_refused_total{reason="bad_update"} 2' in metrics.decode()
    service.stop()
    service.start()
    async with clients(service, tmp_path / "after", "bob") as (b,):
        assert Notes(await b.open("corrupt")).text == "kept"


async def test_limits(service_factory, tmp_path):
    svc = service_factory(
        env={
            "VERALTHEIM_DOCS_MAX_UPDATE_BYTES": "2000",
            "VERALTHEIM_DOCS_UPDATES_PER_S": "2",
            "VERALTHEIM_DOCS_MAX_DOCS_PER_USER": "2",
        }
    )
    sock = Socket(svc.ws_url, token=svc.token("ann"))
    await sock.connect()
    try:
        chans = [sock.channel(f"doc:lim{i}") for i in range(3)]
        await chans[0].join()
        await chans[1].join()
        with pytest.raises(JoinError) as refused:
            await chans[2].join()
        assert refused.value.response["reason"] == "too_many_documents"

        big = Doc()
        big.get("notes", type=Text).insert(0, "x" * 3000)
        reply = await chans[0].push("yjs", create_update_message(big.get_update()))
        assert reply.response["reason"] == "too_large"

        statuses = []
        for i in range(12):  # a burst of 4 (2 s worth) passes, then the bucket is empty
            d = Doc()
            d.get("m", type=Map)[f"k{i}"] = i
            statuses.append(await chans[0].push("yjs", create_update_message(d.get_update())))
        assert [r.status for r in statuses[:4]] == ["ok"] * 4
        assert statuses[-1].response["reason"] == "rate_limited"
    finally:
        await sock.disconnect()


# -- crashes ---------------------------------------------------------------------------------


async def test_service_killed_during_edits_loses_nothing(service, tmp_path):
    """SIGKILL the service while two clients stream edits; restart it; every edit is there."""
    async with clients(service, tmp_path, "ann", "bob") as (a, b):
        docs = [await a.open("crash"), await b.open("crash")]
        killed = asyncio.Event()

        async def stream(doc: SharedDoc, tag: str) -> None:
            history = RunHistory(doc)
            for i in range(60):
                history.append({"id": f"{tag}{i}", "kernel": "k", "status": "done"})
                if i == 20 and tag == "a":
                    service.kill()
                    killed.set()
                await asyncio.sleep(0.005)  # a user-paced stream, not a timing wait

        await asyncio.gather(stream(docs[0], "a"), stream(docs[1], "b"))
        assert killed.is_set()
        service.start()  # same data dir, new port
        for c in (a, b):
            c.sock.url = service.ws_url
            c.sock.retry_now()
        for d in docs:
            await d.flush(timeout=30)
        expected = sorted([f"a{i}" for i in range(60)] + [f"b{i}" for i in range(60)])
        await wait_until(lambda: all(snapshot(d)[1] == expected for d in docs))
    service.kill()  # again, with nothing in flight: the store alone must hold everything
    service.start()
    async with clients(service, tmp_path / "check", "cy") as (c,):
        assert snapshot(await c.open("crash"))[1] == expected


CLIENT_SCRIPT = r"""
import asyncio, sys
from veraltheim.client.net.socket import Socket
from veraltheim.client.state.run_history import RunHistory
from veraltheim.client.state.store import DocumentStore

async def main(cache, url, token, mode):
    # edit-offline: no service at all; edit-online: connected, edits in flight when killed
    sock = None if mode == "edit-offline" else Socket(url, token=token)
    store = DocumentStore(cache, sock)
    if sock is not None:
        await sock.connect()
    doc = await store.open("killed")
    if mode.startswith("edit"):
        history = RunHistory(doc)
        for i in range(100000):
            history.append({"id": f"run{i}", "kernel": "k", "status": "done"})
            print(i, flush=True)  # committed to the cache before this line
            await asyncio.sleep(0.002)
    await doc.wait_synced(15)
    await doc.flush(15)
    print("synced", len(RunHistory(doc)), flush=True)
    await store.aclose()
    await sock.disconnect()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("mode", ["edit-offline", "edit-online"])
async def test_killed_client_sends_its_unacknowledged_edits_on_the_next_start(
    service, tmp_path, mode
):
    """SIGKILL a client process during a stream of edits (made offline, or online with some in
    flight); the next start of that client brings every edit it had made to the service."""
    cache = tmp_path / "client-cache"
    args = [str(cache), service.ws_url, service.token("ann")]
    editor = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT_SCRIPT,
        *args,
        mode,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert editor.stdout is not None
    done = []
    try:
        while len(done) < 40:
            line = await asyncio.wait_for(editor.stdout.readline(), TIMEOUT_S)
            assert line, "the editing client exited early"
            done.append(int(line))
    finally:
        os.killpg(editor.pid, signal.SIGKILL)
        await editor.wait()
    if mode == "edit-offline":
        assert DocCache(cache).pending("killed") >= len(done)  # all of it is left to send
    syncer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT_SCRIPT, *args, "sync", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(syncer.communicate(), 60)
    assert syncer.returncode == 0 and out.decode().startswith("synced")
    assert DocCache(cache).pending("killed") == 0
    async with clients(service, tmp_path, "bob") as (b,):
        ids = {r["id"] for r in RunHistory(await b.open("killed")).items()}
    assert {f"run{i}" for i in done} <= ids


async def test_a_large_document_made_offline_reaches_the_service_in_parts(service, tmp_path):
    """What the service lacks can exceed max_update_bytes (1 MiB): it goes as several pushes."""
    cache = tmp_path / "offline"
    offline = DocumentStore(cache)
    doc = await offline.open("large")
    m = doc.doc.get("m", type=Map)
    for start in range(0, 60_000, 10_000):
        with doc.doc.transaction():
            for i in range(start, start + 10_000):
                m[f"entry{i}"] = i
    assert len(doc.doc.get_update()) > 1024 * 1024
    sock = Socket(service.ws_url, token=service.token("ann"))
    await sock.connect()
    offline.attach(sock)
    await doc.wait_synced(TIMEOUT_S)
    await doc.flush(TIMEOUT_S)
    await offline.aclose()
    await sock.disconnect()
    async with clients(service, tmp_path, "bob") as (b,):
        assert len((await b.open("large")).doc.get("m", type=Map)) == 60_000


async def test_documents_unload_after_the_last_member_leaves(service_factory, tmp_path):
    svc = service_factory(env={"VERALTHEIM_DOCS_IDLE_UNLOAD_S": "0.2"})

    def loaded() -> float:
        body = urllib.request.urlopen(svc.http_url + "/metrics", timeout=10).read().decode()
        line = next(x for x in body.splitlines() if x.startswith("veraltheim_docs_loaded "))
        return float(line.split()[1])

    async def wait_loaded(n: float) -> None:
        async def poll() -> None:
            while await asyncio.to_thread(loaded) != n:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), TIMEOUT_S)

    async with clients(svc, tmp_path, "ann") as (a,):
        doc = await a.open("idle")
        Notes(doc).append("stays")
        await doc.flush()
        await wait_loaded(1)
        await a.store.close("idle")
        await wait_loaded(0)
    async with clients(svc, tmp_path / "again", "bob") as (b,):
        assert Notes(await b.open("idle")).text == "stays"  # loaded again from the store
        await wait_loaded(1)


async def test_offline_edits_reach_a_service_with_a_small_update_limit(service_factory, tmp_path):
    """The join reply tells max_update_bytes: the client's sync answer and batches stay under it
    (a service limit below the client's own batch size must not leave edits pending forever)."""
    svc = service_factory(env={"VERALTHEIM_DOCS_MAX_UPDATE_BYTES": "4000"})
    offline = DocumentStore(tmp_path / "offline")
    doc = await offline.open("small")
    for i in range(200):  # 200 small transactions, about 10 KB together
        Notes(doc).append(f"line {i:03d} of the offline notes\n")
    assert len(doc.doc.get_update()) > 4000
    sock = Socket(svc.ws_url, token=svc.token("ann"))
    await sock.connect()
    try:
        offline.attach(sock)
        await doc.wait_synced(TIMEOUT_S)
        await doc.flush(TIMEOUT_S)
        for i in range(200):  # and online edits made in one burst go in parts too
            Notes(doc).append(f"line {i:03d} typed online, quickly\n")
        await doc.flush(TIMEOUT_S)
    finally:
        await offline.aclose()
        await sock.disconnect()
    async with clients(svc, tmp_path, "bob") as (b,):
        assert Notes(await b.open("small")).text.count("\n") == 400


async def test_flush_of_a_read_only_document_says_so_at_once(service, tmp_path):
    async with clients(service, tmp_path, "ann") as (a,):
        doc = await a.open("viewed", read_only=True)
        assert doc.read_only
        await doc.flush(timeout=2)  # nothing local: nothing to wait for
        Notes(doc).append("mine only")
        with pytest.raises(PermissionError, match="read-only"):
            await doc.flush(timeout=2)
        assert doc.pending == 1  # kept in the cache, never sent
