"""Benchmark of users' kernels. Prints ONE JSON object.

    .venv/bin/python bench/user_kernels.py [--calls 2000]

- per_call: the built-in hash.sha256 against the very same module installed as a user kernel
  (user.sha256: same code, same work), interleaved, medians of `--calls` calls on a 64-byte input
  (the per-call overhead) and of 50 calls on 1 MiB; the ratio user / built-in.
- install_ms: `veraltheim-kernel add` of the C starter kernel (checks + example + store) with an
  empty compiled-code cache (cold: includes the compile) and again (warm), medians of 5.
- cost_model: the dispatcher (local only) running a new user kernel (the C starter, 1024x768
  image) 21 times, in 5 trials with a fresh Runtime and Dispatcher: its estimate before run k+1
  against that run's time, after 0 (the prior), 1, 5 and 20 measured runs; |estimate - actual| /
  actual, median over the trials.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from veraltheim.client.compute.cost_model import DEFAULT_NS_PER_BYTE  # noqa: E402
from veraltheim.client.compute.dispatcher import Dispatcher  # noqa: E402
from veraltheim.wasm import Runtime  # noqa: E402
from veraltheim.wasm.manifest import DEFAULT_MANIFEST_PATH, load_manifest  # noqa: E402
from veraltheim.wasm.user_kernels import (  # noqa: E402
    Example,
    KernelPackage,
    UserKernelStore,
    install,
)

from tests.support.user_kernels import build_starter  # noqa: E402

CHECKPOINTS = (0, 1, 5, 20)


def user_sha256() -> KernelPackage:
    """The built-in hash module and kernel, renamed: a user kernel doing the same work."""
    builtin = load_manifest().kernels["hash.sha256"]
    wasm = (DEFAULT_MANIFEST_PATH.parent / "hash.wasm").read_bytes()
    spec = {
        "name": "user.sha256",
        "export": builtin.export,
        "description": builtin.description,
        "input": {"kind": "bytes"},
        "output": {"kind": "bytes"},
        "params": [],
        "grants": list(builtin.grants),
    }
    import hashlib

    return KernelPackage(wasm, spec, (Example(b"abc", {}, hashlib.sha256(b"abc").digest()),))


def per_call(rt: Runtime, calls: int) -> dict:
    out = {}
    for label, size, n in (("64B", 64, calls), ("1MiB", 1 << 20, 50)):
        data = bytes(range(256)) * (size // 256) if size >= 256 else bytes(size)
        times: dict[str, list[float]] = {"builtin": [], "user": []}
        for name in ("hash.sha256", "user.sha256"):
            rt.run(name, data)  # warm: load, instantiate
        for _ in range(n):
            for key, name in (("builtin", "hash.sha256"), ("user", "user.sha256")):
                t0 = time.perf_counter_ns()
                rt.run(name, data)
                times[key].append((time.perf_counter_ns() - t0) / 1000)
        b, u = statistics.median(times["builtin"]), statistics.median(times["user"])
        out[label] = {
            "builtin_us": round(b, 2),
            "user_us": round(u, 2),
            "user_vs_builtin": round(u / b, 3),
        }
    return out


def install_times(tmp: Path) -> dict:
    pkg = build_starter(tmp / "projects", "clang")
    cold, warm = [], []
    for i in range(5):
        cache = tmp / f"cache{i}"
        for bucket in (cold, warm):
            store = UserKernelStore(tmp / f"store{i}-{len(bucket)}")
            t0 = time.perf_counter()
            install(pkg, store, installed_by="bench", cache_dir=cache)
            bucket.append((time.perf_counter() - t0) * 1000)
    return {
        "cold_ms": round(statistics.median(cold), 2),
        "warm_ms": round(statistics.median(warm), 2),
        "module_bytes": len(pkg.wasm),
    }


async def cost_model(tmp: Path, trials: int = 5) -> dict:
    pkg = build_starter(tmp / "cost-projects", "clang", name="user.invert_cost")
    store = UserKernelStore(tmp / "cost-store")
    install(pkg, store, installed_by="bench")
    w, h = 1024, 768
    data = np.random.default_rng(0).integers(0, 256, w * h * 4, np.uint8).tobytes()
    params = {"width": w, "height": h}
    name = pkg.name
    errors: dict[int, list[float]] = {k: [] for k in CHECKPOINTS}
    actuals, learned = [], []
    for _ in range(trials):  # a fresh Runtime and Dispatcher: the kernel is new each time
        dispatcher = Dispatcher(Runtime(user_kernels=store.root))
        for k in range(max(CHECKPOINTS) + 1):
            est = dispatcher.model.estimate(name, len(data), params).local_ms
            _, decision = await dispatcher.run(name, data, params, where="auto")
            actuals.append(decision.run_ms)
            if k in errors:
                errors[k].append(abs(est - decision.run_ms) / decision.run_ms)
        learned.append(dispatcher.model.kernels[name].local_ns)
    return {
        "kernel": f"{name} (C starter, {w}x{h} RGBA8)",
        "trials": trials,
        "prior_ns_per_byte": DEFAULT_NS_PER_BYTE,
        "learned_ns_per_byte": round(statistics.median(learned), 4),
        "median_run_ms": round(statistics.median(actuals), 3),
        # the estimate made after k measured runs against run k+1; median over the trials
        "error_after_runs": {str(k): round(statistics.median(v), 3) for k, v in errors.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vh-bench-user-") as tmp:
        tmp_path = Path(tmp)
        store = UserKernelStore(tmp_path / "kernels")
        install(user_sha256(), store, installed_by="bench")
        rt = Runtime(user_kernels=store.root)
        result = {
            "per_call": per_call(rt, args.calls),
            "install": install_times(tmp_path),
            "cost_model": asyncio.run(cost_model(tmp_path)),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
