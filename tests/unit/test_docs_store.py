"""service.docs: the update log, compaction, corrupt updates, limits and the y-protocols parser."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from pycrdt import Awareness, Doc, Map, Text, create_awareness_message, create_update_message
from veraltheim.protocol.ysync import (
    AwarenessEntry,
    BadMessage,
    Kind,
    create_sync_message,
    create_sync_step2_message,
    encode_awareness_update,
    parse_message,
)
from veraltheim.service.docs.awareness import AwarenessTable
from veraltheim.service.docs.registry import (
    DocRegistry,
    DocumentUnavailable,
    LiveDoc,
    StoreFailed,
    TooManyDocuments,
    UpdateRejected,
)
from veraltheim.service.docs.store import DocStore

# Issue 10, defect 1: pycrdt accepts B after A, and the document then no longer encodes to
# something it can load.
BREAKS_A = bytes.fromhex("01020700040101740b68656c6c6f20776f726c642801016d0161017c3f80000000")
BREAKS_B = bytes.fromhex(
    "010507000101017403840702086c6f20776f726c642801016d0161017c3f80000084070a05206d6f72651201"
    "016d010175027c3f800000760101717c400000000107010003"
)


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


def awareness() -> AwarenessTable:
    return AwarenessTable(max_states=4, max_state_bytes=256)


async def live_doc(store: DocStore, name: str = "a", compact_every: int = 1000) -> LiveDoc:
    return await LiveDoc.open(name, store, compact_every, awareness())


@pytest.fixture
async def store(tmp_path):
    store = DocStore.in_data_dir(tmp_path)
    yield store
    await store.close()


async def test_log_replays_to_the_same_state(tmp_path, store):
    source, updates = edits(20)
    live = await live_doc(store)
    for u in updates:
        assert await live.apply_update(u)
    reopened = await live_doc(DocStore.in_data_dir(tmp_path))
    assert content(reopened.doc) == content(source) == {f"k{i}": i for i in range(20)}


async def test_writes_run_on_the_store_thread_not_the_loop(store):
    threads: list[str] = []
    append = store.append_now

    def recording(doc: str, update: bytes) -> int:
        threads.append(threading.current_thread().name)
        return append(doc, update)

    store.append_now = recording  # type: ignore[method-assign]
    live = await live_doc(store)
    for u in edits(3)[1]:
        await live.apply_update(u)
    assert threads and all(name.startswith("docs-store") for name in threads)
    assert threading.current_thread().name not in threads


async def test_compaction_keeps_the_state_and_shrinks_the_log(store):
    _, updates = edits(25)
    live = await live_doc(store, compact_every=10)
    for u in updates:
        await live.apply_update(u)
    await live.compact()
    stored = store.load_now("a")
    assert stored.snapshot is not None and stored.updates == []
    reopened = await live_doc(store, compact_every=10)
    assert content(reopened.doc) == {f"k{i}": i for i in range(25)}


async def test_overwrites_compact_to_a_smaller_snapshot(store):
    doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda e: updates.append(e.update))
    text = doc.get("t", type=Text)
    for _ in range(200):
        text += "x"
        del text[0]
    live = await live_doc(store, "t", compact_every=10_000)
    for u in updates:
        await live.apply_update(u)
    before = store.load_now("t").stored_bytes
    await live.compact()
    after = store.load_now("t")
    assert after.updates == [] and after.stored_bytes < before


async def test_an_update_before_its_dependency_survives_compaction_and_restart(tmp_path):
    """Issue 10, defect 2: u2 arrives (and is acknowledged) before u1, which it depends on."""
    _, (u1, u2) = edits(2)
    store = DocStore.in_data_dir(tmp_path)
    live = await live_doc(store, compact_every=1)
    assert await live.apply_update(u2)  # pending in the Doc: its snapshot leaves it out
    await live.compact()
    assert store.load_now("a").updates == [u2]  # kept beside the snapshot
    await store.close()

    store = DocStore.in_data_dir(tmp_path)  # a restart
    live = await live_doc(store, compact_every=1)
    await live.apply_update(u1)
    await live.compact()
    assert content(live.doc) == {"k0": 0, "k1": 1}
    assert store.load_now("a").updates == []  # both integrated now: the snapshot holds them
    reopened = await live_doc(DocStore.in_data_dir(tmp_path))
    assert content(reopened.doc) == {"k0": 0, "k1": 1}
    await store.close()


async def test_a_pending_deletion_survives_compaction(store):
    source = Doc()
    updates: list[bytes] = []
    source.observe(lambda e: updates.append(e.update))
    text = source.get("t", type=Text)
    text += "hello"
    del text[0:2]
    insert, deletion = updates
    live = await live_doc(store, compact_every=1)
    await live.apply_update(deletion)  # deletes what the service does not have yet
    await live.compact()
    await live.apply_update(insert)
    reopened = await live_doc(store)
    assert str(reopened.doc.get("t", type=Text)) == "llo"


async def test_an_update_that_would_break_the_encoding_is_refused(tmp_path, store):
    """Issue 10, defect 1: B is refused; the document still encodes, loads and restarts."""
    live = await live_doc(store)
    assert await live.apply_update(BREAKS_A)
    with pytest.raises(UpdateRejected, match="no longer encode and load"):
        await live.apply_update(BREAKS_B)
    Doc().apply_update(live.doc.get_update())  # still loads
    await live.compact()
    reopened = await live_doc(DocStore.in_data_dir(tmp_path))
    assert reopened.doc.get_update() == live.doc.get_update()


async def test_a_document_that_cannot_load_is_quarantined_and_the_rest_work(tmp_path, store):
    store.append_now("broken", BREAKS_A)
    store.append_now("broken", BREAKS_B)  # stored by a service without the check
    store.append_now("fine", edits(1)[1][0])
    with pytest.raises(DocumentUnavailable, match="quarantined"):
        await live_doc(store, "broken")
    with pytest.raises(DocumentUnavailable, match="quarantined"):
        await live_doc(store, "broken")  # stays refused, and its rows are kept aside
    assert store.quarantined_now().keys() == {"broken"}
    assert store.load_now("broken").quarantined
    assert content((await live_doc(store, "fine")).doc) == {"k0": 0}
    assert store.release_now("broken")
    assert store.load_now("broken").updates == [BREAKS_A, BREAKS_B]


@pytest.mark.parametrize(
    "corrupt", [b"\x01\x02garbage", b"\xff" * 12, b"\x01", b"", "truncated"], ids=repr
)
async def test_corrupt_update_is_refused_and_nothing_is_stored(store, corrupt):
    _, updates = edits(3)
    live = await live_doc(store)
    for u in updates:
        await live.apply_update(u)
    if corrupt == "truncated":
        corrupt = edits(1, key="z")[1][0][:-3]
    before = store.load_now("a")
    with pytest.raises(UpdateRejected, match="update refused"):
        await live.apply_update(corrupt)
    assert store.load_now("a") == before
    assert content(live.doc) == {"k0": 0, "k1": 1, "k2": 2}


async def test_a_failed_commit_leaves_memory_as_the_store(tmp_path):
    class FullDisk(DocStore):
        full = False

        def append_now(self, doc: str, update: bytes) -> int:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return super().append_now(doc, update)

    store = FullDisk.in_data_dir(tmp_path)
    _, updates = edits(3)
    live = await live_doc(store)
    await live.apply_update(updates[0])
    store.full = True
    with pytest.raises(StoreFailed, match="disk is full"):
        await live.apply_update(updates[1])
    assert content(live.doc) == {"k0": 0}  # not {"k0", "k1"}: memory matches the store
    store.full = False
    await live.apply_update(updates[1])  # the sender's resend succeeds
    assert content(live.doc) == {"k0": 0, "k1": 1}
    await store.close()


async def test_empty_update_is_not_stored(store):
    live = await live_doc(store)
    assert await live.apply_update(b"\x00\x00") is False
    assert store.load_now("a").updates == []


async def test_sync_step2_holds_only_what_the_peer_lacks(store):
    source, updates = edits(100)
    live = await live_doc(store)
    for u in updates:
        await live.apply_update(u)
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


async def test_awareness_is_kept_and_forgotten_with_its_member(store):
    live = await live_doc(store)
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
    taken = live.apply_awareness(
        relay.encode_awareness_update([peer.client_id, relayed.client_id]), "bob"
    )
    assert taken is not None  # bob's own state, for the others; cy's is cy's
    relayed_to_others = Awareness(Doc())
    relayed_to_others.apply_awareness_update(parse_message(taken).data, "x")
    heard = set(relayed_to_others.states) - {relayed_to_others.client_id}
    assert heard == {peer.client_id}
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
        with pytest.raises(BadMessage):
            live.apply_awareness(bad, "sock")
    assert len(live.awareness) == 1


def _states(*entries: tuple[int, int, bytes]) -> bytes:
    return encode_awareness_update(
        [AwarenessEntry(c, k, s.decode("latin-1")) for c, k, s in entries]
    )


def test_awareness_is_bounded_per_message_per_member_and_per_state():
    """Issue 10, defect 6."""
    table = awareness()  # 4 states, 256 bytes each
    with pytest.raises(BadMessage, match="5 awareness states"):
        table.apply(_states(*[(i, 1, b"{}") for i in range(5)]), "m")
    with pytest.raises(BadMessage, match="over the limit of 256"):
        table.apply(_states((1, 1, b'"' + b"x" * 300 + b'"')), "m")
    for bad in (b"NaN", b"1e999", b"{", b"[" * 250):
        with pytest.raises(BadMessage, match="not JSON"):
            table.apply(_states((1, 1, bad)), "m")
    table.apply(_states(*[(i, 1, b"{}") for i in range(3)]), "m")
    with pytest.raises(BadMessage, match="at most 4 awareness client ids"):
        table.apply(_states((10, 1, b"{}"), (11, 1, b"{}")), "m")
    table.apply(_states((10, 1, b"{}")), "m")
    assert table.apply(_states((10, 1, b"{}")), "intruder") is None  # not theirs: ignored
    assert len(table) == 4
    table.forget("m")
    assert len(table) == 0 and table.encode_all() is None
    with pytest.raises(BadMessage, match="var-uint longer"):
        table.apply(b"\x01" + b"\xff" * 100_000, "m")


async def test_registry_limits_documents_per_user_and_unloads(tmp_path):
    registry = DocRegistry(max_docs_per_user=2, idle_unload_s=0.0, compact_every=100)
    registry.open_store(tmp_path)
    a = await registry.open("a", "alice")
    a_again = await registry.open("a", "alice")
    assert a is a_again and a.members == 2
    b = await registry.open("b", "alice")
    with pytest.raises(TooManyDocuments, match="limit 2"):
        await registry.open("c", "alice")
    await registry.open("c", "bob")  # the limit is per user
    _, updates = edits(3)
    for u in updates:
        await b.apply_update(u)
    registry.close(b, "alice")
    await registry.open("c", "alice")  # b no longer counts
    registry.close(a, "alice")
    registry.close(a, "alice")
    await wait_until(lambda: "a" not in registry.loaded and "b" not in registry.loaded)
    await wait_until(lambda: registry.store.load_now("b").snapshot is not None)  # compacted
    await registry.stop()


async def test_loaded_documents_are_bounded_by_the_service(tmp_path):
    """Issue 10, defect 8: join/leave cycling must not keep documents loaded without bound."""
    registry = DocRegistry(
        max_docs_per_user=100, idle_unload_s=3600.0, compact_every=100, max_loaded_docs=3
    )
    registry.open_store(tmp_path)
    for i in range(20):
        live = await registry.open(f"d{i}", "mallory")
        await live.apply_update(edits(1, key=f"d{i}-")[1][0])
        registry.close(live, "mallory")
        assert len(registry.loaded) <= 3
    held = [await registry.open(f"h{i}", "alice") for i in range(3)]
    with pytest.raises(TooManyDocuments, match="all in use"):
        await registry.open("one-more", "bob")
    registry.close(held[0], "alice")
    await registry.open("one-more", "bob")
    await registry.stop()
    store = DocStore.in_data_dir(tmp_path)
    assert content((await live_doc(store, "d0")).doc) == {"d0-0": 0}  # unloaded early, kept
    await store.close()


async def wait_until(predicate, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_appends_of_one_loop_turn_commit_together_in_order(store):
    batches: list[int] = []
    many = store.append_many_now

    def recording(items):
        batches.append(len(items))
        return many(items)

    store.append_many_now = recording  # type: ignore[method-assign]
    _, updates = edits(30)
    seqs = await asyncio.gather(*(store.append("a", u) for u in updates))
    assert seqs == sorted(seqs) and len(set(seqs)) == 30
    assert batches == [30]  # one thread hop, one transaction
    assert store.load_now("a").updates == updates
