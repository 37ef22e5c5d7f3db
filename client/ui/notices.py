"""The message bar: errors and notices reach the user in the window, not only in a log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Property, QObject, Signal, Slot
from veraltheim.client.ui.errors import describe_error
from veraltheim.client.ui.qml import qml_type

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger(__name__)


class NoticeKind(StrEnum):
    """How serious a message is (its colour and icon in the message bar)."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@qml_type
class Notices(QObject):
    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._text = ""
        self._hint = ""
        self._kind = ""  # a NoticeKind, or "" (nothing shown)
        self._tasks: set[asyncio.Task] = set()

    def show(self, kind: NoticeKind, text: str, hint: str = "") -> None:
        kind = NoticeKind(kind)
        if kind == NoticeKind.WARNING and self._kind == NoticeKind.ERROR:
            return  # the link's state is also in the status bar; the error needs reading first
        self._kind, self._text, self._hint = str(kind), text, hint
        self.changed.emit()

    def error(self, exc: BaseException, context: str = "") -> None:
        what, todo = describe_error(exc)
        log.info("%s%s", context, what, exc_info=exc)
        self.show(NoticeKind.ERROR, f"{context}{what}", todo)

    def clear(self, kind: NoticeKind | None = None) -> None:
        """Hide the message (only if it is of `kind`, when given)."""
        if kind is None or self._kind == kind:
            self._kind, self._text, self._hint = "", "", ""
            self.changed.emit()

    def spawn(self, coro: Coroutine[Any, Any, Any], context: str = "") -> asyncio.Task:
        """Run a coroutine on the loop; an exception it raises becomes a message, never a hang."""
        import asyncio  # here: the window draws before asyncio is imported (app.py)

        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                try:
                    self.error(exc, context)
                except Exception:  # never let the report itself escape into Qt's loop
                    print(f"veraltheim: {context}{exc!r}", file=sys.stderr)

        task.add_done_callback(done)
        return task

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            import asyncio

            await asyncio.gather(*tasks, return_exceptions=True)

    def guard(self, fn: Callable[[], None], context: str) -> Callable[[], None]:
        """fn for a Qt timer or signal: an exception becomes a message (Qt would only print it)."""

        def guarded() -> None:
            try:
                fn()
            except Exception as exc:
                self.error(exc, context)

        return guarded

    @Slot()
    def dismiss(self) -> None:
        self.clear()

    text = Property(str, lambda self: self._text, notify=changed)
    hint = Property(str, lambda self: self._hint, notify=changed)
    kind = Property(str, lambda self: self._kind, notify=changed)
    # what the message bar tests, so it never spells a kind out
    shown = Property(bool, lambda self: self._kind != "", notify=changed)
    isError = Property(bool, lambda self: self._kind == NoticeKind.ERROR, notify=changed)
    isWarning = Property(bool, lambda self: self._kind == NoticeKind.WARNING, notify=changed)
    isInfo = Property(bool, lambda self: self._kind == NoticeKind.INFO, notify=changed)
