"""Users' own kernels: the spec file, the install checks, and the store they are installed in.

A user kernel is one wasm module plus a spec (TOML on disk, JSON on the wire) with the fields of
wasm/src/kernels.toml (name, export, description, input, output, params, tiles, grants) and at
least one example (input, params, expected output). `check_kernel` refuses a module with one line
naming the failed check; `UserKernelStore` pins what passed by sha256 in a directory whose
`manifest.json` the Runtime reads beside the built-in one (README.md, "Your own kernels").

Everything here is bounded: a module, a spec and its examples have size limits checked before
anything is parsed or compiled.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import IntegrityError, KernelError
from .limits import DEFAULT_MEMORY_LIMIT_BYTES
from .manifest import MANIFEST_FORMAT, KernelSpec, kernel_spec_from_dict
from .user_dirs import default_user_kernels_dir

# Limits of what a user may install (also what the service accepts in one upload).
MAX_MODULE_BYTES = 8 << 20
MAX_SPEC_JSON_BYTES = 64 << 10  # the spec without its examples
MAX_EXAMPLES = 8
MAX_EXAMPLES_BYTES = 2 << 20  # all example inputs and outputs together
MAX_PARAMS = 32
MAX_NAME_CHARS = 64
MAX_DESCRIPTION_CHARS = 4000
MAX_HALO = 64
EXAMPLE_DEADLINE_S = 10.0  # each example must finish within this at install
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
EXPORT_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
WASM_MAGIC = b"\0asm\x01\0\0\0"
PAGE_BYTES = 65536
# Fields of a spec (those of wasm/src/kernels.toml, less `module`: a spec has its own module).
SPEC_FIELDS = frozenset(
    {"name", "export", "description", "input", "output", "params", "tiles", "grants"}
    | {"cost_unit", "examples", "build"}
)
MANIFEST_NAME = "manifest.json"


class InstallRefused(IntegrityError):
    """A kernel that failed an install check; the message is `<check>: <what is wrong>`."""

    code = "refused"

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(f"refused ({check}): {detail}")
        self.check = check


# ---- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    input: bytes
    params: dict[str, Any]
    output: bytes


@dataclass(frozen=True, slots=True)
class KernelPackage:
    """What is installed or uploaded: the module and its spec (examples inline)."""

    wasm: bytes
    spec: dict[str, Any]  # JSON-able, without examples
    examples: tuple[Example, ...]

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.wasm).hexdigest()

    def wire_spec(self) -> dict[str, Any]:
        """The spec as JSON, examples base64: the upload header and the stored package."""
        return {
            **self.spec,
            "examples": [
                {
                    "input": base64.b64encode(e.input).decode(),
                    "params": e.params,
                    "output": base64.b64encode(e.output).decode(),
                }
                for e in self.examples
            ],
        }


def load_spec_file(path: str | Path) -> tuple[dict[str, Any], tuple[Example, ...]]:
    """A kernel.toml: the spec and its examples (files relative to the spec's folder)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPEC_JSON_BYTES:
            raise InstallRefused("spec", f"{path} is over {MAX_SPEC_JSON_BYTES} bytes")
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise InstallRefused("spec", f"cannot read {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InstallRefused("spec", f"{path} is not valid TOML: {e}") from None
    examples = []
    total = 0
    items = raw.get("examples") or []
    if not isinstance(items, list) or len(items) > MAX_EXAMPLES:
        raise InstallRefused("spec", f"examples must be a list of at most {MAX_EXAMPLES}")
    for i, ex in enumerate(items, 1):
        if not isinstance(ex, dict):
            raise InstallRefused("spec", f"example {i} must be a table")
        files = {}
        for key in ("input", "output"):
            ref = ex.get(key)
            if ref is None and key == "input":
                files[key] = b""
                continue
            if not isinstance(ref, str):
                raise InstallRefused("spec", f"example {i}: {key} must name a file")
            file = path.parent / ref
            try:
                size = file.stat().st_size
                total += size
                if total > MAX_EXAMPLES_BYTES:
                    raise InstallRefused("spec", f"examples are over {MAX_EXAMPLES_BYTES} bytes")
                files[key] = file.read_bytes()
            except OSError as e:
                raise InstallRefused("spec", f"example {i}: cannot read {file}: {e}") from None
        examples.append(Example(files["input"], dict(ex.get("params") or {}), files["output"]))
    spec = {k: v for k, v in raw.items() if k not in ("examples", "build")}
    return spec, tuple(examples)


def package_from_wire(wasm: bytes, wire: Any) -> KernelPackage:
    """The inverse of `KernelPackage.wire_spec` (an upload, a fetched or a stored package);
    every size bounded before it is decoded."""
    if not isinstance(wire, dict):
        raise InstallRefused("spec", "the spec must be a JSON object")
    items = wire.get("examples") or []
    if not isinstance(items, list) or len(items) > MAX_EXAMPLES:
        raise InstallRefused("spec", f"examples must be a list of at most {MAX_EXAMPLES}")
    examples, total = [], 0
    for i, ex in enumerate(items, 1):
        if not isinstance(ex, dict):
            raise InstallRefused("spec", f"example {i} must be an object")
        blobs = []
        for key in ("input", "output"):
            text = ex.get(key, "")
            if not isinstance(text, str):
                raise InstallRefused("spec", f"example {i}: {key} must be base64 text")
            total += len(text) * 3 // 4
            if total > MAX_EXAMPLES_BYTES:
                raise InstallRefused("spec", f"examples are over {MAX_EXAMPLES_BYTES} bytes")
            try:
                blobs.append(base64.b64decode(text, validate=True))
            except (binascii.Error, ValueError):
                raise InstallRefused("spec", f"example {i}: {key} is not base64") from None
        params = ex.get("params") or {}
        if not isinstance(params, dict):
            raise InstallRefused("spec", f"example {i}: params must be an object")
        examples.append(Example(blobs[0], params, blobs[1]))
    spec = {k: v for k, v in wire.items() if k != "examples"}
    return KernelPackage(bytes(wasm), spec, tuple(examples))


def parse_spec(spec: dict[str, Any]) -> KernelSpec:
    """The KernelSpec a user spec describes; InstallRefused("spec") naming the problem."""
    unknown = sorted(set(spec) - SPEC_FIELDS)
    if unknown:
        raise InstallRefused("spec", f"unknown field {unknown[0]!r}")
    try:
        size = len(json.dumps(spec, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise InstallRefused("spec", f"not JSON-able: {e}") from None
    if size > MAX_SPEC_JSON_BYTES:
        raise InstallRefused("spec", f"over {MAX_SPEC_JSON_BYTES} bytes")
    name, export = spec.get("name"), spec.get("export")
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not NAME_PATTERN.match(name):
        raise InstallRefused(
            "spec", f"name must look like 'user.invert' (lowercase, dotted), got {name!r:.80}"
        )
    if not isinstance(export, str) or not EXPORT_PATTERN.match(export):
        raise InstallRefused("spec", f"export must be a C identifier, got {export!r:.80}")
    if export.startswith("vh_"):
        raise InstallRefused("spec", f"export {export} is an ABI name")
    description = spec.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise InstallRefused("spec", f"description must be text of {MAX_DESCRIPTION_CHARS} chars")
    params = spec.get("params") or []
    if not isinstance(params, list) or len(params) > MAX_PARAMS:
        raise InstallRefused("spec", f"params must be a list of at most {MAX_PARAMS}")
    for key in ("input", "output"):
        if not isinstance(spec.get(key), dict):
            raise InstallRefused("spec", f'{key} must be a table like {{ kind = "bytes" }}')
    tiles = spec.get("tiles")
    if tiles is not None:
        halo = tiles.get("halo", 0) if isinstance(tiles, dict) else None
        # a halo named by a param must be an int param (the service reads it as rows)
        names = {p.get("name") for p in params if isinstance(p, dict) and p.get("type") == "int"}
        if (
            not isinstance(tiles, dict)
            or set(tiles) - {"axis", "halo"}
            or tiles.get("axis") != "rows"
            or not (
                (isinstance(halo, int) and not isinstance(halo, bool) and 0 <= halo <= MAX_HALO)
                or (isinstance(halo, str) and halo in names)
            )
        ):
            raise InstallRefused(
                "spec", f'tiles must be {{ axis = "rows", halo = 0..{MAX_HALO} or an int param }}'
            )
    entry = {
        "name": name,
        "module": "",
        "export": export,
        "description": " ".join(description.split()),
        "input": spec["input"],
        "output": spec["output"],
        "params": params,
        "tiles": tiles,
        "cost": {},
        "grants": spec.get("grants") or [],
    }
    try:
        return kernel_spec_from_dict(entry)
    except IntegrityError as e:
        raise InstallRefused("spec", str(e).removeprefix(f"kernel {name}: ")) from None


def module_name(sha256: str) -> str:
    return f"user_{sha256[:16]}"


def manifest_entry(spec: KernelSpec, module: str) -> dict[str, Any]:
    """A kernel's manifest entry (wasm/modules/manifest.json shape)."""
    d = spec.to_dict()
    return {
        "module": module,
        "export": spec.export,
        "description": d["description"],
        "input": d["input"],
        "params": d["params"],
        "output": d["output"],
        "tiles": d["tiles"],
        "cost": {},
        "grants": d["grants"],
    }


# ---- the checks -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckedKernel:
    spec: KernelSpec
    sha256: str
    exports: list[str]
    imports: list[str]
    examples_ms: float


def check_kernel(
    package: KernelPackage,
    *,
    reserved_names: frozenset[str] | set[str] = frozenset(),
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    cache_dir: str | Path | None = None,
    example_deadline_s: float = EXAMPLE_DEADLINE_S,
) -> CheckedKernel:
    """Every install check, in order; InstallRefused with the first that fails. Compiles the
    module and runs its examples: call it off the event loop."""
    wasm = package.wasm
    if len(wasm) > MAX_MODULE_BYTES:
        raise InstallRefused("size", f"module is {len(wasm)} bytes, over {MAX_MODULE_BYTES}")
    if not wasm.startswith(WASM_MAGIC):
        raise InstallRefused("not wasm", "the file is not a WebAssembly module (no \\0asm header)")
    spec = parse_spec(package.spec)
    if spec.name in reserved_names:
        raise InstallRefused("name", f"{spec.name} is a built-in kernel's name")
    if not package.examples:
        raise InstallRefused("examples", "the spec has no [[examples]]: at least one is needed")
    sha = package.sha256
    module = module_name(sha)
    # The same loader, interface checks and sandbox as every kernel: a one-kernel manifest.
    from .runtime import Runtime, check_exports, check_imports

    with tempfile.TemporaryDirectory(prefix="vh-check-") as tmp:
        wasm_file = Path(tmp) / f"{sha}.wasm"
        wasm_file.write_bytes(wasm)
        manifest = _manifest(
            {spec.name: manifest_entry(spec, module)},
            {module: {"file": wasm_file.name, "sha256": sha, "exports": [], "imports": []}},
        )
        (Path(tmp) / MANIFEST_NAME).write_text(json.dumps(manifest))
        rt = Runtime(
            Path(tmp) / MANIFEST_NAME,
            cache_dir=cache_dir,
            memory_limit_bytes=memory_limit_bytes,
            user_kernels=False,
        )
        try:
            compiled = rt.compile_unchecked(module)
        except KernelError as e:
            raise InstallRefused("not wasm", _tail(str(e))) from None
        mspec = rt.manifest.modules[module]
        try:
            check_imports(mspec, compiled)
        except IntegrityError as e:
            raise InstallRefused("imports", _tail(str(e))) from None
        try:
            check_exports(mspec, compiled, rt.manifest)
        except IntegrityError as e:
            raise InstallRefused("exports", _tail(str(e))) from None
        _check_memory(compiled, memory_limit_bytes)
        t0 = time.perf_counter()
        for i, ex in enumerate(package.examples, 1):
            try:
                out = rt.run(spec.name, ex.input, ex.params, deadline_s=example_deadline_s).output
            except KernelError as e:
                raise InstallRefused("examples", f"example {i}: {_tail(str(e))}") from None
            if out != ex.output:
                raise InstallRefused("examples", f"example {i}: {_difference(out, ex.output)}")
        examples_ms = (time.perf_counter() - t0) * 1000
        exports = [e.name for e in compiled.exports]
        imports = [f"{i.module}.{i.name}" for i in compiled.imports]
    return CheckedKernel(spec, sha, exports, imports, examples_ms)


def _check_memory(compiled: Any, limit: int) -> None:
    import wasmtime

    for exp in compiled.exports:
        ty = exp.type
        if isinstance(ty, wasmtime.MemoryType):
            if ty.is_64 or ty.is_shared:
                raise InstallRefused("memory", f"memory {exp.name} must be a plain 32-bit memory")
            minimum = ty.limits.min * PAGE_BYTES
            if minimum > limit:
                raise InstallRefused(
                    "memory",
                    f"the module declares a memory minimum of {_size(minimum)}, "
                    f"over the memory limit of {_size(limit)}",
                )


def _difference(got: bytes, want: bytes) -> str:
    if len(got) != len(want):
        return f"output is {len(got)} bytes, the expected output {len(want)}"
    at = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
    return f"output differs from the expected one at byte {at} ({got[at]} != {want[at]})"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def _tail(message: str) -> str:
    """The runtime's message without the temporary module's name."""
    return re.sub(r"module user_[0-9a-f]{16}:? ", "the module ", message)


def _manifest(kernels: dict[str, Any], modules: dict[str, Any]) -> dict[str, Any]:
    return {"format": MANIFEST_FORMAT, "modules": modules, "kernels": kernels}


# ---- the store --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Installed:
    name: str
    sha256: str
    installed_by: str
    installed_at: float
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "installed_by": self.installed_by,
            "installed_at": self.installed_at,
        }


class UserKernelStore:
    """A directory of installed kernels: modules/<sha256>.wasm, packages/<sha256>.json (the
    spec with its examples, for fetching) and manifest.json (the Runtime's view). Writes are
    atomic (temp file + rename) and serialized by a lock file."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_user_kernels_dir()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _manifest({}, {})
        except (OSError, ValueError) as e:
            raise IntegrityError(f"{self.manifest_path}: cannot read: {e}") from None
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
            raise IntegrityError(f"{self.manifest_path}: not a kernel manifest")
        return raw

    def list(self) -> list[Installed]:
        out = []
        for name, k in sorted(self.read().get("kernels", {}).items()):
            info = k.get("installed") or {}
            out.append(
                Installed(
                    name,
                    str(info.get("sha256", "")),
                    str(info.get("by", "")),
                    float(info.get("at", 0.0)),
                    str(k.get("description", "")),
                )
            )
        return out

    def get(self, name: str) -> Installed | None:
        return next((k for k in self.list() if k.name == name), None)

    def package(self, name: str) -> KernelPackage:
        """The installed module and spec, hash-checked (to upload, or to serve a fetch)."""
        info = self.get(name)
        if info is None:
            raise KernelError(f"no installed kernel {name!r}")
        wasm = (self.root / "modules" / f"{info.sha256}.wasm").read_bytes()
        if hashlib.sha256(wasm).hexdigest() != info.sha256:
            raise IntegrityError(f"{name}: the stored module does not match its sha256")
        wire = json.loads((self.root / "packages" / f"{info.sha256}-{name}.json").read_text())
        return package_from_wire(wasm, wire)

    def add(self, package: KernelPackage, checked: CheckedKernel, installed_by: str) -> Installed:
        """Store a package that passed `check_kernel`; replaces a kernel of the same name."""
        sha = checked.sha256
        module = module_name(sha)
        with self._locked():
            raw = self.read()
            _write_atomic(self.root / "modules" / f"{sha}.wasm", package.wasm)
            _write_atomic(
                self.root / "packages" / f"{sha}-{checked.spec.name}.json",
                json.dumps(package.wire_spec()).encode(),
            )
            raw["modules"][module] = {
                "file": f"modules/{sha}.wasm",
                "sha256": sha,
                "exports": checked.exports,
                "imports": checked.imports,
            }
            now = time.time()
            raw["kernels"][checked.spec.name] = {
                **manifest_entry(checked.spec, module),
                "installed": {"by": installed_by, "at": now, "sha256": sha},
            }
            self._write_manifest(raw)
        return Installed(checked.spec.name, sha, installed_by, now, checked.spec.description)

    def remove(self, name: str) -> Installed:
        with self._locked():
            raw = self.read()
            entry = raw["kernels"].pop(name, None)
            if entry is None:
                raise KernelError(f"no installed kernel {name!r}")
            info = entry.get("installed") or {}
            sha = str(info.get("sha256", ""))
            with contextlib.suppress(OSError):
                (self.root / "packages" / f"{sha}-{name}.json").unlink()
            if not any(k["module"] == entry["module"] for k in raw["kernels"].values()):
                raw["modules"].pop(entry["module"], None)
                with contextlib.suppress(OSError):
                    (self.root / "modules" / f"{sha}.wasm").unlink()
            self._write_manifest(raw)
        return Installed(name, sha, str(info.get("by", "")), float(info.get("at", 0.0)), "")

    def _write_manifest(self, raw: dict[str, Any]) -> None:
        _write_atomic(self.manifest_path, (json.dumps(raw, indent=2) + "\n").encode())

    @contextlib.contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as f:
            try:
                import fcntl
            except ImportError:  # Windows: one writer at a time is the user's business
                yield
                return
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def install(
    package: KernelPackage,
    store: UserKernelStore,
    *,
    installed_by: str,
    reserved_names: frozenset[str] | set[str] = frozenset(),
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    cache_dir: str | Path | None = None,
    example_deadline_s: float = EXAMPLE_DEADLINE_S,
) -> Installed:
    """check_kernel, then store: what `veraltheim-kernel add` and the service's upload do."""
    checked = check_kernel(
        package,
        reserved_names=reserved_names,
        memory_limit_bytes=memory_limit_bytes,
        cache_dir=cache_dir,
        example_deadline_s=example_deadline_s,
    )
    return store.add(package, checked, installed_by)
