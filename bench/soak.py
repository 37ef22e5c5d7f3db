"""A bounded soak of the real service with well-behaved and hostile clients at once, while the
service is SIGKILLed and restarted twice. Prints ONE JSON object.

    .venv/bin/python bench/soak.py [--minutes 3]

On loopback, auth on, one service on one port (restarted on the same port and data dir):
- well-behaved: 4 document writers (each edit pushed until acknowledged, resent over
  reconnects), a lobby member pinging once a second, a compute client hashing 64 KiB every
  200 ms, and a heartbeat every 20 ms from a client in a process of its own;
- hostile: two clients cycling through every bad input of issue 10 (huge var-uints, 1e999,
  invalid UTF-8, oversized and big JSON, mutated updates, the update that broke the encoding,
  sync step 1 and awareness floods, outsize compute requests, NaN deadlines, socket hoarding,
  join/leave cycling, byte floods);
- at 1/3 and 2/3 of the run the service is SIGKILLed and started again.

Then a fresh client opens the document: every acknowledged edit must be there (edits_lost).
heartbeat_p99_ms leaves out the restarts (from the kill until 2 s after the service is back).
rss_mib: the service's resident memory after warm-up (a quarter of the run), its max after
that, and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pycrdt import Doc, Map, create_sync_message, create_update_message  # noqa: E402
from veraltheim.protocol import Message, encode, pack_envelope  # noqa: E402
from veraltheim.protocol.ysync import (  # noqa: E402
    AwarenessEntry,
    Kind,
    encode_awareness_update,
    parse_message,
    update_is_pending,
)
from websockets.exceptions import InvalidStatus, WebSocketException  # noqa: E402

from tests.support.phx_frames import open_socket, sign  # noqa: E402
from tests.support.service import ServiceProcess, service_env  # noqa: E402
from tests.support.watch import PhxClient, rss_mib  # noqa: E402
from tests.unit.test_docs_store import BREAKS_A, BREAKS_B  # noqa: E402

DOC = "doc:soak"
AFTER_RESTART_S = 2.0  # heartbeats this soon after a restart are left out of the p99
WARM_UP_FRACTION = 0.25
NET_ERRORS = (OSError, ConnectionError, TimeoutError, WebSocketException, asyncio.TimeoutError)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Soak:
    def __init__(self, data_dir: Path, minutes: float) -> None:
        self.port = free_port()
        env = service_env({"VERALTHEIM_LOG_LEVEL": "WARNING", "VERALTHEIM_COMPUTE_WORKERS": "1"})
        self.service = ServiceProcess(data_dir, ["--port", str(self.port)], env)
        self.seconds = minutes * 60
        self.url = ""
        self.stop = asyncio.Event()
        self.acked: list[bytes] = []
        self.bad_inputs = 0
        self.restarts: list[tuple[float, float]] = []  # (killed at, back at)
        self.heartbeats: list[tuple[float, float]] = []  # (sent at, round trip ms)
        self.rss: list[tuple[float, float]] = []
        self.counts = {"compute_ok": 0, "lobby_pings_ok": 0}

    # -- the service -------------------------------------------------------------------------

    def start_service(self) -> None:
        self.service.start()
        self.url = self.service.ws_url

    def kill_and_restart(self) -> None:
        assert self.service.proc is not None
        killed = time.monotonic()
        os.killpg(self.service.proc.pid, signal.SIGKILL)
        self.service.proc.wait(10)
        self.start_service()
        self.restarts.append((killed, time.monotonic()))

    # -- well-behaved clients ------------------------------------------------------------------

    async def writer(self, i: int) -> None:
        doc = Doc(client_id=1000 + i)
        updates: list[bytes] = []
        doc.observe(lambda e: updates.append(e.update))
        n, pending = 0, None
        while not self.stop.is_set():
            try:
                client = await PhxClient.connect(self.url, f"writer{i}")
                try:
                    assert (await client.push(DOC, "phx_join", {}))["status"] == "ok"
                    while not self.stop.is_set():
                        if pending is None:
                            doc.get("m", type=Map)[f"w{i}-{n}"] = n
                            n, pending = n + 1, updates[-1]
                        reply = await client.push(DOC, "yjs", create_update_message(pending))
                        if reply["status"] == "ok":
                            self.acked.append(pending)
                            pending = None
                        await asyncio.sleep(0.1)
                finally:
                    await client.close()
            except (*NET_ERRORS, AssertionError):
                await asyncio.sleep(0.2)

    async def lobby_and_compute(self) -> None:
        data = random.randbytes(64 * 1024)
        while not self.stop.is_set():
            try:
                client = await PhxClient.connect(self.url, "member")
                try:
                    assert (await client.push("lobby", "phx_join", {}, "1"))["status"] == "ok"
                    joined = await client.push("compute:default", "phx_join", {}, "2")
                    assert joined["status"] == "ok"
                    for k in range(1_000_000):
                        if self.stop.is_set():
                            return
                        if k % 5 == 0:
                            ping = await client.push("lobby", "ping", {"k": k}, "1")
                            self.counts["lobby_pings_ok"] += ping["status"] == "ok"
                        header = {"kernel": "hash.sha256", "id": f"j{k}", "params": {}}
                        job = pack_envelope(header, data)
                        reply = await client.push("compute:default", "compute_request", job, "2")
                        self.counts["compute_ok"] += reply["status"] == "ok"
                        await asyncio.sleep(0.2)
                finally:
                    await client.close()
            except (*NET_ERRORS, AssertionError):
                await asyncio.sleep(0.2)

    def start_heartbeats(self) -> subprocess.Popen[str]:
        """Heartbeats from a process of their own (tests/support/heartbeat.py), so the bench's
        own load cannot delay them; it reconnects by itself after each restart."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.heartbeat", self.url, sign("heartbeat")],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                sent, rtt = line.split()
                self.heartbeats.append((float(sent), float(rtt)))

        threading.Thread(target=read, daemon=True).start()
        return proc

    # -- hostile clients -------------------------------------------------------------------------

    async def hostile(self, seed: int) -> None:
        rng = random.Random(seed)
        attacks = [
            self._huge_varint,
            self._infinity,
            self._bad_utf8,
            self._oversized_json,
            self._mutated_update,
            self._breaking_pair,
            self._sync_flood,
            self._awareness_flood,
            self._outsize_compute,
            self._nan_deadline,
            self._hoard_sockets,
            self._join_leave_cycle,
            self._byte_flood,
        ]
        while not self.stop.is_set():
            attack = rng.choice(attacks)
            try:
                async with asyncio.timeout(30):
                    await attack(rng)
            except (*NET_ERRORS, InvalidStatus):
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.05)

    async def _ws(self, user: str = "mallory", **kwargs: Any):
        return await open_socket(self.url, token=sign(user), **kwargs)

    async def _send_then_drain(self, ws, frames: list[str | bytes], wait_s: float = 1.0) -> None:
        for frame in frames:
            await ws.send(frame)
            self.bad_inputs += 1
        try:
            async with asyncio.timeout(wait_s):
                async for _ in ws:
                    pass
        except (TimeoutError, *NET_ERRORS):
            pass
        await ws.close()

    @staticmethod
    def _push(topic: str, event: str, payload: Any, ref: str = "9") -> str | bytes:
        return encode(Message("1", ref, topic, event, payload), sender="client")

    def _join(self, topic: str) -> str | bytes:
        return self._push(topic, "phx_join", {}, "1")

    async def _huge_varint(self, rng: random.Random) -> None:
        size = rng.choice([64 * 1024, 256 * 1024, 1 << 20])
        frames = [self._join(DOC), self._push(DOC, "yjs", b"\x01" + b"\xff" * size)]
        await self._send_then_drain(await self._ws(), frames)

    async def _infinity(self, rng: random.Random) -> None:
        frame = '["1","1","lobby","phx_join",{"meta":{"n":1e999}}]'
        await self._send_then_drain(await self._ws(), [frame])

    async def _bad_utf8(self, rng: random.Random) -> None:
        ws = await self._ws()
        await ws.send(b'["1","1","lobby","phx_join",{"\xff":1}]', text=True)
        await self._send_then_drain(ws, [])
        self.bad_inputs += 1

    async def _oversized_json(self, rng: random.Random) -> None:
        big = json.dumps([None, "1", "lobby", "ping", {"x": [1.5] * rng.choice([90_000, 400_000])}])
        await self._send_then_drain(await self._ws(), [self._join("lobby"), big])

    async def _mutated_update(self, rng: random.Random) -> None:
        doc = Doc(client_id=rng.randrange(1, 1 << 30))
        doc.get("m", type=Map)[f"evil{rng.random()}"] = rng.random()
        data = bytearray(doc.get_update())
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        frames = [self._join(DOC), self._push(DOC, "yjs", create_update_message(bytes(data)))]
        await self._send_then_drain(await self._ws(), frames)

    async def _breaking_pair(self, rng: random.Random) -> None:
        topic = f"doc:evil{rng.randrange(5)}"
        frames = [self._join(topic)] + [
            self._push(topic, "yjs", create_update_message(u), f"u{k}")
            for k, u in enumerate((BREAKS_A, BREAKS_B))
        ]
        await self._send_then_drain(await self._ws(), frames)

    async def _sync_flood(self, rng: random.Random) -> None:
        step1 = create_sync_message(Doc())
        frames = [self._join(DOC)] + [
            self._push(DOC, "yjs_sync", step1, f"s{k}") for k in range(50)
        ]
        await self._send_then_drain(await self._ws(), frames)

    async def _awareness_flood(self, rng: random.Random) -> None:
        many = encode_awareness_update([AwarenessEntry(k, 1, "{}") for k in range(1000)])
        fat = encode_awareness_update([AwarenessEntry(1, 1, json.dumps("x" * 200_000))])
        frames = [self._join(DOC)] + [
            self._push(DOC, "yjs", b"\x01" + _var_uint(len(u)) + u, f"a{k}")
            for k, u in enumerate((many, fat))
        ]
        await self._send_then_drain(await self._ws(), frames)

    async def _outsize_compute(self, rng: random.Random) -> None:
        header = {
            "kernel": "fractal.mandelbrot",
            "id": "big",
            "params": {"width": 8192, "height": 8192},
        }
        frames = [
            self._join("compute:default"),
            self._push("compute:default", "compute_request", pack_envelope(header)),
        ]
        await self._send_then_drain(await self._ws(), frames)

    async def _nan_deadline(self, rng: random.Random) -> None:
        header = b'{"kernel":"hash.sha256","id":"n","deadline_s":NaN}'
        env = struct.pack(">I", len(header)) + header
        frames = [
            self._join("compute:default"),
            self._push("compute:default", "compute_request", env),
        ]
        await self._send_then_drain(await self._ws(), frames)

    async def _hoard_sockets(self, rng: random.Random) -> None:
        opened = []
        try:
            for _ in range(110):
                with contextlib.suppress(InvalidStatus):
                    opened.append(await self._ws("hoarder"))
                self.bad_inputs += 1
        finally:
            await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)

    async def _join_leave_cycle(self, rng: random.Random) -> None:
        frames: list[str | bytes] = []
        for k in range(30):
            topic = f"doc:cycle{rng.randrange(10_000)}"
            frames += [
                self._push(topic, "phx_join", {}, f"j{k}"),
                self._push(topic, "phx_leave", {}, f"l{k}"),
            ]
        await self._send_then_drain(await self._ws(), frames)

    async def _byte_flood(self, rng: random.Random) -> None:
        blob = bytes(4 << 20)
        frames = [self._join("lobby")] + [
            self._push("lobby", "ping", blob, f"b{k}") for k in range(8)
        ]
        await self._send_then_drain(await self._ws(max_size=None), frames)

    # -- the run ---------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.start_service()
        beater = self.start_heartbeats()
        clients = [asyncio.create_task(self.writer(i)) for i in range(4)]
        clients.append(asyncio.create_task(self.lobby_and_compute()))
        clients += [asyncio.create_task(self.hostile(seed)) for seed in (1, 2)]
        began = time.monotonic()
        kills = [began + self.seconds / 3, began + 2 * self.seconds / 3]
        try:
            while (now := time.monotonic()) < began + self.seconds:
                if kills and now >= kills[0]:
                    kills.pop(0)
                    await asyncio.to_thread(self.kill_and_restart)
                assert self.service.proc is not None
                self.rss.append((now, rss_mib(self.service.proc.pid)))
                await asyncio.sleep(1.0)
        finally:
            self.stop.set()
            beater.terminate()
            beater.wait(10)
            await asyncio.gather(*clients, return_exceptions=True)
        lost = await self.lost_edits()
        self.service.stop()
        return self.report(began, lost)

    async def lost_edits(self) -> int:
        client = await PhxClient.connect(self.url, "auditor")
        try:
            assert (await client.push(DOC, "phx_join", {}))["status"] == "ok"
            await client.push(DOC, "yjs_sync", create_sync_message(Doc()))
            while True:
                msg = await asyncio.wait_for(client.pushes.get(), 30)
                if msg.event == "yjs" and isinstance(msg.payload, bytes):
                    parsed = parse_message(msg.payload)
                    if parsed.kind is Kind.SYNC_STEP2:
                        doc = Doc()
                        doc.apply_update(parsed.data)
                        state = doc.get_state()
                        return sum(update_is_pending(u, state) for u in self.acked)
        finally:
            await client.close()

    def report(self, began: float, lost: int) -> dict[str, Any]:
        def in_restart(t: float) -> bool:
            return any(
                killed - 0.1 <= t <= back + AFTER_RESTART_S for killed, back in self.restarts
            )

        rtts = sorted(rtt for sent, rtt in self.heartbeats if not in_restart(sent))
        warm = began + WARM_UP_FRACTION * self.seconds
        after = [mib for t, mib in self.rss if t >= warm] or [mib for _, mib in self.rss]
        rss = {"start": round(after[0], 1), "max": round(max(after), 1), "end": round(after[-1], 1)}
        p99 = round(rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], 2) if rtts else None
        return {
            "edits_acknowledged": len(self.acked),
            "edits_lost": lost,
            "heartbeat_p99_ms": p99,
            "heartbeat_p50_ms": round(statistics.median(rtts), 2) if rtts else None,
            "heartbeat_max_ms": round(rtts[-1], 2) if rtts else None,
            "heartbeats": len(rtts),
            "rss_mib": rss,
            "bad_inputs_sent": self.bad_inputs,
            "service_restarts": len(self.restarts),
            "restart_s": [round(back - killed, 2) for killed, back in self.restarts],
            **self.counts,
            "minutes": round(self.seconds / 60, 2),
            "goals": {
                "nothing_lost": lost == 0,
                "heartbeat_p99_under_100ms": p99 is not None and p99 < 100,
                "rss_flat_within_20pct": rss["end"] <= 1.2 * rss["start"]
                and rss["max"] <= 1.2 * rss["start"],
            },
        }


def _var_uint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the run (3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        soak = Soak(Path(tmp) / "service", args.minutes)
        try:
            print(json.dumps(asyncio.run(soak.run())))
        finally:
            soak.service.kill()


if __name__ == "__main__":
    main()
