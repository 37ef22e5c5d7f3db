"""A watch on a running service while hostile clients attack it.

A client in a process of its own sends a heartbeat every 20 ms (tests/support/heartbeat.py);
a well-behaved editor on the watch's own thread and event loop edits a document. After each
case the watch checks that:
- every heartbeat was answered within HEARTBEAT_BOUND_MS, throughout the case;
- a fresh client opening the document gets every acknowledged edit of the well-behaved client;
- the service's resident memory stays within RSS_GROWTH_BOUND_MIB of what it was after warm-up.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pycrdt import Doc, Map, create_sync_message, create_update_message
from veraltheim.protocol import Message, decode, encode
from veraltheim.protocol.constants import VSN
from veraltheim.protocol.ysync import Kind, parse_message, update_is_pending
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.phx_frames import sign

ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT_BOUND_MS = 250.0
RSS_GROWTH_BOUND_MIB = 160.0
REPLY_WAIT_S = 10.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


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
        try:
            async for frame in self.ws:
                msg = decode(frame, sender="server")
                waiter = self.waiting.pop(msg.ref, None) if msg.ref is not None else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(msg)
                elif msg.ref is None:
                    self.pushes.put_nowait(msg)
        except ConnectionClosed:
            pass
        finally:  # a push waiting for a reply learns at once that none will come
            for waiter in self.waiting.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("the socket closed"))
                    waiter.add_done_callback(_retrieved)  # its push may have timed out
            self.waiting.clear()

    async def push(
        self, topic: str, event: str, payload: Any, join_ref: str | None = "1"
    ) -> dict[str, Any]:
        ref = str(next(self.refs))
        waiter = asyncio.get_running_loop().create_future()
        if self.reader.done():
            raise ConnectionError("the socket closed")
        self.waiting[ref] = waiter
        await self.ws.send(encode(Message(join_ref, ref, topic, event, payload), sender="client"))
        reply = await asyncio.wait_for(waiter, REPLY_WAIT_S)
        return reply.payload

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


class Watch:
    def __init__(self, ws_url: str, pid: int, topic: str = "doc:shared") -> None:
        self.ws_url, self.pid, self.topic = ws_url, pid, topic
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="watch", daemon=True)
        self.samples: list[tuple[float, float]] = []  # (sent at, round trip ms; inf: no answer)
        self.beat = threading.Condition()
        self.acked: list[bytes] = []
        self.editor = Doc()
        self.baseline_mib = 0.0
        self.beater: subprocess.Popen[str] | None = None

    # -- lifecycle (from the test thread) -----------------------------------------------------

    def start(self) -> Watch:
        self.thread.start()
        self._call(self._start())
        # heartbeats from a process of their own: nothing in this one can delay them
        self.beater = subprocess.Popen(
            [sys.executable, "-m", "tests.support.heartbeat", self.ws_url, sign("watch-beat")],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        threading.Thread(target=self._read_beats, name="watch-beats", daemon=True).start()
        self.edit()
        self.baseline_mib = rss_mib(self.pid)
        return self

    def stop(self) -> None:
        try:
            if self.beater is not None:
                self.beater.terminate()
                self.beater.wait(10)
            self._call(self.writer.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        self.writer = await PhxClient.connect(self.ws_url, "watch-writer")
        joined = await self.writer.push(self.topic, "phx_join", {})
        assert joined["status"] == "ok", joined

    def _read_beats(self) -> None:
        assert self.beater is not None and self.beater.stdout is not None
        for line in self.beater.stdout:
            sent, rtt = line.split()
            with self.beat:
                self.samples.append((float(sent), float(rtt)))
                self.beat.notify_all()

    def _beats_after(self, t: float) -> None:
        """Wait until a heartbeat sent after `t` has its answer (or is known unanswered)."""
        with self.beat:
            if not self.beat.wait_for(lambda: self.samples and self.samples[-1][0] > t, 10):
                raise AssertionError("the heartbeat client stopped reporting")

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
        self._beats_after(time.monotonic())  # the service answers after the case, too
        rtts = self.heartbeats_since(start)
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
