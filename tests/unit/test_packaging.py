"""The wheel adds exactly one top-level import package, `veraltheim`, holding every module and
data file of the checkout's top-level folders."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("protocol", "wasm", "service", "client", "resources")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("veraltheim-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_the_wheel_has_one_top_level_package(wheel_names):
    tops = {n.split("/")[0] for n in wheel_names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"veraltheim"}


def test_every_source_module_is_in_the_wheel(wheel_names):
    missing = [
        str(p.relative_to(ROOT))
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in p.parts
        and f"veraltheim/{p.relative_to(ROOT).as_posix()}" not in wheel_names
    ]
    assert missing == []


def test_package_data_is_in_the_wheel(wheel_names):
    tracked = subprocess.run(
        ["git", "ls-files", "resources", "wasm/modules", "wasm/src", "wasm/sdk"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    missing = [f for f in tracked if f"veraltheim/{f}" not in wheel_names]
    assert missing == []
