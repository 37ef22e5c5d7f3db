"""Presence on a channel with phoenix.js semantics: `presence_state` replaces the picture,
`presence_diff` changes it, and diffs that arrive before the state of the current join wait.

A state is `{key: {"metas": [{"phx_ref": ..., ...}, ...]}}`; one key (a user) can have several
metas (devices, tabs). The pure functions `sync_state` / `sync_diff` never change their inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from veraltheim.protocol.constants import PRESENCE_DIFF, PRESENCE_STATE

if TYPE_CHECKING:
    from veraltheim.client.net.channel import Channel

PresenceState = dict[str, dict[str, Any]]
# on_join(key, current presence or None, joined presence); on_leave(key, remaining, left presence)
JoinCallback = Callable[[str, dict[str, Any] | None, dict[str, Any]], None]
LeaveCallback = Callable[[str, dict[str, Any], dict[str, Any]], None]

STATE_EVENT = PRESENCE_STATE
DIFF_EVENT = PRESENCE_DIFF


def _refs(presence: dict[str, Any]) -> list[Any]:
    return [meta.get("phx_ref") for meta in presence["metas"]]


def sync_state(
    current: PresenceState,
    new: PresenceState,
    on_join: JoinCallback | None = None,
    on_leave: LeaveCallback | None = None,
) -> PresenceState:
    """The state after the server's full `new` picture, calling on_join/on_leave for what
    differs from `current` (what changed while we were away, after a reconnect)."""
    state = copy.deepcopy(current)
    new = copy.deepcopy(new)
    joins: PresenceState = {}
    leaves: PresenceState = {key: presence for key, presence in state.items() if key not in new}
    for key, new_presence in new.items():
        present = state.get(key)
        if present is None:
            joins[key] = new_presence
            continue
        new_refs, cur_refs = _refs(new_presence), _refs(present)
        joined = [m for m in new_presence["metas"] if m.get("phx_ref") not in cur_refs]
        left = [m for m in present["metas"] if m.get("phx_ref") not in new_refs]
        if joined:
            joins[key] = {**new_presence, "metas": joined}
        if left:
            leaves[key] = {**copy.deepcopy(present), "metas": left}
    return sync_diff(state, {"joins": joins, "leaves": leaves}, on_join, on_leave)


def sync_diff(
    state: PresenceState,
    diff: dict[str, PresenceState],
    on_join: JoinCallback | None = None,
    on_leave: LeaveCallback | None = None,
) -> PresenceState:
    """The state after one `presence_diff` {"joins": ..., "leaves": ...}."""
    state = copy.deepcopy(state)
    diff = copy.deepcopy(diff)
    for key, new_presence in (diff.get("joins") or {}).items():
        present = state.get(key)
        state[key] = copy.deepcopy(new_presence)
        if present is not None:
            joined_refs = _refs(state[key])
            kept = [m for m in present["metas"] if m.get("phx_ref") not in joined_refs]
            state[key]["metas"][:0] = kept
        if on_join:
            on_join(key, present, new_presence)
    for key, left_presence in (diff.get("leaves") or {}).items():
        present = state.get(key)
        if present is None:
            continue
        gone = _refs(left_presence)
        present["metas"] = [m for m in present["metas"] if m.get("phx_ref") not in gone]
        if on_leave:
            on_leave(key, present, left_presence)
        if not present["metas"]:
            del state[key]
    return state


def list_presences(
    state: PresenceState, chooser: Callable[[str, dict[str, Any]], Any] | None = None
) -> list[Any]:
    """[(key, metas)] by default, or chooser(key, presence) for each key."""
    if chooser is None:
        return [(key, presence["metas"]) for key, presence in state.items()]
    return [chooser(key, presence) for key, presence in state.items()]


class Presence:
    """Who is on a channel: `Presence(ch)` before `await ch.join()`, then `.list()` and the
    on_join / on_leave / on_sync callbacks (each called for every registered callback)."""

    def __init__(
        self, channel: Channel, *, state_event: str = STATE_EVENT, diff_event: str = DIFF_EVENT
    ) -> None:
        self.channel = channel
        self.state: PresenceState = {}
        self._pending_diffs: list[dict[str, PresenceState]] = []
        self._join_ref: str | None = None
        self._on_join: list[JoinCallback] = []
        self._on_leave: list[LeaveCallback] = []
        self._on_sync: list[Callable[[], None]] = []
        channel.on(state_event, self._handle_state)
        channel.on(diff_event, self._handle_diff)

    def on_join(self, callback: JoinCallback) -> None:
        self._on_join.append(callback)

    def on_leave(self, callback: LeaveCallback) -> None:
        self._on_leave.append(callback)

    def on_sync(self, callback: Callable[[], None]) -> None:
        self._on_sync.append(callback)

    def list(self, chooser: Callable[[str, dict[str, Any]], Any] | None = None) -> list[Any]:
        return list_presences(self.state, chooser)

    def in_pending_sync_state(self) -> bool:
        """True until the presence_state of the channel's current join arrived."""
        return self._join_ref is None or self._join_ref != self.channel.join_ref

    def _joined(self, key: str, current: dict[str, Any] | None, new: dict[str, Any]) -> None:
        for callback in self._on_join:
            callback(key, current, new)

    def _left(self, key: str, current: dict[str, Any], left: dict[str, Any]) -> None:
        for callback in self._on_leave:
            callback(key, current, left)

    def _synced(self) -> None:
        for callback in self._on_sync:
            callback()

    def _handle_state(self, new_state: Any) -> None:
        if not isinstance(new_state, dict):
            return
        self._join_ref = self.channel.join_ref
        self.state = sync_state(self.state, new_state, self._joined, self._left)
        for diff in self._pending_diffs:
            self.state = sync_diff(self.state, diff, self._joined, self._left)
        self._pending_diffs = []
        self._synced()

    def _handle_diff(self, diff: Any) -> None:
        if not isinstance(diff, dict):
            return
        if self.in_pending_sync_state():
            self._pending_diffs.append(diff)
        else:
            self.state = sync_diff(self.state, diff, self._joined, self._left)
            self._synced()
