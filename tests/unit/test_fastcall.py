"""wasm/fastcall.py: the private C-API call path and the public-API fallback give the same
results; the probe that chooses between them notices internals that misbehave."""

from __future__ import annotations

import numpy as np
import pytest
from veraltheim.wasm import (
    BadInput,
    Cancelled,
    CancelToken,
    DeadlineExceeded,
    KernelError,
    MemoryLimitExceeded,
    Runtime,
    fastcall,
)
from veraltheim.wasm.instance import Trapped

from tests.support.wat import write_test_manifest

MIB = 1 << 20


def test_the_installed_wasmtime_passes_the_probe():
    assert fastcall.PROBLEM is None and fastcall.FAST


def test_the_probe_notices_a_private_path_that_gives_wrong_results(monkeypatch):
    monkeypatch.setattr(fastcall.FastCalls, "call", lambda self, export, *args: 0)
    assert "wrong result" in fastcall.probe()


def _runtimes(manifest, tmp_path, monkeypatch, **kw) -> tuple[Runtime, Runtime]:
    """A runtime on each path (instances choose their path when they are made)."""
    fast = Runtime(manifest, cache_dir=tmp_path / "cache", **kw)
    fast.warm()
    monkeypatch.setattr(fastcall, "FAST", False)
    public = Runtime(manifest, cache_dir=tmp_path / "cache", **kw)
    public.warm()
    monkeypatch.setattr(fastcall, "FAST", True)
    fast_inst = next(iter(fast._local.instances.values()))
    public_inst = next(iter(public._local.instances.values()))
    assert fast_inst.fast and not public_inst.fast
    return fast, public


def outcome(rt: Runtime, name: str, data=b"", params=None, **kw):
    """(output, progress reports) or (exception type, message)."""
    seen: list[tuple[int, int]] = []
    try:
        result = rt.run(name, data, params or {}, progress=lambda d, t: seen.append((d, t)), **kw)
    except KernelError as e:
        return type(e), str(e)
    return result.output, seen


def test_our_kernels_give_the_same_results_on_both_paths(tmp_path, monkeypatch):
    fast, public = _runtimes(None, tmp_path, monkeypatch)
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, 64 * 48 * 4, dtype=np.uint8).tobytes()
    values = rng.standard_normal(5000).tobytes()
    cases = [
        ("hash.sha256", rgba, {}),
        ("image.blur", rgba, {"width": 64, "height": 48, "radius": 2}),
        ("image.edges", bytearray(rgba), {"width": 64, "height": 48}),
        ("fractal.mandelbrot", b"", {"width": 96, "height": 64, "max_iter": 200}),
        ("data.sort", memoryview(values), {}),
        ("data.stats", values, {}),
        ("image.blur", rgba[:-4], {"width": 64, "height": 48}),  # BadInput, same message
    ]
    for name, data, params in cases:
        assert outcome(fast, name, data, params) == outcome(public, name, data, params), name
    assert isinstance(outcome(public, *cases[-1])[1], str)


@pytest.fixture
def test_runtimes(tmp_path, monkeypatch):
    manifest = write_test_manifest(tmp_path / "modules")
    return _runtimes(manifest, tmp_path, monkeypatch, memory_limit_bytes=32 * MIB)


def test_traps_limits_and_errors_are_the_same_on_both_paths(test_runtimes):
    fast, public = test_runtimes
    for name, params in [
        ("test.echo", {}),
        ("test.busy", {"n": 100_000}),
        ("test.progress", {"n": 20}),
        ("test.trap", {}),
        ("test.reject", {}),
        ("test.hog", {}),
    ]:
        got = outcome(fast, name, b"abc" if name == "test.echo" else b"", params)
        assert got == outcome(public, name, b"abc" if name == "test.echo" else b"", params), name
    assert outcome(public, "test.trap")[0] is Trapped
    assert outcome(public, "test.progress", b"", {"n": 3})[1] == [(1, 3), (2, 3), (3, 3)]
    assert outcome(public, "test.hog")[0] is MemoryLimitExceeded
    assert outcome(public, "test.reject")[0] is BadInput


def test_the_public_path_keeps_deadlines_and_cancels_at_a_progress_report(test_runtimes):
    _, public = test_runtimes
    kind, message = outcome(public, "test.spin", deadline_s=0.2)
    assert kind is DeadlineExceeded, message
    token = CancelToken()

    def cancel_at_5(done: int, total: int) -> None:
        if done == 5:
            token.cancel()

    with pytest.raises(Cancelled):
        public.run("test.spin_progress", b"", {}, cancel=token, progress=cancel_at_5)
    assert public.run("test.echo", b"again", {}).output == b"again"  # a fresh instance works
