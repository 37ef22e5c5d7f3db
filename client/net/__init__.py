"""The client link: a Phoenix Channels V2 socket client in plain asyncio (phoenix.js 1.8 behaviour).

sock = Socket(url, token=get_token)
await sock.connect()
ch = sock.channel("lobby")
await ch.join()
reply = await ch.push("ping", {"n": 1})
"""

from veraltheim.client.net.channel import Channel, ChannelClosed
from veraltheim.client.net.presence import Presence, list_presences, sync_diff, sync_state
from veraltheim.client.net.push import DEFAULT_TIMEOUT_S, JoinError, Push, PushTimeout, Reply
from veraltheim.client.net.socket import FORBIDDEN_RETRY_S, Socket, SocketOffline, endpoint_url
from veraltheim.client.net.state import ChannelState, ConnectionState
from veraltheim.protocol.backoff import RECONNECT_BACKOFF, REJOIN_BACKOFF, Backoff

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "FORBIDDEN_RETRY_S",
    "RECONNECT_BACKOFF",
    "REJOIN_BACKOFF",
    "Backoff",
    "Channel",
    "ChannelClosed",
    "ChannelState",
    "ConnectionState",
    "JoinError",
    "Presence",
    "Push",
    "PushTimeout",
    "Reply",
    "Socket",
    "SocketOffline",
    "endpoint_url",
    "list_presences",
    "sync_diff",
    "sync_state",
]
