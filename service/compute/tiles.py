"""Split a job into row tiles for several workers, and put the outputs back together.

Two shapes, both from the manifest's `tiles: {"axis": "rows", "halo": H}`:
- kernels with `row_start`/`row_end` params (mandelbrot): each tile renders a row range; the
  outputs are concatenated.
- image kernels (rgba8 input with `width`/`height`): each tile gets a band of rows plus H halo
  rows on each side (clipped at the image edges), runs as a smaller image, and its output is
  cropped back to the band. With H at least the kernel's reach, the result is byte-identical.
Pure functions: no I/O, no processes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

RGBA = 4
# Tiles smaller than this many pixels cost more in messages than they save.
MIN_TILE_PIXELS = 32 * 1024


@dataclass(frozen=True, slots=True)
class Tile:
    params: dict[str, Any]
    data: bytes | memoryview
    rows: int  # rows the tile's output holds
    crop_top: int  # rows to drop from the top of the output
    keep: int  # rows to keep after the crop


def halo_rows(tiles: dict[str, Any], params: dict[str, Any]) -> int:
    halo = tiles.get("halo", 0) or 0
    if isinstance(halo, str):
        halo = params.get(halo, 0)
    return max(0, int(halo))


def plan(
    tiles: dict[str, Any] | None,
    params: dict[str, Any],
    data: bytes | memoryview,
    max_tiles: int,
    min_tile_pixels: int = MIN_TILE_PIXELS,
) -> list[Tile] | None:
    """The tiles for one job, or None when it should run whole (not tileable, or too small)."""
    if not tiles or tiles.get("axis") != "rows" or max_tiles < 2:
        return None
    width = params.get("width")
    if not isinstance(width, int | float) or width < 1:
        return None
    width = int(width)
    if "row_start" in params and "row_end" in params:
        # row_end 0 means "to the last row" (the manifest's convention for mandelbrot).
        start = int(params["row_start"])
        end = int(params["row_end"]) or int(params.get("height") or 0)
        bands = _bands(start, end, width, max_tiles, min_tile_pixels)
        if bands is None:
            return None
        return [
            Tile({**params, "row_start": a, "row_end": b}, data, b - a, 0, b - a) for a, b in bands
        ]
    height = params.get("height")
    if not isinstance(height, int | float) or len(data) != width * int(height) * RGBA:
        return None
    height = int(height)
    bands = _bands(0, height, width, max_tiles, min_tile_pixels)
    if bands is None:
        return None
    halo = halo_rows(tiles, params)
    view = memoryview(data)
    row_bytes = width * RGBA
    out = []
    for a, b in bands:
        lo, hi = max(0, a - halo), min(height, b + halo)
        out.append(
            Tile(
                {**params, "height": hi - lo},
                view[lo * row_bytes : hi * row_bytes],
                hi - lo,
                a - lo,
                b - a,
            )
        )
    return out


def _bands(
    start: int, end: int, width: int, max_tiles: int, min_tile_pixels: int
) -> list[tuple[int, int]] | None:
    rows = end - start
    n = min(max_tiles, rows, (rows * width) // max(1, min_tile_pixels))
    if n < 2:
        return None
    edges = [start + rows * i // n for i in range(n + 1)]
    return list(itertools.pairwise(edges))


def assemble(tiles: list[Tile], outputs: list[bytes]) -> bytes:
    """Concatenate each tile's output, cropped to the rows it owns."""
    parts = []
    for tile, out in zip(tiles, outputs, strict=True):
        if tile.crop_top == 0 and tile.keep == tile.rows:
            parts.append(out)
            continue
        if tile.rows == 0 or len(out) % tile.rows:
            raise ValueError(f"tile output of {len(out)} bytes is not {tile.rows} whole rows")
        row = len(out) // tile.rows
        parts.append(out[tile.crop_top * row : (tile.crop_top + tile.keep) * row])
    return b"".join(parts)
