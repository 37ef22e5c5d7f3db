"""Make a kernel's output showable and savable (no Qt here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


PREVIEW_VALUES = 12


@dataclass
class KernelOutput:
    kind: str  # "image", "stats", "numbers", "bytes"
    raw: bytes
    text: str  # what the result pane shows for non-images
    image_size: tuple[int, int] | None = None
    value: Any = None  # decoded stats dict or numpy array

    @property
    def suggested_suffix(self) -> str:
        return {"image": ".png", "stats": ".json", "numbers": ".csv"}.get(self.kind, ".bin")


def describe_output(spec: Any, params: dict[str, Any], output: bytes) -> KernelOutput:
    kind = spec.output_kind
    if kind == "rgba8":
        width = int(params.get("out_width") or params.get("width") or 0)
        pixels = len(output) // 4
        if width <= 0 or pixels % width:
            return KernelOutput("bytes", output, _bytes_text(output))
        height = pixels // width
        return KernelOutput("image", output, f"{width} x {height} image", (width, height))
    if kind == "stats":
        from veraltheim.wasm import decode_output

        stats = decode_output(spec, output)
        return KernelOutput("stats", output, _stats_text(stats), value=stats)
    if kind in ("f64", "i32", "numeric"):
        import numpy as np  # here, not at start-up: it takes longer to import than the window

        dtype = _output_dtype(kind, params)
        values = np.frombuffer(output, dtype=dtype)
        return KernelOutput("numbers", output, _numbers_text(values), value=values)
    return KernelOutput("bytes", output, _bytes_text(output))


def save_output(result: KernelOutput, path: Path) -> Path:
    """Write the result in the format the file name asks for; returns the path written."""
    suffix = path.suffix.lower()
    if result.kind == "image" and suffix in (".png", ".jpg", ".jpeg"):
        from veraltheim.wasm.images import write_image

        assert result.image_size is not None
        write_image(path, result.raw, *result.image_size)
    elif result.kind == "stats" and suffix != ".bin":
        path.write_text(json.dumps(result.value, indent=2), encoding="utf-8")
    elif result.kind == "numbers" and suffix in (".csv", ".txt"):
        import numpy as np

        np.savetxt(
            path,
            result.value,
            delimiter=",",
            fmt="%.17g" if result.value.dtype.kind == "f" else "%d",
        )
    elif result.kind == "bytes" and suffix == ".txt":
        path.write_text(result.raw.hex() + "\n", encoding="utf-8")
    else:
        path.write_bytes(result.raw)
    return path


def _output_dtype(kind: str, params: dict[str, Any]) -> str:
    if kind == "numeric":
        kind = str(params.get("dtype", "f64"))
    return "<i4" if kind == "i32" else "<f8"


def _numbers_text(values: np.ndarray) -> str:
    if values.size == 0:
        return "no values"
    head = ", ".join(f"{v:.6g}" for v in values[:PREVIEW_VALUES])
    more = f", ... ({values.size:,} values)" if values.size > PREVIEW_VALUES else ""
    return (
        f"{head}{more}\nmin {values.min():.6g}   max {values.max():.6g}   mean {values.mean():.6g}"
    )


def _stats_text(stats: dict[str, Any]) -> str:
    lines = [
        f"count {stats['count']:,.0f}",
        f"mean  {stats['mean']:.6g}",
        f"std   {stats['std']:.6g}",
        f"min   {stats['min']:.6g}",
        f"max   {stats['max']:.6g}",
    ]
    hist = stats.get("histogram")
    if hist and hist.get("counts"):
        counts = hist["counts"]
        peak = max(counts) or 1
        lo, hi = hist["edges"]
        step = (hi - lo) / len(counts) if counts else 0
        lines.append(f"histogram ({len(counts)} bins)")
        for i, c in enumerate(counts[:32]):
            lines.append(f"{lo + i * step:>10.4g} {'#' * round(30 * c / peak):<30} {c:,.0f}")
    return "\n".join(lines)


def _bytes_text(data: bytes) -> str:
    if len(data) <= 64:
        return data.hex()
    return f"{len(data):,} bytes: {data[:32].hex()}..."
