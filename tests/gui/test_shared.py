"""The window against a real service subprocess: remote runs, the shared history and notes seen
by a second client, presence, offline start from the cache, a service restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from veraltheim.client.net.socket import Socket
from veraltheim.client.state.notes import Notes
from veraltheim.client.state.run_history import RunHistory
from veraltheim.client.state.store import DocumentStore
from veraltheim.client.ui.views import VIEWS, View
from veraltheim.client.ui.waiting import wait_signal, wait_until

from tests.gui.conftest import click, item, key, save_artifact, type_text

CONNECT_S = 30.0


async def until(
    register: Callable[[Callable[..., None]], Any], condition, timeout: float, what: str
):
    """Wait for condition() after callbacks that `register` installs (e.g. RunHistory.on_change)."""
    if condition():
        return
    future = asyncio.get_running_loop().create_future()

    def check() -> None:
        if not future.done() and condition():
            future.set_result(None)

    loop = asyncio.get_running_loop()
    # document callbacks run inside the pycrdt transaction: read the document after it
    register(lambda *_: loop.call_soon(check))
    try:
        await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise TimeoutError(f"timed out waiting for {what}") from None


@contextlib.asynccontextmanager
async def second_client(url: str, user: str, cache, token: str | None = None):
    """Another user on the same service, with the plain asyncio client (no Qt)."""
    sock = Socket(url, params={"user": user}, token=token)
    await sock.connect()
    await sock.channel("lobby").join()  # presence: the app's Connection view lists who is here
    store = DocumentStore(cache, sock)
    runs_doc = await store.open("runs")
    notes_doc = await store.open("notes")
    notes_doc.set_awareness({"user": user})
    try:
        yield RunHistory(runs_doc), Notes(notes_doc), notes_doc
    finally:
        await store.aclose()
        await sock.disconnect()


async def connected(shell) -> None:
    conn = shell.connection
    await wait_until(lambda: conn.state == "connected", [conn.changed], CONNECT_S, "connected")


async def compute_joined(shell) -> None:
    """After a reconnect the compute channel rejoins on its own backoff; wait for that join."""
    remote = shell.jobs.dispatcher.remote
    if remote.joined:
        return
    joined = asyncio.get_running_loop().create_future()
    remote.channel.on_join(lambda *_: joined.done() or joined.set_result(None))
    await asyncio.wait_for(joined, CONNECT_S)


async def run_kernel(shell, kernel: str, where: str, **params) -> str:
    wb = shell.workbench
    wb.selectKernel(kernel)
    for name, value in params.items():
        wb.setParam(name, value)
    wb.setWhere(where)
    finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
    wb.run()
    (status,) = await finished
    assert status == "ok", f"{kernel} {where}: {shell.notices.text} / {shell.notices.hint}"
    return wb.resultInfo


def test_runs_and_notes_reach_a_second_client_live(service, make_shell, run, tmp_path):
    # (service first: it is stopped after the window, as a user would quit)
    shell = make_shell()
    conn = shell.connection

    async def scenario():
        async with second_client(
            service.ws_url, "bob", tmp_path / "bob.sqlite3", service.token("bob")
        ) as (bob_runs, bob_notes, bob_doc):
            # Sign in through the Connection view, as a user would
            shell.show_view(View.CONNECTION)
            item(shell, "connectionAddress").setProperty("text", service.ws_url)
            item(shell, "connectionToken").setProperty("text", service.token("alice"))
            await click(shell, "connectButton")
            await wait_until(
                lambda: conn.state == "connected" and conn.user == "alice",
                [conn.changed],
                CONNECT_S,
                "alice signed in",
            )
            assert item(shell, "connectionState").property("text") == "connected"
            await wait_until(lambda: conn.rttMs >= 0, [conn.changed], CONNECT_S, "a round trip")
            assert item(shell, "connectionRtt").property("text").endswith(" ms")
            assert item(shell, "connectionTls").property("text").startswith("not encrypted")
            people = conn.people
            await wait_until(
                lambda: {r["user"] for r in people.rows} >= {"alice", "bob"},
                [people.countChanged],
                CONNECT_S,
                "presence of alice and bob",
            )
            assert shell.settings.value.token, "sign-in is remembered in the settings"

            local = await run_kernel(shell, "fractal.mandelbrot", "local", width=160, height=120)
            assert local.startswith("Ran locally")
            shell.workbench.selectKernel("image.blur")
            shell.workbench.useResultAsInput()
            remote = await run_kernel(shell, "image.blur", "remote")
            assert remote.startswith("Ran on the service")
            assert shell.workbench.resultKind == "image"

            # bob sees both runs, with who ran them and where
            await until(bob_runs.on_change, lambda: len(bob_runs) == 2, 20, "bob sees 2 runs")
            seen = [(r["user"], r["kernel"], r["where"]) for r in bob_runs.items()]
            assert seen == [
                ("alice", "fractal.mandelbrot", "local"),
                ("alice", "image.blur", "remote"),
            ]
            assert bob_runs.items()[1]["size"] == 160 * 120 * 4

            # alice types a note in the editor; bob sees it
            shell.show_view(View.NOTES)
            editor = item(shell, "notesEditor")
            editor.forceActiveFocus()
            await type_text(shell, "hi bob")
            await until(
                bob_doc.on_change, lambda: "hi bob" in bob_notes.text, 20, "bob sees the note"
            )
            # bob answers; the editor shows it, and bob is listed in the document
            bob_notes.append("\nhello alice")
            await wait_until(
                lambda: "hello alice" in editor.property("text"),
                [shell.notes.textChanged],
                20,
                "alice sees bob's note",
            )
            await wait_until(
                lambda: any(r["user"] == "bob" for r in shell.notes.people.rows),
                [shell.notes.people.countChanged],
                20,
                "bob in the notes",
            )

            # the Runs view lists both; selecting one shows its details
            shell.show_view(View.RUNS)
            assert shell.runs.model.count == 2
            shell.runs.select(1)
            assert '"where": "remote"' in item(shell, "runDetails").property("text")
            # the Inspector saw the compute frames and both decisions
            assert (
                any(r["topic"] == "compute:default" for r in shell.inspector.frames.rows)
                or (
                    await wait_until(
                        lambda: any(
                            r["topic"] == "compute:default" for r in shell.inspector.frames.rows
                        ),
                        [shell.inspector.frames.countChanged],
                        5,
                        "compute frames",
                    )
                )
                is None
            )
            assert [r["where"] for r in shell.inspector.decisions.rows] == ["local", "remote"]
            shell.show_view(View.INSPECTOR)
            cache = item(shell, "inspectorCache").property("text")
            assert "Dispatcher cost model" in cache and "image.blur: local" in cache
            for i, view in enumerate(VIEWS, 1):
                shell.show_view(view)
                await asyncio.sleep(0)
                save_artifact(shell, f"view-{i}-{view.lower()}")

    run(scenario())


def test_offline_start_from_the_cache_then_edits_merge_on_reconnect(
    service_factory, make_shell, run, tmp_path
):
    svc = service_factory("--no-auth")
    first = make_shell("carol")

    async def online_session():
        await first.start(svc.ws_url, "")
        await connected(first)
        await run_kernel(first, "fractal.mandelbrot", "local", width=64, height=48)
        first.notes.edit("kept offline\n")
        await first.docs["runs"].flush(10)
        await first.docs["notes"].flush(10)

    run(online_session())
    run(first.stop())
    first.close_window()
    svc.stop()

    shell = make_shell("carol")

    async def offline_session():
        await shell.start(svc.ws_url, "")
        # the service is down: the window opens from the cache and says so
        await wait_until(
            lambda: shell.connection.state in ("reconnecting", "offline"),
            [shell.connection.changed],
            CONNECT_S,
            "not connected",
        )
        assert shell.runs.model.count == 1
        assert shell.notes.text == "kept offline\n"
        shell.show_view(View.RUNS)
        assert "local copy (reconnecting" in item(shell, "runsHeader").property("text")
        assert "reconnecting" in item(shell, "messageText").property("text")
        save_artifact(shell, "offline-start")
        # work goes on offline: a local run (Auto goes local when offline) and a note
        info = await run_kernel(shell, "fractal.mandelbrot", "auto", width=32, height=32)
        assert info.startswith("Ran locally")
        shell.notes.edit(shell.notes.text + "written offline\n")
        # the service comes back on the same port: the app reconnects by itself
        svc.args += ["--port", str(svc.port)]
        await asyncio.get_running_loop().run_in_executor(None, svc.start)
        await connected(shell)
        await shell.docs["runs"].flush(20)
        await shell.docs["notes"].flush(20)
        async with second_client(svc.ws_url, "erin", tmp_path / "erin.sqlite3") as (
            runs2,
            notes2,
            doc2,
        ):
            await until(runs2.on_change, lambda: len(runs2) == 2, 20, "both runs on the service")
            await until(doc2.on_change, lambda: "written offline" in notes2.text, 20, "the note")
        assert shell.notices.kind != "warning"  # the reconnect cleared the warning
        assert shell.runs.status == "live"

    run(offline_session())


def test_service_restart_while_the_window_is_open(service_factory, make_shell, run):
    svc = service_factory("--no-auth")
    shell = make_shell("dave")

    async def scenario():
        await shell.start(svc.ws_url, "")
        await connected(shell)
        await run_kernel(shell, "fractal.mandelbrot", "remote", width=64, height=48)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, svc.stop)
        await wait_until(
            lambda: shell.connection.state != "connected",
            [shell.connection.changed],
            CONNECT_S,
            "the drop",
        )
        bar = item(shell, "messageText").property("text")
        assert "reconnecting" in bar, bar
        # a remote run while the service is down says what happened, in the window
        wb = shell.workbench
        wb.setWhere("remote")
        shell.settings.update(deadline_s=1.0)  # it waits for the reconnect at most its deadline
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        await key(shell, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
        (status,) = await finished
        assert status == "error"
        assert shell.notices.kind == "error" and shell.notices.hint
        shell.settings.update(deadline_s=60.0)
        svc.args += ["--port", str(svc.port)]
        await loop.run_in_executor(None, svc.start)
        await connected(shell)
        await compute_joined(shell)
        info = await run_kernel(shell, "fractal.mandelbrot", "remote", width=64, height=48)
        assert info.startswith("Ran on the service")
        assert [r.where for r in shell.runs.runs] == ["remote", "remote"]

    run(scenario())


def test_escape_cancels_a_job_running_on_the_service(service_factory, make_shell, run):
    svc = service_factory("--no-auth")
    shell = make_shell("gina")
    wb = shell.workbench

    async def scenario():
        await shell.start(svc.ws_url, "")
        await connected(shell)
        wb.selectKernel("fractal.mandelbrot")
        for name, value in (("width", 1024), ("height", 768), ("max_iter", 1_000_000)):
            wb.setParam(name, value)
        wb.setWhere("remote")
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        # progress pushed by the service reaches the bar: the job is running there
        await wait_until(lambda: wb.progress > 0, [wb.progressChanged], 30, "remote progress")
        await key(shell, Qt.Key.Key_Escape)
        (status,) = await finished
        assert status == "cancelled", shell.notices.text
        assert shell.runs.runs == []
        # the service is free again: the next remote job runs at once
        info = await run_kernel(shell, "fractal.mandelbrot", "remote", width=64, height=48)
        assert info.startswith("Ran on the service")

    run(scenario())


def test_a_refused_token_is_said_in_the_window(service, make_shell, run):
    shell = make_shell()
    conn = shell.connection

    async def scenario():
        await shell.start(service.ws_url, "not-a-valid-token")
        await wait_until(lambda: conn.state == "offline", [conn.changed], CONNECT_S, "refusal")
        text = item(shell, "messageText").property("text")
        hint = item(shell, "messageHint").property("text")
        assert f"The service at {service.ws_url} is offline" in text
        assert "Check the address and token" in hint
        shell.show_view(View.CONNECTION)
        assert item(shell, "connectionState").property("text") == "offline"
        save_artifact(shell, "refused-token")
        # signing in with a good token from the Connection view fixes it
        item(shell, "connectionToken").setProperty("text", service.token("hana"))
        await click(shell, "connectButton")
        await wait_until(
            lambda: conn.state == "connected" and conn.user == "hana", [conn.changed], CONNECT_S
        )
        assert shell.notices.kind != "warning"

    run(scenario())


def test_a_tls_service_shows_as_such_and_works(tls_service, make_shell, run):
    svc, cert = tls_service("--no-auth")
    shell = make_shell("ivan")
    shell.settings.update(ca_file=str(cert))

    async def scenario():
        await shell.start(svc.ws_url, "")
        await connected(shell)
        shell.show_view(View.CONNECTION)
        assert item(shell, "connectionTls").property("text").endswith("TLS (wss://)")
        info = await run_kernel(shell, "fractal.mandelbrot", "remote", width=64, height=48)
        assert info.startswith("Ran on the service")

    run(scenario())


def test_a_tls_service_with_an_untrusted_certificate_is_not_trusted(tls_service, make_shell, run):
    svc, _ = tls_service("--no-auth")
    shell = make_shell("judy")  # no trusted certificate in Settings

    async def scenario():
        await shell.start(svc.ws_url, "")
        await wait_until(
            lambda: shell.connection.state in ("reconnecting", "offline"),
            [shell.connection.changed],
            CONNECT_S,
            "a refused handshake",
        )
        assert shell.notices.kind == "warning"
        assert shell.connection.state != "connected"

    run(scenario())
