"""Build the kernel modules: `python -m veraltheim.wasm.build [--check] [--measure]`.

Compiles wasm/src/<module>.c + vh.c with Debian's clang + lld into wasm/modules/<module>.wasm and
writes wasm/modules/manifest.json from wasm/src/kernels.toml, the computed sha256, exports and
imports of every module, and the cost hints in wasm/src/costs.json. The output is reproducible:
clang runs in wasm/src on relative paths, and nothing in the output depends on time or place.

--check   rebuild into a temporary directory and report every difference from what is committed
--measure time every kernel on wasm (through wasm.Runtime) and rewrite wasm/src/costs.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from .manifest import DEFAULT_MANIFEST_PATH, GRANT_IMPORTS, MANIFEST_FORMAT

PACKAGE_DIR = Path(__file__).resolve().parent
SRC_DIR = PACKAGE_DIR / "src"
MODULES_DIR = DEFAULT_MANIFEST_PATH.parent
CATALOGUE = SRC_DIR / "kernels.toml"
COSTS = SRC_DIR / "costs.json"
MANIFEST_NAME = DEFAULT_MANIFEST_PATH.name
SHARED_SOURCES = ("vh.c",)

# One place for the wasm compiler flags (the native baseline has its own in bench/_native.py).
WASM_CFLAGS = (
    "--target=wasm32",
    "-O2",
    "-msimd128",
    "-mbulk-memory",
    "-mnontrapping-fptoint",
    "-nostdlib",
    "-Wall",
    "-Wextra",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=65536",
)
CLANG_CANDIDATES = ("clang", "clang-14")
LINKER_CANDIDATES = ("wasm-ld", "wasm-ld-14")
COST_UNITS = ("ns_per_byte", "ns_per_pixel", "ns_per_iteration")


class BuildError(Exception):
    """The build cannot proceed; the message says why in one line."""


def find_toolchain() -> str | None:
    """Path of a clang that can link wasm32 (needs wasm-ld on PATH), or None."""
    clang = next((p for c in CLANG_CANDIDATES if (p := shutil.which(c))), None)
    linker = next((p for c in LINKER_CANDIDATES if shutil.which(c)), None)
    return clang if clang and linker else None


def toolchain_version(clang: str) -> str:
    """First line of `clang --version`: byte-identical rebuilds need this same compiler."""
    proc = subprocess.run([clang, "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.splitlines()[0].strip() if proc.stdout else clang


def committed_toolchain(modules_dir: Path = MODULES_DIR) -> str | None:
    try:
        return json.loads((modules_dir / MANIFEST_NAME).read_text()).get("toolchain")
    except (OSError, ValueError):
        return None


def load_catalogue(path: Path = CATALOGUE) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


def compile_module(clang: str, source: str, out: Path, *, simd: bool = True) -> None:
    """simd=False builds the scalar C paths (the benchmark measures what SIMD buys)."""
    flags = [f for f in WASM_CFLAGS if simd or f != "-msimd128"]
    cmd = [clang, *flags, "-o", str(out), source, *SHARED_SOURCES]
    proc = subprocess.run(cmd, cwd=SRC_DIR, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"clang failed on {source}:\n{proc.stderr.strip()}")


def describe_module(data: bytes) -> tuple[list[str], list[str]]:
    """Export names and `module.name` imports, in the module's own order."""
    module = wasmtime.Module(wasmtime.Engine(), data)
    exports = [e.name for e in module.exports]
    imports = [f"{i.module}.{i.name}" for i in module.imports]
    return exports, imports


def _param(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p["name"], "type": p["type"]}
    if p["type"] == "enum":
        out["choices"] = list(p["choices"])
    else:
        out["min"] = p.get("min")
        out["max"] = p.get("max")
    out["default"] = p.get("default")
    out["description"] = p.get("description", "")
    return out


def make_manifest(
    catalogue: dict[str, Any],
    modules: dict[str, tuple[str, bytes]],
    costs: dict[str, dict[str, float]],
    toolchain: str = "",
) -> dict[str, Any]:
    """The manifest dict, keys in a fixed order. modules: name -> (file name, wasm bytes)."""
    mods: dict[str, Any] = {}
    for name, (file, data) in modules.items():
        exports, imports = describe_module(data)
        mods[name] = {
            "file": file,
            "sha256": hashlib.sha256(data).hexdigest(),
            "exports": exports,
            "imports": imports,
        }
    kernels: dict[str, Any] = {}
    for kname, k in catalogue["kernels"].items():
        if k["module"] not in mods:
            raise BuildError(f"kernel {kname}: unknown module {k['module']!r}")
        if k["export"] not in mods[k["module"]]["exports"]:
            raise BuildError(f"kernel {kname}: module {k['module']} does not export {k['export']}")
        unknown = set(k.get("grants", [])) - set(GRANT_IMPORTS)
        if unknown:
            raise BuildError(f"kernel {kname}: unknown grants {sorted(unknown)}")
        unit = k["cost_unit"]
        if unit not in COST_UNITS:
            raise BuildError(f"kernel {kname}: unknown cost_unit {unit!r}")
        cost = costs.get(kname, {})
        kernels[kname] = {
            "module": k["module"],
            "export": k["export"],
            "description": " ".join(k["description"].split()),
            "input": dict(k["input"]),
            "params": [_param(p) for p in k.get("params", [])],
            "output": dict(k["output"]),
            "tiles": dict(k["tiles"]) if "tiles" in k else None,
            "cost": {unit: cost[unit]} if unit in cost else {},
            "grants": list(k.get("grants", [])),
        }
    for name, m in mods.items():
        granted = {
            GRANT_IMPORTS[g] for k in kernels.values() if k["module"] == name for g in k["grants"]
        }
        extra = set(m["imports"]) - granted
        if extra:
            raise BuildError(f"module {name} imports {sorted(extra)}, which no kernel grants")
    return {"format": MANIFEST_FORMAT, "toolchain": toolchain, "modules": mods, "kernels": kernels}


def manifest_text(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"


def load_costs() -> dict[str, dict[str, float]]:
    return json.loads(COSTS.read_text()) if COSTS.exists() else {}


def build(out_dir: Path, clang: str | None = None) -> list[Path]:
    """Build every module and the manifest into out_dir; returns the files written."""
    clang = clang or find_toolchain()
    if clang is None:
        raise BuildError("clang and wasm-ld are needed (Debian: apt-get install clang lld)")
    catalogue = load_catalogue()
    out_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, tuple[str, bytes]] = {}
    written = []
    for name, m in catalogue["modules"].items():
        file = f"{name}.wasm"
        compile_module(clang, m["source"], out_dir / file)
        built[name] = (file, (out_dir / file).read_bytes())
        written.append(out_dir / file)
    manifest = make_manifest(catalogue, built, load_costs(), toolchain_version(clang))
    (out_dir / MANIFEST_NAME).write_text(manifest_text(manifest))
    written.append(out_dir / MANIFEST_NAME)
    return written


def check(committed: Path = MODULES_DIR) -> list[str]:
    """Rebuild into a temp dir; one line per file that differs from the committed one."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="vh-build-") as tmp:
        for fresh in build(Path(tmp)):
            old = committed / fresh.name
            if not old.exists():
                problems.append(f"{fresh.name}: missing from {committed}")
            elif old.read_bytes() != fresh.read_bytes():
                problems.append(f"{fresh.name}: differs from a fresh build")
    return problems


# ---- cost hints -------------------------------------------------------------------------------


def _cost_jobs() -> dict[str, tuple[bytes, dict[str, Any], float]]:
    """Per kernel: a representative input, params, and the number of cost units it holds."""
    import numpy as np

    rng = np.random.default_rng(0)
    w, h = 512, 512
    img = rng.integers(0, 256, w * h * 4, dtype=np.uint8).tobytes()
    px = float(w * h)
    values = rng.standard_normal(1 << 20).tobytes()
    mw, mh, it = 256, 192, 256
    return {
        "image.grayscale": (img, {"width": w, "height": h}, px),
        "image.blur": (img, {"width": w, "height": h, "radius": 2}, px),
        "image.edges": (img, {"width": w, "height": h}, px),
        "image.resize": (img, {"width": w, "height": h, "out_width": 384, "out_height": 384}, px),
        "fractal.mandelbrot": (b"", {"width": mw, "height": mh, "max_iter": it}, mw * mh * it),
        "data.stats": (values, {"bins": 64}, float(len(values))),
        "data.sort": (values, {"dtype": "f64"}, float(len(values))),
        "hash.sha256": (bytes(4 << 20), {}, float(4 << 20)),
    }


def measure_costs(runs: int = 7) -> dict[str, dict[str, float]]:
    """Median wasm time per cost unit, through the real runtime (limits on)."""
    from veraltheim.wasm import Runtime

    catalogue = load_catalogue()
    rt = Runtime()
    costs: dict[str, dict[str, float]] = {}
    jobs = _cost_jobs()
    for name, (data, params, units) in jobs.items():
        rt.run(name, data, params)  # warm: load, compile, grow memory
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            rt.run(name, data, params)
            times.append(time.perf_counter() - t0)
        ns = statistics.median(times) * 1e9 / units
        costs[name] = {catalogue["kernels"][name]["cost_unit"]: float(f"{ns:.3g}")}
    return costs


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m veraltheim.wasm.build", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--check", action="store_true", help="compare a fresh build with wasm/modules")
    ap.add_argument("--measure", action="store_true", help="re-measure cost hints (costs.json)")
    ap.add_argument("--out", type=Path, default=MODULES_DIR, help="output directory")
    args = ap.parse_args(argv)
    try:
        if args.check:
            problems = check(args.out)
            for p in problems:
                log(p)
            clang = find_toolchain()
            built_by = committed_toolchain(args.out)
            here = toolchain_version(clang) if clang else None
            if problems and built_by and here and built_by != here:
                log(f"note: {args.out} was built by {built_by!r}, this machine has {here!r}")
            log("wasm modules are up to date" if not problems else "wasm modules are stale")
            return 1 if problems else 0
        if args.measure:
            costs = measure_costs()
            COSTS.write_text(json.dumps(costs, indent=2, sort_keys=True) + "\n")
            log(f"wrote {COSTS.relative_to(PACKAGE_DIR.parent)}")
        for f in build(args.out):
            log(f"wrote {f}")
    except BuildError as e:
        print(f"wasm.build: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
