"""Sans-I/O parts of the service: token buckets, router, pubsub fan-out, presence, metrics."""

import asyncio

import pytest
from veraltheim.protocol import decode
from veraltheim.service import pubsub as pubsub_module
from veraltheim.service.limits import TokenBucket, UserBuckets
from veraltheim.service.metrics import Metrics
from veraltheim.service.presence import Presence
from veraltheim.service.pubsub import PubSub
from veraltheim.service.router import Router

from tests.support.frames import RecordingSubscriber, WriteAtOnce


def test_token_bucket_allows_the_burst_then_refills_at_rate():
    bucket = TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5)  # 0.5 s * 2/s = one token back
    assert not bucket.take(0.5)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_token_bucket_rate_zero_means_no_limit():
    bucket = TokenBucket(rate=0, burst=1, now=0.0)
    assert all(bucket.take(0.0) for _ in range(1000))


def test_user_buckets_are_shared_and_dropped_with_the_last_socket():
    users = UserBuckets(rate=1, burst=2)
    a, b = users.acquire("u", 0.0), users.acquire("u", 0.0)
    assert a is b and len(users) == 1
    users.release("u")
    assert len(users) == 1
    users.release("u")
    assert len(users) == 0


def test_router_exact_and_prefix_patterns():
    class A: ...

    class B: ...

    class C: ...

    router = Router()
    router.add("lobby", A)
    router.add("doc:*", B)
    router.add("doc:special:*", C)
    assert router.match("lobby") is A
    assert router.match("lobby2") is None
    assert router.match("doc:x") is B
    assert router.match("doc:special:x") is C
    assert router.match("compute:default") is None
    with pytest.raises(ValueError, match="may only end"):
        router.add("a*b", A)


def payload_of(wire: bytes):
    # an unmasked server frame: FIN + opcode, then a 7-bit length or 126 + a 16-bit length
    assert wire[1] <= 126
    data = wire[2:] if wire[1] < 126 else wire[4:]
    assert len(data) == (wire[1] if wire[1] < 126 else int.from_bytes(wire[2:4], "big"))
    return decode(data.decode() if wire[0] == 0x81 else data, sender="server")


def test_broadcast_encodes_once_and_skips_the_sender(monkeypatch):
    calls = []
    real = pubsub_module.encode_broadcast
    monkeypatch.setattr(pubsub_module, "encode_broadcast", lambda *a: calls.append(a) or real(*a))
    ps = PubSub(WriteAtOnce())
    subs = [RecordingSubscriber() for _ in range(50)]
    for s in subs:
        ps.subscribe("t", s)
    assert ps.broadcast("t", "e", {"k": 1}, exclude=subs[0]) == 49
    assert len(calls) == 1
    assert subs[0].wires == []
    first = subs[1].wires[0]
    assert all(s.wires[0] is first for s in subs[1:])  # the very same bytes object
    msg = payload_of(first)
    assert (msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload) == (
        None,
        None,
        "t",
        "e",
        {"k": 1},
    )
    assert payload_of(ps_binary(ps)).payload == b"\x01\x02"


def ps_binary(ps):
    sub = RecordingSubscriber()
    ps.subscribe("b", sub)
    ps.broadcast("b", "e", b"\x01\x02")
    assert sub.wires[0][0] == 0x82  # a binary frame
    return sub.wires[0]


def test_unsubscribe_and_publish():
    ps = PubSub(WriteAtOnce())
    a, b = RecordingSubscriber(), RecordingSubscriber()
    ps.subscribe("t", a)
    ps.subscribe("t", b)
    assert ps.publish("t", {"hello": 1}, exclude=a) == 1
    assert b.infos == [{"hello": 1}] and a.infos == []
    ps.unsubscribe("t", a)
    ps.unsubscribe("t", b)
    assert ps.subscribers("t") == 0
    assert ps.broadcast("t", "e", {}) == 0


class DiffWatcher(RecordingSubscriber):
    """A subscriber whose `next_diff()` waits for the next presence_diff frame."""

    def __init__(self):
        super().__init__()
        self.arrived = asyncio.Event()

    def send(self, frames):
        self.arrived.set()
        return super().send(frames)

    async def next_diff(self):
        await asyncio.wait_for(self.arrived.wait(), 5)
        self.arrived.clear()
        msg = payload_of(self.wires[-1])
        assert msg.event == "presence_diff"
        return msg.payload


async def test_presence_track_list_untrack_with_diffs():
    ps = PubSub(WriteAtOnce())
    watcher = DiffWatcher()
    ps.subscribe("room", watcher)
    presence = Presence(ps)
    r1 = presence.track("owner1", "room", "alice", {"device": "laptop"})
    assert await watcher.next_diff() == {
        "joins": {"alice": {"metas": [{"device": "laptop", "phx_ref": r1}]}},
        "leaves": {},
    }
    r2 = presence.track("owner2", "room", "alice", {"device": "phone"})
    assert r1 != r2
    state = presence.list("room")
    assert [m["device"] for m in state["alice"]["metas"]] == ["laptop", "phone"]
    assert (await watcher.next_diff())["joins"]["alice"]["metas"][0]["phx_ref"] == r2
    presence.untrack("owner1")
    assert await watcher.next_diff() == {
        "joins": {},
        "leaves": {"alice": {"metas": [{"device": "laptop", "phx_ref": r1}]}},
    }
    presence.untrack("owner2", "room")
    assert presence.list("room") == {}
    assert (await watcher.next_diff())["leaves"]["alice"]["metas"][0]["phx_ref"] == r2
    assert len(watcher.wires) == 4


async def test_presence_changes_within_one_window_go_out_as_one_diff():
    ps = PubSub(WriteAtOnce())
    watcher = DiffWatcher()
    ps.subscribe("room", watcher)
    presence = Presence(ps)
    a = presence.track("owner-a", "room", "alice")
    b = presence.track("owner-b", "room", "bob")
    b2 = presence.track("owner-b2", "room", "bob")
    presence.untrack("owner-a")
    diff = await watcher.next_diff()
    assert len(watcher.wires) == 1  # three joins and a leave: one broadcast
    assert diff == {
        "joins": {
            "alice": {"metas": [{"phx_ref": a}]},
            "bob": {"metas": [{"phx_ref": b}, {"phx_ref": b2}]},
        },
        "leaves": {"alice": {"metas": [{"phx_ref": a}]}},
    }
    assert list(presence.list("room")) == ["bob"]  # joins, then leaves: alice is gone


def test_metrics_render_prometheus_text():
    m = Metrics()
    c = m.counter("things", "things done")
    c.inc()
    c.inc(2, kind='a"b')
    m.gauge("level", "current level", lambda: 2.5)
    text = m.render()
    assert "# TYPE veraltheim_things counter" in text
    assert "veraltheim_things_total 1\n" in text
    assert 'veraltheim_things_total{kind="a\\"b"} 2\n' in text
    assert "# TYPE veraltheim_level gauge\nveraltheim_level 2.5\n" in text
    assert m.counter("things", "again") is c
    with pytest.raises(ValueError, match="already registered"):
        m.gauge("things", "clash", lambda: 0)


def test_only_our_service_command_lines_count_as_the_service():
    from veraltheim.service.daemon import is_service_command

    ours = [
        ["/usr/bin/veraltheim-service", "run"],
        ["/opt/venv/bin/python3", "/opt/venv/bin/veraltheim-service", "start", "--port", "0"],
        ["python", "-m", "veraltheim.service", "start"],
        ["/opt/veraltheim/veraltheim-service", "run"],
    ]
    others = [
        ["python", "-c", "pass", "service"],
        ["/usr/sbin/my-service"],
        ["python", "-m", "service"],
        ["python", "myscript.py", "veraltheim-service"],
        ["bash", "-c", "veraltheim.service"],
        [""],
    ]
    assert all(is_service_command(argv) for argv in ours)
    assert not any(is_service_command(argv) for argv in others)


def test_socket_caps_in_all_per_user_and_per_address():
    from veraltheim.service.admission import FD_RESERVE, SocketCaps, auto_max_sockets

    caps = SocketCaps(total=3, per_user=2, per_address=0)
    assert caps.refusal("ann", "10.0.0.1") is None
    caps.add("ann", "10.0.0.1")
    caps.add("ann", "10.0.0.2")
    assert "max_sockets_per_user" in caps.refusal("ann", "10.0.0.3")
    caps.add("bob", "10.0.0.1")
    assert "max_sockets)" in caps.refusal("cy", "10.0.0.9")
    caps.remove("ann", "10.0.0.1")
    assert caps.refusal("cy", "10.0.0.9") is None and caps.open == 2
    by_ip = SocketCaps(total=0, per_user=0, per_address=1)
    by_ip.add("a", "1.2.3.4")
    assert "max_sockets_per_ip" in by_ip.refusal("b", "1.2.3.4")
    assert by_ip.refusal("b", "1.2.3.5") is None
    assert auto_max_sockets(20_000) == 20_000 - FD_RESERVE and auto_max_sockets(None) > 0
