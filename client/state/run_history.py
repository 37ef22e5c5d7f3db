"""The shared run history: one entry per compute run, appended by whichever client ran it.

Stored as the root Array "runs" of Maps, so a run's status can change after it was appended
(running -> done) and concurrent appends from several clients all survive.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypedDict

from pycrdt import Array, Doc, Map
from veraltheim.client.state.observers import keep
from veraltheim.client.state.shared_doc import SharedDoc

ROOT = "runs"
RUN_FIELDS = ("id", "kernel", "user", "where", "size", "timings", "status", "summary")
STATUSES = ("queued", "running", "done", "failed", "cancelled")


class Run(TypedDict, total=False):
    id: str  # unique; generated when missing
    kernel: str  # e.g. "image.blur"
    user: str  # who ran it
    where: str  # "local" or "remote"
    size: int  # input bytes
    timings: dict[str, float]  # e.g. {"queued_ms": .., "run_ms": .., "total_ms": ..}
    status: str  # one of STATUSES
    summary: Any  # a short JSON-able description of the result


def _check(run: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
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


def _from_stored(entry: dict[str, Any]) -> Run:
    run: dict[str, Any] = dict(entry)
    if isinstance(run.get("size"), float):  # Yjs stores every number as a double
        run["size"] = int(run["size"])
    return run  # type: ignore[return-value]


class RunHistory:
    """Typed view of the run history of a SharedDoc (or a plain pycrdt Doc)."""

    def __init__(self, doc: SharedDoc | Doc) -> None:
        self.doc: Doc = doc.doc if isinstance(doc, SharedDoc) else doc
        self._runs: Array = self.doc.get(ROOT, type=Array)

    def append(self, run: Mapping[str, Any]) -> str:
        """Add a run; returns its id. Raises ValueError for an unknown field or a bad value."""
        entry = _check(run, partial=False)
        entry.setdefault("id", uuid.uuid4().hex)
        self._runs.append(Map(entry))
        return str(entry["id"])

    def update(self, run_id: str, **fields: Any) -> bool:
        """Change fields of a run (e.g. status and timings when it finishes); False if unknown."""
        changes = _check(fields, partial=True)
        changes.pop("id", None)
        with self.doc.transaction():
            for entry in self._runs:
                if entry.get("id") == run_id:
                    for key, value in changes.items():
                        entry[key] = value
                    return True
        return False

    def items(self) -> list[Run]:
        """Every run, oldest first."""
        return [_from_stored(entry) for entry in self._runs.to_py() or []]

    def get(self, run_id: str) -> Run | None:
        return next((r for r in self.items() if r.get("id") == run_id), None)

    def __len__(self) -> int:
        return len(self._runs)

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """cb() after any change to the history, local or remote; returns an unsubscribe."""
        subscription = self._runs.observe_deep(lambda _events: callback())
        return keep(self.doc, self._runs, subscription)
