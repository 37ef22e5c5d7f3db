"""The .deb built from the bundle, installed with apt, then used from the installed files only:
the service serves a real client that runs a kernel remotely, the app opens a real window under
Xvfb, the units verify, lintian has no errors, and removal and purge leave nothing behind."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from tests.installers.conftest import apt

# The first test here also builds the bundle and the packages (minutes on a loaded machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
BIN = Path("/usr/bin")
PROGRAMS = ("veraltheim", "veraltheim-service", "veraltheim-kernel")
SYSTEM_UNIT = Path("/usr/lib/systemd/system/veraltheim-service.service")
USER_UNIT = Path("/usr/lib/systemd/user/veraltheim-service.service")
STATE = Path("/var/lib/private/veraltheim-service")
START_TIMEOUT_S = 60


def test_deb_is_named_with_the_version_and_depends_on_what_qt_loads(deb):
    assert deb.name == f"veraltheim_{VERSION}_amd64.deb"
    fields = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True).stdout
    depends = {
        d.strip() for line in fields.splitlines() if line.startswith("Depends:") for d in
        line.split(":", 1)[1].split(",")
    }  # fmt: skip
    qt_needs = {"libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0", "libxcb-cursor0",
                "libegl1", "libfontconfig1", "libdbus-1-3", "libwayland-client0"}  # fmt: skip
    assert qt_needs <= depends, qt_needs - depends
    assert f"Version: {VERSION}" in fields


def test_deb_layout(deb):
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True).stdout
    for path in (
        "./opt/veraltheim/veraltheim",
        "./opt/veraltheim/_internal/veraltheim/resources/qml/Main.qml",
        "./opt/veraltheim/_internal/veraltheim/wasm/modules/manifest.json",
        "./usr/bin/veraltheim-service -> /opt/veraltheim/veraltheim-service",
        "./usr/share/applications/veraltheim.desktop",
        "./usr/share/metainfo/org.veraltheim.Veraltheim.metainfo.xml",
        "./usr/share/icons/hicolor/scalable/apps/veraltheim.svg",
        "./usr/share/icons/hicolor/256x256/apps/veraltheim.png",
        "./usr/lib/systemd/system/veraltheim-service.service",
        "./usr/lib/systemd/user/veraltheim-service.service",
    ):
        assert path in listing, path
    assert "_libwasmtime.so" in listing  # loaded with ctypes: PyInstaller misses it by default


def start_service(data_dir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(BIN / "veraltheim-service"), "run", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while (line := lines.get(timeout=START_TIMEOUT_S)) is not None:
        seen.append(line)
        if line.startswith("listening "):
            return proc, line.split()[1]
    raise AssertionError("the installed service exited:\n" + "".join(seen))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_installed_service_runs_a_kernel_for_a_client_with_a_token(installed, tmp_path):
    data = tmp_path / "service"
    proc, url = start_service(data)
    try:
        token = subprocess.run(
            [BIN / "veraltheim-service", "token", "issue", "--user", "tester", "--data-dir", data],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
        out = tmp_path / "m.png"
        run = [BIN / "veraltheim-kernel", "run", "fractal.mandelbrot", "-p", "width=64",
               "-p", "height=48", "-o", out, "--where", "remote", "--service", url]  # fmt: skip
        denied = subprocess.run([*run, "--token", "forged"], capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert denied.returncode != 0 and not out.exists()
        # The pool spawns its workers at the first join; a first job that waits for them can
        # outlast the client's minimum reply timeout (5 s) on a loaded machine: warm up once.
        subprocess.run([*run, "--token", token], capture_output=True, timeout=120)
        out.unlink(missing_ok=True)
        done = subprocess.run([*run, "--token", token], capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "ran remote" in done.stderr  # in a compute worker the frozen service spawned
        assert Image.open(out).size == (64, 48)
    finally:
        stop(proc)


def test_installed_service_start_status_stop(installed, tmp_path):
    cmd = [str(BIN / "veraltheim-service")]
    files = ["--data-dir", str(tmp_path / "d"), "--pidfile", str(tmp_path / "s.pid")]
    started = subprocess.run([*cmd, "start", "--host", "127.0.0.1", "--port", "0", *files],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        status = subprocess.run([*cmd, "status", *files], capture_output=True, text=True)
        assert status.returncode == 0 and status.stdout.startswith("running"), status.stdout
        assert "healthz:" in status.stdout
    finally:
        stopped = subprocess.run([*cmd, "stop", *files], capture_output=True, text=True,
                                 timeout=120)  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr
    assert subprocess.run([*cmd, "status", *files], capture_output=True).returncode == 3


def test_installed_app_opens_a_real_window_and_writes_a_screenshot(installed, tmp_path):
    shot = tmp_path / "window.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_")}
    env.update(
        QT_QPA_PLATFORM="xcb",  # a real X window: fail rather than fall back to offscreen
        VERALTHEIM_APP_CONFIG_DIR=str(tmp_path / "config"),
        VERALTHEIM_APP_DATA_DIR=str(tmp_path / "data"),
    )
    out = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24",
         str(BIN / "veraltheim"), "--local-only", "--screenshot", str(shot)],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    image = Image.open(shot).convert("RGB")
    assert image.width > 400 and image.height > 300
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is None or len(colors) > 20  # a drawn window, not one flat colour


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_installed_units_verify(installed, tmp_path):
    system = subprocess.run(["systemd-analyze", "verify", str(SYSTEM_UNIT)],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert system.returncode == 0 and system.stderr == "", system.stderr
    runtime = tmp_path / "xdg"  # a user manager's runtime folder, which this session lacks
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    user = subprocess.run(["systemd-analyze", "--user", "verify", str(USER_UNIT)],
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert user.returncode == 0 and user.stderr == "", user.stderr


def test_lintian_reports_no_errors(lintian):
    report, _ = lintian.communicate(timeout=900)
    errors = [line for line in report.splitlines() if line.startswith("E:")]
    assert errors == [], report


def test_remove_leaves_nothing_and_purge_removes_the_state(installed):
    # The state a running unit keeps (DynamicUser: /var/lib/private, reached by a symlink).
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "secret_key").write_text("x")
    link = Path("/var/lib/veraltheim-service")
    if not link.is_symlink():
        link.symlink_to("private/veraltheim-service")
    removed = apt("remove", "veraltheim")
    assert removed.returncode == 0, removed.stderr
    assert not Path("/opt/veraltheim").exists()
    assert not [p for p in BIN.iterdir() if p.name in PROGRAMS]
    assert (STATE / "secret_key").exists()  # remove keeps the data, purge does not
    purged = apt("purge", "veraltheim")
    assert purged.returncode == 0, purged.stderr
    assert not STATE.exists() and not link.is_symlink()
