"""Calling the app's callbacks: an exception is logged, never breaks the link; a coroutine
function's result runs as a task."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("veraltheim.client.net")

_tasks: set[asyncio.Task[Any]] = set()  # strong refs, so running callback tasks are not collected


def _log_failure(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("callback task failed", exc_info=task.exception())


def call_safely(callback: Callable[..., Any], *args: Any) -> None:
    try:
        result = callback(*args)
    except Exception:
        log.exception("callback %r failed", callback)
        return
    if inspect.isawaitable(result):
        task = asyncio.ensure_future(result)
        _tasks.add(task)
        task.add_done_callback(_log_failure)
