"""The durable copy of every document: an append-only update log plus one snapshot per document,
in one SQLite file (WAL) under the service's data dir.

Every call runs on one writer thread of the store's own, never on the event loop: the loop
awaits the commit, so an update is acknowledged only once it is stored, and a slow disk or a
big compaction delays only the documents waiting for it. One thread also keeps the commits of
a document in the order they were asked for; the appends asked for in one turn of the loop go
in one transaction.

An update is committed before it is broadcast, so a service killed at any moment restarts with
every update any client saw. Compaction replaces the log with a snapshot taken from a Doc
(`Doc.get_update()`: pycrdt's merge_updates is superlinear in the number of updates), but keeps
every update the snapshot does not hold: one still pending (it arrived before an update it
depends on, so the Doc could not integrate it and its encoded state leaves it out).

A document that cannot be loaded is quarantined: its rows move to the quarantine tables (kept,
not deleted) and joins are refused until an operator looks at it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from veraltheim.protocol.ysync import update_is_pending

STORE_FILE = "docs.sqlite3"
T = TypeVar("T")

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
CREATE TABLE IF NOT EXISTS quarantine (
    doc TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantined_updates (
    seq INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantined_snapshots (
    doc TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    upto_seq INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class StoredDoc:
    """What the store holds for one document: the snapshot (or None), the updates kept beside
    it (newer ones, and older ones still pending), and why it is quarantined (or None)."""

    snapshot: bytes | None
    updates: list[bytes]
    last_seq: int
    quarantined: str | None = None

    @property
    def stored_bytes(self) -> int:
        return len(self.snapshot or b"") + sum(map(len, self.updates))


class StoreError(Exception):
    """A store backend could not do what it was asked (its server is unreachable, say)."""


class UpdateStore(Protocol):
    """What the documents need of a store (SQLite here; Redis in service/cluster/redis_store.py
    implements the same)."""

    async def load(self, doc: str) -> StoredDoc: ...

    async def append(self, doc: str, update: bytes) -> int: ...

    async def compact(
        self, doc: str, snapshot: bytes, state_vector: bytes, upto_seq: int
    ) -> int: ...

    async def quarantine(self, doc: str, reason: str) -> None: ...

    async def close(self) -> None: ...

    def forget(self, doc: str) -> None:
        """The document was unloaded (a store that follows other nodes' updates stops)."""


class DocStore:
    """The SQLite store. The async methods run on the store's writer thread; the `*_now`
    methods are the same work done on the caller's thread (the writer thread calls them)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docs-store")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # appends made in one turn of the event loop, committed together (one thread hop, one
        # transaction): under load that is what keeps the throughput up
        self._batch: list[tuple[str, bytes, asyncio.Future[int]]] = []
        self._db()  # create the schema (and fail) now, not at the first update

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> DocStore:
        return cls(Path(data_dir) / STORE_FILE)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # one connection per thread; close_now closes them all from whichever thread
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process; only an OS crash can lose the last
            # commits.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        self._flush()  # appends asked for earlier go first: the thread runs work in order
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        done = asyncio.get_running_loop().run_in_executor(
            self._executor, self.append_many_now, [(doc, update) for doc, update, _ in batch]
        )

        def settle(result: asyncio.Future[list[int]]) -> None:
            error = None if result.cancelled() else result.exception()
            for k, (_, _, future) in enumerate(batch):
                if future.done():
                    continue
                if result.cancelled():
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result.result()[k])

        done.add_done_callback(settle)

    # -- async API (the event loop awaits these) -------------------------------------------------

    async def load(self, doc: str) -> StoredDoc:
        return await self._run(self.load_now, doc)

    async def append(self, doc: str, update: bytes) -> int:
        """Commit one update (with the others asked for in the same turn of the loop); returns
        its sequence number."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._batch.append((doc, update, future))
        if len(self._batch) == 1:
            loop.call_soon(self._flush)
        return await future

    async def compact(self, doc: str, snapshot: bytes, state_vector: bytes, upto_seq: int) -> int:
        """See compact_now; returns how many pending updates were kept."""
        return await self._run(self.compact_now, doc, snapshot, state_vector, upto_seq)

    async def quarantine(self, doc: str, reason: str) -> None:
        await self._run(self.quarantine_now, doc, reason)

    def forget(self, doc: str) -> None:
        pass  # one node: nothing to follow

    async def names(self) -> list[str]:
        return await self._run(self.names_now)

    async def close(self) -> None:
        """Finish the queued work, then close every connection."""
        self._flush()
        await asyncio.get_running_loop().run_in_executor(None, self.close_now)

    # -- the work itself -----------------------------------------------------------------------

    def close_now(self) -> None:
        self._executor.shutdown(wait=True)
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()

    def load_now(self, doc: str) -> StoredDoc:
        db = self._db()
        row = db.execute("SELECT reason FROM quarantine WHERE doc = ?", (doc,)).fetchone()
        if row is not None:
            return StoredDoc(None, [], 0, quarantined=row[0])
        row = db.execute("SELECT data, upto_seq FROM snapshots WHERE doc = ?", (doc,)).fetchone()
        snapshot, upto = (bytes(row[0]), row[1]) if row else (None, 0)
        # every row left beside the snapshot: newer updates and the pending ones compaction kept
        rows = db.execute(
            "SELECT seq, data FROM updates WHERE doc = ? ORDER BY seq", (doc,)
        ).fetchall()
        last = max(upto, rows[-1][0]) if rows else upto
        return StoredDoc(snapshot, [bytes(r[1]) for r in rows], last)

    def append_many_now(self, items: list[tuple[str, bytes]]) -> list[int]:
        """Commit every (doc, update) in one transaction (all or none); their seqs."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            return [self.append_now(doc, update) for doc, update in items]

    def append_now(self, doc: str, update: bytes) -> int:
        cur = self._db().execute("INSERT INTO updates (doc, data) VALUES (?, ?)", (doc, update))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def compact_now(self, doc: str, snapshot: bytes, state_vector: bytes, upto_seq: int) -> int:
        """Store `snapshot` (the Doc's state at `state_vector`, which holds every integrated
        update up to upto_seq) and drop those updates, keeping the ones still pending at that
        state, in one transaction: a crash leaves either the old or the new form."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT upto_seq FROM snapshots WHERE doc = ?", (doc,)).fetchone()
            if row is not None and row[0] > upto_seq:
                return 0  # a newer snapshot is stored already (an older copy finished late)
            rows = db.execute(
                "SELECT seq, data FROM updates WHERE doc = ? AND seq <= ?", (doc, upto_seq)
            ).fetchall()
            gone = [(seq,) for seq, data in rows if not update_is_pending(data, state_vector)]
            db.execute(
                "INSERT INTO snapshots (doc, data, upto_seq) VALUES (?, ?, ?) "
                "ON CONFLICT (doc) DO UPDATE "
                "SET data = excluded.data, upto_seq = excluded.upto_seq",
                (doc, snapshot, upto_seq),
            )
            db.executemany("DELETE FROM updates WHERE seq = ?", gone)
        return len(rows) - len(gone)

    def quarantine_now(self, doc: str, reason: str) -> None:
        """Move the document's rows aside (kept for an operator) and refuse it from now on."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO quarantine (doc, reason, at) VALUES (?, ?, ?)",
                (doc, reason, time.time()),
            )
            db.execute(
                "INSERT OR REPLACE INTO quarantined_snapshots SELECT doc, data, upto_seq "
                "FROM snapshots WHERE doc = ?",
                (doc,),
            )
            db.execute(
                "INSERT OR REPLACE INTO quarantined_updates SELECT seq, doc, data "
                "FROM updates WHERE doc = ?",
                (doc,),
            )
            db.execute("DELETE FROM snapshots WHERE doc = ?", (doc,))
            db.execute("DELETE FROM updates WHERE doc = ?", (doc,))

    def release_now(self, doc: str) -> bool:
        """Put a quarantined document back as it was (after a fix); False if it was not."""
        db = self._db()
        with db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("DELETE FROM quarantine WHERE doc = ?", (doc,)).rowcount == 0:
                return False
            db.execute(
                "INSERT OR REPLACE INTO snapshots SELECT doc, data, upto_seq "
                "FROM quarantined_snapshots WHERE doc = ?",
                (doc,),
            )
            db.execute(
                "INSERT OR REPLACE INTO updates SELECT seq, doc, data "
                "FROM quarantined_updates WHERE doc = ?",
                (doc,),
            )
            db.execute("DELETE FROM quarantined_snapshots WHERE doc = ?", (doc,))
            db.execute("DELETE FROM quarantined_updates WHERE doc = ?", (doc,))
        return True

    def quarantined_now(self) -> dict[str, str]:
        rows = self._db().execute("SELECT doc, reason FROM quarantine ORDER BY doc").fetchall()
        return dict(rows)

    def names_now(self) -> list[str]:
        rows = (
            self._db()
            .execute("SELECT doc FROM snapshots UNION SELECT DISTINCT doc FROM updates ORDER BY 1")
            .fetchall()
        )
        return [r[0] for r in rows]
