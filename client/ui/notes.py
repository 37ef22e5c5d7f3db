"""The Notes view's controller: the shared notes document, edited together, with who is in it."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Property, QObject, QTimer, Signal, Slot
from veraltheim.client.ui.models import DictListModel
from veraltheim.client.ui.notices import Notices
from veraltheim.client.ui.qml import qml_type


def text_edit(old: str, new: str) -> tuple[int, int, str]:
    """The smallest single replacement turning old into new: (start, deleted length, inserted)."""
    start = 0
    limit = min(len(old), len(new))
    while start < limit and old[start] == new[start]:
        start += 1
    end_old, end_new = len(old), len(new)
    while end_old > start and end_new > start and old[end_old - 1] == new[end_new - 1]:
        end_old -= 1
        end_new -= 1
    return start, end_old - start, new[start:end_new]


def map_position(pos: int, delta: list[dict[str, Any]]) -> int:
    """Where a caret at `pos` is after a Quill-style delta (retain / insert / delete) was applied
    to the text: text inserted before it pushes it right, text deleted before it pulls it left."""
    old = shift = 0
    for op in delta:
        if "retain" in op:
            old += int(op["retain"])
        elif "insert" in op:
            if old < pos:  # text typed right at the caret stays after it
                shift += len(op["insert"]) if isinstance(op["insert"], str) else 1
        elif "delete" in op:
            n = int(op["delete"])
            if old < pos:
                shift -= min(n, pos - old)
            old += n
    return max(0, pos + shift)


@qml_type
class NotesController(QObject):
    textChanged = Signal()
    changed = Signal()

    def __init__(self, notices: Notices, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.notices = notices
        self.notes: Any = None
        self.shared_doc: Any = None
        self._me = ""
        self._pull_scheduled = False
        self._deltas: list[list[dict[str, Any]]] = []  # changes since the text was last read
        self._last_deltas: list[list[dict[str, Any]]] = []  # those behind the text shown now
        self._text = ""
        self._status = "not loaded"
        self._people = DictListModel(["user", "detail"], self)

    def attach(self, notes: Any, shared_doc: Any, me: str, status: str) -> None:
        """Follow a Notes view; `shared_doc` carries awareness (who is in the document)."""
        self.notes = notes
        self.shared_doc = shared_doc
        notes.on_change(self._on_change)
        if shared_doc is not None:
            shared_doc.set_awareness({"user": me})
            refresh = self.notices.guard(self._refresh_people, "Notes: ")
            shared_doc.awareness.observe(lambda *_: QTimer.singleShot(0, refresh))
        self._me = me
        self._status = status
        self._pull()
        self._refresh_people()
        self.changed.emit()

    def set_me(self, me: str) -> None:
        """The user's name changed (signed in): others see the new one in this document."""
        if me and me != self._me:
            self._me = me
            if self.shared_doc is not None:
                self.shared_doc.set_awareness({"user": me})
            self._refresh_people()

    def _refresh_people(self) -> None:
        people = [(f"{self._me} (you)", "")] if self.notes is not None else []
        if self.shared_doc is not None:
            names = sorted(str(s.get("user", "?")) for s in self.shared_doc.peers().values() if s)
            people += [(n, "") for n in names]
        self._people.reset({"user": u, "detail": d} for u, d in people)

    def set_status(self, status: str) -> None:
        self._status = status
        self.changed.emit()

    def _on_change(self, delta: Any = None) -> None:
        if isinstance(delta, list):
            self._deltas.append(delta)
        self._schedule_pull()

    def _schedule_pull(self) -> None:
        """Change callbacks run inside the document's transaction: read the text after it."""
        if not self._pull_scheduled:
            self._pull_scheduled = True
            QTimer.singleShot(0, self.notices.guard(self._pull, "Notes: "))

    def _pull(self) -> None:
        self._pull_scheduled = False
        self._last_deltas, self._deltas = self._deltas, []
        text = str(self.notes.text) if self.notes is not None else ""
        if text != self._text:
            self._text = text
            self.textChanged.emit()

    @Slot(int, result=int)
    def mapPosition(self, pos: int) -> int:
        """The editor's caret after the change just shown (remote edits move it, not jump it)."""
        for delta in self._last_deltas:
            pos = map_position(pos, delta)
        return pos

    @Slot(str)
    def edit(self, text: str) -> None:
        """The editor's whole text after a keystroke: applied as one minimal edit."""
        if self.notes is None or text == self._text:
            return
        start, deleted, inserted = text_edit(self._text, text)
        self._text = text
        self.textChanged.emit()  # an edit from code (not the editor) must reach the editor too
        try:
            with self.notes.doc.transaction():
                if deleted:
                    self.notes.delete(start, deleted)
                if inserted:
                    self.notes.insert(start, inserted)
        except Exception as exc:
            self.notices.error(exc, "Notes: ")
            self._pull()

    text = Property(str, lambda self: self._text, notify=textChanged)
    ready = Property(bool, lambda self: self.notes is not None, notify=changed)
    status = Property(str, lambda self: self._status, notify=changed)
    people = Property(DictListModel, lambda self: self._people, constant=True)
