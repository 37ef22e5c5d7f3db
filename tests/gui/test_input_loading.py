"""Input files load on a worker thread: the window keeps working, and the newest pick wins."""

from __future__ import annotations

import asyncio
import threading

import pytest
from PySide6.QtCore import QTimer, QUrl
from veraltheim.client.ui.inputs import load_input
from veraltheim.client.ui.waiting import wait_until

from tests.gui.conftest import item, load_ended, open_input
from tests.gui.test_workbench import write_png

HOLD_S = 20  # a held load gives up after this, so a broken test fails instead of hanging


def hold_loads(wb) -> threading.Event:
    """Make the Workbench's file loads wait until the returned event is set."""
    release = threading.Event()

    def held_reader(path, input_kind, **kwargs):
        if not release.wait(HOLD_S):
            raise RuntimeError("the test never released the load")
        return load_input(path, input_kind, **kwargs)

    wb.input_reader = held_reader
    return release


def test_a_slow_file_loads_off_the_gui_thread_while_the_window_keeps_working(
    make_shell, run, tmp_path
):
    shell = make_shell()
    wb = shell.workbench
    png = write_png(tmp_path / "big.png", 30, 20)
    held, release = threading.Event(), threading.Event()  # held: the reader is waiting now
    reader_threads: list[int] = []

    def held_reader(path, input_kind, **kwargs):
        reader_threads.append(threading.get_ident())
        held.set()
        released = release.wait(HOLD_S)
        held.clear()
        if not released:
            raise RuntimeError("the test never released the load")
        return load_input(path, input_kind, **kwargs)

    wb.input_reader = held_reader

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.blur")
        ended = load_ended(wb)
        wb.openFile(QUrl.fromLocalFile(str(png)))  # returns at once: the reader is held
        try:
            assert wb.loading and not ended.done()
            assert item(shell, "statusJob").property("text") == "Loading big.png..."
            assert item(shell, "inputSummary").property("text") == "Loading big.png\u2026"
            # The GUI thread keeps turning while the reader is blocked: a Qt timer keeps firing.
            ticks: list[bool] = []
            probe = QTimer()
            probe.setInterval(5)
            probe.timeout.connect(lambda: ticks.append(held.is_set()))
            probe.start()
            try:
                await wait_until(
                    lambda: sum(ticks) >= 3, [probe.timeout], 10, "timer ticks during the load"
                )
            finally:
                probe.stop()
            assert not ended.done() and wb.inputSummary == ""
        finally:
            release.set()
        assert await asyncio.wait_for(ended, 30) == "ok"
        assert reader_threads and reader_threads[0] != threading.get_ident()
        assert not wb.loading
        assert wb.inputSummary == "big.png: 30 x 20 image"
        assert wb.params()["width"] == 30
        assert item(shell, "statusJob").property("text") == "Opened big.png."
        assert (
            item(shell, "inputPreview")
            .property("source")
            .toString()
            .startswith("image://preview/input/")
        )

    run(scenario())


@pytest.mark.parametrize("first_is_bad", [False, True], ids=["good-first", "bad-first"])
def test_a_newer_pick_wins_over_a_slow_earlier_one(make_shell, run, tmp_path, first_is_bad):
    shell = make_shell()
    wb = shell.workbench
    first = tmp_path / "first.png"
    if first_is_bad:
        first.write_bytes(b"not a picture")
    else:
        write_png(first, 30, 20)
    second = write_png(tmp_path / "second.png", 12, 8)
    release_first = threading.Event()

    def reader(path, input_kind, **kwargs):
        if path.name == first.name and not release_first.wait(HOLD_S):
            raise RuntimeError("the test never released the first load")
        return load_input(path, input_kind, **kwargs)

    wb.input_reader = reader

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.blur")
        outcomes: list[str] = []
        wb.inputLoadEnded.connect(outcomes.append)
        wb.openFile(QUrl.fromLocalFile(str(first)))
        try:
            assert await open_input(wb, second) == "ok"
        finally:
            release_first.set()
        preview = item(shell, "inputPreview").property("source").toString()
        await wait_until(lambda: len(outcomes) == 2, [wb.inputLoadEnded], 30, "the first load")
        assert outcomes == ["ok", "stale"]
        # The late first file changed nothing: input, size, preview, status, message bar.
        assert wb.inputSummary == "second.png: 12 x 8 image"
        assert wb.params()["width"] == 12 and wb.params()["height"] == 8
        assert item(shell, "inputPreview").property("source").toString() == preview
        assert item(shell, "statusJob").property("text") == "Opened second.png."
        assert not wb.loading and shell.notices.text == ""

    run(scenario())


def test_run_while_an_input_loads_says_to_wait(make_shell, run, tmp_path):
    shell = make_shell()
    wb = shell.workbench
    png = write_png(tmp_path / "slow.png", 16, 16)
    release = hold_loads(wb)

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.blur")
        ended = load_ended(wb)
        wb.openFile(QUrl.fromLocalFile(str(png)))
        try:
            wb.run()
            assert "slow.png is still loading" in item(shell, "messageText").property("text")
            assert not wb.running
        finally:
            release.set()
        assert await asyncio.wait_for(ended, 30) == "ok"

    run(scenario())


def test_switching_to_a_kernel_of_another_input_kind_drops_a_pending_load(
    make_shell, run, tmp_path
):
    shell = make_shell()
    wb = shell.workbench
    png = write_png(tmp_path / "photo.png", 16, 16)
    release = hold_loads(wb)

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.blur")
        outcomes: list[str] = []
        wb.inputLoadEnded.connect(outcomes.append)
        wb.openFile(QUrl.fromLocalFile(str(png)))
        try:
            assert wb.loading
            wb.selectKernel("data.stats")  # takes numbers: the picture is no input for it
            assert not wb.loading
        finally:
            release.set()
        await wait_until(lambda: outcomes, [wb.inputLoadEnded], 30, "the dropped load")
        assert outcomes == ["stale"]
        assert wb.kernel == "data.stats" and wb.inputSummary == ""

    run(scenario())
