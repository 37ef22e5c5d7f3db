"""The cluster's message envelope and presence merging, without Redis: nodes joined by an
in-memory bus that delivers (or, to simulate an outage, loses) each message."""

from __future__ import annotations

import json

import pytest
from veraltheim.protocol.constants import PRESENCE_DIFF
from veraltheim.service.cluster import envelope
from veraltheim.service.cluster.envelope import BadEnvelope, Envelope
from veraltheim.service.cluster.presence import ClusterPresence
from veraltheim.service.cluster.pubsub import RedisPubSub
from veraltheim.service.cluster.urls import check_cluster_config
from veraltheim.service.config import ClusterConfig

from tests.support.frames import RecordingSubscriber, WriteAtOnce


def test_envelope_round_trip_and_refusals():
    data = envelope.pack(envelope.BROADCAST, "node/1", "doc:é", b"\x00frame")
    assert envelope.unpack(data) == Envelope(envelope.BROADCAST, "node/1", "doc:é", b"\x00frame")
    for bad in (b"", data[:5], b"\x02" + data[1:], data[:1] + b"?" + data[2:], data[:4] + b"\xff"):
        with pytest.raises(BadEnvelope):
            envelope.unpack(bad)


def test_cluster_urls_are_checked():
    check_cluster_config(ClusterConfig(pubsub_url="redis://h:6379/0", compute_url="dask://h:8786"))
    for bad in (
        ClusterConfig(pubsub_url="http://h"),
        ClusterConfig(store_url="redis://h:notaport"),
        ClusterConfig(compute_url="redis://h:1"),
        ClusterConfig(heartbeat_s=1.0, down_after_s=1.5),
        ClusterConfig(store_url="redis://h:1/0"),  # documents need the pubsub too
    ):
        with pytest.raises(ValueError):
            check_cluster_config(bad)


class Net:
    """Every bus sends to every other one, unless the net is cut."""

    def __init__(self) -> None:
        self.buses: list[FakeBus] = []
        self.cut = False


class FakeBus:
    def __init__(self, net: Net, node: str) -> None:
        self.net, self.node = net, node
        self.handlers: dict = {}
        self.on_up: list = []
        net.buses.append(self)

    def on(self, kind, handler) -> None:
        self.handlers[kind] = handler

    def send(self, kind: int, topic: str, body: bytes) -> None:
        if self.net.cut:
            return
        env = envelope.unpack(envelope.pack(kind, self.node, topic, body))
        for bus in self.net.buses:
            if bus is not self and kind in bus.handlers:
                bus.handlers[kind](env)


class Sub(RecordingSubscriber):
    """A subscriber that records the presence diffs it is sent."""

    def diffs(self) -> list[dict]:
        out = []
        for frame in self.wires:
            text = frame[frame.index(b"[null") :].decode()  # after the WebSocket header
            _, _, _, event, payload = json.loads(text)
            if event == PRESENCE_DIFF:
                out.append(payload)
        return out


def node(net: Net, name: str) -> tuple[ClusterPresence, Sub]:
    bus = FakeBus(net, name)
    pubsub = RedisPubSub(bus, WriteAtOnce())  # type: ignore[arg-type]
    presence = ClusterPresence(pubsub, bus, heartbeat_s=1.0, down_after_s=5.0)  # type: ignore[arg-type]
    sub = Sub()
    pubsub.subscribe("room", sub)
    return presence, sub


def keys(presence: ClusterPresence) -> set[str]:
    return set(presence.list("room"))


def test_entries_merge_across_nodes_and_each_node_tells_its_own_subscribers():
    net = Net()
    (a, sub_a), (b, sub_b) = node(net, "a"), node(net, "b")
    a.track("owner1", "room", "ann", {"x": 1})
    b.track("owner2", "room", "bob")
    assert keys(a) == keys(b) == {"ann", "bob"}
    assert [list(d["joins"]) for d in sub_b.diffs()] == [["ann"], ["bob"]]
    a.untrack("owner1")
    assert keys(b) == {"bob"}
    assert sub_b.diffs()[-1]["leaves"]["ann"]["metas"][0]["x"] == 1
    assert sub_a.diffs()[-1]["leaves"]["ann"]["metas"][0]["x"] == 1


def test_a_lost_change_is_repaired_by_the_next_heartbeat():
    net = Net()
    (a, _), (b, sub_b) = node(net, "a"), node(net, "b")
    a.track("o1", "room", "ann")
    net.cut = True
    a.track("o2", "room", "amy")  # lost on the way
    a.untrack("o1")  # lost too
    net.cut = False
    assert keys(b) == {"ann"}
    a.bus.send(envelope.HEARTBEAT, "", json.dumps({"v": a.version}).encode())
    assert keys(b) == {"amy"}  # b asked for a's state and replaced what it held
    last = sub_b.diffs()[-1]
    assert set(last["joins"]) == {"amy"} and set(last["leaves"]) == {"ann"}


def test_a_silent_node_is_dropped_and_a_stopping_one_at_once(monkeypatch):
    net = Net()
    (a, sub_a), (b, _), (c, _) = node(net, "a"), node(net, "b"), node(net, "c")
    b.track("o", "room", "bob")
    c.track("o", "room", "cid")
    clock = [1000.0]
    monkeypatch.setattr("veraltheim.service.cluster.presence.time.monotonic", lambda: clock[0])
    for other in ("b", "c"):
        a.last_heard[other] = clock[0]
    clock[0] += 4.9
    a._check_down()
    assert keys(a) == {"bob", "cid"}
    a.last_heard["c"] = clock[0]  # c keeps talking, b is silent
    clock[0] += 0.2
    a._check_down()
    assert keys(a) == {"cid"}
    assert set(sub_a.diffs()[-1]["leaves"]) == {"bob"}
    c.bus.send(envelope.BYE, "", b"")
    assert keys(a) == set()
