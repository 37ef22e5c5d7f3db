"""A run as the shared history stores it: its fields, its statuses, and how to read what other
clients wrote. No pycrdt here: the Workbench and the Inspector build records before any document
is open (run_history.py stores them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from enum import StrEnum
from typing import Any, TypedDict

from veraltheim.client.compute.routes import Route

ROOT = "runs"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES = tuple(RunStatus)
TOTAL_MS = "total_ms"  # timings: the whole run as the user waited for it


def new_run_id() -> str:
    """128 random bits as 32 hex digits: uuid4().hex's shape, without importing uuid (5 ms
    before the window's first frame)."""
    return os.urandom(16).hex()


def estimate_key(side: Route) -> str:
    """The timings key of the dispatcher's estimate for one side: `local_estimate_ms`."""
    return f"{side}_estimate_ms"


@dataclass
class RunSummary:
    """What the app notes about a finished run (the run's `summary`)."""

    reason: str = ""  # why it ran where it did
    fallback: str = ""  # why a remote attempt ended up running locally
    input: str = ""  # a description of the input
    output_bytes: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    at: float | None = None  # when it started (seconds since the epoch)

    @classmethod
    def from_value(cls, value: Any) -> RunSummary:
        """Read a stored summary; other clients may write anything (unknown keys and wrong
        types are dropped, Yjs turns ints into floats)."""
        if not isinstance(value, Mapping):
            return cls()
        kept = dict(value)
        out = cls()
        if isinstance(kept.get("reason"), str):
            out.reason = kept["reason"]
        if isinstance(kept.get("fallback"), str):
            out.fallback = kept["fallback"]
        if isinstance(kept.get("input"), str):
            out.input = kept["input"]
        if _is_number(kept.get("output_bytes")):
            out.output_bytes = int(kept["output_bytes"])
        if isinstance(kept.get("params"), Mapping):
            out.params = dict(kept["params"])
        if _is_number(kept.get("at")):
            out.at = float(kept["at"])
        return out


@dataclass
class RunRecord:
    """One run in the shared history: what the Workbench appends and the Runs view shows.

    Stored as a Map of these fields (summary as a Map too) so other clients, and the
    y-phoenix-channel web app, read it as plain JSON."""

    kernel: str  # e.g. "image.blur"
    status: RunStatus = RunStatus.DONE
    id: str = field(default_factory=new_run_id)  # unique
    user: str = ""  # who ran it
    where: str = ""  # the side it ran on: Route.LOCAL or Route.REMOTE
    size: int = 0  # input bytes
    timings: dict[str, float] = field(default_factory=dict)  # TOTAL_MS, estimate_key(side), ...
    summary: RunSummary = field(default_factory=RunSummary)

    @property
    def total_ms(self) -> float | None:
        return self.timings.get(TOTAL_MS)

    def estimate_ms(self, side: Route) -> float | None:
        return self.timings.get(estimate_key(side))

    def to_entry(self) -> dict[str, Any]:
        """The stored form (what RunHistory.append takes): plain JSON values."""
        return {**asdict(self), "status": str(self.status), "where": str(self.where)}

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> RunRecord:
        """Read a stored run, whoever wrote it: a missing or mistyped field gets its default."""
        status = entry.get("status")
        timings = entry.get("timings")
        return cls(
            kernel=_text(entry.get("kernel")),
            status=RunStatus(status) if status in STATUSES else RunStatus.DONE,
            id=_text(entry.get("id")),
            user=_text(entry.get("user")),
            where=_text(entry.get("where")),
            size=int(entry["size"]) if _is_number(entry.get("size")) else 0,
            timings={str(k): float(v) for k, v in timings.items() if _is_number(v)}
            if isinstance(timings, Mapping)
            else {},
            summary=RunSummary.from_value(entry.get("summary")),
        )


RUN_FIELDS = tuple(f.name for f in dataclass_fields(RunRecord))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class Run(TypedDict, total=False):
    """A run as stored: the fields of RunRecord, as a dict (RunHistory.items())."""

    id: str
    kernel: str
    user: str
    where: str
    size: int
    timings: dict[str, float]
    status: str
    summary: Any


def checked_run(run: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    unknown = set(run) - set(RUN_FIELDS)
    if unknown:
        raise ValueError(f"unknown run fields: {', '.join(sorted(unknown))}")
    if not partial:
        missing = {"kernel", "status"} - set(run)
        if missing:
            raise ValueError(f"a run needs {', '.join(sorted(missing))}")
    if "status" in run and run["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {run['status']!r}")
    if "size" in run and (not isinstance(run["size"], int) or run["size"] < 0):
        raise ValueError("size must be a non-negative int")
    if "timings" in run and not all(
        isinstance(k, str) and isinstance(v, int | float) for k, v in run["timings"].items()
    ):
        raise ValueError("timings must map names to numbers")
    return dict(run)


def run_from_stored(entry: dict[str, Any]) -> Run:
    run: dict[str, Any] = dict(entry)
    if isinstance(run.get("size"), float):  # Yjs stores every number as a double
        run["size"] = int(run["size"])
    return run  # type: ignore[return-value]
