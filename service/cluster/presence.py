"""Presence across nodes, the way Phoenix.Presence (Phoenix.Tracker) does it: each node owns the
entries of its own clients and replicates its changes; every node merges all nodes' entries and
tells its own subscribers the diffs.

- A local change goes to this node's subscribers at once and to the others as a `D` message
  carrying the node's change counter `v`.
- Every `heartbeat_s` a node says `H {v}`. A node that sees a counter it cannot account for
  (a message lost while Redis was away, a node it never heard of) asks for that node's whole
  state (`S`), which comes back as `F` and replaces what it held for that node.
- A node not heard from for `down_after_s` is down: its entries leave, and this node's
  subscribers get the leaves. The bound: a dead node's entries leave every other node within
  `down_after_s + heartbeat_s / 2` of its last heartbeat (the check runs every half heartbeat).
  A node stopping cleanly says `X` and its entries leave at once.
- When this node's Redis connection comes back it sends its whole state and asks for everyone's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from veraltheim.protocol.constants import PRESENCE_DIFF
from veraltheim.service.cluster import envelope
from veraltheim.service.cluster.bus import RedisBus
from veraltheim.service.cluster.envelope import Envelope
from veraltheim.service.presence import Meta, Presence
from veraltheim.service.pubsub import PubSub

log = logging.getLogger(__name__)

# topic -> key -> phx_ref -> meta
Entries = dict[str, dict[str, dict[str, Meta]]]


def _as_metas(by_key: Any) -> dict[str, list[Meta]]:
    """{key: {"metas": [...]}} or {key: [...]} -> {key: [meta with a phx_ref]} (others' input)."""
    out: dict[str, list[Meta]] = {}
    if not isinstance(by_key, dict):
        return out
    for key, value in by_key.items():
        metas = value.get("metas") if isinstance(value, dict) else value
        if isinstance(key, str) and isinstance(metas, list):
            out[key] = [
                m for m in metas if isinstance(m, dict) and isinstance(m.get("phx_ref"), str)
            ]
    return out


class ClusterPresence(Presence):
    def __init__(
        self, pubsub: PubSub, bus: RedisBus, heartbeat_s: float, down_after_s: float
    ) -> None:
        super().__init__(pubsub)  # self._topics: this node's own entries
        self.bus = bus
        self.heartbeat_s = heartbeat_s
        self.down_after_s = down_after_s
        self.version = 0  # changes to this node's entries so far
        self.remote: dict[str, Entries] = {}  # node -> its entries
        self.remote_version: dict[str, int] = {}
        self.last_heard: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        bus.on(envelope.PRESENCE_DIFF, self._on_diff)
        bus.on(envelope.HEARTBEAT, self._on_heartbeat)
        bus.on(envelope.SYNC_REQUEST, self._on_sync_request)
        bus.on(envelope.PRESENCE_STATE, self._on_state)
        bus.on(envelope.BYE, lambda env: self._drop(env.node, "stopped"))
        bus.on_up.append(self._resync)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat(), name="presence-beat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.bus.send(envelope.BYE, "", b"")

    async def _beat(self) -> None:
        while True:
            self.bus.send(envelope.HEARTBEAT, "", self._json({"v": self.version}))
            await asyncio.sleep(self.heartbeat_s / 2)
            self._check_down()
            await asyncio.sleep(self.heartbeat_s / 2)
            self._check_down()

    def _check_down(self) -> None:
        cutoff = time.monotonic() - self.down_after_s
        for node, heard in list(self.last_heard.items()):
            if heard < cutoff:
                self._drop(node, f"silent for over {self.down_after_s:g} s")

    def _resync(self) -> None:
        """(Re)connected: the others may have dropped us, and we may have missed their changes."""
        self._send_state()
        self.bus.send(envelope.SYNC_REQUEST, "", b"")

    # -- this node's changes --------------------------------------------------------------------

    def send_diff(self, topic: str, joins: dict[str, Any], leaves: dict[str, Any]) -> None:
        self.pubsub.broadcast_local(topic, PRESENCE_DIFF, {"joins": joins, "leaves": leaves})
        self.version += 1
        body = {"v": self.version, "joins": joins, "leaves": leaves}
        self.bus.send(envelope.PRESENCE_DIFF, topic, self._json(body))

    def list(self, topic: str) -> dict[str, dict[str, list[Meta]]]:
        merged = super().list(topic)
        for entries in self.remote.values():
            for key, metas in entries.get(topic, {}).items():
                merged.setdefault(key, {"metas": []})["metas"].extend(metas.values())
        return merged

    def _send_state(self) -> None:
        state = {
            topic: {key: list(metas.values()) for key, metas in keys.items()}
            for topic, keys in self._topics.items()
        }
        self.bus.send(envelope.PRESENCE_STATE, "", self._json({"v": self.version, "state": state}))

    # -- the other nodes' ----------------------------------------------------------------------

    def _heard(self, node: str) -> None:
        self.last_heard[node] = time.monotonic()

    def _on_heartbeat(self, env: Envelope) -> None:
        self._heard(env.node)
        v = self._body(env).get("v")
        if self.remote_version.get(env.node) != v:
            self.bus.send(envelope.SYNC_REQUEST, env.node, b"")

    def _on_sync_request(self, env: Envelope) -> None:
        self._heard(env.node)
        if env.topic in ("", self.bus.node):
            self._send_state()

    def _on_diff(self, env: Envelope) -> None:
        self._heard(env.node)
        body = self._body(env)
        v = body.get("v")
        if not isinstance(v, int):
            return
        known = self.remote_version.get(env.node)
        if known is not None and v <= known:
            return  # already in a state we were sent
        self.remote_version[env.node] = v
        keys = self.remote.setdefault(env.node, {}).setdefault(env.topic, {})
        joins: dict[str, list[Meta]] = {}
        leaves: dict[str, list[Meta]] = {}
        for key, metas in _as_metas(body.get("joins")).items():
            held = keys.setdefault(key, {})
            if came := [m for m in metas if m["phx_ref"] not in held]:
                joins[key] = came
                held.update((m["phx_ref"], m) for m in came)
        for key, metas in _as_metas(body.get("leaves")).items():
            held = keys.get(key, {})
            if gone := [held.pop(m["phx_ref"]) for m in metas if m["phx_ref"] in held]:
                leaves[key] = gone
        for key in [k for k, held in keys.items() if not held]:
            del keys[key]
        if not keys:
            self.remote[env.node].pop(env.topic, None)
        self._tell(env.topic, joins, leaves)
        if known is None or v != known + 1:
            self.bus.send(envelope.SYNC_REQUEST, env.node, b"")  # a gap: get the whole state

    def _on_state(self, env: Envelope) -> None:
        self._heard(env.node)
        body = self._body(env)
        v, state = body.get("v"), body.get("state")
        if not isinstance(v, int) or not isinstance(state, dict):
            return
        new: Entries = {}
        for topic, by_key in state.items():
            metas = _as_metas(by_key)
            if isinstance(topic, str) and metas:
                new[topic] = {k: {m["phx_ref"]: m for m in ms} for k, ms in metas.items() if ms}
        self._replace(env.node, new)
        self.remote_version[env.node] = v

    def _drop(self, node: str, why: str) -> None:
        if node in self.remote or node in self.last_heard:
            log.warning("cluster: node %s is down (%s); its presence entries leave", node, why)
        self._replace(node, {})
        self.remote.pop(node, None)
        self.remote_version.pop(node, None)
        self.last_heard.pop(node, None)

    def _replace(self, node: str, new: Entries) -> None:
        """Hold `new` as node's entries; tell our subscribers what changed."""
        old = self.remote.get(node, {})
        self.remote[node] = new
        for topic in old.keys() | new.keys():
            before, after = old.get(topic, {}), new.get(topic, {})
            joins: dict[str, list[Meta]] = {}
            leaves: dict[str, list[Meta]] = {}
            for key in before.keys() | after.keys():
                b, a = before.get(key, {}), after.get(key, {})
                if gone := [m for ref, m in b.items() if ref not in a]:
                    leaves[key] = gone
                if came := [m for ref, m in a.items() if ref not in b]:
                    joins[key] = came
            self._tell(topic, joins, leaves)

    def _tell(
        self, topic: str, joins: dict[str, list[Meta]], leaves: dict[str, list[Meta]]
    ) -> None:
        if joins or leaves:
            diff = {
                "joins": {k: {"metas": m} for k, m in joins.items()},
                "leaves": {k: {"metas": m} for k, m in leaves.items()},
            }
            self.pubsub.broadcast_local(topic, PRESENCE_DIFF, diff)

    @staticmethod
    def _json(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    @staticmethod
    def _body(env: Envelope) -> dict[str, Any]:
        try:
            body = json.loads(env.body)
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
