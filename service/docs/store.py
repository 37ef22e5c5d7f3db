"""The durable copy of every document: an append-only update log plus one snapshot per document,
in one SQLite file (WAL) under the service's data dir.

An update is committed before it is broadcast, so a service killed at any moment restarts with
every update any client saw. Compaction replaces a prefix of the log with a snapshot taken from a
Doc (`Doc.get_update()`: pycrdt's merge_updates is superlinear in the number of updates).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

STORE_FILE = "docs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_doc ON updates (doc, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    doc TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    upto_seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredDoc:
    """What the store holds for one document: the snapshot (or None) and the updates after it."""

    snapshot: bytes | None
    updates: list[bytes]
    last_seq: int

    @property
    def stored_bytes(self) -> int:
        return len(self.snapshot or b"") + sum(map(len, self.updates))


class DocStore:
    """Synchronous and fast (one small commit per update); used from the event loop thread."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; only an OS crash can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> DocStore:
        return cls(Path(data_dir) / STORE_FILE)

    def close(self) -> None:
        self._db.close()

    def load(self, doc: str) -> StoredDoc:
        row = self._db.execute(
            "SELECT data, upto_seq FROM snapshots WHERE doc = ?", (doc,)
        ).fetchone()
        snapshot, upto = (bytes(row[0]), row[1]) if row else (None, 0)
        rows = self._db.execute(
            "SELECT seq, data FROM updates WHERE doc = ? AND seq > ? ORDER BY seq", (doc, upto)
        ).fetchall()
        last = rows[-1][0] if rows else upto
        return StoredDoc(snapshot, [bytes(r[1]) for r in rows], last)

    def append(self, doc: str, update: bytes) -> int:
        """Commit one update; returns its sequence number."""
        cur = self._db.execute("INSERT INTO updates (doc, data) VALUES (?, ?)", (doc, update))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def compact(self, doc: str, snapshot: bytes, upto_seq: int) -> None:
        """Store `snapshot` (the state including every update up to upto_seq) and drop those
        updates, in one transaction: a crash leaves either the old or the new form."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO snapshots (doc, data, upto_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (doc) DO UPDATE "
                "SET data = excluded.data, upto_seq = excluded.upto_seq",
                (doc, snapshot, upto_seq),
            )
            self._db.execute("DELETE FROM updates WHERE doc = ? AND seq <= ?", (doc, upto_seq))

    def names(self) -> list[str]:
        rows = self._db.execute(
            "SELECT doc FROM snapshots UNION SELECT DISTINCT doc FROM updates ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]
