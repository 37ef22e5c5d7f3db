"""The screenless `make run`: drive the real window through a short demo and screenshot it.

    python -m veraltheim.client.ui.demo --service ws://127.0.0.1:PORT/socket/websocket \
        --out screenshots

A local job (a fractal rendered here), a remote job (that picture blurred on the service), an
auto job (its edges, where the dispatcher chooses), a shared note that a second user answers;
then one PNG per view. What cannot run (no service, say) is said and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from PySide6.QtQuick import QQuickItem
from veraltheim.client.compute.routes import Route
from veraltheim.client.ui.views import VIEWS, View
from veraltheim.client.ui.waiting import wait_signal, wait_until
from veraltheim.protocol.constants import LOBBY_TOPIC

LOCAL_KERNEL = "fractal.mandelbrot"
REMOTE_KERNEL = "image.blur"
AUTO_KERNEL = "image.edges"
CONNECT_TIMEOUT_S = 20.0
JOB_TIMEOUT_S = 120.0
DEMO_NOTE = "Demo: rendered a fractal here, blurred it on the service.\n"
PARTNER = "partner"
PARTNER_NOTE = "partner: got it, the blurred one looks right.\n"


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


async def run_job(
    shell: Any, kernel: str, where: str, *, use_result: bool = False, **params: Any
) -> str:
    wb = shell.workbench
    names = [row["name"] for row in wb.kernels.rows]
    if kernel not in names:
        return f"skipped {kernel}: not in the catalogue"
    wb.selectKernel(kernel)
    if use_result:
        wb.useResultAsInput()
        if not wb.inputSummary:
            return f"skipped {kernel}: no image to use as input"
    for name, value in params.items():
        wb.setParam(name, value)
    wb.setWhere(where)
    finished = asyncio.ensure_future(wait_signal(wb.finished, JOB_TIMEOUT_S))
    wb.run()
    (status,) = await finished
    if status != "ok":
        return f"{kernel} ({where}) {status}: {shell.notices.text} {shell.notices.hint}".strip()
    return f"{kernel}: {wb.resultInfo}"


async def partner_answers(shell: Any, out: Path) -> None:
    """A second user (plain asyncio client, no window) joins, reads the note and answers it."""
    from veraltheim.client.net.socket import Socket
    from veraltheim.client.state.notes import Notes
    from veraltheim.client.state.store import DocumentStore

    sock = Socket(shell.connection.address, params={"user": PARTNER})
    await sock.connect()
    await sock.channel(LOBBY_TOPIC).join()
    store = DocumentStore(out / ".partner-cache.sqlite3", sock)
    try:
        doc = await store.open("notes")
        doc.set_awareness({"user": PARTNER})
        await doc.wait_synced(10)
        Notes(doc).append(PARTNER_NOTE)
        await doc.flush(10)
        notes = shell.notes
        await wait_until(lambda: PARTNER_NOTE in notes.text, [notes.textChanged], 10, "answer")
        people = notes.people
        await wait_until(
            lambda: any(r["user"] == PARTNER for r in people.rows),
            [people.countChanged],
            10,
            "the partner in the notes",
        )
        say(f"{PARTNER} answered in the shared note, live")
        shell.show_view(View.NOTES)
        await asyncio.sleep(0)
        shell.screenshot(out / "3-notes.png")  # taken now, while the partner is still here
        shell.show_view(View.CONNECTION)
        await asyncio.sleep(0)
        shell.screenshot(out / "4-connection.png")
    finally:
        await store.aclose()
        await sock.disconnect()
        (out / ".partner-cache.sqlite3").unlink(missing_ok=True)


async def run_demo(shell: Any, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # this run's pictures only
        old.unlink()
    conn = shell.connection
    online = False
    if shell.socket is not None:
        try:
            await wait_until(
                lambda: conn.connected, [conn.changed], CONNECT_TIMEOUT_S, "connection"
            )
            online = True
            say(f"connected to {conn.address}")
        except TimeoutError:
            say(f"skipped the service: still {conn.state} after {CONNECT_TIMEOUT_S:g} s")

    if shell.runtime is None:
        say("skipped both jobs: the kernel runtime could not start")
    else:
        say(await run_job(shell, LOCAL_KERNEL, Route.LOCAL, width=800, height=600))
        shell.show_view(View.WORKBENCH)
        workbench_shot = shell.grab()  # the local result, before the remote job replaces it
        if online and shell.dispatcher_available:
            say(await run_job(shell, REMOTE_KERNEL, Route.REMOTE, use_result=True))
            # and one where the dispatcher chooses (its reason shows in the Inspector)
            say(await run_job(shell, AUTO_KERNEL, Route.AUTO, use_result=True))
        else:
            say("skipped the remote job: no compute service connected")
    if shell.notes.ready:
        shell.notes.edit(shell.notes.text + DEMO_NOTE)
        say("wrote a shared note")
        if online and shell.docs:
            try:
                await shell.docs["notes"].flush(10)
                await partner_answers(shell, out)
            except Exception as exc:
                say(f"the note is saved locally; the service did not confirm it: {exc}")
    else:
        say("skipped the shared note: documents are not available")

    written = []
    kept = {"3-notes.png", "4-connection.png"} if (out / "4-connection.png").exists() else set()
    for i, view in enumerate(VIEWS, 1):
        shell.show_view(view)
        if view == View.RUNS and shell.runs.model.count:
            shell.runs.select(shell.runs.model.count - 1)
        await asyncio.sleep(0)  # let QML apply the view change before the frame is grabbed
        path = out / f"{i}-{view.lower()}.png"
        if path.name in kept:
            written.append(path)
            continue
        written.append(shell.screenshot(path))
        if view == View.INSPECTOR:  # its other tabs too: decisions, timings, caches
            tabs = shell.window.findChild(QQuickItem, "inspectorTabs")
            for t, tab in enumerate(("decisions", "timings", "cache"), 1):
                tabs.setProperty("currentIndex", t)
                await asyncio.sleep(0)
                written.append(shell.screenshot(out / f"{i}{'abc'[t - 1]}-inspector-{tab}.png"))
            tabs.setProperty("currentIndex", 0)
    if shell.runtime is not None:
        path = out / "0-workbench-local-job.png"
        workbench_shot.save(str(path))
        written.insert(0, path)
    return written


async def demo_main(args: argparse.Namespace) -> int:
    from veraltheim.client.ui.settings import load_settings
    from veraltheim.client.ui.shell import Shell

    settings, _ = load_settings()
    settings.user_name = settings.user_name or "demo"
    shell = Shell(settings)
    try:
        shell.load()
        shell.start_kernels()
        await shell.start(args.service or "", "")
        written = await run_demo(shell, args.out)
        say(f"screenshots of each view in {args.out.resolve()}:")
        for p in written:
            print(f"  {p.resolve()}")
        return 0
    finally:
        await shell.stop()
        shell.close_window()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the app offscreen through a short demo.")
    p.add_argument("--service", help="service address (none: local only)")
    p.add_argument("--out", type=Path, default=Path("screenshots"))
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from veraltheim.client.ui.app import run_in_app

    try:
        return run_in_app(lambda: demo_main(args))
    except Exception as exc:
        print(f"demo: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
