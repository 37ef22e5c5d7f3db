"""Kernel benchmark: wasm (through wasm.Runtime, limits on) vs the same C built natively with
gcc -O2 (ctypes) vs the best Python peer (numpy / hashlib), interleaved, medians.

    .venv/bin/python bench/kernels.py [--rounds N]

The wasm modules use wasm SIMD intrinsics where they pay; those paths exist only for wasm (`VH_SIMD`
in vh.h), so the native build runs the scalar C paths (which gcc -O2 may auto-vectorize). To keep
the comparison honest every kernel also runs as a scalar wasm build (the same C without
-msimd128, so the same code as native): `wasm_scalar_vs_native` compares like with like, and
`simd_speedup` is what the SIMD paths buy on wasm.

Prints ONE JSON object on stdout (progress goes to stderr):
{"kernels": {"image.blur": {"input", "wasm_ms", "wasm_scalar_ms", "native_ms", "peer", "peer_ms",
 "wasm_vs_native", "wasm_scalar_vs_native", "simd_speedup", "wasm_vs_peer"}, ...},
 "builds": {...what each column is...}, "call_overhead_us", "load_ms": {"compile", "cached"},
 "goals"}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from veraltheim.wasm import Runtime
from veraltheim.wasm.build import (
    MANIFEST_NAME,
    MODULES_DIR,
    WASM_CFLAGS,
    compile_module,
    find_toolchain,
    load_catalogue,
)
from veraltheim.wasm.manifest import load_manifest

from bench._native import NATIVE_CFLAGS, NativeKernelError, NativeModule, build_native

IMAGE_W, IMAGE_H = 1920, 1080
MANDEL_W, MANDEL_H, MANDEL_ITER = 1024, 768, 256
N_VALUES = 8 << 20  # 8 Mi f64
HASH_BYTES = 16 << 20
BLUR_RADIUS = 2

GOAL_WASM_VS_NATIVE = 1.3
GOAL_SHA256_VS_NATIVE = 1.7
GOAL_BLUR_VS_NUMPY = 2.0
GOAL_CALL_OVERHEAD_US = 40.0
GOAL_CACHED_LOAD_MS = 1.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- numpy peers: the same filters as the kernels (checked equal to the wasm output) ------------


def np_grayscale(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.uint32)
    y = (77 * a[..., 0] + 150 * a[..., 1] + 29 * a[..., 2] + 128) >> 8
    out = np.empty_like(img)
    out[..., 0] = out[..., 1] = out[..., 2] = y
    out[..., 3] = img[..., 3]
    return out


def blur_weights(r: int) -> list[int]:
    sigma = r / 2
    g = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(r + 1)]
    total = g[0] + 2 * sum(g[1:])
    w = [0] + [round(65536 * g[k] / total) for k in range(1, r + 1)]
    w[0] = 65536 - 2 * sum(w[1:])
    return w


def np_blur(img: np.ndarray, r: int) -> np.ndarray:
    w = blur_weights(r)
    h, wd, _ = img.shape
    p = np.pad(img, ((0, 0), (r, r), (0, 0)), mode="edge").astype(np.uint32)
    acc = w[0] * p[:, r : r + wd] + 32768
    for k in range(1, r + 1):
        acc += w[k] * (p[:, r - k : r - k + wd] + p[:, r + k : r + k + wd])
    t = np.pad(acc >> 16, ((r, r), (0, 0), (0, 0)), mode="edge")
    acc = w[0] * t[r : r + h] + 32768
    for k in range(1, r + 1):
        acc += w[k] * (t[r - k : r - k + h] + t[r + k : r + k + h])
    return (acc >> 16).astype(np.uint8)


def np_edges(img: np.ndarray) -> np.ndarray:
    a = img.astype(np.int32)
    y = (77 * a[..., 0] + 150 * a[..., 1] + 29 * a[..., 2] + 128) >> 8
    p = np.pad(y, 1, mode="edge")
    h, w = y.shape

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    n = np.minimum(gx * gx + gy * gy, 65025).astype(np.float32)
    m = np.sqrt(n).astype(np.uint8)
    out = np.empty((h, w, 4), np.uint8)
    out[..., 0] = out[..., 1] = out[..., 2] = m
    out[..., 3] = 255
    return out


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.arange(n_out, dtype=np.int64)
    num = np.maximum((2 * i + 1) * n_in - n_out, 0)
    den = 2 * n_out
    q = num // den
    return q, np.minimum(q + 1, n_in - 1), (num - q * den) * 256 // den


def np_resize(img: np.ndarray, ow: int, oh: int) -> np.ndarray:
    h, w, _ = img.shape
    x0, x1, fx = _axis(w, ow)
    y0, y1, fy = _axis(h, oh)
    a = img.astype(np.uint32)
    fx, fy = fx.astype(np.uint32)[None, :, None], fy.astype(np.uint32)[:, None, None]
    top, bot = a[y0], a[y1]
    t = top[:, x0] * (256 - fx) + top[:, x1] * fx
    b = bot[:, x0] * (256 - fx) + bot[:, x1] * fx
    return ((t * (256 - fy) + b * fy + 32768) >> 16).astype(np.uint8)


def np_mandelbrot(w: int, h: int, cx0: float, cy0: float, scale: float, it: int) -> np.ndarray:
    step = scale / w
    cx = cx0 + ((np.arange(w) + 0.5) - w * 0.5) * step
    cy = cy0 - ((np.arange(h) + 0.5) - h * 0.5) * step
    cxs = np.broadcast_to(cx[None, :], (h, w)).ravel().copy()
    cys = np.broadcast_to(cy[:, None], (h, w)).ravel().copy()
    n = np.full(w * h, it, dtype=np.int64)
    idx = np.arange(w * h)
    zx = np.zeros(w * h)
    zy = np.zeros(w * h)
    for i in range(it):
        x2, y2 = zx * zx, zy * zy
        esc = x2 + y2 > 4.0
        if esc.any():
            n[idx[esc]] = i
            keep = ~esc
            idx, zx, zy, x2, y2 = idx[keep], zx[keep], zy[keep], x2[keep], y2[keep]
            cxs, cys = cxs[keep], cys[keep]
            if idx.size == 0:
                break
        zy = 2.0 * zx * zy + cys
        zx = x2 - y2 + cxs
    t = n / it
    u = 1.0 - t
    out = np.empty((w * h, 4), np.uint8)
    out[:, 0] = (9.0 * u * t * t * t * 255.0).astype(np.int32)
    out[:, 1] = (15.0 * u * u * t * t * 255.0).astype(np.int32)
    out[:, 2] = (8.5 * u * u * u * t * 255.0).astype(np.int32)
    out[n >= it, :3] = 0
    out[:, 3] = 255
    return out


def np_stats(x: np.ndarray, bins: int) -> np.ndarray:
    f = x[np.isfinite(x)]
    mn, mx = f.min(), f.max()
    counts, _ = np.histogram(f, bins, (mn, mx))
    return np.concatenate([[f.size, f.mean(), f.std(), mn, mx], counts.astype(np.float64)])


# ---- the benchmark ----------------------------------------------------------------------------


@dataclass
class Case:
    kernel: str
    input_text: str
    data: bytes
    params: dict
    peer: str
    peer_fn: Callable[[], bytes | np.ndarray]
    exact_peer: bool  # the peer computes the same bytes


def cases(rng: np.random.Generator) -> list[Case]:
    img = rng.integers(0, 256, (IMAGE_H, IMAGE_W, 4), dtype=np.uint8)
    img_b = img.tobytes()
    dims = {"width": IMAGE_W, "height": IMAGE_H}
    values = rng.standard_normal(N_VALUES) * 1e3
    blob = rng.integers(0, 256, HASH_BYTES, dtype=np.uint8).tobytes()
    m = {"width": MANDEL_W, "height": MANDEL_H, "max_iter": MANDEL_ITER}
    spec = load_manifest().kernel("fractal.mandelbrot")
    cx, cy, sc = (spec.param(n).default for n in ("center_x", "center_y", "scale"))
    img_text = f"{IMAGE_W}x{IMAGE_H} RGBA8"
    return [
        Case("image.grayscale", img_text, img_b, dims, "numpy", lambda: np_grayscale(img), True),
        Case(
            "image.blur",
            f"{img_text}, radius {BLUR_RADIUS}",
            img_b,
            {**dims, "radius": BLUR_RADIUS},
            "numpy",
            lambda: np_blur(img, BLUR_RADIUS),
            True,
        ),
        Case("image.edges", img_text, img_b, dims, "numpy", lambda: np_edges(img), True),
        Case(
            "image.resize",
            f"{img_text} -> 1280x720",
            img_b,
            {**dims, "out_width": 1280, "out_height": 720},
            "numpy",
            lambda: np_resize(img, 1280, 720),
            True,
        ),
        Case(
            "fractal.mandelbrot",
            f"{MANDEL_W}x{MANDEL_H}, {MANDEL_ITER} iterations",
            b"",
            m,
            "numpy",
            lambda: np_mandelbrot(MANDEL_W, MANDEL_H, cx, cy, sc, MANDEL_ITER),
            True,
        ),
        Case(
            "data.stats",
            "8 Mi f64, 64 bins",
            values.tobytes(),
            {"bins": 64},
            "numpy",
            lambda: np_stats(values, 64),
            False,
        ),
        Case(
            "data.sort",
            "8 Mi f64",
            values.tobytes(),
            {"dtype": "f64"},
            "numpy",
            lambda: np.sort(values),
            True,
        ),
        Case(
            "hash.sha256",
            "16 MiB",
            blob,
            {},
            "hashlib",
            lambda: hashlib.sha256(blob).digest(),
            True,
        ),
    ]


def _as_bytes(v: bytes | np.ndarray) -> bytes:
    return v if isinstance(v, bytes) else np.ascontiguousarray(v).tobytes()


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


RUNNERS = ("wasm", "wasm_scalar", "native", "peer")


def bench_kernels(
    rt: Runtime, scalar: Runtime, native: dict[str, NativeModule], rounds: int
) -> dict:
    rng = np.random.default_rng(2026)
    all_cases = cases(rng)
    times: dict[str, dict[str, list[float]]] = {
        c.kernel: {k: [] for k in RUNNERS} for c in all_cases
    }
    for case in all_cases:
        spec = rt.spec(case.kernel)
        params = spec.validate_params(case.params)
        block = spec.param_block(params)
        lib = native[spec.module]
        runners = {
            "wasm": lambda case=case: rt.run(case.kernel, case.data, case.params).output,
            "wasm_scalar": lambda case=case: scalar.run(case.kernel, case.data, case.params).output,
            "native": lambda lib=lib, spec=spec, case=case, block=block: lib.call(
                spec.export, case.data, block
            ),
            "peer": case.peer_fn,
        }
        # Warm up and check that all of them agree before timing anything.
        outs = {k: _as_bytes(f()) for k, f in runners.items()}
        for k in ("wasm_scalar", "native"):
            if outs[k] != outs["wasm"]:
                raise SystemExit(f"{case.kernel}: {k} and wasm outputs differ")
        if case.exact_peer and outs["peer"] != outs["wasm"]:
            raise SystemExit(f"{case.kernel}: the {case.peer} peer computes something else")
        case.runners = runners  # type: ignore[attr-defined]
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}")
        for i, case in enumerate(all_cases):
            shift = (r + i) % len(RUNNERS)
            for k in RUNNERS[shift:] + RUNNERS[:shift]:
                ms, _ = timed(case.runners[k])  # type: ignore[attr-defined]
                times[case.kernel][k].append(ms)
    result = {}
    for case in all_cases:
        t = {k: statistics.median(v) for k, v in times[case.kernel].items()}
        result[case.kernel] = {
            "input": case.input_text,
            "wasm_ms": round(t["wasm"], 3),
            "wasm_scalar_ms": round(t["wasm_scalar"], 3),
            "native_ms": round(t["native"], 3),
            "peer": case.peer,
            "peer_ms": round(t["peer"], 3),
            "wasm_vs_native": round(t["wasm"] / t["native"], 3),
            "wasm_scalar_vs_native": round(t["wasm_scalar"] / t["native"], 3),
            "simd_speedup": round(t["wasm_scalar"] / t["wasm"], 3),
            "wasm_vs_peer": round(t["wasm"] / t["peer"], 3),
        }
    return result


def scalar_runtime(out_dir: Path) -> Runtime:
    """A Runtime over the same modules built without -msimd128 (same manifest otherwise)."""
    clang = find_toolchain()
    if clang is None:
        raise SystemExit("clang + wasm-ld are needed to build the scalar modules")
    manifest = json.loads((MODULES_DIR / MANIFEST_NAME).read_text())
    sources = load_catalogue()["modules"]
    for name, m in manifest["modules"].items():
        compile_module(clang, sources[name]["source"], out_dir / m["file"], simd=False)
        m["sha256"] = hashlib.sha256((out_dir / m["file"]).read_bytes()).hexdigest()
    (out_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    return Runtime(manifest_path=out_dir / MANIFEST_NAME, cache_dir=out_dir / "cache")


BUILDS = {
    "wasm": "the committed modules: clang " + " ".join(WASM_CFLAGS) + " (wasm SIMD paths on)",
    "wasm_scalar": "the same C and flags without -msimd128: the scalar C paths, as native runs",
    "native": "gcc " + " ".join(NATIVE_CFLAGS) + ": the scalar C paths (the SIMD intrinsics are "
    "wasm-only); gcc -O2 may auto-vectorize them",
}


def bench_call_overhead(rt: Runtime, calls: int = 3000) -> float:
    data = bytes(range(64))
    for _ in range(200):
        rt.run("hash.sha256", data, {})
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        rt.run("hash.sha256", data, {})
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def bench_load(module: str = "image", runs: int = 7) -> dict[str, float]:
    compile_ms, cached_ms = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="vh-bench-cache-") as cache:
            first = Runtime(cache_dir=cache).load_module(module)
            again = Runtime(cache_dir=cache).load_module(module)
            if first.from_cache or not again.from_cache:
                raise SystemExit("the compiled-module cache did not behave as expected")
            compile_ms.append(first.elapsed_s * 1e3)
            cached_ms.append(again.elapsed_s * 1e3)
    return {
        "module": module,
        "compile": round(statistics.median(compile_ms), 3),
        "cached": round(statistics.median(cached_ms), 3),
    }


def goals(kernels: dict, overhead_us: float, load: dict) -> dict[str, bool]:
    out = {}
    for name, k in kernels.items():
        limit = GOAL_SHA256_VS_NATIVE if name == "hash.sha256" else GOAL_WASM_VS_NATIVE
        out[f"{name} wasm within {limit}x of native"] = k["wasm_vs_native"] <= limit
    blur = kernels["image.blur"]
    out[f"image.blur >= {GOAL_BLUR_VS_NUMPY}x faster than numpy"] = (
        blur["peer_ms"] >= GOAL_BLUR_VS_NUMPY * blur["wasm_ms"]
    )
    out[f"64-byte job < {GOAL_CALL_OVERHEAD_US} us"] = overhead_us < GOAL_CALL_OVERHEAD_US
    out[f"cached load < {GOAL_CACHED_LOAD_MS} ms"] = load["cached"] < GOAL_CACHED_LOAD_MS
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median of them)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vh-native-") as tmp:
        try:
            native = build_native(Path(tmp))
        except NativeKernelError as e:
            raise SystemExit(f"bench/kernels.py: {e}") from None
        with tempfile.TemporaryDirectory(prefix="vh-bench-rt-") as cache:
            rt = Runtime(cache_dir=cache)
            log("load times")
            load = bench_load()
            log("call overhead")
            overhead = bench_call_overhead(rt)
            kernels = bench_kernels(rt, scalar_runtime(Path(tmp)), native, args.rounds)
    report = {
        "kernels": kernels,
        "builds": BUILDS,
        "call_overhead_us": round(overhead, 2),
        "load_ms": load,
        "rounds": args.rounds,
        "goals": goals(kernels, overhead, load),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
