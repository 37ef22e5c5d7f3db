"""Remote-only kernels: native numpy code that exists on the service alone.

Each entry has the same shape as a manifest kernel (so the catalogue lists both alike) plus
`"remote_only": true`. They run inside the worker processes like wasm kernels, and check for
cancel and deadline between chunks of work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.errors import ComputeError
from veraltheim.wasm import BadInput, KernelSpec, kernel_spec_from_dict

F64 = 8
# Work in chunks this big so cancel and progress get a turn every few ms.
CHUNK_VALUES = 1 << 18

Check = Callable[[], None]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class NativeKernel:
    name: str
    entry: dict[str, Any]
    run: Callable[[bytes, dict[str, Any], Check, Progress], bytes]

    @cached_property
    def spec(self) -> KernelSpec:
        return kernel_spec_from_dict({**self.entry, "name": self.name})


def _as_f64(data: bytes, kernel: str) -> np.ndarray:
    if len(data) % F64:
        raise ComputeError(
            Reason.BAD_INPUT,
            f"{kernel}: input of {len(data)} bytes is not a whole number of f64 values",
        )
    if not data:
        raise ComputeError(Reason.BAD_INPUT, f"{kernel}: input is empty")
    return np.frombuffer(data, dtype="<f8")


def _percentiles(data: bytes, params: dict[str, Any], check: Check, progress: Progress) -> bytes:
    values = _as_f64(data, "data.percentiles")
    # NaNs are ignored: drop them chunk by chunk (a turn for cancel and progress each time).
    chunks = []
    total = len(values)
    for start in range(0, total, CHUNK_VALUES):
        check()
        part = values[start : start + CHUNK_VALUES]
        chunks.append(part[~np.isnan(part)])
        progress(min(start + CHUNK_VALUES, total), total)
    check()
    kept = np.concatenate(chunks)
    if kept.size == 0:
        raise ComputeError(Reason.BAD_INPUT, "data.percentiles: every input value is NaN")
    q = np.linspace(0.0, 100.0, int(params["steps"]) + 1)
    return np.percentile(kept, q).astype("<f8").tobytes()


def _fft_magnitude(data: bytes, params: dict[str, Any], check: Check, progress: Progress) -> bytes:
    values = _as_f64(data, "data.fft_magnitude")
    if np.isnan(values).any():
        raise ComputeError(Reason.BAD_INPUT, "data.fft_magnitude: input contains NaN")
    check()
    out = np.abs(np.fft.rfft(values))
    if params["normalize"]:
        out /= len(values)
    progress(1, 1)
    return out.astype("<f8").tobytes()


def _param(name: str, kind: str, lo: float, hi: float, default: Any, doc: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": kind,
        "min": lo,
        "max": hi,
        "default": default,
        "choices": None,
        "description": doc,
    }


NATIVE_KERNELS: dict[str, NativeKernel] = {
    k.name: k
    for k in (
        NativeKernel(
            "data.percentiles",
            {
                "description": "Percentiles 0, 100/steps, ..., 100 of f64 values (linear "
                "interpolation, NaNs ignored). Native numpy, on the service only.",
                "input": {"kind": "f64"},
                "params": [_param("steps", "int", 1, 10000, 100, "intervals between 0 and 100")],
                "output": {"kind": "f64"},
                "tiles": None,
                "cost": {"ns_per_byte": 8.0},
                "grants": ["progress"],
            },
            _percentiles,
        ),
        NativeKernel(
            "data.fft_magnitude",
            {
                "description": "Magnitudes of the real FFT of f64 values (n/2+1 of them), "
                "optionally divided by n. Native numpy, on the service only.",
                "input": {"kind": "f64"},
                "params": [_param("normalize", "int", 0, 1, 0, "1 divides by the input length")],
                "output": {"kind": "f64"},
                "tiles": None,
                "cost": {"ns_per_byte": 4.0},
                "grants": ["progress"],
            },
            _fft_magnitude,
        ),
    )
}


def validate_native(name: str, data: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """Check params and input the way the wasm kernels' are checked (the same ParamSpec rules);
    return the params normalized."""
    spec = NATIVE_KERNELS[name].spec
    try:
        out = spec.validate_params(params)
        spec.check_input(len(data), out)
    except BadInput as exc:
        raise ComputeError(Reason.BAD_INPUT, str(exc)) from None
    if not data:
        raise ComputeError(Reason.BAD_INPUT, f"{name}: input must be a non-empty f64 array")
    return out
