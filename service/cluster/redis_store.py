"""Document update logs in Redis (`--store redis://...`): a second implementation of the docs'
UpdateStore, so any node opens any document and a node restart loses nothing.

Per document NAME:
- `vt:log:NAME`: a stream, one entry per update, id `SEQ-0`, fields `u` (the update) and `n`
  (the node that stored it); SEQ comes from `vt:seq:NAME` (INCR), both in one Lua script, so the
  ids of every node's appends are one sequence.
- `vt:snap:NAME`: a hash {data, upto}: the snapshot holding every update up to `upto` that is
  no longer in the stream.
- `vt:quarantine:NAME` {reason, at}; a quarantined document's keys move to `vt:q*:NAME`.

An append is acknowledged once Redis has it (durable as the Redis server's AOF is: run it with
`appendonly yes`; `appendfsync always` keeps every acknowledged update through a Redis crash).
While Redis is away an append retries for up to STORE_WAIT_S, then fails (`store_failed`: the
client keeps the update and sends it again on its next sync).

Several nodes may hold the same document: each tails the streams of the documents it has loaded
and hands the other nodes' updates to `on_remote_update`, so every copy converges. Compaction is
safe against a node whose copy lags: before dropping log entries it checks (off the event loop)
that the new snapshot already holds the stored snapshot and every entry it drops, deletions
included; the swap is a compare-and-set in Lua, so two nodes compacting at once cannot lose an
update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pycrdt import Doc
from veraltheim.protocol.ysync import update_is_pending
from veraltheim.service.cluster.bus import redis_client, redis_errors
from veraltheim.service.docs.store import StoredDoc, StoreError

log = logging.getLogger(__name__)

STORE_WAIT_S = 10.0  # an append waits this long for Redis to come back before it fails
RETRY_S = 0.1
TAIL_BLOCK_MS = 200  # a newly loaded document is tailed within this
TAIL_BATCH = 500
SNAPSHOT_CHECK_S = 0.5  # while idle, how often a node looks for compactions it has not seen

_APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-0', 'u', ARGV[1], 'n', ARGV[2])
return seq
"""

# KEYS: snap, log. ARGV: expected upto ('' when none), snapshot, new upto, ids to drop...
_COMPACT = """
local cur = redis.call('HGET', KEYS[1], 'upto')
if (cur or '') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'upto', ARGV[3])
for i = 4, #ARGV do redis.call('XDEL', KEYS[2], ARGV[i]) end
return #ARGV - 3
"""

_QUARANTINE = """
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'at', ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[4]) end
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAME', KEYS[3], KEYS[5]) end
return 1
"""


def _keys(doc: str) -> dict[str, str]:
    return {k: f"vt:{k}:{doc}" for k in ("log", "seq", "snap", "quarantine", "qlog", "qsnap")}


def _seq(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def removable(
    snapshot: bytes, stored_snapshot: bytes | None, entries: list[tuple[int, bytes]], sv: bytes
) -> list[int] | None:
    """The seqs of `entries` a store may drop once `snapshot` replaces `stored_snapshot`, or None
    when `snapshot` lacks part of the stored snapshot or of an entry it would drop (a node whose
    copy lags behind the others'). Pending updates (see update_is_pending) are always kept."""
    drop = [(seq, u) for seq, u in entries if not update_is_pending(u, sv)]
    doc = Doc()
    doc.apply_update(snapshot)
    before = doc.get_update()
    for update in ([stored_snapshot] if stored_snapshot else []) + [u for _, u in drop]:
        doc.apply_update(update)
    if doc.get_update() != before:
        return None
    return [seq for seq, _ in drop]


class RedisUpdateStore:
    def __init__(self, url: str, node: str) -> None:
        self.url = url
        self.node = node
        self.on_remote_update: Callable[[str, bytes], None] | None = None
        self._redis: Any = None
        self._tail_redis: Any = None
        self._append: Any = None
        self._compact: Any = None
        self._quarantine: Any = None
        self._watched: dict[str, str] = {}  # doc -> last stream id handed over
        self._tail_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._merged: dict[str, int] = {}  # doc -> the snapshot upto last merged here
        self._next_check = 0.0
        self.up = True
        self.last_error = ""
        self.down_since: float | None = None

    async def start(self) -> None:
        self._redis = redis_client(self.url)
        self._tail_redis = redis_client(self.url)
        self._append = self._redis.register_script(_APPEND)
        self._compact = self._redis.register_script(_COMPACT)
        self._quarantine = self._redis.register_script(_QUARANTINE)
        try:
            await self._redis.ping()
        except redis_errors() as exc:
            self._down(exc)
            log.error("docs: cannot reach Redis store %s now (%s); retrying", self.url, exc)
        self._tail_task = asyncio.get_running_loop().create_task(self._tail(), name="docs-tail")

    async def close(self) -> None:
        if self._tail_task is not None:
            self._tail_task.cancel()
            with contextlib.suppress(BaseException):
                await self._tail_task
        for client in (self._redis, self._tail_redis):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"redis": "up" if self.up else "down", "loaded": len(self._watched)}
        if not self.up:
            out["redis_down_s"] = round(time.time() - (self.down_since or time.time()), 3)
            out["redis_error"] = self.last_error
        return out

    def _down(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.up:
            self.up, self.down_since = False, time.time()
            log.error("docs: lost the Redis store (%s); edits wait for it", self.last_error)

    def _back(self) -> None:
        if not self.up:
            log.info(
                "docs: the Redis store is back after %.1f s", time.time() - (self.down_since or 0)
            )
            self.up, self.down_since = True, None

    async def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """fn() against Redis, retried while Redis is away, for up to STORE_WAIT_S."""
        errors = redis_errors()
        deadline = time.monotonic() + STORE_WAIT_S
        while True:
            try:
                result = await fn()
            except errors as exc:
                self._down(exc)
                if time.monotonic() >= deadline:
                    raise StoreError(f"the Redis store is unreachable ({what}): {exc}") from exc
                await asyncio.sleep(RETRY_S)
                continue
            self._back()
            return result

    # -- UpdateStore ---------------------------------------------------------------------------

    async def load(self, doc: str) -> StoredDoc:
        keys = _keys(doc)

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(keys["quarantine"], "reason")
                pipe.hmget(keys["snap"], "data", "upto")
                pipe.xrange(keys["log"])
                return await pipe.execute()

        reason, (snapshot, upto), entries = await self._call("load", read)
        if reason is not None:
            return StoredDoc(None, [], 0, quarantined=reason.decode())
        last = _seq(entries[-1][0]) if entries else 0
        self._watched[doc] = f"{last}-0"
        self._wake.set()
        return StoredDoc(
            snapshot,
            [fields[b"u"] for _, fields in entries],
            max(last, int(upto or 0)),
        )

    async def append(self, doc: str, update: bytes) -> int:
        keys = _keys(doc)
        return int(
            await self._call(
                "append",
                lambda: self._append(keys=[keys["seq"], keys["log"]], args=[update, self.node]),
            )
        )

    async def compact(self, doc: str, snapshot: bytes, state_vector: bytes, upto_seq: int) -> int:
        keys = _keys(doc)

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(keys["snap"], "data", "upto")
                pipe.xrange(keys["log"], "-", f"{upto_seq}-0")
                return await pipe.execute()

        (stored, stored_upto), entries = await self._call("compact", read)
        if stored_upto is not None and int(stored_upto) > upto_seq:
            return 0  # a newer snapshot is stored already
        listed = [(_seq(i), f[b"u"]) for i, f in entries]
        drop = await asyncio.to_thread(removable, snapshot, stored, listed, state_vector)
        if drop is None:
            log.info("docs: %r not compacted: this node's copy lags the store's", doc)
            return len(listed)
        expected = "" if stored_upto is None else stored_upto.decode()
        args = [expected, snapshot, str(upto_seq), *(f"{s}-0" for s in drop)]
        done = await self._call(
            "compact", lambda: self._compact(keys=[keys["snap"], keys["log"]], args=args)
        )
        if int(done) < 0:
            return len(listed)  # another node compacted meanwhile; its snapshot stands
        return len(listed) - len(drop)

    async def quarantine(self, doc: str, reason: str) -> None:
        k = _keys(doc)
        await self._call(
            "quarantine",
            lambda: self._quarantine(
                keys=[k["quarantine"], k["log"], k["snap"], k["qlog"], k["qsnap"]],
                args=[reason, str(time.time())],
            ),
        )

    def forget(self, doc: str) -> None:
        """The document was unloaded: stop tailing it."""
        self._watched.pop(doc, None)
        self._merged.pop(doc, None)

    # -- the other nodes' updates ----------------------------------------------------------------

    async def _tail(self) -> None:
        errors = redis_errors()
        while True:
            if not self._watched:
                self._wake.clear()
                await self._wake.wait()
            streams = {_keys(d)["log"]: last for d, last in self._watched.items()}
            try:
                got = await self._tail_redis.xread(streams, count=TAIL_BATCH, block=TAIL_BLOCK_MS)
            except errors as exc:
                self._down(exc)
                await asyncio.sleep(RETRY_S * 5)
                continue
            except Exception as exc:  # whatever the client raises, the tail must go on
                log.exception("docs: reading the other nodes' updates failed (%s); again", exc)
                await asyncio.sleep(RETRY_S * 5)
                continue
            self._back()
            for key, entries in got or []:
                doc = (key.decode() if isinstance(key, bytes) else key)[len("vt:log:") :]
                for entry_id, fields in entries:
                    if doc not in self._watched:
                        break
                    if _seq(entry_id) > _seq(self._watched[doc]) + 1:
                        await self._merge_snapshot(doc)  # entries compacted away unread
                    self._watched[doc] = entry_id.decode()
                    if fields.get(b"n", b"").decode() != self.node:
                        self._deliver(doc, fields[b"u"])
            if not got and time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + SNAPSHOT_CHECK_S
                await self._check_snapshots()

    def _deliver(self, doc: str, update: bytes) -> None:
        if self.on_remote_update is not None:
            self.on_remote_update(doc, update)

    async def _merge_snapshot(self, doc: str, upto: int | None = None) -> None:
        """Another node compacted entries this one had not read: merge the snapshot that holds
        them (a Yjs merge: what this copy has already changes nothing)."""
        data, stored_upto = await self._tail_redis.hmget(_keys(doc)["snap"], "data", "upto")
        if data is not None and doc in self._watched:
            self._merged[doc] = int(stored_upto or 0)
            self._deliver(doc, data)

    async def _check_snapshots(self) -> None:
        """While no entry comes: a compaction may have taken the last entries this node had not
        read, with nothing after them to show the gap."""
        docs = list(self._watched)
        if not docs:
            return
        async with self._tail_redis.pipeline(transaction=False) as pipe:
            for doc in docs:
                pipe.hget(_keys(doc)["snap"], "upto")
            uptos = await pipe.execute()
        for doc, upto in zip(docs, uptos, strict=True):
            if upto is None or doc not in self._watched:
                continue
            upto = int(upto)
            if upto > _seq(self._watched[doc]) and upto > self._merged.get(doc, 0):
                await self._merge_snapshot(doc)


async def open_redis_store(url: str, on_remote_update: Callable[[str, bytes], None]) -> Any:
    """A started RedisUpdateStore for the docs component (its node id: random per process)."""
    import secrets

    store = RedisUpdateStore(url, secrets.token_hex(8))
    store.on_remote_update = on_remote_update
    await store.start()
    return store
