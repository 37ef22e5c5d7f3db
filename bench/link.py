"""Benchmark of the link: the real service against a bare `websockets` echo server (the floor of
this stack), side by side in one run. Prints ONE JSON object.

    .venv/bin/python bench/link.py [--sockets 19000] [--rounds 15]

- rtt_us / echo_rtt_us: one small push and its reply against one frame echoed, p50/p99, in
  interleaved rounds, measured with the same minimal client (so the ratio is the service's);
  client_rtt_us: the same push through client.net's Socket (what the app sees).
- pushes_per_s: pipelined pushes with replies over 1 and 100 sockets (echo_msgs_per_s: the same
  load on the echo server), interleaved rounds, medians.
- broadcast_ms: one `shout` on `lobby` reaching every joined socket (p50/p99 of the delivery
  delays, max = the last socket; service_fanout_ms = the service's own time for the round of
  writes, its /metrics `veraltheim_last_flush_seconds`), the receiving sockets held by another
  process.
- idle_socket_kib_N: the service's RSS growth per idle joined socket with N of them joined.
- loaded_rtt_us: the round trip again (against the echo, interleaved) while the N sockets are
  connected.
- load_generator: the CPU seconds the bulk client processes and the service spent during the
  broadcasts, and the descriptor limits (RLIMIT_NOFILE) both ran under.
- setup.cpus_servers_clients: the service and the echo run on one core, every client process on
  the others (a side-by-side ratio must not hang on which core each server landed on).

The service runs with --no-auth and raised rate limits (the default 100 messages/s per socket
would cap the throughput figures); the bulk sockets join `lobby` with {"presence": false}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import os
import signal
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

from veraltheim.protocol import SOCKET_PATH, VSN  # noqa: E402
from veraltheim.protocol.constants import LOBBY_TOPIC, READY_LINE_PREFIX  # noqa: E402
from veraltheim.service.runner import (  # noqa: E402
    GC_THRESHOLDS,
    new_event_loop,
    raise_fd_limit,
)

from bench._cpus import pin, split_cpus  # noqa: E402
from bench._metrics import scrape  # noqa: E402
from bench._raw import (  # noqa: E402
    OPCODE_BINARY,
    OPCODE_TEXT,
    RawWs,
    cpu_seconds,
    open_raw,
    process_stats,
    text_frame,
)

SMALL = {"n": 1, "text": "hello"}
BULK_PER_PROCESS_BATCH = 200  # concurrent handshakes per client process


class Replies:
    """Collects frames of one raw socket; `wait(n)` until n frames arrived in total."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.event = asyncio.Event()
        self.last: bytes = b""

    def __call__(self, opcode: int, payload: bytes, arrived_ns: int) -> None:
        if opcode in (OPCODE_TEXT, OPCODE_BINARY):
            self.count += 1
            self.last = payload
            if self.count >= self.target:
                self.event.set()

    async def wait(self, total: int, timeout: float = 60.0) -> None:
        self.target = total
        while self.count < total:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), timeout)


async def joined_raw(port: int, user: str) -> tuple[RawWs, Replies]:
    replies = Replies()
    ws = await open_raw(port, replies, f"{SOCKET_PATH}?vsn={VSN}&user={user}")
    ws.send(text_frame("1", "1", LOBBY_TOPIC, "phx_join", {"presence": False}))
    await replies.wait(1)
    if b'"ok"' not in replies.last:
        raise RuntimeError(f"join refused: {replies.last[:200]!r}")
    return ws, replies


# -- the measurements ----------------------------------------------------------------------------


def percentiles(values: list[float], digits: int = 1) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)

    return {"p50": at(0.50), "p99": at(0.99), "n": len(ordered)}


async def round_trips(ws: RawWs, replies: Replies, frame: bytes, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        before = time.perf_counter_ns()
        ws.send(frame)
        await replies.wait(replies.count + 1)
        samples.append((time.perf_counter_ns() - before) / 1000)
    return samples


async def measure_rtt(svc_port: int, echo_port: int, rounds: int, per_round: int) -> dict:
    svc, svc_replies = await joined_raw(svc_port, "rtt")
    echo_replies = Replies()
    echo = await open_raw(echo_port, echo_replies)
    push = text_frame("1", "2", LOBBY_TOPIC, "ping", SMALL)  # the same bytes go to the echo server
    await round_trips(svc, svc_replies, push, 200)  # warm up
    await round_trips(echo, echo_replies, push, 200)
    service_us: list[float] = []
    echo_us: list[float] = []
    for i in range(rounds):  # interleaved, alternating which goes first
        pair = [(svc, svc_replies, service_us), (echo, echo_replies, echo_us)]
        for ws, replies, out in pair if i % 2 == 0 else pair[::-1]:
            out += await round_trips(ws, replies, push, per_round)
    svc.transport.close()
    echo.transport.close()
    rtt, echo_rtt = percentiles(service_us), percentiles(echo_us)
    return {
        "rtt_us": rtt,
        "echo_rtt_us": echo_rtt,
        "rtt_vs_echo": round(statistics.median(service_us) / statistics.median(echo_us), 2),
        "rtt_vs_echo_p99": round(rtt["p99"] / echo_rtt["p99"], 2),
    }


async def measure_client_rtt(svc_port: int, n: int) -> dict:
    from veraltheim.client.net.socket import Socket

    sock = Socket(f"ws://127.0.0.1:{svc_port}/socket", params={"user": "client-rtt"})
    await sock.connect()
    lobby = sock.channel(LOBBY_TOPIC, {"presence": False})
    await lobby.join()
    for _ in range(100):
        await lobby.push("ping", SMALL)
    samples = []
    for _ in range(n):
        before = time.perf_counter_ns()
        await lobby.push("ping", SMALL)
        samples.append((time.perf_counter_ns() - before) / 1000)
    await sock.disconnect()
    return percentiles(samples)


async def throughput(port: int, n_sockets: int, per_socket: int, window: int, *, service: bool):
    """Pushes (or echoed frames) per second, each socket keeping `window` in flight."""
    conns = []
    for i in range(n_sockets):
        if service:
            conns.append(await joined_raw(port, f"tp{n_sockets}-{i}"))
        else:
            replies = Replies()
            conns.append((await open_raw(port, replies), replies))
    frame = text_frame("1", "2", LOBBY_TOPIC, "ping", SMALL)

    async def drive(ws: RawWs, replies: Replies) -> None:
        base = replies.count
        sent = 0
        while sent < per_socket:
            burst = min(window - (sent - (replies.count - base)), per_socket - sent)
            if burst > 0:
                ws.send(frame * burst)
                sent += burst
            await replies.wait(base + max(0, sent - window // 2))  # half the window is free
        await replies.wait(base + per_socket)

    started = time.perf_counter()
    await asyncio.gather(*(drive(ws, r) for ws, r in conns))
    elapsed = time.perf_counter() - started
    for ws, _ in conns:
        ws.transport.close()
    return round(n_sockets * per_socket / elapsed)


async def measure_throughput(svc_port: int, echo_port: int, rounds: int) -> dict:
    """Pushes/s over 1 socket (64 in flight) and 100 sockets (16 in flight each), service and
    echo interleaved round by round; medians."""
    loads = {"sockets_1": (1, 10000, 64), "sockets_100": (100, 100, 16)}
    runs: dict[tuple[str, bool], list[int]] = {}
    for i in range(rounds):
        for name, (n, per_socket, window) in loads.items():
            for service in (True, False) if i % 2 == 0 else (False, True):
                port = svc_port if service else echo_port
                rate = await throughput(port, n, per_socket, window, service=service)
                runs.setdefault((name, service), []).append(rate)
    median = {key: round(statistics.median(values)) for key, values in runs.items()}
    return {
        "pushes_per_s": {name: median[(name, True)] for name in loads},
        "echo_msgs_per_s": {name: median[(name, False)] for name in loads},
        "pushes_vs_echo": {
            name: round(median[(name, True)] / median[(name, False)], 2) for name in loads
        },
    }


class BulkClients:
    """A client process holding many joined sockets; talks over its stdin/stdout lines."""

    def __init__(self, port: int, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--bulk-client", str(port), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bulk client exited ({self.proc.poll()})")
        return line.strip()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(10)


async def bulk_open(clients: list[BulkClients], total: int) -> None:
    share = total // len(clients)
    for c in clients:
        c.command(f"open {share}")
    for c in clients:
        reply = await asyncio.to_thread(c.read)
        if not reply.startswith("opened"):
            raise RuntimeError(f"bulk client: {reply}")


async def broadcasts(clients: list[BulkClients], svc_port: int, svc_pid: int, count: int) -> dict:
    sender, sender_replies = await joined_raw(svc_port, "sender")
    for c in clients:
        c.command("reset")
    for c in clients:
        await asyncio.to_thread(c.read)
    clients_cpu, service_cpu = await clients_cpu_seconds(clients), cpu_seconds(svc_pid)
    last_ms, fanout_ms = [], []
    for seq in range(count):
        sent_ns = time.monotonic_ns()
        frames_before = sender_replies.count
        sender.send(
            text_frame("1", str(seq + 10), LOBBY_TOPIC, "shout", {"seq": seq, "t": sent_ns})
        )
        await sender_replies.wait(frames_before + 2)  # the sender is joined too: its copy, the ok
        for c in clients:
            c.command(f"wait {seq}")
        for c in clients:
            line = await asyncio.to_thread(c.read)
            last_ms.append(float(line.split()[1]))
        # the service's own time for the broadcast's round of writes, now that every socket has it
        metrics = await asyncio.to_thread(scrape, f"http://127.0.0.1:{svc_port}")
        fanout_ms.append(metrics["veraltheim_last_flush_seconds"] * 1000)
    delays: list[float] = []
    for c in clients:
        c.command("report")
    for c in clients:
        delays += json.loads(await asyncio.to_thread(c.read))
    sender.transport.close()
    clients_cpu = await clients_cpu_seconds(clients) - clients_cpu
    out = percentiles(delays, 2)
    out["max"] = round(max(last_ms), 2)
    out["service_fanout_ms"] = round(statistics.median(fanout_ms), 2)
    out["broadcasts"] = count
    # CPU ms per broadcast: the receiving side must stay well below the service
    out["service_cpu_ms"] = round((cpu_seconds(svc_pid) - service_cpu) * 1000 / count, 1)
    out["load_generator_cpu_ms"] = round(clients_cpu * 1000 / count, 1)
    return out


async def clients_stats(clients: list[BulkClients]) -> list[dict]:
    for c in clients:
        c.command("stats")
    return [json.loads(await asyncio.to_thread(c.read)) for c in clients]


async def clients_cpu_seconds(clients: list[BulkClients]) -> float:
    return sum(s["cpu_s"] for s in await clients_stats(clients))


def fd_limit(pid: int) -> list[int]:
    """[soft, hard] RLIMIT_NOFILE of a process, from /proc."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return [int(v) for v in line.split()[3:5]]
    raise RuntimeError("no 'Max open files' limit")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- processes -----------------------------------------------------------------------------------


def start_service(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ)
    env.update(
        VERALTHEIM_SOCKET_RATE="1000000",
        VERALTHEIM_SOCKET_BURST="1000000",
        VERALTHEIM_USER_RATE="1000000",
        VERALTHEIM_USER_BURST="1000000",
        VERALTHEIM_IDLE_TIMEOUT_S="3600",
        VERALTHEIM_MAX_SOCKETS_PER_IP="0",  # every bench socket comes from 127.0.0.1
        VERALTHEIM_LOG_LEVEL="WARNING",
        VERALTHEIM_COMPUTE_WORKERS="1",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "veraltheim.service", "run", "--host", "127.0.0.1", "--port", "0"]
    if os.environ.get("BENCH_PROFILE"):  # a cProfile of the service, for finding slow paths
        cmd[1:1] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]]
    cmd += ["--data-dir", str(data_dir), "--no-auth"]
    log = (data_dir / "service.log").open("w")  # read back only if it fails
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    return proc, read_port(proc)


def start_echo() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--echo-server"], stdout=subprocess.PIPE, text=True
    )
    return proc, read_port(proc)


def read_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(READY_LINE_PREFIX):
            # keep draining so a chatty child never blocks on a full pipe
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return int(line.split(":")[2].split("/")[0])
    raise RuntimeError(f"process {proc.args} did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def run(args: argparse.Namespace) -> dict:
    cpus = split_cpus()
    if cpus is not None:
        os.sched_setaffinity(0, cpus[1])  # the client processes started below inherit it
    with tempfile.TemporaryDirectory(prefix="bench-link-") as tmp:
        service, svc_port = start_service(Path(tmp))
        echo, echo_port = start_echo()
        clients: list[BulkClients] = []
        result: dict[str, Any] = {"bench": "link"}
        try:
            if cpus is not None:
                for server in (service, echo):
                    pin(server.pid, cpus[0])
            result.update(await measure_rtt(svc_port, echo_port, args.rounds, 100))
            result["client_rtt_us"] = await measure_client_rtt(svc_port, 1000)
            result.update(await measure_throughput(svc_port, echo_port, args.rounds_throughput))
            clients = [BulkClients(svc_port, f"c{i}") for i in range(args.client_processes)]
            base_rss = rss_kib(service.pid)
            result["broadcast_ms"] = {}
            opened = 0
            for size in sorted({min(1000, args.sockets), args.sockets}):
                await bulk_open(clients, size - opened)
                opened = size
                if size == args.sockets:
                    grown = rss_kib(service.pid) - base_rss
                    result[f"idle_socket_kib_{size}"] = round(grown / size, 1)
                    result["service_rss_mib"] = round(rss_kib(service.pid) / 1024, 1)
                    loaded = await measure_rtt(svc_port, echo_port, args.rounds_loaded, 100)
                    result["loaded_rtt_us"] = {"sockets": size, **loaded}
                result["broadcast_ms"][f"sockets_{size}"] = await broadcasts(
                    clients, svc_port, service.pid, args.broadcasts
                )
            top = result["broadcast_ms"][f"sockets_{args.sockets}"]
            result["load_generator"] = {
                "processes": len(clients),
                "cpu_ms_per_broadcast": top["load_generator_cpu_ms"],
                "service_cpu_ms_per_broadcast": top["service_cpu_ms"],
                "fd_limit": (await clients_stats(clients))[0]["fd_limit"],
                "service_fd_limit": fd_limit(service.pid),
            }
            n = args.sockets
            result["goals"] = {
                "rtt_within_1_5x_echo": result["rtt_vs_echo"] <= 1.5,
                f"rtt_with_{n}_sockets_within_1_5x_echo": loaded["rtt_vs_echo"] <= 1.5,
                f"broadcast_{n}_p99_under_400ms": top["p99"] < 400,
                f"idle_socket_{n}_under_20_kib": result[f"idle_socket_kib_{n}"] < 20,
            }
            result["setup"] = {
                "cpus": os.cpu_count(),
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "service": "--no-auth, rate limits raised, 1 compute worker",
                "event_loop": type(asyncio.get_running_loop()).__module__,
                "cpus_servers_clients": None if cpus is None else [sorted(c) for c in cpus],
            }
        except BaseException:
            sys.stderr.write((Path(tmp) / "service.log").read_text()[-4000:])
            raise
        finally:
            for c in clients:
                c.stop()
            stop(echo)
            stop(service)
        return result


# -- the helper processes --------------------------------------------------------------------------


async def echo_server() -> None:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                await ws.send(message)

    async with serve(echo, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"{READY_LINE_PREFIX}ws://127.0.0.1:{port}/", flush=True)
        await asyncio.Future()


async def bulk_client(port: int, name: str) -> None:
    """stdin commands: `open N` (N more joined sockets), `reset`, `wait SEQ` (until every socket
    got broadcast SEQ; prints the last delay), `report` (all delays, ms, as JSON), `stats`
    (this process's CPU seconds and descriptor limit, as JSON)."""
    loop = asyncio.get_running_loop()
    sockets: list[RawWs] = []
    delays: list[float] = []
    got: dict[int, int] = {}
    last: dict[int, float] = {}
    done: dict[int, asyncio.Event] = {}
    ids = itertools.count()

    parsed: dict[bytes, tuple[int, int]] = {}  # every socket gets the same bytes: parse once

    def on_frame(opcode: int, payload: bytes, arrived_ns: int) -> None:
        known = parsed.get(payload)
        if known is None:
            body = json.loads(payload)[4]
            known = parsed[payload] = (body["seq"], body["t"])
        seq, sent_ns = known
        ms = (arrived_ns - sent_ns) / 1e6
        delays.append(ms)
        got[seq] = got.get(seq, 0) + 1
        last[seq] = max(last.get(seq, 0.0), ms)
        if got[seq] == len(sockets):
            done.setdefault(seq, asyncio.Event()).set()

    async def open_one(limit: asyncio.Semaphore) -> None:
        async with limit:
            replies = Replies()

            def frames(opcode: int, payload: bytes, arrived_ns: int) -> None:
                if payload in parsed or b'"shout"' in payload:
                    on_frame(opcode, payload, arrived_ns)
                else:
                    replies(opcode, payload, arrived_ns)

            user = f"{name}-{next(ids)}"
            ws = await open_raw(port, frames, f"{SOCKET_PATH}?vsn={VSN}&user={user}")
            ws.send(text_frame("1", "1", LOBBY_TOPIC, "phx_join", {"presence": False}))
            await replies.wait(1)
            sockets.append(ws)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        command = line[0]
        if command == "open":
            limit = asyncio.Semaphore(BULK_PER_PROCESS_BATCH)
            await asyncio.gather(*(open_one(limit) for _ in range(int(line[1]))))
            print(f"opened {len(sockets)}", flush=True)
        elif command == "reset":
            parsed.clear()
            delays.clear()
            got.clear()
            last.clear()
            done.clear()
            print("ok", flush=True)
        elif command == "wait":
            seq = int(line[1])
            await asyncio.wait_for(done.setdefault(seq, asyncio.Event()).wait(), 120)
            print(f"done {last[seq]:.3f}", flush=True)
        elif command == "report":
            print(json.dumps(delays), flush=True)
        elif command == "stats":
            print(json.dumps(process_stats()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sockets", type=int, default=19000, help="joined sockets for the big broadcast"
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="interleaved rounds of 100 rtt samples"
    )
    # as many as unloaded: on 500 samples the echo's median alone moved 128-200 us between runs
    parser.add_argument(
        "--rounds-loaded", type=int, default=15, help="rtt rounds with the sockets connected"
    )
    parser.add_argument("--broadcasts", type=int, default=5, help="broadcasts per size")
    parser.add_argument(
        "--rounds-throughput", type=int, default=3, help="interleaved rounds of pushes/s"
    )
    parser.add_argument(
        "--client-processes", type=int, default=1, help="processes holding the joined sockets"
    )
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bulk-client", nargs=2, metavar=("PORT", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()
    # Every process here runs on the service's event loop (uvloop where installed), so the echo
    # floor and the load generator have the same C transports as the service.
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        if args.echo_server:
            runner.run(echo_server())
        elif args.bulk_client:
            gc.set_threshold(*GC_THRESHOLDS)  # as the service: one broadcast, 19,000 small objects
            runner.run(bulk_client(int(args.bulk_client[0]), args.bulk_client[1]))
        else:
            print(json.dumps(runner.run(run(args))))


if __name__ == "__main__":
    main()
