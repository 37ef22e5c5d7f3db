"""`doc:<name>`: a shared document, wire-compatible with the y-phoenix-channel Yjs provider.

Client -> service: `yjs_sync` (sync step 1) after join, then `yjs` (sync step 1/2, update,
awareness, query awareness). Service -> client: `yjs` pushes and broadcasts. Every update is
applied (which validates it), committed to the store, broadcast to the other members and
acknowledged with an ok reply, in that order. Errors are error replies with a `reason`:
bad_message, too_large, rate_limited, read_only, bad_update, store_failed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.protocol.ysync import (
    DOC_TOPIC_PREFIX,
    MAX_DOC_NAME_CHARS,
    YJS_EVENT,
    YJS_SYNC_EVENT,
    BadMessage,
    Kind,
    create_update_message,
    parse_message,
)
from veraltheim.service.channel import Channel, JoinError, Reply
from veraltheim.service.docs.registry import (
    DocRegistry,
    DocumentUnavailable,
    LiveDoc,
    StoreFailed,
    TooManyDocuments,
    UpdateRejected,
)
from veraltheim.service.limits import TokenBucket

COMPONENT = "docs"  # the registry's name in service.components
BURST_SECONDS = 2.0  # the update rate limit allows bursts of this many seconds' worth


def _error(reason: Reason, message: str) -> Reply:
    return Reply.error({"reason": reason, "message": message})


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # logged by whoever awaited it; none may be left


def _count(counter: Any, **labels: str) -> None:
    if counter is not None:
        counter.inc(**labels)


class DocChannel(Channel):
    live: LiveDoc
    read_only: bool

    async def join(self, payload: Any) -> dict[str, Any]:
        name = self.topic[len(DOC_TOPIC_PREFIX) :]
        if not 1 <= len(name) <= MAX_DOC_NAME_CHARS:
            raise JoinError(
                {
                    "reason": Reason.BAD_NAME,
                    "message": f"a document name is 1 to {MAX_DOC_NAME_CHARS} chars",
                }
            )
        params = payload if isinstance(payload, dict) else {}
        claims = self.claims or {}
        self.read_only = bool(params.get("read_only")) or bool(claims.get("read_only"))
        self.user = str(self.user_id or "anonymous")
        docs = self.service.config.docs
        self.max_update_bytes = docs.max_update_bytes
        now = time.monotonic()
        self.bucket = TokenBucket(
            docs.updates_per_s, max(1.0, docs.updates_per_s * BURST_SECONDS), now
        )
        # what sync answers cost: a step 1 of a few bytes asks for the whole document
        self.sync_bytes = TokenBucket(
            docs.sync_bytes_per_s, docs.sync_bytes_per_s * BURST_SECONDS, now
        )
        self.registry: DocRegistry = self.service.components[COMPONENT]
        try:
            self.live = await self.registry.open(name, self.user)
        except TooManyDocuments as exc:
            raise JoinError({"reason": Reason.TOO_MANY_DOCUMENTS, "message": str(exc)}) from None
        except DocumentUnavailable as exc:
            raise JoinError({"reason": Reason.DOCUMENT_UNAVAILABLE, "message": str(exc)}) from None
        self.track_presence(self.user, {"read_only": self.read_only})
        # the client keeps its batches under the limit it learns here
        return {"read_only": self.read_only, "max_update_bytes": self.max_update_bytes}

    async def handle_in(self, event: str, payload: Any, ref: str | None) -> Reply | None:
        if event not in (YJS_EVENT, YJS_SYNC_EVENT):
            return _error(Reason.BAD_MESSAGE, f"unknown event {event!r}")
        if not isinstance(payload, bytes | bytearray | memoryview):
            return _error(Reason.BAD_MESSAGE, "yjs payloads are binary y-protocols messages")
        if len(payload) > self.max_update_bytes:
            return _error(
                Reason.TOO_LARGE,
                f"{len(payload)} bytes is over the limit of {self.max_update_bytes}",
            )
        try:
            message = parse_message(payload)
        except BadMessage as exc:
            return _error(Reason.BAD_MESSAGE, str(exc))
        now = time.monotonic()
        if not self.bucket.take(now) or (
            message.kind is Kind.SYNC_STEP1 and not self.sync_bytes.affordable(now)
        ):
            _count(self.registry.refused, reason=Reason.RATE_LIMITED)
            return _error(Reason.RATE_LIMITED, "too many yjs messages per second; sync again later")
        if message.kind is Kind.SYNC_STEP1:
            return self._sync(message.data, now)
        if message.kind.carries_update:
            return await self._update(message.data)
        if message.kind is Kind.AWARENESS:
            try:
                taken = self.live.apply_awareness(message.data, self)
            except BadMessage as exc:
                return _error(Reason.BAD_MESSAGE, str(exc))
            if taken is not None:
                self.broadcast_from(YJS_EVENT, taken)
            return Reply.ok({})
        # query awareness
        states = self.live.awareness_message()
        if states is not None:
            self.push(YJS_EVENT, states)
        return Reply.ok({})

    def _sync(self, state_vector: bytes, now: float) -> Reply:
        """Step 2 (what the client lacks), then our step 1 so the client sends what we lack."""
        try:
            step2 = self.live.sync_step2(state_vector)
        except BadMessage as exc:
            return _error(Reason.BAD_MESSAGE, str(exc))
        self.sync_bytes.spend(now, len(step2))
        self.push(YJS_EVENT, step2)
        self.push(YJS_EVENT, self.live.sync_step1())
        states = self.live.awareness_message()
        if states is not None:
            self.push(YJS_EVENT, states)
        return Reply.ok({})

    async def _update(self, update: bytes) -> Reply:
        if self.read_only:
            _count(self.registry.refused, reason=Reason.READ_ONLY)
            return _error(
                Reason.READ_ONLY, "this document is joined read-only; the update is dropped"
            )
        # Once applied, an update is stored and broadcast even if this channel ends meanwhile
        # (its client went away): the others must not miss what the store keeps.
        commit = asyncio.ensure_future(self._commit(update))
        commit.add_done_callback(_retrieve)
        return await asyncio.shield(commit)

    async def _commit(self, update: bytes) -> Reply:
        try:
            changed = await self.live.apply_update(update)
        except UpdateRejected as exc:
            _count(self.registry.refused, reason=Reason.BAD_UPDATE)
            return _error(Reason.BAD_UPDATE, str(exc))
        except StoreFailed as exc:
            _count(self.registry.refused, reason=Reason.STORE_FAILED)
            return _error(Reason.STORE_FAILED, str(exc))
        if changed:
            _count(self.registry.stored)
            message = create_update_message(update)
            if self.registry.shared_store:  # the other nodes' clients get it from the log
                self.service.pubsub.broadcast_local(self.topic, YJS_EVENT, message, exclude=self)
            else:
                self.broadcast_from(YJS_EVENT, message)
        return Reply.ok({})

    async def terminate(self, reason: Any) -> None:
        live = getattr(self, "live", None)
        if live is None:
            return
        gone = live.forget_member(self)
        if gone is not None:
            self.broadcast_from(YJS_EVENT, gone)
        self.registry.close(live, self.user)
