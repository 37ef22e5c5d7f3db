"""The installers, built once per test session with packaging/build.py: the PyInstaller bundle
(the slow part, a minute or more), then the packages made from it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_PY = ROOT / "packaging" / "build.py"
BUILD_TIMEOUT_S = 900
# Every worktree's suite installs the same package on this machine: one at a time.
MACHINE_LOCK = Path("/tmp/veraltheim-installer-tests.lock")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux recipes")


def build(dirs: dict[str, Path], *args: str) -> None:
    cmd = [sys.executable, str(BUILD_PY), *args, "--build", str(dirs["build"])]
    cmd += ["--out", str(dirs["out"]), "--quick"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"


@pytest.fixture(scope="session")
def dist_dirs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dist")
    return {"build": base / "build", "out": base / "out"}


@pytest.fixture(scope="session")
def bundle(dist_dirs) -> Path:
    build(dist_dirs, "bundle")
    return dist_dirs["build"] / "bundle" / "veraltheim"


def built(dist_dirs, bundle: Path, target: str, pattern: str) -> Path:
    build(dist_dirs, target, "--bundle", str(bundle))
    (made,) = dist_dirs["out"].glob(pattern)
    return made


@pytest.fixture(scope="session")
def deb(dist_dirs, bundle) -> Path:
    return built(dist_dirs, bundle, "deb", "*.deb")


@pytest.fixture(scope="session")
def rpm(dist_dirs, bundle) -> Path:
    return built(dist_dirs, bundle, "rpm", "*.rpm")


@pytest.fixture(scope="session")
def lintian(deb):
    """lintian over the .deb, started at once (it takes minutes) while other tests run."""
    proc = subprocess.Popen(
        ["lintian", "--tag-display-limit", "0", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def apt(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def installed(deb, lintian):
    """The .deb installed with apt (which resolves its Depends), purged at the end."""
    if os.geteuid() != 0:
        pytest.skip("installing a .deb needs root (CI runs the suite as root)")
    MACHINE_LOCK.touch(exist_ok=True)
    with MACHINE_LOCK.open() as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            out = apt("install", "--reinstall", str(deb))
            assert out.returncode == 0, out.stdout + out.stderr
            yield deb
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                apt("purge", "veraltheim")
