"""The compute component: the worker pool and the catalogue, started and stopped with the service.

Registered in service/app.py as `components["compute"]`; ComputeChannel reaches it there.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from veraltheim.service.compute.catalogue import Catalogue
from veraltheim.service.compute.jobs import JobRunner
from veraltheim.service.compute.pool import ComputePool

log = logging.getLogger(__name__)
MIB = 1024 * 1024
ENVELOPE_ROOM = 64 * 1024  # frame bytes kept for the Phoenix framing and the JSON header
USER_KERNELS_DIR = "kernels"  # under data_dir: users' uploaded kernels, by sha256


class ComputeComponent:
    def __init__(self, config: Any | None = None, dask_url: str = "") -> None:
        self.config = config  # ComputeConfig; None: take ctx.config.compute at start
        self.dask_url = dask_url  # dask://SCHEDULER:PORT: jobs go to a Dask cluster
        self.runtime: Any = None
        self.user_kernels: Any = None  # UserKernelStore under <data_dir>/kernels
        self.memory_limit_bytes = 0
        # One user-kernel install or removal at a time (a compile and the examples' runs).
        self.install_lock = asyncio.Lock()
        self.max_input_bytes: int | None = None
        self.max_output_bytes: int | None = None
        self.catalogue = Catalogue(None)
        self.pool: JobRunner = None  # type: ignore[assignment]

    @classmethod
    def from_config(cls, config: Any) -> ComputeComponent:
        """The factory service/app.py registers: takes the ServiceConfig."""
        return cls(config.compute, config.cluster.compute_url)

    async def start(self, ctx: Any = None) -> None:
        cfg = self.config if self.config is not None else ctx.config.compute
        frame = getattr(getattr(ctx, "config", None), "max_frame_bytes", None)
        # The largest input a request can carry: a frame, less room for the envelope header.
        self.max_input_bytes = frame - ENVELOPE_ROOM if frame else None
        # and the largest output a reply can carry
        self.max_output_bytes = self.max_input_bytes
        from veraltheim.wasm import Runtime
        from veraltheim.wasm.user_kernels import UserKernelStore

        memory = self.memory_limit_bytes = cfg.memory_limit_mib * MIB
        data_dir = getattr(ctx, "data_dir", None)
        if data_dir is not None and not self.dask_url:  # Dask workers run built-ins only
            self.user_kernels = UserKernelStore(Path(data_dir) / USER_KERNELS_DIR)
        user_dir = self.user_kernels.root if self.user_kernels is not None else False
        try:
            self.runtime = Runtime(memory_limit_bytes=memory, user_kernels=user_dir)
            self.catalogue = Catalogue(self.runtime, self.user_kernels)
        except (
            Exception
        ) as exc:  # no manifest yet (`python -m veraltheim.wasm.build`): native kernels only
            log.error("compute: wasm kernels unavailable (%s); serving native kernels only", exc)
            self.runtime = None
            self.catalogue = Catalogue(None)
        if self.dask_url:
            from veraltheim.service.cluster.dask_pool import DaskPool  # needs the cluster extra

            self.pool = DaskPool(
                self.dask_url,
                queue_limit=cfg.queue_limit,
                job_deadline_s=cfg.job_deadline_s,
                memory_limit_bytes=memory,
                max_tiles=getattr(cfg, "max_tiles", 0) or None,
                tile_of=self.catalogue.tiles,
            )
            await self.pool.start()
            return
        self.pool = ComputePool(
            workers=cfg.workers,
            queue_limit=cfg.queue_limit,
            job_deadline_s=cfg.job_deadline_s,
            memory_limit_bytes=memory,
            max_tiles=getattr(cfg, "max_tiles", 0) or None,
            tile_of=lambda kernel: self.catalogue.tiles(kernel),
            user_kernels_dir=str(user_dir) if user_dir else None,
        )
        # Worker processes start on the first join of a compute topic (pool.ensure_started).
        log.info("compute pool: %d workers, queue limit %d", cfg.workers, cfg.queue_limit)

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.stop()

    def user_kernels_changed(self) -> None:
        """After an install or removal: the catalogue served from now on (workers re-read the
        manifest before their next job)."""
        self.runtime.reload_user_kernels()
        self.catalogue = Catalogue(self.runtime, self.user_kernels)

    def cluster_health(self) -> dict[str, Any] | None:
        """For /healthz: the Dask cluster's state, or None with the local pool."""
        if not self.dask_url or self.pool is None:
            return None
        return self.pool.health()  # type: ignore[attr-defined]

    def load(self) -> dict[str, Any]:
        return {**self.pool.load(), "max_input_bytes": self.max_input_bytes}

    def decode(self, kernel: str, output: bytes) -> Any:
        """A "stats" output as JSON (for JSON requests)."""
        from veraltheim.wasm import decode_output

        return decode_output(self.runtime.spec(kernel), output)
