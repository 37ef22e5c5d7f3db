"""`veraltheim`: the desktop app.

veraltheim [--service URL] [--token TOKEN] [--offscreen] [--screenshot FILE] [--view NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.resources
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veraltheim.client.ui.stop_signals import STOP_SIGNALS, StopSignals
from veraltheim.client.ui.views import VIEWS, View
from veraltheim.protocol.constants import APP_NAME

if TYPE_CHECKING:
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtQuick import QQuickWindow
    from veraltheim.client.ui.shell import Shell

AFTER_FRAME_MAX_S = 0.5
FIRST_FRAME_ENV = "VERALTHEIM_REPORT_FIRST_FRAME"  # bench/ui.py: print the time of the first frame


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=APP_NAME, description="The Veraltheim desktop app.")
    p.add_argument(
        "--service",
        metavar="URL",
        type=_service_url,
        help="service address, ws[s]://HOST:PORT/socket/websocket",
    )
    p.add_argument("--token", help="sign-in token (else the one saved in Settings)")
    p.add_argument("--cafile", type=Path, help="a PEM certificate to trust for wss:// (this run)")
    p.add_argument("--offscreen", action="store_true", help="render without a screen")
    p.add_argument(
        "--screenshot", metavar="FILE", type=Path, help="write the first frame to a PNG and exit"
    )
    p.add_argument(
        "--view",
        type=_view_name,
        default=View.WORKBENCH,
        help=f"view to show first ({', '.join(VIEWS)}; any case)",
    )
    p.add_argument("--local-only", action="store_true", help="do not connect to any service")
    return p.parse_args(argv)


def _service_url(text: str) -> str:
    from veraltheim.client.ui.settings import SERVICE_URL_HINT, service_url_problem

    problem = service_url_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem} {SERVICE_URL_HINT}")
    return text


def _view_name(text: str) -> str:
    for view in VIEWS:
        if view.lower() == text.lower():
            return view
    raise argparse.ArgumentTypeError(f"unknown view {text!r}: one of {', '.join(VIEWS)}")


def make_app(argv0: str = APP_NAME):
    """The QGuiApplication (never a QtWidgets one), styled to follow the system palette."""
    from PySide6.QtGui import QGuiApplication, QIcon
    from PySide6.QtQuick import QQuickWindow  # noqa: F401 - so root objects are QQuickWindows
    from PySide6.QtQuickControls2 import QQuickStyle

    app = QGuiApplication.instance() or QGuiApplication([argv0])
    app.setOrganizationName("Veraltheim")
    app.setApplicationName("Veraltheim")
    app.setDesktopFileName(APP_NAME)  # resources/veraltheim.desktop
    # Closing the window ends run_window's coroutine, which then stops the link and the store;
    # Qt quitting on its own would stop the loop under it instead.
    app.setQuitOnLastWindowClosed(False)
    icon = Path(str(importlib.resources.files("veraltheim.resources") / "icons" / "veraltheim.svg"))
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    if not QQuickStyle.name():
        QQuickStyle.setStyle("Fusion")  # follows the system palette, light or dark
    return app


@dataclass
class OpenWindow:
    """The window, built and shown; `first_frame_at` (time.monotonic()) once it has drawn."""

    shell: Shell
    window: QQuickWindow
    first_frame_at: float | None = None
    waited: bool = False  # for the first frame, as long as start-up waits (wait_for_first_frame)


def open_window(args: argparse.Namespace) -> OpenWindow:
    """Build the window for `args` and show it (Qt draws it at its next chance)."""
    from veraltheim.client.ui.notices import NoticeKind
    from veraltheim.client.ui.settings import load_settings
    from veraltheim.client.ui.shell import Shell

    settings, problem = load_settings()
    if args.cafile:
        settings.ca_file = str(args.cafile)
    shell = Shell(settings)
    opened = OpenWindow(shell, shell.load(args.view))
    if problem:
        fix = "Fix or delete the file, then save Settings."
        shell.notices.show(NoticeKind.WARNING, problem, fix)

    def drawn() -> None:  # once: not a Python call on every frame for the app's life
        if opened.first_frame_at is None:  # (frames already on their way still arrive)
            opened.first_frame_at = time.monotonic()
            opened.window.frameSwapped.disconnect(drawn)

    opened.window.frameSwapped.connect(drawn)
    opened.window.update()
    return opened


def wait_for_first_frame(opened: OpenWindow, timeout_s: float) -> None:
    """Run Qt's own loop until the window has drawn (at most `timeout_s`: a minimized window
    may not draw). main() does this before asyncio's loop exists: qasync, and the ~100 enums of
    Qt's `Qt` namespace that its first timer builds (killTimer's overloads), come after it."""
    from PySide6.QtCore import QEventLoop, QTimer

    opened.waited = True
    if opened.first_frame_at is not None:
        return
    waiting = QEventLoop()
    timer = QTimer(singleShot=True, interval=int(timeout_s * 1000))
    timer.timeout.connect(waiting.quit)
    opened.window.frameSwapped.connect(waiting.quit)
    timer.start()
    waiting.exec()
    timer.stop()
    opened.window.frameSwapped.disconnect(waiting.quit)


async def frame_drawn(opened: OpenWindow, timeout_s: float) -> float | None:
    """When the window first drew, waiting for it at most `timeout_s` on asyncio's loop."""
    import asyncio  # here and below: the window draws before asyncio is imported (main)

    if opened.first_frame_at is None:
        drawn = asyncio.get_running_loop().create_future()

        def mark() -> None:
            if not drawn.done():
                drawn.set_result(None)

        opened.window.frameSwapped.connect(mark)
        try:
            await asyncio.wait({drawn}, timeout=timeout_s)
        finally:
            opened.window.frameSwapped.disconnect(mark)
    return opened.first_frame_at


async def run_window(
    args: argparse.Namespace,
    opened: OpenWindow | None = None,
    stop_signals: StopSignals | None = None,
) -> int:
    """The app's life on asyncio's loop, from the window (opened here unless given) to its
    close. `stop_signals`: main()'s, which may hold a stop signal from before this loop ran."""
    import asyncio

    opened = opened or open_window(args)
    shell, window = opened.shell, opened.window
    loop = asyncio.get_running_loop()
    closed = loop.create_future()

    def stop() -> None:
        if not closed.done():
            closed.set_result(None)

    for signum in STOP_SIGNALS:  # Ctrl+C or a stop: the same clean exit
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop)
    if stop_signals is not None:
        stop_signals.listen(loop, stop)
    try:
        # Closing the window ends the app, whenever it happens (not `closing`: PySide cannot
        # pass its QQuickCloseEvent to a Python slot)
        window.visibleChanged.connect(lambda visible: visible or stop())
        if not window.isVisible():
            stop()
        # The kernels and the link (connecting, opening the documents) start once the window
        # has drawn, so they never delay the first frame; a window that does not draw
        # (minimized) waits no longer than AFTER_FRAME_MAX_S.
        if not opened.waited:
            await frame_drawn(opened, AFTER_FRAME_MAX_S)
        gc.enable()  # off since main(): see there
        if closed.done():  # stopped (or closed) before it started: nothing to start
            return 0
        shell.start_kernels()
        if not args.local_only:
            await shell.start(args.service, args.token)
        else:
            await shell.set_link("", "")
        if args.screenshot or os.environ.get(FIRST_FRAME_ENV):
            # (an interactive window never waits for this: a minimized one may not draw)
            shown_at = await frame_drawn(opened, 30)
            if shown_at is None:
                raise TimeoutError("the window did not draw in 30 s")
            if os.environ.get(FIRST_FRAME_ENV):
                print(f"first-frame {shown_at:.6f}", flush=True)
            if args.screenshot:
                print(f"screenshot: {shell.screenshot(args.screenshot)}")
                return 0
        await closed
        return 0
    finally:
        for signum in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        await shell.stop()
        shell.close_window()


def run_in_app(
    make_coro: Callable[[], Coroutine[Any, Any, int]], app: QGuiApplication | None = None
) -> int:
    """Run make_coro() on Qt's loop with asyncio on it (qasync), then shut Qt down. `app`: the
    one made already, if any (make_app)."""
    import asyncio

    import qasync
    from veraltheim.client.ui.qtloop import run_until_done

    app = app or make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        rc = run_until_done(loop, make_coro())
    app.shutdown()  # destroy Qt's objects now, not in the interpreter's final GC
    return rc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.offscreen or (args.screenshot and not has_screen()):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    # Start-up makes some 30,000 objects the cyclic GC tracks (the modules of PySide6 and the
    # views, their classes and functions), all kept for the app's life; the GC went over them
    # about 60 times before the first frame (15 ms). Off until the window has drawn.
    gc.disable()
    stop_signals = StopSignals()
    stop_signals.install()
    try:
        app = make_app()
        # The window draws first; asyncio's loop (and the link, the kernels) start after.
        opened = open_window(args)
        wait_for_first_frame(opened, AFTER_FRAME_MAX_S)
        return run_in_app(lambda: run_window(args, opened, stop_signals), app)
    except Exception as exc:  # one clear line, not a trace, for a failure to start
        print(f"veraltheim: {exc}", file=sys.stderr)
        return 1
    finally:
        gc.enable()
        stop_signals.restore()


def has_screen() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


if __name__ == "__main__":
    raise SystemExit(main())
