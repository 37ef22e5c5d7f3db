"""The service channel state machine (protocol/channel_server.py), with no socket."""

from __future__ import annotations

import pytest
from veraltheim.protocol import Message
from veraltheim.protocol.channel_server import ServerChannel, end_message

T = "room:1"


def m(ref, event, payload=None) -> Message:
    return Message("3", ref, T, event, {} if payload is None else payload)


def ok(ref, response=None) -> Message:
    return Message.reply("3", ref, T, "ok", {} if response is None else response)


def error(ref, response) -> Message:
    return Message.reply("3", ref, T, "error", response)


def run(script):
    ch = ServerChannel(T, "3")
    out: list = []
    for op, *args in script:
        result = getattr(ch, op)(*args)
        out = result if isinstance(result, list) else out
    return ch, out


CASES = [
    ("nothing goes out while the join runs", [("push", "hello", {"a": 1})], []),
    (
        "an ok join: its reply, then what was pushed meanwhile, in order",
        [("push", "a", {}), ("push", "b", {}), ("join_ok", "1", {"user": "u"})],
        [ok("1", {"user": "u"}), m(None, "a"), m(None, "b")],
    ),
    (
        "a refused join: its error reply only",
        [("push", "a", {}), ("join_refused", "1", {"reason": "no"})],
        [error("1", {"reason": "no"})],
    ),
    (
        "a push once joined goes at once",
        [("join_ok", "1", {}), ("push", "a", {"x": 1})],
        [m(None, "a", {"x": 1})],
    ),
    (
        "a reply once joined goes at once",
        [("join_ok", "1", {}), ("received", "5"), ("reply", "5", "ok", {"n": 1})],
        [ok("5", {"n": 1})],
    ),
    ("a leave is answered ok", [("join_ok", "1", {}), ("leave", "9")], [ok("9")]),
    ("nothing goes out after the end", [("join_ok", "1", {}), ("end",), ("push", "a", {})], []),
    (
        "a refused join holds nothing for later",
        [("push", "a", {}), ("join_refused", "1", {}), ("end",), ("push", "b", {})],
        [],
    ),
]


@pytest.mark.parametrize(("script", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(script, expected):
    _, out = run(script)
    assert out == expected


def test_client_pushes_wait_for_their_replies_until_drained():
    ch, _ = run([("join_ok", "1", {}), ("received", "5"), ("received", "6"), ("received", None)])
    assert (ch.in_flight, ch.drained) == (2, False)
    ch.reply("5", "ok", {})
    assert (ch.in_flight, ch.drained) == (1, False)
    ch.reply("6", "error", {})
    assert ch.drained


def test_end_message_reads_plain_strings_too():
    # the per-reason table is test_protocol_socket_server.py's (ServerSocket.ended uses this)
    assert end_message(T, "3", "crashed") == Message("3", "3", T, "phx_error", {})
    assert end_message(T, "3", "left") == Message("3", "3", T, "phx_close", {})
    assert end_message(T, "3", "no such reason") is None
