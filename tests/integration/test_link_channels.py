"""The link end to end, on a real service subprocess with raw Phoenix V2 frames: join, push and
reply (JSON and binary), heartbeat, broadcast to many sockets, presence, duplicate join, leave,
unmatched topics, a crashed channel, malformed frames."""

import asyncio

import pytest
from veraltheim.protocol import Message, decode
from veraltheim.protocol.constants import CLOSE_PROTOCOL_ERROR

from tests.support.phx_frames import (
    closed,
    join,
    open_socket,
    push,
    recv,
    send,
    until,
)
from tests.support.service import running_service

FAST_ENV = {"VERALTHEIM_COMPUTE_WORKERS": "1"}


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("link"), env=FAST_ENV) as s:
        yield s


async def test_join_reply_carries_the_user_from_the_token(svc):
    ws = await open_socket(svc.ws_url, "ann")
    reply = await join(ws, payload={"presence": False})
    assert reply == {"status": "ok", "response": {"user": "ann"}}
    await ws.close()


async def test_ping_replies_with_the_same_json_and_binary_payload(svc):
    ws = await open_socket(svc.ws_url, "ben")
    await join(ws, join_ref="5", payload={"presence": False})
    assert await push(ws, "ping", {"n": [1, "two"]}, "6", jr="5") == {
        "status": "ok",
        "response": {"n": [1, "two"]},
    }
    blob = bytes(range(256)) * 4
    await send(ws, Message("5", "7", "lobby", "ping", blob))
    raw = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(raw, bytes) and raw[0] == 1  # a binary reply frame, kind 1
    msg = decode(raw, sender="server")
    assert (msg.join_ref, msg.ref, msg.topic) == ("5", "7", "lobby")
    assert msg.payload == {"status": "ok", "response": blob}
    await ws.close()


async def test_heartbeat_is_answered_on_the_phoenix_topic(svc):
    ws = await open_socket(svc.ws_url, "cat")
    await send(ws, Message(None, "hb-1", "phoenix", "heartbeat", {}))
    msg = await recv(ws)
    assert msg == Message(None, "hb-1", "phoenix", "phx_reply", {"status": "ok", "response": {}})
    await ws.close()


async def test_broadcast_reaches_every_joined_socket_once(svc):
    sockets = await asyncio.gather(*(open_socket(svc.ws_url, f"many{i}") for i in range(40)))
    await asyncio.gather(*(join(ws, payload={"presence": False}) for ws in sockets))
    shouter = sockets[0]
    for ref, payload in (("2", {"hello": "all"}), ("3", b"\x00bin")):  # JSON, then binary
        await send(shouter, Message("1", ref, "lobby", "shout", payload))
        got = await asyncio.gather(*(until(ws, "shout") for ws in sockets))
        assert all(m == Message(None, None, "lobby", "shout", payload) for m in got)
        # the channel broadcasts before it replies, so the sender's next frame is the reply
        reply = await recv(shouter)
        assert (reply.event, reply.ref, reply.payload["status"]) == ("phx_reply", ref, "ok")
    # once: a heartbeat's reply comes next on every socket, after no second copy of a shout
    for ws in sockets:
        await send(ws, Message(None, "hb", "phoenix", "heartbeat", {}))
    nexts = await asyncio.gather(*(recv(ws) for ws in sockets))
    assert all((m.topic, m.event, m.ref) == ("phoenix", "phx_reply", "hb") for m in nexts)
    await asyncio.gather(*(ws.close() for ws in sockets))


async def test_presence_state_on_join_and_diffs_on_join_leave_and_disconnect(svc):
    a = await open_socket(svc.ws_url, "p-alice")
    assert (await join(a, payload={"meta": {"status": "busy"}}))["status"] == "ok"
    state = (await until(a, "presence_state")).payload
    assert state["p-alice"]["metas"][0]["status"] == "busy"
    assert "phx_ref" in state["p-alice"]["metas"][0]

    b = await open_socket(svc.ws_url, "p-bob")
    await join(b, join_ref="9")
    b_state = (await until(b, "presence_state")).payload
    assert {"p-alice", "p-bob"} <= set(b_state)
    diff = (await until_diff(a, joins="p-bob")).payload
    bob_ref = diff["joins"]["p-bob"]["metas"][0]["phx_ref"]
    assert b_state["p-bob"]["metas"][0]["phx_ref"] == bob_ref

    # an explicit leave: ok reply, phx_close, and a leave diff for the others
    await send(b, Message("9", "10", "lobby", "phx_leave", {}))
    assert (await until(b, "phx_reply", "10")).payload["status"] == "ok"
    assert (await until(b, "phx_close")).join_ref == "9"
    left = (await until_diff(a, leaves="p-bob")).payload
    assert left["leaves"]["p-bob"]["metas"][0]["phx_ref"] == bob_ref

    # a socket that just goes away leaves too
    c = await open_socket(svc.ws_url, "p-carl")
    await join(c)
    await until_diff(a, joins="p-carl")
    await c.close()
    await until_diff(a, leaves="p-carl")
    await asyncio.gather(a.close(), b.close())


async def until_diff(ws, joins=None, leaves=None):
    while True:
        msg = await until(ws, "presence_diff")
        if (joins and joins in msg.payload["joins"]) or (
            leaves and leaves in msg.payload["leaves"]
        ):
            return msg


async def test_duplicate_join_closes_the_old_channel_with_its_join_ref(svc):
    ws = await open_socket(svc.ws_url, "dup")
    await join(ws, join_ref="1", payload={"presence": False})
    await send(ws, Message("2", "2", "lobby", "phx_join", {"presence": False}))
    close = await until(ws, "phx_close")
    assert (close.join_ref, close.ref) == ("1", "1")
    reply = await until(ws, "phx_reply", "2")
    assert reply.payload["status"] == "ok"
    # pushes with the new join_ref work; the old join_ref is no longer a member
    assert (await push(ws, "ping", {"x": 1}, "3", jr="2"))["status"] == "ok"
    stale = await push(ws, "ping", {"x": 1}, "4", jr="1")
    assert stale == {"status": "error", "response": {"reason": "unmatched topic"}}
    await ws.close()


async def test_unmatched_topics_and_bad_joins_get_error_replies(svc):
    ws = await open_socket(svc.ws_url, "lost")
    assert await push(ws, "ping", {}, "1", topic="lobby") == {
        "status": "error",
        "response": {"reason": "unmatched topic"},
    }
    assert await join(ws, topic="nowhere:1", join_ref="2") == {
        "status": "error",
        "response": {"reason": "unmatched topic"},
    }
    await send(ws, Message("3", "3", "lobby", "phx_join", [1, 2]))
    bad = (await until(ws, "phx_reply", "3")).payload
    assert bad["status"] == "error" and "JSON object" in bad["response"]["reason"]
    # the socket is still fine
    assert (await join(ws, join_ref="4", payload={"presence": False}))["status"] == "ok"
    assert (await push(ws, "nonsense", {}, "5", jr="4"))["status"] == "error"
    # events only the service sends are refused, not handed to the channel
    reply = await push(ws, "phx_reply", {"status": "ok", "response": {}}, "6", jr="4")
    assert reply["response"] == {"reason": "phx_reply is sent by the service only"}
    assert (await push(ws, "ping", {"alive": 1}, "7", jr="4"))["response"] == {"alive": 1}
    await ws.close()


async def test_a_crashed_channel_sends_phx_error_and_only_that_channel_ends(svc):
    ws = await open_socket(svc.ws_url, "crash")
    # a join_ref over 255 bytes cannot go in a binary reply frame: the channel fails on the
    # binary ping (sent without a join_ref), as a Phoenix channel process would crash
    long_ref = "r" * 300
    await join(ws, join_ref=long_ref, payload={"presence": False})
    await send(ws, Message(None, "2", "lobby", "ping", b"boom"))
    err = await until(ws, "phx_error")
    assert (err.join_ref, err.ref, err.payload) == (long_ref, long_ref, {})
    # the socket lives on: heartbeat, and a fresh join of the same topic
    await send(ws, Message(None, "3", "phoenix", "heartbeat", {}))
    assert (await until(ws, "phx_reply", "3", topic="phoenix")).payload["status"] == "ok"
    assert (await join(ws, join_ref="4", payload={"presence": False}))["status"] == "ok"
    assert (await push(ws, "ping", {"ok": True}, "5", jr="4"))["response"] == {"ok": True}
    await ws.close()


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("this is not json", "not JSON"),
        ('{"topic": "lobby"}', "must be [join_ref, ref, topic, event, payload]"),
        (b"\x09\x00", "unknown binary frame kind 9"),
        (bytes([0, 9, 0, 1, 1]) + b"x", "truncated"),
    ],
)
async def test_a_malformed_frame_closes_that_socket_only(svc, frame, says):
    bystander = await open_socket(svc.ws_url, "bystander")
    await join(bystander, payload={"presence": False})
    ws = await open_socket(svc.ws_url, "garbler")
    await ws.send(frame)
    code, reason = await closed(ws)
    assert code == CLOSE_PROTOCOL_ERROR
    assert reason.startswith("malformed frame") and says in reason
    assert (await push(bystander, "ping", {"still": "here"}, "2"))["response"] == {"still": "here"}
    await bystander.close()
