"""`veraltheim-kernel` (python -m wasm) as a user runs it: a subprocess on real files."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from veraltheim.wasm import Runtime

from tests.support.wat import write_test_manifest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path):
    cache = tmp_path / "cache"

    def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "veraltheim.wasm", *args, "--cache-dir", str(cache)],
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            timeout=120,
        )

    return run


def random_png(path: Path, width: int, height: int, seed: int = 1) -> np.ndarray:
    rgba = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(path)
    return rgba


def png_rgba(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGBA"
        return np.asarray(img)


def test_list_shows_names_params_with_ranges_and_descriptions(cli):
    r = cli("list")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    for name in ("image.blur", "image.resize", "fractal.mandelbrot", "data.stats", "hash.sha256"):
        assert f"\n{name}\n" in f"\n{text}"
    assert "--param radius" in text and "int 1..16, default 2" in text
    assert "--param dtype" in text and "f64|i32, default f64" in text
    assert "SHA-256" in text


def test_list_json_is_the_catalogue(cli):
    r = cli("list", "--json")
    assert r.returncode == 0, r.stderr
    catalogue = json.loads(r.stdout)
    assert [k["name"] for k in catalogue] == [k.name for k in Runtime().catalogue()]
    blur = next(k for k in catalogue if k["name"] == "image.blur")
    assert blur["input"] == {"kind": "rgba8"}
    assert {"name": "radius", "default": 2}.items() <= next(
        p for p in blur["params"] if p["name"] == "radius"
    ).items()


def test_run_blur_png_in_png_out_matches_the_runtime(cli, tmp_path):
    rgba = random_png(tmp_path / "in.png", 13, 7)
    r = cli(
        "run",
        "image.blur",
        "-i",
        str(tmp_path / "in.png"),
        "-o",
        str(tmp_path / "out.png"),
        "--param",
        "radius=3",
    )
    assert r.returncode == 0, r.stderr
    expected = Runtime(cache_dir=tmp_path / "cache").run(
        "image.blur", rgba.tobytes(), {"width": 13, "height": 7, "radius": 3}
    )
    assert png_rgba(tmp_path / "out.png").tobytes() == expected.output


def test_run_resize_writes_the_new_size(cli, tmp_path):
    random_png(tmp_path / "in.png", 10, 6)
    r = cli(
        "run",
        "image.resize",
        "-i",
        str(tmp_path / "in.png"),
        "-o",
        str(tmp_path / "o.png"),
        "-p",
        "out_width=4",
        "-p",
        "out_height=9",
    )
    assert r.returncode == 0, r.stderr
    assert png_rgba(tmp_path / "o.png").shape == (9, 4, 4)


def test_run_mandelbrot_without_input_and_with_a_row_range(cli, tmp_path):
    r = cli(
        "run",
        "fractal.mandelbrot",
        "-o",
        str(tmp_path / "m.png"),
        "-p",
        "width=64",
        "-p",
        "height=48",
        "-p",
        "row_start=8",
        "-p",
        "row_end=20",
        "-p",
        "max_iter=50",
    )
    assert r.returncode == 0, r.stderr
    out = png_rgba(tmp_path / "m.png")
    assert out.shape == (12, 64, 4)
    assert (out[..., 3] == 255).all()


def test_run_mandelbrot_with_default_params_writes_the_default_size(cli, tmp_path):
    r = cli("run", "fractal.mandelbrot", "-o", str(tmp_path / "m.png"), "-p", "max_iter=20")
    assert r.returncode == 0, r.stderr
    spec = Runtime().spec("fractal.mandelbrot")
    size = (spec.param("height").default, spec.param("width").default, 4)
    assert png_rgba(tmp_path / "m.png").shape == size


def test_run_stats_writes_json(cli, tmp_path):
    x = np.array([1.0, 1.5, 2.0, 4.0, np.nan])
    (tmp_path / "x.f64").write_bytes(x.tobytes())
    r = cli(
        "run",
        "data.stats",
        "-i",
        str(tmp_path / "x.f64"),
        "-o",
        str(tmp_path / "s.json"),
        "-p",
        "bins=3",
    )
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["count"] == 4 and stats["min"] == 1.0 and stats["max"] == 4.0
    assert stats["histogram"]["counts"] == [2, 1, 1]


def test_run_sort_and_sha256_raw_bytes_and_stdio(cli, tmp_path):
    a = np.random.default_rng(5).integers(-1000, 1000, 999, dtype=np.int32)
    (tmp_path / "a.i32").write_bytes(a.tobytes())
    r = cli(
        "run",
        "data.sort",
        "-i",
        str(tmp_path / "a.i32"),
        "-o",
        str(tmp_path / "s.i32"),
        "-p",
        "dtype=i32",
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.i32").read_bytes() == np.sort(a).tobytes()
    data = b"veraltheim" * 1000
    r = cli("run", "hash.sha256", "-i", "-", "-o", "-", stdin=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "image.sharpen", "-i", "{png}", "-o", "{out}"], "unknown kernel 'image.sharpen'"),
        (
            ["run", "image.blur", "-i", "{png}", "-o", "{out}", "-p", "radius=99"],
            "radius' = 99 is out of range [1, 16]",
        ),
        (["run", "image.blur", "-i", "{png}", "-o", "{out}", "-p", "radius"], "NAME=VALUE"),
        (
            ["run", "image.blur", "-i", "{png}", "-o", "{out}", "-p", "radius=big"],
            "must be a number",
        ),
        (
            ["run", "image.blur", "-i", "{png}", "-o", "{out}", "-p", "sigma=1"],
            "unknown param 'sigma'",
        ),
        (
            ["run", "image.blur", "-i", "{png}", "-o", "{out}", "-p", "width=3"],
            "contradicts the image",
        ),
        (["run", "image.blur", "-i", "{missing}", "-o", "{out}"], "no such file"),
        (["run", "image.blur", "-i", "{notimage}", "-o", "{out}"], "not an image"),
        (["run", "image.blur", "-o", "{out}"], "needs --input"),
        (["run", "fractal.mandelbrot", "-i", "{png}", "-o", "{out}"], "takes no input"),
        (["run", "data.sort", "-i", "{notimage}", "-o", "{out}"], "not a whole number"),
        (["run", "image.blur", "-i", "{png}"], "the following arguments are required: --output"),
        (
            ["run", "image.blur", "-i", "{png}", "-o", "{out}", "--deadline", "-1"],
            "must be a positive number",
        ),
        (["frobnicate"], "invalid choice"),
        (["run", "image.blur", "-i", "{png}", "-o", "{out}.xyz"], "unknown image format"),
        (["run", "fractal.mandelbrot", "-o", "-"], "give --output a .png or .jpg name"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line_on_stderr(cli, tmp_path, args, message):
    random_png(tmp_path / "in.png", 5, 4)
    (tmp_path / "junk.bin").write_bytes(b"\x01\x02\x03")
    paths = {
        "png": tmp_path / "in.png",
        "out": tmp_path / "out.png",
        "missing": tmp_path / "absent.png",
        "notimage": tmp_path / "junk.bin",
    }
    r = cli(*[a.format(**paths) for a in args])
    err = r.stderr.decode()
    assert r.returncode != 0
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert re.match(r"veraltheim-kernel( run)?: error: ", err)
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_limits_from_the_command_line(cli, tmp_path):
    manifest = str(write_test_manifest(tmp_path / "m"))
    r = cli("run", "test.spin", "-o", "-", "--deadline", "0.05", "--manifest", manifest)
    assert r.returncode == 1
    assert r.stderr.decode() == "veraltheim-kernel: error: test.spin: deadline of 0.05 s exceeded\n"
    r = cli("run", "test.hog", "-o", "-", "--memory-limit", "4", "--manifest", manifest)
    assert r.returncode == 1
    assert "no memory left" in r.stderr.decode() and r.stderr.decode().count("\n") == 1
    r = cli(
        "run",
        "test.echo",
        "-i",
        "-",
        "-o",
        "-",
        "--memory-limit",
        "99999",
        "--manifest",
        manifest,
        stdin=b"x",
    )
    assert r.returncode == 1 and "at most 4096 MiB" in r.stderr.decode()
    r = cli(
        "run", "test.echo", "-i", "-", "-o", "-", "--memory-limit", "1e-9", "--manifest", manifest
    )
    assert r.returncode == 1 and "--memory-limit is more than 0" in r.stderr.decode()
    assert r.stderr.decode().count("\n") == 1


def test_ctrl_c_stops_a_running_kernel(tmp_path):
    import signal
    import time

    manifest = str(write_test_manifest(tmp_path / "m"))
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wasm",
            "run",
            "test.spin",
            "-o",
            "-",
            "--deadline",
            "120",
            "--manifest",
            manifest,
            "--cache-dir",
            str(cache),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # The compiled module lands in the cache just before the job starts.
        give_up = time.monotonic() + 60
        while not list(cache.rglob("*.cwasm")) and time.monotonic() < give_up:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert err.decode() == "veraltheim-kernel: error: interrupted\n"
