"""The observable states of a socket. (A channel's are protocol/channel_client.py's ChannelState;
the window imports this module before its first frame, that one with the link, after it.)"""

from __future__ import annotations

from enum import StrEnum


class ConnectionState(StrEnum):
    """Where a Socket stands; `Socket.on_state` reports every change."""

    CONNECTING = "connecting"  # first attempt after connect()
    CONNECTED = "connected"  # open, channels can join and push
    RECONNECTING = "reconnecting"  # lost or failed; retrying with backoff
    OFFLINE = "offline"  # not trying: never started, disconnect(), or refused (see offline_reason)
