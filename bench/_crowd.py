"""bench/docs.py's crowd: N clients on one document, each editing at a human rate, held by one
light process (raw asyncio protocols speaking V2 frames, see bench/_raw.py).

Every client joins `doc:NAME` (tracked in presence, as the app's are), sends its sync step 1 as
y-phoenix-channel does, then edits its own pycrdt Doc at random times (exponential gaps of mean
`interval_s`, so the crowd's edits form a Poisson stream of n / interval_s per second) and pushes
each update. The service fans each one out to the n - 1 others in one frame whose bytes the
writer knows in advance, so a receiver finds the edit by a dict lookup of the frame: the delay
is the arrival minus the push, per receiver. Arrival is the kernel's receive time of the data
(bench/_raw.py, StampedWs), as a client on a machine of its own would have it; `handled_p99`
is the same delay up to when this process, one core for all n clients, got to the frame.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from typing import Any

from pycrdt import Doc, Map, create_sync_message
from veraltheim.protocol import SOCKET_PATH, VSN, Message, encode
from veraltheim.protocol.ysync import YJS_EVENT, YJS_SYNC_EVENT, create_update_message

from bench._raw import (
    OPCODE_BINARY,
    OPCODE_TEXT,
    StampedWs,
    cpu_seconds,
    masked_frame,
    open_stamped,
    process_stats,
)

CONCURRENT_JOINS = 100
CLOCK = StampedWs.clock  # the clock of the arrival times
REPLY_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 60.0


def client_frame(topic: str, ref: str, event: str, payload: Any) -> bytes:
    wire = encode(Message("1", ref, topic, event, payload), sender="client")
    if isinstance(wire, str):
        return masked_frame(wire.encode(), OPCODE_TEXT)
    return masked_frame(wire, OPCODE_BINARY)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Crowd:
    def __init__(self, port: int, topic: str, n: int, service_pid: int) -> None:
        self.port, self.topic, self.n, self.service_pid = port, topic, n, service_pid
        self.sent: dict[bytes, int] = {}  # the broadcast frame of an edit -> when it was pushed
        self.received: dict[bytes, int] = {}  # -> how many others got it
        self.delays_ms: list[float] = []
        self.handled_ms: list[float] = []  # up to when this process got to it
        self.ack_ms: list[float] = []

    def on_broadcast(self, payload: bytes, arrived_ns: int) -> bool:
        sent_ns = self.sent.get(payload)
        if sent_ns is None:
            return False
        self.delays_ms.append((arrived_ns - sent_ns) / 1e6)
        self.handled_ms.append((CLOCK() - sent_ns) / 1e6)
        self.received[payload] += 1
        return True

    async def run(self, interval_s: float, duration_s: float) -> dict[str, Any]:
        limit = asyncio.Semaphore(CONCURRENT_JOINS)
        started = time.perf_counter()
        clients = await asyncio.gather(*(CrowdClient(self, i).join(limit) for i in range(self.n)))
        join_s = time.perf_counter() - started
        cpu_before = process_stats()["cpu_s"], cpu_seconds(self.service_pid)
        end = time.monotonic() + duration_s
        await asyncio.gather(*(c.edit_until(end, interval_s) for c in clients))
        await self.settle()
        cpu_s = process_stats()["cpu_s"] - cpu_before[0]
        service_cpu_s = cpu_seconds(self.service_pid) - cpu_before[1]
        delays = sorted(self.delays_ms)
        expected = len(self.sent) * (self.n - 1)
        for c in clients:
            c.ws.close()
        return {
            "p50": round(statistics.median(delays), 2),
            "p99": round(percentile(delays, 0.99), 2),
            "max": round(delays[-1], 2),
            "handled_p99": round(percentile(self.handled_ms, 0.99), 2),
            "n": len(delays),
            "missing": expected - len(delays),
            "edits": len(self.sent),
            "edits_per_s": round(len(self.sent) / duration_s, 1),
            "ack_ms_p50": round(statistics.median(self.ack_ms), 2),
            "join_all_s": round(join_s, 2),
            "load_generator_cpu_s_per_s": round(cpu_s / duration_s, 3),
            "service_cpu_s_per_s": round(service_cpu_s / duration_s, 3),
            "fd_limit": process_stats()["fd_limit"],
        }

    async def settle(self) -> None:
        """Until every edit reached every other client (or SETTLE_TIMEOUT_S)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        want = self.n - 1
        while time.monotonic() < deadline:
            if all(count >= want for count in self.received.values()):
                return
            await asyncio.sleep(0.05)


class CrowdClient:
    def __init__(self, crowd: Crowd, index: int) -> None:
        self.crowd, self.index = crowd, index
        self.doc = Doc()
        self.map = self.doc.get("m", type=Map)
        self.updates: list[bytes] = []
        self.subscription = self.doc.observe(lambda event: self.updates.append(event.update))
        self.refs = 0
        self.waiting: dict[str, tuple[int, asyncio.Future[dict]]] = {}

    def on_frame(self, opcode: int, payload: bytes, arrived_ns: int) -> None:
        if opcode == OPCODE_BINARY and self.crowd.on_broadcast(payload, arrived_ns):
            return
        if opcode != OPCODE_TEXT or b'"phx_reply"' not in payload:
            return  # presence, and the sync pushes: not measured
        _, ref, _, _, reply = json.loads(payload)
        sent_ns, future = self.waiting.pop(ref, (None, None))
        if future is not None:
            self.crowd.ack_ms.append((arrived_ns - sent_ns) / 1e6)
            future.set_result(reply)

    def push(self, event: str, payload: Any) -> asyncio.Future[dict]:
        self.refs += 1
        ref = str(self.refs)
        future = asyncio.get_running_loop().create_future()
        self.waiting[ref] = (CLOCK(), future)
        self.ws.send(client_frame(self.crowd.topic, ref, event, payload))
        return future

    async def join(self, limit: asyncio.Semaphore) -> CrowdClient:
        async with limit:
            path = f"{SOCKET_PATH}?vsn={VSN}&user=crowd-{self.index}"
            self.ws = await open_stamped(self.crowd.port, self.on_frame, path)
            reply = await asyncio.wait_for(self.push("phx_join", {}), REPLY_TIMEOUT_S)
            if reply.get("status") != "ok":
                raise RuntimeError(f"join refused: {reply}")
            # y-phoenix-channel's first message: sync step 1 with this client's state vector
            await asyncio.wait_for(
                self.push(YJS_SYNC_EVENT, create_sync_message(self.doc)), REPLY_TIMEOUT_S
            )
        return self

    async def edit_until(self, end: float, interval_s: float) -> None:
        crowd = self.crowd
        edits = 0
        while True:
            gap = random.expovariate(1 / interval_s)
            if time.monotonic() + gap >= end:
                return
            await asyncio.sleep(gap)
            self.map[f"c{self.index}e{edits}"] = edits
            edits += 1
            message = create_update_message(self.updates.pop())
            fanned = encode(Message(None, None, crowd.topic, YJS_EVENT, message), sender="server")
            crowd.received[fanned] = 0
            crowd.sent[fanned] = CLOCK()
            self.push(YJS_EVENT, message)
