"""The documents in memory: one pycrdt Doc (plus its awareness) per open name, loaded from the
store on first join and dropped `idle_unload_s` after the last member leaves, or sooner when
`max_loaded_docs` are loaded and another one is asked for."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pycrdt import Doc
from veraltheim.protocol.ysync import (
    DOC_TOPIC_PREFIX,
    EMPTY_UPDATE,
    YJS_EVENT,
    BadMessage,
    create_awareness_message,
    create_sync_message,
    create_sync_step2_message,
    create_update_message,
)
from veraltheim.service.docs.awareness import AwarenessTable
from veraltheim.service.docs.store import DocStore, StoredDoc, StoreError, UpdateStore

log = logging.getLogger(__name__)
# Updates bigger than this are checked on a worker thread.
CHECK_OFF_LOOP_BYTES = 64 * 1024


class UpdateRejected(ValueError):
    """pycrdt could not decode or apply an update, or the document would no longer encode and
    load after it; nothing was stored."""


class StoreFailed(RuntimeError):
    """The store could not commit an update (disk full, I/O error); nothing was kept."""


class TooManyDocuments(RuntimeError):
    """The user already has `max_docs_per_user` documents open, or the service has
    `max_loaded_docs` loaded and none of them is idle."""


class DocumentUnavailable(RuntimeError):
    """The stored document cannot be loaded: it is quarantined (kept aside for an operator)."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _apply(doc: Doc, update: bytes) -> None:
    """doc.apply_update, with every failure (a Rust panic included) as UpdateRejected."""
    try:
        doc.apply_update(update)
    except Exception as exc:
        raise UpdateRejected(f"update refused: {_first_line(exc)}") from exc
    except BaseException as exc:
        # pyo3 turns a Rust panic into PanicException, a BaseException.
        if type(exc).__name__ != "PanicException":
            raise
        raise UpdateRejected(f"update refused: {_first_line(exc)}") from exc


def _check_loads(encoded: bytes) -> None:
    """An encoded update (a doc's state or a part of it) must load into a fresh Doc: pycrdt
    accepts some updates after which the document no longer encodes to something it can
    decode, and every later joiner (and every restart) would fail on it."""
    try:
        _apply(Doc(), encoded)
    except UpdateRejected as exc:
        raise UpdateRejected(
            f"update refused: the document would no longer encode and load ({exc})"
        ) from None


def _check_alone(update: bytes) -> None:
    alone = Doc()
    _apply(alone, update)
    _check_loads(alone.get_update())


async def _checked(check: Callable[[bytes], None], data: bytes) -> None:
    """Run a check; one of a big update on a worker thread: pycrdt holds the GIL while it
    decodes, but the loop gets its turns between the calls instead of waiting for all."""
    if len(data) > CHECK_OFF_LOOP_BYTES:
        await asyncio.to_thread(check, data)
    else:
        check(data)


def build_doc(stored: StoredDoc) -> Doc:
    """The Doc of a stored document, checked to encode and load again; UpdateRejected if not."""
    doc = Doc()
    for update in ([stored.snapshot] if stored.snapshot is not None else []) + stored.updates:
        _apply(doc, update)
    _check_loads(doc.get_update())
    return doc


class LiveDoc:
    """One loaded document. Create with `await LiveDoc.open(...)`."""

    def __init__(
        self,
        name: str,
        store: UpdateStore,
        compact_every: int,
        awareness: AwarenessTable,
        on_compacted: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._on_compacted = on_compacted
        self._store = store
        self._compact_every = compact_every
        self.doc = Doc()
        self.awareness = awareness
        self.members = 0
        self.unload_handle: asyncio.TimerHandle | None = None
        self.idle_since = 0.0
        self._last_seq = 0
        self._since_snapshot = 0
        self._compaction: asyncio.Task[None] | None = None
        self._held: list[bytes] | None = None

    @classmethod
    async def open(
        cls,
        name: str,
        store: UpdateStore,
        compact_every: int,
        awareness: AwarenessTable,
        on_compacted: Callable[[], None] | None = None,
    ) -> LiveDoc:
        """Load `name`; DocumentUnavailable (after quarantining it) if it cannot be loaded."""
        live = cls(name, store, compact_every, awareness, on_compacted)
        await live._load()
        return live

    async def _load(self) -> None:
        # updates from other nodes that arrive while the stored state is read and built wait,
        # then go on top of it (the state read may not hold them)
        self._held = []
        try:
            await self._load_stored()
        finally:
            held, self._held = self._held, None
            for update in held:
                self.apply_remote(update)

    async def _load_stored(self) -> None:
        stored = await self._store.load(self.name)
        if stored.quarantined is not None:
            raise DocumentUnavailable(
                f"document {self.name!r} is quarantined: {stored.quarantined}"
            )
        try:
            # pycrdt holds the GIL while it applies, but a log of many updates lets the loop
            # run between them, and the store's read happens off the loop as well.
            doc = await asyncio.to_thread(build_doc, stored)
        except UpdateRejected as exc:
            reason = f"cannot be loaded: {exc}"
            log.error("document %r %s; quarantined (its rows are kept aside)", self.name, reason)
            await self._store.quarantine(self.name, reason)
            raise DocumentUnavailable(f"document {self.name!r} is quarantined: {reason}") from None
        self.doc = doc
        self._last_seq = stored.last_seq
        self._since_snapshot = len(stored.updates)

    # -- document sync --------------------------------------------------------------------

    def sync_step1(self) -> bytes:
        return create_sync_message(self.doc)

    def sync_step2(self, state_vector: bytes) -> bytes:
        """What a peer with `state_vector` lacks, as a sync step 2 message."""
        try:
            return create_sync_step2_message(self.doc.get_update(state_vector))
        except ValueError as exc:
            raise BadMessage(f"bad state vector: {_first_line(exc)}") from exc

    async def apply_update(self, update: bytes) -> bool:
        """Validate, apply, then commit to the store. Returns False for an empty update.
        Raises UpdateRejected (the store and the Doc are untouched) or StoreFailed."""
        if update == EMPTY_UPDATE:
            return False
        # On its own first (the cost of the update's size), so a bad one never touches the Doc.
        await _checked(_check_alone, update)
        added = self._apply_watched(update)
        try:
            # what the update added to this Doc, encoded, must load again too (the
            # transaction's own update: its cost is the change's, not the document's)
            for part in added:
                await _checked(_check_loads, part)
        except UpdateRejected:
            log.warning("document %r: an update broke its encoding; reloading it", self.name)
            await self._load()
            raise
        try:
            seq = await self._store.append(self.name, update)
        except (sqlite3.Error, StoreError) as exc:
            # the Doc must not hold what the store does not: the sender keeps the update
            # pending and sends it again on its next sync
            log.error("storing an update of %r failed: %s; reloading it", self.name, exc)
            try:
                await self._load()
            except (sqlite3.Error, StoreError) as again:
                # the store is away: the Doc keeps the update, which is not acknowledged; the
                # sender's next sync stores it
                log.error("reloading %r failed too: %s", self.name, again)
            raise StoreFailed(f"the update could not be stored: {exc}") from exc
        self._last_seq = max(self._last_seq, seq)
        self._since_snapshot += 1
        if self._since_snapshot >= self._compact_every:
            self.start_compaction()
        return True

    def _apply_watched(self, update: bytes) -> list[bytes]:
        """Apply to the Doc; returns what its transaction encoded (nothing if no change)."""
        added: list[bytes] = []
        subscription = self.doc.observe(lambda event: added.append(event.update))
        try:
            _apply(self.doc, update)
        finally:
            self.doc.unobserve(subscription)
        return added

    def apply_remote(self, update: bytes) -> None:
        """An update another node stored (the store follows the log): apply it to this copy.
        It was checked where it came in; one that no longer applies is logged and skipped."""
        if self._held is not None:
            self._held.append(update)
            return
        try:
            _apply(self.doc, update)
        except UpdateRejected as exc:
            log.warning("document %r: an update from another node was refused: %s", self.name, exc)

    # -- compaction -----------------------------------------------------------------------

    def start_compaction(self) -> asyncio.Task[None] | None:
        """Snapshot the Doc now (fast) and let the store replace the log with it on its thread;
        at most one at a time per document."""
        if self._since_snapshot == 0:
            return None
        if self._compaction is not None and not self._compaction.done():
            return self._compaction
        snapshot, state, upto = self.doc.get_update(), self.doc.get_state(), self._last_seq
        self._since_snapshot = 0
        self._compaction = asyncio.get_running_loop().create_task(
            self._compact(snapshot, state, upto)
        )
        return self._compaction

    async def _compact(self, snapshot: bytes, state: bytes, upto: int) -> None:
        try:
            kept = await self._store.compact(self.name, snapshot, state, upto)
        except Exception:
            log.exception("compacting document %r failed; its log is kept", self.name)
            return
        if self._on_compacted is not None:
            self._on_compacted()
        if kept:
            log.info("document %r compacted; %d pending updates kept beside it", self.name, kept)

    async def compact(self) -> None:
        """Compact now (if anything is new) and wait until it is stored."""
        if self._compaction is not None:
            await asyncio.shield(self._compaction)
        task = self.start_compaction()
        if task is not None:
            await asyncio.shield(task)

    # -- awareness ------------------------------------------------------------------------

    def apply_awareness(self, data: bytes, member: object) -> bytes | None:
        """Apply an awareness update from `member` (a channel); returns the message for the
        other members (what was taken of it), or None. BadMessage if refused."""
        update = self.awareness.apply(data, member)
        return None if update is None else create_awareness_message(update)

    def awareness_message(self) -> bytes | None:
        """Every known awareness state, for a member that just joined."""
        update = self.awareness.encode_all()
        return None if update is None else create_awareness_message(update)

    def forget_member(self, member: object) -> bytes | None:
        """Drop the awareness of the clients `member` announced (it left); returns the message
        telling the others, or None."""
        update = self.awareness.forget(member)
        return None if update is None else create_awareness_message(update)


class DocRegistry:
    """The `docs` component: owns the store and the loaded documents."""

    def __init__(
        self,
        *,
        max_docs_per_user: int,
        idle_unload_s: float,
        compact_every: int,
        max_loaded_docs: int = 1000,
        max_awareness_states: int = 16,
        max_awareness_state_bytes: int = 16384,
    ) -> None:
        """The limits come from DocsConfig (see from_config), where their defaults live."""
        self.max_docs_per_user = max_docs_per_user
        self.idle_unload_s = idle_unload_s
        self.compact_every = compact_every
        self.max_loaded_docs = max_loaded_docs
        self.max_awareness_states = max_awareness_states
        self.max_awareness_state_bytes = max_awareness_state_bytes
        self.store: UpdateStore | None = None
        self.loaded: dict[str, LiveDoc] = {}
        self._loading: dict[str, asyncio.Future[LiveDoc]] = {}
        self._unloading: set[asyncio.Task[None]] = set()
        self._open_by_user: dict[str, Counter[str]] = defaultdict(Counter)
        self.stored: Any = None  # metrics counters, set by start()
        self.refused: Any = None
        self.quarantined: Any = None
        # With a store shared by several nodes, updates reach the other nodes' clients through
        # the store's log (see _remote_update), not as pubsub broadcasts, which an outage drops.
        self.shared_store = False
        self._pubsub: Any = None
        self.compactions: Any = None

    @classmethod
    def from_config(cls, config: Any) -> DocRegistry:
        """The factory service/app.py registers (config: ServiceConfig)."""
        docs = config.docs
        return cls(
            max_docs_per_user=docs.max_docs_per_user,
            idle_unload_s=docs.idle_unload_s,
            compact_every=docs.compact_every,
            max_loaded_docs=docs.max_loaded_docs,
            max_awareness_states=docs.max_awareness_states,
            max_awareness_state_bytes=docs.max_awareness_state_bytes,
        )

    async def start(self, ctx: Any) -> None:
        url = ctx.config.cluster.store_url
        if url:
            from veraltheim.service.cluster.redis_store import open_redis_store  # cluster extra

            self.store = await open_redis_store(url, self._remote_update)
            self.shared_store = True
            self._pubsub = ctx.pubsub
        else:
            self.open_store(Path(ctx.data_dir))
        metrics = ctx.metrics
        metrics.gauge("docs_loaded", "documents in memory", lambda: len(self.loaded))
        self.stored = metrics.counter("doc_updates_stored", "document updates committed")
        self.refused = metrics.counter("doc_updates_refused", "document updates refused, by reason")
        self.quarantined = metrics.counter(
            "docs_unavailable", "joins refused: the document is quarantined"
        )
        self.compactions = metrics.counter("doc_compactions", "document logs compacted")

    def _compacted(self) -> None:
        if self.compactions is not None:
            self.compactions.inc()

    def open_store(self, data_dir: Path) -> None:
        self.store = DocStore.in_data_dir(data_dir)

    def _remote_update(self, name: str, update: bytes) -> None:
        """An update another node stored, read from the shared store's log: this node's copy
        and its clients of the document get it here, in log order, also after an outage."""
        live = self.loaded.get(name)
        if live is not None:
            live.apply_remote(update)
            if self._pubsub is not None:
                message = create_update_message(update)
                self._pubsub.broadcast_local(DOC_TOPIC_PREFIX + name, YJS_EVENT, message)

    def cluster_health(self) -> dict[str, Any] | None:
        """For /healthz: the shared store's state, or None with SQLite."""
        health = getattr(self.store, "health", None)
        return health() if health is not None else None

    async def stop(self) -> None:
        for name in list(self.loaded):
            await self._unload(name, force=True)
        if self._unloading:
            await asyncio.wait(list(self._unloading))
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def open(self, name: str, user: str) -> LiveDoc:
        """A member joins `name`; loads it if needed. Raises TooManyDocuments or
        DocumentUnavailable."""
        assert self.store is not None, "DocRegistry used before start()"
        open_docs = self._open_by_user[user]
        if name not in open_docs and len(open_docs) >= self.max_docs_per_user:
            raise TooManyDocuments(
                f"user has {len(open_docs)} documents open (limit {self.max_docs_per_user})"
            )
        open_docs[name] += 1  # counted while it loads, so parallel joins cannot pass the limit
        try:
            live = await self._get(name)
        except BaseException:
            self._release(name, user)
            raise
        if live.unload_handle is not None:
            live.unload_handle.cancel()
            live.unload_handle = None
        live.members += 1
        return live

    async def _get(self, name: str) -> LiveDoc:
        live = self.loaded.get(name)
        if live is not None:
            return live
        loading = self._loading.get(name)
        if loading is not None:
            return await asyncio.shield(loading)
        self._make_room()
        assert self.store is not None
        future: asyncio.Future[LiveDoc] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            awareness = AwarenessTable(self.max_awareness_states, self.max_awareness_state_bytes)
            live = await LiveDoc.open(
                name, self.store, self.compact_every, awareness, self._compacted
            )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a lone joiner must not log "never retrieved"
            if isinstance(exc, DocumentUnavailable) and self.quarantined is not None:
                self.quarantined.inc()
            raise
        finally:
            del self._loading[name]
        self.loaded[name] = live
        future.set_result(live)
        return live

    def _make_room(self) -> None:
        """Unload idle documents (longest idle first) until one more fits."""
        busy = len(self.loaded) + len(self._loading)
        if busy < self.max_loaded_docs:
            return
        idle = sorted(
            (live for live in self.loaded.values() if live.members <= 0),
            key=lambda live: live.idle_since,
        )
        for live in idle[: busy - self.max_loaded_docs + 1]:
            self._schedule_unload(live.name)
        if len(self.loaded) + len(self._loading) >= self.max_loaded_docs:
            raise TooManyDocuments(
                f"the service has {self.max_loaded_docs} documents open, all in use; try later"
            )

    def _release(self, name: str, user: str) -> None:
        open_docs = self._open_by_user[user]
        open_docs[name] -= 1
        if open_docs[name] <= 0:
            del open_docs[name]
        if not open_docs:
            self._open_by_user.pop(user, None)

    def close(self, live: LiveDoc, user: str) -> None:
        """A member left; unload the document a while after the last one."""
        self._release(live.name, user)
        live.members -= 1
        if live.members > 0 or self.loaded.get(live.name) is not live:
            return
        loop = asyncio.get_running_loop()
        live.idle_since = loop.time()
        live.unload_handle = loop.call_later(self.idle_unload_s, self._schedule_unload, live.name)

    def _take(self, name: str, force: bool) -> LiveDoc | None:
        live = self.loaded.get(name)
        if live is None or (live.members > 0 and not force):
            return None
        del self.loaded[name]
        if self.store is not None:
            self.store.forget(name)
        if live.unload_handle is not None:
            live.unload_handle.cancel()
        return live

    def _schedule_unload(self, name: str) -> None:
        """Unload now: gone from `loaded` at once, compacted in the background (a join that
        loads it again meanwhile reads the log, which holds the same state)."""
        live = self._take(name, force=False)
        if live is not None:
            task = asyncio.get_running_loop().create_task(self._compact_unloaded(live))
            self._unloading.add(task)
            task.add_done_callback(self._unloading.discard)

    async def _unload(self, name: str, force: bool = False) -> None:
        live = self._take(name, force)
        if live is not None:
            await self._compact_unloaded(live)

    @staticmethod
    async def _compact_unloaded(live: LiveDoc) -> None:
        try:
            await live.compact()
        except Exception:
            log.exception("compacting document %r at unload failed; its log is kept", live.name)
