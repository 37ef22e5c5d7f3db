"""The `lobby` topic: who is connected (presence per user), `ping` and `shout`.

Join params: {"meta": {...}} adds fields to this socket's presence meta; {"presence": false}
joins without being tracked or sent presence (for load tests with thousands of sockets, where
presence_state alone would grow with the square of the count).
"""

from __future__ import annotations

import json
import time
from typing import Any

from veraltheim.protocol.reasons import Reason
from veraltheim.service.channel import Channel, JoinError, Reply

PING = "ping"
SHOUT = "shout"


class LobbyChannel(Channel):
    async def join(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("presence", True) is not False:
            meta: dict[str, Any] = {"online_at": int(time.time())}
            extra = payload.get("meta")
            if isinstance(extra, dict):
                # Every meta goes to every member (presence_state, presence_diff): keep it small.
                limit = self.service.config.max_presence_meta_bytes
                if len(json.dumps(extra, separators=(",", ":"))) > limit:
                    raise JoinError({"reason": Reason.META_TOO_LARGE, "limit": limit})
                meta.update(extra)
            self.track_presence(self.user_id, meta)
        return {"user": self.user_id}

    def handle_in(self, event: str, payload: Any, ref: str | None) -> Reply | None:
        if event == PING:
            return Reply.ok(payload)
        if event == SHOUT:
            self.broadcast(SHOUT, payload)
            return Reply.ok()
        return Reply.error({"reason": f"unknown event {event!r}"})
