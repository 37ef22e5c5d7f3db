"""What the service can run: the wasm manifest's kernels plus the remote-only native ones."""

from __future__ import annotations

import logging
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.service.compute.errors import ComputeError, reason_for
from veraltheim.service.compute.native import NATIVE_KERNELS, validate_native

log = logging.getLogger(__name__)

RGBA = 4
F64 = 8
STATS_BYTES = 5 * F64  # count, mean, std, min, max; then one f64 per histogram bin


def spec_entry(spec: Any) -> dict[str, Any]:
    """A wasm KernelSpec as the manifest-shaped JSON entry the `kernels` reply lists."""
    return {**spec.to_dict(), "remote_only": False}


class Catalogue:
    """Kernel entries by name and request validation, for the service process."""

    def __init__(self, runtime: Any | None, user_kernels: Any | None = None) -> None:
        self.runtime = runtime
        self.entries: dict[str, dict[str, Any]] = {}
        installed = _installed(user_kernels)
        if runtime is not None:
            for spec in runtime.catalogue():
                self.entries[spec.name] = entry = spec_entry(spec)
                info = installed.get(spec.name) if spec.name in runtime.user_kernel_names else None
                if info is not None:  # who installed it and when; its module's sha256
                    entry["installed"] = info.to_dict()
                    entry["sha256"] = info.sha256
        for name, native in NATIVE_KERNELS.items():
            self.entries[name] = {**native.entry, "remote_only": True}

    def validate(self, name: str, data: bytes, params: Any) -> dict[str, Any]:
        """Normalized params for a request, or ComputeError(unknown_kernel | bad_input)."""
        if name not in self.entries:
            raise ComputeError(Reason.UNKNOWN_KERNEL, f"unknown kernel {name!r}")
        if not isinstance(params, dict):
            raise ComputeError(Reason.BAD_INPUT, f"{name}: params must be a JSON object")
        if name in NATIVE_KERNELS:
            return validate_native(name, data, params)
        try:
            return dict(self.runtime.validate(name, data, params))
        except Exception as exc:  # the runtime's BadInput etc. carry a one-line message
            reason = reason_for(exc)
            raise ComputeError(
                reason if reason != Reason.INTERNAL else Reason.BAD_INPUT, str(exc)
            ) from None

    def tiles(self, name: str) -> dict[str, Any] | None:
        entry = self.entries.get(name)
        return entry.get("tiles") if entry is not None else None

    def output_kind(self, name: str) -> str:
        return self.entries[name]["output"]["kind"]

    def output_bytes(self, name: str, input_bytes: int, params: dict[str, Any]) -> int | None:
        """How big a job's output will be, from its validated params (None: not known before
        it runs)."""
        kind = self.output_kind(name)
        if kind == "numeric":
            return input_bytes
        if kind == "stats":
            return STATS_BYTES + F64 * int(params.get("bins", 0))
        if kind != "rgba8":
            return None
        width = params.get("out_width", params.get("width"))
        height = params.get("out_height", params.get("height"))
        if not isinstance(width, int | float) or not isinstance(height, int | float):
            return None
        rows = int(height)
        if "row_start" in params and "row_end" in params:  # a band of rows (mandelbrot)
            rows = (int(params["row_end"]) or rows) - int(params["row_start"])
        return int(width) * max(0, rows) * RGBA


def _installed(user_kernels: Any | None) -> dict[str, Any]:
    """Who installed which user kernel; a broken store lists nothing (the Runtime skips it too)."""
    if user_kernels is None:
        return {}
    try:
        return {k.name: k for k in user_kernels.list()}
    except Exception as exc:
        log.warning("user kernels not listed: %s", exc)
        return {}
