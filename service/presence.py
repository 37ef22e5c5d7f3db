"""Phoenix.Presence semantics on one node: who is on a topic, as key -> metas.

Each track gets a unique phx_ref. A joining client gets `presence_state`
{key: {"metas": [{phx_ref, ...}]}}; then every subscriber of the topic gets `presence_diff`
{"joins": {...}, "leaves": {...}} as others come and go: one diff per topic per DIFF_WINDOW_S
with every change of that window (a client applies joins, then leaves, as phoenix.js does, so a
member who came and went within one window ends up gone).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Hashable
from typing import Any

from veraltheim.protocol.constants import PRESENCE_DIFF
from veraltheim.service.pubsub import PubSub

Meta = dict[str, Any]
# Every diff reaches every member of its topic: batched, a crowd joining at once costs one
# broadcast per window instead of one per member.
DIFF_WINDOW_S = 0.05


class _Diff:
    """The changes of one topic waiting for the end of the window, in diff shape."""

    __slots__ = ("joins", "leaves")

    def __init__(self) -> None:
        self.joins: dict[str, Any] = {}
        self.leaves: dict[str, Any] = {}

    def add(self, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        for merged, part in ((self.joins, joins), (self.leaves, leaves)):
            for key, entry in part.items():
                merged.setdefault(key, {"metas": []})["metas"].extend(entry["metas"])


class Presence:
    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub
        # topic -> key -> phx_ref -> meta (with phx_ref)
        self._topics: dict[str, dict[str, dict[str, Meta]]] = {}
        # owner -> [(topic, key, phx_ref)]
        self._owned: dict[Hashable, list[tuple[str, str, str]]] = {}
        # A per-process prefix keeps refs unique across restarts, a counter keeps them cheap.
        self._prefix = secrets.token_urlsafe(6)
        self._counter = itertools.count(1)
        self._pending: dict[str, _Diff] = {}  # topic -> its diff of the current window

    def _ref(self) -> str:
        return f"{self._prefix}{next(self._counter)}"

    def add(
        self, owner: Hashable, topic: str, key: str, meta: Meta | None = None
    ) -> tuple[str, Meta]:
        """Record (key, meta) on topic for owner without telling anyone; (phx_ref, full meta)."""
        ref = self._ref()
        full = {**(meta or {}), "phx_ref": ref}
        self._topics.setdefault(topic, {}).setdefault(key, {})[ref] = full
        self._owned.setdefault(owner, []).append((topic, key, ref))
        return ref, full

    def announce_join(self, topic: str, key: str, meta: Meta) -> None:
        self.send_diff(topic, {key: {"metas": [meta]}}, {})

    def send_diff(self, topic: str, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        """Tell topic's subscribers who came and went, in the window's diff (a cluster presence
        also tells the other nodes, which tell their own subscribers)."""
        if not self._pending:
            asyncio.get_running_loop().call_later(DIFF_WINDOW_S, self._send_pending)
        self._pending.setdefault(topic, _Diff()).add(joins, leaves)

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for topic, diff in pending.items():
            self.pubsub.broadcast(
                topic, PRESENCE_DIFF, {"joins": diff.joins, "leaves": diff.leaves}
            )

    def track(self, owner: Hashable, topic: str, key: str, meta: Meta | None = None) -> str:
        """Add (key, meta) on topic for owner and broadcast the diff; returns the phx_ref."""
        ref, full = self.add(owner, topic, key, meta)
        self.announce_join(topic, key, full)
        return ref

    def untrack(self, owner: Hashable, topic: str | None = None) -> None:
        """Remove what owner tracked (on topic, or everywhere); broadcasts one diff per topic."""
        entries = self._owned.pop(owner, [])
        keep = [e for e in entries if topic is not None and e[0] != topic]
        if keep:
            self._owned[owner] = keep
        leaves: dict[str, dict[str, list[Meta]]] = {}
        for t, key, ref in entries:
            if topic is not None and t != topic:
                continue
            keys = self._topics.get(t, {})
            metas = keys.get(key, {})
            meta = metas.pop(ref, None)
            if not metas:
                keys.pop(key, None)
            if not keys:
                self._topics.pop(t, None)
            if meta is not None:
                leaves.setdefault(t, {}).setdefault(key, []).append(meta)
        for t, by_key in leaves.items():
            self.send_diff(t, {}, {k: {"metas": metas} for k, metas in by_key.items()})

    def list(self, topic: str) -> dict[str, dict[str, list[Meta]]]:
        """The presence_state payload of topic."""
        return {
            key: {"metas": list(metas.values())}
            for key, metas in self._topics.get(topic, {}).items()
        }
