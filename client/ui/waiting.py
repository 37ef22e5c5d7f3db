"""Await Qt signals from asyncio (never a nested Qt loop inside a coroutine: see FACTS.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any


def wait_signal(
    signal: Any, timeout: float, accept: Callable[..., bool] | None = None
) -> Coroutine[Any, Any, tuple]:
    """The arguments of the next emission of `signal` that `accept` (if given) accepts.

    Connected when called, not when first awaited: `ensure_future(wait_signal(...))` followed
    by what makes the signal fire cannot miss an emission that comes before the task's first
    step."""
    future: asyncio.Future[tuple] = asyncio.get_running_loop().create_future()

    def slot(*args: Any) -> None:
        if not future.done() and (accept is None or accept(*args)):
            future.set_result(args)

    signal.connect(slot)

    async def wait() -> tuple:
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            signal.disconnect(slot)

    return wait()


async def wait_until(
    condition: Callable[[], bool], signals: Iterable[Any], timeout: float, what: str = ""
) -> None:
    """Return once condition() holds, checking it now and after each emission of `signals`."""
    if condition():
        return
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def check(*_: Any) -> None:
        if not future.done() and condition():
            future.set_result(None)

    signals = list(signals)
    for s in signals:
        s.connect(check)
    try:
        await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise TimeoutError(
            f"timed out after {timeout:g} s waiting for {what or condition}"
        ) from None
    finally:
        for s in signals:
            s.disconnect(check)
