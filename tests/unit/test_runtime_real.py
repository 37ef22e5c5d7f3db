"""The runtime on the committed kernel modules (wasm/modules): loading, threads, progress, cancel.

Kernel correctness against references is the kernels' own test; here the host is under test.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from veraltheim.wasm import (
    DEFAULT_MANIFEST_PATH,
    BadInput,
    Cancelled,
    CancelToken,
    DeadlineExceeded,
    Runtime,
    UnknownKernel,
    decode_output,
)

WAIT_S = 30
CONTRACT_KERNELS = {
    "image.grayscale",
    "image.blur",
    "image.edges",
    "image.resize",
    "fractal.mandelbrot",
    "data.stats",
    "data.sort",
    "hash.sha256",
}

# Inside the set, so every pixel runs max_iter: about 4 Mi iterations (and a progress
# report) per row, minutes in all; the tests stop it long before.
LONG_RENDER = {
    "width": 1024,
    "height": 16384,
    "max_iter": 4096,
    "center_x": -0.2,
    "center_y": 0.0,
    "scale": 1e-3,
}


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return Runtime(cache_dir=tmp_path_factory.mktemp("cache"))


def test_the_committed_manifest_has_the_contract_kernels_and_every_module_loads(rt, tmp_path):
    assert {k.name for k in rt.catalogue()} >= CONTRACT_KERNELS
    fresh = Runtime(DEFAULT_MANIFEST_PATH, cache_dir=tmp_path)
    for name in fresh.manifest.modules:
        assert not fresh.load_module(name).from_cache
    again = Runtime(DEFAULT_MANIFEST_PATH, cache_dir=tmp_path)
    for name in again.manifest.modules:
        assert again.load_module(name).from_cache


def test_sha256_and_sort_match_their_references(rt):
    data = np.random.default_rng(7).bytes(100_003)
    assert rt.run("hash.sha256", data, {}).output == hashlib.sha256(data).digest()
    x = np.random.default_rng(8).normal(size=5001)
    out = np.frombuffer(rt.run("data.sort", x, {"dtype": "f64"}).output, "<f8")
    assert np.array_equal(out, np.sort(x))


def test_stats_decode_to_json_able_dict(rt):
    x = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    spec = rt.spec("data.stats")
    result = rt.run("data.stats", x.tobytes(), {"bins": 3})
    stats = decode_output(spec, result.output)
    assert stats["count"] == 4
    assert stats["mean"] == pytest.approx(2.5)
    assert stats["std"] == pytest.approx(np.std([1, 2, 3, 4]))
    assert (stats["min"], stats["max"]) == (1.0, 4.0)
    assert stats["histogram"] == {"bins": 3, "edges": [1.0, 4.0], "counts": [1, 1, 2]}
    empty = decode_output(spec, rt.run("data.stats", b"", {"bins": 2}).output)
    assert empty["count"] == 0 and empty["mean"] is None
    assert decode_output(rt.spec("hash.sha256"), b"raw") == b"raw"


def test_two_threads_run_different_kernels_at_once_with_correct_results(rt):
    rng = np.random.default_rng(3)
    blobs = [rng.bytes(50_000 + i) for i in range(12)]
    arrays = [rng.integers(-(2**31), 2**31, 3000 + i, dtype=np.int32) for i in range(12)]
    barrier = threading.Barrier(2, timeout=WAIT_S)
    results: dict[str, object] = {}

    def hashes():
        barrier.wait()
        results["hash"] = [rt.run("hash.sha256", b, {}).output for b in blobs]

    def sorts():
        barrier.wait()
        results["sort"] = [
            rt.run("data.sort", a.tobytes(), {"dtype": "i32"}).output for a in arrays
        ]

    threads = [threading.Thread(target=hashes), threading.Thread(target=sorts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert results["hash"] == [hashlib.sha256(b).digest() for b in blobs]
    assert results["sort"] == [np.sort(a).tobytes() for a in arrays]


def test_a_long_kernel_reports_progress(rt):
    seen: list[tuple[int, int]] = []
    rt.run(
        "fractal.mandelbrot",
        b"",
        # The kernel reports per PROGRESS_WORK (4 Mi) of width * max_iter: here every row.
        {"width": 1024, "height": 4, "max_iter": 4096, "center_y": 2.0},
        progress=lambda d, t: seen.append((d, t)),
    )
    assert len(seen) >= 2
    assert seen[-1][0] == seen[-1][1] > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_cancel_stops_a_real_render_promptly(rt):
    token = CancelToken()
    started = threading.Event()
    outcome: dict[str, object] = {}

    def render():
        try:
            rt.run(
                "fractal.mandelbrot",
                b"",
                LONG_RENDER,
                cancel=token,
                progress=lambda d, t: started.set(),
            )
            outcome["r"] = "finished"
        except Exception as e:
            outcome["r"] = e

    t = threading.Thread(target=render)
    t.start()
    assert started.wait(WAIT_S)
    token.cancel()
    t.join(WAIT_S)
    assert isinstance(outcome["r"], Cancelled)
    # The thread-pool style reuse goes on: this thread's instance is unaffected.
    assert rt.run("hash.sha256", b"abc", {}).output == hashlib.sha256(b"abc").digest()


def test_a_real_kernel_is_stopped_by_its_deadline(rt):
    with pytest.raises(DeadlineExceeded):
        rt.run(
            "fractal.mandelbrot",
            b"",
            LONG_RENDER,
            deadline_s=0.05,
        )


def test_real_params_are_checked(rt):
    img = bytes(4 * 3 * 2)
    with pytest.raises(BadInput, match="radius' = 17 is out of range"):
        rt.run("image.blur", img, {"width": 3, "height": 2, "radius": 17})
    with pytest.raises(BadInput, match="a 3x3 RGBA8 image is 36"):
        rt.run("image.blur", img, {"width": 3, "height": 3})
    with pytest.raises(BadInput, match="must be one of f64, i32"):
        rt.run("data.sort", b"", {"dtype": "u8"})
    with pytest.raises(UnknownKernel):
        rt.run("image.sharpen", img, {})
