"""`veraltheim-service start/status/stop`: a real daemon, and no process left behind."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from veraltheim.service.daemon import process_alive, read_pid

from tests.support.phx_frames import join, open_socket
from tests.support.service import service_cli

cli = service_cli


@pytest.fixture
def data_dir(tmp_path):
    """A data dir whose daemon, if any is left, is killed at the end of the test."""
    yield tmp_path
    pid = read_pid(tmp_path / "service.pid")
    if pid is not None and process_alive(pid):
        for victim in [pid, *children(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """Live processes whose parent is pid (the daemon's compute workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def token(data_dir: Path, user: str) -> str:
    out = cli("token", "issue", "--user", user, "--ttl", "600", "--data-dir", str(data_dir))
    return out.stdout.strip()


@pytest.mark.slow
async def test_start_status_stop_leaves_nothing_behind(data_dir):
    started = cli("start", "--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir))
    assert started.returncode == 0, started.stderr
    url = re.search(r"^listening (ws://127\.0\.0\.1:\d+/socket/websocket)$", started.stdout, re.M)
    assert url, started.stdout
    pid = int(re.search(r"started \(pid (\d+)", started.stdout).group(1))
    assert read_pid(data_dir / "service.pid") == pid
    assert process_alive(pid)
    assert os.getsid(pid) != os.getsid(0), "the daemon did not detach from our session"

    ws = await open_socket(url.group(1), token=token(data_dir, "dora"))
    try:
        assert (await join(ws))["status"] == "ok"
        # The compute pool spawns its workers on the first compute join.
        assert (await join(ws, "compute:default", "2"))["status"] == "ok"
        status = cli("status", "--data-dir", str(data_dir))
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"running (pid {pid}) {url.group(1)}" in status.stdout
        assert "healthz: status=ok" in status.stdout
        assert re.search(r"\bsockets=1\b", status.stdout), status.stdout
    finally:
        await ws.close()
    workers = children(pid)
    assert len(workers) >= 1, "expected the compute pool's worker processes under the daemon"

    again = cli("start", "--port", "0", "--data-dir", str(data_dir))
    assert again.returncode == 1
    assert f"already running (pid {pid}" in again.stderr

    stopped = cli("stop", "--data-dir", str(data_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"stopped (pid {pid})"
    assert not process_alive(pid)
    assert not [w for w in workers if process_alive(w)], "a child of the daemon outlived it"
    assert not (data_dir / "service.pid").exists()
    assert not (data_dir / "service.pid.url").exists()
    log = (data_dir / "service.log").read_text()
    assert "listening on" in log and "stopped" in log

    status = cli("status", "--data-dir", str(data_dir))
    assert status.returncode == 3 and status.stdout.strip() == "stopped"
    again = cli("stop", "--data-dir", str(data_dir))
    assert again.returncode == 1 and "not running" in again.stderr


def test_stale_pidfile_is_reported_and_replaced(data_dir):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    (data_dir / "service.pid").write_text(gone.stdout)
    status = cli("status", "--data-dir", str(data_dir))
    assert status.returncode == 1
    assert "stale pidfile" in status.stdout
    assert not (data_dir / "service.pid").exists()


@pytest.mark.parametrize(
    "words", [[], ["my-service"], ["-m", "service"], ["veraltheim.service"]], ids=repr
)
def test_stop_never_signals_an_unrelated_process_named_by_a_stale_pidfile(data_dir, words):
    """A daemon killed with SIGKILL leaves its pidfile; the pid may be reused by then, also by
    a process whose command line merely contains "service" (issue 10, defect 11)."""
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", *words],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        (data_dir / "service.pid").write_text(f"{other.pid}\n")
        stopped = cli("stop", "--data-dir", str(data_dir))
        assert stopped.returncode == 1 and "not running (no service process" in stopped.stderr
        assert other.poll() is None, "stop signalled a process that is not the service"
        assert not (data_dir / "service.pid").exists()
    finally:
        other.kill()
        other.wait(10)


def test_start_failure_is_reported_by_the_start_command(data_dir):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = cli("start", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"veraltheim-service: error: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert not (data_dir / "service.pid").exists()


def test_start_with_custom_pidfile_log_and_tls(tmp_path):
    """--pidfile and --log-file are used; status takes no --certfile, yet it reads /healthz of
    a TLS daemon from the URL the daemon recorded."""
    certs = tmp_path / "certs"
    assert cli("cert", "--out", str(certs)).returncode == 0
    tls = ["--certfile", str(certs / "cert.pem"), "--keyfile", str(certs / "key.pem")]
    pidfile, log = tmp_path / "run" / "v.pid", tmp_path / "logs" / "v.log"
    common = ["--data-dir", str(tmp_path / "d"), "--pidfile", str(pidfile)]
    out = cli("start", "--host", "127.0.0.1", "--port", "0", "--log-file", str(log), *tls, *common)
    pid = read_pid(pidfile)
    try:
        assert out.returncode == 0, out.stderr
        assert "listening wss://127.0.0.1:" in out.stdout
        assert pid is not None and process_alive(pid)
        assert "listening on wss://" in log.read_text()
        status = cli("status", *common)
        assert status.returncode == 0 and "healthz: status=ok" in status.stdout, status.stdout
        assert cli("stop", *common).returncode == 0
        assert not process_alive(pid) and not pidfile.exists()
    finally:
        if pid is not None and process_alive(pid):
            os.kill(pid, signal.SIGKILL)


UNIT = Path(__file__).resolve().parents[2] / "resources/systemd/veraltheim-service.service"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    text = UNIT.read_text()
    exec_start = re.search(r"^ExecStart=(\S+) run\b", text, re.M)
    assert exec_start, "the unit must run `veraltheim-service run` in the foreground"
    # verify checks that the program exists: point it at this checkout's installed command.
    here = shutil.which("veraltheim-service", path=str(Path(sys.executable).parent))
    assert here, "veraltheim-service is not installed in this venv"
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(exec_start.group(1), here))
    out = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_launchd_plist_runs_in_the_foreground_with_known_settings():
    import plistlib

    from veraltheim.service.config import settings

    path = UNIT.parents[1] / "launchd" / "org.veraltheim.service.plist"
    with path.open("rb") as fh:
        plist = plistlib.load(fh)
    assert plist["Label"] == "org.veraltheim.service"
    assert Path(plist["ProgramArguments"][0]).name == "veraltheim-service"
    assert plist["ProgramArguments"][1:] == ["run"]
    known = {s.env for s in settings()} | {"VERALTHEIM_CONFIG"}
    assert set(plist["EnvironmentVariables"]) <= known
    assert plist["ExitTimeOut"] > 10  # more than the default shutdown_grace_s
