"""The Inspector (developer tools): frames on the link, dispatcher decisions, timings, caches."""

from __future__ import annotations

import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Property, QObject, QTimer, Signal, Slot
from veraltheim.client.compute.routes import SIDES
from veraltheim.client.state.run_record import RunRecord
from veraltheim.client.ui.models import DictListModel
from veraltheim.client.ui.qml import qml_type
from veraltheim.client.ui.units import human_bytes

MAX_FRAMES = 1000  # the log keeps the newest frames only
FLUSH_MS = 150  # frames are batched into the model, so a burst never floods the UI
SUMMARY_CHARS = 160


def _shrink(value: Any, depth: int = 0) -> Any:
    """The payload with binary parts replaced by their size: never stringify megabytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value):,} bytes>"
    if depth > 4:
        return "..."
    if isinstance(value, dict):
        return {k: _shrink(v, depth + 1) for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        return [_shrink(v, depth + 1) for v in value[:20]]
    return value


def _binary_size(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, dict):
        return sum(_binary_size(v) for v in value.values())
    return 0


def frame_row(direction: str, msg: Any) -> dict[str, Any]:
    payload = getattr(msg, "payload", None)
    binary = _binary_size(payload)
    if isinstance(payload, bytes | bytearray | memoryview):
        text = f"<binary, {binary:,} bytes>"
    else:
        try:
            text = json.dumps(_shrink(payload), separators=(",", ":"), default=str)
        except (TypeError, ValueError):
            text = repr(payload)[:SUMMARY_CHARS]
    now = time.time()
    return {
        "time": time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}",
        "direction": "\u2192" if direction == "out" else "\u2190",
        "topic": str(getattr(msg, "topic", "")),
        "event": str(getattr(msg, "event", "")),
        "size": binary or len(text),
        "summary": text[:SUMMARY_CHARS] + ("..." if len(text) > SUMMARY_CHARS else ""),
    }


def folder_usage(path: Path) -> tuple[int, int]:
    files = total = 0
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                files += 1
                total += p.stat().st_size
    elif path.is_file():
        files, total = 1, path.stat().st_size
    return files, total


@qml_type
class Inspector(QObject):
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._frames = DictListModel(
            ["time", "direction", "topic", "event", "size", "summary"], self, limit=MAX_FRAMES
        )
        self._decisions = DictListModel(["kernel", "where", "estimate", "actual", "why"], self)
        self._timings = DictListModel(["kernel", "where", "runs", "median", "last", "bytes"], self)
        self._samples: dict[tuple[str, str], list[tuple[float, int]]] = defaultdict(list)
        self._pending: deque[dict[str, Any]] = deque(maxlen=MAX_FRAMES)
        self._flush = QTimer(self)
        self._flush.setInterval(FLUSH_MS)
        self._flush.setSingleShot(True)
        self._flush.timeout.connect(self._flush_frames)
        self.cache_paths: dict[str, Path] = {}
        self.state_lines: Callable[[], list[str]] = list  # e.g. the dispatcher's cost model
        self._cache_text = ""

    def on_frame(self, direction: str, msg: Any) -> None:
        """sock.on_frame callback: cheap; the rows reach the model in batches."""
        self._pending.append(frame_row(direction, msg))
        if not self._flush.isActive():
            self._flush.start()

    def _flush_frames(self) -> None:
        rows = list(self._pending)
        self._pending.clear()
        self._frames.extend(rows)

    @Slot()
    def clearFrames(self) -> None:
        self._pending.clear()
        self._frames.reset([])

    def record(self, run: RunRecord) -> None:
        """A finished run (from the Workbench): its decision and timing."""
        est = {side: run.estimate_ms(side) for side in SIDES}
        estimate = " / ".join(f"{k} {v:,.1f}" for k, v in est.items() if v is not None)
        elapsed = run.total_ms or 0.0
        why = run.summary.reason
        if run.summary.fallback:
            why += f"; remote failed: {run.summary.fallback}"
        self._decisions.append(
            {
                "kernel": run.kernel,
                "where": run.where,
                "estimate": estimate or "\u2014",
                "actual": f"{elapsed:,.1f} ms",
                "why": why,
            }
        )
        import statistics  # here, not at the top: 7 ms before the window's first frame

        key = (run.kernel, run.where)
        self._samples[key].append((elapsed, run.size))
        self._timings.reset(
            {
                "kernel": k,
                "where": w,
                "runs": len(s),
                "median": f"{statistics.median(x for x, _ in s):,.1f} ms",
                "last": f"{s[-1][0]:,.1f} ms",
                "bytes": human_bytes(s[-1][1]),
            }
            for (k, w), s in sorted(self._samples.items())
        )
        self.refreshCache()

    @Slot()
    def refreshCache(self) -> None:
        lines = []
        for name, path in self.cache_paths.items():
            if not path.exists():
                lines.append(f"{name}:\n  {path}\n  (not written yet)")
                continue
            files, total = folder_usage(path)
            count = f"{files} file{'s' if files != 1 else ''}"
            lines.append(f"{name}:\n  {path}\n  {count}, {human_bytes(total)}")
        try:
            state = self.state_lines()
            if state:
                lines.append("\n".join(state))
        except Exception as exc:  # developer detail: never break the view over it
            lines.append(f"(state unavailable: {exc})")
        self._cache_text = "\n\n".join(lines)
        self.changed.emit()

    frames = Property(DictListModel, lambda self: self._frames, constant=True)
    decisions = Property(DictListModel, lambda self: self._decisions, constant=True)
    timings = Property(DictListModel, lambda self: self._timings, constant=True)
    cacheText = Property(str, lambda self: self._cache_text, notify=changed)
