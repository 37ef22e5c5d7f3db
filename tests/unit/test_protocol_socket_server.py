"""The service socket state machine (protocol/socket_server.py), rule by rule, with no socket."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from veraltheim.protocol import Message
from veraltheim.protocol.channel_server import EndReason
from veraltheim.protocol.effects import Send
from veraltheim.protocol.socket_server import (
    ChannelLimit,
    Deliver,
    Join,
    Leave,
    ServerSocket,
    Stop,
)

ROUTES = {"lobby": "LobbyChannel", "room:1": "RoomChannel", "room:2": "RoomChannel"}
LONG = "room:" + "x" * 251  # 256 bytes: too long for a binary frame


@dataclass(eq=False)
class Chan:
    topic: str
    join_ref: str | None


def sock(max_channels: int = 2) -> ServerSocket[Chan]:
    return ServerSocket(ROUTES.get, max_channels)


def reply(msg: Message, status: str, response) -> Send:
    return Send(Message.reply(msg.join_ref, msg.ref, msg.topic, status, response))


HB = Message(None, "5", "phoenix", "heartbeat", {})
PHX_OTHER = Message(None, "5", "phoenix", "nope", {})
JOIN = Message("1", "1", "room:1", "phx_join", {"a": 1})
JOIN_NO_REF = Message(None, "3", "room:1", "phx_join", {})
REJOIN = Message("9", "9", "room:1", "phx_join", {})
JOIN_2 = Message("2", "2", "room:2", "phx_join", {})
JOIN_LOBBY = Message("4", "4", "lobby", "phx_join", {})
UNKNOWN = Message("1", "1", "nowhere", "phx_join", {})
NOT_OBJECT = Message("1", "1", "room:1", "phx_join", [1])
TOO_LONG = Message("1", "1", LONG, "phx_join", {})
PUSH = Message("1", "7", "room:1", "ping", {"n": 1})
PUSH_STALE = Message("0", "7", "room:1", "ping", {})
PUSH_NO_JOIN_REF = Message(None, "7", "room:1", "ping", {})
PUSH_ELSEWHERE = Message("1", "7", "room:2", "ping", {})
LEAVE = Message("1", "8", "room:1", "phx_leave", {})
LEAVE_STALE = Message("0", "8", "room:1", "phx_leave", {})
LEAVE_ELSEWHERE = Message("1", "8", "room:2", "phx_leave", {})
FAKE_REPLY = Message("1", "8", "room:1", "phx_reply", {})
FAKE_CLOSE = Message("1", "8", "room:1", "phx_close", {})

UNMATCHED = {"reason": "unmatched topic"}
joined = {"room:1": "1"}  # topic -> join_ref joined before the message

CASES = [
    ("a heartbeat is answered ok", {}, HB, True, [reply(HB, "ok", {})]),
    (
        "anything else on phoenix is an unmatched topic",
        {},
        PHX_OTHER,
        True,
        [reply(PHX_OTHER, "error", UNMATCHED)],
    ),
    ("a join goes to the route of its topic", {}, JOIN, True, [Join(JOIN, "1", "RoomChannel")]),
    (
        "a join with no join_ref uses its ref",
        {},
        JOIN_NO_REF,
        True,
        [Join(JOIN_NO_REF, "3", "RoomChannel")],
    ),
    (
        "a join no route matches: unmatched topic",
        {},
        UNKNOWN,
        True,
        [reply(UNKNOWN, "error", UNMATCHED)],
    ),
    (
        "a join payload that is not an object",
        {},
        NOT_OBJECT,
        True,
        [reply(NOT_OBJECT, "error", {"reason": "join payload must be a JSON object"})],
    ),
    (
        "a topic too long for a binary frame",
        {},
        TOO_LONG,
        True,
        [reply(TOO_LONG, "error", {"reason": "topic too long", "limit": 255})],
    ),
    (
        "no joins while the service stops",
        {},
        JOIN,
        False,
        [reply(JOIN, "error", {"reason": "service is shutting down"})],
    ),
    (
        "a join over the channel cap",
        {"room:1": "1", "lobby": "4"},
        JOIN_2,
        True,
        [ChannelLimit(), reply(JOIN_2, "error", {"reason": "too many channels", "limit": 2})],
    ),
    ("a push for a joined channel goes to it", joined, PUSH, True, ["deliver"]),
    (
        "a push with no join_ref goes to the joined channel",
        joined,
        PUSH_NO_JOIN_REF,
        True,
        ["deliver"],
    ),
    (
        "a push for another join_ref: unmatched topic",
        joined,
        PUSH_STALE,
        True,
        [reply(PUSH_STALE, "error", UNMATCHED)],
    ),
    (
        "a push for a topic not joined: unmatched topic",
        joined,
        PUSH_ELSEWHERE,
        True,
        [reply(PUSH_ELSEWHERE, "error", UNMATCHED)],
    ),
    ("a leave of a joined channel", joined, LEAVE, True, ["leave"]),
    (
        "a leave for another join_ref is answered ok",
        joined,
        LEAVE_STALE,
        True,
        [reply(LEAVE_STALE, "ok", {})],
    ),
    (
        "a leave of a topic not joined is answered ok",
        joined,
        LEAVE_ELSEWHERE,
        True,
        [reply(LEAVE_ELSEWHERE, "ok", {})],
    ),
    (
        "phx_reply comes from the service only",
        joined,
        FAKE_REPLY,
        True,
        [reply(FAKE_REPLY, "error", {"reason": "phx_reply is sent by the service only"})],
    ),
    (
        "phx_close comes from the service only",
        joined,
        FAKE_CLOSE,
        True,
        [reply(FAKE_CLOSE, "error", {"reason": "phx_close is sent by the service only"})],
    ),
]


@pytest.mark.parametrize(
    ("before", "msg", "accepting", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule(before, msg, accepting, expected):
    s = sock()
    chans = {topic: Chan(topic, ref) for topic, ref in before.items()}
    for chan in chans.values():
        s.add(chan)
    out = s.receive(msg, accepting_joins=accepting)
    target = chans.get(msg.topic)
    expected = [
        Deliver(target, msg) if e == "deliver" else Leave(target, msg.ref) if e == "leave" else e
        for e in expected
    ]
    assert out == expected


def test_a_second_join_closes_the_old_channel_with_its_join_ref():
    s = sock(max_channels=1)
    old = Chan("room:1", "1")
    s.add(old)
    out = s.receive(REJOIN)  # at the cap, but a duplicate replaces rather than adds
    assert out == [
        Stop(old, EndReason.DUPLICATE),
        Send(Message("1", "1", "room:1", "phx_close", {})),
        Join(REJOIN, "9", "RoomChannel"),
    ]
    assert s.channels == {}  # forgotten at once: a push now is for no channel
    new = Chan("room:1", "9")
    s.add(new)
    assert s.ended(old, EndReason.DUPLICATE) == []  # the old one ending later keeps the new one
    assert s.channels == {"room:1": new}


@pytest.mark.parametrize(
    ("reason", "event"),
    [
        (EndReason.CRASHED, "phx_error"),
        (EndReason.LEFT, "phx_close"),
        (EndReason.SHUTDOWN, "phx_close"),
        (EndReason.DUPLICATE, None),
        (EndReason.CLOSED, None),
        (EndReason.JOIN_REFUSED, None),
    ],
)
def test_an_ended_channel_is_forgotten_and_its_client_told(reason, event):
    s = sock()
    chan = Chan("room:1", "3")
    s.add(chan)
    out = s.ended(chan, reason)
    assert s.channels == {}
    assert out == ([] if event is None else [Send(Message("3", "3", "room:1", event, {}))])


def test_nothing_is_told_on_a_closing_socket():
    s = sock()
    chan = Chan("room:1", "3")
    s.add(chan)
    assert s.ended(chan, EndReason.CRASHED, closing=True) == []
    assert s.channels == {}
