"""The client channel state machine (protocol/channel_client.py), rule by rule, with no socket:
each case feeds a script of events and checks the outputs of the last one and the state."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from veraltheim.protocol import Message
from veraltheim.protocol.backoff import Backoff
from veraltheim.protocol.channel_client import (
    REJOIN,
    SHUTDOWN_WINDOW_S,
    ChannelState,
    ClientChannel,
    Closed,
    Deliver,
    Errored,
    Fail,
    Joined,
    JoinRefused,
    LeaveOpenTopic,
    Reply,
    Resolve,
    Revived,
    reply_of,
)
from veraltheim.protocol.effects import CancelTimer, Send, SetTimer
from veraltheim.protocol.reasons import Reason

T = "room:1"
TIMEOUT = 10.0
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=10.0, jitter=0.0)  # no jitter: exact delays
S = ChannelState


class Refs:
    def __init__(self) -> None:
        self._n = itertools.count(1)

    def make_ref(self) -> str:
        return str(next(self._n))


def m(join_ref, ref, event, payload=None) -> Message:
    return Message(join_ref, ref, T, event, {} if payload is None else payload)


def reply(join_ref, ref, status="ok", response=None) -> Message:
    return Message.reply(join_ref, ref, T, status, {} if response is None else response)


def join_msg(join_ref: str) -> Send:
    return Send(m(join_ref, join_ref, "phx_join"))


def channel(connected: bool = True, params: Any = None) -> ClientChannel:
    return ClientChannel(
        T, Refs(), params=params, timeout_s=TIMEOUT, rejoin_backoff=BACKOFF, connected=connected
    )


def step(ch: ClientChannel, action: tuple) -> list:
    op, *args = action
    if op == "push":
        return ch.push(*args)[1]
    if op == "leave":
        return ch.leave()[1]
    if op == "recv":
        msg, now = (args + [0.0])[:2]
        return ch.receive(msg, now)
    if op == "drop":  # the connection closed: (code, now, topic_taken)
        code, now, taken = (args + [1006, 0.0, False][len(args) :])[:3]
        return ch.socket_closed("connection_closed", now, code, taken)
    if op == "open":
        return ch.socket_opened()
    if op == "fire":
        return ch.timeout(args[0])
    return getattr(ch, op)(*args)


JOINED = [("join",), ("recv", reply("1", "1"))]  # join_ref "1", joined

CASES = [
    # -- join ---------------------------------------------------------------------------------
    (
        "join sends phx_join with join_ref == ref, and starts its timer",
        True,
        [("join",)],
        [LeaveOpenTopic(), SetTimer(("join", 1), TIMEOUT), join_msg("1")],
        S.JOINING,
    ),
    (
        "a join before the socket is open waits for it",
        False,
        [("join",)],
        [LeaveOpenTopic()],
        S.JOINING,
    ),
    (
        "the socket opening sends the waiting join",
        False,
        [("join",), ("open",)],
        [LeaveOpenTopic(), SetTimer(("join", 1), TIMEOUT), join_msg("1")],
        S.JOINING,
    ),
    (
        "an ok reply to the join joins",
        True,
        [("join",), ("recv", reply("1", "1", "ok", {"user": "a"}))],
        [CancelTimer(("join", 1)), Joined({"user": "a"})],
        S.JOINED,
    ),
    # -- buffered pushes ------------------------------------------------------------------------
    (
        "a push before the join is buffered (its clock runs)",
        True,
        [("join",), ("push", "a", {"n": 1})],
        [SetTimer(("push", 2), TIMEOUT)],
        S.JOINING,
    ),
    (
        "buffered pushes go out in order right after the join, before Joined",
        True,
        [("join",), ("push", "a", {"n": 1}), ("push", "b", {}), ("recv", reply("1", "1"))],
        [
            CancelTimer(("join", 1)),
            Send(m("1", "2", "a", {"n": 1}), 2),
            Send(m("1", "3", "b"), 3),
            Joined({}),
        ],
        S.JOINED,
    ),
    (
        "a push on a joined channel goes at once",
        True,
        [*JOINED, ("push", "a", {"n": 1})],
        [SetTimer(("push", 2), TIMEOUT), Send(m("1", "2", "a", {"n": 1}), 2)],
        S.JOINED,
    ),
    (
        "a push's own timeout",
        True,
        [*JOINED, ("push", "a", {}, 0.5)],
        [SetTimer(("push", 2), 0.5), Send(m("1", "2", "a"), 2)],
        S.JOINED,
    ),
    # -- replies ----------------------------------------------------------------------------------
    (
        "a reply resolves the push with its ref, and only that one",
        True,
        [*JOINED, ("push", "a", {}), ("push", "b", {}), ("recv", reply("1", "3", "ok", {"b": 1}))],
        [CancelTimer(("push", 3)), Resolve(3, Reply("ok", {"b": 1}))],
        S.JOINED,
    ),
    (
        "a reply with an unknown ref is ignored",
        True,
        [*JOINED, ("push", "a", {}), ("recv", reply("1", "99"))],
        [],
        S.JOINED,
    ),
    (
        "a second reply for the same ref is ignored",
        True,
        [*JOINED, ("push", "a", {}), ("recv", reply("1", "2")), ("recv", reply("1", "2"))],
        [],
        S.JOINED,
    ),
    (
        "an error reply resolves the push with that status",
        True,
        [*JOINED, ("push", "a", {}), ("recv", reply("1", "2", "error", {"reason": "busy"}))],
        [CancelTimer(("push", 2)), Resolve(2, Reply("error", {"reason": "busy"}))],
        S.JOINED,
    ),
    # -- stale join_ref, events ------------------------------------------------------------------
    (
        "a message for another join_ref is dropped",
        True,
        [*JOINED, ("recv", m("0", None, "shout", {"x": 1}))],
        [],
        S.JOINED,
    ),
    (
        "a broadcast (no join_ref) reaches the bindings",
        True,
        [*JOINED, ("recv", m(None, None, "shout", {"x": 1}))],
        [Deliver("shout", {"x": 1})],
        S.JOINED,
    ),
    (
        "a push for the current join_ref reaches the bindings",
        True,
        [*JOINED, ("recv", m("1", None, "yjs", b"\x00"))],
        [Deliver("yjs", b"\x00")],
        S.JOINED,
    ),
    (
        "after a rejoin, a reply to the old join is outdated",
        True,
        [("join",), ("fire", ("join", 1)), ("fire", REJOIN), ("recv", reply("1", "1"))],
        [],
        S.JOINING,
    ),
    # -- push timeouts ---------------------------------------------------------------------------
    (
        "a push with no reply in time fails as timed out",
        True,
        [*JOINED, ("push", "a", {}), ("fire", ("push", 2))],
        [Fail(2, "no reply to 'a' within 10 s", timed_out=True)],
        S.JOINED,
    ),
    (
        "a reply after the timeout changes nothing",
        True,
        [*JOINED, ("push", "a", {}), ("fire", ("push", 2)), ("recv", reply("1", "2"))],
        [],
        S.JOINED,
    ),
    (
        "a buffered push that timed out is never sent",
        True,
        [("join",), ("push", "a", {}), ("fire", ("push", 2)), ("recv", reply("1", "1"))],
        [CancelTimer(("join", 1)), Joined({})],
        S.JOINED,
    ),
    (
        "a push that does not encode is discarded: no timer, no reply",
        True,
        [*JOINED, ("push", "a", {}), ("discard", 2)],
        [CancelTimer(("push", 2))],
        S.JOINED,
    ),
    # -- rejoin with backoff ---------------------------------------------------------------------
    (
        "a join timeout tells the service to drop it and retries after the backoff",
        True,
        [("join",), ("fire", ("join", 1))],
        [Send(m("1", "2", "phx_leave")), SetTimer(REJOIN, 1.0)],
        S.ERRORED,
    ),
    (
        "the rejoin timer rejoins with a new join_ref",
        True,
        [("join",), ("fire", ("join", 1)), ("fire", REJOIN)],
        [LeaveOpenTopic(), SetTimer(("join", 2), TIMEOUT), join_msg("3")],
        S.JOINING,
    ),
    (
        "phx_error errors the channel and schedules a rejoin",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_error"))],
        [Errored({"source": "channel"}), SetTimer(REJOIN, 1.0), Deliver("phx_error", {})],
        S.ERRORED,
    ),
    (
        "a refused rejoin retries with a longer delay",
        True,
        [
            *JOINED,
            ("recv", m("1", "1", "phx_error")),
            ("fire", REJOIN),
            ("recv", reply("2", "2", "error")),
        ],
        [CancelTimer(("join", 2)), SetTimer(REJOIN, 2.0)],
        S.ERRORED,
    ),
    (
        "a successful rejoin resets the backoff",
        True,
        [
            *JOINED,
            ("recv", m("1", "1", "phx_error")),
            ("fire", REJOIN),
            ("recv", reply("2", "2")),
            ("recv", m("2", "2", "phx_error")),
        ],
        [Errored({"source": "channel"}), SetTimer(REJOIN, 1.0), Deliver("phx_error", {})],
        S.ERRORED,
    ),
    (
        "a rejoin timer that fires while the socket is down does nothing",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_error")), ("drop",), ("fire", REJOIN)],
        [],
        S.ERRORED,
    ),
    (
        "the first join refused is final: pushes fail, the channel closes",
        True,
        [("join",), ("push", "a", {}), ("recv", reply("1", "1", "error", {"reason": "no"}))],
        [
            CancelTimer(("join", 1)),
            JoinRefused({"reason": "no"}),
            CancelTimer(("push", 2)),
            Fail(
                2,
                "the channel 'room:1' closed: "
                + repr({"reason": Reason.JOIN_REFUSED, "response": {"reason": "no"}}),
                timed_out=False,
            ),
            Closed({"reason": "join refused", "response": {"reason": "no"}}),
        ],
        S.CLOSED,
    ),
    # -- the socket going down and up ------------------------------------------------------------
    (
        "a dropped connection errors a joined channel (no rejoin timer: the socket is down)",
        True,
        [*JOINED, ("drop",)],
        [Errored({"source": "transport", "reason": "connection_closed"})],
        S.ERRORED,
    ),
    (
        "pushes while the socket is down are buffered",
        True,
        [*JOINED, ("drop",), ("push", "a", {})],
        [SetTimer(("push", 2), TIMEOUT)],
        S.ERRORED,
    ),
    (
        "the socket reopening rejoins an errored channel at once",
        True,
        [*JOINED, ("drop",), ("open",)],
        [LeaveOpenTopic(), SetTimer(("join", 2), TIMEOUT), join_msg("2")],
        S.JOINING,
    ),
    (
        "the socket reopening cancels a pending rejoin timer",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_error")), ("open",)],
        [CancelTimer(REJOIN), LeaveOpenTopic(), SetTimer(("join", 2), TIMEOUT), join_msg("2")],
        S.JOINING,
    ),
    # -- leave and close -------------------------------------------------------------------------
    (
        "leave sends phx_leave as a push to wait for",
        True,
        [*JOINED, ("leave",)],
        [SetTimer(("push", 2), TIMEOUT), Send(m("1", "2", "phx_leave"), 2)],
        S.LEAVING,
    ),
    (
        "the leave's reply resolves it",
        True,
        [*JOINED, ("leave",), ("recv", reply("1", "2"))],
        [CancelTimer(("push", 2)), Resolve(2, Reply("ok", {}))],
        S.LEAVING,
    ),
    (
        "close after the leave fails what still waits",
        True,
        [*JOINED, ("push", "a", {}), ("leave",), ("close", "leave")],
        [
            CancelTimer(("push", 2)),
            Fail(2, "the channel 'room:1' closed: 'leave'", False),
            CancelTimer(("push", 3)),
            Fail(3, "the channel 'room:1' closed: 'leave'", False),
            Closed("leave"),
        ],
        S.CLOSED,
    ),
    (
        "leave while the socket is down sends nothing",
        True,
        [*JOINED, ("drop",), ("leave",)],
        [],
        S.LEAVING,
    ),
    (
        "a push on a leaving channel fails at once",
        True,
        [*JOINED, ("leave",), ("push", "a", {})],
        [Fail(3, "the channel 'room:1' is leaving", timed_out=False)],
        S.LEAVING,
    ),
    (
        "a push on a closed channel fails at once",
        True,
        [*JOINED, ("leave",), ("close", "leave"), ("push", "a", {})],
        [Fail(3, "the channel 'room:1' is closed", timed_out=False)],
        S.CLOSED,
    ),
    (
        "phx_close from the service closes the channel",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_close"))],
        [Closed("closed by the service"), Deliver("phx_close", {})],
        S.CLOSED,
    ),
    (
        "closing twice reports once",
        True,
        [*JOINED, ("leave",), ("close", "leave"), ("recv", m("1", "1", "phx_close"))],
        [Deliver("phx_close", {})],
        S.CLOSED,
    ),
    (
        "abandon (another channel object joins the topic): leave without waiting, close",
        True,
        [*JOINED, ("abandon",)],
        [Send(m("1", "2", "phx_leave")), Closed("leave")],
        S.CLOSED,
    ),
    # -- a service restart is not a final close -------------------------------------------------
    (
        "phx_close then the socket closing with 1001 soon after: revived, rejoins later",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_close"), 100.0), ("drop", 1001, 101.0)],
        [Revived()],
        S.ERRORED,
    ),
    (
        "the same with 1012 (service restart)",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_close"), 100.0), ("drop", 1012, 101.0)],
        [Revived()],
        S.ERRORED,
    ),
    (
        "a revived channel rejoins when the socket reopens",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_close"), 100.0), ("drop", 1001, 101.0), ("open",)],
        [LeaveOpenTopic(), SetTimer(("join", 2), TIMEOUT), join_msg("2")],
        S.JOINING,
    ),
    (
        "a normal close (1000) after phx_close is final",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_close"), 100.0), ("drop", 1000, 101.0)],
        [],
        S.CLOSED,
    ),
    (
        "a phx_close long before the 1001 is final",
        True,
        [
            *JOINED,
            ("recv", m("1", "1", "phx_close"), 100.0),
            ("drop", 1001, 101.0 + SHUTDOWN_WINDOW_S),
        ],
        [],
        S.CLOSED,
    ),
    (
        "not revived when another channel object took the topic",
        True,
        [*JOINED, ("recv", m("1", "1", "phx_close"), 100.0), ("drop", 1001, 101.0, True)],
        [],
        S.CLOSED,
    ),
    (
        "the answer to our own leave is never revived",
        True,
        [*JOINED, ("leave",), ("recv", m("1", "1", "phx_close"), 100.0), ("drop", 1001, 101.0)],
        [],
        S.CLOSED,
    ),
]


@pytest.mark.parametrize(
    ("connected", "script", "expected", "state"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_rule(connected, script, expected, state):
    ch = channel(connected)
    out: list = []
    for action in script:
        out = step(ch, action)
    assert out == expected
    assert ch.state == state


def test_join_params_are_asked_on_every_join():
    asked = itertools.count(1)
    ch = channel(params=lambda: {"try": next(asked)})
    first = ch.join()[-1]
    ch.timeout(("join", 1))
    second = ch.timeout(REJOIN)[-1]
    assert [first.message.payload, second.message.payload] == [{"try": 1}, {"try": 2}]


def test_join_twice_and_push_before_join_are_refused():
    ch = channel()
    with pytest.raises(RuntimeError, match="before join"):
        ch.push("a", {})
    ch.join()
    with pytest.raises(RuntimeError, match="twice"):
        ch.join()


def test_counts_of_buffered_and_in_flight_pushes():
    ch = channel()
    ch.join()
    ch.push("a", {})
    ch.push("b", {})
    assert (ch.buffered, ch.in_flight) == (2, 0)
    ch.receive(reply("1", "1"), 0.0)
    assert (ch.buffered, ch.in_flight) == (0, 2)
    assert ch.join_ref == "1" and ch.can_push


def test_rejoin_delays_follow_the_backoff_curve_up_to_its_cap():
    ch = channel()
    ch.join()
    ch.receive(reply("1", "1"), 0.0)
    ch.receive(m("1", "1", "phx_error"), 0.0)
    delays = []
    join_ref = None
    for _ in range(6):
        out = ch.timeout(REJOIN)
        join_ref = out[-1].message.join_ref
        out = ch.receive(reply(join_ref, join_ref, "error"), 0.0)
        delays.append(next(o.delay_s for o in out if isinstance(o, SetTimer)))
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_reply_of_reads_status_and_response_and_survives_garbage():
    assert reply_of({"status": "ok", "response": b"\x01"}) == Reply("ok", b"\x01")
    assert reply_of({"status": "error", "response": {"reason": "x"}}).ok is False
    broken = reply_of(["not", "a", "reply"])
    assert broken.status == "error" and broken.response["reason"] == "malformed reply"


def test_finished_means_closed_for_good_not_merely_unjoined():
    ch = channel()
    assert ch.state == S.CLOSED and not ch.finished  # made, not joined yet
    ch.join()
    ch.receive(reply("1", "1"), 0.0)
    ch.receive(m("1", "1", "phx_close"), 100.0)
    assert ch.finished and ch.may_revive
    ch.socket_closed("connection_closed", 101.0, 1001)
    assert not ch.finished and ch.state == S.ERRORED  # revived
