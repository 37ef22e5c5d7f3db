"""Socket and Channel against a tiny in-test WebSocket server that speaks the wire format
(the real service is exercised in tests/integration/test_client_link*.py)."""

from __future__ import annotations

import asyncio
import base64
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import pytest
from veraltheim.client.net.channel import ChannelClosed
from veraltheim.client.net.push import JoinError, PushTimeout, Reply
from veraltheim.client.net.socket import Socket, SocketOffline, auth_subprotocols, endpoint_url
from veraltheim.client.net.state import ConnectionState
from veraltheim.protocol import AUTH_TOKEN_PREFIX, Message, decode, encode
from veraltheim.protocol.backoff import Backoff
from veraltheim.protocol.channel_client import ChannelState
from websockets.asyncio.server import ServerConnection, serve

FAST = Backoff(initial_s=0.01, factor=2.0, max_s=0.05)
WAIT_S = 5.0


class FakeService:
    """Answers heartbeats, joins (ok unless told otherwise), `echo` (same payload back) and
    leaves; `hold` gets no reply until the test sends one. Refuses tokens `refuse` says so."""

    def __init__(self, *, refuse=lambda token: False, heartbeat_replies: bool = True) -> None:
        self.refuse = refuse
        self.refuse_status = HTTPStatus.FORBIDDEN
        self.heartbeat_replies = heartbeat_replies
        self.answer_leaves = True
        self.join_status: str | None = "ok"  # None: never answer joins
        self.handshakes = 0
        self.handshake_seen: asyncio.Queue[str] = asyncio.Queue()
        self.tokens: list[str | None] = []
        self.paths: list[str] = []
        self.connections: list[ServerConnection] = []
        self.received: asyncio.Queue[tuple[ServerConnection, Message]] = asyncio.Queue()
        self.connected = asyncio.Event()

    async def __aenter__(self) -> FakeService:
        self.server = await serve(
            self.handle,
            "127.0.0.1",
            0,
            process_request=self.check,
            select_subprotocol=lambda conn, offered: "phoenix" if "phoenix" in offered else None,
            compression=None,
        )
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/socket"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    def check(self, connection, request):
        self.handshakes += 1
        self.handshake_seen.put_nowait(request.path)
        self.paths.append(request.path)
        token = parse_qs(urlsplit(request.path).query).get("token", [None])[0]
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        for proto in (p.strip() for p in offered.split(",")):
            if proto.startswith(AUTH_TOKEN_PREFIX):
                raw = proto[len(AUTH_TOKEN_PREFIX) :]
                token = base64.b64decode(raw + "=" * (-len(raw) % 4)).decode()
        self.tokens.append(token)
        if self.refuse(token):
            return connection.respond(self.refuse_status, "invalid token\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        self.connected.set()
        async for frame in ws:
            msg = decode(frame, sender="client")
            self.received.put_nowait((ws, msg))
            if msg.event == "heartbeat" and not self.heartbeat_replies:
                continue
            if msg.event == "phx_leave" and not self.answer_leaves:
                continue
            if msg.event in ("heartbeat", "phx_leave"):
                await self.reply(ws, msg, "ok", {})
            elif msg.event == "phx_join" and self.join_status is not None:
                await self.reply(ws, msg, self.join_status, {"joined": msg.topic})
            elif msg.event == "echo":
                await self.reply(ws, msg, "ok", msg.payload)

    async def reply(self, ws, msg: Message, status: str, response) -> None:
        await self.send(ws, Message.reply(msg.join_ref, msg.ref, msg.topic, status, response))

    async def send(self, ws, msg: Message) -> None:
        await ws.send(encode(msg, sender="server"))

    async def next(self, event: str) -> tuple[ServerConnection, Message]:
        while True:
            ws, msg = await asyncio.wait_for(self.received.get(), WAIT_S)
            if msg.event == event:
                return ws, msg


@pytest.fixture
async def fake():
    async with FakeService() as svc:
        yield svc


def test_endpoint_url_adds_websocket_vsn_params_and_token():
    url = endpoint_url("ws://h:1/socket", {"client": "app"}, "t/k=n")
    assert url == "ws://h:1/socket/websocket?client=app&vsn=2.0.0&token=t%2Fk%3Dn"
    assert endpoint_url("http://h:1/socket/websocket?vsn=1.0.0").startswith(
        "ws://h:1/socket/websocket?vsn=2.0.0"
    )


def test_auth_subprotocol_is_phoenix_js_encoding():
    assert auth_subprotocols("ab?") == ["phoenix", "base64url.bearer.phx.YWI/"]


async def test_join_push_and_replies_json_and_binary(fake, sockets):
    sock = sockets(fake.url, token="tok", params={"client": "unit"})
    states = []
    sock.on_state(states.append)
    await sock.connect()
    assert sock.state == ConnectionState.CONNECTED
    assert states == [ConnectionState.CONNECTING, ConnectionState.CONNECTED]
    assert fake.tokens == ["tok"] and "client=unit" in fake.paths[0]
    assert "token=" not in fake.paths[0]  # the token went as a subprotocol

    ch = sock.channel("room:1", {"hello": 1})
    assert await ch.join() == {"joined": "room:1"}
    _, join = await fake.next("phx_join")
    assert join.payload == {"hello": 1} and join.join_ref == join.ref == ch.join_ref
    assert await ch.push("echo", {"n": 1}) == Reply("ok", {"n": 1})
    reply = await ch.push("echo", b"\x00\xffbinary")
    assert reply.ok and reply.response == b"\x00\xffbinary"
    _, binary_push = await fake.next("echo")
    _, binary_push = await fake.next("echo")
    assert binary_push.payload == b"\x00\xffbinary" and binary_push.join_ref == ch.join_ref


async def test_token_in_query_param(fake, sockets):
    sock = sockets(fake.url, token=lambda: "qtok", token_in="param")
    await sock.connect()
    assert fake.tokens == ["qtok"] and "token=qtok" in fake.paths[0]


async def test_replies_are_matched_by_ref_whatever_their_order(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    await ch.join()
    first, second = ch.push("hold", {"i": 1}), ch.push("hold", {"i": 2})
    ws, m1 = await fake.next("hold")
    _, m2 = await fake.next("hold")
    assert m1.ref != m2.ref
    await fake.reply(ws, m2, "ok", {"answer": 2})
    await fake.reply(ws, Message(m1.join_ref, "999999", m1.topic, "x", None), "ok", {"x": 1})
    await fake.reply(ws, m1, "error", {"answer": 1})
    assert await second == Reply("ok", {"answer": 2})
    assert await first == Reply("error", {"answer": 1})


async def test_messages_for_an_outdated_join_ref_are_dropped(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    await ch.join()
    seen = asyncio.Queue()
    ch.on("news", seen.put_nowait)
    ws = fake.connections[-1]
    await fake.send(ws, Message("stale-join-ref", None, "room:1", "news", {"n": "old"}))
    await fake.send(ws, Message(ch.join_ref, None, "room:1", "news", {"n": "mine"}))
    await fake.send(ws, Message(None, None, "room:1", "news", {"n": "broadcast"}))
    assert await asyncio.wait_for(seen.get(), WAIT_S) == {"n": "mine"}
    assert await asyncio.wait_for(seen.get(), WAIT_S) == {"n": "broadcast"}
    assert seen.empty()


async def test_refused_join_raises_join_error_and_closes(fake, sockets):
    fake.join_status = "error"
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("private:x")
    with pytest.raises(JoinError) as info:
        await ch.join()
    assert info.value.response == {"joined": "private:x"}
    assert ch.state == ChannelState.CLOSED and ch not in sock.channels


async def test_push_before_connect_is_buffered_then_flushed_after_join(fake, sockets):
    sock = sockets(fake.url)
    ch = sock.channel("room:1")
    join = asyncio.ensure_future(ch.join())
    await asyncio.sleep(0)  # let join() start: the channel waits for the socket
    assert ch.state == ChannelState.JOINING
    early = ch.push("echo", {"early": True})
    assert ch.buffered == 1
    await sock.connect()
    await join
    assert await early == Reply("ok", {"early": True})


async def test_push_timeout_while_buffered_is_never_sent(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    await ch.join()
    fake.join_status = None  # the rejoin after the drop gets no answer
    await fake.connections[-1].close()
    await asyncio.wait_for(_until(sock, ConnectionState.RECONNECTING), WAIT_S)
    late = ch.push("echo", {"late": 1}, timeout=0.05)
    with pytest.raises(PushTimeout):
        await late
    assert ch.buffered == 0


async def test_reconnect_rejoins_with_new_join_ref_and_flushes_buffer(fake, sockets):
    calls = []

    def token():
        calls.append(1)
        return f"tok{len(calls)}"

    sock = sockets(fake.url, token=token)
    await sock.connect()
    ch = sock.channel("room:1")
    joins = []
    ch.on_join(joins.append)
    errors = []
    ch.on_error(errors.append)
    await ch.join()
    old_ref = ch.join_ref
    await fake.connections[-1].close()
    await asyncio.wait_for(_until(sock, ConnectionState.RECONNECTING), WAIT_S)
    pending = ch.push("echo", {"while": "down"})
    assert await pending == Reply("ok", {"while": "down"})
    assert ch.join_ref != old_ref and len(joins) == 2
    assert errors[0]["source"] == "transport"
    assert fake.tokens == ["tok1", "tok2"]  # a fresh token for the reconnect


async def test_missed_heartbeat_closes_and_reconnects(sockets):
    async with FakeService(heartbeat_replies=False) as fake:
        sock = sockets(fake.url, heartbeat_interval_s=0.1)
        await sock.connect()
        while fake.handshakes < 2:
            await fake.next("heartbeat")
        assert sock.last_close is not None and sock.last_close[1] == "heartbeat timeout"


async def test_rtt_is_measured_from_heartbeats(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    await fake.next("heartbeat")
    rtt = await sock.ping()
    assert 0 < rtt < WAIT_S * 1000 and sock.rtt_ms == rtt


async def test_forbidden_goes_offline_without_retry_storm_until_told(sockets):
    good = {"ok": False}
    async with FakeService(refuse=lambda token: not good["ok"]) as fake:
        sock = sockets(fake.url, token="bad", forbidden_retry_s=None)
        await sock.connect()
        assert sock.state == ConnectionState.OFFLINE
        assert "403" in sock.offline_reason and "invalid token" in sock.offline_reason
        with pytest.raises(SocketOffline, match="403"):
            await sock.wait_connected(1)
        # nothing more happens on its own: wait for a full other connection to prove time passed
        other = sockets(fake.url.replace("/socket", "/other"))
        good["ok"] = True
        await other.connect()
        assert fake.handshakes == 2 and sock.handshakes == 1
        await sock.connect()  # told to retry
        assert sock.state == ConnectionState.CONNECTED and fake.handshakes == 3


async def joined_channel(sock, topic: str):
    """A joined channel and the queue its (re)joins are reported on, the first one taken."""
    ch = sock.channel(topic)
    joined = asyncio.Queue()
    ch.on_join(joined.put_nowait)
    await ch.join()
    await joined.get()
    return ch, joined


async def test_phx_error_rejoins_the_channel(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch, joined = await joined_channel(sock, "room:1")
    first_ref = ch.join_ref
    await fake.send(fake.connections[-1], Message(first_ref, first_ref, "room:1", "phx_error", {}))
    await asyncio.wait_for(joined.get(), WAIT_S)
    assert ch.state == ChannelState.JOINED and ch.join_ref != first_ref


async def test_phx_close_closes_the_channel_for_good(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    closed = asyncio.Queue()
    ch.on_close(closed.put_nowait)
    await ch.join()
    await fake.send(fake.connections[-1], Message(ch.join_ref, None, "room:1", "phx_close", {}))
    await asyncio.wait_for(closed.get(), WAIT_S)
    assert ch.state == ChannelState.CLOSED and ch not in sock.channels
    with pytest.raises(PushTimeout):
        await ch.push("echo", {})


async def test_on_frame_sees_both_directions_and_bad_frames_are_dropped(fake, sockets):
    sock = sockets(fake.url)
    frames = []
    sock.on_frame(lambda direction, msg: frames.append((direction, msg.event)))
    await sock.connect()
    ch = sock.channel("room:1")
    await ch.join()
    await fake.connections[-1].send("not json")
    assert await ch.push("echo", {"still": "works"}) == Reply("ok", {"still": "works"})
    assert sock.malformed_frames == 1
    assert ("out", "phx_join") in frames and ("in", "phx_reply") in frames
    assert ("out", "echo") in frames


async def test_leave_tells_the_service(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    await ch.join()
    await ch.leave()
    _, leave = await fake.next("phx_leave")
    assert leave.topic == "room:1" and ch.state == ChannelState.CLOSED


async def _until(sock: Socket, state: ConnectionState) -> None:
    changed = asyncio.Event()
    ref = sock.on_state(lambda s: changed.set() if s == state else None)
    try:
        while sock.state != state:
            changed.clear()
            await changed.wait()
    finally:
        sock.off(ref)


async def test_phx_close_then_going_away_is_a_shutdown_and_the_channel_rejoins(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch, joined = await joined_channel(sock, "room:1")
    ws = fake.connections[-1]
    await fake.send(ws, Message(ch.join_ref, None, "room:1", "phx_close", {}))
    await ws.close(1001, "service stopping")
    await asyncio.wait_for(_until(sock, ConnectionState.RECONNECTING), WAIT_S)
    buffered = ch.push("echo", {"after": "restart"})
    await asyncio.wait_for(joined.get(), WAIT_S)
    assert ch.state == ChannelState.JOINED and ch in sock.channels
    assert await buffered == Reply("ok", {"after": "restart"})


async def test_disconnect_goes_offline_and_stays_there(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    await sock.disconnect()
    assert sock.state == ConnectionState.OFFLINE and sock.offline_reason == "disconnected"
    with pytest.raises(SocketOffline):
        await sock.wait_connected(1)
    assert fake.handshakes == 1 and sock.handshakes == 1


async def test_a_new_url_is_used_by_the_next_attempt(sockets):
    async with FakeService() as first, FakeService() as second:
        sock = sockets(first.url)
        ch = sock.channel("room:1")
        await sock.connect()
        await ch.join()
        sock.url = second.url
        await first.connections[-1].close()
        await asyncio.wait_for(second.next("phx_join"), WAIT_S)
        assert await ch.push("echo", {"on": "second"}) == Reply("ok", {"on": "second"})


@pytest.mark.parametrize(
    ("status", "retried"), [(HTTPStatus.NOT_FOUND, False), (HTTPStatus.SERVICE_UNAVAILABLE, True)]
)
async def test_other_handshake_statuses(sockets, status, retried):
    async with FakeService(refuse=lambda token: True) as fake:
        fake.refuse_status = status
        sock = sockets(fake.url, forbidden_retry_s=None)
        await sock.connect()
        if retried:  # a 503 (service stopping) is retried with the backoff
            assert sock.state == ConnectionState.RECONNECTING
            for _ in range(3):
                await asyncio.wait_for(fake.handshake_seen.get(), WAIT_S)
        else:
            assert sock.state == ConnectionState.OFFLINE and "404" in sock.offline_reason


async def test_join_timeout_leaves_and_keeps_retrying_like_phoenix_js(fake, sockets):
    fake.join_status = None  # the service does not answer the join
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    joined = asyncio.Queue()
    ch.on_join(joined.put_nowait)
    with pytest.raises(PushTimeout, match="join"):
        await ch.join(timeout=0.1)
    _, leave = await fake.next("phx_leave")  # phoenix.js drops the join it gave up on
    _, rejoin = await fake.next("phx_join")  # then tries again after the rejoin backoff
    fake.join_status = "ok"
    assert await asyncio.wait_for(joined.get(), WAIT_S) == {"joined": "room:1"}
    assert ch.state == ChannelState.JOINED and ch.join_ref not in (leave.join_ref, None)
    assert rejoin.join_ref != leave.join_ref  # every rejoin has a new join_ref


async def test_leaving_during_the_join_raises_channel_closed_at_once(fake, sockets):
    fake.join_status = None  # the service does not answer the join
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    join = asyncio.ensure_future(ch.join(timeout=60))
    await fake.next("phx_join")
    await ch.leave(timeout=1)
    with pytest.raises(ChannelClosed, match="closed"):  # not "no answer ... in 60 s"
        await asyncio.wait_for(join, WAIT_S)


async def test_disconnect_during_the_handshake_releases_connect(sockets):
    release = asyncio.Event()

    async def slow_token():
        await release.wait()  # the attempt hangs here until the test is done
        return "never"

    async with FakeService() as fake:
        sock = sockets(fake.url, token=slow_token)
        connecting = asyncio.ensure_future(sock.connect())
        await asyncio.wait_for(_until(sock, ConnectionState.CONNECTING), WAIT_S)
        await sock.disconnect()
        await asyncio.wait_for(connecting, WAIT_S)  # returns instead of hanging
        assert sock.state == ConnectionState.OFFLINE and fake.handshakes == 0


async def test_leave_answered_with_phx_close_closes_once_and_stays_closed(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    closes = []
    ch.on_close(closes.append)
    await ch.join()
    ws = fake.connections[-1]
    fake.answer_leaves = False  # the phx_close comes first, as the only answer
    leaving = asyncio.ensure_future(ch.leave())
    await fake.next("phx_leave")
    # the service closes the channel (phx_close) and then goes away (1001): a left channel
    # must not come back as if the service had merely restarted
    await fake.send(ws, Message(ch.join_ref, ch.join_ref, "room:1", "phx_close", {}))
    await leaving
    await ws.close(1001, "stopping")
    await asyncio.wait_for(_until(sock, ConnectionState.RECONNECTING), WAIT_S)
    await asyncio.wait_for(_until(sock, ConnectionState.CONNECTED), WAIT_S)
    assert len(closes) == 1 and ch.state == ChannelState.CLOSED and ch not in sock.channels


async def test_an_old_phx_close_is_not_undone_by_a_later_shutdown(fake, sockets, monkeypatch):
    monkeypatch.setattr(
        "veraltheim.protocol.channel_client.SHUTDOWN_WINDOW_S", -1.0
    )  # every close is "old"
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")
    closed = asyncio.Queue()
    ch.on_close(closed.put_nowait)
    await ch.join()
    ws = fake.connections[-1]
    await fake.send(ws, Message(ch.join_ref, None, "room:1", "phx_close", {}))
    await asyncio.wait_for(closed.get(), WAIT_S)
    await ws.close(1001, "stopping")
    await asyncio.wait_for(_until(sock, ConnectionState.RECONNECTING), WAIT_S)
    await asyncio.wait_for(_until(sock, ConnectionState.CONNECTED), WAIT_S)
    assert ch.state == ChannelState.CLOSED and ch not in sock.channels


async def test_a_connection_that_cannot_write_is_closed_and_replaced(fake, sockets, monkeypatch):
    from websockets.asyncio.client import ClientConnection

    sock = sockets(fake.url)
    await sock.connect()
    await asyncio.wait_for(fake.next("heartbeat"), WAIT_S)
    send = ClientConnection.send
    failures = []

    async def broken_send(self, message, *args, **kwargs):
        if not failures:
            failures.append(message)
            raise RuntimeError("the transport is gone")
        return await send(self, message, *args, **kwargs)

    monkeypatch.setattr(ClientConnection, "send", broken_send)
    with pytest.raises(SocketOffline):  # the heartbeat is never written: the link drops
        await sock.ping(timeout=WAIT_S)
    await asyncio.wait_for(_until(sock, ConnectionState.CONNECTED), WAIT_S)
    assert fake.handshakes == 2 and len(failures) == 1
    assert sock.last_close is not None and sock.last_close[0] == 1011
    assert await sock.ping(timeout=WAIT_S) > 0


async def test_a_channel_made_before_a_reconnect_joins_after_it(fake, sockets):
    sock = sockets(fake.url)
    await sock.connect()
    ch = sock.channel("room:1")  # not joined yet when the connection drops
    await fake.connections[-1].close(1001, "restart")
    await asyncio.wait_for(_until(sock, ConnectionState.RECONNECTING), WAIT_S)
    await asyncio.wait_for(_until(sock, ConnectionState.CONNECTED), WAIT_S)
    assert await ch.join(timeout=WAIT_S) == {"joined": "room:1"}
    _, first = await fake.next("phx_join")
    await fake.connections[-1].close(1001, "restart")  # and it still rejoins after a drop
    _, rejoin = await fake.next("phx_join")
    assert rejoin.topic == "room:1" and rejoin.join_ref != first.join_ref
