"""client.state offline: the cache keeps every edit across restarts, pending until acknowledged;
typed views over the raw Doc."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from pycrdt import Doc, Map, Text
from veraltheim.client.net.socket import Socket
from veraltheim.client.state.cache import DocCache
from veraltheim.client.state.notes import Notes
from veraltheim.client.state.run_history import RunHistory
from veraltheim.client.state.shared_doc import SharedDoc
from veraltheim.client.state.store import DocumentStore
from veraltheim.protocol.channel_client import ChannelState


async def test_documents_open_offline_and_survive_a_restart(tmp_path):
    store = DocumentStore(tmp_path / "cache.sqlite3")
    doc = await store.open("lab")
    history = RunHistory(doc)
    history.append({"kernel": "image.blur", "status": "done", "size": 1024, "user": "ann"})
    Notes(doc).append("hello")
    doc.doc.get("extra", type=Map)["k"] = "raw access"
    await store.aclose()

    again = DocumentStore(tmp_path / "cache.sqlite3")
    doc2 = await again.open("lab")
    runs = RunHistory(doc2).items()
    assert [(r["kernel"], r["status"], r["size"], r["user"]) for r in runs] == [
        ("image.blur", "done", 1024, "ann")
    ]
    assert Notes(doc2).text == "hello"
    assert doc2.doc.get("extra", type=Map)["k"] == "raw access"
    # never sent: all three edits are still waiting for the service
    assert doc2.pending == 3
    assert again.cached_names() == ["lab"]
    await again.aclose()


def test_compaction_keeps_pending_edits_and_the_state(tmp_path):
    cache = DocCache(tmp_path)
    doc = SharedDoc("d", cache, compact_every=10)
    m = doc.doc.get("m", type=Map)
    for i in range(25):
        m[f"k{i}"] = i
    assert cache.pending("d") == 25
    cache.acknowledge_upto("d", cache.load("d").last_seq - 5)
    doc.compact()
    assert cache.row_count("d") == 5  # only the unacknowledged rows stay beside the snapshot
    assert cache.pending("d") == 5
    reopened = SharedDoc("d", cache)
    assert reopened.doc.get("m", type=Map).to_py() == {f"k{i}": float(i) for i in range(25)}


async def test_a_local_edit_is_cached_with_the_remote_updates_it_builds_on(tmp_path):
    """Remote updates are cached in batches; a local edit on top of one must not reach the
    cache before it, or a client killed then would reopen offline without that edit."""
    cache = DocCache(tmp_path)
    doc = SharedDoc("d", cache)  # a running loop: remote updates wait for the batch timer
    other = Doc()
    other.get("t", type=Text).insert(0, "hello")
    doc._apply_remote(other.get_update())
    del doc.doc.get("t", type=Text)[0]  # the local edit builds on the remote text
    # the process dies here: a second reader sees only what is committed
    reopened = SharedDoc("d", DocCache(tmp_path))
    assert str(reopened.doc.get("t", type=Text)) == "ello"


def test_remote_updates_are_not_pending(tmp_path):
    cache = DocCache(tmp_path)
    doc = SharedDoc("d", cache)
    other = Doc()
    other.get("m", type=Map)["x"] = 1
    doc._apply_remote(other.get_update())
    assert cache.pending("d") == 0
    assert SharedDoc("d", cache).doc.get("m", type=Map)["x"] == 1


def test_run_history_validates_and_updates():
    doc = Doc()
    history = RunHistory(doc)
    changes = []
    # registered through a view that is dropped at once: the callback must keep firing
    unsubscribe = RunHistory(doc).on_change(lambda: changes.append(len(history)))
    gc.collect()
    run_id = history.append(
        {"kernel": "hash.sha256", "status": "running", "where": "local", "size": 5}
    )
    assert history.update(run_id, status="done", timings={"run_ms": 1.5}, summary="ok")
    assert not history.update("missing", status="done")
    run = history.get(run_id)
    assert run is not None and run["status"] == "done" and run["timings"] == {"run_ms": 1.5}
    assert changes == [1, 1]
    unsubscribe()
    history.append({"kernel": "x", "status": "queued"})
    assert changes == [1, 1]
    for bad, reason in [
        ({"kernel": "x"}, "needs status"),
        ({"kernel": "x", "status": "weird"}, "status must be"),
        ({"kernel": "x", "status": "done", "colour": 1}, "unknown run fields"),
        ({"kernel": "x", "status": "done", "size": -1}, "size"),
        ({"kernel": "x", "status": "done", "timings": {"a": "slow"}}, "timings"),
    ]:
        with pytest.raises(ValueError, match=reason):
            history.append(bad)
    assert len(history) == 2


def test_notes_edits_and_deltas():
    doc = Doc()
    notes = Notes(doc)
    deltas = []
    notes.on_change(deltas.append)
    notes.insert(0, "hello")
    notes.append(" world")
    notes.delete(0, 1)
    notes.insert(0, "H")
    assert notes.text == "Hello world"
    assert deltas[1] == [{"retain": 5}, {"insert": " world"}]
    assert deltas[2] == [{"delete": 1}]
    notes.replace("new")
    assert notes.text == "new"
    with pytest.raises(IndexError, match="outside"):
        notes.delete(2, 5)


async def test_document_names_are_checked(tmp_path):
    store = DocumentStore(tmp_path)
    with pytest.raises(ValueError, match="1 to 200"):
        await store.open("")
    assert (await store.open("a")) is (await store.open("a"))
    await store.aclose()


async def test_closing_while_the_join_waits_for_the_service_warns_of_nothing(tmp_path, caplog):
    sock = Socket("ws://127.0.0.1:9/socket")  # never connected: the join waits in the channel
    store = DocumentStore(tmp_path / "cache.sqlite3", sock)
    doc = await store.open("lab")

    async def joining() -> None:
        while doc._channel.state != ChannelState.JOINING:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(joining(), 5)
    with caplog.at_level(logging.DEBUG, logger="veraltheim.client"):
        await store.aclose()
        await asyncio.sleep(0)  # the join task's turn, had close() not cancelled it already
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
