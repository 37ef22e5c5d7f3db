"""What the service can run: the wasm manifest's kernels plus the remote-only native ones."""

from __future__ import annotations

import dataclasses
from typing import Any

from service.compute.errors import BAD_INPUT, UNKNOWN_KERNEL, ComputeError, reason_for
from service.compute.native import NATIVE_KERNELS, validate_native


def _param_entry(p: Any) -> dict[str, Any]:
    if isinstance(p, dict):
        return p
    fields = ("name", "type", "min", "max", "default", "choices", "description")
    return {f: _jsonable(getattr(p, f, None)) for f in fields}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return value


def spec_entry(spec: Any) -> dict[str, Any]:
    """A wasm KernelSpec as the manifest-shaped JSON entry the `kernels` reply lists."""
    if hasattr(spec, "to_dict"):
        return {**spec.to_dict(), "remote_only": False}
    return {
        "description": spec.description,
        "input": {"kind": spec.input_kind},
        "params": [_param_entry(p) for p in spec.params],
        "output": {"kind": spec.output_kind},
        "tiles": _jsonable(spec.tiles),
        "cost": _jsonable(spec.cost),
        "grants": _jsonable(list(spec.grants or ())),
        "remote_only": False,
    }


class Catalogue:
    """Kernel entries by name and request validation, for the service process."""

    def __init__(self, runtime: Any | None) -> None:
        self.runtime = runtime
        self.entries: dict[str, dict[str, Any]] = {}
        if runtime is not None:
            for spec in runtime.catalogue():
                self.entries[spec.name] = spec_entry(spec)
        for name, native in NATIVE_KERNELS.items():
            self.entries[name] = {**native.entry, "remote_only": True}

    def validate(self, name: str, data: bytes, params: Any) -> dict[str, Any]:
        """Normalized params for a request, or ComputeError(unknown_kernel | bad_input)."""
        if name not in self.entries:
            raise ComputeError(UNKNOWN_KERNEL, f"unknown kernel {name!r}")
        if not isinstance(params, dict):
            raise ComputeError(BAD_INPUT, f"{name}: params must be a JSON object")
        if name in NATIVE_KERNELS:
            return validate_native(name, data, params)
        try:
            return dict(self.runtime.validate(name, data, params))
        except Exception as exc:  # the runtime's BadInput etc. carry a one-line message
            reason = reason_for(exc)
            raise ComputeError(reason if reason != "internal" else BAD_INPUT, str(exc)) from None

    def tiles(self, name: str) -> dict[str, Any] | None:
        return self.entries[name].get("tiles")

    def output_kind(self, name: str) -> str:
        return self.entries[name]["output"]["kind"]
