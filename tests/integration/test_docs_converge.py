"""Two and ten clients make random concurrent edits to one document and converge (hypothesis)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Map, Text
from veraltheim.client.net.socket import Socket
from veraltheim.client.state.shared_doc import SharedDoc
from veraltheim.client.state.store import DocumentStore

from tests.support.service import running_service

TIMEOUT_S = 15.0
# Each example runs real sockets against a real service: the same examples on every run
# (derandomize), no deadline, few examples, and no shrinking (one shrink step can cost a
# timeout; the scripts are short enough to read as they are).
CONVERGE = settings(
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# One edit: (kind, position or key, value)
edit = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 50), st.text("abcxyz", min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, 50), st.integers(1, 3)),
    st.tuples(st.just("set"), st.sampled_from("pqrs"), st.integers(0, 9)),
    st.tuples(st.just("append"), st.just(""), st.integers(0, 99)),
)

toggle = st.just(("toggle", "", 0))


def apply(doc: SharedDoc, op: tuple) -> None:
    kind, where, value = op
    text = doc.doc.get("t", type=Text)
    if kind == "insert":
        text.insert(min(where, len(text)), value)
    elif kind == "delete" and len(text):
        start = min(where, len(text) - 1)
        del text[start : min(len(text), start + value)]
    elif kind == "set":
        doc.doc.get("m", type=Map)[where] = value
    elif kind == "append":
        doc.doc.get("a", type=Array).append(value)


def content(doc: SharedDoc) -> tuple:
    d = doc.doc
    entries = sorted(d.get("m", type=Map).to_py().items())  # Map order differs between peers
    return (str(d.get("t", type=Text)), entries, d.get("a", type=Array).to_py())


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("converge"), "--no-auth") as s:
        yield s


names = itertools.count()


async def converge(url: str, cache_root: Path, scripts: list[list[tuple]]) -> None:
    name = f"random{next(names)}"
    socks = [Socket(url) for _ in scripts]
    stores = [DocumentStore(cache_root / f"{name}-{i}", s) for i, s in enumerate(socks)]
    try:
        await asyncio.gather(*(s.connect() for s in socks))
        docs = [await st_.open(name) for st_ in stores]
        await asyncio.gather(*(d.wait_synced(TIMEOUT_S) for d in docs))

        async def run(sock: Socket, doc: SharedDoc, script: list[tuple]) -> None:
            for op in script:
                if op[0] == "toggle":  # go offline, or come back (edits meanwhile stay local)
                    await (sock.disconnect() if sock.connected else sock.connect())
                else:
                    apply(doc, op)
                await asyncio.sleep(0)  # interleave with the other clients and the network
            if not sock.connected:
                await sock.connect()

        await asyncio.gather(*(run(*c) for c in zip(socks, docs, scripts, strict=True)))
        await asyncio.gather(*(d.wait_synced(TIMEOUT_S) for d in docs))
        await asyncio.gather(*(d.flush(TIMEOUT_S) for d in docs))

        async def settled() -> None:
            while len({repr(content(d)) for d in docs}) > 1:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(settled(), TIMEOUT_S)
        # a newcomer loads the service's copy: the same content
        late_sock = Socket(url)
        socks.append(late_sock)
        await late_sock.connect()
        late = DocumentStore(cache_root / f"{name}-late", late_sock)
        stores.append(late)
        newcomer = await late.open(name)
        await newcomer.wait_synced(TIMEOUT_S)
        await asyncio.wait_for(_until(lambda: content(newcomer) == content(docs[0])), TIMEOUT_S)
        appended = sorted(op[2] for s in scripts for op in s if op[0] == "append")
        assert sorted(content(docs[0])[2]) == appended  # no edit lost
    finally:
        for store in stores:
            await store.aclose()
        for s in socks:
            await s.disconnect()


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


@settings(CONVERGE, max_examples=15)
@given(scripts=st.lists(st.lists(edit, max_size=25), min_size=2, max_size=2))
def test_two_clients_converge(svc, tmp_path, scripts):
    asyncio.run(converge(svc.ws_url, tmp_path, scripts))


@settings(CONVERGE, max_examples=8)
@given(scripts=st.lists(st.lists(edit | toggle, max_size=25), min_size=3, max_size=3))
def test_clients_going_offline_and_back_converge(svc, tmp_path, scripts):
    asyncio.run(converge(svc.ws_url, tmp_path, scripts))


@settings(CONVERGE, max_examples=5)
@given(scripts=st.lists(st.lists(edit, max_size=15), min_size=10, max_size=10))
def test_ten_clients_converge(svc, tmp_path, scripts):
    asyncio.run(converge(svc.ws_url, tmp_path, scripts))
