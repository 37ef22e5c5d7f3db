"""The client heartbeat state machine (protocol/heartbeat.py), rule by rule, with no socket."""

from __future__ import annotations

import itertools

import pytest
from veraltheim.protocol import Message
from veraltheim.protocol.effects import CancelTimer, Send, SetTimer
from veraltheim.protocol.heartbeat import TICK, Dead, Heartbeat, Pong

INTERVAL = 30.0


class Refs:
    def __init__(self) -> None:
        self._n = itertools.count(1)

    def make_ref(self) -> str:
        return str(next(self._n))


def beat(ref: str) -> Send:
    return Send(Message(None, ref, "phoenix", "heartbeat", {}))


def ok(ref: str, topic: str = "phoenix") -> Message:
    return Message.reply(None, ref, topic, "ok", {})


def step(hb: Heartbeat, action: tuple) -> list:
    op, *args = action
    if op == "open":
        return hb.opened(*args)
    if op == "recv":
        return hb.receive(*args)
    if op == "tick":
        return hb.timeout(TICK, *args)
    if op == "ping":
        return hb.ping(*args)[1]
    return hb.closed()


CASES = [
    (
        "a heartbeat at once on open, then the tick timer",
        [("open", 0.0)],
        [beat("1"), SetTimer(TICK, INTERVAL)],
    ),
    ("its reply is not reported", [("open", 0.0), ("recv", ok("1"), 0.25)], []),
    (
        "an answered heartbeat: the next tick sends another",
        [("open", 0.0), ("recv", ok("1"), 0.1), ("tick", 30.0)],
        [beat("2"), SetTimer(TICK, INTERVAL)],
    ),
    (
        "an unanswered heartbeat at the next tick: the link is dead",
        [("open", 0.0), ("tick", 30.0)],
        [Dead("heartbeat timeout")],
    ),
    (
        "a reply on another topic does not count",
        [("open", 0.0), ("recv", ok("1", "lobby"), 0.1), ("tick", 30.0)],
        [Dead("heartbeat timeout")],
    ),
    (
        "a reply with another ref does not count",
        [("open", 0.0), ("recv", ok("7"), 0.1), ("tick", 30.0)],
        [Dead("heartbeat timeout")],
    ),
    ("a ping sends a heartbeat of its own", [("open", 0.0), ("ping", 1.0)], [beat("2")]),
    (
        "a ping's reply is a Pong with the round trip",
        [("open", 0.0), ("ping", 1.0), ("recv", ok("2"), 1.5)],
        [Pong("2", 500.0)],
    ),
    ("closing cancels the tick", [("open", 0.0), ("close",)], [CancelTimer(TICK)]),
    (
        "a ping's reply after a close is ignored",
        [("open", 0.0), ("ping", 1.0), ("close",), ("recv", ok("2"), 1.5)],
        [],
    ),
    (
        "reopening forgets the unanswered heartbeat",
        [("open", 0.0), ("close",), ("open", 40.0)],
        [beat("2"), SetTimer(TICK, INTERVAL)],
    ),
]


@pytest.mark.parametrize(("script", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(script, expected):
    hb = Heartbeat(INTERVAL, Refs())
    out: list = []
    for action in script:
        out = step(hb, action)
    assert out == expected


def test_round_trip_of_heartbeats_and_pings():
    hb = Heartbeat(INTERVAL, Refs())
    assert hb.rtt_ms is None
    hb.opened(10.0)
    hb.receive(ok("1"), 10.02)
    assert hb.rtt_ms == pytest.approx(20.0)
    ref, _ = hb.ping(11.0)
    hb.forget_ping(ref)  # its caller gave up: a late reply is not a Pong
    assert hb.receive(ok(ref), 11.5) == []
