"""Load and check wasm/modules/manifest.json (format: README.md, "Kernels"); validate a job.

Everything here is plain data and pure functions: no wasmtime.
"""

from __future__ import annotations

import json
import math
import numbers
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput, IntegrityError, UnknownKernel

MANIFEST_FORMAT = 1
DEFAULT_MANIFEST_PATH = Path(__file__).resolve().parent / "modules" / "manifest.json"

PARAM_TYPES = ("int", "float", "enum")
INPUT_KINDS = ("rgba8", "f64", "i32", "numeric", "bytes", "none")
OUTPUT_KINDS = ("rgba8", "f64", "i32", "numeric", "bytes", "stats")
# A grant names the one import it allows. Nothing else can ever be imported.
PROGRESS_IMPORT = "env.vh_progress"
GRANT_IMPORTS = {"progress": PROGRESS_IMPORT}
ABI_EXPORTS = ("memory", "vh_alloc", "vh_reset", "vh_begin", "vh_error")
# Largest int an f64 param can carry (params reach kernels as f64).
_F64_MAX_INT = int(sys.float_info.max)
# Bytes per element of the "numeric" input kind, chosen by the `dtype` enum param.
NUMERIC_ITEMSIZE = {"f64": 8, "i32": 4}


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    type: str  # "int" | "float" | "enum"
    min: float | None = None
    max: float | None = None
    default: Any = None  # None: required
    choices: tuple[str, ...] = ()
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == "enum":
            d["choices"] = list(self.choices)
        else:
            d["min"], d["max"] = self.min, self.max
        d["default"] = self.default
        d["description"] = self.description
        return d

    def range_text(self) -> str:
        """Human text for `list`: `1..16, default 2` / `f64|i32, default f64` / `required`."""
        if self.type == "enum":
            text = "|".join(self.choices)
        else:
            lo = "" if self.min is None else _num(self.min)
            hi = "" if self.max is None else _num(self.max)
            text = f"{self.type} {lo}..{hi}" if (lo or hi) else self.type
        tail = "required" if self.required else f"default {_num(self.default)}"
        return f"{text}, {tail}"

    def coerce(self, kernel: str, value: Any) -> Any:
        """Check one value; return its normalized form (int, float, or the enum choice)."""
        t = type(value)
        # Fast path for the common case (a bounded param); NaN, inf and huge ints fail the
        # comparisons and take the checks below.
        if (
            ((t is int and self.type == "int") or (t is float and self.type == "float"))
            and self.min is not None
            and self.max is not None
            and self.min <= value <= self.max
        ):
            return value
        where = f"{kernel}: param {self.name!r}"
        if self.type == "enum":
            if not isinstance(value, str) or value not in self.choices:
                raise BadInput(f"{where} must be one of {', '.join(self.choices)}, got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise BadInput(
                f"{where} must be a{'n' if self.type == 'int' else ''} {self.type}, "
                f"got {type(value).__name__} {value!r}"
            )
        exact = isinstance(value, numbers.Integral)
        if not exact and not math.isfinite(value):
            raise BadInput(f"{where} must be finite, got {value!r}")
        if self.type == "int" and not exact and not float(value).is_integer():
            raise BadInput(f"{where} must be an integer, got {value!r}")
        # Range check on the exact value: an int too big for a float is out of range,
        # not an OverflowError.
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            lo = "-inf" if self.min is None else _num(self.min)
            hi = "inf" if self.max is None else _num(self.max)
            raise BadInput(f"{where} = {_num(value)} is out of range [{lo}, {hi}]")
        if exact and abs(value) > _F64_MAX_INT:  # possible only without a max/min
            raise BadInput(f"{where} = {_num(value)} does not fit in an f64")
        return int(value) if self.type == "int" else float(value)

    def as_f64(self, value: Any) -> float:
        """The value as the kernel receives it: an enum is the index of its choice."""
        return float(self.choices.index(value)) if self.type == "enum" else float(value)


@dataclass(frozen=True, slots=True)
class KernelSpec:
    name: str
    module: str
    export: str
    description: str
    params: tuple[ParamSpec, ...]
    input_kind: str
    output_kind: str
    tiles: dict[str, Any] | None = None
    cost: dict[str, float] = field(default_factory=dict)
    grants: tuple[str, ...] = ()
    _by_name: dict[str, ParamSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    def param(self, name: str) -> ParamSpec | None:
        return self._by_name.get(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for a `kernels` reply or `list --json`)."""
        return {
            "name": self.name,
            "module": self.module,
            "description": self.description,
            "input": {"kind": self.input_kind},
            "params": [p.to_dict() for p in self.params],
            "output": {"kind": self.output_kind},
            "tiles": self.tiles,
            "cost": dict(self.cost),
            "grants": list(self.grants),
        }

    def validate_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Normalized params in manifest order, defaults filled in; BadInput on any problem."""
        given = params or {}
        if not isinstance(given, dict):
            raise BadInput(f"{self.name}: params must be a mapping, got {type(given).__name__}")
        by_name = self._by_name
        unknown = [k for k in given if k not in by_name]
        if unknown:
            known = ", ".join(p.name for p in self.params) or "none"
            raise BadInput(f"{self.name}: unknown param {unknown[0]!r} (params: {known})")
        out: dict[str, Any] = {}
        for p in self.params:
            value = given.get(p.name)
            if value is not None:
                out[p.name] = p.coerce(self.name, value)
            elif p.required:
                raise BadInput(f"{self.name}: missing param {p.name!r}")
            else:
                out[p.name] = p.default
        return out

    def check_input(self, size: int, params: dict[str, Any]) -> None:
        """BadInput unless a buffer of `size` bytes fits this kernel's input kind and params."""
        kind = self.input_kind
        if kind == "none":
            if size:
                raise BadInput(f"{self.name} takes no input, got {size} bytes")
        elif kind == "rgba8":
            w, h = params.get("width"), params.get("height")
            if w is None or h is None:
                raise BadInput(f"{self.name}: an rgba8 input needs width and height params")
            if size != w * h * 4:
                raise BadInput(
                    f"{self.name}: input is {size} bytes, a {w}x{h} RGBA8 image is {w * h * 4}"
                )
        elif kind in ("f64", "i32", "numeric"):
            dtype = params.get("dtype", "f64") if kind == "numeric" else kind
            itemsize = NUMERIC_ITEMSIZE[dtype]
            if size % itemsize:
                raise BadInput(
                    f"{self.name}: input is {size} bytes, not a whole number of "
                    f"{itemsize}-byte {dtype} values"
                )

    def param_block(self, params: dict[str, Any]) -> list[float]:
        return [p.as_f64(params[p.name]) for p in self.params]


@dataclass(frozen=True, slots=True)
class ModuleSpec:
    name: str
    file: Path
    sha256: str
    exports: tuple[str, ...]
    imports: tuple[str, ...]
    grants: frozenset[str]  # union of the grants of this module's kernels

    @property
    def allowed_imports(self) -> frozenset[str]:
        return frozenset(GRANT_IMPORTS[g] for g in self.grants)


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    modules: dict[str, ModuleSpec]
    kernels: dict[str, KernelSpec]

    def kernel(self, name: str) -> KernelSpec:
        try:
            return self.kernels[name]
        except KeyError:
            raise UnknownKernel(
                f"unknown kernel {name!r} (known: {', '.join(self.kernels) or 'none'})"
            ) from None


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and check a manifest; IntegrityError with the place of the first problem."""
    path = Path(path) if path is not None else DEFAULT_MANIFEST_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IntegrityError(f"no kernel manifest at {path}") from None
    except (OSError, ValueError) as e:
        raise IntegrityError(f"{path}: cannot read the manifest: {e}") from None
    try:
        return _parse(path, raw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise IntegrityError(f"{path}: malformed manifest: {type(e).__name__}: {e}") from None


def _parse(path: Path, raw: dict[str, Any]) -> Manifest:
    def fail(where: str, what: str) -> IntegrityError:
        return IntegrityError(f"{path}: {where}: {what}")

    if raw.get("format") != MANIFEST_FORMAT:
        raise fail("format", f"expected {MANIFEST_FORMAT}, got {raw.get('format')!r}")
    kernels: dict[str, KernelSpec] = {}
    grants_by_module: dict[str, set[str]] = {m: set() for m in raw["modules"]}
    for name, k in raw["kernels"].items():
        where = f"kernel {name}"
        if k["module"] not in grants_by_module:
            raise fail(where, f"unknown module {k['module']!r}")
        kernels[name] = spec = _parse_kernel(name, k, lambda what, w=where: fail(w, what))
        grants_by_module[k["module"]].update(spec.grants)
    modules: dict[str, ModuleSpec] = {}
    for name, m in raw["modules"].items():
        sha = m["sha256"].lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise fail(f"module {name}", f"bad sha256 {m['sha256']!r}")
        modules[name] = ModuleSpec(
            name=name,
            file=path.parent / m["file"],
            sha256=sha,
            exports=tuple(m.get("exports") or ()),
            imports=tuple(m.get("imports") or ()),
            grants=frozenset(grants_by_module[name]),
        )
        undeclared = set(modules[name].imports) - modules[name].allowed_imports
        if undeclared:
            raise fail(f"module {name}", f"imports not granted to any kernel: {sorted(undeclared)}")
    return Manifest(path=path, modules=modules, kernels=kernels)


def kernel_spec_from_dict(entry: dict[str, Any]) -> KernelSpec:
    """The inverse of `KernelSpec.to_dict` (e.g. a service's `kernels` catalogue entry),
    checked like a manifest entry; IntegrityError if it is malformed."""
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str):
        raise IntegrityError(f"kernel entry without a name: {entry!r:.100}")
    try:
        return _parse_kernel(
            name,
            {"module": "", "export": "", **entry},
            lambda what: IntegrityError(f"kernel {name}: {what}"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise IntegrityError(f"kernel {name}: malformed entry: {type(e).__name__}: {e}") from None


def _parse_kernel(name: str, k: dict[str, Any], fail) -> KernelSpec:
    grants = tuple(k.get("grants") or ())
    for g in grants:
        if g not in GRANT_IMPORTS:
            raise fail(f"unknown grant {g!r}")
    input_kind, output_kind = k["input"]["kind"], k["output"]["kind"]
    if input_kind not in INPUT_KINDS:
        raise fail(f"unknown input kind {input_kind!r}")
    if output_kind not in OUTPUT_KINDS:
        raise fail(f"unknown output kind {output_kind!r}")
    params = tuple(_parse_param(p, fail) for p in k["params"])
    if len({p.name for p in params}) != len(params):
        raise fail("duplicate param names")
    return KernelSpec(
        name=name,
        module=k["module"],
        export=k["export"],
        description=k.get("description", ""),
        params=params,
        input_kind=input_kind,
        output_kind=output_kind,
        tiles=k.get("tiles"),
        cost=dict(k.get("cost") or {}),
        grants=grants,
    )


def _parse_param(p: dict[str, Any], fail) -> ParamSpec:
    ptype = p["type"]
    if ptype not in PARAM_TYPES:
        raise fail(f"param {p['name']}: unknown type {ptype!r}")
    choices = tuple(p.get("choices") or ())
    if ptype == "enum" and not choices:
        raise fail(f"param {p['name']}: an enum needs choices")
    spec = ParamSpec(
        name=p["name"],
        type=ptype,
        min=p.get("min"),
        max=p.get("max"),
        default=None,
        choices=choices,
        description=p.get("description", ""),
    )
    default = p.get("default")
    if default is not None:
        try:
            default = spec.coerce("manifest", default)
        except BadInput as e:
            raise fail(f"param {p['name']}: bad default: {e}") from None
    return ParamSpec(
        name=spec.name,
        type=ptype,
        min=spec.min,
        max=spec.max,
        default=default,
        choices=choices,
        description=spec.description,
    )


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, int) and abs(v) >= 10**15:
        # Keep the message one short line (and str() refuses ints of over 4300 digits).
        return f"{'a negative' if v < 0 else 'a'} {v.bit_length()}-bit integer"
    return str(v)
