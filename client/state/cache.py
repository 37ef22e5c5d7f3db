"""The client's copy of every document it has opened: one SQLite file (WAL) under the user data
dir, holding per document a snapshot and the updates after it.

A local update is committed before it is sent, flagged `pending` until the service acknowledges
it, so edits made offline (or in flight when the app died) survive and reach the service on the
next sync. Remote updates are written in batches: the service holds them anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_path
from veraltheim.protocol.constants import APP_NAME

CACHE_FILE = "documents.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    doc TEXT NOT NULL,
    data BLOB NOT NULL,
    pending INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_doc ON updates (doc, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    doc TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    upto_seq INTEGER NOT NULL
);
"""


def default_cache_path() -> Path:
    """The user data dir as the app's settings name it (same platformdirs call), + CACHE_FILE."""
    return user_data_path(APP_NAME) / CACHE_FILE


@dataclass(frozen=True, slots=True)
class CachedDoc:
    snapshot: bytes | None
    updates: list[bytes]
    last_seq: int


class DocCache:
    """Synchronous; each call is one short SQLite transaction on the event loop thread."""

    def __init__(self, path: Path | str | None = None) -> None:
        path = Path(path) if path is not None else default_cache_path()
        if path.is_dir():
            path = path / CACHE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process; only an OS crash can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def load(self, doc: str) -> CachedDoc:
        row = self._db.execute(
            "SELECT data, upto_seq FROM snapshots WHERE doc = ?", (doc,)
        ).fetchone()
        snapshot, upto = (bytes(row[0]), row[1]) if row else (None, 0)
        # pending rows stay after compaction (they must still be acknowledged), so read by seq
        # from the start and let pycrdt skip what the snapshot already holds
        rows = self._db.execute(
            "SELECT seq, data FROM updates WHERE doc = ? AND (seq > ? OR pending) ORDER BY seq",
            (doc, upto),
        ).fetchall()
        last = max([upto, *(r[0] for r in rows)])
        return CachedDoc(snapshot, [bytes(r[1]) for r in rows], last)

    def append_local(self, doc: str, update: bytes) -> int:
        """Commit a local edit, pending until acknowledged; returns its seq."""
        cur = self._db.execute(
            "INSERT INTO updates (doc, data, pending) VALUES (?, ?, 1)", (doc, update)
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def append_remote(self, doc: str, updates: Iterable[bytes]) -> int:
        """Commit updates that came from the service, in one transaction; returns the last seq."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO updates (doc, data, pending) VALUES (?, ?, 0)",
                ((doc, u) for u in updates),
            )
            row = self._db.execute("SELECT max(seq) FROM updates WHERE doc = ?", (doc,)).fetchone()
        return int(row[0] or 0)

    def acknowledge(self, doc: str, seqs: Iterable[int]) -> None:
        """The service holds these local edits."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE updates SET pending = 0 WHERE seq = ? AND doc = ?",
                ((seq, doc) for seq in seqs),
            )

    def acknowledge_upto(self, doc: str, upto_seq: int) -> None:
        """The service holds every local edit up to upto_seq (it took our sync step 2)."""
        self._db.execute(
            "UPDATE updates SET pending = 0 WHERE doc = ? AND pending AND seq <= ?",
            (doc, upto_seq),
        )

    def pending_updates(self, doc: str) -> list[tuple[int, bytes]]:
        """The unacknowledged local edits, oldest first, as (seq, update)."""
        rows = self._db.execute(
            "SELECT seq, data FROM updates WHERE doc = ? AND pending ORDER BY seq", (doc,)
        ).fetchall()
        return [(r[0], bytes(r[1])) for r in rows]

    def pending(self, doc: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM updates WHERE doc = ? AND pending", (doc,)
        ).fetchone()
        return int(row[0])

    def row_count(self, doc: str) -> int:
        row = self._db.execute("SELECT count(*) FROM updates WHERE doc = ?", (doc,)).fetchone()
        return int(row[0])

    def compact(self, doc: str, snapshot: bytes, upto_seq: int) -> None:
        """Store a snapshot holding everything up to upto_seq and drop the acknowledged rows."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO snapshots (doc, data, upto_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (doc) DO UPDATE "
                "SET data = excluded.data, upto_seq = excluded.upto_seq",
                (doc, snapshot, upto_seq),
            )
            self._db.execute(
                "DELETE FROM updates WHERE doc = ? AND seq <= ? AND NOT pending", (doc, upto_seq)
            )

    def names(self) -> list[str]:
        rows = self._db.execute(
            "SELECT doc FROM snapshots UNION SELECT DISTINCT doc FROM updates ORDER BY 1"
        ).fetchall()
        return [r[0] for r in rows]
