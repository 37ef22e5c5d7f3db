"""The starter projects, end to end through the real `veraltheim-kernel` command: C built with
clang, C built with zig cc (PyPI ziglang), Rust built with rustc for wasm32-unknown-unknown; each
builds, passes its example, installs locally and runs on an image."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TOOLCHAINS = [("c", "clang"), ("c", "zig"), ("rust", "rustc")]
pytestmark = pytest.mark.slow


def kernel_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veraltheim.client.compute.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def cli_env(kernels_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["VERALTHEIM_USER_KERNELS_DIR"] = str(kernels_dir)
    if "RUSTC" not in env and Path("/usr/bin/rustc").exists():
        env["RUSTC"] = "/usr/bin/rustc"  # a rustup rustc first on PATH may lack the target
    return env


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """The three starter projects, made and built once (`name` -> directory)."""
    root = tmp_path_factory.mktemp("projects")
    env = cli_env(root / "unused")
    built = {}
    for lang, toolchain in TOOLCHAINS:
        name = f"user.invert_{toolchain}"
        project = root / toolchain
        made = kernel_cli("new", name, "--lang", lang, project, env=env)
        assert made.returncode == 0, made.stderr
        assert (project / "kernel.toml").is_file() and (project / "build.sh").is_file()
        done = kernel_cli("build", project, "--toolchain", toolchain, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"built {project / 'kernel.wasm'}")
        built[toolchain] = project
    return built


def image_file(path: Path, width: int = 64, height: int = 48) -> np.ndarray:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    pixels[..., 3] = 255  # PNG keeps RGB exactly when opaque
    Image.fromarray(pixels, "RGBA").save(path)
    return pixels


@pytest.mark.parametrize(("lang", "toolchain"), TOOLCHAINS)
def test_starter_project_builds_passes_installs_and_runs(projects, tmp_path, lang, toolchain):
    project = projects[toolchain]
    name = f"user.invert_{toolchain}"
    env = cli_env(tmp_path / "kernels")
    tested = kernel_cli("test", project, env=env)
    assert tested.returncode == 0, tested.stderr
    assert f"{name}: all checks passed, 1 example(s) ran" in tested.stdout

    added = kernel_cli("add", project / "kernel.wasm", "--spec", project / "kernel.toml", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"installed {name} (sha256 ")
    listed = kernel_cli("list", "--user", env=env)
    assert listed.stdout.startswith(f"{name}  sha256 "), listed.stdout

    pixels = image_file(tmp_path / "in.png")
    out = tmp_path / "out.png"
    ran = kernel_cli("run", name, "-i", tmp_path / "in.png", "-o", out, env=env)
    assert ran.returncode == 0, ran.stderr
    result = np.asarray(Image.open(out).convert("RGBA"))
    assert np.array_equal(result[..., :3], 255 - pixels[..., :3])
    assert np.array_equal(result[..., 3], pixels[..., 3])

    removed = kernel_cli("remove", name, env=env)
    assert removed.returncode == 0, removed.stderr
    gone = kernel_cli("run", name, "-i", tmp_path / "in.png", "-o", out, env=env)
    assert gone.returncode == 1
    assert f"unknown kernel '{name}'" in gone.stderr


def test_a_refused_module_gets_one_line_naming_the_check(projects, tmp_path):
    env = cli_env(tmp_path / "kernels")
    project = projects["clang"]
    added = kernel_cli("add", project / "kernel.toml", "--spec", project / "kernel.toml", env=env)
    assert added.returncode == 1
    assert added.stderr == (
        "veraltheim-kernel: error: refused (not wasm): the file is not a WebAssembly module "
        "(no \\0asm header)\n"
    )
    assert kernel_cli("list", "--user", env=env).stdout == "no user kernels installed\n"


def test_a_user_kernel_reports_progress_and_is_cancelled_like_a_builtin(tmp_path):
    from veraltheim.wasm import Cancelled, CancelToken, Runtime
    from veraltheim.wasm.user_kernels import UserKernelStore, install

    from tests.support.user_kernels import build_starter

    package = build_starter(tmp_path / "projects", "clang")
    store = UserKernelStore(tmp_path / "kernels")
    install(package, store, installed_by="tester")
    rt = Runtime(user_kernels=store.root)
    w, h = 2048, 2048
    image = bytes(w * h * 4)
    seen: list[tuple[int, int]] = []
    out = rt.run(
        package.name, image, {"width": w, "height": h}, progress=lambda d, t: seen.append((d, t))
    )
    assert out.output == bytes([255, 255, 255, 0]) * (w * h)
    assert seen[0] == (64, h) and seen[-1] == (h, h)  # every 64 rows, as the starter reports

    token = CancelToken()
    reports: list[int] = []

    def cancel_on_first_report(done: int, total: int) -> None:
        reports.append(done)
        token.cancel()  # as Esc in the app or Ctrl-C in the CLI would, mid-run

    with pytest.raises(Cancelled, match=f"{package.name}: cancelled"):
        rt.run(
            package.name,
            image,
            {"width": w, "height": h},
            cancel=token,
            progress=cancel_on_first_report,
        )
    assert reports == [64]  # stopped at the first report, 64 rows of 2048
    assert len(rt.run(package.name, image[:64], {"width": 4, "height": 4}).output) == 64
