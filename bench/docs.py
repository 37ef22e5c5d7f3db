"""Benchmark of shared documents against the real service. Prints ONE JSON object.

    .venv/bin/python bench/docs.py [--edits 60] [--entries 100000]

- edit_latency_ms: one client edits, every other client of the document sees it: the delay
  from the edit to each remote observer (p50/p99), with 2 and with 100 clients on one document,
  edits of the two groups interleaved (5 by the pair per 1 by the hundred; one edit at a
  time). All clients live in this process (with their caches), so the figure includes
  client-side decoding, applying and caching, as the app would see it.
- edit_latency_ms.clients_N (`--crowd`, 1000): N clients on one document in a separate light
  process (bench/_crowd.py: raw V2 frames, no caches), each editing at a human rate (one edit
  every `--edit-interval-s` on average, random gaps), for `--crowd-seconds`: the delay from the
  push to each of the N - 1 others receiving the update (p50/p99/max), the writers' ack, the
  edits per second, and the CPU seconds per second of the generator and of the service; the
  service on one core and the crowd on the others (cpus_service_crowd).
- updates_per_s: small updates pushed (pipelined, with acknowledgement) by 4 writers to one
  document with one listener, until the listener received all of them.
- reconnect_bytes: every frame byte in both directions on the reconnecting socket, from connect
  until it is synced and has sent what it lacked, after missing 10 small edits to a document of
  `entries` map entries; document_bytes: that document's full update (Doc.get_update()).
- cold_open_ms: opening that document from the client cache with no service, in a fresh
  process as at app start (imports not counted; median of 5).
- loop_lag_ms: p99 and max lateness of the service's own event loop (its 10 ms probe, read
  from /metrics) while a document of `entries` entries (about 2 MB, pushed in 250 parts and
  compacted once before the window) compacts every 200 updates under 100 clients each editing
  it once a second (a service of its own for this phase).

The service runs with --no-auth and rate limits off (they would cap the throughput figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pycrdt import Doc, Map, create_update_message  # noqa: E402
from veraltheim.client.net.socket import Socket  # noqa: E402
from veraltheim.client.state.shared_doc import SharedDoc  # noqa: E402
from veraltheim.client.state.store import DocumentStore  # noqa: E402
from veraltheim.protocol import encode  # noqa: E402
from veraltheim.protocol.constants import READY_LINE_PREFIX  # noqa: E402
from veraltheim.protocol.ysync import DOC_TOPIC_PREFIX, YJS_EVENT  # noqa: E402
from veraltheim.service.runner import new_event_loop  # noqa: E402

from bench._cpus import pin, split_cpus  # noqa: E402
from bench._crowd import Crowd  # noqa: E402
from bench._metrics import scrape  # noqa: E402

THROUGHPUT_TOPIC = DOC_TOPIC_PREFIX + "throughput"
SEED_PARTS = 250  # the loop-lag phase's document is pushed in this many updates
SMALL_EDITS_PER_ROUND = 5  # edits by the 2-client group per edit by the 100-client group
UNLIMITED = {
    "VERALTHEIM_SOCKET_RATE": "0",
    "VERALTHEIM_USER_RATE": "0",
    "VERALTHEIM_DOCS_UPDATES_PER_S": "0",
    "VERALTHEIM_DOCS_MAX_UPDATE_BYTES": str(16 * 1024 * 1024),
}


class Service:
    def __init__(self, data_dir: Path, **env: str) -> None:
        cmd = [
            sys.executable,
            "-m",
            "veraltheim.service",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        cmd += ["--no-auth", "--data-dir", str(data_dir), "--log-level", "WARNING"]
        env = {**os.environ, **UNLIMITED, "PYTHONUNBUFFERED": "1", **env}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(READY_LINE_PREFIX):
                self.url = line[len(READY_LINE_PREFIX) :].strip()
                break
        else:
            raise RuntimeError("the service did not start")
        self.http_url = "http" + self.url.split("/socket/")[0][2:]
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


async def wait_until(predicate, timeout: float = 60.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


class Group:
    """n clients, each with its own socket and cache, on one document."""

    def __init__(self, url: str, cache: Path, name: str, n: int) -> None:
        self.url, self.cache, self.name, self.n = url, cache, name, n
        self.socks: list[Socket] = []
        self.stores: list[DocumentStore] = []
        self.docs: list[SharedDoc] = []
        self.seen: dict[str, list[float]] = {}
        self.maps: list[Map] = []

    async def start(self) -> None:
        for i in range(self.n):
            sock = Socket(self.url)
            await sock.connect()
            store = DocumentStore(self.cache / f"{self.name}-{i}.sqlite3", sock)
            doc = await store.open(self.name)
            self.socks.append(sock)
            self.stores.append(store)
            self.docs.append(doc)
            shared = doc.doc.get("m", type=Map)
            shared.observe(self._observer())
            self.maps.append(shared)  # pycrdt drops the subscription with the Map object
        for doc in self.docs:
            await doc.wait_synced(60)

    def _observer(self):
        def seen(event: Any) -> None:
            now = time.perf_counter()
            for key in event.keys:
                self.seen.setdefault(key, []).append(now)

        return seen

    async def edit(self, i: int) -> list[float]:
        """One edit by client i % n; the delays (ms) until each other client saw it."""
        key = f"{self.name}-e{i}"
        writer = self.docs[i % self.n]
        start = time.perf_counter()
        writer.doc.get("m", type=Map)[key] = i
        # the writer's own observer fires at once: wait for the n - 1 others
        await wait_until(lambda: len(self.seen.get(key, ())) >= self.n)
        return [(t - start) * 1000 for t in self.seen.pop(key)[1:]]

    async def close(self) -> None:
        for store in self.stores:
            await store.aclose()
        for sock in self.socks:
            await sock.disconnect()


async def edit_latency(url: str, cache: Path, edits: int) -> dict[str, Any]:
    small, large = Group(url, cache, "lat2", 2), Group(url, cache, "lat100", 100)
    await small.start()
    await large.start()
    samples: dict[str, list[float]] = {"clients_2": [], "clients_100": []}
    try:
        for i in range(edits):  # interleaved; the 2-client group edits more for as many samples
            for k in range(SMALL_EDITS_PER_ROUND):
                samples["clients_2"] += await small.edit(i * SMALL_EDITS_PER_ROUND + k)
            samples["clients_100"] += await large.edit(i)
    finally:
        await small.close()
        await large.close()
    return {k: {"p50": pct(v, 0.5), "p99": pct(v, 0.99), "n": len(v)} for k, v in samples.items()}


async def crowd(svc: Service, args: argparse.Namespace) -> dict[str, Any]:
    """The crowd in its own process (it must not share this one's loop or core). For this
    phase the service runs on one core and the crowd on the others (bench/_cpus.py), as in
    bench/link.py: 1,000 sockets' sends cost the service about 10 us each pinned and 15 us
    when the crowd may land on its core."""
    cmd = [sys.executable, __file__, "--crowd-client", svc.url, str(svc.proc.pid), str(args.crowd)]
    cmd += [str(args.edit_interval_s), str(args.crowd_seconds)]
    cpus = split_cpus()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        if cpus is not None:
            pin(svc.proc.pid, cpus[0])
            pin(proc.pid, cpus[1])
        out, _ = await asyncio.to_thread(proc.communicate, timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if cpus is not None and svc.proc.poll() is None:
            pin(svc.proc.pid, cpus[0] | cpus[1])  # the other phases as before
    if proc.returncode:
        raise RuntimeError(f"the crowd failed with exit code {proc.returncode}")
    result = json.loads(out)
    result["cpus_service_crowd"] = None if cpus is None else [sorted(c) for c in cpus]
    return result


def crowd_client(url: str, service_pid: str, n: str, interval_s: str, duration_s: str) -> None:
    port = int(url.split(":")[2].split("/")[0])
    crowd = Crowd(port, DOC_TOPIC_PREFIX + "crowd", int(n), int(service_pid))
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        print(json.dumps(runner.run(crowd.run(float(interval_s), float(duration_s)))))


async def throughput(url: str, writers: int = 4, per_writer: int = 2000) -> float:
    socks = [Socket(url) for _ in range(writers + 1)]
    for s in socks:
        await s.connect()
    listener = socks[-1].channel(THROUGHPUT_TOPIC)
    received = 0

    def count(_payload: Any) -> None:
        nonlocal received
        received += 1

    listener.on(YJS_EVENT, count)
    await listener.join()
    messages = []
    for w in range(writers):
        doc, updates = Doc(), []
        doc.observe(lambda e, u=updates: u.append(e.update))
        m = doc.get("m", type=Map)
        for i in range(per_writer):
            m[f"w{w}-{i}"] = i
        messages.append([create_update_message(u) for u in updates])
    channels = [s.channel(THROUGHPUT_TOPIC) for s in socks[:writers]]
    for ch in channels:
        await ch.join()
    baseline = received
    start = time.perf_counter()

    async def write(ch: Any, batch: list[bytes]) -> None:
        pushes = [ch.push(YJS_EVENT, m, timeout=120) for m in batch]
        replies = await asyncio.gather(*pushes)
        assert all(r.status == "ok" for r in replies)

    await asyncio.gather(*(write(ch, b) for ch, b in zip(channels, messages, strict=True)))
    total = writers * per_writer
    await wait_until(lambda: received - baseline >= total, 120)
    elapsed = time.perf_counter() - start
    for s in socks:
        await s.disconnect()
    return round(total / elapsed, 1)


async def reconnect_and_cold_open(url: str, cache: Path, entries: int) -> dict[str, Any]:
    name = "big"
    a_sock, b_sock = Socket(url), Socket(url)
    await a_sock.connect()
    await b_sock.connect()
    a_store = DocumentStore(cache / "big-a.sqlite3", a_sock)
    b_path = cache / "big-b.sqlite3"
    b_store = DocumentStore(b_path, b_sock)
    a, b = await a_store.open(name), await b_store.open(name)
    await a.wait_synced(60)
    await b.wait_synced(60)
    m = a.doc.get("m", type=Map)
    chunk = 10_000
    for start in range(0, entries, chunk):
        with a.doc.transaction():
            for i in range(start, min(entries, start + chunk)):
                m[f"entry{i}"] = i
    await a.flush(120)
    await wait_until(lambda: len(b.doc.get("m", type=Map)) == entries, 120)
    await b_sock.disconnect()
    for i in range(10):
        m[f"missed{i}"] = i
    await a.flush(60)

    sent = [0]

    def count(direction: str, msg: Any) -> None:
        sent[0] += len(encode(msg, sender="server" if direction == "in" else "client"))

    b_sock.on_frame(count)
    b.synced.clear()
    await b_sock.connect()
    await b.wait_synced(60)
    await b.flush(60)
    await wait_until(lambda: len(b.doc.get("m", type=Map)) == entries + 10)
    document_bytes = len(b.doc.get_update())
    reconnect_bytes = sent[0]
    await a_store.aclose()
    await b_store.aclose()
    await a_sock.disconnect()
    await b_sock.disconnect()

    times = [cold_open(b_path, name, entries + 10) for _ in range(5)]
    return {
        "reconnect_bytes": reconnect_bytes,
        "document_bytes": document_bytes,
        "reconnect_fraction": round(reconnect_bytes / document_bytes, 6),
        "cold_open_ms": round(statistics.median(times), 1),
        "cold_open_runs_ms": [round(t, 1) for t in times],
    }


COLD_OPEN = """
import asyncio, sys, time
from pycrdt import Map
from veraltheim.client.state.store import DocumentStore

async def main(path, name, expected):
    start = time.perf_counter()
    store = DocumentStore(path)  # offline: no socket
    doc = await store.open(name)
    size = len(doc.doc.get("m", type=Map))
    elapsed = time.perf_counter() - start
    assert size == int(expected), size
    await store.aclose()
    print(elapsed * 1000)

asyncio.run(main(*sys.argv[1:]))
"""


def cold_open(path: Path, name: str, expected: int) -> float:
    """Open the document in a fresh process, as the app does at start (imports not counted)."""
    out = subprocess.run(
        [sys.executable, "-c", COLD_OPEN, str(path), name, str(expected)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    )
    return float(out.stdout)


def lag_p99_ms(before: dict[str, float], after: dict[str, float]) -> float:
    """The p99 wake-up lateness between two scrapes, as the upper bound of its bucket."""
    prefix = "veraltheim_loop_lag_samples_total{le="
    buckets = sorted(
        (float(k[len(prefix) + 1 : -2].replace("+Inf", "inf")), v - before.get(k, 0.0))
        for k, v in after.items()
        if k.startswith(prefix)
    )
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= 0.99 * total:
            return round(bound * 1000, 3)
    return float("inf")


async def loop_lag_under_compaction(
    url: str, http_url: str, entries: int, clients: int = 100, seconds: float = 10.0
) -> dict[str, Any]:
    """The service's event loop lateness while a 2 MB document compacts (every 200 updates)
    under `clients` members editing it (each once a second, acknowledged)."""
    name = DOC_TOPIC_PREFIX + "compacting"
    seed_doc, seed_parts = Doc(), []
    seed_doc.observe(lambda e: seed_parts.append(e.update))
    seed_map = seed_doc.get("m", type=Map)
    per_part = max(1, entries // SEED_PARTS)
    for start in range(0, entries, per_part):  # in parts, as editors would have made it
        seed_map.update({f"k{i}": i for i in range(start, min(entries, start + per_part))})
    socks = [Socket(url) for _ in range(clients)]
    await asyncio.gather(*(s.connect() for s in socks))
    channels = [s.channel(name) for s in socks]
    await asyncio.gather(*(ch.join() for ch in channels))
    for part in seed_parts:
        assert (await channels[0].push(YJS_EVENT, create_update_message(part), timeout=120)).ok
    compactions = "veraltheim_doc_compactions_total"
    # the seed's own compaction (which checks every part it drops) is done before the window
    await wait_until(lambda: scrape(http_url).get(compactions, 0) >= 1, 120)
    before = scrape(http_url)  # also resets loop_lag_max_seconds
    seed = seed_doc.get_update()
    deadline = time.perf_counter() + seconds

    async def edit(i: int, channel: Any) -> None:
        doc, updates = Doc(), []
        doc.observe(lambda e: updates.append(e.update))
        m = doc.get("m", type=Map)
        await asyncio.sleep(i / clients)  # spread over the second
        n = 0
        while time.perf_counter() < deadline:
            m[f"c{i}-{n}"] = n
            n += 1
            reply = await channel.push(YJS_EVENT, create_update_message(updates[-1]), timeout=60)
            assert reply.ok, reply
            await asyncio.sleep(1.0)

    await asyncio.gather(*(edit(i, ch) for i, ch in enumerate(channels)))
    after = scrape(http_url)
    for s in socks:
        await s.disconnect()
    return {
        "p99": lag_p99_ms(before, after),
        "max": round(after["veraltheim_loop_lag_max_seconds"] * 1000, 3),
        "document_bytes": len(seed),
        "compactions": after.get(compactions, 0) - before.get(compactions, 0),
        "clients": clients,
        "seconds": seconds,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(Path(tmp) / "service")
        try:
            cache = Path(tmp) / "caches"
            cache.mkdir()
            latency = await edit_latency(svc.url, cache, args.edits)
            if args.crowd:
                latency[f"clients_{args.crowd}"] = await crowd(svc, args)
            updates_per_s = await throughput(svc.url)
            big = await reconnect_and_cold_open(svc.url, cache, args.entries)
        finally:
            svc.stop()
        svc = Service(Path(tmp) / "compacting", VERALTHEIM_DOCS_COMPACT_EVERY="200")
        try:
            loop_lag = await loop_lag_under_compaction(svc.url, svc.http_url, args.entries)
        finally:
            svc.stop()
    return {
        "edit_latency_ms": latency,
        "latency_p50_ratio_100_vs_2": round(
            latency["clients_100"]["p50"] / max(latency["clients_2"]["p50"], 1e-9), 1
        ),
        "updates_per_s": updates_per_s,
        **big,
        "entries": args.entries,
        "loop_lag_ms": loop_lag,
        "goals": {
            "loop_lag_p99_under_20ms": loop_lag["p99"] < 20,
            "loop_lag_max_under_100ms": loop_lag["max"] < 100,
            "p99_100_clients_under_50ms": latency["clients_100"]["p99"] < 50,
            **(
                {f"p99_{args.crowd}_clients_under_50ms": crowd_p99 < 50}
                if (crowd_p99 := latency.get(f"clients_{args.crowd}", {}).get("p99")) is not None
                else {}
            ),
            "reconnect_under_1pct": big["reconnect_bytes"] < 0.01 * big["document_bytes"],
            "cold_open_under_300ms": big["cold_open_ms"] < 300,
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=60, help="edits per group (default 60)")
    parser.add_argument("--entries", type=int, default=100_000, help="map entries (100000)")
    parser.add_argument("--crowd", type=int, default=1000, help="clients on one document; 0: none")
    parser.add_argument(
        "--edit-interval-s", type=float, default=20.0, help="mean seconds between a client's edits"
    )
    parser.add_argument("--crowd-seconds", type=float, default=30.0, help="how long they edit")
    parser.add_argument("--crowd-client", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crowd_client:
        crowd_client(*args.crowd_client)
    else:
        print(json.dumps(asyncio.run(main(args))))
