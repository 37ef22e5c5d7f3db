"""Shared notes: one collaborative text (root Text "notes") that every member can edit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Text
from veraltheim.client.state.observers import keep
from veraltheim.client.state.shared_doc import SharedDoc

ROOT = "notes"

Delta = list[dict[str, Any]]  # Quill-style: [{"retain": 5}, {"insert": "x"}, {"delete": 2}]


class Notes:
    """Typed view of the notes of a SharedDoc (or a plain pycrdt Doc)."""

    def __init__(self, doc: SharedDoc | Doc) -> None:
        self.doc: Doc = doc.doc if isinstance(doc, SharedDoc) else doc
        self._text: Text = self.doc.get(ROOT, type=Text)

    @property
    def text(self) -> str:
        return str(self._text)

    def __len__(self) -> int:
        return len(self._text)

    def insert(self, index: int, text: str) -> None:
        self._check(index, 0)
        self._text.insert(index, text)

    def append(self, text: str) -> None:
        self._text += text

    def delete(self, index: int, length: int) -> None:
        self._check(index, length)
        if length:
            del self._text[index : index + length]

    def replace(self, text: str) -> None:
        """Set the whole text (one transaction); prefer insert/delete for concurrent editing."""
        with self.doc.transaction():
            if len(self._text):
                del self._text[0 : len(self._text)]
            self._text.insert(0, text)

    def on_change(self, callback: Callable[[Delta], None]) -> Callable[[], None]:
        """cb(delta) after every change, local or remote; returns an unsubscribe."""
        subscription = self._text.observe(lambda event: callback(list(event.delta)))
        return keep(self.doc, self._text, subscription)

    def _check(self, index: int, length: int) -> None:
        if index < 0 or length < 0 or index + length > len(self._text):
            raise IndexError(
                f"range {index}..{index + length} is outside the notes (length {len(self._text)})"
            )
