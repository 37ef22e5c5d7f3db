"""The shared run history: one entry per compute run, appended by whichever client ran it.

Stored as the root Array "runs" of Maps, so a run's status can change after it was appended
(running -> done) and concurrent appends from several clients all survive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pycrdt import Array, Doc, Map
from veraltheim.client.state.observers import keep
from veraltheim.client.state.run_record import (
    ROOT,
    Run,
    RunRecord,
    checked_run,
    new_run_id,
    run_from_stored,
)
from veraltheim.client.state.shared_doc import SharedDoc


class RunHistory:
    """Typed view of the run history of a SharedDoc (or a plain pycrdt Doc)."""

    def __init__(self, doc: SharedDoc | Doc) -> None:
        self.doc: Doc = doc.doc if isinstance(doc, SharedDoc) else doc
        self.array: Array = self.doc.get(ROOT, type=Array)  # of Maps, one per run

    def append(self, run: RunRecord | Mapping[str, Any]) -> str:
        """Add a run; returns its id. Raises ValueError for an unknown field or a bad value."""
        entry = checked_run(run.to_entry() if isinstance(run, RunRecord) else run, partial=False)
        entry.setdefault("id", new_run_id())
        self.array.append(Map(entry))
        return str(entry["id"])

    def update(self, run_id: str, **fields: Any) -> bool:
        """Change fields of a run (e.g. status and timings when it finishes); False if unknown."""
        changes = checked_run(fields, partial=True)
        changes.pop("id", None)
        with self.doc.transaction():
            for entry in self.array:
                if entry.get("id") == run_id:
                    for key, value in changes.items():
                        entry[key] = value
                    return True
        return False

    def items(self) -> list[Run]:
        """Every run, oldest first."""
        return [run_from_stored(entry) for entry in self.array.to_py() or []]

    def records(self) -> list[RunRecord]:
        """Every run, oldest first, read leniently (RunRecord.from_entry)."""
        return [RunRecord.from_entry(entry) for entry in self.items()]

    def get(self, run_id: str) -> Run | None:
        return next((r for r in self.items() if r.get("id") == run_id), None)

    def __len__(self) -> int:
        return len(self.array)

    def on_change(self, callback: Callable[[], None]) -> Callable[[], None]:
        """cb() after any change to the history, local or remote; returns an unsubscribe."""
        subscription = self.array.observe_deep(lambda _events: callback())
        return keep(self.doc, self.array, subscription)
