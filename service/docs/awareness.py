"""The awareness states of one document (cursors, selections, user names), bounded.

Kept here rather than in pycrdt's Awareness, which keeps every client id's metadata for as long
as the document is loaded and caps nothing: a member may announce at most `max_states` client
ids, each state at most `max_state_bytes`, and everything a member announced is forgotten when
it leaves. States are kept as the JSON text the client sent (they are only relayed).
"""

from __future__ import annotations

from dataclasses import dataclass

from veraltheim.protocol.ysync import (
    AwarenessEntry,
    BadMessage,
    encode_awareness_update,
    parse_awareness_update,
)


@dataclass(slots=True)
class _Client:
    clock: int
    state: str
    owner: object


class AwarenessTable:
    def __init__(self, max_states: int, max_state_bytes: int) -> None:
        self.max_states = max_states
        self.max_state_bytes = max_state_bytes
        self._clients: dict[int, _Client] = {}
        self._owned: dict[object, set[int]] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def apply(self, data: bytes, member: object) -> bytes | None:
        """Apply `member`'s awareness update; returns the update of the entries taken (for the
        other members) or None. BadMessage (nothing applied) if it is malformed or over a
        limit. A client id belongs to the member that announced it first (providers relay
        other clients' states too): entries for another member's ids are ignored."""
        entries = parse_awareness_update(
            data, max_states=self.max_states, max_state_bytes=self.max_state_bytes
        )
        mine = self._owned.get(member, set())
        new = {e.client_id for e in entries if e.client_id not in self._clients and not e.removed}
        if len(mine | new) > self.max_states:
            raise BadMessage(
                f"a member may announce at most {self.max_states} awareness client ids"
            )
        taken = []
        for entry in entries:
            known = self._clients.get(entry.client_id)
            if known is None:
                if entry.removed:
                    continue
                self._clients[entry.client_id] = _Client(entry.clock, entry.state, member)
                self._owned.setdefault(member, set()).add(entry.client_id)
            elif known.owner is not member or entry.clock < known.clock:
                continue
            elif entry.removed:
                self._drop(entry.client_id)
            else:
                known.clock, known.state = entry.clock, entry.state
            taken.append(entry)
        return encode_awareness_update(taken) if taken else None

    def _drop(self, client_id: int) -> None:
        client = self._clients.pop(client_id)
        owned = self._owned.get(client.owner)
        if owned is not None:
            owned.discard(client_id)
            if not owned:
                del self._owned[client.owner]

    def encode_all(self) -> bytes | None:
        """Every known state as one awareness update, or None."""
        if not self._clients:
            return None
        return encode_awareness_update(
            [AwarenessEntry(cid, c.clock, c.state) for cid, c in self._clients.items()]
        )

    def forget(self, member: object) -> bytes | None:
        """Drop what `member` announced; the update telling the others they are gone, or None."""
        ids = self._owned.pop(member, set())
        gone = []
        for client_id in ids:
            client = self._clients.pop(client_id)
            gone.append(AwarenessEntry(client_id, client.clock + 1, "null"))
        return encode_awareness_update(gone) if gone else None
