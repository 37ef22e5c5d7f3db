"""Phoenix Channels V2 constants: one source of truth for both ends of the link."""

from typing import Final

VSN: Final = "2.0.0"
SOCKET_PATH: Final = "/socket/websocket"
DEFAULT_PORT: Final = 4000
# The name the app and the service keep their files under (platformdirs).
APP_NAME: Final = "veraltheim"
# Overrides the app's data dir (its settings, caches and installed user kernels); not
# VERALTHEIM_DATA_DIR, which is the service's data_dir.
APP_DATA_DIR_ENV: Final = "VERALTHEIM_APP_DATA_DIR"
# `veraltheim-service run` prints this, then its ws:// URL, on stdout once it accepts connections;
# whoever starts a service (the app's launcher, tests, benchmarks) waits for that line.
READY_LINE_PREFIX: Final = "listening "

# phoenix.js sends the token as a subprotocol: `phoenix, base64url.bearer.phx.<token>`.
SUBPROTOCOL: Final = "phoenix"
AUTH_TOKEN_PREFIX: Final = "base64url.bearer.phx."

PHOENIX_TOPIC: Final = "phoenix"
# The service's presence topic (who is connected); both ends name it.
LOBBY_TOPIC: Final = "lobby"
# The compute topic (`compute:<pool>`, one pool so far); both ends name it.
COMPUTE_TOPIC: Final = "compute:default"
# Installing or removing users' kernels on a service needs this in the token's `grants` claim.
KERNELS_GRANT: Final = "kernels"

PHX_JOIN: Final = "phx_join"
PHX_LEAVE: Final = "phx_leave"
PHX_REPLY: Final = "phx_reply"
PHX_ERROR: Final = "phx_error"
PHX_CLOSE: Final = "phx_close"
HEARTBEAT: Final = "heartbeat"
PRESENCE_STATE: Final = "presence_state"
PRESENCE_DIFF: Final = "presence_diff"

STATUS_OK: Final = "ok"
STATUS_ERROR: Final = "error"

HEARTBEAT_INTERVAL_S: Final = 30.0
IDLE_TIMEOUT_S: Final = 60.0

# Every string in a binary frame header is prefixed by a one-byte length.
MAX_BINARY_FIELD_BYTES: Final = 255

# Binary frame kinds (first byte).
KIND_PUSH: Final = 0
KIND_REPLY: Final = 1
KIND_BROADCAST: Final = 2

# WebSocket close codes the service uses (RFC 6455 plus the private 4000-4999 range).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001  # service shutting down
CLOSE_PROTOCOL_ERROR: Final = 1002  # a frame that does not decode
CLOSE_INVALID_DATA: Final = 1007  # a text frame that is not UTF-8 (websockets closes it)
CLOSE_POLICY_VIOLATION: Final = 1008  # kept flooding past the rate limit
CLOSE_MESSAGE_TOO_BIG: Final = 1009  # frame over max_frame_bytes
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_TRY_AGAIN_LATER: Final = 1013  # over a socket cap (max_sockets...)
CLOSE_SERVICE_RESTART: Final = 1012  # like 1001: not a final close, reconnect
CLOSE_IDLE_TIMEOUT: Final = 4000  # no frame for idle_timeout_s
CLOSE_SLOW_READER: Final = 4001  # send buffer bound exceeded: client too slow to read
