"""The dispatcher's cost model: pure arithmetic over measured figures, no I/O.

- Work of a job in the unit of its kernel's manifest cost hint (bytes, pixels or iterations).
- Local ns per unit per kernel: seeded from the hint, then the low median of recent measured runs.
- Remote ns per unit per worker per kernel: the low median of recent reply headers (run time x
  tiles used); before the first reply, assumed equal to local (same wasm, same kind of machine).
- Link: RTT and bandwidth, EWMAs of measured transfers (small ones give RTT, big ones bandwidth).
- Service load: workers, busy, queue depth and recent run times, from `kernels` and replies.
Estimate: local = ns x units; remote = RTT + bytes / bandwidth + queue wait + remote run.
"""

from __future__ import annotations

import os
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

ALPHA = 0.3  # EWMA weight of a new sample (link figures)
RECENT = 5  # kernel speeds: the low median of this many recent runs (a cold or unlucky run
# is not a trend; with two samples the faster one counts)
DEFAULT_RTT_MS = 5.0
DEFAULT_BANDWIDTH_BPS = 100e6
DEFAULT_NS_PER_BYTE = 5.0
LOCAL_OVERHEAD_MS = 0.15  # thread hand-off + wasm call set-up, measured on a 2-core box
SMALL_TRANSFER_BYTES = 16 * 1024  # below this a round trip measures latency, not bandwidth
# The service splits jobs into tiles of at least this many pixels (it says so in its load).
DEFAULT_MIN_TILE_PIXELS = 32 * 1024
ITERATION_PARAMS = ("max_iter", "max_iterations", "iterations")
SIZE_OUTPUT_KINDS = {"rgba8": 4, "i32": 4, "f64": 8}


def ewma(old: float | None, sample: float, alpha: float = ALPHA) -> float:
    return sample if old is None else old + alpha * (sample - old)


@dataclass
class KernelCosts:
    """What the model knows about one kernel."""

    unit: str  # "byte" | "pixel" | "iteration"
    local_ns: float  # per unit, one thread
    tileable: bool = False
    local: bool = False  # exists in the local Runtime
    remote: bool = False  # exists on the service
    output_kind: str = "bytes"
    remote_ns: float | None = None  # per unit per worker, learned from replies
    out_ratio: float | None = None  # output bytes / input bytes, learned
    local_runs: int = 0
    remote_runs: int = 0
    local_recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    remote_recent: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    since_local: int = 0  # decisions since this kernel last ran here / there
    since_remote: int = 0


@dataclass
class Load:
    workers: int = 1
    busy: int = 0
    queue_depth: int = 0
    max_tiles: int = 1
    min_tile_pixels: int = DEFAULT_MIN_TILE_PIXELS
    max_input_bytes: int | None = None  # the service refuses bigger frames
    recent_run_ms: float = 0.0  # typical job time on the service, 0 if none finished lately
    running_ms: list[float] = field(default_factory=list)  # how long each running job has run

    def wait_ms(self) -> float:
        """Expected wait for a worker when none is idle: the first running job to finish
        (remaining time: typical minus elapsed, or, past that or unknown, as long again as it
        has run), then the queue ahead of us, spread over the workers."""
        typical = self.recent_run_ms or (
            sorted(self.running_ms)[len(self.running_ms) // 2] if self.running_ms else 0.0
        )
        remaining = [max(typical - e, e) for e in self.running_ms] or [typical]
        return min(remaining) + self.queue_depth * typical / max(1, self.workers)


@dataclass(frozen=True, slots=True)
class Estimate:
    units: float
    bytes_up: int
    bytes_down: int
    local_ms: float | None
    remote_ms: float | None
    link_ms: float | None = None
    queue_ms: float | None = None


@dataclass
class CostModel:
    kernels: dict[str, KernelCosts] = field(default_factory=dict)
    rtt_ms: float = DEFAULT_RTT_MS
    bandwidth_bps: float = DEFAULT_BANDWIDTH_BPS
    load: Load = field(default_factory=Load)
    rtt_samples: int = 0
    bandwidth_samples: int = 0
    # Local jobs already running on this machine's cores: a new one shares them.
    local_running: int = 0
    local_cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    # --- what exists ----------------------------------------------------------------------------

    def add_kernel(
        self, name: str, entry: dict[str, Any], *, local: bool = False, remote: bool = False
    ) -> KernelCosts:
        """Register a manifest-shaped entry (from the Runtime or a `kernels` reply)."""
        costs = self.kernels.get(name)
        if costs is None:
            unit, ns = unit_and_seed(entry.get("cost") or {})
            costs = self.kernels[name] = KernelCosts(unit=unit, local_ns=ns)
        costs.tileable = bool(entry.get("tiles"))
        costs.output_kind = (entry.get("output") or {}).get("kind", "bytes")
        costs.local |= local
        costs.remote |= remote
        return costs

    # --- estimates ------------------------------------------------------------------------------

    def estimate(self, name: str, data_len: int, params: dict[str, Any]) -> Estimate:
        k = self.kernels[name]
        units = work_units(k.unit, data_len, params)
        down = self.output_bytes(k, data_len, params)
        local_ms = None
        if k.local:
            share = max(1.0, (self.local_running + 1) / self.local_cores)
            local_ms = LOCAL_OVERHEAD_MS + k.local_ns * units / 1e6 * share
        if not k.remote:
            return Estimate(units, data_len, down, local_ms, None)
        link_ms = self.rtt_ms + (data_len + down) * 8000 / self.bandwidth_bps
        load = self.load
        idle = load.workers - load.busy
        if idle > 0 and load.queue_depth == 0:
            queue_ms = 0.0
            parallel = min(idle, load.max_tiles, pixels(params) // load.min_tile_pixels)
            parallel = max(1, parallel) if k.tileable else 1
        else:
            queue_ms = load.wait_ms()
            parallel = 1
        per_worker = k.remote_ns if k.remote_ns is not None else k.local_ns
        remote_ms = link_ms + queue_ms + per_worker * units / parallel / 1e6
        return Estimate(units, data_len, down, local_ms, remote_ms, link_ms, queue_ms)

    def output_bytes(self, k: KernelCosts, data_len: int, params: dict[str, Any]) -> int:
        if k.out_ratio is not None and data_len:
            return int(k.out_ratio * data_len)
        per = SIZE_OUTPUT_KINDS.get(k.output_kind)
        if per is not None and k.output_kind != "f64":
            return int(pixels(params) * per) or data_len
        return data_len if k.output_kind != "stats" else 256

    # --- learning -------------------------------------------------------------------------------

    def learn_local(self, name: str, units: float, elapsed_ms: float, data_len: int, out_len: int):
        k = self.kernels[name]
        if units > 0:
            work_ms = max(elapsed_ms - LOCAL_OVERHEAD_MS, elapsed_ms * 0.5)
            k.local_recent.append(work_ms * 1e6 / units)
            k.local_ns = statistics.median_low(k.local_recent)
        k.local_runs += 1
        k.since_local = 0
        self._learn_output(k, data_len, out_len)

    def learn_remote(
        self,
        name: str,
        units: float,
        *,
        run_ms: float,
        tiles: int,
        wall_ms: float,
        server_ms: float,
        bytes_moved: int,
        data_len: int,
        out_len: int,
    ) -> None:
        k = self.kernels[name]
        if units > 0 and run_ms > 0:
            k.remote_recent.append(run_ms * max(1, tiles) * 1e6 / units)
            k.remote_ns = statistics.median_low(k.remote_recent)
        k.remote_runs += 1
        k.since_remote = 0
        self._learn_output(k, data_len, out_len)
        self.learn_transfer(max(0.0, wall_ms - server_ms), bytes_moved)

    def learn_transfer(self, net_ms: float, bytes_moved: int) -> None:
        """One request + reply: `net_ms` of it on the wire (wall time minus service time)."""
        if bytes_moved <= SMALL_TRANSFER_BYTES:
            self.learn_rtt(net_ms)
            return
        serial_ms = net_ms - self.rtt_ms
        if serial_ms > 0.2:
            self.bandwidth_bps = ewma(
                self.bandwidth_bps if self.bandwidth_samples else None,
                bytes_moved * 8000 / serial_ms,
            )
            self.bandwidth_samples += 1

    def forget_link(self) -> None:
        """A new connection (maybe to another service): the next samples replace RTT,
        bandwidth and load instead of blending with the old link's."""
        self.rtt_samples = self.bandwidth_samples = 0
        self.load = Load()

    def learn_rtt(self, rtt_ms: float) -> None:
        self.rtt_ms = ewma(self.rtt_ms if self.rtt_samples else None, max(0.0, rtt_ms))
        self.rtt_samples += 1

    def learn_load(self, load: dict[str, Any]) -> None:
        """From a `kernels` reply's load or a reply header's `load`."""
        self.load.workers = int(load.get("workers", self.load.workers)) or 1
        self.load.busy = int(load.get("busy", 0))
        self.load.queue_depth = int(load.get("queue_depth", 0))
        self.load.max_tiles = int(load.get("max_tiles", self.load.workers)) or 1
        self.load.min_tile_pixels = int(load.get("min_tile_pixels") or DEFAULT_MIN_TILE_PIXELS)
        if "max_input_bytes" in load:
            limit = load["max_input_bytes"]
            self.load.max_input_bytes = int(limit) if limit else None
        self.load.running_ms = [float(x) for x in load.get("running_ms") or ()]
        runs = [v.get("recent_run_ms") or 0.0 for v in (load.get("throughput") or {}).values()]
        if runs:
            self.load.recent_run_ms = max(runs)
        elif "recent_run_ms" in load:
            self.load.recent_run_ms = float(load["recent_run_ms"] or 0.0)

    def _learn_output(self, k: KernelCosts, data_len: int, out_len: int) -> None:
        if data_len:
            k.out_ratio = ewma(k.out_ratio, out_len / data_len)


def unit_and_seed(cost: dict[str, Any]) -> tuple[str, float]:
    """The work unit a cost hint is in and its ns per unit."""
    for key, unit in (
        ("ns_per_byte", "byte"),
        ("ns_per_pixel", "pixel"),
        ("ns_per_iteration", "iteration"),
    ):
        if isinstance(cost.get(key), int | float):
            return unit, float(cost[key])
    return "byte", DEFAULT_NS_PER_BYTE


def pixels(params: dict[str, Any]) -> int:
    width = params.get("width") or 0
    if "row_start" in params and "row_end" in params:
        end = params.get("row_end") or params.get("height") or 0  # row_end 0 means height
        rows = end - (params.get("row_start") or 0)
    else:
        rows = params.get("height") or 0
    return int(width) * max(0, int(rows))


def work_units(unit: str, data_len: int, params: dict[str, Any]) -> float:
    if unit == "byte":
        return float(data_len or pixels(params) * 4)
    px = pixels(params) or data_len // 4
    if unit == "pixel":
        return float(px)
    iters = next((params[p] for p in ITERATION_PARAMS if p in params), 1) or 1
    return float(px) * float(iters)
