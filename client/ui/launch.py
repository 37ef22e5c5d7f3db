"""`make run`: start a local service and the app against it.

With a screen, the app opens its window; with none (no DISPLAY / WAYLAND_DISPLAY) it runs offscreen
through a short demo and writes a screenshot of each view into ./screenshots/. Either way the
service is stopped at the end. The service and the app use temporary data and settings folders,
so a demo never touches the user's own.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from veraltheim.client.ui.app import has_screen
from veraltheim.client.ui.settings import CONFIG_DIR_ENV, DATA_DIR_ENV
from veraltheim.protocol.constants import (
    READY_LINE_PREFIX,  # `listening ws://HOST:PORT/socket/websocket`
)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
SCREENSHOTS = Path("screenshots")


@contextlib.contextmanager
def local_service(data_dir: Path) -> Iterator[str]:
    """A `python -m veraltheim.service run --port 0 --no-auth` subprocess; yields its address."""
    cmd = [sys.executable, "-m", "veraltheim.service", "run", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--no-auth", "--data-dir", str(data_dir)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = ""
        while not url:
            line = lines.get(timeout=START_TIMEOUT_S)
            if line is None:
                raise RuntimeError("the service exited:\n" + "".join(log[-20:]))
            if line.startswith(READY_LINE_PREFIX):
                url = line[len(READY_LINE_PREFIX) :].strip()
        yield url
    except queue.Empty:
        raise RuntimeError(f"the service did not start in {START_TIMEOUT_S:g} s") from None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="veraltheim-run-") as tmp:
        tmp_path = Path(tmp)
        env = dict(os.environ)
        if not has_screen():
            # the demo's settings and document cache stay out of the user's own folders
            env[CONFIG_DIR_ENV] = str(tmp_path / "config")
            env[DATA_DIR_ENV] = str(tmp_path / "app-data")
        try:
            with local_service(tmp_path / "service") as url:
                print(f"make run: service at {url}", flush=True)
                if has_screen():
                    app = [sys.executable, "-m", "veraltheim.client.ui.app", "--service", url]
                else:
                    print("make run: no screen, running the offscreen demo", flush=True)
                    app = [sys.executable, "-m", "veraltheim.client.ui.demo", "--service", url]
                    app += ["--out", str(SCREENSHOTS)]
                rc = subprocess.call(app, env=env)
        except (RuntimeError, OSError) as exc:
            print(f"make run: {exc}", file=sys.stderr)
            return 1
        print("make run: service stopped", flush=True)
        return rc


if __name__ == "__main__":
    raise SystemExit(main())
