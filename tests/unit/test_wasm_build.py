"""`python -m veraltheim.wasm.build` is reproducible: a rebuild gives the committed bytes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from veraltheim.wasm import build
from veraltheim.wasm.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
needs_clang = pytest.mark.skipif(
    build.find_toolchain() is None,
    reason="clang and wasm-ld (Debian: clang lld) are not installed, so nothing can be rebuilt",
)


def same_compiler() -> None:
    """Byte-identical output is only promised for the compiler that built the committed files."""
    here = build.toolchain_version(build.find_toolchain())
    if build.committed_toolchain() != here:
        pytest.skip(
            f"modules were built by {build.committed_toolchain()!r}; this machine has {here!r}"
        )


@pytest.mark.slow
@needs_clang
def test_rebuild_is_byte_identical_to_what_is_committed(capsys):
    same_compiler()
    assert build.main(["--check"]) == 0, capsys.readouterr().out
    assert "wasm modules are up to date" in capsys.readouterr().out


@pytest.mark.slow
@needs_clang
def test_check_reports_a_stale_module(tmp_path):
    same_compiler()
    stale = tmp_path / "modules"
    shutil.copytree(build.MODULES_DIR, stale)
    (stale / "hash.wasm").write_bytes((stale / "hash.wasm").read_bytes() + b"\0")
    (stale / "data.wasm").unlink()
    assert build.check(stale) == [
        f"data.wasm: missing from {stale}",
        "hash.wasm: differs from a fresh build",
    ]


@pytest.mark.slow
@needs_clang
def test_check_command_fails_on_stale_output(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "veraltheim.wasm.build", "--check", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "manifest.json: missing" in proc.stdout and "stale" in proc.stdout


def test_output_holds_no_build_paths():
    for wasm in build.MODULES_DIR.glob("*.wasm"):
        data = wasm.read_bytes()
        for path in {str(ROOT), "/tmp/", str(Path.home())}:
            assert path.encode() not in data, (wasm.name, path)


def test_manifest_matches_the_catalogue_and_the_files():
    raw = json.loads((build.MODULES_DIR / build.MANIFEST_NAME).read_text())
    catalogue = build.load_catalogue()
    assert list(raw) == ["format", "toolchain", "modules", "kernels"]
    assert "clang" in raw["toolchain"]
    assert list(raw["kernels"]) == list(catalogue["kernels"])
    for m in raw["modules"].values():
        data = (build.MODULES_DIR / m["file"]).read_bytes()
        assert m["sha256"] == hashlib.sha256(data).hexdigest()
        exports, imports = build.describe_module(data)
        assert m["exports"] == exports and m["imports"] == imports
        assert {"memory", "vh_alloc", "vh_reset", "vh_begin", "vh_error"} <= set(exports)
        assert set(imports) <= {"env.vh_progress"}
    for name, k in raw["kernels"].items():
        assert list(k) == [
            "module",
            "export",
            "description",
            "input",
            "params",
            "output",
            "tiles",
            "cost",
            "grants",
        ]
        assert k["export"] in raw["modules"][k["module"]]["exports"]
        assert len(k["cost"]) == 1 and next(iter(k["cost"].values())) > 0, name
    manifest = load_manifest(build.MODULES_DIR / build.MANIFEST_NAME)  # the runtime's own reader
    assert manifest.kernel("data.sort").param("dtype").choices == ("f64", "i32")


def test_an_import_no_kernel_grants_is_refused():
    catalogue = build.load_catalogue()
    catalogue["kernels"] = {n: k for n, k in catalogue["kernels"].items() if k["module"] == "hash"}
    for k in catalogue["kernels"].values():
        k["grants"] = []
    data = (build.MODULES_DIR / "hash.wasm").read_bytes()
    with pytest.raises(build.BuildError, match="no kernel grants"):
        build.make_manifest(catalogue, {"hash": ("hash.wasm", data)}, {})


def test_missing_toolchain_is_one_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(build, "find_toolchain", lambda: None)
    assert build.main(["--out", "/nonexistent/never-written"]) == 2
    assert "clang and wasm-ld are needed" in capsys.readouterr().err


def test_an_unknown_grant_is_one_clear_build_error():
    catalogue = build.load_catalogue()
    catalogue["kernels"] = {n: k for n, k in catalogue["kernels"].items() if k["module"] == "hash"}
    for k in catalogue["kernels"].values():
        k["grants"] = ["progress", "network"]
    data = (build.MODULES_DIR / "hash.wasm").read_bytes()
    with pytest.raises(build.BuildError, match=r"unknown grants \['network'\]"):
        build.make_manifest(catalogue, {"hash": ("hash.wasm", data)}, {})
