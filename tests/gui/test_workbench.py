"""The Workbench in the real window, no service: local runs, progress, cancel, input, save."""

from __future__ import annotations

import asyncio

import pytest
from PIL import Image
from PySide6.QtCore import Qt, QUrl
from veraltheim.client.ui.waiting import wait_signal, wait_until

from tests.gui.conftest import click, item, key, load_ended, open_input, save_artifact

CTRL = Qt.KeyboardModifier.ControlModifier


def write_png(path, width=64, height=48):
    img = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    for x in range(width):
        img.putpixel((x, height // 2), (255, 255, 255, 255))
    img.save(path)
    return path


def test_ctrl_r_runs_a_fractal_locally_with_progress_then_save_as(make_shell, run, tmp_path):
    shell = make_shell()
    wb = shell.workbench

    async def scenario():
        await shell.set_link("", "")  # no service: local only, documents from the cache
        wb.selectKernel("fractal.mandelbrot")
        wb.setParam("width", 400)
        wb.setParam("height", 300)
        wb.setParam("max_iter", 1500)
        await click(shell, "where_local")
        assert wb.where == "local"
        seen = []
        wb.progressChanged.connect(lambda: seen.append(wb.progress))
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        await key(shell, Qt.Key.Key_R, CTRL)
        (status,) = await finished
        return status, seen

    status, seen = run(scenario())
    assert status == "ok", shell.notices.text
    assert any(0 < p < 1 for p in seen), "no intermediate progress reached the window"
    assert wb.resultKind == "image"
    preview = item(shell, "resultPreview")
    assert preview.property("source").toString().startswith("image://preview/result")
    assert preview.property("paintedWidth") > 0  # loaded and shown
    assert item(shell, "resultCaption").property("text") == "Result: 400 x 300 image"
    assert "Ran locally" in item(shell, "resultInfo").property("text")
    (recorded,) = shell.runs.runs
    assert recorded.kernel == "fractal.mandelbrot" and recorded.where == "local"
    assert recorded.user == "tester" and recorded.status == "done"
    save_artifact(shell, "workbench-local-fractal")

    out = tmp_path / "fractal"  # no suffix: the result's own (.png) is added
    wb.saveResult(QUrl.fromLocalFile(str(out)))
    with Image.open(tmp_path / "fractal.png") as saved:
        assert saved.size == (400, 300)
    assert "Saved" in shell.notices.text


def test_open_an_image_then_blur_it_and_chain_the_result(make_shell, run, tmp_path):
    shell = make_shell()
    wb = shell.workbench
    png = write_png(tmp_path / "line.png")

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.blur")
        assert await open_input(wb, png) == "ok"
        assert "64 x 48" in item(shell, "inputSummary").property("text")
        assert wb.params()["width"] == 64 and wb.params()["height"] == 48
        source = item(shell, "inputPreview").property("source").toString()
        assert source.startswith("image://preview/input/")
        wb.setWhere("local")
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        await click(shell, "runButton")
        (status,) = await finished
        assert status == "ok", shell.notices.text
        first = bytes(wb._result.raw)
        # the blurred line spreads: rows next to it are no longer black
        row_above = first[(23 * 64 + 10) * 4 : (23 * 64 + 10) * 4 + 3]
        assert max(row_above) > 0
        wb.selectKernel("image.grayscale")  # same input kind: the picture stays
        assert "64 x 48" in wb.inputSummary
        wb.useResultAsInput()
        assert wb.inputSummary.startswith("previous result")

    run(scenario())


def test_escape_cancels_a_long_job_and_the_next_run_works(make_shell, run):
    shell = make_shell()
    wb = shell.workbench

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("fractal.mandelbrot")
        for name, value in (("width", 1024), ("height", 768), ("max_iter", 1_000_000)):
            wb.setParam(name, value)
        wb.setWhere("local")
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        await wait_until(lambda: wb.progress > 0, [wb.progressChanged], 30, "progress")
        assert item(shell, "cancelButton").isEnabled()
        save_artifact(shell, "workbench-running")
        await key(shell, Qt.Key.Key_Escape)
        (status,) = await finished
        assert status == "cancelled"
        assert "cancelled" in item(shell, "messageText").property("text")
        assert not wb.running and shell.runs.runs == []
        wb.setParam("max_iter", 50)
        wb.setParam("width", 64)
        wb.setParam("height", 64)
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        (status,) = await finished
        assert status == "ok", shell.notices.text

    run(scenario())


def test_a_bad_input_file_gives_a_message_in_the_window(make_shell, run, tmp_path):
    shell = make_shell()
    wb = shell.workbench
    fake = tmp_path / "holiday.png"
    fake.write_bytes(b"this is not a picture at all")
    csv = tmp_path / "numbers.csv"
    csv.write_text("value\n1.5\n2.5\nabc\n")

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.blur")
        assert await open_input(wb, fake) == "error"
        bar = item(shell, "messageBar")
        assert bar.isVisible()
        text = item(shell, "messageText").property("text")
        assert "holiday.png is not a readable image" in text
        assert "Pick another file" in item(shell, "messageHint").property("text")
        assert wb.inputSummary == ""
        save_artifact(shell, "workbench-bad-input")
        # Running without input says what to do instead of failing somewhere deeper
        await click(shell, "runButton")
        assert "needs an input file" in item(shell, "messageText").property("text")

        wb.selectKernel("data.stats")
        assert await open_input(wb, csv) == "error"
        assert "line 4: 'abc' is not a number" in item(shell, "messageText").property("text")
        await click(shell, "messageDismiss")
        assert not item(shell, "messageBar").isVisible()

        csv.write_text("1\n2\n3\n4\n")
        assert await open_input(wb, csv) == "ok"
        assert wb.inputSummary == "numbers.csv: 4 f64 values"
        wb.setWhere("local")
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        (status,) = await finished
        assert status == "ok", shell.notices.text
        assert "mean  2.5" in item(shell, "resultText").property("text")

    run(scenario())


@pytest.mark.filterwarnings("ignore:Function.*QDrag:DeprecationWarning")  # PySide's only ctor
def test_dropping_a_file_on_the_workbench_opens_it(make_shell, run, tmp_path):
    from PySide6.QtCore import QCoreApplication, QMimeData, QPointF
    from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent

    shell = make_shell()
    wb = shell.workbench
    png = write_png(tmp_path / "dropped.png", 20, 10)

    def drop() -> None:
        area = item(shell, "dropArea")
        pos = area.mapToScene(QPointF(area.width() / 2, area.height() / 2))
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(png))])
        action = Qt.DropAction.CopyAction
        buttons, mods = Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
        for event in (
            QDragEnterEvent(pos.toPoint(), action, mime, buttons, mods),
            QDragMoveEvent(pos.toPoint(), action, mime, buttons, mods),
            QDropEvent(pos, action, mime, buttons, mods),
        ):
            QCoreApplication.sendEvent(shell.window, event)

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("image.edges")
        ended = load_ended(wb)
        drop()
        assert await asyncio.wait_for(ended, 30) == "ok"
        assert wb.inputSummary == "dropped.png: 20 x 10 image"
        assert wb.params()["width"] == 20

    run(scenario())


def test_a_job_over_the_deadline_from_settings_says_what_to_do(make_shell, run):
    shell = make_shell()
    wb = shell.workbench
    shell.settings.update(deadline_s=1.0)

    async def scenario():
        await shell.set_link("", "")
        wb.selectKernel("fractal.mandelbrot")
        for name, value in (("width", 1024), ("height", 768), ("max_iter", 1_000_000)):
            wb.setParam(name, value)
        wb.setWhere("local")
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        assert (await finished) == ("error",)
        assert "deadline" in item(shell, "messageText").property("text")
        assert "raise the deadline in Settings" in item(shell, "messageHint").property("text")
        assert shell.runs.runs == []

    run(scenario())


def test_run_twice_before_the_loop_turns_starts_one_job(make_shell, run):
    from veraltheim.client.ui.waiting import wait_signal

    shell = make_shell()
    wb = shell.workbench
    started = []
    real_run = shell.jobs.run

    async def counting_run(*args, **kwargs):
        started.append(args[0])
        return await real_run(*args, **kwargs)

    async def scenario():
        await shell.set_link("", "")
        shell.jobs.run = counting_run
        wb.selectKernel("fractal.mandelbrot")
        wb.setParam("width", 32)
        wb.setParam("height", 32)
        finished = asyncio.ensure_future(wait_signal(wb.finished, 60))
        wb.run()
        wb.run()  # e.g. Ctrl+R pressed twice quickly
        assert (await finished) == ("ok",), shell.notices.text
        assert wb._task is None or wb._task.done()
        assert started == ["fractal.mandelbrot"]
        assert shell.runs.model.count == 1

    run(scenario())
