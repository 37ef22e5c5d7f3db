"""The documents in memory: one pycrdt Doc (plus its awareness) per open name, loaded from the
store on first join and dropped `idle_unload_s` after the last member leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pycrdt import Awareness, Decoder, Doc
from veraltheim.protocol.ysync import (
    EMPTY_UPDATE,
    BadMessage,
    create_awareness_message,
    create_sync_message,
    create_sync_step2_message,
)
from veraltheim.service.docs.store import DocStore

log = logging.getLogger(__name__)


class UpdateRejected(ValueError):
    """pycrdt could not decode or apply an update; nothing was stored."""


class StoreFailed(RuntimeError):
    """The store could not commit an update (disk full, I/O error); nothing was kept."""


class TooManyDocuments(RuntimeError):
    """The user already has `max_docs_per_user` documents open."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _apply_checked(doc: Doc, update: bytes) -> None:
    try:
        doc.apply_update(update)
    except Exception as exc:
        raise UpdateRejected(f"update refused: {_first_line(exc)}") from exc
    except BaseException as exc:
        # pyo3 turns a Rust panic into PanicException, a BaseException.
        if type(exc).__name__ != "PanicException":
            raise
        raise UpdateRejected(f"update refused: {_first_line(exc)}") from exc


class LiveDoc:
    """One loaded document. Every method is synchronous: channels call it from the event loop."""

    def __init__(self, name: str, store: DocStore, compact_every: int) -> None:
        self.name = name
        self._store = store
        self._compact_every = compact_every
        self.doc: Doc = Doc()
        self._load()
        self.awareness = Awareness(self.doc)
        self.awareness.set_local_state(None)  # the service itself has no cursor
        self._owners: dict[int, Any] = {}  # awareness client id -> the member that announced it
        self.members = 0
        self.unload_handle: asyncio.TimerHandle | None = None

    # -- document sync --------------------------------------------------------------------

    def sync_step1(self) -> bytes:
        return create_sync_message(self.doc)

    def sync_step2(self, state_vector: bytes) -> bytes:
        """What a peer with `state_vector` lacks, as a sync step 2 message."""
        try:
            return create_sync_step2_message(self.doc.get_update(state_vector))
        except ValueError as exc:
            raise BadMessage(f"bad state vector: {_first_line(exc)}") from exc

    def _load(self) -> None:
        stored = self._store.load(self.name)
        doc = Doc()
        for update in ([stored.snapshot] if stored.snapshot is not None else []) + stored.updates:
            doc.apply_update(update)
        self.doc = doc
        self._last_seq = stored.last_seq
        self._since_snapshot = len(stored.updates)

    def apply_update(self, update: bytes) -> bool:
        """Validate by applying, then commit to the store. Returns False for an empty update.
        Raises UpdateRejected (the store is untouched) or StoreFailed."""
        if update == EMPTY_UPDATE:
            return False
        _apply_checked(self.doc, update)
        try:
            self._last_seq = self._store.append(self.name, update)
        except sqlite3.Error as exc:
            # the Doc must not hold what the store does not: the sender keeps the update
            # pending and sends it again on its next sync
            log.error("storing an update of %r failed: %s; reloading it", self.name, exc)
            self._load()
            raise StoreFailed(f"the update could not be stored: {exc}") from exc
        self._since_snapshot += 1
        if self._since_snapshot >= self._compact_every:
            self.compact()
        return True

    def compact(self) -> None:
        if self._since_snapshot == 0:
            return
        self._store.compact(self.name, self.doc.get_update(), self._last_seq)
        self._since_snapshot = 0

    # -- awareness ------------------------------------------------------------------------

    def apply_awareness(self, data: bytes, member: Any) -> None:
        """Apply an awareness update from `member` (a channel). A client id belongs to the member
        that first announced it (Yjs providers also relay other clients' states)."""
        try:
            ids = self._client_ids(data)  # validates the whole message before applying
            self.awareness.apply_awareness_update(data, member)
        except (IndexError, RuntimeError, ValueError, UnicodeDecodeError) as exc:
            raise BadMessage(f"bad awareness update: {_first_line(exc)}") from exc
        for client_id in ids:
            self._owners.setdefault(client_id, member)

    @staticmethod
    def _client_ids(data: bytes) -> list[int]:
        decoder = Decoder(data)
        ids = []
        for _ in range(decoder.read_var_uint()):
            ids.append(decoder.read_var_uint())
            decoder.read_var_uint()
            json.loads(decoder.read_var_string() or "null")
        if decoder.length != 0:
            raise ValueError("trailing bytes after the awareness update")
        return ids

    def awareness_message(self) -> bytes | None:
        """Every known awareness state, for a member that just joined."""
        ids = list(self.awareness.states)
        if not ids:
            return None
        return create_awareness_message(self.awareness.encode_awareness_update(ids))

    def forget_member(self, member: Any) -> bytes | None:
        """Drop the awareness of the clients `member` announced (it left); returns the message
        telling the others, or None."""
        mine = [c for c, owner in self._owners.items() if owner is member]
        for client_id in mine:
            del self._owners[client_id]
        gone = [c for c in mine if c in self.awareness.states]
        if not gone:
            return None
        self.awareness.remove_awareness_states(gone, "left")
        return create_awareness_message(self.awareness.encode_awareness_update(gone))


class DocRegistry:
    """The `docs` component: owns the store and the loaded documents."""

    def __init__(
        self,
        *,
        max_docs_per_user: int,
        idle_unload_s: float,
        compact_every: int,
    ) -> None:
        """The limits come from DocsConfig (see from_config), where their defaults live."""
        self.max_docs_per_user = max_docs_per_user
        self.idle_unload_s = idle_unload_s
        self.compact_every = compact_every
        self.store: DocStore | None = None
        self.loaded: dict[str, LiveDoc] = {}
        self._open_by_user: dict[str, Counter[str]] = defaultdict(Counter)
        self.stored: Any = None  # metrics counters, set by start()
        self.refused: Any = None

    @classmethod
    def from_config(cls, config: Any) -> DocRegistry:
        """The factory service/app.py registers (config: ServiceConfig)."""
        docs = config.docs
        return cls(
            max_docs_per_user=docs.max_docs_per_user,
            idle_unload_s=docs.idle_unload_s,
            compact_every=docs.compact_every,
        )

    async def start(self, ctx: Any) -> None:
        self.open_store(Path(ctx.data_dir))
        metrics = ctx.metrics
        metrics.gauge("docs_loaded", "documents in memory", lambda: len(self.loaded))
        self.stored = metrics.counter("doc_updates_stored", "document updates committed")
        self.refused = metrics.counter("doc_updates_refused", "document updates refused, by reason")

    def open_store(self, data_dir: Path) -> None:
        self.store = DocStore.in_data_dir(data_dir)

    async def stop(self) -> None:
        for name in list(self.loaded):
            self._unload(name, force=True)
        if self.store is not None:
            self.store.close()
            self.store = None

    def open(self, name: str, user: str) -> LiveDoc:
        """A member joins `name`; loads it if needed. Raises TooManyDocuments."""
        assert self.store is not None, "DocRegistry used before start()"
        open_docs = self._open_by_user[user]
        if name not in open_docs and len(open_docs) >= self.max_docs_per_user:
            raise TooManyDocuments(
                f"user has {len(open_docs)} documents open (limit {self.max_docs_per_user})"
            )
        live = self.loaded.get(name)
        if live is None:
            live = self.loaded[name] = LiveDoc(name, self.store, self.compact_every)
        if live.unload_handle is not None:
            live.unload_handle.cancel()
            live.unload_handle = None
        live.members += 1
        open_docs[name] += 1
        return live

    def close(self, live: LiveDoc, user: str) -> None:
        """A member left; unload the document a while after the last one."""
        open_docs = self._open_by_user[user]
        open_docs[live.name] -= 1
        if open_docs[live.name] <= 0:
            del open_docs[live.name]
        if not open_docs:
            self._open_by_user.pop(user, None)
        live.members -= 1
        if live.members > 0 or self.loaded.get(live.name) is not live:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: unload now
            loop = asyncio.get_running_loop()
            live.unload_handle = loop.call_later(self.idle_unload_s, self._unload, live.name)
            return
        self._unload(live.name)

    def _unload(self, name: str, force: bool = False) -> None:
        live = self.loaded.get(name)
        if live is None or (live.members > 0 and not force):
            return
        try:
            live.compact()
        except Exception:
            log.exception("compacting document %r at unload failed; its log is kept", name)
        if live.unload_handle is not None:
            live.unload_handle.cancel()
        del self.loaded[name]
