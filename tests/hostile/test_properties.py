"""Property cases (Hypothesis): mutated Yjs updates, awareness messages, frames and compute
envelopes, sent by a writer or a read-only client to the real service. Each one gets an answer
(an error reply with a reason, or a close code) and never costs anyone else: after every
example the watch checks heartbeats (250 ms), the document (every acknowledged edit, for a
fresh client) and the service's memory."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, create_update_message
from veraltheim.protocol import Message, encode, pack_envelope
from veraltheim.protocol.ysync import AwarenessEntry, encode_awareness_update
from websockets.exceptions import ConnectionClosed

from tests.support.phx_frames import join, open_socket, sign

pytestmark = pytest.mark.slow
DOC = "doc:shared"
ANSWER_WAIT_S = 10.0
# What the service may close a socket with for a bad frame: 1002 malformed, 1007 not UTF-8,
# 1008 flooding, 1009 too big.
BAD_FRAME_CLOSES = {1002, 1007, 1008, 1009}
HOSTILE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def mutate(draw, base: bytes) -> bytes:
    """`base` with a few byte-level mutations, the kinds a fuzzer or an attacker tries."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "repeat", "varint", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat" and data:
            end = min(len(data), at + draw(st.integers(1, 32)))
            data[at:at] = data[at:end] * draw(st.integers(1, 64))
        elif op == "varint":  # a long run of continuation bytes where a length is read
            data[at:at] = b"\xff" * draw(st.integers(8, 4096))
        elif op == "zero" and data:
            data[at] = 0
    return bytes(data)


@st.composite
def yjs_updates(draw) -> bytes:
    doc = Doc(client_id=draw(st.integers(1, 2**32)))  # a fixed id: the same bytes every run
    for op, value in draw(
        st.lists(st.tuples(st.sampled_from("tma"), st.integers(0, 99)), min_size=1, max_size=6)
    ):
        if op == "t":
            text = doc.get("t", type=Text)
            text.insert(min(value, len(text)), "ab"[: 1 + value % 2])
        elif op == "m":
            doc.get("m", type=Map)[f"k{value}"] = value
        else:
            doc.get("a", type=Array).append(value)
    return doc.get_update()


states = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=16)), max_size=4
)


@st.composite
def awareness_updates(draw) -> bytes:
    entries = [
        AwarenessEntry(draw(st.integers(0, 2**53)), draw(st.integers(0, 100)), json.dumps(s))
        for s in draw(st.lists(states, min_size=1, max_size=3))
    ]
    return encode_awareness_update(entries)


async def _answer(ws, ref: str) -> tuple[str, object]:
    """("reply", payload) for the reply to `ref`, or ("closed", code)."""
    from veraltheim.protocol import decode

    try:
        async with asyncio.timeout(ANSWER_WAIT_S):
            while True:
                msg = decode(await ws.recv(), sender="server")
                if msg.event == "phx_reply" and msg.ref == ref:
                    return "reply", msg.payload
    except ConnectionClosed:
        rcvd = ws.protocol.close_rcvd
        return "closed", rcvd.code if rcvd else None


def _check_answer(kind: str, answer: object) -> None:
    if kind == "closed":
        event(f"closed {answer}")  # --hypothesis-show-statistics lists the outcomes
        assert answer in BAD_FRAME_CLOSES, f"closed with {answer}"
        return
    assert isinstance(answer, dict) and answer["status"] in ("ok", "error"), answer
    if answer["status"] == "error":
        response = answer["response"]
        assert isinstance(response, dict) and response.get("reason"), answer
        event(f"error {response['reason']}")
    else:
        event("ok")


async def _push_raw(url: str, topic: str, frame: str | bytes, read_only: bool) -> None:
    # max_size=None: a mutant may name no params, and the defaults' honest 3 MB reply must reach
    # the check instead of closing this client (1009, close_rcvd None) on its own 1 MiB limit.
    ws = await open_socket(url, token=sign("mallory", read_only=read_only) if read_only else None,
                           user="mallory", max_size=None)  # fmt: skip
    try:
        reply = await join(ws, topic)
        assert reply["status"] == "ok", reply
        await ws.send(frame)
        _check_answer(*await _answer(ws, "9"))
    finally:
        await ws.close()


def _frame(topic: str, event: str, payload: bytes | dict) -> str | bytes:
    return encode(Message("1", "9", topic, event, payload), sender="client")


@st.composite
def mutated_update_messages(draw) -> bytes:
    """Mostly a well-framed message around a mutated update (so pycrdt sees it); else the
    whole message mutated."""
    update = draw(yjs_updates())
    if draw(st.integers(0, 3)):
        return create_update_message(draw(mutate(update)))
    return draw(mutate(create_update_message(update)))


@settings(HOSTILE, max_examples=60)
@given(payload=mutated_update_messages(), read_only=st.booleans())
def test_mutated_yjs_updates(svc, watch, payload, read_only):
    start = watch.window()
    asyncio.run(_push_raw(svc.ws_url, DOC, _frame(DOC, "yjs", payload), read_only))
    watch.check(start, f"mutated update {payload[:64].hex()}")


@settings(HOSTILE, max_examples=60)
@given(update=awareness_updates().flatmap(mutate), read_only=st.booleans())
def test_mutated_awareness_messages(svc, watch, update, read_only):
    start = watch.window()
    payload = b"\x01" + _var_uint(len(update)) + update
    asyncio.run(_push_raw(svc.ws_url, DOC, _frame(DOC, "yjs", payload), read_only))
    watch.check(start, f"mutated awareness {payload[:64].hex()}")


def _var_uint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


valid_frames = st.sampled_from(
    [
        _frame("lobby", "ping", {"n": 1, "s": "x", "l": [1.5, 2]}),
        _frame("lobby", "ping", b"\x00raw bytes"),
        _frame(DOC, "yjs", b"\x00\x00\x01\x00"),
        _frame("lobby", "shout", {"deep": [[[[1]]]]}),
    ]
)


@st.composite
def mutated_frames(draw) -> str | bytes:
    frame = draw(valid_frames)
    if isinstance(frame, bytes):
        return draw(mutate(frame))
    raw = draw(mutate(frame.encode()))
    return raw.decode("utf-8", "replace") if draw(st.booleans()) else raw.decode("latin-1")


@settings(HOSTILE, max_examples=60)
@given(frame=mutated_frames())
def test_mutated_frames(svc, watch, frame):
    start = watch.window()

    async def run() -> None:
        ws = await open_socket(svc.ws_url, user="mallory")
        try:
            for topic in ("lobby", DOC):
                await ws.send(_frame(topic, "phx_join", {}).replace('"9"', f'"j{topic}"'))
            await ws.send(frame)
            await ws.send(_frame("phoenix", "heartbeat", {}).replace('"1"', "null", 1))
            kind, answer = await _answer(ws, "9")  # the heartbeat is answered, or a close
            _check_answer(kind, answer)
        finally:
            await ws.close()

    asyncio.run(run())
    watch.check(start, f"mutated frame {frame[:80]!r}")


kernels = st.sampled_from(
    [
        ({"kernel": "hash.sha256", "params": {}}, b"abc"),
        ({"kernel": "data.sort", "params": {"dtype": "f64"}}, bytes(64)),
        ({"kernel": "image.grayscale", "params": {"width": 2, "height": 2}}, bytes(16)),
        ({"kernel": "fractal.mandelbrot", "params": {"width": 32, "height": 16}}, b""),
        ({"kernel": "data.stats", "params": {"bins": 8}}, bytes(80)),
    ]
)


@st.composite
def mutated_envelopes(draw) -> bytes:
    header, body = draw(kernels)
    header = {**header, "id": "e1"}
    if draw(st.booleans()):  # a hostile value in a param
        name = draw(st.sampled_from(["width", "height", "bins", "max_iter", "radius"]))
        header["params"] = {**header["params"], name: draw(st.sampled_from(
            [10**9, -1, 2**63, 1e300, "1", None, [], 0.5]))}  # fmt: skip
    return draw(mutate(pack_envelope(header, body)))


@settings(HOSTILE, max_examples=60)
@given(envelope=mutated_envelopes())
def test_mutated_compute_envelopes(svc, watch, envelope):
    start = watch.window()
    frame = _frame("compute:default", "compute_request", envelope)
    asyncio.run(_push_raw(svc.ws_url, "compute:default", frame, False))
    watch.check(start, f"mutated envelope {envelope[:64].hex()}")
