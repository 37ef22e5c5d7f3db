"""A list of dicts exposed to QML as a QAbstractListModel (roles = the dict keys)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from PySide6.QtCore import (
    Property,
    QAbstractListModel,
    QByteArray,
    QModelIndex,
    QPersistentModelIndex,
    Signal,
    Slot,
)
from veraltheim.client.ui.qml import qml_type

# Qt.ItemDataRole.DisplayRole and .UserRole as numbers (tests/gui/test_models.py checks them):
# importing QtCore's `Qt` namespace builds all of its ~100 Python enums, 35 ms the first frame
# need not wait for.
DISPLAY_ROLE = 0
FIRST_ROLE = 0x0100 + 1
Index = QModelIndex | QPersistentModelIndex


@qml_type
class DictListModel(QAbstractListModel):
    countChanged = Signal()

    def __init__(self, roles: Sequence[str], parent=None, *, limit: int | None = None) -> None:
        super().__init__(parent)
        self._roles = list(roles)
        self._role_ids = {FIRST_ROLE + i: name for i, name in enumerate(self._roles)}
        self._rows: list[dict[str, Any]] = []
        self._limit = limit  # keep only the newest `limit` rows (the Inspector's frame log)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self._rows

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: Index, role: int = DISPLAY_ROLE) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        name = self._role_ids.get(role)
        if name is None:
            name = self._roles[0] if role == DISPLAY_ROLE else None
        return None if name is None else self._rows[index.row()].get(name)

    def roleNames(self) -> dict[int, QByteArray]:
        return {rid: QByteArray(name.encode()) for rid, name in self._role_ids.items()}

    def reset(self, rows: Iterable[dict[str, Any]]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        if self._limit is not None:
            self._rows = self._rows[-self._limit :]
        self.endResetModel()
        self.countChanged.emit()

    def extend(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._limit is not None:
            rows = rows[-self._limit :]
            drop = max(0, len(self._rows) + len(rows) - self._limit)
            if drop:
                self.beginRemoveRows(QModelIndex(), 0, drop - 1)
                del self._rows[:drop]
                self.endRemoveRows()
        start = len(self._rows)
        self.beginInsertRows(QModelIndex(), start, start + len(rows) - 1)
        self._rows.extend(rows)
        self.endInsertRows()
        self.countChanged.emit()

    def append(self, row: dict[str, Any]) -> None:
        self.extend([row])

    def set_row(self, i: int, row: dict[str, Any]) -> None:
        self._rows[i] = row
        self.dataChanged.emit(self.index(i), self.index(i))

    def _count(self) -> int:
        return len(self._rows)

    count = Property(int, _count, notify=countChanged)

    @Slot(int, result="QVariantMap")
    def get(self, i: int) -> dict[str, Any]:
        return dict(self._rows[i]) if 0 <= i < len(self._rows) else {}
