"""The .rpm from the same bundle (checked with rpm -qpl / -qpR), the AppDir, and the Windows
installers (NSIS and MSI) built here from a stand-in folder."""

from __future__ import annotations

import os
import struct
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.installers.conftest import build

# The first test here also builds the bundle and the packages (minutes on a loaded machine).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def rpm_query(rpm: Path, flag: str) -> list[str]:
    out = subprocess.run(["rpm", "-qp", flag, str(rpm)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def test_rpm_has_the_deb_layout_and_requires_system_libraries_only(rpm):
    assert rpm.name == f"veraltheim-{VERSION}-1.x86_64.rpm"
    files = set(rpm_query(rpm, "-l"))
    for path in (
        "/opt/veraltheim/veraltheim",
        "/opt/veraltheim/veraltheim-service",
        "/usr/bin/veraltheim-kernel",
        "/usr/lib/systemd/system/veraltheim-service.service",
        "/usr/lib/systemd/user/veraltheim-service.service",
        "/usr/share/applications/veraltheim.desktop",
    ):
        assert path in files, path
    requires = rpm_query(rpm, "-R")
    assert "libxcb-icccm.so.4()(64bit)" in requires
    assert "libxcb-keysyms.so.1()(64bit)" in requires
    assert not [r for r in requires if r.startswith(("libQt6", "libpython", "libshiboken"))]
    scripts = "\n".join(rpm_query(rpm, "--scripts"))
    assert "[ -d /run/systemd/system ]" in scripts and "enable --now" in scripts


def test_appdir_runs_the_app_from_apprun(dist_dirs, bundle):
    build(dist_dirs, "appdir", "--bundle", str(bundle))
    (appdir,) = dist_dirs["out"].glob("*.AppDir")
    assert os.access(appdir / "AppRun", os.X_OK)
    assert (appdir / "veraltheim.desktop").is_file() and (appdir / ".DirIcon").exists()
    assert (appdir / "usr/share/metainfo/org.veraltheim.Veraltheim.metainfo.xml").is_file()
    out = subprocess.run([str(appdir / "AppRun"), "kernel", "list", "--json"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "fractal.mandelbrot" in out.stdout, out.stderr


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    """A folder shaped like the Windows bundle (the real one is built on a Windows runner)."""
    folder = tmp_path_factory.mktemp("windows-bundle")
    for exe in ("veraltheim", "veraltheim-service", "veraltheim-service-bg", "veraltheim-kernel"):
        (folder / f"{exe}.exe").write_bytes(b"MZ stand-in " + exe.encode())
    (folder / "_internal").mkdir()
    (folder / "_internal" / "python311.dll").write_bytes(os.urandom(4096))
    return folder


def test_nsis_installer_is_a_windows_executable(dist_dirs, stand_in):
    build(dist_dirs, "nsis", "--from", str(stand_in))
    (exe,) = dist_dirs["out"].glob("*-setup.exe")
    assert exe.name == f"veraltheim-{VERSION}-setup.exe"
    data = exe.read_bytes()
    assert data[:2] == b"MZ"
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    assert data[pe_offset : pe_offset + 4] == b"PE\0\0"
    assert b"Nullsoft" in data  # the NSIS stub, with our files compressed after it


def test_msi_has_the_files_the_shortcut_and_the_logon_service(dist_dirs, stand_in):
    build(dist_dirs, "msi", "--from", str(stand_in))
    (msi,) = dist_dirs["out"].glob("*.msi")
    assert msi.name == f"veraltheim-{VERSION}-x64.msi"
    assert msi.read_bytes()[:8] == bytes.fromhex("d0cf11e0a1b11ae1")  # an OLE compound file

    def table(name: str) -> str:
        return subprocess.run(["msiinfo", "export", str(msi), name], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip

    assert "veraltheim-service-bg.exe" in table("File")
    assert "python311.dll" in table("File")
    assert "Veraltheim" in table("Shortcut")
    registry = table("Registry")
    assert "CurrentVersion\\Run" in registry and "veraltheim-service-bg.exe" in registry
