"""Real cluster parts as subprocesses for tests and bench/cluster.py: redis-server (Debian),
haproxy (Debian, with resources/haproxy/veraltheim.cfg), a Dask scheduler and workers.

Each picks a free port by binding port 0 (redis-server and haproxy cannot report a port they
chose), waits until it answers, and is killed with its process group at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "resources" / "haproxy" / "veraltheim.cfg"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = START_TIMEOUT_S, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)  # polling a port that is not open yet: nothing to wait on instead
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class Process:
    """A subprocess in its own process group, its output kept for failure messages."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lines:
                self.output.append(line)
                self.lines.notify_all()
        with self.lines:
            self.lines.notify_all()

    def wait_for_line(self, pattern: str, timeout: float = START_TIMEOUT_S) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next(filter(None, map(regex.search, self.output)), None)

        with self.lines:
            self.lines.wait_for(lambda: found() or self.proc.poll() is not None, timeout)
            match = found()
        if match is None:
            raise RuntimeError(f"no line matching {pattern!r}:\n" + "".join(self.output[-40:]))
        return match

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class RedisServer:
    """redis-server on a free port; `restart()` keeps the port and the data (AOF; fsync always by
    default: every write Redis acknowledged survives even an OS crash)."""

    def __init__(self, data_dir: Path, appendfsync: str = "always") -> None:
        self.data_dir = data_dir
        self.appendfsync = appendfsync
        self.port = free_port()
        self.proc: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: scripts/bootstrap.sh --dev")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = Process(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--daemonize",
                "no",
            ]
        )
        self.proc.wait_for_line(r"Ready to accept connections")
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()


def haproxy_config(port: int, backends: list[int], template: Path = HAPROXY_CFG) -> str:
    """The recipe with its bind line on `port` and one server line per backend port."""
    text = template.read_text()
    text = re.sub(r"(?m)^(\s*)bind .*$", rf"\g<1>bind 127.0.0.1:{port}", text, count=1)
    lines = text.splitlines()
    servers = [i for i, line in enumerate(lines) if line.strip().startswith("server ")]
    indent = lines[servers[0]][: len(lines[servers[0]]) - len(lines[servers[0]].lstrip())]
    new = [f"{indent}server node{i + 1} 127.0.0.1:{p} check" for i, p in enumerate(backends)]
    lines[servers[0] : servers[-1] + 1] = new
    return "\n".join(lines) + "\n"


class Haproxy:
    def __init__(self, work_dir: Path, backends: list[int]) -> None:
        self.port = free_port()
        work_dir.mkdir(parents=True, exist_ok=True)
        self.config = work_dir / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.port, backends))
        self.proc: Process | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket/websocket"

    def start(self) -> Haproxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        self.proc = Process([binary, "-db", "-f", str(self.config)])
        wait_port(self.port, proc=self.proc.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()


class DaskCluster:
    """`dask scheduler` and `dask worker` processes (one thread each, no nanny)."""

    def __init__(self, work_dir: Path, workers: int, env: dict[str, str] | None = None) -> None:
        self.work_dir = work_dir
        self.workers = workers
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.port = free_port()
        self.procs: list[Process] = []

    @property
    def url(self) -> str:
        return f"dask://127.0.0.1:{self.port}"

    def start(self) -> DaskCluster:
        bin_dir = Path(sys.executable).parent
        scheduler = Process(
            [
                str(bin_dir / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
                "--no-show",
            ],
            self.env,
        )
        self.procs.append(scheduler)
        scheduler.wait_for_line(r"Scheduler at:")
        for i in range(self.workers):
            worker = Process(
                [
                    str(bin_dir / "dask"),
                    "worker",
                    f"tcp://127.0.0.1:{self.port}",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                    "--host",
                    "127.0.0.1",
                    "--local-directory",
                    str(self.work_dir),
                ],
                self.env,
            )
            self.procs.append(worker)
        for worker in self.procs[1:]:
            worker.wait_for_line(r"Registered to:")
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()


@contextlib.contextmanager
def started(part) -> Iterator:
    """`with started(RedisServer(dir)) as redis:` -- started, and always stopped."""
    try:
        yield part.start()
    finally:
        part.stop() if not hasattr(part, "kill") else part.kill()
