"""Start the real service in a subprocess on a free port, and clean it up.

The service prints one line `listening ws://HOST:PORT/socket/websocket` on stdout once it accepts
connections; `--port 0` lets the OS pick the port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from veraltheim.protocol.constants import READY_LINE_PREFIX

START_TIMEOUT_S = 30.0
TEST_SECRET = "test-secret-key-do-not-use-in-production"


class ServiceProcess:
    """One `veraltheim-service run` process; `stop()` is graceful, `kill()` is SIGKILL."""

    def __init__(self, data_dir: Path, args: list[str], env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.ws_url = ""
        self.port = 0
        self.output: list[str] = []

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
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
        cmd += ["--data-dir", str(self.data_dir), *self.args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                if not found.is_set() and line.startswith(READY_LINE_PREFIX):
                    self.ws_url = line[len(READY_LINE_PREFIX) :].strip()
                    self.port = int(self.ws_url.split(":")[2].split("/")[0])
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(START_TIMEOUT_S) or not self.ws_url:
            self.kill()
            raise RuntimeError("service did not start:\n" + "".join(self.output))
        return self

    def restart(self) -> ServiceProcess:
        """Start again on the same data dir (a new port unless `--port` is in args)."""
        return self.start()

    def token(self, user: str = "alice", ttl: int = 3600, *extra: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "veraltheim.service",
                "token",
                "issue",
                "--user",
                user,
                "--ttl",
                str(ttl),
            ]
            + ["--data-dir", str(self.data_dir), *extra],
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
            timeout=30,
        )
        return out.stdout.strip()

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def service_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["VERALTHEIM_SECRET_KEY"] = TEST_SECRET
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def service_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `veraltheim-service ARGS` to completion (the test secret unless env says otherwise)."""
    return subprocess.run(
        [sys.executable, "-m", "veraltheim.service", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or service_env(),
    )


@contextlib.contextmanager
def running_service(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(data_dir, list(args), service_env(env))
    try:
        yield svc.start()
    finally:
        try:
            svc.stop()
        finally:
            svc.kill()
