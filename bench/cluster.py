"""Benchmark of scale-out: one node against three on Redis, and the local pool against Dask, side
by side in one run. Prints ONE JSON object.

    .venv/bin/python bench/cluster.py [--clients 60] [--rounds 200] [--size 4096] [--runs 3]

- broadcast_p99_ms / edit_p99_ms {nodes_1, nodes_3}: the same clients behind haproxy
  (resources/haproxy/veraltheim.cfg), against one node (the embedded default: in-process
  pubsub, SQLite) and against three nodes on one redis-server (--pubsub, --store; AOF with
  appendfsync everysec, SQLite's promise: see --appendfsync), clients spread by haproxy.
  A broadcast's delay is from the push to each client's receipt of the
  `shout` (every client, sender included); an edit's is from the push of a Yjs update to each
  other client's receipt of it (stored first: SQLite or Redis). `*_p50_ms` too.
  cross_node_hop_p99_ms: on three nodes, p99 of the deliveries to clients on another node than
  the sender's minus p99 of those to clients on the sender's node (goal: < 5 ms); which node a
  client landed on is read from the nodes' /healthz as it connects.
- render_s {local_pool, dask}: a tiled WIDTHxWIDTH mandelbrot through compute:default, the
  local pool of W worker processes against a Dask cluster of W single-thread workers (same
  total), medians of interleaved runs after a warm-up; dask_overhead = dask / local_pool - 1
  (goal: < 0.20).

The load generator runs in this process (minimal clients); one clock times both ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pycrdt import Doc, Map  # noqa: E402
from veraltheim.protocol import Message, decode  # noqa: E402
from veraltheim.protocol.envelope import pack_envelope, unpack_envelope  # noqa: E402
from veraltheim.protocol.ysync import YJS_EVENT, create_update_message  # noqa: E402

from tests.support.cluster import DaskCluster, Haproxy, RedisServer  # noqa: E402
from tests.support.phx_frames import http_get, join, open_socket, send  # noqa: E402
from tests.support.service import running_service  # noqa: E402

NODE_ENV = {"VERALTHEIM_COMPUTE_WORKERS": "1", "VERALTHEIM_SOCKET_RATE": "10000"}
DOC_TOPIC = "doc:bench"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


class Client:
    """A raw socket that stamps the arrival of shouts and document updates."""

    def __init__(self, ws: Any, arrivals: dict[Any, dict[int, float]], index: int) -> None:
        self.ws, self.arrivals, self.index = ws, arrivals, index
        self.replies: dict[str, asyncio.Future[dict]] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                now = time.perf_counter()
                msg = decode(raw, sender="server")
                if msg.event == "shout":
                    self._arrived(("shout", msg.payload["r"]), now)
                elif msg.event == YJS_EVENT and msg.ref is None:
                    self._arrived(("edit", bytes(msg.payload)), now)
                elif msg.event == "phx_reply" and msg.ref in self.replies:
                    self.replies.pop(msg.ref).set_result(msg.payload)

    def _arrived(self, key: Any, now: float) -> None:
        seen = self.arrivals.get(key)
        if seen is not None:
            seen[self.index] = now

    async def request(self, msg: Message) -> dict:
        future = asyncio.get_running_loop().create_future()
        self.replies[msg.ref] = future
        await send(self.ws, msg)
        return await asyncio.wait_for(future, 30)


async def until_all(seen: dict[int, float], count: int) -> None:
    deadline = time.monotonic() + 30
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(seen)} of {count} clients got it")
        await asyncio.sleep(0.0005)


def sockets_per_node(nodes: list[Any]) -> list[int]:
    return [json.loads(http_get(n.http_url + "/healthz")[2])["sockets"] for n in nodes]


async def landed_on(nodes: list[Any], before: list[int]) -> int:
    """The index of the node whose socket count went up (it counts the socket just after the
    handshake, so it is polled briefly)."""
    for _ in range(200):
        after = sockets_per_node(nodes)
        grew = [n for n, (a, b) in enumerate(zip(after, before, strict=True)) if a > b]
        if grew:
            return grew[0]
        await asyncio.sleep(0.01)
    raise RuntimeError("no node counted the new socket")


async def measure_link(url: str, clients: int, rounds: int, nodes: list[Any]) -> dict[str, list]:
    """Delays of every delivery; `*_same` / `*_other`: to clients on the sender's node / on
    another node (which node each client landed on is read from the nodes' /healthz)."""
    arrivals: dict[Any, dict[int, float]] = {}
    conns = []
    node_of: list[int] = []
    for i in range(clients):  # one at a time: haproxy's leastconn spreads them
        before = sockets_per_node(nodes)
        ws = await open_socket(url, None, query=f"user=c{i}", max_size=None)
        node_of.append(await landed_on(nodes, before))
        await join(ws, payload={"presence": False})
        await join(ws, DOC_TOPIC, "2")
        conns.append(Client(ws, arrivals, i))
    out: dict[str, list] = {
        k: []
        for k in (
            "broadcast",
            "edit",
            "ack",
            "broadcast_same",
            "broadcast_other",
            "edit_same",
            "edit_other",
        )
    }
    out["spread"] = [node_of.count(n) for n in range(len(nodes))]

    def split(kind: int, seen: dict[int, float], start: float, sender: int) -> list[float]:
        for i, t in seen.items():
            where = "same" if node_of[i] == node_of[sender] else "other"
            out[f"{kind}_{where}"].append(t - start)
        return [t - start for t in seen.values()]

    broadcast, edit, ack = out["broadcast"], out["edit"], out["ack"]
    doc = Doc()
    for r in range(rounds):
        sender = conns[r % clients]
        arrivals[("shout", r)] = seen = {}
        start = time.perf_counter()
        await send(sender.ws, Message("1", f"s{r}", "lobby", "shout", {"r": r}))
        await until_all(seen, clients)
        broadcast += split("broadcast", seen, start, r % clients)
        before = doc.get_state()
        doc.get("m", type=Map)[f"k{r}"] = r
        message = create_update_message(doc.get_update(before))
        arrivals[("edit", message)] = seen = {}
        start = time.perf_counter()
        reply = await sender.request(Message("2", f"e{r}", DOC_TOPIC, YJS_EVENT, message))
        ack.append(time.perf_counter() - start)
        assert reply["status"] == "ok", reply
        await until_all(seen, clients - 1)
        edit += split("edit", seen, start, r % clients)
        arrivals.clear()
    for conn in conns:
        await conn.ws.close()
        conn.task.cancel()
    return out


async def render(url: str, size: int) -> float:
    ws = await open_socket(url, None, max_size=None)
    try:
        await join(ws, "compute:default")
        params = {"width": size, "height": size, "max_iter": 256}
        client = Client(ws, {}, 0)
        start = time.perf_counter()
        reply = await client.request(
            Message(
                "1",
                "r",
                "compute:default",
                "compute_request",
                pack_envelope({"kernel": "fractal.mandelbrot", "params": params, "id": "m"}, b""),
            )
        )
        took = time.perf_counter() - start
        if reply["status"] != "ok":
            raise RuntimeError(f"render failed on {url}: {reply['response']}")
        header, output = unpack_envelope(reply["response"])
        assert len(output) == size * size * 4, header
        client.task.cancel()
        return took
    finally:
        await ws.close()


def link_figures(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with running_service(tmp / "single", "--no-auth", env=NODE_ENV) as single:
        lb = Haproxy(tmp / "lb1", [single.port]).start()
        try:
            out["nodes_1"] = asyncio.run(
                measure_link(lb.ws_url, args.clients, args.rounds, [single])
            )
        finally:
            lb.stop()
    # everysec: an acknowledged edit survives a killed Redis, not an OS crash; the same promise
    # as the single node's SQLite (WAL, synchronous=NORMAL). `always` adds an fsync per edit.
    redis = RedisServer(tmp / "redis", appendfsync=args.appendfsync).start()
    try:
        with contextlib.ExitStack() as stack:
            nodes = [
                stack.enter_context(
                    running_service(
                        tmp / f"node{i}",
                        "--no-auth",
                        "--pubsub",
                        redis.url,
                        "--store",
                        redis.url,
                        env=NODE_ENV,
                    )
                )
                for i in range(3)
            ]
            lb = Haproxy(tmp / "lb3", [n.port for n in nodes]).start()
            try:
                out["nodes_3"] = asyncio.run(
                    measure_link(lb.ws_url, args.clients, args.rounds, nodes)
                )
            finally:
                lb.stop()
    finally:
        redis.kill()
    return out


def render_figures(tmp: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    workers = str(args.workers)
    dask = DaskCluster(tmp / "dask", args.workers).start()
    times: dict[str, list[float]] = {"local_pool": [], "dask": []}
    try:
        # a WIDTHxWIDTH RGBA image comes back in one reply: frames big enough for it
        frame = str(args.size * args.size * 4 + (1 << 20))
        env = {
            **NODE_ENV,
            "VERALTHEIM_COMPUTE_WORKERS": workers,
            "VERALTHEIM_MAX_FRAME_BYTES": frame,
        }
        with (
            running_service(tmp / "pool", "--no-auth", env=env) as pool,
            running_service(tmp / "onDask", "--no-auth", "--compute", dask.url, env=env) as on_dask,
        ):
            urls = {"local_pool": pool.ws_url, "dask": on_dask.ws_url}
            for url in urls.values():  # warm-up: worker processes, module caches
                asyncio.run(render(url, args.size))
            for _ in range(args.runs):  # interleaved: the machine's noise hits both alike
                for name, url in urls.items():
                    times[name].append(asyncio.run(render(url, args.size)))
    finally:
        dask.stop()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--appendfsync", choices=("everysec", "always"), default="everysec")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vt-bench-cluster-") as tmp_name:
        tmp = Path(tmp_name)
        link = link_figures(tmp, args)
        renders = render_figures(tmp, args)
    local = statistics.median(renders["local_pool"])
    on_dask = statistics.median(renders["dask"])
    b1, b3 = pct(link["nodes_1"]["broadcast"], 0.99), pct(link["nodes_3"]["broadcast"], 0.99)
    e1, e3 = pct(link["nodes_1"]["edit"], 0.99), pct(link["nodes_3"]["edit"], 0.99)
    result = {
        "clients": args.clients,
        "redis_appendfsync": args.appendfsync,
        "rounds": args.rounds,
        "broadcast_p99_ms": {"nodes_1": b1, "nodes_3": b3},
        "broadcast_p50_ms": {k: pct(v["broadcast"], 0.5) for k, v in link.items()},
        "edit_p99_ms": {"nodes_1": e1, "nodes_3": e3},
        "edit_p50_ms": {k: pct(v["edit"], 0.5) for k, v in link.items()},
        "edit_ack_p99_ms": {k: pct(v["ack"], 0.99) for k, v in link.items()},
        "nodes_3_spread": link["nodes_3"]["spread"],
        # the same deliveries on three nodes, to clients on the sender's node against the others
        "nodes_3_p99_ms": {
            f"{kind}_{where}": pct(link["nodes_3"][f"{kind}_{where}"], 0.99)
            for kind in ("broadcast", "edit")
            for where in ("same", "other")
        },
        "cross_node_hop_p99_ms": {
            kind: round(
                pct(link["nodes_3"][f"{kind}_other"], 0.99)
                - pct(link["nodes_3"][f"{kind}_same"], 0.99),
                3,
            )
            for kind in ("broadcast", "edit")
        },
        "cross_node_hop_goal_ms": "< 5",
        "render_size": f"{args.size}x{args.size}",
        "render_workers": args.workers,
        "render_s": {"local_pool": round(local, 3), "dask": round(on_dask, 3)},
        "render_runs_s": {k: [round(t, 3) for t in v] for k, v in renders.items()},
        "dask_overhead": round(on_dask / local - 1, 4),
        "dask_overhead_goal": "< 0.20",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
