"""Issue 10's defects, one case each, against the real service; after each, the watch checks
that other clients' heartbeats were answered within 250 ms, that a fresh client opens the
document with every acknowledged edit, and that the service's memory stayed bounded."""

from __future__ import annotations

import asyncio
import json
import struct
import time

import pytest
from pycrdt import Doc, Map, create_sync_message, create_update_message
from veraltheim.protocol import Message, pack_envelope
from veraltheim.protocol.constants import (
    CLOSE_INVALID_DATA,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
)
from websockets.exceptions import InvalidStatus

from tests.support.phx_frames import (
    closed,
    http_get,
    join,
    metric,
    open_socket,
    push,
    send,
    sign,
    until,
)
from tests.support.service import running_service
from tests.unit.test_docs_store import BREAKS_A, BREAKS_B

pytestmark = pytest.mark.slow
DOC = "doc:shared"


def yjs_update(update: bytes) -> bytes:
    return create_update_message(update)


async def doc_socket(svc, user: str = "mallory", topic: str = DOC, **claims):
    ws = await open_socket(svc.ws_url, token=sign(user, **claims))
    reply = await join(ws, topic)
    assert reply["status"] == "ok", reply
    return ws


async def test_an_update_that_breaks_the_encoding_is_refused(svc, watch):
    """Defect 1: B after A; the document still opens, also for later joiners."""
    start = watch.window()
    ws = await doc_socket(svc, topic="doc:breaks")
    assert (await push(ws, "yjs", yjs_update(BREAKS_A), "2", "doc:breaks"))["status"] == "ok"
    reply = await push(ws, "yjs", yjs_update(BREAKS_B), "3", "doc:breaks")
    assert reply["status"] == "error" and reply["response"]["reason"] == "bad_update"
    other = await doc_socket(svc, "bob", "doc:breaks")
    await send(other, Message("1", "2", "doc:breaks", "yjs_sync", create_sync_message(Doc())))
    step2 = await until(other, "yjs", None, "doc:breaks")
    Doc().apply_update(step2.payload[3:])  # sync step 2 (0, 1, one-byte length): loads
    await ws.close()
    await other.close()
    watch.check(start, "breaking update")


def test_pending_update_survives_restart_and_compaction(tmp_path):
    """Defect 2: u2 (acknowledged before u1, which it depends on), a restart that compacts,
    then u1: both are there."""
    source = Doc()
    updates: list[bytes] = []
    source.observe(lambda e: updates.append(e.update))
    source.get("m", type=Map)["first"] = 1
    source.get("m", type=Map)["second"] = 2
    u1, u2 = updates

    async def push_one(url: str, update: bytes) -> None:
        ws = await open_socket(url, token=sign("alice"))
        assert (await join(ws, "doc:pending"))["status"] == "ok"
        assert (await push(ws, "yjs", yjs_update(update), "2", "doc:pending"))["status"] == "ok"
        await ws.close()

    with running_service(tmp_path, "--log-level", "WARNING") as svc:
        asyncio.run(push_one(svc.ws_url, u2))
        svc.stop()  # unloading compacts
        svc.restart()
        asyncio.run(push_one(svc.ws_url, u1))
        svc.stop()
        svc.restart()
        doc = asyncio.run(_open(svc.ws_url, "doc:pending"))
    assert doc.get("m", type=Map).to_py() == {"first": 1, "second": 2}


async def _open(url: str, topic: str) -> Doc:
    ws = await open_socket(url, token=sign("reader"))
    assert (await join(ws, topic))["status"] == "ok"
    await send(ws, Message("1", "2", topic, "yjs_sync", create_sync_message(Doc())))
    step2 = await until(ws, "yjs", None, topic)
    doc = Doc()
    doc.apply_update(step2.payload[2:][_varint_len(step2.payload[2:]) :])
    await ws.close()
    return doc


def _varint_len(data: bytes) -> int:
    n = 0
    while data[n] & 0x80:
        n += 1
    return n + 1


@pytest.mark.parametrize("size", [196 * 1024, 1 << 20])
async def test_a_huge_varint_is_refused_at_once(svc, watch, size):
    """Defect 3: an awareness message whose length varint is `size` bytes long."""
    start = watch.window()
    ws = await doc_socket(svc)
    t0 = time.monotonic()
    reply = await push(ws, "yjs", b"\x01" + b"\xff" * size, "2", DOC)
    assert reply["response"]["reason"] in ("bad_message", "too_large")
    assert time.monotonic() - t0 < 2.0
    await ws.close()
    watch.check(start, f"{size}-byte varint")


async def test_big_json_is_refused_or_decoded_off_the_loop(svc, watch):
    """Defect 4: a 7.6 MiB JSON frame is closed 1009 (bulk data goes binary); one just under
    max_text_frame_bytes is decoded off the loop; bytes count against the rate limit."""
    start = watch.window()
    ws = await open_socket(svc.ws_url, token=sign("mallory"))
    big = json.dumps([None, "1", "lobby", "phx_join", {"x": [1.5] * (1 << 20)}])
    await ws.send(big)
    code, reason = await closed(ws)
    assert code == CLOSE_MESSAGE_TOO_BIG and "binary" in reason
    ws = await open_socket(svc.ws_url, token=sign("mallory"))
    assert (await join(ws, "lobby"))["status"] == "ok"
    nearly = {"numbers": [0.25] * 100_000, "words": ["w"] * 50_000}  # about 950 KB
    for i in range(3):  # decoded (on a worker thread), then refused: a small reply
        reply = await push(ws, "no_such_event", nearly, str(10 + i))
        assert reply["status"] == "error" and "unknown event" in reply["response"]["reason"]
    await ws.close()
    watch.check(start, "big JSON")


async def test_bytes_count_against_the_rate_limit(svc, watch):
    """Defect 4: the limit counts bytes as well as frames (16 MiB/s per socket)."""
    start = watch.window()
    ws = await open_socket(svc.ws_url, token=sign("mallory"), max_size=None)
    assert (await join(ws, "lobby"))["status"] == "ok"
    blob = bytes(4 << 20)
    statuses = []
    for i in range(12):  # 48 MiB at once: the second half is over the budget
        statuses.append((await push(ws, "ping", blob, str(10 + i)))["status"])
    assert statuses[0] == "ok" and "error" in statuses
    await ws.close()
    watch.check(start, "byte flood")


async def test_sync_step1_floods_are_throttled(svc, watch):
    """Defect 5: a 6-byte step 1 asks for the whole document; the answers are limited."""
    start = watch.window()
    ws = await doc_socket(svc, topic="doc:large")
    big = Doc()
    big.get("m", type=Map).update({f"k{i}": "x" * 100 for i in range(8000)})  # ~900 KB
    assert (await push(ws, "yjs", yjs_update(big.get_update()), "2", "doc:large"))["status"] == "ok"
    step1 = create_sync_message(Doc())
    statuses = [(await push(ws, "yjs_sync", step1, str(10 + i), "doc:large"))["status"]
                for i in range(60)]  # fmt: skip
    assert statuses[0] == "ok" and statuses.count("error") > 20
    await ws.close()
    watch.check(start, "sync step 1 flood")


async def test_awareness_is_capped(svc, watch):
    """Defect 6: states per message, per member, and bytes per state."""
    from veraltheim.protocol.ysync import AwarenessEntry, encode_awareness_update

    start = watch.window()
    ws = await doc_socket(svc)
    many = encode_awareness_update([AwarenessEntry(i, 1, "{}") for i in range(1000)])
    reply = await push(ws, "yjs", b"\x01" + _length(many) + many, "2", DOC)
    assert reply["response"]["reason"] == "bad_message"
    for i in range(40):  # 16 ids per member at most
        one = encode_awareness_update([AwarenessEntry(10_000 + i, 1, '{"u":1}')])
        reply = await push(ws, "yjs", b"\x01" + _length(one) + one, str(10 + i), DOC)
        assert reply["status"] == ("ok" if i < 16 else "error"), (i, reply)
    fat = encode_awareness_update([AwarenessEntry(1, 1, json.dumps("x" * 100_000))])
    reply = await push(ws, "yjs", b"\x01" + _length(fat) + fat, "99", DOC)
    assert reply["response"]["reason"] == "bad_message"
    await ws.close()
    watch.check(start, "awareness")


def _length(data: bytes) -> bytes:
    out, n = bytearray(), len(data)
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


async def test_compute_output_is_bounded_by_the_frame(svc, watch):
    """Defect 7 (a 155-byte request for a 64 MiB picture), 10 (NaN deadline) and 12 (the
    id in bad_request)."""
    start = watch.window()
    ws = await open_socket(svc.ws_url, token=sign("mallory"))
    assert (await join(ws, "compute:default"))["status"] == "ok"
    huge = {"kernel": "fractal.mandelbrot", "id": "big", "params": {"width": 4096, "height": 4096}}
    reply = await push(ws, "compute_request", pack_envelope(huge), "2", "compute:default")
    assert reply["status"] == "error"
    assert reply["response"]["reason"] == "too_large" and reply["response"]["id"] == "big"
    header = b'{"kernel":"hash.sha256","id":"nan","deadline_s":NaN}'
    reply = await push(
        ws, "compute_request", struct.pack(">I", len(header)) + header, "3", "compute:default"
    )
    assert reply["response"]["reason"] == "bad_request"
    bad_input = {"kernel": "data.sort", "id": "j1", "params": {}, "input": "%%% not base64"}
    reply = await push(ws, "compute_request", bad_input, "4", "compute:default")
    assert reply["response"] == {**reply["response"], "reason": "bad_request", "id": "j1"}
    await ws.close()
    watch.check(start, "compute")


async def test_sockets_are_capped_per_user(svc, watch):
    """Defect 8: at most max_sockets_per_user (100) sockets per token; the rest get HTTP 429."""
    start = watch.window()
    opened = []
    try:
        for _ in range(100):
            opened.append(await open_socket(svc.ws_url, token=sign("hoarder")))
        with pytest.raises(InvalidStatus) as refused:
            await open_socket(svc.ws_url, token=sign("hoarder"))
        assert refused.value.response.status_code == 429
        other = await open_socket(svc.ws_url, token=sign("someone-else"))
        await other.close()
    finally:
        await asyncio.gather(*(ws.close() for ws in opened))
    watch.check(start, "socket cap")


def test_total_sockets_and_loaded_documents_are_capped(tmp_path):
    """Defect 8: the total cap, and join/leave cycling over many documents."""
    env = {"VERALTHEIM_MAX_SOCKETS": "5", "VERALTHEIM_DOCS_MAX_LOADED_DOCS": "10"}

    async def attack(url: str) -> None:
        socks = [await open_socket(url, token=sign(f"u{i}")) for i in range(5)]
        with pytest.raises(InvalidStatus) as refused:
            await open_socket(url, token=sign("u6"))
        assert refused.value.response.status_code == 429
        ws = socks[0]
        for i in range(60):
            topic = f"doc:cycle{i}"
            assert (await join(ws, topic, str(i)))["status"] == "ok"
            await send(ws, Message(str(i), f"l{i}", topic, "phx_leave", {}))
            await until(ws, "phx_reply", f"l{i}", topic)
        await asyncio.gather(*(s.close() for s in socks))

    with running_service(tmp_path, "--log-level", "WARNING", env=env) as svc:
        asyncio.run(attack(svc.ws_url))
        _, _, text = http_get(svc.http_url + "/metrics")
        assert metric(text, "veraltheim_docs_loaded") <= 10


async def test_infinity_in_a_join_is_a_malformed_frame_not_a_zombie(svc, watch):
    """Defect 9: `1e999` in a lobby join's meta: closed 1002, no channel left behind."""
    start = watch.window()
    _, _, before = http_get(svc.http_url + "/metrics")
    ws = await open_socket(svc.ws_url, token=sign("mallory"))
    await ws.send('["1","1","lobby","phx_join",{"meta":{"n":1e999}}]')
    code, reason = await closed(ws)
    assert code == CLOSE_PROTOCOL_ERROR and "out of range" in reason
    _, _, after = http_get(svc.http_url + "/metrics")
    crashes = "veraltheim_channel_crashes_total"
    assert metric(after, crashes) == metric(before, crashes)
    watch.check(start, "1e999")


async def test_invalid_utf8_closes_with_1007(svc, watch):
    """Defect 12: the README's close code for a text frame that is not UTF-8."""
    start = watch.window()
    ws = await open_socket(svc.ws_url, token=sign("mallory"))
    await ws.send(b'["1","1","lobby","phx_join",{"\xff":1}]', text=True)
    code, _ = await closed(ws)
    assert code == CLOSE_INVALID_DATA
    watch.check(start, "invalid UTF-8")


async def test_a_read_only_member_cannot_write_or_hoard(svc, watch):
    start = watch.window()
    ws = await doc_socket(svc, "viewer", read_only=True)
    doc = Doc()
    doc.get("m", type=Map)["hijack"] = 1
    reply = await push(ws, "yjs", yjs_update(doc.get_update()), "2", DOC)
    assert reply["response"]["reason"] == "read_only"
    await ws.close()
    watch.check(start, "read-only")


async def test_big_valid_updates_leave_the_others_served(svc, watch):
    """Updates near max_update_bytes (1 MiB) are checked on a worker thread: the loop gets its
    turns between pycrdt's calls."""
    start = watch.window()
    ws = await doc_socket(svc, topic="doc:bulky")
    for round_ in range(3):
        doc = Doc()
        doc.get("m", type=Map).update({f"r{round_}-{i}": "y" * 80 for i in range(9000)})
        update = doc.get_update()
        assert 700_000 < len(update) < 1 << 20
        reply = await push(ws, "yjs", yjs_update(update), str(10 + round_), "doc:bulky")
        assert reply["status"] == "ok", reply
    await ws.close()
    watch.check(start, "big valid updates")
