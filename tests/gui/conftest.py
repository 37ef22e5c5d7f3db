"""GUI tests: the real QML window, offscreen, on Qt's loop with asyncio on it (qasync).

Tests are plain functions that run one coroutine with `run(...)`; inside it they await futures
that Qt signals resolve (never qtbot.wait*, which nests a Qt loop under a running task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPointF, Qt, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtQuick import QQuickItem, QQuickWindow
from PySide6.QtTest import QTest
from veraltheim.client.ui.waiting import wait_signal

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "gui"
RUN_TIMEOUT_S = 90.0


@pytest.fixture(scope="session")
def qapp_cls():
    return QGuiApplication


@pytest.fixture
def qloop(qapp):
    import qasync
    from veraltheim.client.ui.app import make_app

    make_app()  # names and style, on pytest-qt's QGuiApplication
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture
def run(qloop) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    from veraltheim.client.ui.qtloop import run_until_done

    def run_(coro: Coroutine[Any, Any, Any], timeout: float = RUN_TIMEOUT_S) -> Any:
        return run_until_done(qloop, asyncio.wait_for(coro, timeout))

    return run_


@pytest.fixture
def app_dirs(tmp_path, monkeypatch) -> Path:
    """Settings and the document cache in tmp, never the user's own."""
    from veraltheim.client.ui.settings import CONFIG_DIR_ENV, DATA_DIR_ENV

    monkeypatch.setenv(CONFIG_DIR_ENV, str(tmp_path / "config"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    return tmp_path


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item):
    """Stop the test's windows and links as its call ends, before pytest-qt processes Qt's
    events outside the asyncio loop: a task stepped there (a link waiting to reconnect) finds
    no running loop, dies and leaves a coroutine never awaited."""
    try:
        return (yield)
    finally:
        stop_shells = getattr(item, "stop_shells", None)
        if stop_shells is not None:
            stop_shells()


@pytest.fixture
def make_shell(request, app_dirs, run):
    """make_shell(user="alice") -> a loaded Shell (window open); all are stopped as the test's
    call ends (see pytest_runtest_call) or, at the latest, in teardown."""
    from veraltheim.client.ui.settings import load_settings
    from veraltheim.client.ui.shell import Shell

    shells = []

    def stop_shells() -> None:
        while shells:
            shell = shells.pop()
            run(shell.stop())
            shell.close_window()

    request.node.stop_shells = stop_shells

    def make(user: str = "tester") -> Shell:
        settings, problem = load_settings()
        assert problem is None
        settings.user_name = user
        shell = Shell(settings)
        shell.load()
        shell.start_kernels()
        shells.append(shell)
        return shell

    yield make
    stop_shells()


def find_item(shell, name: str) -> QQuickItem | None:
    """By objectName: findChild, then the visual tree (Repeater delegates are not QObject
    children of the window)."""
    found = shell.window.findChild(QQuickItem, name)
    if found is not None:
        return found
    stack = [QQuickWindow.contentItem(shell.window)]
    while stack:
        node = stack.pop()
        if node.objectName() == name:
            return node
        stack.extend(node.childItems())
    return None


def item(shell, name: str) -> QQuickItem:
    found = find_item(shell, name)
    assert found is not None, f"no QML item named {name!r}"
    return found


async def outside_task(fn: Callable[..., Any], *args: Any) -> Any:
    """Call fn from a plain loop callback, not from inside this task's step.

    QTest input may process events; done inside a task step, a task scheduled meanwhile (e.g.
    the run that Ctrl+R starts) would be entered while ours runs and be lost.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def call() -> None:
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)

    loop.call_soon(call)
    return await future


async def drawn(shell) -> None:
    """Until the window has drawn what it holds now: its layouts are polished then, so an item's
    position is where the user sees it (a layout that changed a moment ago moves it)."""
    frame = wait_signal(shell.window.frameSwapped, RUN_TIMEOUT_S)
    shell.window.update()
    await frame


async def click(shell, name: str) -> None:
    await drawn(shell)
    target = item(shell, name)
    assert target.isVisible() and target.isEnabled(), f"{name} is not clickable"
    pos = target.mapToScene(QPointF(target.width() / 2, target.height() / 2)).toPoint()
    await outside_task(
        QTest.mouseClick,
        shell.window,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        pos,
    )


async def key(shell, k: Qt.Key, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    await outside_task(QTest.keyClick, shell.window, k, modifiers)


async def type_text(shell, text: str) -> None:
    """QTest.keyClicks takes only QWidgets: one keyClick per character to the QQuickWindow."""

    def send() -> None:
        for ch in text:
            if ch == "\n":
                QTest.keyClick(shell.window, Qt.Key.Key_Return)
            else:
                QTest.keyClick(shell.window, ch)

    await outside_task(send)


def save_artifact(shell, name: str) -> Path:
    """A screenshot of the window as a test artifact (artifacts/gui/, gitignored)."""
    return shell.screenshot(ARTIFACTS / f"{name}.png")


def load_ended(wb) -> asyncio.Future:
    """A future for the outcome of the next input load that is not stale; connected at once,
    so a load that ends before the caller awaits is not missed."""
    future = asyncio.get_running_loop().create_future()

    def slot(outcome: str) -> None:
        if outcome != "stale" and not future.done():
            future.set_result(outcome)
            wb.inputLoadEnded.disconnect(slot)

    wb.inputLoadEnded.connect(slot)
    return future


async def open_input(wb, path, timeout: float = 30) -> str:
    """Pick `path` as the user would and wait for the worker thread's load to end."""
    ended = load_ended(wb)
    wb.openFile(QUrl.fromLocalFile(str(path)))
    return await asyncio.wait_for(ended, timeout)
