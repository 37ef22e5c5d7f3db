"""Turn a kernel's raw output into what a caller shows or sends (CONTRACTS section 2)."""

from __future__ import annotations

import math
import struct
from typing import Any

from .errors import KernelError
from .manifest import KernelSpec

STATS_HEAD = ("count", "mean", "std", "min", "max")


def decode_output(spec: KernelSpec, output: bytes, params: dict[str, Any] | None = None) -> Any:
    """A JSON-able dict for "stats" output; the bytes unchanged for every other kind."""
    if spec.output_kind != "stats":
        return output
    if len(output) % 8 or len(output) < 8 * len(STATS_HEAD):
        raise KernelError(f"{spec.name}: stats output of {len(output)} bytes is malformed")
    values = struct.unpack(f"<{len(output) // 8}d", output)
    head = dict(zip(STATS_HEAD, (_json_float(v) for v in values[:5]), strict=True))
    head["count"] = int(values[0])
    counts = [int(v) for v in values[5:]]
    lo, hi = _edges(head, params or {})
    head["histogram"] = {"bins": len(counts), "edges": [lo, hi], "counts": counts}
    return head


def _edges(head: dict[str, Any], params: dict[str, Any]) -> tuple[Any, Any]:
    # An explicit histogram range in the params wins; otherwise the data's min and max.
    for lo_name, hi_name in (("lo", "hi"), ("range_min", "range_max"), ("hist_min", "hist_max")):
        if params.get(lo_name) is not None and params.get(hi_name) is not None:
            return float(params[lo_name]), float(params[hi_name])
    return head["min"], head["max"]


def _json_float(v: float) -> float | None:
    # JSON has no NaN/inf: an empty input's mean is reported as null.
    return v if math.isfinite(v) else None
