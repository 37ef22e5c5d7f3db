"""service/outbox.py: a socket's waiting frames go out in one write, in order, a slice of
sockets per loop turn; a client that does not read is refused and told once."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from veraltheim.service import ws_fastpath
from veraltheim.service.outbox import SINKS_PER_TURN, ConnectionWriter, Outbox
from websockets.protocol import State

pytestmark = pytest.mark.skipif(not ws_fastpath.FAST, reason="batches only on the fast path")
LIMIT = 1000


def frozen() -> float:
    """A clock that stands still: every slice writes SINKS_PER_TURN sockets, no more."""
    return 0.0


class Transport:
    def __init__(self, unread: int = 7) -> None:
        self.writes: list[bytes] = []
        self.unread = unread  # what the kernel did not take yet

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def writelines(self, frames: list[bytes]) -> None:
        self.writes.append(b"".join(frames))  # one write, as uvloop's writev

    def get_write_buffer_size(self) -> int:
        return self.unread


def connection(unread: int = 7) -> SimpleNamespace:
    return SimpleNamespace(transport=Transport(unread), protocol=SimpleNamespace(state=State.OPEN))


def writer(conn: SimpleNamespace, limit: int = LIMIT) -> tuple[ConnectionWriter, list[str]]:
    evicted: list[str] = []
    return ConnectionWriter(conn, limit, lambda: evicted.append("full")), evicted  # type: ignore[arg-type]


async def next_turn() -> None:
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_frames_of_one_turn_go_out_in_one_write_per_socket_in_order():
    sent: list[int] = []
    outbox = Outbox(sent.append, clock=frozen)
    a_conn, b_conn, c_conn = connection(), connection(), connection()
    (a, _), (b, _), (c, _) = writer(a_conn), writer(b_conn), writer(c_conn)
    single = b"\x81\x01x"
    outbox.send(a, b"\x81\x011")
    outbox.broadcast([a, b], b"\x81\x012")  # to a between its own two frames
    outbox.send(a, b"\x81\x013")
    outbox.send(c, single)
    assert a_conn.transport.writes == [] and c_conn.transport.writes == []
    await next_turn()
    await next_turn()
    assert a_conn.transport.writes == [b"\x81\x011\x81\x012\x81\x013"]
    assert b_conn.transport.writes == [b"\x81\x012"]
    assert c_conn.transport.writes[0] is single  # one frame: the very object, not a copy
    assert sent == [5] and outbox.last_round[0] == 5
    outbox.send(a, b"\x81\x014")  # a later turn is a write of its own
    await next_turn()
    await next_turn()
    assert a_conn.transport.writes[-1] == b"\x81\x014"
    assert sent == [5, 1]


async def test_a_turn_with_one_broadcast_writes_that_frame_object_to_each_socket():
    outbox = Outbox(clock=frozen)
    conns = [connection() for _ in range(3)]
    wire = b"\x81\x02hi"
    outbox.broadcast([writer(conn)[0] for conn in conns], wire)
    await next_turn()
    assert all(conn.transport.writes == [wire] for conn in conns)
    assert all(conn.transport.writes[0] is wire for conn in conns)


async def test_write_now_writes_one_sockets_frames_and_a_closing_one_gets_nothing_more():
    outbox = Outbox(clock=frozen)
    conn, other = connection(), connection()
    (sink, evicted), (other_sink, _) = writer(conn), writer(other)
    outbox.send(sink, b"\x81\x01a")
    await next_turn()
    outbox.send(sink, b"\x81\x01b")
    outbox.send(other_sink, b"\x81\x01c")
    outbox.write_now(sink)  # before a close frame written behind websockets' back
    assert conn.transport.writes == [b"\x81\x01a", b"\x81\x01b"] and other.transport.writes == []
    outbox.send(sink, b"\x81\x01d")
    conn.protocol.state = State.CLOSING
    await next_turn()
    await next_turn()
    assert conn.transport.writes == [b"\x81\x01a", b"\x81\x01b"]
    assert other.transport.writes == [b"\x81\x01c"]
    assert outbox.last_round[0] == 1 and evicted == []  # the last round that wrote any


async def test_a_client_that_has_not_read_past_the_limit_is_refused_and_told_once():
    outbox = Outbox(clock=frozen)
    reading, stuck = connection(unread=LIMIT), connection(unread=LIMIT + 1)
    (ok, ok_full), (slow, slow_full) = writer(reading), writer(stuck)
    outbox.broadcast([ok, slow], b"\x81\x01a")
    await next_turn()
    assert reading.transport.writes == [b"\x81\x01a"]  # at the limit: still reading
    assert stuck.transport.writes == [] and slow_full == ["full"]
    stuck.transport.unread = 0  # even if it reads now: it was evicted, nothing more goes out
    outbox.broadcast([ok, slow], b"\x81\x01b")
    await next_turn()
    assert stuck.transport.writes == [] and slow_full == ["full"] and ok_full == []


async def test_a_sockets_own_frames_are_counted_as_queued_so_one_turn_cannot_pile_up():
    outbox = Outbox(clock=frozen)
    conn = connection(unread=7)
    sink, evicted = writer(conn, limit=7 + 10)
    big = b"\x81\x0c" + b"x" * 12  # 14 bytes: more than the room left, still admitted whole
    assert sink.admit(len(big))  # 7 unread: under the limit
    outbox.send(sink, big)
    assert not sink.admit(3)  # 7 + the 14 queued: over it, refused before it is queued
    assert evicted == ["full"]
    await next_turn()
    assert conn.transport.writes == []  # refused: nothing more is written, not even the first


async def test_a_sink_that_was_written_admits_again():
    outbox = Outbox(clock=frozen)
    conn = connection(unread=7)
    sink, evicted = writer(conn, limit=7 + 10)
    for _ in range(3):  # a turn each: the count starts again after every write
        assert sink.admit(14)
        outbox.send(sink, b"\x81\x0c" + b"x" * 12)
        await next_turn()
    assert len(conn.transport.writes) == 3 and evicted == []


async def test_a_client_under_the_limit_gets_the_whole_turn_and_is_refused_after():
    outbox = Outbox(clock=frozen)
    conn = connection(unread=0)
    sink, evicted = writer(conn, limit=10)
    frames = [b"\x81\x04abcd", b"\x81\x04efgh", b"\x81\x04ijkl"]  # 18 bytes in all
    for wire in frames:
        outbox.broadcast([sink], wire)
    await next_turn()
    assert conn.transport.writes == [b"".join(frames)] and evicted == []
    conn.transport.unread = 18  # the client did not read them: the next turn is refused
    outbox.broadcast([sink], frames[0])
    await next_turn()
    assert len(conn.transport.writes) == 1 and evicted == ["full"]


async def test_a_failure_telling_one_socket_loses_nothing_for_the_others():
    outbox = Outbox(clock=frozen)
    stuck, reading = connection(unread=LIMIT + 1), connection(unread=0)

    def fail() -> None:
        raise RuntimeError("evict failed")

    slow = ConnectionWriter(stuck, LIMIT, fail)  # type: ignore[arg-type]
    ok, _ = writer(reading)
    outbox.broadcast([slow, ok], b"\x81\x01a")
    outbox.send(ok, b"\x81\x01b")
    await next_turn()
    assert reading.transport.writes == [b"\x81\x01a\x81\x01b"]
    assert slow.stopped and slow.on_full is None  # it let go of the socket too


async def test_a_closed_sink_writes_nothing_and_lets_go_of_its_socket():
    outbox = Outbox(clock=frozen)
    conn = connection(unread=0)
    sink, evicted = writer(conn)
    sink.close()
    outbox.send(sink, b"\x81\x01z")  # queued by a broadcast before the close, say
    outbox.send(sink, b"\x81\x01a")
    await next_turn()
    assert conn.transport.writes == [] and sink.on_full is None and not sink.admit(1)
    assert evicted == []  # closed is not evicted


def sinks_for(n: int) -> tuple[list[ConnectionWriter], list[SimpleNamespace]]:
    conns = [connection() for _ in range(n)]
    return [writer(conn)[0] for conn in conns], conns


def reached(conns: list[SimpleNamespace]) -> int:
    """How many of conns (a broadcast goes in their order) have had a write."""
    return sum(1 for c in conns if c.transport.writes)


async def test_a_broadcast_to_many_sockets_goes_out_a_slice_per_turn():
    outbox = Outbox(clock=frozen)
    sinks, conns = sinks_for(100 * SINKS_PER_TURN)
    wire = b"\x81\x01a"
    outbox.broadcast(sinks, wire)
    progress = []
    while reached(conns) < len(conns):
        await next_turn()  # other work runs between the slices
        progress.append(reached(conns))
    assert len(progress) > 1 and all(p % SINKS_PER_TURN == 0 for p in progress)
    assert [reached(conns[:p]) for p in progress] == progress  # in the sockets' order
    assert all(c.transport.writes == [wire] for c in conns)
    assert outbox.last_round[0] == len(conns)  # the round, not its last slice


async def test_a_broadcast_queued_during_another_joins_it_where_it_has_not_been_yet():
    outbox = Outbox(clock=frozen)
    sinks, conns = sinks_for(10 * SINKS_PER_TURN)
    first, second = b"\x81\x01a", b"\x81\x01b"
    outbox.broadcast(sinks, first)
    await next_turn()
    split = reached(conns)
    assert 0 < split < len(conns)
    outbox.broadcast(sinks, second)
    while any(len(b"".join(c.transport.writes)) < 6 for c in conns):
        await next_turn()
    # one write with both where the round had not been; the others in the round after, in order
    assert all(c.transport.writes == [first + second] for c in conns[split:])
    assert all(c.transport.writes == [first, second] for c in conns[:split])


async def test_write_now_during_a_round_writes_that_socket_once_and_the_round_goes_on():
    sent: list[int] = []
    outbox = Outbox(sent.append, clock=frozen)
    sinks, conns = sinks_for(10 * SINKS_PER_TURN)
    outbox.broadcast(sinks, b"\x81\x01a")
    await next_turn()
    split = reached(conns)
    assert 0 < split < len(conns) - 1
    outbox.send(sinks[-1], b"\x81\x01b")  # not reached yet: both frames go now
    outbox.write_now(sinks[-1])
    assert conns[-1].transport.writes == [b"\x81\x01a\x81\x01b"]
    assert reached(conns) == split + 1 and sent[-1] == 2
    while reached(conns) < len(conns):
        await next_turn()
    await next_turn()
    assert all(len(c.transport.writes) == 1 for c in conns)  # nothing twice
    assert sum(sent) == len(conns) + 1


async def test_a_reply_goes_out_in_the_next_turn_even_during_a_big_round():
    outbox = Outbox(clock=frozen)
    sinks, conns = sinks_for(20 * SINKS_PER_TURN)
    outbox.broadcast(sinks, b"\x81\x01a")
    await next_turn()
    assert reached(conns) < len(conns) - 1
    (outside,), (outside_conn,) = sinks_for(1)
    outbox.send(outside, b"\x81\x01r")  # say, a heartbeat's reply
    outbox.send(sinks[-1], b"\x81\x01s")  # one the round has not reached: with its broadcast
    await next_turn()
    assert outside_conn.transport.writes == [b"\x81\x01r"]
    assert conns[-1].transport.writes == [b"\x81\x01a\x81\x01s"]
    assert reached(conns) < len(conns)  # the round goes on at its pace


async def test_a_busy_loop_cannot_starve_a_round():
    loop = asyncio.get_running_loop()
    busy = True

    def other_work() -> None:  # reads and handlers: 2 ms of every turn
        until = time.perf_counter() + 0.002
        while time.perf_counter() < until:
            pass
        if busy:
            loop.call_soon(other_work)

    loop.call_soon(other_work)
    outbox = Outbox()  # the real clock
    sinks, conns = sinks_for(100 * SINKS_PER_TURN)
    outbox.broadcast(sinks, b"\x81\x01a")
    turns = 0
    while reached(conns) < len(conns):
        await next_turn()
        turns += 1
    busy = False
    # the slices took as long as the other work: far fewer than the 100 turns of a fixed count
    assert turns < 20


async def test_a_discarded_socket_is_let_go_of_and_gets_nothing():
    outbox = Outbox(clock=frozen)
    sinks, conns = sinks_for(3 * SINKS_PER_TURN)
    outbox.broadcast(sinks, b"\x81\x01a")
    gone = sinks[-1]
    gone.close()
    outbox.discard(gone)
    assert gone not in outbox._waiting
    while reached(conns) < len(conns) - 1:
        await next_turn()
    await next_turn()
    assert conns[-1].transport.writes == []
