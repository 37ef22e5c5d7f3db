"""The observable states of a socket and of a channel."""

from __future__ import annotations

from enum import StrEnum

from veraltheim.protocol.channel_client import ChannelState

__all__ = ["ChannelState", "ConnectionState"]


class ConnectionState(StrEnum):
    """Where a Socket stands; `Socket.on_state` reports every change."""

    CONNECTING = "connecting"  # first attempt after connect()
    CONNECTED = "connected"  # open, channels can join and push
    RECONNECTING = "reconnecting"  # lost or failed; retrying with backoff
    OFFLINE = "offline"  # not trying: never started, disconnect(), or refused (see offline_reason)
