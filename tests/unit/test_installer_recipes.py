"""The installer recipes that need no build: the CI workflow, the desktop entry and AppStream
metainfo, the macOS plists, what bootstrap installs with and without a display, the pruning rules.
(tests/installers/ builds the bundle and the packages.)"""

import importlib
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
WORKFLOW = ROOT / ".github" / "workflows" / "installers.yml"


@pytest.fixture(scope="module")
def recipes():
    """packaging/'s modules (a script folder, not a package of ours)."""
    before = set(sys.modules)
    sys.path.insert(0, str(PACKAGING))
    try:
        yield {m: importlib.import_module(m) for m in ("common", "build", "prune", "macos")}
    finally:
        sys.path.remove(str(PACKAGING))
        for name in set(sys.modules) - before:  # generic names (build, common): not left behind
            if getattr(sys.modules[name], "__file__", "").startswith(str(PACKAGING)):
                del sys.modules[name]


def test_ci_workflow_builds_on_every_os_with_known_targets(recipes):
    import yaml

    flow = yaml.safe_load(WORKFLOW.read_text())
    jobs = flow["jobs"]
    runners = " ".join(str(job["runs-on"]) for job in jobs.values())
    for os_name in ("ubuntu", "windows", "macos"):
        assert os_name in runners
    known = set(recipes["build"].targets())
    for name, job in jobs.items():
        assert job["steps"], name
        for step in job["steps"]:
            assert ("run" in step) != ("uses" in step), f"{name}: {step}"
            for call in re.findall(r"packaging/build\.py([^\n]*)", step.get("run", "")):
                args = recipes["build"].parser().parse_args(shlex.split(call))
                assert args.targets and set(args.targets) <= known, f"{name}: {call!r}"
    needs = {job.get("needs") for job in jobs.values()} - {None}
    assert needs <= set(jobs)
    assert "make test" in str(jobs["linux"]["steps"])  # CI runs the slow installer tests


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="no desktop-file-utils")
def test_desktop_entry_validates():
    out = subprocess.run(
        ["desktop-file-validate", str(ROOT / "resources" / "veraltheim.desktop")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "error" not in out.stdout, out.stdout


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="no appstream")
def test_metainfo_validates_and_names_the_desktop_entry(recipes):
    path = ROOT / "resources" / f"{recipes['common'].APP_ID}.metainfo.xml"
    out = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert '<launchable type="desktop-id">veraltheim.desktop</launchable>' in path.read_text()


def test_macos_info_plist_and_launch_agent(recipes):
    info = plistlib.loads((PACKAGING / "macos" / "Info.plist").read_bytes())
    assert info["CFBundleIdentifier"] == recipes["common"].APP_ID
    assert info["CFBundleIconFile"].endswith(".icns")
    spec = (PACKAGING / "veraltheim.spec").read_text()
    assert 'version=os.environ.get("VERALTHEIM_VERSION")' in spec  # pyproject's version
    agent = plistlib.loads(recipes["macos"].launch_agent("/Applications/Veraltheim.app"))
    assert agent["ProgramArguments"] == [
        "/Applications/Veraltheim.app/Contents/MacOS/veraltheim-service",
        "run",
    ]
    assert agent["Label"] == "org.veraltheim.service"


def test_project_metadata_comes_from_pyproject(recipes):
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    p = recipes["common"].project()
    assert p.version == meta["version"]
    assert set(p.programs) == set(meta["scripts"]) and p.programs[0] == meta["name"]


def test_pruning_keeps_what_the_app_loads_and_drops_the_rest(recipes):
    dropped = recipes["prune"].dropped
    for kept in (
        "PySide6/Qt/qml/QtQuick/Controls/Fusion/Button.qml",
        "PySide6/Qt/qml/QtQuick/Controls/Basic/Button.qml",
        "PySide6/Qt/qml/QtQuick/Dialogs/qmldir",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "PySide6/Qt/plugins/platforms/libqwayland.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/lib/libQt6Network.so.6",
        "PySide6/Qt/lib/libQt6Widgets.so.6",
    ):
        assert not dropped(kept), kept
    for gone in (
        "PySide6/Qt/qml/QtQuick/Controls/Material/Button.qml",
        "PySide6/Qt/plugins/platforms/libqvnc.so",
        "PySide6/Qt/translations/qt_de.qm",
    ):
        assert dropped(gone), gone
    toc = [
        ("PySide6/Qt/lib/libQt6Pdf.so.6", "/x/libQt6Pdf.so.6", "BINARY"),
        ("libQt6Pdf.so.6", "PySide6/Qt/lib/libQt6Pdf.so.6", "SYMLINK"),
        ("libQt6Core.so.6", "PySide6/Qt/lib/libQt6Core.so.6", "SYMLINK"),
    ]
    (kept,) = recipes["prune"].keep(toc)
    assert kept == [toc[2]]  # the symlink to a dropped library goes with it


def bootstrap_apt(env_extra: dict[str, str], *args: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_extra, BOOTSTRAP_LIST_APT="1")
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "bootstrap.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.split()


def test_bootstrap_installs_the_xcb_libraries_only_with_a_display():
    window = {"libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0"}
    assert not window & set(bootstrap_apt({}))
    assert window <= set(bootstrap_apt({"DISPLAY": ":7"}))
    assert window <= set(bootstrap_apt({"WAYLAND_DISPLAY": "wayland-0"}))
    dev = set(bootstrap_apt({}, "--dev"))  # the installer tests open a window under Xvfb
    assert window | {"xvfb", "xauth", "lintian", "rpm", "nsis", "wixl", "patchelf"} <= dev
