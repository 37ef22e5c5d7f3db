"""Turn a kernel's raw output into what a caller shows or sends."""

from __future__ import annotations

import math
import struct
from typing import Any

from .errors import KernelError
from .manifest import KernelSpec

STATS_HEAD = ("count", "mean", "std", "min", "max")


def decode_output(spec: KernelSpec, output: bytes) -> Any:
    """A JSON-able dict for "stats" output; the bytes unchanged for every other kind.

    The histogram spans the finite values' [min, max] (data.stats has no range params).
    """
    if spec.output_kind != "stats":
        return output
    if len(output) % 8 or len(output) < 8 * len(STATS_HEAD):
        raise KernelError(f"{spec.name}: stats output of {len(output)} bytes is malformed")
    values = struct.unpack(f"<{len(output) // 8}d", output)
    head = dict(zip(STATS_HEAD, (_json_float(v) for v in values[:5]), strict=True))
    head["count"] = int(values[0])
    counts = [int(v) for v in values[5:]]
    head["histogram"] = {"bins": len(counts), "edges": [head["min"], head["max"]], "counts": counts}
    return head


def _json_float(v: float) -> float | None:
    # JSON has no NaN/inf: an empty input's mean is reported as null.
    return v if math.isfinite(v) else None
