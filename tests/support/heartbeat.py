"""A client that only sends heartbeats (every 20 ms) and prints each round trip, in a process
of its own so nothing in the test process can delay it:

    python -m tests.support.heartbeat WS_URL TOKEN      # lines: "<sent, monotonic s> <ms>"

It connects again whenever the service goes away (a restart) and reports nothing meanwhile.
CLOCK_MONOTONIC is system-wide on Linux, so the test compares the times with its own.
"""

from __future__ import annotations

import asyncio
import sys
import time

from veraltheim.protocol import Message, decode, encode
from veraltheim.protocol.constants import VSN
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

EVERY_S = 0.02
NO_ANSWER_S = 1.0


async def beat(url: str, token: str) -> None:
    async with connect(f"{url}?vsn={VSN}&token={token}", compression=None) as ws:
        for n in range(1, 1 << 62):
            sent = time.monotonic()
            heartbeat = Message(None, str(n), "phoenix", "heartbeat", {})
            await ws.send(encode(heartbeat, sender="client"))
            try:
                async with asyncio.timeout(NO_ANSWER_S):
                    while decode(await ws.recv(), sender="server").ref != str(n):
                        pass
                rtt = (time.monotonic() - sent) * 1000
            except TimeoutError:
                rtt = float("inf")
            print(f"{sent:.6f} {rtt:.3f}", flush=True)
            await asyncio.sleep(max(0.0, EVERY_S - (time.monotonic() - sent)))


async def main(url: str, token: str) -> None:
    """Beat, and connect again whenever the service goes away (a restart)."""
    while True:
        try:
            await beat(url, token)
        except (OSError, WebSocketException):
            await asyncio.sleep(EVERY_S)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
