"""service/outbox.py: a socket's frames of one loop turn go out in one write, in order."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from veraltheim.service import ws_fastpath
from veraltheim.service.outbox import BatchedWriter, Outbox
from websockets.protocol import State

pytestmark = pytest.mark.skipif(not ws_fastpath.FAST, reason="batches only on the fast path")
LIMIT = 1000


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return 7  # what the kernel did not take yet


def connection() -> SimpleNamespace:
    return SimpleNamespace(transport=Transport(), state=State.OPEN)


async def next_turn() -> None:
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


async def test_frames_of_one_turn_go_out_in_one_write_per_socket_in_order():
    outbox = Outbox()
    a_conn, b_conn = connection(), connection()
    a, b = BatchedWriter(a_conn, outbox, LIMIT), BatchedWriter(b_conn, outbox, LIMIT)
    single = b"\x81\x01x"
    for wire in (b"\x81\x011", b"\x81\x012", b"\x81\x013"):
        a.write(wire)
    b.write(single)
    assert a.get_write_buffer_size() == 7 + 9  # the transport's bytes and the waiting ones
    assert a_conn.transport.writes == [] and b_conn.transport.writes == []
    await next_turn()
    await next_turn()
    assert a_conn.transport.writes == [b"\x81\x011\x81\x012\x81\x013"]
    assert b_conn.transport.writes[0] is single  # one frame: the very object, not a copy
    assert a.get_write_buffer_size() == 7
    a.write(b"\x81\x014")  # a later turn is a write of its own
    await next_turn()
    await next_turn()
    assert a_conn.transport.writes[-1] == b"\x81\x014"


async def test_flush_writes_now_and_a_closing_connection_gets_nothing_more():
    outbox = Outbox()
    conn = connection()
    writer = BatchedWriter(conn, outbox, LIMIT)
    writer.write(b"\x81\x01a")
    writer.flush()  # before a close frame written behind websockets' back
    assert conn.transport.writes == [b"\x81\x01a"]
    writer.write(b"\x81\x01b")
    conn.state = State.CLOSING
    await next_turn()
    await next_turn()
    assert conn.transport.writes == [b"\x81\x01a"]
    assert writer.get_write_buffer_size() == 7


async def test_a_frame_is_refused_once_the_client_has_not_read_past_the_limit():
    outbox = Outbox()
    conn = connection()
    writer = BatchedWriter(conn, outbox, limit=7 + 5)  # 7 bytes sit unread in the transport
    assert writer.write(b"\x81\x04abcd")  # 7 unread: under the limit
    assert not writer.write(b"\x81\x01e")  # 7 + the 6 waiting: over it, nothing queued
    writer.flush()
    assert conn.transport.writes == [b"\x81\x04abcd"]
    assert writer.write(b"\x81\x01e")  # written out: room again (the transport says 7)
