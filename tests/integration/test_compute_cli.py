"""`veraltheim-kernel run ... --service URL`: output files, and one line saying where and why."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from veraltheim.wasm import Runtime

COMPUTE_ENV = {"VERALTHEIM_COMPUTE_WORKERS": "1"}


def kernel_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veraltheim.client.compute.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_runs_where_told_and_says_why(service_factory, tmp_path):
    svc = service_factory("--no-auth", env=COMPUTE_ENV)
    values = tmp_path / "values.f64"
    np.arange(1.0, 102.0).tofile(values)
    out = tmp_path / "pct.f64"
    done = kernel_cli(
        "run",
        "data.percentiles",
        "-i",
        str(values),
        "-o",
        str(out),
        "-p",
        "steps=4",
        "--service",
        svc.ws_url,
    )
    assert done.returncode == 0, done.stderr
    assert "ran remote (remote-only kernel)" in done.stderr
    assert np.fromfile(out).tolist() == [1.0, 26.0, 51.0, 76.0, 101.0]

    digest = tmp_path / "digest"
    done = kernel_cli(
        "run",
        "hash.sha256",
        "-i",
        str(values),
        "-o",
        str(digest),
        "--service",
        svc.ws_url,
        "--where",
        "remote",
        "--json-decision",
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stderr.strip().splitlines()[-1])
    assert record["where"] == "remote" and record["reason"] == "forced remote"
    assert record["remote"]["timings"]["run_ms"] >= 0
    expected = Runtime().run("hash.sha256", values.read_bytes(), {}).output
    assert digest.read_bytes() == expected


def test_cli_offline_runs_local_and_remote_only_is_a_one_line_error(service_factory, tmp_path):
    svc = service_factory("--no-auth", env=COMPUTE_ENV)
    url = svc.ws_url
    svc.stop()
    data = tmp_path / "in.bin"
    data.write_bytes(b"abc")
    done = kernel_cli(
        "run", "hash.sha256", "-i", str(data), "-o", str(tmp_path / "o"), "--service", url
    )
    assert done.returncode == 0, done.stderr
    assert "ran local (offline)" in done.stderr
    done = kernel_cli(
        "run", "hash.sha256", "-i", str(data), "-o", str(tmp_path / "r"), "--service", url,
        "--where", "remote",
    )  # fmt: skip
    assert done.returncode == 1 and not (tmp_path / "r").exists()
    assert "forced remote, but the service is offline" in done.stderr.splitlines()[-1]
    done = kernel_cli(
        "run", "data.percentiles", "-i", str(data), "-o", str(tmp_path / "p"), "--service", url
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("veraltheim-kernel: error: ")
    assert "not reachable" in done.stderr


def test_cli_token_reaches_a_service_with_auth(service_factory, tmp_path):
    svc = service_factory(env=COMPUTE_ENV)  # auth on
    values = tmp_path / "values.f64"
    np.arange(1.0, 6.0).tofile(values)
    args = [
        "run",
        "data.percentiles",
        "-i",
        str(values),
        "-o",
        str(tmp_path / "p"),
        "-p",
        "steps=1",
        "--service",
        svc.ws_url,
    ]
    refused = kernel_cli(*args)
    assert refused.returncode == 1 and "unreachable" in refused.stderr
    # One line saying why it is unreachable, one with the error; no log records besides.
    assert len(refused.stderr.strip().splitlines()) == 2, refused.stderr
    done = kernel_cli(*args, "--token", svc.token("alice"))
    assert done.returncode == 0, done.stderr
    assert "ran remote (remote-only kernel)" in done.stderr
    assert np.fromfile(tmp_path / "p").tolist() == [1.0, 5.0]
