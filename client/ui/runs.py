"""The Runs view's controller: the shared run history (a RunHistory document), live."""

from __future__ import annotations

import json
import time
from typing import Any

from PySide6.QtCore import Property, QObject, QTimer, Signal, Slot
from veraltheim.client.state.run_record import RunRecord, RunStatus
from veraltheim.client.ui.models import DictListModel
from veraltheim.client.ui.notices import NoticeKind, Notices
from veraltheim.client.ui.qml import qml_type
from veraltheim.client.ui.units import human_bytes

ROLES = ["id", "when", "user", "kernel", "where", "size", "elapsed"]


def run_row(run: RunRecord) -> dict[str, Any]:
    at = run.summary.at
    when = time.strftime("%H:%M:%S", time.localtime(at)) if at is not None else ""
    elapsed = run.total_ms
    status = "" if run.status == RunStatus.DONE else f" ({run.status})"
    return {
        "id": run.id,
        "when": when,
        "user": run.user or "?",
        "kernel": run.kernel or "?",
        "where": (run.where or "?") + status,
        "size": human_bytes(run.size),
        "elapsed": f"{elapsed:,.1f} ms" if elapsed is not None else "",
    }


def _record(entry: Any) -> RunRecord:
    return RunRecord.from_entry(entry.to_py() if hasattr(entry, "to_py") else entry)


def _whole_numbers(value: Any) -> Any:
    """Yjs keeps every number as a double: show 160.0 as 160."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


@qml_type
class Runs(QObject):
    changed = Signal()

    def __init__(self, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.notices = notices
        self.history: Any = None
        self._runs: list[RunRecord] = []
        self._model = DictListModel(ROLES, self)
        self._selected = -1
        self._status = "not loaded"
        self._refresh_scheduled = False
        self._appends_only = False  # every change since the last refresh only appended runs

    def attach(self, history: Any, status: str) -> None:
        self.history = history
        self._runs = []
        self._appends_only = False
        self._array = history.array
        self._subscription = self._array.observe_deep(self._on_events)  # kept: it must live
        self._status = status
        self.refresh()

    def detach(self) -> None:
        self.history = None

    def set_status(self, status: str) -> None:
        self._status = status
        self.changed.emit()

    def _on_events(self, events: Any) -> None:
        """Inside the transaction: only note whether anything but an append happened."""
        known = len(self._runs)
        for event in events:
            if getattr(event, "path", None):  # a field of one run changed
                self._appends_only = False
                continue
            pos = 0
            for op in getattr(event, "delta", None) or []:
                if "retain" in op:
                    pos += int(op["retain"])
                elif "insert" in op:
                    if pos < known:  # a concurrent append merged in before runs we show
                        self._appends_only = False
                    pos += len(op["insert"])
                else:  # a run was removed
                    self._appends_only = False
        self._schedule_refresh()

    def _schedule_refresh(self, *_: Any) -> None:
        """Change callbacks run inside the document's transaction: read it after, once."""
        if not self._refresh_scheduled:
            self._refresh_scheduled = True
            QTimer.singleShot(0, self.notices.guard(self.refresh, "Run history: "))

    def refresh(self) -> None:
        self._refresh_scheduled = False
        if self.history is None:
            return
        known = len(self._runs)
        if self._appends_only and len(self.history) > known:
            # The usual change is an append: read only the new entries (reading the whole
            # history costs ~80 us per run, a visible stall once it holds thousands).
            new = [_record(e) for e in self._array[known:]]
            self._runs.extend(new)
            self._model.extend([run_row(r) for r in new])
        else:
            self._full_refresh()
        self._appends_only = True
        self.changed.emit()

    def _full_refresh(self) -> None:
        runs = self.history.records()  # oldest first, as appended
        selected_id = (
            self._runs[self._selected].id if 0 <= self._selected < len(self._runs) else None
        )
        self._runs = runs
        self._model.reset(run_row(r) for r in runs)
        self._selected = next((i for i, r in enumerate(runs) if r.id == selected_id), -1)

    def record(self, run: RunRecord) -> None:
        """A run finished here: append it to the shared history (offline it waits in the cache)."""
        if self.history is None:
            self.notices.show(
                NoticeKind.WARNING, "The run history is not open; this run is not recorded.", ""
            )
            return
        self.history.append(run)
        self.refresh()

    @Slot(int)
    def select(self, index: int) -> None:
        if index != self._selected:
            self._selected = index if 0 <= index < len(self._runs) else -1
            self.changed.emit()

    def _details(self) -> str:
        if not 0 <= self._selected < len(self._runs):
            return ""
        run = _whole_numbers(self._runs[self._selected].to_entry())
        at = run["summary"]["at"]
        if at is not None:
            run["summary"]["at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
        return json.dumps(run, indent=2, sort_keys=True, default=str)

    model = Property(DictListModel, lambda self: self._model, constant=True)
    selected = Property(int, lambda self: self._selected, notify=changed)
    details = Property(str, _details, notify=changed)
    status = Property(str, lambda self: self._status, notify=changed)
    runs = property(lambda self: list(self._runs))
