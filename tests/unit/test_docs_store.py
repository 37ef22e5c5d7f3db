"""service.docs: the update log, compaction, corrupt updates, limits and the y-protocols parser."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from pycrdt import Awareness, Doc, Map, Text, create_awareness_message, create_update_message
from veraltheim.protocol.ysync import (
    BadMessage,
    Kind,
    create_sync_message,
    create_sync_step2_message,
    parse_message,
)
from veraltheim.service.docs.registry import (
    DocRegistry,
    LiveDoc,
    StoreFailed,
    TooManyDocuments,
    UpdateRejected,
)
from veraltheim.service.docs.store import DocStore


def edits(n: int, key: str = "k") -> tuple[Doc, list[bytes]]:
    doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    m = doc.get("m", type=Map)
    for i in range(n):
        m[f"{key}{i}"] = i
    return doc, updates


def content(doc: Doc) -> dict:
    return doc.get("m", type=Map).to_py()


def test_log_replays_to_the_same_state(tmp_path):
    store = DocStore.in_data_dir(tmp_path)
    source, updates = edits(20)
    live = LiveDoc("a", store, compact_every=1000)
    for u in updates:
        assert live.apply_update(u)
    store.close()

    reopened = LiveDoc("a", DocStore.in_data_dir(tmp_path), compact_every=1000)
    assert content(reopened.doc) == content(source) == {f"k{i}": i for i in range(20)}


def test_compaction_keeps_the_state_and_shrinks_the_log(tmp_path):
    store = DocStore.in_data_dir(tmp_path)
    _, updates = edits(25)
    live = LiveDoc("a", store, compact_every=10)
    for u in updates:
        live.apply_update(u)
    stored = store.load("a")
    assert stored.snapshot is not None
    assert len(stored.updates) == 5  # 25 = 2 snapshots of 10 + 5 in the log
    reopened = LiveDoc("a", store, compact_every=10)
    assert content(reopened.doc) == {f"k{i}": i for i in range(25)}


def test_overwrites_compact_to_a_smaller_snapshot(tmp_path):
    store = DocStore.in_data_dir(tmp_path)
    doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda e: updates.append(e.update))
    text = doc.get("t", type=Text)
    for _ in range(200):
        text += "x"
        del text[0]
    live = LiveDoc("t", store, compact_every=10_000)
    for u in updates:
        live.apply_update(u)
    before = store.load("t").stored_bytes
    live.compact()
    after = store.load("t")
    assert after.updates == [] and after.stored_bytes < before


@pytest.mark.parametrize(
    "corrupt", [b"\x01\x02garbage", b"\xff" * 12, b"\x01", b"", "truncated"], ids=repr
)
def test_corrupt_update_is_refused_and_nothing_is_stored(tmp_path, corrupt):
    store = DocStore.in_data_dir(tmp_path)
    _, updates = edits(3)
    live = LiveDoc("a", store, compact_every=1000)
    for u in updates:
        live.apply_update(u)
    if corrupt == "truncated":
        corrupt = edits(1, key="z")[1][0][:-3]
    before = store.load("a")
    with pytest.raises(UpdateRejected, match="update refused"):
        live.apply_update(corrupt)
    assert store.load("a") == before
    assert content(live.doc) == {"k0": 0, "k1": 1, "k2": 2}


def test_a_failed_commit_leaves_memory_as_the_store(tmp_path):
    class FullDisk(DocStore):
        full = False

        def append(self, doc: str, update: bytes) -> int:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return super().append(doc, update)

    store = FullDisk.in_data_dir(tmp_path)
    _, updates = edits(3)
    live = LiveDoc("a", store, compact_every=1000)
    live.apply_update(updates[0])
    store.full = True
    with pytest.raises(StoreFailed, match="disk is full"):
        live.apply_update(updates[1])
    assert content(live.doc) == {"k0": 0}  # not {"k0", "k1"}: memory matches the store
    store.full = False
    live.apply_update(updates[1])  # the sender's resend succeeds
    assert content(live.doc) == {"k0": 0, "k1": 1}


def test_empty_update_is_not_stored(tmp_path):
    store = DocStore.in_data_dir(tmp_path)
    live = LiveDoc("a", store, compact_every=1000)
    assert live.apply_update(b"\x00\x00") is False
    assert store.load("a").updates == []


def test_sync_step2_holds_only_what_the_peer_lacks(tmp_path):
    store = DocStore.in_data_dir(tmp_path)
    source, updates = edits(100)
    live = LiveDoc("a", store, compact_every=1000)
    for u in updates:
        live.apply_update(u)
    peer = Doc()
    for u in updates[:95]:
        peer.apply_update(u)
    step1 = parse_message(create_sync_message(peer))
    step2 = parse_message(live.sync_step2(step1.data))
    assert step2.kind is Kind.SYNC_STEP2
    full = len(source.get_update())
    assert len(step2.data) < full / 5
    peer.apply_update(step2.data)
    assert content(peer) == content(source)
    with pytest.raises(BadMessage, match="bad state vector"):
        live.sync_step2(b"\xff\xff")


def test_parse_message_kinds_and_errors():
    doc, updates = edits(1)
    assert parse_message(create_sync_message(doc)).kind is Kind.SYNC_STEP1
    assert parse_message(create_sync_step2_message(updates[0])).data == updates[0]
    assert parse_message(create_update_message(updates[0])).kind is Kind.UPDATE
    assert parse_message(create_awareness_message(b"\x00")).kind is Kind.AWARENESS
    assert parse_message(b"\x03").kind is Kind.QUERY_AWARENESS
    for bad, reason in [
        (b"", "empty"),
        (b"\x07", "unknown"),
        (b"\x00\x09\x00", "unknown"),
        (create_update_message(updates[0])[:-2], "length"),
        (create_update_message(updates[0]) + b"x", "length"),
    ]:
        with pytest.raises(BadMessage, match=reason):
            parse_message(bad)


def test_awareness_is_kept_and_forgotten_with_its_member(tmp_path):
    live = LiveDoc("a", DocStore.in_data_dir(tmp_path), compact_every=10)
    peer, relayed = Doc(), Doc()
    peer_awareness, relayed_awareness = Awareness(peer), Awareness(relayed)
    peer_awareness.set_local_state({"user": "bob", "cursor": 3})
    relayed_awareness.set_local_state({"user": "cy"})
    live.apply_awareness(relayed_awareness.encode_awareness_update([relayed.client_id]), "cy")
    both = peer_awareness.encode_awareness_update([peer.client_id])
    relay = Awareness(Doc())  # bob's provider also relays cy's state, as Yjs providers do
    relay.apply_awareness_update(both, "x")
    relay.apply_awareness_update(
        relayed_awareness.encode_awareness_update([relayed.client_id]), "x"
    )
    live.apply_awareness(relay.encode_awareness_update([peer.client_id, relayed.client_id]), "bob")
    msg = live.awareness_message()
    assert msg is not None and parse_message(msg).kind is Kind.AWARENESS

    other = Awareness(Doc())
    other.apply_awareness_update(parse_message(msg).data, "x")
    assert other.states[peer.client_id] == {"user": "bob", "cursor": 3}
    gone = live.forget_member("bob")  # bob left: only bob's own state goes
    assert gone is not None
    other.apply_awareness_update(parse_message(gone).data, "x")
    assert peer.client_id not in other.states
    assert other.states[relayed.client_id] == {"user": "cy"}
    assert live.forget_member("bob") is None
    for bad in (b"\x05\x01", both + b"x"):
        with pytest.raises(BadMessage, match="bad awareness"):
            live.apply_awareness(bad, "sock")
    assert set(live.awareness.states) == {relayed.client_id}


async def test_registry_limits_documents_per_user_and_unloads(tmp_path):
    registry = DocRegistry(max_docs_per_user=2, idle_unload_s=0.0, compact_every=100)
    registry.open_store(tmp_path)
    a = registry.open("a", "alice")
    a_again = registry.open("a", "alice")
    assert a is a_again and a.members == 2
    b = registry.open("b", "alice")
    with pytest.raises(TooManyDocuments, match="limit 2"):
        registry.open("c", "alice")
    registry.open("c", "bob")  # the limit is per user
    _, updates = edits(3)
    for u in updates:
        b.apply_update(u)
    registry.close(b, "alice")
    registry.open("c", "alice")  # b no longer counts
    registry.close(a, "alice")
    registry.close(a, "alice")
    unloaded = wait_until(lambda: "a" not in registry.loaded and "b" not in registry.loaded)
    await unloaded
    assert registry.store is not None
    assert registry.store.load("b").snapshot is not None  # compacted when unloaded
    await registry.stop()


async def wait_until(predicate, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)
