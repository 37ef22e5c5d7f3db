"""Run a kernel where it finishes sooner: in-process (wasm on a worker thread) or on the service.

    dispatcher = Dispatcher(Runtime(), socket)          # socket may be None: local only
    output, decision = await dispatcher.run("image.blur", rgba, {"width": w, ...})
    print(decision.summary())

Rules: a kernel that exists on one side only goes there; offline means local; a remote failure
or timeout falls back to local (the Decision says so); a local failure (limits, bad input) is
raised, never retried elsewhere. Otherwise the cost model compares estimates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from veraltheim.client.compute.cost_model import CostModel, work_units
from veraltheim.client.compute.decision import Decision
from veraltheim.client.compute.errors import RemoteError, RemoteUnavailable
from veraltheim.client.compute.remote import RemoteCompute
from veraltheim.client.compute.routes import Route
from veraltheim.client.net.push import JoinError, PushTimeout
from veraltheim.protocol.constants import COMPUTE_TOPIC
from veraltheim.protocol.reasons import Reason
from veraltheim.wasm import BadInput, Cancelled, MemoryLimitExceeded, UnknownKernel

Progress = Callable[[int, int], None]
# Remote errors that are about the input, not the service: running locally would fail the same.
INPUT_ERRORS = {Reason.BAD_INPUT, Reason.BAD_REQUEST, Reason.CANCELLED}
LOAD_MAX_AGE_S = 1.0
RECONNECT_AFTER_S = 10.0  # after a failed join/probe, runs stay local this long
RTT_PROBES = 2
# When the estimates are within EXPLORE_MAX_LOSS of each other, the slower-looking side is run
# again after EXPLORE_EVERY decisions, so one unlucky measurement does not stick for good.
EXPLORE_EVERY = 8
EXPLORE_MAX_LOSS = 0.25
PROBE_BYTES = 64 * 1024
MIN_REMOTE_TIMEOUT_S = 5.0
REMOTE_TIMEOUT_FACTOR = 4.0  # give up on the service at this multiple of its estimate


class Dispatcher:
    def __init__(
        self,
        runtime: Any,
        socket: Any | None = None,
        topic: str = COMPUTE_TOPIC,
        *,
        model: CostModel | None = None,
        max_remote_timeout_s: float = 60.0,
    ) -> None:
        self.runtime = runtime
        self.model = model or CostModel()
        self.remote = RemoteCompute(socket, topic) if socket is not None else None
        self.max_remote_timeout_s = max_remote_timeout_s
        self._refreshing: asyncio.Task | None = None
        self._warm: set[str] = set()
        self._probed = False
        self._connect_failed_at = -float("inf")
        for spec in runtime.catalogue():
            self.model.add_kernel(spec.name, spec.to_dict(), local=True)

    # --- public -------------------------------------------------------------------------------

    async def connect(self) -> bool:
        """Join the compute topic; learn its catalogue, load, the RTT and the bandwidth (a few
        small round trips and one probe of PROBE_BYTES each way). False when offline."""
        if self.remote is None or not self.remote.online:
            return False
        try:
            await self.remote.ensure_joined()
            self.model.forget_link()
            self._learn_catalogue()
            for _ in range(RTT_PROBES):
                self.model.learn_rtt(await self.remote.probe(0))
            self.model.learn_transfer(await self.remote.probe(PROBE_BYTES), 2 * PROBE_BYTES)
        except (RemoteError, PushTimeout, JoinError, ConnectionError, TimeoutError):
            # Refused, dropped or silent: offline for now; runs retry after RECONNECT_AFTER_S.
            self._connect_failed_at = time.monotonic()
            return False
        self._probed = True
        return True

    def sync_local_kernels(self) -> None:
        """The Runtime's catalogue changed (a user kernel installed or removed): learn it. A
        new kernel starts from the cost model's prior; a removed one is no longer local."""
        names = set()
        for spec in self.runtime.catalogue():
            names.add(spec.name)
            self.model.add_kernel(spec.name, spec.to_dict(), local=True)
        for name, costs in list(self.model.kernels.items()):
            if name not in names:
                costs.local = False
                if not costs.remote:
                    del self.model.kernels[name]  # gone from both sides

    async def refresh(self) -> None:
        """Fetch the service's load again; its round trip is one more RTT sample."""
        if self.remote is None:
            return
        rtt_ms = await self.remote.refresh(catalogue=False)
        self.model.learn_rtt(rtt_ms)
        self.model.learn_load(self.remote.load)

    async def run(
        self,
        kernel: str,
        data: bytes | bytearray | memoryview = b"",
        params: dict[str, Any] | None = None,
        *,
        where: Route | str = Route.AUTO,
        progress: Progress | None = None,
        cancel: Any = None,
        deadline_s: float | None = None,
    ) -> tuple[bytes, Decision]:
        """Run `kernel`; return its output and the Decision (where, why, estimates, times)."""
        if where not in set(Route):
            raise ValueError(f"where must be one of {', '.join(Route)}, got {where!r}")
        where = Route(where)
        start = time.perf_counter()
        params = dict(params or {})
        costs = self.model.kernels.get(kernel)
        if costs is None and (self.remote is None or self._probed):
            raise UnknownKernel(f"unknown kernel {kernel!r}")  # neither here nor there
        if where == Route.REMOTE or (where == Route.AUTO and (costs is None or not costs.local)):
            # Only the service can run it: wait for a reconnect or rejoin in progress.
            wait_s = self.max_remote_timeout_s if deadline_s is None else deadline_s
            why_not = await self._await_remote(min(self.max_remote_timeout_s, wait_s), cancel)
            if deadline_s is not None and why_not is None:  # the wait used part of it
                deadline_s = max(0.001, deadline_s - (time.perf_counter() - start))
        else:
            why_not = await self._remote_ready()
        online = why_not is None
        costs = self.model.kernels.get(kernel)
        if costs is None:
            raise UnknownKernel(f"unknown kernel {kernel!r}")
        too_big = None
        if costs.local and where != Route.REMOTE:
            try:
                norm = self.runtime.validate(kernel, data, params)
            except MemoryLimitExceeded as exc:
                # Too big for this process, maybe not for the service: auto may send it there.
                if where != Route.AUTO or not (online and costs.remote):
                    raise
                too_big, norm = str(exc), self._remote_defaults(kernel, params)
        else:
            norm = self._remote_defaults(kernel, params)
        decision = self.decide(
            kernel, len(data), norm, where, online, local_ok=too_big is None, why_offline=why_not
        )
        self._maybe_refresh_load(decision)
        if decision.where == Route.REMOTE:
            try:
                output = await self._run_remote(
                    kernel, data, norm, decision, progress, cancel, deadline_s
                )
                decision.actual_ms = (time.perf_counter() - start) * 1000
                return output, decision
            except RemoteError as exc:
                if (
                    where == Route.REMOTE
                    or exc.reason in INPUT_ERRORS
                    or not costs.local
                    or too_big
                ):
                    raise
                decision.fallback = f"{exc.reason}: {exc}"
            except (RemoteUnavailable, PushTimeout) as exc:
                if where == Route.REMOTE or not costs.local or too_big:
                    raise RemoteUnavailable(str(exc) or "no reply from the service") from exc
                decision.fallback = str(exc) or "no reply from the service in time"
            decision.where = Route.LOCAL
            norm = self.runtime.validate(kernel, data, params)
        run_start = time.perf_counter()
        output = await self._run_local(kernel, data, norm, progress, cancel, deadline_s)
        decision.run_ms = (time.perf_counter() - run_start) * 1000
        decision.actual_ms = (time.perf_counter() - start) * 1000
        return output, decision

    def decide(
        self,
        kernel: str,
        data_len: int,
        params: dict[str, Any],
        where: Route | str = Route.AUTO,
        online: bool = True,
        *,
        local_ok: bool = True,
        why_offline: str | None = None,
    ) -> Decision:
        """Where to run a job with validated `params` (pure: no I/O, a few microseconds).
        `why_offline`: why the service cannot take jobs now, when `online` is False."""
        t0 = time.perf_counter_ns()
        costs = self.model.kernels.get(kernel)
        if costs is None:
            raise UnknownKernel(f"unknown kernel {kernel!r}")
        local = costs.local and local_ok
        limit = self.model.load.max_input_bytes
        fits = limit is None or data_len <= limit
        remote = costs.remote and online and fits
        where = Route(where)
        if where == Route.LOCAL:
            if not costs.local:
                raise UnknownKernel(f"{kernel} exists on the service only; it cannot run locally")
            d = Decision(kernel, where, Route.LOCAL, "forced local")
        elif where == Route.REMOTE or not costs.local:
            if not online:
                why = why_offline if why_offline and why_offline != "offline" else None
                why = why or "the service is offline"
                raise RemoteUnavailable(
                    f"{kernel}: forced remote, but {why}"
                    if costs.local
                    else f"{kernel} runs on the service only, and {why}"
                )
            if not costs.remote:
                raise UnknownKernel(f"{kernel} does not exist on the service")
            if not fits:
                raise BadInput(
                    f"{kernel}: input of {data_len} bytes exceeds the service's limit of {limit}"
                )
            reason = "forced remote" if where == Route.REMOTE else "remote-only kernel"
            d = Decision(kernel, where, Route.REMOTE, reason)
        elif not local:
            if not remote:
                raise MemoryLimitExceeded(
                    f"{kernel}: input of {data_len} bytes fits neither here nor on the service"
                )
            d = Decision(kernel, where, Route.REMOTE, "input exceeds the local memory limit")
        elif not remote:
            if not online:
                reason = why_offline or "offline"
            elif not costs.remote:
                reason = "local-only kernel"
            else:
                reason = "input too big for the service"
            d = Decision(kernel, where, Route.LOCAL, reason)
        else:
            d = None
        est = self.model.estimate(kernel, data_len, params)
        if d is None:
            assert est.local_ms is not None and est.remote_ms is not None
            costs.since_local += 1
            costs.since_remote += 1
            remote_wins = est.remote_ms < est.local_ms
            best, other = sorted((est.local_ms, est.remote_ms))
            stale = costs.since_local if remote_wins else costs.since_remote
            if stale >= EXPLORE_EVERY and other <= best * (1 + EXPLORE_MAX_LOSS):
                # Close call, and the other side's figure is old: measure it again.
                remote_wins = not remote_wins
                side = Route.REMOTE if remote_wins else Route.LOCAL
                d = Decision(kernel, where, side, f"re-measuring {side} (estimates close)")
            elif remote_wins:
                d = Decision(kernel, where, Route.REMOTE, "remote estimated faster")
            else:
                d = Decision(kernel, where, Route.LOCAL, "local estimated faster")
        d.local_estimate_ms = est.local_ms if costs.local else None
        d.remote_estimate_ms = est.remote_ms if remote else None
        d.queue_estimate_ms = est.queue_ms if remote else None
        d.decision_us = (time.perf_counter_ns() - t0) / 1000
        return d

    # --- local --------------------------------------------------------------------------------

    def _has_local(self, kernel: str) -> bool:
        costs = self.model.kernels.get(kernel)
        return costs is not None and costs.local

    async def _run_local(
        self,
        kernel: str,
        data: Any,
        params: dict[str, Any],
        progress: Progress | None,
        cancel: Any,
        deadline_s: float | None = None,
    ) -> bytes:
        loop = asyncio.get_running_loop()
        relay = None
        if progress is not None:

            def relay(done: int, total: int) -> None:  # on the worker thread: hop to the loop
                loop.call_soon_threadsafe(progress, done, total)

        module = self.runtime.spec(kernel).module
        if module not in self._warm:  # load outside the timed run: it would skew the model
            await asyncio.to_thread(self.runtime.load_module, module)
            self._warm.add(module)
        start = time.perf_counter()
        self.model.local_running += 1
        # Learn one job's speed alone: a run that shared the cores took longer for that reason.
        share = max(1.0, self.model.local_running / self.model.local_cores)
        try:
            result = await asyncio.to_thread(
                self.runtime.run,
                kernel,
                data,
                params,
                cancel=cancel,
                progress=relay,
                deadline_s=deadline_s,
            )
        finally:
            self.model.local_running -= 1
        elapsed_ms = (time.perf_counter() - start) * 1000
        units = _units(self.model, kernel, len(data), params)
        self.model.learn_local(kernel, units, elapsed_ms / share, len(data), len(result.output))
        return bytes(result.output)

    # --- remote -------------------------------------------------------------------------------

    async def _remote_ready(self) -> str | None:
        """None when jobs can go to the service now (joining it first if never tried); else
        why not. Never waits for a reconnect or rejoin: auto runs go local meanwhile."""
        remote = self.remote
        if remote is None:
            return "offline"
        why_not = remote.not_ready
        if why_not is not None:
            return why_not
        if not self._probed:
            if time.monotonic() - self._connect_failed_at < RECONNECT_AFTER_S:
                return "offline"
            return None if await self.connect() else "offline"
        return None

    async def _await_remote(self, timeout_s: float, cancel: Any) -> str | None:
        """For a job only the service may run: wait (at most `timeout_s`) for a reconnect or
        rejoin in progress. None when ready; else why not (the socket is OFFLINE, the join
        was refused or failed, or the time ran out)."""
        if self.remote is None:
            return "offline"
        try:
            await self.remote.wait_joined(timeout_s, cancel)
        except (RemoteUnavailable, RemoteError) as exc:
            return str(exc)
        if not self._probed and not await self.connect():
            return "the service did not answer the link probes"
        return None

    def _maybe_refresh_load(self, d: Decision) -> None:
        """Refresh the service's load in the background when it is old and could matter: the
        remote estimate without its queue wait beats local. (Polling for nothing would only
        slow the link and the loop down.)"""
        remote = self.remote
        if (
            remote is None
            or self._refreshing is not None
            or d.remote_estimate_ms is None
            or time.monotonic() - remote.load_at <= LOAD_MAX_AGE_S
        ):
            return
        unqueued = d.remote_estimate_ms - (d.queue_estimate_ms or 0.0)
        if d.local_estimate_ms is None or unqueued < d.local_estimate_ms:
            self._refreshing = asyncio.create_task(self._refresh_in_background())

    async def _refresh_in_background(self) -> None:
        try:
            await self.refresh()
        except (RemoteError, PushTimeout, ConnectionError):
            pass  # the link is down: the next run finds out and goes local
        finally:
            self._refreshing = None

    def _learn_catalogue(self) -> None:
        assert self.remote is not None
        for name, entry in self.remote.catalogue.items():
            self.model.add_kernel(name, entry, remote=True)
        if self.remote.load:
            self.model.learn_load(self.remote.load)

    def _remote_defaults(self, kernel: str, params: dict[str, Any]) -> dict[str, Any]:
        entry = self.remote.catalogue.get(kernel, {}) if self.remote is not None else {}
        out = {p["name"]: p.get("default") for p in entry.get("params", []) if "name" in p}
        out.update(params)
        return {k: v for k, v in out.items() if v is not None}

    async def _run_remote(
        self,
        kernel: str,
        data: Any,
        params: dict[str, Any],
        decision: Decision,
        progress: Progress | None,
        cancel: Any,
        deadline_s: float | None = None,
    ) -> bytes:
        assert self.remote is not None
        estimate_s = (decision.remote_estimate_ms or 1000.0) / 1000
        timeout_s = min(
            self.max_remote_timeout_s,
            max(MIN_REMOTE_TIMEOUT_S, REMOTE_TIMEOUT_FACTOR * estimate_s),
        )
        if cancel is not None and cancel.cancelled:
            raise Cancelled(f"{kernel}: cancelled")
        if deadline_s is not None:
            timeout_s = min(timeout_s, deadline_s + MIN_REMOTE_TIMEOUT_S)
        res = await self.remote.run(
            kernel,
            data,
            params,
            timeout_s=timeout_s,
            progress=progress,
            cancel=cancel,
            deadline_s=deadline_s,
        )
        hdr = res.header
        timings = hdr.get("timings") or {}
        decision.remote = {k: v for k, v in hdr.items() if k not in ("id",)}
        decision.run_ms = float(timings.get("run_ms", 0.0))
        self.model.learn_remote(
            kernel,
            _units(self.model, kernel, len(data), params),
            run_ms=float(timings.get("run_ms", 0.0)),
            tiles=int(hdr.get("tiles", 1) or 1),
            wall_ms=res.wall_ms,
            server_ms=float(timings.get("total_ms", 0.0)),
            bytes_moved=res.bytes_moved,
            data_len=len(data),
            out_len=len(res.output),
        )
        if isinstance(hdr.get("load"), dict):
            self.model.learn_load(self.remote.load)
        return res.output


def _units(model: CostModel, kernel: str, data_len: int, params: dict[str, Any]) -> float:
    return work_units(model.kernels[kernel].unit, data_len, params)
