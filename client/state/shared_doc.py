"""A pycrdt Doc kept in sync with the service over a `doc:<name>` channel and cached locally.

Local edits are applied at once (optimistic), committed to the cache as pending, then sent as
`yjs` updates; the service's ok reply acknowledges them. On every join and rejoin the client sends
sync step 1; the service answers with step 2 (what the client lacks) and its own step 1, which
the client answers with step 2 (what the service lacks: offline edits, or edits whose
acknowledgement was lost). So after a reconnect only the missing updates cross the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from pycrdt import Awareness, Doc, merge_updates
from veraltheim.client.net.presence import Presence
from veraltheim.client.state.cache import DocCache
from veraltheim.protocol.reasons import Reason
from veraltheim.protocol.ysync import (
    DOC_TOPIC_PREFIX,
    EMPTY_UPDATE,
    YJS_EVENT,
    YJS_SYNC_EVENT,
    BadMessage,
    Kind,
    create_awareness_message,
    create_sync_message,
    create_sync_step2_message,
    create_update_message,
    parse_message,
)

log = logging.getLogger(__name__)

COMPACT_EVERY = 500  # cached rows before the cache takes a snapshot
MAX_BATCH = 256  # local updates merged into one `yjs` push
# bytes of local updates merged into one push, at most: lowered to the service's max_update_bytes
# (minus the message header) when its join reply tells it; a single larger transaction goes alone
MAX_BATCH_BYTES = 256 * 1024
MESSAGE_HEADER_BYTES = 16  # y-protocols type, sub-type and length around an update
RESYNC_DELAY_S = 1.0  # after the service refused an update (rate limit), sync again this late
# Remote updates are cached in batches, off the path of the next message: the service holds them
# anyway, so one lost with the process is fetched again by the next sync. A local edit writes the
# batch first, so the cache never holds an edit without what it builds on.
REMOTE_WRITE_DELAY_S = 0.25
REMOTE_WRITE_BATCH = 256

ChangeCallback = Callable[[bool], None]  # cb(local: bool)


class SharedDoc:
    """`doc` is the raw pycrdt Doc (any shape); `awareness` its pycrdt Awareness."""

    def __init__(self, name: str, cache: DocCache, *, compact_every: int = COMPACT_EVERY) -> None:
        self.name = name
        self.topic = DOC_TOPIC_PREFIX + name
        self._cache = cache
        self._compact_every = compact_every
        self.doc: Doc = Doc()
        stored = cache.load(name)
        for update in ([stored.snapshot] if stored.snapshot else []) + stored.updates:
            self.doc.apply_update(update)
        self._rows = len(stored.updates)
        self._last_seq = stored.last_seq
        self.awareness = Awareness(self.doc)
        self.read_only = False
        self.batch_bytes = MAX_BATCH_BYTES  # the largest merged push; see _on_join
        self.synced = asyncio.Event()  # set once the current join's sync step 2 has arrived
        self.join_error: Any = None
        self._channel: Any = None
        self.presence: Presence | None = None  # who is in the document (phoenix presence)
        self._joined = False
        self._remote_depth = 0
        self._remote_batch: list[bytes] = []
        self._outbox: list[tuple[int, bytes]] = []
        self._flush_scheduled = False
        self._remote_timer: asyncio.TimerHandle | None = None
        self._acked = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._change_callbacks: list[ChangeCallback] = []
        self._doc_sub = self.doc.observe(self._on_transaction)
        self._awareness_sub = self.awareness.observe(self._on_awareness)
        self._awareness_task: asyncio.Task[Any] | None = None
        if self._rows > compact_every:
            self.compact()

    # -- public API -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Local edits the service has not acknowledged yet (persisted across restarts)."""
        return self._cache.pending(self.name)

    @property
    def joined(self) -> bool:
        return self._joined

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """cb(local) after every change to the document; returns a function that unsubscribes."""
        self._change_callbacks.append(callback)
        return lambda: self._change_callbacks.remove(callback)

    def set_awareness(self, state: dict[str, Any] | None) -> None:
        """This client's presence state (user, cursor, selection...), sent to every member."""
        self.awareness.set_local_state(state)

    def members(self) -> list[str]:
        """The users in this document now (presence; empty while offline)."""
        if self.presence is None or not self._joined:
            return []
        return sorted(key for key, _metas in self.presence.list())

    def peers(self) -> dict[int, dict[str, Any]]:
        """Awareness states of the other clients in this document, by Yjs client id."""
        return {c: s for c, s in self.awareness.states.items() if c != self.doc.client_id}

    def attach(self, socket: Any, params: dict[str, Any] | None = None) -> None:
        """Join `doc:<name>` on `socket` (a client.net Socket); syncs now and on every rejoin."""
        if self._channel is not None:
            return
        channel = socket.channel(self.topic, params or {})
        self._channel = channel
        self.presence = Presence(channel)
        channel.on(YJS_EVENT, self._on_yjs)
        channel.on_join(self._on_join)
        channel.on_error(self._on_down)
        channel.on_close(self._on_down)
        self._spawn(self._join(channel))
        if self._awareness_task is None:
            # renews our awareness state and expires silent peers, as y-protocols does
            self._awareness_task = self._spawn(self.awareness.start())

    async def wait_synced(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.synced.wait(), timeout)

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until the service has acknowledged every local edit. PermissionError on a
        document joined read-only that has local edits: the service never takes them."""

        async def drained() -> None:
            while self.pending:
                self._acked.clear()
                await self._acked.wait()

        self._flush()
        if self.read_only and self.pending:
            raise PermissionError(
                f"{self.topic} is joined read-only: {self.pending} local edits stay in the cache"
            )
        await asyncio.wait_for(drained(), timeout)

    async def close(self) -> None:
        """Leave the channel, write what is buffered and stop observing."""
        channel, self._channel = self._channel, None
        self._joined = False
        self._flush()
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.leave()
        if self._awareness_task is not None:
            with contextlib.suppress(RuntimeError):
                await self.awareness.stop()
            self._awareness_task.cancel()
            self._awareness_task = None
        for task in list(self._tasks):
            task.cancel()
        self.doc.unobserve(self._doc_sub)
        self.awareness.unobserve(self._awareness_sub)

    def compact(self) -> None:
        """Replace the cached rows by one snapshot (pending rows are kept until acknowledged)."""
        self._write_remote()
        self._cache.compact(self.name, self.doc.get_update(), self._last_seq)
        self._rows = self._cache.row_count(self.name)

    # -- local and remote changes ---------------------------------------------------------

    def _on_transaction(self, event: Any) -> None:
        update: bytes = event.update
        if update == EMPTY_UPDATE:
            return
        local = self._remote_depth == 0
        if local:
            # the remote updates this edit may build on go to the cache first
            self._write_remote()
            seq = self._cache.append_local(self.name, update)
            self._last_seq = seq
            self._rows += 1
            self._outbox.append((seq, update))
            self._schedule_flush()
        else:
            self._remote_batch.append(update)
            self._schedule_remote_write()
        for callback in list(self._change_callbacks):
            try:
                callback(local)
            except Exception:
                log.exception("document change callback failed")

    def _apply_remote(self, update: bytes) -> None:
        self._remote_depth += 1
        try:
            self.doc.apply_update(update)
        finally:
            self._remote_depth -= 1

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # no loop (plain offline use): local edits are already written; nothing to send, and
            # no compaction inside a pycrdt callback (the Doc is borrowed)
            self._write_remote()
            self._outbox.clear()
            return
        self._flush_scheduled = True
        loop.call_soon(self._flush)

    def _schedule_remote_write(self) -> None:
        if len(self._remote_batch) >= REMOTE_WRITE_BATCH:
            self._schedule_flush()
        elif self._remote_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write_remote()
                return
            self._remote_timer = loop.call_later(REMOTE_WRITE_DELAY_S, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._remote_timer is not None:
            self._remote_timer.cancel()
            self._remote_timer = None
        self._write_remote()
        outbox, self._outbox = self._outbox, []
        if outbox and self._can_send():
            self._send_batches(outbox)
        # else: the edits wait in the cache as pending; the next sync sends them
        if self._rows > self._compact_every:
            self.compact()

    def _send_batches(self, updates: list[tuple[int, bytes]]) -> None:
        """Push (seq, update) pairs merged into messages of at most MAX_BATCH updates and about
        `batch_bytes` each; each reply acknowledges its seqs."""
        batch: list[tuple[int, bytes]] = []
        size = 0
        for seq, update in [*updates, (0, b"")]:
            if batch and (
                not update or len(batch) >= MAX_BATCH or size + len(update) > self.batch_bytes
            ):
                merged = [u for _, u in batch]
                one = merged[0] if len(merged) == 1 else merge_updates(*merged)
                self._send_update(create_update_message(one), [s for s, _ in batch])
                batch, size = [], 0
            if update:
                batch.append((seq, update))
                size += len(update)

    def _write_remote(self) -> None:
        if self._remote_batch:
            batch, self._remote_batch = self._remote_batch, []
            self._last_seq = self._cache.append_remote(self.name, batch)
            self._rows += len(batch)

    def _can_send(self) -> bool:
        return self._joined and self._channel is not None and not self.read_only

    # -- the channel ----------------------------------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _join(self, channel: Any) -> None:
        try:
            await channel.join()
        except Exception as exc:  # JoinError or timeout: stay offline with the cache
            if self._channel is not channel:
                return  # close() left the channel while the join waited: nothing failed
            self.join_error = getattr(exc, "response", str(exc))
            log.warning("joining %s failed: %s", self.topic, exc)

    def _on_join(self, response: Any = None, *_: Any) -> None:
        if self._channel is None:
            return
        self._joined = True
        self.join_error = None
        answer = response if isinstance(response, dict) else {}
        self.read_only = bool(answer.get("read_only"))
        limit = answer.get("max_update_bytes")
        self.batch_bytes = MAX_BATCH_BYTES
        if isinstance(limit, int) and limit > 0:
            self.batch_bytes = max(1, min(MAX_BATCH_BYTES, limit - MESSAGE_HEADER_BYTES))
        self.synced.clear()
        self._push(YJS_SYNC_EVENT, create_sync_message(self.doc))
        if self.awareness.get_local_state() is not None:
            ids = [self.doc.client_id]
            self._push(
                YJS_EVENT, create_awareness_message(self.awareness.encode_awareness_update(ids))
            )

    def _on_down(self, *_: Any) -> None:
        self._joined = False
        self.synced.clear()
        others = [c for c in self.awareness.states if c != self.doc.client_id]
        if others:
            self.awareness.remove_awareness_states(others, "offline")

    def _on_yjs(self, payload: Any) -> None:
        try:
            message = parse_message(payload)
        except BadMessage as exc:
            log.warning("%s: ignoring a bad message from the service: %s", self.topic, exc)
            return
        if message.kind is Kind.SYNC_STEP1:
            # the service's state vector: answer with everything it lacks
            try:
                missing = self.doc.get_update(message.data)
            except ValueError as exc:
                log.warning("%s: bad state vector from the service: %s", self.topic, exc)
                return
            if self.read_only:
                return
            self._flush()
            if len(missing) <= self.batch_bytes:
                self._send_update(create_sync_step2_message(missing), self._last_seq)
            else:
                # too big for one message: what the service lacks is our unacknowledged edits
                # (everything else came from it), which the cache holds one by one
                self._send_batches(self._cache.pending_updates(self.name))
        elif message.kind.carries_update:
            try:
                self._apply_remote(message.data)
            except ValueError as exc:
                log.warning("%s: bad update from the service: %s", self.topic, exc)
            if message.kind is Kind.SYNC_STEP2:
                self.synced.set()
        elif message.kind is Kind.AWARENESS:
            try:
                self.awareness.apply_awareness_update(message.data, "remote")
            except (IndexError, RuntimeError, ValueError) as exc:
                log.warning("%s: bad awareness update: %s", self.topic, exc)
        elif message.kind is Kind.QUERY_AWARENESS:
            ids = list(self.awareness.states)
            self._push(
                YJS_EVENT, create_awareness_message(self.awareness.encode_awareness_update(ids))
            )

    def _on_awareness(self, topic: str, change: tuple[dict[str, list[int]], Any]) -> None:
        changes, origin = change
        if topic != "update" or origin != "local" or not self._joined:
            return
        ids = changes["added"] + changes["updated"] + changes["removed"]
        self._push(YJS_EVENT, create_awareness_message(self.awareness.encode_awareness_update(ids)))

    def _push(self, event: str, payload: bytes) -> asyncio.Task[Any] | None:
        """Write now (so pushes keep their order); a task waits for the reply."""
        channel = self._channel
        if channel is None:
            return None
        push = channel.push(event, payload)

        async def reply() -> Any:
            try:
                return await push
            except Exception as exc:  # timeout or closed: the next sync covers it
                log.debug("%s: %s push failed: %s", self.topic, event, exc)
                return None

        return self._spawn(reply())

    def _send_update(self, message: bytes, acks: list[int] | int) -> None:
        """Push an update; its ok reply acknowledges `acks` (seqs, or every seq up to one)."""
        task = self._push(YJS_EVENT, message)
        if task is not None:
            task.add_done_callback(lambda t: self._on_update_reply(t, acks))

    def _on_update_reply(self, task: asyncio.Task[Any], acks: list[int] | int) -> None:
        if task.cancelled() or self._channel is None:
            return
        reply = task.result()
        if reply is None:
            return
        if reply.status == "ok":
            if isinstance(acks, int):
                self._cache.acknowledge_upto(self.name, acks)
            else:
                self._cache.acknowledge(self.name, acks)
            self._acked.set()
            return
        reason = reply.response.get("reason") if isinstance(reply.response, dict) else None
        log.warning("%s: the service refused an update: %s", self.topic, reply.response)
        if reason == Reason.READ_ONLY:
            self.read_only = True
        elif reason in (Reason.RATE_LIMITED, Reason.STORE_FAILED):  # transient: sync again later
            asyncio.get_running_loop().call_later(RESYNC_DELAY_S, self._resync)

    def _resync(self) -> None:
        if self._joined:
            self._push(YJS_SYNC_EVENT, create_sync_message(self.doc))
