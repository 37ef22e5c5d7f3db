"""`compute:<pool>`: run kernels on the service's worker pool.

Events in:
- `compute_request`: binary envelope (u32 BE header length, JSON header {kernel, params, id,
  deadline_s?}, raw input) or JSON {kernel, params, id, input?} (input: list of numbers or
  base64 text). Answered later: a binary envelope {id, kernel, where: "remote", workers, tiles,
  timings: {queue_ms, run_ms, total_ms}, output_kind, load} + output; a JSON request for a
  "stats" kernel gets JSON with the decoded `result` instead. Failures are error replies
  {reason, message, id}.
- `cancel {id}`: stops a queued or running job of this channel (its request gets `cancelled`).
- `kernels {}`: {kernels: {name: manifest entry + remote_only}, load: {...}};
  `kernels {"catalogue": false}`: {load} only.
- `probe` (binary, up to 1 MiB): echoed back, so a client can time the link's bandwidth.
- `kernel_add` (binary envelope {spec} + module, bounded): install a user kernel after the same
  checks as `veraltheim-kernel add`; `kernel_remove {name}`; both need the token's `kernels`
  grant. `kernel_fetch {name}`: envelope {spec, sha256} + module, for any joined client.
Events out: `progress {id, done, total}` while a job runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import struct
from typing import Any

from veraltheim.protocol.constants import COMPUTE_TOPIC
from veraltheim.protocol.envelope import pack_envelope, unpack_envelope
from veraltheim.protocol.errors import ProtocolError
from veraltheim.protocol.reasons import ComputeEvent, Reason
from veraltheim.service.channel import Channel, JoinError, Reply
from veraltheim.service.compute.errors import ComputeError
from veraltheim.service.compute.jobs import Job, JobResult
from veraltheim.service.compute.sharing import SHARING_EVENTS, KernelSharing

POOLS = (COMPUTE_TOPIC.partition(":")[2],)


class ComputeChannel(Channel):
    async def join(self, payload: Any) -> dict[str, Any]:
        pool = self.topic.partition(":")[2]
        if pool not in POOLS:
            raise JoinError({"reason": Reason.UNKNOWN_POOL, "message": f"no compute pool {pool!r}"})
        self.compute = self.service.components["compute"]
        self.compute.pool.ensure_started()  # warm up before the first job arrives
        self.jobs: dict[str, Job] = {}
        self.finishers: set[asyncio.Task] = set()
        self.sharing = KernelSharing(self.compute, self.user_id, self.claims)
        return {"pool": pool, "workers": self.compute.pool.size}

    def handle_in(self, event: str, payload: Any, ref: str | None) -> Reply | None:
        if event == ComputeEvent.REQUEST:
            return self._request(payload, ref)
        if event == ComputeEvent.CANCEL:
            return self._cancel(payload)
        if event == ComputeEvent.PROBE:
            # The client times this echo to learn the link's bandwidth; capped like a job input.
            limit = self.service.config.compute.max_probe_bytes
            if isinstance(payload, bytes | bytearray) and len(payload) <= limit:
                return Reply.ok(bytes(payload))
            return Reply.error(
                {"reason": Reason.BAD_REQUEST, "message": f"a probe takes up to {limit} bytes"}
            )
        if event in SHARING_EVENTS:
            # Compiling a module and running its examples takes a while: answer later.
            task = asyncio.get_running_loop().create_task(self._share(event, payload, ref))
            self.finishers.add(task)
            task.add_done_callback(self.finishers.discard)
            return None
        if event == ComputeEvent.KERNELS:
            # {"catalogue": false} asks for the load alone (a small reply, polled often).
            if isinstance(payload, dict) and payload.get("catalogue") is False:
                return Reply.ok({"load": self.compute.load()})
            return Reply.ok(
                {"kernels": self.compute.catalogue.entries, "load": self.compute.load()}
            )
        return Reply.error({"reason": Reason.UNKNOWN_EVENT, "message": f"no event {event!r} here"})

    async def terminate(self, reason: str) -> None:
        for job in list(self.jobs.values()):
            self.compute.pool.cancel(job)

    # --- requests -----------------------------------------------------------------------------

    def _request(self, payload: Any, ref: str | None) -> Reply | None:
        binary = isinstance(payload, bytes | bytearray | memoryview)
        job_id: str | None = None
        try:
            header, data = self._parse(payload, binary)
            job_id = header["id"]
            kernel = header["kernel"]
            params = self.compute.catalogue.validate(kernel, data, header.get("params") or {})
            self._check_output_size(kernel, len(data), params)
            deadline = header.get("deadline_s")
            if deadline is not None and (
                not isinstance(deadline, int | float)
                or isinstance(deadline, bool)
                or not math.isfinite(deadline)
                or deadline <= 0
            ):
                raise ComputeError(Reason.BAD_REQUEST, "deadline_s must be a positive number")

            def progress(done: int, total: int) -> None:
                self.push(ComputeEvent.PROGRESS, {"id": job_id, "done": done, "total": total})

            job = self.compute.pool.submit(
                kernel, data, params, progress=progress, deadline_s=deadline
            )
        except ComputeError as exc:
            response = exc.response()
            if job_id is not None:
                response["id"] = job_id
            return Reply.error(response)
        self.jobs[job_id] = job
        task = asyncio.get_running_loop().create_task(
            self._finish(job, job_id, kernel, ref, binary)
        )
        self.finishers.add(task)
        task.add_done_callback(self.finishers.discard)
        return None

    def _parse(self, payload: Any, binary: bool) -> tuple[dict[str, Any], bytes]:
        if binary:
            try:
                header, data = unpack_envelope(payload)
            except ProtocolError as exc:
                raise ComputeError(Reason.BAD_REQUEST, str(exc)) from None
        elif isinstance(payload, dict):
            header, data = payload, b""
        else:
            raise ComputeError(
                Reason.BAD_REQUEST, "compute_request takes a JSON object or an envelope"
            )
        kernel, job_id = header.get("kernel"), header.get("id")
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            job_id = str(job_id)
        max_id = self.service.config.compute.max_job_id_chars
        if not isinstance(job_id, str) or not job_id or len(job_id) > max_id:
            raise ComputeError(
                Reason.BAD_REQUEST, f"the request needs an id (a string of 1-{max_id})"
            )
        try:  # from here on every error names the request's id
            if not isinstance(kernel, str) or not kernel:
                raise ComputeError(Reason.BAD_REQUEST, "the request header needs a kernel name")
            if job_id in self.jobs:
                raise ComputeError(Reason.BAD_REQUEST, f"job id {job_id!r} is already running")
            if not binary:
                data = self._json_input(kernel, header.get("input"), header.get("params"))
        except ComputeError as exc:
            exc.extra.setdefault("id", job_id)
            raise
        return {**header, "id": job_id}, data

    def _check_output_size(self, kernel: str, input_bytes: int, params: dict[str, Any]) -> None:
        """Refuse a job whose reply could not be sent (a frame holds max_frame_bytes), before
        it runs: a 155-byte request may ask for a 64 MiB picture."""
        limit = self.compute.max_output_bytes
        expected = self.compute.catalogue.output_bytes(kernel, input_bytes, params)
        if limit is not None and expected is not None and expected > limit:
            raise ComputeError(
                Reason.TOO_LARGE,
                f"the output would be {expected} bytes; a reply holds at most {limit}",
                limit=limit,
            )

    def _input_dtype(self, kernel: str, params: Any) -> str:
        """ "f64" or "i32": a "numeric" input is what its `dtype` param (or default) says."""
        entry = self.compute.catalogue.entries.get(kernel, {})
        if entry.get("input", {}).get("kind") != "numeric":
            return "f64"
        dtype = params.get("dtype") if isinstance(params, dict) else None
        if dtype is None:
            spec = next((p for p in entry.get("params", []) if p.get("name") == "dtype"), {})
            dtype = spec.get("default")
        return "i32" if dtype == "i32" else "f64"

    def _json_input(self, kernel: str, value: Any, params: Any) -> bytes:
        if value is None:
            return b""
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ComputeError(Reason.BAD_REQUEST, "input text must be base64") from None
        if isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            fmt = "i" if self._input_dtype(kernel, params) == "i32" else "d"
            try:
                return struct.pack(f"<{len(value)}{fmt}", *value)
            except (struct.error, OverflowError):
                kind = "32-bit integers" if fmt == "i" else "f64 numbers"
                raise ComputeError(Reason.BAD_REQUEST, f"input values must be {kind}") from None
        raise ComputeError(Reason.BAD_REQUEST, "input must be a list of numbers or base64 text")

    async def _finish(
        self, job: Job, job_id: str, kernel: str, ref: str | None, binary: bool
    ) -> None:
        try:
            result: JobResult = await job.future
        except ComputeError as exc:
            self.reply(ref, "error", {**exc.response(), "id": job_id})
            return
        finally:
            self.jobs.pop(job_id, None)
        limit = self.compute.max_output_bytes
        if limit is not None and len(result.output) > limit:  # a kernel the catalogue can't size
            message = f"the output is {len(result.output)} bytes; a reply holds at most {limit}"
            self.reply(ref, "error", {"reason": Reason.TOO_LARGE, "message": message, "id": job_id})
            return
        load = self.compute.load()
        header = {
            "id": job_id,
            "kernel": kernel,
            "where": "remote",
            "workers": result.workers,
            "tiles": result.tiles,
            "timings": {
                "queue_ms": round(result.queue_ms, 3),
                "run_ms": round(result.run_ms, 3),
                "total_ms": round(result.total_ms, 3),
            },
            "output_kind": self.compute.catalogue.output_kind(kernel),
            "load": {
                k: load[k]
                for k in (
                    "workers",
                    "busy",
                    "queue_depth",
                    "max_tiles",
                    "min_tile_pixels",
                    "running_ms",
                )
            },
        }
        if not binary and header["output_kind"] == "stats":
            self.reply(ref, "ok", {**header, "result": self.compute.decode(kernel, result.output)})
        else:
            self.reply(ref, "ok", pack_envelope(header, result.output))

    async def _share(self, event: str, payload: Any, ref: str | None) -> None:
        try:
            response = await self.sharing.handle(event, payload)
        except ComputeError as exc:
            self.reply(ref, "error", exc.response())
            return
        self.reply(ref, "ok", response)

    def _cancel(self, payload: Any) -> Reply:
        job_id = payload.get("id") if isinstance(payload, dict) else None
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            job_id = str(job_id)
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            return Reply.error(
                {
                    "reason": Reason.UNKNOWN_JOB,
                    "message": f"no running job {job_id!r}",
                    "id": job_id,
                }
            )
        self.compute.pool.cancel(job)
        return Reply.ok({"id": job_id, "cancelled": True})
