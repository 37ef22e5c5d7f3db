"""Installed user kernels appear without a restart: watch the user kernel directory and, when its
manifest changes, re-read it and refresh the Workbench's list and the dispatcher's catalogue."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer

# Changes come in bursts (module, package, then manifest written and renamed): settle first.
SETTLE_MS = 100


class KernelWatcher(QObject):
    def __init__(
        self,
        directory: Path,
        reload: Callable[[], bool],
        on_change: Callable[[], None],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._reload = reload
        self._on_change = on_change
        directory.mkdir(parents=True, exist_ok=True)
        self._watcher = QFileSystemWatcher([str(directory)], self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self.check)
        self._watcher.directoryChanged.connect(lambda _path: self._timer.start())

    def check(self) -> bool:
        """Re-read the manifest if it changed (also the Workbench's refresh); True if it did."""
        if self._reload():
            self._on_change()
            return True
        return False
