"""Run a coroutine on Qt's event loop (qasync) to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_until_done(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """loop.run_until_complete(coro), minus qasync's extra pass over Qt's events after the loop
    stopped: that pass runs asyncio callbacks with no running loop, so a task stepped there (a
    link waiting to reconnect, say) dies on get_running_loop() and leaves a coroutine never
    awaited. Here whatever is due then simply runs at the loop's next turn."""
    task = loop.create_task(coro)
    task.add_done_callback(lambda _: loop.stop())
    try:
        loop.run_forever()
    finally:
        if not task.done():  # the loop was stopped from elsewhere: end the coroutine too
            task.cancel()
    return task.result()
