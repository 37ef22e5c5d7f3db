"""A watch on a running service while hostile clients attack it.

On its own thread and event loop (so the attacks in the test's loop cannot delay it), the watch
keeps a well-behaved client sending a heartbeat every 20 ms and another one editing a document,
and checks after each case that:
- every heartbeat was answered within HEARTBEAT_BOUND_MS, throughout the case;
- a fresh client opening the document gets every acknowledged edit of the well-behaved client;
- the service's resident memory stays within RSS_GROWTH_BOUND_MIB of what it was after warm-up.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, create_sync_message, create_update_message
from veraltheim.protocol import Message, decode, encode
from veraltheim.protocol.constants import VSN
from veraltheim.protocol.ysync import Kind, parse_message, update_is_pending
from websockets.asyncio.client import ClientConnection, connect

from tests.support.phx_frames import sign

HEARTBEAT_EVERY_S = 0.02
HEARTBEAT_BOUND_MS = 250.0
RSS_GROWTH_BOUND_MIB = 160.0
REPLY_WAIT_S = 10.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class PhxClient:
    """A minimal Phoenix client over websockets: push and await the reply by ref."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.refs = itertools.count(1)
        self.waiting: dict[str, asyncio.Future[Message]] = {}
        self.pushes: asyncio.Queue[Message] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, ws_url: str, user: str) -> PhxClient:
        ws = await connect(f"{ws_url}?vsn={VSN}&token={sign(user)}", compression=None)
        return cls(ws)

    async def _read(self) -> None:
        async for frame in self.ws:
            msg = decode(frame, sender="server")
            waiter = self.waiting.pop(msg.ref, None) if msg.ref is not None else None
            if waiter is not None and not waiter.done():
                waiter.set_result(msg)
            elif msg.ref is None:
                self.pushes.put_nowait(msg)

    async def push(
        self, topic: str, event: str, payload: Any, join_ref: str | None = "1"
    ) -> dict[str, Any]:
        ref = str(next(self.refs))
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[ref] = waiter
        await self.ws.send(encode(Message(join_ref, ref, topic, event, payload), sender="client"))
        reply = await asyncio.wait_for(waiter, REPLY_WAIT_S)
        return reply.payload

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


@dataclass
class Window:
    start: float
    rtts_ms: list[float] = field(default_factory=list)


class Watch:
    def __init__(self, ws_url: str, pid: int, topic: str = "doc:shared") -> None:
        self.ws_url, self.pid, self.topic = ws_url, pid, topic
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="watch", daemon=True)
        self.samples: list[tuple[float, float]] = []  # (sent at, round trip ms; inf: no answer)
        self.acked: list[bytes] = []
        self.editor = Doc()
        self.baseline_mib = 0.0
        self._stop = asyncio.Event()

    # -- lifecycle (from the test thread) -----------------------------------------------------

    def start(self) -> Watch:
        self.thread.start()
        self._call(self._start())
        self.edit()
        self.baseline_mib = rss_mib(self.pid)
        return self

    def stop(self) -> None:
        try:
            self._call(self._shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.beater = await PhxClient.connect(self.ws_url, "watch-heartbeat")
        self.writer = await PhxClient.connect(self.ws_url, "watch-writer")
        joined = await self.writer.push(self.topic, "phx_join", {})
        assert joined["status"] == "ok", joined
        self.beating = asyncio.get_running_loop().create_task(self._beat())

    async def _shutdown(self) -> None:
        self.beating.cancel()
        await self.beater.close()
        await self.writer.close()

    async def _beat(self) -> None:
        while True:
            sent = time.monotonic()
            self.samples.append((sent, await self._one_beat()))
            await asyncio.sleep(max(0.0, HEARTBEAT_EVERY_S - (time.monotonic() - sent)))

    async def _one_beat(self) -> float:
        """One heartbeat's round trip in ms (inf: no answer within 4 times the bound)."""
        sent = time.monotonic()
        try:
            await asyncio.wait_for(
                self.beater.push("phoenix", "heartbeat", {}, join_ref=None),
                HEARTBEAT_BOUND_MS * 4 / 1000,
            )
        except TimeoutError:
            return float("inf")
        return (time.monotonic() - sent) * 1000

    # -- what the checks use -----------------------------------------------------------------

    def edit(self) -> None:
        """One acknowledged edit by the well-behaved writer."""
        self._call(self._edit())

    async def _edit(self) -> None:
        updates: list[bytes] = []
        sub = self.editor.observe(lambda event: updates.append(event.update))
        self.editor.get("m", type=Map)[f"e{len(self.acked)}"] = len(self.acked)
        self.editor.unobserve(sub)
        reply = await self.writer.push(self.topic, "yjs", create_update_message(updates[0]))
        assert reply["status"] == "ok", f"a well-behaved edit was refused: {reply}"
        self.acked.append(updates[0])

    def fresh_open(self) -> Doc:
        return self._call(self._fresh_open())

    async def _fresh_open(self) -> Doc:
        client = await PhxClient.connect(self.ws_url, "watch-reader")
        try:
            joined = await client.push(self.topic, "phx_join", {})
            assert joined["status"] == "ok", f"a fresh client cannot open the document: {joined}"
            synced = await client.push(self.topic, "yjs_sync", create_sync_message(Doc()))
            assert synced["status"] == "ok", synced
            doc = Doc()
            while True:
                msg = await asyncio.wait_for(client.pushes.get(), REPLY_WAIT_S)
                if msg.event == "yjs" and isinstance(msg.payload, bytes):
                    parsed = parse_message(msg.payload)
                    if parsed.kind is Kind.SYNC_STEP2:
                        doc.apply_update(parsed.data)
                        return doc
        finally:
            await client.close()

    def window(self) -> float:
        return time.monotonic()

    def heartbeats_since(self, start: float) -> list[float]:
        return [rtt for sent, rtt in list(self.samples) if sent >= start]

    def check(self, start: float, what: str = "") -> None:
        """Everything the watch promises, for the case that began at `start`."""
        self.edit()
        rtts = self.heartbeats_since(start) + [self._call(self._one_beat())]
        worst = max(rtts)
        assert worst <= HEARTBEAT_BOUND_MS, (
            f"{what}: a heartbeat took {worst:.0f} ms (bound {HEARTBEAT_BOUND_MS:.0f} ms)"
        )
        doc = self.fresh_open()
        state = doc.get_state()
        missing = [u for u in self.acked if update_is_pending(u, state)]
        assert not missing, f"{what}: {len(missing)} acknowledged edits are not in the document"
        grown = rss_mib(self.pid) - self.baseline_mib
        assert grown <= RSS_GROWTH_BOUND_MIB, f"{what}: service RSS grew {grown:.0f} MiB"
