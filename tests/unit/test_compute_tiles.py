"""Tile planning and reassembly: byte-identical to running whole (checked with numpy kernels
that behave like the wasm ones: a row-wise render and a vertical box blur with a halo)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from veraltheim.service.compute import tiles


def render(params: dict) -> bytes:
    """A stand-in for mandelbrot: each output row depends only on its row index."""
    w = params["width"]
    rows = np.arange(params["row_start"], params["row_end"], dtype=np.uint32)[:, None]
    cols = np.arange(w, dtype=np.uint32)[None, :]
    return np.ascontiguousarray((rows * 2654435761 + cols * 40503) >> 3).tobytes()


def vblur(data: bytes, params: dict, radius: int) -> bytes:
    """A vertical box blur with clamped edges, like an image kernel reaching `radius` rows."""
    h, w = params["height"], params["width"]
    img = np.frombuffer(data, np.uint8).reshape(h, w, 4).astype(np.uint32)
    padded = np.concatenate([img[:1].repeat(radius, 0), img, img[-1:].repeat(radius, 0)])
    acc = sum(padded[i : i + h] for i in range(2 * radius + 1))
    return (acc // (2 * radius + 1)).astype(np.uint8).tobytes()


def run_tiled(plan, fn):
    return tiles.assemble(plan, [fn(t) for t in plan])


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 300),
    start=st.integers(0, 50),
    width=st.integers(1, 64),
    n=st.integers(2, 9),
)
def test_row_range_tiles_reassemble_identically(rows, start, width, n):
    params = {"width": width, "row_start": start, "row_end": start + rows, "max_iter": 10}
    plan = tiles.plan({"axis": "rows", "halo": 0}, params, b"", n, min_tile_pixels=1)
    whole = render(params)
    if plan is None:
        assert rows < 2
        return
    assert 2 <= len(plan) <= n
    assert plan[0].params["row_start"] == start
    assert run_tiled(plan, lambda t: render(t.params)) == whole


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(2, 120),
    width=st.integers(1, 24),
    radius=st.integers(0, 4),
    n=st.integers(2, 6),
    seed=st.integers(0, 1000),
)
def test_image_bands_with_halo_are_byte_identical(height, width, radius, n, seed):
    img = np.random.default_rng(seed).integers(0, 256, (height, width, 4), np.uint8).tobytes()
    params = {"width": width, "height": height, "radius": radius}
    plan = tiles.plan({"axis": "rows", "halo": "radius"}, params, img, n, min_tile_pixels=1)
    assert plan is not None
    assert sum(t.keep for t in plan) == height
    out = run_tiled(plan, lambda t: vblur(bytes(t.data), t.params, radius))
    assert out == vblur(img, params, radius)


def test_too_small_or_untileable_jobs_run_whole():
    params = {"width": 10, "height": 10}
    img = bytes(400)
    assert tiles.plan({"axis": "rows", "halo": 1}, params, img, 4) is None  # under MIN_TILE_PIXELS
    assert tiles.plan(None, params, img, 4, min_tile_pixels=1) is None
    assert tiles.plan({"axis": "rows", "halo": 1}, params, img, 1, min_tile_pixels=1) is None
    # input size that does not match width x height: leave it to the kernel's own error
    assert tiles.plan({"axis": "rows", "halo": 1}, params, bytes(12), 4, min_tile_pixels=1) is None


def test_assemble_rejects_ragged_output():
    params = {"width": 4, "height": 8}
    plan = tiles.plan({"axis": "rows", "halo": 1}, params, bytes(128), 2, min_tile_pixels=1)
    with pytest.raises(ValueError, match="whole rows"):
        tiles.assemble(plan, [b"x" * 7, b"y" * 7])
