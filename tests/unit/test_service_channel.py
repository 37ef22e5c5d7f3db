"""The Channel base in a real in-process Service: join refusal, deferred replies, handle_info,
terminate reasons, pushes queued during join, presence from join(), crash isolation, graceful
stop waiting for in-flight replies; a plain (not async) handle_in answered as the push arrives,
in order behind what the channel's task is busy with."""

import asyncio

import pytest
from veraltheim.protocol import Message, decode, encode
from veraltheim.protocol.constants import CLOSE_GOING_AWAY, VSN
from veraltheim.service import app as app_module
from veraltheim.service.app import Service
from veraltheim.service.auth import issue_token
from veraltheim.service.channel import Channel, JoinError, Reply
from veraltheim.service.config import ServiceConfig
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

SECRET = "unit-secret"
WAIT_S = 10.0
EVENTS: list[tuple] = []
RELEASES: list[asyncio.Event] = []  # "held" replies wait for the test to set these


class ProbeChannel(Channel):
    async def join(self, payload):
        if payload.get("refuse"):
            raise JoinError({"reason": "not you"})
        if payload.get("explode"):
            raise RuntimeError("join blew up")
        self.push("early", {"sent": "during join"})  # queued until after the join reply
        if payload.get("present"):
            self.track_presence(self.user_id, {"via": "join"})
        return {"params": self.socket_params, "user": self.user_id, "claims": self.claims}

    async def handle_in(self, event, payload, ref):
        if event == "held":
            release = asyncio.Event()
            RELEASES.append(release)

            async def reply_when_released():
                await release.wait()
                self.reply(ref, "ok", {"held": True})

            self._held = asyncio.get_running_loop().create_task(reply_when_released())
            return None
        if event == "later":
            asyncio.get_running_loop().call_later(
                payload.get("delay", 0), self.reply, ref, "ok", {"later": True}
            )
            return None
        if event == "now":  # a deferred reply sent before handle_in even returns
            self.reply(ref, "ok", {"now": True})
            return None
        if event == "boom":
            raise ValueError("boom")
        if event == "cancelled":  # code of the channel's own that raises CancelledError
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            return future.result()
        if event == "tell":
            self.service.pubsub.publish(self.topic, {"told": payload})
            return Reply.ok()
        if event == "from":
            self.broadcast_from("echo", payload)
            return Reply.ok()
        return Reply.error({"reason": "unknown"})

    async def handle_info(self, message):
        self.push("info", message)

    async def terminate(self, reason):
        EVENTS.append((self.topic, reason))


class PlainChannel(Channel):
    """handle_in is a plain method: run as the push arrives when the channel's task is idle."""

    def handle_in(self, event, payload, ref):
        if event == "where":  # which task ran it
            return Reply.ok({"in_channel_task": asyncio.current_task() is self._task})
        if event == "tell":
            self.service.pubsub.publish(self.topic, payload)
            return Reply.ok()
        if event == "later":
            asyncio.get_running_loop().call_soon(self.reply, ref, "ok", {"later": True})
            return None
        if event == "boom":
            raise ValueError("boom")
        if event == "cancelled":
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            return future.result()
        if event == "awaitable":  # e.g. an async def behind a plain decorator
            return self.answer_soon(payload)
        return Reply.ok(payload)

    async def answer_soon(self, payload):
        await asyncio.sleep(0)
        return Reply.ok({"awaited": payload})

    async def handle_info(self, message):
        if message == "hold":  # busy until the test releases it
            release = asyncio.Event()
            RELEASES.append(release)
            await release.wait()
        self.push("info", {"message": message})

    async def terminate(self, reason):
        EVENTS.append((self.topic, reason))


@pytest.fixture
async def svc(tmp_path, monkeypatch):
    monkeypatch.setattr(app_module, "COMPONENTS", {})
    config = ServiceConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path, secret_key=SECRET, shutdown_grace_s=5
    )
    service = Service(config)
    service.router.add("test:*", ProbeChannel)
    service.router.add("plain:*", PlainChannel)
    host, port = await service.start()
    service.url = f"ws://{host}:{port}/socket/websocket"
    EVENTS.clear()
    RELEASES.clear()
    yield service
    await service.stop(1)


async def open_ws(svc, user="u", query=""):
    token = issue_token(SECRET, user, 60, {"role": "tester"})
    return await connect(f"{svc.url}?vsn={VSN}&token={token}&{query}", open_timeout=WAIT_S)


async def recv(ws):
    return decode(await asyncio.wait_for(ws.recv(), WAIT_S), sender="server")


async def send(ws, *fields):
    await ws.send(encode(Message(*fields), sender="client"))


async def wait_for(predicate):
    async with asyncio.timeout(WAIT_S):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_join_reply_then_queued_push_and_socket_params_without_token(svc):
    ws = await open_ws(svc, "ann", "device=pad")
    await send(ws, "1", "1", "test:a", "phx_join", {})
    reply = await recv(ws)
    assert reply.event == "phx_reply"
    assert reply.payload["response"]["params"] == {"device": "pad"}  # no token, no vsn
    assert reply.payload["response"]["claims"]["role"] == "tester"
    early = await recv(ws)
    assert (early.event, early.join_ref, early.payload) == ("early", "1", {"sent": "during join"})
    await ws.close()


async def test_join_error_and_join_crash_are_error_replies(svc):
    ws = await open_ws(svc)
    await send(ws, "1", "1", "test:a", "phx_join", {"refuse": True})
    assert (await recv(ws)).payload == {"status": "error", "response": {"reason": "not you"}}
    await send(ws, "2", "2", "test:a", "phx_join", {"explode": True})
    assert (await recv(ws)).payload == {"status": "error", "response": {"reason": "join crashed"}}
    await send(ws, "3", "3", "test:a", "phx_join", {})
    assert (await recv(ws)).payload["status"] == "ok"  # nothing of the failures remains
    await ws.close()


async def test_deferred_replies_arrive_by_ref_in_any_order(svc):
    ws = await open_ws(svc)
    await send(ws, "1", "1", "test:a", "phx_join", {})
    await recv(ws), await recv(ws)
    await send(ws, "1", "slow", "test:a", "held", {})
    await send(ws, "1", "fast", "test:a", "later", {"delay": 0})
    first = await recv(ws)
    RELEASES[0].set()
    second = await recv(ws)
    assert (first.ref, second.ref) == ("fast", "slow")
    assert first.payload == {"status": "ok", "response": {"later": True}}
    assert second.payload == {"status": "ok", "response": {"held": True}}
    await ws.close()


async def test_handle_info_broadcast_from_and_crash_isolation(svc):
    a, b = await open_ws(svc, "a"), await open_ws(svc, "b")
    for ws in (a, b):
        await send(ws, "1", "1", "test:room", "phx_join", {})
        await recv(ws), await recv(ws)
        await send(ws, "2", "2", "test:other", "phx_join", {})
        await recv(ws), await recv(ws)
    await send(a, "1", "3", "test:room", "tell", {"x": 1})
    for ws in (a, b):
        msgs = [await recv(ws) for _ in range(2 if ws is a else 1)]
        info = next(m for m in msgs if m.event == "info")
        assert info.payload == {"told": {"x": 1}}
    await send(a, "1", "4", "test:room", "from", {"y": 2})
    assert (await recv(a)).event == "phx_reply"
    echo = await recv(b)
    assert (echo.event, echo.payload) == ("echo", {"y": 2})
    # a crash ends test:room on socket a only
    await send(a, "1", "5", "test:room", "boom", {})
    err = await recv(a)
    assert (err.event, err.topic, err.join_ref, err.ref) == ("phx_error", "test:room", "1", "1")
    await wait_for(lambda: ("test:room", "crashed") in EVENTS)
    await send(a, "2", "6", "test:other", "later", {})
    assert (await recv(a)).payload["response"] == {"later": True}
    await send(b, "1", "7", "test:room", "later", {})
    assert (await recv(b)).payload["response"] == {"later": True}
    await asyncio.gather(a.close(), b.close())


async def test_terminate_reasons_for_leave_duplicate_and_disconnect(svc):
    ws = await open_ws(svc)
    await send(ws, "1", "1", "test:a", "phx_join", {})
    await recv(ws), await recv(ws)
    await send(ws, "1", "2", "test:a", "phx_leave", {})
    assert (await recv(ws)).payload["status"] == "ok"
    assert (await recv(ws)).event == "phx_close"
    await send(ws, "3", "3", "test:b", "phx_join", {})
    await recv(ws), await recv(ws)
    await send(ws, "4", "4", "test:b", "phx_join", {})
    assert (await recv(ws)).event == "phx_close"
    await send(ws, "5", "5", "test:c", "phx_join", {})
    await recv(ws)
    await ws.close()
    await wait_for(lambda: len(EVENTS) == 4)
    assert sorted(EVENTS) == [
        ("test:a", "left"),
        ("test:b", "closed"),
        ("test:b", "duplicate"),
        ("test:c", "closed"),
    ]
    assert len(svc.channels) == 0 and len(svc.sockets) == 0


async def test_presence_tracked_in_join_is_sent_after_the_reply(svc):
    ws = await open_ws(svc, "pat")
    await send(ws, "1", "1", "test:p", "phx_join", {"present": True})
    events = [(await recv(ws)).event for _ in range(4)]
    assert events[0] == "phx_reply"
    assert events.index("presence_state") < events.index("presence_diff")
    await ws.close()


async def test_graceful_stop_waits_for_in_flight_replies_then_closes_1001(svc):
    ws = await open_ws(svc)
    await send(ws, "1", "1", "test:a", "phx_join", {})
    await recv(ws), await recv(ws)
    await send(ws, "1", "quick", "test:a", "now", {})
    assert (await recv(ws)).payload["response"] == {"now": True}
    await send(ws, "1", None, "test:a", "now", {})  # no ref: nothing to wait for
    await recv(ws)
    assert all(not c.in_flight for c in svc.channels)  # replies already sent are not in flight
    await send(ws, "1", "job", "test:a", "held", {})
    await wait_for(lambda: RELEASES)
    stopping = asyncio.create_task(svc.stop(WAIT_S))
    await wait_for(lambda: svc.stopping)
    RELEASES[0].set()  # the work finishes only after the stop began
    reply = await recv(ws)
    assert (reply.ref, reply.payload["status"]) == ("job", "ok")  # in-flight work finished
    close = await recv(ws)
    assert (close.event, close.join_ref) == ("phx_close", "1")
    with pytest.raises(ConnectionClosed) as exc:
        await recv(ws)
    assert exc.value.rcvd.code == CLOSE_GOING_AWAY
    await stopping
    assert svc.health()["status"] == "stopping"


async def test_a_join_while_stopping_is_refused_not_left_running(svc):
    ws = await open_ws(svc)
    await send(ws, "1", "1", "test:a", "phx_join", {})
    await recv(ws), await recv(ws)
    await send(ws, "1", "job", "test:a", "held", {})  # keeps the stop waiting
    await wait_for(lambda: RELEASES)
    stopping = asyncio.create_task(svc.stop(WAIT_S))
    await wait_for(lambda: svc.stopping)
    await send(ws, "2", "2", "test:b", "phx_join", {})
    msg = await recv(ws)
    assert msg.payload == {"status": "error", "response": {"reason": "service is shutting down"}}
    assert all(c.topic != "test:b" for c in svc.channels)
    RELEASES[0].set()
    assert (await recv(ws)).payload == {"status": "ok", "response": {"held": True}}
    await stopping


async def test_stop_cancels_work_still_busy_after_the_grace_period(svc):
    ws = await open_ws(svc)
    await send(ws, "1", "1", "test:a", "phx_join", {})
    await recv(ws), await recv(ws)
    await send(ws, "1", "stuck", "test:a", "later", {"delay": 60})  # never in time
    await wait_for(lambda: any(c.in_flight for c in svc.channels))
    async with asyncio.timeout(WAIT_S):
        stopping = asyncio.create_task(svc.stop(0.2))
        close = await recv(ws)
        assert (close.event, close.join_ref) == ("phx_close", "1")  # no reply to "stuck"
        with pytest.raises(ConnectionClosed) as exc:
            await recv(ws)
        assert exc.value.rcvd.code == CLOSE_GOING_AWAY
        await stopping
    assert EVENTS == [("test:a", "shutdown")]


async def test_a_topic_too_long_for_binary_frames_is_refused_at_join(svc):
    ws = await open_ws(svc)
    topic = "test:" + "é" * 126  # 257 bytes of UTF-8: no binary push or broadcast could carry it
    await send(ws, "1", "1", topic, "phx_join", {})
    assert (await recv(ws)).payload == {
        "status": "error",
        "response": {"reason": "topic too long", "limit": 255},
    }
    await send(ws, "2", "2", "test:" + "é" * 125, "phx_join", {})  # 255 bytes: fine
    assert (await recv(ws)).payload["status"] == "ok"
    await ws.close()


async def test_lobby_refuses_a_presence_meta_too_large_to_send_everyone(svc):
    MAX_META_BYTES = ServiceConfig().max_presence_meta_bytes  # the setting's default, as svc runs

    ws = await open_ws(svc, "big")
    await send(ws, "1", "1", "lobby", "phx_join", {"meta": {"bio": "x" * MAX_META_BYTES}})
    assert (await recv(ws)).payload == {
        "status": "error",
        "response": {"reason": "meta too large", "limit": MAX_META_BYTES},
    }
    await send(ws, "2", "2", "lobby", "phx_join", {"meta": {"bio": "short"}})
    assert (await recv(ws)).payload == {"status": "ok", "response": {"user": "big"}}
    state = await recv(ws)
    assert state.event == "presence_state" and state.payload["big"]["metas"][0]["bio"] == "short"
    await ws.close()


async def joined(svc, topic: str, user: str = "u"):
    ws = await open_ws(svc, user)
    await send(ws, "1", "1", topic, "phx_join", {})
    assert (await recv(ws)).payload["status"] == "ok"
    return ws


async def test_a_plain_handle_in_answers_as_the_push_arrives(svc):
    ws = await joined(svc, "plain:a")
    await send(ws, "1", "2", "plain:a", "where", {})
    assert (await recv(ws)).payload["response"] == {"in_channel_task": False}
    await send(ws, "1", "3", "plain:a", "later", {})  # None: answered with reply() after
    assert (await recv(ws)).payload == {"status": "ok", "response": {"later": True}}
    await ws.close()


async def test_a_plain_handle_in_waits_its_turn_behind_a_busy_channel(svc):
    ws = await joined(svc, "plain:a")
    await send(ws, "1", "2", "plain:a", "tell", "hold")  # handle_info("hold") keeps it busy
    assert (await recv(ws)).ref == "2"
    await wait_for(lambda: RELEASES)
    for ref in ("3", "4"):
        await send(ws, "1", ref, "plain:a", "echo", {"ref": ref})
    (channel,) = [c for c in svc.channels if c.topic == "plain:a"]
    await wait_for(lambda: len(channel._mailbox) == 2)  # queued, not answered around it
    RELEASES[0].set()
    got = [await recv(ws) for _ in range(3)]
    assert [(m.event, m.ref) for m in got] == [
        ("info", None),
        ("phx_reply", "3"),
        ("phx_reply", "4"),
    ]
    await ws.close()


@pytest.mark.parametrize("topic", ["plain:a", "test:a"])
async def test_a_cancelled_error_from_the_channels_own_code_is_a_crash(svc, topic):
    ws = await joined(svc, topic)
    if topic == "test:a":
        assert (await recv(ws)).event == "early"  # ProbeChannel pushes one as it joins
    await send(ws, "2", "2", "plain:b", "phx_join", {})
    assert (await recv(ws)).payload["status"] == "ok"
    await send(ws, "1", "3", topic, "cancelled", {})
    err = await recv(ws)
    assert (err.event, err.topic, err.join_ref) == ("phx_error", topic, "1")
    await wait_for(lambda: (topic, "crashed") in EVENTS)
    await send(ws, "2", "4", "plain:b", "echo", {"still": "here"})  # the socket lives on
    assert (await recv(ws)).payload["response"] == {"still": "here"}
    await ws.close()


async def test_a_plain_handle_in_may_return_an_awaitable_the_task_awaits_in_turn(svc):
    ws = await joined(svc, "plain:a")
    await send(ws, "1", "2", "plain:a", "awaitable", {"n": 1})
    await send(ws, "1", "3", "plain:a", "echo", {"n": 2})
    first, second = await recv(ws), await recv(ws)
    assert (first.ref, first.payload["response"]) == ("2", {"awaited": {"n": 1}})
    assert (second.ref, second.payload["response"]) == ("3", {"n": 2})
    await ws.close()


async def test_the_first_reason_a_channel_is_stopped_with_is_the_one_it_ends_with(svc):
    ws = await joined(svc, "plain:a")
    (channel,) = [c for c in svc.channels if c.topic == "plain:a"]
    channel.stop("crashed")  # e.g. its handle_in raised, and in the same turn
    channel.stop("duplicate")  # a second join of the topic replaces it
    await wait_for(lambda: EVENTS)
    assert EVENTS == [("plain:a", "crashed")]
    await ws.close()


async def test_a_plain_handle_in_that_raises_ends_its_channel_only(svc):
    ws = await joined(svc, "plain:a")
    await send(ws, "2", "2", "plain:b", "phx_join", {})
    assert (await recv(ws)).payload["status"] == "ok"
    await send(ws, "1", "3", "plain:a", "boom", {})
    err = await recv(ws)
    assert (err.event, err.topic, err.join_ref) == ("phx_error", "plain:a", "1")
    await wait_for(lambda: ("plain:a", "crashed") in EVENTS)
    await send(ws, "2", "4", "plain:b", "echo", {"still": "here"})
    assert (await recv(ws)).payload["response"] == {"still": "here"}
    await ws.close()
